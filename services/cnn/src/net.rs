//! The network: a torchvision-layout ResNet backbone and the study's dense head.
//!
//! Backbone parameters live at the root of the variable store under torchvision's names
//! (`conv1.weight`, `layer1.0.bn1.running_var`, ...), so a torchvision `state_dict` exported as
//! safetensors loads one to one ([`crate::weights`]). The backbone ends in global average
//! pooling (512 features for ResNet-18/34, 2,048 for ResNet-50). The study's Keras ResNet50 had
//! no pooling and flattened the 7x7x2048 map into 100,352 inputs of the first dense layer
//! (`method_notes.md` §2); pooling keeps the head at 0.5 M instead of 25.7 M parameters and is
//! what torchvision's own classifier does.
//!
//! Head: Dense 256, 128, 64, 32, 16 (ReLU each), then Dense 1; the logit goes through a sigmoid
//! for P(malignant). The 16 activations before the last layer are the lesion's embedding (t-SNE,
//! drift). [`Head::Study`] is the authors' variant: batch norm after every hidden layer, dropout
//! between them, and an L1 + L2 penalty on the dense kernels.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// Hidden widths of the dense head.
pub const HEAD_WIDTHS: [i64; 5] = [256, 128, 64, 32, 16];
/// Length of the embedding (the last hidden layer).
pub const EMBEDDING_LEN: i64 = 16;

/// ResNet depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// Basic blocks 2-2-2-2, 512 features, 11.2 M parameters.
    Resnet18,
    /// Basic blocks 3-4-6-3, 512 features, 21.3 M parameters.
    Resnet34,
    /// Bottleneck blocks 3-4-6-3, 2,048 features, 23.5 M parameters (the study's).
    Resnet50,
}

impl Backbone {
    /// Width of the pooled feature vector.
    pub fn features(self) -> i64 {
        match self {
            Backbone::Resnet18 | Backbone::Resnet34 => 512,
            Backbone::Resnet50 => 2048,
        }
    }

    /// torchvision's constructor name.
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Resnet18 => "resnet18",
            Backbone::Resnet34 => "resnet34",
            Backbone::Resnet50 => "resnet50",
        }
    }
}

impl std::fmt::Display for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backbone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "resnet18" | "18" => Ok(Backbone::Resnet18),
            "resnet34" | "34" => Ok(Backbone::Resnet34),
            "resnet50" | "50" => Ok(Backbone::Resnet50),
            _ => Err(format!("{s:?}: want resnet18, resnet34 or resnet50")),
        }
    }
}

/// Which dense head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Head {
    /// Dense + ReLU layers only (default: the backbone's batch norms already normalise, and the
    /// penalty and dropout made small-cohort training slower to start in our runs).
    Plain,
    /// The authors' head: after each hidden Dense + ReLU a batch norm (momentum 0.01 in
    /// PyTorch's convention, which is Keras' 0.99; eps 1e-3), dropout `dropout` between hidden
    /// layers, and `l1 * sum|w| + l2 * sum w^2` over the six dense kernels added to the loss.
    Study {
        /// Dropout probability between hidden layers (the authors' default 0.5).
        dropout: f64,
        /// L1 weight of the kernel penalty (0.01 in the study).
        l1: f64,
        /// L2 weight of the kernel penalty (0.01 in the study).
        l2: f64,
    },
}

/// Everything that fixes the network's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Backbone depth.
    pub backbone: Backbone,
    /// Dense head variant.
    pub head: Head,
    /// Input side, pixels (the composites are 200x200; smaller inputs are resized on the fly).
    pub input_px: i64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig { backbone: Backbone::Resnet50, head: Head::Plain, input_px: 200 }
    }
}

/// Output of a forward pass.
#[derive(Debug)]
pub struct Forward {
    /// Logits, shape `[N]`.
    pub logits: Tensor,
    /// Last hidden layer, shape `[N, 16]`.
    pub embedding: Tensor,
}

/// The network. Build it on a [`nn::VarStore`]'s root so parameter names match torchvision.
#[derive(Debug)]
pub struct Net {
    config: NetConfig,
    backbone: Box<dyn ModuleT>,
    dense: Vec<nn::Linear>,
    norms: Vec<nn::BatchNorm>,
    out: nn::Linear,
}

impl Net {
    /// Build the network's variables under `root` (normally `vs.root()`).
    pub fn new(root: &nn::Path, config: NetConfig) -> Net {
        let backbone: Box<dyn ModuleT> = match config.backbone {
            Backbone::Resnet18 => Box::new(tch::vision::resnet::resnet18_no_final_layer(root)),
            Backbone::Resnet34 => Box::new(tch::vision::resnet::resnet34_no_final_layer(root)),
            Backbone::Resnet50 => Box::new(tch::vision::resnet::resnet50_no_final_layer(root)),
        };
        let head = root / "head";
        let mut width = config.backbone.features();
        let (mut dense, mut norms) = (Vec::new(), Vec::new());
        for (i, &w) in HEAD_WIDTHS.iter().enumerate() {
            dense.push(nn::linear(&head / format!("fc{i}"), width, w, Default::default()));
            if matches!(config.head, Head::Study { .. }) {
                let bn = nn::BatchNormConfig { momentum: 0.01, eps: 1e-3, ..Default::default() };
                norms.push(nn::batch_norm1d(&head / format!("bn{i}"), w, bn));
            }
            width = w;
        }
        let out = nn::linear(&head / "out", width, 1, Default::default());
        Net { config, backbone, dense, norms, out }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Forward pass on `[N, 3, H, W]` in 0..1; `train` switches batch norm to batch statistics
    /// and enables dropout.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Forward {
        let mut h = self.backbone.forward_t(xs, train);
        let last = self.dense.len() - 1;
        for (i, fc) in self.dense.iter().enumerate() {
            h = fc.forward(&h).relu();
            if let Some(bn) = self.norms.get(i) {
                h = bn.forward_t(&h, train);
            }
            if let Head::Study { dropout, .. } = self.config.head {
                if i < last {
                    h = h.dropout(dropout, train);
                }
            }
        }
        let logits = self.out.forward(&h).squeeze_dim(1);
        Forward { logits, embedding: h }
    }

    /// The study head's kernel penalty (zero for [`Head::Plain`]).
    pub fn penalty(&self) -> Option<Tensor> {
        let Head::Study { l1, l2, .. } = self.config.head else { return None };
        let kernels = self.dense.iter().chain(std::iter::once(&self.out)).map(|l| &l.ws);
        let mut total: Option<Tensor> = None;
        for w in kernels {
            let term = w.abs().sum(tch::Kind::Float) * l1 + w.square().sum(tch::Kind::Float) * l2;
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total
    }
}

/// True for parameter names that belong to the head rather than the torchvision backbone.
pub fn is_head(name: &str) -> bool {
    name.starts_with("head.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    #[test]
    fn parameter_counts_and_names_match_torchvision() {
        let _rng = crate::torch_rng_lock();
        // Published parameter counts of torchvision's resnet18/34/50 without the 1,000-class fc
        // layer: 11,689,512 - 513,000; 21,797,672 - 513,000; 25,557,032 - 2,049,000.
        for (backbone, want) in
            [(Backbone::Resnet18, 11_176_512), (Backbone::Resnet34, 21_284_672), (Backbone::Resnet50, 23_508_032)]
        {
            let vs = VarStore::new(Device::Cpu);
            let _net = Net::new(&vs.root(), NetConfig { backbone, head: Head::Plain, input_px: 64 });
            let trainable: i64 = vs
                .variables()
                .iter()
                .filter(|(n, _)| !is_head(n) && !n.contains("running_"))
                .map(|(_, t)| t.numel() as i64)
                .sum();
            assert_eq!(trainable, want, "{backbone:?}");
            let names = vs.variables();
            assert!(names.contains_key("layer1.0.conv1.weight") && names.contains_key("bn1.running_var"));
            assert!(names.contains_key("head.fc0.weight") && names.contains_key("head.out.bias"));
        }
    }

    #[test]
    fn forward_shapes_and_the_study_head_penalty() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(
            &vs.root(),
            NetConfig {
                backbone: Backbone::Resnet18,
                head: Head::Study { dropout: 0.5, l1: 0.01, l2: 0.01 },
                input_px: 64,
            },
        );
        let x = Tensor::rand([4, 3, 64, 64], (Kind::Float, Device::Cpu));
        let f = net.forward(&x, true);
        assert_eq!(f.logits.size(), vec![4]);
        assert_eq!(f.embedding.size(), vec![4, EMBEDDING_LEN]);
        // The penalty is l1*sum|w| + l2*sum w^2 over the six kernels, recomputed here by hand.
        let mut want = 0.0;
        for (name, t) in vs.variables() {
            if is_head(&name) && name.ends_with(".weight") && !name.contains(".bn") {
                want += 0.01 * t.abs().sum(Kind::Double).double_value(&[])
                    + 0.01 * t.square().sum(Kind::Double).double_value(&[]);
            }
        }
        let got = net.penalty().unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
        // Evaluation mode is deterministic (no dropout, running statistics).
        let a = net.forward(&x, false).logits;
        let b = net.forward(&x, false).logits;
        assert!(a.eq_tensor(&b).all().int64_value(&[]) == 1);
    }
}
