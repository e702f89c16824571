//! Fitting every arm of every round of a protocol, and saving what the stages serve.
//!
//! Each model makes its own choices inside the training part (`protocol::selection_split`: four
//! fifths fit, one fifth chooses), so the validation part chooses nothing and calibrates
//! everything, on its histopathology-confirmed lesions: the tested population
//! (`protocol::confirmed_rows`). The clinical model fits and stops early inside the training
//! part (on the log of tumour volume, `renal_learn::clinical`). It and the first-order
//! baselines are cheap enough to cross-fit: their Platt calibrators learn on out-of-fold scores
//! of every confirmed lesion outside the test part (`protocol::calibration_folds`; the
//! validation part alone, when too small). The networks train on the same rows, choose their epoch
//! on the same selection rows (`renal_cnn::train`) and are Platt-calibrated on the validation
//! part; each round's pair is saved as a bundle in `<registry>/cnn/`.
//!
//! With both networks, the ensemble: a stacker over the three base models' raw outputs (T2,
//! T1C, clinical), then Platt scaling. The base models neither trained nor chose on the
//! validation part, so its outputs are the stacker's rows; the stacker (the better of the
//! study's bagged trees and a logistic stacker, unless neither beats the best input there) and
//! its calibrator's rows are its out-of-fold scores (5 patient-grouped folds), so the
//! calibrator never sees a score from a stacker that learned that row
//! (`Ensemble::fit_cross_fitted`). The study fitted its meta-classifier on the base models'
//! own training rows and chose it by test accuracy; out-of-fold base predictions over the
//! training part would need five more trainings of each network per split, which a CPU run
//! cannot afford. Each round's ensemble
//! (with its clinical model and the fill values) is saved as a bundle in
//! `<registry>/ensemble/<version>/`, the one the ensemble stage serves.
//!
//! Missing age or sex is filled with the training part's median age or more common sex (and
//! counted).

use crate::baseline;
use crate::cnn::{fit_split, read_composites};
use crate::error::{io, TrainerError};
use crate::protocol::{
    calibration_folds, confirmed_rows, labelled, selection_split, splits, FitAndScore, Protocol, Truth, SPLIT_SEED,
};
use renal_ensemble::bundle::{Content, DEFAULT_THRESHOLD};
use renal_ensemble::join::recorded;
use renal_learn::bagging::BaggingSettings;
use renal_learn::clinical::{ClinicalModel, ClinicalSettings, Features, Fill};
use renal_learn::ensemble::Ensemble;
use renal_learn::split::{Lesion, Split};
use renal_messages::LesionV1;
use renal_stats::Platt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Folds of the ensemble's cross-fitted choice and calibration.
pub(crate) const ENSEMBLE_FOLDS: usize = 5;

/// The ensemble's inputs, in order.
pub(crate) const STACKED: [&str; 3] = ["t2", "t1c", "clinical"];

/// What the CNN arms need besides the lesions.
pub struct CnnSetup {
    /// Where the composites are.
    pub store: Arc<dyn renal_store::BlobStore>,
    /// Training settings.
    pub config: renal_cnn::train::TrainConfig,
    /// CPU or CUDA.
    pub device: tch::Device,
}

/// The bundles of one round, as the stages serve them.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// CNN bundle version (the inference stage's).
    pub cnn: String,
    /// Ensemble bundle version (the ensemble stage's), pinned to `cnn`.
    pub ensemble: String,
}

/// One model's outputs in one round; NaN where it could not score a lesion (a baseline without
/// the lesion's features).
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// The rows this model's calibrators are fitted on (indices into [`Fitted::lesions`]): for
    /// the networks and the ensemble the round's [`Round::calibration`] rows; for the clinical
    /// model and the baselines every confirmed lesion outside the test part, scored out of fold
    /// (`protocol::calibration_folds`), or the same rows as the networks' when too few.
    pub calibration_rows: Vec<usize>,
    /// Raw (uncalibrated) outputs on [`Self::calibration_rows`], in their order (out of fold
    /// where the rows were cross-fitted).
    pub calibration_raw: Vec<f64>,
    /// Raw outputs on the test part, in `split.test` order.
    pub test_raw: Vec<f64>,
    /// Calibrated probabilities on the test part (Platt, as served).
    pub test: Vec<f64>,
}

/// A choice made before testing (on the selection part, or the stacker's on the calibration
/// rows), and what it was worth on the held-out test part.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// Which model chose.
    pub model: String,
    /// What it chose (an epoch, a stacker).
    pub choice: String,
    /// ROC AUC where the choice was made, the score it was chosen by.
    pub chosen_auc: f64,
    /// ROC AUC of the same model on the test part (NaN: one class there).
    pub held_out_auc: f64,
}

/// One round of the protocol: its split, the base models' outputs, and the bundles that predict
/// its held-out lesions through the stages.
#[derive(Debug, Clone)]
pub struct Round {
    /// Indices into [`Fitted::lesions`].
    pub split: Split,
    /// The validation lesions the networks' calibrators and the stacker learned on
    /// (`protocol::confirmed_rows`; the clinical model's and the baselines' are in their
    /// [`Scores::calibration_rows`]).
    pub calibration: Vec<usize>,
    /// Each base model's outputs (`clinical`, with the feature store the first-order baselines,
    /// with the networks `t2` and `t1c`).
    pub base: Vec<(&'static str, Scores)>,
    /// The ensemble's outputs (validation: the chosen stacker's out-of-fold scores), when it was
    /// fitted; its served probabilities come through the stages.
    pub ensemble: Option<Scores>,
    /// Choices made before testing.
    pub chosen: Vec<Chosen>,
    /// The bundles, when the networks and the ensemble were fitted.
    pub served: Option<Served>,
}

/// ROC AUC of the finite scores (NaN: undefined).
fn auc_of(scores: &[f64], positive: &[bool]) -> f64 {
    let (s, y): (Vec<f64>, Vec<bool>) = scores.iter().zip(positive).filter(|(s, _)| s.is_finite()).unzip();
    renal_stats::roc_auc(&s, &y).unwrap_or(f64::NAN)
}

/// Everything a protocol fitted.
pub struct Fitted {
    /// The labelled lesions (latest revision of each, case-id order).
    pub lesions: Vec<LesionV1>,
    /// Their labels.
    pub malignant: Vec<bool>,
    /// One per split or fold.
    pub rounds: Vec<Round>,
    /// Age or sex values filled in over all rounds.
    pub filled: usize,
    /// The first round's penultimate-layer embeddings: (case id, T2 then T1C values, held out).
    pub map_rows: Vec<(String, Vec<f64>, bool)>,
    /// Lines for people: each round's bundles and chosen epochs.
    pub lines: Vec<String>,
    /// Best epoch of each round's clinical model.
    pub clinical_epochs: Vec<usize>,
}

/// Features with gaps filled from the training part, the fill, and how many rows needed it.
fn features(lesions: &[&LesionV1], train: &[usize]) -> (Vec<Features>, Fill, usize) {
    let recorded_of: Vec<(Option<f64>, Option<f64>)> = lesions.iter().map(|l| recorded(&l.clinical)).collect();
    let fill = Fill::from_training(&train.iter().map(|&i| recorded_of[i]).collect::<Vec<_>>());
    let mut filled = 0;
    let rows = lesions
        .iter()
        .zip(&recorded_of)
        .map(|(l, &(age, sex))| {
            let (x, gap) = fill.features(age, sex, l.tumour_volume_ml);
            filled += usize::from(gap);
            x
        })
        .collect();
    (rows, fill, filled)
}

/// Out-of-fold raw scores over cross-fitting `folds`: `score(fit, scored)` fits on `fit` and
/// returns its raw outputs on `scored`. Returns the scored rows in fold order, and their scores.
pub fn out_of_fold<E>(
    folds: &[FitAndScore],
    mut score: impl FnMut(&[usize], &[usize]) -> Result<Vec<f64>, E>,
) -> Result<(Vec<usize>, Vec<f64>), E> {
    let (mut rows, mut raw) = (Vec::new(), Vec::new());
    for (fit, scored) in folds {
        let s = score(fit, scored)?;
        assert_eq!(s.len(), scored.len(), "one score per scored row");
        rows.extend_from_slice(scored);
        raw.extend(s);
    }
    Ok((rows, raw))
}

/// Fit every round of `protocol` on the labelled `lesion_messages`, saving bundles to
/// `registry` (`cnn`: the networks' setup, `None` for the clinical model alone; `feature_store`:
/// the store root whose `features` table feeds the first-order baselines, `None` for none).
pub fn fit(
    lesion_messages: &[LesionV1],
    truth: &Truth,
    protocol: &Protocol,
    cnn: Option<&CnnSetup>,
    feature_store: Option<&Path>,
    registry: &Path,
) -> Result<Fitted, TrainerError> {
    let (lesions, facts) = labelled(lesion_messages, truth);
    let rounds = splits(&facts, protocol)?;
    let y: Vec<bool> = facts.iter().map(|l| l.malignant).collect();
    let composites = match cnn {
        Some(c) => Some(read_composites(&*c.store, &lesions)?),
        None => None,
    };
    let first_order = feature_store.map(|root| baseline::read(root, &lesions)).transpose()?;
    let mut out = Fitted {
        lesions: lesions.iter().map(|l| (*l).clone()).collect(),
        malignant: y.clone(),
        rounds: Vec::new(),
        filled: 0,
        map_rows: Vec::new(),
        lines: Vec::new(),
        clinical_epochs: Vec::new(),
    };
    if let Some(rows) = &first_order {
        for (s, model) in baseline::MODELS.iter().enumerate() {
            let missing = rows.iter().filter(|r| r[s].is_none()).count();
            if missing > 0 {
                out.lines.push(format!("  {model}: {missing} lesion(s) without first-order features, not predicted"));
            }
        }
    }
    let mut clinical_fits = Vec::new();
    for (round, split) in rounds.iter().enumerate() {
        let (x, fill, filled) = features(&lesions, &split.train);
        out.filled += filled;
        let pick = |idx: &[usize]| -> (Vec<Features>, Vec<bool>) { idx.iter().map(|&i| (x[i], y[i])).unzip() };
        let label = if rounds.len() == 1 { String::new() } else { format!("fold {}: ", round + 1) };
        let (fit_idx, select_idx) = match selection_split(&facts, &split.train)? {
            Some(parts) => parts,
            None => {
                out.lines.push(format!(
                    "  {label}too few lesions of a class to set a fifth of the training part aside: epochs chosen on the validation part, which also calibrates"
                ));
                (split.train.clone(), split.validation.clone())
            }
        };
        let calibration = confirmed_rows(&facts, &split.validation);
        let ((tx, ty), (sx, sy), (vx, vy)) = (pick(&fit_idx), pick(&select_idx), pick(&calibration));
        let model = ClinicalModel::fit(&tx, &ty, &sx, &sy, &ClinicalSettings::default())?;
        let raw_val: Vec<f64> = vx.iter().map(|r| model.probability(r)).collect();
        let folds = calibration_folds(&facts, split);
        if folds.is_none() {
            out.lines.push(format!(
                "  {label}too few confirmed lesions outside the test part to cross-fit: the clinical model and baselines are calibrated on the validation part"
            ));
        }
        let (calibration_rows, calibration_raw) = match &folds {
            Some(folds) => out_of_fold(folds, |fit, score| {
                // Each fold stops early on a part of its own training rows, as the served model does.
                let (f, s) = selection_split(&facts, fit)?.unwrap_or_else(|| (fit.to_vec(), fit.to_vec()));
                let ((fx, fy), (sx, sy)) = (pick(&f), pick(&s));
                let m = ClinicalModel::fit(&fx, &fy, &sx, &sy, &ClinicalSettings::default())?;
                Ok::<_, TrainerError>(score.iter().map(|&i| m.probability(&x[i])).collect())
            })?,
            None => (calibration.clone(), raw_val.clone()),
        };
        let calibration_y: Vec<bool> = calibration_rows.iter().map(|&i| y[i]).collect();
        let platt = Platt::fit_non_decreasing(&calibration_raw, &calibration_y)
            .map_err(|source| TrainerError::Calibration { model: "clinical model".into(), source })?;
        let raw_test: Vec<f64> = split.test.iter().map(|&i| model.probability(&x[i])).collect();
        let test_y: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
        let mut base = vec![(
            "clinical",
            Scores {
                test: raw_test.iter().map(|&r| platt.probability(r)).collect(),
                calibration_rows,
                calibration_raw,
                test_raw: raw_test.clone(),
            },
        )];
        let mut chosen = vec![Chosen {
            model: "clinical".into(),
            choice: format!("epoch {}", model.best_epoch),
            chosen_auc: auc_of(&sx.iter().map(|r| model.probability(r)).collect::<Vec<_>>(), &sy),
            held_out_auc: auc_of(&raw_test, &test_y),
        }];
        let mut ensemble_scores = None;
        if let Some(rows) = &first_order {
            for (s, model) in baseline::MODELS.iter().enumerate() {
                let column: Vec<Option<Vec<f64>>> = rows.iter().map(|r| r[s].clone()).collect();
                let calibrate = match &folds {
                    Some(folds) => baseline::Calibrate::CrossFitted(folds),
                    None => baseline::Calibrate::On(&calibration),
                };
                match baseline::fit_predict(&column, &y, &split.train, &split.test, calibrate) {
                    Ok(scores) => base.push((*model, scores)),
                    Err(e) => out.lines.push(format!("  {label}{model} not fitted: {e}")),
                }
            }
        }
        let mut served = None;
        if let (Some(c), Some(images)) = (cnn, &composites) {
            // Epochs are chosen on the tested population, as calibrators are.
            let choose = confirmed_rows(&facts, &select_idx);
            let parts = [&fit_idx[..], &choose, &calibration, &split.test];
            let fit = fit_split(&lesions, images, &y, parts, &c.config, c.device, registry, &label, None)?;
            for (r, role) in ["t2", "t1c"].into_iter().enumerate() {
                let scores = Scores {
                    calibration_rows: calibration.clone(),
                    calibration_raw: fit.validation_raw[r].clone(),
                    test_raw: fit.test_raw[r].clone(),
                    test: fit.test[r].clone(),
                };
                let s = &fit.manifest.series[r];
                chosen.push(Chosen {
                    model: role.into(),
                    choice: format!("epoch {} of trial {}", s.best.epoch, s.best.trial + 1),
                    chosen_auc: s.best.validation_auc,
                    held_out_auc: auc_of(&scores.test_raw, &test_y),
                });
                base.push((role, scores));
            }
            let best: Vec<String> = fit
                .manifest
                .series
                .iter()
                .map(|s| format!("{} epoch {} (selection AUC {:.3})", s.role, s.best.epoch, s.best.validation_auc))
                .collect();
            out.lines.push(format!("  {label}CNN bundle {}: {}", fit.manifest.version, best.join(", ")));
            if round == 0 {
                // The map of the first split's networks: every lesion, the test part filled.
                let held_out: std::collections::BTreeSet<usize> = split.test.iter().copied().collect();
                out.map_rows = fit
                    .embeddings
                    .iter()
                    .map(|(&i, e)| (lesions[i].case_id.clone(), e.clone(), held_out.contains(&i)))
                    .collect();
            }
            // The ensemble over raw outputs (T2, T1C, clinical), rows = the validation part.
            let raw = &fit.validation_raw;
            let meta_x: Vec<Vec<f64>> =
                raw_val.iter().enumerate().map(|(j, &c)| vec![raw[0][j], raw[1][j], c]).collect();
            let meta_lesions: Vec<Lesion> = calibration.iter().map(|&i| facts[i].clone()).collect();
            let settings = BaggingSettings::default();
            match Ensemble::fit_cross_fitted(&meta_lesions, &meta_x, &vy, &STACKED, ENSEMBLE_FOLDS, &settings) {
                Ok((ensemble, oof)) => {
                    let test_raw: Vec<f64> = (0..split.test.len())
                        .map(|j| ensemble.meta.probability(&[fit.test_raw[0][j], fit.test_raw[1][j], raw_test[j]]))
                        .collect();
                    if let Some(sel) = &ensemble.selection {
                        let scores: Vec<String> = sel.candidates.iter().map(|(n, a)| format!("{n} {a:.3}")).collect();
                        out.lines.push(format!(
                            "  {label}stacker: {} (cross-fitted validation ROC AUC on {} lesions: {})",
                            sel.chosen,
                            sel.rows,
                            scores.join(", ")
                        ));
                        let chosen_auc =
                            sel.candidates.iter().find(|(n, _)| *n == sel.chosen).map_or(f64::NAN, |c| c.1);
                        chosen.push(Chosen {
                            model: "ensemble".into(),
                            choice: format!("stacker {}", sel.chosen),
                            chosen_auc,
                            held_out_auc: auc_of(&test_raw, &test_y),
                        });
                    }
                    ensemble_scores = Some(Scores {
                        test: test_raw.iter().map(|&r| ensemble.calibrated(r)).collect(),
                        calibration_rows: calibration.clone(),
                        calibration_raw: oof,
                        test_raw,
                    });
                    let content = Content {
                        cnn_version: fit.manifest.version.clone(),
                        clinical: model.clone(),
                        fill,
                        ensemble,
                        threshold: DEFAULT_THRESHOLD,
                        fitted: serde_json::json!({
                            "protocol": format!("{protocol:?}"),
                            "split_seed": SPLIT_SEED,
                            "round": round + 1,
                            "meta_rows": format!("the validation part's histopathology-confirmed lesions ({}; the base models neither trained nor chose on them)", calibration.len()),
                            "calibration": format!("platt on the logits of {ENSEMBLE_FOLDS}-fold patient-grouped out-of-fold scores of the chosen stacker on the same rows"),
                            "bagging": settings,
                        }),
                    };
                    let bundle = renal_ensemble::bundle::save(
                        registry,
                        content,
                        renal_messages::code_version(),
                        &renal_base::now_rfc3339(),
                    )?;
                    out.lines.push(format!(
                        "  {label}ensemble bundle {} (CNN bundle {})",
                        bundle.version, bundle.content.cnn_version
                    ));
                    served = Some(Served { cnn: fit.manifest.version.clone(), ensemble: bundle.version });
                }
                Err(e) => out.lines.push(format!("  {label}ensemble not fitted: {e}")),
            }
        }
        out.clinical_epochs.push(model.best_epoch);
        clinical_fits.push(serde_json::json!({
            "weights": model,
            "calibration": {"method": "platt", "fitted_on": if folds.is_some() { "out-of-fold scores of every histopathology-confirmed lesion outside the test part (5 patient-grouped folds; non-decreasing)" } else { "the validation part's histopathology-confirmed lesions (non-decreasing)" }, "a": platt.a, "b": platt.b},
            "lesions": {"train": split.train.len(), "validation": split.validation.len(), "test": split.test.len()},
        }));
        out.rounds.push(Round { split: split.clone(), calibration, base, ensemble: ensemble_scores, chosen, served });
    }
    std::fs::create_dir_all(registry).map_err(io(registry))?;
    let clinical = serde_json::json!({
        "model": "clinical",
        "features": ["age_years", "sex_male", "tumour_volume_ml"],
        "settings": ClinicalSettings::default(),
        "protocol": format!("{protocol:?}"),
        "split_seed": SPLIT_SEED,
        "fits": clinical_fits,
    });
    let path = registry.join("clinical.json");
    std::fs::write(&path, serde_json::to_string_pretty(&clinical).expect("JSON values serialise"))
        .map_err(io(&path))?;
    Ok(out)
}

/// Held-out probabilities by model and case id: the base models' from the fit, plus whatever
/// the caller adds (the ensemble's, predicted through the stages).
pub type Predictions = BTreeMap<String, BTreeMap<String, f64>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::write_outputs;
    use crate::protocol::read_truth;
    use renal_messages::{BlobRef, Clinical, LesionQc, Provenance, Sex};

    /// 80 lesions of 70 patients at two sites; older patients and bigger lesions lean malignant;
    /// every fifth lesion diagnosed by imaging only.
    fn cohort(dir: &Path) -> (Vec<LesionV1>, std::path::PathBuf) {
        let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
        let mut labels = String::from("case_id,label,diagnosis_source\n");
        let mut out = Vec::new();
        for i in 0..80u32 {
            let malignant = (i * 7) % 10 < 6;
            let site = if i % 4 == 0 { "MAY" } else { "HUP" };
            let case_id = format!("{site}-{i:04}");
            let source = if i % 5 == 4 { "imaging" } else { "histopathology" };
            labels.push_str(&format!("{case_id},{},{source}\n", if malignant { "malignant" } else { "benign" }));
            out.push(LesionV1 {
                version: 1,
                case_id,
                first_instance_at: None,
                revision: 1,
                site: site.into(),
                patient_pseudonym: format!("p{}", i.min(69)),
                clinical: Clinical {
                    age_years: Some(40 + (i * 13) % 30 + if malignant { 10 } else { 0 }),
                    sex: Some(if i % 3 == 0 { Sex::F } else { Sex::M }),
                },
                tumour_volume_ml: 5.0 + f64::from((i * 17) % 40) + if malignant { 20.0 } else { 0.0 },
                composites: [blob.clone(), blob.clone()],
                volumes: [blob.clone(), blob.clone()],
                qc: LesionQc { mask_voxels: [1, 1], n4_cv_before_after: [0.2, 0.1], reader_dice: Vec::new() },
                other_readers: Vec::new(),
                provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
            });
        }
        let path = dir.join("labels.csv");
        std::fs::write(&path, labels).unwrap();
        (out, path)
    }

    fn predicted(out: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
        text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect()
    }

    #[test]
    fn k_folds_predict_every_testable_lesion_once_and_loio_only_the_held_out_site() {
        let dir = tempfile::tempdir().unwrap();
        let (lesions, labels) = cohort(dir.path());
        // Lesions 69..80 share patient p69, so they are never split apart; imaging-only ones are
        // never predicted.
        let unconfirmed_patient: std::collections::BTreeSet<&str> =
            lesions.iter().enumerate().filter(|(i, _)| i % 5 == 4).map(|(_, l)| l.patient_pseudonym.as_str()).collect();
        let testable: Vec<&String> = lesions
            .iter()
            .filter(|l| !unconfirmed_patient.contains(l.patient_pseudonym.as_str()))
            .map(|l| &l.case_id)
            .collect();

        let truth = read_truth(&labels, None).unwrap();
        let registry = dir.path().join("models");
        let run = |protocol: &Protocol| {
            let fitted = fit(&lesions, &truth, protocol, None, None, &registry).unwrap();
            write_outputs(&fitted, &Predictions::new(), dir.path(), protocol, None).unwrap()
        };
        let lines = run(&Protocol::KFold(4));
        assert!(lines[0].contains("4 fit(s)"), "{lines:?}");
        let mut got = predicted(dir.path());
        got.sort();
        let mut want: Vec<String> = testable.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "each testable lesion predicted exactly once");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap()).unwrap();
        assert_eq!(report["models"]["clinical"]["n"].as_u64(), Some(want.len() as u64));

        run(&Protocol::LeaveOut("MAY".into()));
        let clinical: serde_json::Value =
            serde_json::from_slice(&std::fs::read(registry.join("clinical.json")).unwrap()).unwrap();
        assert_eq!(clinical["fits"][0]["calibration"]["method"], "platt");
        let got = predicted(dir.path());
        assert!(!got.is_empty() && got.iter().all(|c| c.starts_with("MAY-")), "{got:?}");
        let split = std::fs::read_to_string(dir.path().join("split.csv")).unwrap();
        assert!(split
            .lines()
            .filter(|l| l.ends_with(",train") || l.ends_with(",validation"))
            .all(|l| l.starts_with("HUP-")));

        assert_eq!("kfold:5".parse::<Protocol>(), Ok(Protocol::KFold(5)));
        assert_eq!("loio:may".parse::<Protocol>(), Ok(Protocol::LeaveOut("MAY".into())));
        assert!("kfold:x".parse::<Protocol>().is_err() && "holdout".parse::<Protocol>().is_err());
    }
}
