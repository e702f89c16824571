//! The radiomics stage on a bus: `renal.lesions` in, `renal.features` out, dead letters to
//! `renal.dead.radiomics`. Each lesion is extracted on a blocking thread; the output is keyed
//! by lesion id and its table file by lesion id and revision, so a redelivery overwrites.

use crate::process::Extractor;
use renal_bus::{run_stage, Bus, BusError, Outcome, Record, StageConfig, StageStats};
use renal_messages::{topics, LesionV1};
use renal_store::sha256_hex;
use std::future::Future;

/// Consumer group of the radiomics workers.
pub const GROUP: &str = "renal-radiomics";

/// Run until `shutdown` resolves; `progress` gets the number of lesions taken so far.
pub async fn run<B: Bus>(
    extractor: Extractor,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let stage = StageConfig::new("radiomics", GROUP, vec![topics::LESIONS]);
    let mut taken = 0u64;
    run_stage(
        bus,
        stage,
        |record: Record| {
            let extractor = extractor.clone();
            taken += 1;
            progress(taken);
            async move {
                let lesion: LesionV1 = match record.decode() {
                    Ok(l) => l,
                    Err(outcome) => return outcome,
                };
                let input_sha256 = sha256_hex(&record.payload);
                let done = tokio::task::spawn_blocking(move || extractor.process(&lesion, &input_sha256)).await;
                match done {
                    Ok(Ok(features)) => Outcome::emit(topics::FEATURES, &features.case_id, &features),
                    Ok(Err(e)) => Outcome::failed(&e),
                    Err(panic) => Outcome::reject("panicked", panic.to_string()),
                }
            }
        },
        shutdown,
    )
    .await
}
