//! The topic graph ([`topics`]) and the message types that ride on it.
//!
//! Every payload is JSON with a `version` field; a consumer rejects versions it does not know
//! (dead letter, reason `unsupported_version`) instead of guessing. Pixel data never rides on a
//! topic: messages carry [`BlobRef`]s (store key, SHA-256, size). Patient identity never rides
//! either: ingest replaces the patient ID with a keyed pseudonym, and no message has a field for
//! names, IDs or birth dates. Each message type has a JSON Schema in `schemas/messages/`, checked
//! against these types by `tests/message_schemas.rs`.
//!
//! ```
//! use renal_messages::{CaseV1, Clinical, Role, SeriesRef, BlobRef, Provenance, Sex, topics};
//!
//! let blob = BlobRef { key: "sha256/ab/abcd".into(), sha256: "abcd".into(), bytes: 10 };
//! let case = CaseV1 {
//!     version: 1,
//!     case_id: "HUP-0001".into(),
//!     first_instance_at: None,
//!     revision: 1,
//!     site: "HUP".into(),
//!     patient_pseudonym: "9f2c".into(),
//!     study_uid: "2.25.1".into(),
//!     study_date: "2019-05-02".into(),
//!     clinical: Clinical { age_years: Some(61), sex: Some(Sex::M) },
//!     series: vec![SeriesRef { role: Role::T2, series_uid: "2.25.2".into(), description: "T2 HASTE".into(),
//!                              manufacturer: "SIEMENS".into(), field_strength_t: Some(1.5), instances: 24, blob }],
//!     segmentations: vec![],
//!     provenance: Provenance { code_version: "0.1.0".into(), produced_at: "2026-11-27T18:00:00Z".into(),
//!                              input_sha256: "abcd".into() },
//! };
//! let json = serde_json::to_string(&case).unwrap();
//! assert_eq!(serde_json::from_str::<CaseV1>(&json).unwrap(), case);
//! assert_eq!(topics::CASES.payload, "CaseV1");
//! ```

pub mod topics;

use serde::{Deserialize, Serialize};

/// A reference to bytes in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Store key.
    pub key: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// How a message was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of the code that produced it: the build's git commit ([`code_version`]).
    pub code_version: String,
    /// RFC 3339 UTC time of production.
    pub produced_at: String,
    /// SHA-256 over the inputs that determined it.
    pub input_sha256: String,
}

impl Provenance {
    /// The one provenance builder: made now, by this build, from inputs that hash to
    /// `input_sha256`.
    pub fn now(input_sha256: String) -> Provenance {
        Provenance { code_version: code_version().into(), produced_at: renal_base::now_rfc3339(), input_sha256 }
    }
}

static CODE_VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record the build's git commit, once, at start-up (the `renal` binary does, from what its
/// build script read). Later calls are ignored, so every message of a process names one build.
pub fn set_code_version(commit: &str) {
    let _ = CODE_VERSION.set(commit.to_string());
}

/// What provenance and bundles name as the code that made them: the commit given to
/// [`set_code_version`], or the crate version marked `+unknown` where none was (library tests).
pub fn code_version() -> &'static str {
    CODE_VERSION.get().map(String::as_str).unwrap_or(concat!(env!("CARGO_PKG_VERSION"), "+unknown"))
}

/// Series role within a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// T2-weighted.
    T2,
    /// T1-weighted after contrast.
    T1C,
}

/// Patient sex as recorded in DICOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    /// Male.
    M,
    /// Female.
    F,
    /// Other.
    O,
}

/// Clinical values read from the headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clinical {
    /// Age in completed years at the study, when PatientAge or the dates give it.
    pub age_years: Option<u32>,
    /// Sex, when recorded.
    pub sex: Option<Sex>,
}

/// One MR series of a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRef {
    /// T2 or T1C.
    pub role: Role,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SeriesDescription.
    pub description: String,
    /// Manufacturer (bounded set, fit for metric labels after normalisation).
    pub manufacturer: String,
    /// MagneticFieldStrength, T.
    pub field_strength_t: Option<f64>,
    /// Number of instances.
    pub instances: u32,
    /// The series manifest in the blob store (instance blobs in slice order).
    pub blob: BlobRef,
}

/// A series manifest, the blob a [`SeriesRef`] points to: the series' instances in slice order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesManifest {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// Unit normal the instances are sorted along.
    pub normal: [f64; 3],
    /// (SOPInstanceUID, position along the normal in mm, instance blob), ascending position.
    pub instances: Vec<(String, f64, BlobRef)>,
}

/// A preprocessed volume, the blob [`LesionV1::volumes`] points to: the corrected image and
/// its primary lesion mask, each a NIfTI-1 file (`.nii.gz` bytes) on the series' grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeBlobs {
    /// Bias-corrected (and for T2 histogram-matched) image, float32.
    pub image: BlobRef,
    /// Primary reader's lesion mask, uint8 0/1.
    pub mask: BlobRef,
}

/// One segmentation of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegRef {
    /// Role of the segmented series.
    pub role: Role,
    /// Reader code (ContentCreatorName), e.g. `R1`.
    pub reader: String,
    /// The SEG's own SeriesInstanceUID.
    pub seg_series_uid: String,
    /// The series it segments.
    pub referenced_series_uid: String,
    /// The SEG object in the blob store.
    pub blob: BlobRef,
}

/// `renal.cases`: a lesion ready for preprocessing. Keyed by `case_id`; a later `revision`
/// replaces an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id (the study's accession, plus a suffix when a study holds several lesions).
    pub case_id: String,
    /// When the lesion's first DICOM instance reached ingest, RFC 3339: where its end-to-end
    /// latency starts (null when unknown; absent from messages made before it was recorded).
    #[serde(default)]
    pub first_instance_at: Option<String>,
    /// 1 for the first emission, incremented when late instances change the case.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// HMAC-SHA256 of the patient ID under the deployment's secret, hex; groups lesions by patient.
    pub patient_pseudonym: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// StudyDate, ISO.
    pub study_date: String,
    /// Age and sex.
    pub clinical: Clinical,
    /// The T2 and T1C series.
    pub series: Vec<SeriesRef>,
    /// Their segmentations.
    pub segmentations: Vec<SegRef>,
    /// How it was made.
    pub provenance: Provenance,
}

/// Quality-control values of a preprocessed lesion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionQc {
    /// Mask voxels of the T2 and T1C primary masks.
    pub mask_voxels: [u64; 2],
    /// Coefficient of variation inside the body before and after N4, T1C.
    pub n4_cv_before_after: [f64; 2],
    /// Dice of every other reader's mask with the primary reader's, per series (empty when
    /// only the primary reader segmented the lesion).
    pub reader_dice: Vec<ReaderDice>,
}

/// Agreement of one reader's mask with the primary reader's on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderDice {
    /// T2 or T1C.
    pub role: Role,
    /// The other reader.
    pub reader: String,
    /// Dice coefficient with the primary reader's mask, 0..1.
    pub dice: f64,
}

/// `renal.lesions`: preprocessing output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id.
    pub case_id: String,
    /// When the lesion's first DICOM instance reached ingest, RFC 3339: where its end-to-end
    /// latency starts (null when unknown; absent from messages made before it was recorded).
    #[serde(default)]
    pub first_instance_at: Option<String>,
    /// Case revision it was made from.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// Patient pseudonym (for grouped splits).
    pub patient_pseudonym: String,
    /// Age and sex, carried for the clinical model.
    pub clinical: Clinical,
    /// Tumour volume from the T1C primary mask, mL.
    pub tumour_volume_ml: f64,
    /// 2.5D composites, T2 then T1C: 3 x 200 x 200 float32 little-endian, channel-major (see
    /// `renal_imaging::composite` for channel order and scaling).
    pub composites: [BlobRef; 2],
    /// Bias-corrected volumes with masks ([`VolumeBlobs`] as JSON), T2 then T1C.
    pub volumes: [BlobRef; 2],
    /// QC values.
    pub qc: LesionQc,
    /// Composites and tumour volume from each other reader's masks (same corrected volumes),
    /// for evaluating the models on every segmenter's masks; empty when only the primary
    /// reader segmented the lesion.
    #[serde(default)]
    pub other_readers: Vec<ReaderComposites>,
    /// How it was made.
    pub provenance: Provenance,
}

/// A lesion as another reader segmented it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderComposites {
    /// The reader.
    pub reader: String,
    /// 2.5D composites built on this reader's masks, T2 then T1C.
    pub composites: [BlobRef; 2],
    /// Tumour volume from this reader's T1C mask, mL.
    pub tumour_volume_ml: f64,
}

/// `renal.features`: a committed feature-store file for a lesion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id.
    pub case_id: String,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// Feature-store table.
    pub table: String,
    /// Path of the committed Parquet file, relative to the store root.
    pub file: String,
    /// Feature values in the file (non-null feature cells over its rows).
    pub features: u32,
    /// SHA-256 of the extraction settings.
    pub settings_sha256: String,
    /// How it was made.
    pub provenance: Provenance,
}

/// `renal.scores`: CNN outputs for a lesion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id.
    pub case_id: String,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// P(malignant) of the T2 network.
    pub t2_probability: f64,
    /// P(malignant) of the T1C network.
    pub t1c_probability: f64,
    /// Penultimate-layer embeddings, T2 then T1C.
    pub embeddings: [Vec<f32>; 2],
    /// Model bundle version used.
    pub model_version: String,
    /// How it was made.
    pub provenance: Provenance,
}

/// `renal.predictions`: the calibrated ensemble output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id.
    pub case_id: String,
    /// When the lesion's first DICOM instance reached ingest, RFC 3339: where its end-to-end
    /// latency starts (null when unknown; absent from messages made before it was recorded).
    #[serde(default)]
    pub first_instance_at: Option<String>,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// Calibrated P(malignant).
    pub probability: f64,
    /// `benign` or `malignant` at `threshold`.
    pub class: String,
    /// Decision threshold on `probability`.
    pub threshold: f64,
    /// Base model outputs the meta-classifier read: T2, T1C, clinical (raw, uncalibrated).
    pub inputs: [f64; 3],
    /// Ensemble bundle version (clinical model, meta-classifier, calibrator, threshold).
    pub model_version: String,
    /// CNN bundle version (T2 and T1C networks) that produced the first two inputs.
    pub cnn_model_version: String,
    /// How it was made.
    pub provenance: Provenance,
}

/// `renal.labels`: ground truth for a lesion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelV1 {
    /// Always 1.
    pub version: u32,
    /// Lesion id.
    pub case_id: String,
    /// `benign` or `malignant`.
    pub label: String,
    /// Histologic subtype when known.
    pub subtype: Option<String>,
    /// `histopathology` or `imaging`.
    pub diagnosis_source: String,
    /// How it was made.
    pub provenance: Provenance,
}

/// `renal.models`: something happened in the model registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEventV1 {
    /// Always 1.
    pub version: u32,
    /// `trained` (a new version entered the registry), `promoted` (a deployment's pointer
    /// moved to it), `rejected` (a challenger the trainer did not promote) or `rolled_back`
    /// (a deployment's pointer moved back to it).
    pub event: String,
    /// Model version concerned: the ensemble bundle's (`ens-...`), which names its CNN bundle.
    pub model_version: String,
    /// Registry key of the ensemble bundle file, with its hash and size.
    pub bundle: BlobRef,
    /// Deployment whose pointer moved, or whose champion a rejected challenger was compared
    /// with (null for `trained`).
    #[serde(default)]
    pub deployment: Option<String>,
    /// Why, in words (a promotion's or rejection's comparison, a rollback's cause).
    #[serde(default)]
    pub reason: Option<String>,
    /// How it was made.
    pub provenance: Provenance,
}

/// Where a dead letter came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSource {
    /// Input topic, when the input was a message.
    pub topic: Option<String>,
    /// Partition of that message.
    pub partition: Option<i32>,
    /// Offset of that message.
    pub offset: Option<i64>,
    /// Its key (a case id), or the file name / association for ingest (never a patient identifier).
    pub key: String,
}

/// `renal.dead.<stage>`: an input that can never succeed, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV1 {
    /// Always 1.
    pub version: u32,
    /// Stage that gave up.
    pub stage: String,
    /// Machine-readable reason (snake_case, bounded set per stage).
    pub reason_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// What failed.
    pub source: DeadLetterSource,
    /// SHA-256 of the failed input bytes, for replay and de-duplication.
    pub input_sha256: String,
    /// RFC 3339 UTC time.
    pub at: String,
    /// The failed input message itself, base64 (standard alphabet, padded), so `renal replay`
    /// can send it again after a fix; absent for inputs that are not messages (ingest's files,
    /// label rows), for joins of several messages, and for inputs over
    /// [`DEAD_LETTER_INPUT_MAX_BYTES`].
    #[serde(default)]
    pub input_base64: Option<String>,
}

/// The largest input a dead letter carries (base64 makes it a third larger; a Kafka message is
/// at most 1 MiB by default).
pub const DEAD_LETTER_INPUT_MAX_BYTES: usize = 512 * 1024;

/// `renal.replays`: one dead letter re-driven under a replay id, written before the input is
/// sent again, so a replay id re-drives each letter at most once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayV1 {
    /// Always 1.
    pub version: u32,
    /// The operator's name for this replay (e.g. `fix-2026-12-07-lesion-wait`).
    pub replay_id: String,
    /// The dead letter: its topic, partition and offset.
    pub dead_letter: DeadLetterSource,
    /// Stage and reason code of the letter.
    pub stage: String,
    /// Its reason code.
    pub reason_code: String,
    /// Where the input is sent again.
    pub to_topic: String,
    /// SHA-256 of the input re-driven.
    pub input_sha256: String,
    /// RFC 3339 UTC time.
    pub at: String,
}

/// Why bytes could not be decoded as a message.
#[derive(Debug)]
pub struct DecodeError {
    /// Payload type expected.
    pub expected: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a valid {}: {}", self.expected, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A versioned payload.
pub trait Message: Serialize + for<'de> Deserialize<'de> {
    /// Type name, as in [`topics::Topic::payload`].
    const NAME: &'static str;
    /// The only version this build understands.
    const VERSION: u32 = 1;
    /// The message's version field.
    fn version(&self) -> u32;

    /// Encode as JSON bytes.
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("message types serialise infallibly")
    }

    /// Decode JSON bytes, refusing unknown versions.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| DecodeError { expected: Self::NAME, reason: e.to_string() })?;
        if m.version() != Self::VERSION {
            return Err(DecodeError {
                expected: Self::NAME,
                reason: format!("unsupported version {} (this build reads {})", m.version(), Self::VERSION),
            });
        }
        Ok(m)
    }
}

macro_rules! message {
    ($t:ty, $name:literal) => {
        impl Message for $t {
            const NAME: &'static str = $name;
            fn version(&self) -> u32 {
                self.version
            }
        }
    };
}

message!(CaseV1, "CaseV1");
message!(LesionV1, "LesionV1");
message!(FeaturesV1, "FeaturesV1");
message!(ScoresV1, "ScoresV1");
message!(PredictionV1, "PredictionV1");
message!(LabelV1, "LabelV1");
message!(ModelEventV1, "ModelEventV1");
message!(DeadLetterV1, "DeadLetterV1");
message!(ReplayV1, "ReplayV1");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let label = LabelV1 {
            version: 2,
            case_id: "X".into(),
            label: "benign".into(),
            subtype: None,
            diagnosis_source: "imaging".into(),
            provenance: Provenance { code_version: "0".into(), produced_at: "t".into(), input_sha256: "h".into() },
        };
        let err = LabelV1::decode(&label.encode()).unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
        assert!(LabelV1::decode(b"{not json").unwrap_err().to_string().starts_with("not a valid LabelV1"));
    }
}
