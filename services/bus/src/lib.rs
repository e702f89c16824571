//! The message bus every worker runs on, and the at-least-once stage loop.
//!
//! [`Bus`] is the interface; [`InProcessBus`] implements it in memory with Kafka's semantics
//! (partitioned append-only logs, keyed partitioning, consumer groups with committed offsets,
//! redelivery of everything after the last commit when a consumer dies). [`KafkaBus`] is the
//! same interface on a real broker through rdkafka.
//!
//! [`run_stage`] is the delivery contract in one place: a record's offset is stored only after
//! every output it caused is acknowledged; an input that can never succeed goes to the stage's
//! dead-letter topic (and is then stored); a transient failure is retried with backoff and its
//! offset is not stored; a broker that goes away is waited for, not given up on. Stages answer
//! with typed errors that know their dead-letter reason ([`Failure`]); every dead letter is
//! built by [`dead_letter`], and every send outside the loop goes through [`send_with_retry`].
//!
//! ```
//! use renal_bus::{Bus, Consumer, InProcessBus};
//! use renal_messages::topics;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let bus = InProcessBus::new(3);
//! bus.send(topics::LABELS, "HUP-0001", b"{}".to_vec()).await.unwrap();
//! let mut consumer = bus.consumer("trainer", &[topics::LABELS]).unwrap();
//! let record = consumer.recv().await.unwrap();
//! assert_eq!(record.key, "HUP-0001");
//! consumer.store(&record).unwrap();
//! consumer.commit().unwrap();
//! # });
//! ```

mod delivery;
pub mod events;
mod in_process;
mod kafka;
mod stage;

pub use delivery::{dead_letter, send_with_retry, with_input, Backoff, Failure};
pub use in_process::{InProcessBus, InProcessConsumer};
pub use kafka::{connect, KafkaBus, KafkaConfig, KafkaConsumer};
pub use stage::{run_batched_stage, run_stage, Batching, Outcome, Output, StageConfig, StageStats};

use renal_messages::topics::Topic;
use std::future::Future;

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Message key (a case id).
    pub key: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// When the producer created it, ms since the Unix epoch (Kafka's CreateTime), if known.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// Seconds from its creation to now (0 for a clock that went backwards), if known.
    pub fn age_seconds(&self) -> Option<f64> {
        self.timestamp_ms.map(|t| (unix_ms() - t).max(0) as f64 / 1000.0)
    }
}

/// Now, ms since the Unix epoch.
pub(crate) fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_millis() as i64
}

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Bus failures, sorted by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Worth retrying: broker unreachable, timeout, leader change.
    #[error("transient bus failure: {0}")]
    Transient(String),
    /// Will not succeed on retry: unknown topic, message too large, bad configuration.
    #[error("bus failure: {0}")]
    Fatal(String),
    /// The bus is shutting down.
    #[error("bus closed")]
    Closed,
}

/// A message bus: produce with acknowledgement, consume in groups.
pub trait Bus: Clone + Send + Sync + 'static {
    /// Consumer type.
    type Consumer: Consumer;

    /// Send one message and wait until the bus has it durably (Kafka: acks=all).
    fn send(
        &self,
        topic: Topic,
        key: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Delivery, BusError>> + Send;

    /// A consumer in `group` subscribed to `topics`, starting at the group's committed offsets
    /// (earliest where none).
    fn consumer(&self, group: &str, topics: &[Topic]) -> Result<Self::Consumer, BusError>;
}

/// A consumer-group member.
pub trait Consumer: Send {
    /// The next record (waits until one arrives).
    fn recv(&mut self) -> impl Future<Output = Result<Record, BusError>> + Send;
    /// Mark `record` done: the group may move past it at the next commit.
    fn store(&mut self, record: &Record) -> Result<(), BusError>;
    /// Commit stored offsets to the group.
    fn commit(&mut self) -> Result<(), BusError>;
}

/// A heartbeat for operators (per-lesion detail lives in the messages and at debug level): the
/// [`events::Progress`] event, logged for the first input begun and every 25th.
pub fn heartbeat(stage: &'static str, noun: &'static str) -> impl Fn(u64) + Sync {
    move |begun| renal_telemetry::emit(events::Progress { stage, noun, begun })
}
