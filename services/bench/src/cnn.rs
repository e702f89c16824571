//! `renal bench cnn`: forward passes and training steps per backbone, batch and device, against
//! PyTorch eager from the test venv.

use anyhow::{bail, Context, Result};
use renal_cnn::device::{select, Want};
use renal_cnn::net::{Backbone, Head, NetConfig};
use renal_cnn::optim::OptimizerConfig;
use renal_cnn::train::COMPOSITE_PX;
use tch::Device;

/// Median seconds of `repeat` calls after one warm-up call.
fn time_median(repeat: usize, mut f: impl FnMut()) -> f64 {
    f();
    crate::timed(repeat, || {
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
    let (python, script) = crate::reference_script("torch_bench.py")?;
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
pub fn cnn(
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
            let (python, script) = crate::reference_script("torch_reference.py")?;
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
