//! What the stage loop and the Kafka client report: each event's log line and metrics.
//!
//! Events name the stage, topic, partition and offset of a message (the `message` span the loop
//! opens), never its key or content: keys are lesion ids.

use renal_telemetry::{stage_metrics, InternalEvent};

/// A stage loop started: every outcome and bus operation of the stage gets a series at 0, so
/// rates and alerts see one before the first event of its kind.
pub struct StageStarted<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// Its input topics.
    pub inputs: &'a [&'a str],
}

impl InternalEvent for StageStarted<'_> {
    fn emit(self) {
        let m = stage_metrics();
        for outcome in ["done", "rejected", "retried"] {
            m.messages.with_label_values(&[self.stage, outcome]);
        }
        for operation in ["read", "send", "commit"] {
            m.bus_errors.with_label_values(&[self.stage, operation]);
        }
        m.processing.with_label_values(&[self.stage]);
        for topic in self.inputs {
            m.hop_latency.with_label_values(&[self.stage, topic]);
        }
        tracing::debug!(stage = self.stage, inputs = ?self.inputs, "stage loop started");
    }
}

/// A record was read. Its age is the time it spent between its producer and this stage.
pub struct MessageReceived<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// Input topic.
    pub topic: &'a str,
    /// Seconds since its producer created it, if the bus knows.
    pub age_seconds: Option<f64>,
}

impl InternalEvent for MessageReceived<'_> {
    fn emit(self) {
        renal_telemetry::set_ready("bus", true);
        if let Some(age) = self.age_seconds {
            stage_metrics().hop_latency.with_label_values(&[self.stage, self.topic]).observe(age);
        }
    }
}

/// An input's outputs were all acknowledged.
pub struct MessageDone<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// The topic of each output.
    pub output_topics: &'a [&'a str],
}

impl InternalEvent for MessageDone<'_> {
    fn emit(self) {
        let m = stage_metrics();
        for topic in self.output_topics {
            m.outputs.with_label_values(&[self.stage, topic]).inc();
        }
        m.messages.with_label_values(&[self.stage, "done"]).inc();
        tracing::debug!(outputs = self.output_topics.len(), "done");
    }
}

/// An input was dead-lettered.
pub struct MessageRejected<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// Reason code (a bounded set per stage).
    pub code: &'a str,
}

impl InternalEvent for MessageRejected<'_> {
    fn emit(self) {
        let m = stage_metrics();
        m.messages.with_label_values(&[self.stage, "rejected"]).inc();
        m.dead_letters.with_label_values(&[self.stage, self.code]).inc();
        tracing::warn!(reason = self.code, "dead-lettered");
    }
}

/// An input failed transiently and will be processed again.
pub struct MessageRetried<'a> {
    /// Stage name.
    pub stage: &'a str,
}

impl InternalEvent for MessageRetried<'_> {
    fn emit(self) {
        stage_metrics().messages.with_label_values(&[self.stage, "retried"]).inc();
        // The reason may name a file, and files are named by case id.
        tracing::debug!("transient failure; will retry");
    }
}

/// The bus failed transiently (`read`, `send` or `commit`) `count` times; the loop backs off
/// and the worker is not ready until the next successful read.
pub struct BusFailed<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// `read`, `send` or `commit`.
    pub operation: &'static str,
    /// Failed tries.
    pub count: u64,
    /// The client's words for the last failure, where the caller has them (never a payload).
    pub error: Option<&'a str>,
}

impl InternalEvent for BusFailed<'_> {
    fn emit(self) {
        if self.count == 0 {
            return;
        }
        tracing::warn!(
            stage = self.stage,
            operation = self.operation,
            error = self.error.unwrap_or("(see the send's debug lines)"),
            "the bus failed; retrying with back-off"
        );
        stage_metrics().bus_errors.with_label_values(&[self.stage, self.operation]).inc_by(self.count);
        renal_telemetry::set_ready("bus", false);
    }
}

/// The operator's heartbeat: `begun` inputs begun so far (logged for the first and every 25th).
pub struct Progress {
    /// Stage name.
    pub stage: &'static str,
    /// What an input is (`lesions`, `cases`).
    pub noun: &'static str,
    /// Inputs begun so far.
    pub begun: u64,
}

impl InternalEvent for Progress {
    fn emit(self) {
        let n = self.begun;
        if n == 1 || n.rem_euclid(25) == 0 {
            tracing::info!(stage = self.stage, begun = n, "{n} {} begun", self.noun);
        }
    }
}

/// librdkafka's statistics for one consumer group member: its lag per assigned partition.
/// Partitions it no longer holds lose their series (another member reports them).
pub struct ConsumerLag<'a> {
    /// Consumer group.
    pub group: &'a str,
    /// (topic, partition, lag or `None` when the member does not hold the partition).
    pub partitions: Vec<(&'a str, i32, Option<i64>)>,
}

impl InternalEvent for ConsumerLag<'_> {
    fn emit(self) {
        let gauge = &stage_metrics().consumer_lag;
        for (topic, partition, lag) in self.partitions {
            let partition = partition.to_string();
            let labels = [self.group, topic, partition.as_str()];
            match lag {
                Some(lag) => gauge.with_label_values(&labels).set(lag),
                None => {
                    let _ = gauge.remove_label_values(&labels);
                }
            }
        }
    }
}

/// A member that held no partition found some of its group's backlog stalled (records past
/// the committed offset that no one consumed between two checks) and rejoined the group.
pub struct GroupRejoined<'a> {
    /// Consumer group.
    pub group: &'a str,
    /// The stalled (topic, partition)s.
    pub stalled: &'a [(String, i32)],
}

impl InternalEvent for GroupRejoined<'_> {
    fn emit(self) {
        let stalled: Vec<String> = self.stalled.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
        tracing::warn!(
            group = self.group,
            stalled = ?stalled,
            "holding no partition while {} partition(s) of the group stalled; rejoining the group",
            stalled.len()
        );
    }
}

/// A stage's loop ended (on the shutdown signal): what it did.
pub struct StageStopped<'a> {
    /// Stage name.
    pub stage: &'a str,
    /// What its inputs and outputs are (`cases`, `lesions`).
    pub nouns: [&'a str; 2],
    /// Its counts.
    pub stats: &'a crate::StageStats,
}

impl InternalEvent for StageStopped<'_> {
    fn emit(self) {
        let s = self.stats;
        let [inputs, outputs] = self.nouns;
        tracing::info!(
            stage = self.stage,
            "{} stopped: {} {inputs}, {} {outputs}, {} dead letters",
            self.stage,
            s.inputs,
            s.outputs,
            s.dead_letters
        );
    }
}
