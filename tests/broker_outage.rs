//! The whole pipeline on a real broker that goes away for 20 seconds and comes back.
//!
//! Ingest, preprocess, inference and ensemble run as `renal worker` processes on a private
//! tansu. Half of an eight-lesion cohort is dropped in and flows through; then a half score
//! (no T1C probability) is parked with the ensemble, whose sweeper is due to dead-letter it 8 s
//! later, the rest of the cohort lands in ingest's drop folder next to a truncated file, and the
//! broker is killed. So while it is away ingest has studies to read and cases to send and the
//! sweeper has a dead letter to send. After 20 s the broker restarts on the same port and
//! storage. Every worker must still be running, every lesion must reach `renal.predictions`
//! (repeats, if any, with the same probability), the truncated file must reach its dead letter
//! (`unreadable`) and the half score its own (`missing_modality`); then each worker stops cleanly
//! on SIGINT.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{fitted_ensemble, interrupt, log_tail, random_cnn_bundle, start_worker, Broker};
use renal_messages::{topics, DeadLetterV1, Message, PredictionV1};
use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

/// The worker processes, killed if the test ends before it stops them.
struct Workers(Vec<(&'static str, Child)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exited(workers: &mut [(&str, Child)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, child) in workers.iter_mut() {
        if child.try_wait().unwrap().is_some() {
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn the_pipeline_outlasts_a_broker_outage_and_loses_nothing() {
    let began = Instant::now();
    let mut broker = Broker::start_private();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cohort = root.join("cohort");
    let expected = renal_e2e::synth_one_site(&cohort, "MAY", 8, 5);
    let mut patients: Vec<_> = std::fs::read_dir(cohort.join("MAY")).unwrap().map(|e| e.unwrap().path()).collect();
    patients.sort();

    let registry = root.join("models");
    let cnn = random_cnn_bundle(&registry, 32, 11);
    let ensemble = renal_ensemble::bundle::save(&registry, fitted_ensemble(&cnn.version), "t", "t").unwrap();
    let drop = root.join("drop/MAY");
    std::fs::create_dir_all(&drop).unwrap();
    let config = root.join("workers.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 500
scan_interval_ms = 200
file_settle_ms = 0
move_processed = true

[[ingest.sites]]
code = "MAY"
drop_folder = "{root}/drop/MAY"

[preprocess]
blob_store = "{root}/blobs"

[preprocess.settings]
composite_size = 96

[inference]
blob_store = "{root}/blobs"
registry = "{root}/models"
model_version = "{cnn}"
device = "cpu"
max_batch = 4
max_wait_ms = 100

[ensemble]
registry = "{root}/models"
model_version = "{ensemble}"
state_dir = "{root}/ensemble-state"
lesion_wait_ms = 120000
modality_wait_ms = 8000
"#,
            bootstrap = broker.bootstrap,
            root = root.display(),
            cnn = cnn.version,
            ensemble = ensemble.version,
        ),
    )
    .unwrap();
    let log = root.join("workers.log");
    let mut workers = Workers(
        ["ingest", "preprocess", "inference", "ensemble"]
            .into_iter()
            .map(|name| (name, start_worker(name, &config, &log)))
            .collect(),
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-outage")).unwrap();
    // The first half flows through: the workers are connected and their groups formed.
    for p in &patients[..4] {
        renal_e2e::drop_patient(p, &drop);
    }
    rt.block_on(async {
        let all = [
            topics::CASES,
            topics::LESIONS,
            topics::SCORES,
            topics::PREDICTIONS,
            topics::DEAD_INGEST,
            topics::DEAD_ENSEMBLE,
        ];
        bus.ensure_topics(&all).await.unwrap();
        let mut predictions = bus.consumer("e2e-first", &[topics::PREDICTIONS]).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(120), predictions.recv()).await;
        assert!(matches!(first, Ok(Ok(_))), "no prediction before the outage: {first:?}\n{}", log_tail(&log, 80));
        // Half a score, parked until the sweeper gives up on it during the outage.
        let half = serde_json::json!({
            "version": 1, "case_id": "MAY-PARTIAL", "revision": 1, "site": "MAY",
            "t2_probability": 0.4, "embeddings": [[], []], "model_version": cnn.version,
            "provenance": {"code_version": "t", "produced_at": "t", "input_sha256": "0"},
        });
        bus.send(topics::SCORES, "MAY-PARTIAL", serde_json::to_vec(&half).unwrap()).await.unwrap();
        let parked = root.join("ensemble-state/partial-scores");
        let until = Instant::now() + Duration::from_secs(30);
        while renal_e2e::files_under(&parked, None).is_empty() {
            assert!(Instant::now() < until, "the half score was not parked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The rest of the cohort and a truncated file arrive just as the broker goes away.
    let some_instance = renal_e2e::files_under(&patients[0], Some("dcm")).remove(0);
    let bytes = std::fs::read(some_instance).unwrap();
    std::fs::create_dir_all(drop.join("junk")).unwrap();
    std::fs::write(drop.join("junk/broken.dcm"), &bytes[..300]).unwrap();
    for p in &patients[4..] {
        renal_e2e::drop_patient(p, &drop);
    }
    eprintln!("[{:>6.1} s] the broker goes away", began.elapsed().as_secs_f64());
    broker.stop();
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(exited(&mut workers.0), Vec::<String>::new(), "workers that exited during the outage");
    broker.restart();
    eprintln!("[{:>6.1} s] the broker is back", began.elapsed().as_secs_f64());

    let (predictions, letters) = rt.block_on(async {
        let mut out =
            bus.consumer("e2e-after", &[topics::PREDICTIONS, topics::DEAD_INGEST, topics::DEAD_ENSEMBLE]).unwrap();
        let mut predictions: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut letters: BTreeMap<String, String> = BTreeMap::new();
        let until = Instant::now() + Duration::from_secs(240);
        let done = |p: &BTreeMap<String, Vec<f64>>, l: &BTreeMap<String, String>| {
            expected.iter().all(|c| p.contains_key(c))
                && l.values().any(|c| c == "unreadable")
                && l.contains_key("MAY-PARTIAL")
        };
        while !done(&predictions, &letters) {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "after the outage: predictions {predictions:?}, dead letters {letters:?}, workers that exited {:?}\n{}",
                exited(&mut workers.0),
                log_tail(&log, 80)
            );
            // Reads fail while the client reconnects; keep asking.
            let Ok(Ok(r)) = tokio::time::timeout(left, out.recv()).await else { continue };
            if r.topic == topics::PREDICTIONS.name {
                let p = PredictionV1::decode(&r.payload).unwrap();
                predictions.entry(p.case_id).or_default().push(p.probability);
            } else {
                let l = DeadLetterV1::decode(&r.payload).unwrap();
                letters.insert(l.source.key, l.reason_code);
            }
        }
        (predictions, letters)
    });
    eprintln!("[{:>6.1} s] every lesion predicted, both dead letters sent", began.elapsed().as_secs_f64());
    let still_running = exited(&mut workers.0);
    assert!(still_running.is_empty(), "workers that exited: {still_running:?}\n{}", log_tail(&log, 80));
    for (case, ps) in &predictions {
        assert!(ps.iter().all(|p| p == &ps[0]), "{case}: repeated predictions differ: {ps:?}");
    }
    assert_eq!(letters.get("MAY-PARTIAL").map(String::as_str), Some("missing_modality"));
    assert_eq!(letters.values().filter(|c| *c == "unreadable").count(), 1, "{letters:?}");
    for (_, worker) in std::mem::take(&mut workers.0) {
        interrupt(worker);
    }
}
