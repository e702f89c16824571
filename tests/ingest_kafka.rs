//! The ingest worker on a real broker, killed and restarted in the middle.
//!
//! `renal synth` writes lesions into a staging folder; a feeder thread sends them study by study
//! over time, while `renal worker ingest` runs against tansu: MAY by copying into its drop
//! folder, PHH over the network with DCMTK's `storescu` to the worker's C-STORE receiver
//! (retrying while the worker is down). Once two cases are out the worker is killed with SIGKILL, with studies
//! still arriving, and started again. In the end every lesion is in `renal.cases` (a case re-sent after the kill carries the same key and
//! revision, so consumers and the keyed table see it once), the `cases` table has exactly one
//! file per lesion, and every file has left the drop folders.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig};
use renal_e2e::{files_under, renal, renal_bin, Broker};
use renal_messages::{topics, CaseV1, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn start_worker(config: &std::path::Path) -> Child {
    Command::new(renal_bin())
        .args(["worker", "ingest", "--config", config.to_str().unwrap()])
        .env("RENAL_PSEUDONYM_SECRET", "e2e-secret")
        .spawn()
        .expect("start renal worker ingest")
}

#[test]
fn every_lesion_once_after_a_kill_and_restart() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let cohort = dir.path().join("drop");
    let synth =
        renal(&["synth", "--out", staging.to_str().unwrap(), "--lesions", "8", "--sites", "MAY,PHH", "--seed", "12"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(staging.join("manifest.json")).unwrap()).unwrap();
    for site in ["MAY", "PHH"] {
        std::fs::create_dir_all(cohort.join(site)).unwrap();
    }
    // Study folders <site>/<patient>/<study>, sent one at a time, 400 ms apart; each file is
    // written under a dot-name and renamed, as a careful sender does.
    let mut studies = Vec::new();
    for site in ["MAY", "PHH"] {
        for p in std::fs::read_dir(staging.join(site)).unwrap().flatten() {
            for st in std::fs::read_dir(p.path()).unwrap().flatten() {
                studies.push(st.path());
            }
        }
    }
    studies.sort();
    let scp_port = renal_e2e::free_port();
    let (from, to) = (staging.clone(), cohort.clone());
    let feeder = std::thread::spawn(move || {
        for study in studies {
            if study.starts_with(from.join("PHH")) {
                // PHH sends over the network, retrying while the receiver is down, as scanners do.
                renal_e2e::storescu("RENAL_PHH", scp_port, &study);
                std::thread::sleep(Duration::from_millis(400));
                continue;
            }
            let mut stack = vec![study];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let target = to.join(path.strip_prefix(&from).unwrap());
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    let tmp = target.with_file_name(format!(".{}", target.file_name().unwrap().to_string_lossy()));
                    std::fs::copy(&path, &tmp).unwrap();
                    std::fs::rename(&tmp, &target).unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(400));
        }
    });
    let expected: BTreeSet<String> = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| renal_e2e::lesion_id(c["site"].as_str().unwrap(), c["case_id"].as_str().unwrap()))
        .collect();
    let config = dir.path().join("ingest.toml");
    let metrics = format!("127.0.0.1:{}", renal_e2e::free_port());
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[telemetry]
metrics_addr = "{metrics}"

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 300
incomplete_timeout_ms = 60000
scan_interval_ms = 100
file_settle_ms = 200
move_processed = true

[[ingest.sites]]
code = "MAY"
drop_folder = "{root}/drop/MAY"

[[ingest.sites]]
code = "PHH"
drop_folder = "{root}/drop/PHH"

[[ingest.scp]]
site = "PHH"
ae_title = "RENAL_PHH"
bind = "127.0.0.1:{scp_port}"
"#,
            bootstrap = broker.bootstrap,
            root = dir.path().display(),
        ),
    )
    .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::CASES, topics::DEAD_INGEST]).await.unwrap();
        let mut cases = bus.consumer("e2e-check", &[topics::CASES]).unwrap();
        let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();

        let mut worker = start_worker(&config);
        // Kill it as soon as a couple of cases are out.
        while seen.len() < 2 {
            let r = tokio::time::timeout(Duration::from_secs(60), cases.recv()).await.expect("first cases").unwrap();
            let c = CaseV1::decode(&r.payload).unwrap();
            assert_eq!(r.key, c.case_id);
            *seen.entry((c.case_id, c.revision)).or_default() += 1;
        }
        worker.kill().unwrap();
        worker.wait().unwrap();
        let at_kill = seen.len();

        let worker = start_worker(&config);
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.keys().map(|k| &k.0).collect::<BTreeSet<_>>().len() < expected.len() {
            assert!(Instant::now() < deadline, "only {} of {} cases", seen.len(), expected.len());
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(5), cases.recv()).await {
                let c = CaseV1::decode(&r.unwrap().payload).unwrap();
                *seen.entry((c.case_id, c.revision)).or_default() += 1;
            }
        }
        // The restarted worker's counters: files from both sites (PHH's over C-STORE), the
        // cases it emitted, and no lesion id in any label.
        let (status, text) = renal_e2e::http_get(&metrics, "/metrics");
        assert_eq!(status, 200);
        let value = |series: &str| -> f64 {
            text.lines().find_map(|l| l.strip_prefix(series)).map_or(0.0, |v| v.trim().parse().unwrap())
        };
        for site in ["MAY", "PHH"] {
            assert!(value(&format!("renal_ingest_instances_total{{outcome=\"new\",site=\"{site}\"}}")) > 0.0, "{text}");
        }
        let emitted = value("renal_ingest_cases_total{site=\"MAY\"}") + value("renal_ingest_cases_total{site=\"PHH\"}");
        // (How many the first worker had emitted before the kill is unknown: the check consumer
        // may not have read them all yet.)
        assert!(emitted >= 1.0 && emitted <= expected.len() as f64, "{emitted} cases counted:\n{text}");
        assert_eq!(emitted, value("renal_stage_outputs_total{stage=\"ingest\",topic=\"renal.cases\"}"));
        assert!(expected.iter().all(|id| !text.contains(id.as_str())), "a case id in /metrics");
        // Stop gracefully.
        renal_e2e::interrupt(worker);

        assert!(at_kill < expected.len(), "the kill landed after everything was out; it tested nothing");
        let ids: BTreeSet<String> = seen.keys().map(|k| k.0.clone()).collect();
        assert_eq!(ids, expected, "every lesion, nothing else");
        assert!(seen.keys().all(|(_, rev)| *rev == 1), "no spurious revisions: {seen:?}");
    });

    feeder.join().unwrap();
    // One table file per lesion, whatever was re-sent.
    let files = files_under(&dir.path().join("store/cases"), Some("parquet"));
    assert_eq!(files.len(), expected.len(), "{files:?}");
    for site in ["MAY", "PHH"] {
        let left = files_under(&cohort.join(site), None);
        assert!(left.is_empty(), "{site}: files left in the drop folder: {left:?}");
    }
}
