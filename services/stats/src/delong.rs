//! DeLong's test for two ROC AUCs measured on the same cases (DeLong, DeLong and
//! Clarke-Pearson, Biometrics 1988), with the mid-rank computation of its structural
//! components (Sun and Xu, IEEE Signal Processing Letters 2014).
//!
//! For model r, each positive's component is the share of negatives it outranks
//! (V10, ties one half) and each negative's the share of positives that outrank it (V01); the
//! AUC is the mean of either. Their sample covariances across the two models (S10 over the m
//! positives, S01 over the n negatives) give the variance of the AUC difference:
//! `var = (S10_11 + S10_22 - 2 S10_12) / m + (S01_11 + S01_22 - 2 S01_12) / n`.
//! The trainer uses it to decide whether a challenger is worse than the champion by more than
//! a margin ([`PairedAuc::lower_bound`]).

/// Two models' ROC AUCs on the same cases and the DeLong variance of their difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedAuc {
    /// ROC AUC of the first model.
    pub auc_a: f64,
    /// ROC AUC of the second model.
    pub auc_b: f64,
    /// DeLong variance of `auc_b - auc_a`.
    pub var_diff: f64,
    /// Positives and negatives.
    pub cases: (usize, usize),
}

impl PairedAuc {
    /// `auc_b - auc_a`.
    pub fn diff(&self) -> f64 {
        self.auc_b - self.auc_a
    }

    /// z statistic of the difference (`auc_b - auc_a` over its standard error); infinite or
    /// NaN when the variance is zero.
    pub fn z(&self) -> f64 {
        self.diff() / self.var_diff.sqrt()
    }

    /// Two-sided P value of "the AUCs are equal" (1 when both AUCs and the variance are equal
    /// to nothing to test: identical rankings).
    pub fn p_two_sided(&self) -> f64 {
        if self.var_diff <= 0.0 {
            return if self.diff() == 0.0 { 1.0 } else { 0.0 };
        }
        (2.0 * normal_sf(self.z().abs())).min(1.0)
    }

    /// One-sided lower confidence bound of `auc_b - auc_a` at level `level` (e.g. 0.95):
    /// `diff - z_level * se`. The challenger (b) is "not worse than the champion (a) by more
    /// than δ" when this bound is above `-δ`.
    pub fn lower_bound(&self, level: f64) -> f64 {
        self.diff() - normal_quantile(level) * self.var_diff.max(0.0).sqrt()
    }
}

/// Mid-ranks (1-based; ties share the mean of their ranks) of `values`.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = mid;
        }
        i = j + 1;
    }
    ranks
}

/// The structural components of one model: (V10 per positive, V01 per negative).
fn components(scores: &[f64], positive: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let pos: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| p).map(|(&s, _)| s).collect();
    let neg: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| !p).map(|(&s, _)| s).collect();
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let (r_all, r_pos, r_neg) = (midranks(&all), midranks(&pos), midranks(&neg));
    // A positive's rank among all cases less its rank among positives counts the negatives
    // below it (ties one half).
    let v10 = (0..pos.len()).map(|i| (r_all[i] - r_pos[i]) / n).collect();
    let v01 = (0..neg.len()).map(|j| 1.0 - (r_all[pos.len() + j] - r_neg[j]) / m).collect();
    (v10, v01)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample covariance (divisor len - 1) of two equally long series.
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (a.len() as f64 - 1.0)
}

/// DeLong's comparison of models a and b scored on the same cases. `None` unless there are at
/// least two positives and two negatives.
pub fn delong_paired(scores_a: &[f64], scores_b: &[f64], positive: &[bool]) -> Option<PairedAuc> {
    assert!(scores_a.len() == positive.len() && scores_b.len() == positive.len(), "one label per score");
    let m = positive.iter().filter(|&&p| p).count();
    let n = positive.len() - m;
    if m < 2 || n < 2 {
        return None;
    }
    let (a10, a01) = components(scores_a, positive);
    let (b10, b01) = components(scores_b, positive);
    let s10 = covariance(&a10, &a10) + covariance(&b10, &b10) - 2.0 * covariance(&a10, &b10);
    let s01 = covariance(&a01, &a01) + covariance(&b01, &b01) - 2.0 * covariance(&a01, &b01);
    Some(PairedAuc { auc_a: mean(&a10), auc_b: mean(&b10), var_diff: s10 / m as f64 + s01 / n as f64, cases: (m, n) })
}

/// Upper tail of the standard normal distribution, `P(Z > z)`, through libm's erfc (FreeBSD's,
/// accurate to an ulp or so), so far tails keep their relative precision.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The `p` quantile of the standard normal distribution (Acklam's approximation refined by
/// one Halley step on [`normal_sf`]; absolute error below 1e-12 for p in [1e-10, 1 - 1e-10]).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of {p}");
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step: e = Phi(x) - p.
    let e = (1.0 - normal_sf(x)) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_tail_and_quantile_match_known_values() {
        // Tables: Phi(1.959963984540054) = 0.975; P(Z > 3) = 1.3498980316300946e-3.
        assert!((normal_sf(1.959963984540054) - 0.025).abs() < 1e-15);
        assert!((normal_sf(3.0) - 1.3498980316300946e-3).abs() < 1e-17);
        assert!((normal_sf(-1.0) - 0.8413447460685429).abs() < 1e-15);
        assert!((normal_quantile(0.95) - 1.6448536269514722).abs() < 1e-12);
        assert!((normal_quantile(0.025) + 1.959963984540054).abs() < 1e-12);
        assert!((normal_quantile(1e-6) + 4.753424308822899).abs() < 1e-10);
    }

    #[test]
    fn components_average_to_the_auc_and_identical_models_do_not_differ() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.4, 0.2, 0.9];
        let labels = [false, false, true, true, true, true, false, false];
        let p = delong_paired(&scores, &scores, &labels).unwrap();
        let auc = crate::roc_auc(&scores, &labels).unwrap();
        assert!((p.auc_a - auc).abs() < 1e-15 && (p.auc_b - auc).abs() < 1e-15);
        assert_eq!((p.var_diff, p.p_two_sided(), p.cases), (0.0, 1.0, (4, 4)));
        // A model that ranks every case the other way is worse, and the test says so.
        let flipped: Vec<f64> = scores.iter().map(|s| 1.0 - s).collect();
        let q = delong_paired(&scores, &flipped, &labels).unwrap();
        assert!((q.auc_b - (1.0 - auc)).abs() < 1e-12);
        assert!(q.lower_bound(0.95) < q.diff());
        assert_eq!(delong_paired(&[0.1, 0.2, 0.3], &[0.1, 0.2, 0.3], &[true, false, false]), None);
    }
}
