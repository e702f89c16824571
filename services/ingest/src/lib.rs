//! DICOM ingest: from instances as scanners send them to `renal.cases`.
//!
//! The pure part lives here and is tested without a bus: [`instance::parse`] reads an
//! instance's header (never its pixels) and refuses what can never be used with a reason code;
//! [`classify::classify`] tells T2 from T1C by the site's rules; [`assemble::Assembler`] groups
//! instances into series and series into lesion cases, decides completeness from what the
//! segmentations promise plus a quiet period, and emits revisions when late instances change a
//! case; [`pseudonym::pseudonym`] replaces the patient ID with a keyed hash. The drop-folder
//! watcher, the C-STORE SCP and the bus loop wire these together.

pub mod assemble;
pub mod classify;
pub mod instance;
pub mod pseudonym;
pub mod scp;
pub mod scu;
pub mod worker;
