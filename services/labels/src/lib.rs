//! Label intake: pathology results, which arrive days or weeks after imaging, into
//! `renal.labels`.
//!
//! [`process`] reads a labels CSV into one `LabelV1` per row, or a typed error per bad row
//! whose code is the dead-letter reason; [`run`] sends them (good rows to `renal.labels`, bad
//! ones to `renal.dead.labels`); [`book`] keeps the latest label of each lesion, as the trainer
//! reads them. The trainer reads its labels through the same step.

pub mod book;
pub mod process;
pub mod run;

pub use process::{parse, LabelError};
pub use run::{import, ImportStats};
