//! The ingest loop: drop folders in, `renal.cases` and the `cases` table out.
//!
//! Each site has a drop folder. Files are checked and de-identified ([`intake`]); the
//! de-identified instance is stored in the blob store (the file as received only in the
//! quarantine store, when one is configured) and handed to the [`Assembler`]. When a case is ready its row is committed to the `cases` table,
//! the message is sent and acknowledged, and only then are its files deleted (when
//! `move_processed` is on): a crash at any point leaves the files in place, and a restart
//! re-emits the same case under the same key. Files that can never be used are dead-lettered
//! and moved to `.rejected/`.
//!
//! Nothing here gives up on a store or broker that is briefly away: a file whose bytes cannot
//! be stored is read again at the next scan; a case whose row cannot be written waits in an
//! outbox for the next scan; sends retry with back-off until acknowledged.

use crate::assemble::{Added, Assembler, AssemblyConfig, CaseError};
use crate::config::{ConfigError, IngestConfig};
use crate::deid::{intake, Keys, Profile};
use crate::drop_folder::{file_key, list_files, move_under, remove_handled};
use crate::events::{CaseEmitted, FileRejected, IngestStarted, InstanceTaken, RecordFailed, StudyRejected};
use crate::table::{cases_batch, TABLE};
use renal_bus::{dead_letter, send_with_retry, Backoff, Bus, BusError, Output};
use renal_messages::topics::{self, Topic};
use renal_messages::{CaseV1, DeadLetterSource, Message};
use renal_store::{sha256_hex, TableWriter};
use renal_telemetry::emit;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the ingest loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The blob store cannot be opened.
    #[error("store: {0}")]
    Store(String),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Files parsed and stored.
    pub instances: u64,
    /// Duplicate instances ignored.
    pub duplicates: u64,
    /// Cases (revisions) emitted.
    pub cases: u64,
    /// Dead letters sent.
    pub dead_letters: u64,
    /// Store writes and sends that failed transiently and were tried again.
    pub retries: u64,
}

/// The map from remapped study and series UIDs back to the hospital's: one small file per
/// remapped UID, holding the original, written once (temporary name, then rename).
struct UidMap {
    root: PathBuf,
    written: HashSet<String>,
}

impl UidMap {
    fn new(root: &Path) -> Self {
        UidMap { root: root.to_path_buf(), written: HashSet::new() }
    }

    fn record(&mut self, pairs: &[(String, String)]) -> std::io::Result<()> {
        for (remapped, original) in pairs {
            if self.written.contains(remapped) {
                continue;
            }
            let path = self.root.join(remapped);
            if !path.exists() {
                std::fs::create_dir_all(&self.root)?;
                let tmp = self.root.join(format!(".{remapped}.tmp"));
                std::fs::write(&tmp, original)?;
                std::fs::rename(&tmp, &path)?;
            }
            self.written.insert(remapped.clone());
        }
        Ok(())
    }
}

/// The record of emitted studies: per study (named by a hash of its de-identified UID), the
/// last revision delivered and the SOP instance UIDs it contained, written after the case is on
/// the bus (a crash in between re-sends the case at the next start: an identical repeat, never a
/// loss).
struct EmittedRecord {
    root: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Emitted {
    revision: u32,
    instances: BTreeSet<String>,
}

impl EmittedRecord {
    fn path(&self, study_uid: &str) -> PathBuf {
        self.root.join(&sha256_hex(study_uid.as_bytes())[..32])
    }

    fn read(&self, study_uid: &str) -> Option<Emitted> {
        let bytes = std::fs::read(self.path(study_uid)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, study_uid: &str, emitted: &Emitted) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let path = self.path(study_uid);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(emitted).expect("record serialises"))?;
        std::fs::rename(&tmp, &path)
    }
}

/// The hospital's UID behind a remapped one, from a map ingest kept under `root`.
pub fn original_uid(root: &Path, remapped: &str) -> Option<String> {
    if remapped.is_empty() || !remapped.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None; // never a path outside the map
    }
    std::fs::read_to_string(root.join(remapped)).ok()
}

/// Whether to run until stopped or to drain what is there and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Scan, emit every complete case, dead-letter the rest, return (the embedded run).
    Batch,
    /// Scan every `scan_interval_ms` until shutdown.
    Continuous,
}

/// A file read into a study that is not yet emitted.
struct Pending {
    site: usize,
    path: PathBuf,
}

/// Send one message, however long the broker is away.
async fn deliver<B: Bus>(
    bus: &B,
    topic: Topic,
    key: &str,
    payload: Vec<u8>,
    stats: &mut IngestStats,
) -> Result<(), BusError> {
    let (_, failed) = send_with_retry(bus, &Output { topic, key: key.into(), payload }, Backoff::WORKER).await?;
    stats.retries += failed;
    Ok(())
}

/// The pause before the next scan: `scan_interval_ms`, or 20 times the last walk of the drop
/// folders when that is longer, so that with a whole cohort waiting (tens of thousands of files)
/// walking costs at most about a twentieth of a core.
fn scan_pause(scan_interval_ms: u64, walk: Duration) -> Duration {
    Duration::from_millis(scan_interval_ms.max(1)).max(walk * 20)
}

/// Run ingest until `shutdown` resolves (or, in batch mode, until the folders are drained).
pub async fn run<B: Bus>(
    cfg: &IngestConfig,
    secret: Vec<u8>,
    bus: B,
    mode: Mode,
    shutdown: impl std::future::Future<Output = ()>,
    progress: &(dyn Fn(&IngestStats) + Sync),
) -> Result<IngestStats, IngestError> {
    cfg.validate()?;
    let store = renal_store::open(&cfg.blob_store).map_err(|e| IngestError::Store(e.to_string()))?;
    let tables = TableWriter::new(&cfg.table_root);
    let quarantine = match &cfg.quarantine_store {
        Some(url) => Some(renal_store::open(url).map_err(|e| IngestError::Store(format!("quarantine store: {e}")))?),
        None => None,
    };
    let mut uid_map = cfg.uid_map_root.as_deref().map(UidMap::new);
    // Continuous mode only: a batch run (the embedded run) takes what is there now, and run
    // again on the same output folder it emits again.
    let record = (mode == Mode::Continuous).then(|| EmittedRecord { root: cfg.emitted_root() });
    let profile =
        Profile { keys: Keys::new(&secret), private_creators: cfg.private_creators.iter().cloned().collect() };
    let assembly = AssemblyConfig {
        quiet_period_ms: cfg.quiet_period_ms,
        incomplete_timeout_ms: cfg.incomplete_timeout_ms,
        rules: cfg.sites.iter().map(|s| (s.code.clone(), s.rules.clone())).collect(),
    };
    let settings_sha256 = sha256_hex(
        serde_json::to_string(&cfg.sites.iter().map(|s| (&s.code, &s.rules)).collect::<Vec<_>>())
            .expect("rules serialise")
            .as_bytes(),
    );
    let started = Instant::now();
    let mut asm = Assembler::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut files_of_study: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    // Cases assembled but not yet committed to the table (the store was unwritable).
    // With the instances each contains, for the record of emitted studies.
    let mut outbox: Vec<(CaseV1, BTreeSet<String>)> = Vec::new();
    let mut stats = IngestStats::default();
    // Site codes come from the configuration (a bounded set); each series starts at 0.
    let sites: Vec<&str> = cfg.sites.iter().map(|s| s.code.as_str()).collect();
    emit(IngestStarted { sites: &sites });
    tokio::pin!(shutdown);
    loop {
        // Scan: walk each drop folder, then read what is new.
        let mut walk = Duration::ZERO;
        for (site_index, site) in cfg.sites.iter().enumerate() {
            let walking = Instant::now();
            let new: Vec<PathBuf> = list_files(&site.drop_folder).into_iter().filter(|p| !seen.contains(p)).collect();
            walk += walking.elapsed();
            for path in new {
                if mode == Mode::Continuous && cfg.file_settle_ms > 0 {
                    let settled = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default().as_millis() as u64 >= cfg.file_settle_ms)
                        .unwrap_or(false);
                    if !settled {
                        continue; // still being written, or gone: look again next scan
                    }
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue; // still being written or vanished; try next scan
                };
                match intake(&bytes, &site.code, &profile) {
                    Ok(taken) => {
                        // The file as received (quarantine), the way back to the hospital's
                        // UIDs, then the de-identified instance: any of them failing leaves the
                        // file to be read again at the next scan.
                        let kept = quarantine
                            .as_ref()
                            .map_or(Ok(()), |q| q.put(&bytes).map(|_| ()).map_err(|e| e.to_string()));
                        let mapped = kept.and_then(|()| {
                            uid_map.as_mut().map_or(Ok(()), |m| m.record(&taken.uid_map).map_err(|e| e.to_string()))
                        });
                        let blob = match mapped.and_then(|()| store.put(&taken.bytes).map_err(|e| e.to_string())) {
                            Ok(b) => b,
                            Err(e) if mode == Mode::Batch => return Err(IngestError::Store(e)),
                            Err(_) => {
                                stats.retries += 1; // read again at the next scan
                                continue;
                            }
                        };
                        let inst = taken.instance;
                        seen.insert(path.clone());
                        let study = inst.study_uid.clone();
                        let now = started.elapsed().as_millis() as u64;
                        if !asm.holds(&study) {
                            if let Some(e) = record.as_ref().and_then(|r| r.read(&study)) {
                                asm.restore(&study, e.revision, e.instances);
                            }
                        }
                        match asm.add(&site.code, inst, blob, now) {
                            Added::New => {
                                stats.instances += 1;
                                emit(InstanceTaken { site: &site.code, outcome: "new" });
                                if cfg.move_processed {
                                    files_of_study.entry(study).or_default().push(Pending { site: site_index, path });
                                }
                            }
                            Added::Duplicate => {
                                stats.duplicates += 1;
                                emit(InstanceTaken { site: &site.code, outcome: "duplicate" });
                                // The instance is held already (its first copy's file goes when
                                // the case is sent) or was delivered: this copy adds nothing.
                                if cfg.move_processed {
                                    remove_handled(&path, &mut seen);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        seen.insert(path.clone());
                        let source = DeadLetterSource {
                            topic: None,
                            partition: None,
                            offset: None,
                            key: file_key(&site.code, &site.drop_folder, &path),
                        };
                        let letter = dead_letter("ingest", source, e.code(), e.to_string(), sha256_hex(&bytes));
                        deliver(&bus, topics::DEAD_INGEST, &letter.source.key, letter.encode(), &mut stats).await?;
                        stats.dead_letters += 1;
                        emit(FileRejected { site: &site.code, code: e.code() });
                        if cfg.move_processed {
                            move_under(&site.drop_folder, &path, ".rejected", &mut seen);
                        }
                    }
                }
            }
        }
        progress(&stats);
        // Emit what is ready. In batch mode nothing more will arrive: treat every study as quiet
        // and every incomplete one as timed out.
        let now = match mode {
            Mode::Batch => u64::MAX / 2,
            Mode::Continuous => started.elapsed().as_millis() as u64,
        };
        for result in asm.ready(now, &assembly, &*store) {
            match result {
                Ok(case) => {
                    let (_, instances) = asm.emitted(&case.study_uid).expect("a study just emitted is held");
                    outbox.push((case, instances));
                }
                // Writing the series manifests failed: the study stays ready for the next scan.
                Err(CaseError::Blob(e)) if mode == Mode::Batch => return Err(IngestError::Store(e.to_string())),
                Err(CaseError::Blob(_)) => stats.retries += 1,
                Err(e) => {
                    let (study_uid, code) = match &e {
                        CaseError::Unclassified { study_uid, .. } | CaseError::Incomplete { study_uid, .. } => {
                            (study_uid.clone(), e.code().unwrap_or("unknown"))
                        }
                        CaseError::Blob(_) => unreachable!("handled above"),
                    };
                    let key = format!("study:{}", &sha256_hex(study_uid.as_bytes())[..16]);
                    let source = DeadLetterSource { topic: None, partition: None, offset: None, key };
                    let letter = dead_letter("ingest", source, code, e.to_string(), sha256_hex(study_uid.as_bytes()));
                    deliver(&bus, topics::DEAD_INGEST, &letter.source.key, letter.encode(), &mut stats).await?;
                    stats.dead_letters += 1;
                    emit(StudyRejected { code });
                    if cfg.move_processed {
                        for f in files_of_study.remove(&study_uid).unwrap_or_default() {
                            move_under(&cfg.sites[f.site].drop_folder, &f.path, ".rejected", &mut seen);
                        }
                    }
                }
            }
        }
        let mut waiting = Vec::new();
        for (case, instances) in outbox.drain(..) {
            let date = &case.provenance.produced_at[..10];
            let key = format!("{}-r{}", case.case_id, case.revision);
            if let Err(e) = tables.write(TABLE, &case.site, date, &key, &cases_batch(&case, &settings_sha256)) {
                if mode == Mode::Batch {
                    return Err(IngestError::Store(e.to_string()));
                }
                stats.retries += 1;
                waiting.push((case, instances));
                continue;
            }
            deliver(&bus, topics::CASES, &case.case_id, case.encode(), &mut stats).await?;
            stats.cases += 1;
            // Not fatal: without the record, a restart sends this case again (a repeat).
            if let Some(Err(e)) =
                record.as_ref().map(|r| r.write(&case.study_uid, &Emitted { revision: case.revision, instances }))
            {
                emit(RecordFailed { error: e.to_string() });
            }
            emit(CaseEmitted { site: &case.site, revision: case.revision });
            if cfg.move_processed {
                for f in files_of_study.remove(&case.study_uid).unwrap_or_default() {
                    remove_handled(&f.path, &mut seen);
                }
            }
        }
        outbox = waiting;
        progress(&stats);
        if mode == Mode::Batch {
            return Ok(stats);
        }
        asm.forget_idle(now, cfg.study_retention_ms);
        tokio::select! {
            _ = &mut shutdown => return Ok(stats),
            _ = tokio::time::sleep(scan_pause(cfg.scan_interval_ms, walk)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_walk_stretches_the_pause_between_scans() {
        let ms = Duration::from_millis;
        assert_eq!(scan_pause(250, ms(2)), ms(250), "a quick walk keeps the configured interval");
        assert_eq!(scan_pause(250, ms(110)), ms(2_200), "a 110 ms walk waits 2.2 s");
        assert_eq!(scan_pause(0, Duration::ZERO), ms(1), "never a busy loop");
    }
}
