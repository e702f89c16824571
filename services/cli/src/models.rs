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

use anyhow::{bail, Context, Result};
use renal_messages::PredictionV1;
use renal_registry::{Registry, DEFAULT_DEPLOYMENT};
use renal_trainer::retrain::{entry_of, Choice, Start};
use renal_trainer::{Fitted, Margins};
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

/// Write the labels `renal run` trained on as the folder's label book.
pub fn start_book(labels_csv: &Path, keys: &renal_base::keys::Keys, out: &Path) -> Result<()> {
    let bytes = std::fs::read(labels_csv).with_context(|| format!("reading {}", labels_csv.display()))?;
    let mut book = renal_labels::book::Book::new();
    let rows = renal_labels::parse(&bytes, Some(keys)).with_context(|| labels_csv.display().to_string())?;
    renal_labels::book::merge(&mut book, rows.into_iter().filter_map(Result::ok));
    renal_labels::book::write(&book_path(out), &book).with_context(|| format!("writing {}", book_path(out).display()))
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
    let keys = crate::embedded::run_keys(out)?;
    let rows = renal_labels::parse(&bytes, Some(&keys)).with_context(|| file.display().to_string())?;
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

/// `renal labels import FILE --config WORKER.toml`: each good row to `renal.labels`, each bad
/// row to `renal.dead.labels` with its reason, on the broker the file's `[kafka]` names. A file
/// keyed by accession number needs the de-identification secret in `RENAL_PSEUDONYM_SECRET`.
pub fn send_labels(file: &Path, config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut table: toml::Table = toml::from_str(&text).with_context(|| config.display().to_string())?;
    let kafka = crate::worker::kafka_section(&mut table).with_context(|| config.display().to_string())?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let keys = renal_base::keys::Keys::from_env(renal_ingest::config::DEFAULT_SECRET_ENV);
    let rows = renal_labels::parse(&bytes, keys.as_ref()).with_context(|| file.display().to_string())?;
    let source = file.file_name().map_or("labels".into(), |n| n.to_string_lossy().to_string());
    let rt = tokio::runtime::Runtime::new()?;
    let stats = rt.block_on(async {
        let topics = [renal_messages::topics::LABELS, renal_messages::topics::DEAD_LABELS];
        let bus = renal_bus::connect(&kafka, "renal-labels", &topics).await?;
        renal_labels::run::import(&bus, &source, rows).await
    })?;
    println!(
        "labels: {} sent to renal.labels, {} bad rows to renal.dead.labels ({})",
        stats.labels, stats.dead_letters, kafka.bootstrap_servers
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
    /// The champion's ensemble meta-classifier and calibrator, on labelled lesions it has never
    /// seen; its networks and clinical model kept.
    Ensemble,
    /// Recalibrate when those lesions raise the calibration alert (ECE above 0.15, P below
    /// 0.01), retrain in full otherwise.
    Auto,
}

/// `renal train --out OUT`: fit a challenger (in full, or its calibrator only), compare it with
/// the champion on held-out lesions neither trained on, register it, and promote it or record
/// why not ([`renal_trainer::retrain`]).
pub fn retrain(
    out: &Path,
    deployment: &str,
    margins: &Margins,
    choice: RetrainChoice,
    cnn: (&crate::train::CnnArgs, renal_cnn::train::TrainConfig),
) -> Result<()> {
    let registry = registry_of(out);
    let book = renal_labels::book::read(&book_path(out)).map_err(anyhow::Error::msg)?;
    if book.is_empty() {
        bail!(
            "no labels in {}: import some with renal labels import FILE --out {}",
            book_path(out).display(),
            out.display()
        );
    }
    if registry.promoted(deployment)?.is_none() {
        bail!(
            "deployment {deployment} serves no model in {}: run renal run on a labelled cohort first",
            registry.root().display()
        );
    }
    let device = crate::train::device(cnn.0.device)?;
    let prepared = crate::embedded::reopen(out)?;
    let truth = renal_trainer::retrain::truth_of(&book);
    let start = Start::new(
        registry,
        deployment,
        truth,
        prepared.lesions,
        prepared.store,
        Some(prepared.table_root),
        device,
        out.to_path_buf(),
    )?;
    let choice = match choice {
        RetrainChoice::Full => Choice::Full,
        RetrainChoice::Recalibrate => Choice::Recalibrate,
        RetrainChoice::Ensemble => Choice::Ensemble,
        RetrainChoice::Auto => Choice::Auto,
    };
    let outcome = renal_trainer::retrain::retrain(start, margins, choice, cnn.1, &|line| println!("{line}"))?;
    crate::embedded::append_dead_letters(&outcome.dead_letters, out)
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
