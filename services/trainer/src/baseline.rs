//! The first-order baseline: per series, a logistic regression on four first-order intensity
//! features of the lesion, read from the radiomics stage's feature store.
//!
//! The features are IBSI's `stat_mean`, the square root of `stat_var`, `stat_p10` and
//! `stat_p90` inside the primary reader's mask, each divided by the mean intensity of the whole
//! series as received (IBSI's diagnostic `mean_int_init_img`), so that a site's intensity scale
//! cancels: what the generator's own test (`services/synth/tests/class_signal.rs`) measures on
//! the rendered images, here on the preprocessed ones. One setting per series is read, the finest
//! grid the lesion has features on (first-order statistics do not depend on grey-level
//! discretisation). The model is fitted on the training part (L2 = 1 on standardised features),
//! Platt-calibrated on the validation part, and scores the test part: a network that does not
//! beat it has learned less from its series than four numbers carry.

use crate::error::TrainerError;
use crate::protocol::FitAndScore;
use renal_messages::LesionV1;
use renal_stats::{LogisticModel, Platt};
use std::path::Path;

/// The feature tags read, and the diagnostic that scales them.
pub const COLUMNS: [&str; 5] = ["stat_mean", "stat_var", "stat_p10", "stat_p90", "mean_int_init_img"];

/// L2 penalty of the logistic regression (standardised features).
pub const L2: f64 = 1.0;

/// Model names in reports, T2 then T1C.
pub const MODELS: [&str; 2] = ["first_order_t2", "first_order_t1c"];

/// Series names as the feature store writes them, T2 then T1C.
const SERIES: [&str; 2] = ["T2", "T1C"];

/// Each lesion's four features per series (T2 then T1C), `None` where the store has no usable
/// row for it (no file, every setting failed, or a non-finite value).
pub fn read(store_root: &Path, lesions: &[&LesionV1]) -> Result<Vec<[Option<Vec<f64>>; 2]>, TrainerError> {
    let table = |e: renal_radiomics::table::ReadError| TrainerError::Features(e.to_string());
    let files = renal_radiomics::table::index(store_root).map_err(table)?;
    let mut out = Vec::with_capacity(lesions.len());
    for l in lesions {
        let Some(path) = files.get(&(l.case_id.clone(), l.revision)) else {
            out.push([None, None]);
            continue;
        };
        let rows = renal_radiomics::table::read(path, &COLUMNS).map_err(table)?;
        out.push(SERIES.map(|series| of_series(&rows, series)));
    }
    Ok(out)
}

/// The four scaled features of one series from its finest-grid row with features.
fn of_series(rows: &[renal_radiomics::table::ReadRow], series: &str) -> Option<Vec<f64>> {
    let row = rows
        .iter()
        .filter(|r| r.series == series && r.error.is_none())
        .min_by(|a, b| a.spacing_mm.unwrap_or(0.0).total_cmp(&b.spacing_mm.unwrap_or(0.0)))?;
    let v: Vec<f64> = row.values.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let [mean, var, p10, p90, reference] = v[..] else { return None };
    let x = vec![mean / reference, var.sqrt() / reference, p10 / reference, p90 / reference];
    (reference > 0.0 && x.iter().all(|v| v.is_finite())).then_some(x)
}

/// Where a baseline's calibrator learns.
#[derive(Debug, Clone, Copy)]
pub enum Calibrate<'a> {
    /// On these rows, scored by the model fitted on the training part.
    On(&'a [usize]),
    /// On out-of-fold scores: per fold, a model fitted on its first rows scores its second.
    CrossFitted(&'a [FitAndScore]),
}

/// One series' baseline of one round: fitted on the `train` rows, Platt-calibrated as
/// `calibrate` says. Raw outputs on the calibration rows (out of fold when cross-fitted) and on
/// the `test` rows, calibrated ones on the test rows; NaN where a lesion has no features.
/// `Err`: why it could not be fitted, for people.
pub fn fit_predict(
    features: &[Option<Vec<f64>>],
    malignant: &[bool],
    train: &[usize],
    test: &[usize],
    calibrate: Calibrate<'_>,
) -> Result<crate::fit::Scores, String> {
    let fit = |idx: &[usize]| -> Result<LogisticModel, String> {
        let (x, y): (Vec<Vec<f64>>, Vec<bool>) =
            idx.iter().filter_map(|&i| features[i].clone().map(|x| (x, malignant[i]))).unzip();
        LogisticModel::fit(&x, &y, L2).map_err(|e| e.to_string())
    };
    let raw = |model: &LogisticModel, idx: &[usize]| -> Vec<f64> {
        idx.iter().map(|&i| features[i].as_ref().map_or(f64::NAN, |x| model.predict(x))).collect()
    };
    let model = fit(train)?;
    let (calibration_rows, calibration_raw) = match calibrate {
        Calibrate::On(rows) => (rows.to_vec(), raw(&model, rows)),
        Calibrate::CrossFitted(folds) => crate::fit::out_of_fold(folds, |f, s| Ok::<_, String>(raw(&fit(f)?, s)))?,
    };
    let (cal_raw, cal_y): (Vec<f64>, Vec<bool>) = calibration_raw
        .iter()
        .zip(&calibration_rows)
        .filter(|(r, _)| r.is_finite())
        .map(|(&r, &i)| (r, malignant[i]))
        .unzip();
    let platt = Platt::fit_non_decreasing(&cal_raw, &cal_y).map_err(|e| format!("Platt calibration: {e}"))?;
    let test_raw = raw(&model, test);
    Ok(crate::fit::Scores {
        test: test_raw.iter().map(|&r| if r.is_nan() { r } else { platt.probability(r) }).collect(),
        calibration_rows,
        calibration_raw,
        test_raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_radiomics::table::ReadRow;

    fn row(series: &str, spacing: Option<f64>, values: [f64; 5], error: bool) -> ReadRow {
        ReadRow {
            series: series.into(),
            setting: "s".into(),
            spacing_mm: spacing,
            error: error.then(|| "failed".into()),
            values: values.iter().map(|&v| v.is_finite().then_some(v)).collect(),
        }
    }

    #[test]
    fn the_finest_grid_with_features_is_read_and_scaled_by_the_series_mean() {
        let rows = [
            row("T2", Some(2.0), [50.0, 16.0, 40.0, 60.0, 100.0], false),
            row("T2", Some(1.0), [0.0; 5], true),
            row("T2", Some(1.5), [30.0, 4.0, 20.0, 40.0, 10.0], false),
            row("T1C", Some(1.0), [30.0, f64::NAN, 20.0, 40.0, 10.0], false),
        ];
        assert_eq!(of_series(&rows, "T2"), Some(vec![3.0, 0.2, 2.0, 4.0]), "1.5 mm: the finest that has features");
        assert_eq!(of_series(&rows, "T1C"), None, "a null feature makes the series unusable");
        assert_eq!(of_series(&rows[..1], "T1C"), None, "no row of the series");
    }

    #[test]
    fn a_separable_feature_is_learned_and_lesions_without_features_get_no_probability() {
        // 60 lesions; the first feature shifts with the class, the others are noise.
        let malignant: Vec<bool> = (0..60).map(|i| i % 3 != 0).collect();
        let features: Vec<Option<Vec<f64>>> = (0..60)
            .map(|i| {
                let noise = f64::from((i * 37 % 11) as u32) / 11.0;
                (i != 5).then(|| vec![if malignant[i] { 1.5 } else { 1.0 } + noise * 0.8, noise, 0.3, 1.0 - noise])
            })
            .collect();
        let (train, rest): (Vec<usize>, Vec<usize>) = (0..60).partition(|i| i % 5 < 3);
        let (validation, test): (Vec<usize>, Vec<usize>) = rest.into_iter().partition(|i| i % 5 == 3);
        assert!(test.contains(&9) && !test.contains(&5) && train.contains(&5));
        let scores = fit_predict(&features, &malignant, &train, &test, Calibrate::On(&validation)).unwrap();
        assert_eq!((scores.calibration_raw.len(), scores.test_raw.len()), (validation.len(), test.len()));
        assert_eq!(scores.calibration_rows, validation);
        let p = scores.test;
        assert_eq!(p.len(), test.len());
        let y: Vec<bool> = test.iter().map(|&i| malignant[i]).collect();
        assert!(renal_stats::roc_auc(&p, &y).unwrap() > 0.8);
        // Lesion 5 trains without features: skipped. Give a test lesion none: NaN.
        let mut gap = features.clone();
        gap[test[0]] = None;
        let scores = fit_predict(&gap, &malignant, &train, &test, Calibrate::On(&validation)).unwrap();
        let p = &scores.test;
        assert!(p[0].is_nan() && p[1..].iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(scores.test_raw[0].is_nan() && scores.calibration_raw.iter().all(|v| v.is_finite()));
        // Cross-fitted: each scored row by the model of the fold that did not train on it.
        let folds: Vec<FitAndScore> = (0..4)
            .map(|k| {
                let scored: Vec<usize> = train.iter().chain(&validation).copied().filter(|i| i % 4 == k).collect();
                let fit = train.iter().chain(&validation).copied().filter(|i| i % 4 != k).collect();
                (fit, scored)
            })
            .collect();
        let crossed = fit_predict(&features, &malignant, &train, &test, Calibrate::CrossFitted(&folds)).unwrap();
        let expected_rows: Vec<usize> = folds.iter().flat_map(|f| f.1.clone()).collect();
        assert_eq!(crossed.calibration_rows, expected_rows);
        let (fx, fy): (Vec<Vec<f64>>, Vec<bool>) =
            folds[1].0.iter().filter_map(|&i| features[i].clone().map(|x| (x, malignant[i]))).unzip();
        let fold_model = LogisticModel::fit(&fx, &fy, L2).unwrap();
        let j = crossed.calibration_rows.iter().position(|&i| i == folds[1].1[0]).unwrap();
        assert_eq!(crossed.calibration_raw[j], fold_model.predict(features[folds[1].1[0]].as_ref().unwrap()));
        // The served model and its test scores do not depend on where it is calibrated.
        assert_eq!(
            crossed.test_raw,
            fit_predict(&features, &malignant, &train, &test, Calibrate::On(&validation)).unwrap().test_raw
        );
        // One class in training: an error for people, not a panic.
        let benign = vec![false; 60];
        assert!(fit_predict(&features, &benign, &train, &test, Calibrate::On(&validation)).is_err());
    }
}
