//! Helpers for end-to-end tests: the `renal` binary and independent DICOM tools.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

/// Path of the `renal` binary, built once per test process with the same profile as the tests.
pub fn renal_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("RENAL_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-binary> -> target/<profile>/renal
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The same selection as scripts/test.sh's build, so features unify the same way and the
        // binary (and its dependencies) it already built are reused, not rebuilt. The variables
        // cargo sets for a test run are removed too: build scripts that watch one of them (ring
        // watches CARGO_MANIFEST_DIR) would otherwise see a change and rebuild half the tree.
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--profile", "test", "--workspace", "--all-targets"]);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_tests = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ];
            if set_for_tests.iter().any(|prefix| name.starts_with(prefix)) {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("run cargo build for the renal binary");
        assert!(status.success(), "building the renal binary failed");
        let bin = profile_dir.join("renal");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A deterministic three-channel `side` x `side` composite with values in 0..1 (no RNG crate
/// needed), encoded as the blob store holds composites.
pub fn test_composite(seed: u64, side: usize) -> Vec<u8> {
    let values: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000) as f32 / 1000.0)
        .collect();
    renal_imaging::composite::encode_f32_le(&values)
}

/// The de-identification secret of every `renal` the tests start.
pub const E2E_SECRET: &str = "e2e-secret";

/// The lesion id ingest gives a study of `site` with this accession number under
/// [`E2E_SECRET`] (the cohort's answer key names lesions by accession number).
pub fn lesion_id(site: &str, accession: &str) -> String {
    renal_base::keys::Keys::new(E2E_SECRET.as_bytes()).lesion_id(site, accession)
}

/// The lesion ids of a `renal synth` cohort's `labels.csv`, in its row order.
pub fn labelled_ids(labels_csv: &Path) -> Vec<String> {
    let mut labels = csv::Reader::from_path(labels_csv).unwrap();
    let h = labels.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (site, accession) = (col("site"), col("accession"));
    labels.records().map(|r| r.unwrap()).map(|r| lesion_id(&r[site], &r[accession])).collect()
}

/// Run `renal` with arguments (under [`E2E_SECRET`]); returns the whole output.
pub fn renal(args: &[&str]) -> Output {
    Command::new(renal_bin()).args(args).env("RENAL_PSEUDONYM_SECRET", E2E_SECRET).output().expect("spawn renal")
}

/// Run `renal` with arguments, failing the test with its output unless it succeeds; returns
/// its standard output.
pub fn renal_ok(args: &[&str]) -> String {
    let out = renal(args);
    assert!(
        out.status.success(),
        "renal {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Fail with a helpful message when an external tool is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "{name} is not installed; scripts/setup.sh installs it (Debian packages dcmtk and dcm2niix)"
    );
}

/// One attribute line of `dcmdump` output, in document order (nested items included).
#[derive(Debug, Clone)]
pub struct DumpLine {
    /// `gggg,eeee`, lower case.
    pub tag: String,
    /// Nesting depth (0 = top-level data set).
    pub depth: usize,
    /// The value between brackets, or the raw text after the VR.
    pub value: String,
}

/// `dcmdump` a file and return its attribute lines.
pub fn dcmdump(path: &Path) -> Vec<DumpLine> {
    let out = Command::new("dcmdump").args(["-q", "+L", "-Un"]).arg(path).output().expect("spawn dcmdump");
    assert!(out.status.success(), "dcmdump {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    parse_dump(&String::from_utf8_lossy(&out.stdout))
}

/// Parse dcmdump's text format.
pub fn parse_dump(text: &str) -> Vec<DumpLine> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let trimmed = raw.trim_start();
        if !trimmed.starts_with('(') || trimmed.len() < 12 {
            continue;
        }
        let depth = (raw.len() - trimmed.len()) / 2;
        let tag = trimmed[1..10].to_lowercase();
        let rest = &trimmed[11..];
        let value = match (rest.find('['), rest.rfind(']')) {
            (Some(a), Some(b)) if b > a => rest[a + 1..b].to_string(),
            // Unbracketed (binary) values follow the two-letter VR.
            _ => rest.get(3..).unwrap_or("").split('#').next().unwrap_or("").trim().to_string(),
        };
        lines.push(DumpLine { tag, depth, value });
    }
    lines
}

/// Top-level attributes of a dump as a map.
pub fn top_level(lines: &[DumpLine]) -> HashMap<String, String> {
    lines.iter().filter(|l| l.depth == 0).map(|l| (l.tag.clone(), l.value.clone())).collect()
}

/// Parse a backslash-separated decimal string.
pub fn decimals(v: &str) -> Vec<f64> {
    v.split('\\').map(|x| x.trim().parse::<f64>().unwrap_or_else(|_| panic!("not a number: {x:?}"))).collect()
}

/// Validate `value` against a JSON Schema (draft 2020-12, the `jsonschema` crate); returns
/// every violation with where in `value` it is. Panics on a schema that is not valid itself.
pub fn validate_schema(schema: &serde_json::Value, value: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("not a valid JSON Schema: {e}"));
    validator.iter_errors(value).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// A Kafka-protocol broker for one test process: `KAFKA_BOOTSTRAP` when set (the test script
/// starts one), otherwise a private tansu on a free loopback port, stopped on drop.
pub struct Broker {
    /// `127.0.0.1:port`.
    pub bootstrap: String,
    child: Option<std::process::Child>,
    dir: Option<tempfile::TempDir>,
}

fn tansu_bin() -> PathBuf {
    let home = std::env::var("TANSU_HOME")
        .unwrap_or_else(|_| format!("{}/.cache/tansu-0.6.0", std::env::var("HOME").unwrap_or_else(|_| "/root".into())));
    let bin = Path::new(&home).join("bin/tansu");
    assert!(
        bin.exists(),
        "no Kafka broker: set KAFKA_BOOTSTRAP or run scripts/install-tansu.sh (scripts/test.sh does both)"
    );
    bin
}

/// Start tansu listening on `bootstrap` with its SQLite storage in `dir` (kept across restarts).
fn spawn_tansu(bootstrap: &str, dir: &Path) -> std::process::Child {
    let url = format!("tcp://{bootstrap}");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tansu.log")).unwrap();
    let child = Command::new(tansu_bin())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start tansu");
    wait_for_listener(bootstrap, 20, "tansu");
    child
}

impl Broker {
    /// Connect to or start a broker; panics with the fix when none can be had.
    pub fn start() -> Broker {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Broker { bootstrap: b, child: None, dir: None };
        }
        Broker::start_private()
    }

    /// A private tansu even when `KAFKA_BOOTSTRAP` is set: for tests that stop and restart it.
    pub fn start_private() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = format!("127.0.0.1:{}", free_port());
        let child = spawn_tansu(&bootstrap, dir.path());
        Broker { bootstrap, child: Some(child), dir: Some(dir) }
    }

    /// Kill the broker (SIGKILL: no goodbye to its clients), keeping its storage.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("a private broker that is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start the stopped broker again on the same port and storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let dir = self.dir.as_ref().expect("a private broker").path();
        self.child = Some(spawn_tansu(&self.bootstrap, dir));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed test shows what a private broker said last (its folder goes with it).
        if let (true, Some(dir)) = (std::thread::panicking(), &self.dir) {
            let log = dir.path().join("tansu.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let plain = strip_ansi(&text);
            let lines: Vec<&str> = plain
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
                .collect();
            let start = lines.len().saturating_sub(20).max(10);
            eprintln!("--- tansu: the first 10 and last 20 of its {} warning and error lines ---", lines.len());
            eprintln!("{}", lines[..lines.len().min(10)].join("\n"));
            eprintln!("{}", lines.get(start..).unwrap_or_default().join("\n"));
        }
    }
}

/// `text` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until something accepts connections on `addr`; fail the test after `seconds`.
pub fn wait_for_listener(addr: &str, seconds: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not open {addr} within {seconds} s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The test suite's Python environment (scripts/python-env.sh builds it).
pub fn venv_bin(program: &str) -> PathBuf {
    venv_program("RENAL_VENV", "venv", program)
}

/// A program in the drift venv (NannyML, Evidently; `$RENAL_DRIFT_VENV`, installed by
/// scripts/python-env.sh).
pub fn drift_venv_bin(program: &str) -> PathBuf {
    venv_program("RENAL_DRIFT_VENV", "drift-venv", program)
}

fn venv_program(var: &str, default: &str, program: &str) -> PathBuf {
    let venv = std::env::var(var).unwrap_or_else(|_| {
        format!("{}/.cache/renal-mri/{default}", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
    });
    let bin = Path::new(&venv).join("bin").join(program);
    assert!(bin.exists(), "{} missing: run scripts/python-env.sh (scripts/test.sh does)", bin.display());
    bin
}

/// An S3-compatible server (moto) on a free loopback port, stopped on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    /// Start `moto_server` and wait until it answers.
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let addr = format!("127.0.0.1:{port}");
        wait_for_listener(&addr, 30, "moto_server");
        S3Server { endpoint: format!("http://{addr}"), child }
    }

    /// Run a Python snippet with `s3`, a boto3 client for this server, in scope; its stdout.
    pub fn boto3(&self, code: &str) -> String {
        let program = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.endpoint
        );
        let out = Command::new(venv_bin("python")).args(["-c", &program]).output().expect("run python");
        assert!(out.status.success(), "boto3 snippet failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `root` with extension `ext` (any extension when `None`), recursively,
/// skipping hidden entries; sorted (the ingest worker's own walk).
pub fn files_under(root: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    renal_ingest::drop_folder::list_files(root)
        .into_iter()
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect()
}

/// Put the patient folder `from` into the drop folder `drop` as a careful sender does (under a
/// hidden name, renamed into place when complete): the pipeline bench's own way.
pub fn drop_patient(from: &Path, drop: &Path) {
    renal_bench::drop_patient(from, drop).unwrap();
}

/// The end of a worker log for a failure message: its last `lines` lines, leaving out
/// librdkafka's connection failures (a broker outage writes hundreds), and how many it left out.
/// A failing test's message is cut after its beginning in CI summaries, so put this first.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (noise, kept): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.contains("Connection refused") || l.contains("Disconnected"));
    let start = kept.len().saturating_sub(lines);
    format!(
        "--- {}: last {} of {} lines ({} connection-failure lines left out) ---\n{}",
        path.display(),
        kept.len() - start,
        kept.len(),
        noise.len(),
        kept[start..].join("\n")
    )
}

/// An ensemble bundle's content fitted on 80 synthetic lesions whose three base outputs carry
/// the label with noise, pinned to CNN bundle `cnn_version`; its fill is age 58, male.
pub fn fitted_ensemble(cnn_version: &str) -> renal_ensemble::bundle::Content {
    renal_bench::fitted_ensemble(cnn_version).unwrap()
}

/// Stop a worker as an operator would (SIGINT) and check it exits cleanly.
pub fn interrupt(mut worker: Child) {
    Command::new("kill").args(["-INT", &worker.id().to_string()]).status().unwrap();
    let status = worker.wait().unwrap();
    assert!(status.success(), "worker exit {status:?}");
}

/// A worker process that is killed if the test fails before [`Running::interrupt`] stops it,
/// as [`Broker`] and [`Prometheus`] are.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(worker: Child) -> Running {
        Running(Some(worker))
    }

    /// Kill it with SIGKILL (a crash: nothing flushed, nothing closed) and reap it.
    pub fn kill(mut self) {
        let mut c = self.0.take().expect("a running worker");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Stop it as [`interrupt`] does: SIGINT, and a clean exit asserted.
    pub fn interrupt(mut self) {
        interrupt(self.0.take().expect("a running worker"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A synthetic lesion: an ellipsoid of `semi_axes_mm` centred in a `dims` grid of `spacing`
/// (origin and axes fixed), intensities a ramp, a ripple and seeded uniform noise.
pub fn synthetic_lesion(
    dims: [usize; 3],
    spacing: [f64; 3],
    semi_axes_mm: [f64; 3],
    seed: u64,
) -> (renal_imaging::Volume<f32>, renal_imaging::Volume<u8>) {
    let g = renal_imaging::Geometry {
        dims,
        spacing_mm: spacing,
        origin_mm: [-20.0, 12.5, 40.0],
        row_dir: [1.0, 0.0, 0.0],
        col_dir: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, 1.0],
    };
    let centre: [f64; 3] = std::array::from_fn(|a| (dims[a] as f64 - 1.0) * spacing[a] / 2.0);
    let mut state = seed | 1;
    let (mut img, mut msk) = (Vec::new(), Vec::new());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = [i as f64 * spacing[0], j as f64 * spacing[1], k as f64 * spacing[2]];
                let d: f64 = (0..3).map(|a| ((p[a] - centre[a]) / semi_axes_mm[a]).powi(2)).sum();
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                let v = 300.0 + 4.0 * p[0] + 60.0 * (0.4 * p[1]).sin() * (0.3 * p[2]).cos() + 40.0 * noise;
                img.push(v as f32);
                msk.push(u8::from(d <= 1.0));
            }
        }
    }
    (renal_imaging::Volume { geometry: g.clone(), data: img }, renal_imaging::Volume { geometry: g, data: msk })
}

/// A series as preprocessing stores it: image and mask as NIfTI blobs, and the volume bundle
/// naming them; returns the bundle's reference.
pub fn put_series(
    store: &dyn renal_store::BlobStore,
    image: &renal_imaging::Volume<f32>,
    mask: &renal_imaging::Volume<u8>,
) -> renal_messages::BlobRef {
    use renal_imaging::nifti;
    let blobs = renal_messages::VolumeBlobs {
        image: store.put(&nifti::encode_gz(image, "image")).unwrap(),
        mask: store.put(&nifti::encode_gz(mask, "mask")).unwrap(),
    };
    store.put(&serde_json::to_vec(&blobs).unwrap()).unwrap()
}

/// A volume and mask as they come back from NIfTI (grids are stored in float32).
pub fn as_stored(
    image: &renal_imaging::Volume<f32>,
    mask: &renal_imaging::Volume<u8>,
) -> (renal_imaging::Volume<f32>, renal_imaging::Volume<u8>) {
    use renal_imaging::nifti;
    let back = |bytes: Vec<u8>| nifti::decode(&bytes).unwrap().volume;
    let m = back(nifti::encode_gz(mask, "mask"));
    (back(nifti::encode_gz(image, "image")), m.to_mask())
}

/// A `renal.lesions` message for two stored series (T2, T1C bundles); the other fields are
/// placeholders.
pub fn lesion_with_volumes(
    case_id: &str,
    site: &str,
    volumes: [renal_messages::BlobRef; 2],
) -> renal_messages::LesionV1 {
    use renal_messages::{Clinical, LesionQc, LesionV1, Provenance};
    LesionV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: site.into(),
        patient_pseudonym: "pseudonym-never-exported".into(),
        clinical: Clinical { age_years: Some(60), sex: None },
        tumour_volume_ml: 1.0,
        composites: [volumes[0].clone(), volumes[1].clone()],
        volumes,
        qc: LesionQc { mask_voxels: [1, 1], n4_cv_before_after: [0.2, 0.1], reader_dice: vec![] },
        other_readers: Vec::new(),
        provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
    }
}

/// Start `renal worker NAME --config CONFIG`, its stderr appended to `log` (so a restarted
/// worker's lines follow the first run's). The ingest workers' pseudonym secret is set.
pub fn start_worker(name: &str, config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(renal_bin())
        .args(["worker", name, "--config", config.to_str().unwrap()])
        .env("RENAL_PSEUDONYM_SECRET", E2E_SECRET)
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("start renal worker {name}: {e}"))
}

/// A CNN bundle of two random-initialised ResNet-18s (seeded) at `input_px`, saved to
/// `registry`: what the inference stage serves when a test is about wiring, not accuracy.
pub fn random_cnn_bundle(registry: &Path, input_px: i64, seed: i64) -> renal_cnn::bundle::Manifest {
    use renal_cnn::net::{Backbone, Head, NetConfig};
    let net = NetConfig { backbone: Backbone::Resnet18, head: Head::Plain, input_px };
    renal_bench::random_cnn_bundle(registry, net, seed, "2026-11-29T00:00:00Z").unwrap()
}

/// Status and body of an HTTP/1.0 GET to `addr` (the workers' and Prometheus' endpoints).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap_or_default();
    let status = text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// A real Prometheus (Debian's `prometheus`, installed by scripts/setup.sh) on a free loopback
/// port, scraping `targets` (job name, `host:port`) every second, with the deployment's alert
/// rules loaded; stopped when dropped.
pub struct Prometheus {
    /// `127.0.0.1:port` of its HTTP API.
    pub addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start it and wait until it answers.
    pub fn start(targets: &[(&str, String)]) -> Prometheus {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml");
        Prometheus::start_with_rules(targets, &[rules.canonicalize().unwrap()])
    }

    /// Start it with these rule files instead of the workers' alert rules.
    pub fn start_with_rules(targets: &[(&str, String)], rules: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n");
        for r in rules {
            config.push_str(&format!("  - {}\n", r.display()));
        }
        config.push_str("scrape_configs:\n");
        for (job, target) in targets {
            config.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/setup.sh installs Debian's package)");
        let started = std::time::Instant::now();
        while http_get(&addr, "/-/ready").0 != 200 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "prometheus did not start:\n{}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Prometheus { addr, child, _dir: dir }
    }

    /// The result vector of an instant PromQL query (Prometheus' HTTP API).
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={encoded}"));
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signals an alert expression compares with thresholds: each side of `and`/`or`/`unless`
/// without its trailing comparison with a number (`up == 0` -> `up`).
pub fn alert_signals(expr: &str) -> Vec<String> {
    expr.split(" and ").flat_map(|p| p.split(" or ")).flat_map(|p| p.split(" unless ")).map(without_threshold).collect()
}

/// `signal OP number` -> `signal`, for OP one of == != >= <= > <.
fn without_threshold(part: &str) -> String {
    let part = part.trim();
    for op in ["==", "!=", ">=", "<=", ">", "<"] {
        if let Some((left, right)) = part.rsplit_once(&format!(" {op} ")) {
            if right.trim().parse::<f64>().is_ok() {
                return left.trim().to_string();
            }
        }
    }
    part.to_string()
}

/// Every `expr:` of the deployment's alert rules (one line each, as the file promises).
pub fn alert_expressions() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml")).unwrap();
    text.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_string).collect()
}

/// Every PromQL expression of one of the deployment's Grafana dashboards (`pipeline.json`,
/// `monitor.json`), with the panel's title, Grafana's variables given values:
/// `$__rate_interval` as 1m, `$site` as every site. `tests/pipeline_observed.rs` runs the
/// pipeline's against a real Prometheus, `tests/monitor_drift.rs` the monitor's.
pub fn dashboard_queries(file: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards").join(file);
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$site", ".*");
            assert!(!expr.contains('$'), "an unhandled variable in {expr}");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(!out.is_empty(), "{file} has no queries");
    out
}

/// The dashboards whose queries a test runs against a real Prometheus (see [`dashboard_queries`]).
pub const QUERIED_DASHBOARDS: [&str; 2] = ["monitor.json", "pipeline.json"];

/// `renal synth` a one-site cohort of `lesions` single-lesion patients into `out`; returns the
/// lesion ids ingest will give them.
pub fn synth_one_site(out: &Path, site: &str, lesions: usize, seed: u64) -> std::collections::BTreeSet<String> {
    let (n, seed) = (lesions.to_string(), seed.to_string());
    let args = ["synth", "--out", out.to_str().unwrap(), "--lesions", &n, "--sites", site, "--seed", &seed];
    let synth = renal(&[&args[..], &["--second-lesion-probability", "0"]].concat());
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let ids: std::collections::BTreeSet<String> = labelled_ids(&out.join("labels.csv")).into_iter().collect();
    assert_eq!(ids.len(), lesions);
    ids
}

/// Send a folder to a C-STORE receiver on loopback with DCMTK's `storescu` as `called_ae`,
/// retrying while the receiver is not up yet, as scanners do.
pub fn storescu(called_ae: &str, port: u16, folder: &Path) {
    let mut tries = 0;
    while !Command::new("storescu")
        .args(["-aec", called_ae, "-R", "+sd", "+r", "-xs", "127.0.0.1", &port.to_string()])
        .arg(folder)
        .output()
        .expect("storescu (scripts/setup.sh installs dcmtk)")
        .status
        .success()
    {
        tries += 1;
        assert!(tries < 100, "storescu kept failing");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A case-mix shift on an embedded run (`recalibration.rs`, `trainer_kafka.rs`): a 120-lesion
/// synthetic cohort of two sites whose labels, when `renal run` trains the champion (small
/// networks, one split), are a surveillance clinic's: every benign lesion of the first 70 rows
/// but three confirmed by pathology, and 60% as many malignant ones. The labels that come
/// `later` are referrals': every malignant lesion of the other rows, their benign ones
/// confirmed by pathology, the three kept back, and two benign by imaging.
pub struct CaseMixShift {
    /// The cohort `renal synth` wrote (its `labels.csv` holds the first labels only).
    pub cohort: PathBuf,
    /// The run's output folder (the champion promoted in its registry).
    pub run: PathBuf,
    /// The labels CSV's header.
    pub header: String,
    /// The rows known when the champion was trained.
    pub first: Vec<Vec<String>>,
    /// The rows that arrive later.
    pub later: Vec<Vec<String>>,
    /// The `site` and `accession` columns (the rows' lesion ids are [`lesion_id`] of them).
    pub key: (usize, usize),
}

/// The `renal run` flags of [`case_mix_shift`]'s small networks.
pub const SMALL_NETWORKS: [&str; 4] = ["--input-px", "32", "--epochs", "2"];

/// Synthesise the cohort under `root`, keep its first labels, and train the champion.
pub fn case_mix_shift(root: &Path) -> CaseMixShift {
    let (cohort, run) = (root.join("cohort"), root.join("run"));
    renal_ok(&["synth", "--out", cohort.to_str().unwrap(), "--lesions", "120", "--sites", "HUP,MAY", "--seed", "8"]);
    let labels = std::fs::read_to_string(cohort.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    let header = lines.next().unwrap().to_string();
    let h: Vec<&str> = header.split(',').collect();
    let col = |name: &str| h.iter().position(|c| *c == name).unwrap();
    let (label, source, key) = (col("label"), col("diagnosis_source"), (col("site"), col("accession")));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    let benign = |r: &&Vec<String>| r[label] == "benign";
    let confirmed = |r: &&&Vec<String>| r[source] == "histopathology";
    let (early, late) = rows.split_at(70);
    let early_benign: Vec<&Vec<String>> = early.iter().filter(benign).collect();
    // Three of the early benign lesions confirmed by pathology are kept back for later, so the
    // held-out half of the later labels has benign lesions to rank (a stratified half of the
    // late ones alone holds one or two).
    let kept_back: Vec<&Vec<String>> = early_benign.iter().filter(confirmed).take(3).copied().collect();
    let first: Vec<Vec<String>> = early_benign
        .iter()
        .copied()
        .filter(|r| !kept_back.contains(r))
        .chain(early.iter().filter(|r| !benign(r)).take(early_benign.len() * 6 / 10))
        .cloned()
        .collect();
    let late_benign: Vec<&Vec<String>> = late.iter().filter(benign).collect();
    let later: Vec<Vec<String>> = late
        .iter()
        .filter(|r| !benign(r))
        .chain(late_benign.iter().filter(confirmed).copied())
        .chain(kept_back.iter().copied())
        .chain(late_benign.iter().copied().filter(|r| r[source] != "histopathology").take(2))
        .cloned()
        .collect();
    let shift = CaseMixShift { cohort, run, header, first, later, key };
    std::fs::write(shift.cohort.join("labels.csv"), shift.csv(&shift.first)).unwrap();
    let (input, out) = (shift.cohort.to_str().unwrap(), shift.run.to_str().unwrap());
    let mut args = vec!["run", "--input", input, "--out", out, "--protocol", "split"];
    args.extend(SMALL_NETWORKS);
    assert!(renal_ok(&args).contains("registered and promoted"));
    shift
}

impl CaseMixShift {
    /// `rows` as a labels CSV.
    pub fn csv(&self, rows: &[Vec<String>]) -> String {
        std::iter::once(self.header.clone()).chain(rows.iter().map(|r| r.join(","))).collect::<Vec<_>>().join("\n")
            + "\n"
    }

    /// The lesion ids of `rows`.
    pub fn ids(&self, rows: &[Vec<String>]) -> std::collections::BTreeSet<String> {
        rows.iter().map(|r| lesion_id(&r[self.key.0], &r[self.key.1])).collect()
    }

    /// The version the run's registry promotes for the default deployment.
    pub fn promoted(&self) -> String {
        let text = std::fs::read_to_string(self.run.join("models/promoted/default.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["version"].as_str().unwrap().to_string()
    }
}

/// Read predictions from `out` until `got` holds `until` of them (two minutes at most for each).
pub async fn receive_predictions(
    out: &mut impl renal_bus::Consumer,
    got: &mut Vec<renal_messages::PredictionV1>,
    until: usize,
) {
    use renal_messages::Message;
    while got.len() < until {
        let r =
            tokio::time::timeout(std::time::Duration::from_secs(120), out.recv()).await.expect("predictions").unwrap();
        got.push(renal_messages::PredictionV1::decode(&r.payload).unwrap());
    }
}
