//! The deployment's Grafana dashboards against Grafana's published schema.
//!
//! Grafana publishes its dashboard schema as the TypeScript types of npm's `@grafana/schema`
//! (generated from the CUE kinds in Grafana's repository): `Dashboard` for the dashboard and
//! each panel plugin's `Options`. Each dashboard becomes a TypeScript module that assigns the
//! JSON to those types, and the TypeScript compiler checks it: a missing required field, a field
//! the schema does not know, or a value of the wrong type fails. String enums are compared by
//! their values (`Plain<T>`), as JSON carries them. `scripts/install-grafana-schema.sh`
//! installs the pinned versions.
//!
//! Every query in the dashboards runs against a real Prometheus: the pipeline's in
//! `tests/pipeline_observed.rs`, the monitor's in `tests/monitor_drift.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Where `node_modules` with `@grafana/schema` and `typescript` is.
fn schema_dir() -> PathBuf {
    let dir = std::env::var_os("RENAL_GRAFANA_SCHEMA").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/renal-mri/grafana-schema")
    });
    assert!(
        dir.join("node_modules/.bin/tsc").exists(),
        "{}: no tsc (scripts/install-grafana-schema.sh installs it)",
        dir.display()
    );
    dir
}

/// Panel types whose options are checked, and the module of their `Options` type.
const PANEL_OPTIONS: [(&str, &str); 4] = [
    ("timeseries", "timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen"),
    ("stat", "stat/panelcfg/x/StatPanelCfg_types.gen"),
    ("table", "table/panelcfg/x/TablePanelCfg_types.gen"),
    ("status-history", "statushistory/panelcfg/x/StatusHistoryPanelCfg_types.gen"),
];

/// The dashboard as a TypeScript module typed by Grafana's schema.
fn module(dashboard: &serde_json::Value) -> String {
    let mut ts = String::from("import type { Dashboard } from '@grafana/schema';\n");
    // Panel types are not all identifiers (`status-history`): each options type by its index.
    for (i, (_, path)) in PANEL_OPTIONS.iter().enumerate() {
        ts.push_str(&format!(
            "import type {{ Options as Options{i} }} from '@grafana/schema/dist/esm/raw/composable/{path}';\n"
        ));
    }
    ts.push_str(
        "type Plain<T> = T extends string ? `${T}` : T extends object ? { [K in keyof T]: Plain<T[K]> } : T;\n",
    );
    ts.push_str(&format!("export const dashboard: Plain<Dashboard> = {dashboard:#};\n"));
    for panel in dashboard["panels"].as_array().unwrap() {
        let kind = panel["type"].as_str().unwrap();
        if kind == "row" {
            continue;
        }
        let i = PANEL_OPTIONS
            .iter()
            .position(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("panel type {kind} has no options check here"));
        ts.push_str(&format!("export const options{}: Plain<Options{i}> = {:#};\n", panel["id"], panel["options"]));
    }
    ts
}

/// Type-check `source` with tsc; its diagnostics when it fails.
fn tsc(source: &str) -> Result<(), String> {
    let schema = schema_dir();
    // Inside the install folder, so the module resolves `@grafana/schema` from its node_modules.
    let dir = tempfile::Builder::new().prefix("check-").tempdir_in(&schema).unwrap();
    std::fs::write(dir.path().join("dashboard.ts"), source).unwrap();
    let out = Command::new(schema.join("node_modules/.bin/tsc"))
        .args(["--noEmit", "--strict", "--module", "esnext", "--moduleResolution", "bundler", "--target", "es2022"])
        .arg("dashboard.ts")
        .current_dir(dir.path())
        .output()
        .expect("tsc runs (Debian's nodejs)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn every_dashboard_matches_grafanas_published_schema() {
    let all = dashboards();
    assert!(!all.is_empty());
    for (name, dashboard) in &all {
        if let Err(errors) = tsc(&module(dashboard)) {
            panic!("{name}.json does not match Grafana's dashboard schema:\n{errors}");
        }
    }
    // The check can fail, one fault at a time: a height given as text, a dashboard field the
    // schema lacks, a legend without its required `calcs`. (Panels are a union of panel and row
    // types, for which TypeScript does not report unknown fields; the dashboard's own fields and
    // each panel's options are exact.)
    let (_, good) = &all[0];
    type Fault = fn(&mut serde_json::Value);
    let faults: [(Fault, &str); 3] = [
        (|d| timeseries(d)["gridPos"]["h"] = "8".into(), "not assignable to type 'number'"),
        (|d| d["refreshEvery"] = "5s".into(), "'\"refreshEvery\"' does not exist"),
        (|d| _ = timeseries(d)["options"]["legend"].as_object_mut().unwrap().remove("calcs"), "'calcs' is missing"),
    ];
    for (fault, want) in faults {
        let mut bad = good.clone();
        fault(&mut bad);
        let errors = tsc(&module(&bad)).expect_err("a broken dashboard passed");
        assert!(errors.contains(want), "expected {want:?} among:\n{errors}");
    }
}

/// The first time-series panel.
fn timeseries(dashboard: &mut serde_json::Value) -> &mut serde_json::Value {
    dashboard["panels"].as_array_mut().unwrap().iter_mut().find(|p| p["type"] == "timeseries").unwrap()
}

#[test]
fn dashboards_use_the_provisioned_datasource_and_the_provisioned_folder() {
    let datasource =
        std::fs::read_to_string(repo().join("deploy/grafana/provisioning/datasources/prometheus.yml")).unwrap();
    let uid = datasource.lines().find_map(|l| l.trim().strip_prefix("uid: ")).expect("a datasource uid").to_string();
    for (name, dashboard) in dashboards() {
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids repeat");
        for panel in panels.iter().filter(|p| p["type"] != "row") {
            assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{name}: {}", panel["title"]);
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], uid.as_str(), "{name}: {}", panel["title"]);
                assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {}", panel["title"]);
            }
        }
    }
    // Each dashboard's queries run against a real Prometheus in some test, and uids differ.
    let names: Vec<String> = dashboards().iter().map(|(n, _)| format!("{n}.json")).collect();
    assert_eq!(names, renal_e2e::QUERIED_DASHBOARDS, "a dashboard whose queries no test runs");
    let mut uids: Vec<String> = dashboards().iter().map(|(_, d)| d["uid"].as_str().unwrap().to_string()).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), names.len(), "dashboard uids repeat: {uids:?}");
    // The provider reads the folder the compose file mounts the dashboards at.
    let provider = std::fs::read_to_string(repo().join("deploy/grafana/provisioning/dashboards/renal.yml")).unwrap();
    let path = provider.lines().find_map(|l| l.trim().strip_prefix("path: ")).expect("a provider path");
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(compose.contains(&format!("./deploy/grafana/dashboards:{path}")), "docker-compose.yml mounts {path}");
}
