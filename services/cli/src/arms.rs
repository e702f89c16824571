//! The end of `renal run` on a labelled cohort: split the preprocessed lesions by patient, train
//! the arms that are built (today: the clinical model), calibrate, predict the held-out test
//! lesions and write the evaluation report.
//!
//! Protocol: 70/20/10 train/validation/test, grouped by patient pseudonym, stratified by label,
//! lesions without histopathology never in test (`renal_learn::split`). The clinical model trains
//! on the training part and stops early on validation; its Platt calibrator is fitted on the
//! validation part's raw outputs. Missing age or sex is filled with the training part's median
//! age or more common sex (and counted in the output).

use anyhow::{bail, Context, Result};
use renal_eval::report::{build, Settings};
use renal_learn::clinical::{ClinicalModel, ClinicalSettings, Features};
use renal_learn::split::{train_validation_test, Lesion};
use renal_messages::{LesionV1, Sex};
use renal_stats::Platt;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Split seed of the embedded run.
const SPLIT_SEED: u64 = 1;

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

/// Features with gaps filled from the training part.
fn features(lesions: &[&LesionV1], train: &[usize]) -> (Vec<Features>, usize) {
    let mut ages: Vec<f64> = train.iter().filter_map(|&i| lesions[i].clinical.age_years.map(f64::from)).collect();
    ages.sort_by(f64::total_cmp);
    let median_age = if ages.is_empty() { 60.0 } else { ages[ages.len() / 2] };
    let males = train.iter().filter(|&&i| lesions[i].clinical.sex == Some(Sex::M)).count();
    let common_sex = if 2 * males >= train.len() { 1.0 } else { 0.0 };
    let mut filled = 0;
    let rows = lesions
        .iter()
        .map(|l| {
            let age = l.clinical.age_years.map(f64::from);
            let sex = match l.clinical.sex {
                Some(Sex::M) => Some(1.0),
                Some(Sex::F) => Some(0.0),
                _ => None,
            };
            filled += usize::from(age.is_none() || sex.is_none());
            [age.unwrap_or(median_age), sex.unwrap_or(common_sex), l.tumour_volume_ml]
        })
        .collect();
    (rows, filled)
}

/// Train, calibrate, predict and report; returns the lines to print.
pub fn clinical_arm(lesion_messages: &[LesionV1], labels: &Path, out: &Path) -> Result<Vec<String>> {
    let truth = read_truth(labels)?;
    // Latest revision of each labelled lesion.
    let mut latest: BTreeMap<&str, &LesionV1> = BTreeMap::new();
    for l in lesion_messages {
        if truth.contains_key(&l.case_id) && latest.get(l.case_id.as_str()).is_none_or(|o| o.revision < l.revision) {
            latest.insert(&l.case_id, l);
        }
    }
    let lesions: Vec<&LesionV1> = latest.into_values().collect();
    if lesions.len() < MIN_LABELLED {
        return Ok(vec![format!(
            "clinical model: not trained; {} labelled lesions, at least {MIN_LABELLED} are needed for a train/validation/test split",
            lesions.len()
        )]);
    }
    let protocol: Vec<Lesion> = lesions
        .iter()
        .map(|l| {
            let (malignant, histopathology) = truth[&l.case_id];
            Lesion { patient: l.patient_pseudonym.clone(), site: l.site.clone(), malignant, histopathology }
        })
        .collect();
    let split =
        train_validation_test(&protocol, [0.7, 0.2, 0.1], SPLIT_SEED).context("splitting the labelled lesions")?;
    if split.test.is_empty() || split.validation.is_empty() {
        bail!("{} labelled lesions are too few for a train/validation/test split", lesions.len());
    }
    let (x, filled) = features(&lesions, &split.train);
    let y: Vec<bool> = protocol.iter().map(|l| l.malignant).collect();
    let pick = |idx: &[usize]| -> (Vec<Features>, Vec<bool>) { idx.iter().map(|&i| (x[i], y[i])).unzip() };
    let ((tx, ty), (vx, vy)) = (pick(&split.train), pick(&split.validation));
    let model = ClinicalModel::fit(&tx, &ty, &vx, &vy, &ClinicalSettings::default()).context("clinical model")?;
    let raw_val: Vec<f64> = vx.iter().map(|r| model.probability(r)).collect();
    let platt = Platt::fit(&raw_val, &vy).context("Platt calibration of the clinical model")?;

    // Held-out predictions, then the report on them.
    let predictions = out.join("predictions.csv");
    let mut f = std::fs::File::create(&predictions).with_context(|| format!("writing {}", predictions.display()))?;
    writeln!(f, "case_id,model,probability")?;
    let mut by_model: renal_eval::input::Predictions = BTreeMap::new();
    let mut test_labels = renal_eval::input::Labels::new();
    for &i in &split.test {
        let p = platt.probability(model.probability(&x[i]));
        writeln!(f, "{},clinical,{p}", lesions[i].case_id)?;
        by_model.entry("clinical".into()).or_default().insert(lesions[i].case_id.clone(), p);
        test_labels.insert(lesions[i].case_id.clone(), y[i]);
    }
    let split_file = out.join("split.csv");
    let mut s = std::fs::File::create(&split_file).with_context(|| format!("writing {}", split_file.display()))?;
    writeln!(s, "case_id,part")?;
    for (part, idx) in [("train", &split.train), ("validation", &split.validation), ("test", &split.test)] {
        for &i in idx.iter() {
            writeln!(s, "{},{part}", lesions[i].case_id)?;
        }
    }
    let models = out.join("models");
    std::fs::create_dir_all(&models)?;
    let bundle = serde_json::json!({
        "model": "clinical",
        "features": ["age_years", "sex_male", "tumour_volume_ml"],
        "settings": ClinicalSettings::default(),
        "weights": model,
        "calibration": {"method": "platt", "fitted_on": "validation", "a": platt.a, "b": platt.b},
        "split": {"seed": SPLIT_SEED, "fractions": [0.7, 0.2, 0.1], "train": split.train.len(), "validation": split.validation.len(), "test": split.test.len()},
    });
    std::fs::write(models.join("clinical.json"), serde_json::to_string_pretty(&bundle)?)?;
    let report = build(&test_labels, &by_model, &Default::default(), &Settings::default());
    let report_dir = out.join("report");
    renal_eval::write_report(&report, &report_dir)?;
    let c = &report.models["clinical"];
    Ok(vec![
        format!(
            "clinical model: {} train / {} validation / {} test lesions (grouped by patient; {} with age or sex filled in); stopped at epoch {} of {}",
            split.train.len(),
            split.validation.len(),
            split.test.len(),
            filled,
            model.best_epoch,
            model.epochs_run
        ),
        format!(
            "  held-out test: accuracy {:.2} ({:.2}-{:.2}), ROC AUC {:.2} ({:.2}-{:.2}), ECE {:.3}",
            c.calls.accuracy.estimate,
            c.calls.accuracy.ci95[0],
            c.calls.accuracy.ci95[1],
            c.roc_auc.estimate,
            c.roc_auc.ci95[0],
            c.roc_auc.ci95[1],
            c.ece
        ),
        format!("  predictions: {}", predictions.display()),
        format!("  report: {}", report_dir.join("index.html").display()),
    ])
}
