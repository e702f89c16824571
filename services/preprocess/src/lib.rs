//! The preprocess stage: DICOM series to bias-corrected, histogram-matched volumes and 2.5D
//! composites.
//!
//! The same five parts as every stage: [`config`] (`[preprocess]`), [`process`] (one case to
//! one lesion, or a typed error whose code is the dead-letter reason; tested without a bus),
//! [`run`] (the loop on `renal.cases`) and [`serve`] (start-up on Kafka).
//!
//! Dead-letter reasons: `bad_message`, `bad_manifest`, `missing_series`, `missing_blob`,
//! `corrupt_blob`, `unreadable_series`, `empty_mask`, `constant_image`, `n4_failed`,
//! `histmatch_failed`, `composite_failed` (see [`process::PreprocessError`]); other blob-store
//! failures are retried.

pub mod config;
pub mod events;
pub mod process;
pub mod run;
pub mod serve;

pub use config::{PreprocessConfig, PreprocessSettings};
pub use process::{preprocess, PreprocessError};
pub use run::{run, GROUP};
pub use serve::{serve, ServeError};
