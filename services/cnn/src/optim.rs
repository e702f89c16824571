//! SGD with momentum and Adam, written out so their state can be checkpointed.
//!
//! libtorch's optimisers keep momentum buffers out of reach of `tch`, so a resumed run would
//! restart them from zero and drift from an uninterrupted one. These two follow PyTorch's update
//! rules exactly (`torch.optim.SGD` without dampening or weight decay, `torch.optim.Adam`) and
//! expose their buffers as named tensors that go into the checkpoint next to the weights.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Which optimiser and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `buf = momentum * buf + g; p -= lr * buf` (Nesterov: `p -= lr * (g + momentum * buf)`).
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (the study's keys all use 0.9).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * m_hat / (sqrt(v_hat) + eps)`.
    Adam {
        /// Learning rate.
        lr: f64,
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        eps: f64,
    },
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// An optimiser over a store's trainable variables.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: i64,
}

impl Optimizer {
    /// Track every variable of `vs` that requires a gradient (batch-norm running statistics do
    /// not), in name order.
    pub fn new(vs: &VarStore, config: OptimizerConfig) -> Optimizer {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Vec<(String, Tensor)>| p.iter().map(|(_, t)| t.zeros_like()).collect::<Vec<_>>();
        let first = zeros(&params);
        let second = if matches!(config, OptimizerConfig::Adam { .. }) { zeros(&params) } else { Vec::new() };
        Optimizer { config, params, first, second, steps: 0 }
    }

    /// Clear the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Backpropagate `loss`, update, clear the gradients.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
        self.zero_grad();
    }

    /// One update from the current gradients.
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                match self.config {
                    OptimizerConfig::Sgd { lr, momentum, nesterov } => {
                        let buf = &mut self.first[i];
                        let _ = buf.g_mul_scalar_(momentum);
                        let _ = buf.g_add_(&g);
                        let update = if nesterov { &g + &*buf * momentum } else { buf.shallow_clone() };
                        let _ = p.g_sub_(&(update * lr));
                    }
                    OptimizerConfig::Adam { lr, beta1, beta2, eps } => {
                        let m = &mut self.first[i];
                        let _ = m.g_mul_scalar_(beta1);
                        let _ = m.g_add_(&(&g * (1.0 - beta1)));
                        let v = &mut self.second[i];
                        let _ = v.g_mul_scalar_(beta2);
                        let _ = v.g_add_(&(g.square() * (1.0 - beta2)));
                        let m_hat = &self.first[i] / (1.0 - beta1.powf(t));
                        let v_hat = &self.second[i] / (1.0 - beta2.powf(t));
                        let _ = p.g_sub_(&(m_hat / (v_hat.sqrt() + eps) * lr));
                    }
                }
            }
        });
    }

    /// The state as named tensors (`opt.first.<param>`, `opt.second.<param>`, `opt.steps`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("opt.steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("opt.first.{name}"), self.first[i].to_device(tch::Device::Cpu)));
            if let Some(v) = self.second.get(i) {
                out.push((format!("opt.second.{name}"), v.to_device(tch::Device::Cpu)));
            }
        }
        out
    }

    /// Restore what [`Optimizer::state`] wrote; `None` names the first missing tensor.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<(), String> {
        let steps = state.get("opt.steps").ok_or("opt.steps")?;
        self.steps = steps.to_kind(Kind::Int64).int64_value(&[0]);
        tch::no_grad(|| {
            for (i, (name, _)) in self.params.iter().enumerate() {
                let key = format!("opt.first.{name}");
                let src = state.get(&key).ok_or(key)?;
                self.first[i].copy_(src);
                if let Some(v) = self.second.get_mut(i) {
                    let key = format!("opt.second.{name}");
                    v.copy_(state.get(&key).ok_or(key)?);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// Minimise 0.5 * |w - c|^2 (gradient w - c) and compare with the update rules in f64.
    fn run(config: OptimizerConfig, steps: usize) -> (Vec<f64>, Vec<f64>) {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let c = Tensor::from_slice(&[0.5f32, -2.0, 3.0]);
        let mut opt = Optimizer::new(&vs, config);
        for _ in 0..steps {
            let loss = (&w - &c).square().sum(Kind::Float) * 0.5;
            opt.backward_step(&loss);
        }
        let got: Vec<f64> = Vec::<f32>::try_from(&w).unwrap().into_iter().map(f64::from).collect();
        // Reference, written from the PyTorch documentation's pseudocode.
        let target = [0.5, -2.0, 3.0];
        let mut want = vec![1.0f64; 3];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=steps {
            for k in 0..3 {
                let g = want[k] - target[k];
                match config {
                    OptimizerConfig::Sgd { lr, momentum, nesterov } => {
                        m[k] = momentum * m[k] + g;
                        want[k] -= lr * if nesterov { g + momentum * m[k] } else { m[k] };
                    }
                    OptimizerConfig::Adam { lr, beta1, beta2, eps } => {
                        m[k] = beta1 * m[k] + (1.0 - beta1) * g;
                        v[k] = beta2 * v[k] + (1.0 - beta2) * g * g;
                        let (mh, vh) = (m[k] / (1.0 - beta1.powi(t as i32)), v[k] / (1.0 - beta2.powi(t as i32)));
                        want[k] -= lr * mh / (vh.sqrt() + eps);
                    }
                }
            }
        }
        (got, want)
    }

    #[test]
    fn updates_follow_the_pytorch_rules() {
        for config in [
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, nesterov: false },
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, nesterov: true },
            OptimizerConfig::adam(0.1),
        ] {
            let (got, want) = run(config, 25);
            for k in 0..3 {
                // float32 parameters against an f64 recurrence: 1e-4 absolute.
                assert!((got[k] - want[k]).abs() < 1e-4, "{config:?} {k}: {} vs {}", got[k], want[k]);
            }
            assert!((got[1] - 1.0).abs() > 0.5, "{config:?} moved");
        }
    }

    #[test]
    fn restored_state_continues_exactly() {
        let config = OptimizerConfig::adam(0.1);
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut a = Optimizer::new(&vs, config);
        for _ in 0..3 {
            a.backward_step(&w.square().sum(Kind::Float));
        }
        let state: HashMap<String, Tensor> = a.state().into_iter().collect();
        let mut b = Optimizer::new(&vs, config);
        b.restore(&state).unwrap();
        assert_eq!(b.steps, 3);
        let before = w.copy();
        a.backward_step(&w.square().sum(Kind::Float));
        let after_a = w.copy();
        tch::no_grad(|| w.shallow_clone().copy_(&before));
        b.backward_step(&w.square().sum(Kind::Float));
        assert_eq!(f64::try_from((&after_a - &w).abs().max()).unwrap(), 0.0);
        assert!(b.restore(&HashMap::new()).is_err());
    }
}
