//! When the trainer worker retrains, and what: the decision part of `renal worker trainer`,
//! kept free of I/O so that every rule is unit-tested.
//!
//! Three triggers, each configured ([`TriggerConfig`]):
//! - **labels**: `new_labels` labels (new or revised) arrived since the last retrain: a full
//!   retrain;
//! - **schedule**: `every_s` seconds passed since the last retrain and at least one label arrived
//!   meanwhile (without one there is nothing new to learn from): a full retrain;
//! - **monitor alerts**, as Alertmanager posts them ([`firing_alerts`]): `RenalCalibrationDrift`
//!   does what `on_calibration_alert` says (default: recalibration only, the cheap answer);
//!   `RenalScoreDrift` and `RenalFeatureDrift` what `on_drift_alert` says (default: nothing,
//!   since drift without labels says nothing of accuracy, and the labels that follow it trigger
//!   a retrain of their own).
//!
//! A retrain, whatever started it, resets the label count and the schedule.

use crate::recalibrate::Retrain;
use serde::{Deserialize, Serialize};

/// What an alert leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing.
    None,
    /// The ensemble's calibrator only.
    Recalibrate,
    /// The ensemble's meta-classifier and calibrator (networks and clinical model kept).
    Ensemble,
    /// Everything.
    Full,
}

/// `[trainer.triggers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    /// Labels (new or revised) since the last retrain that start a full retrain (0: labels alone
    /// never do; default 50).
    pub new_labels: u64,
    /// Seconds after the last retrain when a full retrain starts if any label arrived meanwhile
    /// (0: no schedule; default 604800, a week).
    pub every_s: u64,
    /// What a `RenalCalibrationDrift` alert leads to: `none`, `recalibrate` (default),
    /// `ensemble` or `full`.
    pub on_calibration_alert: Action,
    /// What a `RenalScoreDrift` or `RenalFeatureDrift` alert leads to (default `none`).
    pub on_drift_alert: Action,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            new_labels: 50,
            every_s: 7 * 24 * 3600,
            on_calibration_alert: Action::Recalibrate,
            on_drift_alert: Action::None,
        }
    }
}

/// Why a trigger configuration or an alert post cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerError {
    /// Every trigger is off.
    #[error("[trainer.triggers]: new_labels = 0, every_s = 0 and both alert actions none: nothing would ever retrain")]
    NeverRetrains,
    /// Not an Alertmanager webhook post.
    #[error("alert post: {0}")]
    Post(String),
}

impl TriggerConfig {
    /// Refuse a configuration under which nothing ever retrains.
    pub fn validate(self) -> Result<TriggerConfig, TriggerError> {
        let off = |a: Action| a == Action::None;
        if self.new_labels == 0 && self.every_s == 0 && off(self.on_calibration_alert) && off(self.on_drift_alert) {
            return Err(TriggerError::NeverRetrains);
        }
        Ok(self)
    }
}

/// What the worker tells the triggers.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A label arrived (new or a revision).
    Label,
    /// A monitor alert is firing.
    Alert {
        /// Its `alertname`.
        name: String,
        /// Its `site` label, if any.
        site: Option<String>,
    },
    /// Time passed.
    Tick,
}

/// A retrain to start, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// What to retrain.
    pub retrain: Retrain,
    /// The trigger, in words (recorded with the challenger).
    pub reason: String,
}

/// The triggers' memory.
#[derive(Debug, Clone)]
pub struct Triggers {
    config: TriggerConfig,
    labels_since: u64,
    last_retrain_ms: u64,
}

impl Triggers {
    /// Triggers that count from `now_ms` (the worker's start, or its last retrain).
    pub fn new(config: TriggerConfig, now_ms: u64) -> Triggers {
        Triggers { config, labels_since: 0, last_retrain_ms: now_ms }
    }

    /// Labels counted since the last retrain.
    pub fn labels_since(&self) -> u64 {
        self.labels_since
    }

    /// Whether `signal`, at `now_ms`, starts a retrain.
    pub fn observe(&mut self, signal: &Signal, now_ms: u64) -> Option<Due> {
        let c = &self.config;
        let full = |reason: String| Some(Due { retrain: Retrain::Full, reason });
        match signal {
            Signal::Label => {
                self.labels_since += 1;
                if c.new_labels > 0 && self.labels_since >= c.new_labels {
                    return full(format!("{} labels since the last retrain", self.labels_since));
                }
                self.scheduled(now_ms)
            }
            Signal::Tick => self.scheduled(now_ms),
            Signal::Alert { name, site } => {
                let action = match name.as_str() {
                    "RenalCalibrationDrift" => c.on_calibration_alert,
                    "RenalScoreDrift" | "RenalFeatureDrift" => c.on_drift_alert,
                    _ => Action::None,
                };
                let at = site.as_ref().map(|s| format!(" at {s}")).unwrap_or_default();
                let reason = format!("{name}{at}");
                match action {
                    Action::None => None,
                    Action::Recalibrate => Some(Due { retrain: Retrain::Recalibrate, reason }),
                    Action::Ensemble => Some(Due { retrain: Retrain::Ensemble, reason }),
                    Action::Full => full(reason),
                }
            }
        }
    }

    fn scheduled(&self, now_ms: u64) -> Option<Due> {
        let every_ms = self.config.every_s.saturating_mul(1000);
        let since = now_ms.saturating_sub(self.last_retrain_ms);
        (every_ms > 0 && since >= every_ms && self.labels_since > 0).then(|| Due {
            retrain: Retrain::Full,
            reason: format!("schedule: {} s since the last retrain, {} labels since", since / 1000, self.labels_since),
        })
    }

    /// A retrain started (the worker resets when it starts one, so labels that arrive while it
    /// runs count towards the next): count afresh from `now_ms`.
    pub fn retrained(&mut self, now_ms: u64) {
        self.labels_since = 0;
        self.last_retrain_ms = now_ms;
    }
}

/// The firing alerts of an Alertmanager webhook post (`{"alerts": [{"status": "firing",
/// "labels": {"alertname": ..., "site": ...}}, ...]}`); resolved ones are left out.
pub fn firing_alerts(body: &[u8]) -> Result<Vec<Signal>, TriggerError> {
    let post: serde_json::Value = serde_json::from_slice(body).map_err(|e| TriggerError::Post(e.to_string()))?;
    let alerts = post
        .get("alerts")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| TriggerError::Post("no \"alerts\" list".into()))?;
    let mut out = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        if a.get("status").and_then(serde_json::Value::as_str) != Some("firing") {
            continue;
        }
        let labels = a.get("labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(serde_json::Value::as_str).map(String::from);
        let name = label("alertname").ok_or_else(|| TriggerError::Post(format!("alert {i} has no alertname")))?;
        out.push(Signal::Alert { name, site: label("site") });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str) -> Signal {
        Signal::Alert { name: name.into(), site: Some("MAY".into()) }
    }

    #[test]
    fn the_nth_label_starts_a_full_retrain_and_a_retrain_counts_afresh() {
        let mut t = Triggers::new(TriggerConfig { new_labels: 3, every_s: 0, ..Default::default() }, 0);
        assert_eq!(t.observe(&Signal::Label, 1), None);
        assert_eq!(t.observe(&Signal::Label, 2), None);
        let due = t.observe(&Signal::Label, 3).unwrap();
        assert_eq!(due.retrain, Retrain::Full);
        assert_eq!(due.reason, "3 labels since the last retrain");
        t.retrained(4);
        assert_eq!(t.labels_since(), 0);
        assert_eq!(t.observe(&Signal::Label, 5), None);
    }

    #[test]
    fn the_schedule_retrains_only_when_labels_arrived() {
        let config = TriggerConfig { new_labels: 0, every_s: 60, ..Default::default() };
        let mut t = Triggers::new(config, 1_000);
        assert_eq!(t.observe(&Signal::Tick, 61_000), None, "no label, nothing to learn");
        assert_eq!(t.observe(&Signal::Label, 30_000), None);
        assert_eq!(t.observe(&Signal::Tick, 60_999), None, "not yet a minute");
        let due = t.observe(&Signal::Tick, 61_000).unwrap();
        assert_eq!(due.retrain, Retrain::Full);
        assert!(due.reason.starts_with("schedule: 60 s"), "{}", due.reason);
        t.retrained(61_000);
        assert_eq!(t.observe(&Signal::Tick, 200_000), None);
    }

    #[test]
    fn a_calibration_alert_recalibrates_and_drift_alone_does_nothing_by_default() {
        let mut t = Triggers::new(TriggerConfig::default(), 0);
        let due = t.observe(&alert("RenalCalibrationDrift"), 1).unwrap();
        assert_eq!(due, Due { retrain: Retrain::Recalibrate, reason: "RenalCalibrationDrift at MAY".into() });
        assert_eq!(t.observe(&alert("RenalScoreDrift"), 2), None);
        assert_eq!(t.observe(&alert("RenalExpectedAccuracyLow"), 3), None);
        let mut full = Triggers::new(TriggerConfig { on_drift_alert: Action::Full, ..Default::default() }, 0);
        assert_eq!(full.observe(&alert("RenalFeatureDrift"), 1).unwrap().retrain, Retrain::Full);
        let restack = TriggerConfig { on_calibration_alert: Action::Ensemble, ..Default::default() };
        let mut restack = Triggers::new(restack, 0);
        assert_eq!(restack.observe(&alert("RenalCalibrationDrift"), 1).unwrap().retrain, Retrain::Ensemble);
    }

    #[test]
    fn a_configuration_that_never_retrains_is_refused() {
        let off = TriggerConfig {
            new_labels: 0,
            every_s: 0,
            on_calibration_alert: Action::None,
            on_drift_alert: Action::None,
        };
        assert_eq!(off.validate(), Err(TriggerError::NeverRetrains));
        assert!(TriggerConfig::default().validate().is_ok());
        let parsed: TriggerConfig = toml::from_str("new_labels = 10\non_calibration_alert = \"full\"\n").unwrap();
        assert_eq!((parsed.new_labels, parsed.on_calibration_alert, parsed.every_s), (10, Action::Full, 604_800));
        assert!(toml::from_str::<TriggerConfig>("new_label = 10\n").is_err(), "a misspelt key is refused");
    }

    #[test]
    fn firing_alerts_come_out_of_an_alertmanager_post_and_resolved_ones_do_not() {
        let post = br#"{"version": "4", "status": "firing", "receiver": "trainer", "alerts": [
            {"status": "firing", "labels": {"alertname": "RenalCalibrationDrift", "site": "MAY", "job": "monitor"}},
            {"status": "resolved", "labels": {"alertname": "RenalScoreDrift", "site": "HUP"}},
            {"status": "firing", "labels": {"alertname": "RenalFeatureDrift"}}
        ]}"#;
        assert_eq!(
            firing_alerts(post).unwrap(),
            [alert("RenalCalibrationDrift"), Signal::Alert { name: "RenalFeatureDrift".into(), site: None }]
        );
        assert!(matches!(firing_alerts(b"{\"alerts\": 3}"), Err(TriggerError::Post(_))));
        assert!(matches!(firing_alerts(b"not json"), Err(TriggerError::Post(_))));
        let nameless = br#"{"alerts": [{"status": "firing", "labels": {}}]}"#;
        assert!(matches!(firing_alerts(nameless), Err(TriggerError::Post(m)) if m.contains("alertname")));
    }
}
