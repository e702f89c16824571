//! What ingest needs from one DICOM instance, read from its header only.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use renal_dicom::read::{numbers, text};

/// SOP Class UID of MR Image Storage.
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// SOP Class UID of Enhanced MR Image Storage (recognised, not yet supported).
pub const ENHANCED_MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4.1";
/// SOP Class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// Why an instance can never be ingested. `code()` is the dead-letter reason code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstanceError {
    /// Not parseable as DICOM (truncated, not DICOM, corrupt encoding).
    #[error("unreadable DICOM: {0}")]
    Unreadable(String),
    /// A modality this pipeline does not take (CT, US, ...).
    #[error("modality {modality} ({sop_class}) is not MR or SEG")]
    NotMr { modality: String, sop_class: String },
    /// An MR/SEG storage class we recognise but do not read (e.g. Enhanced MR).
    #[error("SOP class {0} is not supported yet")]
    UnsupportedSopClass(String),
    /// A required attribute is absent or empty.
    #[error("missing {0}")]
    MissingTag(&'static str),
    /// Geometry attributes are absent or malformed.
    #[error("missing or malformed geometry: {0}")]
    BadGeometry(String),
    /// Readable, but de-identifying it failed (it cannot be stored without identifiers).
    #[error("de-identification failed: {0}")]
    Deidentification(String),
}

impl InstanceError {
    /// Dead-letter reason code.
    pub fn code(&self) -> &'static str {
        match self {
            InstanceError::Unreadable(_) => "unreadable",
            InstanceError::NotMr { .. } => "not_mr",
            InstanceError::UnsupportedSopClass(_) => "unsupported_sop_class",
            InstanceError::MissingTag(_) => "missing_tag",
            InstanceError::BadGeometry(_) => "missing_geometry",
            InstanceError::Deidentification(_) => "deidentification_failed",
        }
    }
}

/// Slice geometry of an MR instance.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGeometry {
    /// ImagePositionPatient, mm.
    pub position: [f64; 3],
    /// ImageOrientationPatient (row then column direction cosines).
    pub orientation: [f64; 6],
    /// PixelSpacing (row spacing, column spacing), mm.
    pub pixel_spacing: [f64; 2],
    /// Rows, Columns.
    pub rows: u16,
    /// Columns.
    pub columns: u16,
}

impl SliceGeometry {
    /// Unit normal of the slice plane (row x column direction).
    pub fn normal(&self) -> [f64; 3] {
        let r = &self.orientation[0..3];
        let c = &self.orientation[3..6];
        let n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-12);
        [n[0] / len, n[1] / len, n[2] / len]
    }
}

/// MR-specific header values.
#[derive(Debug, Clone, PartialEq)]
pub struct MrInfo {
    /// SeriesDescription (may be empty).
    pub description: String,
    /// ScanningSequence.
    pub scanning_sequence: String,
    /// ScanOptions.
    pub scan_options: String,
    /// EchoTime, ms.
    pub echo_time_ms: Option<f64>,
    /// ContrastBolusAgent present and non-empty.
    pub contrast: bool,
    /// Manufacturer.
    pub manufacturer: String,
    /// MagneticFieldStrength, T.
    pub field_strength_t: Option<f64>,
    /// Slice geometry.
    pub geometry: SliceGeometry,
    /// InstanceNumber, if any (never used for ordering).
    pub instance_number: Option<i64>,
}

/// SEG-specific header values.
#[derive(Debug, Clone, PartialEq)]
pub struct SegInfo {
    /// The segmented series.
    pub referenced_series_uid: String,
    /// The SOP instances of that series the SEG lists (what completeness waits for).
    pub referenced_instances: Vec<String>,
    /// ContentCreatorName (reader code).
    pub reader: String,
}

/// The kind-specific part of an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An MR image slice.
    Mr(MrInfo),
    /// A segmentation.
    Seg(SegInfo),
}

/// Header values of one instance. Read from an instance as received (to check it), its
/// identifiers must not be logged or passed on; read from the de-identified instance
/// ([`crate::deid::intake`]) they are pseudonyms.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// AccessionNumber (may be empty; after de-identification the accession pseudonym).
    pub accession: String,
    /// PatientID (after de-identification the patient pseudonym).
    pub patient_id: String,
    /// PatientSex (`M`, `F`, `O` or empty).
    pub sex: String,
    /// PatientAge, e.g. `061Y` (may be empty).
    pub age: String,
    /// PatientBirthDate `YYYYMMDD` (may be empty).
    pub birth_date: String,
    /// StudyDate `YYYYMMDD` (may be empty).
    pub study_date: String,
    /// MR or SEG specifics.
    pub kind: Kind,
}

fn required(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<String, InstanceError> {
    let v = text(obj, tag);
    if v.is_empty() {
        Err(InstanceError::MissingTag(name))
    } else {
        Ok(v)
    }
}

fn seq_items(obj: &InMemDicomObject, tag: Tag) -> Vec<&InMemDicomObject> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.items()).map(|items| items.iter().collect()).unwrap_or_default()
}

/// Parse the header of a DICOM file held in memory (pixel data is not decoded).
pub fn parse(bytes: &[u8]) -> Result<Instance, InstanceError> {
    renal_dicom::guard::declared_lengths_fit(bytes).map_err(InstanceError::Unreadable)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(strip_preamble(bytes))
        .map_err(|e| InstanceError::Unreadable(e.to_string()))?;
    let sop_class = text(&obj, tags::SOP_CLASS_UID);
    let modality = text(&obj, tags::MODALITY);
    let kind = match sop_class.as_str() {
        MR_IMAGE_STORAGE => Kind::Mr(parse_mr(&obj)?),
        SEGMENTATION_STORAGE => Kind::Seg(parse_seg(&obj)?),
        ENHANCED_MR_IMAGE_STORAGE => return Err(InstanceError::UnsupportedSopClass(sop_class)),
        _ => return Err(InstanceError::NotMr { modality, sop_class }),
    };
    Ok(Instance {
        sop_instance_uid: required(&obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        study_uid: required(&obj, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?,
        series_uid: required(&obj, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?,
        accession: text(&obj, tags::ACCESSION_NUMBER),
        patient_id: required(&obj, tags::PATIENT_ID, "PatientID")?,
        sex: text(&obj, tags::PATIENT_SEX),
        age: text(&obj, tags::PATIENT_AGE),
        birth_date: text(&obj, tags::PATIENT_BIRTH_DATE),
        study_date: text(&obj, tags::STUDY_DATE),
        kind,
    })
}

/// Files carry a 128-byte preamble before `DICM`; network and some tools' output do not.
fn strip_preamble(bytes: &[u8]) -> &[u8] {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else {
        bytes
    }
}

fn parse_mr(obj: &InMemDicomObject) -> Result<MrInfo, InstanceError> {
    let position = numbers(obj, tags::IMAGE_POSITION_PATIENT)
        .filter(|v| v.len() == 3)
        .ok_or_else(|| InstanceError::BadGeometry("ImagePositionPatient".into()))?;
    let orientation = numbers(obj, tags::IMAGE_ORIENTATION_PATIENT)
        .filter(|v| v.len() == 6)
        .ok_or_else(|| InstanceError::BadGeometry("ImageOrientationPatient".into()))?;
    let spacing = numbers(obj, tags::PIXEL_SPACING)
        .filter(|v| v.len() == 2 && v[0] > 0.0 && v[1] > 0.0)
        .ok_or_else(|| InstanceError::BadGeometry("PixelSpacing".into()))?;
    let rows = text(obj, tags::ROWS).parse::<u16>().ok().filter(|&r| r > 0);
    let columns = text(obj, tags::COLUMNS).parse::<u16>().ok().filter(|&c| c > 0);
    let (Some(rows), Some(columns)) = (rows, columns) else {
        return Err(InstanceError::BadGeometry("Rows/Columns".into()));
    };
    let row_len = (orientation[0].powi(2) + orientation[1].powi(2) + orientation[2].powi(2)).sqrt();
    let col_len = (orientation[3].powi(2) + orientation[4].powi(2) + orientation[5].powi(2)).sqrt();
    let dot = orientation[0] * orientation[3] + orientation[1] * orientation[4] + orientation[2] * orientation[5];
    if (row_len - 1.0).abs() > 1e-3 || (col_len - 1.0).abs() > 1e-3 || dot.abs() > 1e-3 {
        return Err(InstanceError::BadGeometry("ImageOrientationPatient is not two orthonormal vectors".into()));
    }
    Ok(MrInfo {
        description: text(obj, tags::SERIES_DESCRIPTION),
        scanning_sequence: text(obj, tags::SCANNING_SEQUENCE),
        scan_options: text(obj, tags::SCAN_OPTIONS),
        echo_time_ms: numbers(obj, tags::ECHO_TIME).and_then(|v| v.first().copied()),
        contrast: !text(obj, tags::CONTRAST_BOLUS_AGENT).is_empty(),
        manufacturer: text(obj, tags::MANUFACTURER),
        field_strength_t: numbers(obj, tags::MAGNETIC_FIELD_STRENGTH).and_then(|v| v.first().copied()),
        geometry: SliceGeometry {
            position: [position[0], position[1], position[2]],
            orientation: [
                orientation[0],
                orientation[1],
                orientation[2],
                orientation[3],
                orientation[4],
                orientation[5],
            ],
            pixel_spacing: [spacing[0], spacing[1]],
            rows,
            columns,
        },
        instance_number: text(obj, tags::INSTANCE_NUMBER).parse().ok(),
    })
}

fn parse_seg(obj: &InMemDicomObject) -> Result<SegInfo, InstanceError> {
    let series = seq_items(obj, tags::REFERENCED_SERIES_SEQUENCE);
    let first = series.first().ok_or(InstanceError::MissingTag("ReferencedSeriesSequence"))?;
    let referenced_series_uid =
        required(first, tags::SERIES_INSTANCE_UID, "ReferencedSeriesSequence/SeriesInstanceUID")?;
    let referenced_instances = seq_items(first, tags::REFERENCED_INSTANCE_SEQUENCE)
        .into_iter()
        .map(|item| text(item, tags::REFERENCED_SOP_INSTANCE_UID))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    if referenced_instances.is_empty() {
        return Err(InstanceError::MissingTag("ReferencedInstanceSequence"));
    }
    let reader = text(obj, tags::CONTENT_CREATOR_NAME);
    Ok(SegInfo {
        referenced_series_uid,
        referenced_instances,
        reader: if reader.is_empty() { "R1".into() } else { reader },
    })
}
