//! Probability calibration: Platt (sigmoid) scaling and the expected calibration error.

/// Platt scaling: `P(positive | f) = 1 / (1 + exp(a f + b))`.
///
/// Fitted as Platt (1999) with the improvements of Lin, Lin & Weng (2007), which is also what
/// scikit-learn's `CalibratedClassifierCV(method="sigmoid")` fits: the targets are not 0/1 but
/// `(N+ + 1) / (N+ + 2)` for positives and `1 / (N- + 2)` for negatives (a prior that keeps the
/// fit finite on separable data), and the cross-entropy is minimised, here by Newton's method
/// with a backtracking line search on standardised scores, until the gradient is below 1e-12 per
/// case or the loss stops falling at double precision.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Platt {
    /// Slope (negative when higher scores mean more likely positive).
    pub a: f64,
    /// Intercept.
    pub b: f64,
}

/// Why a calibrator cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    /// Fewer than one case of each class.
    #[error("calibration needs both classes: {positives} positive, {negatives} negative")]
    OneClass { positives: usize, negatives: usize },
    /// A score is NaN or infinite.
    #[error("score {0} is not finite")]
    NonFinite(f64),
    /// Newton's method did not settle (does not happen on finite data; guarded anyway).
    #[error("Platt fit did not converge in {0} iterations")]
    NoConvergence(usize),
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

impl Platt {
    /// Fit on scores and outcomes.
    pub fn fit(scores: &[f64], positive: &[bool]) -> Result<Platt, CalibrationError> {
        assert_eq!(scores.len(), positive.len(), "one label per score");
        if let Some(&bad) = scores.iter().find(|s| !s.is_finite()) {
            return Err(CalibrationError::NonFinite(bad));
        }
        let n_pos = positive.iter().filter(|&&p| p).count();
        let n_neg = positive.len() - n_pos;
        if n_pos == 0 || n_neg == 0 {
            return Err(CalibrationError::OneClass { positives: n_pos, negatives: n_neg });
        }
        let hi = (n_pos as f64 + 1.0) / (n_pos as f64 + 2.0);
        let lo = 1.0 / (n_neg as f64 + 2.0);
        let t: Vec<f64> = positive.iter().map(|&p| if p { hi } else { lo }).collect();
        // Fit on standardised scores u = (f - mean) / sd, which keeps Newton's system well
        // conditioned when the scores barely differ (a model that has hardly learnt), then map
        // back: a = a_u / sd, b = b_u - a_u mean / sd. Constant scores: sd 1, slope 0.
        let n = scores.len() as f64;
        let mean = scores.iter().sum::<f64>() / n;
        let sd = (scores.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n).sqrt();
        let sd = if sd > 0.0 { sd } else { 1.0 };
        let u: Vec<f64> = scores.iter().map(|f| (f - mean) / sd).collect();
        // Loss with z = a u + b: sum of t softplus(z) + (1 - t) softplus(-z) - constant;
        // gradient in z: t - p where p = 1 / (1 + exp(z)); curvature p (1 - p).
        let loss = |a: f64, b: f64| -> f64 {
            u.iter()
                .zip(&t)
                .map(|(&f, &ti)| {
                    let z = a * f + b;
                    ti * softplus(z) + (1.0 - ti) * softplus(-z)
                })
                .sum()
        };
        let unscale = |a: f64, b: f64| Platt { a: a / sd, b: b - a * mean / sd };
        let (mut a, mut b) = (0.0, ((n_neg as f64 + 1.0) / (n_pos as f64 + 1.0)).ln());
        let mut current = loss(a, b);
        for _ in 0..200 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&f, &ti) in u.iter().zip(&t) {
                let p = crate::sigmoid(-(a * f + b));
                let g = ti - p;
                let h = p * (1.0 - p);
                ga += g * f;
                gb += g;
                haa += h * f * f;
                hab += h * f;
                hbb += h;
            }
            if ga.abs().max(gb.abs()) < 1e-12 * n {
                return Ok(unscale(a, b));
            }
            // Newton step; a tiny ridge keeps it defined when all scores are equal.
            let (haa, hbb) = (haa + 1e-12, hbb + 1e-12);
            let det = haa * hbb - hab * hab;
            let da = -(hbb * ga - hab * gb) / det;
            let db = -(haa * gb - hab * ga) / det;
            let mut step = 1.0;
            loop {
                let candidate = loss(a + step * da, b + step * db);
                if candidate <= current + 1e-4 * step * (ga * da + gb * db) {
                    a += step * da;
                    b += step * db;
                    let settled = current - candidate <= 1e-15 * current.abs();
                    current = candidate;
                    if settled {
                        // The loss no longer falls at double precision: this is the minimum.
                        return Ok(unscale(a, b));
                    }
                    break;
                }
                step /= 2.0;
                if step < 1e-12 {
                    // No descent left at machine precision: this is the minimum.
                    return Ok(unscale(a, b));
                }
            }
        }
        Err(CalibrationError::NoConvergence(200))
    }

    /// Calibrated probability of a score.
    pub fn probability(&self, score: f64) -> f64 {
        crate::sigmoid(-(self.a * score + self.b))
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (probability).
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Cases in it.
    pub count: usize,
    /// Their mean predicted probability (NaN when empty).
    pub mean_predicted: f64,
    /// Their observed positive rate (NaN when empty).
    pub observed_rate: f64,
}

/// Equal-width reliability bins over [0, 1]: bin `i` holds probabilities in
/// `[i / bins, (i + 1) / bins)`, the last bin also 1.0.
pub fn reliability_bins(probability: &[f64], positive: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    assert!(bins > 0, "at least one bin");
    assert_eq!(probability.len(), positive.len(), "one label per probability");
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probability.iter().zip(positive) {
        let i = ((p * bins as f64).floor().max(0.0) as usize).min(bins - 1);
        sum_p[i] += p;
        sum_y[i] += f64::from(u8::from(y));
        count[i] += 1;
    }
    (0..bins)
        .map(|i| ReliabilityBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count: count[i],
            mean_predicted: sum_p[i] / count[i] as f64,
            observed_rate: sum_y[i] / count[i] as f64,
        })
        .collect()
}

/// Expected calibration error over `bins` equal-width bins: the case-weighted mean of
/// |observed rate - mean predicted probability| (Naeini et al. 2015; Guo et al. 2017).
pub fn expected_calibration_error(probability: &[f64], positive: &[bool], bins: usize) -> f64 {
    let n = probability.len() as f64;
    reliability_bins(probability, positive, bins)
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 / n * (b.observed_rate - b.mean_predicted).abs())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_sigmoid_and_refuses_one_class() {
        // Many cases at five scores whose positive share follows 1 / (1 + exp(-2 f + 1)):
        // with that many cases the prior's pull on the targets is negligible.
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for f in [-1.0f64, -0.5, 0.0, 0.5, 1.0] {
            let p = 1.0 / (1.0 + (-2.0 * f + 1.0).exp());
            let pos = (p * 20_000.0).round() as usize;
            for k in 0..20_000 {
                s.push(f);
                y.push(k < pos);
            }
        }
        let fit = Platt::fit(&s, &y).unwrap();
        assert!((fit.a + 2.0).abs() < 1e-3 && (fit.b - 1.0).abs() < 1e-3, "{fit:?}");
        assert!((fit.probability(0.5) - 0.5).abs() < 1e-3);
        assert!(matches!(Platt::fit(&[0.1, 0.2], &[true, true]), Err(CalibrationError::OneClass { .. })));
        assert!(matches!(Platt::fit(&[f64::NAN, 0.2], &[true, false]), Err(CalibrationError::NonFinite(_))));
        // Separable data stays finite thanks to the targets' prior.
        let sep = Platt::fit(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap();
        assert!(sep.a.is_finite() && sep.a < 0.0);
    }

    #[test]
    fn ece_of_hand_binned_cases() {
        // Bin [0.2, 0.3): p 0.25, 0.25, outcomes 1, 0 -> |0.5 - 0.25| = 0.25, weight 2/4.
        // Bin [0.9, 1.0]: p 0.95, 1.0, outcomes 1, 1 -> |1 - 0.975| = 0.025, weight 2/4.
        let e = expected_calibration_error(&[0.25, 0.25, 0.95, 1.0], &[true, false, true, true], 10);
        assert!((e - (0.5 * 0.25 + 0.5 * 0.025)).abs() < 1e-15, "{e}");
        let bins = reliability_bins(&[0.25, 1.0], &[true, true], 10);
        assert_eq!((bins[2].count, bins[9].count), (1, 1));
        assert!(bins[0].mean_predicted.is_nan());
    }
}
#[cfg(test)]
mod hard_cases {
    use super::*;

    #[test]
    fn nearly_constant_and_separable_scores_converge() {
        // A barely trained model: six validation scores within 1e-3 of each other, separable.
        let s = [0.5001, 0.5002, 0.5004, 0.5007, 0.5008, 0.5009];
        let y = [false, false, false, true, true, true];
        let fit = Platt::fit(&s, &y).unwrap();
        // Optimality: the intercept's gradient vanishes, so the mean calibrated probability is the
        // mean of the smoothed targets, (3 * 4/5 + 3 * 1/5) / 6 = 1/2.
        let mean = s.iter().map(|&v| fit.probability(v)).sum::<f64>() / 6.0;
        assert!((mean - 0.5).abs() < 1e-9, "{fit:?} mean {mean}");
        // All scores equal: the slope is irrelevant, the intercept gives the target mean.
        let flat = Platt::fit(&[0.3; 4], &[true, false, false, false]).unwrap();
        let want = (2.0 / 3.0 + 3.0 * 0.2) / 4.0;
        assert!((flat.probability(0.3) - want).abs() < 1e-9, "{flat:?}");
    }
}
