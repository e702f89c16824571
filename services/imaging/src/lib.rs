//! Volumes in patient coordinates and the image math the pipeline shares.
//!
//! Nothing here touches files or the network: callers hand in bytes or arrays and get
//! bytes or arrays back. Preprocessing lives here: [`n4`] bias-field correction,
//! [`histmatch`] histogram matching, [`resample`] (isotropic trilinear grids, masks, crops) and
//! [`composite`] (the 2.5D CNN input). Patient space is DICOM's LPS in millimetres; [`nifti`] is the only
//! place that converts to NIfTI's RAS.
//!
//! ```
//! use renal_imaging::{Geometry, Volume, nifti};
//!
//! let geometry = Geometry {
//!     dims: [2, 2, 1],
//!     spacing_mm: [1.0, 1.0, 2.0],
//!     origin_mm: [0.0, 0.0, 0.0],
//!     row_dir: [1.0, 0.0, 0.0],
//!     col_dir: [0.0, 1.0, 0.0],
//!     normal: [0.0, 0.0, 1.0],
//! };
//! let mask = Volume { geometry, data: vec![0u8, 1, 1, 0] };
//! assert_eq!(mask.foreground_ml(), 0.004);
//! let back = nifti::decode(&nifti::encode_gz(&mask, "lesion")).unwrap();
//! assert_eq!(back.volume.data, vec![0.0, 1.0, 1.0, 0.0]);
//! ```

pub mod composite;
pub mod geometry;
pub mod histmatch;
pub mod n4;
pub mod nifti;
pub mod nrrd;
pub mod resample;
pub mod volume;

pub use geometry::{Geometry, Vec3};
pub use volume::{dice, Volume};
