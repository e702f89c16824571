//! DICOM ingest: from instances as scanners send them to `renal.cases`.
//!
//! The same five parts as every stage: [`config`] (`[ingest]`), the processing step, [`run`]
//! (the drop-folder loop) and [`serve`] (start-up on Kafka with the C-STORE receivers). Ingest's
//! inputs are files, not topic records, so its step is in four pure parts, each tested
//! without a bus and each refusing what can never be used with a reason code:
//! [`instance::parse`] reads an instance's header (never its pixels); [`classify::classify`]
//! tells T2 from T1C by the site's rules; [`deid::intake`] de-identifies it (PS3.15's basic
//! profile, keyed pseudonyms, remapped UIDs, shifted dates) before anything of it is stored;
//! [`assemble::Assembler`] groups the de-identified instances into series and series into
//! lesion cases, decides completeness from what the segmentations promise plus a quiet period,
//! and emits revisions when late instances change a case. [`table`] is the `cases` table,
//! [`drop_folder`] the folder handling, [`scp`] and [`scu`] the DICOM network ends.

pub mod assemble;
pub mod classify;
pub mod config;
pub mod deid;
pub mod drop_folder;
pub mod events;
pub mod instance;
pub mod run;
pub mod scp;
pub mod scu;
pub mod serve;
pub mod table;

pub use config::{ConfigError, IngestConfig, ScpConfig, SiteConfig};
pub use run::{run, IngestError, IngestStats, Mode};
pub use serve::{serve, ServeError};
