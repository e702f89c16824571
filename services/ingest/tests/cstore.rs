//! DCMTK's `storescu` sends a synthetic cohort to our C-STORE SCP; every instance lands in the
//! drop folder as a readable Part 10 file with its SOP instance UID, and ingest then makes every
//! lesion into a case. `echoscu` gets a C-ECHO answer.

use renal_bus::InProcessBus;
use renal_ingest::drop_folder::list_files;
use renal_ingest::instance;
use renal_ingest::scp::Scp;
use renal_ingest::{run, IngestConfig, Mode, SiteConfig};
use renal_synth::{generate, SynthConfig};
use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn storescu_to_scp_to_cases() {
    for tool in ["storescu", "echoscu"] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).status().unwrap().success();
        assert!(found, "{tool} missing: scripts/setup.sh installs dcmtk");
    }
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("cohort");
    generate(
        &SynthConfig { lesions: 3, seed: 8, sites: vec!["HUP".into()], ..SynthConfig::default() },
        &cohort,
        &|_| {},
    )
    .unwrap();
    let drop = dir.path().join("drop/HUP");
    let scp = Scp::start("127.0.0.1:0", "RENAL", "HUP", &drop, Default::default()).unwrap();
    let port = scp.addr.port().to_string();

    let echo = Command::new("echoscu").args(["-aec", "RENAL", "127.0.0.1", &port]).output().unwrap();
    assert!(echo.status.success(), "echoscu: {}", String::from_utf8_lossy(&echo.stderr));

    let sent: Vec<_> =
        list_files(&cohort.join("HUP")).into_iter().filter(|p| p.extension().is_some_and(|x| x == "dcm")).collect();
    let started = std::time::Instant::now();
    let store = Command::new("storescu")
        .args(["-aec", "RENAL", "-R", "+sd", "+r", "-xs", "127.0.0.1", &port])
        .arg(cohort.join("HUP"))
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(store.status.success(), "storescu: {}", String::from_utf8_lossy(&store.stderr));
    println!("C-STORE: {} instances in {seconds:.2} s = {:.0}/s", sent.len(), sent.len() as f64 / seconds);
    scp.stop();
    // Two associations (the echo and the store), both ended cleanly, counted under the site.
    let associations = renal_telemetry::ingest_metrics().associations.clone();
    assert_eq!(associations.with_label_values(&["HUP", "ok"]).get(), 2);
    assert_eq!(associations.with_label_values(&["HUP", "failed"]).get(), 0);

    let received = list_files(&drop);
    assert_eq!(received.len(), sent.len(), "one file per instance");
    let uid = |b: &[u8]| instance::parse(b).unwrap().sop_instance_uid;
    let want: BTreeSet<String> = sent.iter().map(|p| uid(&std::fs::read(p).unwrap())).collect();
    let got: BTreeSet<String> = received.iter().map(|p| uid(&std::fs::read(p).unwrap())).collect();
    assert_eq!(got, want);

    let site = SiteConfig { code: "HUP".into(), drop_folder: drop.clone(), rules: Default::default() };
    let config = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        ..IngestConfig::new(vec![site], dir.path().join("blobs").display().to_string(), dir.path().join("store"))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stats = rt
        .block_on(run(&config, b"s".to_vec(), InProcessBus::new(1), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    assert_eq!((stats.cases, stats.dead_letters), (3, 0));
}
