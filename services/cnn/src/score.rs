//! A loaded bundle's two networks, scoring lesions from their composites: what the inference
//! stage serves, and what the trainer uses to check a bundle it saved.

use crate::bundle::{self, BundleError, Manifest, Model};
use crate::train::predict;
use renal_imaging::composite::side_of;
use std::path::Path;
use tch::Device;

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

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
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
