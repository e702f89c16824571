//! The preprocess step: from a `renal.cases` message to a `renal.lesions` message.
//!
//! For each of the lesion's two series (T2, T1C): read the instances the series manifest lists
//! from the blob store and stack them ([`renal_dicom::read`]), read the primary reader's SEG as
//! a mask on that grid (and the other readers' SEGs, for their Dice with it and their own
//! composites), correct the bias
//! field with N4 inside a body mask ([`body_mask`]), then match the T2 histogram to the T1C's (the study's order), build the 2.5D composites, and put
//! the volumes (NIfTI) and composites (raw float32) in the blob store. [`preprocess`] is the
//! whole step as one function; [`crate::run`] runs it on the bus.
//!
//! Failures that will not go away on a retry (unreadable series, empty or misplaced masks,
//! constant images, blobs that are missing or corrupt) are [`PreprocessError`]s with a reason
//! code the worker dead-letters; other blob store failures are retried.

use crate::config::PreprocessSettings;
use renal_bus::Failure;
use renal_dicom::read::{read_seg_mask, read_series, ReadError};
use renal_imaging::composite::{composite, CompositeError};
use renal_imaging::histmatch::{match_histograms, MatchError, MatchSettings};
use renal_imaging::n4::{n4, N4Error};
use renal_imaging::{nifti, Volume};
use renal_messages::{
    BlobRef, CaseV1, LesionQc, LesionV1, Provenance, ReaderComposites, ReaderDice, Role, SeriesManifest, VolumeBlobs,
};
use renal_store::{BlobError, BlobStore};

/// Why a case could not be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The blob store failed (retried, unless the blob is missing or corrupt).
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    /// A manifest blob is not what ingest writes.
    #[error("{role:?} series manifest: {reason}")]
    Manifest { role: Role, reason: String },
    /// The case lacks a series or its primary segmentation.
    #[error("case has no {what}")]
    Missing { what: String },
    /// A series or segmentation cannot be read.
    #[error("{role:?}: {source}")]
    Read { role: Role, source: ReadError },
    /// N4 refused the image (constant, nothing positive inside the mask).
    #[error("{role:?} N4: {source}")]
    N4 { role: Role, source: N4Error },
    /// Histogram matching refused the images.
    #[error("T2 to T1C histogram matching: {0}")]
    Match(#[from] MatchError),
    /// The composite could not be built.
    #[error("{role:?} composite: {source}")]
    Composite { role: Role, source: CompositeError },
}

impl Failure for PreprocessError {
    /// Reason code for the dead letter; `None` for transient failures.
    fn code(&self) -> Option<&'static str> {
        match self {
            PreprocessError::Blob(e) => e.code(),
            PreprocessError::Manifest { .. } => Some("bad_manifest"),
            PreprocessError::Missing { .. } => Some("missing_series"),
            PreprocessError::Read { source: ReadError::EmptyMask, .. } => Some("empty_mask"),
            PreprocessError::Read { .. } => Some("unreadable_series"),
            PreprocessError::N4 { source: N4Error::Constant, .. } => Some("constant_image"),
            PreprocessError::N4 { .. } => Some("n4_failed"),
            PreprocessError::Match(_) => Some("histmatch_failed"),
            PreprocessError::Composite { source: CompositeError::EmptyMask, .. } => Some("empty_mask"),
            PreprocessError::Composite { .. } => Some("composite_failed"),
        }
    }
}

/// Voxels above 10% of the 98th percentile of the positive voxels: the body, not the air.
/// (Otsu's threshold, as in SimpleITK's N4 example, picks only the brightest tissue on
/// abdominal MRI and leaves most of the field uncorrected.)
pub fn body_mask(v: &Volume<f32>) -> Volume<u8> {
    let mut positive: Vec<f32> = v.data.iter().copied().filter(|&x| x > 0.0 && x.is_finite()).collect();
    let threshold = if positive.is_empty() {
        f32::INFINITY
    } else {
        let at = ((positive.len() - 1) as f64 * 0.98) as usize;
        let (_, p98, _) = positive.select_nth_unstable_by(at, f32::total_cmp);
        0.1 * *p98
    };
    Volume { geometry: v.geometry.clone(), data: v.data.iter().map(|&x| u8::from(x > threshold)).collect() }
}

/// Coefficient of variation of `data` inside `mask` (the N4 QC value, on the body mask).
pub fn masked_cv(data: &[f32], mask: &[u8]) -> f64 {
    renal_stats::coefficient_of_variation(data.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&x, _)| f64::from(x)))
}

struct Series {
    corrected: Volume<f32>,
    mask: Volume<u8>,
    cv_before_after: [f64; 2],
    reader_dice: Vec<ReaderDice>,
    /// The other readers' masks on the same grid, by reader name.
    others: Vec<(String, Volume<u8>)>,
}

fn load_series(
    case: &CaseV1,
    role: Role,
    store: &dyn BlobStore,
    cfg: &PreprocessSettings,
) -> Result<Series, PreprocessError> {
    let series = case
        .series
        .iter()
        .find(|s| s.role == role)
        .ok_or_else(|| PreprocessError::Missing { what: format!("{role:?} series") })?;
    let mut segs: Vec<_> = case.segmentations.iter().filter(|s| s.referenced_series_uid == series.series_uid).collect();
    // The primary reader first, then the others by name.
    segs.sort_by_key(|s| (s.reader != cfg.primary_reader, s.reader.clone()));
    let seg = *segs.first().ok_or_else(|| PreprocessError::Missing { what: format!("{role:?} segmentation") })?;
    let manifest: SeriesManifest = serde_json::from_slice(&store.get(&series.blob)?)
        .map_err(|e| PreprocessError::Manifest { role, reason: e.to_string() })?;
    let instances =
        manifest.instances.iter().map(|(_, _, blob)| store.get(blob)).collect::<Result<Vec<_>, BlobError>>()?;
    let volume = read_series(&instances).map_err(|source| PreprocessError::Read { role, source })?.volume;
    let mask = read_seg_mask(&store.get(&seg.blob)?, &volume.geometry)
        .map_err(|source| PreprocessError::Read { role, source })?;
    let mut reader_dice = Vec::new();
    let mut others = Vec::new();
    for other in &segs[1..] {
        let m = read_seg_mask(&store.get(&other.blob)?, &volume.geometry)
            .map_err(|source| PreprocessError::Read { role, source })?;
        reader_dice.push(ReaderDice {
            role,
            reader: other.reader.clone(),
            dice: renal_imaging::dice(&mask.data, &m.data),
        });
        others.push((other.reader.clone(), m));
    }
    let body = body_mask(&volume);
    let out = n4(&volume, Some(&body), &cfg.n4()).map_err(|source| PreprocessError::N4 { role, source })?;
    let cv_before_after = [masked_cv(&volume.data, &body.data), masked_cv(&out.corrected.data, &body.data)];
    Ok(Series { corrected: out.corrected, mask, cv_before_after, reader_dice, others })
}

fn put_volume(store: &dyn BlobStore, s: &Series, role: Role) -> Result<BlobRef, PreprocessError> {
    let image = store.put(&nifti::encode_gz(&s.corrected, &format!("renal {role:?} preprocessed")))?;
    let mask = store.put(&nifti::encode_gz(&s.mask, &format!("renal {role:?} primary mask")))?;
    let bundle = VolumeBlobs { image, mask };
    Ok(store.put(&serde_json::to_vec(&bundle).expect("volume bundle serialises"))?)
}

fn put_composite(
    store: &dyn BlobStore,
    s: &Series,
    mask: &Volume<u8>,
    role: Role,
    cfg: &PreprocessSettings,
) -> Result<BlobRef, PreprocessError> {
    let c = composite(&s.corrected, mask, cfg.composite_size, cfg.channel_order)
        .map_err(|source| PreprocessError::Composite { role, source })?;
    Ok(store.put(&renal_imaging::composite::encode_f32_le(&c.data))?)
}

/// Composites of every other reader who segmented both series, on the same corrected
/// volumes. A reader whose masks give no composite (an empty mask, say) is left out: the
/// lesion itself is fine, and that reader's Dice in the QC values shows the problem.
fn other_readers(
    store: &dyn BlobStore,
    t2: &Series,
    t1c: &Series,
    cfg: &PreprocessSettings,
) -> Result<Vec<ReaderComposites>, PreprocessError> {
    let mut out = Vec::new();
    for (reader, t1c_mask) in &t1c.others {
        let Some((_, t2_mask)) = t2.others.iter().find(|(r, _)| r == reader) else { continue };
        let built =
            (put_composite(store, t2, t2_mask, Role::T2, cfg), put_composite(store, t1c, t1c_mask, Role::T1C, cfg));
        match built {
            (Ok(a), Ok(b)) => out.push(ReaderComposites {
                reader: reader.clone(),
                composites: [a, b],
                tumour_volume_ml: t1c_mask.foreground_ml(),
            }),
            (Err(PreprocessError::Blob(e)), _) | (_, Err(PreprocessError::Blob(e))) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(out)
}

/// Preprocess one case; blobs go to `store`.
pub fn preprocess(case: &CaseV1, store: &dyn BlobStore, cfg: &PreprocessSettings) -> Result<LesionV1, PreprocessError> {
    let mut t2 = load_series(case, Role::T2, store, cfg)?;
    let t1c = load_series(case, Role::T1C, store, cfg)?;
    let settings =
        MatchSettings { levels: cfg.histogram_levels, match_points: cfg.match_points, threshold_at_mean: true };
    t2.corrected.data = match_histograms(&t2.corrected.data, &t1c.corrected.data, &settings)?;
    let composites =
        [put_composite(store, &t2, &t2.mask, Role::T2, cfg)?, put_composite(store, &t1c, &t1c.mask, Role::T1C, cfg)?];
    let other_readers = other_readers(store, &t2, &t1c, cfg)?;
    let volumes = [put_volume(store, &t2, Role::T2)?, put_volume(store, &t1c, Role::T1C)?];
    Ok(LesionV1 {
        version: 1,
        case_id: case.case_id.clone(),
        first_instance_at: case.first_instance_at.clone(),
        revision: case.revision,
        site: case.site.clone(),
        patient_pseudonym: case.patient_pseudonym.clone(),
        clinical: case.clinical.clone(),
        tumour_volume_ml: t1c.mask.foreground_ml(),
        composites,
        volumes,
        qc: LesionQc {
            mask_voxels: [t2.mask.count_nonzero() as u64, t1c.mask.count_nonzero() as u64],
            n4_cv_before_after: t1c.cv_before_after,
            reader_dice: t2.reader_dice.iter().chain(&t1c.reader_dice).cloned().collect(),
        },
        other_readers,
        provenance: Provenance::now(renal_store::sha256_hex(&serde_json::to_vec(case).expect("case serialises"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_mask_finds_the_body_where_otsu_would_not() {
        // The N4 anchor phantom: Otsu keeps only the fat ring (Dice 0.34 with the body).
        let p = renal_synth::bias_phantom::bias_phantom([128, 128, 10], [3.0, 3.0, 10.0], 4.0, 5);
        let m = body_mask(&p.image);
        let d = renal_imaging::dice(&m.data, &p.body.data);
        assert!(d >= 0.95, "Dice with the body {d}");
    }
}
