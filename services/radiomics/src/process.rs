//! The radiomics step: one `LesionV1` in, its features committed to the feature store, one
//! `FeaturesV1` out, or a typed error whose code is the dead-letter reason.
//!
//! For each series (T2, then T1C) the lesion's bias-corrected volume and primary mask are read
//! from the blob store (hash-checked) and extracted under every configured setting. The file is
//! committed (temporary name, fsync, rename) before the message is returned, so a redelivered
//! lesion rewrites the same file. No patient identifier reaches the table: rows carry the
//! lesion id and site only.

use crate::extract::{extract_series, ExtractError, SettingFeatures};
use crate::settings::{self, Setting};
use crate::table::{features_batch, reported_values, RowKey, TABLE};
use renal_bus::Failure;
use renal_imaging::{nifti, Volume};
use renal_messages::{BlobRef, FeaturesV1, LesionV1, Provenance, VolumeBlobs};
use renal_store::{BlobError, BlobStore, TableError, TableWriter};
use std::sync::Arc;

/// Why a lesion's features could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RadiomicsError {
    /// A blob could not be read (missing and corrupt blobs are dead letters, others retried).
    #[error("{what}: {source}")]
    Blob { what: String, source: BlobError },
    /// A volume bundle is not an image/mask pair, or a blob is not NIfTI.
    #[error("{what}: {reason}")]
    BadVolume { what: String, reason: String },
    /// The series cannot be extracted (mask off the image's grid, empty, too large).
    #[error("{role}: {source}")]
    Extract { role: &'static str, source: ExtractError },
    /// The lesion id or site cannot name a table file.
    #[error("{0}")]
    BadName(TableError),
    /// The feature store could not be written (retried).
    #[error("{0}")]
    Table(TableError),
}

impl Failure for RadiomicsError {
    fn code(&self) -> Option<&'static str> {
        match self {
            RadiomicsError::Blob { source, .. } => source.code(),
            RadiomicsError::BadVolume { .. } => Some("bad_volume"),
            RadiomicsError::Extract { source: ExtractError::GridMismatch { .. }, .. } => Some("mask_mismatch"),
            RadiomicsError::Extract { source: ExtractError::EmptyMask, .. } => Some("empty_mask"),
            RadiomicsError::Extract { source: ExtractError::TooLarge { .. }, .. } => Some("too_large"),
            RadiomicsError::BadName(_) => Some("bad_message"),
            RadiomicsError::Table(_) => None,
        }
    }
}

/// What the step needs besides the lesion: where to read and write, and the settings.
#[derive(Clone)]
pub struct Extractor {
    /// Blob store holding the volumes.
    pub store: Arc<dyn BlobStore>,
    /// The feature store.
    pub tables: TableWriter,
    /// Extraction settings.
    pub settings: Arc<Vec<Setting>>,
    /// Their hash ([`settings::sha256`]).
    pub settings_sha256: String,
}

impl Extractor {
    /// An extractor over these stores and settings.
    pub fn new(store: Arc<dyn BlobStore>, tables: TableWriter, settings: Vec<Setting>) -> Extractor {
        let settings_sha256 = settings::sha256(&settings);
        Extractor { store, tables, settings: Arc::new(settings), settings_sha256 }
    }

    fn get(&self, blob: &BlobRef, what: impl Fn() -> String) -> Result<Vec<u8>, RadiomicsError> {
        self.store.get(blob).map_err(|source| RadiomicsError::Blob { what: what(), source })
    }

    /// A series' corrected image and primary mask.
    fn fetch_series(&self, bundle: &BlobRef, role: &str) -> Result<(Volume<f32>, Volume<u8>), RadiomicsError> {
        let bytes = self.get(bundle, || format!("{role} volume bundle"))?;
        let blobs: VolumeBlobs = serde_json::from_slice(&bytes).map_err(|e| RadiomicsError::BadVolume {
            what: format!("{role} volume bundle"),
            reason: format!("not a volume pair: {e}"),
        })?;
        let decode = |bytes: Vec<u8>, what: &str| {
            nifti::decode(&bytes)
                .map(|n| n.volume)
                .map_err(|e| RadiomicsError::BadVolume { what: format!("{role} {what}"), reason: e.to_string() })
        };
        let image = decode(self.get(&blobs.image, || format!("{role} image"))?, "image")?;
        let mask = decode(self.get(&blobs.mask, || format!("{role} mask"))?, "mask")?.to_mask();
        Ok((image, mask))
    }

    /// Extract both series of `lesion` (whose message hashes to `input_sha256`), commit the
    /// table file and describe it.
    pub fn process(&self, lesion: &LesionV1, input_sha256: &str) -> Result<FeaturesV1, RadiomicsError> {
        let mut per_series: Vec<(&str, Vec<SettingFeatures>)> = Vec::new();
        for (role, bundle) in ["T2", "T1C"].into_iter().zip(&lesion.volumes) {
            let (image, mask) = self.fetch_series(bundle, role)?;
            let sets = extract_series(&image, &mask, &self.settings)
                .map_err(|source| RadiomicsError::Extract { role, source })?;
            per_series.push((role, sets));
        }
        let provenance = Provenance::now(input_sha256.into());
        let key = RowKey {
            case_id: &lesion.case_id,
            revision: lesion.revision,
            site: &lesion.site,
            produced_at: &provenance.produced_at,
            code_version: &provenance.code_version,
            settings_sha256: &self.settings_sha256,
            input_sha256,
        };
        let series: Vec<(&str, &[SettingFeatures])> = per_series.iter().map(|(r, s)| (*r, s.as_slice())).collect();
        let batch = features_batch(&key, &series);
        let file_key = format!("{}-r{}", lesion.case_id, lesion.revision);
        let file =
            self.tables.write(TABLE, &lesion.site, &provenance.produced_at[..10], &file_key, &batch).map_err(|e| {
                match e {
                    e @ TableError::BadName { .. } => RadiomicsError::BadName(e),
                    e => RadiomicsError::Table(e),
                }
            })?;
        Ok(FeaturesV1 {
            version: 1,
            case_id: lesion.case_id.clone(),
            revision: lesion.revision,
            site: lesion.site.clone(),
            table: TABLE.into(),
            file: file.to_string_lossy().into_owned(),
            features: reported_values(&batch) as u32,
            settings_sha256: self.settings_sha256.clone(),
            provenance,
        })
    }
}
