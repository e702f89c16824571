//! `renal replay` on a real broker (tansu): a dead letter re-driven after its cause is fixed.
//!
//! The ensemble worker gets a score for a lesion whose lesion message has not arrived (as when
//! preprocess is held up) and, after its wait, dead-letters it as `unknown_lesion`; a half score
//! that nothing completes becomes a `missing_modality` letter, which carries no single input.
//! `renal replay list` counts both and says which can be re-driven. The cause is fixed (the
//! lesion message arrives); `renal replay run --id fix-1` sends the score again, and the lesion
//! reaches `renal.predictions`. Run again under the same id, it sends nothing, and no second
//! prediction appears.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{fitted_ensemble, renal, start_worker, Broker, Running};
use renal_ensemble::bundle;
use renal_messages::{
    topics, BlobRef, Clinical, DeadLetterV1, LesionQc, LesionV1, Message, PredictionV1, Provenance, ScoresV1, Sex,
};
use std::time::Duration;

const CNN: &str = "cnn-0123456789ab";

fn provenance() -> Provenance {
    Provenance { code_version: "t".into(), produced_at: "2026-12-07T00:00:00Z".into(), input_sha256: "0".repeat(64) }
}

fn lesion(case_id: &str) -> LesionV1 {
    let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
    LesionV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: "MAY".into(),
        patient_pseudonym: "ab12".into(),
        clinical: Clinical { age_years: Some(64), sex: Some(Sex::F) },
        tumour_volume_ml: 30.0,
        composites: [blob.clone(), blob.clone()],
        volumes: [blob.clone(), blob],
        qc: LesionQc { mask_voxels: [10, 10], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
        other_readers: Vec::new(),
        provenance: provenance(),
    }
}

fn scores(case_id: &str) -> ScoresV1 {
    ScoresV1 {
        version: 1,
        case_id: case_id.into(),
        revision: 1,
        site: "MAY".into(),
        t2_probability: 0.8,
        t1c_probability: 0.7,
        embeddings: [vec![0.0; 16], vec![0.0; 16]],
        model_version: CNN.into(),
        provenance: provenance(),
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = renal(args);
    assert!(out.status.success(), "renal {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_dead_letter_replayed_after_its_fix_reaches_predictions_once() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let registry = root.join("models");
    let saved = bundle::save(&registry, fitted_ensemble(CNN), "test", "2026-12-07T00:00:00Z").unwrap();
    let config = root.join("ensemble.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n\n[ensemble]\nregistry = \"{}\"\nmodel_version = \"{}\"\nstate_dir = \"{}\"\nlesion_wait_ms = 2000\nmodality_wait_ms = 2000\n",
            broker.bootstrap,
            registry.display(),
            saved.version,
            root.join("state").display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let log = root.join("ensemble.log");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE])
            .await
            .unwrap();
        let mut predictions = bus.consumer("e2e-predictions", &[topics::PREDICTIONS]).unwrap();
        let mut dead = bus.consumer("e2e-dead", &[topics::DEAD_ENSEMBLE]).unwrap();
        let worker = Running::new(start_worker("ensemble", &config, &log));
        bus.send(topics::SCORES, "MAY-0001", scores("MAY-0001").encode()).await.unwrap();
        let mut half = serde_json::to_value(scores("MAY-0002")).unwrap();
        half.as_object_mut().unwrap().remove("t1c_probability");
        bus.send(topics::SCORES, "MAY-0002", serde_json::to_vec(&half).unwrap()).await.unwrap();
        let mut codes = std::collections::BTreeMap::new();
        while codes.len() < 2 {
            let r = tokio::time::timeout(Duration::from_secs(60), dead.recv())
                .await
                .unwrap_or_else(|_| panic!("dead letters {codes:?}\n{}", renal_e2e::log_tail(&log, 30)))
                .unwrap();
            let l = DeadLetterV1::decode(&r.payload).unwrap();
            codes.insert(l.source.key.clone(), (l.reason_code.clone(), l.input_base64.is_some()));
        }
        assert_eq!(codes["MAY-0001"], ("unknown_lesion".to_string(), true), "a rejected message carries itself");
        assert_eq!(codes["MAY-0002"], ("missing_modality".to_string(), false), "a join carries no single input");

        let listed = stdout_of(&["replay", "list", "--config", config_arg, "--verbose"]);
        let row = |reason: &str| -> Vec<String> {
            listed
                .lines()
                .find(|l| l.starts_with("ensemble") && l.contains(reason))
                .unwrap_or_else(|| panic!("no {reason} row:\n{listed}"))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(row("unknown_lesion")[2..], ["1", "1"], "{listed}");
        assert_eq!(row("missing_modality")[2..], ["1", "0"], "{listed}");
        assert!(listed.contains("key=MAY-0001") && listed.contains("replayable to renal.scores"), "{listed}");

        // Nothing narrows the selection: refused.
        let unnarrowed = renal(&["replay", "run", "--config", config_arg, "--id", "fix-1"]);
        assert!(!unnarrowed.status.success());
        assert!(String::from_utf8_lossy(&unnarrowed.stderr).contains("--stage, --reason or --key"));

        // The fix: the lesion arrives. Then the replay.
        bus.send(topics::LESIONS, "MAY-0001", lesion("MAY-0001").encode()).await.unwrap();
        let args = ["replay", "run", "--config", config_arg, "--id", "fix-1", "--stage", "ensemble"];
        let first = stdout_of(&args);
        assert!(first.contains("2 letters selected, 1 replayable, 1 re-driven"), "{first}");
        let r = tokio::time::timeout(Duration::from_secs(60), predictions.recv())
            .await
            .unwrap_or_else(|_| panic!("no prediction after the replay\n{}", renal_e2e::log_tail(&log, 30)))
            .unwrap();
        let p = PredictionV1::decode(&r.payload).unwrap();
        assert_eq!(p.case_id, "MAY-0001");
        let want = saved.content.call(0.8, 0.7, &[64.0, 0.0, 30.0]);
        assert!((p.probability - want.probability).abs() < 1e-12, "the lesion's own clinical values");

        // The same id again: nothing sent, and no second prediction.
        let second = stdout_of(&args);
        assert!(
            second.contains("1 replayable, 0 re-driven") || second.contains("0 replayable, 0 re-driven"),
            "{second}"
        );
        assert!(second.contains("1 skipped: re-driven under this replay id already"), "{second}");
        let again = tokio::time::timeout(Duration::from_secs(5), predictions.recv()).await;
        assert!(again.is_err(), "a second prediction after replaying fix-1 twice");
        worker.interrupt();
    });
}
