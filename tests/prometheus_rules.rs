//! The deployment's Prometheus files as Prometheus' own tool reads them: `promtool check
//! config` on `deploy/prometheus/prometheus.yml` (which loads the alert rules) and `promtool
//! test rules` on `alerts_test.yml`, where each alert fires on a series built to trip it.
//! (`tests/radiomics_kafka.rs` evaluates the rules' signals against a live worker.)

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (scripts/setup.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_scrape_config_and_alert_rules_pass_promtool() {
    let text = promtool(&["check", "config", "prometheus.yml"]);
    assert!(text.contains("SUCCESS: 1 rule files found"), "{text}");
    let text = promtool(&["check", "rules", "alerts.yml"]);
    let rules = renal_e2e::alert_expressions().len();
    assert!(text.contains(&format!("SUCCESS: {rules} rules found")), "{text}");
    // Every alert has a unit test.
    let tests =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts_test.yml"))
            .unwrap();
    let alerts =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml")).unwrap();
    for name in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {name}")), "{name} has no promtool test");
    }
    let text = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}
