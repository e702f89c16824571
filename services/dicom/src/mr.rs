//! MR Image Storage: one file per slice.

use crate::values::{ds, ds_multi, str_el, us_el};
use crate::{Equipment, Patient, Study, WriteError, EXPLICIT_VR_LITTLE_ENDIAN, MR_IMAGE_STORAGE};
use dicom_core::value::C;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use renal_imaging::{geometry, Volume};
use std::path::{Path, PathBuf};

/// Series-level values of an MR acquisition.
#[derive(Debug, Clone)]
pub struct MrSeries {
    /// (0020,000E).
    pub instance_uid: String,
    /// (0020,0011).
    pub number: u32,
    /// (0008,103E), the site's own naming convention.
    pub description: String,
    /// (0018,1030).
    pub protocol: String,
    /// (0020,0052), shared by every series of the study.
    pub frame_of_reference_uid: String,
    /// (0018,0020), e.g. `SE` or `GR`.
    pub scanning_sequence: String,
    /// (0018,0021), e.g. `SK\SP` or `SP\OSP`.
    pub sequence_variant: String,
    /// (0018,0022), e.g. `FS` for fat saturation, may be empty.
    pub scan_options: String,
    /// (0018,0023), `2D` or `3D`.
    pub acquisition_type: String,
    /// (0018,0080) in ms.
    pub repetition_time_ms: f64,
    /// (0018,0081) in ms.
    pub echo_time_ms: f64,
    /// (0018,1314) in degrees.
    pub flip_angle_deg: f64,
    /// (0018,0091).
    pub echo_train_length: u32,
    /// (0018,0050) in mm; may be less than the slice spacing when slices have a gap.
    pub slice_thickness_mm: f64,
    /// (0018,0010) and friends; `Some` for post-contrast series.
    pub contrast_agent: Option<String>,
    /// (0028,1053)/(0028,1052), written only when present.
    pub rescale: Option<(f64, f64)>,
    /// (0028,0101).
    pub bits_stored: u16,
    /// (0018,5100), e.g. `FFS`.
    pub patient_position: String,
    /// When true, instance 1 is the last slice along the grid's normal (head-first numbering).
    pub number_descending: bool,
    /// (0008,0021)/(0008,0031), acquisition clock, `YYYYMMDD` and `HHMMSS`.
    pub date: String,
    /// See `date`.
    pub time: String,
    /// SOP Instance UID of each slice, indexed by grid slice `k`.
    pub sop_instance_uids: Vec<String>,
}

/// One file that was written.
#[derive(Debug, Clone)]
pub struct WrittenInstance {
    /// Where it went.
    pub path: PathBuf,
    /// (0008,0018).
    pub sop_instance_uid: String,
    /// (0020,0013).
    pub instance_number: u32,
    /// The grid slice it holds.
    pub slice: usize,
    /// File size.
    pub bytes: u64,
}

/// Encode a whole file (preamble, meta group, data set) in memory: one write per file.
pub(crate) fn encode_file(
    file: &dicom_object::FileDicomObject<InMemDicomObject>,
    path: &Path,
) -> Result<Vec<u8>, WriteError> {
    let mut bytes = Vec::with_capacity(256 * 1024);
    file.write_all(&mut bytes).map_err(|e| WriteError::WriteFile { path: path.into(), message: e.to_string() })?;
    Ok(bytes)
}

/// Write every slice of `volume` as one MR Image Storage file in `dir`, named `NNNN.dcm` by
/// instance number.
pub fn write_mr_series(
    patient: &Patient,
    study: &Study,
    equipment: &Equipment,
    series: &MrSeries,
    volume: &Volume<u16>,
    dir: &Path,
) -> Result<Vec<WrittenInstance>, WriteError> {
    let g = &volume.geometry;
    if volume.data.len() != g.len() {
        return Err(WriteError::VoxelCount { expected: g.len(), got: volume.data.len() });
    }
    if series.sop_instance_uids.len() != g.dims[2] {
        return Err(WriteError::VoxelCount { expected: g.dims[2], got: series.sop_instance_uids.len() });
    }
    std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir { path: dir.into(), source })?;
    let n = g.dims[2];
    let mut written = Vec::with_capacity(n);
    for k in 0..n {
        let instance_number = if series.number_descending { n - k } else { k + 1 } as u32;
        let obj = slice_object(patient, study, equipment, series, volume, k, instance_number);
        let sop = series.sop_instance_uids[k].clone();
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN))
            .map_err(|e| WriteError::Meta { sop_instance_uid: sop.clone(), message: e.to_string() })?;
        let path = dir.join(format!("{instance_number:04}.dcm"));
        let bytes = encode_file(&file, &path)?;
        std::fs::write(&path, &bytes)
            .map_err(|e| WriteError::WriteFile { path: path.clone(), message: e.to_string() })?;
        written.push(WrittenInstance {
            path,
            sop_instance_uid: sop,
            instance_number,
            slice: k,
            bytes: bytes.len() as u64,
        });
    }
    Ok(written)
}

pub(crate) fn common_elements(obj: &mut InMemDicomObject, patient: &Patient, study: &Study, equipment: &Equipment) {
    for el in [
        str_el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        str_el(tags::PATIENT_NAME, VR::PN, &patient.name),
        str_el(tags::PATIENT_ID, VR::LO, &patient.id),
        str_el(tags::PATIENT_BIRTH_DATE, VR::DA, &patient.birth_date),
        str_el(tags::PATIENT_SEX, VR::CS, &patient.sex),
        str_el(tags::PATIENT_AGE, VR::AS, &patient.age),
        str_el(tags::PATIENT_WEIGHT, VR::DS, &ds(patient.weight_kg)),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, &study.instance_uid),
        str_el(tags::STUDY_DATE, VR::DA, &study.date),
        str_el(tags::STUDY_TIME, VR::TM, &study.time),
        str_el(tags::ACCESSION_NUMBER, VR::SH, &study.accession),
        str_el(tags::STUDY_ID, VR::SH, &study.id),
        str_el(tags::STUDY_DESCRIPTION, VR::LO, &study.description),
        str_el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        str_el(tags::MANUFACTURER, VR::LO, &equipment.manufacturer),
        str_el(tags::MANUFACTURER_MODEL_NAME, VR::LO, &equipment.model),
        str_el(tags::INSTITUTION_NAME, VR::LO, &equipment.institution),
        str_el(tags::STATION_NAME, VR::SH, &equipment.station),
        str_el(tags::SOFTWARE_VERSIONS, VR::LO, &equipment.software_versions),
    ] {
        obj.put(el);
    }
}

fn slice_object(
    patient: &Patient,
    study: &Study,
    equipment: &Equipment,
    series: &MrSeries,
    volume: &Volume<u16>,
    k: usize,
    instance_number: u32,
) -> InMemDicomObject {
    let g = &volume.geometry;
    let pos = g.slice_position(k);
    let mut obj = InMemDicomObject::new_empty();
    common_elements(&mut obj, patient, study, equipment);
    let orientation = [g.row_dir, g.col_dir].concat();
    let max = volume.slice(k).iter().copied().max().unwrap_or(0);
    let window_width = (max as f64 * 0.8).max(1.0);
    for el in [
        str_el(tags::SOP_CLASS_UID, VR::UI, MR_IMAGE_STORAGE),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, &series.sop_instance_uids[k]),
        str_el(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\M\\ND"),
        str_el(tags::MODALITY, VR::CS, "MR"),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, &series.instance_uid),
        str_el(tags::SERIES_NUMBER, VR::IS, &series.number.to_string()),
        str_el(tags::SERIES_DESCRIPTION, VR::LO, &series.description),
        str_el(tags::PROTOCOL_NAME, VR::LO, &series.protocol),
        str_el(tags::SERIES_DATE, VR::DA, &series.date),
        str_el(tags::SERIES_TIME, VR::TM, &series.time),
        str_el(tags::ACQUISITION_DATE, VR::DA, &series.date),
        str_el(tags::ACQUISITION_TIME, VR::TM, &series.time),
        str_el(tags::CONTENT_DATE, VR::DA, &series.date),
        str_el(tags::CONTENT_TIME, VR::TM, &series.time),
        str_el(tags::BODY_PART_EXAMINED, VR::CS, "ABDOMEN"),
        str_el(tags::PATIENT_POSITION, VR::CS, &series.patient_position),
        str_el(tags::SCANNING_SEQUENCE, VR::CS, &series.scanning_sequence),
        str_el(tags::SEQUENCE_VARIANT, VR::CS, &series.sequence_variant),
        str_el(tags::SCAN_OPTIONS, VR::CS, &series.scan_options),
        str_el(tags::MR_ACQUISITION_TYPE, VR::CS, &series.acquisition_type),
        str_el(tags::REPETITION_TIME, VR::DS, &ds(series.repetition_time_ms)),
        str_el(tags::ECHO_TIME, VR::DS, &ds(series.echo_time_ms)),
        str_el(tags::ECHO_TRAIN_LENGTH, VR::IS, &series.echo_train_length.to_string()),
        str_el(tags::FLIP_ANGLE, VR::DS, &ds(series.flip_angle_deg)),
        str_el(tags::MAGNETIC_FIELD_STRENGTH, VR::DS, &ds(equipment.field_strength_t)),
        str_el(tags::IMAGING_FREQUENCY, VR::DS, &ds(42.577478 * equipment.field_strength_t)),
        str_el(tags::IMAGED_NUCLEUS, VR::SH, "1H"),
        str_el(tags::SLICE_THICKNESS, VR::DS, &ds(series.slice_thickness_mm)),
        str_el(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(g.spacing_mm[2])),
        str_el(tags::FRAME_OF_REFERENCE_UID, VR::UI, &series.frame_of_reference_uid),
        str_el(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        str_el(tags::INSTANCE_NUMBER, VR::IS, &instance_number.to_string()),
        str_el(tags::ACQUISITION_NUMBER, VR::IS, "1"),
        str_el(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds_multi(&pos)),
        str_el(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &ds_multi(&orientation)),
        str_el(tags::SLICE_LOCATION, VR::DS, &ds(geometry::dot(pos, g.normal))),
        us_el(tags::SAMPLES_PER_PIXEL, 1),
        str_el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us_el(tags::ROWS, g.dims[1] as u16),
        us_el(tags::COLUMNS, g.dims[0] as u16),
        str_el(tags::PIXEL_SPACING, VR::DS, &ds_multi(&[g.spacing_mm[1], g.spacing_mm[0]])),
        us_el(tags::BITS_ALLOCATED, 16),
        us_el(tags::BITS_STORED, series.bits_stored),
        us_el(tags::HIGH_BIT, series.bits_stored - 1),
        us_el(tags::PIXEL_REPRESENTATION, 0),
        str_el(tags::WINDOW_CENTER, VR::DS, &ds((window_width / 2.0).round())),
        str_el(tags::WINDOW_WIDTH, VR::DS, &ds(window_width.round())),
    ] {
        obj.put(el);
    }
    if let Some(agent) = &series.contrast_agent {
        obj.put(str_el(tags::CONTRAST_BOLUS_AGENT, VR::LO, agent));
        obj.put(str_el(tags::CONTRAST_BOLUS_ROUTE, VR::LO, "IV"));
        obj.put(str_el(tags::CONTRAST_BOLUS_VOLUME, VR::DS, &ds(0.1 * patient.weight_kg)));
    }
    if let Some((slope, intercept)) = series.rescale {
        obj.put(str_el(tags::RESCALE_SLOPE, VR::DS, &ds(slope)));
        obj.put(str_el(tags::RESCALE_INTERCEPT, VR::DS, &ds(intercept)));
        obj.put(str_el(tags::RESCALE_TYPE, VR::LO, "US"));
    }
    // OW pixel data as its little-endian bytes: one copy, no per-value encoding.
    let slice = volume.slice(k);
    let mut bytes = Vec::with_capacity(slice.len() * 2);
    for v in slice {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U8(C::from_vec(bytes))));
    obj
}
