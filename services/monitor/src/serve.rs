//! `renal worker monitor`: the stage's start-up on Kafka.

use crate::config::{ConfigError, MonitorConfig};
use crate::events::MonitorStopped;
use crate::reference::{MonitorReference, ReferenceError};
use crate::run::MonitorStats;
use renal_bus::{heartbeat, BusError, KafkaConfig};
use renal_telemetry::emit;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings are inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The reference cannot be read.
    #[error("starting the monitor: {0}")]
    Reference(#[from] ReferenceError),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Check the settings and read the reference before touching the broker, then watch until
/// `shutdown`.
pub async fn serve(
    config: MonitorConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<MonitorStats, ServeError> {
    let config = config.validate()?;
    let reference = MonitorReference::load(&config.reference)?;
    let mut names: Vec<renal_messages::topics::Topic> = crate::run::inputs();
    names.push(renal_messages::topics::DEAD_MONITOR);
    let bus = renal_bus::connect(&kafka, "renal-monitor", &names).await?;
    let s = crate::run(&config, reference, bus, shutdown, &heartbeat("monitor", "messages")).await?;
    emit(MonitorStopped { stats: &s });
    Ok(s)
}
