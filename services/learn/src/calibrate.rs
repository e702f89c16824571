//! The three calibrators side by side: fit each on the same rows, score each on held-out rows.
//!
//! The study calibrated with Platt scaling only. Isotonic regression assumes nothing about the
//! shape of the distortion but needs more rows; temperature scaling has one parameter and
//! cannot move a model's 0.5 point. Which calibrates best is an empirical question per model
//! and cohort, so [`compare`] fits all three on one set of rows (rows that chose nothing) and
//! reports each one's ECE, Brier score and log loss on another.

use renal_stats::{brier, expected_calibration_error, log_loss, CalibrationError, Isotonic, Platt, Temperature};

/// Which calibrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-parameter sigmoid on the raw probability (the study's).
    Platt,
    /// Non-decreasing step function, interpolated.
    Isotonic,
    /// One scale on the raw probability's logit.
    Temperature,
}

impl Method {
    /// All three, the study's first.
    pub const ALL: [Method; 3] = [Method::Platt, Method::Isotonic, Method::Temperature];

    /// Lower-case name, as in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Platt => "platt",
            Method::Isotonic => "isotonic",
            Method::Temperature => "temperature",
        }
    }
}

/// A fitted calibrator of raw probabilities.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// Platt scaling of the raw probability.
    Platt(Platt),
    /// Isotonic regression of the raw probability.
    Isotonic(Isotonic),
    /// Temperature scaling of the raw probability's logit.
    Temperature(Temperature),
}

/// Raw probabilities are clamped this far inside (0, 1) before their logit is taken.
const LOGIT_EPS: f64 = 1e-6;

/// The logit of a raw probability, clamped [`LOGIT_EPS`] inside (0, 1).
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (p / (1.0 - p)).ln()
}

impl Calibrator {
    /// Fit `method` on raw probabilities and outcomes.
    pub fn fit(method: Method, raw: &[f64], positive: &[bool]) -> Result<Calibrator, CalibrationError> {
        Ok(match method {
            Method::Platt => Calibrator::Platt(Platt::fit_non_decreasing(raw, positive)?),
            Method::Isotonic => Calibrator::Isotonic(Isotonic::fit(raw, positive)?),
            Method::Temperature => {
                let z: Vec<f64> = raw.iter().map(|&p| logit(p)).collect();
                Calibrator::Temperature(Temperature::fit(&z, positive)?)
            }
        })
    }

    /// Which kind this is.
    pub fn method(&self) -> Method {
        match self {
            Calibrator::Platt(_) => Method::Platt,
            Calibrator::Isotonic(_) => Method::Isotonic,
            Calibrator::Temperature(_) => Method::Temperature,
        }
    }

    /// Calibrated probability of a raw probability.
    pub fn probability(&self, raw: f64) -> f64 {
        match self {
            Calibrator::Platt(c) => c.probability(raw),
            Calibrator::Isotonic(c) => c.probability(raw),
            Calibrator::Temperature(c) => c.probability(logit(raw)),
        }
    }
}

/// One calibrator's held-out scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// The calibrator, fitted.
    pub calibrator: Calibrator,
    /// Expected calibration error over `bins` equal-width bins.
    pub ece: f64,
    /// Brier score.
    pub brier: f64,
    /// Mean log loss ([`renal_stats::log_loss`]).
    pub log_loss: f64,
}

/// Fit each of [`Method::ALL`] on (`fit_raw`, `fit_y`) and score it on (`held_raw`, `held_y`).
pub fn compare(
    fit_raw: &[f64],
    fit_y: &[bool],
    held_raw: &[f64],
    held_y: &[bool],
    bins: usize,
) -> Result<Vec<Scored>, CalibrationError> {
    assert_eq!(held_raw.len(), held_y.len(), "one label per held-out probability");
    Method::ALL
        .iter()
        .map(|&m| {
            let calibrator = Calibrator::fit(m, fit_raw, fit_y)?;
            let p: Vec<f64> = held_raw.iter().map(|&r| calibrator.probability(r)).collect();
            Ok(Scored {
                ece: expected_calibration_error(&p, held_y, bins),
                brier: brier(&p, held_y),
                log_loss: log_loss(&p, held_y),
                calibrator,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// `n` raw probabilities uniform on (0.02, 0.98) whose outcomes follow `truth(raw)`.
    fn rows(n: usize, seed: u64, truth: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<bool>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let raw = 0.02 + 0.96 * rng.random::<f64>();
                (raw, rng.random::<f64>() < truth(raw))
            })
            .unzip()
    }

    #[test]
    fn each_calibrator_repairs_an_overconfident_model_on_held_out_rows() {
        // True probability sigmoid(logit(raw) / 2): the model is overconfident by a temperature
        // of 2, which all three can undo. Raw ECE on 20,000 held-out rows is about 0.09.
        let truth = |raw: f64| renal_stats::sigmoid(logit(raw) / 2.0);
        let (fit_raw, fit_y) = rows(20_000, 1, truth);
        let (held_raw, held_y) = rows(20_000, 2, truth);
        let raw_ece = expected_calibration_error(&held_raw, &held_y, 10);
        assert!(raw_ece > 0.07, "the planted distortion shows: {raw_ece}");
        let scored = compare(&fit_raw, &fit_y, &held_raw, &held_y, 10).unwrap();
        let methods: Vec<Method> = scored.iter().map(|s| s.calibrator.method()).collect();
        assert_eq!(methods, Method::ALL);
        for s in &scored {
            assert!(s.ece < 0.02, "{:?}: held-out ECE {}", s.calibrator.method(), s.ece);
            assert!(s.log_loss < log_loss(&held_raw, &held_y), "{s:?}");
        }
        // Temperature finds the planted scale.
        let Calibrator::Temperature(t) = &scored[2].calibrator else { panic!("third is temperature") };
        assert!((t.temperature - 2.0).abs() < 0.1, "{t:?}");
    }

    #[test]
    fn only_isotonic_repairs_a_distortion_no_sigmoid_has() {
        // True probability: a step at raw 0.5 (0.2 below, 0.8 above). No monotone sigmoid of
        // the raw probability or its logit is a step, so Platt and temperature stay off; the
        // isotonic fit is the step itself.
        let truth = |raw: f64| if raw < 0.5 { 0.2 } else { 0.8 };
        let (fit_raw, fit_y) = rows(20_000, 3, truth);
        let (held_raw, held_y) = rows(20_000, 4, truth);
        let scored = compare(&fit_raw, &fit_y, &held_raw, &held_y, 10).unwrap();
        let (platt, isotonic, temperature) = (&scored[0], &scored[1], &scored[2]);
        assert!(isotonic.ece < 0.02, "{isotonic:?}");
        assert!(isotonic.brier < platt.brier && isotonic.brier < temperature.brier, "{scored:?}");
        assert!(platt.ece > 0.03 && temperature.ece > 0.03, "{scored:?}");
    }

    #[test]
    fn calibrators_round_trip_through_json_with_their_method() {
        let (raw, y) = rows(200, 5, |r| r);
        for m in Method::ALL {
            let c = Calibrator::fit(m, &raw, &y).unwrap();
            let text = serde_json::to_string(&c).unwrap();
            assert!(text.contains(&format!("\"method\":\"{}\"", m.name())), "{text}");
            let back: Calibrator = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c);
            assert_eq!(back.probability(0.3), c.probability(0.3));
        }
        assert!(Calibrator::fit(Method::Isotonic, &[0.2, 0.4], &[true, true]).is_err());
    }
}
