//! The inference step: a batch of lesions in, one `ScoresV1` or one typed error per lesion out.
//! Each lesion's two composites are read from the blob store (hash-checked), run through the
//! bundle's T2 and T1C networks together with the rest of the batch, and answered with both
//! probabilities, both 16-value embeddings and the bundle version.

use renal_bus::Failure;
use renal_cnn::score::Scorer;
use renal_imaging::composite::decode_blob;
use renal_messages::{LesionV1, Provenance, ScoresV1};
use renal_store::{BlobError, BlobStore};
use sha2::{Digest, Sha256};

/// Why one lesion cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A composite could not be read (missing and corrupt ones are dead letters).
    #[error("{role} composite: {source}")]
    Blob { role: &'static str, source: BlobError },
    /// A composite is not 3 x S x S float32 (S from 8 to 1,024), or has non-finite values.
    #[error("{role} composite {reason}")]
    BadComposite { role: &'static str, reason: String },
}

impl Failure for InferenceError {
    fn code(&self) -> Option<&'static str> {
        match self {
            InferenceError::Blob { source, .. } => source.code(),
            InferenceError::BadComposite { .. } => Some("bad_composite"),
        }
    }
}

/// A lesion's two composites, T2 then T1C.
pub fn fetch(lesion: &LesionV1, store: &dyn BlobStore) -> Result<[Vec<f32>; 2], InferenceError> {
    let mut out: [Vec<f32>; 2] = Default::default();
    for (slot, (blob, role)) in out.iter_mut().zip(lesion.composites.iter().zip(["T2", "T1C"])) {
        let bytes = store.get(blob).map_err(|source| InferenceError::Blob { role, source })?;
        let (_, values) =
            decode_blob(&bytes).map_err(|e| InferenceError::BadComposite { role, reason: e.to_string() })?;
        *slot = values;
    }
    Ok(out)
}

/// Score a batch: `lesions` with the SHA-256 of the message each came in, one answer per
/// lesion in the same order. Lesions whose composites cannot be read are answered with their
/// error; the rest go through the networks as one batch.
pub fn score_batch(
    lesions: &[(LesionV1, String)],
    store: &dyn BlobStore,
    scorer: &Scorer,
) -> Vec<Result<ScoresV1, InferenceError>> {
    let fetched: Vec<Result<[Vec<f32>; 2], InferenceError>> = lesions.iter().map(|(l, _)| fetch(l, store)).collect();
    let inputs: Vec<[&[f32]; 2]> =
        fetched.iter().filter_map(|f| f.as_ref().ok()).map(|c| [c[0].as_slice(), c[1].as_slice()]).collect();
    let mut scores = if inputs.is_empty() { Vec::new() } else { scorer.score(&inputs) }.into_iter();
    let version = &scorer.manifest().version;
    lesions
        .iter()
        .zip(fetched)
        .map(|((lesion, input_sha256), composites)| {
            composites?;
            let s = scores.next().expect("one score per fetched lesion");
            let mut h = Sha256::new();
            h.update(input_sha256.as_bytes());
            h.update(version.as_bytes());
            Ok(ScoresV1 {
                version: 1,
                case_id: lesion.case_id.clone(),
                revision: lesion.revision,
                site: lesion.site.clone(),
                t2_probability: s.probability[0],
                t1c_probability: s.probability[1],
                embeddings: s.embedding,
                model_version: version.clone(),
                provenance: Provenance::now(renal_base::hex::encode(h.finalize())),
            })
        })
        .collect()
}
