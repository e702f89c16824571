//! The at-least-once loop shared by every stage.

use crate::delivery::{dead_letter, send_with_retry, with_input, Backoff};
use crate::events::{BusFailed, MessageDone, MessageReceived, MessageRejected, MessageRetried, StageStarted};
use crate::{Bus, BusError, Consumer, Record};
use renal_messages::topics::{self, Topic};
use renal_messages::Message;
use renal_telemetry::emit;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

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
    /// Delays between retries of an input and of a send (a failed read pauses a fixed
    /// 50 ms instead: `READ_ERROR_PAUSE`).
    pub backoff: Backoff,
    /// Commit stored offsets at least this often, ms (and always at shutdown).
    pub commit_interval_ms: u64,
}

impl StageConfig {
    /// A worker's usual delivery settings: retries from 200 ms, doubling up to 10 s; offsets
    /// committed at least every second.
    pub fn new(stage: &'static str, group: &str, inputs: Vec<Topic>) -> StageConfig {
        StageConfig { stage, group: group.into(), inputs, backoff: Backoff::WORKER, commit_interval_ms: 1_000 }
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
    /// Retries after transient failures (of processing, sending, reading or committing).
    pub retries: u64,
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

/// The pause after a failed read. Short and fixed, not the stage's growing back-off: a read error
/// is an event the client queued (librdkafka queues one per failed reconnect while the broker is
/// away and paces its reconnects itself), and a growing delay per queued event would leave the
/// stage draining stale errors for minutes after the broker is back.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Offsets stored since the last commit, and when that was.
struct Commits {
    interval: Duration,
    last: Instant,
    uncommitted: bool,
}

impl Commits {
    /// Commit now. A transient failure (the broker is away) keeps the offsets for the next try:
    /// until then a restart would redeliver them, which at-least-once allows.
    fn commit<C: Consumer>(&mut self, consumer: &mut C, stats: &mut StageStats, stage: &str) -> Result<(), BusError> {
        match consumer.commit() {
            Ok(()) => self.uncommitted = false,
            Err(BusError::Transient(why)) => {
                stats.retries += 1;
                emit(BusFailed { stage, operation: "commit", count: 1, error: Some(&why) });
            }
            Err(e) => return Err(e),
        }
        self.last = Instant::now();
        Ok(())
    }
}

/// [`run_stage`] over batches: gather up to `batching.max_records` records (waiting at most
/// `max_wait_ms` after the first), hand them to `process` together, which answers one
/// [`Outcome`] per record in the same order. Done and rejected records are delivered; records
/// answered with `Retry` are processed again, as a batch of their own, after a back-off. Offsets
/// are stored once every record of the batch is delivered, in arrival order.
///
/// The loop outlasts an unreachable broker: sends that fail transiently are retried with the
/// stage's back-off, reads after a short fixed pause, commits at the next commit. Only failures
/// that retrying cannot fix end it.
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
    let metrics = renal_telemetry::stage_metrics();
    let input_names: Vec<&str> = cfg.inputs.iter().map(|t| t.name).collect();
    emit(StageStarted { stage: cfg.stage, inputs: &input_names });
    let mut commits =
        Commits { interval: Duration::from_millis(cfg.commit_interval_ms), last: Instant::now(), uncommitted: false };
    tokio::pin!(shutdown);
    loop {
        // Offsets stored since the last commit are committed on the interval even when no input
        // arrives, so a quiet topic does not leave the last inputs uncommitted.
        let idle_commit = tokio::time::sleep(commits.interval.max(Duration::from_millis(1)));
        let first = tokio::select! {
            _ = &mut shutdown => break,
            r = consumer.recv() => r,
            _ = idle_commit, if commits.uncommitted => {
                commits.commit(&mut consumer, &mut stats, cfg.stage)?;
                continue;
            }
        };
        let first = match first {
            Ok(r) => r,
            Err(BusError::Transient(why)) => {
                stats.retries += 1;
                emit(BusFailed { stage: cfg.stage, operation: "read", count: 1, error: Some(&why) });
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        received(cfg.stage, &first);
        let mut batch = vec![first];
        if batching.max_records > 1 {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(batching.max_wait_ms);
            while batch.len() < batching.max_records {
                tokio::select! {
                    r = consumer.recv() => match r {
                        Ok(r) => {
                            received(cfg.stage, &r);
                            batch.push(r);
                        }
                        // Process what has arrived; the next read backs off.
                        Err(BusError::Transient(_)) => break,
                        Err(e) => return Err(e),
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut delay = cfg.backoff.initial_ms;
        while !pending.is_empty() {
            let timer = metrics.processing.with_label_values(&[cfg.stage]).start_timer();
            let outcomes = process(pending.iter().map(|&i| batch[i].clone()).collect()).await;
            timer.observe_duration();
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
                // Where the message is, never what it says: its key is the case id. The span
                // covers the delivery (instrumented, not entered, as it awaits the broker).
                let span = tracing::debug_span!(
                    "message",
                    stage = cfg.stage,
                    topic = record.topic.as_str(),
                    partition = record.partition,
                    offset = record.offset
                );
                async {
                    match outcome {
                        Outcome::Done(outputs) => {
                            for out in &outputs {
                                send_counted(&bus, out, &cfg, &mut stats).await?;
                                stats.outputs += 1;
                            }
                            let topics: Vec<&str> = outputs.iter().map(|o| o.topic.name).collect();
                            emit(MessageDone { stage: cfg.stage, output_topics: &topics });
                        }
                        Outcome::Reject { code, reason } => {
                            let input = renal_base::hex::encode(Sha256::digest(&record.payload));
                            let letter = with_input(
                                dead_letter(cfg.stage, record.source(), &code, reason, input),
                                &record.payload,
                            );
                            let out = Output { topic: dead_topic, key: record.key.clone(), payload: letter.encode() };
                            send_counted(&bus, &out, &cfg, &mut stats).await?;
                            stats.dead_letters += 1;
                            emit(MessageRejected { stage: cfg.stage, code: &code });
                        }
                        Outcome::Retry(_) => {
                            emit(MessageRetried { stage: cfg.stage });
                            again.push(i);
                        }
                    }
                    Ok::<(), BusError>(())
                }
                .instrument(span)
                .await?;
            }
            pending = again;
            if !pending.is_empty() {
                stats.retries += 1;
                tokio::select! {
                    _ = &mut shutdown => {
                        // Store only the delivered prefix: a later record's offset must not be
                        // stored past an undelivered earlier one.
                        for record in batch.iter().take(pending[0]) {
                            store(&mut consumer, record)?;
                        }
                        commits.commit(&mut consumer, &mut stats, cfg.stage)?;
                        return Ok(stats);
                    }
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                }
                delay = cfg.backoff.next(delay);
            }
        }
        for record in &batch {
            store(&mut consumer, record)?;
            stats.inputs += 1;
        }
        commits.uncommitted = true;
        if commits.last.elapsed() >= commits.interval {
            commits.commit(&mut consumer, &mut stats, cfg.stage)?;
        }
    }
    commits.commit(&mut consumer, &mut stats, cfg.stage)?;
    Ok(stats)
}

/// Send `out` with the stage's back-off, counting the failed tries as retries and send errors.
async fn send_counted<B: Bus>(
    bus: &B,
    out: &Output,
    cfg: &StageConfig,
    stats: &mut StageStats,
) -> Result<(), BusError> {
    let (_, failed) = send_with_retry(bus, out, cfg.backoff).await?;
    stats.retries += failed;
    emit(BusFailed { stage: cfg.stage, operation: "send", count: failed, error: None });
    Ok(())
}

/// A record arrived: how long it queued between its producer and this stage.
fn received(stage: &str, record: &Record) {
    emit(MessageReceived { stage, topic: &record.topic, age_seconds: record.age_seconds() });
}

/// Store a delivered record's offset. A transient refusal (the partition moved to another
/// member while the broker was away) leaves the record to be redelivered there: at least once.
fn store<C: Consumer>(consumer: &mut C, record: &Record) -> Result<(), BusError> {
    match consumer.store(record) {
        Ok(()) | Err(BusError::Transient(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcessBus;
    use renal_messages::DeadLetterV1;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    fn config() -> StageConfig {
        StageConfig {
            stage: "ingest",
            group: "ingest".into(),
            inputs: vec![topics::LABELS],
            backoff: Backoff { initial_ms: 1, max_ms: 4 },
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
            // The dead letter is counted by its reason (a code no other test uses, so the
            // process-wide count is this test's), and the bus was reported ready.
            let m = renal_telemetry::stage_metrics();
            assert_eq!(m.dead_letters.with_label_values(&["ingest", "unreadable"]).get(), 1);
            assert!(m.messages.with_label_values(&["ingest", "retried"]).get() >= 2);
            assert!(m.processing.with_label_values(&["ingest"]).get_sample_count() >= 6);
            // Each of the four inputs' time on the bus was observed once per read.
            assert!(m.hop_latency.with_label_values(&["ingest", "renal.labels"]).get_sample_count() >= 4);
            assert_eq!(renal_telemetry::ready(), Ok(()));
            assert_eq!(letter.input_sha256, renal_base::hex::encode(Sha256::digest(b"bad")));
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
    fn stale_read_errors_after_an_outage_cost_no_back_off() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let bus = InProcessBus::new(2);
            // Forty connection errors queued during an outage that is over; the worker's own
            // back-off (200 ms doubling to 10 s) per error would take over six minutes.
            bus.queue_read_errors(40);
            bus.send(topics::LABELS, "k", vec![7]).await.unwrap();
            let watcher = bus.clone();
            let stop = async move {
                while watcher.records(topics::CASES).is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            let cfg = StageConfig { backoff: Backoff::WORKER, ..config() };
            let began = Instant::now();
            let copy = |r: Record| async move {
                Outcome::Done(vec![Output { topic: topics::CASES, key: r.key, payload: r.payload }])
            };
            let stats = tokio::time::timeout(Duration::from_secs(20), run_stage(bus.clone(), cfg, copy, stop))
                .await
                .expect("the stage drained the stale errors")
                .unwrap();
            assert_eq!(stats.retries, 40, "{stats:?}");
            // 40 pauses of 50 ms, and a margin for a loaded machine.
            assert!(began.elapsed() < Duration::from_secs(8), "{:?}", began.elapsed());
        });
    }

    #[test]
    fn the_loop_waits_out_an_unreachable_bus_and_loses_nothing() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let bus = InProcessBus::new(2);
            for n in 0..6u8 {
                bus.send(topics::LABELS, &format!("k{n}"), vec![n]).await.unwrap();
            }
            let outage = bus.clone();
            let watcher = bus.clone();
            let stop = async move {
                while !(watcher.records(topics::CASES).len() == 6 && watcher.caught_up("ingest", topics::LABELS)) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            let mut seen = 0;
            let stats = run_stage(
                bus.clone(),
                config(),
                move |r: Record| {
                    seen += 1;
                    if seen == 3 {
                        // The broker goes away while the third input is processed: its output,
                        // the next reads and the commits all fail until it is back.
                        outage.set_reachable(false);
                        let back = outage.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(60)).await;
                            back.set_reachable(true);
                        });
                    }
                    async move { Outcome::Done(vec![Output { topic: topics::CASES, key: r.key, payload: r.payload }]) }
                },
                stop,
            )
            .await
            .unwrap();
            assert_eq!((stats.inputs, stats.outputs, stats.dead_letters), (6, 6, 0));
            assert!(stats.retries > 0, "the outage was waited out: {stats:?}");
            let mut got: Vec<u8> = bus.records(topics::CASES).iter().map(|r| r.payload[0]).collect();
            got.sort();
            assert_eq!(got, vec![0, 1, 2, 3, 4, 5], "each input's output once");
        });
    }
}
