//! The ensemble step: a lesion's clinical values kept by lesion id ([`take_lesion`]), and a
//! score joined with them into a calibrated prediction ([`Scoring::process`]); each answers a
//! typed error whose code is the dead-letter reason.
//!
//! A score whose lesion has not arrived yet (the lesion message is late, or its partition is
//! behind) is retried with back-off for up to `lesion_wait_ms`, measured from the first
//! attempt; after that it is dead-lettered as `unknown_lesion`. A worker restarted mid-wait
//! starts the wait again.
//!
//! A score without one series' probability is parked in the state folder and its input moved
//! past; a later score of the same lesion revision with the other probability completes it and
//! is predicted. [`expired`] lists parked scores still incomplete `modality_wait_ms` after their
//! first part arrived (reason `missing_modality`, with the first part's source). Parking rather
//! than retrying matters here: the completing message has the same key, so it sits behind the
//! waiting one on the same partition.
//!
//! Other reasons: `bad_message` (not a ScoresV1 or LesionV1, a probability outside [0, 1], a
//! lesion id that cannot name a table file), `model_mismatch` (scores from a CNN bundle none of
//! the served meta-classifiers was fitted on; serving them would feed the trees outputs on
//! another scale). Such a score is retried for up to `lesion_wait_ms` first: after a promotion
//! the inference workers may switch to the new networks before this worker has loaded the
//! ensemble bundle fitted on them. The class is `malignant` when the calibrated probability is at least the
//! bundle's threshold (0.5 unless the bundle says otherwise).

use crate::bundle::Bundle;
use crate::join::{recorded, ClinicalRow, ClinicalTable, JoinError, PartialScore, PartialTable};
use renal_bus::{dead_letter, Failure};
use renal_messages::{DeadLetterSource, DeadLetterV1, LesionV1, PredictionV1, Provenance, ScoresV1};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Why a lesion or a score could not be used (yet).
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// The payload is not the message it should be, or a value in it is unusable.
    #[error("{0}")]
    BadMessage(String),
    /// Scores from another CNN bundle than the one the meta-classifier learned.
    #[error("scores come from CNN bundle {scores}; ensemble {bundle} was fitted on {fitted}")]
    ModelMismatch { scores: String, bundle: String, fitted: String },
    /// Scores from a CNN bundle no served bundle was fitted on, within the wait (retried: the
    /// promotion that brings its bundle may not have reached this worker yet).
    #[error("scores come from CNN bundle {scores}, which no served ensemble bundle was fitted on yet (waited {waited_ms} of {wait_ms} ms)")]
    ModelNotYet { scores: String, waited_ms: u128, wait_ms: u128 },
    /// The scored lesion's clinical values have not arrived yet (retried).
    #[error("lesion revision {revision} not on renal.lesions yet (waited {waited_ms} of {wait_ms} ms)")]
    LesionNotYet { revision: u32, waited_ms: u128, wait_ms: u128 },
    /// The scored lesion's clinical values did not arrive within the wait.
    #[error("no renal.lesions message for this lesion, revision {revision}, within {wait_ms} ms")]
    UnknownLesion { revision: u32, wait_ms: u128 },
    /// The state folder could not be read or written (retried).
    #[error("state folder: {0}")]
    State(String),
}

impl Failure for EnsembleError {
    fn code(&self) -> Option<&'static str> {
        match self {
            EnsembleError::BadMessage(_) => Some("bad_message"),
            EnsembleError::ModelMismatch { .. } => Some("model_mismatch"),
            EnsembleError::UnknownLesion { .. } => Some("unknown_lesion"),
            EnsembleError::LesionNotYet { .. } | EnsembleError::ModelNotYet { .. } | EnsembleError::State(_) => None,
        }
    }
}

impl From<JoinError> for EnsembleError {
    fn from(e: JoinError) -> EnsembleError {
        match e {
            e @ JoinError::BadId(_) => EnsembleError::BadMessage(e.to_string()),
            e => EnsembleError::State(e.to_string()),
        }
    }
}

/// What became of a score.
#[derive(Debug, Clone, PartialEq)]
pub enum Scored {
    /// Joined and predicted.
    Predicted(Box<PredictionV1>),
    /// Half a score, parked until its other half arrives.
    Parked,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The lesions loop's step: keep the lesion's clinical values.
pub fn take_lesion(lesion: &LesionV1, table: &ClinicalTable) -> Result<(), EnsembleError> {
    if !(lesion.tumour_volume_ml.is_finite() && lesion.tumour_volume_ml >= 0.0) {
        return Err(EnsembleError::BadMessage(format!("tumour volume {} mL is not a volume", lesion.tumour_volume_ml)));
    }
    Ok(table.put(&ClinicalRow::of(lesion))?)
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
fn decode_scores(payload: &[u8]) -> Result<Decoded, EnsembleError> {
    use renal_messages::Message;
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
            _ => return Err(EnsembleError::BadMessage(e.to_string())),
        },
    };
    let probabilities = match &decoded {
        Decoded::Whole(s) => [Some(s.t2_probability), Some(s.t1c_probability)],
        Decoded::Part { t2, t1c, .. } => [*t2, *t1c],
    };
    for (p, role) in probabilities.into_iter().zip(["T2", "T1C"]) {
        if let Some(p) = p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(EnsembleError::BadMessage(format!("{role} probability {p} is not in [0, 1]")));
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
        first_instance_at: row.first_instance_at.clone(),
        revision: scores.revision,
        site: row.site.clone(),
        probability: call.probability,
        class: if call.malignant { "malignant" } else { "benign" }.into(),
        threshold: bundle.content.threshold,
        inputs: call.inputs,
        model_version: bundle.version.clone(),
        cnn_model_version: scores.model_version.clone(),
        provenance: Provenance::now(renal_base::hex::encode(h.finalize())),
    }
}

/// Where a score came from: its place on the bus, which names its wait and its dead letter.
type Position = (Option<String>, Option<i32>, Option<i64>);

/// Bundles a worker keeps after being told to serve newer ones: scores made by an earlier CNN
/// bundle before a switch are still predicted by the ensemble bundle fitted on that CNN.
pub const KEPT_BUNDLES: usize = 4;

/// The scores loop's state: the bundles, the tables, and when each waiting score was first seen.
pub struct Scoring {
    /// Served bundles, oldest first; the last is the promoted one.
    bundles: Vec<Bundle>,
    table: ClinicalTable,
    partials: PartialTable,
    wait: Duration,
    first_seen: HashMap<Position, Instant>,
}

impl Scoring {
    /// Serve `bundle`, joining against `table`, waiting at most `lesion_wait` for a lesion;
    /// partial scores are parked in `partials`.
    pub fn new(bundle: Bundle, table: ClinicalTable, partials: PartialTable, lesion_wait: Duration) -> Scoring {
        Scoring { bundles: vec![bundle], table, partials, wait: lesion_wait, first_seen: HashMap::new() }
    }

    /// Serve `bundle` from now on. A score of the CNN bundle it was fitted on is predicted by it;
    /// a score of an earlier CNN bundle (scored before the inference workers switched) by the
    /// newest kept ensemble bundle fitted on that one. The version being replaced.
    pub fn serve(&mut self, bundle: Bundle) -> String {
        let before = self.bundles.last().expect("always one bundle").version.clone();
        self.bundles.retain(|b| b.version != bundle.version);
        self.bundles.push(bundle);
        if self.bundles.len() > KEPT_BUNDLES {
            self.bundles.remove(0);
        }
        before
    }

    /// The promoted bundle.
    pub fn current(&self) -> &Bundle {
        self.bundles.last().expect("always one bundle")
    }

    /// Scores still waiting for their lesion.
    pub fn waiting(&self) -> usize {
        self.first_seen.len()
    }

    /// One attempt at a score that arrived from `source` as `payload`, `now` being the
    /// attempt's time.
    pub fn process(
        &mut self,
        payload: &[u8],
        source: &DeadLetterSource,
        now: Instant,
    ) -> Result<Scored, EnsembleError> {
        let decoded = decode_scores(payload)?;
        let model_version = match &decoded {
            Decoded::Whole(s) => &s.model_version,
            Decoded::Part { model_version, .. } => model_version,
        };
        let Some(chosen) = self.bundles.iter().rposition(|b| b.content.cnn_version == *model_version) else {
            let key = (source.topic.clone(), source.partition, source.offset);
            if let Some(waited) = self.still_waiting(key, now) {
                return Err(EnsembleError::ModelNotYet {
                    scores: model_version.clone(),
                    waited_ms: waited.as_millis(),
                    wait_ms: self.wait.as_millis(),
                });
            }
            let current = self.current();
            return Err(EnsembleError::ModelMismatch {
                scores: model_version.clone(),
                bundle: current.version.clone(),
                fitted: current.content.cnn_version.clone(),
            });
        };
        let (case_id, revision, site, model_version, t2, t1c) = match decoded {
            Decoded::Whole(scores) => return self.join(chosen, payload, source, &scores, now, false),
            Decoded::Part { case_id, revision, site, model_version, t2, t1c } => {
                (case_id, revision, site, model_version, t2, t1c)
            }
        };
        let parked = self.partials.get(&case_id, revision)?;
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
            return self.join(chosen, payload, source, &scores, now, true);
        }
        let part = PartialScore {
            first_seen_ms: parked.as_ref().map_or_else(now_ms, |p| p.first_seen_ms),
            source: parked.as_ref().map_or_else(|| source.clone(), |p| p.source.clone()),
            input_sha256: parked
                .as_ref()
                .map_or_else(|| renal_base::hex::encode(Sha256::digest(payload)), |p| p.input_sha256.clone()),
            case_id,
            revision,
            site,
            model_version,
            t2_probability: t2,
            t1c_probability: t1c,
        };
        self.partials.put(&part).map_err(|e| EnsembleError::State(e.to_string()))?;
        Ok(Scored::Parked)
    }

    /// Join a whole score with its lesion's values (waiting for them), predict with bundle
    /// `chosen`, and forget the parked parts it was completed from (`completes_parked`).
    fn join(
        &mut self,
        chosen: usize,
        payload: &[u8],
        source: &DeadLetterSource,
        scores: &ScoresV1,
        now: Instant,
        completes_parked: bool,
    ) -> Result<Scored, EnsembleError> {
        let key = (source.topic.clone(), source.partition, source.offset);
        match self.table.get(&scores.case_id, scores.revision)? {
            Some(row) => {
                if completes_parked {
                    self.partials
                        .remove(&scores.case_id, scores.revision)
                        .map_err(|e| EnsembleError::State(e.to_string()))?;
                }
                self.first_seen.remove(&key);
                Ok(Scored::Predicted(Box::new(predict(&self.bundles[chosen], scores, &row, payload))))
            }
            None => match self.still_waiting(key, now) {
                Some(waited) => Err(EnsembleError::LesionNotYet {
                    revision: scores.revision,
                    waited_ms: waited.as_millis(),
                    wait_ms: self.wait.as_millis(),
                }),
                None => Err(EnsembleError::UnknownLesion { revision: scores.revision, wait_ms: self.wait.as_millis() }),
            },
        }
    }

    /// How long the score at `key` has waited since its first attempt, while that is within the
    /// wait (it stays remembered); `None` once the wait is over (it is forgotten).
    fn still_waiting(&mut self, key: Position, now: Instant) -> Option<Duration> {
        let since = *self.first_seen.entry(key.clone()).or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited < self.wait {
            return Some(waited);
        }
        self.first_seen.remove(&key);
        None
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
            let reason = format!(
                "no {missing} probability for this lesion, revision {}, within {wait_ms} ms of the {} one",
                p.revision,
                if missing == "T2" { "T1C" } else { "T2" }
            );
            let letter = dead_letter("ensemble", p.source.clone(), "missing_modality", reason, p.input_sha256.clone());
            (p, letter)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bundle::{self, tests::content};
    use renal_messages::{topics, BlobRef, Clinical, LesionQc, Message, Sex};

    pub(crate) const CNN: &str = "cnn-0123456789ab";

    pub(crate) fn lesion(case_id: &str, revision: u32, age: Option<u32>, volume: f64) -> LesionV1 {
        let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
        LesionV1 {
            version: 1,
            case_id: case_id.into(),
            first_instance_at: None,
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

    pub(crate) fn scores(case_id: &str, revision: u32, t2: f64, t1c: f64, cnn: &str) -> ScoresV1 {
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

    fn at(offset: i64, key: &str) -> DeadLetterSource {
        DeadLetterSource {
            topic: Some(topics::SCORES.name.into()),
            partition: Some(0),
            offset: Some(offset),
            key: key.into(),
        }
    }

    /// What the stage loop makes of an answer: `done`, `retry` or the dead-letter code.
    fn code<T>(r: &Result<T, EnsembleError>) -> &'static str {
        match r {
            Ok(_) => "done",
            Err(e) => e.code().unwrap_or("retry"),
        }
    }

    fn predicted(r: Result<Scored, EnsembleError>) -> PredictionV1 {
        match r {
            Ok(Scored::Predicted(p)) => *p,
            other => panic!("not a prediction: {other:?}"),
        }
    }

    #[test]
    fn after_a_switch_each_score_is_predicted_by_the_bundle_fitted_on_its_networks() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("models");
        let old = bundle::save(&reg, content(CNN), "t", "t").unwrap();
        let mut recalibrated = content(CNN);
        recalibrated.ensemble.platt.a *= 0.5;
        let recalibrated = bundle::save(&reg, recalibrated, "t", "t").unwrap();
        const NEW_CNN: &str = "cnn-ba9876543210";
        let retrained = bundle::save(&reg, content(NEW_CNN), "t", "t").unwrap();
        let table = ClinicalTable::open(&dir.path().join("state")).unwrap();
        let partials = PartialTable::open(&dir.path().join("partials")).unwrap();
        let mut s = Scoring::new(old.clone(), table.clone(), partials, Duration::from_secs(10));
        take_lesion(&lesion("MAY-0001", 1, Some(60), 20.0), &table).unwrap();
        let t0 = Instant::now();
        let version_of = |s: &mut Scoring, cnn: &str, offset: i64| {
            let sc = scores("MAY-0001", 1, 0.7, 0.4, cnn);
            let p = predicted(s.process(&sc.encode(), &at(offset, "MAY-0001"), t0));
            (p.model_version, p.cnn_model_version, p.probability)
        };
        let (v, _, p_old) = version_of(&mut s, CNN, 0);
        assert_eq!(v, old.version);
        // Recalibration only: the same networks, so every score moves to the new bundle at once.
        assert_eq!(s.serve(recalibrated.clone()), old.version);
        let (v, _, p_new) = version_of(&mut s, CNN, 1);
        assert_eq!(v, recalibrated.version);
        assert_ne!(p_old, p_new, "the recalibrated bundle answers differently");
        // New networks: their scores go to the bundle fitted on them, while scores the old
        // networks made before the inference workers switched still go to the newest bundle
        // fitted on those.
        s.serve(retrained.clone());
        assert_eq!(
            version_of(&mut s, NEW_CNN, 2),
            (retrained.version.clone(), NEW_CNN.to_string(), version_of(&mut s, NEW_CNN, 3).2)
        );
        assert_eq!(version_of(&mut s, CNN, 4).0, recalibrated.version);
        assert_eq!(s.current().version, retrained.version);
        // Scores of networks no served bundle was fitted on wait for a promotion, then are dead.
        let stranger = scores("MAY-0001", 1, 0.7, 0.4, "cnn-000000000000").encode();
        assert_eq!(code(&s.process(&stranger, &at(5, "MAY-0001"), t0)), "retry");
        assert_eq!(code(&s.process(&stranger, &at(5, "MAY-0001"), t0 + Duration::from_secs(10))), "model_mismatch");
        // A promotion arriving within the wait lets the waiting score through.
        let later = scores("MAY-0001", 1, 0.7, 0.4, "cnn-111111111111").encode();
        assert_eq!(code(&s.process(&later, &at(9, "MAY-0001"), t0)), "retry");
        s.serve(bundle::save(&reg, content("cnn-111111111111"), "t", "t").unwrap());
        assert_eq!(code(&s.process(&later, &at(9, "MAY-0001"), t0 + Duration::from_secs(1))), "done");
        assert_eq!(s.waiting(), 0);
        // Only the last few bundles are kept.
        for n in 0..KEPT_BUNDLES {
            let mut c = content(NEW_CNN);
            c.threshold = 0.1 + n as f64 / 10.0;
            s.serve(bundle::save(&reg, c, "t", "t").unwrap());
        }
        let forgotten = scores("MAY-0001", 1, 0.7, 0.4, CNN).encode();
        assert_eq!(code(&s.process(&forgotten, &at(6, "MAY-0001"), t0)), "retry");
        assert_eq!(code(&s.process(&forgotten, &at(6, "MAY-0001"), t0 + Duration::from_secs(10))), "model_mismatch");
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
        // Two lesions with different clinical values, stored in the reverse of the scores' order.
        for l in [lesion("MAY-0002", 1, Some(80), 90.0), lesion("MAY-0001", 1, None, 2.0)] {
            assert_eq!(code(&take_lesion(&l, &table)), "done");
        }
        for (offset, id) in ["MAY-0001", "MAY-0002"].iter().enumerate() {
            let sc = scores(id, 1, 0.7, 0.4, CNN);
            let p = predicted(s.process(&sc.encode(), &at(offset as i64, id), t0));
            assert_eq!(p.case_id, *id);
            // Its own lesion's values: MAY-0001 has no age (filled with the bundle's 55).
            let want_x = if *id == "MAY-0001" { [55.0, 1.0, 2.0] } else { [80.0, 1.0, 90.0] };
            let want = b.content.call(0.7, 0.4, &want_x);
            assert_eq!(p.inputs, want.inputs, "{id}");
            assert_eq!(p.probability, want.probability);
            assert_eq!(p.class, if want.malignant { "malignant" } else { "benign" });
            assert_eq!((p.model_version.as_str(), p.cnn_model_version.as_str()), (b.version.as_str(), CNN));
        }

        // A score ahead of its lesion waits; the lesion arrives; the retry succeeds.
        let early = scores("MAY-0003", 1, 0.2, 0.3, CNN).encode();
        let early_at = at(7, "MAY-0003");
        assert_eq!(code(&s.process(&early, &early_at, t0)), "retry");
        assert_eq!(code(&s.process(&early, &early_at, t0 + Duration::from_secs(4))), "retry");
        assert_eq!(code(&take_lesion(&lesion("MAY-0003", 1, Some(44), 5.0), &table)), "done");
        assert_eq!(code(&s.process(&early, &early_at, t0 + Duration::from_secs(5))), "done");
        assert_eq!(s.waiting(), 0);

        // A score for revision 2 does not join revision 1's values; after the wait it is dead.
        let newer = scores("MAY-0003", 2, 0.2, 0.3, CNN).encode();
        let newer_at = at(8, "MAY-0003");
        assert_eq!(code(&s.process(&newer, &newer_at, t0)), "retry");
        assert_eq!(code(&s.process(&newer, &newer_at, t0 + Duration::from_millis(9_999))), "retry");
        assert_eq!(code(&s.process(&newer, &newer_at, t0 + Duration::from_secs(10))), "unknown_lesion");
        assert_eq!(s.waiting(), 0);

        let other = scores("MAY-0001", 1, 0.2, 0.3, "cnn-ffffffffffff").encode();
        assert_eq!(code(&s.process(&other, &at(9, "MAY-0001"), t0)), "retry");
        assert_eq!(code(&s.process(&other, &at(9, "MAY-0001"), t0 + Duration::from_secs(10))), "model_mismatch");
        // Half a score is parked (and its offset moves on); the other half completes it.
        let half = |id: &str, drop: &str| {
            let mut v = serde_json::to_value(scores(id, 1, 0.2, 0.3, CNN)).unwrap();
            v.as_object_mut().unwrap().remove(drop);
            serde_json::to_vec(&v).unwrap()
        };
        assert_eq!(s.process(&half("MAY-0001", "t1c_probability"), &at(10, "MAY-0001"), t0).unwrap(), Scored::Parked);
        assert!(partials.get("MAY-0001", 1).unwrap().is_some_and(|p| p.t2_probability == Some(0.2)));
        let p = predicted(s.process(&half("MAY-0001", "t2_probability"), &at(11, "MAY-0001"), t0));
        assert_eq!(p.inputs, b.content.call(0.2, 0.3, &[55.0, 1.0, 2.0]).inputs);
        assert_eq!(partials.get("MAY-0001", 1).unwrap(), None, "forgotten once predicted");
        // A half that nothing completes: dead-lettered by the sweep once the wait is over.
        assert_eq!(s.process(&half("MAY-0002", "t2_probability"), &at(12, "MAY-0002"), t0).unwrap(), Scored::Parked);
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
        assert_eq!(code(&take_lesion(&lesion("MAY-0004", 1, Some(50), f64::NAN), &table)), "bad_message");
        assert_eq!(code(&take_lesion(&lesion("../etc", 1, Some(50), 1.0), &table)), "bad_message");
    }

    fn code_of(s: &mut Scoring, payload: &[u8]) -> &'static str {
        code(&s.process(payload, &at(99, "k"), Instant::now()))
    }
}
