//! Reading: MR series into volumes, binary SEGs into masks on their series' grid.
//!
//! Slices are ordered by their position along the slice normal (`row x col` of the
//! orientation), never by InstanceNumber. A series whose slices disagree on orientation, matrix
//! or pixel spacing, has two slices at one position, or has a step between neighbours more than
//! half again the typical step (a missing slice) is refused with the reason. Pixel values are
//! returned after RescaleSlope/RescaleIntercept.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use renal_imaging::geometry::{cross, dot, norm, sub};
use renal_imaging::{Geometry, Vec3, Volume};

/// Why a series or segmentation cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// Bytes that do not parse as DICOM.
    #[error("instance {index}: unreadable: {reason}")]
    Unreadable { index: usize, reason: String },
    /// A tag the geometry or pixels need is absent or malformed.
    #[error("instance {index}: missing or malformed {tag}")]
    MissingTag { index: usize, tag: &'static str },
    /// Pixel data in a form we do not decode.
    #[error("instance {index}: unsupported pixel data: {reason}")]
    Pixels { index: usize, reason: String },
    /// No instance given, or a SEG whose frames do not match its frame count.
    #[error("no slices")]
    Empty,
    /// Slices with different orientation, matrix or spacing.
    #[error("instance {index} does not match the series: {what}")]
    Mixed { index: usize, what: &'static str },
    /// Two slices at one position.
    #[error("two slices at {position_mm:.2} mm along the normal")]
    Duplicate { position_mm: f64 },
    /// A missing slice.
    #[error("gap of {found_mm:.2} mm after {after_mm:.2} mm along the normal where slices are {step_mm:.2} mm apart")]
    Gap { after_mm: f64, found_mm: f64, step_mm: f64 },
    /// A segmentation that marks no voxel of its series.
    #[error("the segmentation marks no voxel of its series")]
    EmptyMask,
}

/// One decoded MR slice.
#[derive(Debug, Clone)]
pub struct Slice {
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// ImagePositionPatient: centre of the first pixel, mm.
    pub position: Vec3,
    /// Direction of increasing column index.
    pub row_dir: Vec3,
    /// Direction of increasing row index.
    pub col_dir: Vec3,
    /// (along a row = between columns, along a column = between rows), mm.
    pub spacing_mm: [f64; 2],
    /// Columns, rows.
    pub dims: [usize; 2],
    /// Rescaled values, columns fastest.
    pub pixels: Vec<f32>,
}

fn obj_of(bytes: &[u8], index: usize) -> Result<InMemDicomObject, ReadError> {
    crate::guard::declared_lengths_fit(bytes).map_err(|reason| ReadError::Unreadable { index, reason })?;
    OpenFileOptions::new()
        .from_reader(bytes)
        .map(|o| o.into_inner())
        .map_err(|e| ReadError::Unreadable { index, reason: e.to_string() })
}

/// An attribute as text with padding (spaces, NUL) trimmed; empty when absent or unreadable.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
        .unwrap_or_default()
}

/// A multi-valued decimal attribute (e.g. ImagePositionPatient); `None` when absent or when
/// any value is not a finite number.
pub fn numbers(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = text(obj, tag);
    if v.is_empty() {
        return None;
    }
    v.split('\\').map(|x| x.trim().parse::<f64>().ok().filter(|f| f.is_finite())).collect()
}

fn vec3(v: &[f64]) -> Vec3 {
    [v[0], v[1], v[2]]
}

/// Decode one MR Image Storage instance (uncompressed, 8 or 16 bits, one sample per pixel).
pub fn read_slice(bytes: &[u8], index: usize) -> Result<Slice, ReadError> {
    let obj = obj_of(bytes, index)?;
    let missing = |tag| ReadError::MissingTag { index, tag };
    let position =
        numbers(&obj, tags::IMAGE_POSITION_PATIENT).filter(|v| v.len() == 3).ok_or(missing("ImagePositionPatient"))?;
    let orientation = numbers(&obj, tags::IMAGE_ORIENTATION_PATIENT)
        .filter(|v| v.len() == 6)
        .ok_or(missing("ImageOrientationPatient"))?;
    let spacing = numbers(&obj, tags::PIXEL_SPACING)
        .filter(|v| v.len() == 2 && v.iter().all(|s| *s > 0.0))
        .ok_or(missing("PixelSpacing"))?;
    let rows: usize = text(&obj, tags::ROWS).parse().ok().ok_or(missing("Rows"))?;
    let cols: usize = text(&obj, tags::COLUMNS).parse().ok().ok_or(missing("Columns"))?;
    let bits: u32 = text(&obj, tags::BITS_ALLOCATED).parse().ok().ok_or(missing("BitsAllocated"))?;
    let signed = text(&obj, tags::PIXEL_REPRESENTATION) == "1";
    let samples: u32 = text(&obj, tags::SAMPLES_PER_PIXEL).parse().unwrap_or(1);
    let slope = numbers(&obj, tags::RESCALE_SLOPE).and_then(|v| v.first().copied()).unwrap_or(1.0);
    let intercept = numbers(&obj, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied()).unwrap_or(0.0);
    let sop_instance_uid =
        Some(text(&obj, tags::SOP_INSTANCE_UID)).filter(|u| !u.is_empty()).ok_or(missing("SOPInstanceUID"))?;
    let pixels_err = |reason: String| ReadError::Pixels { index, reason };
    if samples != 1 {
        return Err(pixels_err(format!("{samples} samples per pixel")));
    }
    let element = obj.element(tags::PIXEL_DATA).map_err(|_| missing("PixelData"))?;
    let raw = element.to_bytes().map_err(|e| pixels_err(format!("encapsulated or unreadable ({e})")))?;
    let n = rows * cols;
    let value = |v: f64| (v * slope + intercept) as f32;
    let pixels: Vec<f32> = match (bits, signed) {
        (16, false) if raw.len() >= 2 * n => {
            raw.chunks_exact(2).take(n).map(|c| value(f64::from(u16::from_le_bytes([c[0], c[1]])))).collect()
        }
        (16, true) if raw.len() >= 2 * n => {
            raw.chunks_exact(2).take(n).map(|c| value(f64::from(i16::from_le_bytes([c[0], c[1]])))).collect()
        }
        (8, false) if raw.len() >= n => raw.iter().take(n).map(|&b| value(f64::from(b))).collect(),
        (8, true) if raw.len() >= n => raw.iter().take(n).map(|&b| value(f64::from(b as i8))).collect(),
        (16 | 8, _) => return Err(pixels_err(format!("{} bytes for {rows}x{cols} pixels", raw.len()))),
        _ => return Err(pixels_err(format!("{bits} bits allocated"))),
    };
    Ok(Slice {
        sop_instance_uid,
        position: vec3(&position),
        row_dir: vec3(&orientation[..3]),
        col_dir: vec3(&orientation[3..]),
        spacing_mm: [spacing[1], spacing[0]],
        dims: [cols, rows],
        pixels,
    })
}

/// A series as a volume, with the SOP instance UID of each slice in volume order.
#[derive(Debug, Clone)]
pub struct SeriesVolume {
    /// Voxels in patient space.
    pub volume: Volume<f32>,
    /// SOPInstanceUID of slice `k`.
    pub sop_instance_uids: Vec<String>,
}

/// Order slices along their normal and stack them.
pub fn assemble(mut slices: Vec<Slice>) -> Result<SeriesVolume, ReadError> {
    let first = slices.first().ok_or(ReadError::Empty)?.clone();
    let normal = cross(first.row_dir, first.col_dir);
    let length = norm(normal);
    if length.is_nan() || length <= 0.5 {
        return Err(ReadError::MissingTag { index: 0, tag: "ImageOrientationPatient" });
    }
    let normal = [normal[0] / length, normal[1] / length, normal[2] / length];
    for (index, s) in slices.iter().enumerate() {
        let same = |a: Vec3, b: Vec3| norm(sub(a, b)) < 1e-4;
        if !same(s.row_dir, first.row_dir) || !same(s.col_dir, first.col_dir) {
            return Err(ReadError::Mixed { index, what: "orientation" });
        }
        if s.dims != first.dims {
            return Err(ReadError::Mixed { index, what: "matrix size" });
        }
        if (s.spacing_mm[0] - first.spacing_mm[0]).abs() > 1e-4 || (s.spacing_mm[1] - first.spacing_mm[1]).abs() > 1e-4
        {
            return Err(ReadError::Mixed { index, what: "pixel spacing" });
        }
        // Slices of one stack share their in-plane origin up to the normal offset.
        let off = sub(s.position, first.position);
        let along = dot(off, normal);
        let in_plane = sub(off, [normal[0] * along, normal[1] * along, normal[2] * along]);
        if norm(in_plane) > 0.01 * first.spacing_mm[0].max(first.spacing_mm[1]) + 1e-3 {
            return Err(ReadError::Mixed { index, what: "in-plane position" });
        }
    }
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let along: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let steps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(i) = steps.iter().position(|&d| d < 1e-3) {
        return Err(ReadError::Duplicate { position_mm: along[i] });
    }
    let step = if steps.is_empty() {
        1.0
    } else {
        let mut sorted = steps.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    if let Some(i) = steps.iter().position(|&d| d > 1.5 * step) {
        return Err(ReadError::Gap { after_mm: along[i], found_mm: steps[i], step_mm: step });
    }
    let geometry = Geometry {
        dims: [first.dims[0], first.dims[1], slices.len()],
        spacing_mm: [first.spacing_mm[0], first.spacing_mm[1], step],
        origin_mm: slices[0].position,
        row_dir: first.row_dir,
        col_dir: first.col_dir,
        normal,
    };
    let sop_instance_uids = slices.iter().map(|s| s.sop_instance_uid.clone()).collect();
    let data = slices.into_iter().flat_map(|s| s.pixels).collect();
    Ok(SeriesVolume { volume: Volume { geometry, data }, sop_instance_uids })
}

/// Decode and stack a series' instances (any order).
pub fn read_series(instances: &[Vec<u8>]) -> Result<SeriesVolume, ReadError> {
    let slices = instances.iter().enumerate().map(|(i, b)| read_slice(b, i)).collect::<Result<Vec<_>, _>>()?;
    assemble(slices)
}

/// A binary SEG's first segment as a mask on `onto` (its series' grid): each voxel takes the
/// nearest pixel of the frame whose plane lies within half a slice step of it, so frames on
/// another in-plane grid are resampled (nearest neighbour) and frames between slices count
/// for the nearest slice.
pub fn read_seg_mask(bytes: &[u8], onto: &Geometry) -> Result<Volume<u8>, ReadError> {
    let obj = obj_of(bytes, 0)?;
    let missing = |tag| ReadError::MissingTag { index: 0, tag };
    let rows: usize = text(&obj, tags::ROWS).parse().ok().ok_or(missing("Rows"))?;
    let cols: usize = text(&obj, tags::COLUMNS).parse().ok().ok_or(missing("Columns"))?;
    let frames: usize = text(&obj, tags::NUMBER_OF_FRAMES).parse().ok().ok_or(missing("NumberOfFrames"))?;
    if frames == 0 {
        // A SEG stores only the frames where the segment is: none is a mask that marks no
        // voxel (a lesion the series' slices miss), not an unreadable series.
        return Err(ReadError::EmptyMask);
    }
    if text(&obj, tags::BITS_ALLOCATED) != "1" {
        return Err(ReadError::Pixels { index: 0, reason: "only BINARY segmentations (1 bit) are read".into() });
    }
    let shared = obj
        .element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .and_then(|e| e.items().and_then(|i| i.first().cloned()))
        .ok_or(missing("SharedFunctionalGroupsSequence"))?;
    let nested = |item: &InMemDicomObject, seq: Tag, tag: Tag| -> Option<Vec<f64>> {
        let inner = item.element(seq).ok()?.items()?.first()?.clone();
        numbers(&inner, tag)
    };
    let orientation = nested(&shared, tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT)
        .filter(|v| v.len() == 6)
        .ok_or(missing("PlaneOrientationSequence"))?;
    let spacing = nested(&shared, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
        .filter(|v| v.len() == 2 && v.iter().all(|s| *s > 0.0))
        .ok_or(missing("PixelMeasuresSequence"))?;
    let per_frame = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .ok_or(missing("PerFrameFunctionalGroupsSequence"))?;
    if per_frame.len() != frames || frames == 0 {
        return Err(ReadError::Empty);
    }
    let positions = per_frame
        .iter()
        .map(|f| {
            nested(f, tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT)
                .filter(|v| v.len() == 3)
                .map(|v| vec3(&v))
        })
        .collect::<Option<Vec<Vec3>>>()
        .ok_or(missing("PlanePositionSequence"))?;
    let raw = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| missing("PixelData"))?
        .to_bytes()
        .map_err(|e| ReadError::Pixels { index: 0, reason: e.to_string() })?;
    let per = rows * cols;
    if raw.len() * 8 < per * frames {
        return Err(ReadError::Pixels {
            index: 0,
            reason: format!("{} bytes for {frames} frames of {rows}x{cols}", raw.len()),
        });
    }
    let bit = |f: usize, i: usize, j: usize| {
        let n = f * per + j * cols + i;
        raw[n / 8] >> (n % 8) & 1
    };
    let (row_dir, col_dir) = (vec3(&orientation[..3]), vec3(&orientation[3..]));
    let frame_normal = cross(row_dir, col_dir);
    let mut mask = Volume::filled(onto.clone(), 0u8);
    let half_step = onto.spacing_mm[2] / 2.0;
    for (f, p) in positions.iter().enumerate() {
        for k in 0..onto.dims[2] {
            // Distance from the slice's centre plane to the frame's plane.
            let centre = onto.to_patient([0.0, 0.0, k as f64]);
            if dot(sub(centre, *p), frame_normal).abs() > half_step + 1e-3 {
                continue;
            }
            for j in 0..onto.dims[1] {
                for i in 0..onto.dims[0] {
                    let d = sub(onto.to_patient([i as f64, j as f64, k as f64]), *p);
                    let (fi, fj) = ((dot(d, row_dir) / spacing[1]).round(), (dot(d, col_dir) / spacing[0]).round());
                    if fi >= 0.0
                        && fj >= 0.0
                        && (fi as usize) < cols
                        && (fj as usize) < rows
                        && bit(f, fi as usize, fj as usize) == 1
                    {
                        mask.data[onto.index(i, j, k)] = 1;
                    }
                }
            }
        }
    }
    if mask.count_nonzero() == 0 {
        return Err(ReadError::EmptyMask);
    }
    Ok(mask)
}
