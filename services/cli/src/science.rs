//! `renal bench science`: the study-scale evaluation as a benchmark, not a test.
//!
//! Synthesises a cohort, runs ingest, preprocess and radiomics once, then trains and evaluates
//! under two protocols on the same lesions: k patient-grouped folds (every testable lesion
//! predicted by models that never saw it) and leave one institution out (by default HUP, the
//! study's largest site). Prints one table per protocol, per model: held-out lesions, ROC AUC
//! with its bootstrap 95% CI, accuracy, ECE and Brier score of the served (Platt) probabilities,
//! and the calibrator with the lowest held-out ECE; then what the study's Table 1 implies a
//! clinical model can reach, and the time of each part.

use crate::embedded::{check_protocol, prepare, train, write_dead_letters};
use anyhow::{Context, Result};
use renal_trainer::Protocol;
use std::path::Path;
use std::time::Instant;

/// `renal bench science`; `dir`: where to keep everything (default: a temporary folder, removed
/// afterwards); `cnn`: the networks' flags, `None` to skip them.
pub fn run(
    lesions: usize,
    seed: u64,
    folds: usize,
    hold_out: &str,
    dir: Option<&Path>,
    cnn: Option<&crate::train::CnnArgs>,
) -> Result<()> {
    let cnn_config = cnn.map(|a| a.settings().validate()).transpose().context("training settings")?;
    let kfold: Protocol = format!("kfold:{folds}").parse().map_err(anyhow::Error::msg)?;
    let loio: Protocol = format!("loio:{hold_out}").parse().map_err(anyhow::Error::msg)?;
    let temp = tempfile::tempdir()?;
    let root = dir.unwrap_or(temp.path());
    let cohort = root.join("cohort");
    let started = Instant::now();
    let config = renal_synth::SynthConfig { lesions, seed, ..renal_synth::SynthConfig::default() };
    eprintln!("bench science: synthesising {lesions} lesions (seed {seed}) into {}", cohort.display());
    let made = renal_synth::generate(&config, &cohort, &|_| {})?;
    let synth_s = started.elapsed().as_secs_f64();
    check_protocol(&cohort, &loio)?;

    let t = Instant::now();
    let run_dir = root.join("run");
    let mut prepared = prepare(&cohort, &run_dir)?;
    let prepare_s = t.elapsed().as_secs_f64();
    let labels = cohort.join("labels.csv");
    let mut tables = Vec::new();
    for (name, protocol) in [("kfold", &kfold), ("loio", &loio)] {
        let t = Instant::now();
        let out = run_dir.join(name);
        std::fs::create_dir_all(&out)?;
        eprintln!("bench science: {protocol:?} into {}", out.display());
        train(&mut prepared, &labels, &out, protocol, cnn.zip(cnn_config.clone()))?;
        let seconds = t.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("report/report.json")).with_context(|| format!("the {name} report"))?,
        )?;
        tables.push((protocol.clone(), seconds, report));
    }
    write_dead_letters(&prepared.letters, &run_dir)?;

    println!(
        "\nrenal bench science: {} lesions of {} patients (seed {seed}), {} dead letters; {}",
        made.lesions,
        made.patients,
        prepared.letters.len(),
        match &cnn_config {
            Some(c) => format!(
                "networks {} at {}x{}, at most {} epochs",
                c.net.backbone.name(),
                c.net.input_px,
                c.net.input_px,
                c.max_epochs
            ),
            None => "no networks (--no-cnn)".into(),
        }
    );
    for (protocol, seconds, report) in &tables {
        println!("\n{protocol:?} ({seconds:.0} s)\n");
        for line in table(report) {
            println!("{line}");
        }
    }
    let implied = renal_synth::implied::from_table1();
    println!(
        "\nWhat the study's Table 1 implies for a clinical model (age, sex, size; renal_synth::implied): ROC AUC {:.3}",
        implied.auc
    );
    println!(
        "time: synth {synth_s:.0} s, ingest + preprocess + radiomics {prepare_s:.0} s, {}; total {:.0} s",
        tables.iter().map(|(p, s, _)| format!("{p:?} {s:.0} s")).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One protocol's Markdown table from its report: a row per model.
pub fn table(report: &serde_json::Value) -> Vec<String> {
    let mut lines = vec![
        "| model | n | ROC AUC (95% CI) | accuracy | ECE | Brier | lowest-ECE calibrator |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let number = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.3}"));
    let empty = serde_json::Map::new();
    let calibrators = report["calibrators"].as_array().cloned().unwrap_or_default();
    for (name, m) in report["models"].as_object().unwrap_or(&empty) {
        // Only the primary reader's rows: the other readers' are a reader study, not a model.
        if name.contains('@') {
            continue;
        }
        let ci = &m["roc_auc"]["ci95"];
        let best = calibrators
            .iter()
            .filter(|c| c["model"] == name.as_str())
            .min_by(|a, b| a["ece"].as_f64().unwrap_or(f64::MAX).total_cmp(&b["ece"].as_f64().unwrap_or(f64::MAX)))
            .map_or("–".to_string(), |c| {
                format!("{} (ECE {})", c["method"].as_str().unwrap_or("?"), number(&c["ece"]))
            });
        lines.push(format!(
            "| {name} | {} | {} ({}-{}) | {} | {} | {} | {best} |",
            m["n"],
            number(&m["roc_auc"]["estimate"]),
            number(&ci[0]),
            number(&ci[1]),
            number(&m["accuracy"]["estimate"]),
            number(&m["ece"]),
            number(&m["brier"]),
        ));
    }
    lines
}
