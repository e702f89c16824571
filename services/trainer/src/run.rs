//! `renal worker trainer`'s loop: lesions and labels in, challengers out.
//!
//! The worker reads `renal.lesions` (the latest revision of each lesion) and `renal.labels`
//! (the label book, a later label of a lesion replacing the earlier one) in a consumer group of
//! its own that commits nothing: at every start it reads both topics from their beginning, so
//! what it knows is rebuilt from the log (their retention must keep every message; the
//! deployment's topics are compacted by key). The book is also kept in `state_dir/labels.jsonl`,
//! so labels read again at a restart are not counted as new.
//!
//! New or revised labels, the tick (the schedule, and the labels drop folder) and Alertmanager's
//! alerts (from [`crate::serve`]) go to [`Triggers`]; when one is due a retrain runs on a
//! blocking thread ([`crate::retrain::retrain`]) while the loop goes on reading; a trigger that
//! comes due meanwhile runs after it. Its registry events go to `renal.models` (the inference
//! and ensemble workers that serve `promoted` switch on them), held-out lesions the stages
//! could not predict to `renal.dead.trainer`. A message that is not a lesion or a label is
//! dead-lettered and skipped.

use crate::config::TrainerConfig;
use crate::events::{
    Known, LabelsFileSent, RetrainFailed, RetrainFinished, RetrainStarted, RetrainStep, TrainerStopped,
};
use crate::retrain::{retrain, Choice, Outcome, RetrainError, Start};
use crate::trigger::{Signal, Triggers};
use renal_bus::{dead_letter, send_with_retry, Backoff, Bus, BusError, Consumer, Output, Record};
use renal_labels::book::Book;
use renal_messages::{topics, DeadLetterSource, LabelV1, LesionV1, Message};
use renal_store::BlobStore;
use renal_telemetry::emit;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainerStats {
    /// Lesion messages read.
    pub lesions: u64,
    /// Label messages read.
    pub labels: u64,
    /// Retrains finished (promoted or not).
    pub retrains: u64,
    /// Of which promoted.
    pub promoted: u64,
    /// Retrains that failed.
    pub failed: u64,
    /// Dead letters sent.
    pub dead_letters: u64,
}

/// Why the worker stopped before its shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The label book in `state_dir` could not be written.
    #[error("label book: {0}")]
    Book(String),
}

/// What the loop needs besides the bus.
pub struct Trainer {
    /// `[trainer]`.
    pub config: TrainerConfig,
    /// The networks' training configuration (checked).
    pub train: renal_cnn::train::TrainConfig,
    /// Training device.
    pub device: tch::Device,
    /// Where the composites are.
    pub store: Arc<dyn BlobStore>,
    /// The label book as `state_dir` kept it ([`book_path`]; read at start-up).
    pub book: Book,
    /// The de-identification keys, for labels files keyed by accession number (none: such
    /// files are dead-lettered).
    pub keys: Option<renal_base::keys::Keys>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The label book's file.
pub fn book_path(config: &TrainerConfig) -> PathBuf {
    config.state_dir.join("labels.jsonl")
}

/// A retrain in flight: what was asked for, and since when.
type Running = (Choice, Instant);
/// Where a finished retrain's result arrives.
type Finished = tokio::sync::mpsc::UnboundedSender<Result<Outcome, RetrainError>>;

/// Read, trigger and retrain until `shutdown` resolves (a retrain in flight is finished
/// first); `alerts` brings the firing alerts Alertmanager posts.
pub async fn run<B: Bus>(
    mut trainer: Trainer,
    bus: B,
    mut alerts: tokio::sync::mpsc::UnboundedReceiver<Signal>,
    shutdown: impl Future<Output = ()>,
) -> Result<TrainerStats, RunError> {
    let config = &trainer.config;
    let mut consumer =
        bus.consumer(&renal_registry::follow::own_group("trainer"), &[topics::LESIONS, topics::LABELS])?;
    let mut book = std::mem::take(&mut trainer.book);
    let mut lesions: BTreeMap<String, LesionV1> = BTreeMap::new();
    let mut triggers = Triggers::new(config.triggers.clone(), now_ms());
    let mut tick = tokio::time::interval(Duration::from_secs(config.tick_s));
    let mut stats = TrainerStats::default();
    let mut running: Option<Running> = None;
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let mut pending: Option<(Choice, String)> = None;
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        let mut due: Option<(Choice, String)> = None;
        tokio::select! {
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                if running.is_none() {
                    break;
                }
                tracing::info!(stage = "trainer", "stopping after the retrain in flight");
            }
            r = consumer.recv(), if !stopping => {
                let record = match r {
                    Ok(r) => r,
                    Err(BusError::Transient(why)) => {
                        tracing::warn!(stage = "trainer", "reading lesions and labels: {why}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                match take(&record, &mut lesions, &mut book, &mut stats) {
                    Ok(true) => {
                        renal_labels::book::write(&book_path(config), &book)
                            .map_err(|e| RunError::Book(format!("{}: {e}", book_path(config).display())))?;
                        due = triggers.observe(&Signal::Label, now_ms()).map(|d| (config.on_labels.into(), d.reason));
                    }
                    Ok(false) => {}
                    Err((code, why)) => {
                        let at = DeadLetterSource {
                            topic: Some(record.topic.clone()),
                            partition: Some(record.partition),
                            offset: Some(record.offset),
                            key: record.key.clone(),
                        };
                        let letter = renal_bus::with_input(
                            dead_letter("trainer", at, code, why, renal_store::sha256_hex(&record.payload)),
                            &record.payload,
                        );
                        send_letter(&bus, &letter).await?;
                        stats.dead_letters += 1;
                    }
                }
                emit(Known { lesions: lesions.len(), labels: book.len(), labels_since_retrain: triggers.labels_since() });
            }
            Some(signal) = alerts.recv(), if !stopping => {
                due = triggers.observe(&signal, now_ms()).map(|d| (Choice::from(d.retrain), d.reason));
            }
            _ = tick.tick(), if !stopping => {
                if let Some(dir) = &config.labels_dir {
                    send_label_files(&bus, dir, trainer.keys.as_ref()).await?;
                }
                due = triggers.observe(&Signal::Tick, now_ms()).map(|d| (config.on_labels.into(), d.reason));
            }
            Some(result) = finished.recv(), if running.is_some() => {
                let (choice, began) = running.take().expect("guarded");
                settle(&bus, result, choice, began, &mut stats).await?;
                emit(Known { lesions: lesions.len(), labels: book.len(), labels_since_retrain: triggers.labels_since() });
                if stopping {
                    break;
                }
                due = pending.take();
            }
        }
        if let Some(due) = due {
            if running.is_some() {
                pending = Some(due);
            } else {
                // Labels that arrive while it runs are not in it: they count towards the next.
                triggers.retrained(now_ms());
                running = Some(start(&trainer, &lesions, &book, due, finished_tx.clone()));
            }
        }
    }
    emit(TrainerStopped { stats: &stats });
    Ok(stats)
}

/// Take one record: `Ok(true)` when the label book changed; a dead letter's code and reason
/// for a message that is neither a lesion nor a label.
fn take(
    record: &Record,
    lesions: &mut BTreeMap<String, LesionV1>,
    book: &mut Book,
    stats: &mut TrainerStats,
) -> Result<bool, (&'static str, String)> {
    if record.topic == topics::LESIONS.name {
        stats.lesions += 1;
        let lesion = LesionV1::decode(&record.payload).map_err(|e| ("malformed_message", e.to_string()))?;
        if lesions.get(&lesion.case_id).is_none_or(|old| old.revision <= lesion.revision) {
            lesions.insert(lesion.case_id.clone(), lesion);
        }
        return Ok(false);
    }
    stats.labels += 1;
    let label = LabelV1::decode(&record.payload).map_err(|e| ("malformed_message", e.to_string()))?;
    let merged = renal_labels::book::merge(book, [label]);
    Ok(merged.new + merged.revised > 0)
}

/// Start a retrain on a blocking thread, from what the worker knows now; its result goes to
/// `done` (a panic in it becomes an error).
fn start(
    trainer: &Trainer,
    lesions: &BTreeMap<String, LesionV1>,
    book: &Book,
    due: (Choice, String),
    done: Finished,
) -> Running {
    let (choice, reason) = due;
    let c = &trainer.config;
    emit(RetrainStarted { retrain: choice.name(), reason: &reason, lesions: lesions.len(), labels: book.len() });
    let registry = renal_registry::Registry::new(&c.registry, &c.store);
    let truth = crate::retrain::truth_of(book);
    let known: Vec<LesionV1> = lesions.values().cloned().collect();
    let (store, device, scratch) = (trainer.store.clone(), trainer.device, c.state_dir.clone());
    let (deployment, margins, train, table_root) =
        (c.deployment.clone(), c.margins, trainer.train.clone(), c.store.clone());
    tokio::task::spawn_blocking(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let start = Start::new(registry, &deployment, truth, known, store, Some(table_root), device, scratch)?;
            retrain(start, &margins, choice, train, &|line| emit(RetrainStep(&line)))
        }))
        .unwrap_or_else(|_| Err(RetrainError::Panicked));
        let _ = done.send(result);
    });
    (choice, Instant::now())
}

/// Send a finished retrain's registry events to `renal.models` and its dead letters.
async fn settle<B: Bus>(
    bus: &B,
    result: Result<Outcome, RetrainError>,
    choice: Choice,
    began: Instant,
    stats: &mut TrainerStats,
) -> Result<(), BusError> {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            stats.failed += 1;
            emit(RetrainFailed { retrain: choice.name(), error: &e.to_string() });
            return Ok(());
        }
    };
    for event in &outcome.events {
        let out = Output { topic: topics::MODELS, key: event.model_version.clone(), payload: event.encode() };
        send_with_retry(bus, &out, Backoff::WORKER).await?;
    }
    for letter in &outcome.dead_letters {
        send_letter(bus, letter).await?;
        stats.dead_letters += 1;
    }
    stats.retrains += 1;
    stats.promoted += u64::from(outcome.promoted);
    let verdict = match (&outcome.challenger, outcome.promoted) {
        (None, _) => "unchanged",
        (Some(_), true) => "promoted",
        (Some(_), false) => "rejected",
    };
    emit(RetrainFinished {
        retrain: outcome.retrain,
        outcome: verdict,
        challenger: outcome.challenger.as_ref().map(|e| e.version.as_str()),
        reason: &outcome.reason,
        seconds: began.elapsed().as_secs_f64(),
    });
    Ok(())
}

async fn send_letter<B: Bus>(bus: &B, letter: &renal_messages::DeadLetterV1) -> Result<(), BusError> {
    let out = Output { topic: topics::DEAD_TRAINER, key: letter.source.key.clone(), payload: letter.encode() };
    send_with_retry(bus, &out, Backoff::WORKER).await.map(|_| ())
}

/// Send each settled `.csv` file of the labels drop folder to `renal.labels` (the labels
/// stage's import), then move it to `done/` beside it. A file written in the last two seconds
/// waits for the next tick.
async fn send_label_files<B: Bus>(bus: &B, dir: &Path, keys: Option<&renal_base::keys::Keys>) -> Result<(), BusError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .collect();
    files.sort();
    for path in files {
        let settled = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= Duration::from_secs(2)));
        if !settled {
            continue;
        }
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().to_string());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(stage = "trainer", "labels file {name}: {e}; tried again at the next tick");
                continue;
            }
        };
        let sent = match renal_labels::parse(&bytes, keys) {
            Ok(rows) => renal_labels::run::import(bus, &name, rows).await?,
            Err(e) => {
                let letter = renal_labels::run::dead_letter_of(&name, &e);
                let out =
                    Output { topic: topics::DEAD_LABELS, key: letter.source.key.clone(), payload: letter.encode() };
                send_with_retry(bus, &out, Backoff::WORKER).await?;
                renal_labels::run::ImportStats { labels: 0, dead_letters: 1 }
            }
        };
        emit(LabelsFileSent { file: &name, labels: sent.labels, dead_letters: sent.dead_letters });
        let done = dir.join("done");
        if let Err(e) = std::fs::create_dir_all(&done).and_then(|()| std::fs::rename(&path, done.join(&name))) {
            // Sent twice at worst: a label sent again is unchanged in the book.
            tracing::warn!(stage = "trainer", "labels file {name}: sent, but not moved to done/: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_bus::InProcessBus;
    use renal_messages::{BlobRef, Clinical, LesionQc, Provenance, Sex};

    fn lesion(case: &str, revision: u32) -> LesionV1 {
        let blob = BlobRef { key: "k".into(), sha256: "0".repeat(64), bytes: 1 };
        LesionV1 {
            version: 1,
            case_id: case.into(),
            first_instance_at: None,
            revision,
            site: "MAY".into(),
            patient_pseudonym: format!("p-{case}"),
            clinical: Clinical { age_years: Some(50), sex: Some(Sex::M) },
            tumour_volume_ml: 3.0,
            composites: [blob.clone(), blob.clone()],
            volumes: [blob.clone(), blob],
            qc: LesionQc { mask_voxels: [1, 1], n4_cv_before_after: [0.1, 0.1], reader_dice: vec![] },
            other_readers: Vec::new(),
            provenance: Provenance { code_version: "t".into(), produced_at: "t".into(), input_sha256: "0".repeat(64) },
        }
    }

    fn label(case: &str, value: &str) -> LabelV1 {
        let csv = format!("case_id,label\n{case},{value}\n");
        renal_labels::parse(csv.as_bytes(), None).unwrap().remove(0).unwrap()
    }

    /// One run of the loop over what is on `bus`, stopped after `ms`.
    fn run_for(config: &TrainerConfig, bus: &InProcessBus, ms: u64) -> TrainerStats {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let trainer = Trainer {
            config: config.clone(),
            train: config.validate().unwrap(),
            device: tch::Device::Cpu,
            store: renal_store::open(config.blob_store.as_str()).unwrap(),
            book: renal_labels::book::read(&book_path(config)).unwrap(),
            keys: None,
        };
        let (_tx, alerts) = tokio::sync::mpsc::unbounded_channel();
        rt.block_on(async { run(trainer, bus.clone(), alerts, tokio::time::sleep(Duration::from_millis(ms))).await })
            .unwrap()
    }

    #[test]
    fn labels_trigger_a_retrain_a_bad_message_is_dead_lettered_and_a_restart_counts_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TrainerConfig::new(
            dir.path().join("models"),
            dir.path().join("store"),
            dir.path().join("blobs").to_str().unwrap(),
            dir.path().join("state"),
        );
        config.triggers.new_labels = 2;
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let bus = InProcessBus::new(1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for l in [lesion("MAY-1", 1), lesion("MAY-1", 2), lesion("MAY-2", 1)] {
                bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
            }
            bus.send(topics::LABELS, "MAY-1", label("MAY-1", "benign").encode()).await.unwrap();
            bus.send(topics::LABELS, "MAY-x", b"not a label".to_vec()).await.unwrap();
            bus.send(topics::LABELS, "MAY-2", label("MAY-2", "malignant").encode()).await.unwrap();
        });
        let stats = run_for(&config, &bus, 1500);
        assert_eq!((stats.lesions, stats.labels, stats.dead_letters), (3, 3, 1));
        // The second label fired the trigger; with no model in the registry the retrain fails
        // with its reason instead of stopping the worker.
        assert_eq!((stats.retrains, stats.failed), (0, 1), "{stats:?}");
        let letter = renal_messages::DeadLetterV1::decode(&bus.records(topics::DEAD_TRAINER)[0].payload).unwrap();
        assert_eq!((letter.reason_code.as_str(), letter.source.key.as_str()), ("malformed_message", "MAY-x"));
        let book = renal_labels::book::read(&book_path(&config)).unwrap();
        assert_eq!(book.keys().collect::<Vec<_>>(), ["MAY-1", "MAY-2"]);

        // A restart reads both topics again: the labels are in the book already, so nothing
        // is due; a corrected diagnosis and a new label are.
        let again = run_for(&config, &bus, 800);
        assert_eq!((again.labels, again.failed), (3, 0), "{again:?}");
        rt.block_on(async {
            bus.send(topics::LABELS, "MAY-1", label("MAY-1", "malignant").encode()).await.unwrap();
            bus.send(topics::LABELS, "MAY-3", label("MAY-3", "benign").encode()).await.unwrap();
        });
        let third = run_for(&config, &bus, 1500);
        assert_eq!(third.failed, 1, "{third:?}");
        assert_eq!(renal_labels::book::read(&book_path(&config)).unwrap()["MAY-1"].label, "malignant");
    }

    #[test]
    fn label_files_dropped_in_the_folder_go_to_the_labels_topic_and_then_to_done() {
        let dir = tempfile::tempdir().unwrap();
        let drop = dir.path().join("labels");
        std::fs::create_dir_all(&drop).unwrap();
        std::fs::write(drop.join("a.csv"), "case_id,label\nMAY-1,benign\nMAY-2,unsure\n").unwrap();
        std::fs::write(drop.join("b.csv"), "no header at all").unwrap();
        std::fs::write(drop.join("notes.txt"), "not labels").unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(10);
        for f in ["a.csv", "b.csv"] {
            std::fs::File::options().write(true).open(drop.join(f)).unwrap().set_modified(old).unwrap();
        }
        let bus = InProcessBus::new(1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(send_label_files(&bus, &drop, None)).unwrap();
        assert_eq!(bus.records(topics::LABELS).len(), 1);
        let codes: Vec<String> = bus
            .records(topics::DEAD_LABELS)
            .iter()
            .map(|r| renal_messages::DeadLetterV1::decode(&r.payload).unwrap().source.key)
            .collect();
        assert_eq!(codes, ["a.csv:3", "b.csv"]);
        assert!(drop.join("done/a.csv").exists() && drop.join("done/b.csv").exists());
        assert!(drop.join("notes.txt").exists(), "only .csv files are taken");
        // A file still being written waits.
        std::fs::write(drop.join("c.csv"), "case_id,label\nMAY-3,benign\n").unwrap();
        rt.block_on(send_label_files(&bus, &drop, None)).unwrap();
        assert!(drop.join("c.csv").exists());
    }
}
