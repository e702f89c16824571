//! Threshold-free measures of a score: ROC and precision–recall curves, average precision, the
//! trapezoidal PR AUC, the Brier score, and percentile bootstrap intervals.
//!
//! Conventions follow scikit-learn, so numbers can be compared with it digit for digit: curves
//! have one point per distinct score (highest first), ROC starts at (0, 0), and the PR curve
//! ends at recall 0 with precision 1.

/// One point per distinct score, highest score first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Curve {
    /// ROC: false-positive rate; PR: recall.
    pub x: Vec<f64>,
    /// ROC: true-positive rate; PR: precision.
    pub y: Vec<f64>,
    /// The score at or above which cases are called positive at this point.
    pub thresholds: Vec<f64>,
}

/// Cumulative (true positives, false positives) at each distinct score, highest first.
fn cumulative_counts(scores: &[f64], positive: &[bool]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(scores.len(), positive.len(), "one label per score");
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tps, mut fps, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0.0, 0.0);
    for (n, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = n + 1 == order.len() || scores[order[n + 1]] != scores[i];
        if last_of_tie {
            tps.push(tp);
            fps.push(fp);
            thresholds.push(scores[i]);
        }
    }
    (tps, fps, thresholds)
}

/// ROC curve; `None` when either class is absent.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Option<Curve> {
    let (tps, fps, thresholds) = cumulative_counts(scores, positive);
    let (p, n) = (*tps.last()?, *fps.last()?);
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let mut c = Curve { x: vec![0.0], y: vec![0.0], thresholds: vec![f64::INFINITY] };
    for ((tp, fp), t) in tps.iter().zip(&fps).zip(thresholds) {
        c.x.push(fp / n);
        c.y.push(tp / p);
        c.thresholds.push(t);
    }
    Some(c)
}

/// Precision–recall curve, recall rising; `None` without positives. The last point is
/// (recall 0, precision 1), as scikit-learn's `precision_recall_curve` ends.
pub fn pr_curve(scores: &[f64], positive: &[bool]) -> Option<Curve> {
    let (tps, fps, thresholds) = cumulative_counts(scores, positive);
    let p = *tps.last()?;
    if p == 0.0 {
        return None;
    }
    // Stop at the first threshold reaching full recall (lower ones add only false positives).
    let full = tps.iter().position(|&tp| tp == p).expect("the last point has every positive");
    let mut c = Curve { x: Vec::new(), y: Vec::new(), thresholds: Vec::new() };
    for i in (0..=full).rev() {
        c.x.push(tps[i] / p);
        c.y.push(tps[i] / (tps[i] + fps[i]));
        c.thresholds.push(thresholds[i]);
    }
    c.x.push(0.0);
    c.y.push(1.0);
    Some(c)
}

/// Average precision: `sum_n (R_n - R_(n-1)) P_n` over the thresholds, highest first (the
/// step-wise area under the PR curve, no interpolation; scikit-learn's
/// `average_precision_score`). `None` without positives.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let c = pr_curve(scores, positive)?;
    // c runs recall high to low; walk it from the end (recall 0).
    let mut ap = 0.0;
    for i in (0..c.x.len() - 1).rev() {
        ap += (c.x[i] - c.x[i + 1]) * c.y[i];
    }
    Some(ap)
}

/// Area under the PR curve by the trapezoid rule over recall (scikit-learn's
/// `auc(recall, precision)`); interpolating linearly between PR points is optimistic, which is
/// why average precision is the headline number. `None` without positives.
pub fn pr_auc_trapezoid(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let c = pr_curve(scores, positive)?;
    Some(c.x.windows(2).zip(c.y.windows(2)).map(|(x, y)| (x[0] - x[1]) * (y[0] + y[1]) / 2.0).sum())
}

/// Brier score: mean squared difference between probability and outcome (0 = perfect).
pub fn brier(probability: &[f64], positive: &[bool]) -> f64 {
    assert_eq!(probability.len(), positive.len(), "one label per probability");
    let sum: f64 = probability.iter().zip(positive).map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2)).sum();
    sum / probability.len() as f64
}

/// Mean log loss (cross-entropy) of probabilities against outcomes, probabilities clamped to
/// [1e-15, 1 - 1e-15] (scikit-learn's `log_loss` clamp).
pub fn log_loss(probability: &[f64], positive: &[bool]) -> f64 {
    assert_eq!(probability.len(), positive.len(), "one label per probability");
    let total: f64 = probability
        .iter()
        .zip(positive)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            -if y { p.ln() } else { (1.0 - p).ln() }
        })
        .sum();
    total / probability.len() as f64
}

/// SplitMix64: a small, well-mixed seeded generator, so that bootstrap intervals are the same
/// on every run and machine for a given seed.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (Lemire's multiply-shift; the bias is below 2^-32 for the sizes here).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in [0, 1), 53 bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Percentile bootstrap 95% interval of `statistic` over `n` cases: `resamples` draws of `n`
/// case indices with replacement; draws where the statistic is undefined (`None`, e.g. a
/// resample without positives for an AUC) are skipped and do not count.
pub fn bootstrap_ci(
    n: usize,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> Option<f64>,
) -> Option<[f64; 2]> {
    let mut rng = SplitMix64(seed);
    let mut values = Vec::with_capacity(resamples);
    let mut draw = vec![0usize; n];
    for _ in 0..resamples {
        for d in draw.iter_mut() {
            *d = rng.below(n);
        }
        if let Some(v) = statistic(&draw) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some([quantile_sorted(&values, 0.025), quantile_sorted(&values, 0.975)])
}

/// Linear-interpolation quantile of sorted values (NumPy's default, "linear").
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_on_a_hand_worked_example() {
        // Scores 0.9 P, 0.8 N, 0.7 P, 0.7 N, 0.2 P.
        let s = [0.9, 0.8, 0.7, 0.7, 0.2];
        let y = [true, false, true, false, true];
        let roc = roc_curve(&s, &y).unwrap();
        assert_eq!(roc.x, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
        assert_eq!(roc.y, vec![0.0, 1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
        // AP: recall steps of 1/3 at precisions 1, 2/4, 3/5.
        let ap = average_precision(&s, &y).unwrap();
        assert!((ap - (1.0 + 0.5 + 0.6) / 3.0).abs() < 1e-15, "{ap}");
        let pr = pr_curve(&s, &y).unwrap();
        assert_eq!(pr.x, vec![1.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
        assert_eq!(*pr.y.last().unwrap(), 1.0);
        assert!(roc_curve(&s, &[true; 5]).is_none());
        assert!(average_precision(&s, &[false; 5]).is_none());
        assert_eq!(brier(&[1.0, 0.0, 0.5], &[true, false, true]), 0.25 / 3.0);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let data: Vec<f64> = (0..200).map(|i| f64::from(i % 10)).collect();
        let mean = |idx: &[usize]| Some(idx.iter().map(|&i| data[i]).sum::<f64>() / idx.len() as f64);
        let a = bootstrap_ci(data.len(), 500, 3, mean).unwrap();
        assert_eq!(a, bootstrap_ci(data.len(), 500, 3, mean).unwrap());
        // Mean 4.5, standard error 2.87 / sqrt(200) = 0.20: the interval is about 4.5 +- 0.4.
        assert!(a[0] > 3.9 && a[0] < 4.3 && a[1] > 4.7 && a[1] < 5.1, "{a:?}");
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    }
}
