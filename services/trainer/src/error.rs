//! Why training could not go on.

use std::path::PathBuf;

/// Why the trainer stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The labels file is unusable.
    #[error("labels {path}: {source}")]
    Labels { path: PathBuf, source: renal_labels::LabelError },
    /// Too few labelled lesions for a train/validation/test split.
    #[error("{labelled} labelled lesions; at least {needed} are needed for a train/validation/test split")]
    TooFewLabelled { labelled: usize, needed: usize },
    /// The protocol cannot be applied to these lesions.
    #[error("{0}")]
    Protocol(String),
    /// The lesions cannot be split.
    #[error(transparent)]
    Split(#[from] renal_learn::split::SplitError),
    /// The clinical model did not fit.
    #[error("clinical model: {0}")]
    Clinical(#[from] renal_learn::clinical::ClinicalError),
    /// A calibrator did not fit.
    #[error("Platt calibration of the {model}: {source}")]
    Calibration { model: String, source: renal_stats::CalibrationError },
    /// A composite could not be read.
    #[error("{what}: {source}")]
    Blob { what: String, source: renal_store::BlobError },
    /// A composite is not one.
    #[error("{what} {reason}")]
    Composite { what: String, reason: String },
    /// A network did not train.
    #[error("training the {role} network: {source}")]
    Network { role: String, source: renal_cnn::train::TrainError },
    /// A CNN bundle could not be saved.
    #[error(transparent)]
    CnnBundle(#[from] renal_cnn::bundle::BundleError),
    /// An ensemble bundle could not be saved.
    #[error(transparent)]
    EnsembleBundle(#[from] renal_ensemble::bundle::BundleError),
    /// The feature store could not be read.
    #[error("feature store: {0}")]
    Features(String),
    /// An output file could not be written or read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Map an I/O error on `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainerError + '_ {
    move |source| TrainerError::Io { path: path.to_path_buf(), source }
}
