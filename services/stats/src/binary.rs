//! Binary classification at a threshold: the confusion matrix, the rates a clinical table
//! reports, their confidence intervals, and the exact tests the study used.
//!
//! Positive means malignant throughout. Rates with an empty denominator are `NaN`, never a
//! silently invented 0 or 1.

/// Standard normal quantile for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Counts of a binary confusion matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Confusion {
    /// Positives called positive.
    pub tp: u64,
    /// Negatives called positive.
    pub fp: u64,
    /// Negatives called negative.
    pub tn: u64,
    /// Positives called negative (`fn` in JSON; `fn` is a Rust keyword).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

impl Confusion {
    /// Count calls against the truth (both `true` = positive).
    pub fn from_calls(called_positive: &[bool], positive: &[bool]) -> Confusion {
        assert_eq!(called_positive.len(), positive.len(), "one call per label");
        let mut c = Confusion::default();
        for (&call, &truth) in called_positive.iter().zip(positive) {
            match (call, truth) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// Calls at `threshold`: a probability at or above it is positive.
    pub fn at_threshold(probability: &[f64], positive: &[bool], threshold: f64) -> Confusion {
        let calls: Vec<bool> = probability.iter().map(|&p| p >= threshold).collect();
        Confusion::from_calls(&calls, positive)
    }

    /// All cases.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// Positives.
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }
    /// Negatives.
    pub fn negatives(&self) -> u64 {
        self.tn + self.fp
    }
    /// (TP + TN) / N.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.n())
    }
    /// Sensitivity (recall, true-positive rate): TP / (TP + FN).
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.positives())
    }
    /// Specificity (true-negative rate): TN / (TN + FP).
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.negatives())
    }
    /// Positive predictive value (precision): TP / (TP + FP).
    pub fn ppv(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Negative predictive value: TN / (TN + FN).
    pub fn npv(&self) -> f64 {
        ratio(self.tn, self.tn + self.fn_)
    }
    /// False discovery rate: FP / (TP + FP) = 1 - PPV.
    pub fn fdr(&self) -> f64 {
        ratio(self.fp, self.tp + self.fp)
    }
    /// F1: 2 TP / (2 TP + FP + FN), the harmonic mean of PPV and sensitivity.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    /// The zero rule's accuracy: the share of the larger class (what always calling the
    /// majority class would score on these cases).
    pub fn zero_rule_rate(&self) -> f64 {
        ratio(self.positives().max(self.negatives()), self.n())
    }
}

/// Adjusted Wald (Agresti–Coull) interval for a proportion `successes / n` at normal quantile
/// `z`: add `z²/2` successes and `z²/2` failures, then take the Wald interval of the adjusted
/// proportion; clipped to [0, 1]. (Agresti & Coull 1998, "Approximate is better than 'exact'".)
pub fn adjusted_wald(successes: u64, n: u64, z: f64) -> [f64; 2] {
    if n == 0 {
        return [f64::NAN, f64::NAN];
    }
    let z2 = z * z;
    let n_adj = n as f64 + z2;
    let p = (successes as f64 + z2 / 2.0) / n_adj;
    let half = z * (p * (1.0 - p) / n_adj).sqrt();
    [(p - half).max(0.0), (p + half).min(1.0)]
}

/// Natural logarithms of the Binomial(n, p) probabilities of 0..=n successes.
fn binomial_log_pmf(n: u64, p: f64) -> Vec<f64> {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0f64;
    let mut out = Vec::with_capacity(n as usize + 1);
    for k in 0..=n {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        // 0 * ln(0) is 0 here: p = 0 or 1 put all mass on one end.
        let a = if k == 0 { 0.0 } else { k as f64 * lp };
        let b = if k == n { 0.0 } else { (n - k) as f64 * lq };
        out.push(ln_choose + a + b);
    }
    out
}

/// Exact two-sided binomial test of `k` successes in `n` trials against success probability
/// `p`: the total probability of every outcome no more likely than the observed one (the
/// "minimum likelihood" method of R's `binom.test` and SciPy's `binomtest`, with the same
/// relative slack of 1e-7 for ties in floating point).
pub fn binomial_test_two_sided(k: u64, n: u64, p: f64) -> f64 {
    assert!(k <= n && (0.0..=1.0).contains(&p), "k {k} of n {n}, p {p}");
    let log_pmf = binomial_log_pmf(n, p);
    let observed = log_pmf[k as usize];
    let cutoff = observed + (1.0 + 1e-7f64).ln();
    let total: f64 = log_pmf.iter().filter(|&&l| l <= cutoff).map(|l| l.exp()).sum();
    total.min(1.0)
}

/// Exact McNemar test for paired calls (two readers, or a model and a reader, on the same
/// cases): `b` = cases only the first got right, `c` = only the second. Two-sided binomial test
/// of `b` in `b + c` against 1/2; 1 when the two never disagree.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    if b + c == 0 {
        return 1.0;
    }
    binomial_test_two_sided(b, b + c, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_their_definitions() {
        let c = Confusion { tp: 8, fp: 2, tn: 6, fn_: 4 };
        assert_eq!(c.n(), 20);
        assert_eq!(c.accuracy(), 0.7);
        assert_eq!(c.sensitivity(), 8.0 / 12.0);
        assert_eq!(c.specificity(), 0.75);
        assert_eq!(c.ppv(), 0.8);
        assert_eq!(c.npv(), 0.6);
        assert!((c.fdr() - 0.2).abs() < 1e-15);
        assert_eq!(c.f1(), 16.0 / 22.0);
        assert_eq!(c.zero_rule_rate(), 0.6);
        let calls = Confusion::at_threshold(&[0.9, 0.5, 0.49, 0.1], &[true, false, true, false], 0.5);
        assert_eq!(calls, Confusion { tp: 1, fp: 1, tn: 1, fn_: 1 });
        assert!(Confusion::default().accuracy().is_nan());
    }

    #[test]
    fn binomial_test_matches_closed_forms() {
        // Symmetric case: P(X >= 9 or X <= 1) for Binomial(10, 1/2) = 22 / 1024.
        assert!((binomial_test_two_sided(9, 10, 0.5) - 22.0 / 1024.0).abs() < 1e-15);
        // The most likely outcome has p = 1.
        assert_eq!(binomial_test_two_sided(5, 10, 0.5), 1.0);
        // Degenerate p: only k = n is possible under p = 1.
        assert_eq!(binomial_test_two_sided(3, 3, 1.0), 1.0);
        assert!(binomial_test_two_sided(2, 3, 1.0) < 1e-300);
        // McNemar: 0 vs 6 discordant pairs is 2 / 64.
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-15);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }

    #[test]
    fn adjusted_wald_stays_inside_the_unit_interval() {
        let [lo, hi] = adjusted_wald(0, 5, Z95);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.4 && hi < 0.6, "{hi}");
        let [lo, hi] = adjusted_wald(5, 5, Z95);
        assert!(lo > 0.4 && hi == 1.0);
        assert!(adjusted_wald(0, 0, Z95)[0].is_nan());
    }
}
