//! The stacked ensemble, leak-free: the meta-classifier (bagged trees) learns from out-of-fold
//! predictions of the base models (T2, T1C, clinical), and the Platt calibrator is fitted on
//! rows the meta-classifier never saw.
//!
//! The study trained its meta-classifier on the base models' predictions for their own training
//! images (8,000 augmented rows of 816 lesions the models had fitted) and picked it by test
//! accuracy (`method_notes.md` §3, §6); here the base models' training-set predictions come from
//! [`out_of_fold`], and selection and calibration use separate rows.

use crate::bagging::{Bagging, BaggingSettings};
use crate::split::{partition, Lesion, SplitError};
use renal_stats::{CalibrationError, Platt};

/// Out-of-fold predictions: the lesions are cut into `k` patient-grouped parts; for each part,
/// `fit_predict(train, predict)` fits a model on the other parts and returns its predictions for
/// `predict`, in order. Every lesion gets exactly one prediction from a model that did not see it.
pub fn out_of_fold(
    lesions: &[Lesion],
    k: usize,
    seed: u64,
    mut fit_predict: impl FnMut(&[usize], &[usize]) -> Vec<f64>,
) -> Result<Vec<f64>, SplitError> {
    let parts = partition(lesions, k, seed)?;
    let mut out = vec![f64::NAN; lesions.len()];
    for (i, part) in parts.iter().enumerate() {
        let train: Vec<usize> =
            parts.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, p)| p.clone()).collect();
        let predicted = fit_predict(&train, part);
        assert_eq!(predicted.len(), part.len(), "one prediction per held-out lesion");
        for (&row, p) in part.iter().zip(predicted) {
            out[row] = p;
        }
    }
    Ok(out)
}

/// Why an ensemble could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// The rows could not be cut into folds.
    #[error("ensemble folds: {0}")]
    Folds(#[from] SplitError),
    /// The calibrator did not fit.
    #[error("ensemble calibration: {0}")]
    Calibration(#[from] CalibrationError),
}

/// A fitted ensemble: bagged trees over the base outputs, then Platt scaling.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ensemble {
    /// The meta-classifier.
    pub meta: Bagging,
    /// The calibrator of its output.
    pub platt: Platt,
}

impl Ensemble {
    /// Fit the meta-classifier on `meta_x` (one row of base-model probabilities per lesion,
    /// out-of-fold) and the calibrator on `calibration_x` (base outputs on other lesions).
    pub fn fit(
        meta_x: &[Vec<f64>],
        meta_y: &[bool],
        calibration_x: &[Vec<f64>],
        calibration_y: &[bool],
        settings: &BaggingSettings,
    ) -> Result<Ensemble, CalibrationError> {
        let meta = Bagging::fit(meta_x, meta_y, settings);
        let raw: Vec<f64> = calibration_x.iter().map(|r| meta.probability(r)).collect();
        let platt = Platt::fit(&raw, calibration_y)?;
        Ok(Ensemble { meta, platt })
    }

    /// Fit both parts on one set of rows by cross-fitting: the meta-classifier on all of them;
    /// the calibrator on out-of-fold meta scores (`k` patient-grouped folds, each scored by a
    /// meta-classifier fitted on the other folds), so no calibration score comes from trees
    /// that saw its row. For when the rows the base models never trained on are few (the
    /// validation part of one split).
    pub fn fit_cross_fitted(
        lesions: &[Lesion],
        x: &[Vec<f64>],
        y: &[bool],
        k: usize,
        settings: &BaggingSettings,
    ) -> Result<Ensemble, EnsembleError> {
        let oof = out_of_fold(lesions, k, settings.seed, |train, predict| {
            let tx: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
            let ty: Vec<bool> = train.iter().map(|&i| y[i]).collect();
            let meta = Bagging::fit(&tx, &ty, settings);
            predict.iter().map(|&i| meta.probability(&x[i])).collect()
        })?;
        let platt = Platt::fit(&oof, y)?;
        Ok(Ensemble { meta: Bagging::fit(x, y, settings), platt })
    }

    /// Calibrated probability of malignancy.
    pub fn probability(&self, base_outputs: &[f64]) -> f64 {
        self.platt.probability(self.meta.probability(base_outputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn lesions(n: usize, seed: u64) -> (Vec<Lesion>, Vec<Vec<f64>>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut l = Vec::new();
        let mut x = Vec::new();
        for i in 0..n {
            let malignant = rng.random::<f64>() < 0.6;
            // Three noisy base models of different strength.
            let base: Vec<f64> = [0.25, 0.15, 0.05]
                .iter()
                .map(|s| {
                    (0.5 + if malignant { *s } else { -*s } + 0.45 * (rng.random::<f64>() - 0.5) * 2.0).clamp(0.0, 1.0)
                })
                .collect();
            l.push(Lesion { patient: format!("P{}", i / 2), site: "HUP".into(), malignant, histopathology: true });
            x.push(base);
        }
        (l, x)
    }

    #[test]
    fn out_of_fold_predictions_never_come_from_a_model_that_saw_the_lesion() {
        let (l, _) = lesions(200, 1);
        let mut calls = 0;
        let oof = out_of_fold(&l, 5, 3, |train, predict| {
            calls += 1;
            let seen: std::collections::HashSet<&str> = train.iter().map(|&i| l[i].patient.as_str()).collect();
            assert!(predict.iter().all(|&i| !seen.contains(l[i].patient.as_str())), "patient on both sides");
            // "Model": the training malignant share.
            let share = train.iter().filter(|&&i| l[i].malignant).count() as f64 / train.len() as f64;
            vec![share; predict.len()]
        })
        .unwrap();
        assert_eq!(calls, 5);
        assert!(oof.iter().all(|p| p.is_finite()), "every lesion predicted");
    }

    #[test]
    fn cross_fitting_calibrates_on_out_of_fold_scores_and_keeps_all_rows_for_the_trees() {
        let (l, x) = lesions(120, 4);
        let y: Vec<bool> = l.iter().map(|v| v.malignant).collect();
        let s = BaggingSettings::default();
        let e = Ensemble::fit_cross_fitted(&l, &x, &y, 4, &s).unwrap();
        assert_eq!(e.meta, Bagging::fit(&x, &y, &s), "the trees see every row");
        // Recompute the out-of-fold scores independently and refit Platt on them.
        let parts = partition(&l, 4, s.seed).unwrap();
        let mut oof = vec![f64::NAN; l.len()];
        for (i, part) in parts.iter().enumerate() {
            let train: Vec<usize> =
                parts.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, p)| p.clone()).collect();
            let tx: Vec<Vec<f64>> = train.iter().map(|&r| x[r].clone()).collect();
            let ty: Vec<bool> = train.iter().map(|&r| y[r]).collect();
            let meta = Bagging::fit(&tx, &ty, &s);
            for &r in part {
                oof[r] = meta.probability(&x[r]);
            }
        }
        let platt = Platt::fit(&oof, &y).unwrap();
        assert_eq!((e.platt.a, e.platt.b), (platt.a, platt.b));
        // In-sample scores of the final trees would give a different (overconfident) fit.
        let in_sample: Vec<f64> = x.iter().map(|r| e.meta.probability(r)).collect();
        assert_ne!(Platt::fit(&in_sample, &y).unwrap().a, e.platt.a);
    }

    #[test]
    fn the_calibrator_is_fitted_on_its_own_rows_and_keeps_the_ranking() {
        let (l, x) = lesions(900, 2);
        let y: Vec<bool> = l.iter().map(|v| v.malignant).collect();
        let (meta, calibration, test) = (0..500, 500..700, 700..900);
        let e = Ensemble::fit(
            &x[meta.clone()],
            &y[meta],
            &x[calibration.clone()],
            &y[calibration.clone()],
            &BaggingSettings::default(),
        )
        .unwrap();
        let calibrated: Vec<f64> = x[test.clone()].iter().map(|r| e.probability(r)).collect();
        let raw: Vec<f64> = x[test.clone()].iter().map(|r| e.meta.probability(r)).collect();
        let yt = &y[test];
        let auc = renal_stats::roc_auc(&calibrated, yt).unwrap();
        assert!(auc > 0.75, "held-out AUC {auc}");
        // Platt is monotone (a < 0): the ranking, hence the AUC, is the meta-classifier's.
        assert!(e.platt.a < 0.0);
        assert!((auc - renal_stats::roc_auc(&raw, yt).unwrap()).abs() < 1e-12);
        // Its optimum balances the calibration rows: the mean calibrated probability equals the
        // mean of Platt's smoothed targets there (zero gradient in the intercept).
        let yc = &y[calibration.clone()];
        let (pos, neg) = (yc.iter().filter(|&&t| t).count() as f64, yc.iter().filter(|&&t| !t).count() as f64);
        let target_mean = (pos * (pos + 1.0) / (pos + 2.0) + neg / (neg + 2.0)) / (pos + neg);
        let mean_p = x[calibration].iter().map(|r| e.probability(r)).sum::<f64>() / (pos + neg);
        assert!((mean_p - target_mean).abs() < 1e-9, "{mean_p} vs {target_mean}");
    }
}
