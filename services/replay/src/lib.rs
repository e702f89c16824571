//! The replay stage: dead letters sent back to their input topic after their cause is fixed
//! (`renal replay`). It is a tool an operator runs, not a worker: no run loop, no `serve`.
//!
//! A dead letter written by a message stage carries its input ([`crate::with_input`]). Replaying
//! is three steps: read the dead-letter topics and the ledger (`renal.replays`) to their end,
//! [`plan`] which selected letters can be re-driven (a pure function), then [`redrive`] them: for
//! each, the ledger entry is written first and the input sent second, so one replay id sends a
//! letter's input at most once, even when the replay is interrupted and run again. (A crash
//! between the two leaves that letter recorded but not sent: run again under a new id.)

use base64::Engine as _;
use renal_bus::{send_with_retry, Backoff, Bus, BusError, Output, Record};
use renal_messages::topics::{self, Topic};
use renal_messages::{DeadLetterSource, DeadLetterV1, Message, ReplayV1};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// A dead letter and where it is on its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// The dead-letter topic, partition, offset and key of the letter itself.
    pub at: DeadLetterSource,
    /// What it says.
    pub letter: DeadLetterV1,
}

/// Where a letter is: (dead-letter topic, partition, offset).
pub type Position = (String, i32, i64);

/// The position a [`DeadLetterSource`] names (a letter's, or a ledger entry's letter).
fn position_of(at: &DeadLetterSource) -> Position {
    (at.topic.clone().unwrap_or_default(), at.partition.unwrap_or(-1), at.offset.unwrap_or(-1))
}

impl Letter {
    /// Its position, the ledger's key for it.
    pub fn position(&self) -> Position {
        position_of(&self.at)
    }
}

/// Which letters a replay takes: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The stage that wrote the letter.
    pub stage: Option<String>,
    /// Its reason code.
    pub reason: Option<String>,
    /// Its input's keys (lesion ids); empty: any.
    pub keys: Vec<String>,
}

impl Filter {
    /// Whether `l` is selected.
    pub fn matches(&self, l: &DeadLetterV1) -> bool {
        self.stage.as_ref().is_none_or(|s| *s == l.stage)
            && self.reason.as_ref().is_none_or(|r| *r == l.reason_code)
            && (self.keys.is_empty() || self.keys.contains(&l.source.key))
    }

    /// Whether anything narrows the selection (a replay of everything must be asked for).
    pub fn is_narrowed(&self) -> bool {
        self.stage.is_some() || self.reason.is_some() || !self.keys.is_empty()
    }
}

/// What a replay does with one selected letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send `payload` to `to` with `key`.
    Redrive {
        /// The letter.
        letter: Letter,
        /// Its input topic.
        to: Topic,
        /// The input's key.
        key: String,
        /// The input, as first sent.
        payload: Vec<u8>,
    },
    /// Leave it, and say why.
    Skip {
        /// The letter.
        letter: Letter,
        /// Why it is not re-driven.
        why: &'static str,
    },
}

/// Letters from the records of dead-letter topics; records that are not dead letters are
/// returned apart, by position.
pub fn letters(records: &[Record]) -> (Vec<Letter>, Vec<Position>) {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for r in records {
        match DeadLetterV1::decode(&r.payload) {
            Ok(letter) => out.push(Letter {
                at: DeadLetterSource {
                    topic: Some(r.topic.clone()),
                    partition: Some(r.partition),
                    offset: Some(r.offset),
                    key: r.key.clone(),
                },
                letter,
            }),
            Err(_) => unreadable.push((r.topic.clone(), r.partition, r.offset)),
        }
    }
    (out, unreadable)
}

/// The letters `replay_id` has re-driven already, from the ledger's records.
pub fn done(ledger: &[Record], replay_id: &str) -> BTreeSet<Position> {
    ledger
        .iter()
        .filter_map(|r| ReplayV1::decode(&r.payload).ok())
        .filter(|e| e.replay_id == replay_id)
        .map(|e| position_of(&e.dead_letter))
        .collect()
}

/// What to do with each letter `filter` selects, given the letters this replay id re-drove
/// already. A letter whose input is missing, unreadable, not what its hash says, or whose input
/// topic is unknown is skipped with the reason.
pub fn plan(letters: &[Letter], filter: &Filter, done: &BTreeSet<Position>) -> Vec<Plan> {
    let mut out = Vec::new();
    for l in letters.iter().filter(|l| filter.matches(&l.letter)) {
        let skip = |why| Plan::Skip { letter: l.clone(), why };
        if done.contains(&l.position()) {
            out.push(skip("re-driven under this replay id already"));
            continue;
        }
        let Some(encoded) = &l.letter.input_base64 else {
            out.push(skip("the letter does not carry its input (a file, a label row, a join, or over 512 KiB)"));
            continue;
        };
        let Some(to) = l.letter.source.topic.as_deref().and_then(topics::by_name) else {
            out.push(skip("no known input topic"));
            continue;
        };
        let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            out.push(skip("its input is not valid base64"));
            continue;
        };
        if renal_base::hex::encode(Sha256::digest(&payload)) != l.letter.input_sha256 {
            out.push(skip("its input does not match the letter's input_sha256"));
            continue;
        }
        out.push(Plan::Redrive { letter: l.clone(), to, key: l.letter.source.key.clone(), payload });
    }
    out
}

/// Re-drive every [`Plan::Redrive`] of `plans` under `replay_id`: the ledger entry, then the
/// input. Returns how many were sent.
pub async fn redrive<B: Bus>(bus: &B, replay_id: &str, plans: &[Plan]) -> Result<u64, BusError> {
    let mut sent = 0;
    for p in plans {
        let Plan::Redrive { letter, to, key, payload } = p else { continue };
        let entry = ReplayV1 {
            version: 1,
            replay_id: replay_id.to_string(),
            dead_letter: letter.at.clone(),
            stage: letter.letter.stage.clone(),
            reason_code: letter.letter.reason_code.clone(),
            to_topic: to.name.to_string(),
            input_sha256: letter.letter.input_sha256.clone(),
            at: renal_base::now_rfc3339(),
        };
        let ledger = Output { topic: topics::REPLAYS, key: replay_id.to_string(), payload: entry.encode() };
        send_with_retry(bus, &ledger, Backoff::WORKER).await?;
        send_with_retry(bus, &Output { topic: *to, key: key.clone(), payload: payload.clone() }, Backoff::WORKER)
            .await?;
        sent += 1;
    }
    Ok(sent)
}

/// Every dead-letter topic of the graph.
pub fn dead_letter_topics() -> Vec<Topic> {
    topics::ALL.iter().copied().filter(|t| t.payload == "DeadLetterV1").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_bus::{dead_letter, with_input, Consumer, InProcessBus};

    fn letter(offset: i64, stage: &str, code: &str, key: &str, input: Option<&[u8]>) -> Letter {
        let source = DeadLetterSource {
            topic: Some("renal.scores".into()),
            partition: Some(0),
            offset: Some(offset),
            key: key.into(),
        };
        let bytes = input.unwrap_or(b"gone");
        let mut l = dead_letter(stage, source, code, "why", renal_base::hex::encode(Sha256::digest(bytes)));
        if let Some(i) = input {
            l = with_input(l, i);
        }
        Letter {
            at: DeadLetterSource {
                topic: Some("renal.dead.ensemble".into()),
                partition: Some(0),
                offset: Some(offset),
                key: key.into(),
            },
            letter: l,
        }
    }

    #[test]
    fn plans_select_by_stage_reason_and_key_and_say_why_they_skip() {
        let all = vec![
            letter(0, "ensemble", "unknown_lesion", "MAY-0001", Some(b"{\"a\":1}")),
            letter(1, "ensemble", "missing_modality", "MAY-0002", None),
            letter(2, "inference", "bad_composite", "MAY-0003", Some(b"x")),
            letter(3, "ensemble", "unknown_lesion", "MAY-0004", Some(b"{\"b\":2}")),
        ];
        let ensemble = Filter { stage: Some("ensemble".into()), ..Default::default() };
        let p = plan(&all, &ensemble, &BTreeSet::new());
        assert_eq!(p.len(), 3, "the inference letter is not selected");
        assert!(matches!(&p[0], Plan::Redrive { to, key, payload, .. }
            if to.name == "renal.scores" && key == "MAY-0001" && payload == b"{\"a\":1}"));
        assert!(matches!(&p[1], Plan::Skip { why, .. } if why.contains("does not carry its input")));
        let one = Filter { keys: vec!["MAY-0004".into()], ..Default::default() };
        assert_eq!(plan(&all, &one, &BTreeSet::new()).len(), 1);
        // Done already under this id: skipped.
        let done: BTreeSet<Position> = [all[0].position()].into();
        let again = plan(&all, &ensemble, &done);
        assert!(matches!(&again[0], Plan::Skip { why, .. } if why.contains("already")));
        // A letter whose input was tampered with (or cut) is not sent.
        let mut bad = all[3].clone();
        bad.letter.input_base64 = Some(base64::engine::general_purpose::STANDARD.encode(b"{\"b\":3}"));
        assert!(
            matches!(&plan(&[bad], &Filter::default(), &BTreeSet::new())[0], Plan::Skip { why, .. } if why.contains("input_sha256"))
        );
        assert!(!Filter::default().is_narrowed() && ensemble.is_narrowed());
    }

    #[test]
    fn an_input_over_the_limit_is_named_but_not_carried() {
        let big = vec![b'x'; renal_messages::DEAD_LETTER_INPUT_MAX_BYTES + 1];
        let l = letter(0, "ensemble", "unknown_lesion", "MAY-0001", Some(&big));
        assert_eq!(l.letter.input_base64, None);
        let small = letter(0, "ensemble", "unknown_lesion", "MAY-0001", Some(b"{}"));
        assert_eq!(small.letter.input_base64.as_deref(), Some("e30="));
    }

    #[tokio::test]
    async fn a_replay_id_redrives_each_letter_once() {
        let bus = InProcessBus::new(1);
        let all = vec![letter(0, "ensemble", "unknown_lesion", "MAY-0001", Some(b"{\"a\":1}"))];
        let filter = Filter { stage: Some("ensemble".into()), ..Default::default() };
        let first = plan(&all, &filter, &BTreeSet::new());
        assert_eq!(redrive(&bus, "fix-1", &first).await.unwrap(), 1);
        // The ledger as the next run reads it.
        let mut ledger_consumer = bus.consumer("check-ledger", &[topics::REPLAYS]).unwrap();
        let entry = ledger_consumer.recv().await.unwrap();
        let done_1 = done(std::slice::from_ref(&entry), "fix-1");
        assert_eq!(redrive(&bus, "fix-1", &plan(&all, &filter, &done_1)).await.unwrap(), 0, "fix-1 again: nothing");
        assert!(done(std::slice::from_ref(&entry), "fix-2").is_empty(), "another id starts afresh");
        let mut scores = bus.consumer("check", &[topics::SCORES]).unwrap();
        let r = scores.recv().await.unwrap();
        assert_eq!((r.key.as_str(), r.payload.as_slice()), ("MAY-0001", &b"{\"a\":1}"[..]));
    }
}
