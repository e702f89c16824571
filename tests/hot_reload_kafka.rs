//! Hot reload on a real broker (tansu): the inference and ensemble workers serve the promoted
//! model and switch when a new one is promoted, without a restart.
//!
//! Two model versions are in the registry, A (CNN bundle A and the ensemble bundle fitted on
//! it) and B; A is promoted. Both workers start with `model_version = "promoted"`. Lesions
//! stream in three parts: the first is predicted before anything changes; then B is promoted
//! (the registry's pointer moves and a `renal.models` event is sent) while the second part is
//! streaming; the third is sent once both workers have said they have loaded B (each switches
//! at its next input). Every lesion is
//! predicted exactly once, every prediction names a pair that belongs together (never the
//! ensemble of one model with the networks of the other), the first part names A, the third
//! B, and nothing is dead-lettered (a score of B's networks that reaches the ensemble before it
//! has loaded B waits for it instead of being refused).

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{
    fitted_ensemble, random_cnn_bundle, receive_predictions as receive, start_worker, test_composite, Broker, Running,
};
use renal_messages::{topics, BlobRef, Clinical, LesionQc, LesionV1, Message, PredictionV1, Provenance, Sex};
use renal_registry::{Entry, Registry};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn lesion(i: usize, composites: [BlobRef; 2]) -> LesionV1 {
    LesionV1 {
        version: 1,
        case_id: format!("MAY-{i:04}"),
        first_instance_at: None,
        revision: 1,
        site: "MAY".into(),
        patient_pseudonym: format!("p{i}"),
        clinical: Clinical { age_years: Some(40 + i as u32), sex: Some(Sex::F) },
        tumour_volume_ml: 5.0 + i as f64,
        composites: composites.clone(),
        volumes: composites,
        qc: LesionQc { mask_voxels: [10, 10], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
        other_readers: Vec::new(),
        provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".repeat(64) },
    }
}

fn entry(version: &str, cnn: &str) -> Entry {
    Entry {
        version: version.into(),
        cnn_version: cnn.into(),
        created_at: renal_base::now_rfc3339(),
        code_version: "test".into(),
        retrain: "full".into(),
        champion: None,
        training: Vec::new(),
        held_out: Vec::new(),
        held_out_patients: Vec::new(),
        metrics: serde_json::json!({}),
    }
}

/// Wait until `log` contains `needle` (a worker's own account of switching).
fn wait_for_log(log: &Path, needle: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{} never said {needle:?}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_workers_switch_to_a_promoted_model_mid_stream_without_losing_or_repeating_a_lesion() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let models = root.join("models");
    let (cnn_a, cnn_b) = (random_cnn_bundle(&models, 32, 3).version, random_cnn_bundle(&models, 32, 4).version);
    assert_ne!(cnn_a, cnn_b);
    let save = |cnn: &str| {
        renal_ensemble::bundle::save(&models, fitted_ensemble(cnn), "test", &renal_base::now_rfc3339()).unwrap().version
    };
    let (ens_a, ens_b) = (save(&cnn_a), save(&cnn_b));
    let registry = Registry::new(&models, &root.join("store"));
    registry.register(&entry(&ens_a, &cnn_a)).unwrap();
    registry.register(&entry(&ens_b, &cnn_b)).unwrap();
    registry.promote("default", &ens_a, None, "first").unwrap().unwrap();

    let store = renal_store::open(root.join("blobs").to_str().unwrap()).unwrap();
    let lesions: Vec<LesionV1> = (0..18)
        .map(|i| {
            let pair = [
                store.put(&test_composite(2 * i as u64, 96)).unwrap(),
                store.put(&test_composite(2 * i as u64 + 1, 96)).unwrap(),
            ];
            lesion(i, pair)
        })
        .collect();

    let kafka = format!("[kafka]\nbootstrap_servers = \"{}\"\n\n", broker.bootstrap);
    let inference = root.join("inference.toml");
    std::fs::write(
        &inference,
        format!(
            "{kafka}[inference]\nblob_store = \"{}\"\nregistry = \"{}\"\nmodel_version = \"promoted\"\ndevice = \"cpu\"\ncpu_threads = 1\nmax_batch = 2\nmax_wait_ms = 100\n",
            root.join("blobs").display(),
            models.display()
        ),
    )
    .unwrap();
    let ensemble = root.join("ensemble.toml");
    std::fs::write(
        &ensemble,
        format!(
            "{kafka}[ensemble]\nregistry = \"{}\"\nmodel_version = \"promoted\"\nstate_dir = \"{}\"\nlesion_wait_ms = 30000\n",
            models.display(),
            root.join("state").display()
        ),
    )
    .unwrap();
    let (inference_log, ensemble_log) = (root.join("inference.log"), root.join("ensemble.log"));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let predictions: Vec<PredictionV1> = rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[
            topics::LESIONS,
            topics::SCORES,
            topics::PREDICTIONS,
            topics::MODELS,
            topics::DEAD_INFERENCE,
            topics::DEAD_ENSEMBLE,
        ])
        .await
        .unwrap();
        let mut out = bus.consumer("e2e-predictions", &[topics::PREDICTIONS]).unwrap();
        let workers = [
            Running::new(start_worker("inference", &inference, &inference_log)),
            Running::new(start_worker("ensemble", &ensemble, &ensemble_log)),
        ];
        let mut got = Vec::new();
        // Part one, under A.
        for l in &lesions[..6] {
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
        }
        receive(&mut out, &mut got, 6).await;
        // Promote B while part two streams.
        for (k, l) in lesions[6..12].iter().enumerate() {
            if k == 2 {
                let e = registry.promote("default", &ens_b, Some(&ens_a), "test: B is better").unwrap().unwrap();
                bus.send(topics::MODELS, &e.model_version, e.encode()).await.unwrap();
            }
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // Each worker switches at its next input after loading B, so wait for the loads.
        wait_for_log(&inference_log, &format!("loaded {cnn_b}"));
        wait_for_log(&ensemble_log, &format!("loaded {ens_b}"));
        // Part three, under B.
        for l in &lesions[12..] {
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
        }
        receive(&mut out, &mut got, lesions.len()).await;
        // Anything more would be a duplicate.
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(3), out.recv()).await {
            panic!("a prediction beyond one per lesion: {:?}", r.map(|r| r.key));
        }
        for w in workers {
            w.interrupt();
        }
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_INFERENCE, topics::DEAD_ENSEMBLE]).unwrap();
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(2), dead.recv()).await {
            panic!("a dead letter: {}", String::from_utf8_lossy(&r.unwrap().payload));
        }
        got
    });

    let by_case: BTreeMap<&str, &PredictionV1> = predictions.iter().map(|p| (p.case_id.as_str(), p)).collect();
    assert_eq!(by_case.len(), lesions.len(), "every lesion once");
    let pair = |p: &PredictionV1| (p.model_version.clone(), p.cnn_model_version.clone());
    let (a, b) = ((ens_a.clone(), cnn_a.clone()), (ens_b.clone(), cnn_b.clone()));
    for (i, l) in lesions.iter().enumerate() {
        let p = by_case[l.case_id.as_str()];
        let made_by = pair(p);
        assert!(made_by == a || made_by == b, "{}: a mixed pair {made_by:?}", l.case_id);
        if i < 6 {
            assert_eq!(made_by, a, "{} came before the promotion", l.case_id);
        }
        if i >= 12 {
            assert_eq!(made_by, b, "{} came after both workers loaded B", l.case_id);
        }
    }
    let switched = lesions[6..12].iter().filter(|l| pair(by_case[l.case_id.as_str()]) == b).count();
    println!("part two: {switched} of 6 lesions predicted by B");
}
