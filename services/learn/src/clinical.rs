//! The clinical model: logistic regression on age (years), sex (male = 1) and tumour volume
//! (mL), as the study trained it (`method_notes.md` §2): one sigmoid unit with an L2 penalty of
//! 0.01 on the weights (not the bias), class-weighted binary cross-entropy (weight N/n_c from the
//! training split), mini-batch SGD with learning rate 0.001 and momentum 0.9 (Keras' update:
//! `v = m v - lr g; w += v`), batch 16, up to 500 epochs with early stopping on the validation
//! loss (patience 100, best epoch restored).
//!
//! Unlike the study, the min-max scaler is fitted on the training rows only (the study fitted it
//! on every row, test included), and by default it scales the natural log of the volume
//! ([`VolumeScale::Log`]). Lesion volumes are log-normal and span three orders of magnitude
//! (Table 1: 0.2-18.7 cm across, so about 0.004-3,400 mL); min-max scaling the volume itself puts a
//! typical lesion below 0.01 of the range, where a weight under the L2 penalty cannot reach it and
//! the model learns from age and sex alone (the study's own volume was squashed further by the
//! bug of `method_notes.md` section 6). [`VolumeScale::Linear`] is the study's choice.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use renal_stats::sigmoid;

/// Features of one lesion, in the model's order.
pub type Features = [f64; 3];

/// What the min-max scaler sees of the tumour volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeScale {
    /// The volume in mL, as the study scaled it.
    Linear,
    /// The natural log of the volume in mL (volumes below [`MIN_VOLUME_ML`] count as that).
    #[default]
    Log,
}

/// The smallest volume the log scale distinguishes, mL (a cube 0.1 mm on a side is 1e-6 mL; the
/// smallest lesion of Table 1, 0.2 cm across, is about 0.004 mL).
pub const MIN_VOLUME_ML: f64 = 1e-6;

impl VolumeScale {
    /// The value the scaler sees for `tumour_volume_ml`.
    pub fn apply(self, tumour_volume_ml: f64) -> f64 {
        match self {
            VolumeScale::Linear => tumour_volume_ml,
            VolumeScale::Log => tumour_volume_ml.max(MIN_VOLUME_ML).ln(),
        }
    }
}

/// Training settings (defaults: the study's, except the volume's scale).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClinicalSettings {
    /// SGD learning rate.
    pub learning_rate: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 penalty on the weights: `l2 * sum(w^2)` added to the mean loss.
    pub l2: f64,
    /// Rows per step (0: the whole training set, plain gradient descent).
    pub batch_size: usize,
    /// Maximum epochs.
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// What the scaler sees of the volume (the study: `linear`).
    pub volume: VolumeScale,
}

impl Default for ClinicalSettings {
    fn default() -> Self {
        ClinicalSettings {
            learning_rate: 0.001,
            momentum: 0.9,
            l2: 0.01,
            batch_size: 16,
            max_epochs: 500,
            patience: 100,
            seed: 1,
            volume: VolumeScale::Log,
        }
    }
}

/// A fitted clinical model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClinicalModel {
    /// What the scaler saw of the volume (bundles written before this field: linear).
    #[serde(default = "linear")]
    pub volume: VolumeScale,
    /// Training minimum of each feature (the volume as [`Self::volume`] gives it).
    pub min: Features,
    /// Training maximum of each feature (likewise).
    pub max: Features,
    /// Weights on the min-max scaled features.
    pub weights: Features,
    /// Bias.
    pub bias: f64,
    /// Epochs run, counting those after the best one until early stopping.
    pub epochs_run: usize,
    /// Best epoch (by validation loss), 1-based.
    pub best_epoch: usize,
}

fn linear() -> VolumeScale {
    VolumeScale::Linear
}

/// What stands in for a missing age or sex: the training rows' median age (the upper middle
/// value; 60 when no training row has one) and their more common sex (male when at least half
/// of the rows are recorded male). Kept with the model so a lesion scored later is filled the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fill {
    /// Age used when none is recorded, years.
    pub age_years: f64,
    /// Sex used when none is recorded (male = 1).
    pub sex_male: f64,
}

impl Fill {
    /// From the training rows' `(age_years, sex_male)`, either possibly unknown.
    pub fn from_training(rows: &[(Option<f64>, Option<f64>)]) -> Fill {
        let mut ages: Vec<f64> = rows.iter().filter_map(|r| r.0).collect();
        ages.sort_by(f64::total_cmp);
        let age_years = if ages.is_empty() { 60.0 } else { ages[ages.len() / 2] };
        let males = rows.iter().filter(|r| r.1 == Some(1.0)).count();
        Fill { age_years, sex_male: if 2 * males >= rows.len() { 1.0 } else { 0.0 } }
    }

    /// The model's features of one lesion, and whether a gap was filled.
    pub fn features(&self, age_years: Option<f64>, sex_male: Option<f64>, tumour_volume_ml: f64) -> (Features, bool) {
        let filled = age_years.is_none() || sex_male.is_none();
        ([age_years.unwrap_or(self.age_years), sex_male.unwrap_or(self.sex_male), tumour_volume_ml], filled)
    }
}

/// Why the model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClinicalError {
    /// Training or validation rows of one class only, or none.
    #[error("clinical model needs both classes in training ({train_pos} malignant, {train_neg} benign) and some validation rows ({validation})")]
    Data { train_pos: usize, train_neg: usize, validation: usize },
    /// A feature is NaN or infinite.
    #[error("clinical feature of row {0} is not finite")]
    NonFinite(usize),
}

impl ClinicalModel {
    /// The features as the scaler sees them: the volume on [`Self::volume`]'s scale.
    fn seen(&self, x: &Features) -> Features {
        [x[0], x[1], self.volume.apply(x[2])]
    }

    fn scaled(&self, x: &Features) -> Features {
        let x = self.seen(x);
        std::array::from_fn(|j| {
            let range = self.max[j] - self.min[j];
            if range > 0.0 {
                (x[j] - self.min[j]) / range
            } else {
                0.0
            }
        })
    }

    /// Probability of malignancy.
    pub fn probability(&self, x: &Features) -> f64 {
        let s = self.scaled(x);
        sigmoid(self.bias + (0..3).map(|j| self.weights[j] * s[j]).sum::<f64>())
    }

    /// Mean class-weighted cross-entropy of rows plus the L2 penalty.
    fn loss(&self, x: &[Features], y: &[bool], class_weight: [f64; 2], l2: f64) -> f64 {
        let bce: f64 = x
            .iter()
            .zip(y)
            .map(|(row, &t)| {
                let p = self.probability(row).clamp(1e-7, 1.0 - 1e-7);
                let w = class_weight[usize::from(t)];
                -w * if t { p.ln() } else { (1.0 - p).ln() }
            })
            .sum();
        bce / x.len() as f64 + l2 * self.weights.iter().map(|w| w * w).sum::<f64>()
    }

    /// Fit on training rows, stopping on validation rows.
    pub fn fit(
        train_x: &[Features],
        train_y: &[bool],
        val_x: &[Features],
        val_y: &[bool],
        s: &ClinicalSettings,
    ) -> Result<ClinicalModel, ClinicalError> {
        assert_eq!(train_x.len(), train_y.len());
        assert_eq!(val_x.len(), val_y.len());
        if let Some(i) = train_x.iter().chain(val_x).position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(ClinicalError::NonFinite(i));
        }
        let pos = train_y.iter().filter(|&&t| t).count();
        let neg = train_y.len() - pos;
        if pos == 0 || neg == 0 || val_x.is_empty() {
            return Err(ClinicalError::Data { train_pos: pos, train_neg: neg, validation: val_x.len() });
        }
        let n = train_x.len() as f64;
        let class_weight = [n / neg as f64, n / pos as f64];
        let mut model = ClinicalModel {
            volume: s.volume,
            min: [0.0; 3],
            max: [0.0; 3],
            weights: [0.0; 3],
            bias: 0.0,
            epochs_run: 0,
            best_epoch: 0,
        };
        let seen: Vec<Features> = train_x.iter().map(|r| model.seen(r)).collect();
        model.min = std::array::from_fn(|j| seen.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min));
        model.max = std::array::from_fn(|j| seen.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max));
        let scaled: Vec<Features> = train_x.iter().map(|r| model.scaled(r)).collect();
        let batch = if s.batch_size == 0 { train_x.len() } else { s.batch_size };
        let mut order: Vec<usize> = (0..train_x.len()).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(s.seed);
        let (mut velocity, mut best) = ([0.0f64; 4], (f64::INFINITY, model.clone()));
        let mut since_best = 0;
        for epoch in 1..=s.max_epochs {
            if batch < train_x.len() {
                order.shuffle(&mut rng);
            }
            for chunk in order.chunks(batch) {
                // Gradient of the mean weighted BCE over the batch, plus the penalty's.
                let mut g = [0.0f64; 4];
                for &i in chunk {
                    let x = &scaled[i];
                    let p = sigmoid(model.bias + (0..3).map(|j| model.weights[j] * x[j]).sum::<f64>());
                    let r = class_weight[usize::from(train_y[i])] * (p - f64::from(u8::from(train_y[i])));
                    for j in 0..3 {
                        g[j] += r * x[j];
                    }
                    g[3] += r;
                }
                for (j, gj) in g.iter_mut().enumerate() {
                    *gj /= chunk.len() as f64;
                    if j < 3 {
                        *gj += 2.0 * s.l2 * model.weights[j];
                    }
                }
                for j in 0..4 {
                    velocity[j] = s.momentum * velocity[j] - s.learning_rate * g[j];
                }
                for j in 0..3 {
                    model.weights[j] += velocity[j];
                }
                model.bias += velocity[3];
            }
            model.epochs_run = epoch;
            let val_loss = model.loss(val_x, val_y, class_weight, s.l2);
            if val_loss < best.0 {
                model.best_epoch = epoch;
                best = (val_loss, model.clone());
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= s.patience {
                    break;
                }
            }
        }
        let mut kept = best.1;
        kept.epochs_run = model.epochs_run;
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn data(n: usize, seed: u64) -> (Vec<Features>, Vec<bool>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let age = 30.0 + 50.0 * rng.random::<f64>();
                let male = f64::from(u8::from(rng.random::<f64>() < 0.6));
                let volume = 100.0 * rng.random::<f64>().powi(2);
                let z = -2.0 + 0.04 * age + 0.5 * male + 0.02 * volume;
                ([age, male, volume], rng.random::<f64>() < sigmoid(z))
            })
            .unzip()
    }

    #[test]
    fn gaps_are_filled_with_the_training_median_age_and_more_common_sex() {
        let rows = [(Some(50.0), Some(1.0)), (None, Some(0.0)), (Some(70.0), None), (Some(40.0), Some(1.0))];
        let fill = Fill::from_training(&rows);
        // Ages 40, 50, 70: the middle one; 2 of 4 recorded male: male.
        assert_eq!(fill, Fill { age_years: 50.0, sex_male: 1.0 });
        assert_eq!(fill.features(None, Some(0.0), 3.5), ([50.0, 0.0, 3.5], true));
        assert_eq!(fill.features(Some(61.0), Some(0.0), 3.5), ([61.0, 0.0, 3.5], false));
        assert_eq!(Fill::from_training(&[(None, Some(0.0))]), Fill { age_years: 60.0, sex_male: 0.0 });
    }

    #[test]
    fn learns_the_direction_of_a_known_signal_and_is_seeded() {
        let (x, y) = data(600, 1);
        let (mut vx, mut vy) = data(200, 2);
        // A validation patient older and with a bigger lesion than any training one: a scaler
        // fitted on every row would move its maxima.
        vx.push([95.0, 1.0, 250.0]);
        vy.push(true);
        for volume in [VolumeScale::Linear, VolumeScale::Log] {
            let settings = ClinicalSettings { volume, ..ClinicalSettings::default() };
            let m = ClinicalModel::fit(&x, &y, &vx, &vy, &settings).unwrap();
            assert!(m.weights.iter().all(|&w| w > 0.0), "{m:?}");
            // Scaler fitted on training rows only: exactly their extremes, on the volume's scale.
            for j in 0..3 {
                let seen = |r: &Features| if j == 2 { volume.apply(r[j]) } else { r[j] };
                let (lo, hi) =
                    x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| (a.min(seen(r)), b.max(seen(r))));
                assert_eq!((m.min[j], m.max[j]), (lo, hi), "{volume:?} feature {j}");
            }
        }
        let m = ClinicalModel::fit(&x, &y, &vx, &vy, &ClinicalSettings::default()).unwrap();
        let again = ClinicalModel::fit(&x, &y, &vx, &vy, &ClinicalSettings::default()).unwrap();
        assert_eq!(m, again);
        assert!(matches!(
            ClinicalModel::fit(&x, &vec![true; x.len()], &vx, &vy, &ClinicalSettings::default()),
            Err(ClinicalError::Data { .. })
        ));
    }

    /// Lesions like Table 1's: log-normal diameters (median 2.2 cm benign, 3.4 cm malignant,
    /// log-SD 0.6), volume of a sphere; ages normal (median 53 and 61 years, SD 13); one sex.
    fn volumes(n: usize, seed: u64) -> (Vec<Features>, Vec<bool>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let malignant = rng.random::<f64>() < 0.6;
                // Box-Muller: one standard normal draw from two uniforms.
                let mut normal = || {
                    let (u, v) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                };
                let d_cm = (if malignant { 3.4f64 } else { 2.2f64 }).ln() + 0.6 * normal();
                let age = if malignant { 61.0 } else { 53.0 } + 13.0 * normal();
                let volume_ml = std::f64::consts::PI / 6.0 * d_cm.exp().powi(3);
                ([age, 1.0, volume_ml], malignant)
            })
            .unzip()
    }

    #[test]
    fn log_volume_escapes_the_squashing_of_a_few_large_lesions() {
        // On the linear scale a typical lesion sits below a hundredth of the range, and under the
        // study's optimiser and L2 penalty the volume's weight cannot grow to use it: the model
        // ranks mostly by age. On the log scale it combines both.
        let (x, y) = volumes(800, 3);
        let (vx, vy) = volumes(200, 4);
        let (tx, ty) = volumes(2000, 5);
        let fitted =
            |volume| ClinicalModel::fit(&x, &y, &vx, &vy, &ClinicalSettings { volume, ..Default::default() }).unwrap();
        let (linear, log) = (fitted(VolumeScale::Linear), fitted(VolumeScale::Log));
        let spread = |m: &ClinicalModel| {
            let p: Vec<f64> = tx.iter().map(|r| m.probability(r)).collect();
            let mut sorted = p.clone();
            sorted.sort_by(f64::total_cmp);
            (renal_stats::roc_auc(&p, &ty).unwrap(), sorted[sorted.len() * 9 / 10] - sorted[sorted.len() / 10])
        };
        let ((auc_linear, spread_linear), (auc_log, spread_log)) = (spread(&linear), spread(&log));
        println!(
            "linear: AUC {auc_linear:.3}, p90-p10 {spread_linear:.3}; log: AUC {auc_log:.3}, p90-p10 {spread_log:.3}"
        );
        // Closed forms (equal-variance normals, AUC = Phi(d' / sqrt 2)): age alone d' = 8 / 13,
        // AUC 0.668; log diameter alone d' = ln(3.4 / 2.2) / 0.6, AUC 0.696; both, d' the root
        // of the sum of squares, 0.749 (the best any score can do).
        assert!(auc_linear < 0.749 - 0.04, "linear {auc_linear}: well short of the best, 0.749");
        assert!((auc_log - 0.749).abs() < 0.03, "log {auc_log}: near the best, 0.749");
        assert!(spread_log > spread_linear, "linear {spread_linear} vs log {spread_log}");
        // A bundle written before the scale was recorded was fitted on the linear volume.
        let mut old = serde_json::to_value(&linear).unwrap();
        old.as_object_mut().unwrap().remove("volume");
        let read: ClinicalModel = serde_json::from_value(old).unwrap();
        assert_eq!(read, linear);
    }
}
