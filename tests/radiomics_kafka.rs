//! The radiomics worker on a real broker (tansu): `renal worker radiomics` takes lesions from
//! `renal.lesions`, commits one Parquet file per lesion revision and announces each on
//! `renal.features`; a lesion with an empty mask and a payload that is not a lesion are
//! dead-lettered with their reasons. Restarted, it picks up a lesion sent while it was down,
//! and a redelivered lesion rewrites its own file rather than adding one. Its `/metrics`
//! counts what it did, by outcome and reason, with no lesion id in any label.
//! (`tests/pipeline_observed.rs` scrapes every worker with a real Prometheus.)

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{
    files_under, http_get, interrupt, lesion_with_volumes, put_series, start_worker, synthetic_lesion, Broker,
};
use renal_messages::{topics, DeadLetterV1, FeaturesV1, Message};
use renal_store::LocalBlobStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

async fn next<C: Consumer>(consumer: &mut C, what: &str, log: &Path) -> renal_bus::Record {
    tokio::time::timeout(Duration::from_secs(90), consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what}; worker log:\n{}", std::fs::read_to_string(log).unwrap_or_default()))
        .unwrap()
}

#[test]
fn radiomics_worker_commits_files_and_announces_them() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = LocalBlobStore::new(&root.join("blobs")).unwrap();
    let settings = root.join("settings.json");
    std::fs::write(
        &settings,
        r#"{"settings": [{"spacing_mm": 2.0, "discretisation": {"method": "fixed_bin_number", "bins": 16}},
            {"spacing_mm": 3.0, "discretisation": {"method": "equalised_bin_number", "bins": 8}}]}"#,
    )
    .unwrap();
    let config = root.join("radiomics.toml");
    // A free loopback port for the worker's /metrics.
    let metrics = format!("127.0.0.1:{}", renal_e2e::free_port());
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n\n[telemetry]\nmetrics_addr = \"{metrics}\"\n\n[radiomics]\nblob_store = \"{}\"\ntable_root = \"{}\"\nsettings = \"{}\"\n",
            broker.bootstrap,
            root.join("blobs").display(),
            root.join("store").display(),
            settings.display()
        ),
    )
    .unwrap();

    let (img, msk) = synthetic_lesion([40, 40, 12], [0.8, 0.8, 3.0], [9.0, 7.0, 8.0], 7);
    let good = put_series(&store, &img, &msk);
    let empty = put_series(
        &store,
        &img,
        &renal_imaging::Volume { geometry: msk.geometry.clone(), data: vec![0; msk.data.len()] },
    );
    let lesion = |id: &str, t2: &renal_messages::BlobRef| lesion_with_volumes(id, "SXH", [t2.clone(), good.clone()]);

    let log = root.join("radiomics.log");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::LESIONS, topics::FEATURES, topics::DEAD_RADIOMICS]).await.unwrap();
        for l in [lesion("SXH-0001", &good), lesion("SXH-0002", &empty)] {
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
        }
        bus.send(topics::LESIONS, "junk", b"not json".to_vec()).await.unwrap();
        let mut features = bus.consumer("e2e-features", &[topics::FEATURES]).unwrap();
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_RADIOMICS]).unwrap();

        // Debug-level JSON logs, to check that no lesion id reaches them either.
        std::env::set_var("RUST_LOG", "debug");
        std::env::set_var("RENAL_LOG_FORMAT", "json");
        let worker = start_worker("radiomics", &config, &log);
        let first = FeaturesV1::decode(&next(&mut features, "features", &log).await.payload).unwrap();
        let mut letters = BTreeMap::new();
        for _ in 0..2 {
            let l = DeadLetterV1::decode(&next(&mut dead, "dead letter", &log).await.payload).unwrap();
            letters.insert(l.source.key.clone(), l.reason_code);
        }
        // What Prometheus would scrape: one lesion done, two dead-lettered by reason, the bus
        // ready, and no lesion id in any label.
        // (The counters follow the broker's acknowledgement by microseconds; poll briefly.)
        let want = [
            "renal_stage_messages_total{outcome=\"done\",stage=\"radiomics\"} 1",
            "renal_stage_messages_total{outcome=\"rejected\",stage=\"radiomics\"} 2",
            "renal_dead_letters_total{reason=\"empty_mask\",stage=\"radiomics\"} 1",
            "renal_dead_letters_total{reason=\"bad_message\",stage=\"radiomics\"} 1",
            "renal_stage_outputs_total{stage=\"radiomics\",topic=\"renal.features\"} 1",
            "renal_stage_processing_seconds_count{stage=\"radiomics\"} 3",
        ];
        let mut text = String::new();
        for _ in 0..50 {
            let (status, body) = http_get(&metrics, "/metrics");
            assert_eq!(status, 200);
            text = body;
            if want.iter().all(|line| text.contains(line)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for line in want {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        assert!(text.contains("renal_build_info{commit="), "{text}");
        assert!(!text.contains("SXH-0001") && !text.contains("SXH-0002") && !text.contains("junk"), "{text}");
        assert_eq!(http_get(&metrics, "/readyz"), (200, "ready\n".to_string()));
        assert_eq!(http_get(&metrics, "/healthz").0, 200);
        interrupt(worker);
        let text = std::fs::read_to_string(&log).unwrap();
        let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let logged: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["fields"]["message"] == "dead-lettered").collect();
        assert_eq!(logged.len(), 2, "{text}");
        assert!(logged.iter().any(|e| e["fields"]["reason"] == "empty_mask" && e["span"]["topic"] == "renal.lesions"));
        assert!(events.iter().any(|e| e["level"] == "DEBUG"), "debug events are on");
        assert!(!text.contains("SXH-0001") && !text.contains("SXH-0002"), "a lesion id in the logs:\n{text}");
        assert_eq!(first.case_id, "SXH-0001");
        assert!(first.file.starts_with("features/site=SXH/date="), "{}", first.file);
        assert!(root.join("store").join(&first.file).is_file());
        assert!(first.features > 2 * 2 * 400, "{} values for 2 series x 2 settings", first.features);
        assert_eq!(letters["SXH-0002"], "empty_mask");
        assert_eq!(letters["junk"], "bad_message");

        // Sent while the worker is down: picked up after the restart; the first lesion again
        // (a redelivery) rewrites its own file.
        for l in [lesion("SXH-0003", &good), lesion("SXH-0001", &good)] {
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
        }
        let worker = start_worker("radiomics", &config, &log);
        let mut later = BTreeMap::new();
        for _ in 0..2 {
            let f = FeaturesV1::decode(&next(&mut features, "features after restart", &log).await.payload).unwrap();
            later.insert(f.case_id.clone(), f);
        }
        interrupt(worker);
        assert_eq!(later.keys().collect::<Vec<_>>(), ["SXH-0001", "SXH-0003"]);
        assert_eq!(later["SXH-0001"].features, first.features, "same input, same features");
    });
    let files = files_under(&root.join("store/features"), Some("parquet"));
    assert_eq!(files.len(), 2, "one file per lesion revision: {files:?}");
}
