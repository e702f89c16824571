//! The radiomics stage: IBSI features of each lesion's T2 and T1C volumes under the study's
//! 32 extraction settings, committed to the Parquet feature store.
//!
//! The same five parts as every stage: [`config`] (`[radiomics]`), [`process`] (one lesion to
//! one committed feature file, or a typed error whose code is the dead-letter reason), [`run`]
//! (the loop on `renal.lesions`), [`serve`] (start-up on Kafka); and what this stage adds:
//! [`settings`] (the study's 32-setting grid by default, and its hash), [`extract`] (a lesion's
//! volume and mask to one feature set per setting: IBSI resampling of the region around the
//! mask, discretisation, [`renal_ibsi`]), [`diagnostics`] (IBSI's diagnostic features) and
//! [`table`] (the `features` table's Arrow rows).
//!
//! Dead-letter reasons: `bad_message` (not a LesionV1, or a lesion id that cannot name a
//! file), `missing_blob`, `corrupt_blob`, `bad_volume` (not a volume bundle, or not NIfTI),
//! `mask_mismatch` (mask not on the image's grid), `empty_mask`, `too_large` (the region
//! around the mask exceeds [`extract::MAX_CROP_VOXELS`]). A store that cannot be written is
//! retried.

pub mod config;
pub mod diagnostics;
pub mod events;
pub mod extract;
pub mod process;
pub mod run;
pub mod serve;
pub mod settings;
pub mod table;

pub use config::RadiomicsConfig;
pub use process::{Extractor, RadiomicsError};
pub use run::{run, GROUP};
pub use serve::{serve, ServeError};
