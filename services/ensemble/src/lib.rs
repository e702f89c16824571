//! The ensemble stage, the study's final model: the T2 and T1C networks' raw outputs and the
//! clinical model's, fed to bagged decision trees (the meta-classifier) and calibrated by Platt
//! scaling.
//!
//! The same five parts as every stage: [`config`] (`[ensemble]`), [`process`] (a lesion's
//! clinical values kept, a score joined and predicted, or a typed error whose code is the
//! dead-letter reason; tested without a bus), [`run`] (two loops and a sweeper on the bus) and
//! [`serve`] (start-up on Kafka). [`bundle`] stores what the stage serves (clinical model,
//! trees, calibrator, threshold, and the CNN bundle they were fitted against) under a
//! content-derived version; [`join`] keeps each lesion's clinical values by lesion id. The
//! trainer (`renal-trainer`) fits bundles; the fitting itself is in `renal_learn::ensemble`.

pub mod bundle;
pub mod config;
pub mod events;
pub mod join;
pub mod process;
pub mod run;
pub mod serve;

pub use config::EnsembleConfig;
pub use process::{EnsembleError, Scored, Scoring};
pub use run::{run, EnsembleStats, GROUP, LESION_GROUP};
pub use serve::{serve, ServeError};
