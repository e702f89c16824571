//! The at-least-once loop shared by every stage.

use crate::{Bus, BusError, Consumer, Record};
use renal_messages::civil::now_rfc3339;
use renal_messages::topics::{self, Topic};
use renal_messages::{DeadLetterSource, DeadLetterV1, Message};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::{Duration, Instant};

/// One message a processed input causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Where it goes.
    pub topic: Topic,
    /// Its key (the case id), so a redelivery overwrites rather than duplicates downstream.
    pub key: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
}

/// What processing one input came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success: send these, then move past the input.
    Done(Vec<Output>),
    /// The same input will always fail: dead-letter it with a reason, then move past it.
    Reject {
        /// Machine-readable reason (snake_case).
        code: String,
        /// Human-readable reason; must not contain patient identifiers.
        reason: String,
    },
    /// A transient failure: back off and process the same input again.
    Retry(String),
}

/// Settings of a stage loop.
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// Stage name (a producer in the topic graph).
    pub stage: &'static str,
    /// Consumer group.
    pub group: String,
    /// Input topics.
    pub inputs: Vec<Topic>,
    /// First retry delay, ms; doubles per attempt.
    pub retry_initial_ms: u64,
    /// Largest retry delay, ms.
    pub retry_max_ms: u64,
    /// Commit stored offsets at least this often, ms (and always at shutdown).
    pub commit_interval_ms: u64,
}

/// Counts of what the loop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Inputs moved past (done or dead-lettered).
    pub inputs: u64,
    /// Outputs acknowledged.
    pub outputs: u64,
    /// Dead letters acknowledged.
    pub dead_letters: u64,
    /// Retries after transient failures.
    pub retries: u64,
}

fn dead_letter(stage: &str, record: &Record, code: String, reason: String) -> DeadLetterV1 {
    DeadLetterV1 {
        version: 1,
        stage: stage.into(),
        reason_code: code,
        reason,
        source: DeadLetterSource {
            topic: Some(record.topic.clone()),
            partition: Some(record.partition),
            offset: Some(record.offset),
            key: record.key.clone(),
        },
        input_sha256: renal_messages::lower_hex(&Sha256::digest(&record.payload)),
        at: now_rfc3339(),
    }
}

async fn send_with_retry<B: Bus>(
    bus: &B,
    out: &Output,
    cfg: &StageConfig,
    stats: &mut StageStats,
) -> Result<(), BusError> {
    let mut delay = cfg.retry_initial_ms;
    loop {
        match bus.send(out.topic, &out.key, out.payload.clone()).await {
            Ok(_) => return Ok(()),
            Err(BusError::Transient(_)) => {
                stats.retries += 1;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                delay = (delay * 2).min(cfg.retry_max_ms);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Consume `cfg.inputs`, hand each record to `process`, and deliver what it decides, until
/// `shutdown` resolves. An input's offset is stored only after all its outputs (or its dead
/// letter) are acknowledged, so a crash at any point redelivers rather than loses it.
pub async fn run_stage<B, F, Fut>(
    bus: B,
    cfg: StageConfig,
    mut process: F,
    shutdown: impl Future<Output = ()>,
) -> Result<StageStats, BusError>
where
    B: Bus,
    F: FnMut(Record) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let dead_topic = topics::dead_letters_of(cfg.stage)
        .ok_or_else(|| BusError::Fatal(format!("stage {} has no dead-letter topic", cfg.stage)))?;
    let mut consumer = bus.consumer(&cfg.group, &cfg.inputs)?;
    let mut stats = StageStats::default();
    let mut last_commit = Instant::now();
    // Offsets stored since the last commit: committed on the interval even when no input
    // arrives, so a quiet topic does not leave the last inputs uncommitted.
    let mut uncommitted = false;
    tokio::pin!(shutdown);
    loop {
        let idle_commit = tokio::time::sleep(Duration::from_millis(cfg.commit_interval_ms.max(1)));
        let record = tokio::select! {
            _ = &mut shutdown => break,
            r = consumer.recv() => r?,
            _ = idle_commit, if uncommitted => {
                consumer.commit()?;
                uncommitted = false;
                last_commit = Instant::now();
                continue;
            }
        };
        let mut delay = cfg.retry_initial_ms;
        loop {
            match process(record.clone()).await {
                Outcome::Done(outputs) => {
                    for out in &outputs {
                        send_with_retry(&bus, out, &cfg, &mut stats).await?;
                        stats.outputs += 1;
                    }
                    break;
                }
                Outcome::Reject { code, reason } => {
                    let letter = dead_letter(cfg.stage, &record, code, reason);
                    let out = Output { topic: dead_topic, key: record.key.clone(), payload: letter.encode() };
                    send_with_retry(&bus, &out, &cfg, &mut stats).await?;
                    stats.dead_letters += 1;
                    break;
                }
                Outcome::Retry(_) => {
                    stats.retries += 1;
                    tokio::select! {
                        _ = &mut shutdown => {
                            consumer.commit()?;
                            return Ok(stats);
                        }
                        _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    }
                    delay = (delay * 2).min(cfg.retry_max_ms);
                }
            }
        }
        consumer.store(&record)?;
        stats.inputs += 1;
        uncommitted = true;
        if last_commit.elapsed() >= Duration::from_millis(cfg.commit_interval_ms) {
            consumer.commit()?;
            uncommitted = false;
            last_commit = Instant::now();
        }
    }
    consumer.commit()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcessBus;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    fn config() -> StageConfig {
        StageConfig {
            stage: "ingest",
            group: "ingest".into(),
            inputs: vec![topics::LABELS],
            retry_initial_ms: 1,
            retry_max_ms: 4,
            commit_interval_ms: 0,
        }
    }

    #[test]
    fn outputs_dead_letters_retries_and_commits() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let bus = InProcessBus::new(2);
            for key in ["ok-1", "bad", "flaky", "ok-2"] {
                bus.send(topics::LABELS, key, key.as_bytes().to_vec()).await.unwrap();
            }
            let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
            let seen = attempts.clone();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let watcher = bus.clone();
            let stopper = tokio::spawn(async move {
                // Stop once both outputs and the dead letter are on the bus.
                loop {
                    let done =
                        watcher.records(topics::CASES).len() == 3 && watcher.records(topics::DEAD_INGEST).len() == 1;
                    if done {
                        let _ = stop_tx.send(());
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
            let stats = run_stage(
                bus.clone(),
                config(),
                move |r: Record| {
                    let seen = seen.clone();
                    async move {
                        let n = {
                            let mut m = seen.lock().unwrap();
                            let n = m.entry(r.key.clone()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        match r.key.as_str() {
                            "bad" => Outcome::Reject { code: "unreadable".into(), reason: "cannot parse".into() },
                            "flaky" if n < 3 => Outcome::Retry("store busy".into()),
                            _ => Outcome::Done(vec![Output {
                                topic: topics::CASES,
                                key: r.key.clone(),
                                payload: r.payload.clone(),
                            }]),
                        }
                    }
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
            .unwrap();
            stopper.await.unwrap();
            assert_eq!(stats, StageStats { inputs: 4, outputs: 3, dead_letters: 1, retries: 2 });
            assert_eq!(attempts.lock().unwrap()["flaky"], 3);
            let mut keys: Vec<String> = bus.records(topics::CASES).into_iter().map(|r| r.key).collect();
            keys.sort();
            assert_eq!(keys, vec!["flaky", "ok-1", "ok-2"]);
            let letter = DeadLetterV1::decode(&bus.records(topics::DEAD_INGEST)[0].payload).unwrap();
            assert_eq!((letter.stage.as_str(), letter.reason_code.as_str()), ("ingest", "unreadable"));
            assert_eq!(letter.source.key, "bad");
            assert_eq!(letter.input_sha256, renal_messages::lower_hex(&Sha256::digest(b"bad")));
            // Everything consumed is committed: a restarted stage has nothing to redo.
            let committed: i64 = bus.committed("ingest", topics::LABELS).iter().sum();
            assert_eq!(committed, 4);
        });
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && &t[4..5] == "-" && &t[10..11] == "T", "{t}");
        assert!(t.as_str() > "2025-01-01T00:00:00Z");
    }
}
