//! The retraining loop on an embedded run's output folder: `renal labels import FILE --out
//! OUT`, `renal train --out OUT` and `renal models list|show|promote|rollback`.
//!
//! `renal run` registers the first served round's bundles as the first model version and
//! promotes it for the `default` deployment. Imported labels merge into `OUT/labels.jsonl` (a
//! later label of a lesion replaces the earlier one). `renal train --out OUT` fits a challenger
//! on every labelled lesion except the champion's held-out patients', predicts those held-out
//! lesions through the inference and ensemble stages with both models, and promotes the
//! challenger only if `renal_trainer::challenge` says so; either way the challenger is
//! registered and the decision recorded with its reason. `--retrain recalibrate` refits the
//! champion's calibrator alone on labelled lesions it has never seen and judges both on others of
//! them; `--retrain auto` does that when those lesions raise the calibration alert, and a full
//! retrain otherwise.

use crate::embedded::{predict_through_stages, Prepared};
use anyhow::{bail, Context, Result};
use renal_messages::{LesionV1, Message, PredictionV1};
use renal_registry::{Entry, ManifestRow, Registry, DEFAULT_DEPLOYMENT};
use renal_trainer::protocol::{HeldOutPatients, Truth, SPLIT_SEED};
use renal_trainer::{calibration_alert, AlertRule, Fitted, Margins, Retrain, Served};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The label book of an output folder.
pub fn book_path(out: &Path) -> PathBuf {
    out.join("labels.jsonl")
}

/// The registry of an output folder (its table goes to the folder's store).
pub fn registry_of(out: &Path) -> Registry {
    Registry::new(&out.join("models"), &out.join("store"))
}

/// Where `renal models` looks: `--out OUT` (an embedded run's folder) or `--registry DIR`.
pub fn open_registry(out: Option<&Path>, registry: Option<&Path>) -> Result<Registry> {
    match (out, registry) {
        (Some(out), None) => Ok(registry_of(out)),
        (None, Some(dir)) => Ok(Registry::new(dir, &dir.join("store"))),
        _ => bail!("name the registry: --out OUT (a renal run output folder) or --registry DIR"),
    }
}

/// What the trainer reads of a label book.
pub fn truth_of(book: &renal_labels::book::Book) -> Truth {
    book.values()
        .map(|l| (l.case_id.clone(), (l.label == "malignant", l.diagnosis_source == "histopathology")))
        .collect()
}

/// Write the labels `renal run` trained on as the folder's label book.
pub fn start_book(labels_csv: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(labels_csv).with_context(|| format!("reading {}", labels_csv.display()))?;
    let mut book = renal_labels::book::Book::new();
    let rows = renal_labels::parse(&bytes).with_context(|| labels_csv.display().to_string())?;
    renal_labels::book::merge(&mut book, rows.into_iter().filter_map(Result::ok));
    renal_labels::book::write(&book_path(out), &book).with_context(|| format!("writing {}", book_path(out).display()))
}

fn manifest(lesions: &[LesionV1], malignant: &[bool], rows: &[usize]) -> Vec<ManifestRow> {
    let mut out: Vec<ManifestRow> = rows
        .iter()
        .map(|&i| ManifestRow {
            case_id: lesions[i].case_id.clone(),
            revision: lesions[i].revision,
            label: if malignant[i] { "malignant" } else { "benign" }.into(),
            lesion_sha256: renal_store::sha256_hex(&lesions[i].encode()),
        })
        .collect();
    out.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    out
}

/// ROC AUC and ECE (10 bins) of predictions against the labels, as registry metrics.
fn held_out_metrics(predictions: &[PredictionV1], truth: &BTreeMap<String, bool>) -> serde_json::Value {
    let (p, y): (Vec<f64>, Vec<bool>) =
        predictions.iter().filter_map(|p| truth.get(&p.case_id).map(|&y| (p.probability, y))).unzip();
    serde_json::json!({
        "held_out_lesions": p.len(),
        "malignant": y.iter().filter(|&&m| m).count(),
        "roc_auc": renal_stats::roc_auc(&p, &y),
        "ece": renal_stats::expected_calibration_error(&p, &y, 10),
    })
}

/// An entry for round `n` of `fitted`, served as `bundles`, with its held-out predictions.
fn entry_of(
    fitted: &Fitted,
    n: usize,
    bundles: &Served,
    held_out: &[PredictionV1],
    retrain: &str,
    champion: Option<&str>,
    extra: serde_json::Value,
) -> Entry {
    let round = &fitted.rounds[n];
    let trained: Vec<usize> = round.split.train.iter().chain(&round.split.validation).copied().collect();
    let truth: BTreeMap<String, bool> =
        fitted.lesions.iter().zip(&fitted.malignant).map(|(l, &m)| (l.case_id.clone(), m)).collect();
    let patients: BTreeSet<String> =
        round.split.test.iter().map(|&i| fitted.lesions[i].patient_pseudonym.clone()).collect();
    let mut metrics = held_out_metrics(held_out, &truth);
    if let (Some(m), serde_json::Value::Object(x)) = (metrics.as_object_mut(), extra) {
        m.extend(x);
    }
    Entry {
        version: bundles.ensemble.clone(),
        cnn_version: bundles.cnn.clone(),
        created_at: renal_base::now_rfc3339(),
        code_version: renal_messages::code_version().to_string(),
        retrain: retrain.into(),
        champion: champion.map(String::from),
        training: manifest(&fitted.lesions, &fitted.malignant, &trained),
        held_out: manifest(&fitted.lesions, &fitted.malignant, &round.split.test),
        held_out_patients: patients.into_iter().collect(),
        metrics,
    }
}

/// After `renal run` trained: register the first streamed round's bundles and promote them for
/// the default deployment, unless it already serves a model.
pub fn register_first(fitted: &Fitted, streamed: &[(usize, Vec<PredictionV1>)], out: &Path, what: &str) -> Result<()> {
    let Some((n, held_out)) = streamed.first() else { return Ok(()) };
    let bundles = fitted.rounds[*n].served.as_ref().expect("streamed rounds were served");
    let registry = registry_of(out);
    if let Some(p) = registry.promoted(DEFAULT_DEPLOYMENT)? {
        println!("models: {} already serves {}; this run's bundles are not registered", p.deployment, p.version);
        return Ok(());
    }
    let extra = serde_json::json!({ "round": n + 1, "protocol": what });
    let entry = entry_of(fitted, *n, bundles, held_out, "initial", None, extra);
    registry.register(&entry)?;
    let reason = format!("first model: round {} of {what}", n + 1);
    registry.promote(DEFAULT_DEPLOYMENT, &entry.version, None, &reason)?;
    println!(
        "models: {} (CNN {}) registered and promoted for deployment {DEFAULT_DEPLOYMENT} in {}",
        entry.version,
        entry.cnn_version,
        registry.root().display()
    );
    Ok(())
}

/// `renal labels import FILE --out OUT`: merge a labels CSV into the folder's label book; bad
/// rows go to `OUT/dead_letters.jsonl` with their reason.
pub fn import_labels(file: &Path, out: &Path) -> Result<()> {
    if !out.join("lesions.jsonl").exists() {
        bail!("{} is not a renal run output folder (no lesions.jsonl)", out.display());
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let rows = renal_labels::parse(&bytes).with_context(|| file.display().to_string())?;
    let source = file.file_name().map_or("labels".into(), |n| n.to_string_lossy().to_string());
    let (mut good, mut letters) = (Vec::new(), Vec::new());
    for row in rows {
        match row {
            Ok(l) => good.push(l),
            Err(e) => letters.push(renal_labels::run::dead_letter_of(&source, &e)),
        }
    }
    let path = book_path(out);
    let mut book = renal_labels::book::read(&path).map_err(anyhow::Error::msg)?;
    let merged = renal_labels::book::merge(&mut book, good);
    renal_labels::book::write(&path, &book).with_context(|| format!("writing {}", path.display()))?;
    crate::embedded::append_dead_letters(&letters, out)?;
    for l in &letters {
        eprintln!("  {}: {} ({})", l.source.key, l.reason, l.reason_code);
    }
    println!(
        "labels: {} new, {} revised, {} unchanged; {} bad rows (dead letters in {}); {} lesions labelled in {}",
        merged.new,
        merged.revised,
        merged.unchanged,
        letters.len(),
        out.join("dead_letters.jsonl").display(),
        book.len(),
        path.display()
    );
    Ok(())
}

/// What `renal train --out` retrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrainChoice {
    /// The networks, the clinical model, the ensemble and every calibrator.
    Full,
    /// The champion's ensemble calibrator alone, on labelled lesions it has never seen.
    Recalibrate,
    /// Recalibrate when those lesions raise the calibration alert (ECE above 0.15, P below
    /// 0.01), retrain in full otherwise.
    Auto,
}

/// What a retrain starts from: the champion, the labels, the folder's lesions and blob store.
struct Start {
    registry: Registry,
    champion: Entry,
    truth: Truth,
    prepared: Prepared,
    device: tch::Device,
}

/// Labelled lesions (latest revisions) the champion neither trained on nor was judged on.
fn unseen(start: &Start) -> (Vec<LesionV1>, Vec<renal_learn::split::Lesion>) {
    let seen: BTreeSet<&str> =
        start.champion.training.iter().chain(&start.champion.held_out).map(|r| r.case_id.as_str()).collect();
    let (lesions, facts) = renal_trainer::protocol::labelled(&start.prepared.lesions, &start.truth);
    lesions
        .into_iter()
        .zip(facts)
        .filter(|(l, _)| !seen.contains(l.case_id.as_str()))
        .map(|(l, f)| (l.clone(), f))
        .unzip()
}

/// `renal train --out OUT`: fit a challenger (in full, or its calibrator only), compare it with
/// the champion on held-out lesions neither trained on, register it, and promote it or record
/// why not.
pub fn retrain(
    out: &Path,
    deployment: &str,
    margins: &Margins,
    choice: RetrainChoice,
    cnn: (&crate::train::CnnArgs, renal_cnn::train::TrainConfig),
) -> Result<()> {
    let registry = registry_of(out);
    let Some(pointer) = registry.promoted(deployment)? else {
        bail!(
            "deployment {deployment} serves no model in {}: run renal run on a labelled cohort first",
            registry.root().display()
        );
    };
    let champion = registry.entry(&pointer.version)?;
    let book = renal_labels::book::read(&book_path(out)).map_err(anyhow::Error::msg)?;
    if book.is_empty() {
        bail!(
            "no labels in {}: import some with renal labels import FILE --out {}",
            book_path(out).display(),
            out.display()
        );
    }
    let device = crate::train::device(cnn.0.device)?;
    let mut start =
        Start { registry, champion, truth: truth_of(&book), prepared: crate::embedded::reopen(out)?, device };
    let (recent, facts) = unseen(&start);
    let mut champion_on_recent = Vec::new();
    let kind = match choice {
        RetrainChoice::Full => Retrain::Full,
        RetrainChoice::Recalibrate => Retrain::Recalibrate,
        RetrainChoice::Auto => {
            let served = served_of(&start.champion);
            champion_on_recent = predict(&mut start, &recent, &served, out)?;
            let (p, y) = labelled_pairs(&champion_on_recent, &start.truth);
            let check = calibration_alert(&p, &y, &AlertRule::default());
            if check.lesions == 0 {
                println!(
                    "{} has seen every labelled lesion: no calibration to check, full retrain",
                    start.champion.version
                );
            } else {
                println!(
                    "calibration of {} on {} labelled lesions it has never seen ({} malignant): mean predicted {:.3}, ECE {:.3} (P {:.3}): {}",
                    start.champion.version,
                    check.lesions,
                    check.malignant,
                    check.mean_predicted,
                    check.ece,
                    check.ece_p,
                    if check.alert { "calibration alert, recalibration only" } else { "no calibration alert, full retrain" }
                );
            }
            if check.alert {
                Retrain::Recalibrate
            } else {
                Retrain::Full
            }
        }
    };
    match kind {
        Retrain::Full => retrain_full(start, out, deployment, margins, cnn.1),
        Retrain::Recalibrate => recalibrate(start, out, deployment, margins, &recent, &facts, champion_on_recent),
    }
}

fn served_of(e: &Entry) -> Served {
    Served { cnn: e.cnn_version.clone(), ensemble: e.version.clone() }
}

/// Predictions of `lesions` through the inference and ensemble stages serving `bundles`; dead
/// letters are kept for the folder.
fn predict(start: &mut Start, lesions: &[LesionV1], bundles: &Served, out: &Path) -> Result<Vec<PredictionV1>> {
    let p = &mut start.prepared;
    let (predicted, dead) =
        predict_through_stages(&p.rt, lesions, bundles, start.registry.root(), &p.store, start.device, out)?;
    p.letters.extend(dead);
    Ok(predicted)
}

/// (probability, malignant) of the predictions whose lesion is labelled.
fn labelled_pairs(predictions: &[PredictionV1], truth: &Truth) -> (Vec<f64>, Vec<bool>) {
    predictions.iter().filter_map(|p| truth.get(&p.case_id).map(|&(y, _)| (p.probability, y))).unzip()
}

/// Both models' probabilities on the lesions both predicted, in case order, and the labels.
fn paired(champion: &[PredictionV1], challenger: &[PredictionV1], truth: &Truth) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let by_case = |p: &[PredictionV1]| -> BTreeMap<String, f64> {
        p.iter().map(|p| (p.case_id.clone(), p.probability)).collect()
    };
    let (old, new) = (by_case(champion), by_case(challenger));
    let cases: Vec<&String> = old.keys().filter(|c| new.contains_key(*c) && truth.contains_key(*c)).collect();
    let malignant = cases.iter().map(|c| truth[*c].0).collect();
    let (a, b) = cases.iter().map(|c| (old[*c], new[*c])).unzip();
    (a, b, malignant)
}

/// Register the challenger and promote it or record why not.
fn settle(start: Start, out: &Path, deployment: &str, entry: Entry, decision: renal_trainer::Decision) -> Result<()> {
    let (registry, champion) = (&start.registry, &start.champion.version);
    if registry.entries()?.iter().any(|e| e.version == entry.version) {
        println!("challenger {} is already registered (the same fit): nothing new", entry.version);
        return Ok(());
    }
    registry.register(&entry)?;
    if decision.promote {
        registry.promote(deployment, &entry.version, Some(champion), &decision.reason)?;
        println!("challenger {} ({}) PROMOTED for {deployment}: {}", entry.version, entry.retrain, decision.reason);
    } else {
        registry.reject(deployment, &entry.version, &decision.reason)?;
        println!(
            "challenger {} ({}) registered, NOT promoted; {deployment} still serves {champion}: {}",
            entry.version, entry.retrain, decision.reason
        );
    }
    crate::embedded::write_dead_letters(&start.prepared.letters, out)
}

/// Everything retrained on every labelled lesion outside the champion's held-out patients.
fn retrain_full(
    mut start: Start,
    out: &Path,
    deployment: &str,
    margins: &Margins,
    config: renal_cnn::train::TrainConfig,
) -> Result<()> {
    let champion = start.champion.clone();
    let protocol = renal_trainer::Protocol::HeldOut(HeldOutPatients(std::sync::Arc::new(
        champion.held_out_patients.iter().cloned().collect(),
    )));
    let setup = renal_trainer::CnnSetup { store: start.prepared.store.clone(), device: start.device, config };
    println!(
        "challenger: {} labelled lesions; testing on the held-out patients of {} ({} lesions when it was trained)",
        start.truth.len(),
        champion.version,
        champion.held_out.len()
    );
    let fitted = renal_trainer::fit(
        &start.prepared.lesions,
        &start.truth,
        &protocol,
        Some(&setup),
        Some(&start.prepared.table_root),
        start.registry.root(),
    )?;
    let bundles = fitted.rounds[0].served.clone().context("the challenger's networks and ensemble were not fitted")?;
    let test: Vec<LesionV1> = fitted.rounds[0].split.test.iter().map(|&i| fitted.lesions[i].clone()).collect();
    let old = predict(&mut start, &test, &served_of(&champion), out)?;
    let new = predict(&mut start, &test, &bundles, out)?;
    let (a, b, malignant) = paired(&old, &new, &start.truth);
    let decision = renal_trainer::decide(&a, &b, &malignant, margins)?;
    let extra = serde_json::json!({ "comparison": decision.comparison, "decision": decision.reason });
    let entry = entry_of(&fitted, 0, &bundles, &new, Retrain::Full.name(), Some(&champion.version), extra);
    settle(start, out, deployment, entry, decision)
}

/// The champion's calibrator refitted on half of the labelled lesions it has never seen (by
/// patient); both judged on the other half.
fn recalibrate(
    mut start: Start,
    out: &Path,
    deployment: &str,
    margins: &Margins,
    recent: &[LesionV1],
    facts: &[renal_learn::split::Lesion],
    mut champion_on_recent: Vec<PredictionV1>,
) -> Result<()> {
    let champion = start.champion.clone();
    let (refit, held) = renal_trainer::recalibrate::recent_halves(facts, SPLIT_SEED).with_context(|| {
        format!(
            "recalibration needs labelled lesions {} has never seen, of several patients; there are {}",
            champion.version,
            recent.len()
        )
    })?;
    if champion_on_recent.is_empty() {
        champion_on_recent = predict(&mut start, recent, &served_of(&champion), out)?;
    }
    let bundle = renal_ensemble::bundle::load(start.registry.root(), &champion.version)?;
    let by_case: BTreeMap<&str, &PredictionV1> = champion_on_recent.iter().map(|p| (p.case_id.as_str(), p)).collect();
    let (meta, y): (Vec<f64>, Vec<bool>) = refit
        .iter()
        .filter_map(|&i| by_case.get(recent[i].case_id.as_str()).map(|p| (p.inputs, facts[i].malignant)))
        .map(|(inputs, y)| (bundle.content.ensemble.meta.probability(&inputs), y))
        .unzip();
    let ensemble = bundle
        .content
        .ensemble
        .recalibrated(&meta, &y)
        .with_context(|| format!("refitting the calibrator of {} on {} lesions", champion.version, meta.len()))?;
    println!(
        "recalibration: the calibrator of {} refitted on {} lesions ({} malignant); judged on {} others",
        champion.version,
        meta.len(),
        y.iter().filter(|&&m| m).count(),
        held.len()
    );
    let fitted = serde_json::json!({
        "recalibrated_from": champion.version,
        "calibration_lesions": meta.len(),
        "calibration_malignant": y.iter().filter(|&&m| m).count(),
    });
    let content = renal_ensemble::bundle::Content { ensemble, fitted, ..bundle.content.clone() };
    let saved = renal_ensemble::bundle::save(
        start.registry.root(),
        content,
        renal_messages::code_version(),
        &renal_base::now_rfc3339(),
    )?;
    let bundles = Served { cnn: champion.cnn_version.clone(), ensemble: saved.version.clone() };
    let held_lesions: Vec<LesionV1> = held.iter().map(|&i| recent[i].clone()).collect();
    let held_ids: BTreeSet<&str> = held_lesions.iter().map(|l| l.case_id.as_str()).collect();
    let old: Vec<PredictionV1> =
        champion_on_recent.iter().filter(|p| held_ids.contains(p.case_id.as_str())).cloned().collect();
    let new = predict(&mut start, &held_lesions, &bundles, out)?;
    let (a, b, malignant) = paired(&old, &new, &start.truth);
    let decision = renal_trainer::decide(&a, &b, &malignant, margins)?;

    let labels: Vec<bool> = facts.iter().map(|f| f.malignant).collect();
    let mut training = champion.training.clone();
    training.extend(manifest(recent, &labels, &refit));
    training.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    let truth: BTreeMap<String, bool> = start.truth.iter().map(|(c, &(y, _))| (c.clone(), y)).collect();
    let mut metrics = held_out_metrics(&new, &truth);
    if let Some(m) = metrics.as_object_mut() {
        m.insert("comparison".into(), serde_json::to_value(&decision.comparison)?);
        m.insert("decision".into(), decision.reason.clone().into());
    }
    let entry = Entry {
        version: saved.version.clone(),
        cnn_version: champion.cnn_version.clone(),
        created_at: renal_base::now_rfc3339(),
        code_version: renal_messages::code_version().to_string(),
        retrain: Retrain::Recalibrate.name().into(),
        champion: Some(champion.version.clone()),
        training,
        held_out: manifest(recent, &labels, &held),
        held_out_patients: held_lesions
            .iter()
            .map(|l| l.patient_pseudonym.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        metrics,
    };
    settle(start, out, deployment, entry, decision)
}

/// `renal models list`.
pub fn list(registry: &Registry) -> Result<()> {
    let entries = registry.entries()?;
    if entries.is_empty() {
        println!("no model versions in {}", registry.root().display());
        return Ok(());
    }
    let deployments = registry.deployments()?;
    println!(
        "{:<18} {:<18} {:<14} {:<21} {:>8} {:>7} {:>6}  promoted for",
        "version", "cnn", "retrain", "created", "held-out", "roc_auc", "ece"
    );
    for e in &entries {
        let serving: Vec<&str> =
            deployments.iter().filter(|p| p.version == e.version).map(|p| p.deployment.as_str()).collect();
        let number =
            |k: &str| e.metrics.get(k).and_then(serde_json::Value::as_f64).map_or("-".into(), |x| format!("{x:.3}"));
        println!(
            "{:<18} {:<18} {:<14} {:<21} {:>8} {:>7} {:>6}  {}",
            e.version,
            e.cnn_version,
            e.retrain,
            e.created_at.get(..19).unwrap_or(&e.created_at),
            e.held_out.len(),
            number("roc_auc"),
            number("ece"),
            if serving.is_empty() { "-".to_string() } else { serving.join(",") }
        );
    }
    Ok(())
}

/// `renal models show VERSION`: the entry (without its lesion-by-lesion manifest) and its events.
pub fn show(registry: &Registry, version: &str) -> Result<()> {
    let e = registry.entry(version)?;
    let summary = serde_json::json!({
        "version": e.version,
        "cnn_version": e.cnn_version,
        "created_at": e.created_at,
        "code_version": e.code_version,
        "retrain": e.retrain,
        "champion": e.champion,
        "training_lesions": e.training.len(),
        "held_out_lesions": e.held_out.len(),
        "metrics": e.metrics,
        "entry": registry.root().join("entries").join(format!("{version}.json")),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    for ev in registry.events()?.into_iter().filter(|ev| ev.model_version == version) {
        let at = ev.deployment.map(|d| format!(" ({d})")).unwrap_or_default();
        println!("{} {}{at}: {}", ev.provenance.produced_at, ev.event, ev.reason.unwrap_or_default());
    }
    Ok(())
}

/// `renal models promote VERSION`.
pub fn promote(registry: &Registry, deployment: &str, version: &str, reason: &str) -> Result<()> {
    let current = registry.promoted(deployment)?.map(|p| p.version);
    match registry.promote(deployment, version, current.as_deref(), reason)? {
        Some(_) => println!("{deployment}: {} -> {version}", current.as_deref().unwrap_or("nothing")),
        None => println!("{deployment} already serves {version}"),
    }
    Ok(())
}

/// `renal models rollback`.
pub fn rollback(registry: &Registry, deployment: &str, reason: &str) -> Result<()> {
    let e = registry.rollback(deployment, reason)?;
    println!("{deployment}: rolled back to {} ({})", e.model_version, e.reason.unwrap_or_default());
    Ok(())
}
