//! The monitor worker on a real broker (tansu), scraped by a real Prometheus with the
//! deployment's monitor alert rules.
//!
//! Four sites send lesions as the pipeline would (a case, its watched radiomics features as a
//! Parquet file in the feature store announced on `renal.features`, its scores, its
//! prediction), with values drawn from the serving bundle's reference distribution. After its
//! 30th lesion MAY's scanner is replaced (another vendor and field strength in the case's
//! headers): its T1C network's probabilities shift upwards, and so do three of the four
//! watched features (first-order mean and median of both series; the T2 median stays). PHH's
//! model is deliberately miscalibrated: its lesions' true probabilities lie mostly near 0 or 1,
//! and its predictions are pushed towards 0.5 (`0.5 + 0.1 (p - 0.5)`). Then every lesion's
//! label arrives, drawn from its true probability, and one dead letter of another stage.
//!
//! Stated bounds (the rules' `for: 5m` is shortened to `for: 0s` in the test's copy; the
//! expressions are the deployment's):
//! - MAY's new scanner is first compared at its 20th lesion after the change (`min_lesions`),
//!   and that comparison already crosses both thresholds (PSI above 0.25, KS P below 0.01).
//!   So are its three shifted features.
//! - RenalScoreDrift fires for MAY's new scanner's T1C and for PHH's ensemble probability
//!   (whose distribution the squashing changed), for nothing else. Of the other streams (site,
//!   scanner, signal) in the `drift` table, fewer than 10% ever cross both thresholds (a
//!   window's chance is about 1%; here 1 of 30, a T1C feature at HUP, which moves no alert).
//! - RenalFeatureDrift (over half the watched features with KS P below 0.01) fires for MAY's
//!   new scanner alone.
//! - RenalCalibrationDrift fires for PHH alone once its labels arrive (ECE above 0.15 and a P
//!   value below 0.01 were it calibrated). 60 labelled lesions are few: a calibrated site's ECE
//!   may pass 0.15 by chance (about its average at that size), which its P value shows; each
//!   calibrated site's stays above 0.01, and CBPE's expected accuracy of its labelled lesions is
//!   within three binomial standard errors of the realised one (about 0.19 at 60 lesions).
//! - Every query of the monitor's Grafana dashboard returns data from this Prometheus.
//!
//! The false-alarm rate over 30 seeds is measured without the broker in `renal-monitor`
//! (`process::tests`). With `RENAL_MONITOR_REPORT_OUT` set, `renal monitor report` of the
//! test's store is copied there (the note's heat map).

use renal_bus::{Bus, KafkaBus, KafkaConfig};
use renal_e2e::{dashboard_queries, free_port, http_get, renal, start_worker, Broker, Prometheus, Running};
use renal_messages::{
    topics, BlobRef, CaseV1, Clinical, DeadLetterSource, DeadLetterV1, FeaturesV1, LabelV1, Message, PredictionV1,
    Provenance, Role, ScoresV1, SeriesRef,
};
use renal_monitor::reference::{MonitorReference, ReferenceSettings};
use renal_radiomics::extract::SettingFeatures;
use renal_radiomics::settings::Setting;
use renal_radiomics::table::{features_batch, RowKey};
use renal_store::TableWriter;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A probability from the reference's distribution (triangular on 0..1).
    fn probability(&mut self) -> f64 {
        (self.uniform() + self.uniform()) / 2.0
    }
}

fn provenance() -> Provenance {
    Provenance { code_version: "t".into(), produced_at: "2026-12-06T00:00:00Z".into(), input_sha256: "0".repeat(64) }
}

fn case(case_id: &str, site: &str, manufacturer: &str, field: f64) -> CaseV1 {
    let series = |role| SeriesRef {
        role,
        series_uid: format!("1.2.{case_id}"),
        description: "series".into(),
        manufacturer: manufacturer.into(),
        field_strength_t: Some(field),
        instances: 20,
        blob: BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 },
    };
    CaseV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: site.into(),
        patient_pseudonym: "ab".into(),
        study_uid: "1.2".into(),
        study_date: "2026-12-06".into(),
        clinical: Clinical { age_years: Some(60), sex: None },
        series: vec![series(Role::T2), series(Role::T1C)],
        segmentations: Vec::new(),
        provenance: provenance(),
    }
}

fn scores(case_id: &str, site: &str, t2: f64, t1c: f64) -> ScoresV1 {
    ScoresV1 {
        version: 1,
        case_id: case_id.into(),
        revision: 1,
        site: site.into(),
        t2_probability: t2,
        t1c_probability: t1c,
        embeddings: [vec![], vec![]],
        model_version: "cnn-test".into(),
        provenance: provenance(),
    }
}

fn prediction(case_id: &str, site: &str, p: f64, inputs: [f64; 3]) -> PredictionV1 {
    PredictionV1 {
        version: 1,
        case_id: case_id.into(),
        first_instance_at: None,
        revision: 1,
        site: site.into(),
        probability: p,
        class: if p >= 0.5 { "malignant" } else { "benign" }.into(),
        threshold: 0.5,
        inputs,
        model_version: "ens-test".into(),
        cnn_model_version: "cnn-test".into(),
        provenance: provenance(),
    }
}

/// The watched features of the test: (series, tag).
const FEATURES: [(&str, &str); 4] =
    [("T2", "stat_mean"), ("T2", "stat_median"), ("T1C", "stat_mean"), ("T1C", "stat_median")];

/// A feature's signal name in the reference (`<series>/<setting>/<tag>`).
fn feature_signal(setting: &Setting, series: &str, tag: &str) -> String {
    format!("{series}/{}/{tag}", setting.label())
}

/// Write a lesion's watched features to the feature store as the radiomics stage does; the
/// announcement for `renal.features`.
fn features(store: &Path, setting: &Setting, case_id: &str, site: &str, values: [f64; 4]) -> FeaturesV1 {
    let key = RowKey {
        case_id,
        revision: 1,
        site,
        produced_at: "2026-12-06T00:00:00Z",
        code_version: "t",
        settings_sha256: "0",
        input_sha256: "0",
    };
    let per_series = |series: &str| SettingFeatures {
        setting: *setting,
        roi_voxels: 100,
        features: Ok(FEATURES
            .iter()
            .zip(values)
            .filter(|((s, _), _)| *s == series)
            .map(|((_, tag), v)| (tag.to_string(), v))
            .collect()),
        diagnostics: Vec::new(),
    };
    let (t2, t1c) = ([per_series("T2")], [per_series("T1C")]);
    let batch = features_batch(&key, &[("T2", &t2), ("T1C", &t1c)]);
    let file = TableWriter::new(store).write("features", site, "2026-12-06", &format!("{case_id}-r1"), &batch).unwrap();
    FeaturesV1 {
        version: 1,
        case_id: case_id.into(),
        revision: 1,
        site: site.into(),
        table: "features".into(),
        file: file.display().to_string(),
        features: 4,
        settings_sha256: "0".into(),
        provenance: provenance(),
    }
}

/// The monitor's alert rules with their pending time shortened, next to `dir`.
fn rules_for_test(dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/monitor_alerts.yml"))
            .unwrap();
    let path = dir.join("monitor_alerts.yml");
    std::fs::write(&path, text.replace("for: 5m", "for: 0s").replace("for: 30m", "for: 0s")).unwrap();
    path
}

#[test]
fn a_replaced_scanner_fires_its_sites_drift_alert_and_no_other() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Lcg(20261206);
    let setting = renal_radiomics::settings::study_grid().remove(0);
    let mut reference_values: BTreeMap<String, Vec<f64>> = ["ensemble", "t2", "t1c"]
        .iter()
        .map(|s| (s.to_string(), (0..1000).map(|_| rng.probability()).collect()))
        .collect();
    for (series, tag) in FEATURES {
        reference_values.insert(feature_signal(&setting, series, tag), (0..1000).map(|_| rng.probability()).collect());
    }
    let reference =
        MonitorReference::build("ens-test", 0.5, 1000, ReferenceSettings::default(), &reference_values).unwrap();
    let reference_path = root.join("models/monitor/ens-test.json");
    reference.save(&reference_path).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = root.join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n\n[telemetry]\nmetrics_addr = \"{metrics}\"\n\n[monitor]\nreference = \"{}\"\ntable_root = \"{}\"\nstate_dir = \"{}\"\n",
            broker.bootstrap,
            root.join("models/monitor").display(),
            root.join("store").display(),
            root.join("state").display()
        ),
    )
    .unwrap();
    let prometheus = Prometheus::start_with_rules(&[("renal-monitor", metrics.clone())], &[rules_for_test(root)]);
    let worker = Running::new(start_worker("monitor", &config, &root.join("monitor.log")));

    // 60 lesions per site, interleaved; MAY's scanner replaced after its 30th.
    let (sites, per_site, change) = (["HUP", "MAY", "SXH", "PHH"], 60, 30);
    let mut labels = Vec::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let bus = KafkaBus::new(KafkaConfig::local(&broker.bootstrap, "e2e-monitor")).unwrap();
        let mut all = renal_monitor::run::inputs();
        all.push(topics::DEAD_MONITOR);
        bus.ensure_topics(&all).await.unwrap();
        for i in 0..per_site {
            for site in sites {
                let id = format!("{site}-{i:04}");
                let replaced = site == "MAY" && i >= change;
                let (maker, field) = if replaced { ("SIEMENS", 1.5) } else { ("GE MEDICAL SYSTEMS", 3.0) };
                let (t2, mut t1c, mut p) = (rng.probability(), rng.probability(), rng.probability());
                if replaced {
                    t1c = 0.55 + 0.45 * t1c;
                }
                let mut predicted = p;
                if site == "PHH" {
                    let u = rng.uniform();
                    p = if rng.uniform() < 0.5 { u.powi(3) } else { 1.0 - u.powi(3) };
                    predicted = 0.5 + 0.1 * (p - 0.5);
                }
                // The new scanner's intensities: every watched feature but the T2 median shifts.
                let mut watched = [0.0; 4];
                for (k, v) in watched.iter_mut().enumerate() {
                    *v = rng.probability() + if replaced && k != 1 { 0.5 } else { 0.0 };
                }
                bus.send(topics::CASES, &id, case(&id, site, maker, field).encode()).await.unwrap();
                let announced = features(&root.join("store"), &setting, &id, site, watched);
                bus.send(topics::FEATURES, &id, announced.encode()).await.unwrap();
                bus.send(topics::SCORES, &id, scores(&id, site, t2, t1c).encode()).await.unwrap();
                let pred = prediction(&id, site, predicted, [t2, t1c, 0.0]);
                bus.send(topics::PREDICTIONS, &id, pred.encode()).await.unwrap();
                labels.push((id, rng.uniform() < p));
            }
        }
        // A dead letter of another stage, which the monitor counts.
        let dead = DeadLetterV1 {
            version: 1,
            stage: "ingest".into(),
            reason_code: "truncated_dicom".into(),
            reason: "the file ends inside an element".into(),
            source: DeadLetterSource { topic: None, partition: None, offset: None, key: "file-1.dcm".into() },
            input_sha256: "0".repeat(64),
            at: "2026-12-06T00:00:00Z".into(),
            input_base64: None,
        };
        bus.send(topics::DEAD_INGEST, "file-1.dcm", dead.encode()).await.unwrap();
        for (id, malignant) in &labels {
            let label = LabelV1 {
                version: 1,
                case_id: id.clone(),
                label: if *malignant { "malignant" } else { "benign" }.into(),
                subtype: None,
                diagnosis_source: "histopathology".into(),
                provenance: provenance(),
            };
            bus.send(topics::LABELS, id, label.encode()).await.unwrap();
        }
    });

    // The drift alert fires for MAY's new scanner's T1C and PHH's squashed ensemble, and for
    // nothing else; the calibration alert for PHH alone.
    let firing = |name: &str| -> std::collections::BTreeSet<(String, String, String)> {
        prometheus
            .query(&format!("ALERTS{{alertname=\"{name}\", alertstate=\"firing\"}}"))
            .iter()
            .map(|a| {
                let m = &a["metric"];
                let get = |k: &str| m[k].as_str().unwrap_or("").to_string();
                (get("site"), get("scanner"), get("signal"))
            })
            .collect()
    };
    let want_drift: std::collections::BTreeSet<(String, String, String)> =
        [("MAY", "SIEMENS 1.5T", "t1c"), ("PHH", "GE MEDICAL SYSTEMS 3T", "ensemble")]
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
    let want_calibration: std::collections::BTreeSet<(String, String, String)> =
        [("PHH".to_string(), String::new(), String::new())].into_iter().collect();
    let want_features: std::collections::BTreeSet<(String, String, String)> =
        [("MAY".to_string(), "SIEMENS 1.5T".to_string(), String::new())].into_iter().collect();
    let until = Instant::now() + Duration::from_secs(120);
    let all_labelled = || {
        let n = prometheus.query("renal_calibration_labelled_lesions");
        n.len() == sites.len() && n.iter().all(|e| e["value"][1].as_str() == Some(&per_site.to_string()))
    };
    while (!all_labelled()
        || firing("RenalScoreDrift") != want_drift
        || firing("RenalCalibrationDrift") != want_calibration
        || firing("RenalFeatureDrift") != want_features)
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, text) = http_get(&metrics, "/metrics");
    let log = std::fs::read_to_string(root.join("monitor.log")).unwrap_or_default();
    assert!(
        all_labelled(),
        "not every label reached the calibration: {:?}",
        prometheus.query("renal_calibration_labelled_lesions")
    );
    assert_eq!(firing("RenalScoreDrift"), want_drift, "\n{text}\n{log}");
    assert_eq!(firing("RenalCalibrationDrift"), want_calibration, "\n{text}");
    assert_eq!(firing("RenalFeatureDrift"), want_features, "\n{text}");
    // Calibration per site once the labels are in; on the calibrated sites CBPE was expecting
    // about what came.
    let gauge = |name: &str| -> BTreeMap<String, f64> {
        prometheus
            .query(name)
            .iter()
            .map(|e| {
                (e["metric"]["site"].as_str().unwrap().to_string(), e["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    };
    let (ece, ece_p) = (gauge("renal_calibration_ece"), gauge("renal_calibration_ece_p"));
    assert_eq!(ece.len(), 4, "{ece:?}");
    println!("ECE per site {ece:?}; its P value were it calibrated {ece_p:?}");
    assert!(ece["PHH"] > 0.15 && ece_p["PHH"] < 0.01, "{ece:?} {ece_p:?}");
    for site in ["HUP", "MAY", "SXH"] {
        assert!(ece_p[site] > 0.01, "{site}: {ece:?} {ece_p:?}");
    }
    let (accuracy, cbpe_error) = (gauge("renal_realised_accuracy"), gauge("renal_cbpe_error"));
    println!("realised accuracy {accuracy:?}; CBPE's error {cbpe_error:?}");
    for site in ["HUP", "MAY", "SXH"] {
        let a = accuracy[site];
        let bound = 3.0 * (a * (1.0 - a) / per_site as f64).sqrt();
        assert!(cbpe_error[site].abs() < bound, "CBPE off by {} at {site} (bound {bound})", cbpe_error[site]);
    }
    // Every query of the monitor's dashboard has data (rates need two scrapes in their window).
    std::thread::sleep(Duration::from_secs(3));
    for (panel, expr) in dashboard_queries("monitor.json") {
        let result = prometheus.query(&expr);
        assert!(!result.is_empty(), "panel {panel:?}: {expr} returned nothing");
    }
    worker.interrupt();

    // The drift table: MAY's new scanner crossed both thresholds at its first comparison, 20
    // lesions after the change, and so did each shifted feature's.
    let rows = renal_monitor::report::read_drift(&root.join("store")).unwrap();
    let shifted: Vec<String> = [("T2", "stat_mean"), ("T1C", "stat_mean"), ("T1C", "stat_median")]
        .iter()
        .map(|(series, tag)| feature_signal(&setting, series, tag))
        .chain(std::iter::once("t1c".to_string()))
        .collect();
    for signal in &shifted {
        let first = rows
            .iter()
            .filter(|r| r.site == "MAY" && r.scanner == "SIEMENS 1.5T" && &r.signal == signal)
            .min_by_key(|r| (r.n, r.window_end_ms))
            .unwrap_or_else(|| panic!("MAY's new scanner's {signal} was never compared"));
        assert_eq!(first.n, 20, "{first:?}");
        assert!(first.psi > 0.25 && first.ks_p < 0.01, "{first:?}");
    }
    // The streams without a shift: few ever cross both thresholds (each window's chance is
    // about 1%; the rate over 270 streams is in `renal-monitor`'s unit tests).
    let mut streams: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    for r in &rows {
        let key = (r.site.clone(), r.scanner.clone(), r.signal.clone());
        let is_shifted = want_drift.contains(&key)
            || (r.site == "MAY" && r.scanner == "SIEMENS 1.5T" && shifted.contains(&r.signal));
        if !is_shifted {
            *streams.entry(key).or_default() |= r.psi > 0.25 && r.ks_p < 0.01;
        }
    }
    let alarmed: Vec<_> = streams.iter().filter(|(_, &a)| a).map(|(k, _)| k).collect();
    println!(
        "streams without a shift that crossed both thresholds: {} of {}: {alarmed:?}",
        alarmed.len(),
        streams.len()
    );
    assert!(streams.len() >= 25, "{streams:?}");
    assert!((alarmed.len() as f64) < 0.1 * streams.len() as f64, "{alarmed:?}");

    // The report of the test's store: the heat map as a PNG.
    let report = root.join("report");
    let out = renal(&[
        "monitor",
        "report",
        "--store",
        root.join("store").to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(&std::fs::read(report.join("drift_heatmap.png")).unwrap()[..4], b"\x89PNG");
    if let Some(keep) = std::env::var_os("RENAL_MONITOR_REPORT_OUT") {
        std::fs::create_dir_all(&keep).unwrap();
        for f in ["drift_heatmap.png", "drift_heatmap.svg", "calibration.svg", "index.html"] {
            std::fs::copy(report.join(f), Path::new(&keep).join(f)).unwrap();
        }
    }
}
