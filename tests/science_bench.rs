//! `renal bench science` on a small cohort without the networks: both protocols run on the
//! same prepared lesions and each prints a table whose rows match its report; `--reuse` trains
//! again on what the first run left and prints the same tables.

use renal_e2e::renal;

#[test]
fn science_bench_prints_a_table_per_protocol_from_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("science");
    let run = renal(&[
        "bench",
        "science",
        "--lesions",
        "40",
        "--seed",
        "4",
        "--hold-out",
        "may",
        "--no-cnn",
        "--dir",
        keep.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    for (protocol, folder) in [("KFold(5)", "kfold"), ("LeaveOut(\"MAY\")", "loio")] {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(keep.join("run").join(folder).join("report/report.json")).unwrap())
                .unwrap();
        let section = stdout.split(&format!("\n{protocol} (")).nth(1).unwrap_or_else(|| panic!("{stdout}"));
        for model in ["clinical", "first_order_t2", "first_order_t1c"] {
            let m = &report["models"][model];
            let row = section
                .lines()
                .find(|l| l.starts_with(&format!("| {model} |")))
                .unwrap_or_else(|| panic!("{model} in {protocol}: {stdout}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells[2], m["n"].to_string(), "{row}");
            let ece = m["ece"].as_f64().unwrap();
            assert_eq!(cells[5], format!("{ece:.3}"), "{row}");
            assert!(m["n"].as_u64().unwrap() > 0);
        }
    }
    // The held-out site's lesions only, in the second protocol.
    let split = std::fs::read_to_string(keep.join("run/loio/split.csv")).unwrap();
    assert!(split.lines().filter(|l| l.ends_with(",test")).all(|l| l.starts_with("MAY-")), "{split}");
    assert!(stdout.contains("Table 1 implies for a clinical model"), "{stdout}");
    assert!(stdout.contains("ingest + preprocess + radiomics"), "{stdout}");

    // Again on what the first run left: nothing re-made, the same (seeded) models and tables.
    let again =
        renal(&["bench", "science", "--hold-out", "may", "--no-cnn", "--dir", keep.to_str().unwrap(), "--reuse"]);
    let second = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{second}\n{}", String::from_utf8_lossy(&again.stderr));
    assert!(second.contains("cohort and preparation reused"), "{second}");
    let tables =
        |out: &str| -> Vec<String> { out.lines().filter(|l| l.starts_with("| ")).map(str::to_string).collect() };
    assert!(!tables(&stdout).is_empty());
    assert_eq!(tables(&stdout), tables(&second));
    let header = |out: &str| {
        out.lines().find(|l| l.starts_with("renal bench science:")).map(|l| l.split(" (").next().unwrap().to_string())
    };
    assert_eq!(header(&stdout), header(&second), "lesions and patients counted the same way");
}
