//! Bad arguments to `renal synth` fail fast, with a clear message and a non-zero exit.

use renal_e2e::{files_under, renal};

fn fails_with(args: &[&str], needle: &str) {
    let out = renal(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.contains(needle), "{args:?}: stderr {stderr:?} lacks {needle:?}");
}

#[test]
fn unknown_site_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    fails_with(
        &["synth", "--out", out.to_str().unwrap(), "--lesions", "3", "--sites", "HUP,XYZ"],
        "unknown site \"XYZ\"",
    );
    assert!(!out.exists(), "nothing written on a refused run");
}

#[test]
fn zero_lesions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    fails_with(&["synth", "--out", out.to_str().unwrap(), "--lesions", "0"], "at least one lesion");
}

#[test]
fn unwritable_output_is_refused() {
    // A path below a regular file cannot be created, even by root.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("cohort");
    fails_with(&["synth", "--out", out.to_str().unwrap(), "--lesions", "1"], "cannot create");
}

#[test]
fn non_empty_output_needs_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"precious").unwrap();
    fails_with(&["synth", "--out", dir.path().to_str().unwrap(), "--lesions", "1"], "not empty");
    assert_eq!(std::fs::read(dir.path().join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn bad_fraction_and_threads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    fails_with(&["synth", "--out", out.to_str().unwrap(), "--multi-reader-fraction", "2"], "must lie in 0..=1");
    fails_with(&["synth", "--out", out.to_str().unwrap(), "--lesions", "1", "--threads", "0"], "at least 1");
}

#[test]
fn same_seed_writes_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for n in 0..2 {
        let out = dir.path().join(format!("c{n}"));
        let run = renal(&["synth", "--out", out.to_str().unwrap(), "--lesions", "2", "--seed", "9", "--sites", "TCIA"]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let files: Vec<(std::path::PathBuf, Vec<u8>)> = files_under(&out, None)
            .into_iter()
            .map(|p| (p.strip_prefix(&out).unwrap().to_path_buf(), std::fs::read(&p).unwrap()))
            .collect();
        digests.push(files);
    }
    assert!(!digests[0].is_empty());
    assert_eq!(digests[0].len(), digests[1].len());
    for (a, b) in digests[0].iter().zip(&digests[1]) {
        assert_eq!(a.0, b.0);
        assert!(a.1 == b.1, "{} differs between runs with the same seed", a.0.display());
    }
}

#[test]
fn worker_config_example_parses_and_bad_workers_are_refused() {
    // The documented example parses; it then stops at validation because its folders do not exist here.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ingest.toml");
    fails_with(&["worker", "ingest", "--config", example], "drop folder of HUP is not a folder");
    fails_with(&["worker", "replay", "--config", example], "no worker named \"replay\"");
    fails_with(&["worker", "trainer", "--config", example], "[trainer] section missing");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kafka]\nbootstrap_servers = \"x:1\"\n[ingest]\nnot_a_setting = 1\n").unwrap();
    fails_with(&["worker", "ingest", "--config", bad.to_str().unwrap()], "unknown field `not_a_setting`");
}
