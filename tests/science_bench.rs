//! `renal bench science` on a small cohort without the networks: both protocols run on the
//! same prepared lesions and each prints a table whose rows match its report.

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
}
