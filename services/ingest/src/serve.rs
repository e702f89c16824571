//! `renal worker ingest`: the stage's start-up on Kafka, with its C-STORE receivers.

use crate::config::IngestConfig;
use crate::events::{IngestStopped, ReceiverListening};
use crate::run::{run, IngestError, IngestStats, Mode};
use crate::scp::Scp;
use renal_bus::KafkaConfig;
use renal_messages::topics;
use renal_telemetry::emit;
use std::future::Future;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A C-STORE receiver could not listen.
    #[error("C-STORE receiver on {bind}: {source}")]
    Scp { bind: String, source: std::io::Error },
    /// The loop stopped.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Check the settings, start the C-STORE receivers, connect to the broker and scan the drop
/// folders until `shutdown`; the receivers stop with the loop.
pub async fn serve(
    config: IngestConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestStats, ServeError> {
    config.validate().map_err(IngestError::from)?;
    let secret = config.secret().map_err(IngestError::from)?;
    let mut receivers = Vec::new();
    for scp in &config.scp {
        let folder = &config.sites.iter().find(|s| s.code == scp.site).expect("validated").drop_folder;
        if scp.calling_ae_titles.is_empty() {
            tracing::warn!(
                stage = "ingest",
                site = scp.site.as_str(),
                "C-STORE receiver {} accepts any calling AE title: list the site's senders in calling_ae_titles",
                scp.ae_title
            );
        }
        let r = Scp::start(scp, folder).map_err(|source| ServeError::Scp { bind: scp.bind.clone(), source })?;
        emit(ReceiverListening { ae_title: &scp.ae_title, addr: r.addr, site: &scp.site });
        receivers.push(r);
    }
    let result = async {
        let bus = renal_bus::connect(&kafka, "renal-ingest", &[topics::CASES, topics::DEAD_INGEST])
            .await
            .map_err(IngestError::from)?;
        Ok::<_, ServeError>(run(&config, secret, bus, Mode::Continuous, shutdown, &|_| {}).await?)
    }
    .await;
    for r in receivers {
        r.stop();
    }
    let stats = result?;
    emit(IngestStopped { stats: &stats });
    Ok(stats)
}
