//! `renal run` (all built stages in one process on the in-process bus) and `renal worker`
//! (one stage on Kafka).

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use renal_bus::{InProcessBus, KafkaBus, KafkaConfig};
use renal_ingest::worker::{self, IngestConfig, IngestStats, Mode, SiteConfig};
use renal_messages::{topics, DeadLetterV1, Message};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Site folders of an input cohort: every sub-folder except hidden ones and `nifti`.
fn site_folders(input: &Path) -> Result<Vec<SiteConfig>> {
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

/// `renal run --input DIR --out OUT`.
pub fn run_embedded(input: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Batch: everything is already there, so no quiet period, settle time or timeout; never
    // modify the user's input.
    let config = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        scan_interval_ms: 0,
        file_settle_ms: 0,
        move_processed: false,
        ..IngestConfig::new(site_folders(input)?, out.join("blobs"), out.join("store"))
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
    println!("  cases table: {}", out.join("store/cases").display());
    println!("  dead letters: {}", path.display());
    println!("  (preprocess, radiomics, inference, ensemble and evaluation are not built yet)");
    Ok(())
}

/// The file `renal worker <name> --config FILE` reads (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    kafka: KafkaSection,
    ingest: Option<IngestConfig>,
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
                let r = renal_ingest::scp::Scp::start(&scp.bind, &scp.ae_title, folder)
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
        other => bail!("no worker named {other:?} is built yet (available: ingest)"),
    }
}

/// `renal bench ingest`: instances per second, one thread.
pub fn bench_ingest(input: &Path, repeat: usize) -> Result<()> {
    use renal_ingest::assemble::{Assembler, AssemblyConfig};
    use renal_ingest::instance;
    use renal_store::{sha256_hex, BlobStore, LocalBlobStore};
    let sites = site_folders(input)?;
    let files: Vec<(String, PathBuf)> = sites
        .iter()
        .flat_map(|s| {
            worker::list_files(&s.drop_folder)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
                .map(move |p| (s.code.clone(), p))
        })
        .collect();
    if files.is_empty() {
        bail!("no .dcm files under {}", input.display());
    }
    let cfg = AssemblyConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        pseudonym_secret: b"bench".to_vec(),
        rules: Default::default(),
        code_version: "bench".into(),
    };
    let scratch = tempfile_dir()?;
    let pass = |write_blobs: bool| -> Result<(f64, usize)> {
        let store = LocalBlobStore::new(&scratch.join(if write_blobs { "blobs" } else { "manifests" }))?;
        let started = std::time::Instant::now();
        let mut asm = Assembler::new();
        for (site, path) in &files {
            let bytes = std::fs::read(path)?;
            let inst = instance::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let blob = if write_blobs {
                store.put(&bytes)?
            } else {
                let sha = sha256_hex(&bytes);
                renal_messages::BlobRef {
                    key: format!("sha256/{}/{}", &sha[..2], sha),
                    sha256: sha,
                    bytes: bytes.len() as u64,
                }
            };
            asm.add(site, inst, blob, 0);
        }
        let cases = asm.ready(u64::MAX / 2, &cfg, &store).into_iter().filter(|r| r.is_ok()).count();
        Ok((started.elapsed().as_secs_f64(), cases))
    };
    let mut times = Vec::new();
    let mut cases = 0;
    for _ in 0..repeat.max(1) {
        let (t, c) = pass(false)?;
        times.push(t);
        cases = c;
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (with_blobs, _) = pass(true)?;
    let _ = std::fs::remove_dir_all(&scratch);
    let n = files.len() as f64;
    println!("| path | instances | cases | seconds (median of {}) | instances/s | target | verdict |", repeat.max(1));
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| read + SHA-256 + parse + group | {} | {cases} | {median:.3} | {:.0} | 2500 | {} |",
        files.len(),
        n / median,
        if n / median >= 2500.0 { "meets" } else { "misses" }
    );
    println!(
        "| ... + blob store writes (fsync each) | {} | {cases} | {with_blobs:.3} | {:.0} | - | - |",
        files.len(),
        n / with_blobs
    );
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("renal-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// `1 case`, `2 cases`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
