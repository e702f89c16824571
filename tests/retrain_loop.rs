//! The retraining loop on an embedded run's output folder: `renal run` registers and promotes
//! its first model; `renal labels import` merges labels (revisions replace, bad rows become
//! dead letters); `renal train --out` fits a challenger on the champion's held-out patients'
//! complement, compares both on those lesions and records the decision; `renal models
//! list|show|promote|rollback` read and move the pointer.
//!
//! Small networks and a small cohort: this checks the loop's wiring and its refusals. On a
//! held-out set of this size the DeLong bound is too wide for an honest challenger to pass the
//! default margin, so the promotion path is taken with margins that accept any challenger; the
//! default margins' verdicts are unit-tested in `renal_trainer::challenge`.

use renal_e2e::{renal, renal_ok as ok};
use std::path::Path;

/// (version, promoted-for) of each `renal models list` row.
fn listed(run: &Path) -> Vec<(String, String)> {
    ok(&["models", "list", "--out", run.to_str().unwrap()])
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols.last().unwrap().to_string())
        })
        .collect()
}

fn events(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("models/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn labels_in_a_challenger_out_promoted_or_refused_with_its_reason_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cohort, run) = (dir.path().join("cohort"), dir.path().join("run"));
    ok(&["synth", "--out", cohort.to_str().unwrap(), "--lesions", "40", "--sites", "HUP,MAY", "--seed", "8"]);
    let small = ["--input-px", "32", "--epochs", "2"];
    let mut args =
        vec!["run", "--input", cohort.to_str().unwrap(), "--out", run.to_str().unwrap(), "--protocol", "kfold:3"];
    args.extend(small);
    let stdout = ok(&args);
    assert!(stdout.contains("registered and promoted for deployment default"), "{stdout}");
    let first = listed(&run);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, "default");
    let champion = first[0].0.clone();

    // A corrected diagnosis, an unchanged label, a new lesion id and a bad row.
    let labels = std::fs::read_to_string(cohort.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    let header = lines.next().unwrap();
    let h: Vec<&str> = header.split(',').collect();
    let col = |name: &str| h.iter().position(|c| *c == name).unwrap();
    let (site, accession, label) = (col("site"), col("accession"), col("label"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    let mut flipped = rows[0].clone();
    flipped[label] = if flipped[label] == "benign" { "malignant".into() } else { "benign".into() };
    let mut bad = rows[2].clone();
    bad[label] = "unsure".into();
    let csv = [header.to_string(), flipped.join(","), rows[1].join(","), bad.join(",")].join("\n") + "\n";
    let file = dir.path().join("corrected.csv");
    std::fs::write(&file, csv).unwrap();
    let imported = ok(&["labels", "import", file.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert!(imported.contains("0 new, 1 revised, 1 unchanged; 1 bad rows"), "{imported}");
    let book = std::fs::read_to_string(run.join("labels.jsonl")).unwrap();
    let revised: serde_json::Value = book
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["case_id"] == renal_e2e::lesion_id(&flipped[site], &flipped[accession]).as_str())
        .unwrap();
    assert_eq!(revised["label"], flipped[label].as_str(), "the later label replaces the earlier one");
    let dead = std::fs::read_to_string(run.join("dead_letters.jsonl")).unwrap();
    assert!(dead.contains("\"reason_code\":\"bad_label\"") && dead.contains("corrected.csv:4"), "{dead}");

    // A challenger that may accept anything is promoted; the pointer names it.
    let mut args = vec!["train", "--out", run.to_str().unwrap(), "--auc-margin", "1", "--ece-margin", "1"];
    args.extend(small);
    let trained = ok(&args);
    assert!(trained.contains("PROMOTED for default"), "{trained}");
    let second = listed(&run);
    assert_eq!(second.len(), 2, "{second:?}");
    let promoted: Vec<&(String, String)> = second.iter().filter(|(_, d)| d == "default").collect();
    assert_eq!(promoted.len(), 1, "one version promoted: {second:?}");
    let challenger = promoted[0].0.clone();
    assert_ne!(challenger, champion);
    let entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join(format!("models/entries/{challenger}.json"))).unwrap())
            .unwrap();
    assert_eq!(entry["champion"], champion.as_str());
    let champion_entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join(format!("models/entries/{champion}.json"))).unwrap())
            .unwrap();
    // Compared on the champion's held-out lesions, none of which it trained on.
    let ids = |e: &serde_json::Value, k: &str| -> std::collections::BTreeSet<String> {
        e[k].as_array().unwrap().iter().map(|r| r["case_id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&entry, "held_out"), ids(&champion_entry, "held_out"));
    assert!(ids(&entry, "training").is_disjoint(&ids(&champion_entry, "held_out")));
    assert!(entry["metrics"]["comparison"]["auc_change_lower_bound"].is_number(), "{}", entry["metrics"]);
    let shown = ok(&["models", "show", &challenger, "--out", run.to_str().unwrap()]);
    assert!(shown.contains("promoted (default): promoted;"), "{shown}");

    // The training lesions' pathology labels shuffled among themselves (the held-out lesions
    // keep theirs, so both models are judged against the truth; lesions diagnosed by imaging
    // stay benign, so the parts the trainer cuts hold as many confirmed lesions as before): the
    // next challenger learns nothing and is refused at the default margins, with the reason
    // recorded.
    let held_out = ids(&champion_entry, "held_out");
    let source = col("diagnosis_source");
    let mut shuffled = rows.clone();
    let train: Vec<usize> = (0..shuffled.len())
        .filter(|&i| !held_out.contains(&renal_e2e::lesion_id(&shuffled[i][site], &shuffled[i][accession])))
        .filter(|&i| shuffled[i][source] == "histopathology")
        .collect();
    for (k, &i) in train.iter().enumerate() {
        let j = train[(k * 7 + 3) % train.len()];
        let (a, b) = (shuffled[i][label].clone(), shuffled[j][label].clone());
        shuffled[i][label] = b;
        shuffled[j][label] = a;
    }
    let csv =
        std::iter::once(header.to_string()).chain(shuffled.iter().map(|r| r.join(","))).collect::<Vec<_>>().join("\n")
            + "\n";
    std::fs::write(&file, csv).unwrap();
    ok(&["labels", "import", file.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    let mut args = vec!["train", "--out", run.to_str().unwrap()];
    args.extend(small);
    let refused = ok(&args);
    assert!(refused.contains("NOT promoted"), "{refused}");
    let last = events(&run).pop().unwrap();
    assert_eq!(last["event"], "rejected");
    assert!(last["reason"].as_str().unwrap().starts_with("not promoted:"), "{last}");
    let serving: Vec<String> = listed(&run).into_iter().filter(|(_, d)| d == "default").map(|(v, _)| v).collect();
    assert_eq!(serving, [challenger.as_str()], "the refused challenger changed nothing");

    // By hand: roll back to the champion, promote the challenger again.
    let back = ok(&["models", "rollback", "--out", run.to_str().unwrap(), "--reason", "test"]);
    assert!(back.contains(&format!("rolled back to {champion}")), "{back}");
    ok(&["models", "promote", &challenger, "--out", run.to_str().unwrap()]);
    let kinds: Vec<String> = events(&run).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["trained", "promoted", "trained", "promoted", "trained", "rejected", "rolled_back", "promoted"]);
    let unknown = renal(&["models", "promote", "ens-000000000000", "--out", run.to_str().unwrap()]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("is not in the registry"));
}
