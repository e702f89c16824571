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
}

/// Load the bundle before touching the broker (a wrong version stops here), then join and
/// predict until `shutdown`.
pub async fn serve(
    config: EnsembleConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<EnsembleStats, ServeError> {
    let bundle = bundle::load(&config.registry, &bundle::resolve(&config.registry, &config.model_version)?)?;
    emit(EnsembleStarted {
        version: &bundle.version,
        cnn_version: &bundle.content.cnn_version,
        threshold: bundle.content.threshold,
        lesion_wait_ms: config.lesion_wait_ms,
        modality_wait_ms: config.modality_wait_ms,
    });
    let topics = [topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE];
    let bus = renal_bus::connect(&kafka, "renal-ensemble", &topics).await?;
    let s = crate::run(&config, bundle, bus, shutdown, &heartbeat("ensemble", "score attempts")).await?;
    emit(EnsembleStopped { stats: &s });
    Ok(s)
}
