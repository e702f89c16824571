//! The bus on a real Kafka-protocol broker (tansu, see scripts/install-tansu.sh).

use renal_bus::{run_stage, Backoff, Bus, Consumer, KafkaBus, KafkaConfig, Outcome, Output, Record, StageConfig};
use renal_e2e::Broker;
use renal_messages::{topics, DeadLetterV1, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn drain<C: Consumer>(c: &mut C, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv()).await.expect("record within 30 s").unwrap();
        out.push(r);
    }
    out
}

#[test]
fn commits_offset_after_delivery_and_a_new_member_resumes_there() {
    let broker = Broker::start();
    runtime().block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "test-resume")).unwrap();
        bus.ensure_topics(&[topics::CASES]).await.unwrap();
        bus.ensure_topics(&[topics::CASES]).await.unwrap(); // idempotent
        for n in 0..30u32 {
            let key = format!("case-{}", n % 10);
            let d = bus.send(topics::CASES, &key, n.to_string().into_bytes()).await.unwrap();
            assert!(d.offset >= 0);
        }
        let mut first = bus.consumer("resume-group", &[topics::CASES]).unwrap();
        let got = drain(&mut first, 15).await;
        for r in &got {
            first.store(r).unwrap();
        }
        first.commit().unwrap();
        drop(first);
        let mut second = bus.consumer("resume-group", &[topics::CASES]).unwrap();
        let rest = drain(&mut second, 15).await;
        // Nothing more is pending for the group.
        assert!(tokio::time::timeout(Duration::from_secs(3), second.recv()).await.is_err(), "duplicate delivery");
        let all: Vec<&Record> = got.iter().chain(&rest).collect();
        let payloads: BTreeSet<u32> =
            all.iter().map(|r| String::from_utf8_lossy(&r.payload).parse().unwrap()).collect();
        assert_eq!(payloads, (0..30).collect(), "every message exactly once across the restart");
        // Per key, payloads arrive in send order (one key, one partition).
        let mut by_key: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for r in &all {
            by_key.entry(&r.key).or_default().push(String::from_utf8_lossy(&r.payload).parse().unwrap());
        }
        for (k, v) in by_key {
            let mut sorted = v.clone();
            sorted.sort();
            assert_eq!(v, sorted, "order of key {k}");
        }
    });
}

#[test]
fn stage_loop_delivers_outputs_and_dead_letters_over_kafka() {
    let broker = Broker::start();
    runtime().block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "test-stage")).unwrap();
        bus.ensure_topics(&[topics::LABELS, topics::PREDICTIONS, topics::DEAD_INGEST]).await.unwrap();
        for key in ["a", "b", "bad", "c"] {
            bus.send(topics::LABELS, key, key.as_bytes().to_vec()).await.unwrap();
        }
        let config = StageConfig {
            stage: "ingest",
            group: "stage-test".into(),
            inputs: vec![topics::LABELS],
            backoff: Backoff { initial_ms: 10, max_ms: 100 },
            commit_interval_ms: 0,
        };
        let watcher = bus.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let loop_bus = bus.clone();
        let stage = tokio::spawn(async move {
            run_stage(
                loop_bus,
                config,
                |r: Record| async move {
                    if r.key == "bad" {
                        Outcome::Reject { code: "malformed".into(), reason: "not a label".into() }
                    } else {
                        Outcome::Done(vec![Output {
                            topic: topics::PREDICTIONS,
                            key: r.key.clone(),
                            payload: r.payload,
                        }])
                    }
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
        });
        let mut outputs = watcher.consumer("check-out", &[topics::PREDICTIONS]).unwrap();
        let mut dead = watcher.consumer("check-dead", &[topics::DEAD_INGEST]).unwrap();
        let out = drain(&mut outputs, 3).await;
        let letters = drain(&mut dead, 1).await;
        stop_tx.send(()).unwrap();
        let stats = stage.await.unwrap().unwrap();
        assert_eq!((stats.inputs, stats.outputs, stats.dead_letters), (4, 3, 1));
        let keys: BTreeSet<String> = out.into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["a", "b", "c"].iter().map(|s| s.to_string()).collect());
        let letter = DeadLetterV1::decode(&letters[0].payload).unwrap();
        assert_eq!(letter.reason_code, "malformed");
        assert_eq!(letter.source.topic.as_deref(), Some(topics::LABELS.name));
        // The group committed past everything: a new member of it finds nothing.
        let mut again = bus.consumer("stage-test", &[topics::LABELS]).unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(8), again.recv()).await.is_err(), "inputs redelivered");
    });
}
