//! `renal run` (all built stages in one process on the in-process bus) and `renal worker`
//! (one stage on Kafka).

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use renal_bus::{BusError, InProcessBus, KafkaBus, KafkaConfig, StageStats};
use renal_ingest::worker::{self, IngestConfig, IngestStats, Mode, SiteConfig};
use renal_messages::topics::Topic;
use renal_messages::{topics, DeadLetterV1, LesionV1, Message};
use serde::Deserialize;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// Site folders of an input cohort: every sub-folder except hidden ones and `nifti`.
pub fn site_folders(input: &Path) -> Result<Vec<SiteConfig>> {
    let mut sites = Vec::new();
    for e in std::fs::read_dir(input).with_context(|| format!("reading input folder {}", input.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() && !name.starts_with('.') && name != "nifti" {
            sites.push(SiteConfig { code: name.to_uppercase(), drop_folder: e.path(), rules: Default::default() });
        }
    }
    sites.sort_by(|a, b| a.code.cmp(&b.code));
    if sites.is_empty() {
        bail!("{} has no site folders (expected <input>/<SITE>/... as renal synth writes)", input.display());
    }
    Ok(sites)
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

/// `renal run --input DIR --out OUT`; `cnn`: the networks' training flags, `None` to skip them.
pub fn run_embedded(
    input: &Path,
    out: &Path,
    protocol: &crate::arms::Protocol,
    cnn: Option<&crate::cnn::CnnArgs>,
) -> Result<()> {
    // Check the flags before minutes of preprocessing.
    let cnn_config = cnn.map(|a| a.config()).transpose()?;
    let sites = site_folders(input)?;
    if let crate::arms::Protocol::LeaveOut(site) = protocol {
        if !sites.iter().any(|s| &s.code == site) {
            let known: Vec<&str> = sites.iter().map(|s| s.code.as_str()).collect();
            bail!("--protocol loio:{site}: the input has no site {site} (sites: {})", known.join(", "));
        }
    }
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
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} ingest {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |s: &IngestStats| {
        bar.set_message(format!("{} instances, {} cases, {} dead letters", s.instances, s.cases, s.dead_letters))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stats = rt.block_on(worker::run(&config, secret, bus.clone(), Mode::Batch, std::future::pending(), &show))?;
    bar.finish_and_clear();

    // Preprocess every case ingest emitted, then stop: the stage has drained renal.cases.
    let store = renal_store::open(&config.blob_store)?;
    let bar = ProgressBar::new(bus.records(topics::CASES).len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} preprocess [{bar:30}] {pos}/{len} cases eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let drained = bus.drained(renal_preprocess::worker::GROUP, topics::CASES);
    let pre = rt.block_on(renal_preprocess::worker::run(
        renal_preprocess::PreprocessConfig::default(),
        store.clone(),
        bus.clone(),
        drained,
        &|n| bar.set_position(n),
    ))?;
    bar.finish_and_clear();

    let path = out.join("dead_letters.jsonl");
    let mut f = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut letters = 0u64;
    for t in topics::ALL.iter().filter(|t| t.payload == "DeadLetterV1") {
        for r in bus.records(*t) {
            let letter = DeadLetterV1::decode(&r.payload)?;
            writeln!(f, "{}", serde_json::to_string(&letter)?)?;
            letters += 1;
        }
    }
    println!(
        "ingest: {} ({} duplicate), {}, {}",
        count(stats.instances, "instance"),
        stats.duplicates,
        count(stats.cases, "case"),
        count(letters, "dead letter")
    );
    println!(
        "preprocess: {} in, {} out to renal.lesions (N4, T2-to-T1C histogram matching, 2.5D composites in {})",
        count(pre.inputs, "case"),
        count(pre.outputs, "lesion"),
        out.join("blobs").display()
    );
    println!("  cases table: {}", out.join("store/cases").display());
    println!("  dead letters: {}", path.display());

    let lesions: Vec<LesionV1> =
        bus.records(topics::LESIONS).iter().map(|r| LesionV1::decode(&r.payload)).collect::<Result<_, _>>()?;
    // The preprocessed lesions as they rode renal.lesions, for `renal train cnn --run OUT`.
    let lesions_file = out.join("lesions.jsonl");
    let mut f = std::fs::File::create(&lesions_file).with_context(|| format!("writing {}", lesions_file.display()))?;
    for l in &lesions {
        writeln!(f, "{}", serde_json::to_string(l)?)?;
    }
    println!("  lesions: {}", lesions_file.display());
    for line in reader_agreement(&lesions, out)? {
        println!("{line}");
    }
    let labels = input.join("labels.csv");
    if labels.exists() {
        let setup = match cnn_config {
            Some(config) => Some(crate::arms::CnnSetup {
                store,
                device: crate::cnn::device(cnn.expect("config came from it").device)?,
                config,
            }),
            None => None,
        };
        for line in crate::arms::train_arms(&lesions, &labels, out, protocol, setup.as_ref())? {
            println!("{line}");
        }
    } else {
        println!("no {}: nothing to train or evaluate against", labels.display());
    }
    println!("  (not built yet: the radiomics arm)");
    Ok(())
}

/// `OUT/reader_agreement.csv` (one row per lesion, series and other reader: Dice with the
/// primary reader's mask) and a summary line per series and reader.
fn reader_agreement(lesions: &[LesionV1], out: &Path) -> Result<Vec<String>> {
    let path = out.join("reader_agreement.csv");
    let mut f = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "case_id,role,reader,dice")?;
    let mut by: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    for l in lesions {
        for d in &l.qc.reader_dice {
            writeln!(f, "{},{:?},{},{}", l.case_id, d.role, d.reader, d.dice)?;
            by.entry((format!("{:?}", d.role), d.reader.clone())).or_default().push(d.dice);
        }
    }
    let mut lines = Vec::new();
    for ((role, reader), mut v) in by {
        v.sort_by(f64::total_cmp);
        lines.push(format!(
            "  {role} masks, {reader} vs primary reader: median Dice {:.3} (range {:.3}-{:.3}) over {} lesions",
            renal_stats::curves::quantile_sorted(&v, 0.5),
            v[0],
            v[v.len() - 1],
            v.len()
        ));
    }
    if !lines.is_empty() {
        lines.push(format!("  reader agreement: {}", path.display()));
    }
    Ok(lines)
}

/// The file `renal worker <name> --config FILE` reads (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    kafka: KafkaSection,
    ingest: Option<IngestConfig>,
    preprocess: Option<PreprocessSection>,
    inference: Option<renal_cnn::worker::InferenceConfig>,
    ensemble: Option<renal_ensemble::worker::EnsembleConfig>,
    radiomics: Option<renal_features::worker::RadiomicsConfig>,
}

/// `[preprocess]`: where blobs live, plus the preprocessing settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreprocessSection {
    /// Blob store shared with ingest: a folder or `s3://bucket[/prefix]`.
    blob_store: String,
    /// `[preprocess.settings]`; every field has a default.
    #[serde(default)]
    settings: renal_preprocess::PreprocessConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    /// `host:port[,host:port]`.
    bootstrap_servers: String,
    /// Partitions of topics this worker creates (default 3).
    #[serde(default = "default_partitions")]
    partitions: i32,
    /// Replication factor of topics this worker creates (default 1).
    #[serde(default = "default_replication")]
    replication: i32,
}

fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}

/// `renal worker <name> --config FILE`.
pub fn run_worker(name: &str, config_path: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let file: WorkerFile = toml::from_str(&text).with_context(|| format!("parsing {}", config_path.display()))?;
    let mut kafka = KafkaConfig::local(&file.kafka.bootstrap_servers, &format!("renal-{name}"));
    kafka.partitions = file.kafka.partitions;
    kafka.replication = file.kafka.replication;
    match name {
        "ingest" => {
            let cfg = file.ingest.context("[ingest] section missing")?;
            cfg.validate()?;
            let secret = std::env::var(&cfg.pseudonym_secret_env)
                .with_context(|| {
                    format!("pseudonym secret: environment variable {} is not set", cfg.pseudonym_secret_env)
                })?
                .into_bytes();
            let mut receivers = Vec::new();
            for scp in &cfg.scp {
                let folder = &cfg.sites.iter().find(|s| s.code == scp.site).expect("validated").drop_folder;
                let r = renal_ingest::scp::Scp::start(&scp.bind, &scp.ae_title, folder, scp.durability)
                    .with_context(|| format!("C-STORE receiver on {}", scp.bind))?;
                eprintln!("C-STORE receiver {} on {} -> site {}", scp.ae_title, r.addr, scp.site);
                receivers.push(r);
            }
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(async {
                let bus = KafkaBus::new(kafka)?;
                bus.ensure_topics(&[topics::CASES, topics::DEAD_INGEST]).await?;
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                let stats = worker::run(&cfg, secret, bus, Mode::Continuous, shutdown, &|_| {}).await?;
                eprintln!(
                    "ingest stopped: {} instances, {} cases, {} dead letters",
                    stats.instances, stats.cases, stats.dead_letters
                );
                Ok(())
            });
            for r in receivers {
                r.stop();
            }
            result
        }
        "preprocess" => {
            let section = file.preprocess.context("[preprocess] section missing")?;
            let store = renal_store::open(&section.blob_store)?;
            let beat = heartbeat("preprocess", "cases");
            let stage_topics = [topics::CASES, topics::LESIONS, topics::DEAD_PREPROCESS];
            let summary = stage_summary("preprocess", ["cases", "lesions"]);
            serve_on_kafka(
                kafka,
                &stage_topics,
                |bus, shutdown| renal_preprocess::worker::run(section.settings, store, bus, shutdown, &beat),
                summary,
            )
        }
        "inference" => {
            let cfg = file.inference.context("[inference] section missing")?;
            let want: renal_cnn::device::Want = cfg.device.parse().map_err(anyhow::Error::msg)?;
            let device = crate::cnn::device(want)?;
            // Load the bundle before touching the broker: a wrong version stops here.
            let scorer = renal_cnn::worker::Scorer::load(&cfg.registry, &cfg.model_version, device)
                .context("starting the inference worker")?;
            eprintln!(
                "inference: serving {} ({}, {}x{} input)",
                scorer.manifest().version,
                scorer.manifest().net.backbone.name(),
                scorer.manifest().net.input_px,
                scorer.manifest().net.input_px
            );
            let store = renal_store::open(&cfg.blob_store)?;
            let beat = heartbeat("inference", "lesions");
            let stage_topics = [topics::LESIONS, topics::SCORES, topics::DEAD_INFERENCE];
            let summary = stage_summary("inference", ["lesions", "scores"]);
            serve_on_kafka(
                kafka,
                &stage_topics,
                |bus, shutdown| renal_cnn::worker::run(&cfg, scorer, store, bus, shutdown, &beat),
                summary,
            )
        }
        "radiomics" => {
            let cfg = file.radiomics.context("[radiomics] section missing")?;
            let settings = cfg.load_settings()?;
            eprintln!(
                "radiomics: {} settings (sha256 {}), feature store {}",
                settings.len(),
                renal_features::settings::sha256(&settings),
                cfg.table_root.display()
            );
            let store = renal_store::open(&cfg.blob_store)?;
            let beat = heartbeat("radiomics", "lesions");
            let stage_topics = [topics::LESIONS, topics::FEATURES, topics::DEAD_RADIOMICS];
            let summary = stage_summary("radiomics", ["lesions", "feature files"]);
            serve_on_kafka(
                kafka,
                &stage_topics,
                |bus, shutdown| renal_features::worker::run(&cfg, settings, store, bus, shutdown, &beat),
                summary,
            )
        }
        "ensemble" => {
            let cfg = file.ensemble.context("[ensemble] section missing")?;
            // Load the bundle before touching the broker: a wrong version stops here.
            let bundle = renal_ensemble::bundle::load(&cfg.registry, &cfg.model_version)
                .context("starting the ensemble worker")?;
            eprintln!(
                "ensemble: serving {} over CNN bundle {} (threshold {}); waiting up to {} ms for a scored lesion's clinical values and {} ms for the other half of a half score",
                bundle.version, bundle.content.cnn_version, bundle.content.threshold, cfg.lesion_wait_ms, cfg.modality_wait_ms
            );
            let beat = heartbeat("ensemble", "score attempts");
            let stage_topics = [topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE];
            serve_on_kafka(
                kafka,
                &stage_topics,
                |bus, shutdown| renal_ensemble::worker::run(&cfg, bundle, bus, shutdown, &beat),
                |s: &renal_ensemble::worker::EnsembleStats| {
                    format!(
                        "ensemble stopped: {} scores, {} predictions, {} dead letters; {} lesions joined, {} dead letters; {} partial scores dead-lettered after the wait",
                        s.scores.inputs,
                        s.scores.outputs,
                        s.scores.dead_letters,
                        s.lesions.inputs,
                        s.lesions.dead_letters,
                        s.partial_dead_letters
                    )
                },
            )
        }
        other => bail!(
            "no worker named {other:?} is built yet (available: ingest, preprocess, radiomics, inference, ensemble)"
        ),
    }
}

/// Serve a worker's stages on Kafka until Ctrl-C: create `topics`, run `stage` with the
/// shutdown signal, then print what `summary` says it did.
fn serve_on_kafka<S, F, Fut>(
    kafka: KafkaConfig,
    topics: &[Topic],
    stage: F,
    summary: impl FnOnce(&S) -> String,
) -> Result<()>
where
    F: FnOnce(KafkaBus, Pin<Box<dyn Future<Output = ()>>>) -> Fut,
    Fut: Future<Output = Result<S, BusError>>,
{
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let bus = KafkaBus::new(kafka)?;
        bus.ensure_topics(topics).await?;
        let shutdown = Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        let stats = stage(bus, shutdown).await?;
        eprintln!("{}", summary(&stats));
        Ok(())
    })
}

/// The stop line of a one-loop stage (`nouns`: its inputs and its outputs, plural).
fn stage_summary(name: &'static str, nouns: [&'static str; 2]) -> impl FnOnce(&StageStats) -> String {
    move |s| {
        format!(
            "{name} stopped: {} {}, {} {}, {} dead letters",
            s.inputs, nouns[0], s.outputs, nouns[1], s.dead_letters
        )
    }
}

/// A heartbeat for operators (per-lesion detail lives in the messages): the first input begun
/// and every 25th.
fn heartbeat(name: &'static str, noun: &'static str) -> impl Fn(u64) + Sync {
    move |n| {
        if n == 1 || n % 25 == 0 {
            eprintln!("{name}: {n} {noun} begun");
        }
    }
}

/// `1 case`, `2 cases`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_worker_files_parse_and_state_the_defaults() {
        let file: WorkerFile = toml::from_str(include_str!("../../../deploy/preprocess.toml")).unwrap();
        let section = file.preprocess.unwrap();
        assert_eq!(section.settings, renal_preprocess::PreprocessConfig::default(), "the file lists the defaults");
        let file: WorkerFile = toml::from_str(include_str!("../../../deploy/ingest.toml")).unwrap();
        let scp = &file.ingest.unwrap().scp[0];
        assert_eq!(scp.durability, renal_ingest::scp::Durability::Fsync);
        let file: WorkerFile = toml::from_str(include_str!("../../../deploy/inference.toml")).unwrap();
        let inference = file.inference.unwrap();
        let minimal: renal_cnn::worker::InferenceConfig =
            toml::from_str("blob_store = \"b\"\nregistry = \"r\"\nmodel_version = \"v\"").unwrap();
        assert_eq!(
            (inference.device.as_str(), inference.max_batch, inference.max_wait_ms),
            (minimal.device.as_str(), minimal.max_batch, minimal.max_wait_ms),
            "the file lists the defaults"
        );
        let file: WorkerFile = toml::from_str(include_str!("../../../deploy/ensemble.toml")).unwrap();
        let minimal: renal_ensemble::worker::EnsembleConfig =
            toml::from_str("registry = \"r\"\nmodel_version = \"v\"\nstate_dir = \"s\"").unwrap();
        let documented = file.ensemble.unwrap();
        assert_eq!(
            (documented.lesion_wait_ms, documented.modality_wait_ms),
            (minimal.lesion_wait_ms, minimal.modality_wait_ms),
            "the file lists the defaults"
        );
    }
}
