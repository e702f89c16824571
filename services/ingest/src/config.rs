//! `[ingest]`: the sites and their drop folders, the stores, the pseudonym secret's source,
//! the assembly timings and the C-STORE receivers.

use crate::classify::Rules;
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
/// The environment variable that holds the de-identification secret unless the settings name
/// another.
pub const DEFAULT_SECRET_ENV: &str = "RENAL_PSEUDONYM_SECRET";

fn default_secret_env() -> String {
    DEFAULT_SECRET_ENV.into()
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
    /// Calling AE titles (the site's scanners and PACS) allowed to store; an association from
    /// any other is rejected. Empty (the default): any calling AE title, which the worker warns
    /// about at start-up. The called AE title must always be `ae_title`.
    #[serde(default)]
    pub calling_ae_titles: Vec<String>,
    /// Associations served at once; one more is rejected as transient ("local limit exceeded")
    /// and the sender retries later.
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// DICOM over TLS (PS3.15 Annex B): with this section the receiver speaks TLS only (1.2
    /// or 1.3); a plain connection fails its handshake. None (the default): plain TCP.
    #[serde(default)]
    pub tls: Option<ScpTls>,
}

/// The receiver's TLS identity and, optionally, the CA its senders' certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScpTls {
    /// The receiver's certificate chain, PEM (its own certificate first).
    pub certificate: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1), unencrypted: protect it with file
    /// permissions or a secret mount.
    pub private_key: PathBuf,
    /// CA certificates (PEM) that senders' certificates must chain to: every sender then has to
    /// present one (mutual TLS, as DCMTK's `storescu +tls` does). None: any client, no
    /// certificate asked for (the AE title checks still apply).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_max_associations() -> usize {
    16
}

impl ScpConfig {
    /// A receiver for `site` as `ae_title` on `bind`, with every other setting at its default.
    pub fn new(site: &str, ae_title: &str, bind: &str) -> ScpConfig {
        ScpConfig {
            site: site.into(),
            ae_title: ae_title.into(),
            bind: bind.into(),
            durability: Default::default(),
            calling_ae_titles: Vec::new(),
            max_associations: default_max_associations(),
            tls: None,
        }
    }
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
    /// Environment variable that holds the de-identification secret (never put the secret in
    /// a file): it keys the patient and accession pseudonyms, the remapped UIDs and the date
    /// shifts. Changing it gives every patient, study and lesion new identities.
    #[serde(default = "default_secret_env")]
    pub pseudonym_secret_env: String,
    /// Where the map from remapped study and series UIDs back to the hospital's is kept (a
    /// folder, one file per remapped UID): the one place original UIDs exist after ingest, to
    /// be mounted for the results stage only. None (the default): the map is not kept.
    #[serde(default)]
    pub uid_map_root: Option<PathBuf>,
    /// Where the record of emitted studies is kept (a folder, one small file per study: its
    /// de-identified SOP instance UIDs and last revision), so that after a restart the files of
    /// a study already delivered (a resend, or files left by a crash before they were deleted)
    /// are taken as duplicates and deleted rather than assembled again. Continuous mode (the
    /// worker) only. Default: `<table_root>/_ingest_emitted`.
    #[serde(default)]
    pub emitted_root: Option<PathBuf>,
    /// Where instances are kept as received, identifiers and all (a folder or `s3://...`), for
    /// an operator who must keep them; None (the default): only de-identified instances are
    /// stored anywhere.
    #[serde(default)]
    pub quarantine_store: Option<String>,
    /// Private creators (e.g. `SIEMENS CSA HEADER`) whose private attributes survive
    /// de-identification; every other private attribute is removed.
    #[serde(default)]
    pub private_creators: Vec<String>,
    /// Emit a complete study only after this long without new instances, ms.
    #[serde(default = "default_quiet_period_ms")]
    pub quiet_period_ms: u64,
    /// Dead-letter a study still incomplete this long after its last instance, ms.
    #[serde(default = "default_incomplete_timeout_ms")]
    pub incomplete_timeout_ms: u64,
    /// How often drop folders are scanned, ms. The pause stretches to 20 times the last walk of
    /// the folders when that is longer, so a large backlog of waiting files costs at most about a
    /// twentieth of a core in walking.
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
    /// Take handled files out of the drop folder: a file whose case was sent is deleted (its
    /// de-identified copy is in the blob store, the file as received in the quarantine store
    /// when one is configured), an unusable one is moved to `.rejected/`. A long-running worker
    /// should: only then does its memory of files already read stay bounded.
    #[serde(default)]
    pub move_processed: bool,
    /// C-STORE receivers started by `renal worker ingest` (none by default).
    #[serde(default)]
    pub scp: Vec<ScpConfig>,
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("ingest config: {0}")]
pub struct ConfigError(pub String);

impl IngestConfig {
    /// Settings with every default, for these sites and stores.
    pub fn new(sites: Vec<SiteConfig>, blob_store: impl Into<String>, table_root: PathBuf) -> Self {
        IngestConfig {
            sites,
            blob_store: blob_store.into(),
            table_root,
            pseudonym_secret_env: default_secret_env(),
            uid_map_root: None,
            emitted_root: None,
            quarantine_store: None,
            private_creators: Vec::new(),
            quiet_period_ms: default_quiet_period_ms(),
            incomplete_timeout_ms: default_incomplete_timeout_ms(),
            scan_interval_ms: default_scan_interval_ms(),
            file_settle_ms: default_file_settle_ms(),
            study_retention_ms: default_study_retention_ms(),
            move_processed: false,
            scp: Vec::new(),
        }
    }

    /// The folder of the record of emitted studies.
    pub fn emitted_root(&self) -> PathBuf {
        self.emitted_root.clone().unwrap_or_else(|| self.table_root.join("_ingest_emitted"))
    }

    /// The pseudonym secret, from the environment variable the settings name.
    pub fn secret(&self) -> Result<Vec<u8>, ConfigError> {
        match std::env::var(&self.pseudonym_secret_env) {
            Ok(s) if !s.is_empty() => Ok(s.into_bytes()),
            _ => Err(ConfigError(format!(
                "pseudonym secret: environment variable {} is not set",
                self.pseudonym_secret_env
            ))),
        }
    }

    /// Check settings at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sites.is_empty() {
            return Err(ConfigError("no sites configured".into()));
        }
        let mut codes = std::collections::BTreeSet::new();
        for s in &self.sites {
            if !codes.insert(&s.code) {
                return Err(ConfigError(format!("site {} configured twice", s.code)));
            }
            if !s.drop_folder.is_dir() {
                return Err(ConfigError(format!(
                    "drop folder of {} is not a folder: {}",
                    s.code,
                    s.drop_folder.display()
                )));
            }
        }
        for scp in &self.scp {
            if !codes.contains(&scp.site) {
                return Err(ConfigError(format!("scp for unknown site {}", scp.site)));
            }
            for ae in std::iter::once(&scp.ae_title).chain(&scp.calling_ae_titles) {
                if ae.trim().is_empty() || ae.len() > 16 {
                    return Err(ConfigError(format!("AE title {ae:?} must be 1-16 characters")));
                }
            }
            if scp.max_associations == 0 {
                return Err(ConfigError(format!("scp {}: max_associations must be at least 1", scp.ae_title)));
            }
        }
        if self.quiet_period_ms > self.incomplete_timeout_ms {
            return Err(ConfigError("quiet_period_ms exceeds incomplete_timeout_ms".into()));
        }
        Ok(())
    }
}

/// The sites of a cohort folder as `renal synth` writes it (`<input>/<SITE>/...`): every
/// sub-folder except hidden ones and `nifti`, each its site's drop folder with the default
/// rules, in site-code order.
pub fn sites_of_cohort(input: &Path) -> Result<Vec<SiteConfig>, ConfigError> {
    let entries =
        std::fs::read_dir(input).map_err(|e| ConfigError(format!("reading input folder {}: {e}", input.display())))?;
    let mut sites = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() && !name.starts_with('.') && name != "nifti" {
            sites.push(SiteConfig { code: name.to_uppercase(), drop_folder: e.path(), rules: Default::default() });
        }
    }
    sites.sort_by(|a, b| a.code.cmp(&b.code));
    if sites.is_empty() {
        return Err(ConfigError(format!(
            "{} has no site folders (expected <input>/<SITE>/... as renal synth writes)",
            input.display()
        )));
    }
    Ok(sites)
}
