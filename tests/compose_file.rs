//! `docker-compose.yml` against the repository (this machine has no Docker CLI to run
//! `docker compose config`): the file is read by PyYAML (merge keys resolved, as Compose does)
//! and every service's image or build, command, mounted files, ports and health check are
//! compared with the worker files, the topic graph and the Prometheus and Grafana files they
//! must agree with.

use renal_messages::topics;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn compose() -> serde_json::Value {
    let out = Command::new(renal_e2e::venv_bin("python"))
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(repo().join("docker-compose.yml"))
        .output()
        .expect("the test venv's python (scripts/python-env.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// `(source, target)` of each volume entry `source:target[:mode]`.
fn mounts(service: &serde_json::Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .into_iter()
        .map(|m| {
            let mut parts = m.split(':');
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect()
}

const WORKERS: [&str; 7] = ["ingest", "preprocess", "radiomics", "inference", "ensemble", "monitor", "trainer"];

#[test]
fn every_service_agrees_with_the_repository() {
    let file = compose();
    let services = file["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    for want in WORKERS.iter().chain(&["kafka", "topics", "models", "prometheus", "alertmanager", "grafana"]) {
        assert!(names.contains(want), "no {want} service");
    }
    let declared: BTreeSet<String> = file["volumes"].as_object().unwrap().keys().cloned().collect();
    for (name, service) in services {
        // An image pinned to a version, or the project's own image built from deploy/Dockerfile.
        let image = service["image"].as_str().unwrap_or_else(|| panic!("{name} has no image"));
        if image == "renal-mri:latest" {
            let built = services.values().any(|s| s["image"] == image && s["build"]["dockerfile"].is_string());
            assert!(built, "no service builds {image}");
        } else {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest", "{name}: {image} is not pinned");
        }
        if let Some(dockerfile) = service["build"]["dockerfile"].as_str() {
            assert!(repo().join(dockerfile).is_file(), "{name}: {dockerfile} missing");
        }
        for (source, target) in mounts(service) {
            assert!(target.starts_with('/'), "{name}: {target}");
            if source.starts_with("./") {
                assert!(repo().join(&source).exists(), "{name} mounts {source}, which is not in the repository");
            } else {
                assert!(declared.contains(&source), "{name} uses volume {source}, which is not declared");
            }
        }
    }

    // The map back to the hospital's UIDs is mounted by ingest alone (the results stage, when it
    // exists, is the one reader the design allows).
    let map_users: Vec<&str> = services
        .iter()
        .filter(|(_, s)| mounts(s).iter().any(|(source, _)| source == "uid-map"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(map_users, vec!["ingest"]);

    // Kafka: the official image, one KRaft node; every topic of the graph created at start.
    let kafka = &services["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:"));
    assert_eq!(kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller");
    let script = strings(&services["topics"]["command"]).join(" ");
    let created: BTreeSet<&str> =
        script.split_whitespace().filter(|w| w.starts_with("renal.")).map(|w| w.trim_end_matches(';')).collect();
    let graph: BTreeSet<&str> = topics::ALL.iter().map(|t| t.name).collect();
    assert_eq!(created, graph, "the topics service creates the topic graph");

    let prometheus_yml = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    for stage in WORKERS {
        let service = &services[stage];
        let config_in_container = format!("/etc/renal/{stage}.toml");
        assert_eq!(strings(&service["command"]), ["worker", stage, "--config", config_in_container.as_str()]);
        let m = mounts(service);
        assert!(
            m.contains(&(format!("./deploy/{stage}.toml"), config_in_container.clone())),
            "{stage} does not mount deploy/{stage}.toml"
        );
        let text = std::fs::read_to_string(repo().join(format!("deploy/{stage}.toml"))).unwrap();
        let toml: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(toml["kafka"]["bootstrap_servers"].as_str(), Some("kafka:9092"), "{stage}");
        // The health check asks the worker's own /readyz; Prometheus scrapes the same port.
        let addr = toml["telemetry"]["metrics_addr"].as_str().unwrap();
        let port = addr.rsplit_once(':').unwrap().1;
        let check = strings(&service["healthcheck"]["test"]);
        assert_eq!(check.last().map(String::as_str), Some(format!("http://localhost:{port}/readyz").as_str()));
        assert!(prometheus_yml.contains(&format!("\"{stage}:{port}\"")), "prometheus.yml does not scrape {stage}");
        // Every folder the worker writes or reads is on a mounted volume.
        let own = toml[stage].as_table().unwrap();
        let mut folders: Vec<String> = ["blob_store", "table_root", "registry", "state_dir", "store", "labels_dir"]
            .iter()
            .filter_map(|k| own.get(*k).and_then(|v| v.as_str()).map(str::to_string))
            .collect();
        for site in own.get("sites").and_then(|s| s.as_array()).into_iter().flatten() {
            folders.push(site["drop_folder"].as_str().unwrap().to_string());
        }
        assert!(!folders.is_empty(), "{stage}");
        for folder in folders {
            assert!(
                m.iter().any(|(_, target)| Path::new(&folder).starts_with(target)),
                "{stage}: {folder} is on no volume"
            );
        }
        // The C-STORE receivers' ports are published.
        for scp in own.get("scp").and_then(|s| s.as_array()).into_iter().flatten() {
            let port = scp["bind"].as_str().unwrap().rsplit_once(':').unwrap().1.to_string();
            assert!(strings(&service["ports"]).contains(&format!("{port}:{port}")), "{stage}: C-STORE port {port}");
        }
    }
    assert!(services["ingest"]["environment"]["RENAL_PSEUDONYM_SECRET"].is_string());

    // Prometheus reads the deployment's scrape config and rules; Grafana its provisioning.
    let prometheus = &services["prometheus"];
    assert!(mounts(prometheus).contains(&("./deploy/prometheus".into(), "/etc/prometheus".into())));
    assert!(strings(&prometheus["command"]).contains(&"--config.file=/etc/prometheus/prometheus.yml".to_string()));
    // Prometheus sends its alerts to Alertmanager, which posts the monitor's drift and
    // calibration alerts to the trainer's webhook (the port of its alerts_addr); amtool accepts
    // the routing file.
    assert!(prometheus_yml.contains("targets: [\"alertmanager:9093\"]"), "prometheus.yml sends no alerts");
    let alertmanager = &services["alertmanager"];
    assert!(mounts(alertmanager).contains(&("./deploy/alertmanager".into(), "/etc/alertmanager".into())));
    let routing = std::fs::read_to_string(repo().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    let trainer: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("deploy/trainer.toml")).unwrap()).unwrap();
    let port = trainer["trainer"]["alerts_addr"].as_str().unwrap().rsplit_once(':').unwrap().1.to_string();
    assert!(routing.contains(&format!("url: http://trainer:{port}/alerts")), "{routing}");
    let monitor_rules = std::fs::read_to_string(repo().join("deploy/prometheus/monitor_alerts.yml")).unwrap();
    for alert in ["RenalCalibrationDrift", "RenalScoreDrift", "RenalFeatureDrift"] {
        assert!(routing.contains(alert) && monitor_rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    let checked = Command::new("amtool")
        .args(["check-config"])
        .arg(repo().join("deploy/alertmanager/alertmanager.yml"))
        .output()
        .expect("amtool (scripts/setup.sh installs it)");
    let said = String::from_utf8_lossy(&checked.stdout).to_string() + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success() && said.contains("SUCCESS"), "amtool check-config:\n{said}");
    let grafana = mounts(&services["grafana"]);
    assert!(grafana.contains(&("./deploy/grafana/provisioning".into(), "/etc/grafana/provisioning".into())));
    let datasource =
        std::fs::read_to_string(repo().join("deploy/grafana/provisioning/datasources/prometheus.yml")).unwrap();
    assert!(datasource.contains("url: http://prometheus:9090"));
}
