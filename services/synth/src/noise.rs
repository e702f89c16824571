//! Smooth random fields for tissue texture and boundary perturbation.

use renal_imaging::Vec3;

#[inline]
fn hash3(ix: i64, iy: i64, iz: i64, seed: u64) -> f64 {
    let mut h = (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (iz as u64).wrapping_mul(0x1656_67B1_9E37_79F9)
        ^ seed;
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h >> 11) as f64 * (2.0 / (1u64 << 53) as f64) - 1.0
}

#[inline]
fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

/// Value noise in [-1, 1]: random values on a lattice of pitch `scale_mm`, blended with
/// smoothstep weights. Continuous, band-limited to features of about `scale_mm`.
#[inline]
pub fn value_noise(p: Vec3, scale_mm: f64, seed: u64) -> f64 {
    let x = p[0] / scale_mm;
    let y = p[1] / scale_mm;
    let z = p[2] / scale_mm;
    let (fx, fy, fz) = (x.floor(), y.floor(), z.floor());
    let (ix, iy, iz) = (fx as i64, fy as i64, fz as i64);
    let (tx, ty, tz) = (smooth(x - fx), smooth(y - fy), smooth(z - fz));
    let mut acc = 0.0;
    for dz in 0..2 {
        let wz = if dz == 0 { 1.0 - tz } else { tz };
        for dy in 0..2 {
            let wy = if dy == 0 { 1.0 - ty } else { ty };
            let w0 = (1.0 - tx) * wy * wz;
            let w1 = tx * wy * wz;
            acc += w0 * hash3(ix, iy + dy, iz + dz, seed) + w1 * hash3(ix + 1, iy + dy, iz + dz, seed);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_deterministic_and_continuous() {
        let mut prev = value_noise([0.0, 0.0, 0.0], 5.0, 3);
        for n in 1..2000 {
            let p = [n as f64 * 0.01, n as f64 * 0.007, -(n as f64) * 0.013];
            let v = value_noise(p, 5.0, 3);
            assert!((-1.0..=1.0).contains(&v));
            assert_eq!(v, value_noise(p, 5.0, 3));
            // A 0.02 mm step on a 5 mm lattice cannot jump far.
            assert!((v - prev).abs() < 0.05, "jump {prev} -> {v}");
            prev = v;
        }
        assert_ne!(value_noise([1.3, 2.2, 3.1], 5.0, 3), value_noise([1.3, 2.2, 3.1], 5.0, 4));
    }

    #[test]
    fn roughly_zero_mean() {
        let mut sum = 0.0;
        let n = 20_000;
        for k in 0..n {
            let p = [(k % 97) as f64 * 3.1, (k / 97) as f64 * 2.9, 0.5];
            sum += value_noise(p, 4.0, 11);
        }
        assert!((sum / n as f64).abs() < 0.05);
    }
}
