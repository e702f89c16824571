//! `renal bench pipeline` at a small size (the README's runs use 160 and 1,162 lesions): a
//! private tansu, the five workers as processes, a cohort through drop folders and C-STORE;
//! every lesion predicted once, and the tables it prints carry each stage, each hop, what Kafka
//! adds and the comparison with the stages' own benchmark.

use renal_e2e::renal;

#[test]
fn the_pipeline_bench_predicts_every_lesion_once_and_prints_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("bench");
    let out = renal(&["bench", "pipeline", "--lesions", "6", "--sample", "2", "--dir", work.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // Six lesions over five sites, every one predicted once.
    let summary = text.lines().find(|l| l.starts_with("end to end:")).unwrap_or_else(|| panic!("{text}"));
    let lesions_per_second: f64 = summary.split(", ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(lesions_per_second > 0.0, "{summary}");
    assert!(summary.contains("6 unique, 0 repeated, 0 dead-lettered, 0 missing"), "{summary}");
    // A row per stage, with the worker's CPU and the stage's own benchmark measured.
    for stage in ["ingest", "preprocess", "radiomics", "inference", "ensemble"] {
        let row = text.lines().find(|l| l.starts_with(&format!("| {stage} |"))).unwrap_or_else(|| panic!("{text}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let cpu: f64 = cells[5].parse().unwrap();
        assert!(cpu > 0.0, "{row}");
        let own: f64 = cells[7].parse().unwrap();
        if stage == "preprocess" || stage == "radiomics" {
            assert!(own > 10.0, "{stage}'s own benchmark is {own} ms per lesion: {row}");
        }
    }
    // Each hop the messages take, and the probe of the broker itself.
    for hop in ["renal.cases -> preprocess", "renal.lesions -> inference", "renal.scores -> ensemble"] {
        assert!(text.contains(&format!("| {hop} |")), "no {hop} row:\n{text}");
    }
    assert!(text.contains("| Kafka itself (probe"), "{text}");
    // The bench's own CPU is shown apart from the pipeline's, and the header says how many
    // cores the processes were allowed (what a `taskset -c 0` run changes).
    assert!(text.contains("| the bench itself ("), "{text}");
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(text.lines().next().unwrap().ends_with(&format!("{cores} CPU cores allowed")), "{text}");
    assert!(text.contains("- CPU per lesion / stages' benchmark: "), "{text}");
    // The worker logs and stores stay in --dir.
    assert!(work.join("ingest.log").is_file() && work.join("cohort/labels.csv").is_file());
}
