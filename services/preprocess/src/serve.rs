//! `renal worker preprocess`: the stage's start-up on Kafka.

use crate::config::PreprocessConfig;
use crate::events::PreprocessStarted;
use renal_bus::events::StageStopped;
use renal_bus::{heartbeat, BusError, KafkaConfig, StageStats};
use renal_messages::topics;
use renal_store::BlobError;
use renal_telemetry::emit;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The blob store cannot be opened.
    #[error(transparent)]
    Store(#[from] BlobError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Open the blob store, connect to the broker and preprocess cases until `shutdown`.
pub async fn serve(
    config: PreprocessConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<StageStats, ServeError> {
    emit(PreprocessStarted { composite_size: config.settings.composite_size });
    let store = renal_store::open(&config.blob_store)?;
    let bus =
        renal_bus::connect(&kafka, "renal-preprocess", &[topics::CASES, topics::LESIONS, topics::DEAD_PREPROCESS])
            .await?;
    let stats = crate::run(config.settings, store, bus, shutdown, &heartbeat("preprocess", "cases")).await?;
    emit(StageStopped { stage: "preprocess", nouns: ["cases", "lesions"], stats: &stats });
    Ok(stats)
}
