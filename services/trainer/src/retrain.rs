//! One retrain against a deployment's champion: a challenger fitted (in full, or its calibrator
//! only), compared with the champion on held-out lesions neither trained on, registered, and
//! promoted or refused with the reason. `renal train --out` and `renal worker trainer` both call
//! [`retrain`]; they differ only in where the lesions, labels and stores come from.
//!
//! - **full**: everything is refitted on every labelled lesion outside the champion's held-out
//!   patients; both models are judged on those patients' lesions.
//! - **recalibrate**: the champion's ensemble calibrator alone is refitted on half of the
//!   labelled lesions the champion never saw (by patient, [`crate::recalibrate::recent_halves`]);
//!   both are judged on the other half.
//! - **ensemble**: the same halves; on the first, the champion's meta-classifier and calibrator
//!   are refitted from its networks' and clinical model's outputs (cross-fitted over patient
//!   folds, as `renal run` fits them: no calibration row comes from a stacker that saw it); the
//!   networks and the clinical model are kept.
//! - **auto**: the champion predicts the labelled lesions it never saw; when they raise the
//!   calibration alert's rule ([`crate::calibration_alert`]) it recalibrates, otherwise a full
//!   retrain.

use crate::fit::{CnnSetup, Fitted, Served};
use crate::protocol::{HeldOutPatients, Truth, SPLIT_SEED};
use crate::recalibrate::{calibration_alert, AlertRule, Retrain};
use crate::stages::{predict_through_stages, StagesError};
use crate::{Decision, Margins, Protocol, TrainerError};
use renal_messages::{DeadLetterV1, LesionV1, Message, ModelEventV1, PredictionV1};
use renal_registry::{Entry, ManifestRow, Registry, RegistryError};
use renal_store::BlobStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What is retrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Everything.
    Full,
    /// The champion's ensemble calibrator only.
    Recalibrate,
    /// The champion's ensemble meta-classifier and calibrator.
    Ensemble,
    /// Recalibrate when the lesions the champion never saw raise the calibration alert, in full
    /// otherwise.
    Auto,
}

impl Choice {
    /// `full`, `recalibrate`, `ensemble` or `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Choice::Full => "full",
            Choice::Recalibrate => "recalibrate",
            Choice::Ensemble => "ensemble",
            Choice::Auto => "auto",
        }
    }
}

impl From<Retrain> for Choice {
    fn from(r: Retrain) -> Choice {
        match r {
            Retrain::Full => Choice::Full,
            Retrain::Recalibrate => Choice::Recalibrate,
            Retrain::Ensemble => Choice::Ensemble,
        }
    }
}

/// Why a retrain could not finish (a challenger that is merely worse is not an error: it is
/// registered and refused).
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    /// The deployment serves nothing to compare with.
    #[error("deployment {deployment} serves no model in {registry}: train and promote a first model (renal run on a labelled cohort)")]
    NoChampion { deployment: String, registry: PathBuf },
    /// No labels yet.
    #[error("no labels: nothing to retrain on")]
    NoLabels,
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Fitting failed.
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    /// The held-out lesions could not be predicted.
    #[error("predicting held-out lesions: {0}")]
    Stages(#[from] StagesError),
    /// The ensemble bundle could not be read or saved.
    #[error(transparent)]
    Bundle(#[from] renal_ensemble::bundle::BundleError),
    /// Too few unseen lesions to recalibrate on and judge by.
    #[error("recalibration needs labelled lesions {champion} has never seen, of several patients; there are {lesions}: {source}")]
    TooFewRecent { champion: String, lesions: usize, source: renal_learn::split::SplitError },
    /// The calibrator did not refit.
    #[error("refitting the calibrator of {champion} on {lesions} lesions: {source}")]
    Calibration { champion: String, lesions: usize, source: renal_stats::CalibrationError },
    /// The two models cannot be compared on these lesions.
    #[error(transparent)]
    Challenge(#[from] crate::challenge::ChallengeError),
    /// The ensemble did not refit.
    #[error("refitting the ensemble of {champion} on {lesions} lesions: {reason}")]
    Restack { champion: String, lesions: usize, reason: String },
    /// The training run produced no served bundles.
    #[error("the challenger's networks and ensemble were not fitted: {why}")]
    NotServed { why: String },
    /// The retrain panicked (a bug; the worker goes on).
    #[error("the retrain panicked (see the log above)")]
    Panicked,
    /// The in-process runtime of the stages could not start.
    #[error("starting the stages' runtime: {0}")]
    Runtime(std::io::Error),
}

/// What a retrain starts from.
pub struct Start {
    /// The registry the champion is in and the challenger goes to.
    pub registry: Registry,
    /// The deployment whose champion is challenged.
    pub deployment: String,
    /// The champion.
    pub champion: Entry,
    /// The labels known now.
    pub truth: Truth,
    /// The lesions known now (any revisions; the latest of each is used).
    pub lesions: Vec<LesionV1>,
    /// Where their composites are.
    pub store: Arc<dyn BlobStore>,
    /// The feature store root whose `features` table feeds the first-order baselines.
    pub table_root: Option<PathBuf>,
    /// CPU or CUDA.
    pub device: tch::Device,
    /// Where the stages keep their temporary state while predicting.
    pub scratch: PathBuf,
}

impl Start {
    /// A start against `deployment`'s promoted model.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Registry,
        deployment: &str,
        truth: Truth,
        lesions: Vec<LesionV1>,
        store: Arc<dyn BlobStore>,
        table_root: Option<PathBuf>,
        device: tch::Device,
        scratch: PathBuf,
    ) -> Result<Start, RetrainError> {
        let Some(pointer) = registry.promoted(deployment)? else {
            return Err(RetrainError::NoChampion { deployment: deployment.into(), registry: registry.root().into() });
        };
        let champion = registry.entry(&pointer.version)?;
        if truth.is_empty() {
            return Err(RetrainError::NoLabels);
        }
        Ok(Start {
            registry,
            deployment: deployment.into(),
            champion,
            truth,
            lesions,
            store,
            table_root,
            device,
            scratch,
        })
    }
}

/// How a retrain ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The challenger's entry; `None` when the same fit was registered before (nothing new).
    pub challenger: Option<Entry>,
    /// What was retrained.
    pub retrain: Retrain,
    /// Promoted for the deployment.
    pub promoted: bool,
    /// The decision's reason.
    pub reason: String,
    /// The registry's events, in order (for `renal.models`).
    pub events: Vec<ModelEventV1>,
    /// Held-out lesions the stages could not predict.
    pub dead_letters: Vec<DeadLetterV1>,
}

/// One retrain of `start.deployment`'s champion; `say` hears each step in a line.
pub fn retrain(
    start: Start,
    margins: &Margins,
    choice: Choice,
    cnn: renal_cnn::train::TrainConfig,
    say: &dyn Fn(String),
) -> Result<Outcome, RetrainError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RetrainError::Runtime)?;
    let mut run = Run { start, rt, letters: Vec::new() };
    let (recent, facts) = run.unseen();
    let mut champion_on_recent = Vec::new();
    let kind = match choice {
        Choice::Full => Retrain::Full,
        Choice::Recalibrate => Retrain::Recalibrate,
        Choice::Ensemble => Retrain::Ensemble,
        Choice::Auto => {
            let champion = run.start.champion.clone();
            champion_on_recent = run.predict(&recent, &served_of(&champion))?;
            let (p, y) = labelled_pairs(&champion_on_recent, &run.start.truth);
            let check = calibration_alert(&p, &y, &AlertRule::default());
            if check.lesions == 0 {
                say(format!(
                    "{} has seen every labelled lesion: no calibration to check, full retrain",
                    champion.version
                ));
            } else {
                say(format!(
                    "calibration of {} on {} labelled lesions it has never seen ({} malignant): mean predicted {:.3}, ECE {:.3} (P {:.3}): {}",
                    champion.version,
                    check.lesions,
                    check.malignant,
                    check.mean_predicted,
                    check.ece,
                    check.ece_p,
                    if check.alert { "calibration alert, recalibration only" } else { "no calibration alert, full retrain" }
                ));
            }
            if check.alert {
                Retrain::Recalibrate
            } else {
                Retrain::Full
            }
        }
    };
    let (entry, decision) = match kind {
        Retrain::Full => run.full(margins, cnn, say)?,
        Retrain::Recalibrate | Retrain::Ensemble => {
            run.on_recent(kind, margins, &recent, &facts, champion_on_recent, say)?
        }
    };
    run.settle(entry, decision, kind, say)
}

/// A retrain under way.
struct Run {
    start: Start,
    rt: tokio::runtime::Runtime,
    letters: Vec<DeadLetterV1>,
}

impl Run {
    /// Labelled lesions (latest revisions) the champion neither trained on nor was judged on.
    fn unseen(&self) -> (Vec<LesionV1>, Vec<renal_learn::split::Lesion>) {
        let c = &self.start.champion;
        let seen: BTreeSet<&str> = c.training.iter().chain(&c.held_out).map(|r| r.case_id.as_str()).collect();
        let (lesions, facts) = crate::protocol::labelled(&self.start.lesions, &self.start.truth);
        lesions
            .into_iter()
            .zip(facts)
            .filter(|(l, _)| !seen.contains(l.case_id.as_str()))
            .map(|(l, f)| (l.clone(), f))
            .unzip()
    }

    /// Predictions of `lesions` through the inference and ensemble stages serving `bundles`.
    fn predict(&mut self, lesions: &[LesionV1], bundles: &Served) -> Result<Vec<PredictionV1>, RetrainError> {
        let s = &self.start;
        let (predicted, dead) =
            predict_through_stages(&self.rt, lesions, bundles, s.registry.root(), &s.store, s.device, &s.scratch)?;
        self.letters.extend(dead);
        Ok(predicted)
    }

    /// Everything retrained on every labelled lesion outside the champion's held-out patients.
    fn full(
        &mut self,
        margins: &Margins,
        config: renal_cnn::train::TrainConfig,
        say: &dyn Fn(String),
    ) -> Result<(Entry, Decision), RetrainError> {
        let champion = self.start.champion.clone();
        let protocol =
            Protocol::HeldOut(HeldOutPatients(Arc::new(champion.held_out_patients.iter().cloned().collect())));
        let setup = CnnSetup { store: self.start.store.clone(), device: self.start.device, config };
        say(format!(
            "challenger: {} labelled lesions; testing on the held-out patients of {} ({} lesions when it was trained)",
            self.start.truth.len(),
            champion.version,
            champion.held_out.len()
        ));
        let s = &self.start;
        let fitted =
            crate::fit(&s.lesions, &s.truth, &protocol, Some(&setup), s.table_root.as_deref(), s.registry.root())?;
        let bundles = fitted.rounds[0].served.clone().ok_or_else(|| RetrainError::NotServed {
            why: fitted
                .lines
                .iter()
                .find(|l| l.contains("not fitted"))
                .map_or_else(|| "no CNN settings".to_string(), |l| l.trim().to_string()),
        })?;
        let test: Vec<LesionV1> = fitted.rounds[0].split.test.iter().map(|&i| fitted.lesions[i].clone()).collect();
        let old = self.predict(&test, &served_of(&champion))?;
        let new = self.predict(&test, &bundles)?;
        let (a, b, malignant) = paired(&old, &new, &self.start.truth);
        let decision = crate::decide(&a, &b, &malignant, margins)?;
        let extra = serde_json::json!({ "comparison": decision.comparison, "decision": decision.reason });
        let entry = entry_of(&fitted, 0, &bundles, &new, Retrain::Full.name(), Some(&champion.version), extra);
        Ok((entry, decision))
    }

    /// The champion's calibrator (`Recalibrate`), or its meta-classifier and calibrator
    /// (`Ensemble`), refitted on half of the labelled lesions it has never seen (by patient);
    /// both judged on the other half.
    fn on_recent(
        &mut self,
        kind: Retrain,
        margins: &Margins,
        recent: &[LesionV1],
        facts: &[renal_learn::split::Lesion],
        mut champion_on_recent: Vec<PredictionV1>,
        say: &dyn Fn(String),
    ) -> Result<(Entry, Decision), RetrainError> {
        let champion = self.start.champion.clone();
        let (refit, held) = crate::recalibrate::recent_halves(facts, SPLIT_SEED).map_err(|source| {
            RetrainError::TooFewRecent { champion: champion.version.clone(), lesions: recent.len(), source }
        })?;
        if champion_on_recent.is_empty() {
            champion_on_recent = self.predict(recent, &served_of(&champion))?;
        }
        let root = self.start.registry.root().to_path_buf();
        let bundle = renal_ensemble::bundle::load(&root, &champion.version)?;
        let by_case: BTreeMap<&str, &PredictionV1> =
            champion_on_recent.iter().map(|p| (p.case_id.as_str(), p)).collect();
        // The refit rows the champion predicted: its base models' outputs, and the labels.
        let rows: Vec<(usize, [f64; 3])> =
            refit.iter().filter_map(|&i| by_case.get(recent[i].case_id.as_str()).map(|p| (i, p.inputs))).collect();
        let y: Vec<bool> = rows.iter().map(|&(i, _)| facts[i].malignant).collect();
        let malignant_refit = y.iter().filter(|&&m| m).count();
        let failed =
            |source| RetrainError::Calibration { champion: champion.version.clone(), lesions: rows.len(), source };
        let ensemble = match kind {
            Retrain::Ensemble => {
                let lesions: Vec<renal_learn::split::Lesion> = rows.iter().map(|&(i, _)| facts[i].clone()).collect();
                let x: Vec<Vec<f64>> = rows.iter().map(|(_, inputs)| inputs.to_vec()).collect();
                let settings = renal_learn::bagging::BaggingSettings::default();
                let folds = crate::fit::ENSEMBLE_FOLDS;
                renal_learn::ensemble::Ensemble::fit_cross_fitted(
                    &lesions,
                    &x,
                    &y,
                    &crate::fit::STACKED,
                    folds,
                    &settings,
                )
                .map_err(|e| RetrainError::Restack {
                    champion: champion.version.clone(),
                    lesions: rows.len(),
                    reason: e.to_string(),
                })?
                .0
            }
            _ => {
                let meta: Vec<f64> =
                    rows.iter().map(|(_, inputs)| bundle.content.ensemble.meta.probability(inputs)).collect();
                bundle.content.ensemble.recalibrated(&meta, &y).map_err(failed)?
            }
        };
        say(format!(
            "{}: the {} of {} refitted on {} lesions ({malignant_refit} malignant); judged on {} others",
            kind.name(),
            if kind == Retrain::Ensemble { "meta-classifier and calibrator" } else { "calibrator" },
            champion.version,
            rows.len(),
            held.len()
        ));
        let from = if kind == Retrain::Ensemble { "restacked_from" } else { "recalibrated_from" };
        let fitted = serde_json::json!({
            from: champion.version,
            "calibration_lesions": rows.len(),
            "calibration_malignant": malignant_refit,
        });
        let content = renal_ensemble::bundle::Content { ensemble, fitted, ..bundle.content.clone() };
        let saved =
            renal_ensemble::bundle::save(&root, content, renal_messages::code_version(), &renal_base::now_rfc3339())?;
        let bundles = Served { cnn: champion.cnn_version.clone(), ensemble: saved.version.clone() };
        let held_lesions: Vec<LesionV1> = held.iter().map(|&i| recent[i].clone()).collect();
        let held_ids: BTreeSet<&str> = held_lesions.iter().map(|l| l.case_id.as_str()).collect();
        let old: Vec<PredictionV1> =
            champion_on_recent.iter().filter(|p| held_ids.contains(p.case_id.as_str())).cloned().collect();
        let new = self.predict(&held_lesions, &bundles)?;
        let (a, b, malignant) = paired(&old, &new, &self.start.truth);
        let decision = crate::decide(&a, &b, &malignant, margins)?;

        let labels: Vec<bool> = facts.iter().map(|f| f.malignant).collect();
        let mut training = champion.training.clone();
        training.extend(manifest(recent, &labels, &refit));
        training.sort_by(|a, b| a.case_id.cmp(&b.case_id));
        let mut metrics = held_out_metrics(&new, &self.start.truth);
        if let Some(m) = metrics.as_object_mut() {
            m.insert("comparison".into(), serde_json::to_value(&decision.comparison).expect("serialises"));
            m.insert("decision".into(), decision.reason.clone().into());
        }
        let patients: BTreeSet<String> = held_lesions.iter().map(|l| l.patient_pseudonym.clone()).collect();
        let entry = Entry {
            version: saved.version.clone(),
            cnn_version: champion.cnn_version.clone(),
            created_at: renal_base::now_rfc3339(),
            code_version: renal_messages::code_version().to_string(),
            retrain: kind.name().into(),
            champion: Some(champion.version.clone()),
            training,
            held_out: manifest(recent, &labels, &held),
            held_out_patients: patients.into_iter().collect(),
            metrics,
        };
        Ok((entry, decision))
    }

    /// Register the challenger and promote it or record why not.
    fn settle(
        self,
        entry: Entry,
        decision: Decision,
        kind: Retrain,
        say: &dyn Fn(String),
    ) -> Result<Outcome, RetrainError> {
        let (registry, champion, deployment) =
            (&self.start.registry, &self.start.champion.version, &self.start.deployment);
        let mut outcome = Outcome {
            challenger: None,
            retrain: kind,
            promoted: false,
            reason: decision.reason.clone(),
            events: Vec::new(),
            dead_letters: self.letters,
        };
        if registry.entries()?.iter().any(|e| e.version == entry.version) {
            say(format!("challenger {} is already registered (the same fit): nothing new", entry.version));
            return Ok(outcome);
        }
        outcome.events.push(registry.register(&entry)?);
        if decision.promote {
            outcome.events.extend(registry.promote(deployment, &entry.version, Some(champion), &decision.reason)?);
            outcome.promoted = true;
            say(format!(
                "challenger {} ({}) PROMOTED for {deployment}: {}",
                entry.version, entry.retrain, decision.reason
            ));
        } else {
            outcome.events.push(registry.reject(deployment, &entry.version, &decision.reason)?);
            say(format!(
                "challenger {} ({}) registered, NOT promoted; {deployment} still serves {champion}: {}",
                entry.version, entry.retrain, decision.reason
            ));
        }
        outcome.challenger = Some(entry);
        Ok(outcome)
    }
}

/// What the trainer reads of a label book: `case_id -> (malignant, histopathology)`.
pub fn truth_of(book: &renal_labels::book::Book) -> Truth {
    book.values()
        .map(|l| (l.case_id.clone(), (l.label == "malignant", l.diagnosis_source == "histopathology")))
        .collect()
}

fn served_of(e: &Entry) -> Served {
    Served { cnn: e.cnn_version.clone(), ensemble: e.version.clone() }
}

/// (probability, malignant) of the predictions whose lesion is labelled.
pub fn labelled_pairs(predictions: &[PredictionV1], truth: &Truth) -> (Vec<f64>, Vec<bool>) {
    predictions.iter().filter_map(|p| truth.get(&p.case_id).map(|&(y, _)| (p.probability, y))).unzip()
}

/// Both models' probabilities on the lesions both predicted, in case order, and the labels.
fn paired(champion: &[PredictionV1], challenger: &[PredictionV1], truth: &Truth) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let by_case = |p: &[PredictionV1]| -> BTreeMap<String, f64> {
        p.iter().map(|p| (p.case_id.clone(), p.probability)).collect()
    };
    let (old, new) = (by_case(champion), by_case(challenger));
    let cases: Vec<&String> = old.keys().filter(|c| new.contains_key(*c) && truth.contains_key(*c)).collect();
    let malignant = cases.iter().map(|c| truth[*c].0).collect();
    let (a, b) = cases.iter().map(|c| (old[*c], new[*c])).unzip();
    (a, b, malignant)
}

/// The manifest rows of `rows` of `lesions` (labels by row), in case order.
pub fn manifest(lesions: &[LesionV1], malignant: &[bool], rows: &[usize]) -> Vec<ManifestRow> {
    let mut out: Vec<ManifestRow> = rows
        .iter()
        .map(|&i| ManifestRow {
            case_id: lesions[i].case_id.clone(),
            revision: lesions[i].revision,
            label: if malignant[i] { "malignant" } else { "benign" }.into(),
            lesion_sha256: renal_store::sha256_hex(&lesions[i].encode()),
        })
        .collect();
    out.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    out
}

/// ROC AUC and ECE (10 bins) of predictions against the labels, as registry metrics.
pub fn held_out_metrics(predictions: &[PredictionV1], truth: &Truth) -> serde_json::Value {
    let (p, y) = labelled_pairs(predictions, truth);
    serde_json::json!({
        "held_out_lesions": p.len(),
        "malignant": y.iter().filter(|&&m| m).count(),
        "roc_auc": renal_stats::roc_auc(&p, &y),
        "ece": renal_stats::expected_calibration_error(&p, &y, 10),
    })
}

/// An entry for round `n` of `fitted`, served as `bundles`, with its held-out predictions;
/// `extra` joins its metrics.
pub fn entry_of(
    fitted: &Fitted,
    n: usize,
    bundles: &Served,
    held_out: &[PredictionV1],
    retrain: &str,
    champion: Option<&str>,
    extra: serde_json::Value,
) -> Entry {
    let round = &fitted.rounds[n];
    let trained: Vec<usize> = round.split.train.iter().chain(&round.split.validation).copied().collect();
    let truth: Truth =
        fitted.lesions.iter().zip(&fitted.malignant).map(|(l, &m)| (l.case_id.clone(), (m, false))).collect();
    let patients: BTreeSet<String> =
        round.split.test.iter().map(|&i| fitted.lesions[i].patient_pseudonym.clone()).collect();
    let mut metrics = held_out_metrics(held_out, &truth);
    if let (Some(m), serde_json::Value::Object(x)) = (metrics.as_object_mut(), extra) {
        m.extend(x);
    }
    Entry {
        version: bundles.ensemble.clone(),
        cnn_version: bundles.cnn.clone(),
        created_at: renal_base::now_rfc3339(),
        code_version: renal_messages::code_version().to_string(),
        retrain: retrain.into(),
        champion: champion.map(String::from),
        training: manifest(&fitted.lesions, &fitted.malignant, &trained),
        held_out: manifest(&fitted.lesions, &fitted.malignant, &round.split.test),
        held_out_patients: patients.into_iter().collect(),
        metrics,
    }
}
