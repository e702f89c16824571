//! Weight files: torchvision-named safetensors in, our own safetensors out.
//!
//! A torchvision `resnet18/34/50().state_dict()` saved with `safetensors.torch.save_file`
//! (`scripts/export-torchvision-weights.py` shows how, with ImageNet weights or without) has
//! exactly our backbone's names and shapes, plus `fc.*` (the 1,000-class layer we replace with
//! the dense head) and `*.num_batches_tracked` (a counter libtorch does not keep); both are
//! ignored. Every backbone tensor must be present with the right shape: a ResNet-50 file given
//! to a ResNet-18 network, or a truncated file, is an error naming the first offending tensor,
//! never a silent partial load. Head tensors are loaded when the file has all of them (our own
//! bundles) and left at their initialisation when it has none (an ImageNet backbone).

use crate::net::is_head;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// Why a weight file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// Unreadable, unwritable, or not safetensors.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What libtorch or safetensors said.
        reason: String,
    },
    /// A network tensor the file lacks.
    #[error("{path}: no tensor {name:?} (is it a torchvision {backbone} state dict?)")]
    Missing {
        /// The file.
        path: String,
        /// First missing name.
        name: String,
        /// The network's backbone.
        backbone: &'static str,
    },
    /// Same name, different shape.
    #[error("{path}: tensor {name:?} has shape {got:?}, the network wants {want:?} (weights of another backbone?)")]
    Shape {
        /// The file.
        path: String,
        /// The tensor.
        name: String,
        /// Its shape in the file.
        got: Vec<i64>,
        /// Its shape in the network.
        want: Vec<i64>,
    },
    /// Names the network does not have (besides `fc.*` and `num_batches_tracked`).
    #[error("{path}: {count} tensor(s) the network does not have, e.g. {example:?}")]
    Unexpected {
        /// The file.
        path: String,
        /// How many.
        count: usize,
        /// One of them.
        example: String,
    },
    /// Only some of the head's tensors.
    #[error("{path}: has {present} of the head's {total} tensors; a file must have all of them or none")]
    PartialHead {
        /// The file.
        path: String,
        /// Head tensors found.
        present: usize,
        /// Head tensors the network has.
        total: usize,
    },
}

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Backbone tensors copied.
    pub backbone: usize,
    /// Head tensors copied (0 for an ImageNet backbone file).
    pub head: usize,
    /// `fc.*` and `num_batches_tracked` entries skipped.
    pub ignored: usize,
}

fn ignorable(name: &str) -> bool {
    name.starts_with("fc.") || name.ends_with(".num_batches_tracked")
}

/// Load `path` (safetensors) into `vs`, checked as the module docs describe.
pub fn load(vs: &mut VarStore, path: &Path, backbone: &'static str) -> Result<Loaded, WeightsError> {
    let shown = path.display().to_string();
    let read = Tensor::read_safetensors(path)
        .map_err(|e| WeightsError::File { path: shown.clone(), reason: e.to_string() })?;
    let file: HashMap<String, Tensor> = read.into_iter().collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let head_total = names.iter().filter(|n| is_head(n)).count();
    let head_present = names.iter().filter(|n| is_head(n) && file.contains_key(n.as_str())).count();
    if head_present != 0 && head_present != head_total {
        return Err(WeightsError::PartialHead { path: shown, present: head_present, total: head_total });
    }
    let mut unexpected: Vec<&String> =
        file.keys().filter(|k| !ignorable(k) && !vars.contains_key(k.as_str())).collect();
    unexpected.sort();
    if let Some(first) = unexpected.first() {
        return Err(WeightsError::Unexpected { path: shown, count: unexpected.len(), example: first.to_string() });
    }
    let mut done = Loaded { backbone: 0, head: 0, ignored: file.keys().filter(|k| ignorable(k)).count() };
    tch::no_grad(|| {
        for name in names {
            let var = &vars[name];
            let Some(src) = file.get(name.as_str()) else {
                if is_head(name) {
                    continue;
                }
                return Err(WeightsError::Missing { path: shown.clone(), name: name.clone(), backbone });
            };
            if src.size() != var.size() {
                return Err(WeightsError::Shape {
                    path: shown.clone(),
                    name: name.clone(),
                    got: src.size(),
                    want: var.size(),
                });
            }
            let mut dst = var.shallow_clone();
            dst.copy_(&src.to_kind(var.kind()).to_device(var.device()));
            if is_head(name) {
                done.head += 1;
            } else {
                done.backbone += 1;
            }
        }
        Ok(())
    })?;
    Ok(done)
}

/// A copy of every variable of `vs` on the CPU, in name order. `to_device` alone would alias
/// a CPU variable, and a kept "best epoch" would silently follow training onwards.
pub fn snapshot(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).copy())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Write named tensors as safetensors, to a temporary name renamed into place, so a crash
/// never leaves a half-written file under `path`.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), WeightsError> {
    let err =
        |e: &dyn std::fmt::Display| WeightsError::File { path: path.display().to_string(), reason: e.to_string() };
    let tmp = path.with_extension("safetensors.partial");
    Tensor::write_safetensors(tensors, &tmp).map_err(|e| err(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(&e))
}

/// Save every variable of `vs` (backbone and head) with [`write`].
pub fn save(vs: &VarStore, path: &Path) -> Result<(), WeightsError> {
    write(path, &snapshot(vs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Backbone, Head, Net, NetConfig};
    use tch::{Device, Kind};

    fn net(vs: &VarStore, backbone: Backbone) -> Net {
        Net::new(&vs.root(), NetConfig { backbone, head: Head::Plain, input_px: 64 })
    }

    #[test]
    fn a_snapshot_does_not_follow_later_updates() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], tch::nn::Init::Const(1.0));
        let kept = snapshot(&vs);
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(5.0);
        });
        assert_eq!(Vec::<f32>::try_from(&kept[0].1).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn a_saved_network_reloads_to_the_same_outputs_and_bad_files_are_named() {
        let _rng = crate::torch_rng_lock();
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let a = net(&vs, Backbone::Resnet18);
        let file = dir.path().join("w.safetensors");
        save(&vs, &file).unwrap();

        tch::manual_seed(2);
        let mut vs2 = VarStore::new(Device::Cpu);
        let b = net(&vs2, Backbone::Resnet18);
        let loaded = load(&mut vs2, &file, "resnet18").unwrap();
        assert_eq!(loaded, Loaded { backbone: 100, head: 12, ignored: 0 });
        let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (ya, yb) = (a.forward(&x, false).logits, b.forward(&x, false).logits);
        assert_eq!(f64::try_from((ya - yb).abs().max()).unwrap(), 0.0);

        // Another backbone's weights: refused with the tensor and both shapes.
        let mut vs3 = VarStore::new(Device::Cpu);
        let _c = net(&vs3, Backbone::Resnet34);
        let err = load(&mut vs3, &file, "resnet34").unwrap_err().to_string();
        assert!(err.contains("no tensor \"layer1.2."), "{err}");

        // Truncated file.
        let bytes = std::fs::read(&file).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&mut vs2, &cut, "resnet18").unwrap_err().to_string();
        assert!(err.starts_with(&cut.display().to_string()), "{err}");
    }
}
