//! The CNN arm from the command line: `renal train cnn`, the T2 and T1C networks inside
//! `renal run`, `renal bench cnn`, and the inference worker's start-up.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use renal_cnn::bundle::{self, DataManifest, Manifest, SeriesToSave};
use renal_cnn::device::{select, Want};
use renal_cnn::net::{Backbone, Head, NetConfig};
use renal_cnn::optim::OptimizerConfig;
use renal_cnn::train::{predict, train, EpochLog, Samples, TrainConfig, COMPOSITE_PX};
use renal_messages::LesionV1;
use renal_stats::Platt;
use renal_store::BlobStore;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::Device;

/// Training flags shared by `renal train cnn` and `renal run`.
#[derive(clap::Args, Debug, Clone)]
pub struct CnnArgs {
    /// Backbone: resnet18, resnet34 or resnet50 (the study's).
    #[arg(long, default_value = "resnet18")]
    pub backbone: Backbone,
    /// Network input side, pixels; the 200x200 composites are resampled to it (200: the study's).
    #[arg(long, default_value_t = 64)]
    pub input_px: i64,
    /// Maximum epochs per trial.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Epochs without a better validation ROC AUC before stopping.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Independent trials (seeds); the best by validation ROC AUC is kept.
    #[arg(long, default_value_t = 1)]
    pub trials: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// adam (default) or sgd (momentum 0.9, the study's optimiser family).
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Dense head: plain, or study (batch norm, dropout 0.5, L1/L2 0.01, as the authors' code).
    #[arg(long, default_value = "plain")]
    pub head: String,
    /// Seed of initialisation, order and augmentation.
    #[arg(long, default_value_t = 1)]
    pub cnn_seed: u64,
    /// Backbone weights to start from: torchvision-named safetensors
    /// (scripts/export-torchvision-weights.py).
    #[arg(long)]
    pub init_weights: Option<PathBuf>,
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Want,
    /// The study's full settings (ResNet-50 at 200x200, 500 epochs, patience 50, 10 trials);
    /// meant for a GPU. Overrides the size, epoch and trial flags.
    #[arg(long)]
    pub study: bool,
}

impl CnnArgs {
    /// The training configuration the flags describe.
    pub fn config(&self) -> Result<TrainConfig> {
        let head = match self.head.as_str() {
            "plain" => Head::Plain,
            "study" => Head::Study { dropout: 0.5, l1: 0.01, l2: 0.01 },
            other => bail!("--head {other:?}: want plain or study"),
        };
        let optimizer = match self.optimizer.as_str() {
            "adam" => OptimizerConfig::adam(self.lr),
            "sgd" => OptimizerConfig::Sgd { lr: self.lr, momentum: 0.9, nesterov: false },
            other => bail!("--optimizer {other:?}: want adam or sgd"),
        };
        if !(8..=COMPOSITE_PX * 4).contains(&self.input_px) {
            bail!("--input-px {}: want 8 to {}", self.input_px, COMPOSITE_PX * 4);
        }
        let base = if self.study {
            TrainConfig::study()
        } else {
            TrainConfig {
                net: NetConfig { backbone: self.backbone, head, input_px: self.input_px },
                max_epochs: self.epochs,
                patience: self.patience,
                trials: self.trials,
                ..TrainConfig::cpu_quick()
            }
        };
        let net = NetConfig { head, ..base.net };
        Ok(TrainConfig {
            net,
            optimizer,
            batch_size: self.batch_size,
            seed: self.cnn_seed,
            init_weights: self.init_weights.clone(),
            ..base
        })
    }
}

/// Both composites of each lesion, read from the blob store.
pub fn read_composites(store: &dyn BlobStore, lesions: &[&LesionV1]) -> Result<Vec<[Vec<f32>; 2]>> {
    let bar = bar(lesions.len() as u64, "read composites");
    let mut out = Vec::with_capacity(lesions.len());
    for l in lesions {
        let mut pair: [Vec<f32>; 2] = Default::default();
        for (slot, blob) in pair.iter_mut().zip(&l.composites) {
            let (side, values) = read_composite(store, blob, &format!("composite of {}", l.case_id))?;
            if side as i64 != COMPOSITE_PX {
                bail!(
                    "composite of {} is {side}x{side}; training reads {COMPOSITE_PX}x{COMPOSITE_PX} composites",
                    l.case_id
                );
            }
            *slot = values;
        }
        out.push(pair);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// One composite from the blob store (hash-checked): its side and values; `what` names it in
/// errors.
pub fn read_composite(store: &dyn BlobStore, blob: &renal_messages::BlobRef, what: &str) -> Result<(usize, Vec<f32>)> {
    let bytes = store.get(blob).with_context(|| what.to_string())?;
    renal_imaging::composite::decode_blob(&bytes).map_err(|e| anyhow::anyhow!("{what} {e}"))
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}"))
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The CNN arm of one split: both networks trained, calibrated on validation, and scored on the
/// test part.
pub struct CnnFit {
    /// Bundle written to the registry.
    pub manifest: Manifest,
    /// Calibrated test probabilities, T2 then T1C, in `split.test` order.
    pub test: [Vec<f64>; 2],
    /// Raw (uncalibrated) validation outputs, T2 then T1C, in `split.validation` order.
    pub validation_raw: [Vec<f64>; 2],
    /// Raw test outputs, T2 then T1C.
    pub test_raw: [Vec<f64>; 2],
    /// Penultimate-layer embeddings of every lesion of the three parts (by index into the
    /// lesions), T2's then T1C's values.
    pub embeddings: std::collections::BTreeMap<usize, Vec<f64>>,
}

/// Train T2 and T1C networks on `train`, choose epochs and calibrate on `validation`, predict
/// `test`; the bundle goes to `registry`. `checkpoint`: a folder to keep each network's
/// checkpoint in (one sub-folder per series) and resume from.
#[allow(clippy::too_many_arguments)]
pub fn fit_split(
    lesions: &[&LesionV1],
    composites: &[[Vec<f32>; 2]],
    malignant: &[bool],
    parts: [&[usize]; 3],
    config: &TrainConfig,
    device: Device,
    registry: &Path,
    label: &str,
    checkpoint: Option<&Path>,
) -> Result<CnnFit> {
    let [train_idx, val_idx, test_idx] = parts;
    let pick = |idx: &[usize], r: usize| -> Samples {
        let images: Vec<&[f32]> = idx.iter().map(|&i| composites[i][r].as_slice()).collect();
        Samples::new(&images, idx.iter().map(|&i| malignant[i]).collect(), COMPOSITE_PX)
    };
    let manifest_of = |idx: &[usize], r: usize| -> Vec<(String, String)> {
        idx.iter().map(|&i| (lesions[i].case_id.clone(), lesions[i].composites[r].sha256.clone())).collect()
    };
    let mut trained = Vec::new();
    let mut test = Vec::new();
    let (mut validation_raw, mut test_raw) = (Vec::new(), Vec::new());
    let mut embeddings: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for (r, role) in ["t2", "t1c"].iter().enumerate() {
        let (tr, va, te) = (pick(train_idx, r), pick(val_idx, r), pick(test_idx, r));
        let epochs = (config.max_epochs * config.trials) as u64;
        let progress = bar(epochs, &format!("{label}cnn {role}"));
        let mut log_line = |e: &EpochLog| {
            progress.inc(1);
            progress.set_message(format!(
                "trial {} epoch {} val AUC {:.3} loss {:.3}",
                e.trial + 1,
                e.epoch,
                e.validation_auc,
                e.validation_loss
            ));
            progress.suspend(|| eprintln!(
                "  {label}cnn {role} trial {} epoch {:>3}: train loss {:.4}, validation loss {:.4}, AUC {:.3}, accuracy {:.3} ({:.1} s)",
                e.trial + 1,
                e.epoch,
                e.train_loss,
                e.validation_loss,
                e.validation_auc,
                e.validation_accuracy,
                e.seconds
            ));
        };
        let folder = checkpoint.map(|c| c.join(role));
        let result = train(config, &tr, &va, device, folder.as_deref(), &mut log_line)
            .with_context(|| format!("training the {role} network"))?;
        progress.finish_and_clear();
        let (raw_val, emb_val) = predict(&result.net, &va.images, device, 32);
        let cal =
            Platt::fit(&raw_val, &va.malignant).with_context(|| format!("Platt calibration of the {role} network"))?;
        let (raw_test, emb_test) = predict(&result.net, &te.images, device, 32);
        let (_, emb_train) = predict(&result.net, &tr.images, device, 32);
        for (idx, emb) in [(train_idx, emb_train), (val_idx, emb_val), (test_idx, emb_test)] {
            for (&i, e) in idx.iter().zip(emb) {
                embeddings.entry(i).or_default().extend(e.into_iter().map(f64::from));
            }
        }
        test.push(raw_test.iter().map(|&p| cal.probability(p)).collect::<Vec<f64>>());
        validation_raw.push(raw_val);
        test_raw.push(raw_test);
        trained.push((
            result,
            tr.malignant.iter().filter(|&&m| m).count(),
            va.malignant.iter().filter(|&&m| m).count(),
        ));
    }
    let series: Vec<SeriesToSave<'_>> = trained
        .iter()
        .enumerate()
        .map(|(r, (t, tm, vm))| SeriesToSave {
            vs: &t.vs,
            best: t.best.clone(),
            history: t.history.clone(),
            data: DataManifest {
                train: manifest_of(train_idx, r),
                validation: manifest_of(val_idx, r),
                train_malignant: *tm,
                validation_malignant: *vm,
            },
        })
        .collect();
    let [s2, s1]: [SeriesToSave<'_>; 2] = series.try_into().map_err(|_| anyhow::anyhow!("two series"))?;
    let manifest = bundle::save(
        registry,
        config.net,
        config,
        [s2, s1],
        env!("CARGO_PKG_VERSION"),
        &renal_messages::civil::now_rfc3339(),
    )?;
    let [t2, t1c]: [Vec<f64>; 2] = test.try_into().map_err(|_| anyhow::anyhow!("two series"))?;
    let two = |v: Vec<Vec<f64>>| -> [Vec<f64>; 2] {
        let [a, b]: [Vec<f64>; 2] = v.try_into().expect("two series");
        [a, b]
    };
    Ok(CnnFit { manifest, test: [t2, t1c], validation_raw: two(validation_raw), test_raw: two(test_raw), embeddings })
}

/// The device for training or inference, announced once.
pub fn device(want: Want) -> Result<Device> {
    let (d, why) = select(want).map_err(anyhow::Error::msg)?;
    eprintln!("cnn device: {why}");
    Ok(d)
}

/// `renal train cnn`.
pub fn train_command(
    run: &Path,
    labels: &Path,
    registry: Option<&Path>,
    checkpoint: Option<&Path>,
    parts: [f64; 3],
    args: &CnnArgs,
) -> Result<()> {
    let config = args.config()?;
    let lesions_file = run.join("lesions.jsonl");
    let text = std::fs::read_to_string(&lesions_file)
        .with_context(|| format!("reading {} (written by renal run)", lesions_file.display()))?;
    let mut messages = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: LesionV1 =
            serde_json::from_str(line).with_context(|| format!("{} line {}", lesions_file.display(), n + 1))?;
        messages.push(l);
    }
    let (lesions, protocol, split) = crate::arms::labelled_split(&messages, labels, parts)?;
    let store = renal_store::open(&run.join("blobs").display().to_string())?;
    let device = device(args.device)?;
    let composites = read_composites(&*store, &lesions)?;
    let y: Vec<bool> = protocol.iter().map(|l| l.malignant).collect();
    let registry = registry.map(Path::to_path_buf).unwrap_or_else(|| run.join("models"));
    let fit = fit_split(
        &lesions,
        &composites,
        &y,
        [&split.train, &split.validation, &split.test],
        &config,
        device,
        &registry,
        "",
        checkpoint,
    )?;
    println!("bundle {} in {}", fit.manifest.version, bundle::folder(&registry).join(&fit.manifest.version).display());
    for (s, probs) in fit.manifest.series.iter().zip(&fit.test) {
        let truth: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
        let auc = renal_stats::roc_auc(probs, &truth).map(|a| format!("{a:.3}")).unwrap_or_else(|| "undefined".into());
        println!(
            "  {}: best epoch {} of trial {} (validation AUC {:.3}); held-out test ROC AUC {auc} on {} lesions",
            s.role,
            s.best.epoch,
            s.best.trial + 1,
            s.best.validation_auc,
            truth.len()
        );
    }
    Ok(())
}

/// Median seconds of `repeat` calls after one warm-up call.
fn time_median(repeat: usize, mut f: impl FnMut()) -> f64 {
    f();
    crate::bench::timed(repeat, || {
        f();
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("infallible")
    .0
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// PyTorch eager's median seconds per forward batch, when the test venv can run it.
fn torch_eager(backbone: Backbone, batch: i64, device: &str, repeat: usize) -> Result<f64> {
    let (python, script) = crate::bench::reference_script("torch_bench.py")?;
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script).args([backbone.name(), &batch.to_string(), device, &repeat.to_string()]);
    if device == "cpu" {
        cmd.args(["--threads", &tch::get_num_threads().to_string()]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["forward_s"].as_f64().context("forward_s")
}

/// `renal bench cnn`.
pub fn bench(
    backbones: &[Backbone],
    batches: &[i64],
    devices: &[String],
    repeat: usize,
    parity: bool,
    train_steps: bool,
) -> Result<()> {
    use renal_cnn::net::Net;
    use renal_cnn::optim::Optimizer;
    use tch::nn::VarStore;
    use tch::{Kind, Tensor};
    if parity {
        println!("| device | backbone | images | max abs logit diff vs PyTorch | max abs embedding diff | largest abs logit | tolerance | verdict |");
        println!("|---|---|---|---|---|---|---|---|");
        for &b in backbones {
            let dir = std::env::temp_dir().join(format!("renal-parity-{}-{}", b.name(), std::process::id()));
            let (python, script) = crate::bench::reference_script("torch_reference.py")?;
            let out = std::process::Command::new(python).arg(script).arg(b.name()).arg(&dir).output()?;
            if !out.status.success() {
                bail!("torch_reference.py: {}", String::from_utf8_lossy(&out.stderr));
            }
            for name in devices {
                let device = match name.as_str() {
                    "cuda" => match select(Want::Cuda) {
                        Ok((d, _)) => d,
                        Err(_) => continue,
                    },
                    _ => Device::Cpu,
                };
                let p = renal_cnn::parity::compare(&dir, b, COMPOSITE_PX, device).map_err(anyhow::Error::msg)?;
                println!(
                    "| {name} | {} | {} | {:.2e} | {:.2e} | {:.3} | 1e-4 | {} |",
                    b.name(),
                    p.images,
                    p.logits,
                    p.embedding,
                    p.logit_scale,
                    if p.logits <= 1e-4 { "meets" } else { "misses" }
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        println!();
    }
    println!(
        "threads: {} (OMP_NUM_THREADS={})",
        tch::get_num_threads(),
        std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!("| device | backbone | batch | precision | forward ms/batch (median of {repeat}) | images/s | PyTorch eager ms/batch | speed-up vs eager | SGD step ms/batch |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in devices {
        let device = match name.as_str() {
            "cpu" => Device::Cpu,
            "cuda" => match select(Want::Cuda) {
                Ok((d, _)) => d,
                Err(why) => {
                    println!("| cuda | - | - | - | skipped: {why} | | | | |");
                    continue;
                }
            },
            other => bail!("--devices {other:?}: want cpu or cuda"),
        };
        for &backbone in backbones {
            for &batch in batches {
                tch::manual_seed(0);
                let vs = VarStore::new(device);
                let net = Net::new(&vs.root(), NetConfig { backbone, head: Head::Plain, input_px: COMPOSITE_PX });
                let x = Tensor::rand([batch, 3, COMPOSITE_PX, COMPOSITE_PX], (Kind::Float, device));
                let forward = time_median(repeat, || {
                    tch::no_grad(|| {
                        let _ = net.forward(&x, false).logits.sum(Kind::Float).double_value(&[]);
                    });
                    sync(device);
                });
                let eager = torch_eager(backbone, batch, name, repeat);
                let step = if train_steps && batch >= 2 {
                    let mut opt =
                        Optimizer::new(&vs, OptimizerConfig::Sgd { lr: 1e-4, momentum: 0.9, nesterov: false });
                    let y = Tensor::ones([batch], (Kind::Float, device));
                    let t = time_median(repeat, || {
                        let f = net.forward(&x, true);
                        let loss =
                            f.logits.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean);
                        opt.backward_step(&loss);
                        sync(device);
                    });
                    format!("{:.0}", t * 1e3)
                } else {
                    "-".into()
                };
                let (eager_text, ratio) = match &eager {
                    Ok(e) => (format!("{:.0}", e * 1e3), format!("{:.2}x", e / forward)),
                    Err(why) => (format!("n/a ({why})"), "-".into()),
                };
                println!(
                    "| {name} | {} | {batch} | fp32 | {:.0} | {:.1} | {eager_text} | {ratio} | {step} |",
                    backbone.name(),
                    forward * 1e3,
                    batch as f64 / forward
                );
                if device.is_cuda() {
                    // Half precision through autocast (tch 0.26 has no channels-last API).
                    let xl = x.contiguous().to_kind(Kind::Float);
                    let half = time_median(repeat, || {
                        tch::no_grad(|| {
                            tch::autocast(true, || {
                                let _ = net.forward(&xl, false).logits.sum(Kind::Float).double_value(&[]);
                            })
                        });
                        sync(device);
                    });
                    let ratio = eager.as_ref().map(|e| format!("{:.2}x", e / half)).unwrap_or_else(|_| "-".into());
                    println!(
                        "| {name} | {} | {batch} | fp16 autocast | {:.0} | {:.1} | {eager_text} | {ratio} | - |",
                        backbone.name(),
                        half * 1e3,
                        batch as f64 / half
                    );
                }
            }
        }
    }
    Ok(())
}
