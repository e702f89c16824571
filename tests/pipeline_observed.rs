//! The whole pipeline watched as an operator would watch it.
//!
//! The five workers run as `renal worker` processes on a private tansu, each answering
//! `/metrics` on its own port, with debug-level JSON logs. A real Prometheus (Debian's) scrapes
//! them every second with the deployment's alert rules loaded. A synthetic cohort arrives half
//! through the drop folder and half over DICOM C-STORE, with a truncated file among it. Once
//! every lesion has its prediction:
//! - every PromQL expression of the pipeline's Grafana dashboard (`$__rate_interval` as 1m, `$site` as all
//!   sites) and every signal of the alert rules returns data through Prometheus' HTTP API;
//! - the end-to-end latency histogram counted each lesion, consumer lag was reported, blob
//!   traffic and C-STORE associations were counted;
//! - the PHI scan: no patient name (whole or any part), patient ID, birth date, accession
//!   number, institution name or UID (study, series, instance, frame of reference) of the cohort
//!   appears, byte for byte, in any worker's `/metrics`, the debug logs, any message on any
//!   topic (keys and payloads), any file the pipeline wrote (the blob store's de-identified
//!   instances, manifests, volumes decompressed, the registry and state folders) or any value of
//!   any Parquet table.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{
    alert_expressions, alert_signals, dashboard_queries, fitted_ensemble, random_cnn_bundle, Broker, Prometheus,
};
use renal_messages::{topics, Message, PredictionV1};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const WORKERS: [&str; 5] = ["ingest", "preprocess", "radiomics", "inference", "ensemble"];

/// The worker processes, killed if the test ends early.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Values of the cohort that identify a patient or an object: names (whole and each part),
/// patient IDs, birth dates (as DICOM writes them and as ISO dates), accession numbers, the
/// institution, and study, series, instance and frame-of-reference UIDs, read by DCMTK's
/// `dcmdump`.
fn identifiers(cohort: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for file in renal_e2e::files_under(cohort, Some("dcm")) {
        let attributes = renal_e2e::top_level(&renal_e2e::dcmdump(&file));
        for tag in
            ["0010,0010", "0010,0020", "0008,0050", "0008,0080", "0020,000d", "0020,000e", "0008,0018", "0020,0052"]
        {
            if let Some(v) = attributes.get(tag).filter(|v| !v.is_empty()) {
                out.insert(v.clone());
                out.extend(v.split('^').filter(|p| p.len() >= 4).map(str::to_string));
            }
        }
        if let Some(birth) = attributes.get("0010,0030").filter(|v| v.len() == 8) {
            out.insert(birth.clone());
            out.insert(format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]));
        }
    }
    out
}

/// Everything the pipeline wrote under `root` (all but the cohort and the drop folder, the
/// hospital's own copies), as bytes to search: gzip files decompressed, Parquet tables as the
/// text of every row of every column.
fn written_outputs(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = Vec::new();
    for path in renal_e2e::files_under(root, None) {
        let rel = path.strip_prefix(root).unwrap();
        if rel.starts_with("cohort") || rel.starts_with("drop") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let searchable = if path.extension().is_some_and(|x| x == "parquet") {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let rows: Vec<String> = reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_string()).collect();
            assert!(!rows.is_empty(), "{}: a table with no rows", rel.display());
            rows.join("\n").into_bytes()
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
            plain
        } else {
            bytes
        };
        out.push((path, searchable));
    }
    out
}

/// Which of `needles` occur in `haystack`, found in one pass (Aho-Corasick).
fn found<'a>(finder: &aho_corasick::AhoCorasick, needles: &'a [String], haystack: &[u8]) -> BTreeSet<&'a str> {
    finder.find_overlapping_iter(haystack).map(|m| needles[m.pattern().as_usize()].as_str()).collect()
}

#[test]
fn dashboards_and_alerts_have_data_and_no_identifier_reaches_any_output() {
    renal_e2e::require_tool("storescu");
    let broker = Broker::start_private();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cohort = root.join("cohort");
    let expected = renal_e2e::synth_one_site(&cohort, "MAY", 6, 21);
    let secrets = identifiers(&cohort);
    assert!(secrets.len() > 20, "{secrets:?}");

    let registry = root.join("models");
    let cnn = random_cnn_bundle(&registry, 32, 5);
    renal_ensemble::bundle::save(&registry, fitted_ensemble(&cnn.version), "t", "2026-12-06T00:00:00Z").unwrap();
    let scp_port = renal_e2e::free_port();
    let body = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
stats_interval_ms = 1000

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 500
scan_interval_ms = 200
file_settle_ms = 0

[[ingest.sites]]
code = "MAY"
drop_folder = "{root}/drop/MAY"

[[ingest.scp]]
site = "MAY"
ae_title = "RENAL_MAY"
bind = "127.0.0.1:{scp_port}"
durability = "page_cache"

[preprocess]
blob_store = "{root}/blobs"

[preprocess.settings]
composite_size = 96

[radiomics]
blob_store = "{root}/blobs"
table_root = "{root}/store"

[inference]
blob_store = "{root}/blobs"
registry = "{root}/models"
model_version = "newest"
device = "cpu"
max_batch = 4
max_wait_ms = 100

[ensemble]
registry = "{root}/models"
model_version = "newest"
state_dir = "{root}/ensemble-state"
"#,
        bootstrap = broker.bootstrap,
        root = root.display(),
    );
    std::fs::create_dir_all(root.join("drop/MAY")).unwrap();
    let log = |w: &str| root.join(format!("{w}.log"));
    let mut targets = Vec::new();
    let mut workers = Workers(Vec::new());
    for worker in WORKERS {
        let metrics = format!("127.0.0.1:{}", renal_e2e::free_port());
        let config = root.join(format!("{worker}.toml"));
        std::fs::write(&config, format!("[telemetry]\nmetrics_addr = \"{metrics}\"\n{body}")).unwrap();
        let child = Command::new(renal_e2e::renal_bin())
            .args(["worker", worker, "--config", config.to_str().unwrap()])
            .env("RENAL_PSEUDONYM_SECRET", renal_e2e::E2E_SECRET)
            .env("RUST_LOG", "debug")
            .env("RENAL_LOG_FORMAT", "json")
            .stderr(std::fs::File::create(log(worker)).unwrap())
            .spawn()
            .unwrap();
        workers.0.push(child);
        targets.push((format!("renal-{worker}"), metrics));
    }
    let jobs: Vec<(&str, String)> = targets.iter().map(|(j, a)| (j.as_str(), a.clone())).collect();
    let prometheus = Prometheus::start(&jobs);
    let all_logs = || WORKERS.iter().map(|w| std::fs::read_to_string(log(w)).unwrap_or_default()).collect::<String>();
    let tails = || WORKERS.iter().map(|w| renal_e2e::log_tail(&log(w), 25)).collect::<Vec<_>>().join("\n");

    // Half the patients through the drop folder, half over C-STORE; a truncated file too.
    let mut patients: Vec<PathBuf> =
        std::fs::read_dir(cohort.join("MAY")).unwrap().map(|e| e.unwrap().path()).collect();
    patients.sort();
    for p in &patients[..3] {
        renal_e2e::drop_patient(p, &root.join("drop/MAY"));
    }
    let bytes = std::fs::read(renal_e2e::files_under(&patients[0], Some("dcm")).remove(0)).unwrap();
    std::fs::write(root.join("drop/MAY/broken.dcm"), &bytes[..300]).unwrap();
    for p in &patients[3..] {
        renal_e2e::storescu("RENAL_MAY", scp_port, p);
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let predictions = rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-observed")).unwrap();
        bus.ensure_topics(&[topics::PREDICTIONS]).await.unwrap();
        let mut consumer = bus.consumer("e2e-observed", &[topics::PREDICTIONS]).unwrap();
        let mut got: BTreeMap<String, PredictionV1> = BTreeMap::new();
        let until = Instant::now() + Duration::from_secs(240);
        while !expected.iter().all(|c| got.contains_key(c)) {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "predictions {:?}\n{}", got.keys().collect::<Vec<_>>(), tails());
            let Ok(Ok(r)) = tokio::time::timeout(left, consumer.recv()).await else { continue };
            let p = PredictionV1::decode(&r.payload).unwrap();
            got.insert(p.case_id.clone(), p);
        }
        got
    });
    for p in predictions.values() {
        assert!(p.first_instance_at.is_some(), "{}: the prediction carries its first instance's time", p.case_id);
    }

    // Every dashboard query and alert signal returns data once Prometheus has scraped the end
    // of the run (rates over 1m need two scrapes of each series).
    let mut queries = dashboard_queries("pipeline.json");
    let signals: BTreeSet<String> = alert_expressions().iter().flat_map(|e| alert_signals(e)).collect();
    queries.extend(signals.into_iter().map(|s| ("alert signal".to_string(), s)));
    assert!(queries.len() > 25, "{queries:?}");
    let mut empty = queries.clone();
    let until = Instant::now() + Duration::from_secs(60);
    while !empty.is_empty() && Instant::now() < until {
        empty.retain(|(_, q)| prometheus.query(q).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(empty.is_empty(), "no data for {empty:#?}\n{}", tails());
    let count = |q: &str| -> f64 {
        let v = prometheus.query(q);
        v.first().map_or(0.0, |s| s["value"][1].as_str().unwrap().parse().unwrap())
    };
    type Check = (&'static str, fn(f64) -> bool);
    let checks: [Check; 6] = [
        // A latency per prediction.
        ("sum(renal_pipeline_latency_seconds_count)", |v| v >= 6.0),
        ("sum(up{job=~\"renal-.*\"})", |v| v == 5.0),
        ("sum(renal_cstore_associations_total{site=\"MAY\",outcome=\"ok\"})", |v| v >= 3.0),
        ("sum(renal_blob_bytes_total{operation=\"write\"})", |v| v > 1e6),
        ("count(renal_consumer_lag)", |v| v >= 1.0),
        // The truncated file, and nothing else.
        ("sum(renal_dead_letters_total{stage=\"ingest\",reason=\"unreadable\"})", |v| v == 1.0),
    ];
    // Prometheus holds what it scraped up to a second ago: wait for the last predictions' scrape.
    let until = Instant::now() + Duration::from_secs(30);
    let failing = || checks.iter().map(|(q, ok)| (*q, count(q), ok)).filter(|(_, v, ok)| !ok(*v)).collect::<Vec<_>>();
    while !failing().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    let wrong: Vec<(&str, f64)> = failing().into_iter().map(|(q, v, _)| (q, v)).collect();
    assert!(wrong.is_empty(), "{wrong:?}\n{}", tails());

    // The PHI scan: no identifier in any worker's metrics, the debug logs, any topic or any file
    // the pipeline wrote.
    let mut exposed = String::new();
    for (_, addr) in &targets {
        exposed.push_str(&renal_e2e::http_get(addr, "/metrics").1);
    }
    let logs = all_logs();
    assert!(logs.lines().any(|l| l.contains("\"level\":\"DEBUG\"")), "debug logs are on");
    for secret in &secrets {
        let line = |text: &str| text.lines().find(|l| l.contains(secret.as_str())).map(str::to_string);
        assert_eq!(line(&exposed), None, "{secret} in /metrics");
        assert_eq!(line(&logs), None, "{secret} in the logs");
    }
    let messages = rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-phi-scan")).unwrap();
        bus.ensure_topics(topics::ALL).await.unwrap();
        let mut consumer = bus.consumer("e2e-phi-scan", topics::ALL).unwrap();
        let mut got = Vec::new();
        // Every topic from its beginning, until nothing more comes for 5 s (a read error does
        // not count as something coming; two minutes at most).
        let (started, mut last) = (Instant::now(), Instant::now());
        while last.elapsed() < Duration::from_secs(5) && started.elapsed() < Duration::from_secs(120) {
            match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                Ok(Ok(r)) => {
                    got.push((r.topic.to_string(), [r.key.as_bytes(), b"\n", &r.payload[..]].concat()));
                    last = Instant::now();
                }
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => {}
            }
        }
        got
    });
    let by_topic: BTreeSet<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
    for topic in
        [topics::CASES, topics::LESIONS, topics::FEATURES, topics::SCORES, topics::PREDICTIONS, topics::DEAD_INGEST]
    {
        assert!(by_topic.contains(topic.name), "no message read from {}: {by_topic:?}", topic.name);
    }
    let files = written_outputs(root);
    let instances = files.iter().filter(|(_, b)| b.len() > 132 && &b[128..132] == b"DICM").count();
    assert!(instances >= 6 * 40, "{instances} de-identified instances in the blob store");
    assert!(files.iter().any(|(p, _)| p.extension().is_some_and(|x| x == "parquet")), "the tables were read");
    let needles: Vec<String> = secrets.iter().cloned().collect();
    let finder = aho_corasick::AhoCorasick::new(&needles).unwrap();
    let mut hits = Vec::new();
    for (topic, m) in &messages {
        hits.extend(found(&finder, &needles, m).into_iter().map(|n| format!("{n} on {topic}")));
    }
    for (path, bytes) in &files {
        hits.extend(found(&finder, &needles, bytes).into_iter().map(|n| format!("{n} in {}", path.display())));
    }
    assert!(hits.is_empty(), "{} hits: {:#?}", hits.len(), &hits[..hits.len().min(20)]);
    println!(
        "PHI scan: {} identifiers searched in {} messages on {} topics, {} files ({instances} DICOM instances), /metrics of {} workers and {} log lines: 0 hits",
        secrets.len(),
        messages.len(),
        by_topic.len(),
        files.len(),
        targets.len(),
        logs.lines().count()
    );
    for worker in std::mem::take(&mut workers.0) {
        renal_e2e::interrupt(worker);
    }
}
