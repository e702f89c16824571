//! What the trainer worker reports: one event per thing that happened, each deciding its own
//! log line and metrics (`renal_trainer_*`).

use crate::recalibrate::Retrain;
use renal_telemetry::{trainer_metrics, InternalEvent};

/// The worker is running.
pub struct TrainerStarted<'a> {
    /// Deployment it retrains for.
    pub deployment: &'a str,
    /// The model it serves now.
    pub champion: &'a str,
    /// Training device, in words.
    pub device: &'a str,
    /// Labels in the book at start-up.
    pub labels: usize,
}

impl InternalEvent for TrainerStarted<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "trainer",
            "trainer: challenging {} for deployment {} on {}; {} labels in the book",
            self.champion,
            self.deployment,
            self.device,
            self.labels
        );
    }
}

/// What the worker holds changed.
pub struct Known {
    /// Lesions (latest revisions).
    pub lesions: usize,
    /// Labelled lesions.
    pub labels: usize,
    /// Labels since the last retrain.
    pub labels_since_retrain: u64,
}

impl InternalEvent for Known {
    fn emit(self) {
        let m = &trainer_metrics().known;
        m.with_label_values(&["lesions"]).set(self.lesions as i64);
        m.with_label_values(&["labels"]).set(self.labels as i64);
        m.with_label_values(&["labels_since_retrain"]).set(self.labels_since_retrain as i64);
    }
}

/// A labels file from the drop folder went to `renal.labels`.
pub struct LabelsFileSent<'a> {
    /// The file's name.
    pub file: &'a str,
    /// Labels sent.
    pub labels: u64,
    /// Rows dead-lettered.
    pub dead_letters: u64,
}

impl InternalEvent for LabelsFileSent<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "trainer",
            "labels file {}: {} labels to renal.labels, {} bad rows to renal.dead.labels",
            self.file,
            self.labels,
            self.dead_letters
        );
    }
}

/// A retrain began.
pub struct RetrainStarted<'a> {
    /// What is retrained (`full`, `recalibrate`, `auto`).
    pub retrain: &'a str,
    /// The trigger, in words.
    pub reason: &'a str,
    /// Lesions and labels it starts from.
    pub lesions: usize,
    /// Labelled lesions.
    pub labels: usize,
}

impl InternalEvent for RetrainStarted<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "trainer",
            "retrain ({}) started: {}; {} lesions, {} labels",
            self.retrain,
            self.reason,
            self.lesions,
            self.labels
        );
    }
}

/// A line of a retrain's account (what `renal train --out` prints).
pub struct RetrainStep<'a>(pub &'a str);

impl InternalEvent for RetrainStep<'_> {
    fn emit(self) {
        tracing::info!(stage = "trainer", "{}", self.0);
    }
}

/// A retrain ended with a challenger registered (or found registered already).
pub struct RetrainFinished<'a> {
    /// What was retrained.
    pub retrain: Retrain,
    /// `promoted`, `rejected` or `unchanged`.
    pub outcome: &'a str,
    /// The challenger, when one was registered.
    pub challenger: Option<&'a str>,
    /// The decision's reason.
    pub reason: &'a str,
    /// Seconds it took.
    pub seconds: f64,
}

impl InternalEvent for RetrainFinished<'_> {
    fn emit(self) {
        let m = trainer_metrics();
        m.retrains.with_label_values(&[self.retrain.name(), self.outcome]).inc();
        m.seconds.with_label_values(&[self.retrain.name()]).observe(self.seconds);
        tracing::info!(
            stage = "trainer",
            "retrain ({}) finished in {:.1} s: {} {}: {}",
            self.retrain.name(),
            self.seconds,
            self.challenger.unwrap_or("no new challenger"),
            self.outcome,
            self.reason
        );
    }
}

/// A retrain could not finish.
pub struct RetrainFailed<'a> {
    /// What was asked for (`full`, `recalibrate`, `auto`).
    pub retrain: &'a str,
    /// Why.
    pub error: &'a str,
}

impl InternalEvent for RetrainFailed<'_> {
    fn emit(self) {
        trainer_metrics().retrains.with_label_values(&[self.retrain, "failed"]).inc();
        tracing::error!(stage = "trainer", "retrain ({}) failed: {}", self.retrain, self.error);
    }
}

/// The worker stopped.
pub struct TrainerStopped<'a> {
    /// What it did.
    pub stats: &'a crate::run::TrainerStats,
}

impl InternalEvent for TrainerStopped<'_> {
    fn emit(self) {
        let s = self.stats;
        tracing::info!(
            stage = "trainer",
            "trainer stopped: {} lesion messages, {} label messages, {} retrains ({} promoted, {} failed), {} dead letters",
            s.lesions,
            s.labels,
            s.retrains,
            s.promoted,
            s.failed,
            s.dead_letters
        );
    }
}
