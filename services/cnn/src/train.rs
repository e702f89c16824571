//! Training one network: class-weighted BCE, live augmentation, early stopping on validation,
//! best of N trials, checkpoint and resume.
//!
//! The protocol, and where it departs from the authors' code (`method_notes.md` §2):
//! - loss: binary cross-entropy on the logit, each sample weighted `N / n_c` by its class
//!   (counts from the training part), mean over the batch, plus the study head's penalty;
//! - batches of 16 in a shuffled order, augmented per image ([`crate::augment`]);
//! - after each epoch the validation part is scored without augmentation; the epoch is kept
//!   when its validation ROC AUC beats the best so far (ties go to the lower validation loss).
//!   The authors monitored validation accuracy at 0.5, which on 20-odd lesions moves in steps
//!   of 4-5 points and ties constantly; AUC does not depend on a threshold the calibrator
//!   moves later anyway. Training stops after `patience` epochs without improvement or at
//!   `max_epochs`;
//! - trials differ in their seed (initialisation, order, augmentation); the trial with the best
//!   validation AUC wins. The test part is never looked at (the authors recorded it per trial
//!   and picked trials by hand, §6);
//! - deterministic: every random draw comes from `seed`, trial and epoch (on CPU with one
//!   thread, a rerun gives the same weights bit for bit, provided nothing else in the process
//!   uses libtorch's random generator meanwhile: it is one per process);
//! - with a checkpoint folder, each epoch ends by writing the weights, the optimiser's state
//!   and the bookkeeping (atomically); a rerun with the same folder resumes where it stopped
//!   and reaches the same result as an uninterrupted run.
//!
//! Default optimiser: Adam, lr 1e-4. The study's default key was SGD lr 1e-4 momentum 0.9 on
//! ImageNet weights; from random initialisation on a few hundred lesions SGD at that rate barely
//! moves in the epochs a CPU allows, and Adam's per-parameter steps start learning in a few
//! epochs. `OptimizerConfig::Sgd` reproduces the study's setting.

use crate::augment::{self, AugmentConfig};
use crate::net::{Net, NetConfig};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::weights;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

/// Side of the composites preprocessing writes.
pub const COMPOSITE_PX: i64 = 200;

/// Everything that determines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Network shape.
    pub net: NetConfig,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Augmentation of training images.
    pub augment: AugmentConfig,
    /// Images per step (16 in the study).
    pub batch_size: usize,
    /// Upper bound on epochs per trial (500 in the study).
    pub max_epochs: usize,
    /// Epochs without a better validation AUC before stopping (100 in the study's code, 50 in
    /// the design's full settings).
    pub patience: usize,
    /// Trials (independent seeds); the best by validation AUC is kept.
    pub trials: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Backbone weights to start from (torchvision-named safetensors), e.g. ImageNet.
    pub init_weights: Option<PathBuf>,
}

impl TrainConfig {
    /// The study's full settings: ResNet-50 at 200x200, 500 epochs, patience 50, 10 trials.
    pub fn study() -> Self {
        TrainConfig {
            net: NetConfig::default(),
            optimizer: OptimizerConfig::adam(1e-4),
            augment: AugmentConfig::default(),
            batch_size: 16,
            max_epochs: 500,
            patience: 50,
            trials: 10,
            seed: 1,
            init_weights: None,
        }
    }

    /// What finishes in minutes on a 2-core CPU: ResNet-18 at 64x64, 12 epochs, patience 6,
    /// one trial. The embedded run's default.
    pub fn cpu_quick() -> Self {
        TrainConfig {
            net: NetConfig { backbone: crate::net::Backbone::Resnet18, input_px: 64, ..NetConfig::default() },
            max_epochs: 12,
            patience: 6,
            trials: 1,
            ..TrainConfig::study()
        }
    }
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data cannot train a classifier.
    #[error("{0}")]
    Data(String),
    /// Initial weights or a checkpoint could not be read or written.
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    /// Checkpoint bookkeeping.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Labelled images: `[N, 3, S, S]` float in 0..1 on the CPU, and their labels.
#[derive(Debug)]
pub struct Samples {
    /// Images.
    pub images: Tensor,
    /// `true` for malignant.
    pub malignant: Vec<bool>,
}

impl Samples {
    /// Stack channel-major images of side `side`.
    pub fn new(images: &[&[f32]], malignant: Vec<bool>, side: i64) -> Samples {
        assert_eq!(images.len(), malignant.len());
        Samples { images: augment::stack(images, side), malignant }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.malignant.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.malignant.is_empty()
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Trial, from 0.
    pub trial: usize,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean weighted training loss.
    pub train_loss: f64,
    /// Weighted validation loss (training part's class weights).
    pub validation_loss: f64,
    /// Validation ROC AUC (NaN when the validation rows hold one class; `null` in JSON).
    #[serde(with = "nan_as_null")]
    pub validation_auc: f64,
    /// Validation accuracy at 0.5.
    pub validation_accuracy: f64,
    /// Wall time of the epoch, s.
    pub seconds: f64,
}

/// A float that may be NaN, as JSON: `null` for NaN (JSON has no NaN, and serde_json writes
/// it as `null` and then refuses to read that back into a float).
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_none()
        } else {
            s.serialize_some(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Where a trial stands; written after every epoch when checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrialState {
    trial: usize,
    epochs_done: usize,
    best: Option<EpochLog>,
    since_best: usize,
    finished: bool,
    history: Vec<EpochLog>,
}

/// The result: the winning trial's best-epoch network.
#[derive(Debug)]
pub struct Trained {
    /// Its variables.
    pub vs: VarStore,
    /// The network.
    pub net: Net,
    /// The epoch that was kept.
    pub best: EpochLog,
    /// Every epoch of every trial.
    pub history: Vec<EpochLog>,
}

/// `w_c = N / n_c` for (benign, malignant).
pub fn class_weights(malignant: &[bool]) -> Result<[f64; 2], TrainError> {
    let n = malignant.len() as f64;
    let pos = malignant.iter().filter(|&&m| m).count() as f64;
    if pos == 0.0 || pos == n {
        return Err(TrainError::Data(format!(
            "the training part has {} malignant and {} benign lesions; both classes are needed",
            pos,
            n - pos
        )));
    }
    Ok([n / (n - pos), n / pos])
}

fn weighted_bce(logits: &Tensor, malignant: &[bool], w: [f64; 2]) -> Tensor {
    let y: Vec<f32> = malignant.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let wt: Vec<f32> = malignant.iter().map(|&m| w[usize::from(m)] as f32).collect();
    let device = logits.device();
    logits.binary_cross_entropy_with_logits(
        &Tensor::from_slice(&y).to_device(device),
        Some(Tensor::from_slice(&wt).to_device(device)),
        None::<Tensor>,
        Reduction::Mean,
    )
}

/// P(malignant) and the 16-value embedding of each image, in batches of `batch` on `device`.
pub fn predict(net: &Net, images: &Tensor, device: Device, batch: usize) -> (Vec<f64>, Vec<Vec<f32>>) {
    let n = images.size()[0];
    let side = net.config().input_px;
    let (mut probs, mut embeddings) = (Vec::new(), Vec::new());
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (batch as i64).min(n - start);
            let x = augment::resize(&images.narrow(0, start, len).to_device(device), side);
            let f = net.forward(&x, false);
            let p: Vec<f32> =
                Vec::try_from(f.logits.sigmoid().to_kind(Kind::Float).to_device(Device::Cpu)).expect("f32");
            probs.extend(p.into_iter().map(f64::from));
            let e = f.embedding.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
            let width = e.size()[1] as usize;
            let flat: Vec<f32> = Vec::try_from(e.view([-1])).expect("f32");
            embeddings.extend(flat.chunks(width).map(<[f32]>::to_vec));
            start += len;
        }
    });
    (probs, embeddings)
}

fn evaluate(net: &Net, val: &Samples, w: [f64; 2], device: Device, batch: usize) -> (f64, f64, f64) {
    let (probs, _) = predict(net, &val.images, device, batch);
    let auc = renal_stats::roc_auc(&probs, &val.malignant).unwrap_or(f64::NAN);
    let mut loss = 0.0;
    let mut correct = 0usize;
    for (&p, &m) in probs.iter().zip(&val.malignant) {
        let p = p.clamp(1e-7, 1.0 - 1e-7);
        loss -= w[usize::from(m)] * if m { p.ln() } else { (1.0 - p).ln() };
        correct += usize::from((p >= 0.5) == m);
    }
    (loss / probs.len() as f64, auc, correct as f64 / probs.len() as f64)
}

/// Better than `best`: higher AUC, or equal AUC and lower loss.
fn improves(e: &EpochLog, best: Option<&EpochLog>) -> bool {
    let Some(b) = best else { return true };
    let (a, ab) = (e.validation_auc, b.validation_auc);
    if a.is_nan() {
        return false;
    }
    a > ab || ab.is_nan() || (a == ab && e.validation_loss < b.validation_loss)
}

fn epoch_seed(seed: u64, trial: usize, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((trial as u64) << 32) ^ epoch as u64
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let tmp = path.with_extension("json.partial");
    let err = |e: std::io::Error| TrainError::Checkpoint { path: path.display().to_string(), reason: e.to_string() };
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("serialisable")).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn copy_into(vs: &VarStore, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), TrainError> {
    tch::no_grad(|| {
        for (name, var) in vs.variables() {
            let src = tensors.get(&name).ok_or_else(|| TrainError::Checkpoint {
                path: path.display().to_string(),
                reason: format!("no tensor {name}"),
            })?;
            var.shallow_clone().copy_(src);
        }
        Ok(())
    })
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    Ok(Tensor::read_safetensors(path)
        .map_err(|e| TrainError::Checkpoint { path: path.display().to_string(), reason: e.to_string() })?
        .into_iter()
        .collect())
}

/// Build a network (seeded initialisation, optional initial backbone weights).
fn build(config: &TrainConfig, device: Device, seed: u64) -> Result<(VarStore, Net), TrainError> {
    tch::manual_seed(seed as i64);
    let mut vs = VarStore::new(device);
    let net = Net::new(&vs.root(), config.net);
    if let Some(path) = &config.init_weights {
        weights::load(&mut vs, path, config.net.backbone.name())?;
    }
    Ok((vs, net))
}

/// Train as the module docs describe. `checkpoint`: a folder to write and resume from.
/// `on_epoch` sees each finished epoch (also those replayed from a checkpoint, with the
/// recorded numbers).
pub fn train(
    config: &TrainConfig,
    train: &Samples,
    val: &Samples,
    device: Device,
    checkpoint: Option<&Path>,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<Trained, TrainError> {
    let w = class_weights(&train.malignant)?;
    if val.is_empty() {
        return Err(TrainError::Data("the validation part is empty".into()));
    }
    if config.batch_size == 0 || config.trials == 0 || config.max_epochs == 0 {
        return Err(TrainError::Data("batch_size, trials and max_epochs must be at least 1".into()));
    }
    if let Some(dir) = checkpoint {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::Checkpoint { path: dir.display().to_string(), reason: e.to_string() })?;
        let cfg_path = dir.join("config.json");
        if let Ok(text) = std::fs::read(&cfg_path) {
            let old: TrainConfig = serde_json::from_slice(&text)
                .map_err(|e| TrainError::Checkpoint { path: cfg_path.display().to_string(), reason: e.to_string() })?;
            if &old != config {
                return Err(TrainError::Checkpoint {
                    path: cfg_path.display().to_string(),
                    reason: "was written by a run with other settings; use a new checkpoint folder".into(),
                });
            }
        }
        write_json(&cfg_path, config)?;
    }
    let mut history = Vec::new();
    let mut winner: Option<(EpochLog, Vec<(String, Tensor)>)> = None;
    for trial in 0..config.trials {
        let trial_seed = config.seed.wrapping_add(trial as u64);
        let (vs, net) = build(config, device, trial_seed)?;
        let mut opt = Optimizer::new(&vs, config.optimizer);
        let files = checkpoint.map(|d| {
            (
                d.join(format!("trial{trial}.json")),
                d.join(format!("trial{trial}.last.safetensors")),
                d.join(format!("trial{trial}.best.safetensors")),
            )
        });
        let mut state =
            TrialState { trial, epochs_done: 0, best: None, since_best: 0, finished: false, history: Vec::new() };
        let mut best_weights: Option<Vec<(String, Tensor)>> = None;
        if let Some((json, last, best)) = &files {
            if let Ok(text) = std::fs::read(json) {
                state = serde_json::from_slice(&text)
                    .map_err(|e| TrainError::Checkpoint { path: json.display().to_string(), reason: e.to_string() })?;
                let saved = read_tensors(last)?;
                copy_into(&vs, &saved, last)?;
                opt.restore(&saved).map_err(|name| TrainError::Checkpoint {
                    path: last.display().to_string(),
                    reason: format!("no tensor {name}"),
                })?;
                if state.best.is_some() {
                    let b = read_tensors(best)?;
                    let mut b: Vec<(String, Tensor)> = b.into_iter().collect();
                    b.sort_by(|x, y| x.0.cmp(&y.0));
                    best_weights = Some(b);
                }
                for e in &state.history {
                    on_epoch(e);
                }
            }
        }
        while !state.finished {
            let epoch = state.epochs_done + 1;
            let started = Instant::now();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(epoch_seed(config.seed, trial, epoch));
            tch::manual_seed(epoch_seed(config.seed, trial, epoch) as i64);
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut seen) = (0.0, 0usize);
            for chunk in order.chunks(config.batch_size) {
                // A lone sample cannot be batch-normalised in training mode.
                if chunk.len() < 2 {
                    continue;
                }
                let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let x = train.images.index_select(0, &idx).to_device(device);
                let thetas: Vec<[f64; 6]> = chunk.iter().map(|_| augment::draw(&config.augment, &mut rng)).collect();
                let x = augment::apply(&x, &thetas, config.net.input_px);
                let y: Vec<bool> = chunk.iter().map(|&i| train.malignant[i]).collect();
                let f = net.forward(&x, true);
                let mut loss = weighted_bce(&f.logits, &y, w);
                if let Some(p) = net.penalty() {
                    loss += p;
                }
                opt.backward_step(&loss);
                loss_sum += loss.double_value(&[]) * chunk.len() as f64;
                seen += chunk.len();
            }
            let (validation_loss, validation_auc, validation_accuracy) =
                evaluate(&net, val, w, device, config.batch_size.max(32));
            let log = EpochLog {
                trial,
                epoch,
                train_loss: loss_sum / seen.max(1) as f64,
                validation_loss,
                validation_auc,
                validation_accuracy,
                seconds: started.elapsed().as_secs_f64(),
            };
            on_epoch(&log);
            if improves(&log, state.best.as_ref()) {
                state.best = Some(log.clone());
                state.since_best = 0;
                best_weights = Some(weights::snapshot(&vs));
            } else {
                state.since_best += 1;
            }
            state.history.push(log);
            state.epochs_done = epoch;
            state.finished = state.since_best >= config.patience || epoch >= config.max_epochs;
            if let Some((json, last, best)) = &files {
                if state.since_best == 0 {
                    weights::write(best, best_weights.as_ref().expect("just set"))?;
                }
                let mut all = weights::snapshot(&vs);
                all.extend(opt.state());
                weights::write(last, &all)?;
                write_json(json, &state)?;
            }
        }
        history.extend(state.history.iter().cloned());
        let best = state.best.clone().expect("at least one epoch ran");
        if winner.as_ref().is_none_or(|(b, _)| improves(&best, Some(b))) {
            winner = Some((best, best_weights.expect("kept with best")));
        }
    }
    let (best, tensors) = winner.expect("at least one trial ran");
    let (vs, net) = build(&TrainConfig { init_weights: None, ..config.clone() }, device, config.seed)?;
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    copy_into(&vs, &map, Path::new("best weights"))?;
    Ok(Trained { vs, net, best, history })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Backbone, Head};

    /// Bright-centred squares are "malignant", dim ones benign; a network learns that in a few
    /// epochs.
    fn toy(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<bool>) {
        use rand::Rng;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let side = 24;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let m = i % 2 == 0;
            let level = if m { 0.9 } else { 0.3 };
            let mut im = vec![0f32; 3 * side * side];
            for c in 0..3 {
                for y in 6..18 {
                    for x in 6..18 {
                        im[c * side * side + y * side + x] = level + 0.2 * rng.random::<f32>();
                    }
                }
            }
            images.push(im);
            labels.push(m);
        }
        (images, labels)
    }

    fn samples(n: usize, seed: u64) -> Samples {
        let (im, y) = toy(n, seed);
        let refs: Vec<&[f32]> = im.iter().map(Vec::as_slice).collect();
        Samples::new(&refs, y, 24)
    }

    fn config() -> TrainConfig {
        TrainConfig {
            net: NetConfig { backbone: Backbone::Resnet18, head: Head::Plain, input_px: 24 },
            optimizer: OptimizerConfig::adam(1e-3),
            batch_size: 8,
            max_epochs: 3,
            patience: 3,
            trials: 1,
            ..TrainConfig::cpu_quick()
        }
    }

    #[test]
    fn an_undefined_validation_auc_survives_json() {
        let log = |auc: f64| EpochLog {
            trial: 0,
            epoch: 1,
            train_loss: 0.5,
            validation_loss: 0.6,
            validation_auc: auc,
            validation_accuracy: 1.0,
            seconds: 1.0,
        };
        let json = serde_json::to_string(&log(f64::NAN)).unwrap();
        assert!(json.contains("\"validation_auc\":null"), "{json}");
        let back: EpochLog = serde_json::from_str(&json).unwrap();
        assert!(back.validation_auc.is_nan());
        let back: EpochLog = serde_json::from_str(&serde_json::to_string(&log(0.75)).unwrap()).unwrap();
        assert_eq!(back, log(0.75));
    }

    #[test]
    fn class_weights_are_n_over_class_count() {
        assert_eq!(class_weights(&[true, false, false, false]).unwrap(), [4.0 / 3.0, 4.0]);
        assert!(class_weights(&[true, true]).unwrap_err().to_string().contains("both classes"));
    }

    #[test]
    fn learns_a_separable_toy_and_a_resumed_run_matches_an_uninterrupted_one() {
        let _rng = crate::torch_rng_lock();
        tch::set_num_threads(1);
        let (tr, va) = (samples(32, 1), samples(16, 2));
        let cfg = config();
        let mut logs = Vec::new();
        let straight = train(&cfg, &tr, &va, Device::Cpu, None, &mut |e| logs.push(e.clone())).unwrap();
        assert_eq!(logs.len(), 3);
        assert!(straight.best.validation_auc > 0.9, "{logs:?}");
        // The returned network is the kept epoch's, not the last one's.
        let w = class_weights(&tr.malignant).unwrap();
        let (loss, auc, _) = evaluate(&straight.net, &va, w, Device::Cpu, 32);
        assert_eq!((loss, auc), (straight.best.validation_loss, straight.best.validation_auc));

        // Stop after epoch 2 (max_epochs 2 finishes the trial; then lift the cap) and resume.
        let dir = tempfile::tempdir().unwrap();
        let short = TrainConfig { max_epochs: 2, ..cfg.clone() };
        train(&short, &tr, &va, Device::Cpu, Some(dir.path()), &mut |_| {}).unwrap();
        // A different configuration refuses the folder.
        let err = train(&cfg, &tr, &va, Device::Cpu, Some(dir.path()), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
        // Simulate a crash after epoch 2 of the full run: same files, the full run's config,
        // trial not finished.
        std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
        let state_path = dir.path().join("trial0.json");
        let mut state: TrialState = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        state.finished = false;
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
        let mut resumed_logs = Vec::new();
        let resumed =
            train(&cfg, &tr, &va, Device::Cpu, Some(dir.path()), &mut |e| resumed_logs.push(e.clone())).unwrap();
        assert_eq!(resumed_logs.len(), 3, "two replayed epochs and one new");
        for (a, b) in logs.iter().zip(&resumed_logs) {
            assert_eq!((a.train_loss, a.validation_auc), (b.train_loss, b.validation_auc), "epoch {}", a.epoch);
        }
        let x = va.images.shallow_clone();
        let (pa, _) = predict(&straight.net, &x, Device::Cpu, 16);
        let (pb, _) = predict(&resumed.net, &x, Device::Cpu, 16);
        assert_eq!(pa, pb, "same weights bit for bit");
    }
}
