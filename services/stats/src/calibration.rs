//! Probability calibration: Platt (sigmoid) scaling, isotonic regression, temperature scaling,
//! and the expected calibration error.

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
    #[error("calibration fit did not converge in {0} iterations")]
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
        let (n_pos, n_neg) = check_fit_input(scores, positive)?;
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

    /// [`Platt::fit`], kept from inverting the ranking: where the best sigmoid falls as the score
    /// rises (`a > 0`, the scores rank these rows worse than chance), the best non-decreasing
    /// one is flat, the rows' smoothed positive rate for every score (the log likelihood is
    /// concave in `(a, b)`, so the optimum under `a <= 0` lies on `a = 0`). On a handful of
    /// calibration rows a weak model's slope can come out inverted by chance; a calibrator
    /// should then say "no information", not turn the model around.
    pub fn fit_non_decreasing(scores: &[f64], positive: &[bool]) -> Result<Platt, CalibrationError> {
        let platt = Platt::fit(scores, positive)?;
        if platt.a <= 0.0 {
            return Ok(platt);
        }
        let n_pos = positive.iter().filter(|&&p| p).count() as f64;
        let n_neg = positive.len() as f64 - n_pos;
        let mean_target = (n_pos * (n_pos + 1.0) / (n_pos + 2.0) + n_neg / (n_neg + 2.0)) / (n_pos + n_neg);
        Ok(Platt { a: 0.0, b: ((1.0 - mean_target) / mean_target).ln() })
    }

    /// Calibrated probability of a score.
    pub fn probability(&self, score: f64) -> f64 {
        crate::sigmoid(-(self.a * score + self.b))
    }
}

/// Isotonic calibration: the non-decreasing step function of the score that fits the outcomes
/// best in squared error (pool adjacent violators), read between its knots by linear
/// interpolation and clipped beyond them. This is what scikit-learn's
/// `IsotonicRegression(out_of_bounds="clip")` fits and predicts (and so
/// `CalibratedClassifierCV(method="isotonic")`): tied scores are first pooled into one point
/// of their mean outcome, weighted by their count.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Isotonic {
    /// Distinct training scores, increasing.
    pub knots: Vec<f64>,
    /// Fitted probability at each knot, non-decreasing.
    pub values: Vec<f64>,
}

impl Isotonic {
    /// Fit on scores and outcomes (higher scores meaning more likely positive).
    pub fn fit(scores: &[f64], positive: &[bool]) -> Result<Isotonic, CalibrationError> {
        assert_eq!(scores.len(), positive.len(), "one label per score");
        check_fit_input(scores, positive)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]));
        // Pool ties: (score, weight, mean outcome).
        let mut points: Vec<(f64, f64, f64)> = Vec::new();
        for i in order {
            let y = f64::from(u8::from(positive[i]));
            match points.last_mut() {
                Some(last) if last.0 == scores[i] => {
                    last.2 = (last.2 * last.1 + y) / (last.1 + 1.0);
                    last.1 += 1.0;
                }
                _ => points.push((scores[i], 1.0, y)),
            }
        }
        // Pool adjacent violators over blocks of (weight, mean, points covered).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
        for &(_, w, y) in &points {
            blocks.push((w, y, 1));
            while blocks.len() > 1 && blocks[blocks.len() - 2].1 > blocks[blocks.len() - 1].1 {
                let (w2, y2, n2) = blocks.pop().expect("two blocks");
                let last = blocks.last_mut().expect("one block");
                last.1 = (last.1 * last.0 + y2 * w2) / (last.0 + w2);
                last.0 += w2;
                last.2 += n2;
            }
        }
        let values: Vec<f64> = blocks.iter().flat_map(|&(_, y, n)| std::iter::repeat_n(y, n)).collect();
        Ok(Isotonic { knots: points.iter().map(|p| p.0).collect(), values })
    }

    /// Calibrated probability of a score.
    pub fn probability(&self, score: f64) -> f64 {
        let k = &self.knots;
        if score <= k[0] {
            return self.values[0];
        }
        if score >= k[k.len() - 1] {
            return self.values[k.len() - 1];
        }
        // k[i - 1] < score <= k[i].
        let i = k.partition_point(|&x| x < score);
        let t = (score - k[i - 1]) / (k[i] - k[i - 1]);
        self.values[i - 1] + t * (self.values[i] - self.values[i - 1])
    }
}

/// Temperature scaling (Guo et al. 2017) for a binary score on the logit scale:
/// `P(positive | z) = 1 / (1 + exp(-z / T))`. One parameter, no intercept: it sharpens or
/// softens a model's confidence without moving its 0.5 point. Fitted by minimising the
/// cross-entropy on 0/1 outcomes (Newton's method in 1/T, to a gradient below 1e-12 per case).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Temperature {
    /// T > 0 (1: the scores are used as they are).
    pub temperature: f64,
}

impl Temperature {
    /// Fit on logits and outcomes. T stays within 1e-3 to 1e6. Logits that separate the classes
    /// perfectly have no finite optimum: the fit sharpens until the gradient vanishes at double
    /// precision. Logits that point the wrong way get the flattest T (every probability 0.5),
    /// since a temperature cannot reverse them.
    pub fn fit(logits: &[f64], positive: &[bool]) -> Result<Temperature, CalibrationError> {
        assert_eq!(logits.len(), positive.len(), "one label per score");
        check_fit_input(logits, positive)?;
        let n = logits.len() as f64;
        // Loss in s = 1 / T: sum of softplus(-s z) for positives and softplus(s z) for negatives.
        let loss = |s: f64| -> f64 {
            logits.iter().zip(positive).map(|(&z, &y)| if y { softplus(-s * z) } else { softplus(s * z) }).sum()
        };
        let (s_min, s_max) = (1e-6, 1e3);
        let mut s = 1.0;
        let mut current = loss(s);
        for _ in 0..200 {
            let (mut g, mut h) = (0.0, 0.0);
            for (&z, &y) in logits.iter().zip(positive) {
                let p = crate::sigmoid(s * z);
                g += (p - f64::from(u8::from(y))) * z;
                h += p * (1.0 - p) * z * z;
            }
            if g.abs() < 1e-12 * n || (s >= s_max && g < 0.0) || (s <= s_min && g > 0.0) {
                return Ok(Temperature { temperature: 1.0 / s });
            }
            let step_full = if h > 0.0 { -g / h } else { -g.signum() };
            let mut step = 1.0;
            loop {
                let candidate_s = (s + step * step_full).clamp(s_min, s_max);
                let candidate = loss(candidate_s);
                // Armijo on the step actually taken (the bounds may have shortened it).
                if candidate <= current + 1e-4 * g * (candidate_s - s) {
                    let settled = current - candidate <= 1e-15 * current.abs();
                    s = candidate_s;
                    current = candidate;
                    if settled {
                        return Ok(Temperature { temperature: 1.0 / s });
                    }
                    break;
                }
                step /= 2.0;
                if step < 1e-12 {
                    return Ok(Temperature { temperature: 1.0 / s });
                }
            }
        }
        Err(CalibrationError::NoConvergence(200))
    }

    /// Calibrated probability of a logit.
    pub fn probability(&self, logit: f64) -> f64 {
        crate::sigmoid(logit / self.temperature)
    }
}

/// Every score finite and both classes present (what every calibrator's fit needs): the
/// positive and negative counts.
fn check_fit_input(scores: &[f64], positive: &[bool]) -> Result<(usize, usize), CalibrationError> {
    if let Some(&bad) = scores.iter().find(|s| !s.is_finite()) {
        return Err(CalibrationError::NonFinite(bad));
    }
    let positives = positive.iter().filter(|&&p| p).count();
    let negatives = positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(CalibrationError::OneClass { positives, negatives });
    }
    Ok((positives, negatives))
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

/// P value of an ECE under the hypothesis that the probabilities are calibrated, by consistency
/// resampling (Bröcker and Smith 2007): the labels are redrawn `resamples` times, each case's
/// as a Bernoulli draw of its own probability, and the P value is `(1 + k) / (1 + resamples)`
/// where `k` redraws had an ECE at least the observed one. A few labelled cases give a large
/// ECE by chance alone (about 0.15 on average for 60 calibrated cases spread over 10 bins);
/// this says whether the observed ECE is more than that. Deterministic for a given `seed`,
/// whatever the cases' order.
pub fn ece_consistency_p(probability: &[f64], positive: &[bool], bins: usize, resamples: usize, seed: u64) -> f64 {
    assert!(bins > 0 && resamples > 0, "at least one bin and one resample");
    assert_eq!(probability.len(), positive.len(), "one label per probability");
    let n = probability.len() as f64;
    let bin = |p: f64| ((p * bins as f64).floor().max(0.0) as usize).min(bins - 1);
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    for (&p, &y) in probability.iter().zip(positive) {
        sum_p[bin(p)] += p;
        sum_y[bin(p)] += f64::from(u8::from(y));
    }
    // With per-bin sums, ECE = sum over bins of |positives - sum of p| / n.
    let ece_of = |sum_y: &[f64]| sum_y.iter().zip(&sum_p).map(|(y, p)| (y - p).abs()).sum::<f64>() / n;
    let observed = ece_of(&sum_y);
    // Redraw in sorted order, so the P value depends on the cases, not on their order.
    let mut sorted = probability.to_vec();
    sorted.sort_by(f64::total_cmp);
    let bin_of: Vec<usize> = sorted.iter().map(|&p| bin(p)).collect();
    let mut rng = crate::curves::SplitMix64(seed);
    let mut at_least = 0usize;
    for _ in 0..resamples {
        sum_y.iter_mut().for_each(|v| *v = 0.0);
        for (&b, &p) in bin_of.iter().zip(&sorted) {
            if rng.uniform() < p {
                sum_y[b] += 1.0;
            }
        }
        // A redraw ties the observed ECE only by the same counts; compare with a little slack
        // for rounding in the sums.
        if ece_of(&sum_y) >= observed - 1e-12 {
            at_least += 1;
        }
    }
    (1 + at_least) as f64 / (1 + resamples) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator for the tests.
    fn draws(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = crate::curves::SplitMix64(seed);
        (0..n).map(|_| rng.uniform()).collect()
    }

    /// Under calibration the P value is uniform: over 400 samples of 60 calibrated cases, the
    /// share below 0.05 is 0.05 up to sampling (binomial SD 0.011; accepted 0.02..0.09) and the
    /// share below 0.5 likewise (accepted 0.42..0.58). Probabilities pushed towards 0.5 (0.5 +
    /// 0.1 (p - 0.5)) of the same cases give P below 0.01 in at least 98% of samples (observed
    /// 399 of 400).
    #[test]
    fn ece_consistency_p_is_uniform_under_calibration_and_small_when_squashed() {
        let (mut below_05, mut below_50, mut squashed_found) = (0, 0, 0);
        let samples = 400;
        for s in 0..samples {
            let u = draws(100 + s, 120);
            // Probabilities mostly near 0 or 1, labels drawn from them.
            let p: Vec<f64> = (0..60)
                .map(|i| if u[2 * i] < 0.5 { u[2 * i + 1].powi(3) } else { 1.0 - u[2 * i + 1].powi(3) })
                .collect();
            let y: Vec<bool> = draws(5000 + s, 60).iter().zip(&p).map(|(r, p)| r < p).collect();
            let pv = ece_consistency_p(&p, &y, 10, 999, s);
            below_05 += usize::from(pv < 0.05);
            below_50 += usize::from(pv < 0.5);
            let squashed: Vec<f64> = p.iter().map(|p| 0.5 + 0.1 * (p - 0.5)).collect();
            squashed_found += usize::from(ece_consistency_p(&squashed, &y, 10, 999, s) < 0.01);
        }
        let (r05, r50) = (below_05 as f64 / samples as f64, below_50 as f64 / samples as f64);
        println!("P below 0.05: {r05}; below 0.5: {r50}; squashed below 0.01: {squashed_found} of {samples}");
        assert!((0.02..0.09).contains(&r05), "share below 0.05: {r05}");
        assert!((0.42..0.58).contains(&r50), "share below 0.5: {r50}");
        assert!(squashed_found as f64 >= 0.98 * samples as f64, "{squashed_found} of {samples}");
    }

    /// The observed ECE is the redraws' reference point: a sample whose labels are all wrong
    /// (p near 1, benign) has P = 1 / (1 + resamples), the smallest there is.
    #[test]
    fn ece_consistency_p_of_a_hopeless_sample_is_the_smallest_possible() {
        let p = vec![0.95; 40];
        let y = vec![false; 40];
        assert_eq!(ece_consistency_p(&p, &y, 10, 199, 3), 1.0 / 200.0);
    }

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
    fn a_non_decreasing_platt_never_turns_a_model_around() {
        // Ten rows on which the scores rank the outcomes backwards: plain Platt inverts them.
        let s = [0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.65, 0.7, 0.8, 0.9];
        let y = [true, true, true, false, true, false, true, false, false, false];
        // Unequal classes make the flat level informative: one more positive.
        let y3 = [true, true, true, false, true, false, true, true, false, false];
        let k3 = Platt::fit_non_decreasing(&s, &y3).unwrap();
        assert!(Platt::fit(&s, &y3).unwrap().a > 0.0 && k3.a == 0.0);
        assert!((k3.probability(0.5) - (6.0 * 7.0 / 8.0 + 4.0 / 6.0) / 10.0).abs() < 1e-12, "{k3:?}");
        let plain = Platt::fit(&s, &y).unwrap();
        assert!(plain.a > 0.0, "{plain:?}");
        let kept = Platt::fit_non_decreasing(&s, &y).unwrap();
        assert_eq!(kept.a, 0.0);
        // Flat at the smoothed positive rate: five of each, (5 * 6/7 + 5 * 1/7) / 10.
        let want = (5.0 * 6.0 / 7.0 + 5.0 / 7.0) / 10.0;
        assert!(s.iter().all(|&v| (kept.probability(v) - want).abs() < 1e-12), "{kept:?}");
        // Scores that rank the right way: the same fit as plain Platt.
        let right: Vec<bool> = y.iter().map(|v| !v).collect();
        assert_eq!(Platt::fit_non_decreasing(&s, &right).unwrap(), Platt::fit(&s, &right).unwrap());
    }

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

    #[test]
    fn isotonic_pools_violators_and_interpolates_between_knots() {
        // Outcomes by score: 1: 0; 2: 1; 3: 0 -> 2 and 3 pool to 0.5; 4: 1, 1.
        let iso = Isotonic::fit(&[1.0, 2.0, 3.0, 4.0, 4.0], &[false, true, false, true, true]).unwrap();
        assert_eq!(iso.knots, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(iso.values, vec![0.0, 0.5, 0.5, 1.0]);
        // Linear between knots, clipped outside.
        assert!((iso.probability(1.5) - 0.25).abs() < 1e-15);
        assert!((iso.probability(3.5) - 0.75).abs() < 1e-15);
        assert_eq!((iso.probability(-9.0), iso.probability(9.0)), (0.0, 1.0));
        // A tie of mixed outcomes is one knot at its mean.
        let tied = Isotonic::fit(&[0.2, 0.2, 0.2, 0.9], &[true, false, false, true]).unwrap();
        assert_eq!(tied.values, vec![1.0 / 3.0, 1.0]);
        assert!(matches!(Isotonic::fit(&[0.1, f64::NAN], &[true, false]), Err(CalibrationError::NonFinite(_))));
    }

    #[test]
    fn temperature_recovers_a_known_scale_and_stays_in_bounds() {
        // Outcomes drawn in proportion 1 / (1 + exp(-z / 2.5)) at each logit: T = 2.5.
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for k in -6..=6 {
            let logit = k as f64;
            let positives = (crate::sigmoid(logit / 2.5) * 10_000.0).round() as usize;
            for i in 0..10_000 {
                z.push(logit);
                y.push(i < positives);
            }
        }
        let t = Temperature::fit(&z, &y).unwrap();
        assert!((t.temperature - 2.5).abs() < 1e-3, "{t:?}");
        assert!((t.probability(2.5) - crate::sigmoid(1.0)).abs() < 1e-3);
        // Perfectly separated logits: no finite optimum; the fit sharpens until the gradient
        // vanishes at double precision (every training case within 1e-9 of its label), not an
        // error.
        let sharp = Temperature::fit(&[-1.0, -0.5, 0.5, 1.0], &[false, false, true, true]).unwrap();
        assert!(sharp.temperature < 0.05, "{sharp:?}");
        assert!(sharp.probability(0.5) > 1.0 - 1e-9 && sharp.probability(-0.5) < 1e-9, "{sharp:?}");
        // Logits pointing the wrong way: the flattest temperature allowed (every p near 0.5).
        let wrong = Temperature::fit(&[-1.0, -0.5, 0.5, 1.0], &[true, true, false, false]).unwrap();
        assert!((wrong.probability(1.0) - 0.5).abs() < 1e-5, "{wrong:?}");
        assert!(matches!(Temperature::fit(&[1.0], &[true]), Err(CalibrationError::OneClass { .. })));
    }
}
