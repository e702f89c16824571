//! `renal eval` end to end: CSV files in, `report.json`, SVG figures and `index.html` out.
//!
//! The ensemble's predictions are built to give the study's published test-set counts (63
//! malignant, 49 benign; 58 true positives, 20 true negatives), so the report must carry the
//! published accuracy, sensitivity and specificity with their intervals and P = 0.004 against
//! the zero rule. Readers and a radiomics model are compared with McNemar's test, whose counts
//! the test works out independently. Figures must be well-formed SVG (checked with Python's XML
//! parser) and referenced from the page. Bad files fail with the file, line and reason.

use renal_e2e::{renal, venv_bin};
use std::fmt::Write;
use std::path::Path;

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[test]
fn report_from_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let at = |n: &str| dir.path().join(n);
    let (mut labels, mut predictions, mut experts) = (
        String::from("case_id,label\n"),
        String::from("case_id,model,probability\n"),
        String::from("case_id,expert,call\n"),
    );
    let (mut e1_only, mut model_only) = (0u64, 0u64);
    for i in 0..112 {
        let malignant = i < 63;
        let case = format!("T{i:03}");
        writeln!(labels, "{case},{}", if malignant { "malignant" } else { "benign" }).unwrap();
        // Ensemble: malignant 0..58 called malignant, 58..63 missed; benign 63..83 right, the rest wrong.
        let ensemble_right = if malignant { i < 58 } else { i < 83 };
        let p = match (malignant, ensemble_right) {
            (true, true) => 0.6 + 0.005 * (i % 50) as f64,
            (true, false) => 0.3,
            (false, true) => 0.1 + 0.01 * (i % 30) as f64,
            (false, false) => 0.55 + 0.004 * (i % 40) as f64,
        };
        writeln!(predictions, "{case},ensemble,{p}").unwrap();
        writeln!(predictions, "{case},radiomics,{}", if i % 3 == 0 { 0.9 } else { 0.2 }).unwrap();
        // Reader E1 is right on every case whose index is not a multiple of 4.
        let e1_right = i % 4 != 0;
        let call = if e1_right == malignant { "malignant" } else { "benign" };
        writeln!(experts, "{case},E1,{call}").unwrap();
        e1_only += u64::from(e1_right && !ensemble_right);
        model_only += u64::from(ensemble_right && !e1_right);
    }
    std::fs::write(at("labels.csv"), &labels).unwrap();
    std::fs::write(at("predictions.csv"), &predictions).unwrap();
    std::fs::write(at("experts.csv"), &experts).unwrap();
    // Embeddings: three dimensions, the malignant cases offset from the benign ones.
    let mut embeddings = String::from("case_id,e0,e1,e2\n");
    for i in 0..112 {
        let shift = if i < 63 { 6.0 } else { 0.0 };
        writeln!(embeddings, "T{i:03},{},{},{}", shift + (i % 7) as f64 * 0.3, (i % 5) as f64 * 0.2, (i % 3) as f64)
            .unwrap();
    }
    std::fs::write(at("embeddings.csv"), &embeddings).unwrap();
    let out = renal(&[
        "eval",
        "--predictions",
        at("predictions.csv").to_str().unwrap(),
        "--labels",
        at("labels.csv").to_str().unwrap(),
        "--experts",
        at("experts.csv").to_str().unwrap(),
        "--embeddings",
        at("embeddings.csv").to_str().unwrap(),
        "--out",
        at("report").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(at("report/report.json")).unwrap()).unwrap();
    let e = &report["models"]["ensemble"];
    let get = |v: &serde_json::Value| v.as_f64().unwrap();
    for (metric, published) in
        [("accuracy", [0.70, 0.61, 0.77]), ("sensitivity", [0.92, 0.82, 0.97]), ("specificity", [0.41, 0.28, 0.55])]
    {
        let ours = [get(&e[metric]["estimate"]), get(&e[metric]["ci95"][0]), get(&e[metric]["ci95"][1])];
        assert_eq!(ours.map(|v| round(v, 2)), published, "{metric}: {ours:?}");
    }
    assert_eq!(round(get(&e["p_vs_zero_rule"]), 3), 0.004);
    assert_eq!(e["confusion"]["tp"], 58);
    assert_eq!(e["confusion"]["tn"], 20);
    assert!(e["confusion"]["fn"].is_u64() && e["confusion"].get("fn_").is_none(), "{}", e["confusion"]);
    // Every malignant case the ensemble called outranks every benign case it called benign,
    // and so on: the AUC the report gives is the Mann-Whitney one on these probabilities.
    let probs: Vec<(f64, bool)> = predictions
        .lines()
        .skip(1)
        .filter(|l| l.contains(",ensemble,"))
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            let i: usize = v[0][1..].parse().unwrap();
            (v[2].parse().unwrap(), i < 63)
        })
        .collect();
    let (p, y): (Vec<f64>, Vec<bool>) = probs.into_iter().unzip();
    assert!((get(&e["roc_auc"]["estimate"]) - renal_stats::roc_auc(&p, &y).unwrap()).abs() < 1e-12);
    let [lo, hi] = [get(&e["roc_auc"]["ci95"][0]), get(&e["roc_auc"]["ci95"][1])];
    assert!(lo < get(&e["roc_auc"]["estimate"]) && get(&e["roc_auc"]["estimate"]) < hi, "bootstrap CI brackets");
    assert!(e["pr_auc"]["estimate"].is_f64() && e["ece"].is_f64() && e["brier"].is_f64());

    // Reader row and the paired tests.
    assert_eq!(report["experts"]["E1"]["n"], 112);
    assert_eq!(round(get(&report["experts"]["E1"]["accuracy"]["estimate"]), 2), 0.75);
    let comparisons = report["comparisons"].as_array().unwrap();
    let vs_e1 = comparisons.iter().find(|c| c["model"] == "ensemble" && c["versus"] == "E1").unwrap();
    assert_eq!(
        (vs_e1["model_only_correct"].as_u64(), vs_e1["versus_only_correct"].as_u64()),
        (Some(model_only), Some(e1_only))
    );
    assert!((get(&vs_e1["p_value"]) - renal_stats::mcnemar_exact(model_only, e1_only)).abs() < 1e-15);
    assert!(comparisons.iter().any(|c| c["model"] == "ensemble" && c["versus"] == "radiomics"));
    assert!(!comparisons.iter().any(|c| c["model"] == "radiomics" && c["versus"] == "radiomics"));

    // Figures: well-formed SVG, and on the page.
    let html = std::fs::read_to_string(at("report/index.html")).unwrap();
    for figure in ["roc.svg", "pr.svg", "reliability.svg", "confusion.svg", "tsne.svg"] {
        let path = at("report").join(figure);
        let check = std::process::Command::new(venv_bin("python"))
            .args(["-c", "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); assert r.tag.endswith('svg'), r.tag; print(len(list(r.iter())))"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(check.status.success(), "{figure}: {}", String::from_utf8_lossy(&check.stderr));
        let elements: usize = String::from_utf8_lossy(&check.stdout).trim().parse().unwrap();
        assert!(elements > 20, "{figure} has only {elements} elements");
        assert!(html.contains(figure), "index.html does not show {figure}");
    }
    // The t-SNE map: every case once, and the two offset groups apart (each point nearer the
    // centre of its own label's points than the other label's).
    let map = &report["embedding_map"];
    let points = map["points"].as_array().unwrap();
    assert_eq!((points.len(), map["dimensions"].as_u64()), (112, Some(3)));
    let centre = |m: bool| {
        let own: Vec<&serde_json::Value> = points.iter().filter(|p| p["malignant"] == m).collect();
        let k = own.len() as f64;
        (own.iter().map(|p| get(&p["x"])).sum::<f64>() / k, own.iter().map(|p| get(&p["y"])).sum::<f64>() / k)
    };
    let (cm, cb) = (centre(true), centre(false));
    for p in points {
        let (x, y) = (get(&p["x"]), get(&p["y"]));
        let (own, other) = if p["malignant"] == true { (cm, cb) } else { (cb, cm) };
        assert!((x - own.0).hypot(y - own.1) < (x - other.0).hypot(y - other.1), "{p}");
    }
    let roc = std::fs::read_to_string(at("report/roc.svg")).unwrap();
    assert!(roc.contains("ensemble AUC") && roc.contains("E1 (reader)"), "ROC legend names models and readers");
    assert!(String::from_utf8_lossy(&out.stdout).contains("| ensemble | 112 | 0.70 (0.61-0.77)"));
}

fn fails_with(dir: &Path, labels: &str, predictions: &str, expect: &str) {
    std::fs::write(dir.join("l.csv"), labels).unwrap();
    std::fs::write(dir.join("p.csv"), predictions).unwrap();
    let out = renal(&[
        "eval",
        "--predictions",
        dir.join("p.csv").to_str().unwrap(),
        "--labels",
        dir.join("l.csv").to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{expect}: {err}");
    assert!(err.contains(expect) && !err.contains("panicked"), "want {expect:?} in: {err}");
}

#[test]
fn bad_files_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let labels = "case_id,label\nA,benign\nB,malignant\n";
    fails_with(d, "case_id,label\nA,benign\nB,maybe\n", "case_id,model,probability\nA,m,0.1\n", "line 3");
    fails_with(d, "case_id,label\nA,benign\nB,maybe\n", "case_id,model,probability\nA,m,0.1\n", "\"maybe\"");
    fails_with(d, labels, "case_id,model,probability\nA,m,0.1\nA,m,0.2\n", "two predictions for case A");
    fails_with(d, labels, "case_id,model,probability\nA,m,1.5\n", "outside [0, 1]");
    fails_with(d, labels, "case_id,model,probability\nA,m,high\n", "not a number");
    fails_with(d, labels, "case_id,model,probability\nC,m,0.4\n", "without a label, e.g. C");
    fails_with(d, labels, "case_id,model,p\nA,m,0.4\n", "no `probability` column");
    fails_with(d, labels, "case_id,model,probability\n", "no predictions");
    fails_with(d, "case_id,label\nA,benign\nA,malignant\n", "case_id,model,probability\nA,m,0.4\n", "labelled twice");

    // Embeddings: a value that is not a number, and too few cases for a map.
    std::fs::write(d.join("l.csv"), labels).unwrap();
    std::fs::write(d.join("p.csv"), "case_id,model,probability\nA,m,0.1\nB,m,0.9\n").unwrap();
    for (text, expect) in [
        ("case_id,e0\nA,0.5\nB,x\n", "line 3: \"x\" is not a finite number"),
        ("case_id,e0\nA,0.5\nB,0.7\n", "at least 4 cases"),
        ("e0,case_id\nA,0.5\n", "case_id (first)"),
    ] {
        std::fs::write(d.join("e.csv"), text).unwrap();
        let out = renal(&[
            "eval",
            "--predictions",
            d.join("p.csv").to_str().unwrap(),
            "--labels",
            d.join("l.csv").to_str().unwrap(),
            "--embeddings",
            d.join("e.csv").to_str().unwrap(),
            "--out",
            d.join("r").to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{expect}: {err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "want {expect:?} in: {err}");
    }
}
