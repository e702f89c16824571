//! The CNN arm learns something real from synthetic MRI: a 120-lesion cohort from `renal synth`
//! is preprocessed by `renal run` (clinical model only), then `renal train cnn` trains ResNet-18
//! T2 and T1C networks at 64x64 on half of the lesions, chooses the epoch on a fifth and scores
//! the held-out 30% (patient-grouped, none seen in training). The synthetic lesions' appearance
//! depends on subtype (texture, necrosis, fat, scar; `renal_synth::phantom`), so a network can
//! tell malignant from benign better than chance.
//!
//! What 120 lesions support, measured on this cohort over eight network seeds (`--cnn-seed
//! 1..8`, ROC AUC of the network's own score on the 33 held-out lesions): the T2 network ranks
//! above chance every time (0.59 to 0.84, mean 0.73); the T1C network does not (0.42 to 0.64,
//! mean 0.53), and neither does the T1C first-order baseline on the same lesions (0.45). T1C
//! needs more lesions: 0.785 over the 1,162-lesion cohort's 5 folds (README). So the test
//! asserts the T2 network above chance on its score, and prints both. It reads the network's
//! score, not the calibrated probability: a calibrator fitted on the 24 calibration lesions can
//! come out flat (kept so rather than inverted), which puts every lesion at the base rate and
//! the calibrated AUC at exactly 0.5 (two of the eight seeds for T2). Which seed lands where
//! depends on the CPU's floating-point kernels, so the bound comes from the spread, not from one
//! run: seed 1 gave T1C 0.444 on this machine and above 0.5 on the machine before it.
//!
//! A second `renal train cnn` with the same checkpoint folder resumes instead of retraining and
//! ends with the same bundle.

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
fn the_t2_network_beats_chance_on_held_out_synthetic_lesions() {
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
    // The network's score (the first AUC on the line; the calibrated one follows).
    let (t2, t1c) = (held_out_auc(&stdout, "t2"), held_out_auc(&stdout, "t1c"));
    println!("held-out ROC AUC of the networks' scores: t2 {t2}, t1c {t1c}");
    assert!(t2 > 0.5, "held-out ROC AUC of the T2 network's score {t2} (T1C {t1c})");

    // Rerun with the same checkpoint: every epoch is replayed from disk, same bundle.
    let again = renal(&args);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let bundle_line = |s: &str| s.lines().next().unwrap().split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(bundle_line(&String::from_utf8_lossy(&again.stdout)), bundle_line(&stdout));
}
