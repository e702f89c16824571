//! `renal worker ensemble`: the stage's start-up on Kafka.

use crate::bundle::{self, BundleError};
use crate::config::EnsembleConfig;
use crate::run::EnsembleStats;
use renal_bus::{heartbeat, BusError, KafkaConfig};
use renal_messages::topics;
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
    let bundle = bundle::load(&config.registry, &config.model_version)?;
    tracing::info!(
        "ensemble: serving {} over CNN bundle {} (threshold {}); waiting up to {} ms for a scored lesion's clinical values and {} ms for the other half of a half score",
        bundle.version, bundle.content.cnn_version, bundle.content.threshold, config.lesion_wait_ms, config.modality_wait_ms
    );
    let topics = [topics::LESIONS, topics::SCORES, topics::PREDICTIONS, topics::DEAD_ENSEMBLE];
    let bus = renal_bus::connect(&kafka, "renal-ensemble", &topics).await?;
    let s = crate::run(&config, bundle, bus, shutdown, &heartbeat("ensemble", "score attempts")).await?;
    tracing::info!(
        "ensemble stopped: {} scores, {} predictions, {} dead letters; {} lesions joined, {} dead letters; {} partial scores dead-lettered after the wait",
        s.scores.inputs, s.scores.outputs, s.scores.dead_letters, s.lesions.inputs, s.lesions.dead_letters, s.partial_dead_letters
    );
    Ok(s)
}
