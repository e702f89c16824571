//! The preprocess stage on a bus: `renal.cases` in, `renal.lesions` out, dead letters to
//! `renal.dead.preprocess`. Each case runs on a blocking thread (N4 is CPU work); the output is
//! keyed by case id, so a redelivered case overwrites rather than duplicates downstream.

use crate::config::PreprocessSettings;
use crate::process::preprocess;
use renal_bus::{run_stage, Bus, BusError, Outcome, Record, StageConfig, StageStats};
use renal_messages::{topics, CaseV1};
use renal_store::BlobStore;
use std::future::Future;
use std::sync::Arc;

/// Consumer group of the preprocess workers.
pub const GROUP: &str = "renal-preprocess";

/// Run until `shutdown` resolves; `progress` gets the number of cases begun as each begins
/// (a retry of the same input does not count again).
pub async fn run<B: Bus>(
    settings: PreprocessSettings,
    store: Arc<dyn BlobStore>,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let settings = Arc::new(settings);
    let stage = StageConfig::new("preprocess", GROUP, vec![topics::CASES]);
    let (mut started, mut last) = (0u64, None);
    run_stage(
        bus,
        stage,
        |record: Record| {
            let (settings, store) = (settings.clone(), store.clone());
            let position = Some((record.topic.clone(), record.partition, record.offset));
            if position != last {
                started += 1;
                progress(started);
                last = position;
            }
            async move {
                let case: CaseV1 = match record.decode() {
                    Ok(c) => c,
                    Err(outcome) => return outcome,
                };
                match tokio::task::spawn_blocking(move || preprocess(&case, &*store, &settings)).await {
                    Ok(Ok(lesion)) => Outcome::emit(topics::LESIONS, &lesion.case_id, &lesion),
                    Ok(Err(e)) => Outcome::failed(&e),
                    Err(panic) => Outcome::reject("panicked", panic.to_string()),
                }
            }
        },
        shutdown,
    )
    .await
}
