//! `renal worker radiomics`: the stage's start-up on Kafka.

use crate::config::RadiomicsConfig;
use crate::events::RadiomicsStarted;
use crate::process::Extractor;
use crate::settings::SettingsError;
use renal_bus::events::StageStopped;
use renal_bus::{heartbeat, BusError, KafkaConfig, StageStats};
use renal_messages::topics;
use renal_store::{BlobError, TableWriter};
use renal_telemetry::emit;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings file is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The blob store cannot be opened.
    #[error(transparent)]
    Store(#[from] BlobError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Read the settings, open the stores, connect to the broker and run until `shutdown`.
pub async fn serve(
    config: RadiomicsConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<StageStats, ServeError> {
    let settings = config.load_settings()?;
    let extractor =
        Extractor::new(renal_store::open(&config.blob_store)?, TableWriter::new(&config.table_root), settings);
    emit(RadiomicsStarted { settings: extractor.settings.len(), settings_sha256: &extractor.settings_sha256 });
    let bus =
        renal_bus::connect(&kafka, "renal-radiomics", &[topics::LESIONS, topics::FEATURES, topics::DEAD_RADIOMICS])
            .await?;
    let stats = crate::run(extractor, bus, shutdown, &heartbeat("radiomics", "lesions")).await?;
    emit(StageStopped { stage: "radiomics", nouns: ["lesions", "feature files"], stats: &stats });
    Ok(stats)
}
