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
    /// The registry cannot say which model is promoted.
    #[error("starting the inference worker: {0}")]
    Registry(#[from] renal_registry::RegistryError),
}

/// `model_version` that serves the deployment's promoted model and follows its promotions.
pub const PROMOTED: &str = "promoted";

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
    let registry = renal_registry::Registry::new(&config.registry, &config.registry.join("store"));
    let promoted = if config.model_version == PROMOTED {
        let Some(p) = registry.promoted(&config.deployment)? else {
            return Err(ServeError::Config(ConfigError(format!(
                "model_version = \"promoted\": deployment {} serves no model in {}",
                config.deployment,
                config.registry.display()
            ))));
        };
        Some(p)
    } else {
        None
    };
    let version = match &promoted {
        Some(p) => p.cnn_version.clone(),
        None => renal_cnn::bundle::resolve(&config.registry, &config.model_version)?,
    };
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
    let bus = renal_bus::connect(
        &kafka,
        "renal-inference",
        &[topics::LESIONS, topics::SCORES, topics::DEAD_INFERENCE, topics::MODELS],
    )
    .await?;
    let batching = Batching { max_records: config.max_batch, max_wait_ms: config.max_wait_ms };
    let progress = heartbeat("inference", "lesions");
    let stats = match promoted {
        None => crate::run(batching, scorer, store, bus, None, shutdown, &progress).await?,
        Some(pointer) => {
            // New promotions are loaded beside the loop and served from its next batch on.
            let registry_dir = config.registry.clone();
            let following = renal_registry::follow::Following {
                stage: "inference",
                registry: &registry,
                deployment: &config.deployment,
                serving: &pointer,
                part: |p| &p.cnn_version,
                load: move |version: &str| Scorer::load(&registry_dir, version, device).map_err(|e| e.to_string()),
            };
            renal_registry::follow::run_following(&bus, following, |swaps| {
                crate::run(batching, scorer, store, bus.clone(), Some(swaps), shutdown, &progress)
            })
            .await?
        }
    };
    emit(StageStopped { stage: "inference", nouns: ["lesions", "scores"], stats: &stats });
    Ok(stats)
}
