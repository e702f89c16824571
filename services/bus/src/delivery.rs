//! The delivery contract's small parts, each written once: how a failure is sorted into
//! dead-letter or retry ([`Failure`], [`Outcome::failed`]), how a dead letter is built
//! ([`dead_letter`]), and how a message is sent when a broker may be briefly away
//! ([`send_with_retry`]).

use crate::{Bus, BusError, Delivery, Outcome, Output, Record};
use renal_messages::topics::Topic;
use renal_messages::{DeadLetterSource, DeadLetterV1, Message, DEAD_LETTER_INPUT_MAX_BYTES};
use std::time::Duration;

/// A typed processing error that knows what to do with its input.
///
/// `code()` is the dead-letter reason (snake_case, a bounded set per stage) for a failure that
/// the same input will always meet again, and `None` for a transient one (a store that cannot
/// be reached, a disk that is full) that is worth retrying after a back-off.
pub trait Failure: std::fmt::Display {
    /// The dead-letter reason, or `None` to retry.
    fn code(&self) -> Option<&'static str>;
}

impl Outcome {
    /// The input can never succeed: dead-letter it with `code` and a reason that names no
    /// patient.
    pub fn reject(code: &str, reason: impl Into<String>) -> Outcome {
        Outcome::Reject { code: code.into(), reason: reason.into() }
    }

    /// What a typed failure means for its input: a dead letter under its code, or a retry.
    pub fn failed<E: Failure + ?Sized>(error: &E) -> Outcome {
        match error.code() {
            Some(code) => Outcome::reject(code, error.to_string()),
            None => Outcome::Retry(error.to_string()),
        }
    }

    /// Success with one message keyed by `key`.
    pub fn emit<M: Message>(topic: Topic, key: &str, message: &M) -> Outcome {
        Outcome::Done(vec![Output { topic, key: key.into(), payload: message.encode() }])
    }
}

impl Record {
    /// The payload as a message of type `M`, or the `bad_message` dead letter it earns.
    pub fn decode<M: Message>(&self) -> Result<M, Outcome> {
        M::decode(&self.payload).map_err(|e| Outcome::reject("bad_message", e.to_string()))
    }

    /// This record as the source of a dead letter.
    pub fn source(&self) -> DeadLetterSource {
        DeadLetterSource {
            topic: Some(self.topic.clone()),
            partition: Some(self.partition),
            offset: Some(self.offset),
            key: self.key.clone(),
        }
    }
}

/// The one way a dead letter is made. `reason` and `source.key` must not name a patient;
/// `input_sha256` identifies the failed input (the record's payload, a file's bytes, ...).
pub fn dead_letter(
    stage: &str,
    source: DeadLetterSource,
    code: &str,
    reason: impl Into<String>,
    input_sha256: String,
) -> DeadLetterV1 {
    DeadLetterV1 {
        version: 1,
        stage: stage.into(),
        reason_code: code.into(),
        reason: reason.into(),
        source,
        input_sha256,
        at: renal_base::now_rfc3339(),
        input_base64: None,
    }
}

/// `letter` carrying its input message, so `renal replay` can send it again after a fix (not
/// when the input is over [`DEAD_LETTER_INPUT_MAX_BYTES`]: the letter still names it by hash).
pub fn with_input(mut letter: DeadLetterV1, input: &[u8]) -> DeadLetterV1 {
    use base64::Engine as _;
    if input.len() <= DEAD_LETTER_INPUT_MAX_BYTES {
        letter.input_base64 = Some(base64::engine::general_purpose::STANDARD.encode(input));
    }
    letter
}

/// Exponential back-off: `initial_ms`, doubling per attempt, at most `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay, ms.
    pub initial_ms: u64,
    /// Largest delay, ms.
    pub max_ms: u64,
}

impl Backoff {
    /// 200 ms doubling to 10 s: what every worker uses unless its tests need it faster.
    pub const WORKER: Backoff = Backoff { initial_ms: 200, max_ms: 10_000 };

    /// The delay after `delay_ms`.
    pub fn next(self, delay_ms: u64) -> u64 {
        (delay_ms.max(1) * 2).min(self.max_ms.max(1))
    }
}

/// A send that outlasts a broker's absence: transient failures (broker down, leader moving,
/// delivery timed out) are retried with `backoff` until the message is acknowledged; only a
/// failure that retrying cannot fix (unknown topic, message too large) is returned. Returns the
/// delivery and how many attempts failed before it.
pub async fn send_with_retry<B: Bus>(bus: &B, out: &Output, backoff: Backoff) -> Result<(Delivery, u64), BusError> {
    let mut delay = backoff.initial_ms;
    let mut failed = 0;
    loop {
        match bus.send(out.topic, &out.key, out.payload.clone()).await {
            Ok(d) => return Ok((d, failed)),
            Err(BusError::Transient(why)) => {
                failed += 1;
                tracing::debug!(topic = out.topic.name, "send failed ({why}); retrying in {delay} ms");
                tokio::time::sleep(Duration::from_millis(delay)).await;
                delay = backoff.next(delay);
            }
            Err(e) => return Err(e),
        }
    }
}
