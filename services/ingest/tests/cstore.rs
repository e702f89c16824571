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
    // A batch run again on the same folders (renal run into the same output) emits again: the
    // record of emitted studies is the worker's, not the batch run's.
    let again = rt
        .block_on(run(&config, b"s".to_vec(), InProcessBus::new(1), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    assert_eq!((again.cases, again.duplicates), (3, 0));
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

/// Run `openssl` with these arguments in `dir`, asserting success.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect("openssl: scripts/setup.sh installs it");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `ca` in `dir` (`ca.crt`, `ca.key`), and a certificate `name.crt`/`name.key`
/// signed by it with the given extensions.
fn ca(dir: &std::path::Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
        ],
    );
}

fn signed(dir: &std::path::Path, ca: &str, name: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[test]
fn dicom_over_tls_takes_a_certified_sender_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    ca(&pki, "site-ca");
    ca(&pki, "other-ca");
    signed(&pki, "site-ca", "receiver", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    signed(&pki, "site-ca", "scanner", "extendedKeyUsage=clientAuth\n");
    signed(&pki, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| pki.join(f).display().to_string();

    let cohort = dir.path().join("cohort");
    generate(
        &SynthConfig { lesions: 1, seed: 10, sites: vec!["PHH".into()], ..SynthConfig::default() },
        &cohort,
        &|_| {},
    )
    .unwrap();
    let files: Vec<_> = list_files(&cohort.join("PHH"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .take(3)
        .collect();
    let drop = dir.path().join("drop/PHH");
    let tls = renal_ingest::config::ScpTls {
        certificate: pki.join("receiver.crt"),
        private_key: pki.join("receiver.key"),
        client_ca: Some(pki.join("site-ca.crt")),
    };
    // A key file that is not there stops the receiver at start-up, naming the file.
    let missing = renal_ingest::config::ScpTls { private_key: pki.join("nope.key"), ..tls.clone() };
    let err = Scp::start(&ScpConfig { tls: Some(missing), ..ScpConfig::new("PHH", "RENAL_PHH", "127.0.0.1:0") }, &drop)
        .err()
        .expect("a missing key is refused");
    assert!(err.to_string().contains("nope.key"), "{err}");

    let scp =
        Scp::start(&ScpConfig { tls: Some(tls), ..ScpConfig::new("PHH", "RENAL_PHH", "127.0.0.1:0") }, &drop).unwrap();
    let port = scp.addr.port();
    let aec = ["-aec", "RENAL_PHH"];
    let with = |extra: &[&str]| -> Vec<String> {
        aec.iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.to_string())).collect()
    };

    // The scanner with its certificate from the site's CA, verifying the receiver's.
    let args = with(&["+tls", &p("scanner.key"), &p("scanner.crt"), "+cf", &p("site-ca.crt")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, said) = dcmtk("storescu", &args, port, &files);
    assert!(ok, "storescu +tls: {said}");
    assert_eq!(list_files(&drop).len(), files.len(), "every instance over TLS landed");

    // Refused: a plain connection, TLS without a certificate, a certificate from another CA.
    let refused: [(&str, Vec<String>); 3] = [
        ("plain TCP", with(&[])),
        ("TLS without a certificate", with(&["+tla", "+cf", &p("site-ca.crt")])),
        (
            "a certificate from another CA",
            with(&["+tls", &p("stranger.key"), &p("stranger.crt"), "+cf", &p("site-ca.crt")]),
        ),
    ];
    let before = list_files(&drop).len();
    for (what, args) in &refused {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, said) = dcmtk("storescu", &args, port, &files[..1]);
        assert!(!ok, "{what} was accepted: {said}");
    }
    // A connection that closes at once, and one that sends the start of a ClientHello and
    // closes: each refused, neither left spinning (dicom-ul alone loops forever on these).
    std::mem::drop(std::net::TcpStream::connect(scp.addr).unwrap());
    let mut cut = std::net::TcpStream::connect(scp.addr).unwrap();
    std::io::Write::write_all(&mut cut, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
    std::mem::drop(cut);
    let associations = renal_telemetry::ingest_metrics().associations.clone();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while associations.with_label_values(&["PHH", "refused"]).get() < 5 {
        assert!(std::time::Instant::now() < until, "the cut connections were never let go");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    scp.stop();
    assert_eq!(list_files(&drop).len(), before, "nothing stored by a refused sender");
    assert_eq!(associations.with_label_values(&["PHH", "ok"]).get(), 1);
    assert_eq!(associations.with_label_values(&["PHH", "refused"]).get(), 5);
}
