//! The monitor on a bus: every topic it watches in one consumer group, each message decoded
//! into observations ([`crate::process`]), journalled, taken in, and its findings written to the
//! `drift` and `calibration` tables and the gauges.
//!
//! **State across restarts.** Each message's observations are appended to
//! `<state_dir>/journal.jsonl` (and synced) before its offset can be committed; every
//! `compact_every_entries` entries the state is written whole to `snapshot.json` and the
//! journal starts again. At start-up the snapshot is read and the journal replayed, so a
//! restart continues every window where it was. A message redelivered after a crash is
//! observed twice; windows keep one value per lesion revision, so its values are not counted
//! twice.

use crate::config::MonitorConfig;
use crate::events::{CalibrationComputed, DeadLetterSeen, FeaturesSummarised, Observed, WindowCompared};
use crate::process::{
    observe_case, observe_label, observe_prediction, observe_scores, Findings, Monitor, Observation, State,
};
use crate::reference::{feature_values, MonitorReference, SCORE_SIGNALS};
use crate::table::{calibration_batch, drift_batch, Provenance, CALIBRATION, DRIFT};
use renal_bus::{run_stage, Bus, BusError, Outcome, Record, StageConfig, StageStats};
use renal_messages::topics::{self, Topic};
use renal_messages::{CaseV1, DeadLetterV1, FeaturesV1, LabelV1, PredictionV1, ScoresV1};
use renal_store::TableWriter;
use renal_telemetry::emit;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Consumer group of the monitor.
pub const GROUP: &str = "renal-monitor";

/// The topics the monitor reads: the pipeline's and every other stage's dead letters.
pub fn inputs() -> Vec<Topic> {
    let mut t = vec![topics::CASES, topics::FEATURES, topics::SCORES, topics::PREDICTIONS, topics::LABELS];
    t.extend(topics::ALL.iter().copied().filter(|t| t.payload == "DeadLetterV1" && t.producer != "monitor"));
    t
}

/// What the worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// The stage loop.
    pub stage: StageStats,
    /// Drift rows written.
    pub drift_rows: u64,
    /// Calibration rows written.
    pub calibration_rows: u64,
}

/// Why the state cannot be kept.
#[derive(Debug, thiserror::Error)]
#[error("monitor state {path}: {reason}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// The monitor's journal and snapshot in its state folder.
pub struct Journal {
    dir: PathBuf,
    entries: usize,
    compact_every: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    at_ms: u64,
    observation: Observation,
}

impl Journal {
    fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }
    fn snapshot(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }
    fn fail(path: &Path, e: impl std::fmt::Display) -> StateError {
        StateError { path: path.into(), reason: e.to_string() }
    }

    /// Open `dir` and restore the monitor: the snapshot, then every journal entry after it
    /// (an incomplete last line, from a crash mid-write, is dropped). Also returns how many
    /// entries were replayed.
    pub fn restore(
        dir: &Path,
        config: &MonitorConfig,
        reference: MonitorReference,
    ) -> Result<(Journal, Monitor, usize), StateError> {
        std::fs::create_dir_all(dir).map_err(|e| Self::fail(dir, e))?;
        let j = Journal { dir: dir.into(), entries: 0, compact_every: config.compact_every_entries.max(1) };
        let state: State = match std::fs::read(j.snapshot()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Self::fail(&j.snapshot(), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Self::fail(&j.snapshot(), e)),
        };
        let mut monitor = Monitor::with_state(config.clone(), reference, state);
        let mut replayed = 0;
        match std::fs::read_to_string(j.journal()) {
            Ok(text) => {
                for line in text.lines() {
                    let Ok(entry) = serde_json::from_str::<Entry>(line) else { break };
                    monitor.observe(&entry.observation, entry.at_ms);
                    replayed += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::fail(&j.journal(), e)),
        }
        let mut j = j;
        j.entries = replayed;
        Ok((j, monitor, replayed))
    }

    /// Append observations (synced) and compact when due.
    pub fn append(&mut self, observations: &[Observation], at_ms: u64, monitor: &Monitor) -> Result<(), StateError> {
        let path = self.journal();
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Self::fail(&path, e))?;
        for o in observations {
            let line =
                serde_json::to_string(&Entry { at_ms, observation: o.clone() }).map_err(|e| Self::fail(&path, e))?;
            writeln!(f, "{line}").map_err(|e| Self::fail(&path, e))?;
        }
        f.sync_data().map_err(|e| Self::fail(&path, e))?;
        self.entries += observations.len();
        if self.entries >= self.compact_every {
            self.compact(monitor)?;
        }
        Ok(())
    }

    /// Write the whole state as the snapshot (atomically) and empty the journal. `monitor` must
    /// already hold every journalled observation.
    pub fn compact(&mut self, monitor: &Monitor) -> Result<(), StateError> {
        let snap = self.snapshot();
        let tmp = self.dir.join(".snapshot.json.tmp");
        let bytes = serde_json::to_vec(&monitor.state).map_err(|e| Self::fail(&snap, e))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Self::fail(&tmp, e))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| Self::fail(&tmp, e))?;
        std::fs::rename(&tmp, &snap).map_err(|e| Self::fail(&snap, e))?;
        std::fs::write(self.journal(), b"").map_err(|e| Self::fail(&self.journal(), e))?;
        self.entries = 0;
        Ok(())
    }
}

/// Wall-clock time, ms since the Unix epoch: when the monitor observes (`renal run`'s monitor
/// too).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The latest comparison of every watched feature, for the per-(site, scanner) summary gauges.
#[derive(Default)]
struct LatestFeatures(BTreeMap<(String, String), BTreeMap<String, (f64, f64)>>);

impl LatestFeatures {
    fn take(&mut self, rows: &[crate::process::DriftRow]) {
        let mut touched = std::collections::BTreeSet::new();
        for r in rows.iter().filter(|r| !SCORE_SIGNALS.contains(&r.signal.as_str())) {
            let key = (r.site.clone(), r.scanner.clone());
            self.0.entry(key.clone()).or_default().insert(r.signal.clone(), (r.drift.psi, r.drift.ks_p));
            touched.insert(key);
        }
        for key in touched {
            let latest = &self.0[&key];
            emit(FeaturesSummarised {
                site: &key.0,
                scanner: &key.1,
                features: latest.len(),
                drifted: latest.values().filter(|(_, p)| *p < 0.01).count(),
                max_psi: latest.values().map(|(psi, _)| *psi).fold(0.0, f64::max),
            });
        }
    }
}

/// Decode one record into observations; `None` for a dead letter (counted, not observed).
fn observations(r: &Record, table_root: &Path, monitor: &Monitor) -> Result<Vec<Observation>, Outcome> {
    let topic = r.topic.as_str();
    Ok(if topic == topics::CASES.name {
        vec![observe_case(&r.decode::<CaseV1>()?)]
    } else if topic == topics::SCORES.name {
        vec![observe_scores(&r.decode::<ScoresV1>()?)]
    } else if topic == topics::PREDICTIONS.name {
        observe_prediction(&r.decode::<PredictionV1>()?).to_vec()
    } else if topic == topics::LABELS.name {
        vec![observe_label(&r.decode::<LabelV1>()?).map_err(|e| Outcome::failed(&e))?]
    } else if topic == topics::FEATURES.name {
        let f = r.decode::<FeaturesV1>()?;
        let file = table_root.join(&f.file);
        let values = feature_values(&file, &monitor.reference().settings)
            .map_err(|e| Outcome::reject("features_unreadable", e.to_string()))?;
        vec![Observation::Values { case_id: f.case_id, revision: f.revision, site: f.site, values }]
    } else {
        let d = r.decode::<DeadLetterV1>()?;
        emit(DeadLetterSeen { stage: &d.stage, reason: &d.reason_code });
        Vec::new()
    })
}

fn kind(o: &Observation) -> &'static str {
    match o {
        Observation::Case { .. } => "case",
        Observation::Values { .. } => "values",
        Observation::Prediction { .. } => "prediction",
        Observation::Label { .. } => "label",
    }
}

/// The monitor's output side: the tables and gauges its findings go to.
pub struct Sink {
    writer: TableWriter,
    code_version: String,
    settings_sha256: String,
    input_sha256: String,
    reference: String,
    latest: LatestFeatures,
    /// Drift rows written so far.
    pub drift_rows: u64,
    /// Calibration rows written so far.
    pub calibration_rows: u64,
}

impl Sink {
    /// Tables under `config.table_root`, provenance from the settings and the reference.
    pub fn new(config: &MonitorConfig, reference: &MonitorReference) -> Sink {
        let hash = |v: &[u8]| renal_store::sha256_hex(v);
        Sink {
            writer: TableWriter::new(&config.table_root),
            code_version: env!("CARGO_PKG_VERSION").into(),
            settings_sha256: hash(&serde_json::to_vec(config).unwrap_or_default()),
            input_sha256: hash(&serde_json::to_vec(reference).unwrap_or_default()),
            reference: reference.ensemble_version.clone(),
            latest: LatestFeatures::default(),
            drift_rows: 0,
            calibration_rows: 0,
        }
    }

    /// Write one observation's findings (a file per table and site, keyed by `key`) and set
    /// the gauges.
    pub fn write(&mut self, key: &str, findings: &Findings) -> Result<(), renal_store::TableError> {
        let p = Provenance {
            code_version: &self.code_version,
            settings_sha256: &self.settings_sha256,
            input_sha256: &self.input_sha256,
            reference: &self.reference,
        };
        let safe: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .collect();
        let mut by_site: BTreeMap<&str, Vec<crate::process::DriftRow>> = BTreeMap::new();
        for r in &findings.drift {
            by_site.entry(&r.site).or_default().push(r.clone());
        }
        for (site, rows) in &by_site {
            let date = crate::table::rfc3339_ms(rows[0].window_end_ms)[..10].to_string();
            self.writer.write(DRIFT, &site_dir(site), &date, &format!("d{safe}"), &drift_batch(rows, &p))?;
            self.drift_rows += rows.len() as u64;
        }
        for r in findings.drift.iter().filter(|r| SCORE_SIGNALS.contains(&r.signal.as_str())) {
            emit(WindowCompared { row: r });
        }
        self.latest.take(&findings.drift);
        for r in &findings.calibration {
            let date = crate::table::rfc3339_ms(r.window_end_ms)[..10].to_string();
            let rows = std::slice::from_ref(r);
            self.writer.write(
                CALIBRATION,
                &site_dir(&r.site),
                &date,
                &format!("c{safe}"),
                &calibration_batch(rows, &p),
            )?;
            self.calibration_rows += 1;
            emit(CalibrationComputed { row: r });
        }
        Ok(())
    }
}

/// A site code as a partition folder name (site codes are short capitals; anything else is
/// made safe).
fn site_dir(site: &str) -> String {
    let s: String = site.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') {
        "unknown".into()
    } else {
        s
    }
}

/// Run the monitor until `shutdown`; `progress` gets the number of messages so far.
pub async fn run<B: Bus>(
    config: &MonitorConfig,
    reference: MonitorReference,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<MonitorStats, BusError> {
    let mut sink = Sink::new(config, &reference);
    let (mut journal, mut monitor, replayed) =
        Journal::restore(&config.state_dir, config, reference).map_err(|e| BusError::Fatal(e.to_string()))?;
    emit(crate::events::MonitorStarted {
        reference: &monitor.reference().ensemble_version,
        signals: monitor.reference().signals.len(),
        replayed,
    });
    let table_root = config.table_root.clone();
    let mut seen = 0u64;
    let stage = {
        let sink = &mut sink;
        run_stage(
            bus,
            StageConfig::new("monitor", GROUP, inputs()),
            move |r: Record| {
                seen += 1;
                progress(seen);
                let o = match observations(&r, &table_root, &monitor) {
                    Err(outcome) => outcome,
                    Ok(obs) if obs.is_empty() => Outcome::Done(Vec::new()),
                    Ok(obs) => {
                        let at = now_ms();
                        let mut findings = Findings::default();
                        for o in &obs {
                            emit(Observed { kind: kind(o) });
                            let f = monitor.observe(o, at);
                            findings.drift.extend(f.drift);
                            findings.calibration.extend(f.calibration);
                        }
                        let key = format!("{}-{}-{}", r.topic, r.partition, r.offset);
                        match journal.append(&obs, at, &monitor) {
                            Err(e) => Outcome::Retry(e.to_string()),
                            Ok(()) => match sink.write(&key, &findings) {
                                Ok(()) => Outcome::Done(Vec::new()),
                                Err(e) => Outcome::Retry(e.to_string()),
                            },
                        }
                    }
                };
                async move { o }
            },
            shutdown,
        )
        .await?
    };
    Ok(MonitorStats { stage, drift_rows: sink.drift_rows, calibration_rows: sink.calibration_rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::tests::reference;
    use renal_bus::InProcessBus;
    use renal_messages::{Message, Provenance};

    fn scores(case_id: &str, t2: f64) -> ScoresV1 {
        ScoresV1 {
            version: 1,
            case_id: case_id.into(),
            revision: 1,
            site: "MAY".into(),
            t2_probability: t2,
            t1c_probability: 0.5,
            embeddings: [vec![], vec![]],
            model_version: "cnn".into(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
        }
    }

    fn label(case_id: &str, label: &str) -> LabelV1 {
        LabelV1 {
            version: 1,
            case_id: case_id.into(),
            label: label.into(),
            subtype: None,
            diagnosis_source: "histopathology".into(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
        }
    }

    fn case(case_id: &str) -> CaseV1 {
        use renal_messages::{BlobRef, Clinical, Role, SeriesRef};
        let series = SeriesRef {
            role: Role::T1C,
            series_uid: "1.2.3".into(),
            description: "T1C".into(),
            manufacturer: "GE MEDICAL SYSTEMS".into(),
            field_strength_t: Some(1.5),
            instances: 10,
            blob: BlobRef { key: "k".into(), sha256: "0".into(), bytes: 1 },
        };
        CaseV1 {
            version: 1,
            case_id: case_id.into(),
            first_instance_at: None,
            revision: 1,
            site: "MAY".into(),
            patient_pseudonym: "p".into(),
            study_uid: "1.2".into(),
            study_date: "2026-01-01".into(),
            clinical: Clinical { age_years: Some(60), sex: None },
            series: vec![series],
            segmentations: Vec::new(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".into() },
        }
    }

    /// Send cases and scores `from..from + n` (scores near 0.9 against a uniform reference:
    /// plain drift) and one label that is no label; run the monitor until it has read them.
    fn stream(bus: &InProcessBus, cfg: &MonitorConfig, from: u32, n: u32) -> MonitorStats {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for i in from..from + n {
                let id = format!("MAY-{i:04}");
                bus.send(topics::CASES, &id, case(&id).encode()).await.unwrap();
                bus.send(topics::SCORES, &id, scores(&id, 0.9 + f64::from(i % 10) / 100.0).encode()).await.unwrap();
            }
            bus.send(topics::LABELS, "MAY-9999", label("MAY-9999", "unsure").encode()).await.unwrap();
            let watcher = bus.clone();
            let done = async move {
                while !inputs().iter().all(|t| watcher.caught_up(GROUP, *t)) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            };
            run(cfg, reference(), bus.clone(), done, &|_| {}).await.unwrap()
        })
    }

    #[test]
    fn the_worker_writes_drift_rows_and_continues_its_windows_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = MonitorConfig {
            compact_every_entries: 7,
            ..MonitorConfig::new("unused".into(), dir.path().join("store"), dir.path().join("state"))
        };
        let bus = InProcessBus::new(3);
        let first = stream(&bus, &cfg, 0, 15);
        // 15 lesions: below the 20 a window needs.
        assert_eq!(first.drift_rows, 0);
        assert_eq!(first.stage.dead_letters, 1, "the label that is no label");
        let letter = renal_messages::DeadLetterV1::decode(&bus.records(topics::DEAD_MONITOR)[0].payload).unwrap();
        assert_eq!(letter.reason_code, "bad_label");
        // A new worker: the snapshot and journal carry the first 15 lesions, so its windows
        // are compared at the 20th and 30th lesion (only t2 is in the test reference).
        let second = stream(&bus, &cfg, 15, 15);
        assert_eq!(second.drift_rows, 2);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("store/drift/site=MAY"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .collect();
        assert_eq!(files.len(), 2);
        let m = renal_telemetry::monitor_metrics();
        let psi = m.psi.with_label_values(&["MAY", "GE MEDICAL SYSTEMS 1.5T", "t2"]).get();
        assert!(psi > 1.0, "{psi}");
    }
}
