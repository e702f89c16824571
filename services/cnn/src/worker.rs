//! The inference stage: `renal.lesions` in, `renal.scores` out, dead letters to
//! `renal.dead.inference`.
//!
//! Lesions are gathered into batches across messages (up to `max_batch`, waiting at most
//! `max_wait_ms` after the first) so the GPU sees full batches under load and a lone lesion is
//! not held back long when traffic is light. Each lesion's two composites are read from the
//! blob store (hash-checked), run through the bundle's T2 and T1C networks, and answered with
//! both probabilities, both 16-value embeddings and the bundle version. The bundle is loaded
//! once at start-up: a version that does not exist stops the worker before it consumes
//! anything.
//!
//! Dead-letter reasons: `bad_message` (not a LesionV1), `missing_blob`, `corrupt_blob` (the
//! stored bytes do not hash to the reference), `bad_composite` (not 3 x S x S float32, or not
//! finite).

use crate::bundle::{self, BundleError, Manifest, Model};
use crate::train::predict;
use renal_bus::{run_batched_stage, Batching, Bus, BusError, Outcome, Output, Record, StageConfig, StageStats};
use renal_imaging::composite::{decode_blob, side_of};
use renal_messages::civil::now_rfc3339;
use renal_messages::{topics, LesionV1, Message, Provenance, ScoresV1};
use renal_store::{BlobError, BlobStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::Device;

/// Consumer group of the inference workers.
pub const GROUP: &str = "renal-inference";

/// `[inference]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Blob store shared with preprocess: a folder or `s3://bucket[/prefix]`.
    pub blob_store: String,
    /// `auto` (CUDA when a GPU is usable), `cpu` or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Model registry folder (holds `cnn/<version>/`).
    pub registry: PathBuf,
    /// Bundle version to serve, e.g. `cnn-1a2b3c4d5e6f`.
    pub model_version: String,
    /// Largest batch of lesions per forward pass (default 16).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest wait for a batch to fill after its first lesion, ms (default 50).
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

fn default_device() -> String {
    "auto".into()
}
fn default_max_batch() -> usize {
    16
}
fn default_max_wait_ms() -> u64 {
    50
}

/// A loaded bundle ready to score composites.
#[derive(Debug)]
pub struct Scorer {
    manifest: Manifest,
    models: [Model; 2],
    device: Device,
}

/// Scores of one lesion.
#[derive(Debug, Clone, PartialEq)]
pub struct LesionScores {
    /// P(malignant), T2 then T1C.
    pub probability: [f64; 2],
    /// Embeddings, T2 then T1C.
    pub embedding: [Vec<f32>; 2],
}

impl Scorer {
    /// Load `version` from `registry` onto `device`.
    pub fn load(registry: &Path, version: &str, device: Device) -> Result<Scorer, BundleError> {
        let (manifest, models) = bundle::load(registry, version, device)?;
        Ok(Scorer { manifest, models, device })
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Score lesions given their (T2, T1C) composites: channel-major 3 x S x S float32 of any
    /// side S (preprocessing's `composite_size`), resampled to the network's input.
    pub fn score(&self, composites: &[[&[f32]; 2]]) -> Vec<LesionScores> {
        let side = self.manifest.net.input_px;
        let mut per_role = Vec::new();
        for (r, model) in self.models.iter().enumerate() {
            let images: Vec<tch::Tensor> = composites
                .iter()
                .map(|c| {
                    let s = side_of(c[r].len()).expect("fetch checked the size") as i64;
                    crate::augment::resize(&tch::Tensor::from_slice(c[r]).view([1, 3, s, s]), side)
                })
                .collect();
            let x = tch::Tensor::cat(&images, 0);
            per_role.push(predict(&model.net, &x, self.device, composites.len().max(1)));
        }
        let (t1c, t2) = (per_role.pop().expect("two roles"), per_role.pop().expect("two roles"));
        (0..composites.len())
            .map(|i| LesionScores { probability: [t2.0[i], t1c.0[i]], embedding: [t2.1[i].clone(), t1c.1[i].clone()] })
            .collect()
    }
}

/// Why one lesion cannot be scored (always permanent: a dead letter).
fn reject(code: &str, reason: String) -> Outcome {
    Outcome::Reject { code: code.into(), reason }
}

/// Decode and fetch a lesion's composites, or the outcome that ends it.
fn fetch(record: &Record, store: &dyn BlobStore) -> Result<(LesionV1, [Vec<f32>; 2]), Outcome> {
    let lesion = LesionV1::decode(&record.payload).map_err(|e| reject("bad_message", e.to_string()))?;
    let mut out: [Vec<f32>; 2] = Default::default();
    for (slot, (blob, role)) in out.iter_mut().zip(lesion.composites.iter().zip(["T2", "T1C"])) {
        let bytes = match store.get(blob) {
            Ok(b) => b,
            Err(e @ BlobError::Missing { .. }) => return Err(reject("missing_blob", format!("{role} composite: {e}"))),
            Err(e @ BlobError::Corrupt { .. }) => return Err(reject("corrupt_blob", format!("{role} composite: {e}"))),
            Err(e) => return Err(Outcome::Retry(format!("{role} composite: {e}"))),
        };
        let (_, values) = decode_blob(&bytes).map_err(|e| reject("bad_composite", format!("{role} composite {e}")))?;
        *slot = values;
    }
    Ok((lesion, out))
}

/// Score a batch of records: one outcome per record, in order.
pub fn process_batch(records: &[Record], store: &dyn BlobStore, scorer: &Scorer) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(records.len());
    let mut ready = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match fetch(r, store) {
            Ok(x) => {
                outcomes.push(None);
                ready.push((i, x));
            }
            Err(o) => outcomes.push(Some(o)),
        }
    }
    let inputs: Vec<[&[f32]; 2]> = ready.iter().map(|(_, (_, c))| [c[0].as_slice(), c[1].as_slice()]).collect();
    let scores = if inputs.is_empty() { Vec::new() } else { scorer.score(&inputs) };
    let version = &scorer.manifest.version;
    for ((i, (lesion, _)), s) in ready.iter().zip(scores) {
        let mut h = Sha256::new();
        h.update(&records[*i].payload);
        h.update(version.as_bytes());
        let msg = ScoresV1 {
            version: 1,
            case_id: lesion.case_id.clone(),
            revision: lesion.revision,
            site: lesion.site.clone(),
            t2_probability: s.probability[0],
            t1c_probability: s.probability[1],
            embeddings: s.embedding,
            model_version: version.clone(),
            provenance: Provenance {
                code_version: env!("CARGO_PKG_VERSION").into(),
                produced_at: now_rfc3339(),
                input_sha256: renal_messages::lower_hex(&h.finalize()),
            },
        };
        outcomes[*i] = Some(Outcome::Done(vec![Output {
            topic: topics::SCORES,
            key: msg.case_id.clone(),
            payload: msg.encode(),
        }]));
    }
    outcomes.into_iter().map(|o| o.expect("every record answered")).collect()
}

/// Run until `shutdown` resolves; `progress` gets the number of lesions scored so far.
pub async fn run<B: Bus>(
    cfg: &InferenceConfig,
    scorer: Scorer,
    store: Arc<dyn BlobStore>,
    bus: B,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StageStats, BusError> {
    let scorer = Arc::new(Mutex::new(scorer));
    let stage = StageConfig::new("inference", GROUP, vec![topics::LESIONS]);
    let batching = Batching { max_records: cfg.max_batch.max(1), max_wait_ms: cfg.max_wait_ms };
    let mut done = 0u64;
    run_batched_stage(
        bus,
        stage,
        batching,
        |records: Vec<Record>| {
            let (scorer, store) = (scorer.clone(), store.clone());
            done += records.len() as u64;
            progress(done);
            async move {
                let n = records.len();
                let joined = tokio::task::spawn_blocking(move || {
                    let scorer = scorer.lock().expect("a scoring thread panicked");
                    process_batch(&records, &*store, &scorer)
                })
                .await;
                match joined {
                    Ok(outcomes) => outcomes,
                    Err(e) => (0..n).map(|_| reject("panicked", e.to_string())).collect(),
                }
            }
        },
        shutdown,
    )
    .await
}
