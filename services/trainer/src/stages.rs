//! Lesions through the inference and ensemble stages on a bus of their own: how the trainer
//! predicts held-out lesions with a model, through the same `run` functions the workers use, so
//! that a challenger is judged on exactly what it would serve.

use crate::fit::Served;
use renal_bus::{Batching, Bus, InProcessBus};
use renal_messages::{topics, DeadLetterV1, LesionV1, Message, PredictionV1};
use renal_store::BlobStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why lesions could not be predicted (a lesion that cannot be is a dead letter instead).
#[derive(Debug, thiserror::Error)]
pub enum StagesError {
    /// The CNN bundle cannot be loaded.
    #[error(transparent)]
    Cnn(#[from] renal_cnn::bundle::BundleError),
    /// The ensemble bundle cannot be loaded.
    #[error(transparent)]
    Ensemble(#[from] renal_ensemble::bundle::BundleError),
    /// The in-process bus or a stage's loop failed.
    #[error("{0}")]
    Stage(String),
    /// The scratch folder of the ensemble's join state could not be made.
    #[error("{path}: {source}")]
    Scratch { path: std::path::PathBuf, source: std::io::Error },
}

fn stage(e: impl std::fmt::Display) -> StagesError {
    StagesError::Stage(e.to_string())
}

/// Send `lesions` to `renal.lesions` of a bus of their own and run the inference and ensemble
/// stages on it, serving `bundles` from `registry`, until both have drained their inputs; their
/// predictions and dead letters. The ensemble's join state lives in a temporary folder under
/// `scratch`.
pub fn predict_through_stages(
    rt: &tokio::runtime::Runtime,
    lesions: &[LesionV1],
    bundles: &Served,
    registry: &Path,
    store: &Arc<dyn BlobStore>,
    device: tch::Device,
    scratch: &Path,
) -> Result<(Vec<PredictionV1>, Vec<DeadLetterV1>), StagesError> {
    let bus = InProcessBus::new(3);
    let scorer = renal_cnn::score::Scorer::load(registry, &bundles.cnn, device)?;
    let bundle = renal_ensemble::bundle::load(registry, &bundles.ensemble)?;
    let state = tempfile::Builder::new()
        .prefix(".ensemble-state-")
        .tempdir_in(scratch)
        .map_err(|source| StagesError::Scratch { path: scratch.to_path_buf(), source })?;
    let ensemble = renal_ensemble::EnsembleConfig::new(registry.into(), &bundles.ensemble, state.path().into());
    let inference = renal_inference::InferenceConfig::new("", registry.into(), &bundles.cnn);
    let batching = Batching { max_records: inference.max_batch, max_wait_ms: inference.max_wait_ms };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let watcher = bus.clone();
    // Drained, in order: every lesion scored (its scores are on the bus before its offset is
    // committed), every lesion's clinical values kept, every score predicted or dead-lettered.
    let drained = async move {
        while !(watcher.caught_up(renal_inference::GROUP, topics::LESIONS)
            && watcher.caught_up(renal_ensemble::LESION_GROUP, topics::LESIONS)
            && watcher.caught_up(renal_ensemble::GROUP, topics::SCORES))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(true);
    };
    let (sent, (), scored, predicted) = rt.block_on(async {
        let mut sent = Ok(());
        for l in lesions {
            if let Err(e) = bus.send(topics::LESIONS, &l.case_id, l.encode()).await {
                sent = Err(e);
            }
        }
        let scoring =
            renal_inference::run(batching, scorer, store.clone(), bus.clone(), None, until(stopped.clone()), &|_| {});
        let predicting = renal_ensemble::run(&ensemble, bundle, bus.clone(), None, until(stopped.clone()), &|_| {});
        let (drained, scored, predicted) = tokio::join!(drained, scoring, predicting);
        (sent, drained, scored, predicted)
    });
    sent.map_err(stage)?;
    scored.map_err(stage)?;
    predicted.map_err(stage)?;
    let predictions = bus
        .records(topics::PREDICTIONS)
        .iter()
        .map(|r| PredictionV1::decode(&r.payload))
        .collect::<Result<_, _>>()
        .map_err(stage)?;
    let mut letters = Vec::new();
    for t in [topics::DEAD_INFERENCE, topics::DEAD_ENSEMBLE] {
        for r in bus.records(t) {
            letters.push(DeadLetterV1::decode(&r.payload).map_err(stage)?);
        }
    }
    Ok((predictions, letters))
}
