//! The model-selection protocol, as pure functions: which lesions train, which select, which
//! test. [`split`] makes the study's 70/20/10 split, k folds and leave-one-institution-out
//! splits, all grouped by patient (no patient on both sides of any line), stratified by label,
//! and keeping lesions without a histopathology diagnosis out of every test set.

pub mod bagging;
pub mod calibrate;
pub mod clinical;
pub mod ensemble;
pub mod split;
