//! `renal worker <name> --config FILE`: read the worker file, then call that stage's `serve`.
//!
//! A worker file is TOML with a `[kafka]` section (`renal_bus::KafkaConfig`) and the stage's own
//! section (`[ingest]`, `[preprocess]`, ...), each of which refuses unknown keys, and an optional
//! `[telemetry]` section: `metrics_addr = "0.0.0.0:9464"` serves `/metrics`, `/healthz` and
//! `/readyz` there (`renal_telemetry`). One file may hold several stages' sections; a section
//! that names no stage is refused as a typo.

use anyhow::{bail, Context, Result};
use renal_bus::KafkaConfig;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::Path;

/// The stages `renal worker` runs.
pub const STAGES: [&str; 7] = ["ingest", "preprocess", "radiomics", "inference", "ensemble", "monitor", "trainer"];

/// `[telemetry]`: where the worker answers Prometheus and health checks.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz` (for example `0.0.0.0:9464`); none:
    /// no endpoint.
    #[serde(default)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A worker file's `[telemetry]` section (defaults when absent).
fn telemetry(text: &str) -> Result<TelemetryConfig> {
    let mut table: toml::Table = toml::from_str(text)?;
    match table.remove("telemetry") {
        Some(t) => Ok(t.try_into().context("[telemetry]")?),
        None => Ok(TelemetryConfig::default()),
    }
}

/// The `[kafka]` section of a worker file's table, taken out of it.
pub fn kafka_section(table: &mut toml::Table) -> Result<KafkaConfig> {
    let kafka = table.remove("kafka").context("[kafka] section missing")?;
    kafka.try_into().context("[kafka]")
}

/// A worker file's `[kafka]` section and its `[<stage>]` section.
fn sections<T: DeserializeOwned>(text: &str, stage: &str) -> Result<(KafkaConfig, T)> {
    let mut table: toml::Table = toml::from_str(text)?;
    table.remove("telemetry");
    let kafka = kafka_section(&mut table)?;
    let own = table.remove(stage).with_context(|| format!("[{stage}] section missing"))?;
    // One file may hold several workers' sections (a site's whole configuration); anything
    // else is a typo that would otherwise be ignored.
    if let Some(other) = table.keys().find(|k| !STAGES.contains(&k.as_str())) {
        bail!("unknown top-level key or section {other:?} (a worker file has [kafka] and [<worker>] sections; workers: {})", STAGES.join(", "));
    }
    let own: T = own.try_into().with_context(|| format!("[{stage}]"))?;
    Ok((kafka, own))
}

/// Stop on the first Ctrl-C (the stage finishes its input and commits); a second one, for a
/// worker still waiting on an unreachable broker, exits at once without committing (the
/// inputs are redelivered later).
async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("stopping after the current input (Ctrl-C again to exit now)");
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

fn serve<T, S, E, F>(text: &str, stage: &str, serve: impl FnOnce(T, KafkaConfig) -> F) -> Result<()>
where
    T: DeserializeOwned,
    F: Future<Output = Result<S, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let (kafka, config) = sections::<T>(text, stage)?;
    if let Some(addr) = telemetry(text)?.metrics_addr {
        renal_telemetry::build_info(env!("CARGO_PKG_VERSION"), renal_messages::code_version());
        let bound = renal_telemetry::serve(addr)?;
        eprintln!("{stage}: /metrics, /healthz and /readyz on http://{bound}");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(config, kafka))?;
    Ok(())
}

/// `renal worker <name> --config FILE`.
pub fn run(name: &str, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let context = || format!("{name} worker ({})", path.display());
    match name {
        "ingest" => serve(&text, name, |c, k| renal_ingest::serve(c, k, interrupted())),
        "preprocess" => serve(&text, name, |c, k| renal_preprocess::serve(c, k, interrupted())),
        "radiomics" => serve(&text, name, |c, k| renal_radiomics::serve(c, k, interrupted())),
        "inference" => serve(&text, name, |c, k| renal_inference::serve(c, k, interrupted())),
        "ensemble" => serve(&text, name, |c, k| renal_ensemble::serve(c, k, interrupted())),
        "monitor" => serve(&text, name, |c, k| renal_monitor::serve(c, k, interrupted())),
        "trainer" => serve(&text, name, |c, k| renal_trainer::serve(c, k, interrupted())),
        other => bail!("no worker named {other:?} (workers: {})", STAGES.join(", ")),
    }
    .with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(name)).unwrap()
    }

    #[test]
    fn the_documented_worker_files_parse_and_state_the_defaults() {
        let (kafka, pre): (_, renal_preprocess::PreprocessConfig) =
            sections(&file("preprocess.toml"), "preprocess").unwrap();
        assert_eq!(pre.settings, renal_preprocess::PreprocessSettings::default(), "the file lists the defaults");
        assert_eq!(
            kafka,
            KafkaConfig { bootstrap_servers: kafka.bootstrap_servers.clone(), ..KafkaConfig::local("", "renal") }
        );
        let (_, ingest): (_, renal_ingest::IngestConfig) = sections(&file("ingest.toml"), "ingest").unwrap();
        assert_eq!(ingest.scp[0].durability, renal_ingest::scp::Durability::Fsync);
        assert_eq!(
            (ingest.quarantine_store.as_deref(), ingest.private_creators.len()),
            (None, 0),
            "raw instances kept nowhere"
        );
        let (_, inference): (_, renal_inference::InferenceConfig) =
            sections(&file("inference.toml"), "inference").unwrap();
        let minimal = renal_inference::InferenceConfig::new("b", "r".into(), "v");
        assert_eq!(
            (inference.device.as_str(), inference.max_batch, inference.max_wait_ms),
            (minimal.device.as_str(), minimal.max_batch, minimal.max_wait_ms),
            "the file lists the defaults"
        );
        let (_, ensemble): (_, renal_ensemble::EnsembleConfig) = sections(&file("ensemble.toml"), "ensemble").unwrap();
        let minimal = renal_ensemble::EnsembleConfig::new("r".into(), "v", "s".into());
        assert_eq!(
            (ensemble.lesion_wait_ms, ensemble.modality_wait_ms),
            (minimal.lesion_wait_ms, minimal.modality_wait_ms),
            "the file lists the defaults"
        );
        let (_, radiomics): (_, renal_radiomics::RadiomicsConfig) =
            sections(&file("radiomics.toml"), "radiomics").unwrap();
        assert_eq!(radiomics.settings, None, "the study's grid by default");
        let (_, monitor): (_, renal_monitor::MonitorConfig) = sections(&file("monitor.toml"), "monitor").unwrap();
        let minimal = renal_monitor::MonitorConfig::new("r".into(), "t".into(), "s".into());
        assert_eq!(
            renal_monitor::MonitorConfig {
                reference: minimal.reference.clone(),
                table_root: minimal.table_root.clone(),
                state_dir: minimal.state_dir.clone(),
                ..monitor
            },
            minimal,
            "the file lists the defaults"
        );
        let (_, trainer): (_, renal_trainer::TrainerConfig) = sections(&file("trainer.toml"), "trainer").unwrap();
        let minimal = renal_trainer::TrainerConfig::new("r".into(), "s".into(), "b", "t".into());
        assert_eq!(
            (
                &trainer.triggers,
                &trainer.margins,
                &trainer.cnn,
                trainer.tick_s,
                &trainer.on_labels,
                &trainer.pseudonym_secret_env
            ),
            (
                &minimal.triggers,
                &minimal.margins,
                &minimal.cnn,
                minimal.tick_s,
                &minimal.on_labels,
                &minimal.pseudonym_secret_env
            ),
            "the file lists the defaults"
        );
        trainer.validate().unwrap();
    }

    #[test]
    fn the_telemetry_section_is_optional_and_strict() {
        let text = file("radiomics.toml");
        assert_eq!(telemetry(&text).unwrap().metrics_addr, Some("0.0.0.0:9463".parse().unwrap()));
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("[telemetry]") && !l.starts_with("metrics_addr"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(telemetry(&without).unwrap(), TelemetryConfig::default());
        let typo = text.replace("metrics_addr", "metric_addr");
        assert!(format!("{:#}", telemetry(&typo).unwrap_err()).contains("unknown field"));
        let bad = text.replace("0.0.0.0:9463", "nowhere");
        assert!(telemetry(&bad).is_err());
    }

    #[test]
    fn a_file_without_the_section_or_with_a_stray_one_is_refused() {
        let text = file("preprocess.toml");
        let err = sections::<renal_ingest::IngestConfig>(&text, "ingest").unwrap_err();
        assert!(format!("{err:#}").contains("[ingest] section missing"), "{err:#}");
        let shared = format!("{text}\n[ensemble]\nregistry = \"r\"\n");
        assert!(
            sections::<renal_preprocess::PreprocessConfig>(&shared, "preprocess").is_ok(),
            "another stage's section"
        );
        let stray = format!("{text}\n[ensembel]\nregistry = \"r\"\n");
        let err = sections::<renal_preprocess::PreprocessConfig>(&stray, "preprocess").unwrap_err();
        assert!(format!("{err:#}").contains("\"ensembel\""), "{err:#}");
        let typo = text.replace("[preprocess]", "[preprocess]\nblob_sotre = \"x\"");
        let err = sections::<renal_preprocess::PreprocessConfig>(&typo, "preprocess").unwrap_err();
        assert!(format!("{err:#}").contains("blob_sotre"), "{err:#}");
    }
}
