//! What to retrain, and recalibration only.
//!
//! A calibration alert on recently labelled lesions, with the ranking intact, is answered by
//! refitting the served ensemble's calibrator alone ([`renal_learn::ensemble::Ensemble::recalibrated`]):
//! the networks, the clinical model and the meta-classifier stay, minutes of training become
//! milliseconds, and the lesions' order is kept (the challenger is still compared with the
//! champion like any other). One step further, the ensemble and its calibrator are refitted on
//! those lesions (the base models kept): the stacker may reweigh the networks and the clinical
//! model for the new case mix. Anything else retrains everything.
//!
//! [`calibration_alert`] is the rule of the `RenalCalibrationDrift` alert the monitor's metrics feed
//! (`deploy/prometheus/monitor_alerts.yml`): an ECE above 0.15 whose consistency-resampling P
//! value is below 0.01, so that a few labelled lesions' chance ECE does not trigger it.
//! [`recent_halves`] cuts the recent lesions into the rows the calibrator is refitted on and
//! the held-out rows both models are judged on, by patient.

use renal_learn::split::{train_validation_test, Lesion, SplitError};
use renal_stats::{ece_consistency_p, expected_calibration_error};
use serde::Serialize;

/// What is retrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retrain {
    /// Networks, clinical model, meta-classifier and calibrators.
    Full,
    /// The ensemble's calibrator only.
    Recalibrate,
    /// The ensemble's meta-classifier and calibrator; networks and clinical model kept.
    Ensemble,
}

impl Retrain {
    /// The name the registry records (`full`, `recalibrate`, `ensemble`).
    pub fn name(self) -> &'static str {
        match self {
            Retrain::Full => "full",
            Retrain::Recalibrate => "recalibrate",
            Retrain::Ensemble => "ensemble",
        }
    }
}

/// When a deployment's calibration alerts; the defaults are the deployed alert's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertRule {
    /// ECE above which calibration is off (default 0.15).
    pub ece_above: f64,
    /// ... provided its P value under calibration is below this (default 0.01).
    pub p_below: f64,
    /// Equal-width bins (default 10, the monitor's).
    pub bins: usize,
    /// Fewest labelled lesions the rule is applied to (default 20, the monitor's).
    pub min_lesions: usize,
}

impl Default for AlertRule {
    fn default() -> Self {
        AlertRule { ece_above: 0.15, p_below: 0.01, bins: 10, min_lesions: 20 }
    }
}

/// Redraws behind the P value, and their seed (the monitor's).
const RESAMPLES: usize = 999;
const SEED: u64 = 0x5EED_ECE0;

/// The calibration of some labelled predictions, and whether it alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationCheck {
    /// Lesions checked.
    pub lesions: usize,
    /// Malignant among them.
    pub malignant: usize,
    /// Their ECE.
    pub ece: f64,
    /// Its P value were the probabilities calibrated.
    pub ece_p: f64,
    /// Mean predicted probability.
    pub mean_predicted: f64,
    /// The rule fires.
    pub alert: bool,
}

/// Apply `rule` to calibrated probabilities and their labels.
pub fn calibration_alert(probability: &[f64], malignant: &[bool], rule: &AlertRule) -> CalibrationCheck {
    let n = probability.len();
    let (ece, ece_p) = if n == 0 {
        (0.0, 1.0)
    } else {
        (
            expected_calibration_error(probability, malignant, rule.bins),
            ece_consistency_p(probability, malignant, rule.bins, RESAMPLES, SEED),
        )
    };
    CalibrationCheck {
        lesions: n,
        malignant: malignant.iter().filter(|&&m| m).count(),
        ece,
        ece_p,
        mean_predicted: if n == 0 { f64::NAN } else { probability.iter().sum::<f64>() / n as f64 },
        alert: n >= rule.min_lesions && ece > rule.ece_above && ece_p < rule.p_below,
    }
}

/// Recent lesions cut by patient, stratified by label, about half each: `(refit, held_out)`,
/// indices into `lesions`. Only histopathology-confirmed lesions are held out.
pub fn recent_halves(lesions: &[Lesion], seed: u64) -> Result<(Vec<usize>, Vec<usize>), SplitError> {
    let split = train_validation_test(lesions, [0.5, 0.0, 0.5], seed)?;
    Ok((split.train, split.test))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule needs both a large ECE and a small P: 60 lesions all called 0.55 of which 54 are
    /// malignant alert (ECE 0.35); the same lesions at 0.9 do not (ECE 0.0); 10 lesions at 0.55,
    /// all malignant, are too few however large their ECE.
    #[test]
    fn the_alert_wants_a_large_ece_a_small_p_and_enough_lesions() {
        let y: Vec<bool> = (0..60).map(|i| i % 10 != 0).collect();
        let off = calibration_alert(&[0.55; 60], &y, &AlertRule::default());
        assert!(off.alert && (off.ece - 0.35).abs() < 1e-9 && off.ece_p < 0.01, "{off:?}");
        let on = calibration_alert(&[0.9; 60], &y, &AlertRule::default());
        assert!(!on.alert && on.ece < 1e-9, "{on:?}");
        let few = calibration_alert(&[0.55; 10], &[true; 10], &AlertRule::default());
        assert!(!few.alert && few.ece > 0.15, "{few:?}");
        assert!(!calibration_alert(&[], &[], &AlertRule::default()).alert);
    }

    /// Halves keep a patient's lesions together and never hold out an unconfirmed lesion.
    #[test]
    fn recent_halves_group_patients_and_hold_out_confirmed_lesions_only() {
        let lesions: Vec<Lesion> = (0..40)
            .map(|i| Lesion {
                patient: format!("P{}", i / 2),
                site: "MAY".into(),
                malignant: i % 3 != 0,
                histopathology: i % 7 != 0,
            })
            .collect();
        let (refit, held) = recent_halves(&lesions, 5).unwrap();
        assert!(!refit.is_empty() && !held.is_empty());
        assert!(held.iter().all(|&i| lesions[i].histopathology));
        let patients = |idx: &[usize]| -> std::collections::BTreeSet<String> {
            idx.iter().map(|&i| lesions[i].patient.clone()).collect()
        };
        assert!(patients(&refit).is_disjoint(&patients(&held)));
    }
}
