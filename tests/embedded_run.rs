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
