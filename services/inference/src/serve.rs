//! `renal worker inference`: the stage's start-up on Kafka.

use crate::config::{ConfigError, InferenceConfig};
use crate::events::{device_label, InferenceStarted};
use renal_bus::events::StageStopped;
use renal_bus::{heartbeat, Batching, BusError, KafkaConfig, StageStats};
use renal_cnn::bundle::BundleError;
use renal_cnn::score::Scorer;
use renal_messages::topics;
use renal_store::BlobError;
use renal_telemetry::emit;
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
    if config.cpu_threads > 0 {
        // Process-wide; this process serves one stage.
        tch::set_num_threads(config.cpu_threads as i32);
    }
    let version = renal_cnn::bundle::resolve(&config.registry, &config.model_version)?;
    let scorer = Scorer::load(&config.registry, &version, device)?;
    let net = &scorer.manifest().net;
    emit(InferenceStarted {
        version: &scorer.manifest().version,
        backbone: net.backbone.name(),
        input_px: net.input_px,
        device: device_label(device),
        why: &why,
        cpu_threads: tch::get_num_threads(),
    });
    let store = renal_store::open(&config.blob_store)?;
    let bus = renal_bus::connect(&kafka, "renal-inference", &[topics::LESIONS, topics::SCORES, topics::DEAD_INFERENCE])
        .await?;
    let batching = Batching { max_records: config.max_batch, max_wait_ms: config.max_wait_ms };
    let stats = crate::run(batching, scorer, store, bus, shutdown, &heartbeat("inference", "lesions")).await?;
    emit(StageStopped { stage: "inference", nouns: ["lesions", "scores"], stats: &stats });
    Ok(stats)
}
