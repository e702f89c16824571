//! Label intake: pathology results, which arrive days or weeks after imaging, into
//! `renal.labels`.
//!
//! [`process`] reads a labels CSV into one `LabelV1` per row, or a typed error per bad row
//! whose code is the dead-letter reason; [`run`] sends them (good rows to `renal.labels`, bad
//! ones to `renal.dead.labels`). The trainer reads its labels through the same step. A labels
//! drop folder and `renal labels import` come with the trainer worker.

pub mod process;
pub mod run;

pub use process::{parse, LabelError};
pub use run::{import, ImportStats};
