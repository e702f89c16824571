//! `renal run` on a synthetic cohort: one `cases` row and one preprocessed lesion per lesion, every dead letter as a JSON
//! line with stage, reason code, reason and source, and the input folder left untouched.

use renal_e2e::{files_under, renal};

fn count_files(root: &std::path::Path, ext: &str) -> usize {
    files_under(root, Some(ext)).len()
}

#[test]
fn embedded_run_ingests_a_cohort_and_writes_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cohort");
    let out = dir.path().join("out");
    let synth = renal(&["synth", "--out", input.to_str().unwrap(), "--lesions", "4", "--sites", "TCIA", "--seed", "3"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    std::fs::write(input.join("TCIA/stray.dcm"), b"DICM but not really").unwrap();
    let before = count_files(&input, "dcm");

    let run = renal(&["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("4 cases, 1 dead letter\n"), "{stdout}");
    assert!(stdout.contains("preprocess: 4 cases in, 4 lesions out"), "{stdout}");
    assert_eq!(count_files(&out.join("store/cases"), "parquet"), 4);
    assert_eq!(count_files(&input, "dcm"), before, "input untouched");
    assert!(stdout.contains("models: not trained; 4 labelled lesions"), "{stdout}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("dead_letters.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["stage"], "ingest");
    assert_eq!(lines[0]["reason_code"], "unreadable");
    assert!(lines[0]["reason"].as_str().unwrap().len() > 10);
    assert!(lines[0]["source"]["key"].as_str().unwrap().ends_with("/stray.dcm"));

    // A folder without site sub-folders is a clear error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let bad = renal(&["run", "--input", empty.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no site folders"));
}

fn report_n(out: &std::path::Path, model: &str) -> Option<u64> {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report/report.json")).unwrap()).unwrap();
    report["models"][model]["n"].as_u64()
}

#[test]
fn embedded_run_on_a_labelled_cohort_ends_with_held_out_predictions_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cohort");
    let out = dir.path().join("out");
    let synth =
        renal(&["synth", "--out", input.to_str().unwrap(), "--lesions", "30", "--sites", "HUP,MAY", "--seed", "10"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    // Small networks, few epochs: this checks the wiring, not the accuracy.
    let run = renal(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--protocol",
        "split",
        "--input-px",
        "32",
        "--epochs",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("held-out test: accuracy"), "{stdout}");

    // labels.csv: accession, ..., site, label, ..., diagnosis_source; the run names each lesion
    // by the id ingest derived from its accession number.
    let mut labels = csv::Reader::from_path(input.join("labels.csv")).unwrap();
    let h = labels.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let source = col("diagnosis_source");
    let sources: Vec<String> = labels.records().map(|r| r.unwrap()[source].to_string()).collect();
    let truth: std::collections::BTreeMap<String, String> =
        renal_e2e::labelled_ids(&input.join("labels.csv")).into_iter().zip(sources).collect();

    // The split covers every labelled lesion once; test holds histopathology only.
    let split: Vec<(String, String)> = std::fs::read_to_string(out.join("split.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let ids: std::collections::BTreeSet<&String> = split.iter().map(|(c, _)| c).collect();
    assert_eq!(ids.len(), split.len(), "a lesion in two parts");
    assert_eq!(ids, truth.keys().collect());
    let test: Vec<&String> = split.iter().filter(|(_, p)| p == "test").map(|(c, _)| c).collect();
    assert!(!test.is_empty());
    assert!(test.iter().all(|c| truth[*c] == "histopathology"), "imaging-diagnosed lesion in test");

    // Predictions: one calibrated probability per test lesion and model (clinical, the two
    // first-order baselines, the T2 and T1C networks, the ensemble over them), and the report on
    // exactly those.
    let predictions = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let all_rows: Vec<Vec<&str>> = predictions.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let (reader_rows, rows): (Vec<&Vec<&str>>, Vec<&Vec<&str>>) = all_rows.iter().partition(|r| r[1].contains('@'));
    assert_eq!(rows.len(), 6 * test.len());
    // Held-out lesions other readers segmented: the ensemble once per reader's masks, and once
    // from the primary reader's through the same path.
    let lesions: Vec<serde_json::Value> = std::fs::read_to_string(out.join("lesions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut want_reader_rows = std::collections::BTreeSet::new();
    for l in &lesions {
        let case = l["case_id"].as_str().unwrap().to_string();
        let readers = l["other_readers"].as_array().unwrap();
        let dice_readers: std::collections::BTreeSet<&str> =
            l["qc"]["reader_dice"].as_array().unwrap().iter().map(|d| d["reader"].as_str().unwrap()).collect();
        assert_eq!(readers.len(), dice_readers.len(), "{case}: composites for every other reader");
        if test.contains(&&case) && !readers.is_empty() {
            want_reader_rows.insert((case.clone(), "ensemble@primary".to_string()));
            for r in readers {
                want_reader_rows.insert((case.clone(), format!("ensemble@{}", r["reader"].as_str().unwrap())));
            }
        }
    }
    assert!(!want_reader_rows.is_empty(), "the cohort should put a multi-reader lesion in the test part");
    let got_reader_rows: std::collections::BTreeSet<(String, String)> =
        reader_rows.iter().map(|r| (r[0].to_string(), r[1].to_string())).collect();
    assert_eq!(got_reader_rows, want_reader_rows);
    assert_eq!(reader_rows.len(), want_reader_rows.len());
    for model in ["ensemble@primary", "ensemble@R2", "ensemble@R3"] {
        let n = want_reader_rows.iter().filter(|(_, m)| m == model).count() as u64;
        assert_eq!(report_n(&out, model), Some(n), "{model}");
    }
    // Through the networks again, the primary reader's masks give the ensemble's own number.
    for r in reader_rows.iter().filter(|r| r[1] == "ensemble@primary") {
        let own = rows.iter().find(|o| o[0] == r[0] && o[1] == "ensemble").unwrap();
        let (a, b): (f64, f64) = (r[2].parse().unwrap(), own[2].parse().unwrap());
        assert!((a - b).abs() < 1e-6, "{}: {a} vs {b}", r[0]);
    }
    for model in ["clinical", "first_order_t2", "first_order_t1c", "t2", "t1c", "ensemble"] {
        assert_eq!(rows.iter().filter(|r| r[1] == model).count(), test.len(), "{model}");
    }
    for r in &all_rows {
        assert!(test.contains(&&r[0].to_string()));
        let p: f64 = r[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    for model in ["t2", "t1c", "ensemble"] {
        assert_eq!(report_n(&out, model), Some(test.len() as u64), "{model}");
    }
    // The first-order baselines, from the feature store the radiomics stage wrote.
    for model in ["first_order_t2", "first_order_t1c"] {
        assert_eq!(report_n(&out, model), Some(test.len() as u64), "{model}");
    }
    // The ensemble's bundle, the one `renal worker ensemble` serves: pinned to the networks'.
    let ensembles = out.join("models/ensemble");
    let ens_version = std::fs::read_dir(&ensembles).unwrap().next().unwrap().unwrap().file_name();
    let ensemble: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ensembles.join(&ens_version).join("bundle.json")).unwrap()).unwrap();
    assert_eq!(ensemble["version"].as_str(), ens_version.to_str());
    // The stacker kept (bagged trees only when they beat the best input on validation), and the
    // scores it was chosen by.
    let meta = &ensemble["ensemble"]["meta"];
    match meta["kind"].as_str().unwrap() {
        "bagging" => assert_eq!(meta["trees"].as_array().map(Vec::len), Some(10)),
        "logistic" => assert_eq!(meta["coef"].as_array().map(Vec::len), Some(4)),
        "input" => assert!(["t2", "t1c", "clinical"].contains(&meta["name"].as_str().unwrap())),
        other => panic!("stacker {other}"),
    }
    let selection = &ensemble["ensemble"]["selection"];
    assert_eq!(selection["candidates"].as_array().map(Vec::len), Some(5), "{selection}");
    assert!(stdout.contains(&format!("stacker: {}", selection["chosen"].as_str().unwrap())), "{stdout}");
    // The networks' bundle: both weight files and a manifest naming the training lesions.
    let registry = out.join("models/cnn");
    let version = std::fs::read_dir(&registry).unwrap().next().unwrap().unwrap().file_name();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.join(&version).join("bundle.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"].as_str(), version.to_str());
    assert_eq!(ensemble["cnn_version"].as_str(), version.to_str());
    let trained: Vec<&str> =
        manifest["series"][0]["data"]["train"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap()).collect();
    assert!(trained.iter().all(|c| !test.contains(&&c.to_string())), "a test lesion in the training data");
    assert!(registry.join(&version).join("t1c.safetensors").exists());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report/report.json")).unwrap()).unwrap();
    let clinical = &report["models"]["clinical"];
    assert_eq!(clinical["n"].as_u64(), Some(test.len() as u64));
    assert!(clinical["accuracy"]["estimate"].is_f64() && clinical["accuracy"]["ci95"].as_array().unwrap().len() == 2);
    assert!(clinical["p_vs_zero_rule"].is_f64());
    assert!(out.join("report/index.html").exists() && out.join("report/roc.svg").exists());
    // The t-SNE map: every lesion of the split through the networks, the test part filled.
    let map = &report["embedding_map"];
    let points = map["points"].as_array().unwrap();
    assert_eq!(points.len(), split.len(), "one point per lesion of the split");
    assert_eq!(points.iter().filter(|p| p["held_out"] == true).count(), test.len());
    assert_eq!(map["dimensions"].as_u64(), Some(32), "16 values from each network");
    assert!(map["kl_divergence"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(out.join("report/tsne.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), points.len() + 4, "points plus the legend's four");
    // Lesions with three readers: each other reader's Dice with the primary reader, per series.
    let agreement = std::fs::read_to_string(out.join("reader_agreement.csv")).unwrap();
    let dice: Vec<f64> = agreement.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
    assert!(!dice.is_empty(), "the cohort has multi-reader lesions");
    assert!(dice.iter().all(|d| (0.0..=1.0).contains(d)) && dice.iter().any(|&d| d < 1.0), "{dice:?}");
    assert!(stdout.contains("vs primary reader: median Dice"), "{stdout}");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("models/clinical.json")).unwrap()).unwrap();
    assert_eq!(bundle["fits"][0]["calibration"]["method"], "platt");

    // The ensemble rows came through the inference and ensemble stages; the bundles called
    // directly on the same lesions give the same probabilities (to 1e-6).
    let version =
        |kind: &str| std::fs::read_dir(out.join("models").join(kind)).unwrap().next().unwrap().unwrap().file_name();
    let (cnn_version, ens_version) = (version("cnn"), version("ensemble"));
    let checked = direct_predictions_agree(
        &out,
        cnn_version.to_str().unwrap(),
        ens_version.to_str().unwrap(),
        &all_rows.iter().map(|r| (r[0].to_string(), r[1].to_string(), r[2].parse().unwrap())).collect::<Vec<_>>(),
    );
    assert_eq!(checked, all_rows.iter().filter(|r| r[1].starts_with("ensemble")).count());
    // The radiomics stage ran too: one feature file per lesion.
    assert_eq!(count_files(&out.join("store/features"), "parquet"), lesions.len());

    // The monitor's reference for the served bundle: the validation lesions' scores through
    // the stages, the training and validation lesions' watched features; and its report.
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("models/monitor").join(format!("{}.json", ens_version.to_str().unwrap()))).unwrap(),
    )
    .unwrap();
    let validation = split.iter().filter(|(_, p)| p == "validation").count() as u64;
    assert_eq!(reference["lesions"].as_u64(), Some(validation));
    let signals = reference["signals"].as_object().unwrap();
    for s in ["ensemble", "t2", "t1c"] {
        assert_eq!(signals[s]["count"].as_u64(), Some(validation), "{s}");
    }
    let features: Vec<&String> = signals.keys().filter(|k| k.contains('/')).collect();
    assert!(features.iter().any(|k| k.starts_with("T2/") && k.ends_with("/stat_mean")), "{features:?}");
    assert!(features.iter().any(|k| k.starts_with("T1C/") && k.contains("/morph_")), "{features:?}");
    assert!(stdout.contains("monitor: "), "{stdout}");
    let png = std::fs::read(out.join("report/monitor/drift_heatmap.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(out.join("report/monitor/index.html").exists());
}

/// Recompute every `ensemble`/`ensemble@<reader>` row of `rows` (case, model, probability) by
/// calling the saved bundles directly (the networks through `Scorer`, the ensemble through
/// `Content::call`) and check each is within 1e-6; returns how many rows were checked.
fn direct_predictions_agree(out: &std::path::Path, cnn: &str, ensemble: &str, rows: &[(String, String, f64)]) -> usize {
    use renal_messages::LesionV1;
    tch::set_num_threads(1);
    let registry = out.join("models");
    let scorer = renal_cnn::score::Scorer::load(&registry, cnn, tch::Device::Cpu).unwrap();
    let bundle = renal_ensemble::bundle::load(&registry, ensemble).unwrap();
    let store = renal_store::open(out.join("blobs").to_str().unwrap()).unwrap();
    let lesions: std::collections::BTreeMap<String, LesionV1> = std::fs::read_to_string(out.join("lesions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<LesionV1>(l).unwrap())
        .map(|l| (l.case_id.clone(), l))
        .collect();
    let composite = |blob| renal_imaging::composite::decode_blob(&store.get(blob).unwrap()).unwrap().1;
    let mut checked = 0;
    for (case, model, p) in rows.iter().filter(|r| r.1.starts_with("ensemble")) {
        let l = &lesions[case];
        let (composites, volume) = match model.split_once('@') {
            None | Some((_, "primary")) => (&l.composites, l.tumour_volume_ml),
            Some((_, reader)) => {
                let rc = l.other_readers.iter().find(|r| r.reader == reader).unwrap();
                (&rc.composites, rc.tumour_volume_ml)
            }
        };
        let (t2, t1c) = (composite(&composites[0]), composite(&composites[1]));
        let s = &scorer.score(&[[&t2, &t1c]])[0];
        let (age, sex) = renal_ensemble::join::recorded(&l.clinical);
        let (x, _) = bundle.content.fill.features(age, sex, volume);
        let direct = bundle.content.call(s.probability[0], s.probability[1], &x).probability;
        assert!((p - direct).abs() <= 1e-6, "{case} {model}: through the stages {p}, direct {direct}");
        checked += 1;
    }
    checked
}
