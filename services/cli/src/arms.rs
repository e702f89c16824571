//! The end of `renal run` on a labelled cohort: split the preprocessed lesions by patient, train
//! the arms that are built (the clinical model; the T2 and T1C networks unless switched off),
//! calibrate, predict the held-out test lesions and write the evaluation report.
//!
//! Protocols ([`Protocol`]): 70/20/10 train/validation/test (default), k folds, or leave one
//! institution out; always grouped by patient pseudonym, stratified by label, lesions without
//! histopathology never tested on (`renal_learn::split`). The clinical model trains
//! on the training part and stops early on validation; its Platt calibrator is fitted on the
//! validation part's raw outputs. The networks train on the same training part, choose their
//! epoch on the validation part (`renal_cnn::train`) and are Platt-calibrated on it too; each
//! split's pair is saved as a bundle in `OUT/models/cnn/`.
//!
//! With both networks, the ensemble: bagged decision trees (the study's meta-classifier) over
//! the three base models' raw outputs (T2, T1C, clinical), then Platt scaling. The base models
//! never trained on the validation part, so its outputs are the meta-classifier's rows; the
//! calibrator is fitted on those rows' out-of-fold meta scores (5 patient-grouped folds), so it
//! never sees a score from trees that learned that row (`Ensemble::fit_cross_fitted`). The
//! study fitted its meta-classifier on the base models' own training rows and chose it by test
//! accuracy; out-of-fold base predictions over the training part would need five more
//! trainings of each network per split, which a CPU run cannot afford. Each split's ensemble
//! (with its clinical model and the fill values) is saved as a bundle in
//! `OUT/models/ensemble/<version>/`, the one `renal worker ensemble` serves, and the held-out
//! predictions come from that bundle.
//!
//! Held-out lesions that other readers segmented too are also predicted from each reader's
//! masks (`ensemble@R2`, ...) and, through the same path, from the primary reader's
//! (`ensemble@primary`), so the report shows the ensemble on every segmenter's masks.
//!
//! Missing age or sex is filled with the training part's median age or more common sex (and
//! counted in the output).

use anyhow::{bail, Context, Result};
use renal_ensemble::bundle::{Content, DEFAULT_THRESHOLD};
use renal_ensemble::join::recorded;
use renal_eval::report::{build, Settings};
use renal_learn::bagging::BaggingSettings;
use renal_learn::clinical::{ClinicalModel, ClinicalSettings, Features, Fill};
use renal_learn::ensemble::Ensemble;
use renal_learn::split::{k_fold, leave_one_institution_out, train_validation_test, Lesion, Split};
use renal_messages::LesionV1;
use renal_stats::Platt;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Split seed of the embedded run.
const SPLIT_SEED: u64 = 1;

/// Folds of the ensemble's cross-fitted calibration.
const ENSEMBLE_FOLDS: usize = 5;

/// How lesions are held out for the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// One patient-grouped 70/20/10 split: report on the 10%.
    Split,
    /// `k` patient-grouped folds: each fold's lesions predicted by a model trained on the
    /// others (80/20 train/validation); report on every testable lesion.
    KFold(usize),
    /// Test on one site's lesions; train and validate (80/20) on the other sites'.
    LeaveOut(String),
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.split_once(':') {
            None if s == "split" => Ok(Protocol::Split),
            Some(("kfold", k)) => match k.parse::<usize>() {
                Ok(k) if k >= 2 => Ok(Protocol::KFold(k)),
                _ => Err(format!("kfold:{k}: want at least 2 folds")),
            },
            Some(("loio", site)) if !site.is_empty() => Ok(Protocol::LeaveOut(site.to_uppercase())),
            _ => Err(format!("{s:?}: want split, kfold:K or loio:SITE")),
        }
    }
}

/// Fewer labelled lesions than this are not split and trained on (a 10% test part of fewer
/// than two lesions says nothing).
pub const MIN_LABELLED: usize = 20;

/// `case_id -> (malignant, histopathology)` from a labels file (`diagnosis_source` optional:
/// without it every label counts as histopathology).
fn read_truth(path: &Path) -> Result<BTreeMap<String, (bool, bool)>> {
    let labels = renal_eval::input::read_labels(path)?;
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let source = headers.iter().position(|h| h == "diagnosis_source");
    let id = headers.iter().position(|h| h == "case_id").expect("read_labels checked the column");
    let mut out = BTreeMap::new();
    for record in reader.records() {
        let record = record?;
        let case = record.get(id).unwrap_or("").trim().to_string();
        let histopathology = source.is_none_or(|i| record.get(i).is_some_and(|s| s.trim() == "histopathology"));
        out.insert(case.clone(), (labels[&case], histopathology));
    }
    Ok(out)
}

/// The latest revision of each labelled lesion, in case-id order, with its protocol facts.
fn labelled<'a>(
    lesion_messages: &'a [LesionV1],
    truth: &BTreeMap<String, (bool, bool)>,
) -> (Vec<&'a LesionV1>, Vec<Lesion>) {
    let mut latest: BTreeMap<&str, &LesionV1> = BTreeMap::new();
    for l in lesion_messages {
        if truth.contains_key(&l.case_id) && latest.get(l.case_id.as_str()).is_none_or(|o| o.revision < l.revision) {
            latest.insert(&l.case_id, l);
        }
    }
    let lesions: Vec<&LesionV1> = latest.into_values().collect();
    let protocol = lesions
        .iter()
        .map(|l| {
            let (malignant, histopathology) = truth[&l.case_id];
            Lesion { patient: l.patient_pseudonym.clone(), site: l.site.clone(), malignant, histopathology }
        })
        .collect();
    (lesions, protocol)
}

/// The labelled lesions and a split of them like `renal run`'s (`parts`: train, validation
/// and test fractions; `renal run` uses 0.7, 0.2, 0.1).
pub fn labelled_split<'a>(
    lesion_messages: &'a [LesionV1],
    labels: &Path,
    parts: [f64; 3],
) -> Result<(Vec<&'a LesionV1>, Vec<Lesion>, Split)> {
    let truth = read_truth(labels)?;
    let (lesions, protocol) = labelled(lesion_messages, &truth);
    if lesions.len() < MIN_LABELLED {
        bail!(
            "{} labelled lesions; at least {MIN_LABELLED} are needed for a train/validation/test split",
            lesions.len()
        );
    }
    let split = train_validation_test(&protocol, parts, SPLIT_SEED)?;
    Ok((lesions, protocol, split))
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

/// A fold's training part cut 80/20 into training and validation (grouped, stratified).
fn carve_validation(lesions: &[Lesion], fold: Split) -> Result<Split, renal_learn::split::SplitError> {
    let subset: Vec<Lesion> = fold.train.iter().map(|&i| lesions[i].clone()).collect();
    let inner = train_validation_test(&subset, [0.8, 0.2, 0.0], SPLIT_SEED)?;
    let back = |idx: &[usize]| idx.iter().map(|&i| fold.train[i]).collect::<Vec<_>>();
    Ok(Split { train: back(&inner.train), validation: back(&inner.validation), test: fold.test })
}

/// What the CNN arms need besides the lesions.
pub struct CnnSetup {
    /// Where the composites are.
    pub store: std::sync::Arc<dyn renal_store::BlobStore>,
    /// Training settings.
    pub config: renal_cnn::train::TrainConfig,
    /// CPU or CUDA.
    pub device: tch::Device,
}

/// Train, calibrate, predict and report; returns the lines to print.
pub fn train_arms(
    lesion_messages: &[LesionV1],
    labels: &Path,
    out: &Path,
    how: &Protocol,
    cnn: Option<&CnnSetup>,
) -> Result<Vec<String>> {
    let truth = read_truth(labels)?;
    let (lesions, protocol) = labelled(lesion_messages, &truth);
    if lesions.len() < MIN_LABELLED {
        return Ok(vec![format!(
            "models: not trained; {} labelled lesions, at least {MIN_LABELLED} are needed for a train/validation/test split",
            lesions.len()
        )]);
    }
    let splits: Vec<Split> = match how {
        Protocol::Split => vec![train_validation_test(&protocol, [0.7, 0.2, 0.1], SPLIT_SEED)?],
        Protocol::KFold(k) => k_fold(&protocol, *k, SPLIT_SEED)?
            .into_iter()
            .map(|fold| carve_validation(&protocol, fold))
            .collect::<Result<_, _>>()?,
        Protocol::LeaveOut(site) => vec![leave_one_institution_out(&protocol, site, 0.2, SPLIT_SEED)?],
    };
    if splits.iter().any(|s| s.test.is_empty() || s.validation.is_empty() || s.train.is_empty()) {
        bail!("{} labelled lesions are too few for {how:?}", lesions.len());
    }
    let y: Vec<bool> = protocol.iter().map(|l| l.malignant).collect();
    let composites = match cnn {
        Some(c) => Some(crate::cnn::read_composites(&*c.store, &lesions)?),
        None => None,
    };
    let mut cnn_lines = Vec::new();
    let predictions = out.join("predictions.csv");
    let mut f = std::fs::File::create(&predictions).with_context(|| format!("writing {}", predictions.display()))?;
    writeln!(f, "case_id,model,probability")?;
    let split_file = out.join("split.csv");
    let mut parts = std::fs::File::create(&split_file).with_context(|| format!("writing {}", split_file.display()))?;
    writeln!(parts, "case_id,part")?;
    let mut by_model: renal_eval::input::Predictions = BTreeMap::new();
    let mut test_labels = renal_eval::input::Labels::new();
    let mut bundles = Vec::new();
    let (mut filled_total, mut epochs) = (0, Vec::new());
    let mut map_rows: Vec<(String, Vec<f64>, bool)> = Vec::new();
    for (round, split) in splits.iter().enumerate() {
        let (x, fill, filled) = features(&lesions, &split.train);
        filled_total += filled;
        let pick = |idx: &[usize]| -> (Vec<Features>, Vec<bool>) { idx.iter().map(|&i| (x[i], y[i])).unzip() };
        let ((tx, ty), (vx, vy)) = (pick(&split.train), pick(&split.validation));
        let model = ClinicalModel::fit(&tx, &ty, &vx, &vy, &ClinicalSettings::default()).context("clinical model")?;
        let raw_val: Vec<f64> = vx.iter().map(|r| model.probability(r)).collect();
        let platt = Platt::fit(&raw_val, &vy).context("Platt calibration of the clinical model")?;
        for &i in &split.test {
            let p = platt.probability(model.probability(&x[i]));
            writeln!(f, "{},clinical,{p}", lesions[i].case_id)?;
            by_model.entry("clinical".into()).or_default().insert(lesions[i].case_id.clone(), p);
            test_labels.insert(lesions[i].case_id.clone(), y[i]);
        }
        if let (Some(c), Some(images)) = (cnn, &composites) {
            let label = if splits.len() == 1 { String::new() } else { format!("fold {}: ", round + 1) };
            let fit = crate::cnn::fit_split(
                &lesions,
                images,
                &y,
                [&split.train, &split.validation, &split.test],
                &c.config,
                c.device,
                &out.join("models"),
                &label,
                None,
            )?;
            for (model, probs) in ["t2", "t1c"].iter().zip(&fit.test) {
                for (&i, &p) in split.test.iter().zip(probs) {
                    writeln!(f, "{},{model},{p}", lesions[i].case_id)?;
                    by_model.entry(model.to_string()).or_default().insert(lesions[i].case_id.clone(), p);
                }
            }
            let best: Vec<String> = fit
                .manifest
                .series
                .iter()
                .map(|s| format!("{} epoch {} (validation AUC {:.3})", s.role, s.best.epoch, s.best.validation_auc))
                .collect();
            cnn_lines.push(format!("  {label}CNN bundle {}: {}", fit.manifest.version, best.join(", ")));
            if round == 0 {
                // The map of the first split's networks: every lesion, the test part filled.
                let held_out: std::collections::BTreeSet<usize> = split.test.iter().copied().collect();
                map_rows = fit
                    .embeddings
                    .iter()
                    .map(|(&i, e)| (lesions[i].case_id.clone(), e.clone(), held_out.contains(&i)))
                    .collect();
            }
            // The ensemble over raw outputs (T2, T1C, clinical), rows = the validation part.
            let rows = |raw: &[Vec<f64>; 2], clinical: Vec<f64>| -> Vec<Vec<f64>> {
                clinical.iter().enumerate().map(|(j, &c)| vec![raw[0][j], raw[1][j], c]).collect()
            };
            let meta_x = rows(&fit.validation_raw, raw_val.clone());
            let meta_lesions: Vec<Lesion> = split.validation.iter().map(|&i| protocol[i].clone()).collect();
            let settings = BaggingSettings::default();
            match Ensemble::fit_cross_fitted(&meta_lesions, &meta_x, &vy, ENSEMBLE_FOLDS, &settings) {
                Ok(ensemble) => {
                    let content = Content {
                        cnn_version: fit.manifest.version.clone(),
                        clinical: model.clone(),
                        fill,
                        ensemble,
                        threshold: DEFAULT_THRESHOLD,
                        fitted: serde_json::json!({
                            "protocol": format!("{how:?}"),
                            "split_seed": SPLIT_SEED,
                            "round": round + 1,
                            "meta_rows": format!("validation part ({} lesions; the base models never trained on it)", split.validation.len()),
                            "calibration": format!("platt on {ENSEMBLE_FOLDS}-fold patient-grouped out-of-fold meta scores of the same rows"),
                            "bagging": settings,
                        }),
                    };
                    let bundle = renal_ensemble::bundle::save(
                        &out.join("models"),
                        content,
                        env!("CARGO_PKG_VERSION"),
                        &renal_messages::civil::now_rfc3339(),
                    )?;
                    for (&i, (t2, t1c)) in split.test.iter().zip(fit.test_raw[0].iter().zip(&fit.test_raw[1])) {
                        let p = bundle.content.call(*t2, *t1c, &x[i]).probability;
                        writeln!(f, "{},ensemble,{p}", lesions[i].case_id)?;
                        by_model.entry("ensemble".into()).or_default().insert(lesions[i].case_id.clone(), p);
                    }
                    cnn_lines.push(format!(
                        "  {label}ensemble bundle {} (CNN bundle {})",
                        bundle.version, bundle.content.cnn_version
                    ));
                    let models_dir = out.join("models");
                    for (i, model, p) in other_readers(&lesions, &split.test, &x, images, &bundle, c, &models_dir)? {
                        writeln!(f, "{},{model},{p}", lesions[i].case_id)?;
                        by_model.entry(model).or_default().insert(lesions[i].case_id.clone(), p);
                    }
                }
                Err(e) => cnn_lines.push(format!("  {label}ensemble not fitted: {e}")),
            }
        }
        let tag = |part: &str| if splits.len() == 1 { part.to_string() } else { format!("fold{}-{part}", round + 1) };
        for (part, idx) in [("train", &split.train), ("validation", &split.validation), ("test", &split.test)] {
            for &i in idx.iter() {
                writeln!(parts, "{},{}", lesions[i].case_id, tag(part))?;
            }
        }
        epochs.push(model.best_epoch);
        bundles.push(serde_json::json!({
            "weights": model,
            "calibration": {"method": "platt", "fitted_on": "validation", "a": platt.a, "b": platt.b},
            "lesions": {"train": split.train.len(), "validation": split.validation.len(), "test": split.test.len()},
        }));
    }
    let models = out.join("models");
    std::fs::create_dir_all(&models)?;
    let bundle = serde_json::json!({
        "model": "clinical",
        "features": ["age_years", "sex_male", "tumour_volume_ml"],
        "settings": ClinicalSettings::default(),
        "protocol": format!("{how:?}"),
        "split_seed": SPLIT_SEED,
        "fits": bundles,
    });
    std::fs::write(models.join("clinical.json"), serde_json::to_string_pretty(&bundle)?)?;
    let mut report = build(&test_labels, &by_model, &Default::default(), &Settings::default());
    let all_labels: renal_eval::input::Labels = lesions.iter().zip(&y).map(|(l, &m)| (l.case_id.clone(), m)).collect();
    let source = if splits.len() == 1 {
        "the T2 and T1C networks' embeddings"
    } else {
        "the first fold's T2 and T1C networks' embeddings"
    };
    report.embedding_map = renal_eval::report::embedding_map(&all_labels, &map_rows, source);
    if !map_rows.is_empty() {
        // The same embeddings for `renal eval --embeddings`.
        let path = out.join("embeddings.csv");
        let mut e = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        let width = map_rows[0].1.len();
        let names: Vec<String> = (0..width)
            .map(|k| if k < width / 2 { format!("t2_{k}") } else { format!("t1c_{}", k - width / 2) })
            .collect();
        writeln!(e, "case_id,{}", names.join(","))?;
        for (case, values, _) in &map_rows {
            let v: Vec<String> = values.iter().map(f64::to_string).collect();
            writeln!(e, "{case},{}", v.join(","))?;
        }
    }
    let report_dir = out.join("report");
    renal_eval::write_report(&report, &report_dir)?;
    let c = &report.models["clinical"];
    let mut lines = vec![
        format!(
            "clinical model ({how:?}): {} fit(s), {} held-out lesions (grouped by patient; {} age or sex values filled in); best epochs {:?}",
            splits.len(),
            test_labels.len(),
            filled_total,
            epochs
        ),
        format!(
            "  held-out test: accuracy {:.2} ({:.2}-{:.2}), ROC AUC {}, ECE {:.3}",
            c.calls.accuracy.estimate,
            c.calls.accuracy.ci95[0],
            c.calls.accuracy.ci95[1],
            auc_text(c),
            c.ece
        ),
    ];
    if let Some(setup) = cnn {
        let cfg = &setup.config;
        lines.push(format!(
            "CNN arms ({}, {}x{} input, at most {} epochs, patience {}, {} trial(s)):",
            cfg.net.backbone.name(),
            cfg.net.input_px,
            cfg.net.input_px,
            cfg.max_epochs,
            cfg.patience,
            cfg.trials
        ));
        lines.extend(cnn_lines);
        for model in ["t2", "t1c", "ensemble"] {
            let Some(m) = report.models.get(model) else { continue };
            lines.push(format!(
                "  {model} held-out test: accuracy {:.2}, ROC AUC {}",
                m.calls.accuracy.estimate,
                auc_text(m)
            ));
        }
    }
    lines.push(format!("  predictions: {}", predictions.display()));
    lines.push(format!("  report: {}", report_dir.join("index.html").display()));
    Ok(lines)
}

/// The ensemble on each other reader's masks: every held-out lesion another reader segmented,
/// scored through the same networks and ensemble bundle from that reader's composites and T1C
/// volume (`ensemble@<reader>`), next to the primary reader's prediction of the same lesions
/// through the same path (`ensemble@primary`, from the composites already read, `primary`), so
/// the report compares them on the same cases. Returns (lesion index, model name, probability).
fn other_readers(
    lesions: &[&LesionV1],
    test: &[usize],
    x: &[Features],
    primary: &[[Vec<f32>; 2]],
    bundle: &renal_ensemble::bundle::Bundle,
    cnn: &CnnSetup,
    registry: &Path,
) -> Result<Vec<(usize, String, f64)>> {
    let segmented: Vec<usize> = test.iter().copied().filter(|&i| !lesions[i].other_readers.is_empty()).collect();
    if segmented.is_empty() {
        return Ok(Vec::new());
    }
    let scorer = renal_cnn::worker::Scorer::load(registry, &bundle.content.cnn_version, cnn.device)
        .context("loading the networks for the other readers' masks")?;
    let mut out = Vec::new();
    for &i in &segmented {
        let l = lesions[i];
        // The primary reader's masks first (already read), then each other reader's.
        let mut names = vec!["primary".to_string()];
        let mut volumes = vec![l.tumour_volume_ml];
        let mut images: Vec<[&[f32]; 2]> = vec![[&primary[i][0], &primary[i][1]]];
        let mut read = Vec::new();
        for rc in &l.other_readers {
            let what = |role: &str| format!("{role} composite of reader {} for {}", rc.reader, l.case_id);
            names.push(rc.reader.clone());
            volumes.push(rc.tumour_volume_ml);
            read.push([
                crate::cnn::read_composite(&*cnn.store, &rc.composites[0], &what("T2"))?.1,
                crate::cnn::read_composite(&*cnn.store, &rc.composites[1], &what("T1C"))?.1,
            ]);
        }
        images.extend(read.iter().map(|p| [p[0].as_slice(), p[1].as_slice()]));
        for ((name, volume), s) in names.iter().zip(volumes).zip(scorer.score(&images)) {
            let features = [x[i][0], x[i][1], volume];
            let p = bundle.content.call(s.probability[0], s.probability[1], &features).probability;
            out.push((i, format!("ensemble@{name}"), p));
        }
    }
    Ok(out)
}

fn auc_text(m: &renal_eval::report::ModelReport) -> String {
    if m.roc_auc.estimate.is_finite() {
        format!("{:.2} ({:.2}-{:.2})", m.roc_auc.estimate, m.roc_auc.ci95[0], m.roc_auc.ci95[1])
    } else {
        "undefined (the held-out lesions are all of one class)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

        let lines = train_arms(&lesions, &labels, dir.path(), &Protocol::KFold(4), None).unwrap();
        assert!(lines[0].contains("4 fit(s)"), "{lines:?}");
        let mut got = predicted(dir.path());
        got.sort();
        let mut want: Vec<String> = testable.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "each testable lesion predicted exactly once");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap()).unwrap();
        assert_eq!(report["models"]["clinical"]["n"].as_u64(), Some(want.len() as u64));

        train_arms(&lesions, &labels, dir.path(), &Protocol::LeaveOut("MAY".into()), None).unwrap();
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
