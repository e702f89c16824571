//! The bus on Kafka, through rdkafka (bundled librdkafka).
//!
//! Producer: idempotent, `acks=all`, a send completes when the broker acknowledged it.
//! Consumer: a consumer-group member with automatic offset *storing* off and automatic
//! *commit* off: the stage loop stores an offset only after the input's outputs are
//! acknowledged, and commits stored offsets itself.

use crate::{Bus, BusError, Consumer, Delivery, Record};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use renal_messages::topics::Topic;
use std::sync::Arc;
use std::time::Duration;

/// How to reach and use the broker.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Client id prefix (the worker name), shown in broker logs.
    pub client_id: String,
    /// Partitions for topics this client creates.
    pub partitions: i32,
    /// Replication factor for topics this client creates.
    pub replication: i32,
    /// How long a send may wait for acknowledgement before it counts as failed, ms.
    pub delivery_timeout_ms: u64,
    /// Consumer session timeout, ms.
    pub session_timeout_ms: u64,
}

impl KafkaConfig {
    /// Defaults for a local broker at `bootstrap_servers`.
    pub fn local(bootstrap_servers: &str, client_id: &str) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: client_id.into(),
            partitions: 3,
            replication: 1,
            delivery_timeout_ms: 30_000,
            session_timeout_ms: 6_000,
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("broker.address.family", "v4");
        c
    }
}

/// A Kafka-backed [`Bus`].
#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
}

/// Sort a client error into retry-or-not, in one place.
fn classify(e: KafkaError) -> BusError {
    use RDKafkaErrorCode as C;
    let transient = matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::QueueFull
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::RequestTimedOut
                | C::NetworkException
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::OperationTimedOut
        )
    );
    if transient {
        BusError::Transient(e.to_string())
    } else {
        BusError::Fatal(e.to_string())
    }
}

impl KafkaBus {
    /// Connect a producer (no network traffic until the first send).
    pub fn new(config: KafkaConfig) -> Result<Self, BusError> {
        let producer: FutureProducer = config
            .base()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            .create()
            .map_err(classify)?;
        Ok(KafkaBus { config: Arc::new(config), producer })
    }

    /// Create `topics` where missing (existing ones are left as they are).
    pub async fn ensure_topics(&self, topics: &[Topic]) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.config.base().create().map_err(classify)?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t.name, self.config.partitions, TopicReplication::Fixed(self.config.replication)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .map_err(classify)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(BusError::Fatal(format!("creating topic {name}: {code}"))),
            }
        }
        Ok(())
    }
}

impl Bus for KafkaBus {
    type Consumer = KafkaConsumer;

    async fn send(&self, topic: Topic, key: &str, payload: Vec<u8>) -> Result<Delivery, BusError> {
        let record = FutureRecord::to(topic.name).key(key).payload(&payload);
        match self.producer.send(record, Duration::from_millis(self.config.delivery_timeout_ms)).await {
            Ok(d) => Ok(Delivery { partition: d.partition, offset: d.offset }),
            Err((e, _)) => Err(classify(e)),
        }
    }

    fn consumer(&self, group: &str, topics: &[Topic]) -> Result<KafkaConsumer, BusError> {
        let consumer: StreamConsumer = self
            .config
            .base()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.config.session_timeout_ms.to_string())
            .create()
            .map_err(classify)?;
        let names: Vec<&str> = topics.iter().map(|t| t.name).collect();
        consumer.subscribe(&names).map_err(classify)?;
        Ok(KafkaConsumer { consumer, stored_any: false })
    }
}

/// A consumer-group member on Kafka.
pub struct KafkaConsumer {
    consumer: StreamConsumer,
    stored_any: bool,
}

impl Consumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<Record, BusError> {
        let m = self.consumer.recv().await.map_err(classify)?;
        Ok(Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        })
    }

    fn store(&mut self, record: &Record) -> Result<(), BusError> {
        // librdkafka stores offset + 1, the next one to read.
        self.consumer.store_offset(&record.topic, record.partition, record.offset).map_err(classify)?;
        self.stored_any = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), BusError> {
        if !self.stored_any {
            return Ok(()); // nothing stored yet: committing would fail with NoOffset
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }
}
