//! Studies sent twice, on a real broker: before and after the first copy was emitted, across a
//! graceful restart, and with the worker killed (SIGKILL) in the middle of a resend.
//!
//! Each time, every file must leave the drop folder, no dead letter may appear (the
//! incomplete-case timeout is short, and the test waits past it), and `renal.cases` may carry a
//! study again only as an identical repeat: same lesion id, revision and inputs.

use renal_bus::{Bus, Consumer, KafkaBus, KafkaConfig, KafkaConsumer};
use renal_e2e::{files_under, renal, start_worker, Broker, Running};
use renal_messages::{topics, CaseV1, DeadLetterV1, Message};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const INCOMPLETE_TIMEOUT_MS: u64 = 3_000;

/// Copy every file of `study` into `drop` under `prefix`, each under a dot-name then renamed
/// (a careful sender), pausing `pause` between files; stop after `limit` files.
fn send(study: &Path, drop: &Path, prefix: &str, pause: Duration, limit: usize) -> usize {
    let mut files = files_under(study, None);
    files.sort();
    let mut sent = 0;
    for f in files.into_iter().take(limit) {
        let target = drop.join(prefix).join(f.strip_prefix(study).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let tmp = target.with_file_name(format!(".{}", target.file_name().unwrap().to_string_lossy()));
        std::fs::copy(&f, &tmp).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
        sent += 1;
        std::thread::sleep(pause);
    }
    sent
}

/// Wait until the drop folder holds no visible file.
fn drained(drop: &Path, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = files_under(drop, None);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} files left in the drop folder\n{}",
            left.len(),
            renal_e2e::log_tail(log, 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a case says about its inputs, without when it was produced.
fn identity(c: &CaseV1) -> (String, u32, String) {
    (c.case_id.clone(), c.revision, c.provenance.input_sha256.clone())
}

struct Check {
    cases: KafkaConsumer,
    dead: KafkaConsumer,
    seen: BTreeMap<(String, u32, String), usize>,
}

impl Check {
    /// Read what arrived for `wait`; panic on any dead letter.
    async fn read(&mut self, wait: Duration, log: &Path) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), self.cases.recv()).await {
                let c = CaseV1::decode(&r.unwrap().payload).unwrap();
                *self.seen.entry(identity(&c)).or_default() += 1;
            }
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), self.dead.recv()).await {
                let d = DeadLetterV1::decode(&r.unwrap().payload).unwrap();
                panic!("a dead letter: {} ({})\n{}", d.reason_code, d.reason, renal_e2e::log_tail(log, 40));
            }
        }
    }

    fn lesions(&self) -> usize {
        self.seen.keys().map(|k| &k.0).collect::<std::collections::BTreeSet<_>>().len()
    }
}

#[test]
fn a_study_sent_again_leaves_nothing_behind_and_no_false_dead_letter() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let synth =
        renal(&["synth", "--out", staging.to_str().unwrap(), "--lesions", "2", "--sites", "MAY", "--seed", "31"]);
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    // The two studies, <site>/<patient>/<study>.
    let mut studies: Vec<PathBuf> = Vec::new();
    for p in std::fs::read_dir(staging.join("MAY")).unwrap().flatten() {
        for st in std::fs::read_dir(p.path()).unwrap().flatten() {
            studies.push(st.path());
        }
    }
    studies.sort();
    assert_eq!(studies.len(), 2, "{studies:?}");
    let (a, b) = (&studies[0], &studies[1]);
    let drop = dir.path().join("drop/MAY");
    std::fs::create_dir_all(&drop).unwrap();
    let config = dir.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[ingest]
blob_store = "{root}/blobs"
table_root = "{root}/store"
quiet_period_ms = 400
incomplete_timeout_ms = {INCOMPLETE_TIMEOUT_MS}
scan_interval_ms = 100
file_settle_ms = 0
move_processed = true

[[ingest.sites]]
code = "MAY"
drop_folder = "{root}/drop/MAY"
"#,
            bootstrap = broker.bootstrap,
            root = dir.path().display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("ingest.log");
    let past_timeout = Duration::from_millis(INCOMPLETE_TIMEOUT_MS + 2_000);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-check")).unwrap();
        bus.ensure_topics(&[topics::CASES, topics::DEAD_INGEST]).await.unwrap();
        let mut check = Check {
            cases: bus.consumer("e2e-check", &[topics::CASES]).unwrap(),
            dead: bus.consumer("e2e-check-dead", &[topics::DEAD_INGEST]).unwrap(),
            seen: BTreeMap::new(),
        };
        let mut worker = Running::new(start_worker("ingest", &config, &log));

        // 1. Study B twice before its case is out (the second copy under another folder).
        send(b, &drop, "first", Duration::ZERO, usize::MAX);
        send(b, &drop, "again", Duration::ZERO, usize::MAX);
        drained(&drop, "B sent twice before emission", &log);
        // 2. Study A, then all of it again while the worker remembers it.
        let n = send(a, &drop, "first", Duration::ZERO, usize::MAX);
        drained(&drop, "A sent", &log);
        check.read(Duration::from_secs(2), &log).await;
        assert_eq!(check.lesions(), 2, "{:?}", check.seen);
        send(a, &drop, "resend", Duration::ZERO, usize::MAX);
        drained(&drop, "A sent again while remembered", &log);
        check.read(past_timeout, &log).await;
        // 3. Half of A again, slowly; SIGKILL; restart; all of A again.
        send(a, &drop, "killed", Duration::from_millis(20), n / 2);
        std::thread::sleep(Duration::from_millis(300));
        worker.kill();
        worker = Running::new(start_worker("ingest", &config, &log));
        send(a, &drop, "after-kill", Duration::ZERO, usize::MAX);
        drained(&drop, "A resent after a SIGKILL mid-resend", &log);
        check.read(past_timeout, &log).await;
        // 4. A graceful restart, then both studies again.
        worker.interrupt();
        let worker = Running::new(start_worker("ingest", &config, &log));
        send(a, &drop, "after-restart", Duration::ZERO, usize::MAX);
        send(b, &drop, "after-restart", Duration::ZERO, usize::MAX);
        drained(&drop, "both resent after a restart", &log);
        check.read(past_timeout, &log).await;
        worker.interrupt();

        // One identity per lesion: every repeat was identical (same revision, same inputs).
        assert_eq!(
            check.seen.len(),
            2,
            "cases other than one identical (lesion, revision, inputs) each: {:?}",
            check.seen
        );
        assert!(check.seen.keys().all(|k| k.1 == 1), "no new revision from a resend: {:?}", check.seen);
    });
    let rejected = files_under(&dir.path().join("drop/MAY/.rejected"), None);
    assert!(rejected.is_empty(), "nothing rejected: {rejected:?}");
}
