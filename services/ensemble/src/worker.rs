//! The ensemble stage: `renal.scores` joined with `renal.lesions` by lesion id, out to
//! `renal.predictions`; dead letters to `renal.dead.ensemble`.
//!
//! Two loops run in one worker, each with its own consumer group and the usual at-least-once
//! contract ([`renal_bus::run_stage`]):
//! - **lesions** (`renal-ensemble-lesions`): each `LesionV1`'s clinical values (age, sex,
//!   tumour volume) go into the join table ([`crate::join`]) under its lesion id and revision;
//! - **scores** (`renal-ensemble`): each `ScoresV1` is matched with the row of the same lesion
//!   id *and* revision, the clinical model's raw output is computed from it (a missing age or
//!   sex filled as the bundle says), and the meta-classifier and calibrator give the
//!   probability; the prediction names the ensemble bundle and the CNN bundle.
//!
//! A score whose lesion has not arrived yet (the lesion message is late, or its partition is
//! behind) is retried with back-off for up to `lesion_wait_ms`, measured from the first
//! attempt; after that it is dead-lettered as `unknown_lesion`. While a score waits, later
//! scores on its partition wait behind it (their offsets cannot be committed past it). A worker
//! restarted mid-wait starts the wait again.
//!
//! A score without one series' probability (`missing_modality`) is parked in the state folder
//! and its offset committed; a later score of the same lesion revision with the other
//! probability completes it and is predicted. A sweeper dead-letters parked scores still
//! incomplete `modality_wait_ms` after their first part arrived (reason `missing_modality`,
//! with the first part's source). Parking rather than retrying matters here: the completing
//! message has the same key, so it sits behind the waiting one on the same partition.
//!
//! Other dead-letter reasons: `bad_message` (not a ScoresV1 or LesionV1, a probability outside
//! [0, 1], a lesion id that cannot name a table file), `model_mismatch` (scores from a CNN
//! bundle other than the one the meta-classifier was fitted on; serving them would feed the
//! trees outputs on another scale).
//!
//! The class is `malignant` when the calibrated probability is at least the bundle's threshold
//! (0.5 unless the bundle says otherwise).

use crate::bundle::Bundle;
use crate::join::{recorded, ClinicalRow, ClinicalTable, JoinError, PartialScore, PartialTable};
use renal_bus::{run_stage, Bus, BusError, Outcome, Output, Record, StageConfig, StageStats};
use renal_messages::civil::now_rfc3339;
use renal_messages::{topics, DeadLetterSource, DeadLetterV1, LesionV1, Message, PredictionV1, Provenance, ScoresV1};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Consumer group of the scores loop.
pub const GROUP: &str = "renal-ensemble";
/// Consumer group of the lesions loop.
pub const LESION_GROUP: &str = "renal-ensemble-lesions";

/// `[ensemble]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Model registry folder (holds `ensemble/<version>/`).
    pub registry: PathBuf,
    /// Ensemble bundle to serve, e.g. `ens-1a2b3c4d5e6f`.
    pub model_version: String,
    /// Folder of the join tables (`lesions/`: clinical values by lesion id; `partial-scores/`:
    /// parked half scores); keep it on a persistent volume.
    pub state_dir: PathBuf,
    /// Longest wait for a scored lesion's clinical values, ms (default 30,000).
    #[serde(default = "default_wait_ms")]
    pub lesion_wait_ms: u64,
    /// Longest wait for the other half of a score that lacks one series' probability, ms
    /// (default 30,000).
    #[serde(default = "default_wait_ms")]
    pub modality_wait_ms: u64,
}

fn default_wait_ms() -> u64 {
    30_000
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn reject(code: &str, reason: String) -> Outcome {
    Outcome::Reject { code: code.into(), reason }
}

/// The lesions loop's step: keep the lesion's clinical values.
pub fn take_lesion(record: &Record, table: &ClinicalTable) -> Outcome {
    let lesion = match LesionV1::decode(&record.payload) {
        Ok(l) => l,
        Err(e) => return reject("bad_message", e.to_string()),
    };
    if !(lesion.tumour_volume_ml.is_finite() && lesion.tumour_volume_ml >= 0.0) {
        return reject("bad_message", format!("tumour volume {} mL is not a volume", lesion.tumour_volume_ml));
    }
    match table.put(&ClinicalRow::of(&lesion)) {
        Ok(()) => Outcome::Done(Vec::new()),
        Err(e @ JoinError::BadId(_)) => reject("bad_message", e.to_string()),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// A scores payload: whole, or lacking one series' probability.
#[derive(Debug, Clone, PartialEq)]
enum Decoded {
    Whole(ScoresV1),
    Part { case_id: String, revision: u32, site: String, model_version: String, t2: Option<f64>, t1c: Option<f64> },
}

/// The fields a partial score must still have.
#[derive(Deserialize)]
struct Lenient {
    case_id: String,
    revision: u32,
    site: String,
    model_version: String,
    t2_probability: Option<f64>,
    t1c_probability: Option<f64>,
}

/// A scores payload, or why it cannot be used.
fn decode_scores(payload: &[u8]) -> Result<Decoded, Outcome> {
    let decoded = match ScoresV1::decode(payload) {
        Ok(s) => Decoded::Whole(s),
        Err(e) => match serde_json::from_slice::<Lenient>(payload) {
            Ok(l) if l.t2_probability.is_none() || l.t1c_probability.is_none() => Decoded::Part {
                case_id: l.case_id,
                revision: l.revision,
                site: l.site,
                model_version: l.model_version,
                t2: l.t2_probability,
                t1c: l.t1c_probability,
            },
            _ => return Err(reject("bad_message", e.to_string())),
        },
    };
    let probabilities = match &decoded {
        Decoded::Whole(s) => [Some(s.t2_probability), Some(s.t1c_probability)],
        Decoded::Part { t2, t1c, .. } => [*t2, *t1c],
    };
    for (p, role) in probabilities.into_iter().zip(["T2", "T1C"]) {
        if let Some(p) = p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(reject("bad_message", format!("{role} probability {p} is not in [0, 1]")));
        }
    }
    Ok(decoded)
}

/// The prediction for a score and its lesion's row.
pub fn predict(bundle: &Bundle, scores: &ScoresV1, row: &ClinicalRow, score_payload: &[u8]) -> PredictionV1 {
    let (age, sex) = recorded(&row.clinical);
    let (x, _) = bundle.content.fill.features(age, sex, row.tumour_volume_ml);
    let call = bundle.content.call(scores.t2_probability, scores.t1c_probability, &x);
    let mut h = Sha256::new();
    h.update(score_payload);
    h.update(serde_json::to_vec(row).expect("row serialises"));
    h.update(bundle.version.as_bytes());
    PredictionV1 {
        version: 1,
        case_id: scores.case_id.clone(),
        revision: scores.revision,
        site: row.site.clone(),
        probability: call.probability,
        class: if call.malignant { "malignant" } else { "benign" }.into(),
        threshold: bundle.content.threshold,
        inputs: call.inputs,
        model_version: bundle.version.clone(),
        cnn_model_version: scores.model_version.clone(),
        provenance: Provenance {
            code_version: env!("CARGO_PKG_VERSION").into(),
            produced_at: now_rfc3339(),
            input_sha256: renal_messages::lower_hex(&h.finalize()),
        },
    }
}

/// The scores loop's state: the bundle, the tables, and when each waiting score was first seen.
pub struct Scoring {
    bundle: Bundle,
    table: ClinicalTable,
    partials: PartialTable,
    wait: Duration,
    first_seen: HashMap<(String, i32, i64), Instant>,
}

impl Scoring {
    /// Serve `bundle`, joining against `table`, waiting at most `lesion_wait` for a lesion;
    /// partial scores are parked in `partials`.
    pub fn new(bundle: Bundle, table: ClinicalTable, partials: PartialTable, lesion_wait: Duration) -> Scoring {
        Scoring { bundle, table, partials, wait: lesion_wait, first_seen: HashMap::new() }
    }

    /// Scores still waiting for their lesion.
    pub fn waiting(&self) -> usize {
        self.first_seen.len()
    }

    /// One attempt at a score record, `now` being the attempt's time.
    pub fn process(&mut self, record: &Record, now: Instant) -> Outcome {
        let decoded = match decode_scores(&record.payload) {
            Ok(d) => d,
            Err(outcome) => return outcome,
        };
        let model_version = match &decoded {
            Decoded::Whole(s) => &s.model_version,
            Decoded::Part { model_version, .. } => model_version,
        };
        if *model_version != self.bundle.content.cnn_version {
            return reject(
                "model_mismatch",
                format!(
                    "scores come from CNN bundle {model_version}; ensemble {} was fitted on {}",
                    self.bundle.version, self.bundle.content.cnn_version
                ),
            );
        }
        match decoded {
            Decoded::Whole(scores) => self.join(record, &scores, now, false),
            Decoded::Part { case_id, revision, site, model_version, t2, t1c } => {
                let parked = match self.partials.get(&case_id, revision) {
                    Ok(p) => p,
                    Err(e @ JoinError::BadId(_)) => return reject("bad_message", e.to_string()),
                    Err(e) => return Outcome::Retry(e.to_string()),
                };
                let (t2, t1c) = (
                    t2.or(parked.as_ref().and_then(|p| p.t2_probability)),
                    t1c.or(parked.as_ref().and_then(|p| p.t1c_probability)),
                );
                if let (Some(t2), Some(t1c)) = (t2, t1c) {
                    let scores = ScoresV1 {
                        version: 1,
                        case_id,
                        revision,
                        site,
                        t2_probability: t2,
                        t1c_probability: t1c,
                        embeddings: [Vec::new(), Vec::new()],
                        model_version,
                        provenance: Provenance {
                            code_version: String::new(),
                            produced_at: String::new(),
                            input_sha256: String::new(),
                        },
                    };
                    return self.join(record, &scores, now, true);
                }
                let part = PartialScore {
                    first_seen_ms: parked.as_ref().map_or_else(now_ms, |p| p.first_seen_ms),
                    source: parked.as_ref().map_or_else(
                        || DeadLetterSource {
                            topic: Some(record.topic.clone()),
                            partition: Some(record.partition),
                            offset: Some(record.offset),
                            key: record.key.clone(),
                        },
                        |p| p.source.clone(),
                    ),
                    input_sha256: parked.as_ref().map_or_else(
                        || renal_messages::lower_hex(&Sha256::digest(&record.payload)),
                        |p| p.input_sha256.clone(),
                    ),
                    case_id,
                    revision,
                    site,
                    model_version,
                    t2_probability: t2,
                    t1c_probability: t1c,
                };
                match self.partials.put(&part) {
                    Ok(()) => Outcome::Done(Vec::new()),
                    Err(e) => Outcome::Retry(e.to_string()),
                }
            }
        }
    }

    /// Join a whole score with its lesion's values (waiting for them), predict, and forget the
    /// parked parts it was completed from (`completes_parked`).
    fn join(&mut self, record: &Record, scores: &ScoresV1, now: Instant, completes_parked: bool) -> Outcome {
        let key = (record.topic.clone(), record.partition, record.offset);
        match self.table.get(&scores.case_id, scores.revision) {
            Ok(Some(row)) => {
                if completes_parked {
                    if let Err(e) = self.partials.remove(&scores.case_id, scores.revision) {
                        return Outcome::Retry(e.to_string());
                    }
                }
                self.first_seen.remove(&key);
                let p = predict(&self.bundle, scores, &row, &record.payload);
                Outcome::Done(vec![Output { topic: topics::PREDICTIONS, key: p.case_id.clone(), payload: p.encode() }])
            }
            Ok(None) => {
                let since = *self.first_seen.entry(key.clone()).or_insert(now);
                let waited = now.saturating_duration_since(since);
                if waited < self.wait {
                    Outcome::Retry(format!(
                        "lesion revision {} not on renal.lesions yet (waited {} of {} ms)",
                        scores.revision,
                        waited.as_millis(),
                        self.wait.as_millis()
                    ))
                } else {
                    self.first_seen.remove(&key);
                    reject(
                        "unknown_lesion",
                        format!(
                            "no renal.lesions message for this lesion, revision {}, within {} ms",
                            scores.revision,
                            self.wait.as_millis()
                        ),
                    )
                }
            }
            Err(e @ JoinError::BadId(_)) => reject("bad_message", e.to_string()),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// Parked partial scores whose first part arrived at least `wait_ms` before `now_ms`, with the
/// dead letter each one gets.
pub fn expired(partials: &PartialTable, now_ms: u64, wait_ms: u64) -> Vec<(PartialScore, DeadLetterV1)> {
    partials
        .all()
        .into_iter()
        .flatten()
        .filter(|p| now_ms.saturating_sub(p.first_seen_ms) >= wait_ms)
        .map(|p| {
            let missing = if p.t2_probability.is_none() { "T2" } else { "T1C" };
            let letter = DeadLetterV1 {
                version: 1,
                stage: "ensemble".into(),
                reason_code: "missing_modality".into(),
                reason: format!(
                    "no {missing} probability for this lesion, revision {}, within {wait_ms} ms of the {} one",
                    p.revision,
                    if missing == "T2" { "T1C" } else { "T2" }
                ),
                source: p.source.clone(),
                input_sha256: p.input_sha256.clone(),
                at: now_rfc3339(),
            };
            (p, letter)
        })
        .collect()
}

/// Dead-letter expired partial scores every `period` until `stop` turns true; returns how many.
async fn sweep<B: Bus>(
    bus: B,
    partials: PartialTable,
    wait_ms: u64,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, BusError> {
    let mut sent = 0;
    loop {
        for (p, letter) in expired(&partials, now_ms(), wait_ms) {
            bus.send(topics::DEAD_ENSEMBLE, &p.source.key, letter.encode()).await?;
            // Sent before forgotten: a crash in between sends the letter again, never loses it.
            partials.remove(&p.case_id, p.revision).map_err(|e| BusError::Transient(e.to_string()))?;
            sent += 1;
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return Ok(sent),
        }
    }
}

/// What both loops did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsembleStats {
    /// The lesions loop.
    pub lesions: StageStats,
    /// The scores loop.
    pub scores: StageStats,
    /// Partial scores dead-lettered after `modality_wait_ms`.
    pub partial_dead_letters: u64,
}

/// Run `task`, then tell the others to stop (whether it ended on the signal or failed).
async fn then_stop<T>(task: impl Future<Output = T>, stop: &tokio::sync::watch::Sender<bool>) -> T {
    let out = task.await;
    let _ = stop.send(true);
    out
}

/// Run both loops until `shutdown` resolves (or one of them fails, which stops the other);
/// `progress` gets the number of score attempts so far.
pub async fn run<B: Bus>(
    cfg: &EnsembleConfig,
    bundle: Bundle,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EnsembleStats, BusError> {
    let table = ClinicalTable::open(&cfg.state_dir.join("lesions")).map_err(|e| BusError::Fatal(e.to_string()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let lesions = {
        let table = table.clone();
        let loop_ = run_stage(
            bus.clone(),
            StageConfig::new("ensemble", LESION_GROUP, vec![topics::LESIONS]),
            move |r: Record| {
                let o = take_lesion(&r, &table);
                async move { o }
            },
            until_stopped(stopped.clone()),
        );
        then_stop(loop_, &stop)
    };
    let partials =
        PartialTable::open(&cfg.state_dir.join("partial-scores")).map_err(|e| BusError::Fatal(e.to_string()))?;
    let sweeper = {
        let period = Duration::from_millis((cfg.modality_wait_ms / 4).clamp(10, 1_000));
        let loop_ = sweep(bus.clone(), partials.clone(), cfg.modality_wait_ms, period, stopped.clone());
        then_stop(loop_, &stop)
    };
    let mut scoring = Scoring::new(bundle, table, partials, Duration::from_millis(cfg.lesion_wait_ms));
    let mut attempts = 0u64;
    let scores = {
        let loop_ = run_stage(
            bus,
            StageConfig::new("ensemble", GROUP, vec![topics::SCORES]),
            move |r: Record| {
                attempts += 1;
                progress(attempts);
                let o = scoring.process(&r, Instant::now());
                async move { o }
            },
            until_stopped(stopped.clone()),
        );
        then_stop(loop_, &stop)
    };
    let signal = async {
        let mut rx = stopped.clone();
        tokio::select! {
            _ = shutdown => { let _ = stop.send(true); }
            _ = rx.wait_for(|s| *s) => {}
        }
    };
    let ((), lesions, scores, swept) = tokio::join!(signal, lesions, scores, sweeper);
    Ok(EnsembleStats { lesions: lesions?, scores: scores?, partial_dead_letters: swept? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{self, tests::content};
    use renal_bus::{Consumer, InProcessBus};
    use renal_messages::{BlobRef, Clinical, DeadLetterV1, LesionQc, Sex};

    const CNN: &str = "cnn-0123456789ab";

    fn lesion(case_id: &str, revision: u32, age: Option<u32>, volume: f64) -> LesionV1 {
        let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
        LesionV1 {
            version: 1,
            case_id: case_id.into(),
            revision,
            site: "MAY".into(),
            patient_pseudonym: "p".into(),
            clinical: Clinical { age_years: age, sex: Some(Sex::M) },
            tumour_volume_ml: volume,
            composites: [blob.clone(), blob.clone()],
            volumes: [blob.clone(), blob],
            qc: LesionQc { mask_voxels: [1, 1], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
            other_readers: Vec::new(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
        }
    }

    fn scores(case_id: &str, revision: u32, t2: f64, t1c: f64, cnn: &str) -> ScoresV1 {
        ScoresV1 {
            version: 1,
            case_id: case_id.into(),
            revision,
            site: "MAY".into(),
            t2_probability: t2,
            t1c_probability: t1c,
            embeddings: [vec![0.0; 16], vec![0.0; 16]],
            model_version: cnn.into(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
        }
    }

    fn record(topic: &str, offset: i64, key: &str, payload: Vec<u8>) -> Record {
        Record { topic: topic.into(), partition: 0, offset, key: key.into(), payload }
    }

    fn code(o: &Outcome) -> &str {
        match o {
            Outcome::Reject { code, .. } => code,
            Outcome::Done(_) => "done",
            Outcome::Retry(_) => "retry",
        }
    }

    #[test]
    fn scores_join_their_own_lesion_wait_for_a_late_one_and_give_up_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("models");
        let b = bundle::save(&reg, content(CNN), "t", "t").unwrap();
        let table = ClinicalTable::open(&dir.path().join("state")).unwrap();
        let partials = PartialTable::open(&dir.path().join("partials")).unwrap();
        let mut s = Scoring::new(b.clone(), table.clone(), partials.clone(), Duration::from_secs(10));
        let t0 = Instant::now();
        let lesions = "renal.lesions";
        // Two lesions with different clinical values, stored in the reverse of the scores' order.
        for (i, l) in [lesion("MAY-0002", 1, Some(80), 90.0), lesion("MAY-0001", 1, None, 2.0)].iter().enumerate() {
            assert_eq!(code(&take_lesion(&record(lesions, i as i64, &l.case_id, l.encode()), &table)), "done");
        }
        for (offset, id) in ["MAY-0001", "MAY-0002"].iter().enumerate() {
            let sc = scores(id, 1, 0.7, 0.4, CNN);
            let Outcome::Done(out) = s.process(&record("renal.scores", offset as i64, id, sc.encode()), t0) else {
                panic!("{id}")
            };
            let p = PredictionV1::decode(&out[0].payload).unwrap();
            assert_eq!((out[0].key.as_str(), out[0].topic), (*id, topics::PREDICTIONS));
            // Its own lesion's values: MAY-0001 has no age (filled with the bundle's 55).
            let want_x = if *id == "MAY-0001" { [55.0, 1.0, 2.0] } else { [80.0, 1.0, 90.0] };
            let want = b.content.call(0.7, 0.4, &want_x);
            assert_eq!(p.inputs, want.inputs, "{id}");
            assert_eq!(p.probability, want.probability);
            assert_eq!(p.class, if want.malignant { "malignant" } else { "benign" });
            assert_eq!((p.model_version.as_str(), p.cnn_model_version.as_str()), (b.version.as_str(), CNN));
        }

        // A score ahead of its lesion waits; the lesion arrives; the retry succeeds.
        let early = record("renal.scores", 7, "MAY-0003", scores("MAY-0003", 1, 0.2, 0.3, CNN).encode());
        assert_eq!(code(&s.process(&early, t0)), "retry");
        assert_eq!(code(&s.process(&early, t0 + Duration::from_secs(4))), "retry");
        let l3 = lesion("MAY-0003", 1, Some(44), 5.0);
        assert_eq!(code(&take_lesion(&record(lesions, 5, "MAY-0003", l3.encode()), &table)), "done");
        assert_eq!(code(&s.process(&early, t0 + Duration::from_secs(5))), "done");
        assert_eq!(s.waiting(), 0);

        // A score for revision 2 does not join revision 1's values; after the wait it is dead.
        let newer = record("renal.scores", 8, "MAY-0003", scores("MAY-0003", 2, 0.2, 0.3, CNN).encode());
        assert_eq!(code(&s.process(&newer, t0)), "retry");
        assert_eq!(code(&s.process(&newer, t0 + Duration::from_millis(9_999))), "retry");
        assert_eq!(code(&s.process(&newer, t0 + Duration::from_secs(10))), "unknown_lesion");
        assert_eq!(s.waiting(), 0);

        let other = record("renal.scores", 9, "MAY-0001", scores("MAY-0001", 1, 0.2, 0.3, "cnn-ffffffffffff").encode());
        assert_eq!(code(&s.process(&other, t0)), "model_mismatch");
        // Half a score is parked (and its offset moves on); the other half completes it.
        let half = |id: &str, drop: &str, offset: i64| {
            let mut v = serde_json::to_value(scores(id, 1, 0.2, 0.3, CNN)).unwrap();
            v.as_object_mut().unwrap().remove(drop);
            record("renal.scores", offset, id, serde_json::to_vec(&v).unwrap())
        };
        assert_eq!(s.process(&half("MAY-0001", "t1c_probability", 10), t0), Outcome::Done(Vec::new()));
        assert!(partials.get("MAY-0001", 1).unwrap().is_some_and(|p| p.t2_probability == Some(0.2)));
        let Outcome::Done(out) = s.process(&half("MAY-0001", "t2_probability", 11), t0) else { panic!() };
        let p = PredictionV1::decode(&out[0].payload).unwrap();
        assert_eq!(p.inputs, b.content.call(0.2, 0.3, &[55.0, 1.0, 2.0]).inputs);
        assert_eq!(partials.get("MAY-0001", 1).unwrap(), None, "forgotten once predicted");
        // A half that nothing completes: dead-lettered by the sweep once the wait is over.
        assert_eq!(s.process(&half("MAY-0002", "t2_probability", 12), t0), Outcome::Done(Vec::new()));
        let first = partials.get("MAY-0002", 1).unwrap().unwrap().first_seen_ms;
        assert!(expired(&partials, first + 999, 1_000).is_empty());
        let gone = expired(&partials, first + 1_000, 1_000);
        assert_eq!(gone.len(), 1);
        let letter = &gone[0].1;
        assert_eq!((letter.reason_code.as_str(), letter.source.offset), ("missing_modality", Some(12)));
        assert!(letter.reason.contains("no T2 probability"), "{}", letter.reason);
        assert_eq!(code_of(&mut s, b"[1, 2]"), "bad_message");
        assert_eq!(code_of(&mut s, &scores("MAY-0001", 1, 1.5, 0.3, CNN).encode()), "bad_message");
        assert_eq!(code_of(&mut s, &scores("../etc", 1, 0.5, 0.3, CNN).encode()), "bad_message");
        let bad = lesion("MAY-0004", 1, Some(50), f64::NAN);
        assert_eq!(code(&take_lesion(&record(lesions, 9, "x", bad.encode()), &table)), "bad_message");
        assert_eq!(code(&take_lesion(&record(lesions, 9, "x", b"{}".to_vec()), &table)), "bad_message");
    }

    fn code_of(s: &mut Scoring, payload: &[u8]) -> String {
        code(&s.process(&record("renal.scores", 99, "k", payload.to_vec()), Instant::now())).to_string()
    }

    #[test]
    fn the_worker_joins_over_the_bus_and_dead_letters_what_never_joins() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("models");
        let b = bundle::save(&reg, content(CNN), "t", "t").unwrap();
        let cfg = EnsembleConfig {
            registry: reg,
            model_version: b.version.clone(),
            state_dir: dir.path().join("state"),
            lesion_wait_ms: 800,
            modality_wait_ms: 300,
        };
        let bus = InProcessBus::new(3);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stats = rt.block_on(async {
            // Scores first, lesions later: the join waits for them.
            for i in 0..4 {
                let id = format!("MAY-{i:04}");
                bus.send(topics::SCORES, &id, scores(&id, 1, 0.6, 0.5, CNN).encode()).await.unwrap();
            }
            bus.send(topics::SCORES, "MAY-0099", scores("MAY-0099", 1, 0.6, 0.5, CNN).encode()).await.unwrap();
            let mut half = serde_json::to_value(scores("MAY-0098", 1, 0.6, 0.5, CNN)).unwrap();
            half.as_object_mut().unwrap().remove("t2_probability");
            bus.send(topics::SCORES, "MAY-0098", serde_json::to_vec(&half).unwrap()).await.unwrap();
            let feeder = bus.clone();
            let feed = async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                for i in (0..4).rev() {
                    let l = lesion(&format!("MAY-{i:04}"), 1, Some(50 + i), 10.0 * f64::from(i));
                    feeder.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
                }
            };
            let watcher = bus.clone();
            let done = async move {
                let mut out = watcher.consumer("check", &[topics::PREDICTIONS, topics::DEAD_ENSEMBLE]).unwrap();
                for _ in 0..6 {
                    out.recv().await.unwrap();
                }
                // Let the loops commit what they delivered.
                tokio::time::sleep(Duration::from_millis(1_200)).await;
            };
            let (_, stats) = tokio::join!(feed, run(&cfg, b.clone(), bus.clone(), done, &|_| {}));
            stats.unwrap()
        });
        let predictions: Vec<PredictionV1> =
            bus.records(topics::PREDICTIONS).iter().map(|r| PredictionV1::decode(&r.payload).unwrap()).collect();
        assert_eq!(predictions.len(), 4);
        for p in &predictions {
            let i: u32 = p.case_id[4..].parse().unwrap();
            let want = b.content.call(0.6, 0.5, &[f64::from(50 + i), 1.0, 10.0 * f64::from(i)]);
            assert_eq!(p.inputs, want.inputs, "{}", p.case_id);
        }
        let dead: Vec<DeadLetterV1> =
            bus.records(topics::DEAD_ENSEMBLE).iter().map(|r| DeadLetterV1::decode(&r.payload).unwrap()).collect();
        let codes: std::collections::BTreeSet<(&str, &str)> =
            dead.iter().map(|d| (d.reason_code.as_str(), d.source.key.as_str())).collect();
        assert_eq!(codes, [("missing_modality", "MAY-0098"), ("unknown_lesion", "MAY-0099")].into_iter().collect());
        assert_eq!((stats.scores.inputs, stats.scores.outputs, stats.scores.dead_letters), (6, 4, 1));
        assert_eq!(stats.partial_dead_letters, 1);
        assert_eq!((stats.lesions.inputs, stats.lesions.outputs), (4, 0));
        assert!(stats.scores.retries > 0, "the early scores waited");
        assert!(bus.caught_up(GROUP, topics::SCORES) && bus.caught_up(LESION_GROUP, topics::LESIONS));
    }
}
