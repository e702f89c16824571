//! The trainer: from preprocessed lesions and their labels to the versioned bundles the
//! inference and ensemble stages serve.
//!
//! [`config`] holds the networks' training settings; [`protocol`] reads the labels and cuts the
//! labelled lesions into patient-grouped rounds (70/20/10, k folds, or leave one institution
//! out); [`fit`] fits the clinical model, the first-order baselines ([`baseline`]), the T2 and
//! T1C networks ([`cnn`]), the bagged ensemble and every Platt calibrator of each round and
//! saves the bundles; [`evaluate`] writes the held-out predictions and the report; [`challenge`]
//! decides whether a challenger may replace the champion; [`recalibrate`] says when a calibration
//! alert calls for refitting the calibrator alone; [`trigger`] decides when the trainer worker
//! retrains (labels, a schedule, monitor alerts). [`stages`] predicts lesions through the inference and
//! ensemble stages; [`retrain`] runs one retrain against a deployment's champion (`renal train
//! --out` and the worker). `renal worker trainer` ([`serve`], [`run`], [`events`], `[trainer]`
//! in [`config`]) reads `renal.lesions` and `renal.labels`, retrains when a trigger fires and
//! sends the registry's events to `renal.models`.

pub mod baseline;
pub mod challenge;
pub mod cnn;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod fit;
pub mod protocol;
pub mod recalibrate;
pub mod retrain;
pub mod run;
pub mod serve;
pub mod stages;
pub mod trigger;

pub use challenge::{decide, Decision, Margins};
pub use config::CnnSettings;
pub use config::TrainerConfig;
pub use error::TrainerError;
pub use fit::{fit, Chosen, CnnSetup, Fitted, Predictions, Round, Scores, Served};
pub use protocol::{read_truth, Protocol};
pub use recalibrate::{calibration_alert, AlertRule, CalibrationCheck, Retrain};
pub use run::{run, Trainer, TrainerStats};
pub use serve::{serve, ServeError};
