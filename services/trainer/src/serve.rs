//! `renal worker trainer`: the stage's start-up on Kafka, and the Alertmanager webhook it
//! listens on.

use crate::config::{ConfigError, TrainerConfig};
use crate::events::TrainerStarted;
use crate::run::{Trainer, TrainerStats};
use crate::trigger::{firing_alerts, Signal};
use renal_bus::{BusError, KafkaConfig};
use renal_messages::topics;
use renal_telemetry::emit;
use std::future::Future;
use std::net::SocketAddr;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting cannot work.
    #[error("starting the trainer worker: {0}")]
    Config(#[from] ConfigError),
    /// The registry cannot say what is served.
    #[error("starting the trainer worker: {0}")]
    Registry(#[from] renal_registry::RegistryError),
    /// Nothing is promoted, so there is no champion to challenge.
    #[error("starting the trainer worker: deployment {deployment} serves no model in {registry}: train a first one (renal run on a labelled cohort, or renal train) and promote it (renal models promote)")]
    NotPromoted { deployment: String, registry: std::path::PathBuf },
    /// The blob store cannot be opened.
    #[error("starting the trainer worker: {0}")]
    Blob(#[from] renal_store::BlobError),
    /// The state folder or the alerts address cannot be used.
    #[error("starting the trainer worker: {0}")]
    Io(String),
    /// The bus failed in a way retrying will not fix.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The loop stopped on an error.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
}

/// Check the settings, the champion and the stores before touching the broker, then read,
/// trigger and retrain until `shutdown`.
pub async fn serve(
    config: TrainerConfig,
    kafka: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<TrainerStats, ServeError> {
    let train = config.validate()?;
    let (device, why) = renal_cnn::device::select(config.device()?).map_err(ConfigError)?;
    let registry = renal_registry::Registry::new(&config.registry, &config.store);
    let Some(champion) = registry.promoted(&config.deployment)? else {
        return Err(ServeError::NotPromoted {
            deployment: config.deployment.clone(),
            registry: config.registry.clone(),
        });
    };
    let store = renal_store::open(&config.blob_store)?;
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| ServeError::Io(format!("state_dir {}: {e}", config.state_dir.display())))?;
    let book = renal_labels::book::read(&crate::run::book_path(&config)).map_err(ServeError::Io)?;
    let (tx, alerts) = tokio::sync::mpsc::unbounded_channel();
    if let Some(addr) = config.alerts_addr {
        let bound = listen_for_alerts(addr, tx).map_err(ServeError::Io)?;
        tracing::info!(stage = "trainer", "trainer: Alertmanager webhook on http://{bound}/alerts");
    }
    emit(TrainerStarted {
        deployment: &config.deployment,
        champion: &champion.version,
        device: &why,
        labels: book.len(),
    });
    let wanted = [topics::LESIONS, topics::LABELS, topics::MODELS, topics::DEAD_TRAINER, topics::DEAD_LABELS];
    let bus = renal_bus::connect(&kafka, "renal-trainer", &wanted).await?;
    let keys = renal_base::keys::Keys::from_env(&config.pseudonym_secret_env);
    let trainer = Trainer { config, train, device, store, book, keys };
    Ok(crate::run(trainer, bus, alerts, shutdown).await?)
}

/// Answer Alertmanager's webhook (`POST /alerts`) on `addr` from a background thread: each
/// firing alert goes to `tx`; a post that is not a webhook body gets 400. Returns the bound
/// address (port 0 picks a free one).
pub fn listen_for_alerts(
    addr: SocketAddr,
    tx: tokio::sync::mpsc::UnboundedSender<Signal>,
) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(addr).map_err(|e| format!("alerts_addr {addr}: {e}"))?;
    let bound = server.server_addr().to_ip().ok_or_else(|| format!("alerts_addr {addr}: not an IP address"))?;
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || {
            for mut request in server.incoming_requests() {
                let (status, body) = if request.url() != "/alerts" {
                    (404, "post Alertmanager's webhook to /alerts\n".to_string())
                } else if *request.method() != tiny_http::Method::Post {
                    (405, "only POST\n".to_string())
                } else {
                    let mut body = Vec::new();
                    match std::io::Read::read_to_end(&mut request.as_reader(), &mut body)
                        .map_err(|e| e.to_string())
                        .and_then(|_| firing_alerts(&body).map_err(|e| e.to_string()))
                    {
                        Ok(signals) => {
                            let n = signals.len();
                            for s in signals {
                                tracing::info!(stage = "trainer", "alert firing: {s:?}");
                                let _ = tx.send(s);
                            }
                            (200, format!("{n} firing alerts taken\n"))
                        }
                        Err(why) => {
                            tracing::warn!(stage = "trainer", "an alert post refused: {why}");
                            (400, format!("{why}\n"))
                        }
                    }
                };
                let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn request(addr: SocketAddr, method: &str, body: &str) -> u16 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "{method} /alerts HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn alertmanager_posts_become_signals_and_anything_else_is_refused() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = listen_for_alerts("127.0.0.1:0".parse().unwrap(), tx).unwrap();
        let post =
            r#"{"alerts": [{"status": "firing", "labels": {"alertname": "RenalCalibrationDrift", "site": "MAY"}}]}"#;
        assert_eq!(request(addr, "POST", post), 200);
        assert_eq!(
            rx.try_recv().unwrap(),
            Signal::Alert { name: "RenalCalibrationDrift".into(), site: Some("MAY".into()) }
        );
        assert_eq!(request(addr, "POST", "not json"), 400);
        assert_eq!(request(addr, "GET", ""), 405);
        assert!(rx.try_recv().is_err(), "nothing from a refused request");
    }
}
