//! The CNN arm learns something real from synthetic MRI: a 120-lesion cohort from `renal synth`
//! is preprocessed by `renal run` (clinical model only), then `renal train cnn` trains ResNet-18
//! T2 and T1C networks at 64x64 on half of the lesions, chooses the epoch on a fifth and scores
//! the held-out 30% (patient-grouped, none seen in training). The synthetic lesions' appearance
//! depends on subtype (texture, necrosis, fat, scar; `renal_synth::phantom`), so a network can
//! tell malignant from benign better than chance; the test asserts held-out ROC AUC above 0.5
//! for both series and prints the numbers. A second `renal train cnn` with the same checkpoint
//! folder resumes instead of retraining and ends with the same bundle.

use renal_e2e::renal;

fn held_out_auc(stdout: &str, role: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{role}: best epoch")))
        .unwrap_or_else(|| panic!("{stdout}"));
    let tail = line.split("held-out test ROC AUC ").nth(1).unwrap();
    tail.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn small_networks_beat_chance_on_held_out_synthetic_lesions() {
    let dir = tempfile::tempdir().unwrap();
    let (cohort, out) = (dir.path().join("cohort"), dir.path().join("out"));
    let synth = renal(&["synth", "--out", cohort.to_str().unwrap(), "--lesions", "120", "--seed", "5"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let run = renal(&["run", "--input", cohort.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-cnn"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let labels = cohort.join("labels.csv");
    let checkpoint = dir.path().join("checkpoint");
    let args = [
        "train",
        "cnn",
        "--run",
        out.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--parts",
        "0.5,0.2,0.3",
        "--epochs",
        "8",
        "--patience",
        "8",
        "--input-px",
        "64",
        "--lr",
        "3e-4",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let first = renal(&args);
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    println!("{stdout}");
    let (t2, t1c) = (held_out_auc(&stdout, "t2"), held_out_auc(&stdout, "t1c"));
    assert!(t2 > 0.5 && t1c > 0.5, "held-out ROC AUC t2 {t2}, t1c {t1c}");

    // Rerun with the same checkpoint: every epoch is replayed from disk, same bundle.
    let again = renal(&args);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let bundle_line = |s: &str| s.lines().next().unwrap().split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(bundle_line(&String::from_utf8_lossy(&again.stdout)), bundle_line(&stdout));
}
