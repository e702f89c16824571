//! Statistics for model evaluation.
//!
//! Pure functions on slices: no I/O, no randomness that the caller does not seed.
//!
//! ```
//! use renal_stats::roc_auc;
//! // Every positive outranks every negative but one tie: AUC = (3 + 0.5) / 4.
//! let auc = roc_auc(&[0.9, 0.8, 0.3, 0.8], &[true, true, false, false]).unwrap();
//! assert!((auc - 0.875).abs() < 1e-12);
//! ```

pub mod binary;
pub mod calibration;
pub mod curves;
pub mod delong;
pub mod drift;
pub mod logistic;
pub mod tsne;

pub use binary::{adjusted_wald, binomial_test_two_sided, mcnemar_exact, Confusion, Z95};
pub use calibration::{
    ece_consistency_p, expected_calibration_error, reliability_bins, CalibrationError, Isotonic, Platt, ReliabilityBin,
    Temperature,
};
pub use curves::{average_precision, bootstrap_ci, brier, log_loss, pr_auc_trapezoid, pr_curve, roc_curve, Curve};
pub use delong::{delong_paired, normal_quantile, normal_sf, PairedAuc};
pub use logistic::{LogisticError, LogisticModel};
pub use tsne::{tsne, TsneMap, TsneSettings};

/// The logistic function `1 / (1 + exp(-z))`, without overflow for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Pearson's correlation coefficient of paired samples (`NaN` when either is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "paired samples");
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Coefficient of variation: sample standard deviation (n - 1) over the mean; 0 for fewer than
/// two values.
pub fn coefficient_of_variation(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in values {
        // Welford's update: stable for long runs of similar values.
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    if n < 2.0 {
        return 0.0;
    }
    (m2 / (n - 1.0)).sqrt() / mean
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney U statistic over `n_pos * n_neg`).
/// `None` when either class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len(), "one label per score");
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mid-ranks for ties, 1-based.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            if positive[o] {
                rank_sum_pos += mid_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_and_cv_by_hand() {
        // y = 2x + 1 exactly: r = 1; reversed: r = -1.
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &[3.0, 5.0, 7.0, 9.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &[9.0, 7.0, 5.0, 3.0]) + 1.0).abs() < 1e-12);
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32 / 7.
        let cv = coefficient_of_variation([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((cv - (32.0f64 / 7.0).sqrt() / 5.0).abs() < 1e-12);
        assert_eq!(coefficient_of_variation([3.0]), 0.0);
    }

    /// The definition, counted pair by pair.
    fn auc_by_pairs(scores: &[f64], positive: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (a, &pa) in scores.iter().zip(positive) {
            for (b, &pb) in scores.iter().zip(positive) {
                if pa && !pb {
                    den += 1.0;
                    num += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn matches_pairwise_definition_with_ties() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.05, 0.6, 0.6];
        let labels = [false, false, true, true, true, false, true, false, false, true];
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!((auc - auc_by_pairs(&scores, &labels)).abs() < 1e-15);
    }

    #[test]
    fn perfect_inverted_and_degenerate() {
        assert_eq!(roc_auc(&[1.0, 2.0], &[false, true]), Some(1.0));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, false]), Some(0.0));
        assert_eq!(roc_auc(&[1.0, 1.0], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
    }
}
