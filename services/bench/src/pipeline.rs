//! `renal bench pipeline`: the whole pipeline as a deployment runs it, timed.
//!
//! A private tansu and the five workers, each its own `renal worker` process (as the compose
//! file runs them), with random-initialised bundles of the main job's network (the speed of a
//! forward pass does not depend on its weights). A synthetic cohort arrives at once: one site
//! over DICOM C-STORE (the project's own SCU), the others through their drop folders. When every
//! lesion has its prediction, the workers' own `/metrics` give each stage's processing time and
//! each hop's queueing time, `/proc` gives every process's CPU time, and a probe that produces
//! and consumes on the same broker throughout gives what Kafka itself adds per hop.
//!
//! Then the stages' own benchmark: the same stage steps called in this process, one after
//! another, on a sample of the run's lesions, with nothing else running. Their CPU time per
//! lesion, summed over the stages, is what the pipeline costs without Kafka, processes or
//! queues; the pipeline's CPU time per lesion is compared with it.

use anyhow::{bail, Context, Result};
use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_ingest::drop_folder::list_files;
use renal_messages::topics::{self, Topic};
use renal_messages::{CaseV1, LesionV1, Message, PredictionV1, ScoresV1};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The workers, in pipeline order.
const WORKERS: [&str; 5] = ["ingest", "preprocess", "radiomics", "inference", "ensemble"];
/// Lesions per forward pass in the inference worker and in its in-process benchmark.
const MAX_BATCH: usize = 8;
/// The C-STORE receiver's AE title.
const AE_TITLE: &str = "RENAL_BENCH";
/// Fetch wait of the bench's own watch on the outputs, ms. The watch is the bench's instrument,
/// not a pipeline stage: with the workers' short wait its fetches (seven topics, every partition,
/// held for the whole wait by tansu) cost the broker more than all the workers' fetches together,
/// and that CPU would be charged to the pipeline. At 250 ms the end time is late by at most 0.5 s
/// (a message can land just after a fetch read, and waits for the next).
const WATCH_FETCH_WAIT_MS: u64 = 250;

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (clock ticks of
/// Linux's fixed 100 Hz user-visible clock).
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Children killed when the bench ends, however it ends.
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(addr: &str, seconds: u64, what: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(seconds);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > until {
            bail!("{what} did not listen on {addr} within {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// One histogram family of a text exposition: per label set (without `le`), its cumulative
/// buckets `(le, count)` in order.
fn histograms(text: &str, family: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let prefix = format!("{family}_bucket{{");
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((labels, value)) = line[prefix.len()..].rsplit_once("} ") else { continue };
        let mut le = f64::NAN;
        let mut rest = Vec::new();
        for pair in labels.split(',') {
            match pair.strip_prefix("le=") {
                Some(v) => le = v.trim_matches('"').parse().unwrap_or(f64::INFINITY),
                None => rest.push(pair),
            }
        }
        out.entry(rest.join(",")).or_default().push((le, value.trim().parse().unwrap_or(0.0)));
    }
    for buckets in out.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Quantile `q` of cumulative buckets, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does (the upper bound of the last finite bucket when it falls in +Inf).
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(below.0);
            }
            let within = if count > below.1 { (rank - below.1) / (count - below.1) } else { 1.0 };
            return Some(below.0 + (le - below.0) * within);
        }
        below = (le, count);
    }
    Some(below.0)
}

/// Value of a label in a label set written `a="x",b="y"`.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels.split(',').find_map(|p| p.strip_prefix(&format!("{name}=\""))).map(|v| v.trim_end_matches('"')).unwrap_or("")
}

/// Sum of a counter's samples whose labels contain `filter`.
fn counter(text: &str, family: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{') && l.contains(filter))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The secret the bench's ingest worker de-identifies under.
const BENCH_SECRET: &str = "bench";

/// Lesion ids of the cohort's answer key: its rows' accession numbers and sites as ingest
/// names them under [`BENCH_SECRET`].
fn case_ids(cohort: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(cohort.join("labels.csv"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty labels.csv")?.split(',').collect();
    let column =
        |name: &str| header.iter().position(|h| *h == name).with_context(|| format!("labels.csv has no {name}"));
    let (site, accession) = (column("site")?, column("accession")?);
    let keys = renal_base::keys::Keys::new(BENCH_SECRET.as_bytes());
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r.len() > site.max(accession))
        .map(|r| keys.lesion_id(r[site], r[accession]))
        .collect())
}

/// A CNN bundle of two random-initialised networks of `net` (seeded), saved to `registry`: what
/// the inference stage serves when the question is wiring or speed, not accuracy (a forward
/// pass costs the same whatever the weights).
pub fn random_cnn_bundle(
    registry: &Path,
    net: renal_cnn::net::NetConfig,
    seed: i64,
    created_at: &str,
) -> Result<renal_cnn::bundle::Manifest> {
    use renal_cnn::bundle::{DataManifest, SeriesToSave};
    use renal_cnn::net::Net;
    use renal_cnn::train::{EpochLog, TrainConfig};
    let best = EpochLog {
        trial: 0,
        epoch: 1,
        train_loss: 0.7,
        validation_loss: 0.7,
        validation_auc: 0.5,
        validation_accuracy: 0.5,
        seconds: 0.0,
    };
    tch::manual_seed(seed);
    let (t2, t1c) = (tch::nn::VarStore::new(tch::Device::Cpu), tch::nn::VarStore::new(tch::Device::Cpu));
    let (_a, _b) = (Net::new(&t2.root(), net), Net::new(&t1c.root(), net));
    let data = DataManifest { train: vec![], validation: vec![], train_malignant: 0, validation_malignant: 0 };
    let series = |vs| SeriesToSave { vs, best: best.clone(), history: vec![], data: data.clone() };
    let config = TrainConfig { net, ..TrainConfig::cpu_quick() };
    Ok(renal_cnn::bundle::save(registry, net, &config, [series(&t2), series(&t1c)], "bench", created_at)?)
}

/// An ensemble bundle's content over `cnn_version`: the clinical model and the meta-classifier
/// fitted on a small synthetic table in which all three base outputs carry the label with noise
/// (what they compute per lesion does not depend on the fit).
pub fn fitted_ensemble(cnn_version: &str) -> Result<renal_ensemble::bundle::Content> {
    use renal_learn::clinical::{ClinicalModel, ClinicalSettings, Fill};
    let (mut x, mut y, mut cx) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..80u32 {
        let malignant = (i * 7) % 10 < 6;
        let jitter = f64::from((i * 37) % 100) / 250.0;
        let base = if malignant { 0.45 } else { 0.15 };
        cx.push([45.0 + f64::from((i * 13) % 30) + if malignant { 12.0 } else { 0.0 }, f64::from(i % 2), 30.0]);
        x.push(vec![base + jitter, base + 0.2 - jitter / 2.0, 0.4 + if malignant { 0.1 } else { 0.0 }]);
        y.push(malignant);
    }
    let clinical = ClinicalModel::fit(&cx[..60], &y[..60], &cx[60..], &y[60..], &ClinicalSettings::default())?;
    let settings = renal_learn::bagging::BaggingSettings::default();
    let ensemble = renal_learn::ensemble::Ensemble::fit(&x[..50], &y[..50], &x[50..], &y[50..], &settings)?;
    Ok(renal_ensemble::bundle::Content {
        cnn_version: cnn_version.into(),
        clinical,
        fill: Fill { age_years: 58.0, sex_male: 1.0 },
        ensemble,
        threshold: renal_ensemble::bundle::DEFAULT_THRESHOLD,
        fitted: serde_json::json!({"rows": 80}),
    })
}

/// Bundles of the main job's network, random-initialised, and a fitted ensemble over them.
fn bundles(registry: &Path) -> Result<()> {
    let created = renal_base::now_rfc3339();
    let cnn = random_cnn_bundle(registry, renal_cnn::train::TrainConfig::cpu_quick().net, 1, &created)?;
    renal_ensemble::bundle::save(registry, fitted_ensemble(&cnn.version)?, "bench", &created)?;
    Ok(())
}

fn tansu() -> Result<PathBuf> {
    let home = std::env::var("TANSU_HOME")
        .unwrap_or_else(|_| format!("{}/.cache/tansu-0.6.0", std::env::var("HOME").unwrap_or_default()));
    let bin = Path::new(&home).join("bin/tansu");
    if !bin.exists() {
        bail!("{}: no tansu (scripts/install-tansu.sh installs it; TANSU_HOME names another)", bin.display());
    }
    Ok(bin)
}

/// Which tansu build runs: the name of its install folder (`tansu-0.6.0` is the tests' opt-level 0
/// build, `tansu-0.6.0-bench` the optimised one with both engines; scripts/install-tansu.sh).
fn tansu_build() -> String {
    let home = tansu().ok().and_then(|b| b.parent()?.parent()?.file_name().map(|n| n.to_string_lossy().into_owned()));
    home.unwrap_or_else(|| "tansu".into())
}

/// Put a patient folder into a drop folder under a dot-name, then rename it into place, as a
/// careful sender does, so ingest never reads a file still being written.
pub fn drop_patient(from: &Path, drop: &Path) -> Result<()> {
    let name = from.file_name().context("a patient folder")?.to_string_lossy().to_string();
    let hidden = drop.join(format!(".incoming-{name}"));
    for path in list_files(from) {
        let to = hidden.join(path.strip_prefix(from)?);
        std::fs::create_dir_all(to.parent().context("a parent")?)?;
        // A link costs no disk (a 1,162-lesion cohort is about 9 GB); a copy where the file
        // system cannot link.
        if std::fs::hard_link(&path, &to).is_err() {
            std::fs::copy(&path, &to)?;
        }
    }
    std::fs::rename(hidden, drop.join(name))?;
    Ok(())
}

/// A site's patient folders in the cohort, sorted.
fn patients(cohort: &Path, site: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(cohort.join(site))?.flatten().map(|e| e.path()).collect();
    out.sort();
    Ok(out)
}

fn worker_file(
    root: &Path,
    bootstrap: &str,
    metrics: &str,
    sites: &[String],
    scp: (&str, u16),
    fetch_wait_ms: u64,
) -> String {
    let mut text = format!(
        r#"[telemetry]
metrics_addr = "{metrics}"

[kafka]
bootstrap_servers = "{bootstrap}"
stats_interval_ms = 1000
fetch_wait_max_ms = {fetch_wait_ms}

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 1000
scan_interval_ms = 250
file_settle_ms = 0
move_processed = true

[[ingest.scp]]
site = "{scp_site}"
ae_title = "{AE_TITLE}"
bind = "127.0.0.1:{scp_port}"
durability = "page_cache"

[preprocess]
blob_store = "{root}/blobs"

[radiomics]
blob_store = "{root}/blobs"
table_root = "{root}/store"

[inference]
blob_store = "{root}/blobs"
registry = "{root}/models"
model_version = "newest"
device = "cpu"
max_batch = {MAX_BATCH}
max_wait_ms = 50
cpu_threads = 1

[ensemble]
registry = "{root}/models"
model_version = "newest"
state_dir = "{root}/ensemble-state"
lesion_wait_ms = 600000
"#,
        root = root.display(),
        scp_site = scp.0,
        scp_port = scp.1,
    );
    for site in sites {
        text.push_str(&format!(
            "\n[[ingest.sites]]\ncode = \"{site}\"\ndrop_folder = \"{}/drop/{site}\"\n",
            root.display()
        ));
    }
    text
}

/// What the in-process stage benchmark measured for one stage.
struct StageBench {
    inputs: usize,
    cpu_seconds: f64,
}

impl StageBench {
    fn per_lesion(&self) -> f64 {
        self.cpu_seconds / self.inputs.max(1) as f64
    }
}

fn timed_cpu<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let before = cpu_seconds("self")?;
    let out = f()?;
    Ok((cpu_seconds("self")? - before, out))
}

/// The stage steps in this process on `sample` of the run's lesions (ingest on whole patient
/// folders of the C-STORE site), one stage after another.
fn stage_benchmarks(
    root: &Path,
    cohort: &Path,
    scp_site: &str,
    cases: &[CaseV1],
    lesions: &[(LesionV1, String)],
    scores: &[(ScoresV1, Vec<u8>)],
) -> Result<BTreeMap<&'static str, StageBench>> {
    let mut out = BTreeMap::new();
    let store = renal_store::open(&root.join("blobs").display().to_string())?;
    // Ingest: its batch mode over copies of the first patients' folders (a private blob store
    // and table, an in-process bus), per case emitted.
    let ingest_root = root.join("bench-ingest");
    let drop = ingest_root.join("drop");
    std::fs::create_dir_all(&drop)?;
    for p in patients(cohort, scp_site)?.iter().take(cases.len().max(1)) {
        drop_patient(p, &drop)?;
    }
    let site = renal_ingest::SiteConfig { code: scp_site.into(), drop_folder: drop, rules: Default::default() };
    let cfg = renal_ingest::IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        ..renal_ingest::IngestConfig::new(
            vec![site],
            ingest_root.join("blobs").display().to_string(),
            ingest_root.join("store"),
        )
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (cpu, stats) = timed_cpu(|| {
        let bus = renal_bus::InProcessBus::new(1);
        let run = renal_ingest::run(&cfg, b"bench".to_vec(), bus, renal_ingest::Mode::Batch, async {}, &|_| {});
        Ok(rt.block_on(run)?)
    })?;
    out.insert("ingest", StageBench { inputs: stats.cases as usize, cpu_seconds: cpu });

    let settings = renal_preprocess::PreprocessSettings::default();
    let (cpu, ()) = timed_cpu(|| {
        for case in cases {
            renal_preprocess::process::preprocess(case, &*store, &settings)?;
        }
        Ok(())
    })?;
    out.insert("preprocess", StageBench { inputs: cases.len(), cpu_seconds: cpu });

    let extractor = renal_radiomics::process::Extractor::new(
        store.clone(),
        renal_store::TableWriter::new(&root.join("bench-features")),
        renal_radiomics::settings::study_grid(),
    );
    let (cpu, ()) = timed_cpu(|| {
        for (lesion, sha) in lesions {
            extractor.process(lesion, sha)?;
        }
        Ok(())
    })?;
    out.insert("radiomics", StageBench { inputs: lesions.len(), cpu_seconds: cpu });

    let registry = root.join("models");
    let version = renal_cnn::bundle::resolve(&registry, renal_cnn::bundle::NEWEST)?;
    let scorer = renal_cnn::score::Scorer::load(&registry, &version, tch::Device::Cpu)?;
    let (cpu, ()) = timed_cpu(|| {
        for batch in lesions.chunks(MAX_BATCH) {
            for r in renal_inference::process::score_batch(batch, &*store, &scorer) {
                r?;
            }
        }
        Ok(())
    })?;
    out.insert("inference", StageBench { inputs: lesions.len(), cpu_seconds: cpu });

    let ensemble = renal_ensemble::bundle::load(
        &registry,
        &renal_ensemble::bundle::resolve(&registry, renal_ensemble::bundle::NEWEST)?,
    )?;
    let rows: BTreeMap<&str, renal_ensemble::join::ClinicalRow> =
        lesions.iter().map(|(l, _)| (l.case_id.as_str(), renal_ensemble::join::ClinicalRow::of(l))).collect();
    let (cpu, ()) = timed_cpu(|| {
        for (s, payload) in scores {
            let row = rows.get(s.case_id.as_str()).context("a sampled score without its lesion")?;
            let p = renal_ensemble::process::predict(&ensemble, s, row, payload);
            std::hint::black_box(p.encode());
        }
        Ok(())
    })?;
    out.insert("ensemble", StageBench { inputs: scores.len(), cpu_seconds: cpu });
    Ok(out)
}

/// Read `topic` from the start (a fresh group) until a record of each case id in `ids` arrived
/// (the first one each) or the topic stays quiet for 20 s.
async fn read_back(bus: &KafkaBus, topic: Topic, ids: &BTreeSet<String>) -> Result<Vec<(String, Vec<u8>)>> {
    let group = format!("bench-read-{}-{}", topic.name, std::process::id());
    let mut consumer = bus.consumer(&group, &[topic])?;
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while out.len() < ids.len() {
        match tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await {
            Ok(Ok(r)) if ids.contains(&r.key) => {
                out.entry(r.key).or_insert(r.payload);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(out.into_iter().collect())
}

/// `renal bench pipeline --lesions N`.
pub fn pipeline(
    lesions: usize,
    seed: u64,
    sample: usize,
    fetch_wait_ms: u64,
    broker_storage: &str,
    dir: Option<&Path>,
) -> Result<()> {
    if lesions == 0 || sample == 0 {
        bail!("--lesions and --sample must be at least 1");
    }
    let storage = match broker_storage {
        "memory" => "memory://tansu/",
        "sqlite" => "sqlite://tansu.db",
        other => bail!("--broker-storage {other:?}: memory or sqlite"),
    };
    let temp = tempfile::tempdir()?;
    let root = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            if std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty", d.display());
            }
            d.canonicalize()?
        }
        None => temp.path().to_path_buf(),
    };
    let cohort = root.join("cohort");
    eprintln!("pipeline bench: synthesising {lesions} lesions (seed {seed}) in {}", root.display());
    renal_synth::generate(&renal_synth::SynthConfig { lesions, seed, ..Default::default() }, &cohort, &|_| {})?;
    let expected = case_ids(&cohort)?;
    let sites: Vec<String> = renal_ingest::config::sites_of_cohort(&cohort)?.into_iter().map(|s| s.code).collect();
    // The C-STORE site: the second largest (the largest keeps the drop folder busy).
    let mut by_size: Vec<(usize, String)> =
        sites.iter().map(|s| (std::fs::read_dir(cohort.join(s)).map(|d| d.count()).unwrap_or(0), s.clone())).collect();
    by_size.sort_by(|a, b| b.cmp(a));
    let scp_site = by_size.get(1).or(by_size.first()).context("no site")?.1.clone();
    bundles(&root.join("models"))?;

    // The broker and the workers.
    let mut processes = Processes(Vec::new());
    let bootstrap = format!("127.0.0.1:{}", free_port()?);
    std::fs::create_dir_all(root.join("tansu"))?;
    let url = format!("tcp://{bootstrap}");
    let log = std::fs::File::create(root.join("tansu/tansu.log"))?;
    let child = Command::new(tansu()?)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", storage])
        .current_dir(root.join("tansu"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tansu")?;
    processes.0.push(("broker".into(), child));
    if let Err(e) = wait_for(&bootstrap, 20, "tansu") {
        // Most often an engine this build lacks: say what tansu said.
        let said = std::fs::read_to_string(root.join("tansu/tansu.log")).unwrap_or_default();
        bail!("{e}; tansu's log ends: {}", said.lines().last().unwrap_or("(empty)"));
    }
    for site in &sites {
        std::fs::create_dir_all(root.join("drop").join(site))?;
    }
    let scp_port = free_port()?;
    let exe = std::env::current_exe()?;
    let mut metrics = Vec::new();
    for worker in WORKERS {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = root.join(format!("{worker}.toml"));
        std::fs::write(&config, worker_file(&root, &bootstrap, &addr, &sites, (&scp_site, scp_port), fetch_wait_ms))?;
        let child = Command::new(&exe)
            .args(["worker", worker, "--config"])
            .arg(&config)
            .env("RENAL_PSEUDONYM_SECRET", BENCH_SECRET)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stderr(std::fs::File::create(root.join(format!("{worker}.log")))?)
            .spawn()
            .with_context(|| format!("starting the {worker} worker"))?;
        processes.0.push((worker.into(), child));
        metrics.push((worker, addr));
    }
    for (worker, addr) in &metrics {
        wait_for(addr, 60, worker)?;
    }
    wait_for(&format!("127.0.0.1:{scp_port}"), 60, "the C-STORE receiver")?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let bus = KafkaBus::new(KafkaConfig {
        fetch_wait_max_ms: fetch_wait_ms,
        ..KafkaConfig::local(&bootstrap, "renal-bench")
    })?;
    let watch = KafkaBus::new(KafkaConfig {
        fetch_wait_max_ms: WATCH_FETCH_WAIT_MS,
        ..KafkaConfig::local(&bootstrap, "renal-bench-watch")
    })?;
    let probe_topic = Topic { name: "renal.bench.probe", ..topics::PREDICTIONS };
    rt.block_on(bus.ensure_topics(&[topics::PREDICTIONS, probe_topic]))?;

    // The cohort arrives: every site but one through its drop folder, that one over C-STORE.
    eprintln!("pipeline bench: {} lesions from {} sites ({scp_site} over C-STORE)", expected.len(), sites.len());
    let started = Instant::now();
    let own_cpu_before = cpu_seconds("self")?;
    let feeder = {
        let (cohort, root, sites, scp_site) = (cohort.clone(), root.clone(), sites.clone(), scp_site.clone());
        std::thread::spawn(move || -> Result<()> {
            let scp = std::thread::spawn({
                let cohort = cohort.clone();
                let scp_site = scp_site.clone();
                move || -> Result<()> {
                    let classes = renal_ingest::scp::ACCEPTED;
                    for p in patients(&cohort, &scp_site)? {
                        let addr = format!("127.0.0.1:{scp_port}");
                        let mut scu = renal_ingest::scu::StoreScu::connect(&addr, "BENCH_SCU", AE_TITLE, &classes)?;
                        for f in list_files(&p).into_iter().filter(|f| f.extension().is_some_and(|e| e == "dcm")) {
                            scu.store_file(&f)?;
                        }
                        scu.release()?;
                    }
                    Ok(())
                }
            });
            for site in sites.iter().filter(|s| **s != scp_site) {
                for p in patients(&cohort, site)? {
                    drop_patient(&p, &root.join("drop").join(site))?;
                }
            }
            scp.join().map_err(|_| anyhow::anyhow!("the C-STORE sender panicked"))?
        })
    };

    // Predictions, and the probe: a message every 100 ms through the same broker.
    let probes: std::sync::Arc<std::sync::Mutex<Vec<f64>>> = Default::default();
    let (predictions, letters, finished) = rt.block_on(async {
        let micros = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let sender = {
            let bus = bus.clone();
            tokio::spawn(async move {
                loop {
                    let _ = bus.send(probe_topic, "probe", micros().to_string().into_bytes()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let receiver = {
            let (bus, probes) = (bus.clone(), probes.clone());
            let mut consumer = bus.consumer(&format!("bench-probe-{}", std::process::id()), &[probe_topic])?;
            tokio::spawn(async move {
                while let Ok(r) = consumer.recv().await {
                    if let Ok(sent) = String::from_utf8_lossy(&r.payload).parse::<u128>() {
                        let seconds = micros().saturating_sub(sent) as f64 / 1e6;
                        probes.lock().expect("probe lock").push(seconds);
                    }
                }
            })
        };
        // Done when every lesion has its prediction and its feature file (radiomics is off the
        // prediction's path, but its work is the pipeline's too).
        // A lesion a stage dead-letters is accounted for too (with its reason), not waited for.
        let dead = [
            topics::DEAD_INGEST,
            topics::DEAD_PREPROCESS,
            topics::DEAD_RADIOMICS,
            topics::DEAD_INFERENCE,
            topics::DEAD_ENSEMBLE,
        ];
        let outputs: Vec<Topic> = [topics::PREDICTIONS, topics::FEATURES].into_iter().chain(dead).collect();
        bus.ensure_topics(&outputs).await?;
        let mut consumer = watch.consumer(&format!("bench-{}", std::process::id()), &outputs)?;
        let mut got: BTreeMap<String, Vec<PredictionV1>> = BTreeMap::new();
        let mut features: BTreeSet<String> = BTreeSet::new();
        let mut predicted_at = None;
        let mut letters: BTreeMap<String, renal_messages::DeadLetterV1> = BTreeMap::new();
        let limit = Duration::from_secs(600 + 3 * expected.len() as u64);
        let mut last_report = Instant::now();
        loop {
            let letter = |c: &String| letters.contains_key(c);
            let predicted = expected.iter().all(|c| got.contains_key(c) || letter(c));
            if predicted && predicted_at.is_none() {
                predicted_at = Some(started.elapsed());
            }
            if predicted && expected.iter().all(|c| features.contains(c) || letter(c)) {
                break;
            }
            if started.elapsed() > limit {
                bail!(
                    "after {} s: {} of {} lesions predicted, {} with features; worker logs in {}",
                    limit.as_secs(),
                    got.len(),
                    expected.len(),
                    features.len(),
                    root.display()
                );
            }
            if last_report.elapsed() > Duration::from_secs(15) {
                let (n, f, t) = (got.len(), features.len(), started.elapsed().as_secs_f64());
                eprintln!("pipeline bench: {n}/{} predicted, {f} with features, {t:.0} s", expected.len());
                last_report = Instant::now();
            }
            let Ok(r) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await else { continue };
            let Ok(r) = r else { continue };
            if r.topic == topics::FEATURES.name {
                features.insert(r.key);
                continue;
            }
            if r.topic != topics::PREDICTIONS.name {
                let l = renal_messages::DeadLetterV1::decode(&r.payload).map_err(|e| anyhow::anyhow!("{e}"))?;
                letters.insert(l.source.key.clone(), l);
                continue;
            }
            let p = PredictionV1::decode(&r.payload).map_err(|e| anyhow::anyhow!("{e}"))?;
            got.entry(p.case_id.clone()).or_default().push(p);
        }
        let finished = (predicted_at.unwrap_or_default(), started.elapsed());
        sender.abort();
        receiver.abort();
        Ok::<_, anyhow::Error>((got, letters, finished))
    })?;
    let probes = probes.lock().expect("probe lock").clone();
    feeder.join().map_err(|_| anyhow::anyhow!("the feeder panicked"))??;
    let own_cpu = cpu_seconds("self")? - own_cpu_before;

    // CPU of every process at the end, then each worker's own metrics.
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    for (name, child) in &processes.0 {
        cpu.insert(name.clone(), cpu_seconds(&child.id().to_string())?);
    }
    let mut exposition = String::new();
    for (_, addr) in &metrics {
        exposition.push_str(&http_get(addr, "/metrics")?);
    }
    // Sample messages for the stages' own benchmark, read back before the broker stops.
    // Spread over the sorted ids, so every site's lesions are in it.
    let step = (expected.len() / sample).max(1);
    let sample_ids: BTreeSet<String> = expected.iter().step_by(step).take(sample).cloned().collect();
    let (cases, lesion_msgs, score_msgs) = rt.block_on(async {
        let cases = read_back(&bus, topics::CASES, &sample_ids).await?;
        let lesions = read_back(&bus, topics::LESIONS, &sample_ids).await?;
        let scores = read_back(&bus, topics::SCORES, &sample_ids).await?;
        Ok::<_, anyhow::Error>((cases, lesions, scores))
    })?;
    drop((bus, watch));
    drop(rt);
    drop(processes);
    let decode = |e: renal_messages::DecodeError| anyhow::anyhow!("{e}");
    let cases: Vec<CaseV1> = cases.iter().map(|(_, b)| CaseV1::decode(b).map_err(decode)).collect::<Result<_>>()?;
    let lesions_in: Vec<(LesionV1, String)> = lesion_msgs
        .iter()
        .map(|(_, b)| Ok((LesionV1::decode(b).map_err(decode)?, renal_store::sha256_hex(b))))
        .collect::<Result<_>>()?;
    let scores: Vec<(ScoresV1, Vec<u8>)> =
        score_msgs.iter().map(|(_, b)| Ok((ScoresV1::decode(b).map_err(decode)?, b.clone()))).collect::<Result<_>>()?;
    eprintln!("pipeline bench: the stages' own benchmark on {} lesions", cases.len());
    let bench = stage_benchmarks(&root, &cohort, &scp_site, &cases, &lesions_in, &scores)?;

    report(&Report {
        expected: &expected,
        predictions: &predictions,
        letters: &letters,
        finished,
        cpu: &cpu,
        own_cpu,
        exposition: &exposition,
        probes: &probes,
        bench: &bench,
        scp_site: &scp_site,
        sites: sites.len(),
        fetch_wait_ms,
        broker_storage,
    });
    Ok(())
}

struct Report<'a> {
    expected: &'a BTreeSet<String>,
    predictions: &'a BTreeMap<String, Vec<PredictionV1>>,
    letters: &'a BTreeMap<String, renal_messages::DeadLetterV1>,
    /// When the last prediction arrived, and when the last feature file did (the end).
    finished: (Duration, Duration),
    cpu: &'a BTreeMap<String, f64>,
    /// This process's CPU while the cohort ran (feeding, sending over C-STORE, watching).
    own_cpu: f64,
    exposition: &'a str,
    probes: &'a [f64],
    bench: &'a BTreeMap<&'static str, StageBench>,
    scp_site: &'a str,
    sites: usize,
    fetch_wait_ms: u64,
    broker_storage: &'a str,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.0}", s * 1000.0))
}

fn report(r: &Report) {
    let n = r.expected.len() as f64;
    let (predicted, seconds) = (r.finished.0.as_secs_f64(), r.finished.1.as_secs_f64());
    let duplicates: usize = r.predictions.values().map(|v| v.len() - 1).sum();
    let missing = r.expected.iter().filter(|c| !r.predictions.contains_key(*c) && !r.letters.contains_key(*c)).count();
    println!(
        "renal bench pipeline: {} lesions from {} sites ({} over C-STORE), five worker processes on a private tansu ({}, {} storage, fetch wait {} ms), {} CPU cores allowed",
        r.expected.len(),
        r.sites,
        r.scp_site,
        tansu_build(),
        r.broker_storage,
        r.fetch_wait_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "end to end: {seconds:.1} s, {:.2} lesions/s (every prediction and feature file; the last prediction at {predicted:.1} s); predictions: {} unique, {duplicates} repeated, {} dead-lettered, {missing} missing",
        n / seconds,
        r.predictions.len(),
        r.letters.len()
    );
    for (key, l) in r.letters {
        println!("- dead letter {key}: {} {}: {}", l.stage, l.reason_code, l.reason);
    }
    let latency = histograms(r.exposition, "renal_pipeline_latency_seconds");
    let all: Vec<(f64, f64)> = merged(latency.values());
    println!(
        "first instance to prediction: p50 {} s, p99 {} s",
        quantile(&all, 0.5).map_or("-".into(), |v| format!("{v:.1}")),
        quantile(&all, 0.99).map_or("-".into(), |v| format!("{v:.1}"))
    );
    println!();
    println!("| stage | inputs | processing p50 ms | p99 ms | worker CPU s | CPU s / lesion | own benchmark CPU ms / lesion |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let processing = histograms(r.exposition, "renal_stage_processing_seconds");
    let mut bench_sum = 0.0;
    for stage in WORKERS {
        let buckets: Vec<(f64, f64)> =
            merged(processing.iter().filter(|(l, _)| label(l, "stage") == stage).map(|(_, b)| b));
        let inputs = match stage {
            "ingest" => counter(r.exposition, "renal_ingest_cases_total", ""),
            _ => counter(r.exposition, "renal_stage_messages_total", &format!("stage=\"{stage}\"")),
        };
        let cpu = r.cpu.get(stage).copied().unwrap_or(0.0);
        let own = r.bench.get(stage).map(StageBench::per_lesion).unwrap_or(0.0);
        bench_sum += own;
        println!(
            "| {stage} | {inputs:.0} | {} | {} | {cpu:.1} | {:.3} | {:.0} |",
            ms(quantile(&buckets, 0.5)),
            ms(quantile(&buckets, 0.99)),
            cpu / n,
            own * 1000.0
        );
    }
    let broker = r.cpu.get("broker").copied().unwrap_or(0.0);
    println!("| broker (tansu) | | | | {broker:.1} | {:.3} | |", broker / n);
    println!(
        "| the bench itself (feeder, C-STORE sender, watch, probe; not counted) | | | | {:.1} | {:.3} | |",
        r.own_cpu,
        r.own_cpu / n
    );
    println!();
    println!("| hop (topic -> stage) | p50 ms | p99 ms | count |");
    println!("|---|---:|---:|---:|");
    for (labels, buckets) in histograms(r.exposition, "renal_hop_latency_seconds") {
        let count = buckets.last().map_or(0.0, |b| b.1);
        if count > 0.0 {
            println!(
                "| {} -> {} | {} | {} | {count:.0} |",
                label(&labels, "topic"),
                label(&labels, "stage"),
                ms(quantile(&buckets, 0.5)),
                ms(quantile(&buckets, 0.99))
            );
        }
    }
    let mut probes = r.probes.to_vec();
    probes.sort_by(f64::total_cmp);
    let pick = |q: f64| probes.get(((probes.len() as f64 - 1.0) * q).round() as usize).copied();
    println!(
        "| Kafka itself (probe: produce, acks=all, consume; {} messages under load) | {} | {} | |",
        probes.len(),
        ms(pick(0.5)),
        ms(pick(0.99))
    );
    let total_cpu: f64 = r.cpu.values().sum();
    let per_lesion = total_cpu / n;
    let one_core = 1.0 / bench_sum;
    println!();
    println!("CPU: {total_cpu:.1} s in all, {per_lesion:.3} s per lesion; the stages' own benchmark {bench_sum:.3} s per lesion");
    let check = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "- CPU per lesion / stages' benchmark: {:.2}x (target at most 1.3x: {}); without the broker's CPU {:.2}x",
        per_lesion / bench_sum,
        check(per_lesion / bench_sum <= 1.3),
        (total_cpu - broker) / n / bench_sum
    );
    println!(
        "- lesions/s {:.3} vs one core running the stages back to back {one_core:.3}: {:.2}x (target at least 1.5x: {})",
        n / seconds,
        (n / seconds) / one_core,
        check((n / seconds) / one_core >= 1.5)
    );
    println!(
        "  (the same pipeline on one core: run this command under `taskset -c 0`, which every process inherits, and compare lesions/s)"
    );
    println!(
        "- Kafka per hop p99 {} ms (target under 50 ms: {})",
        ms(pick(0.99)),
        check(pick(0.99).is_some_and(|p| p < 0.05))
    );
    println!("- nothing lost, nothing repeated: {}", check(missing == 0 && duplicates == 0));
}

/// Sum cumulative bucket sets of the same bounds (label sets merged).
fn merged<'a>(sets: impl Iterator<Item = &'a Vec<(f64, f64)>>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for set in sets {
        if out.is_empty() {
            out = set.clone();
        } else {
            for (o, s) in out.iter_mut().zip(set) {
                o.1 += s.1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_as_prometheus_does() {
        // 10 observations in (0, 1], 10 in (1, 2], none above: the median is 1, the 0.75
        // quantile halfway into the second bucket, and one in +Inf clamps to the last bound.
        let b = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(&b, 0.5), Some(1.0));
        assert_eq!(quantile(&b, 0.75), Some(1.5));
        let inf = [(1.0, 1.0), (2.0, 1.0), (f64::INFINITY, 4.0)];
        assert_eq!(quantile(&inf, 0.99), Some(2.0));
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn histograms_and_counters_read_from_the_text_format() {
        let text = "renal_hop_latency_seconds_bucket{stage=\"ensemble\",topic=\"renal.scores\",le=\"0.001\"} 2\n\
                    renal_hop_latency_seconds_bucket{stage=\"ensemble\",topic=\"renal.scores\",le=\"+Inf\"} 5\n\
                    renal_hop_latency_seconds_sum{stage=\"ensemble\",topic=\"renal.scores\"} 1.5\n\
                    renal_stage_messages_total{outcome=\"done\",stage=\"ensemble\"} 7\n\
                    renal_stage_messages_total{outcome=\"retried\",stage=\"ensemble\"} 2\n";
        let h = histograms(text, "renal_hop_latency_seconds");
        let (labels, buckets) = h.iter().next().unwrap();
        assert_eq!((label(labels, "stage"), label(labels, "topic")), ("ensemble", "renal.scores"));
        assert_eq!(buckets, &vec![(0.001, 2.0), (f64::INFINITY, 5.0)]);
        assert_eq!(counter(text, "renal_stage_messages_total", "stage=\"ensemble\""), 9.0);
        assert_eq!(counter(text, "renal_stage_messages_total", "outcome=\"done\""), 7.0);
    }

    #[test]
    fn cpu_time_agrees_with_the_schedulers_own_count() {
        // The scheduler's nanosecond count of this thread's run time (/proc/thread-self/
        // schedstat) is an independent account: spin until it shows 0.25 s more, then the
        // process's user + system ticks must have grown by the same, within two 10 ms ticks
        // and whatever the test harness's other threads used meanwhile.
        let ran = || -> f64 {
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            text.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
        };
        let (before, start) = (cpu_seconds("self").unwrap(), ran());
        let mut x = 0u64;
        while ran() - start < 0.25 {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let (used, scheduled) = (cpu_seconds("self").unwrap() - before, ran() - start);
        assert!((used - scheduled).abs() < 0.05, "/proc/self/stat {used} s, schedstat {scheduled} s");
    }
}
