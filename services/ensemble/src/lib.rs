//! The ensemble stage, the study's final model: the T2 and T1C networks' raw outputs and the
//! clinical model's, fed to bagged decision trees (the meta-classifier) and calibrated by Platt
//! scaling.
//!
//! [`bundle`] stores what the stage serves (clinical model, trees, calibrator, threshold, and
//! the CNN bundle they were fitted against) under a content-derived version; [`join`] keeps
//! each lesion's clinical values by lesion id; [`worker`] joins scores with them and emits
//! predictions. `renal run` fits bundles (`renal_cli::arms`); the fitting itself is in
//! `renal_learn::ensemble`.

pub mod bundle;
pub mod join;
pub mod worker;
