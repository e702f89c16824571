//! `renal run`: every stage in one process on the in-process bus, through the same `run`
//! functions the Kafka workers use.
//!
//! Ingest drains the cohort's site folders, preprocess drains `renal.cases`, radiomics drains
//! `renal.lesions` into the feature store. With `labels.csv` the trainer then fits and saves
//! the bundles of each round of the protocol, and each round's held-out lesions are streamed,
//! as new arrivals, through the inference and ensemble stages serving that round's bundles;
//! `predictions.csv` takes the ensemble's rows from `renal.predictions`.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use renal_bus::InProcessBus;
use renal_ingest::{IngestConfig, IngestStats, Mode};
use renal_messages::{topics, CaseV1, DeadLetterV1, LesionV1, Message, PredictionV1};
use renal_store::BlobStore;
use renal_trainer::stages::predict_through_stages;
use renal_trainer::{Predictions, Protocol, Served};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn spinner(template: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn bar(len: usize, what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {unit} eta {{eta}}"))
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The pseudonym secret: from the environment when set, else a random one kept in the output
/// folder so repeated embedded runs give the same pseudonyms.
fn embedded_secret(out: &Path, env: &str) -> Result<Vec<u8>> {
    if let Ok(s) = std::env::var(env) {
        return Ok(s.into_bytes());
    }
    let path = out.join(".pseudonym-secret");
    if let Ok(s) = std::fs::read(&path) {
        return Ok(s);
    }
    let mut secret = vec![0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))?;
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// The de-identification keys of an output folder: the secret its ingest used (from the
/// environment when set, else the one kept in the folder).
pub fn run_keys(out: &Path) -> Result<renal_base::keys::Keys> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let secret = embedded_secret(out, renal_ingest::config::DEFAULT_SECRET_ENV)?;
    Ok(renal_base::keys::Keys::new(&secret))
}

/// `renal run --input DIR --out OUT`; `cnn`: the networks' training flags, `None` to skip them.
pub fn run(input: &Path, out: &Path, protocol: &Protocol, cnn: Option<&crate::train::CnnArgs>) -> Result<()> {
    // Check the flags before minutes of preprocessing.
    let cnn_config = cnn.map(|a| a.settings().validate()).transpose().context("training settings")?;
    check_protocol(input, protocol)?;
    let mut prepared = prepare(input, out)?;
    let labels = input.join("labels.csv");
    if labels.exists() {
        train(&mut prepared, &labels, out, protocol, cnn.zip(cnn_config))?;
    } else {
        println!("no {}: nothing to train or evaluate against", labels.display());
    }
    write_dead_letters(&prepared.letters, out)
}

/// Refuse a leave-one-institution-out protocol naming a site the input lacks.
pub fn check_protocol(input: &Path, protocol: &Protocol) -> Result<()> {
    let sites = renal_ingest::config::sites_of_cohort(input)?;
    if let Protocol::LeaveOut(site) = protocol {
        if !sites.iter().any(|s| &s.code == site) {
            let known: Vec<&str> = sites.iter().map(|s| s.code.as_str()).collect();
            bail!("--protocol loio:{site}: the input has no site {site} (sites: {})", known.join(", "));
        }
    }
    Ok(())
}

/// A cohort through ingest, preprocess and radiomics, ready to train on.
pub struct Prepared {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) store: Arc<dyn BlobStore>,
    /// The cases as they rode `renal.cases` (the monitor reads their scanners).
    pub cases: Vec<CaseV1>,
    /// The preprocessed lesions as they rode `renal.lesions`.
    pub lesions: Vec<LesionV1>,
    /// Every stage's dead letters so far.
    pub letters: Vec<DeadLetterV1>,
    /// Root of the feature store.
    pub table_root: std::path::PathBuf,
}

/// Ingest, preprocess and radiomics of the cohort in `input`, into `out`.
pub fn prepare(input: &Path, out: &Path) -> Result<Prepared> {
    let sites = renal_ingest::config::sites_of_cohort(input)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Batch: everything is already there, so no quiet period, settle time or timeout; never
    // modify the user's input.
    let config = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        scan_interval_ms: 0,
        file_settle_ms: 0,
        move_processed: false,
        ..IngestConfig::new(sites, out.join("blobs").display().to_string(), out.join("store"))
    };
    let secret = embedded_secret(out, &config.pseudonym_secret_env)?;
    let bus = InProcessBus::new(3);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let shown = spinner("{spinner} ingest {msg}");
    let show = |s: &IngestStats| {
        shown.set_message(format!("{} instances, {} cases, {} dead letters", s.instances, s.cases, s.dead_letters))
    };
    let ingested =
        rt.block_on(renal_ingest::run(&config, secret, bus.clone(), Mode::Batch, std::future::pending(), &show))?;
    shown.finish_and_clear();

    // Each stage drains its input, then stops.
    let store = renal_store::open(&config.blob_store)?;
    let shown = bar(bus.records(topics::CASES).len(), "preprocess", "cases");
    let drained = bus.drained(renal_preprocess::GROUP, topics::CASES);
    let settings = renal_preprocess::PreprocessSettings::default();
    let pre =
        rt.block_on(renal_preprocess::run(settings, store.clone(), bus.clone(), drained, &|n| shown.set_position(n)))?;
    shown.finish_and_clear();

    let shown = bar(bus.records(topics::LESIONS).len(), "radiomics", "lesions");
    let radiomics = renal_radiomics::RadiomicsConfig::new(config.blob_store.clone(), out.join("store"));
    let extractor = renal_radiomics::Extractor::new(
        store.clone(),
        renal_store::TableWriter::new(&radiomics.table_root),
        radiomics.load_settings()?,
    );
    let drained = bus.drained(renal_radiomics::GROUP, topics::LESIONS);
    let features = rt.block_on(renal_radiomics::run(extractor, bus.clone(), drained, &|n| shown.set_position(n)))?;
    shown.finish_and_clear();

    let mut letters: Vec<DeadLetterV1> = Vec::new();
    for t in topics::ALL.iter().filter(|t| t.payload == "DeadLetterV1") {
        for r in bus.records(*t) {
            letters.push(DeadLetterV1::decode(&r.payload)?);
        }
    }
    println!(
        "ingest: {} ({} duplicate), {}, {}",
        count(ingested.instances, "instance"),
        ingested.duplicates,
        count(ingested.cases, "case"),
        count(letters.len() as u64, "dead letter")
    );
    println!(
        "preprocess: {} in, {} out to renal.lesions (N4, T2-to-T1C histogram matching, 2.5D composites in {})",
        count(pre.inputs, "case"),
        count(pre.outputs, "lesion"),
        out.join("blobs").display()
    );
    println!(
        "radiomics: {} in, {} feature files ({} settings per series) in {} (the radiomics model that reads them is not built yet)",
        count(features.inputs, "lesion"),
        features.outputs,
        radiomics.load_settings()?.len(),
        radiomics.table_root.join(renal_radiomics::table::TABLE).display()
    );
    println!("  cases table: {}", out.join("store/cases").display());

    let lesions: Vec<LesionV1> =
        bus.records(topics::LESIONS).iter().map(|r| LesionV1::decode(&r.payload)).collect::<Result<_, _>>()?;
    let cases: Vec<CaseV1> =
        bus.records(topics::CASES).iter().map(|r| CaseV1::decode(&r.payload)).collect::<Result<_, _>>()?;
    // The cases as they rode renal.cases, for the monitor of a `--reuse` run.
    let cases_file = out.join("cases.jsonl");
    let mut f = std::fs::File::create(&cases_file).with_context(|| format!("writing {}", cases_file.display()))?;
    for c in &cases {
        writeln!(f, "{}", serde_json::to_string(c)?)?;
    }
    // The preprocessed lesions as they rode renal.lesions, for `renal train cnn --run OUT`.
    let lesions_file = out.join("lesions.jsonl");
    let mut f = std::fs::File::create(&lesions_file).with_context(|| format!("writing {}", lesions_file.display()))?;
    for l in &lesions {
        writeln!(f, "{}", serde_json::to_string(l)?)?;
    }
    println!("  lesions: {}", lesions_file.display());
    for line in renal_trainer::evaluate::reader_agreement(&lesions, out)? {
        println!("{line}");
    }
    Ok(Prepared { rt, store, cases, lesions, letters, table_root: radiomics.table_root })
}

/// What [`prepare`] left in `out` by an earlier run: its lesions, blob store, feature store and
/// dead letters (as [`write_dead_letters`] wrote them), without ingesting anything again.
pub fn reopen(out: &Path) -> Result<Prepared> {
    let context =
        |name: &str| format!("reading {} (is {} a finished earlier run?)", out.join(name).display(), out.display());
    let lesions =
        renal_trainer::cnn::read_lesions_file(&out.join("lesions.jsonl")).with_context(|| context("lesions.jsonl"))?;
    let letters: Vec<DeadLetterV1> = std::fs::read_to_string(out.join("dead_letters.jsonl"))
        .with_context(|| context("dead_letters.jsonl"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("a line of dead_letters.jsonl"))
        .collect::<Result<_>>()?;
    // Runs prepared before the monitor existed have no cases.jsonl: their scanners are unknown.
    let cases: Vec<CaseV1> = match std::fs::read_to_string(out.join("cases.jsonl")) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("a line of cases.jsonl"))
            .collect::<Result<_>>()?,
        Err(_) => Vec::new(),
    };
    let store = renal_store::open(&out.join("blobs").display().to_string())?;
    let radiomics = renal_radiomics::RadiomicsConfig::new(out.join("blobs").display().to_string(), out.join("store"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!("reopened {}: {} lesions, {} dead letters", out.display(), lesions.len(), letters.len());
    Ok(Prepared { rt, store, cases, lesions, letters, table_root: radiomics.table_root })
}

/// Fit every round of `protocol` on the prepared lesions and `labels`, predict each round's
/// held-out lesions through the inference and ensemble stages, and write the models,
/// predictions and report into `out`; `cnn`: the networks' flags and checked settings.
pub fn train(
    prepared: &mut Prepared,
    labels: &Path,
    out: &Path,
    protocol: &Protocol,
    cnn: Option<(&crate::train::CnnArgs, renal_cnn::train::TrainConfig)>,
) -> Result<()> {
    let keys = run_keys(out)?;
    let truth = renal_trainer::read_truth(labels, Some(&keys))?;
    let setup = match cnn {
        Some((args, config)) => Some(renal_trainer::CnnSetup {
            store: prepared.store.clone(),
            device: crate::train::device(args.device)?,
            config,
        }),
        None => None,
    };
    let registry = out.join("models");
    let fitted = match renal_trainer::fit(
        &prepared.lesions,
        &truth,
        protocol,
        setup.as_ref(),
        Some(&prepared.table_root),
        &registry,
    ) {
        Ok(fitted) => fitted,
        Err(e @ renal_trainer::TrainerError::TooFewLabelled { .. }) => {
            println!("models: not trained; {e}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let device = setup.as_ref().map_or(tch::Device::Cpu, |s| s.device);
    let mut served = Predictions::new();
    let mut streamed: Vec<(usize, Vec<PredictionV1>)> = Vec::new();
    for (n, round) in fitted.rounds.iter().enumerate() {
        let Some(bundles) = &round.served else { continue };
        let held_out: Vec<&LesionV1> = round.split.test.iter().map(|&i| &fitted.lesions[i]).collect();
        let what = format!("round {} of {}", n + 1, fitted.rounds.len());
        let (predicted, primary, dead) =
            held_out_through_stages(&prepared.rt, &held_out, bundles, &registry, &prepared.store, device, out, &what)?;
        prepared.letters.extend(dead);
        for (model, cases) in predicted {
            served.entry(model).or_default().extend(cases);
        }
        streamed.push((n, primary));
    }
    let config = setup.as_ref().map(|s| &s.config);
    for line in renal_trainer::evaluate::write_outputs(&fitted, &served, out, protocol, config)? {
        println!("{line}");
    }
    crate::models::start_book(labels, &keys, out)?;
    crate::models::register_first(&fitted, &streamed, out, &format!("{protocol:?}"))?;
    monitor_rounds(prepared, &fitted, &streamed, &registry, device, out)
}

/// Each served round's reference (its validation lesions through its stages) and its held-out
/// lesions through the monitor ([`crate::monitoring`]).
fn monitor_rounds(
    prepared: &Prepared,
    fitted: &renal_trainer::Fitted,
    streamed: &[(usize, Vec<PredictionV1>)],
    registry: &Path,
    device: tch::Device,
    out: &Path,
) -> Result<()> {
    if streamed.is_empty() {
        return Ok(());
    }
    let shown = spinner("{spinner} monitor: each round's reference through its stages {msg}");
    let mut references = Vec::new();
    for (n, _) in streamed {
        let round = &fitted.rounds[*n];
        let bundles = round.served.as_ref().expect("streamed rounds were served");
        shown.set_message(format!("(round {} of {})", n + 1, fitted.rounds.len()));
        let validation: Vec<LesionV1> = round.split.validation.iter().map(|&i| fitted.lesions[i].clone()).collect();
        let (predicted, _) =
            predict_through_stages(&prepared.rt, &validation, bundles, registry, &prepared.store, device, out)?;
        let threshold = renal_ensemble::bundle::load(registry, &bundles.ensemble)?.content.threshold;
        references.push((predicted, threshold));
    }
    shown.finish_and_clear();
    let rounds: Vec<crate::monitoring::RoundInput> = streamed
        .iter()
        .zip(&references)
        .map(|((n, held_out), (reference, threshold))| {
            let round = &fitted.rounds[*n];
            let lesion = |&i: &usize| (fitted.lesions[i].case_id.clone(), fitted.lesions[i].revision);
            crate::monitoring::RoundInput {
                round: n + 1,
                ensemble_version: &round.served.as_ref().expect("served").ensemble,
                threshold: *threshold,
                reference,
                reference_lesions: round.split.train.iter().chain(&round.split.validation).map(lesion).collect(),
                held_out,
            }
        })
        .collect();
    let malignant: std::collections::BTreeMap<String, bool> =
        fitted.lesions.iter().zip(&fitted.malignant).map(|(l, &m)| (l.case_id.clone(), m)).collect();
    let monitored = crate::monitoring::run(&rounds, &prepared.cases, &malignant, registry, &prepared.table_root)?;
    for line in crate::monitoring::summary(&monitored, &prepared.table_root) {
        println!("{line}");
    }
    for line in crate::monitoring::report(&prepared.table_root, &out.join("report").join("monitor"))? {
        println!("  {line}");
    }
    Ok(())
}

/// `OUT/dead_letters.jsonl`: every dead letter, one JSON object per line.
pub fn write_dead_letters(letters: &[DeadLetterV1], out: &Path) -> Result<()> {
    let path = out.join("dead_letters.jsonl");
    let f = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    dead_letter_lines(f, letters)?;
    println!("  dead letters: {} in {}", letters.len(), path.display());
    Ok(())
}

/// Add dead letters to `OUT/dead_letters.jsonl`, keeping those already there.
pub fn append_dead_letters(letters: &[DeadLetterV1], out: &Path) -> Result<()> {
    let path = out.join("dead_letters.jsonl");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    dead_letter_lines(f, letters)
}

fn dead_letter_lines(mut f: std::fs::File, letters: &[DeadLetterV1]) -> Result<()> {
    for letter in letters {
        writeln!(f, "{}", serde_json::to_string(letter)?)?;
    }
    Ok(())
}

/// The held-out `lesions` predicted by the inference and ensemble stages serving `bundles`:
/// from the primary reader's masks as `ensemble`, and, for the lesions other readers segmented,
/// from each other reader's masks as `ensemble@<reader>` next to the primary reader's of the
/// same lesions as `ensemble@primary`; with the primary reader's predictions as they left the
/// ensemble stage, and the dead letters of the stages.
#[allow(clippy::too_many_arguments)]
fn held_out_through_stages(
    rt: &tokio::runtime::Runtime,
    lesions: &[&LesionV1],
    bundles: &Served,
    registry: &Path,
    store: &Arc<dyn BlobStore>,
    device: tch::Device,
    out: &Path,
    what: &str,
) -> Result<(Predictions, Vec<PredictionV1>, Vec<DeadLetterV1>)> {
    let mut primary = Vec::new();
    let shown = spinner(&format!("{{spinner}} held-out lesions of {what} through inference and ensemble {{msg}}"));
    let mut by_model = Predictions::new();
    let mut letters = Vec::new();
    let mut sets: Vec<(String, Vec<LesionV1>)> =
        vec![("primary".into(), lesions.iter().map(|l| (*l).clone()).collect())];
    let mut readers: std::collections::BTreeMap<String, Vec<LesionV1>> = Default::default();
    for l in lesions {
        for rc in &l.other_readers {
            let mut as_read = (*l).clone();
            as_read.composites = rc.composites.clone();
            as_read.tumour_volume_ml = rc.tumour_volume_ml;
            as_read.other_readers.clear();
            readers.entry(rc.reader.clone()).or_default().push(as_read);
        }
    }
    sets.extend(readers);
    for (reader, set) in &sets {
        shown.set_message(format!("({} lesions, {reader} masks)", set.len()));
        let (predicted, dead) = predict_through_stages(rt, set, bundles, registry, store, device, out)?;
        letters.extend(dead);
        let model = if reader == "primary" { "ensemble".to_string() } else { format!("ensemble@{reader}") };
        if reader == "primary" {
            primary = predicted.clone();
        }
        for p in predicted {
            if reader != "primary" {
                if let Some(&own) = by_model.get("ensemble").and_then(|m| m.get(&p.case_id)) {
                    by_model.entry("ensemble@primary".into()).or_default().insert(p.case_id.clone(), own);
                }
            }
            by_model.entry(model.clone()).or_default().insert(p.case_id, p.probability);
        }
    }
    shown.finish_and_clear();
    Ok((by_model, primary, letters))
}

/// `1 case`, `2 cases`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
