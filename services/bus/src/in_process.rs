//! An in-memory bus with Kafka's delivery semantics, for the embedded run and unit tests.

use crate::{Bus, BusError, Consumer, Delivery, Record};
use renal_messages::topics::Topic;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One partition's log: (key, payload) in offset order.
/// Key, payload and create time (ms since the Unix epoch) of each record.
type Log = Vec<(String, Vec<u8>, i64)>;

#[derive(Default)]
struct State {
    /// topic -> partitions -> log.
    logs: HashMap<String, Vec<Log>>,
    /// (group, topic, partition) -> next offset to read.
    committed: HashMap<(String, String, i32), i64>,
}

struct Inner {
    partitions: usize,
    state: Mutex<State>,
    arrived: Notify,
    /// False while a test simulates a broker outage.
    reachable: AtomicBool,
    /// Read errors still queued from an outage that has ended (see [`InProcessBus::queue_read_errors`]).
    stale_read_errors: AtomicUsize,
}

/// Partitioned in-memory logs shared by every producer and consumer made from one instance.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

/// FNV-1a: a stable key hash, so a key always lands on the same partition.
fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % partitions
}

impl InProcessBus {
    /// A bus whose topics have `partitions` partitions each.
    pub fn new(partitions: usize) -> Self {
        assert!(partitions > 0, "a topic needs at least one partition");
        InProcessBus {
            inner: Arc::new(Inner {
                partitions,
                state: Mutex::default(),
                arrived: Notify::new(),
                reachable: AtomicBool::new(true),
                stale_read_errors: AtomicUsize::new(0),
            }),
        }
    }

    /// Simulate a broker outage (`false`) and its end (`true`): while unreachable, sends, reads
    /// and commits fail with [`BusError::Transient`], as Kafka's do when every broker is down.
    pub fn set_reachable(&self, reachable: bool) {
        self.inner.reachable.store(reachable, Ordering::SeqCst);
        self.inner.arrived.notify_waiters();
    }

    /// Simulate what librdkafka leaves behind after an outage: a connection error event for
    /// every failed reconnect, queued for the consumer, so the next `count` reads (by any
    /// consumer of this bus) fail although the broker is back.
    pub fn queue_read_errors(&self, count: usize) {
        self.inner.stale_read_errors.fetch_add(count, Ordering::SeqCst);
        self.inner.arrived.notify_waiters();
    }

    fn take_stale_read_error(&self) -> Result<(), BusError> {
        let taken = self.inner.stale_read_errors.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match taken {
            Ok(_) => Err(BusError::Transient("broker transport failure (simulated, queued)".into())),
            Err(_) => Ok(()),
        }
    }

    fn check_reachable(&self) -> Result<(), BusError> {
        if self.inner.reachable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(BusError::Transient("all brokers down (simulated)".into()))
        }
    }

    /// Every record of a topic, partition by partition (for tests and the embedded run's report).
    pub fn records(&self, topic: Topic) -> Vec<Record> {
        let state = self.inner.state.lock().expect("bus state lock");
        let mut out = Vec::new();
        if let Some(parts) = state.logs.get(topic.name) {
            for (p, log) in parts.iter().enumerate() {
                for (o, (key, payload, created)) in log.iter().enumerate() {
                    out.push(Record {
                        topic: topic.name.into(),
                        partition: p as i32,
                        offset: o as i64,
                        key: key.clone(),
                        payload: payload.clone(),
                        timestamp_ms: Some(*created),
                    });
                }
            }
        }
        out
    }

    /// Whether `group` has committed every record now on `topic` (how the embedded run knows a
    /// stage has drained its input).
    pub fn caught_up(&self, group: &str, topic: Topic) -> bool {
        let lengths: Vec<i64> = {
            let state = self.inner.state.lock().expect("bus state lock");
            match state.logs.get(topic.name) {
                Some(parts) => parts.iter().map(|l| l.len() as i64).collect(),
                None => return true,
            }
        };
        self.committed(group, topic).iter().zip(&lengths).all(|(c, n)| c >= n)
    }

    /// Resolves once `group` has committed everything on `topic`; polls every 5 ms.
    pub async fn drained(&self, group: &str, topic: Topic) {
        while !self.caught_up(group, topic) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Committed next-offset of `group` on each partition of `topic`.
    pub fn committed(&self, group: &str, topic: Topic) -> Vec<i64> {
        let state = self.inner.state.lock().expect("bus state lock");
        (0..self.inner.partitions as i32)
            .map(|p| *state.committed.get(&(group.to_string(), topic.name.to_string(), p)).unwrap_or(&0))
            .collect()
    }
}

impl Bus for InProcessBus {
    type Consumer = InProcessConsumer;

    async fn send(&self, topic: Topic, key: &str, payload: Vec<u8>) -> Result<Delivery, BusError> {
        self.check_reachable()?;
        let delivery = {
            let mut state = self.inner.state.lock().expect("bus state lock");
            let parts =
                state.logs.entry(topic.name.to_string()).or_insert_with(|| vec![Vec::new(); self.inner.partitions]);
            let p = partition_of(key, self.inner.partitions);
            parts[p].push((key.to_string(), payload, crate::unix_ms()));
            Delivery { partition: p as i32, offset: parts[p].len() as i64 - 1 }
        };
        self.inner.arrived.notify_waiters();
        Ok(delivery)
    }

    fn consumer(&self, group: &str, topics: &[Topic]) -> Result<InProcessConsumer, BusError> {
        if topics.is_empty() {
            return Err(BusError::Fatal("a consumer needs at least one topic".into()));
        }
        let state = self.inner.state.lock().expect("bus state lock");
        let mut positions = Vec::new();
        for t in topics {
            for p in 0..self.inner.partitions as i32 {
                let at = *state.committed.get(&(group.to_string(), t.name.to_string(), p)).unwrap_or(&0);
                positions.push((t.name.to_string(), p, at));
            }
        }
        Ok(InProcessConsumer {
            bus: self.clone(),
            group: group.to_string(),
            positions,
            stored: HashMap::new(),
            cursor: 0,
        })
    }
}

/// A consumer of an [`InProcessBus`]. Dropping it without committing is a crash: the next
/// consumer of the group starts again at the last commit.
pub struct InProcessConsumer {
    bus: InProcessBus,
    group: String,
    /// (topic, partition, next offset to read).
    positions: Vec<(String, i32, i64)>,
    /// (topic, partition) -> next offset to commit.
    stored: HashMap<(String, i32), i64>,
    cursor: usize,
}

impl InProcessConsumer {
    fn try_next(&mut self) -> Option<Record> {
        let state = self.bus.inner.state.lock().expect("bus state lock");
        let n = self.positions.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let (topic, partition, at) = &self.positions[i];
            let Some(log) = state.logs.get(topic).map(|parts| &parts[*partition as usize]) else { continue };
            if let Some((key, payload, created)) = log.get(*at as usize) {
                let record = Record {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *at,
                    key: key.clone(),
                    payload: payload.clone(),
                    timestamp_ms: Some(*created),
                };
                self.positions[i].2 += 1;
                // Round-robin across partitions, as a fair fetcher would.
                self.cursor = (i + 1) % n;
                return Some(record);
            }
        }
        None
    }
}

impl Consumer for InProcessConsumer {
    async fn recv(&mut self) -> Result<Record, BusError> {
        loop {
            let inner = self.bus.inner.clone();
            let arrived = inner.arrived.notified();
            tokio::pin!(arrived);
            // Register interest before looking, so a send between the look and the wait is seen.
            arrived.as_mut().enable();
            self.bus.take_stale_read_error()?;
            self.bus.check_reachable()?;
            if let Some(r) = self.try_next() {
                return Ok(r);
            }
            arrived.await;
        }
    }

    fn store(&mut self, record: &Record) -> Result<(), BusError> {
        let next = self.stored.entry((record.topic.clone(), record.partition)).or_insert(0);
        *next = (*next).max(record.offset + 1);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), BusError> {
        self.bus.check_reachable()?;
        let mut state = self.bus.inner.state.lock().expect("bus state lock");
        for ((topic, partition), next) in &self.stored {
            let slot = state.committed.entry((self.group.clone(), topic.clone(), *partition)).or_insert(0);
            *slot = (*slot).max(*next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_messages::topics;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn same_key_same_partition_in_order() {
        rt().block_on(async {
            let bus = InProcessBus::new(4);
            let mut parts = Vec::new();
            for n in 0..5 {
                parts.push(bus.send(topics::CASES, "HUP-0001", vec![n]).await.unwrap());
            }
            assert!(parts.iter().all(|d| d.partition == parts[0].partition));
            assert_eq!(parts.iter().map(|d| d.offset).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
            let mut c = bus.consumer("g", &[topics::CASES]).unwrap();
            for n in 0..5 {
                assert_eq!(c.recv().await.unwrap().payload, vec![n]);
            }
        });
    }

    #[test]
    fn uncommitted_records_are_redelivered_to_the_next_member() {
        rt().block_on(async {
            let bus = InProcessBus::new(2);
            for n in 0..6u8 {
                bus.send(topics::CASES, &format!("k{n}"), vec![n]).await.unwrap();
            }
            let mut first = bus.consumer("g", &[topics::CASES]).unwrap();
            let mut seen = Vec::new();
            for _ in 0..3 {
                let r = first.recv().await.unwrap();
                first.store(&r).unwrap();
                seen.push(r.payload[0]);
            }
            first.commit().unwrap();
            // Read two more without committing, then "crash".
            first.recv().await.unwrap();
            first.recv().await.unwrap();
            drop(first);
            let mut second = bus.consumer("g", &[topics::CASES]).unwrap();
            for _ in 0..3 {
                let r = second.recv().await.unwrap();
                seen.push(r.payload[0]);
            }
            seen.sort();
            assert_eq!(seen, vec![0, 1, 2, 3, 4, 5], "each record once after the commit point");
            // Another group reads everything from the start.
            let mut other = bus.consumer("h", &[topics::CASES]).unwrap();
            let mut all = Vec::new();
            for _ in 0..6 {
                all.push(other.recv().await.unwrap().payload[0]);
            }
            all.sort();
            assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        });
    }

    #[test]
    fn recv_wakes_on_a_later_send() {
        rt().block_on(async {
            let bus = InProcessBus::new(1);
            let mut c = bus.consumer("g", &[topics::LABELS]).unwrap();
            let sender = bus.clone();
            let waiting = tokio::spawn(async move { c.recv().await.unwrap().key });
            tokio::task::yield_now().await;
            sender.send(topics::LABELS, "late", vec![]).await.unwrap();
            let key = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
            assert_eq!(key, "late");
        });
    }
}
