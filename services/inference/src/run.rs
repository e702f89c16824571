//! The inference stage on a bus: `renal.lesions` in, `renal.scores` out, dead letters to
//! `renal.dead.inference`.
//!
//! Lesions are gathered into batches across messages (up to `max_batch`, waiting at most
//! `max_wait_ms` after the first) so the GPU sees full batches under load and a lone lesion is
//! not held back long when traffic is light. One blocking thread at a time holds the networks.

use crate::events::{device_label, BatchScored};
use crate::process::score_batch;
use renal_bus::{run_batched_stage, Batching, Bus, BusError, Outcome, Record, StageConfig, StageStats};
use renal_cnn::score::Scorer;
use renal_messages::{topics, LesionV1};
use renal_registry::follow::ModelSwitched;
use renal_store::{sha256_hex, BlobStore};
use renal_telemetry::emit;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Consumer group of the inference workers.
pub const GROUP: &str = "renal-inference";

/// Run until `shutdown` resolves; `progress` gets the number of lesions scored so far. A
/// scorer received on `swaps` (a newly promoted CNN bundle, loaded) replaces the served one
/// between batches: the batch in flight finishes with the networks it started with, and every
/// score names the bundle that made it.
pub async fn run<B: Bus>(
    batching: Batching,
    scorer: Scorer,
    store: Arc<dyn BlobStore>,
    bus: B,
    mut swaps: Option<tokio::sync::mpsc::UnboundedReceiver<Scorer>>,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let scorer = Arc::new(Mutex::new(scorer));
    let stage = StageConfig::new("inference", GROUP, vec![topics::LESIONS]);
    let batching = Batching { max_records: batching.max_records.max(1), ..batching };
    let mut done = 0u64;
    run_batched_stage(
        bus,
        stage,
        batching,
        |records: Vec<Record>| {
            // Batches run one at a time, so between two of them nothing holds the networks.
            while let Some(next) = swaps.as_mut().and_then(|rx| rx.try_recv().ok()) {
                let mut held = scorer.lock().expect("a scoring thread panicked");
                emit(ModelSwitched {
                    stage: "inference",
                    from: &held.manifest().version,
                    to: &next.manifest().version,
                });
                *held = next;
            }
            let (scorer, store) = (scorer.clone(), store.clone());
            done += records.len() as u64;
            progress(done);
            async move {
                let n = records.len();
                // Undecodable records are answered here; the rest go to the networks together.
                let mut answers: Vec<Option<Outcome>> = Vec::with_capacity(n);
                let mut lesions = Vec::new();
                for r in &records {
                    match r.decode::<LesionV1>() {
                        Ok(l) => {
                            answers.push(None);
                            lesions.push((l, sha256_hex(&r.payload)));
                        }
                        Err(outcome) => answers.push(Some(outcome)),
                    }
                }
                let scored = tokio::task::spawn_blocking(move || {
                    let scorer = scorer.lock().expect("a scoring thread panicked");
                    let size = lesions.len();
                    let scored = score_batch(&lesions, &*store, &scorer);
                    emit(BatchScored { device: device_label(scorer.device()), size });
                    scored
                })
                .await;
                let mut scored = match scored {
                    Ok(s) => s.into_iter(),
                    Err(panic) => return (0..n).map(|_| Outcome::reject("panicked", panic.to_string())).collect(),
                };
                answers
                    .into_iter()
                    .map(|a| {
                        a.unwrap_or_else(|| match scored.next().expect("one answer per decoded lesion") {
                            Ok(s) => Outcome::emit(topics::SCORES, &s.case_id, &s),
                            Err(e) => Outcome::failed(&e),
                        })
                    })
                    .collect()
            }
        },
        shutdown,
    )
    .await
}
