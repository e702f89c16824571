//! `renal bench science`: the study-scale evaluation as a benchmark, not a test.
//!
//! Synthesises a cohort, runs ingest, preprocess and radiomics once, then trains and evaluates
//! under two protocols on the same lesions: k patient-grouped folds (every testable lesion
//! predicted by models that never saw it) and leave one institution out (by default HUP, the
//! study's largest site). Prints one table per protocol, per model: held-out lesions, ROC AUC
//! with its bootstrap 95% CI, accuracy, ECE and Brier score of the served (Platt) probabilities,
//! and the calibrator with the lowest held-out ECE; then what the study's Table 1 implies a
//! clinical model can reach, and the time of each part.

use crate::embedded::{check_protocol, prepare, reopen, train, write_dead_letters};
use anyhow::{Context, Result};
use renal_trainer::Protocol;
use std::path::Path;
use std::time::Instant;

/// `renal bench science`; `dir`: where to keep everything (default: a temporary folder, removed
/// afterwards); `reuse`: train again on the cohort and prepared run an earlier call left in
/// `dir`; `cnn`: the networks' flags, `None` to skip them.
pub fn run(
    lesions: usize,
    seed: u64,
    folds: usize,
    hold_out: &str,
    dir: Option<&Path>,
    reuse: bool,
    cnn: Option<&crate::train::CnnArgs>,
) -> Result<()> {
    let cnn_config = cnn.map(|a| a.settings().validate()).transpose().context("training settings")?;
    let kfold: Protocol = format!("kfold:{folds}").parse().map_err(anyhow::Error::msg)?;
    let loio: Protocol = format!("loio:{hold_out}").parse().map_err(anyhow::Error::msg)?;
    let temp = tempfile::tempdir()?;
    let root = dir.unwrap_or(temp.path());
    let cohort = root.join("cohort");
    let started = Instant::now();
    let run_dir = root.join("run");
    let (made, mut prepared, synth_s, prepare_s) = if reuse {
        let dir = dir.context("--reuse needs the --dir of an earlier run")?;
        check_protocol(&cohort, &loio)?;
        let prepared = reopen(&run_dir).with_context(|| format!("reusing {}", dir.display()))?;
        (counted(&cohort.join("labels.csv"))?, prepared, 0.0, 0.0)
    } else {
        let config = renal_synth::SynthConfig { lesions, seed, ..renal_synth::SynthConfig::default() };
        eprintln!("bench science: synthesising {lesions} lesions (seed {seed}) into {}", cohort.display());
        let made = renal_synth::generate(&config, &cohort, &|_| {})?;
        let made = (made.lesions, made.patients);
        let synth_s = started.elapsed().as_secs_f64();
        check_protocol(&cohort, &loio)?;
        let t = Instant::now();
        let prepared = prepare(&cohort, &run_dir)?;
        // Written now, so that a later --reuse finds them even if training fails.
        write_dead_letters(&prepared.letters, &run_dir)?;
        (made, prepared, synth_s, t.elapsed().as_secs_f64())
    };
    let labels = cohort.join("labels.csv");
    let mut tables = Vec::new();
    for (name, protocol) in [("kfold", &kfold), ("loio", &loio)] {
        let t = Instant::now();
        let out = run_dir.join(name);
        if out.exists() {
            // An earlier run's models and report (--reuse): nothing of them may be read as new.
            std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
        }
        std::fs::create_dir_all(&out)?;
        eprintln!("bench science: {protocol:?} into {}", out.display());
        train(&mut prepared, &labels, &out, protocol, cnn.zip(cnn_config.clone()))?;
        let seconds = t.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("report/report.json")).with_context(|| format!("the {name} report"))?,
        )?;
        tables.push((protocol.clone(), seconds, report));
    }

    println!(
        "\nrenal bench science: {} lesions of {} patients ({}), {} dead letters; {}",
        made.0,
        made.1,
        if reuse { "the cohort and preparation of an earlier run".to_string() } else { format!("seed {seed}") },
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
    let made_s = if reuse {
        "cohort and preparation reused".to_string()
    } else {
        format!("synth {synth_s:.0} s, ingest + preprocess + radiomics {prepare_s:.0} s")
    };
    println!(
        "time: {made_s}, {}; total {:.0} s",
        tables.iter().map(|(p, s, _)| format!("{p:?} {s:.0} s")).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Lesions and patients of a cohort, from its `labels.csv` (one row per lesion and reader).
fn counted(labels: &Path) -> Result<(usize, usize)> {
    let mut reader = csv::Reader::from_path(labels).with_context(|| format!("reading {}", labels.display()))?;
    let (mut lesions, mut patients) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for row in reader.deserialize::<std::collections::HashMap<String, String>>() {
        let row = row.with_context(|| format!("a row of {}", labels.display()))?;
        let field =
            |name: &str| row.get(name).cloned().with_context(|| format!("{} has no {name} column", labels.display()));
        lesions.insert((field("site")?, field("accession")?));
        patients.insert(field("patient_id")?);
    }
    Ok((lesions.len(), patients.len()))
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
