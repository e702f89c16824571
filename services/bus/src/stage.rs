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

impl StageConfig {
    /// A worker's usual delivery settings: retries from 200 ms, doubling up to 10 s; offsets
    /// committed at least every second.
    pub fn new(stage: &'static str, group: &str, inputs: Vec<Topic>) -> StageConfig {
        StageConfig {
            stage,
            group: group.into(),
            inputs,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            commit_interval_ms: 1_000,
        }
    }
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
    let one = Batching { max_records: 1, max_wait_ms: 0 };
    run_batched_stage(
        bus,
        cfg,
        one,
        move |mut batch: Vec<Record>| {
            let fut = process(batch.pop().expect("batches are never empty"));
            async move { vec![fut.await] }
        },
        shutdown,
    )
    .await
}

/// How a batched stage gathers inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Largest batch.
    pub max_records: usize,
    /// After the first record of a batch arrives, wait at most this long for more, ms.
    pub max_wait_ms: u64,
}

/// [`run_stage`] over batches: gather up to `batching.max_records` records (waiting at most
/// `max_wait_ms` after the first), hand them to `process` together, which answers one
/// [`Outcome`] per record in the same order. Done and rejected records are delivered; records
/// answered with `Retry` are processed again, as a batch of their own, after a back-off. Offsets
/// are stored once every record of the batch is delivered, in arrival order.
pub async fn run_batched_stage<B, F, Fut>(
    bus: B,
    cfg: StageConfig,
    batching: Batching,
    mut process: F,
    shutdown: impl Future<Output = ()>,
) -> Result<StageStats, BusError>
where
    B: Bus,
    F: FnMut(Vec<Record>) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
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
        let first = tokio::select! {
            _ = &mut shutdown => break,
            r = consumer.recv() => r?,
            _ = idle_commit, if uncommitted => {
                consumer.commit()?;
                uncommitted = false;
                last_commit = Instant::now();
                continue;
            }
        };
        let mut batch = vec![first];
        if batching.max_records > 1 {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(batching.max_wait_ms);
            while batch.len() < batching.max_records {
                tokio::select! {
                    r = consumer.recv() => batch.push(r?),
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut delay = cfg.retry_initial_ms;
        while !pending.is_empty() {
            let outcomes = process(pending.iter().map(|&i| batch[i].clone()).collect()).await;
            if outcomes.len() != pending.len() {
                return Err(BusError::Fatal(format!(
                    "stage {} answered {} outcomes for {} records",
                    cfg.stage,
                    outcomes.len(),
                    pending.len()
                )));
            }
            let mut again = Vec::new();
            for (&i, outcome) in pending.iter().zip(outcomes) {
                let record = &batch[i];
                match outcome {
                    Outcome::Done(outputs) => {
                        for out in &outputs {
                            send_with_retry(&bus, out, &cfg, &mut stats).await?;
                            stats.outputs += 1;
                        }
                    }
                    Outcome::Reject { code, reason } => {
                        let letter = dead_letter(cfg.stage, record, code, reason);
                        let out = Output { topic: dead_topic, key: record.key.clone(), payload: letter.encode() };
                        send_with_retry(&bus, &out, &cfg, &mut stats).await?;
                        stats.dead_letters += 1;
                    }
                    Outcome::Retry(_) => again.push(i),
                }
            }
            pending = again;
            if !pending.is_empty() {
                stats.retries += 1;
                tokio::select! {
                    _ = &mut shutdown => {
                        // Store only the delivered prefix: a later record's offset must not be
                        // stored past an undelivered earlier one.
                        for record in batch.iter().take(pending[0]) {
                            consumer.store(record)?;
                        }
                        consumer.commit()?;
                        return Ok(stats);
                    }
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                }
                delay = (delay * 2).min(cfg.retry_max_ms);
            }
        }
        for record in &batch {
            consumer.store(record)?;
            stats.inputs += 1;
        }
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
    fn batches_gather_waiting_records_and_retry_only_the_failed_ones() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let bus = InProcessBus::new(1);
            for key in ["a", "b", "flaky", "c", "d"] {
                bus.send(topics::LABELS, key, key.as_bytes().to_vec()).await.unwrap();
            }
            let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
            let seen = batches.clone();
            let watcher = bus.clone();
            let stop = async move {
                while watcher.records(topics::CASES).len() < 5 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            let stats = run_batched_stage(
                bus.clone(),
                config(),
                Batching { max_records: 3, max_wait_ms: 50 },
                move |records: Vec<Record>| {
                    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
                    let first_try = !seen.lock().unwrap().iter().flatten().any(|k| k == "flaky");
                    seen.lock().unwrap().push(keys.clone());
                    async move {
                        keys.iter()
                            .map(|k| {
                                if k == "flaky" && first_try {
                                    Outcome::Retry("busy".into())
                                } else {
                                    Outcome::Done(vec![Output {
                                        topic: topics::CASES,
                                        key: k.clone(),
                                        payload: vec![],
                                    }])
                                }
                            })
                            .collect()
                    }
                },
                stop,
            )
            .await
            .unwrap();
            let got = batches.lock().unwrap().clone();
            assert_eq!(got, vec![vec!["a", "b", "flaky"], vec!["flaky"], vec!["c", "d"]]);
            assert_eq!(stats, StageStats { inputs: 5, outputs: 5, dead_letters: 0, retries: 1 });
            assert_eq!(bus.committed("ingest", topics::LABELS).iter().sum::<i64>(), 5);
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
