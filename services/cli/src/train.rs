//! The networks' training flags (`renal run`, `renal train cnn`) and `renal train cnn`.

use anyhow::{Context, Result};
use renal_cnn::device::{select, Want};
use renal_cnn::net::Backbone;
use renal_trainer::CnnSettings;
use std::path::{Path, PathBuf};
use tch::Device;

/// Training flags shared by `renal train cnn` and `renal run`; each maps onto a field of
/// [`CnnSettings`], whose defaults they show.
#[derive(clap::Args, Debug, Clone)]
pub struct CnnArgs {
    /// Backbone: resnet18, resnet34 or resnet50 (the study's).
    #[arg(long, default_value_t = CnnSettings::default().backbone)]
    pub backbone: Backbone,
    /// Network input side, pixels; the 200x200 composites are resampled to it (200: the study's).
    #[arg(long, default_value_t = CnnSettings::default().input_px)]
    pub input_px: i64,
    /// Maximum epochs per trial.
    #[arg(long, default_value_t = CnnSettings::default().epochs)]
    pub epochs: usize,
    /// Epochs without a better validation ROC AUC before stopping.
    #[arg(long, default_value_t = CnnSettings::default().patience)]
    pub patience: usize,
    /// Independent trials (seeds); the best by validation ROC AUC is kept.
    #[arg(long, default_value_t = CnnSettings::default().trials)]
    pub trials: usize,
    /// Images per training step.
    #[arg(long, default_value_t = CnnSettings::default().batch_size)]
    pub batch_size: usize,
    /// adam (default) or sgd (momentum 0.9, the study's optimiser family).
    #[arg(long, default_value_t = CnnSettings::default().optimizer)]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = CnnSettings::default().lr)]
    pub lr: f64,
    /// Dense head: plain, or study (batch norm, dropout 0.5, L1/L2 0.01, as the authors' code).
    #[arg(long, default_value_t = CnnSettings::default().head)]
    pub head: String,
    /// Seed of initialisation, order and augmentation.
    #[arg(long, default_value_t = CnnSettings::default().seed)]
    pub cnn_seed: u64,
    /// Backbone weights to start from: torchvision-named safetensors
    /// (scripts/export-torchvision-weights.py).
    #[arg(long)]
    pub init_weights: Option<PathBuf>,
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Want,
    /// The study's full settings (ResNet-50 at 200x200, 500 epochs, patience 50, 10 trials);
    /// meant for a GPU. Overrides the size, epoch and trial flags.
    #[arg(long)]
    pub study: bool,
}

impl CnnArgs {
    /// The settings the flags give.
    pub fn settings(&self) -> CnnSettings {
        CnnSettings {
            backbone: self.backbone,
            input_px: self.input_px,
            epochs: self.epochs,
            patience: self.patience,
            trials: self.trials,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            head: self.head.clone(),
            seed: self.cnn_seed,
            init_weights: self.init_weights.clone(),
            study: self.study,
        }
    }
}

/// The device for training or inference, announced once.
pub fn device(want: Want) -> Result<Device> {
    let (d, why) = select(want).map_err(anyhow::Error::msg)?;
    eprintln!("cnn device: {why}");
    Ok(d)
}

/// `renal train cnn`.
pub fn train_cnn(
    run: &Path,
    labels: &Path,
    registry: Option<&Path>,
    checkpoint: Option<&Path>,
    parts: [f64; 3],
    args: &CnnArgs,
) -> Result<()> {
    let config = args.settings().validate().context("training settings")?;
    let device = device(args.device)?;
    let registry = registry.map(Path::to_path_buf).unwrap_or_else(|| run.join("models"));
    let keys = crate::embedded::run_keys(run)?;
    for line in renal_trainer::cnn::train_cnn(run, labels, Some(&keys), &registry, checkpoint, parts, &config, device)?
    {
        println!("{line}");
    }
    Ok(())
}
