//! renal-stats' evaluation metrics against scikit-learn and SciPy
//! (`tests/reference/sklearn_reference.py`, run from the test venv) on random inputs.
//!
//! Tolerances: 1e-9 absolute for the closed-form metrics (ROC AUC, average precision, trapezoid
//! PR AUC, F1, Brier, log loss, binomial P values); Platt parameters 1e-4 relative, because
//! scikit-learn stops its L-BFGS at a gradient tolerance of 1e-6 while ours runs Newton to 1e-12; the
//! calibrated probabilities they give must agree to 1e-7 (observed: about 1e-9). The clinical
//! model's update rule, run to convergence, must reach scikit-learn's L2 logistic optimum to
//! 1e-6 in every coefficient (observed: about 1e-9). Bagged one-feature trees grown on the same
//! bootstrap draws as scikit-learn's `DecisionTreeClassifier` must have its node counts and give
//! its probabilities to 1e-12 (why one feature: see the test).

use renal_e2e::venv_bin;
use renal_stats::{
    average_precision, binomial_test_two_sided, brier, log_loss, pr_auc_trapezoid, roc_auc, Confusion, Platt,
};
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
}

fn sklearn(query: &serde_json::Value) -> serde_json::Value {
    reference("sklearn_reference.py", query)
}

/// Run a reference script from the test venv with `query` on stdin; its JSON answer.
fn reference(name: &str, query: &serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference").join(name);
    let mut child = Command::new(venv_bin("python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python (scripts/python-env.sh)");
    child.stdin.take().unwrap().write_all(query.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_agree_with_scikit_learn_and_scipy() {
    let mut rng = Lcg(20261129);
    for (round, n) in [30usize, 112, 400, 1500].into_iter().enumerate() {
        // Labels with some signal; scores rounded to two decimals so that ties occur.
        let labels: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.55).collect();
        let scores: Vec<f64> = labels
            .iter()
            .map(|&y| (((rng.uniform() + if y { 0.35 } else { 0.0 }) / 1.35) * 100.0).round() / 100.0)
            .collect();
        let probabilities: Vec<f64> = scores.iter().map(|s| s * 0.9 + 0.05).collect();
        let binomial: Vec<(u64, u64, f64)> = vec![
            (78, 112, 63.0 / 112.0),
            (3 + round as u64, 40, 0.2),
            (n as u64 / 2 + 7, n as u64, 0.5),
            (0, 12, 0.3),
            (12, 12, 0.3),
        ];
        let query = serde_json::json!({
            "scores": scores,
            "labels": labels.iter().map(|&y| u8::from(y)).collect::<Vec<_>>(),
            "probabilities": probabilities,
            "threshold": 0.5,
            "binomial": binomial.iter().map(|&(k, n, p)| serde_json::json!([k, n, p])).collect::<Vec<_>>(),
        });
        let theirs = sklearn(&query);
        let f = |key: &str| theirs[key].as_f64().unwrap();
        let close = |what: &str, ours: f64, reference: f64| {
            assert!((ours - reference).abs() <= 1e-9, "n {n} {what}: ours {ours}, reference {reference}");
        };
        close("roc_auc", roc_auc(&scores, &labels).unwrap(), f("roc_auc"));
        close("average_precision", average_precision(&scores, &labels).unwrap(), f("average_precision"));
        close("pr_auc_trapezoid", pr_auc_trapezoid(&scores, &labels).unwrap(), f("pr_auc_trapezoid"));
        close("f1", Confusion::at_threshold(&probabilities, &labels, 0.5).f1(), f("f1"));
        close("brier", brier(&probabilities, &labels), f("brier"));
        close("log loss", log_loss(&probabilities, &labels), f("log_loss"));
        for (&(k, m, p), reference) in binomial.iter().zip(theirs["binomial"].as_array().unwrap()) {
            close(&format!("binomial {k}/{m} vs {p}"), binomial_test_two_sided(k, m, p), reference.as_f64().unwrap());
        }
        let platt = Platt::fit(&scores, &labels).unwrap();
        let (a, b) = (theirs["platt"][0].as_f64().unwrap(), theirs["platt"][1].as_f64().unwrap());
        assert!((platt.a - a).abs() <= 1e-4 * a.abs().max(1.0), "n {n} Platt a: ours {}, sklearn {a}", platt.a);
        assert!((platt.b - b).abs() <= 1e-4 * b.abs().max(1.0), "n {n} Platt b: ours {}, sklearn {b}", platt.b);
        let theirs_p = |s: f64| 1.0 / (1.0 + (a * s + b).exp());
        let worst = scores.iter().map(|&s| (platt.probability(s) - theirs_p(s)).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-7, "n {n}: calibrated probabilities differ by {worst}");
        println!(
            "n {n}: ROC AUC {:.6}, AP {:.6}, Platt ours ({:.6}, {:.6}) sklearn ({a:.6}, {b:.6}), max |dp| {worst:.1e}",
            f("roc_auc"),
            f("average_precision"),
            platt.a,
            platt.b
        );
    }
}

#[test]
fn clinical_model_reaches_scikit_learns_penalised_optimum() {
    use renal_learn::clinical::{ClinicalModel, ClinicalSettings, Features, VolumeScale};
    // Run the study's update rule as full-batch gradient descent with momentum until it settles:
    // it must land on the unique minimum of mean class-weighted cross-entropy + 0.01 |w|^2, which
    // scikit-learn finds with C = 1 / (2 N 0.01) and per-row weights N / n_class.
    let mut rng = Lcg(7);
    let n = 300;
    let x: Vec<Features> = (0..n)
        .map(|_| [30.0 + 50.0 * rng.uniform(), f64::from(u8::from(rng.uniform() < 0.6)), 80.0 * rng.uniform()])
        .collect();
    let y: Vec<bool> =
        x.iter().map(|r| rng.uniform() < 1.0 / (1.0 + (2.0 - 0.03 * r[0] - 0.02 * r[2]).exp())).collect();
    let settings = ClinicalSettings {
        learning_rate: 0.2,
        batch_size: 0,
        max_epochs: 20_000,
        patience: 20_000,
        // The optimiser is under test: the volume as given (the log scale is one map before it).
        volume: VolumeScale::Linear,
        ..ClinicalSettings::default()
    };
    let m = ClinicalModel::fit(&x, &y, &x, &y, &settings).unwrap();
    let pos = y.iter().filter(|&&t| t).count() as f64;
    let weights: Vec<f64> = y.iter().map(|&t| n as f64 / if t { pos } else { n as f64 - pos }).collect();
    let scaled: Vec<Vec<f64>> =
        x.iter().map(|r| (0..3).map(|j| (r[j] - m.min[j]) / (m.max[j] - m.min[j])).collect()).collect();
    let theirs = sklearn(&serde_json::json!({
        "scores": [0.1, 0.9], "labels": [0, 1], "probabilities": [0.1, 0.9], "threshold": 0.5, "binomial": [],
        "logistic": {"x": scaled, "y": y.iter().map(|&t| u8::from(t)).collect::<Vec<_>>(),
                     "sample_weight": weights, "C": 1.0 / (2.0 * n as f64 * 0.01)},
    }));
    let coef: Vec<f64> = theirs["logistic"]["coef"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let intercept = theirs["logistic"]["intercept"].as_f64().unwrap();
    println!("ours {:?} {:.6}; sklearn {coef:?} {intercept:.6}", m.weights, m.bias);
    for j in 0..3 {
        assert!((m.weights[j] - coef[j]).abs() < 1e-6, "weight {j}: ours {}, sklearn {}", m.weights[j], coef[j]);
    }
    assert!((m.bias - intercept).abs() < 1e-6, "bias: ours {}, sklearn {intercept}", m.bias);
}

#[test]
fn bagged_trees_match_scikit_learns_trees_on_the_same_draws() {
    use renal_learn::bagging::{Bagging, BaggingSettings};
    // One feature: with several, small nodes often have equally good splits on different
    // features, and scikit-learn breaks such ties by a random feature order (its own trees
    // change with random_state on data like this), so only the one-feature case is comparable
    // digit for digit. Within a feature both keep the first (lowest) of equal thresholds.
    // scikit-learn's trees compare float32 features, so the values are made float32-exact.
    let mut rng = Lcg(11);
    let f32_exact = |v: f64| f64::from(v as f32);
    let n = 240;
    let y: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.6).collect();
    let x: Vec<Vec<f64>> =
        y.iter().map(|&t| vec![f32_exact((rng.uniform() + if t { 0.3 } else { 0.0 }) / 1.3)]).collect();
    let query: Vec<Vec<f64>> = (0..400).map(|_| vec![f32_exact(rng.uniform())]).collect();
    let settings = BaggingSettings { trees: 10, seed: 5 };
    let ours = Bagging::fit(&x, &y, &settings);
    let theirs = sklearn(&serde_json::json!({
        "scores": [0.1, 0.9], "labels": [0, 1], "probabilities": [0.1, 0.9], "threshold": 0.5, "binomial": [],
        "bagging": {"x": x, "y": y.iter().map(|&t| u8::from(t)).collect::<Vec<_>>(),
                    "draws": Bagging::draws(n, &settings), "query": query},
    }));
    let nodes: Vec<usize> =
        theirs["bagging"]["nodes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(ours.trees.iter().map(|t| t.nodes.len()).collect::<Vec<_>>(), nodes, "tree sizes");
    let probabilities = theirs["bagging"]["probability"].as_array().unwrap();
    let worst = query
        .iter()
        .zip(probabilities)
        .map(|(row, p)| (ours.probability(row) - p.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    println!("bagging: 10 trees of {nodes:?} nodes; max |ours - sklearn| over 400 rows {worst:.1e}");
    assert!(worst < 1e-12, "probabilities differ by {worst}");
}

/// t-SNE against scikit-learn 1.7.2's exact method on 120 points in 32 dimensions (three
/// Gaussian blobs of different spread, like lesions' embeddings). Deterministic parts to stated
/// tolerances: the joint affinities (sklearn casts distances to float32 before its perplexity
/// search, so 1e-6 relative to the largest affinity), and the KL divergence and its gradient at
/// a fixed map (1e-9 relative). The optimisation is chaotic, so its result is compared by
/// quality, not coordinates: our map's KL divergence (scored by sklearn) within 5% of what
/// sklearn's own run reaches, and trustworthiness within 0.02 of its.
#[test]
fn tsne_agrees_with_scikit_learn() {
    use renal_stats::tsne::{gradient, joint_probabilities, kl_divergence, tsne, TsneSettings};
    let mut rng = Lcg(7);
    let mut gauss = || {
        let (u, v) = (rng.uniform().max(1e-12), rng.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let centres: Vec<Vec<f64>> =
        (0..3).map(|c| (0..32).map(|k| if k % 3 == c { 4.0 } else { 0.0 }).collect()).collect();
    let x: Vec<Vec<f64>> =
        (0..120).map(|i| centres[i % 3].iter().map(|m| m + (0.5 + 0.5 * (i % 3) as f64) * gauss()).collect()).collect();
    let perplexity = 30.0;
    let map = tsne(&x, &TsneSettings::default());
    let probe: Vec<[f64; 2]> =
        (0..x.len()).map(|i| [(i as f64 * 0.37).sin() * 5.0, (i as f64 * 0.11).cos() * 5.0]).collect();
    let query = serde_json::json!({"x": x, "perplexity": perplexity, "map": map.points, "probe": probe});
    let r = reference("tsne_reference.py", &query);
    let f = |v: &serde_json::Value| v.as_f64().unwrap();

    let n = x.len();
    let p = joint_probabilities(&x, perplexity);
    let theirs: Vec<f64> =
        r["P"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(f)).collect();
    let largest = theirs.iter().copied().fold(0.0, f64::max);
    let worst = p
        .iter()
        .zip(&theirs)
        .enumerate()
        .filter(|(ij, _)| ij / n != ij % n)
        .map(|(_, (a, b))| (a - b).abs())
        .fold(0.0, f64::max);
    println!("t-SNE affinities: max |P - P_sklearn| = {worst:.3e} (largest P {largest:.3e})");
    assert!(worst <= 1e-6 * largest, "{worst} vs {largest}");

    // KL and gradient at the probe map, each side with its own P.
    let kl = kl_divergence(&p, &probe);
    assert!((kl - f(&r["probe_kl"])).abs() <= 1e-6 * kl, "KL {kl} vs {}", r["probe_kl"]);
    let grad = gradient(&theirs, &probe, 1.0);
    let their_grad: Vec<[f64; 2]> = r["probe_grad"].as_array().unwrap().iter().map(|g| [f(&g[0]), f(&g[1])]).collect();
    let scale = their_grad.iter().flat_map(|g| g.iter()).fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in grad.iter().zip(&their_grad) {
        for c in 0..2 {
            assert!((a[c] - b[c]).abs() <= 1e-9 * scale, "gradient {a:?} vs {b:?}");
        }
    }

    let (ours_kl, sk_kl) = (f(&r["map_kl"]), f(&r["sklearn_kl"]));
    let (ours_t, sk_t) = (f(&r["map_trust"]), f(&r["sklearn_trust"]));
    println!("t-SNE fit: KL ours {ours_kl:.4} (ours says {:.4}) vs sklearn {sk_kl:.4}; trustworthiness ours {ours_t:.4} vs sklearn {sk_t:.4}", map.kl_divergence);
    assert!(
        (map.kl_divergence - ours_kl).abs() <= 1e-3 * ours_kl,
        "our KL {} vs sklearn's score of our map {ours_kl}",
        map.kl_divergence
    );
    assert!(ours_kl <= 1.05 * sk_kl, "KL {ours_kl} vs sklearn's {sk_kl}");
    assert!(ours_t >= sk_t - 0.02, "trustworthiness {ours_t} vs {sk_t}");
}

/// What Table 1 implies for a clinical model (renal_synth::implied) against the same reading in
/// SciPy (`tests/reference/implied_auc.py`: quad for d2, truncnorm on a coarser grid). Tolerance:
/// d2 to 1e-6; the AUCs to 2e-3 (the two grids differ; observed about 5e-4).
#[test]
fn table1_implied_auc_agrees_with_scipy() {
    use renal_synth::implied::{expected_range, from_generator, from_table1, ClassModel, Shape};
    let shape = |s: &Shape| serde_json::json!({"centre": s.centre, "sd": s.sd, "lo": s.lo, "hi": s.hi});
    let class =
        |c: &ClassModel| serde_json::json!({"age": shape(&c.age), "log_size": shape(&c.log_size), "male": c.male});
    let ranges = [2usize, 10, 507, 655];
    for ours in [from_table1(), from_generator()] {
        let theirs = reference(
            "implied_auc.py",
            &serde_json::json!({"ranges": ranges, "benign": class(&ours.benign), "malignant": class(&ours.malignant)}),
        );
        for (n, d2) in ranges.iter().zip(theirs["d2"].as_array().unwrap()) {
            let d2 = d2.as_f64().unwrap();
            assert!((expected_range(*n) - d2).abs() < 1e-6, "d2({n}): ours {} SciPy {d2}", expected_range(*n));
        }
        let auc = theirs["auc"].as_f64().unwrap();
        assert!((ours.auc - auc).abs() < 2e-3, "AUC ours {} SciPy {auc}", ours.auc);
        for (i, each) in theirs["auc_each"].as_array().unwrap().iter().enumerate() {
            let each = each.as_f64().unwrap();
            assert!((ours.auc_each[i] - each).abs() < 2e-3, "variable {i}: ours {} SciPy {each}", ours.auc_each[i]);
        }
    }
}

/// Isotonic calibration against scikit-learn's `IsotonicRegression(out_of_bounds="clip")` and
/// temperature scaling against SciPy's bounded scalar minimiser of the same cross-entropy
/// (`tests/reference/calibrators_reference.py`), on scores with ties. Tolerances: isotonic
/// predictions 1e-12 (the same closed-form algorithm); temperature 1e-6 relative (SciPy's
/// Brent search stops at its xatol; observed about 1e-9).
#[test]
fn isotonic_and_temperature_agree_with_scikit_learn_and_scipy() {
    use renal_stats::{Isotonic, Temperature};
    let mut rng = Lcg(20261206);
    for n in [25usize, 112, 800] {
        let labels: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.55).collect();
        // Logit-scale scores with signal, rounded to one decimal so that ties occur.
        let scores: Vec<f64> = labels
            .iter()
            .map(|&y| ((rng.uniform() * 6.0 - 3.0 + if y { 1.2 } else { -0.4 }) * 10.0).round() / 10.0)
            .collect();
        let query: Vec<f64> = (0..41).map(|i| -5.0 + 0.25 * i as f64).collect();
        let theirs = reference(
            "calibrators_reference.py",
            &serde_json::json!({"scores": scores, "labels": labels.iter().map(|&y| u8::from(y)).collect::<Vec<_>>(), "query": query}),
        );
        let iso = Isotonic::fit(&scores, &labels).unwrap();
        for (q, t) in query.iter().zip(theirs["isotonic"].as_array().unwrap()) {
            let t = t.as_f64().unwrap();
            assert!(
                (iso.probability(*q) - t).abs() < 1e-12,
                "n {n} isotonic at {q}: ours {} sklearn {t}",
                iso.probability(*q)
            );
        }
        let temperature = Temperature::fit(&scores, &labels).unwrap().temperature;
        let t = theirs["temperature"].as_f64().unwrap();
        assert!((temperature - t).abs() <= 1e-6 * t, "n {n} temperature: ours {temperature} SciPy {t}");
    }
}

/// The paired DeLong test (the trainer's champion-challenger comparison) against MLstatkit's
/// `Delong_test` (`tests/reference/delong_reference.py`), which follows R pROC's `roc.test`:
/// both AUCs, the variance of their difference and z to 1e-9 absolute, the two-sided P to
/// 1e-9; scores rounded so that ties occur within and across classes.
#[test]
fn the_paired_delong_test_agrees_with_mlstatkit() {
    let mut rng = Lcg(20261207);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (n, decimals) in [(12usize, 1.0), (40, 2.0), (33, 1.0), (250, 2.0), (1200, 3.0)] {
        let labels: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.4).collect();
        let round = |x: f64| (x * 10f64.powf(decimals)).round() / 10f64.powf(decimals);
        // Model b shares part of model a's noise: correlated, as a champion and its challenger are.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &y in &labels {
            let shared = rng.uniform();
            let signal = if y { 0.3 } else { 0.0 };
            a.push(round((shared + rng.uniform() + signal) / 2.3));
            b.push(round((shared + rng.uniform() + 1.5 * signal) / 2.45));
        }
        ours.push(renal_stats::delong_paired(&a, &b, &labels).unwrap());
        let labels01: Vec<u8> = labels.iter().map(|&y| u8::from(y)).collect();
        cases.push(serde_json::json!({"labels": labels01, "a": a, "b": b}));
    }
    let answers = reference("delong_reference.py", &serde_json::json!({ "cases": cases }));
    for (ours, theirs) in ours.iter().zip(answers.as_array().unwrap()) {
        assert_eq!(theirs["method"], "delong", "{theirs}");
        let close = |x: f64, key: &str| {
            let want = theirs[key].as_f64().unwrap();
            assert!((x - want).abs() < 1e-9, "{key}: ours {x}, MLstatkit {want} ({ours:?})");
        };
        close(ours.auc_a, "auc_a");
        close(ours.auc_b, "auc_b");
        close(ours.var_diff, "var_diff");
        close(ours.z(), "z");
        close(ours.p_two_sided(), "p");
    }
}
