//! renal-stats' drift statistics and CBPE against SciPy and NannyML
//! (`tests/reference/drift_reference.py`, run from the drift venv) on random samples.
//!
//! Tolerances: the KS statistic, Wasserstein-1, the quantile bin edges and the PSI on them to
//! 1e-12 (relative where the value is large); the exact KS P value to 1e-10 absolute (both count
//! lattice paths in doubles); the asymptotic one, on every case, to 1e-10 against SciPy's
//! `kstwobign` at the same corrected argument (`renal_stats::drift::ks_two_sample_with`), and
//! where both samples hold at least 50 values, within 0.006 of the exact P value (the error the
//! correction was measured to keep for such sizes) and within 0.015 of
//! `ks_2samp(method="asymp")`, SciPy's finite-n distribution at n = m n / (m + n). NannyML's univariate KS statistic and
//! Wasserstein distance (its exact mode: references under 10,000 rows) to 1e-12. CBPE's expected
//! accuracy to 1e-12; its expected ROC AUC to 1e-4, because NannyML rounds its cumulative
//! expected counts to 5 decimals before taking the area.

use renal_e2e::drift_venv_bin;
use renal_stats::drift::{cbpe, compare, kolmogorov_sf, ks_two_sample, ks_two_sample_with, wasserstein_1, Reference};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A small deterministic generator for test data (64-bit LCG, top bits).
struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal by Box–Muller.
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn reference(query: &serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference").join("drift_reference.py");
    let mut child = Command::new(drift_venv_bin("python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the drift venv's python (scripts/python-env.sh)");
    child.stdin.take().unwrap().write_all(query.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "drift_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    let scale = theirs.abs().max(1.0);
    assert!((ours - theirs).abs() <= tolerance * scale, "{what}: ours {ours}, reference {theirs}");
}

#[test]
fn drift_statistics_agree_with_scipy_and_nannyml() {
    let mut rng = Lcg(20261206);
    // (reference size, window size, window shift in SDs, window scale, rounding to create ties)
    let cases: Vec<(usize, usize, f64, f64, Option<f64>)> = vec![
        (6, 3, 0.0, 1.0, None),
        (40, 25, 0.0, 1.0, Some(10.0)),
        (300, 50, 0.3, 1.0, None),
        (500, 120, 0.0, 1.6, Some(100.0)),
        (1000, 200, 1.0, 1.0, None),
        (2000, 2500, 0.05, 1.0, None),
        // Monitoring windows of 50 against large references, near the 0.05 verdict.
        (9_000, 50, 0.1, 1.0, None),
        (5_000, 50, 0.0, 1.0, Some(1000.0)),
    ];
    let mut samples = Vec::new();
    for &(m, n, shift, scale, round) in &cases {
        let r = |x: f64| round.map_or(x, |k| (x * k).round() / k);
        let a: Vec<f64> = (0..m).map(|_| r(rng.normal())).collect();
        let b: Vec<f64> = (0..n).map(|_| r(shift + scale * rng.normal())).collect();
        samples.push((a, b));
    }
    let cbpe_cases: Vec<Vec<f64>> = [30usize, 200, 1000]
        .iter()
        .map(|&n| (0..n).map(|_| (rng.normal() * 1.5).tanh() * 0.49 + 0.5).collect())
        .collect();
    let query = serde_json::json!({
        "cases": samples.iter().map(|(a, b)| serde_json::json!({"reference": a, "window": b, "bins": 10})).collect::<Vec<_>>(),
        "cbpe": cbpe_cases.iter().map(|p| serde_json::json!({"p": p, "threshold": 0.5})).collect::<Vec<_>>(),
    });
    let theirs = reference(&query);
    for (k, ((a, b), t)) in samples.iter().zip(theirs["cases"].as_array().unwrap()).enumerate() {
        let f = |key: &str| t[key].as_f64().unwrap();
        let (m, n) = (a.len(), b.len());
        let what = |s: &str| format!("case {k} (m {m}, n {n}): {s}");
        let reference = Reference::new(a, 10, 10_000).unwrap();
        assert!(reference.is_complete());
        let edges: Vec<f64> = t["edges"].as_array().unwrap().iter().map(|e| e.as_f64().unwrap()).collect();
        assert_eq!(reference.edges.len(), edges.len(), "{}", what("bin edges"));
        for (ours, theirs) in reference.edges.iter().zip(&edges) {
            close(&what("edge"), *ours, *theirs, 1e-12);
        }
        let d = compare(&reference, b);
        close(&what("psi"), d.psi, f("psi"), 1e-12);
        close(&what("ks"), d.ks, f("ks"), 1e-12);
        close(&what("nannyml ks"), d.ks, f("nannyml_ks"), 1e-12);
        close(&what("wasserstein"), d.wasserstein, f("wasserstein"), 1e-12);
        close(&what("nannyml wasserstein"), d.wasserstein, f("nannyml_wasserstein"), 1e-12);
        let (mut sa, mut sb) = (a.clone(), b.clone());
        sa.sort_by(f64::total_cmp);
        sb.sort_by(f64::total_cmp);
        if d.ks_exact {
            close(&what("exact ks p"), d.ks_p, f("ks_p_exact"), 1e-10);
        }
        // The asymptotic form on every case, whatever the exact limit chose.
        let asymptotic = ks_two_sample_with(&sa, &sb, m as u64, 0);
        assert!(!asymptotic.exact);
        println!(
            "{}: exact {:.5}, ours asymptotic {:.5}, SciPy asymptotic {:.5}",
            what("ks p"),
            f("ks_p_exact"),
            asymptotic.p_value,
            f("ks_p_asymp")
        );
        close(&what("asymptotic ks p"), asymptotic.p_value, f("corrected_p"), 1e-10);
        if m.min(n) >= 50 {
            close(&what("asymptotic ks p against the exact one"), asymptotic.p_value, f("ks_p_exact"), 0.006);
            close(&what("asymptotic ks p against ks_2samp asymp"), asymptotic.p_value, f("ks_p_asymp"), 0.015);
        }
        // The plain two-sample entry points agree with the windowed comparison.
        assert_eq!(ks_two_sample(&sa, &sb).statistic, d.ks);
        assert_eq!(wasserstein_1(&sa, &sb), d.wasserstein);
    }
    // Both P value paths were exercised.
    let exact: Vec<bool> = samples.iter().map(|(a, b)| ks_two_sample(a, b).exact).collect();
    assert!(exact.iter().any(|&e| e) && exact.iter().any(|&e| !e), "{exact:?}");
    for (p, t) in cbpe_cases.iter().zip(theirs["cbpe"].as_array().unwrap()) {
        let c = cbpe(p, 0.5);
        close("cbpe accuracy", c.expected_accuracy, t["accuracy"].as_f64().unwrap(), 1e-12);
        close("cbpe roc auc", c.expected_roc_auc, t["roc_auc"].as_f64().unwrap(), 1e-4);
    }
}

/// A reference too large to keep whole: its quantile sample gives the KS statistic within one
/// quantile step (1 / cap) of the full reference's, and the P value the corrected limit law's
/// with the full reference's size.
#[test]
fn a_quantile_reference_stays_within_a_step_of_the_full_one() {
    let mut rng = Lcg(7);
    let full: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
    let window: Vec<f64> = (0..150).map(|_| 0.2 + rng.normal()).collect();
    let (mut sf, mut sw) = (full.clone(), window.clone());
    sf.sort_by(f64::total_cmp);
    sw.sort_by(f64::total_cmp);
    let whole = ks_two_sample(&sf, &sw);
    let cap = 2_000;
    let reference = Reference::new(&full, 10, cap).unwrap();
    assert!(!reference.is_complete());
    let d = compare(&reference, &window);
    assert!((d.ks - whole.statistic).abs() <= 1.0 / cap as f64 + 1e-12, "{} vs {}", d.ks, whole.statistic);
    assert!(!d.ks_exact);
    let (en, w) = (f64::sqrt(20_000.0 * 150.0 / 20_150.0), 1.0 - 150.0 / 20_000.0);
    assert!((d.ks_p - kolmogorov_sf((en + w * (0.12 + 0.11 / en)) * d.ks)).abs() < 1e-15);
    assert!((d.wasserstein - wasserstein_1(&sf, &sw)).abs() < 0.01, "{} vs {}", d.wasserstein, wasserstein_1(&sf, &sw));
}
