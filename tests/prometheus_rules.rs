//! The deployment's Prometheus files as Prometheus' own tool reads them: `promtool check
//! config` on `deploy/prometheus/prometheus.yml` (which loads the alert rules) and `promtool
//! test rules` on `alerts_test.yml`, where each alert fires on a series built to trip it.
//! (`tests/pipeline_observed.rs` evaluates the workers' rules' signals against live workers; the
//! monitor's rules, `monitor_alerts.yml`, are checked here by their unit tests only.)

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
    assert!(text.contains("SUCCESS: 2 rule files found"), "{text}");
    let text = promtool(&["check", "rules", "alerts.yml"]);
    let rules = renal_e2e::alert_expressions().len();
    assert!(text.contains(&format!("SUCCESS: {rules} rules found")), "{text}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for (rules, tests) in [("alerts.yml", "alerts_test.yml"), ("monitor_alerts.yml", "monitor_alerts_test.yml")] {
        // Every alert has a unit test.
        let test_text = std::fs::read_to_string(dir.join(tests)).unwrap();
        let alerts = std::fs::read_to_string(dir.join(rules)).unwrap();
        let names: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
        assert!(!names.is_empty(), "{rules}");
        for name in names {
            assert!(test_text.contains(&format!("alertname: {name}")), "{name} has no promtool test");
        }
        let text = promtool(&["test", "rules", tests]);
        assert!(text.contains("SUCCESS"), "{text}");
    }
}
