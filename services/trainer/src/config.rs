//! How the networks are trained: the settings `renal run` and `renal train cnn` take as flags,
//! with their defaults in one place, checked and turned into a [`TrainConfig`]; and `[trainer]`,
//! the trainer worker's section ([`TrainerConfig`]).

use renal_cnn::net::{Backbone, Head, NetConfig};
use renal_cnn::optim::OptimizerConfig;
use renal_cnn::train::{TrainConfig, COMPOSITE_PX};
use serde::Deserialize;
use std::path::PathBuf;

/// The networks' training settings. The defaults finish in minutes on a 2-core CPU (ResNet-18
/// at 64x64, 12 epochs); `study` selects the study's full settings, meant for a GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnSettings {
    /// Backbone: resnet18, resnet34 or resnet50 (the study's).
    pub backbone: Backbone,
    /// Network input side, pixels; the 200x200 composites are resampled to it (200: the study's).
    pub input_px: i64,
    /// Maximum epochs per trial.
    pub epochs: usize,
    /// Epochs without a better validation ROC AUC before stopping.
    pub patience: usize,
    /// Independent trials (seeds); the best by validation ROC AUC is kept.
    pub trials: usize,
    /// Images per training step.
    pub batch_size: usize,
    /// `adam` or `sgd` (momentum 0.9, the study's optimiser family).
    pub optimizer: String,
    /// Learning rate.
    pub lr: f64,
    /// Dense head: `plain`, or `study` (batch norm, dropout 0.5, L1/L2 0.01, as the authors' code).
    pub head: String,
    /// Seed of initialisation, order and augmentation.
    pub seed: u64,
    /// Backbone weights to start from: torchvision-named safetensors.
    pub init_weights: Option<PathBuf>,
    /// The study's full settings (ResNet-50 at 200x200, 500 epochs, patience 50, 10 trials);
    /// overrides the size, epoch and trial settings.
    pub study: bool,
}

impl Default for CnnSettings {
    fn default() -> Self {
        let quick = TrainConfig::cpu_quick();
        CnnSettings {
            backbone: quick.net.backbone,
            input_px: quick.net.input_px,
            epochs: quick.max_epochs,
            patience: quick.patience,
            trials: quick.trials,
            batch_size: quick.batch_size,
            optimizer: "adam".into(),
            lr: 1e-4,
            head: "plain".into(),
            seed: quick.seed,
            init_weights: None,
            study: false,
        }
    }
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl CnnSettings {
    /// Check the settings and build the training configuration they describe.
    pub fn validate(&self) -> Result<TrainConfig, ConfigError> {
        let head = match self.head.as_str() {
            "plain" => Head::Plain,
            "study" => Head::Study { dropout: 0.5, l1: 0.01, l2: 0.01 },
            other => return Err(ConfigError(format!("head {other:?}: want plain or study"))),
        };
        let optimizer = match self.optimizer.as_str() {
            "adam" => OptimizerConfig::adam(self.lr),
            "sgd" => OptimizerConfig::Sgd { lr: self.lr, momentum: 0.9, nesterov: false },
            other => return Err(ConfigError(format!("optimizer {other:?}: want adam or sgd"))),
        };
        if !(8..=COMPOSITE_PX * 4).contains(&self.input_px) {
            return Err(ConfigError(format!("input px {}: want 8 to {}", self.input_px, COMPOSITE_PX * 4)));
        }
        if self.epochs == 0 || self.trials == 0 || self.batch_size == 0 {
            return Err(ConfigError("epochs, trials and batch size must each be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ConfigError(format!("learning rate {} must be positive", self.lr)));
        }
        let base = if self.study {
            TrainConfig::study()
        } else {
            TrainConfig {
                net: NetConfig { backbone: self.backbone, head, input_px: self.input_px },
                max_epochs: self.epochs,
                patience: self.patience,
                trials: self.trials,
                ..TrainConfig::cpu_quick()
            }
        };
        let net = NetConfig { head, ..base.net };
        Ok(TrainConfig {
            net,
            optimizer,
            batch_size: self.batch_size,
            seed: self.seed,
            init_weights: self.init_weights.clone(),
            ..base
        })
    }
}

/// `[trainer]`: what the trainer worker reads and writes, when it retrains, and how a challenger
/// is judged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    /// Model registry folder (entries, bundles, promoted pointers, events).
    pub registry: PathBuf,
    /// Parquet store root: the `models` table and the radiomics `features` table the
    /// first-order baselines read.
    pub store: PathBuf,
    /// Blob store holding the lesions' composites (a folder or `s3://bucket/prefix`).
    pub blob_store: String,
    /// Deployment whose champion is challenged and whose pointer moves (default `default`).
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// Where the label book (`labels.jsonl`, so a restart does not count old labels as new)
    /// and the stages' temporary state live; keep it on a persistent volume.
    pub state_dir: PathBuf,
    /// A folder of labels CSV files (`case_id,label[,subtype][,diagnosis_source]`, or keyed by
    /// `accession` and `site` instead of `case_id`): each file is sent to `renal.labels` row by
    /// row (bad rows to `renal.dead.labels`) and moved to `done/` beside it. None: labels come
    /// only from `renal labels import --config`.
    #[serde(default)]
    pub labels_dir: Option<PathBuf>,
    /// Environment variable holding the de-identification secret ingest uses, which turns the
    /// accession numbers of a labels file into lesion ids (default `RENAL_PSEUDONYM_SECRET`);
    /// when it is not set, files keyed by accession are dead-lettered.
    #[serde(default = "default_secret_env")]
    pub pseudonym_secret_env: String,
    /// Where Alertmanager posts its webhook (`POST /alerts`), for example `0.0.0.0:9471`; none:
    /// alerts do not trigger retrains.
    #[serde(default)]
    pub alerts_addr: Option<std::net::SocketAddr>,
    /// How often the schedule and the labels folder are looked at, seconds (default 30).
    #[serde(default = "default_tick_s")]
    pub tick_s: u64,
    /// `cpu`, `cuda` or `auto` (default `auto`: CUDA when a GPU is visible).
    #[serde(default = "default_device")]
    pub device: String,
    /// What the labels trigger and the schedule retrain: `full` (default), or `auto`
    /// (recalibration only when the labelled lesions the champion never saw raise the
    /// calibration alert's rule, full otherwise).
    #[serde(default)]
    pub on_labels: OnLabels,
    /// When to retrain.
    #[serde(default)]
    pub triggers: crate::trigger::TriggerConfig,
    /// What a challenger must show to be promoted.
    #[serde(default)]
    pub margins: crate::Margins,
    /// How a full retrain trains the networks.
    #[serde(default)]
    pub cnn: CnnSettings,
}

fn default_deployment() -> String {
    "default".into()
}
fn default_tick_s() -> u64 {
    30
}
fn default_device() -> String {
    "auto".into()
}

/// What the labels trigger and the schedule retrain (`on_labels`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLabels {
    /// Everything.
    #[default]
    Full,
    /// Recalibration only when the lesions the champion never saw raise the calibration
    /// alert's rule, everything otherwise.
    Auto,
}

impl From<OnLabels> for crate::retrain::Choice {
    fn from(o: OnLabels) -> crate::retrain::Choice {
        match o {
            OnLabels::Full => crate::retrain::Choice::Full,
            OnLabels::Auto => crate::retrain::Choice::Auto,
        }
    }
}

fn default_secret_env() -> String {
    "RENAL_PSEUDONYM_SECRET".into()
}

impl TrainerConfig {
    /// Settings with every default.
    pub fn new(registry: PathBuf, store: PathBuf, blob_store: &str, state_dir: PathBuf) -> TrainerConfig {
        TrainerConfig {
            registry,
            store,
            blob_store: blob_store.into(),
            deployment: default_deployment(),
            state_dir,
            labels_dir: None,
            pseudonym_secret_env: default_secret_env(),
            alerts_addr: None,
            tick_s: default_tick_s(),
            device: default_device(),
            on_labels: OnLabels::default(),
            triggers: crate::trigger::TriggerConfig::default(),
            margins: crate::Margins::default(),
            cnn: CnnSettings::default(),
        }
    }

    /// The device asked for.
    pub fn device(&self) -> Result<renal_cnn::device::Want, ConfigError> {
        self.device.parse().map_err(|e| ConfigError(format!("device {e}")))
    }

    /// Check everything at start-up; the networks' training configuration.
    pub fn validate(&self) -> Result<TrainConfig, ConfigError> {
        self.device()?;
        self.triggers.clone().validate().map_err(|e| ConfigError(e.to_string()))?;
        if self.tick_s == 0 {
            return Err(ConfigError("tick_s must be at least 1".into()));
        }
        self.margins.validate().map_err(|e| ConfigError(format!("[trainer.margins] {e}")))?;
        self.cnn.validate().map_err(|e| ConfigError(format!("[trainer.cnn] {e}")))
    }
}
