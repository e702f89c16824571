//! What every worker exposes to Prometheus, and its health endpoints.
//!
//! One registry per process ([`registry`]); each stage's loop updates its [`StageMetrics`]; a
//! worker started with a `metrics_addr` answers on it ([`serve`]):
//!
//! * `GET /metrics`: the registry in Prometheus' text format;
//! * `GET /healthz`: 200 while the process runs;
//! * `GET /readyz`: 200 when every component that reports readiness ([`set_ready`]) is ready,
//!   503 naming the others (the stage loop reports the bus: not ready until its first read,
//!   and while reads or commits fail; the blob store reports itself: not ready while its
//!   reads or writes fail).
//!
//! Label values come from bounded sets (stage, site, outcome, dead-letter reason code, topic,
//! partition, device, operation, version, commit), never from a message: no UID, lesion id or
//! path reaches a label.
//!
//! What happens in a worker is an event ([`InternalEvent`]): each stage crate's `events` module
//! defines its events, and each event's `emit` writes its log line and updates its metrics in
//! one place, so a log line and the counter that counts it cannot drift apart.
//!
//! Logs are `tracing` events, written to stderr by [`init_logs`]: human-readable or one JSON
//! object per line, the level from `RUST_LOG` (default `info`). Events name the stage, topic,
//! partition and offset of a message, never its key or content (the key is a lesion id, a keyed
//! pseudonym since de-identification, but a log has no need of it).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Something that happened in a worker: emitting it logs it and counts it.
pub trait InternalEvent {
    /// Write the event's log line (if any) and update its metrics.
    fn emit(self);
}

/// Emit `event`.
pub fn emit(event: impl InternalEvent) {
    event.emit();
}
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

/// The process's registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> =
        LazyLock::new(|| Registry::new_custom(Some("renal".into()), None).expect("a valid prefix"));
    &REGISTRY
}

/// A counter family registered in the process's registry (each name once).
fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry().register(Box::new(c.clone())).expect("registered once");
    c
}

/// A histogram family registered in the process's registry.
fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    registry().register(Box::new(h.clone())).expect("registered once");
    h
}

/// A gauge family registered in the process's registry.
fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry().register(Box::new(g.clone())).expect("registered once");
    g
}

/// A floating-point gauge family registered in the process's registry.
fn float_gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry().register(Box::new(g.clone())).expect("registered once");
    g
}

/// Seconds from 1 ms to about 65 s, doubling: processing-time histograms.
fn seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 17).expect("valid buckets")
}

/// Seconds from 1 ms to about 4.7 hours, doubling: time a message waits between two stages,
/// which includes a backlog's queueing when a whole cohort arrives at once (minutes).
fn queueing_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 25).expect("valid buckets")
}

/// The metrics a stage loop updates, shared by every stage of the process (labelled by stage).
pub struct StageMetrics {
    /// `renal_stage_messages_total{stage, outcome}`: inputs done (outputs delivered), rejected
    /// (dead-lettered) and retried (processed again after a transient failure).
    pub messages: IntCounterVec,
    /// `renal_stage_outputs_total{stage, topic}`: messages delivered downstream.
    pub outputs: IntCounterVec,
    /// `renal_dead_letters_total{stage, reason}`: dead letters by reason code.
    pub dead_letters: IntCounterVec,
    /// `renal_stage_processing_seconds{stage}`: time in the stage's processing step per call.
    pub processing: HistogramVec,
    /// `renal_bus_errors_total{stage, operation}`: transient bus failures (read, send, commit).
    pub bus_errors: IntCounterVec,
    /// `renal_hop_latency_seconds{stage, topic}`: from a message's production (the broker's
    /// create time) to the stage reading it: what the bus and the stage's queue add per hop.
    pub hop_latency: HistogramVec,
    /// `renal_consumer_lag{group, topic, partition}`: messages in a partition the group has
    /// not yet stored an offset past (librdkafka's statistics; Kafka workers only).
    pub consumer_lag: IntGaugeVec,
}

/// The stage metrics, registered on first use.
pub fn stage_metrics() -> &'static StageMetrics {
    static METRICS: LazyLock<StageMetrics> = LazyLock::new(|| StageMetrics {
        messages: counter(
            "stage_messages_total",
            "Inputs by outcome: done (outputs delivered), rejected (dead-lettered), retried.",
            &["stage", "outcome"],
        ),
        outputs: counter("stage_outputs_total", "Messages delivered downstream, by topic.", &["stage", "topic"]),
        dead_letters: counter("dead_letters_total", "Dead letters by reason code.", &["stage", "reason"]),
        processing: histogram(
            "stage_processing_seconds",
            "Time in the stage's processing step per call.",
            &["stage"],
            seconds_buckets(),
        ),
        bus_errors: counter(
            "bus_errors_total",
            "Transient bus failures, retried with back-off.",
            &["stage", "operation"],
        ),
        hop_latency: histogram(
            "hop_latency_seconds",
            "From a message's production to the stage reading it, by stage and input topic.",
            &["stage", "topic"],
            queueing_buckets(),
        ),
        consumer_lag: gauge(
            "consumer_lag",
            "Messages not yet consumed, per consumer group, topic and partition.",
            &["group", "topic", "partition"],
        ),
    });
    &METRICS
}

/// What ingest counts besides the stage metrics (it reads drop folders, not a topic).
pub struct IngestMetrics {
    /// `renal_ingest_instances_total{site, outcome}`: DICOM files taken in (`new`), seen before
    /// (`duplicate`) or dead-lettered (`rejected`).
    pub instances: IntCounterVec,
    /// `renal_ingest_cases_total{site}`: cases emitted on `renal.cases`.
    pub cases: IntCounterVec,
    /// `renal_cstore_associations_total{site, outcome}`: C-STORE associations ended, `ok`,
    /// `failed` (aborted, malformed PDUs, a store that failed), `refused` (an AE title not
    /// allowed) or `busy` (over the receiver's limit).
    pub associations: IntCounterVec,
}

/// The ingest metrics, registered on first use.
pub fn ingest_metrics() -> &'static IngestMetrics {
    static METRICS: LazyLock<IngestMetrics> = LazyLock::new(|| IngestMetrics {
        instances: counter(
            "ingest_instances_total",
            "DICOM files by site and outcome (new, duplicate, rejected).",
            &["site", "outcome"],
        ),
        cases: counter("ingest_cases_total", "Cases emitted on renal.cases, by site.", &["site"]),
        associations: counter(
            "cstore_associations_total",
            "C-STORE associations ended, by site and outcome (ok, failed, refused, busy).",
            &["site", "outcome"],
        ),
    });
    &METRICS
}

/// What the inference and ensemble stages and the blob store count.
pub struct PipelineMetrics {
    /// `renal_inference_batch_size{device}`: lesions per call of the networks.
    pub batch_size: HistogramVec,
    /// `renal_pipeline_latency_seconds{site}`: from a lesion's first DICOM instance reaching
    /// ingest to its prediction leaving the ensemble.
    pub latency: HistogramVec,
    /// `renal_blob_bytes_total{operation}`: bytes read from and written to the blob store.
    pub blob_bytes: IntCounterVec,
}

/// The pipeline metrics, registered on first use.
pub fn pipeline_metrics() -> &'static PipelineMetrics {
    static METRICS: LazyLock<PipelineMetrics> = LazyLock::new(|| PipelineMetrics {
        batch_size: histogram(
            "inference_batch_size",
            "Lesions per call of the networks, by device.",
            &["device"],
            prometheus::exponential_buckets(1.0, 2.0, 8).expect("valid buckets"),
        ),
        latency: histogram(
            "pipeline_latency_seconds",
            "From a lesion's first instance reaching ingest to its prediction, by site.",
            &["site"],
            prometheus::exponential_buckets(0.25, 2.0, 14).expect("valid buckets"),
        ),
        blob_bytes: counter("blob_bytes_total", "Bytes read from and written to the blob store.", &["operation"]),
    });
    &METRICS
}

/// What the monitor reports: drift of the score signals per site and scanner, a summary of the
/// watched features' drift, and calibration and performance per site. Feature names never
/// become labels (there are thousands); the `drift` table holds them.
pub struct MonitorMetrics {
    /// `renal_drift_psi{site, scanner, signal}`: PSI of the latest window of a score signal
    /// (`ensemble`, `t2`, `t1c`).
    pub psi: GaugeVec,
    /// `renal_drift_ks{site, scanner, signal}`: its Kolmogorov–Smirnov statistic.
    pub ks: GaugeVec,
    /// `renal_drift_ks_p{site, scanner, signal}`: the KS test's P value.
    pub ks_p: GaugeVec,
    /// `renal_drift_wasserstein{site, scanner, signal}`: its Wasserstein-1 distance.
    pub wasserstein: GaugeVec,
    /// `renal_drift_window_lesions{site, scanner, signal}`: lesions in that window.
    pub window: GaugeVec,
    /// `renal_drift_features_drifted_ratio{site, scanner}`: share of the watched radiomics
    /// features whose latest window's KS P value is below 0.01.
    pub features_drifted: GaugeVec,
    /// `renal_drift_features_max_psi{site, scanner}`: the largest PSI among them.
    pub features_max_psi: GaugeVec,
    /// `renal_calibration_ece{site}`: expected calibration error of the latest labelled window.
    pub ece: GaugeVec,
    /// `renal_calibration_ece_p{site}`: the ECE's P value were the probabilities calibrated.
    pub ece_p: GaugeVec,
    /// `renal_calibration_brier{site}`: its Brier score.
    pub brier: GaugeVec,
    /// `renal_realised_roc_auc{site}`: its ROC AUC.
    pub roc_auc: GaugeVec,
    /// `renal_realised_accuracy{site}`: its accuracy at the served threshold.
    pub accuracy: GaugeVec,
    /// `renal_calibration_labelled_lesions{site}`: labelled lesions in that window.
    pub labelled: GaugeVec,
    /// `renal_expected_accuracy{site}`: CBPE's expected accuracy of the site's predictions
    /// still without a label.
    pub expected_accuracy: GaugeVec,
    /// `renal_expected_roc_auc{site}`: CBPE's expected ROC AUC of those.
    pub expected_roc_auc: GaugeVec,
    /// `renal_cbpe_error{site}`: CBPE's expected accuracy of the labelled window minus its
    /// realised accuracy.
    pub cbpe_error: GaugeVec,
    /// `renal_monitor_observations_total{kind}`: observations taken in (case, values,
    /// prediction, label, dead_letter).
    pub observations: IntCounterVec,
    /// `renal_monitor_dead_letters_seen_total{stage, reason}`: dead letters of every stage,
    /// as the monitor read them off their topics.
    pub dead_letters_seen: IntCounterVec,
}

/// The monitor metrics, registered on first use.
pub fn monitor_metrics() -> &'static MonitorMetrics {
    static METRICS: LazyLock<MonitorMetrics> = LazyLock::new(|| {
        let signal = ["site", "scanner", "signal"];
        MonitorMetrics {
            psi: float_gauge("drift_psi", "PSI of the latest window of a score signal.", &signal),
            ks: float_gauge("drift_ks", "Kolmogorov-Smirnov statistic of the latest window.", &signal),
            ks_p: float_gauge("drift_ks_p", "Two-sided KS P value of the latest window.", &signal),
            wasserstein: float_gauge("drift_wasserstein", "Wasserstein-1 distance of the latest window.", &signal),
            window: float_gauge("drift_window_lesions", "Lesions in the latest window.", &signal),
            features_drifted: float_gauge(
                "drift_features_drifted_ratio",
                "Share of watched radiomics features whose latest window has KS P < 0.01.",
                &["site", "scanner"],
            ),
            features_max_psi: float_gauge(
                "drift_features_max_psi",
                "Largest PSI among the watched radiomics features' latest windows.",
                &["site", "scanner"],
            ),
            ece: float_gauge("calibration_ece", "Expected calibration error of the latest labelled window.", &["site"]),
            ece_p: float_gauge(
                "calibration_ece_p",
                "P value of that ECE were the probabilities calibrated (consistency resampling).",
                &["site"],
            ),
            brier: float_gauge("calibration_brier", "Brier score of the latest labelled window.", &["site"]),
            roc_auc: float_gauge("realised_roc_auc", "ROC AUC of the latest labelled window.", &["site"]),
            accuracy: float_gauge("realised_accuracy", "Accuracy of the latest labelled window.", &["site"]),
            labelled: float_gauge(
                "calibration_labelled_lesions",
                "Labelled lesions in the latest calibration window.",
                &["site"],
            ),
            expected_accuracy: float_gauge(
                "expected_accuracy",
                "CBPE expected accuracy of predictions still without a label.",
                &["site"],
            ),
            expected_roc_auc: float_gauge(
                "expected_roc_auc",
                "CBPE expected ROC AUC of predictions still without a label.",
                &["site"],
            ),
            cbpe_error: float_gauge(
                "cbpe_error",
                "CBPE expected minus realised accuracy on the latest labelled window.",
                &["site"],
            ),
            observations: counter("monitor_observations_total", "Observations taken in, by kind.", &["kind"]),
            dead_letters_seen: counter(
                "monitor_dead_letters_seen_total",
                "Dead letters read off every stage's dead-letter topic, by stage and reason.",
                &["stage", "reason"],
            ),
        }
    });
    &METRICS
}

/// What the trainer worker reports.
pub struct TrainerMetrics {
    /// `renal_trainer_retrains_total{retrain, outcome}`: retrains finished, by what was
    /// retrained (`full`, `recalibrate`) and how they ended (`promoted`, `rejected`, `unchanged`,
    /// `failed`).
    pub retrains: IntCounterVec,
    /// `renal_trainer_retrain_seconds{retrain}`: how long a retrain took.
    pub seconds: HistogramVec,
    /// `renal_trainer_known{kind}`: lesions (`lesions`) and labels (`labels`) the trainer holds,
    /// and labels since the last retrain (`labels_since_retrain`).
    pub known: IntGaugeVec,
}

/// The trainer metrics, registered on first use.
pub fn trainer_metrics() -> &'static TrainerMetrics {
    static METRICS: LazyLock<TrainerMetrics> = LazyLock::new(|| TrainerMetrics {
        retrains: counter(
            "trainer_retrains_total",
            "Retrains finished, by what was retrained and how they ended (promoted, rejected, unchanged, failed).",
            &["retrain", "outcome"],
        ),
        seconds: histogram(
            "trainer_retrain_seconds",
            "Time a retrain took, by what was retrained.",
            &["retrain"],
            prometheus::exponential_buckets(0.5, 2.0, 16).expect("valid buckets"),
        ),
        known: gauge(
            "trainer_known",
            "Lesions and labels the trainer holds, and labels since its last retrain.",
            &["kind"],
        ),
    });
    &METRICS
}

/// Set `renal_build_info{version, commit} 1`.
pub fn build_info(version: &str, commit: &str) {
    static INFO: LazyLock<IntGaugeVec> =
        LazyLock::new(|| gauge("build_info", "The running build.", &["version", "commit"]));
    INFO.with_label_values(&[version, commit]).set(1);
}

/// Readiness per component.
fn readiness() -> &'static Mutex<BTreeMap<&'static str, bool>> {
    static READY: LazyLock<Mutex<BTreeMap<&'static str, bool>>> = LazyLock::new(Default::default);
    &READY
}

/// Report whether `component` (for example `bus`) is ready.
pub fn set_ready(component: &'static str, ready: bool) {
    readiness().lock().unwrap_or_else(|e| e.into_inner()).insert(component, ready);
}

/// Ready when at least one component reported and all are ready; otherwise the ones that are
/// not (or "nothing reported yet").
pub fn ready() -> Result<(), String> {
    let map = readiness().lock().unwrap_or_else(|e| e.into_inner());
    let waiting: Vec<&str> = map.iter().filter(|(_, &r)| !r).map(|(c, _)| *c).collect();
    match (map.is_empty(), waiting.is_empty()) {
        (true, _) => Err("nothing reported yet".into()),
        (false, true) => Ok(()),
        (false, false) => Err(format!("not ready: {}", waiting.join(", "))),
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event: time, level, message, fields; coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per event (for a log shipper).
    Json,
}

/// Send `tracing` events to stderr in `format`, filtered by `RUST_LOG` (default `info`). A
/// second call does nothing (the first subscriber stays).
pub fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        // Colours only on a terminal: a log file or a collector gets plain text.
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The registry in Prometheus' text format.
pub fn encode() -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry().gather(), &mut out).expect("text encoding cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Why the endpoints could not start.
#[derive(Debug)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "metrics endpoint: {}", self.0)
    }
}

impl std::error::Error for ServeError {}

/// Answer `/metrics`, `/healthz` and `/readyz` on `addr` from a background thread for the rest
/// of the process; returns the bound address (port 0 picks a free one).
pub fn serve(addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    let server = tiny_http::Server::http(addr).map_err(|e| ServeError(format!("{addr}: {e}")))?;
    let bound = server.server_addr().to_ip().ok_or_else(|| ServeError(format!("{addr}: not an IP address")))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, body, content_type) = answer(request.method(), request.url());
                let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                    .expect("a valid header");
                let response = tiny_http::Response::from_string(body).with_status_code(status).with_header(header);
                // A scraper that hung up is not the worker's problem.
                let _ = request.respond(response);
            }
        })
        .map_err(|e| ServeError(e.to_string()))?;
    Ok(bound)
}

/// Status, body and content type for a request.
fn answer(method: &tiny_http::Method, url: &str) -> (u16, String, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if *method != tiny_http::Method::Get {
        return (405, "only GET\n".into(), TEXT);
    }
    match url.split('?').next().unwrap_or("") {
        "/metrics" => (200, encode(), "text/plain; version=0.0.4; charset=utf-8"),
        "/healthz" => (200, "ok\n".into(), TEXT),
        "/readyz" => match ready() {
            Ok(()) => (200, "ready\n".into(), TEXT),
            Err(why) => (503, format!("{why}\n"), TEXT),
        },
        _ => (404, "try /metrics, /healthz or /readyz\n".into(), TEXT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    #[test]
    fn endpoints_answer_and_readiness_follows_the_components() {
        let addr = serve("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
        let (status, body) = get(addr, "/readyz");
        assert_eq!((status, body.as_str()), (503, "nothing reported yet\n"));
        set_ready("bus", false);
        assert_eq!(get(addr, "/readyz"), (503, "not ready: bus\n".into()));
        set_ready("bus", true);
        assert_eq!(get(addr, "/readyz").0, 200);
        let m = stage_metrics();
        m.messages.with_label_values(&["radiomics", "done"]).inc_by(3);
        m.dead_letters.with_label_values(&["radiomics", "empty_mask"]).inc();
        m.processing.with_label_values(&["radiomics"]).observe(0.25);
        build_info("0.1.0", "abc123");
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("renal_stage_messages_total{outcome=\"done\",stage=\"radiomics\"} 3"), "{body}");
        assert!(body.contains("renal_dead_letters_total{reason=\"empty_mask\",stage=\"radiomics\"} 1"), "{body}");
        assert!(body.contains("renal_stage_processing_seconds_bucket{stage=\"radiomics\",le=\"0.256\"} 1"), "{body}");
        assert!(body.contains("renal_build_info{commit=\"abc123\",version=\"0.1.0\"} 1"), "{body}");
        assert_eq!(get(addr, "/nope").0, 404);
    }
}
