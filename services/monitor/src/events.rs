//! What the monitor reports besides the stage loop's events ([`renal_bus::events`]): each
//! event writes its log line and sets its gauges in one place.

use crate::process::{CalibrationRow, DriftRow};
use renal_telemetry::{monitor_metrics, InternalEvent};

/// The reference is loaded and the state restored.
pub struct MonitorStarted<'a> {
    /// Ensemble bundle the reference describes.
    pub reference: &'a str,
    /// Signals it holds.
    pub signals: usize,
    /// Journal entries replayed on top of the snapshot.
    pub replayed: usize,
}

impl InternalEvent for MonitorStarted<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "monitor",
            "monitor: comparing with the reference of {} ({} signals); {} journal entries replayed",
            self.reference,
            self.signals,
            self.replayed
        );
    }
}

/// An observation was taken in.
pub struct Observed {
    /// `case`, `values`, `prediction`, `label`.
    pub kind: &'static str,
}

impl InternalEvent for Observed {
    fn emit(self) {
        monitor_metrics().observations.with_label_values(&[self.kind]).inc();
    }
}

/// A dead letter of some stage went by.
pub struct DeadLetterSeen<'a> {
    /// The stage that wrote it.
    pub stage: &'a str,
    /// Its reason code.
    pub reason: &'a str,
}

impl InternalEvent for DeadLetterSeen<'_> {
    fn emit(self) {
        // Stage names and reason codes are the producers' fixed sets; anything else is folded.
        let bounded = |s: &str| {
            if !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                s.to_string()
            } else {
                "other".to_string()
            }
        };
        let (stage, reason) = (bounded(self.stage), bounded(self.reason));
        monitor_metrics().dead_letters_seen.with_label_values(&[&stage, &reason]).inc();
        tracing::debug!(stage = "monitor", of = %stage, reason = %reason, "dead letter seen");
    }
}

/// A score signal's window was compared with its reference.
pub struct WindowCompared<'a> {
    /// The comparison.
    pub row: &'a DriftRow,
}

impl InternalEvent for WindowCompared<'_> {
    fn emit(self) {
        let r = self.row;
        let m = monitor_metrics();
        let labels = [r.site.as_str(), r.scanner.as_str(), r.signal.as_str()];
        m.psi.with_label_values(&labels).set(r.drift.psi);
        m.ks.with_label_values(&labels).set(r.drift.ks);
        m.ks_p.with_label_values(&labels).set(r.drift.ks_p);
        m.wasserstein.with_label_values(&labels).set(r.drift.wasserstein);
        m.window.with_label_values(&labels).set(r.drift.n as f64);
        tracing::debug!(
            stage = "monitor",
            site = %r.site,
            scanner = %r.scanner,
            signal = %r.signal,
            n = r.drift.n,
            psi = r.drift.psi,
            ks = r.drift.ks,
            ks_p = r.drift.ks_p,
            wasserstein = r.drift.wasserstein,
            "window compared"
        );
    }
}

/// The watched features of a (site, scanner), summarised after some of their windows were
/// compared.
pub struct FeaturesSummarised<'a> {
    /// Site code.
    pub site: &'a str,
    /// Scanner label.
    pub scanner: &'a str,
    /// Features with a compared window.
    pub features: usize,
    /// Of those, the ones whose latest KS P value is below 0.01.
    pub drifted: usize,
    /// Largest latest PSI.
    pub max_psi: f64,
}

impl InternalEvent for FeaturesSummarised<'_> {
    fn emit(self) {
        let m = monitor_metrics();
        let labels = [self.site, self.scanner];
        let ratio = if self.features == 0 { 0.0 } else { self.drifted as f64 / self.features as f64 };
        m.features_drifted.with_label_values(&labels).set(ratio);
        m.features_max_psi.with_label_values(&labels).set(self.max_psi);
        tracing::debug!(
            stage = "monitor",
            site = self.site,
            scanner = self.scanner,
            features = self.features,
            drifted = self.drifted,
            max_psi = self.max_psi,
            "features compared"
        );
    }
}

/// A site's calibration was recomputed.
pub struct CalibrationComputed<'a> {
    /// The row.
    pub row: &'a CalibrationRow,
}

impl InternalEvent for CalibrationComputed<'_> {
    fn emit(self) {
        let r = self.row;
        let m = monitor_metrics();
        let site = [r.site.as_str()];
        m.ece.with_label_values(&site).set(r.ece);
        m.ece_p.with_label_values(&site).set(r.ece_p);
        m.brier.with_label_values(&site).set(r.brier);
        m.roc_auc.with_label_values(&site).set(r.roc_auc);
        m.accuracy.with_label_values(&site).set(r.accuracy);
        m.labelled.with_label_values(&site).set(r.n as f64);
        m.expected_accuracy.with_label_values(&site).set(r.expected_accuracy);
        m.expected_roc_auc.with_label_values(&site).set(r.expected_roc_auc);
        m.cbpe_error.with_label_values(&site).set(r.cbpe_accuracy_on_labelled - r.accuracy);
        tracing::debug!(
            stage = "monitor",
            site = %r.site,
            labelled = r.n,
            ece = r.ece,
            ece_p = r.ece_p,
            roc_auc = r.roc_auc,
            accuracy = r.accuracy,
            expected_accuracy = r.expected_accuracy,
            unlabelled = r.unlabelled,
            "calibration recomputed"
        );
    }
}

/// The worker stopped.
pub struct MonitorStopped<'a> {
    /// What it did.
    pub stats: &'a crate::run::MonitorStats,
}

impl InternalEvent for MonitorStopped<'_> {
    fn emit(self) {
        let s = self.stats;
        tracing::info!(
            stage = "monitor",
            "monitor stopped: {} messages, {} windows compared, {} calibration rows, {} dead letters",
            s.stage.inputs,
            s.drift_rows,
            s.calibration_rows,
            s.stage.dead_letters
        );
    }
}
