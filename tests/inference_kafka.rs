//! The inference worker on a real broker (tansu).
//!
//! A bundle of two small random-initialised networks is saved to a registry; composites go into
//! a blob store and `renal.lesions` messages onto the broker, with three poisoned inputs: a
//! payload that is not a lesion, a lesion whose composite is not in the store, and one whose
//! composite has the wrong size. A worker started with a version the registry does not have
//! exits at once with a message naming the versions it does have. Started with the right one, it
//! answers every good lesion once on `renal.scores` (keyed by case id, both probabilities equal
//! to the library's on the same composites whatever the batching, 16-value embeddings, the
//! bundle's version) and dead-letters each poisoned input once with its reason code. Downstream,
//! an ensemble worker serving a bundle pinned to that CNN bundle joins each score with its own
//! lesion's clinical values from `renal.lesions` and answers it on `renal.predictions` with the
//! bundle's probability for those inputs.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_cnn::score::Scorer;
use renal_e2e::{
    fitted_ensemble, interrupt, random_cnn_bundle, renal_bin, start_worker, test_composite as composite, Broker,
};
use renal_messages::{
    topics, BlobRef, Clinical, DeadLetterV1, LesionQc, LesionV1, Message, PredictionV1, Provenance, ScoresV1,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use tch::Device;

fn lesion(case_id: &str, composites: [BlobRef; 2]) -> LesionV1 {
    LesionV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: "MAY".into(),
        patient_pseudonym: "ab12".into(),
        clinical: Clinical { age_years: Some(60), sex: None },
        tumour_volume_ml: 12.0,
        composites: composites.clone(),
        volumes: composites,
        qc: LesionQc { mask_voxels: [10, 10], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
        other_readers: Vec::new(),
        provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".repeat(64) },
    }
}

#[test]
fn inference_scores_every_lesion_and_dead_letters_the_rest() {
    tch::set_num_threads(1);
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let registry = root.join("models");
    let manifest = random_cnn_bundle(&registry, 32, 3);

    let store = renal_store::open(root.join("blobs").to_str().unwrap()).unwrap();
    let mut good = BTreeMap::new();
    for i in 0..5u64 {
        // Preprocessing's composite_size is configurable: mix 200 and 96.
        let side = if i % 2 == 0 { 200 } else { 96 };
        let pair = [composite(2 * i, side), composite(2 * i + 1, side)];
        let refs = [store.put(&pair[0]).unwrap(), store.put(&pair[1]).unwrap()];
        good.insert(format!("MAY-{i:04}"), (lesion(&format!("MAY-{i:04}"), refs), pair));
    }
    let ok_ref = store.put(&composite(99, 200)).unwrap();
    let absent = BlobRef { key: format!("sha256/00/{}", "0".repeat(64)), sha256: "0".repeat(64), bytes: 10 };
    let missing = lesion("MAY-MISSING", [absent, ok_ref.clone()]);
    let wrong = lesion("MAY-WRONG-SIZE", [ok_ref.clone(), store.put(&[0u8; 1000]).unwrap()]);

    let config = |version: &str| {
        let path = root.join(format!("inference-{version}.toml"));
        std::fs::write(
            &path,
            format!(
                "[kafka]\nbootstrap_servers = \"{}\"\n\n[inference]\nblob_store = \"{}\"\nregistry = \"{}\"\nmodel_version = \"{version}\"\ndevice = \"cpu\"\nmax_batch = 3\nmax_wait_ms = 200\n",
                broker.bootstrap,
                root.join("blobs").display(),
                registry.display()
            ),
        )
        .unwrap();
        path
    };

    // A version that does not exist: refused at start-up, naming what exists.
    let bad = Command::new(renal_bin())
        .args(["worker", "inference", "--config", config("cnn-000000000000").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("model version \"cnn-000000000000\" is not in") && stderr.contains(&manifest.version),
        "{stderr}"
    );

    let log = root.join("inference.log");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::LESIONS, topics::SCORES, topics::DEAD_INFERENCE, topics::PREDICTIONS, topics::DEAD_ENSEMBLE])
            .await
            .unwrap();
        for (id, (l, _)) in &good {
            bus.send(topics::LESIONS, id, l.encode()).await.unwrap();
        }
        bus.send(topics::LESIONS, "junk", b"[1, 2, 3]".to_vec()).await.unwrap();
        bus.send(topics::LESIONS, &missing.case_id, missing.encode()).await.unwrap();
        bus.send(topics::LESIONS, &wrong.case_id, wrong.encode()).await.unwrap();

        let mut scores = bus.consumer("e2e-scores", &[topics::SCORES]).unwrap();
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_INFERENCE]).unwrap();
        let worker = start_worker("inference", &config(&manifest.version), &log);
        let mut got: BTreeMap<String, ScoresV1> = BTreeMap::new();
        while got.len() < good.len() {
            let r = tokio::time::timeout(Duration::from_secs(90), scores.recv()).await.expect("scores").unwrap();
            let s = ScoresV1::decode(&r.payload).unwrap();
            assert_eq!(r.key, s.case_id, "keyed by case id");
            assert!(got.insert(s.case_id.clone(), s).is_none(), "one score per lesion");
        }
        let mut letters: BTreeMap<String, DeadLetterV1> = BTreeMap::new();
        while letters.len() < 3 {
            let r = tokio::time::timeout(Duration::from_secs(60), dead.recv()).await.expect("dead letters").unwrap();
            let letter = DeadLetterV1::decode(&r.payload).unwrap();
            assert!(letters.insert(letter.source.key.clone(), letter).is_none(), "one dead letter per input");
        }
        interrupt(worker);

        assert_eq!(letters["junk"].reason_code, "bad_message");
        assert_eq!(letters["MAY-MISSING"].reason_code, "missing_blob");
        assert_eq!(letters["MAY-WRONG-SIZE"].reason_code, "bad_composite");
        assert!(letters.values().all(|l| l.stage == "inference"));

        // Same numbers as the library on the same composites, one lesion at a time.
        let scorer = Scorer::load(&registry, &manifest.version, Device::Cpu).unwrap();
        for (id, (_, pair)) in &good {
            let floats: Vec<Vec<f32>> =
                pair.iter().map(|b| renal_imaging::composite::decode_f32_le(b).unwrap()).collect();
            let want = &scorer.score(&[[floats[0].as_slice(), floats[1].as_slice()]])[0];
            let s = &got[id];
            assert_eq!(s.model_version, manifest.version);
            assert!(
                (s.t2_probability - want.probability[0]).abs() < 1e-6,
                "{id}: {} vs {}",
                s.t2_probability,
                want.probability[0]
            );
            assert!((s.t1c_probability - want.probability[1]).abs() < 1e-6, "{id}");
            assert!(s.embeddings.iter().all(|e| e.len() == 16), "{id}");
        }

        // Downstream: the ensemble over these scores and the lesions' clinical values.
        let ensemble = renal_ensemble::bundle::save(&registry, fitted_ensemble(&manifest.version), "test", "t").unwrap();
        let ensemble_config = root.join("ensemble.toml");
        std::fs::write(
            &ensemble_config,
            format!(
                "[kafka]\nbootstrap_servers = \"{}\"\n\n[ensemble]\nregistry = \"{}\"\nmodel_version = \"{}\"\nstate_dir = \"{}\"\nlesion_wait_ms = 5000\n",
                broker.bootstrap,
                registry.display(),
                ensemble.version,
                root.join("ensemble-state").display()
            ),
        )
        .unwrap();
        let mut predictions = bus.consumer("e2e-predictions", &[topics::PREDICTIONS]).unwrap();
        let worker = start_worker("ensemble", &ensemble_config, &root.join("ensemble.log"));
        let mut predicted: BTreeMap<String, PredictionV1> = BTreeMap::new();
        while predicted.len() < good.len() {
            let r = tokio::time::timeout(Duration::from_secs(60), predictions.recv()).await.expect("predictions").unwrap();
            let p = PredictionV1::decode(&r.payload).unwrap();
            predicted.insert(p.case_id.clone(), p);
        }
        interrupt(worker);
        for (id, (l, _)) in &good {
            let s = &got[id];
            // Age 60 recorded, sex missing (the bundle's fill: male).
            let want = ensemble.content.call(s.t2_probability, s.t1c_probability, &[60.0, 1.0, l.tumour_volume_ml]);
            let p = &predicted[id];
            assert_eq!(p.inputs, want.inputs, "{id}");
            assert_eq!(p.probability, want.probability, "{id}");
            assert_eq!((p.model_version.as_str(), p.cnn_model_version.as_str()), (ensemble.version.as_str(), manifest.version.as_str()));
        }
    });
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("inference stopped: 8 lesions, 5 scores, 3 dead letters"), "{log}");
}
