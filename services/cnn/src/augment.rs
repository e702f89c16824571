//! Live augmentation: one random affine map per image, the same for its three channels.
//!
//! The study's Keras generator drew, per image, zoom factors `zx`, `zy` independently from
//! U[0.8, 1.2], a shear angle, and horizontal and vertical flips with p = 0.5 each, with no
//! rotation or shift (`method_notes.md` §2). Its shear range was 0.2, which Keras 2.2 read as
//! degrees (no visible effect) and Keras <= 2.1 as radians (±11.5°); we default to ±11.5° so the
//! setting does something, and it is configurable. Sampling is bilinear; outside the image is 0,
//! which is also the composite's value outside the lesion.
//!
//! A map is a 2x3 matrix `theta` in normalised coordinates (-1..1, pixel centres,
//! `align_corners = false`) taking an output position to the input position it samples, the
//! convention of `torch.nn.functional.affine_grid`. The same call also resizes to the
//! network's input side, so training and evaluation resample alike.

use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Flip left-right with probability 0.5.
    pub horizontal_flip: bool,
    /// Flip up-down with probability 0.5.
    pub vertical_flip: bool,
    /// Shear angle drawn from U[-shear_max_deg, shear_max_deg], degrees.
    pub shear_max_deg: f64,
    /// Zoom factors per axis drawn independently from U[zoom_min, zoom_max].
    pub zoom_min: f64,
    /// See `zoom_min`.
    pub zoom_max: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig { horizontal_flip: true, vertical_flip: true, shear_max_deg: 11.5, zoom_min: 0.8, zoom_max: 1.2 }
    }
}

/// The identity map.
pub const IDENTITY: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

/// Compose flip, shear and zoom: `theta = F * S * Z` with `F = diag(fx, fy)`,
/// `S = [[1, -sin a], [0, cos a]]` (Keras' shear matrix) and `Z = diag(zx, zy)`.
pub fn theta(flip_x: bool, flip_y: bool, shear_rad: f64, zoom: [f64; 2]) -> [f64; 6] {
    let (fx, fy) = (if flip_x { -1.0 } else { 1.0 }, if flip_y { -1.0 } else { 1.0 });
    let [zx, zy] = zoom;
    [fx * zx, -fx * shear_rad.sin() * zy, 0.0, 0.0, fy * shear_rad.cos() * zy, 0.0]
}

/// Draw one map.
pub fn draw(cfg: &AugmentConfig, rng: &mut impl Rng) -> [f64; 6] {
    let flip_x = cfg.horizontal_flip && rng.random_bool(0.5);
    let flip_y = cfg.vertical_flip && rng.random_bool(0.5);
    let shear = if cfg.shear_max_deg > 0.0 {
        rng.random_range(-cfg.shear_max_deg..=cfg.shear_max_deg).to_radians()
    } else {
        0.0
    };
    let mut zoom =
        || if cfg.zoom_max > cfg.zoom_min { rng.random_range(cfg.zoom_min..=cfg.zoom_max) } else { cfg.zoom_min };
    let z = [zoom(), zoom()];
    theta(flip_x, flip_y, shear, z)
}

/// Resample `images` (`[N, C, H, W]`) through one map each onto `side x side`.
pub fn apply(images: &Tensor, thetas: &[[f64; 6]], side: i64) -> Tensor {
    let size = images.size();
    let n = size[0];
    assert_eq!(thetas.len() as i64, n, "one map per image");
    let flat: Vec<f32> = thetas.iter().flatten().map(|&v| v as f32).collect();
    let theta = Tensor::from_slice(&flat).view([n, 2, 3]).to_device(images.device()).to_kind(images.kind());
    let grid = Tensor::affine_grid_generator(&theta, [n, size[1], side, side], false);
    // interpolation 0 = bilinear, padding 0 = zeros.
    images.grid_sampler(&grid, 0, 0, false)
}

/// Resize without augmentation (evaluation and inference); a no-op at the native side.
pub fn resize(images: &Tensor, side: i64) -> Tensor {
    let size = images.size();
    if size[2] == side && size[3] == side {
        return images.shallow_clone();
    }
    images.upsample_bilinear2d([side, side], false, None, None)
}

/// `[N, 3, S, S]` float from channel-major f32 images of side `s`.
pub fn stack(images: &[&[f32]], side: i64) -> Tensor {
    let per = (3 * side * side) as usize;
    let mut flat = Vec::with_capacity(images.len() * per);
    for im in images {
        assert_eq!(im.len(), per, "3 x {side} x {side} image");
        flat.extend_from_slice(im);
    }
    Tensor::from_slice(&flat).view([images.len() as i64, 3, side, side]).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tch::Device;

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        f64::try_from((a - b).abs().max()).unwrap()
    }

    #[test]
    fn identity_and_flips_are_exact_and_every_channel_moves_together() {
        let _rng = crate::torch_rng_lock();
        let x = Tensor::rand([2, 3, 20, 20], (Kind::Float, Device::Cpu));
        // Pixel centres map onto pixel centres, so these are exact up to float rounding.
        assert!(max_abs(&apply(&x, &[IDENTITY; 2], 20), &x) < 1e-6);
        let h = theta(true, false, 0.0, [1.0, 1.0]);
        assert!(max_abs(&apply(&x, &[h; 2], 20), &x.flip([3])) < 1e-6);
        let v = theta(false, true, 0.0, [1.0, 1.0]);
        assert!(max_abs(&apply(&x, &[v; 2], 20), &x.flip([2])) < 1e-6);
        // Resizing through the identity map equals bilinear resizing.
        assert!(max_abs(&apply(&x, &[IDENTITY; 2], 10), &resize(&x, 10)) < 1e-6);
        // Zoom 0.5 about the centre: output pixel (i, j) of a 20x20 output samples input position
        // 0.5 * (i - 9.5) + 9.5, so a linear ramp in x comes out with half the slope.
        let ramp = Tensor::arange(20, (Kind::Float, Device::Cpu)).view([1, 1, 1, 20]).expand([1, 3, 20, 20], true);
        let z = apply(&ramp.contiguous(), &[theta(false, false, 0.0, [0.5, 1.0])], 20);
        let row: Vec<f32> = Vec::try_from(z.get(0).get(1).get(7).contiguous()).unwrap();
        for (j, v) in row.iter().enumerate() {
            assert!((f64::from(*v) - (0.5 * (j as f64 - 9.5) + 9.5)).abs() < 1e-5, "{j}: {v}");
        }
        // Same map on all three channels: identical channels stay identical.
        let one = x.narrow(0, 0, 1).narrow(1, 0, 1).repeat([1, 3, 1, 1]);
        let out = apply(&one, &[theta(true, true, 0.1, [0.9, 1.1])], 20);
        assert!(max_abs(&out.select(1, 0), &out.select(1, 2)) == 0.0);
        assert!(max_abs(&out.select(1, 0), &one.select(1, 0)) > 0.01, "the map moved the image");
    }

    #[test]
    fn draws_stay_in_range_and_repeat_with_the_seed() {
        let cfg = AugmentConfig::default();
        let mut a = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let mut b = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let (mut flips_x, n) = (0, 2000);
        for _ in 0..n {
            let t = draw(&cfg, &mut a);
            assert_eq!(t, draw(&cfg, &mut b));
            let zx = t[0].abs();
            assert!((0.8..=1.2).contains(&zx), "{t:?}");
            // |theta[1] / theta[4]| = tan(shear) <= tan(11.5 deg).
            assert!((t[1] / t[4]).abs() <= 11.5f64.to_radians().tan() + 1e-12);
            flips_x += usize::from(t[0] < 0.0);
        }
        // p = 0.5: 2,000 draws land within 1,000 +- 4.5 sd (sd 22.4).
        assert!((900..1100).contains(&flips_x), "{flips_x}");
        let none = AugmentConfig {
            horizontal_flip: false,
            vertical_flip: false,
            shear_max_deg: 0.0,
            zoom_min: 1.0,
            zoom_max: 1.0,
        };
        assert_eq!(draw(&none, &mut a), IDENTITY);
    }
}
