//! Binary Segmentation Storage: one segment, one frame per non-empty slice of the source series.

use crate::mr::common_elements;
use crate::values::{code_item, ds, ds_multi, seq_el, str_el, us_el};
use crate::{
    Equipment, MrSeries, Patient, Study, WriteError, EXPLICIT_VR_LITTLE_ENDIAN, MR_IMAGE_STORAGE, SEGMENTATION_STORAGE,
};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use renal_imaging::Volume;
use std::path::Path;

/// A segmentation of one MR series.
#[derive(Debug, Clone)]
pub struct Seg {
    /// (0008,0018).
    pub sop_instance_uid: String,
    /// (0020,000E) of the SEG series itself.
    pub series_uid: String,
    /// (0020,0011).
    pub series_number: u32,
    /// (0008,103E).
    pub series_description: String,
    /// (0070,0084): who drew it (a reader code, never a real name).
    pub content_creator: String,
    /// (0062,0008): `MANUAL`, `SEMIAUTOMATIC` or `AUTOMATIC`.
    pub algorithm_type: String,
    /// (0062,0005).
    pub segment_label: String,
    /// (0008,0023)/(0008,0033).
    pub date: String,
    /// See `date`.
    pub time: String,
    /// (0018,1000) of the software that made it.
    pub device_serial: String,
}

/// Write `mask` (on the grid of `source`'s volume) as a binary DICOM SEG file at `path`.
/// Returns the number of frames written (slices where the mask is non-empty).
#[allow(clippy::too_many_arguments)]
pub fn write_seg(
    patient: &Patient,
    study: &Study,
    equipment: &Equipment,
    source: &MrSeries,
    seg: &Seg,
    mask: &Volume<u8>,
    path: &Path,
) -> Result<usize, WriteError> {
    let g = &mask.geometry;
    if source.sop_instance_uids.len() != g.dims[2] {
        return Err(WriteError::SegGeometry {
            series_uid: source.instance_uid.clone(),
            reason: format!("mask has {} slices, series {}", g.dims[2], source.sop_instance_uids.len()),
        });
    }
    if mask.data.len() != g.len() {
        return Err(WriteError::VoxelCount { expected: g.len(), got: mask.data.len() });
    }
    let frames: Vec<usize> = (0..g.dims[2]).filter(|&k| mask.slice(k).iter().any(|&v| v != 0)).collect();

    let mut obj = InMemDicomObject::new_empty();
    common_elements(&mut obj, patient, study, equipment);
    // The SEG's own equipment is the segmentation software, not the scanner.
    for el in [
        str_el(tags::MANUFACTURER, VR::LO, "renal-mri"),
        str_el(tags::MANUFACTURER_MODEL_NAME, VR::LO, "renal synth"),
        str_el(tags::DEVICE_SERIAL_NUMBER, VR::LO, &seg.device_serial),
        str_el(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        str_el(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, &seg.sop_instance_uid),
        str_el(tags::MODALITY, VR::CS, "SEG"),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, &seg.series_uid),
        str_el(tags::SERIES_NUMBER, VR::IS, &seg.series_number.to_string()),
        str_el(tags::SERIES_DESCRIPTION, VR::LO, &seg.series_description),
        str_el(tags::FRAME_OF_REFERENCE_UID, VR::UI, &source.frame_of_reference_uid),
        str_el(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        str_el(tags::INSTANCE_NUMBER, VR::IS, "1"),
        str_el(tags::CONTENT_DATE, VR::DA, &seg.date),
        str_el(tags::CONTENT_TIME, VR::TM, &seg.time),
        str_el(tags::CONTENT_LABEL, VR::CS, "LESION"),
        str_el(tags::CONTENT_DESCRIPTION, VR::LO, "Renal lesion segmentation"),
        str_el(tags::CONTENT_CREATOR_NAME, VR::PN, &seg.content_creator),
        str_el(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY"),
        str_el(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        str_el(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        us_el(tags::SAMPLES_PER_PIXEL, 1),
        str_el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us_el(tags::ROWS, g.dims[1] as u16),
        us_el(tags::COLUMNS, g.dims[0] as u16),
        us_el(tags::BITS_ALLOCATED, 1),
        us_el(tags::BITS_STORED, 1),
        us_el(tags::HIGH_BIT, 0),
        us_el(tags::PIXEL_REPRESENTATION, 0),
        str_el(tags::NUMBER_OF_FRAMES, VR::IS, &frames.len().to_string()),
    ] {
        obj.put(el);
    }

    let segment = InMemDicomObject::from_element_iter([
        us_el(tags::SEGMENT_NUMBER, 1),
        str_el(tags::SEGMENT_LABEL, VR::LO, &seg.segment_label),
        str_el(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, &seg.algorithm_type),
        seq_el(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code_item("49755003", "SCT", "Morphologically Abnormal Structure")],
        ),
        seq_el(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![code_item("4147007", "SCT", "Mass")]),
        seq_el(tags::ANATOMIC_REGION_SEQUENCE, vec![code_item("64033007", "SCT", "Kidney")]),
    ]);
    obj.put(seq_el(tags::SEGMENT_SEQUENCE, vec![segment]));

    let referenced_instances = source
        .sop_instance_uids
        .iter()
        .map(|uid| {
            InMemDicomObject::from_element_iter([
                str_el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, MR_IMAGE_STORAGE),
                str_el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid),
            ])
        })
        .collect();
    obj.put(seq_el(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            str_el(tags::SERIES_INSTANCE_UID, VR::UI, &source.instance_uid),
            seq_el(tags::REFERENCED_INSTANCE_SEQUENCE, referenced_instances),
        ])],
    ));

    let organisation_uid = format!("{}.1", seg.sop_instance_uid);
    obj.put(seq_el(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([str_el(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &organisation_uid,
        )])],
    ));
    let dimension = |pointer, group| {
        InMemDicomObject::from_element_iter([
            str_el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &organisation_uid),
            DataElement::new(tags::DIMENSION_INDEX_POINTER, VR::AT, PrimitiveValue::from(pointer)),
            DataElement::new(tags::FUNCTIONAL_GROUP_POINTER, VR::AT, PrimitiveValue::from(group)),
        ])
    };
    obj.put(seq_el(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dimension(tags::REFERENCED_SEGMENT_NUMBER, tags::SEGMENT_IDENTIFICATION_SEQUENCE),
            dimension(tags::IMAGE_POSITION_PATIENT, tags::PLANE_POSITION_SEQUENCE),
        ],
    ));

    let orientation = [g.row_dir, g.col_dir].concat();
    obj.put(seq_el(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            seq_el(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([str_el(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    &ds_multi(&orientation),
                )])],
            ),
            seq_el(
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([
                    str_el(tags::PIXEL_SPACING, VR::DS, &ds_multi(&[g.spacing_mm[1], g.spacing_mm[0]])),
                    str_el(tags::SLICE_THICKNESS, VR::DS, &ds(source.slice_thickness_mm)),
                    str_el(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(g.spacing_mm[2])),
                ])],
            ),
        ])],
    ));

    let per_frame = frames
        .iter()
        .map(|&k| {
            let source_image = InMemDicomObject::from_element_iter([
                str_el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, MR_IMAGE_STORAGE),
                str_el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &source.sop_instance_uids[k]),
                seq_el(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![code_item("121322", "DCM", "Source image for image processing operation")],
                ),
            ]);
            InMemDicomObject::from_element_iter([
                seq_el(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        seq_el(tags::SOURCE_IMAGE_SEQUENCE, vec![source_image]),
                        seq_el(tags::DERIVATION_CODE_SEQUENCE, vec![code_item("113076", "DCM", "Segmentation")]),
                    ])],
                ),
                seq_el(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([DataElement::new(
                        tags::DIMENSION_INDEX_VALUES,
                        VR::UL,
                        PrimitiveValue::U32([1u32, k as u32 + 1].into_iter().collect()),
                    )])],
                ),
                seq_el(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([str_el(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        &ds_multi(&g.slice_position(k)),
                    )])],
                ),
                seq_el(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([us_el(tags::REFERENCED_SEGMENT_NUMBER, 1)])],
                ),
            ])
        })
        .collect();
    obj.put(seq_el(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));

    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pack_bits(mask, &frames))));

    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| WriteError::Meta { sop_instance_uid: seg.sop_instance_uid.clone(), message: e.to_string() })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| WriteError::CreateDir { path: parent.into(), source })?;
    }
    let bytes = crate::mr::encode_file(&file, path)?;
    std::fs::write(path, &bytes).map_err(|e| WriteError::WriteFile { path: path.into(), message: e.to_string() })?;
    Ok(frames.len())
}

/// Pack the chosen slices of a binary mask one bit per pixel, least significant bit first,
/// frames back to back, padded to an even number of bytes (PS3.5 §8.1.1, PS3.3 C.8.20.2).
pub fn pack_bits(mask: &Volume<u8>, frames: &[usize]) -> Vec<u8> {
    let per_frame = mask.geometry.dims[0] * mask.geometry.dims[1];
    let bits = per_frame * frames.len();
    let mut out = vec![0u8; bits.div_ceil(8)];
    let mut bit = 0usize;
    for &k in frames {
        for &v in mask.slice(k) {
            if v != 0 {
                out[bit / 8] |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_imaging::Geometry;

    #[test]
    fn bits_are_packed_lsb_first_across_frames() {
        let g = Geometry {
            dims: [3, 2, 2],
            spacing_mm: [1.0; 3],
            origin_mm: [0.0; 3],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
        };
        // Frame 0: 1 0 0 / 0 0 1 ; frame 1: 0 1 0 / 1 1 1
        let mask = Volume { geometry: g, data: vec![1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 1, 1] };
        // bits 0..12: 1,0,0,0,0,1,0,1 | 0,1,1,1 -> 0b1010_0001, 0b0000_1110
        assert_eq!(pack_bits(&mask, &[0, 1]), vec![0b1010_0001, 0b0000_1110]);
        // One frame of 6 bits is one byte, padded to two.
        assert_eq!(pack_bits(&mask, &[1]), vec![0b0011_1010, 0]);
    }
}
