//! The preprocess worker on a real broker, killed and restarted in the middle.
//!
//! Ingest (`renal worker ingest`, against tansu) turns a small synthetic cohort into
//! `renal.cases`; then `renal worker preprocess` consumes them, is killed with SIGKILL once two
//! lesions are out, and is started again. Two poisoned inputs ride along: a payload that is not
//! a case, and a case whose T2 manifest is not a manifest. In the end every case has a
//! `renal.lesions` message whose blobs are in the store and are what they claim, each poisoned
//! input has a dead letter with its reason code, and no patient identifier appears in any
//! message or in the worker's log. Delivery is at least once: an input handled after the last
//! commit before the kill is handled again, so a lesion or a dead letter may come twice, the
//! same both times.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{interrupt, renal, start_worker, Broker};
use renal_messages::{topics, CaseV1, DeadLetterV1, LesionV1, Message, VolumeBlobs};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[test]
fn every_case_preprocessed_once_after_a_kill_and_restart() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let synth = renal(&["synth", "--out", root.join("drop").to_str().unwrap(), "--lesions", "6", "--sites", "MAY"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("drop/manifest.json")).unwrap()).unwrap();
    let patient_ids: Vec<String> =
        manifest["cases"].as_array().unwrap().iter().map(|c| c["patient_id"].as_str().unwrap().to_string()).collect();
    let config = root.join("workers.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
session_timeout_ms = 6000

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 300
scan_interval_ms = 100
file_settle_ms = 0

[[ingest.sites]]
code = "MAY"
drop_folder = "{root}/drop/MAY"

[preprocess]
blob_store = "{root}/blobs"

[preprocess.settings]
composite_size = 96
"#,
            bootstrap = broker.bootstrap,
            root = root.display()
        ),
    )
    .unwrap();
    let log = root.join("workers.log");
    let store = renal_store::open(root.join("blobs").to_str().unwrap()).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let payloads = rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::CASES, topics::LESIONS, topics::DEAD_INGEST, topics::DEAD_PREPROCESS])
            .await
            .unwrap();

        // Ingest: every synthetic lesion becomes a case.
        let mut cases = bus.consumer("e2e-cases", &[topics::CASES]).unwrap();
        let ingest = start_worker("ingest", &config, &log);
        let mut expected = BTreeMap::new();
        while expected.len() < 6 {
            let r = tokio::time::timeout(Duration::from_secs(90), cases.recv()).await.expect("cases").unwrap();
            let case = CaseV1::decode(&r.payload).unwrap();
            expected.insert(case.case_id.clone(), case);
        }
        interrupt(ingest);

        // Poison: not a case at all, and a case whose T2 manifest is a PNG header.
        bus.send(topics::CASES, "junk", b"{\"version\": 1, \"case_id\": ".to_vec()).await.unwrap();
        let mut bad = expected.values().next().unwrap().clone();
        bad.case_id = "MAY-BAD-MANIFEST".into();
        let t2 = bad.series.iter_mut().find(|s| s.role == renal_messages::Role::T2).unwrap();
        t2.blob = store.put(b"\x89PNG\r\n\x1a\n not a manifest").unwrap();
        bus.send(topics::CASES, &bad.case_id, bad.encode()).await.unwrap();

        let mut lesions = bus.consumer("e2e-lesions", &[topics::LESIONS]).unwrap();
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_PREPROCESS]).unwrap();
        let mut seen: BTreeMap<String, Vec<LesionV1>> = BTreeMap::new();
        let mut raw_payloads = Vec::new();
        let worker = start_worker("preprocess", &config, &log);
        while seen.len() < 2 {
            let r = tokio::time::timeout(Duration::from_secs(90), lesions.recv()).await.expect("lesions").unwrap();
            raw_payloads.push(r.payload.clone());
            let lesion = LesionV1::decode(&r.payload).unwrap();
            assert_eq!(r.key, lesion.case_id, "keyed by case id");
            seen.entry(lesion.case_id.clone()).or_default().push(lesion);
        }
        let mut worker = worker;
        worker.kill().unwrap();
        worker.wait().unwrap();
        let at_kill = seen.len();
        // Restart once the killed member's session (6 s) has run out, as a supervisor's back-off
        // would. tansu 0.6.0, when a new member joins within the session, can form the next
        // generation with the killed member still in it as leader; that leader never hands out
        // partitions and is never expired, so the restarted worker would idle with no
        // assignment for good (seen in its group log: SyncGroup answered with an empty
        // assignment, then heartbeats answered "ok").
        tokio::time::sleep(Duration::from_secs(8)).await;

        let worker = start_worker("preprocess", &config, &log);
        let deadline = Instant::now() + Duration::from_secs(180);
        while seen.len() < expected.len() {
            assert!(Instant::now() < deadline, "only {} of {} lesions", seen.len(), expected.len());
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(5), lesions.recv()).await {
                let r = r.unwrap();
                raw_payloads.push(r.payload.clone());
                let lesion = LesionV1::decode(&r.payload).unwrap();
                seen.entry(lesion.case_id.clone()).or_default().push(lesion);
            }
        }
        let mut letters: BTreeMap<String, DeadLetterV1> = BTreeMap::new();
        while letters.len() < 2 {
            let r = tokio::time::timeout(Duration::from_secs(60), dead.recv()).await.expect("dead letters").unwrap();
            raw_payloads.push(r.payload.clone());
            let letter = DeadLetterV1::decode(&r.payload).unwrap();
            // A repeat (the input redelivered after the kill) must say the same.
            if let Some(first) = letters.get(&letter.source.key) {
                assert_eq!(
                    (&first.reason_code, &first.stage, &first.reason, &first.input_sha256),
                    (&letter.reason_code, &letter.stage, &letter.reason, &letter.input_sha256),
                    "a repeated dead letter differs"
                );
            }
            letters.insert(letter.source.key.clone(), letter);
        }
        interrupt(worker);

        assert!(at_kill < expected.len(), "the kill landed after everything was out; it tested nothing");
        assert_eq!(seen.keys().collect::<BTreeSet<_>>(), expected.keys().collect::<BTreeSet<_>>());
        assert_eq!(letters["junk"].reason_code, "bad_message");
        assert_eq!(letters["MAY-BAD-MANIFEST"].reason_code, "bad_manifest");
        assert_eq!(letters["MAY-BAD-MANIFEST"].stage, "preprocess");

        for (id, copies) in &seen {
            // A case re-run after the kill gives the same lesion (same blobs: content-addressed).
            for c in copies {
                assert_eq!(c.composites, copies[0].composites, "{id}: re-run changed the composites");
            }
            let lesion = &copies[0];
            let case = &expected[id];
            assert_eq!((&lesion.site, lesion.revision), (&case.site, case.revision));
            assert_eq!(lesion.patient_pseudonym, case.patient_pseudonym);
            assert!(lesion.tumour_volume_ml > 0.0 && lesion.qc.mask_voxels.iter().all(|&v| v > 0), "{id}");
            // Body CV is mostly tissue contrast, so N4 need not lower it; it must be a real number.
            assert!(lesion.qc.n4_cv_before_after.iter().all(|v| v.is_finite() && *v > 0.0), "{id}: {:?}", lesion.qc);
            for composite in &lesion.composites {
                let bytes = store.get(composite).unwrap(); // verifies the SHA-256
                assert_eq!(bytes.len(), 3 * 96 * 96 * 4, "{id}: 3 x 96 x 96 float32");
            }
            for volumes in &lesion.volumes {
                let bundle: VolumeBlobs = serde_json::from_slice(&store.get(volumes).unwrap()).unwrap();
                let image = renal_imaging::nifti::decode(&store.get(&bundle.image).unwrap()).unwrap().volume;
                let mask = renal_imaging::nifti::decode(&store.get(&bundle.mask).unwrap()).unwrap().volume;
                assert_eq!(image.geometry.dims, mask.geometry.dims);
                assert!(mask.data.iter().any(|&v| v > 0.5), "{id}: stored mask is empty");
            }
        }
        raw_payloads
    });

    // Patient identifiers stay out of messages and logs.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("preprocess stopped"), "{log}");
    for id in &patient_ids {
        assert!(!log.contains(id.as_str()), "patient id {id} in the worker log");
        for p in &payloads {
            assert!(!String::from_utf8_lossy(p).contains(id.as_str()), "patient id {id} in a message");
        }
    }
}
