//! The radiomics stage: `renal.lesions` in, one Parquet file per lesion revision in the feature
//! store (`features` table, partitioned by site and date of production) and a `renal.features`
//! message out; dead letters to `renal.dead.radiomics`.
//!
//! For each series (T2, then T1C) the lesion's bias-corrected volume and primary mask are read
//! from the blob store (hash-checked) and extracted under every configured setting. The file is
//! committed (temporary name, fsync, rename) before the message is sent, and the input's offset
//! is stored only after that, so a crash redelivers the lesion and the rewrite replaces the same
//! file. No patient identifier reaches the table: rows carry the lesion id and site only.
//!
//! Dead-letter reasons: `bad_message` (not a LesionV1), `missing_blob`, `corrupt_blob`,
//! `bad_volume` (not a volume bundle, or not NIfTI), `mask_mismatch` (mask not on the image's
//! grid), `empty_mask`, `too_large` (the region around the mask exceeds
//! [`crate::extract::MAX_CROP_VOXELS`]). A store that cannot be written is retried.

use crate::extract::{extract_series, ExtractError, SettingFeatures};
use crate::settings::{self, Setting, SettingsError};
use crate::table::{features_batch, reported_values, RowKey, TABLE};
use renal_bus::{run_stage, Bus, BusError, Outcome, Output, Record, StageConfig, StageStats};
use renal_imaging::{nifti, Volume};
use renal_messages::civil::now_rfc3339;
use renal_messages::{topics, BlobRef, FeaturesV1, LesionV1, Message, Provenance, VolumeBlobs};
use renal_store::{sha256_hex, BlobError, BlobStore, TableWriter};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

/// Consumer group of the radiomics workers.
pub const GROUP: &str = "renal-radiomics";

/// `[radiomics]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiomicsConfig {
    /// Blob store shared with preprocess: a folder or `s3://bucket[/prefix]`.
    pub blob_store: String,
    /// Root of the feature store (the `features` table goes under it).
    pub table_root: PathBuf,
    /// A settings file (JSON, see [`crate::settings`]); absent: the study's 32 settings.
    #[serde(default)]
    pub settings: Option<PathBuf>,
}

impl RadiomicsConfig {
    /// The settings to extract under.
    pub fn load_settings(&self) -> Result<Vec<Setting>, SettingsError> {
        match &self.settings {
            Some(path) => settings::read(path),
            None => Ok(settings::study_grid()),
        }
    }
}

fn reject(code: &str, reason: String) -> Outcome {
    Outcome::Reject { code: code.into(), reason }
}

fn get(store: &dyn BlobStore, blob: &BlobRef, what: &str) -> Result<Vec<u8>, Outcome> {
    store.get(blob).map_err(|e| match e {
        BlobError::Missing { .. } => reject("missing_blob", format!("{what}: {e}")),
        BlobError::Corrupt { .. } => reject("corrupt_blob", format!("{what}: {e}")),
        e => Outcome::Retry(format!("{what}: {e}")),
    })
}

/// A series' corrected image and primary mask.
fn fetch_series(store: &dyn BlobStore, bundle: &BlobRef, role: &str) -> Result<(Volume<f32>, Volume<u8>), Outcome> {
    let bytes = get(store, bundle, &format!("{role} volume bundle"))?;
    let blobs: VolumeBlobs = serde_json::from_slice(&bytes)
        .map_err(|e| reject("bad_volume", format!("{role} volume bundle is not a volume pair: {e}")))?;
    let decode = |bytes: Vec<u8>, what: &str| {
        nifti::decode(&bytes).map(|n| n.volume).map_err(|e| reject("bad_volume", format!("{role} {what}: {e}")))
    };
    let image = decode(get(store, &blobs.image, &format!("{role} image"))?, "image")?;
    let mask = decode(get(store, &blobs.mask, &format!("{role} mask"))?, "mask")?.to_mask();
    Ok((image, mask))
}

/// Extract, commit and announce one lesion.
pub fn process(
    record: &Record,
    store: &dyn BlobStore,
    tables: &TableWriter,
    settings: &[Setting],
    settings_sha256: &str,
) -> Outcome {
    let lesion = match LesionV1::decode(&record.payload) {
        Ok(l) => l,
        Err(e) => return reject("bad_message", e.to_string()),
    };
    let mut per_series: Vec<(&str, Vec<SettingFeatures>)> = Vec::new();
    for (role, bundle) in ["T2", "T1C"].into_iter().zip(&lesion.volumes) {
        let (image, mask) = match fetch_series(store, bundle, role) {
            Ok(x) => x,
            Err(o) => return o,
        };
        match extract_series(&image, &mask, settings) {
            Ok(sets) => per_series.push((role, sets)),
            Err(e) => {
                let code = match e {
                    ExtractError::GridMismatch { .. } => "mask_mismatch",
                    ExtractError::EmptyMask => "empty_mask",
                    ExtractError::TooLarge { .. } => "too_large",
                };
                return reject(code, format!("{role}: {e}"));
            }
        }
    }
    let produced_at = now_rfc3339();
    let input_sha256 = sha256_hex(&record.payload);
    let key = RowKey {
        case_id: &lesion.case_id,
        revision: lesion.revision,
        site: &lesion.site,
        produced_at: &produced_at,
        code_version: env!("CARGO_PKG_VERSION"),
        settings_sha256,
        input_sha256: &input_sha256,
    };
    let series: Vec<(&str, &[SettingFeatures])> = per_series.iter().map(|(r, s)| (*r, s.as_slice())).collect();
    let batch = features_batch(&key, &series);
    let file_key = format!("{}-r{}", lesion.case_id, lesion.revision);
    let file = match tables.write(TABLE, &lesion.site, &produced_at[..10], &file_key, &batch) {
        Ok(f) => f,
        Err(e @ renal_store::TableError::BadName { .. }) => return reject("bad_message", e.to_string()),
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let msg = FeaturesV1 {
        version: 1,
        case_id: lesion.case_id.clone(),
        revision: lesion.revision,
        site: lesion.site.clone(),
        table: TABLE.into(),
        file: file.to_string_lossy().into_owned(),
        features: reported_values(&batch) as u32,
        settings_sha256: settings_sha256.into(),
        provenance: Provenance { code_version: env!("CARGO_PKG_VERSION").into(), produced_at, input_sha256 },
    };
    Outcome::Done(vec![Output { topic: topics::FEATURES, key: msg.case_id.clone(), payload: msg.encode() }])
}

/// Run until `shutdown` resolves; `progress` gets the number of lesions taken so far.
pub async fn run<B: Bus>(
    cfg: &RadiomicsConfig,
    settings: Vec<Setting>,
    store: Arc<dyn BlobStore>,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let settings_sha256 = Arc::new(settings::sha256(&settings));
    let settings = Arc::new(settings);
    let tables = Arc::new(TableWriter::new(&cfg.table_root));
    let stage = StageConfig::new("radiomics", GROUP, vec![topics::LESIONS]);
    let mut taken = 0u64;
    run_stage(
        bus,
        stage,
        |record: Record| {
            let (store, tables, settings, sha) =
                (store.clone(), tables.clone(), settings.clone(), settings_sha256.clone());
            taken += 1;
            progress(taken);
            async move {
                tokio::task::spawn_blocking(move || process(&record, &*store, &tables, &settings, &sha))
                    .await
                    .unwrap_or_else(|e| reject("panicked", e.to_string()))
            }
        },
        shutdown,
    )
    .await
}
