//! The report of a fitted protocol: every held-out prediction in `predictions.csv`, the parts
//! in `split.csv`, the networks' embeddings in `embeddings.csv`, and the evaluation report.

use crate::error::{io, TrainerError};
use crate::fit::{Fitted, Predictions, Round, Scores};
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
        for (model, scores) in &round.base {
            for (&i, &p) in round.split.test.iter().zip(&scores.test).filter(|(_, p)| !p.is_nan()) {
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
    report.calibrators = calibrators(fitted, report.settings.ece_bins);
    report.selections = selections(fitted);
    report.notes = notes(fitted, protocol, cnn);
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
        lines.push(format!("CNN arms ({}):", network_settings(cfg)));
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
    let mut calibrated: Vec<String> = Vec::new();
    for model in report.calibrators.iter().map(|c| c.model.as_str()).collect::<std::collections::BTreeSet<_>>() {
        let rows: Vec<&renal_eval::report::CalibratorScore> =
            report.calibrators.iter().filter(|c| c.model == model).collect();
        let best = rows.iter().min_by(|a, b| a.ece.total_cmp(&b.ece)).expect("three methods");
        let served = rows.iter().find(|c| c.served).map_or(f64::NAN, |c| c.ece);
        calibrated.push(format!("{model} {} {:.3} (platt {served:.3})", best.method, best.ece));
    }
    if !calibrated.is_empty() {
        lines.push(format!("  lowest held-out ECE by calibrator: {}", calibrated.join(", ")));
    }
    for model in ["clinical", "t2", "t1c", "ensemble"] {
        let o: Vec<f64> = report
            .selections
            .iter()
            .filter(|c| c.model == model && c.optimism.is_finite())
            .map(|c| c.optimism)
            .collect();
        if !o.is_empty() {
            lines.push(format!(
                "  {model}: ROC AUC where its choice was made exceeded the held-out one by {:.3} on average over {} round(s)",
                o.iter().sum::<f64>() / o.len() as f64,
                o.len()
            ));
        }
    }
    lines.push(format!("  predictions: {}", predictions.display()));
    lines.push(format!("  report: {}", report_dir.join("index.html").display()));
    Ok(lines)
}

/// Each model's three calibrators, fitted on each round's calibration rows (the validation
/// part's histopathology-confirmed lesions) and scored on the pooled held-out outputs (`bins`:
/// the report's ECE bins). A round where a calibrator cannot be fitted (one class among the
/// calibration rows) adds no rows to it.
pub fn calibrators(fitted: &Fitted, bins: usize) -> Vec<renal_eval::report::CalibratorScore> {
    use renal_learn::calibrate;
    let mut models: Vec<&str> = Vec::new();
    for round in &fitted.rounds {
        for (m, _) in &round.base {
            if !models.contains(m) {
                models.push(m);
            }
        }
    }
    if fitted.rounds.iter().any(|r| r.ensemble.is_some()) {
        models.push("ensemble");
    }
    fn scores_of<'a>(round: &'a Round, model: &str) -> Option<&'a Scores> {
        if model == "ensemble" {
            round.ensemble.as_ref()
        } else {
            round.base.iter().find(|(m, _)| *m == model).map(|(_, s)| s)
        }
    }
    // Finite raw outputs with their outcomes.
    let finite = |raw: &[f64], idx: &[usize]| -> (Vec<f64>, Vec<bool>) {
        raw.iter().zip(idx).filter(|(r, _)| r.is_finite()).map(|(&r, &i)| (r, fitted.malignant[i])).unzip()
    };
    let mut out = Vec::new();
    for model in models {
        let rows: Vec<_> = fitted
            .rounds
            .iter()
            .filter_map(|round| {
                let s = scores_of(round, model)?;
                Some((finite(&s.calibration_raw, &s.calibration_rows), finite(&s.test_raw, &round.split.test)))
            })
            .collect();
        let rounds: Vec<calibrate::Round<'_>> = rows
            .iter()
            .map(|((fit_raw, fit_y), (held_raw, held_y))| calibrate::Round { fit_raw, fit_y, held_raw, held_y })
            .collect();
        for (method, s) in calibrate::compare(&rounds, bins) {
            out.push(renal_eval::report::CalibratorScore {
                model: model.to_string(),
                method: method.name().to_string(),
                n: s.n as u64,
                ece: s.ece,
                brier: s.brier,
                log_loss: s.log_loss,
                served: method == calibrate::Method::Platt,
            });
        }
    }
    out
}

/// Every choice made before testing, round by round, with its optimism.
pub fn selections(fitted: &Fitted) -> Vec<renal_eval::report::SelectionScore> {
    let mut out = Vec::new();
    for (n, round) in fitted.rounds.iter().enumerate() {
        for c in &round.chosen {
            out.push(renal_eval::report::SelectionScore {
                model: c.model.clone(),
                round: n + 1,
                choice: c.choice.clone(),
                chosen_auc: c.chosen_auc,
                held_out_auc: c.held_out_auc,
                optimism: c.chosen_auc - c.held_out_auc,
            });
        }
    }
    out
}

/// How the models were made, for the report's readers.
fn notes(fitted: &Fitted, protocol: &Protocol, cnn: Option<&renal_cnn::train::TrainConfig>) -> Vec<String> {
    let mut out = vec![match protocol {
        Protocol::Split => {
            "protocol: one patient-grouped 70/20/10 split (the study's); the estimates rest on its 10% test part"
                .to_string()
        }
        Protocol::KFold(k) => format!(
            "protocol: {k} patient-grouped folds; every testable lesion predicted once, by models that never saw it"
        ),
        Protocol::HeldOut(patients) => format!(
            "protocol: tested on the champion's held-out lesions ({patients:?}), trained and validated (80/20) on every other patient's"
        ),
        Protocol::LeaveOut(site) => {
            format!("protocol: leave one institution out; tested on {site}, trained and validated on the other sites")
        }
    }];
    out.push(
        "clinical model: age, sex and the log of tumour volume, min-max scaled on the training rows (the study scaled the volume itself, on every row; a few large lesions then squash the rest below a hundredth of the range)"
            .to_string(),
    );
    if let Some(c) = cnn {
        out.push(format!(
            "networks: {}, {}; the study used ImageNet-initialised ResNet-50s at 200x200 for up to 500 epochs (`--study`)",
            network_settings(c),
            if c.init_weights.is_some() { "initialised from the given weights" } else { "randomly initialised" }
        ));
    }
    let mut stackers: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in fitted.rounds.iter().flat_map(|r| &r.chosen).filter(|c| c.model == "ensemble") {
        *stackers.entry(c.choice.trim_start_matches("stacker ")).or_default() += 1;
    }
    if !stackers.is_empty() {
        let used: Vec<String> = stackers.iter().map(|(s, n)| format!("{s} in {n}")).collect();
        out.push(format!(
            "ensemble stacker, per round: {} of {} round(s) (the better of bagged trees, the study's, and a logistic stacker on the inputs' logits, cross-fitted on the validation part, when it beats the best single input there; else that input)",
            used.join(", "),
            fitted.rounds.len()
        ));
    }
    out
}

/// The networks' settings in words.
fn network_settings(c: &renal_cnn::train::TrainConfig) -> String {
    format!(
        "{}, {}x{} input, at most {} epochs, patience {}, {} trial(s)",
        c.net.backbone.name(),
        c.net.input_px,
        c.net.input_px,
        c.max_epochs,
        c.patience,
        c.trials
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::Chosen;
    use renal_learn::bagging::BaggingSettings;
    use renal_learn::ensemble::Ensemble;
    use renal_learn::split::{Lesion, Split};

    /// A deterministic "random" number in [0, 1) for row `i` and stream `k`.
    fn noise(i: usize, k: usize) -> f64 {
        ((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0
    }

    /// One round over 200 lesions: 100 train (unused), 60 validation, 40 test; `base`: each
    /// model's raw outputs for every lesion.
    fn fitted(malignant: &[bool], base: Vec<(&'static str, Vec<f64>)>, chosen: Vec<Chosen>) -> Fitted {
        let split = Split { train: (0..100).collect(), validation: (100..160).collect(), test: (160..200).collect() };
        let base = base
            .into_iter()
            .map(|(m, raw)| {
                let pick = |idx: &[usize]| idx.iter().map(|&i| raw[i]).collect::<Vec<f64>>();
                let scores = Scores {
                    calibration_rows: split.validation.clone(),
                    calibration_raw: pick(&split.validation),
                    test_raw: pick(&split.test),
                    test: pick(&split.test),
                };
                (m, scores)
            })
            .collect();
        Fitted {
            lesions: Vec::new(),
            malignant: malignant.to_vec(),
            rounds: vec![Round {
                calibration: split.validation.clone(),
                split,
                base,
                ensemble: None,
                chosen,
                served: None,
            }],
            filled: 0,
            map_rows: Vec::new(),
            lines: Vec::new(),
            clinical_epochs: Vec::new(),
        }
    }

    #[test]
    fn calibrators_are_fitted_on_validation_and_scored_on_the_held_out_rows() {
        let malignant: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        // Informative but overconfident raw outputs.
        let raw: Vec<f64> = (0..200)
            .map(|i| {
                let z = if malignant[i] { 0.5 } else { -0.5 } + 2.0 * (noise(i, 1) - 0.5);
                renal_stats::sigmoid(6.0 * z)
            })
            .collect();
        let f = fitted(&malignant, vec![("clinical", raw.clone())], Vec::new());
        let rows = calibrators(&f, 10);
        let methods: Vec<&str> = rows.iter().map(|c| c.method.as_str()).collect();
        assert_eq!(methods, ["platt", "isotonic", "temperature"]);
        assert!(rows.iter().all(|c| c.n == 40 && c.model == "clinical"));
        assert_eq!(rows.iter().filter(|c| c.served).map(|c| c.method.as_str()).collect::<Vec<_>>(), ["platt"]);
        // Independently: Platt fitted on the 60 validation rows, scored on the 40 test rows.
        let y_val: Vec<bool> = (100..160).map(|i| malignant[i]).collect();
        let platt = renal_stats::Platt::fit_non_decreasing(&raw[100..160], &y_val).unwrap();
        let p: Vec<f64> = raw[160..200].iter().map(|&r| platt.probability(r)).collect();
        let y: Vec<bool> = (160..200).map(|i| malignant[i]).collect();
        assert!((rows[0].ece - renal_stats::expected_calibration_error(&p, &y, 10)).abs() < 1e-12);
        assert!((rows[0].brier - renal_stats::brier(&p, &y)).abs() < 1e-12);
        // The raw outputs are worse calibrated than any calibrator's.
        let raw_brier = renal_stats::brier(&raw[160..200], &y);
        assert!(rows.iter().all(|c| c.brier < raw_brier), "{rows:?} vs raw {raw_brier}");
    }

    #[test]
    fn a_model_perfect_on_validation_and_random_on_test_is_chosen_and_its_optimism_reported() {
        // Input 0 is perfect on the validation part and noise on the test part; input 1 is a
        // weak honest model. The stacker can only see validation rows, so it takes input 0;
        // the report must say how optimistic that choice's validation score was.
        let malignant: Vec<bool> = (0..200).map(|i| (i * 3) % 5 < 2).collect();
        let planted: Vec<f64> = (0..200)
            .map(|i| {
                if i < 160 {
                    if malignant[i] {
                        0.9
                    } else {
                        0.1
                    }
                } else {
                    noise(i, 2)
                }
            })
            .collect();
        let honest: Vec<f64> = (0..200)
            .map(|i| (if malignant[i] { 0.6 } else { 0.4 } + 0.5 * (noise(i, 3) - 0.5)).clamp(0.0, 1.0))
            .collect();
        let clinical: Vec<f64> = (0..200).map(|i| noise(i, 4)).collect();
        let validation: Vec<usize> = (100..160).collect();
        let lesions: Vec<Lesion> = validation
            .iter()
            .map(|&i| Lesion {
                patient: format!("P{i}"),
                site: "HUP".into(),
                malignant: malignant[i],
                histopathology: true,
            })
            .collect();
        let x: Vec<Vec<f64>> = validation.iter().map(|&i| vec![planted[i], honest[i], clinical[i]]).collect();
        let y: Vec<bool> = validation.iter().map(|&i| malignant[i]).collect();
        let (ensemble, _) =
            Ensemble::fit_cross_fitted(&lesions, &x, &y, &["t2", "t1c", "clinical"], 5, &BaggingSettings::default())
                .unwrap();
        let sel = ensemble.selection.clone().unwrap();
        let chosen_auc = sel.candidates.iter().find(|(n, _)| *n == sel.chosen).unwrap().1;
        assert_eq!(chosen_auc, 1.0, "perfect on validation: {sel:?}");
        let test_raw: Vec<f64> =
            (160..200).map(|i| ensemble.meta.probability(&[planted[i], honest[i], clinical[i]])).collect();
        let test_y: Vec<bool> = (160..200).map(|i| malignant[i]).collect();
        let held_out_auc = renal_stats::roc_auc(&test_raw, &test_y).unwrap();
        assert!(held_out_auc < 0.75, "the planted input carries nothing on test: {held_out_auc}");
        let chosen = vec![Chosen {
            model: "ensemble".into(),
            choice: format!("stacker {}", sel.chosen),
            chosen_auc,
            held_out_auc,
        }];
        let f = fitted(&malignant, vec![("t2", planted)], chosen);
        let rows = selections(&f);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].model.as_str(), rows[0].round), ("ensemble", 1));
        assert!(rows[0].optimism > 0.25, "optimism stated: {:?}", rows[0]);
        assert!((rows[0].optimism - (1.0 - held_out_auc)).abs() < 1e-12);
        // And it reaches the report a user reads.
        let mut report = renal_eval::report::build(
            &Default::default(),
            &Default::default(),
            &Default::default(),
            &Default::default(),
        );
        report.selections = rows;
        let html = renal_eval::render::html(&report);
        assert!(html.contains("their optimism") && html.contains(&format!("{:.3}", 1.0 - held_out_auc)), "{html}");
    }
}
