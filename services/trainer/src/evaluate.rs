//! The report of a fitted protocol: every held-out prediction in `predictions.csv`, the parts
//! in `split.csv`, the networks' embeddings in `embeddings.csv`, and the evaluation report.

use crate::error::{io, TrainerError};
use crate::fit::{Fitted, Predictions};
use crate::protocol::Protocol;
use renal_eval::report::{build, Settings};
use renal_messages::LesionV1;
use std::io::Write;
use std::path::Path;

/// Write the outputs of `fitted` into `out`, with `served`, the predictions the stages made of
/// the held-out lesions (`ensemble`, `ensemble@<reader>`), next to the base models'; returns
/// the lines to print. `cnn`: the networks' settings, when they were trained.
pub fn write_outputs(
    fitted: &Fitted,
    served: &Predictions,
    out: &Path,
    protocol: &Protocol,
    cnn: Option<&renal_cnn::train::TrainConfig>,
) -> Result<Vec<String>, TrainerError> {
    let lesions = &fitted.lesions;
    let mut by_model: Predictions = Predictions::new();
    let mut test_labels = renal_eval::input::Labels::new();
    for round in &fitted.rounds {
        for (model, probabilities) in &round.base {
            for (&i, &p) in round.split.test.iter().zip(probabilities).filter(|(_, p)| !p.is_nan()) {
                by_model.entry(model.to_string()).or_default().insert(lesions[i].case_id.clone(), p);
                test_labels.insert(lesions[i].case_id.clone(), fitted.malignant[i]);
            }
        }
    }
    for (model, cases) in served {
        by_model.entry(model.clone()).or_default().extend(cases.iter().map(|(c, p)| (c.clone(), *p)));
    }
    let predictions = out.join("predictions.csv");
    let mut text = String::from("case_id,model,probability\n");
    for (model, cases) in &by_model {
        for (case, p) in cases {
            text.push_str(&format!("{case},{model},{p}\n"));
        }
    }
    std::fs::write(&predictions, text).map_err(io(&predictions))?;

    let split_file = out.join("split.csv");
    let mut parts = String::from("case_id,part\n");
    let several = fitted.rounds.len() > 1;
    for (n, round) in fitted.rounds.iter().enumerate() {
        let tag = |part: &str| if several { format!("fold{}-{part}", n + 1) } else { part.to_string() };
        let s = &round.split;
        for (part, idx) in [("train", &s.train), ("validation", &s.validation), ("test", &s.test)] {
            for &i in idx {
                parts.push_str(&format!("{},{}\n", lesions[i].case_id, tag(part)));
            }
        }
    }
    std::fs::write(&split_file, parts).map_err(io(&split_file))?;

    let mut report = build(&test_labels, &by_model, &Default::default(), &Settings::default());
    let all_labels: renal_eval::input::Labels =
        lesions.iter().zip(&fitted.malignant).map(|(l, &m)| (l.case_id.clone(), m)).collect();
    let source = if several {
        "the first fold's T2 and T1C networks' embeddings"
    } else {
        "the T2 and T1C networks' embeddings"
    };
    report.embedding_map = renal_eval::report::embedding_map(&all_labels, &fitted.map_rows, source);
    if let Some((_, first, _)) = fitted.map_rows.first() {
        // The same embeddings for `renal eval --embeddings`.
        let path = out.join("embeddings.csv");
        let width = first.len();
        let names: Vec<String> = (0..width)
            .map(|k| if k < width / 2 { format!("t2_{k}") } else { format!("t1c_{}", k - width / 2) })
            .collect();
        let mut e = std::fs::File::create(&path).map_err(io(&path))?;
        let mut text = format!("case_id,{}\n", names.join(","));
        for (case, values, _) in &fitted.map_rows {
            let v: Vec<String> = values.iter().map(f64::to_string).collect();
            text.push_str(&format!("{case},{}\n", v.join(",")));
        }
        e.write_all(text.as_bytes()).map_err(io(&path))?;
    }
    let report_dir = out.join("report");
    renal_eval::write_report(&report, &report_dir).map_err(io(&report_dir))?;

    let c = &report.models["clinical"];
    let mut lines = vec![
        format!(
            "clinical model ({protocol:?}): {} fit(s), {} held-out lesions (grouped by patient; {} age or sex values filled in); best epochs {:?}",
            fitted.rounds.len(),
            test_labels.len(),
            fitted.filled,
            fitted.clinical_epochs
        ),
        format!(
            "  held-out test: accuracy {:.2} ({:.2}-{:.2}), ROC AUC {}, ECE {:.3}",
            c.calls.accuracy.estimate,
            c.calls.accuracy.ci95[0],
            c.calls.accuracy.ci95[1],
            auc_text(c),
            c.ece
        ),
    ];
    for model in crate::baseline::MODELS {
        let Some(m) = report.models.get(model) else { continue };
        lines.push(format!(
            "  {model} (logistic regression on 4 first-order features) held-out test: accuracy {:.2}, ROC AUC {}",
            m.calls.accuracy.estimate,
            auc_text(m)
        ));
    }
    if let Some(cfg) = cnn {
        lines.push(format!(
            "CNN arms ({}, {}x{} input, at most {} epochs, patience {}, {} trial(s)):",
            cfg.net.backbone.name(),
            cfg.net.input_px,
            cfg.net.input_px,
            cfg.max_epochs,
            cfg.patience,
            cfg.trials
        ));
        lines.extend(fitted.lines.iter().cloned());
        for model in ["t2", "t1c", "ensemble"] {
            let Some(m) = report.models.get(model) else { continue };
            lines.push(format!(
                "  {model} held-out test: accuracy {:.2}, ROC AUC {}",
                m.calls.accuracy.estimate,
                auc_text(m)
            ));
        }
    }
    lines.push(format!("  predictions: {}", predictions.display()));
    lines.push(format!("  report: {}", report_dir.join("index.html").display()));
    Ok(lines)
}

fn auc_text(m: &renal_eval::report::ModelReport) -> String {
    if m.roc_auc.estimate.is_finite() {
        format!("{:.2} ({:.2}-{:.2})", m.roc_auc.estimate, m.roc_auc.ci95[0], m.roc_auc.ci95[1])
    } else {
        "undefined (the held-out lesions are all of one class)".into()
    }
}

/// `OUT/reader_agreement.csv` (one row per lesion, series and other reader: Dice with the
/// primary reader's mask) and a summary line per series and reader.
pub fn reader_agreement(lesions: &[LesionV1], out: &Path) -> Result<Vec<String>, TrainerError> {
    let path = out.join("reader_agreement.csv");
    let mut text = String::from("case_id,role,reader,dice\n");
    let mut by: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    for l in lesions {
        for d in &l.qc.reader_dice {
            text.push_str(&format!("{},{:?},{},{}\n", l.case_id, d.role, d.reader, d.dice));
            by.entry((format!("{:?}", d.role), d.reader.clone())).or_default().push(d.dice);
        }
    }
    std::fs::write(&path, text).map_err(io(&path))?;
    let mut lines = Vec::new();
    for ((role, reader), mut v) in by {
        v.sort_by(f64::total_cmp);
        lines.push(format!(
            "  {role} masks, {reader} vs primary reader: median Dice {:.3} (range {:.3}-{:.3}) over {} lesions",
            renal_stats::curves::quantile_sorted(&v, 0.5),
            v[0],
            v[v.len() - 1],
            v.len()
        ));
    }
    if !lines.is_empty() {
        lines.push(format!("  reader agreement: {}", path.display()));
    }
    Ok(lines)
}
