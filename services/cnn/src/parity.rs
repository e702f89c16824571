//! Parity with PyTorch: load the files `tests/reference/torch_reference.py` writes (a
//! torchvision state dict plus our head as safetensors, an input batch, PyTorch's logits and
//! embeddings) and compare our network's outputs with PyTorch's.

use crate::net::{Backbone, Head, Net, NetConfig};
use crate::weights;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Largest absolute differences from PyTorch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parity {
    /// Over the logits.
    pub logits: f64,
    /// Over the 16-value embeddings.
    pub embedding: f64,
    /// Largest |logit| PyTorch produced (for scale).
    pub logit_scale: f64,
    /// Images compared.
    pub images: usize,
}

/// Compare on `device` with inputs of side `side`.
pub fn compare(dir: &Path, backbone: Backbone, side: i64, device: Device) -> Result<Parity, String> {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).map_err(|e| format!("expected.json: {e}"))?)
            .map_err(|e| format!("expected.json: {e}"))?;
    let logits: Vec<f64> = serde_json::from_value(expected["logits"].clone()).map_err(|e| e.to_string())?;
    let embedding: Vec<Vec<f64>> = serde_json::from_value(expected["embedding"].clone()).map_err(|e| e.to_string())?;
    let raw = std::fs::read(dir.join("input.f32")).map_err(|e| format!("input.f32: {e}"))?;
    let values = renal_imaging::composite::decode_f32_le(&raw).ok_or("input.f32: length not a multiple of 4")?;
    let n = logits.len() as i64;
    if values.len() as i64 != n * 3 * side * side {
        return Err(format!("input.f32 has {} values, want {n} x 3 x {side} x {side}", values.len()));
    }
    let mut vs = VarStore::new(device);
    let net = Net::new(&vs.root(), NetConfig { backbone, head: Head::Plain, input_px: side });
    let loaded =
        weights::load(&mut vs, &dir.join("weights.safetensors"), backbone.name()).map_err(|e| e.to_string())?;
    if loaded.head == 0 || loaded.ignored == 0 {
        return Err(format!("expected a head and ignorable fc/num_batches_tracked entries: {loaded:?}"));
    }
    let x = Tensor::from_slice(&values).view([n, 3, side, side]).to_device(device);
    let f = tch::no_grad(|| net.forward(&x, false));
    let got: Vec<f32> = Vec::try_from(f.logits.to_kind(Kind::Float).to_device(Device::Cpu))
        .map_err(|e: tch::TchError| e.to_string())?;
    let emb: Vec<f32> = Vec::try_from(f.embedding.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1]))
        .map_err(|e: tch::TchError| e.to_string())?;
    let mut p = Parity { logits: 0.0, embedding: 0.0, logit_scale: 0.0, images: n as usize };
    for (g, w) in got.iter().zip(&logits) {
        p.logits = p.logits.max((f64::from(*g) - w).abs());
        p.logit_scale = p.logit_scale.max(w.abs());
    }
    for (g, w) in emb.iter().zip(embedding.iter().flatten()) {
        p.embedding = p.embedding.max((f64::from(*g) - w).abs());
    }
    Ok(p)
}
