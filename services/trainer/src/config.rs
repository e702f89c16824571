//! How the networks are trained: the settings `renal run` and `renal train cnn` take as flags,
//! with their defaults in one place, checked and turned into a [`TrainConfig`].

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
