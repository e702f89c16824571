//! The bus on Kafka, through rdkafka (bundled librdkafka).
//!
//! Producer: idempotent, `acks=all`, a send completes when the broker acknowledged it.
//! Consumer: a consumer-group member with automatic offset *storing* off and automatic
//! *commit* off: the stage loop stores an offset only after the input's outputs are
//! acknowledged, and commits stored offsets itself.

use crate::events::ConsumerLag;
use crate::{Bus, BusError, Consumer, Delivery, Record};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::ClientConfig;
use renal_messages::topics::Topic;
use std::sync::Arc;
use std::time::Duration;

/// How to reach and use the broker: the `[kafka]` section of every worker file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Client id (the worker name), shown in broker logs; each worker sets its own.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Partitions of topics this client creates (default 3).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics this client creates (default 1).
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// How long one send may wait for acknowledgement before it counts as failed (and is
    /// retried), ms (default 30,000).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Consumer session timeout, ms (default 45,000, Kafka's own). A member silent this long
    /// loses its partitions; a broker outage shorter than this leaves every member in its group.
    /// (tansu, the broker of the tests, keeps a group's members across its own restart and
    /// never expires the ones that do not come back: after an outage longer than the session,
    /// the rejoined members share partitions with such a ghost, whose share then stalls.)
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// librdkafka debug contexts to log, e.g. `cgrp,consumer` (default none; its warnings and
    /// errors are always logged). Its debug lines are debug events: run with `RUST_LOG=debug`.
    #[serde(default)]
    pub debug: Option<String>,
    /// How often consumers report their lag per partition (`renal_consumer_lag`), ms (default
    /// 5,000; librdkafka's statistics interval).
    #[serde(default = "default_stats_interval_ms")]
    pub stats_interval_ms: u64,
    /// Longest time the broker may hold a consumer's fetch while no new message has arrived, ms
    /// (default 500, librdkafka's). Kafka answers as soon as a message arrives; a broker that
    /// holds every fetch for the whole wait (tansu 0.6 does) adds up to this much per hop, so
    /// lower it there.
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u64,
    /// How often a consumer that holds no partition checks its group's backlog, ms (default
    /// 30,000; 0: never). When a partition of its topics has records past the group's committed
    /// offset at two checks in a row and that offset has not moved between them, no member is
    /// consuming it: the idle consumer leaves and rejoins the group, so the group's leader
    /// assigns the partitions again. A coordinator should never leave a partition unassigned,
    /// but tansu 0.6.0 does after a SIGKILLed leader: a member that rejoins before the dead
    /// leader's session expires is formed into a group with no assignment at all, and stays
    /// so while it heartbeats. Under Kafka an idle surplus member (more members than
    /// partitions) checks and finds the backlog moving, so it does not rejoin.
    #[serde(default = "default_stalled_check_ms")]
    pub stalled_check_ms: u64,
    /// Idempotent producers (default true): the broker drops a retried send it already has,
    /// so a send retried after a lost acknowledgement is not written twice. Turn off only for
    /// a broker whose idempotent producers break: tansu 0.6.0, SIGKILLed and restarted, panics
    /// in its storage on such a producer's next send (`more or less than one row` in
    /// tansu-storage's SQLite engine) and answers every request with an error from then on.
    /// Off, a retried send may be written twice; the stages downstream already take repeats.
    #[serde(default = "default_idempotence")]
    pub idempotence: bool,
    /// How the brokers are reached: `plaintext` (default), `ssl` (TLS), `sasl_plaintext` or
    /// `sasl_ssl` (SASL over TLS: what a hospital's shared cluster should ask for).
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
    /// PEM file of the CA that signed the brokers' certificates (TLS); none: the system's.
    #[serde(default)]
    pub ssl_ca_location: Option<std::path::PathBuf>,
    /// PEM file of this client's certificate, for brokers that ask for one (mutual TLS).
    #[serde(default)]
    pub ssl_certificate_location: Option<std::path::PathBuf>,
    /// PEM file of this client's private key.
    #[serde(default)]
    pub ssl_key_location: Option<std::path::PathBuf>,
    /// Environment variable holding the private key's password, if it has one.
    #[serde(default)]
    pub ssl_key_password_env: Option<String>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*` protocol).
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Environment variable holding the SASL password (the password itself is never in a
    /// file, a log line or this struct).
    #[serde(default)]
    pub sasl_password_env: Option<String>,
}

fn default_security_protocol() -> String {
    "plaintext".into()
}

fn default_client_id() -> String {
    "renal".into()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_session_timeout_ms() -> u64 {
    45_000
}
fn default_stats_interval_ms() -> u64 {
    5_000
}
fn default_fetch_wait_max_ms() -> u64 {
    500
}
fn default_stalled_check_ms() -> u64 {
    30_000
}
fn default_idempotence() -> bool {
    true
}

impl KafkaConfig {
    /// Defaults for a local broker at `bootstrap_servers`.
    pub fn local(bootstrap_servers: &str, client_id: &str) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: client_id.into(),
            partitions: default_partitions(),
            replication: default_replication(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            debug: None,
            stats_interval_ms: default_stats_interval_ms(),
            fetch_wait_max_ms: default_fetch_wait_max_ms(),
            stalled_check_ms: default_stalled_check_ms(),
            idempotence: default_idempotence(),
            security_protocol: default_security_protocol(),
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password_env: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password_env: None,
        }
    }

    /// Check the settings at start-up.
    pub fn validate(&self) -> Result<(), BusError> {
        let bad = |what: String| Err(BusError::Fatal(format!("[kafka] {what}")));
        if self.bootstrap_servers.trim().is_empty() {
            return bad("bootstrap_servers is empty".into());
        }
        if self.partitions < 1 || self.replication < 1 {
            return bad(format!(
                "partitions {} and replication {} must be at least 1",
                self.partitions, self.replication
            ));
        }
        if self.delivery_timeout_ms == 0 || self.session_timeout_ms == 0 || self.stats_interval_ms == 0 {
            return bad("delivery_timeout_ms, session_timeout_ms and stats_interval_ms must be positive".into());
        }
        if self.fetch_wait_max_ms > 300_000 {
            return bad(format!("fetch_wait_max_ms {} is over 300000", self.fetch_wait_max_ms));
        }
        let protocol = self.security_protocol.as_str();
        if !matches!(protocol, "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl") {
            return bad(format!("security_protocol {protocol:?} is not plaintext, ssl, sasl_plaintext or sasl_ssl"));
        }
        let sasl = protocol.starts_with("sasl_");
        if sasl != self.sasl_mechanism.is_some() {
            return bad(format!("sasl_mechanism goes with a sasl_* security_protocol (it is {protocol})"));
        }
        if let Some(m) = &self.sasl_mechanism {
            if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                return bad(format!("sasl_mechanism {m:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"));
            }
            if self.sasl_username.is_none() || self.sasl_password_env.is_none() {
                return bad("SASL needs sasl_username and sasl_password_env".into());
            }
        }
        let tls = protocol.ends_with("ssl");
        let files = [&self.ssl_ca_location, &self.ssl_certificate_location, &self.ssl_key_location];
        if !tls && files.iter().any(|f| f.is_some()) {
            return bad(format!("ssl_* files go with an ssl or sasl_ssl security_protocol (it is {protocol})"));
        }
        for f in files.into_iter().flatten() {
            if !f.is_file() {
                return bad(format!("{} is not a file", f.display()));
            }
        }
        Ok(())
    }

    /// The settings every client of this configuration starts from, with the secrets read from
    /// the environment variables named (an error names a variable that is not set, never a
    /// value). Public so that a test can show what reaches librdkafka.
    pub fn client_config(&self) -> Result<ClientConfig, BusError> {
        let secret = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| BusError::Fatal(format!("[kafka] environment variable {var} is not set")))
        };
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("broker.address.family", "v4")
            .set("security.protocol", &self.security_protocol);
        let path = |p: &std::path::Path| p.display().to_string();
        if let Some(p) = &self.ssl_ca_location {
            c.set("ssl.ca.location", path(p));
        }
        if let Some(p) = &self.ssl_certificate_location {
            c.set("ssl.certificate.location", path(p));
        }
        if let Some(p) = &self.ssl_key_location {
            c.set("ssl.key.location", path(p));
        }
        if let Some(var) = &self.ssl_key_password_env {
            c.set("ssl.key.password", secret(var)?);
        }
        if let Some(m) = &self.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let Some(u) = &self.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(var) = &self.sasl_password_env {
            c.set("sasl.password", secret(var)?);
        }
        if let Some(debug) = &self.debug {
            c.set("debug", debug).set("log_level", "7").set("log.queue", "false");
        }
        Ok(c)
    }
}

/// Where librdkafka's own log lines go: `tracing` events at the matching level (without this
/// they would be dropped, no logger being installed).
#[derive(Clone, Default)]
pub struct StderrLog;

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {message}"),
        }
    }
}

impl ConsumerContext for StderrLog {}

/// A consumer's context: librdkafka's log lines as [`StderrLog`] writes them, and its periodic
/// statistics as the group's lag per partition ([`ConsumerLag`]).
#[derive(Clone)]
pub struct GroupMember {
    group: String,
}

impl ClientContext for GroupMember {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        StderrLog.log(level, fac, message);
    }

    fn stats(&self, statistics: Statistics) {
        let mut partitions = Vec::new();
        for (topic, t) in &statistics.topics {
            for (&id, p) in &t.partitions {
                if id < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                // Lag past the last stored offset (what the stage has finished), else past the
                // last committed one; none while neither is known or the partition is not held.
                let lag = [p.consumer_lag_stored, p.consumer_lag].into_iter().find(|&l| l >= 0);
                partitions.push((topic.as_str(), id, if p.desired { lag } else { None }));
            }
        }
        renal_telemetry::emit(ConsumerLag { group: &self.group, partitions });
    }
}

impl ConsumerContext for GroupMember {}

/// A Kafka-backed [`Bus`].
#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    producer: FutureProducer<StderrLog>,
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
                // Retriable in Kafka's own error table: a broker that has just restarted may not
                // know a topic's partitions yet.
                | C::UnknownTopicOrPartition
                // The group moved on while this member could not reach it (a broker outage
                // longer than the session): its uncommitted inputs go to whoever holds their
                // partitions now, and it rejoins.
                | C::AssignmentLost
                | C::IllegalGeneration
                | C::UnknownMemberId
                | C::RebalanceInProgress
                // UNKNOWN_SERVER_ERROR: the broker failed on its side (tansu answers every
                // request so when its storage fails). Kafka's table calls it not retriable, but
                // nothing about the record caused it, and a worker that exits on it loses
                // nothing yet stops until someone restarts it: retry with back-off instead.
                | C::Unknown
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
        let producer: FutureProducer<StderrLog> = config
            .client_config()?
            .set("enable.idempotence", config.idempotence.to_string())
            .set("acks", "all")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            .create_with_context(StderrLog)
            .map_err(classify)?;
        Ok(KafkaBus { config: Arc::new(config), producer })
    }

    /// Create `topics` where missing (existing ones are left as they are).
    pub async fn ensure_topics(&self, topics: &[Topic]) -> Result<(), BusError> {
        let admin: AdminClient<StderrLog> =
            self.config.client_config()?.create_with_context(StderrLog).map_err(classify)?;
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

/// Connect a worker to the broker as `client_id` and create `topics` where missing, waiting
/// (with back-off) while the broker cannot be reached, so workers may start before it.
pub async fn connect(config: &KafkaConfig, client_id: &str, topics: &[Topic]) -> Result<KafkaBus, BusError> {
    config.validate()?;
    let bus = KafkaBus::new(KafkaConfig { client_id: client_id.into(), ..config.clone() })?;
    let backoff = crate::Backoff::WORKER;
    let mut delay = backoff.initial_ms;
    loop {
        match bus.ensure_topics(topics).await {
            Ok(()) => return Ok(bus),
            Err(BusError::Transient(why)) => {
                tracing::warn!("{client_id}: broker {} not reachable yet ({why}); retrying", config.bootstrap_servers);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                delay = backoff.next(delay);
            }
            Err(e) => return Err(e),
        }
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
        let consumer: StreamConsumer<GroupMember> = self
            .config
            .client_config()?
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.config.session_timeout_ms.to_string())
            .set("statistics.interval.ms", self.config.stats_interval_ms.to_string())
            .set("fetch.wait.max.ms", self.config.fetch_wait_max_ms.to_string())
            .create_with_context(GroupMember { group: group.into() })
            .map_err(classify)?;
        let names: Vec<&str> = topics.iter().map(|t| t.name).collect();
        consumer.subscribe(&names).map_err(classify)?;
        Ok(KafkaConsumer {
            consumer,
            stored_any: false,
            group: group.into(),
            topics: names.iter().map(|n| n.to_string()).collect(),
            stalled_check: Duration::from_millis(self.config.stalled_check_ms),
            backlog: None,
        })
    }
}

impl KafkaBus {
    /// Every record of `topics` from the oldest kept to the end as it stands now (each
    /// partition's high watermark when called), outside any consumer group: nothing is
    /// committed, and what arrives meanwhile is not waited for. Topics that do not exist are
    /// empty. Blocking; gives up after `timeout`.
    pub fn read_to_end(&self, topics: &[Topic], timeout: Duration) -> Result<Vec<Record>, BusError> {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = self
            .config
            .client_config()?
            .set("group.id", "renal-read-to-end")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(classify)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends: std::collections::HashMap<(String, i32), i64> = std::collections::HashMap::new();
        for topic in topics {
            let metadata = consumer.fetch_metadata(Some(topic.name), timeout).map_err(classify)?;
            for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
                for p in t.partitions() {
                    let (low, high) = consumer.fetch_watermarks(topic.name, p.id(), timeout).map_err(classify)?;
                    if high > low {
                        assignment.add_partition_offset(topic.name, p.id(), Offset::Offset(low)).map_err(classify)?;
                        ends.insert((topic.name.to_string(), p.id()), high);
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut open: std::collections::HashSet<(String, i32)> = ends.keys().cloned().collect();
        if open.is_empty() {
            return Ok(out);
        }
        consumer.assign(&assignment).map_err(classify)?;
        let deadline = std::time::Instant::now() + timeout;
        while !open.is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(BusError::Transient(format!(
                    "reading {} partitions to their end took longer than {timeout:?}",
                    open.len()
                )));
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
            let m = m.map_err(classify)?;
            let at = (m.topic().to_string(), m.partition());
            let end = ends.get(&at).copied().unwrap_or(0);
            if m.offset() + 1 >= end {
                open.remove(&at);
            }
            if m.offset() < end {
                out.push(Record {
                    topic: at.0,
                    partition: at.1,
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
        }
        Ok(out)
    }
}

/// A consumer-group member on Kafka.
pub struct KafkaConsumer {
    consumer: StreamConsumer<GroupMember>,
    stored_any: bool,
    group: String,
    topics: Vec<String>,
    /// How often to look at the group's backlog while holding no partition (zero: never).
    stalled_check: Duration,
    /// The group's backlog at the last such look.
    backlog: Option<Backlog>,
}

/// Per (topic, partition): the group's committed offset (-1 when none) and how many records
/// lie past it.
pub type Backlog = std::collections::BTreeMap<(String, i32), (i64, i64)>;

/// The partitions no member consumed between two looks at the group's backlog: records past
/// the committed offset both times, and that offset unchanged.
pub fn stalled_partitions(before: &Backlog, now: &Backlog) -> Vec<(String, i32)> {
    now.iter()
        .filter(|(tp, &(committed, behind))| {
            behind > 0 && before.get(*tp).is_some_and(|&(was, was_behind)| was == committed && was_behind > 0)
        })
        .map(|(tp, _)| tp.clone())
        .collect()
}

impl KafkaConsumer {
    /// The group's committed offset and backlog on every partition of this member's topics.
    fn group_backlog(&self) -> Result<Backlog, KafkaError> {
        use rdkafka::{Offset, TopicPartitionList};
        let timeout = Duration::from_secs(2);
        let mut all = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    all.add_partition(topic, p.id());
                }
            }
        }
        let committed = self.consumer.committed_offsets(all, timeout)?;
        let mut backlog = Backlog::new();
        for e in committed.elements() {
            let (low, high) = self.consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            backlog.insert((e.topic().to_string(), e.partition()), (at, high - at.max(low)));
        }
        Ok(backlog)
    }

    /// Called while no record arrives: a member holding no partition looks at the group's
    /// backlog and rejoins when some of it has stalled (see `KafkaConfig::stalled_check_ms`).
    fn watch_stalled(&mut self) {
        if !self.consumer.assignment().is_ok_and(|a| a.count() == 0) {
            self.backlog = None;
            return;
        }
        let now = match self.group_backlog() {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(group = %self.group, "backlog check failed: {e}");
                return;
            }
        };
        let stalled = self.backlog.as_ref().map(|before| stalled_partitions(before, &now)).unwrap_or_default();
        if stalled.is_empty() {
            self.backlog = Some(now);
            return;
        }
        renal_telemetry::emit(crate::events::GroupRejoined { group: &self.group, stalled: &stalled });
        self.backlog = None;
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&names) {
            tracing::warn!(group = %self.group, "rejoining failed: {e}");
        }
    }
}

impl Consumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<Record, BusError> {
        let m = loop {
            if self.stalled_check.is_zero() {
                break self.consumer.recv().await.map_err(classify)?;
            }
            tokio::select! {
                m = self.consumer.recv() => break m.map_err(classify)?,
                _ = tokio::time::sleep(self.stalled_check) => self.watch_stalled(),
            }
        };
        Ok(Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
        })
    }

    fn store(&mut self, record: &Record) -> Result<(), BusError> {
        // librdkafka stores offset + 1, the next one to read. It refuses a partition this member
        // no longer holds (the group rebalanced while the broker was away): the new holder reads
        // the record again, so the refusal is transient for the stage, never fatal.
        self.consumer
            .store_offset(&record.topic, record.partition, record.offset)
            .map_err(|e| BusError::Transient(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::{stalled_partitions, Backlog};

    fn backlog(rows: &[(i32, i64, i64)]) -> Backlog {
        rows.iter().map(|&(p, at, behind)| (("renal.lesions".to_string(), p), (at, behind))).collect()
    }

    #[test]
    fn a_partition_is_stalled_only_when_behind_twice_and_its_offset_did_not_move() {
        let before = backlog(&[(0, 4, 2), (1, 7, 0), (2, -1, 3), (3, 5, 1)]);
        let now = backlog(&[(0, 4, 3), (1, 7, 1), (2, -1, 3), (3, 6, 1)]);
        let stalled = stalled_partitions(&before, &now);
        // 0: behind and unmoved; 1: newly behind; 2: never committed and unmoved; 3: moved.
        assert_eq!(stalled, vec![("renal.lesions".to_string(), 0), ("renal.lesions".to_string(), 2)]);
        assert!(stalled_partitions(&Backlog::new(), &now).is_empty(), "a first look decides nothing");
        assert!(stalled_partitions(&now, &backlog(&[(0, 4, 0), (2, -1, 0)])).is_empty(), "caught up");
    }
}
