//! The retraining loop on a real broker (tansu): `renal worker trainer` beside the inference
//! and ensemble workers, all three on Kafka, none restarted.
//!
//! The champion comes from `renal run` on a 120-lesion synthetic cohort whose labels, when it
//! was trained, were mostly benign (a surveillance clinic's mix; `renal_e2e::case_mix_shift`, as
//! in `recalibration.rs`). The workers serve `promoted`; the trainer is told to retrain, `auto`,
//! once it holds as many labels as the test will send. Then:
//! 1. part one streams to `renal.lesions`: every lesion whose label comes later, and some
//!    others; the workers predict them with the champion, the trainer keeps them;
//! 2. labels arrive: the champion's own by `renal labels import --config` (to `renal.labels`),
//!    the later ones (mostly malignant: referrals) as a file in the trainer's labels folder;
//! 3. the trainer's count is reached: it predicts the labelled lesions the champion never saw,
//!    finds the calibration alert's rule firing, refits the calibrator alone, judges both on
//!    half of those lesions, registers and promotes the challenger, and sends the registry's
//!    events to `renal.models`; meanwhile part two streams, a lesion every 400 ms;
//! 4. once the ensemble worker has loaded the challenger, part three streams.
//!
//! Every lesion is predicted exactly once; every prediction names the champion or the
//! challenger (with the champion's networks: only the calibrator changed); part one names the
//! champion, part three the challenger; nothing is dead-lettered; `renal.models` carries the
//! challenger's `trained` and `promoted` events.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{
    case_mix_shift, free_port, receive_predictions as receive, renal_ok as ok, start_worker, Broker, Running,
};
use renal_messages::{topics, LesionV1, Message, ModelEventV1, PredictionV1};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn log_says(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().contains(needle)
}

#[test]
fn the_trainer_worker_promotes_a_challenger_and_the_workers_switch_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let shift = case_mix_shift(root);
    let (run, first, later) = (&shift.run, &shift.first, &shift.later);
    let champion = shift.promoted();
    let lesions: Vec<LesionV1> = std::fs::read_to_string(run.join("lesions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let later_ids = shift.ids(later);
    let (labelled_later, others): (Vec<&LesionV1>, Vec<&LesionV1>) =
        lesions.iter().partition(|l| later_ids.contains(&l.case_id));
    assert!(labelled_later.len() >= 30 && others.len() >= 50, "{} {}", labelled_later.len(), others.len());
    let part_one: Vec<&LesionV1> = labelled_later.iter().copied().chain(others[..20].iter().copied()).collect();
    let (reserve, part_three) = others[20..].split_at(others.len() - 20 - 15);

    let broker = Broker::start();
    let kafka = format!("[kafka]\nbootstrap_servers = \"{}\"\n\n", broker.bootstrap);
    let write = |name: &str, text: String| {
        let path = root.join(name);
        std::fs::write(&path, format!("{kafka}{text}")).unwrap();
        path
    };
    let (models, blobs) = (run.join("models"), run.join("blobs"));
    let inference = write(
        "inference.toml",
        format!(
            "[inference]\nblob_store = \"{}\"\nregistry = \"{}\"\nmodel_version = \"promoted\"\ndevice = \"cpu\"\ncpu_threads = 1\nmax_batch = 4\nmax_wait_ms = 50\n",
            blobs.display(),
            models.display()
        ),
    );
    let ensemble = write(
        "ensemble.toml",
        format!(
            "[ensemble]\nregistry = \"{}\"\nmodel_version = \"promoted\"\nstate_dir = \"{}\"\n",
            models.display(),
            root.join("ensemble-state").display()
        ),
    );
    let drop = root.join("labels-drop");
    std::fs::create_dir_all(&drop).unwrap();
    let wanted = first.len() + later.len();
    let trainer = write(
        "trainer.toml",
        format!(
            "[trainer]\nregistry = \"{}\"\nstore = \"{}\"\nblob_store = \"{}\"\nstate_dir = \"{}\"\nlabels_dir = \"{}\"\nalerts_addr = \"127.0.0.1:{}\"\ntick_s = 1\ndevice = \"cpu\"\non_labels = \"auto\"\n\n[trainer.triggers]\nnew_labels = {wanted}\nevery_s = 0\n\n[trainer.cnn]\ninput_px = 32\nepochs = 2\n",
            models.display(),
            run.join("store").display(),
            blobs.display(),
            root.join("trainer-state").display(),
            drop.display(),
            free_port()
        ),
    );
    let logs = [root.join("inference.log"), root.join("ensemble.log"), root.join("trainer.log")];

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (predictions, events, part_two) = rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        let all = [
            topics::LESIONS,
            topics::SCORES,
            topics::PREDICTIONS,
            topics::LABELS,
            topics::MODELS,
            topics::DEAD_INFERENCE,
            topics::DEAD_ENSEMBLE,
            topics::DEAD_TRAINER,
            topics::DEAD_LABELS,
        ];
        bus.ensure_topics(&all).await.unwrap();
        let mut out = bus.consumer("e2e-predictions", &[topics::PREDICTIONS]).unwrap();
        let workers = [
            Running::new(start_worker("inference", &inference, &logs[0])),
            Running::new(start_worker("ensemble", &ensemble, &logs[1])),
            Running::new(start_worker("trainer", &trainer, &logs[2])),
        ];
        let send = |l: &LesionV1| {
            let (bus, l) = (bus.clone(), l.clone());
            async move { bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap() }
        };
        let mut got = Vec::new();
        for l in &part_one {
            send(l).await;
        }
        receive(&mut out, &mut got, part_one.len()).await;

        // Labels: the champion's by the command, the later ones through the drop folder.
        let first_file = root.join("first.csv");
        std::fs::write(&first_file, shift.csv(first)).unwrap();
        let said = ok(&["labels", "import", first_file.to_str().unwrap(), "--config", trainer.to_str().unwrap()]);
        assert!(said.contains(&format!("{} sent to renal.labels", first.len())), "{said}");
        std::fs::write(drop.join("later.csv"), shift.csv(later)).unwrap();

        // Part two streams until the ensemble worker has loaded a challenger.
        let start = Instant::now();
        let mut part_two = 0;
        while !log_says(&logs[1], "ensemble: loaded ens-") {
            assert!(
                start.elapsed() < Duration::from_secs(420),
                "no challenger loaded; trainer log:\n{}",
                renal_e2e::log_tail(&logs[2], 40)
            );
            if part_two < reserve.len() {
                send(reserve[part_two]).await;
                part_two += 1;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let sent = part_one.len() + part_two;
        receive(&mut out, &mut got, sent).await;
        for l in part_three {
            send(l).await;
        }
        receive(&mut out, &mut got, sent + part_three.len()).await;
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(3), out.recv()).await {
            panic!("a prediction beyond one per lesion: {:?}", r.map(|r| r.key));
        }
        for w in workers {
            w.interrupt();
        }
        let mut dead = bus
            .consumer(
                "e2e-dead",
                &[topics::DEAD_INFERENCE, topics::DEAD_ENSEMBLE, topics::DEAD_TRAINER, topics::DEAD_LABELS],
            )
            .unwrap();
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(2), dead.recv()).await {
            panic!("a dead letter: {}", String::from_utf8_lossy(&r.unwrap().payload));
        }
        let mut models_topic = bus.consumer("e2e-models", &[topics::MODELS]).unwrap();
        let mut events = Vec::new();
        while let Ok(r) = tokio::time::timeout(Duration::from_secs(3), models_topic.recv()).await {
            events.push(ModelEventV1::decode(&r.unwrap().payload).unwrap());
        }
        (got, events, part_two)
    });

    let trainer_log = std::fs::read_to_string(&logs[2]).unwrap();
    for line in trainer_log.lines().filter(|l| ["calibration", "retrain (", "PROMOTED"].iter().any(|k| l.contains(k))) {
        println!("trainer: {line}");
    }
    assert!(trainer_log.contains("calibration alert, recalibration only"), "{trainer_log}");
    assert!(trainer_log.contains("labels file later.csv"), "{trainer_log}");
    let challenger = shift.promoted();
    assert_ne!(challenger, champion, "{trainer_log}");
    let entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join(format!("entries/{challenger}.json"))).unwrap())
            .unwrap();
    assert_eq!(entry["retrain"], "recalibrate");
    assert_eq!(entry["champion"], champion.as_str());
    let cnn = entry["cnn_version"].as_str().unwrap().to_string();
    let said: Vec<(&str, Option<&str>)> = events
        .iter()
        .filter(|e| e.model_version == challenger)
        .map(|e| (e.event.as_str(), e.deployment.as_deref()))
        .collect();
    assert_eq!(said, [("trained", None), ("promoted", Some("default"))], "renal.models: {events:?}");

    let by_case: BTreeMap<&str, &PredictionV1> = predictions.iter().map(|p| (p.case_id.as_str(), p)).collect();
    assert_eq!(by_case.len(), predictions.len(), "a lesion predicted twice");
    let streamed: Vec<&LesionV1> =
        part_one.iter().copied().chain(reserve[..part_two].iter().copied()).chain(part_three.iter().copied()).collect();
    assert_eq!(by_case.len(), streamed.len(), "every lesion once");
    for l in &streamed {
        let p = by_case.get(l.case_id.as_str()).unwrap_or_else(|| panic!("{} was not predicted", l.case_id));
        assert_eq!(p.cnn_model_version, cnn, "the challenger keeps the champion's networks");
        assert!(p.model_version == champion || p.model_version == challenger, "{}: {}", l.case_id, p.model_version);
    }
    for l in &part_one {
        assert_eq!(by_case[l.case_id.as_str()].model_version, champion, "{} came before the labels", l.case_id);
    }
    for l in part_three {
        assert_eq!(by_case[l.case_id.as_str()].model_version, challenger, "{} came after the switch", l.case_id);
    }
    let switched =
        reserve[..part_two].iter().filter(|l| by_case[l.case_id.as_str()].model_version == challenger).count();
    println!("part two: {part_two} lesions streamed while the trainer worked, {switched} predicted by the challenger");
}
