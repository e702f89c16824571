//! A phantom for judging bias-field correction: known tissue, known field, known noise.
//!
//! The layout follows the N4 anchor measured with SimpleITK (`shared/notes/radiomics.md` §4),
//! so our numbers can be set beside its: an elliptic body (semi-axes 170 x 120 mm) with a
//! subcutaneous fat ring (300) around uniform soft tissue (100, inner ellipse 155 x 105 mm),
//! two kidneys (cortex 180, medulla 140) at x = +-70 mm, multiplied by
//! `exp(0.35u + 0.25v^2 - 0.20uv + 0.15w - 0.10u^2)` (u = x/170, v = y/120, w = z/100 mm;
//! centred to mean 0 inside the body), then Rician noise of the given sigma. The uniform
//! region for the coefficient of variation is the soft tissue outside the kidneys' 1.3x
//! ellipsoids, eroded by 2 voxels in-plane.

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use renal_imaging::{Geometry, Volume};

/// The phantom and everything known about it.
#[derive(Debug, Clone)]
pub struct BiasPhantom {
    /// Observed image: tissue x field, plus Rician noise.
    pub image: Volume<f32>,
    /// The field's logarithm (mean 0 inside the body).
    pub log_field: Vec<f64>,
    /// Body mask (what N4 is given).
    pub body: Volume<u8>,
    /// Uniform soft tissue, eroded: where CV is measured.
    pub tissue: Vec<bool>,
}

/// Build the phantom on a grid of `dims` voxels of `spacing_mm`, centred on the origin.
pub fn bias_phantom(dims: [usize; 3], spacing_mm: [f64; 3], noise_sigma: f64, seed: u64) -> BiasPhantom {
    let geometry = Geometry {
        dims,
        spacing_mm,
        origin_mm: std::array::from_fn(|a| -((dims[a] - 1) as f64) / 2.0 * spacing_mm[a]),
        row_dir: [1.0, 0.0, 0.0],
        col_dir: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, 1.0],
    };
    let n = geometry.len();
    let mut truth = vec![0.0f64; n];
    let mut body = vec![0u8; n];
    let mut inner_tissue = vec![false; n];
    let mut log_field = vec![0.0f64; n];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = geometry.index(i, j, k);
                let [x, y, z] = geometry.to_patient([i as f64, j as f64, k as f64]);
                let in_body = (x / 170.0).powi(2) + (y / 120.0).powi(2) <= 1.0;
                let inner = (x / 155.0).powi(2) + (y / 105.0).powi(2) <= 1.0;
                let mut t = if inner {
                    100.0
                } else if in_body {
                    300.0
                } else {
                    0.0
                };
                let mut near_kidney = false;
                for cx in [-70.0, 70.0] {
                    let r = ((x - cx) / 30.0).powi(2) + ((y - 35.0) / 25.0).powi(2) + (z / 55.0).powi(2);
                    if r <= 1.0 {
                        t = if r <= 0.45 { 140.0 } else { 180.0 };
                    }
                    near_kidney |= r <= 1.3;
                }
                truth[p] = t;
                body[p] = u8::from(in_body);
                inner_tissue[p] = inner && !near_kidney;
                let (u, v, w) = (x / 170.0, y / 120.0, z / 100.0);
                log_field[p] = 0.35 * u + 0.25 * v * v - 0.20 * u * v + 0.15 * w - 0.10 * u * u;
            }
        }
    }
    let inside: Vec<f64> = (0..n).filter(|&p| body[p] != 0).map(|p| log_field[p]).collect();
    let mean = inside.iter().sum::<f64>() / inside.len().max(1) as f64;
    for f in &mut log_field {
        *f -= mean;
    }
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let data = (0..n)
        .map(|p| {
            let s = truth[p] * log_field[p].exp();
            let a: f64 = rng.sample(StandardNormal);
            let b: f64 = rng.sample(StandardNormal);
            (((s + noise_sigma * a).powi(2) + (noise_sigma * b).powi(2)).sqrt()) as f32
        })
        .collect();
    let tissue = erode_in_plane(&inner_tissue, dims, 2);
    BiasPhantom {
        image: Volume { geometry: geometry.clone(), data },
        log_field,
        body: Volume { geometry, data: body },
        tissue,
    }
}

/// Binary erosion with a (2r+1) x (2r+1) square in each slice.
fn erode_in_plane(mask: &[bool], dims: [usize; 3], r: usize) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let mut out = vec![false; mask.len()];
    for k in 0..nz {
        for j in r..ny.saturating_sub(r) {
            for i in r..nx.saturating_sub(r) {
                let all = (j - r..=j + r).all(|jj| (i - r..=i + r).all(|ii| mask[ii + nx * (jj + ny * k)]));
                out[i + nx * (j + ny * k)] = all;
            }
        }
    }
    out
}

/// Coefficient of variation (sample SD over mean) of `data` where `region` is set.
pub fn region_cv(data: &[f32], region: &[bool]) -> f64 {
    renal_stats::coefficient_of_variation(data.iter().zip(region).filter(|(_, &m)| m).map(|(&x, _)| f64::from(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phantom_has_its_published_layout() {
        let p = bias_phantom([128, 128, 20], [3.0, 3.0, 10.0], 4.0, 1);
        let field_in_body: Vec<f64> =
            (0..p.log_field.len()).filter(|&i| p.body.data[i] != 0).map(|i| p.log_field[i].exp()).collect();
        let (lo, hi) = field_in_body.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        // The anchor reports a field of 0.52-1.71 inside the body.
        assert!((lo - 0.52).abs() < 0.03 && (hi - 1.71).abs() < 0.06, "field {lo:.3}-{hi:.3}");
        // Without the field the uniform tissue would have CV = sigma / 100 = 0.04; with it, far more.
        let cv = region_cv(&p.image.data, &p.tissue);
        assert!(cv > 0.15 && cv < 0.25, "biased tissue CV {cv}");
        assert!(p.tissue.iter().filter(|&&t| t).count() > 20_000);
    }
}
