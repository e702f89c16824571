//! Champion and challenger: whether a newly trained model may replace the one a deployment
//! serves, judged on the same held-out lesions (neither model trained, chose or calibrated on
//! them).
//!
//! Two conditions, both stated as margins ([`Margins`]):
//! - **discrimination**: the challenger's ROC AUC may be lower than the champion's, but not by
//!   more than `auc_margin`, with confidence `level`: the one-sided DeLong lower bound of
//!   (challenger - champion) must exceed `-auc_margin` (a non-inferiority test; a challenger that
//!   might be worse by more than the margin is not promoted, so on a small held-out set only a
//!   clearly good challenger passes);
//! - **calibration**: its expected calibration error may exceed the champion's by at most
//!   `ece_margin` (a point comparison: on tens of lesions ECE has no useful test).

use renal_stats::{delong_paired, expected_calibration_error};
use serde::{Deserialize, Serialize};

/// What a challenger must show (`[trainer.margins]` in the trainer worker's file).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Margins {
    /// Largest ROC AUC loss tolerated (default 0.05).
    pub auc_margin: f64,
    /// Confidence of the one-sided bound (default 0.95).
    pub level: f64,
    /// Largest ECE gain tolerated (default 0.03).
    pub ece_margin: f64,
    /// Equal-width bins of the ECE (default 10).
    pub ece_bins: usize,
}

impl Default for Margins {
    fn default() -> Self {
        Margins { auc_margin: 0.05, level: 0.95, ece_margin: 0.03, ece_bins: 10 }
    }
}

/// The numbers the decision rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Held-out lesions compared, and how many of them are malignant.
    pub lesions: usize,
    /// Malignant among them.
    pub malignant: usize,
    /// Champion's ROC AUC.
    pub champion_auc: f64,
    /// Challenger's ROC AUC.
    pub challenger_auc: f64,
    /// One-sided DeLong lower bound of (challenger - champion) at `level`.
    pub auc_change_lower_bound: f64,
    /// Two-sided DeLong P value of "equal AUCs".
    pub auc_p_two_sided: f64,
    /// Champion's ECE.
    pub champion_ece: f64,
    /// Challenger's ECE.
    pub challenger_ece: f64,
    /// The margins applied.
    pub margins: Margins,
}

/// Promote or not, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Both conditions hold.
    pub promote: bool,
    /// The comparison in words (goes into the registry's event).
    pub reason: String,
    /// The comparison in numbers (goes into the challenger's entry).
    pub comparison: Comparison,
}

/// Why no decision could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChallengeError {
    /// The held-out lesions cannot rank anything.
    #[error(
        "{lesions} held-out lesions with {malignant} malignant: need at least two of each class to compare models"
    )]
    TooFew { lesions: usize, malignant: usize },
    /// The margins make no sense.
    #[error("margins: {0}")]
    Margins(String),
}

impl Margins {
    /// Refuse margins that make no sense (negative, a level outside (0.5, 1), no bins).
    pub fn validate(&self) -> Result<(), ChallengeError> {
        let m = self;
        if !(m.auc_margin >= 0.0 && m.ece_margin >= 0.0 && m.level > 0.5 && m.level < 1.0 && m.ece_bins > 0) {
            return Err(ChallengeError::Margins(format!("{m:?}: want margins >= 0, level in (0.5, 1), bins >= 1")));
        }
        Ok(())
    }
}

/// Decide from both models' calibrated probabilities of the same held-out lesions.
pub fn decide(
    champion: &[f64],
    challenger: &[f64],
    malignant: &[bool],
    m: &Margins,
) -> Result<Decision, ChallengeError> {
    assert!(champion.len() == malignant.len() && challenger.len() == malignant.len(), "one label per probability");
    m.validate()?;
    let positives = malignant.iter().filter(|&&y| y).count();
    let too_few = ChallengeError::TooFew { lesions: malignant.len(), malignant: positives };
    let paired = delong_paired(champion, challenger, malignant).ok_or(too_few)?;
    let lower = paired.lower_bound(m.level);
    let (ece_champion, ece_challenger) = (
        expected_calibration_error(champion, malignant, m.ece_bins),
        expected_calibration_error(challenger, malignant, m.ece_bins),
    );
    let auc_ok = lower > -m.auc_margin;
    let ece_ok = ece_challenger <= ece_champion + m.ece_margin;
    let auc_words = format!(
        "ROC AUC {:.3} -> {:.3} on {} held-out lesions ({} malignant); DeLong {:.0}% lower bound of the change {:+.3} {} -{}",
        paired.auc_a,
        paired.auc_b,
        malignant.len(),
        positives,
        m.level * 100.0,
        lower,
        if auc_ok { ">" } else { "<=" },
        m.auc_margin
    );
    let ece_words = format!(
        "ECE {:.3} -> {:.3} ({} the champion's + {})",
        ece_champion,
        ece_challenger,
        if ece_ok { "<=" } else { ">" },
        m.ece_margin
    );
    let verdict = match (auc_ok, ece_ok) {
        (true, true) => "promoted",
        (false, true) => "not promoted: it may discriminate worse than the champion by more than the margin",
        (true, false) => "not promoted: it is calibrated worse than the champion by more than the margin",
        (false, false) => "not promoted: it may discriminate worse and is calibrated worse than the champion",
    };
    Ok(Decision {
        promote: auc_ok && ece_ok,
        reason: format!("{verdict}; {auc_words}; {ece_words}"),
        comparison: Comparison {
            lesions: malignant.len(),
            malignant: positives,
            champion_auc: paired.auc_a,
            challenger_auc: paired.auc_b,
            auc_change_lower_bound: lower,
            auc_p_two_sided: paired.p_two_sided(),
            champion_ece: ece_champion,
            challenger_ece: ece_challenger,
            margins: *m,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (64-bit LCG, top bits).
    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn a_challenger_that_ranks_at_chance_or_is_miscalibrated_is_refused_and_an_equal_one_passes() {
        let n = 200;
        let u = uniforms(7, 2 * n);
        let malignant: Vec<bool> = (0..n).map(|i| u[i] < 0.5).collect();
        // A good, calibrated champion: P(malignant) ranks well.
        let champion: Vec<f64> =
            (0..n).map(|i| if malignant[i] { 0.55 + 0.4 * u[n + i] } else { 0.05 + 0.4 * u[n + i] }).collect();
        let same = decide(&champion, &champion, &malignant, &Margins::default()).unwrap();
        assert!(same.promote, "{}", same.reason);
        assert!(same.reason.starts_with("promoted;"), "{}", same.reason);
        // A challenger trained on shuffled labels ranks at chance.
        let chance: Vec<f64> = uniforms(99, n);
        let worse = decide(&champion, &chance, &malignant, &Margins::default()).unwrap();
        assert!(!worse.promote);
        assert!(worse.reason.contains("discriminate worse"), "{}", worse.reason);
        assert!(worse.comparison.auc_change_lower_bound < -0.3);
        // The same ranking, squeezed towards 0.5: as good at ranking, badly calibrated.
        let squeezed: Vec<f64> = champion.iter().map(|p| 0.5 + (p - 0.5) * 0.2).collect();
        let flat = decide(&champion, &squeezed, &malignant, &Margins::default()).unwrap();
        assert!(!flat.promote);
        assert!(flat.reason.contains("calibrated worse"), "{}", flat.reason);
        assert!((flat.comparison.challenger_auc - flat.comparison.champion_auc).abs() < 1e-12);
        // Nothing to rank: no decision.
        let one_class = vec![true; 5];
        assert!(matches!(
            decide(&[0.1; 5], &[0.2; 5], &one_class, &Margins::default()),
            Err(ChallengeError::TooFew { lesions: 5, malignant: 5 })
        ));
        let bad = Margins { level: 1.0, ..Margins::default() };
        assert!(decide(&champion, &champion, &malignant, &bad).is_err());
    }
}
