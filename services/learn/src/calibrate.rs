//! The three calibrators side by side: fit each on the same rows, score each on held-out rows.
//!
//! The study calibrated with Platt scaling only. Isotonic regression assumes nothing about the
//! shape of the distortion but needs more rows; temperature scaling has one parameter and
//! cannot move a model's 0.5 point. Which calibrates best is an empirical question per model
//! and cohort, so [`compare`] fits all three on the same rows of each round (rows that chose
//! nothing) and reports each one's ECE, Brier score and log loss on the rounds' pooled
//! held-out rows.

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

/// One round of a comparison: the raw outputs and outcomes the calibrators are fitted on, and
/// the held-out ones they are scored on.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// Raw probabilities the calibrators are fitted on.
    pub fit_raw: &'a [f64],
    /// Their outcomes.
    pub fit_y: &'a [bool],
    /// Held-out raw probabilities.
    pub held_raw: &'a [f64],
    /// Their outcomes.
    pub held_y: &'a [bool],
}

/// One method's scores on the pooled held-out rows of every round it could be fitted in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// The calibrator of each round it was fitted in.
    pub calibrators: Vec<Calibrator>,
    /// Held-out rows scored.
    pub n: usize,
    /// Expected calibration error over `bins` equal-width bins.
    pub ece: f64,
    /// Brier score.
    pub brier: f64,
    /// Mean log loss ([`renal_stats::log_loss`]).
    pub log_loss: f64,
}

/// Fit each of [`Method::ALL`] on each round's fit rows, apply it to that round's held-out rows,
/// and score the pooled held-out probabilities (one calibrator per round: the rounds of a
/// cross-validation). A round where a method cannot be fitted (one class among its fit rows)
/// adds nothing to that method; a method fitted in no round is left out.
pub fn compare(rounds: &[Round<'_>], bins: usize) -> Vec<(Method, Scored)> {
    let mut out = Vec::new();
    for method in Method::ALL {
        let (mut calibrators, mut p, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for r in rounds {
            assert_eq!(r.held_raw.len(), r.held_y.len(), "one label per held-out probability");
            let Ok(calibrator) = Calibrator::fit(method, r.fit_raw, r.fit_y) else { continue };
            p.extend(r.held_raw.iter().map(|&raw| calibrator.probability(raw)));
            y.extend_from_slice(r.held_y);
            calibrators.push(calibrator);
        }
        if calibrators.is_empty() {
            continue;
        }
        let scored = Scored {
            n: p.len(),
            ece: expected_calibration_error(&p, &y, bins),
            brier: brier(&p, &y),
            log_loss: log_loss(&p, &y),
            calibrators,
        };
        out.push((method, scored));
    }
    out
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
        let round = Round { fit_raw: &fit_raw, fit_y: &fit_y, held_raw: &held_raw, held_y: &held_y };
        let scored = compare(&[round], 10);
        let methods: Vec<Method> = scored.iter().map(|(m, _)| *m).collect();
        assert_eq!(methods, Method::ALL);
        for (m, s) in &scored {
            assert_eq!((s.calibrators.len(), s.calibrators[0].method(), s.n), (1, *m, 20_000));
            assert!(s.ece < 0.02, "{m:?}: held-out ECE {}", s.ece);
            assert!(s.log_loss < log_loss(&held_raw, &held_y), "{s:?}");
        }
        // Temperature finds the planted scale.
        let Calibrator::Temperature(t) = &scored[2].1.calibrators[0] else { panic!("third is temperature") };
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
        let round = Round { fit_raw: &fit_raw, fit_y: &fit_y, held_raw: &held_raw, held_y: &held_y };
        let scored = compare(&[round], 10);
        let (platt, isotonic, temperature) = (&scored[0].1, &scored[1].1, &scored[2].1);
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

    #[test]
    fn rounds_pool_their_held_out_rows_and_a_round_that_cannot_fit_adds_none() {
        let truth = |raw: f64| raw;
        let (a_raw, a_y) = rows(400, 6, truth);
        let (b_raw, b_y) = rows(400, 7, truth);
        let one_class = [true; 50];
        let rounds = [
            Round { fit_raw: &a_raw[..200], fit_y: &a_y[..200], held_raw: &a_raw[200..], held_y: &a_y[200..] },
            Round { fit_raw: &b_raw[..200], fit_y: &b_y[..200], held_raw: &b_raw[200..], held_y: &b_y[200..] },
            Round { fit_raw: &b_raw[..50], fit_y: &one_class, held_raw: &b_raw[..50], held_y: &b_y[..50] },
        ];
        for (m, s) in compare(&rounds, 10) {
            assert_eq!((s.calibrators.len(), s.n), (2, 400), "{m:?}");
            // Independently: each round's own calibrator on its own held-out rows, pooled.
            let mut p: Vec<f64> = a_raw[200..].iter().map(|&r| s.calibrators[0].probability(r)).collect();
            p.extend(b_raw[200..].iter().map(|&r| s.calibrators[1].probability(r)));
            let y: Vec<bool> = a_y[200..].iter().chain(&b_y[200..]).copied().collect();
            assert_eq!(s.brier, brier(&p, &y), "{m:?}");
            assert_eq!(s.ece, expected_calibration_error(&p, &y, 10), "{m:?}");
        }
        assert!(compare(&rounds[2..], 10).is_empty(), "no round fitted: no rows");
    }
}
