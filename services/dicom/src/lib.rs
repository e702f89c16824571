//! DICOM encoding and decoding for the pipeline, through `dicom-object`.
//!
//! Two object kinds are written: MR Image Storage (one file per slice, explicit VR little
//! endian, 16-bit unsigned pixels) and binary Segmentation Storage (one multi-frame file whose
//! frames reference the MR instances they were drawn on). Geometry always comes from a
//! [`renal_imaging::Geometry`], so that what a reader reconstructs is what was rendered.
//! [`read`] goes the other way: a series' instances into a volume (ordered along the normal,
//! gaps and duplicates refused) and a binary SEG into a mask on its series' grid.
//!
//! ```no_run
//! use renal_dicom::{write_mr_series, Patient, Study, Equipment, MrSeries, uid_from_u128};
//! # fn demo(volume: &renal_imaging::Volume<u16>, patient: &Patient, study: &Study,
//! #         equipment: &Equipment, series: &MrSeries) -> Result<(), renal_dicom::WriteError> {
//! let instances = write_mr_series(patient, study, equipment, series, volume, "out/series".as_ref())?;
//! println!("{} slices, first {}", instances.len(), instances[0].sop_instance_uid);
//! # Ok(()) }
//! ```

pub mod guard;
mod mr;
pub mod read;
pub mod seg;
mod values;

pub use mr::{write_mr_series, MrSeries, WrittenInstance};
pub use seg::{write_seg, Seg};
pub use values::{ds, uid_from_u128};

/// SOP Class UID of MR Image Storage.
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// SOP Class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// Transfer syntax every file is written in.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Patient module values (identifiers stay inside the DICOM files; nothing downstream logs them).
#[derive(Debug, Clone)]
pub struct Patient {
    /// (0010,0010), `Family^Given`.
    pub name: String,
    /// (0010,0020), the site's medical record number.
    pub id: String,
    /// (0010,0030), `YYYYMMDD`.
    pub birth_date: String,
    /// (0010,0040), `M` or `F`.
    pub sex: String,
    /// (0010,1010), `nnnY`, consistent with birth and study dates.
    pub age: String,
    /// (0010,1030) in kg.
    pub weight_kg: f64,
}

/// Study module values.
#[derive(Debug, Clone)]
pub struct Study {
    /// (0020,000D).
    pub instance_uid: String,
    /// (0008,0020), `YYYYMMDD`.
    pub date: String,
    /// (0008,0030), `HHMMSS`.
    pub time: String,
    /// (0008,0050).
    pub accession: String,
    /// (0020,0010).
    pub id: String,
    /// (0008,1030).
    pub description: String,
}

/// Scanner and institution.
#[derive(Debug, Clone)]
pub struct Equipment {
    /// (0008,0070).
    pub manufacturer: String,
    /// (0008,1090).
    pub model: String,
    /// (0018,0087) in tesla.
    pub field_strength_t: f64,
    /// (0008,0080).
    pub institution: String,
    /// (0008,1010).
    pub station: String,
    /// (0018,1020).
    pub software_versions: String,
}

/// Why a DICOM object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output folder could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    /// The file meta group could not be built.
    #[error("file meta for {sop_instance_uid}: {message}")]
    Meta { sop_instance_uid: String, message: String },
    /// Encoding or writing the file failed.
    #[error("writing {path}: {message}")]
    WriteFile { path: std::path::PathBuf, message: String },
    /// The pixel buffer does not match the geometry.
    #[error("volume has {got} voxels, geometry promises {expected}")]
    VoxelCount { expected: usize, got: usize },
    /// The mask's grid differs from its source series'.
    #[error("segmentation of {series_uid}: {reason}")]
    SegGeometry { series_uid: String, reason: String },
}
