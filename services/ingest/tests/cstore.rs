//! DCMTK's `storescu` sends a synthetic cohort to our C-STORE SCP; every instance lands in the
//! drop folder as a readable Part 10 file with its SOP instance UID, and ingest then makes every
//! lesion into a case. `echoscu` gets a C-ECHO answer.

use renal_bus::InProcessBus;
use renal_ingest::drop_folder::list_files;
use renal_ingest::instance;
use renal_ingest::scp::Scp;
use renal_ingest::ScpConfig;
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
    let scp = Scp::start(&ScpConfig::new("HUP", "RENAL", "127.0.0.1:0"), &drop).unwrap();
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

/// `storescu` or `echoscu` with these arguments against the receiver on `port`: (success, what
/// it printed).
fn dcmtk(tool: &str, args: &[&str], port: u16, files: &[std::path::PathBuf]) -> (bool, String) {
    let out = Command::new(tool).args(args).args(["127.0.0.1", &port.to_string()]).args(files).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn only_the_sites_ae_titles_may_store_and_associations_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("cohort");
    generate(
        &SynthConfig { lesions: 1, seed: 9, sites: vec!["MAY".into()], ..SynthConfig::default() },
        &cohort,
        &|_| {},
    )
    .unwrap();
    let files: Vec<_> = list_files(&cohort.join("MAY"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .take(2)
        .collect();
    let drop = dir.path().join("drop/MAY");
    let config = ScpConfig {
        calling_ae_titles: vec!["MAYMR1".into(), "MAYPACS".into()],
        max_associations: 1,
        ..ScpConfig::new("MAY", "RENAL_MAY", "127.0.0.1:0")
    };
    let scp = Scp::start(&config, &drop).unwrap();
    let port = scp.addr.port();

    // A sender not on the list, and an allowed one calling the wrong AE title: rejected at
    // association, nothing stored.
    let (ok, said) = dcmtk("storescu", &["-aet", "INTRUDER", "-aec", "RENAL_MAY"], port, &files);
    assert!(!ok && said.contains("Association Rejected"), "{said}");
    assert!(said.to_lowercase().contains("calling ae title not recognized"), "{said}");
    let (ok, said) = dcmtk("storescu", &["-aet", "MAYMR1", "-aec", "WRONG"], port, &files);
    assert!(!ok && said.to_lowercase().contains("called ae title not recognized"), "{said}");
    assert!(list_files(&drop).is_empty(), "a refused sender stored something");

    // An allowed sender stores.
    let (ok, said) = dcmtk("storescu", &["-aet", "MAYMR1", "-aec", "RENAL_MAY"], port, &files);
    assert!(ok, "{said}");
    assert_eq!(list_files(&drop).len(), files.len());

    // With the one association slot held by a connection that never speaks, the next sender is
    // told to come back later; once it closes, the sender gets through.
    let held = std::net::TcpStream::connect(scp.addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (ok, said) = dcmtk("echoscu", &["-aet", "MAYPACS", "-aec", "RENAL_MAY"], port, &[]);
    assert!(!ok && said.contains("Association Rejected"), "{said}");
    assert!(
        said.to_lowercase().contains("local-limit-exceeded") || said.to_lowercase().contains("local limit exceeded"),
        "{said}"
    );
    std::mem::drop(held);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, said) = dcmtk("echoscu", &["-aet", "MAYPACS", "-aec", "RENAL_MAY"], port, &[]);
        if ok {
            break;
        }
        assert!(std::time::Instant::now() < until, "the slot was never freed: {said}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    scp.stop();
    let associations = renal_telemetry::ingest_metrics().associations.clone();
    // The two AE titles not allowed, and the connection that held the slot without ever asking.
    assert_eq!(associations.with_label_values(&["MAY", "refused"]).get(), 3);
    assert!(associations.with_label_values(&["MAY", "busy"]).get() >= 1);
    assert!(associations.with_label_values(&["MAY", "ok"]).get() >= 2);
}
