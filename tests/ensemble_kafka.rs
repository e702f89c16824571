//! The ensemble worker on a real broker (tansu).
//!
//! An ensemble bundle is fitted on synthetic base outputs and saved to a registry. Lesions and
//! scores go onto the broker as preprocess and inference would send them, the lesions in the
//! reverse order of the scores and one lesion only after the worker has started; besides them,
//! a score for a lesion that never arrives, one without a T1C probability, one from another CNN
//! bundle and a payload that is not a score. A worker asked for a version the registry lacks
//! exits at once naming what it has. The right one answers each good score once on
//! `renal.predictions`, keyed by lesion id, with the probability the bundle gives for *that*
//! lesion's clinical values, and dead-letters each bad one with its reason code (the unknown
//! lesion after the configured wait). A score sent in two halves (T2, then T1C) is joined; a
//! half that nothing completes is dead-lettered as `missing_modality` after its wait.
//! Restarted on the same state folder, it answers a new score of an already-seen lesion
//! without that lesion's message being sent again.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{fitted_ensemble, interrupt, renal_bin, start_worker, Broker};
use renal_ensemble::bundle;
use renal_messages::{
    topics, BlobRef, Clinical, DeadLetterV1, LesionQc, LesionV1, Message, PredictionV1, Provenance, ScoresV1, Sex,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const CNN: &str = "cnn-0123456789ab";

fn provenance() -> Provenance {
    Provenance { code_version: "t".into(), produced_at: "2026-11-29T00:00:00Z".into(), input_sha256: "0".repeat(64) }
}

fn lesion(case_id: &str, age: Option<u32>, sex: Option<Sex>, volume: f64) -> LesionV1 {
    let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
    LesionV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: "HUP".into(),
        patient_pseudonym: "ab12".into(),
        clinical: Clinical { age_years: age, sex },
        tumour_volume_ml: volume,
        composites: [blob.clone(), blob.clone()],
        volumes: [blob.clone(), blob],
        qc: LesionQc { mask_voxels: [10, 10], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
        other_readers: Vec::new(),
        provenance: provenance(),
    }
}

fn scores(case_id: &str, t2: f64, t1c: f64, cnn: &str) -> ScoresV1 {
    ScoresV1 {
        version: 1,
        case_id: case_id.into(),
        revision: 1,
        site: "HUP".into(),
        t2_probability: t2,
        t1c_probability: t1c,
        embeddings: [vec![0.0; 16], vec![0.0; 16]],
        model_version: cnn.into(),
        provenance: provenance(),
    }
}

#[test]
fn ensemble_joins_scores_with_their_own_lesions_and_dead_letters_the_rest() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let registry = root.join("models");
    let saved = bundle::save(&registry, fitted_ensemble(CNN), "test", "2026-11-29T00:00:00Z").unwrap();
    let config = |version: &str| {
        let path = root.join(format!("ensemble-{version}.toml"));
        std::fs::write(
            &path,
            format!(
                "[kafka]\nbootstrap_servers = \"{}\"\n\n[ensemble]\nregistry = \"{}\"\nmodel_version = \"{version}\"\nstate_dir = \"{}\"\nlesion_wait_ms = 8000\nmodality_wait_ms = 3000\n",
                broker.bootstrap,
                registry.display(),
                root.join("state").display()
            ),
        )
        .unwrap();
        path
    };

    let bad = Command::new(renal_bin())
        .args(["worker", "ensemble", "--config", config("ens-000000000000").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("model version \"ens-000000000000\" is not in") && stderr.contains(&saved.version),
        "{stderr}"
    );

    // Lesions with different clinical values (one without age or sex: the bundle's fill).
    let lesions: BTreeMap<String, LesionV1> = [
        lesion("HUP-0001", Some(72), Some(Sex::M), 80.0),
        lesion("HUP-0002", Some(35), Some(Sex::F), 3.0),
        lesion("HUP-0003", None, None, 25.0),
        lesion("HUP-0004", Some(61), Some(Sex::F), 40.0),
        lesion("HUP-0005", Some(50), Some(Sex::M), 12.0),
    ]
    .into_iter()
    .map(|l| (l.case_id.clone(), l))
    .collect();
    let t = |id: &str| -> (f64, f64) {
        let i: f64 = id[4..].parse().unwrap();
        (0.1 + 0.15 * i, 0.8 - 0.1 * i)
    };
    let good: Vec<String> = lesions.keys().cloned().collect();
    let config_ok = config(&saved.version);
    let log = root.join("ensemble.log");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE])
            .await
            .unwrap();
        for id in &good {
            let (t2, t1c) = t(id);
            bus.send(topics::SCORES, id, scores(id, t2, t1c, CNN).encode()).await.unwrap();
        }
        bus.send(topics::SCORES, "HUP-0404", scores("HUP-0404", 0.5, 0.5, CNN).encode()).await.unwrap();
        let mut half = serde_json::to_value(scores("HUP-0001", 0.5, 0.5, CNN)).unwrap();
        half.as_object_mut().unwrap().remove("t1c_probability");
        bus.send(topics::SCORES, "HUP-HALF", serde_json::to_vec(&half).unwrap()).await.unwrap();
        bus.send(topics::SCORES, "HUP-OTHER", scores("HUP-0002", 0.5, 0.5, "cnn-ffffffffffff").encode()).await.unwrap();
        bus.send(topics::SCORES, "junk", b"{\"hello\": 1}".to_vec()).await.unwrap();
        // HUP-0006 scored in two halves (as an inference scoring series one at a time would).
        for drop in ["t1c_probability", "t2_probability"] {
            let mut v = serde_json::to_value(scores("HUP-0006", 0.7, 0.2, CNN)).unwrap();
            v.as_object_mut().unwrap().remove(drop);
            bus.send(topics::SCORES, "HUP-0006", serde_json::to_vec(&v).unwrap()).await.unwrap();
        }
        let split_lesion = lesion("HUP-0006", Some(66), Some(Sex::M), 55.0);
        bus.send(topics::LESIONS, "HUP-0006", split_lesion.encode()).await.unwrap();
        // Lesions in reverse order; the last one only once the worker runs.
        for id in good.iter().rev().filter(|id| *id != "HUP-0001") {
            bus.send(topics::LESIONS, id, lesions[id].encode()).await.unwrap();
        }

        let mut predictions = bus.consumer("e2e-predictions", &[topics::PREDICTIONS]).unwrap();
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_ENSEMBLE]).unwrap();
        let started = Instant::now();
        let worker = start_worker("ensemble", &config_ok, &log);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        bus.send(topics::LESIONS, "HUP-0001", lesions["HUP-0001"].encode()).await.unwrap();

        let mut got: BTreeMap<String, PredictionV1> = BTreeMap::new();
        while got.len() < good.len() + 1 {
            let r = tokio::time::timeout(Duration::from_secs(60), predictions.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("predictions {:?}; worker log:\n{}", got.keys(), std::fs::read_to_string(&log).unwrap())
                })
                .unwrap();
            let p = PredictionV1::decode(&r.payload).unwrap();
            assert_eq!(r.key, p.case_id, "keyed by lesion id");
            assert!(got.insert(p.case_id.clone(), p).is_none(), "one prediction per score");
        }
        let mut letters: BTreeMap<String, (DeadLetterV1, Duration)> = BTreeMap::new();
        while letters.len() < 4 {
            let r = tokio::time::timeout(Duration::from_secs(60), dead.recv()).await.expect("dead letters").unwrap();
            let letter = DeadLetterV1::decode(&r.payload).unwrap();
            assert!(letters.insert(letter.source.key.clone(), (letter, started.elapsed())).is_none());
        }
        interrupt(worker);

        for id in &good {
            let l = &lesions[id];
            let age = l.clinical.age_years.map_or(58.0, f64::from);
            let sex = match l.clinical.sex {
                Some(Sex::F) => 0.0,
                _ => 1.0,
            };
            let (t2, t1c) = t(id);
            let want = saved.content.call(t2, t1c, &[age, sex, l.tumour_volume_ml]);
            let p = &got[id];
            assert_eq!(p.inputs, want.inputs, "{id}: its own lesion's clinical values");
            assert!((p.probability - want.probability).abs() < 1e-12, "{id}");
            assert_eq!(p.class, if want.probability >= 0.5 { "malignant" } else { "benign" });
            assert_eq!((p.model_version.as_str(), p.cnn_model_version.as_str()), (saved.version.as_str(), CNN));
        }
        assert_eq!(
            got["HUP-0006"].inputs,
            saved.content.call(0.7, 0.2, &[66.0, 1.0, 55.0]).inputs,
            "the halves joined"
        );
        // Not a constant model: the lesions do not all get one probability.
        let distinct: std::collections::BTreeSet<u64> = got.values().map(|p| p.probability.to_bits()).collect();
        assert!(distinct.len() > 1, "{got:?}");

        let code = |k: &str| letters[k].0.reason_code.clone();
        assert_eq!(code("HUP-0404"), "unknown_lesion");
        assert!(
            letters["HUP-0404"].1 >= Duration::from_secs(8),
            "dead only after the wait: {:?}",
            letters["HUP-0404"].1
        );
        assert_eq!(code("HUP-HALF"), "missing_modality");
        assert!(letters["HUP-HALF"].1 >= Duration::from_secs(3), "parked for the wait: {:?}", letters["HUP-HALF"].1);
        assert_eq!(code("HUP-OTHER"), "model_mismatch");
        assert_eq!(code("junk"), "bad_message");
        assert!(letters
            .values()
            .all(|(l, _)| l.stage == "ensemble" && l.source.topic.as_deref() == Some("renal.scores")));

        // Restart on the same state: a new score of HUP-0003 joins the stored row at once.
        let log2 = root.join("ensemble-2.log");
        let worker = start_worker("ensemble", &config_ok, &log2);
        bus.send(topics::SCORES, "HUP-0003", scores("HUP-0003", 0.9, 0.9, CNN).encode()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(60), predictions.recv()).await.expect("prediction").unwrap();
        let p = PredictionV1::decode(&r.payload).unwrap();
        assert_eq!(p.case_id, "HUP-0003");
        assert_eq!(p.inputs, saved.content.call(0.9, 0.9, &[58.0, 1.0, 25.0]).inputs);
        interrupt(worker);
        let log2 = std::fs::read_to_string(&log2).unwrap();
        assert!(log2.contains("ensemble stopped: 1 scores, 1 predictions, 0 dead letters"), "{log2}");
    });
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(
            "ensemble stopped: 11 scores, 6 predictions, 3 dead letters; 6 lesions joined, 0 dead letters; 1 partial scores dead-lettered after the wait"
        ),
        "{log}"
    );
}
