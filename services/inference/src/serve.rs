//! `renal worker inference`: the stage's start-up on Kafka.

use crate::config::{ConfigError, InferenceConfig};
use renal_bus::{heartbeat, Batching, BusError, KafkaConfig, StageStats};
use renal_cnn::bundle::BundleError;
use renal_cnn::score::Scorer;
use renal_messages::topics;
use renal_store::BlobError;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The device asked for is not there.
    #[error("{0}")]
    Device(String),
    /// The bundle cannot be loaded (unknown version, damaged files).
    #[error("starting the inference worker: {0}")]
    Bundle(#[from] BundleError),
    /// The blob store cannot be opened.
    #[error(transparent)]
    Store(#[from] BlobError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Load the bundle before touching the broker (a wrong version stops here), then score lesions
/// until `shutdown`.
pub async fn serve(
    config: InferenceConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<StageStats, ServeError> {
    config.validate()?;
    let (device, why) = renal_cnn::device::select(config.device()?).map_err(ServeError::Device)?;
    tracing::info!("cnn device: {why}");
    let scorer = Scorer::load(&config.registry, &config.model_version, device)?;
    let net = &scorer.manifest().net;
    tracing::info!(
        "inference: serving {} ({}, {}x{} input)",
        scorer.manifest().version,
        net.backbone.name(),
        net.input_px,
        net.input_px
    );
    let store = renal_store::open(&config.blob_store)?;
    let bus = renal_bus::connect(&kafka, "renal-inference", &[topics::LESIONS, topics::SCORES, topics::DEAD_INFERENCE])
        .await?;
    let batching = Batching { max_records: config.max_batch, max_wait_ms: config.max_wait_ms };
    let stats = crate::run(batching, scorer, store, bus, shutdown, &heartbeat("inference", "lesions")).await?;
    tracing::info!(
        "inference stopped: {} lesions, {} scores, {} dead letters",
        stats.inputs,
        stats.outputs,
        stats.dead_letters
    );
    Ok(stats)
}
