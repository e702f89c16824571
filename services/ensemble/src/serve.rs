//! `renal worker ensemble`: the stage's start-up on Kafka.

use crate::bundle::{self, BundleError};
use crate::config::EnsembleConfig;
use crate::events::{EnsembleStarted, EnsembleStopped};
use crate::run::EnsembleStats;
use renal_bus::{heartbeat, BusError, KafkaConfig};
use renal_messages::topics;
use renal_telemetry::emit;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bundle cannot be loaded (unknown version, altered file).
    #[error("starting the ensemble worker: {0}")]
    Bundle(#[from] BundleError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The registry cannot say which model is promoted.
    #[error("starting the ensemble worker: {0}")]
    Registry(#[from] renal_registry::RegistryError),
    /// `model_version = "promoted"` and nothing is.
    #[error("starting the ensemble worker: model_version = \"promoted\": deployment {deployment} serves no model in {registry}")]
    NotPromoted { deployment: String, registry: std::path::PathBuf },
}

/// `model_version` that serves the deployment's promoted model and follows its promotions.
pub const PROMOTED: &str = "promoted";

/// Load the bundle before touching the broker (a wrong version stops here), then join and
/// predict until `shutdown`.
pub async fn serve(
    config: EnsembleConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<EnsembleStats, ServeError> {
    let registry = renal_registry::Registry::new(&config.registry, &config.registry.join("store"));
    let promoted = if config.model_version == PROMOTED {
        let Some(p) = registry.promoted(&config.deployment)? else {
            return Err(ServeError::NotPromoted {
                deployment: config.deployment.clone(),
                registry: config.registry.clone(),
            });
        };
        Some(p)
    } else {
        None
    };
    let version = match &promoted {
        Some(p) => p.version.clone(),
        None => bundle::resolve(&config.registry, &config.model_version)?,
    };
    let bundle = bundle::load(&config.registry, &version)?;
    emit(EnsembleStarted {
        version: &bundle.version,
        cnn_version: &bundle.content.cnn_version,
        threshold: bundle.content.threshold,
        lesion_wait_ms: config.lesion_wait_ms,
        modality_wait_ms: config.modality_wait_ms,
    });
    let topics = [topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE, topics::MODELS];
    let bus = renal_bus::connect(&kafka, "renal-ensemble", &topics).await?;
    let progress = heartbeat("ensemble", "score attempts");
    let s = match promoted {
        None => crate::run(&config, bundle, bus, None, shutdown, &progress).await?,
        Some(pointer) => {
            // New promotions are loaded beside the loops and served from the next score on.
            let registry_dir = config.registry.clone();
            let following = renal_registry::follow::Following {
                stage: "ensemble",
                registry: &registry,
                deployment: &config.deployment,
                serving: &pointer,
                part: |p| &p.version,
                load: move |version: &str| bundle::load(&registry_dir, version).map_err(|e| e.to_string()),
            };
            renal_registry::follow::run_following(&bus, following, |swaps| {
                crate::run(&config, bundle, bus.clone(), Some(swaps), shutdown, &progress)
            })
            .await?
        }
    };
    emit(EnsembleStopped { stats: &s });
    Ok(s)
}
