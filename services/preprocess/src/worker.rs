//! The preprocess stage on a bus: `renal.cases` in, `renal.lesions` out, dead letters to
//! `renal.dead.preprocess`. Each case runs on a blocking thread (N4 is CPU work); the output is
//! keyed by case id, so a redelivered case overwrites rather than duplicates downstream.

use crate::{preprocess, PreprocessConfig};
use renal_bus::{run_stage, Bus, BusError, Outcome, Output, Record, StageConfig, StageStats};
use renal_messages::{topics, CaseV1, Message};
use renal_store::BlobStore;
use std::future::Future;
use std::sync::Arc;

/// Consumer group of the preprocess workers.
pub const GROUP: &str = "renal-preprocess";

/// Run until `shutdown` resolves; `progress` gets the number of cases begun as each begins
/// (a retry of the same input does not count again).
pub async fn run<B: Bus>(
    cfg: PreprocessConfig,
    store: Arc<dyn BlobStore>,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let cfg = Arc::new(cfg);
    let stage = StageConfig::new("preprocess", GROUP, vec![topics::CASES]);
    let (mut started, mut last) = (0u64, None);
    run_stage(
        bus,
        stage,
        |record: Record| {
            let (cfg, store) = (cfg.clone(), store.clone());
            let position = Some((record.topic.clone(), record.partition, record.offset));
            if position != last {
                started += 1;
                progress(started);
                last = position;
            }
            async move {
                let case = match CaseV1::decode(&record.payload) {
                    Ok(c) => c,
                    Err(e) => return Outcome::Reject { code: "bad_message".into(), reason: e.to_string() },
                };
                let result = tokio::task::spawn_blocking(move || preprocess(&case, &*store, &cfg)).await;
                match result {
                    Ok(Ok(lesion)) => Outcome::Done(vec![Output {
                        topic: topics::LESIONS,
                        key: lesion.case_id.clone(),
                        payload: lesion.encode(),
                    }]),
                    Ok(Err(e)) => match e.code() {
                        Some(code) => Outcome::Reject { code: code.into(), reason: e.to_string() },
                        None => Outcome::Retry(e.to_string()),
                    },
                    Err(join) => Outcome::Reject { code: "panicked".into(), reason: join.to_string() },
                }
            }
        },
        shutdown,
    )
    .await
}
