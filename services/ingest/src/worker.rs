//! The ingest worker: drop folders in, `renal.cases` and the `cases` table out.
//!
//! Each site has a drop folder. Files are parsed (header only), stored in the blob store, and
//! handed to the [`Assembler`]. When a case is ready its row is committed to the `cases` table,
//! the message is sent and acknowledged, and only then are its files moved to `.done/` (when
//! `move_processed` is on): a crash at any point leaves the files in place, and a restart
//! re-emits the same case under the same key. Files that can never be used are dead-lettered
//! and moved to `.rejected/`.

use crate::assemble::{Added, Assembler, AssemblyConfig, CaseError};
use crate::classify::Rules;
use crate::instance;
use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use renal_bus::{Bus, BusError};
use renal_messages::topics;
use renal_messages::{CaseV1, DeadLetterSource, DeadLetterV1, Message, Role};
use renal_store::{sha256_hex, TableWriter};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn default_quiet_period_ms() -> u64 {
    5_000
}
fn default_incomplete_timeout_ms() -> u64 {
    600_000
}
fn default_scan_interval_ms() -> u64 {
    1_000
}
fn default_file_settle_ms() -> u64 {
    2_000
}
fn default_study_retention_ms() -> u64 {
    86_400_000
}
fn default_secret_env() -> String {
    "RENAL_PSEUDONYM_SECRET".into()
}

/// One site's drop folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Site code (HUP, MAY, ...), used in keys, partitions and metric labels.
    pub code: String,
    /// Folder the site's exports land in (searched recursively).
    pub drop_folder: PathBuf,
    /// Series classification rules; the defaults fit common vendor names.
    #[serde(default)]
    pub rules: Rules,
}

/// A DICOM C-STORE receiver that lands instances in a site's drop folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScpConfig {
    /// Site whose drop folder receives the instances.
    pub site: String,
    /// Called AE title to answer to.
    pub ae_title: String,
    /// Address to listen on, e.g. `0.0.0.0:11112`.
    pub bind: String,
    /// `fsync` (default): an instance is on stable storage before success is answered;
    /// `page_cache`: in the kernel's cache, which survives a crash of the worker but not of
    /// the machine, for disks whose synced-write bandwidth is below the sites' send rate.
    #[serde(default)]
    pub durability: crate::scp::Durability,
}

/// Ingest worker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// One entry per site.
    pub sites: Vec<SiteConfig>,
    /// Where DICOM instances and series manifests go: a folder, or `s3://bucket[/prefix]` for
    /// S3 or an S3-compatible server (credentials and endpoint from the AWS environment
    /// variables, see `renal_store::object`).
    pub blob_store: String,
    /// Table store root (the `cases` table).
    pub table_root: PathBuf,
    /// Environment variable that holds the pseudonym secret (never put the secret in a file).
    #[serde(default = "default_secret_env")]
    pub pseudonym_secret_env: String,
    /// Emit a complete study only after this long without new instances, ms.
    #[serde(default = "default_quiet_period_ms")]
    pub quiet_period_ms: u64,
    /// Dead-letter a study still incomplete this long after its last instance, ms.
    #[serde(default = "default_incomplete_timeout_ms")]
    pub incomplete_timeout_ms: u64,
    /// How often drop folders are scanned, ms.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// A file is read only once it has not been modified for this long, ms, so a sender that
    /// writes in place is not read half-way (senders that write under a dot-name and rename
    /// are safe at 0). Ignored in batch mode.
    #[serde(default = "default_file_settle_ms")]
    pub file_settle_ms: u64,
    /// Keep an emitted study in memory this long after its last instance, ms, so late
    /// instances make a revision; after that it is forgotten (memory stays bounded) and late
    /// instances are dead-lettered as incomplete. Continuous mode only.
    #[serde(default = "default_study_retention_ms")]
    pub study_retention_ms: u64,
    /// Move files to `.done/` or `.rejected/` inside their drop folder once handled. A
    /// long-running worker should: only then does its memory of files already read stay bounded.
    #[serde(default)]
    pub move_processed: bool,
    /// C-STORE receivers started by `renal worker ingest` (none by default).
    #[serde(default)]
    pub scp: Vec<ScpConfig>,
}

/// Why the ingest worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Settings are unusable.
    #[error("ingest config: {0}")]
    Config(String),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The blob or table store failed.
    #[error("store: {0}")]
    Store(String),
}

impl IngestConfig {
    /// Settings with every default, for these sites and stores.
    pub fn new(sites: Vec<SiteConfig>, blob_store: impl Into<String>, table_root: PathBuf) -> Self {
        IngestConfig {
            sites,
            blob_store: blob_store.into(),
            table_root,
            pseudonym_secret_env: default_secret_env(),
            quiet_period_ms: default_quiet_period_ms(),
            incomplete_timeout_ms: default_incomplete_timeout_ms(),
            scan_interval_ms: default_scan_interval_ms(),
            file_settle_ms: default_file_settle_ms(),
            study_retention_ms: default_study_retention_ms(),
            move_processed: false,
            scp: Vec::new(),
        }
    }

    /// Check settings at start-up.
    pub fn validate(&self) -> Result<(), IngestError> {
        if self.sites.is_empty() {
            return Err(IngestError::Config("no sites configured".into()));
        }
        let mut codes = std::collections::BTreeSet::new();
        for s in &self.sites {
            if !codes.insert(&s.code) {
                return Err(IngestError::Config(format!("site {} configured twice", s.code)));
            }
            if !s.drop_folder.is_dir() {
                return Err(IngestError::Config(format!(
                    "drop folder of {} is not a folder: {}",
                    s.code,
                    s.drop_folder.display()
                )));
            }
        }
        for scp in &self.scp {
            if !codes.contains(&scp.site) {
                return Err(IngestError::Config(format!("scp for unknown site {}", scp.site)));
            }
            if scp.ae_title.is_empty() || scp.ae_title.len() > 16 {
                return Err(IngestError::Config(format!("AE title {:?} must be 1-16 characters", scp.ae_title)));
            }
        }
        if self.quiet_period_ms > self.incomplete_timeout_ms {
            return Err(IngestError::Config("quiet_period_ms exceeds incomplete_timeout_ms".into()));
        }
        Ok(())
    }
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
}

/// Whether to run until stopped or to drain what is there and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Scan, emit every complete case, dead-letter the rest, return (the embedded run).
    Batch,
    /// Scan every `scan_interval_ms` until shutdown.
    Continuous,
}

struct Pending {
    site: usize,
    path: PathBuf,
}

/// The `cases` table row of a case.
pub fn cases_batch(case: &CaseV1, settings_sha256: &str) -> RecordBatch {
    let series = |role: Role| case.series.iter().find(|s| s.role == role);
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v.to_string()])) };
    let i = |v: Option<i32>| -> ArrayRef { Arc::new(Int32Array::from(vec![v])) };
    RecordBatch::try_from_iter(vec![
        ("case_id", s(&case.case_id)),
        ("revision", i(Some(case.revision as i32))),
        ("site", s(&case.site)),
        ("patient_pseudonym", s(&case.patient_pseudonym)),
        ("study_uid", s(&case.study_uid)),
        ("study_date", s(&case.study_date)),
        ("age_years", i(case.clinical.age_years.map(|a| a as i32))),
        ("sex", Arc::new(StringArray::from(vec![case.clinical.sex.map(|x| format!("{x:?}"))])) as ArrayRef),
        ("t2_series_uid", s(series(Role::T2).map(|x| x.series_uid.as_str()).unwrap_or(""))),
        ("t1c_series_uid", s(series(Role::T1C).map(|x| x.series_uid.as_str()).unwrap_or(""))),
        ("t2_instances", i(series(Role::T2).map(|x| x.instances as i32))),
        ("t1c_instances", i(series(Role::T1C).map(|x| x.instances as i32))),
        ("segmentations", i(Some(case.segmentations.len() as i32))),
        ("produced_at", s(&case.provenance.produced_at)),
        ("code_version", s(&case.provenance.code_version)),
        ("settings_sha256", s(settings_sha256)),
        ("input_sha256", s(&case.provenance.input_sha256)),
    ])
    .expect("columns have one row each")
}

/// A dead-letter key for a file that names no patient: the site, a hash of the folder path
/// (export tools often name folders after patients), and the file name.
pub fn file_key(site: &str, drop_folder: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(drop_folder).unwrap_or(path);
    let dir = rel.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{site}:{}/{name}", &sha256_hex(dir.as_bytes())[..16])
}

/// Every file under `root`, recursively, skipping hidden entries (`.done`, `.rejected`, files
/// still being written under a dot-name), sorted.
pub fn list_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// An ingest dead letter: ingest's inputs are files and studies, not topic records.
fn dead_letter(code: &str, reason: String, key: String, input_sha256: String) -> DeadLetterV1 {
    DeadLetterV1 {
        version: 1,
        stage: "ingest".into(),
        reason_code: code.into(),
        reason,
        source: DeadLetterSource { topic: None, partition: None, offset: None, key },
        input_sha256,
        at: renal_messages::civil::now_rfc3339(),
    }
}

/// Move a handled file into `folder` (`.done`, `.rejected`) of its drop folder and forget it.
fn move_under(drop: &Path, path: &Path, folder: &str, seen: &mut BTreeSet<PathBuf>) {
    let rel = path.strip_prefix(drop).unwrap_or(path);
    let to = drop.join(folder).join(rel);
    if let Some(parent) = to.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::rename(path, to);
    // Hidden folders are not scanned, so a moved file need not be remembered: the seen set
    // stays as small as the drop folder.
    seen.remove(path);
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
    let assembly = AssemblyConfig {
        quiet_period_ms: cfg.quiet_period_ms,
        incomplete_timeout_ms: cfg.incomplete_timeout_ms,
        pseudonym_secret: secret,
        rules: cfg.sites.iter().map(|s| (s.code.clone(), s.rules.clone())).collect(),
        code_version: env!("CARGO_PKG_VERSION").into(),
    };
    let settings_sha256 = sha256_hex(
        serde_json::to_string(&cfg.sites.iter().map(|s| (&s.code, &s.rules)).collect::<Vec<_>>())
            .expect("rules serialise")
            .as_bytes(),
    );
    let started = Instant::now();
    let mut asm = Assembler::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut files_of_study: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    let mut stats = IngestStats::default();
    tokio::pin!(shutdown);
    loop {
        // Scan.
        for (site_index, site) in cfg.sites.iter().enumerate() {
            for path in list_files(&site.drop_folder) {
                if seen.contains(&path) {
                    continue;
                }
                if mode == Mode::Continuous && cfg.file_settle_ms > 0 {
                    let settled = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default().as_millis() as u64 >= cfg.file_settle_ms)
                        .unwrap_or(false);
                    if !settled {
                        continue; // still being written, or gone: look again next scan
                    }
                }
                seen.insert(path.clone());
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(_) => {
                        seen.remove(&path); // still being written or vanished; try next scan
                        continue;
                    }
                };
                match instance::parse(&bytes) {
                    Ok(inst) => {
                        let blob = store.put(&bytes).map_err(|e| IngestError::Store(e.to_string()))?;
                        let study = inst.study_uid.clone();
                        let now = started.elapsed().as_millis() as u64;
                        match asm.add(&site.code, inst, blob, now) {
                            Added::New => stats.instances += 1,
                            Added::Duplicate => stats.duplicates += 1,
                        }
                        if cfg.move_processed {
                            files_of_study.entry(study).or_default().push(Pending { site: site_index, path });
                        }
                    }
                    Err(e) => {
                        let letter = dead_letter(
                            e.code(),
                            e.to_string(),
                            file_key(&site.code, &site.drop_folder, &path),
                            sha256_hex(&bytes),
                        );
                        bus.send(topics::DEAD_INGEST, &letter.source.key, letter.encode()).await?;
                        stats.dead_letters += 1;
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
                Ok(mut case) => {
                    case.provenance.produced_at = renal_messages::civil::now_rfc3339();
                    let date = &case.provenance.produced_at[..10];
                    let key = format!("{}-r{}", case.case_id, case.revision);
                    tables
                        .write("cases", &case.site, date, &key, &cases_batch(&case, &settings_sha256))
                        .map_err(|e| IngestError::Store(e.to_string()))?;
                    bus.send(topics::CASES, &case.case_id, case.encode()).await?;
                    stats.cases += 1;
                    if cfg.move_processed {
                        for f in files_of_study.remove(&case.study_uid).unwrap_or_default() {
                            move_under(&cfg.sites[f.site].drop_folder, &f.path, ".done", &mut seen);
                        }
                    }
                }
                Err(CaseError::Blob(e)) => return Err(IngestError::Store(e.to_string())),
                Err(e) => {
                    let (study_uid, code) = match &e {
                        CaseError::Unclassified { study_uid, .. } | CaseError::Incomplete { study_uid, .. } => {
                            (study_uid.clone(), e.code().unwrap_or("unknown"))
                        }
                        CaseError::Blob(_) => unreachable!("handled above"),
                    };
                    let letter = dead_letter(
                        code,
                        e.to_string(),
                        format!("study:{}", &sha256_hex(study_uid.as_bytes())[..16]),
                        sha256_hex(study_uid.as_bytes()),
                    );
                    bus.send(topics::DEAD_INGEST, &letter.source.key, letter.encode()).await?;
                    stats.dead_letters += 1;
                    if cfg.move_processed {
                        for f in files_of_study.remove(&study_uid).unwrap_or_default() {
                            move_under(&cfg.sites[f.site].drop_folder, &f.path, ".rejected", &mut seen);
                        }
                    }
                }
            }
        }
        progress(&stats);
        if mode == Mode::Batch {
            return Ok(stats);
        }
        asm.forget_idle(now, cfg.study_retention_ms);
        tokio::select! {
            _ = &mut shutdown => return Ok(stats),
            _ = tokio::time::sleep(std::time::Duration::from_millis(cfg.scan_interval_ms)) => {}
        }
    }
}
