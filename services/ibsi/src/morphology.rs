//! Morphological features (IBSI 3.1): from the marching-cubes mesh ([`crate::mesh`]) volume,
//! area and the shape ratios built on them, the maximum diameter, bounding-box, enclosing
//! ellipsoid and convex hull densities and the integrated intensity; from the voxels the
//! voxel-counting volume, centre-of-mass shift, principal component axes, and Moran's I and
//! Geary's C. The oriented minimum bounding box and minimum-volume enclosing ellipsoid
//! densities are left out: IBSI gives them no reference value.
//!
//! Positions are voxel centres in mm on the ROI's grid (axes scaled by the spacing); the
//! morphological and intensity masks are the same ROI.

use crate::mesh::{enclosed_volume_mm3, max_distance_mm, surface_area_mm2, Hull, Mesh};
use crate::roi::Roi;
use crate::Features;
use std::f64::consts::PI;

/// Eigenvalues of a symmetric 3x3 matrix, largest first (cyclic Jacobi rotations).
pub fn eigenvalues_sym3(mut a: [[f64; 3]; 3]) -> [f64; 3] {
    for _ in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off < 1e-15 * (a[0][0].abs() + a[1][1].abs() + a[2][2].abs()).max(1e-300) {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // a <- Jᵀ a J for the rotation J in the (p, q) plane.
            for k in 0..3 {
                let (akp, akq) = (a[k][p], a[k][q]);
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let (apk, aqk) = (a[p][k], a[q][k]);
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
        }
    }
    let mut e = [a[0][0], a[1][1], a[2][2]];
    e.sort_by(|x, y| y.total_cmp(x));
    e
}

/// Voxel-counting volume `N_v Δ` (`morph_vol_approx`, mm³); centre-of-mass shift
/// `‖mean position - intensity-weighted mean position‖` (`morph_com`, mm); with λ₁ ≥ λ₂ ≥ λ₃
/// the eigenvalues of the positions' sample covariance (1/(N-1)), major, minor and least axis lengths
/// `4 √λ` (`morph_pca_maj_axis`, `morph_pca_min_axis`, `morph_pca_least_axis`), elongation
/// `√(λ₂/λ₁)` and flatness `√(λ₃/λ₁)`; Moran's I
/// `N Σ_{k≠l} w (x_k - μ)(x_l - μ) / (Σ_{k≠l} w Σ (x_k - μ)²)` and Geary's C
/// `(N - 1) Σ_{k≠l} w (x_k - x_l)² / (2 Σ_{k≠l} w Σ (x_k - μ)²)` with `w = 1 / distance`
/// (`morph_moran_i`, `morph_geary_c`; summed over every pair for ROIs of at most
/// `direct_max_voxels` voxels, by FFT convolution above, [`crate::autocorrelation`]).
///
/// From the mesh, with `V` its volume and `A` its area: `morph_volume` V (mm³),
/// `morph_area_mesh` A (mm²), `morph_av` A/V, `morph_comp_1` V/(√π A^{3/2}), `morph_comp_2`
/// 36πV²/A³, `morph_sph_dispr` A/(36πV²)^{1/3}, `morph_sphericity` (36πV²)^{1/3}/A,
/// `morph_asphericity` (A³/(36πV²))^{1/3} - 1, `morph_diam` the greatest distance between two
/// vertices (found among the convex hull's), `morph_vol_dens_aabb` and `morph_area_dens_aabb`
/// V and A over the volume and area of the vertices' axis-aligned bounding box,
/// `morph_vol_dens_aee` 3V/(4πabc) and `morph_area_dens_aee` A over the area of the ellipsoid
/// with semi-axes `a, b, c = 2√λ` (a Legendre series to order 20), `morph_vol_dens_conv_hull`
/// and `morph_area_dens_conv_hull` V and A over the hull's, and `morph_integ_int` V times the
/// mean intensity.
///
/// Shape (mesh, volumes, PCA, the geometric centre) comes from the morphological mask;
/// intensities (the weighted centre, integrated intensity, Moran's I, Geary's C) from the
/// intensity mask.
pub fn morphology(roi: &Roi, direct_max_voxels: usize, out: &mut Features) {
    let sp = roi.spacing_mm;
    let intensity = Moments::of(roi.dims, roi.bounding_box(), &roi.mask, Some(&roi.image));
    let shape = match &roi.morphology_mask {
        None => intensity,
        Some(m) => Moments::of(roi.dims, roi.morphology_bounding_box(), m, None),
    };
    let n = shape.n as f64;
    let voxels = roi.voxels();
    let n_int = intensity.n as f64;
    let total = intensity.weight;

    let mesh = Mesh::of(roi);
    let pos = mesh.positions_mm();
    let (v, area) = (enclosed_volume_mm3(&mesh.triangles, &pos), surface_area_mm2(&mesh.triangles, &pos));
    let sphere = (36.0 * PI * v * v).cbrt();
    out.push(("morph_volume".into(), v));
    out.push(("morph_vol_approx".into(), n * sp[0] * sp[1] * sp[2]));
    out.push(("morph_area_mesh".into(), area));
    out.push(("morph_av".into(), area / v));
    out.push(("morph_comp_1".into(), v / (PI.sqrt() * area.powf(1.5))));
    out.push(("morph_comp_2".into(), 36.0 * PI * v * v / area.powi(3)));
    out.push(("morph_sph_dispr".into(), area / sphere));
    out.push(("morph_sphericity".into(), sphere / area));
    out.push(("morph_asphericity".into(), area / sphere - 1.0));

    // Centres in mm: the geometric one of the morphological mask, the intensity-weighted one of
    // the intensity mask.
    let centre: [f64; 3] = std::array::from_fn(|a| shape.sum[a] as f64 / n * sp[a]);
    let weighted: [f64; 3] = std::array::from_fn(|a| intensity.weighted[a] / total * sp[a]);
    out.push(("morph_com".into(), (0..3).map(|a| (centre[a] - weighted[a]).powi(2)).sum::<f64>().sqrt()));
    let cov = shape.covariance_mm2(sp);
    let hull = Hull::of(&mesh);
    let hull_vertices = hull.as_ref().map_or_else(|| (0..mesh.doubled.len() as u32).collect(), Hull::vertices);
    out.push(("morph_diam".into(), max_distance_mm(&pos, &hull_vertices)));
    let [l1, l2, l3] = eigenvalues_sym3(cov);
    out.push(("morph_pca_maj_axis".into(), 4.0 * l1.max(0.0).sqrt()));
    out.push(("morph_pca_min_axis".into(), 4.0 * l2.max(0.0).sqrt()));
    out.push(("morph_pca_least_axis".into(), 4.0 * l3.max(0.0).sqrt()));
    out.push(("morph_pca_elongation".into(), if l1 > 0.0 { (l2 / l1).max(0.0).sqrt() } else { 0.0 }));
    out.push(("morph_pca_flatness".into(), if l1 > 0.0 { (l3 / l1).max(0.0).sqrt() } else { 0.0 }));

    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for p in &pos {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let [ex, ey, ez] = std::array::from_fn(|a| hi[a] - lo[a]);
    out.push(("morph_vol_dens_aabb".into(), v / (ex * ey * ez)));
    out.push(("morph_area_dens_aabb".into(), area / (2.0 * (ex * ey + ey * ez + ex * ez))));
    let [a, b, c] = [l1, l2, l3].map(|l| 2.0 * l.max(0.0).sqrt());
    if c > 0.0 {
        out.push(("morph_vol_dens_aee".into(), 3.0 * v / (4.0 * PI * a * b * c)));
        out.push(("morph_area_dens_aee".into(), area / ellipsoid_area(a, b, c)));
    }
    if let Some(hull) = &hull {
        out.push(("morph_vol_dens_conv_hull".into(), v / hull.volume_mm3(&pos)));
        out.push(("morph_area_dens_conv_hull".into(), area / hull.area_mm2(&pos)));
    }
    out.push(("morph_integ_int".into(), v * total / n_int));

    if voxels.len() > 1 {
        let mu = total / n_int;
        let coords = roi.coords_of(&roi.mask);
        let d: Vec<f64> = voxels.iter().map(|&i| roi.image[i] - mu).collect();
        let ss: f64 = d.iter().map(|v| v * v).sum();
        let (w_sum, moran, geary) = if voxels.len() <= direct_max_voxels {
            moran_geary_sums(&coords, &d, sp)
        } else {
            crate::autocorrelation::moran_geary_sums_fft(&coords, &d, sp)
        };
        if ss > 0.0 {
            out.push(("morph_moran_i".into(), n_int * moran / (w_sum * ss)));
            out.push(("morph_geary_c".into(), (n_int - 1.0) * geary / (2.0 * w_sum * ss)));
        }
    }
}

/// Sums over the voxels of a mask, in grid units: the voxel count, the coordinates' sums and
/// their products' sums (whole numbers, so exact), and with intensities their total and the
/// intensity-weighted coordinate sums.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Moments {
    n: u64,
    /// Σ x, Σ y, Σ z.
    sum: [u64; 3],
    /// Σ c_a c_b, a ≤ b, in the order xx, xy, xz, yy, yz, zz.
    products: [u64; 6],
    /// Σ intensity.
    weight: f64,
    /// Σ intensity · coordinate.
    weighted: [f64; 3],
}

impl Moments {
    /// Row by row: per row the count, Σ x, Σ x², Σ v and Σ v x, which the row's y and z then
    /// scale (Σ x y over a row is y Σ x, and so on).
    /// `bbox` bounds the mask's voxels (rows and columns outside it hold none).
    fn of(dims: [usize; 3], bbox: ([usize; 3], [usize; 3]), mask: &[bool], image: Option<&[f64]>) -> Moments {
        let [nx, ny, _] = dims;
        let (lo, hi) = bbox;
        let mut m = Moments { n: 0, sum: [0; 3], products: [0; 6], weight: 0.0, weighted: [0.0; 3] };
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                let start = lo[0] + nx * (y + ny * z);
                let row = &mask[start..start + hi[0] - lo[0] + 1];
                let (mut k, mut sx, mut sxx) = (0u64, 0u64, 0u64);
                for (x, &inside) in (lo[0]..).zip(row) {
                    let b = u64::from(inside);
                    k += b;
                    sx += b * x as u64;
                    sxx += b * (x * x) as u64;
                }
                if k == 0 {
                    continue;
                }
                let (y, z) = (y as u64, z as u64);
                m.n += k;
                m.sum[0] += sx;
                m.sum[1] += k * y;
                m.sum[2] += k * z;
                let [xx, xy, xz, yy, yz, zz] = &mut m.products;
                *xx += sxx;
                *xy += sx * y;
                *xz += sx * z;
                *yy += k * y * y;
                *yz += k * y * z;
                *zz += k * z * z;
                if let Some(image) = image {
                    let (mut sv, mut svx) = (0.0, 0.0);
                    for (x, (&inside, &v)) in (lo[0]..).zip(row.iter().zip(&image[start..start + row.len()])) {
                        if inside {
                            sv += v;
                            svx += v * x as f64;
                        }
                    }
                    m.weight += sv;
                    m.weighted[0] += svx;
                    m.weighted[1] += sv * y as f64;
                    m.weighted[2] += sv * z as f64;
                }
            }
        }
        m
    }

    /// The positions' sample covariance (1/(N-1)), mm²: `(N Σ ab - Σa Σb) / (N (N-1))`, the
    /// numerator in exact integer arithmetic.
    fn covariance_mm2(&self, spacing_mm: [f64; 3]) -> [[f64; 3]; 3] {
        let n = i128::from(self.n);
        let index = |a: usize, b: usize| {
            let (a, b) = (a.min(b), a.max(b));
            [[0, 1, 2], [1, 3, 4], [2, 4, 5]][a][b]
        };
        std::array::from_fn(|a| {
            std::array::from_fn(|b| {
                let centred =
                    n * i128::from(self.products[index(a, b)]) - i128::from(self.sum[a]) * i128::from(self.sum[b]);
                centred as f64 / (n as f64 * (n as f64 - 1.0).max(1.0)) * spacing_mm[a] * spacing_mm[b]
            })
        })
    }
}

/// Over every ordered pair of distinct voxels with weight `w = 1 / distance`: `Σ w`,
/// `Σ w d_k d_l` and `Σ w (d_k - d_l)²`, for voxels at grid `coords` (memory order: z, then y,
/// then x ascending) with centred values `d`. On a grid the weight depends only on the offset
/// between two voxels, so it is tabulated once over the ROI's bounding box and looked up; per
/// voxel the three sums over its later partners are gathered, and the squared difference is
/// expanded as `d_k² Σw - 2 d_k Σ w d_l + Σ w d_l²`.
pub fn moran_geary_sums(coords: &[[usize; 3]], d: &[f64], spacing_mm: [f64; 3]) -> (f64, f64, f64) {
    /// Largest weight table (32 MiB); a bounding box needing more falls back to pair-wise weights.
    const TABLE_MAX_SLOTS: usize = 1 << 22;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for c in coords {
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    let [bx, by, bz] = std::array::from_fn(|a| hi[a] - lo[a] + 1);
    // Offsets (dx, dy, dz) with dz >= 0 (later voxels never lie in an earlier slice).
    let (wx, wy) = (2 * bx - 1, 2 * by - 1);
    let weight = |k: usize, l: usize| -> f64 {
        let r2: f64 = (0..3).map(|a| ((coords[k][a] as f64 - coords[l][a] as f64) * spacing_mm[a]).powi(2)).sum();
        1.0 / r2.sqrt()
    };
    if bz * wy * wx > TABLE_MAX_SLOTS {
        // A sprawling ROI: weights computed pair by pair.
        let (mut w_sum, mut moran, mut geary) = (0.0, 0.0, 0.0);
        for k in 0..coords.len() {
            for l in k + 1..coords.len() {
                let w = 2.0 * weight(k, l);
                w_sum += w;
                moran += w * d[k] * d[l];
                geary += w * (d[k] - d[l]).powi(2);
            }
        }
        return (w_sum, moran, geary);
    }
    let mut table = vec![0.0f64; bz * wy * wx];
    for dz in 0..bz {
        for dy in 0..wy {
            for dx in 0..wx {
                let o = [dx as f64 - (bx - 1) as f64, dy as f64 - (by - 1) as f64, dz as f64];
                let r2: f64 = (0..3).map(|a| (o[a] * spacing_mm[a]).powi(2)).sum();
                table[(dz * wy + dy) * wx + dx] = if r2 > 0.0 { 1.0 / r2.sqrt() } else { 0.0 };
            }
        }
    }
    let key: Vec<usize> = coords.iter().map(|c| ((c[2] - lo[2]) * wy + (c[1] - lo[1])) * wx + (c[0] - lo[0])).collect();
    let centre = (by - 1) * wx + (bx - 1);
    // Runs of voxels adjacent along x: their slots in the table are consecutive too, so each
    // voxel's sums over a run are dot products of contiguous slices.
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for l in 0..coords.len() {
        match runs.last_mut() {
            Some(run) if key[l] == key[l - 1] + 1 => run.end = l + 1,
            _ => runs.push(l..l + 1),
        }
    }
    let d2: Vec<f64> = d.iter().map(|v| v * v).collect();
    let (mut w_sum, mut moran, mut geary) = (0.0, 0.0, 0.0);
    let mut run = 0;
    for k in 0..coords.len() {
        if runs[run].end <= k {
            run += 1;
        }
        // centre - key[k] + key[l] is the offset's slot, never below 0 for l > k (the
        // intermediate may wrap; the sum does not).
        let base = centre.wrapping_sub(key[k]);
        let mut acc = Lanes::default();
        acc.add(
            &table[base.wrapping_add(key[k]) + 1..][..runs[run].end - k - 1],
            &d[k + 1..runs[run].end],
            &d2[k + 1..],
        );
        for r in &runs[run + 1..] {
            acc.add(&table[base.wrapping_add(key[r.start])..][..r.len()], &d[r.clone()], &d2[r.start..]);
        }
        let (sw, swd, swd2) = acc.sums();
        // Both orders of each pair.
        w_sum += 2.0 * sw;
        moran += 2.0 * d[k] * swd;
        geary += 2.0 * (d[k] * d[k] * sw - 2.0 * d[k] * swd + swd2);
    }
    (w_sum, moran, geary)
}

/// `Σ w`, `Σ w d` and `Σ w d²` over slices, in four lanes so the sums vectorise.
#[derive(Default)]
struct Lanes {
    w: [f64; 4],
    wd: [f64; 4],
    wd2: [f64; 4],
}

impl Lanes {
    /// Add the terms of weights `w`, values `d` and squared values `d2` (as long as `w` or longer).
    fn add(&mut self, w: &[f64], d: &[f64], d2: &[f64]) {
        let (d, d2) = (&d[..w.len()], &d2[..w.len()]);
        let mut chunks = w.chunks_exact(4).zip(d.chunks_exact(4)).zip(d2.chunks_exact(4));
        for ((w, d), d2) in &mut chunks {
            for j in 0..4 {
                self.w[j] += w[j];
                self.wd[j] += w[j] * d[j];
                self.wd2[j] += w[j] * d2[j];
            }
        }
        let tail = w.len() / 4 * 4;
        for j in tail..w.len() {
            self.w[0] += w[j];
            self.wd[0] += w[j] * d[j];
            self.wd2[0] += w[j] * d2[j];
        }
    }

    fn sums(&self) -> (f64, f64, f64) {
        let total = |v: &[f64; 4]| (v[0] + v[1]) + (v[2] + v[3]);
        (total(&self.w), total(&self.wd), total(&self.wd2))
    }
}

/// IBSI's surface area of the ellipsoid with semi-axes `a ≥ b ≥ c`, the series
/// `4πab Σ_{ν=0}^{20} (αβ)^ν P_ν((α²+β²)/(2αβ)) / (1 - 4ν²)` with `α = √(1 - b²/a²)`,
/// `β = √(1 - c²/a²)`. The terms `Q_ν = (αβ)^ν P_ν(...)` follow from Bonnet's recursion
/// multiplied through by `(αβ)^{ν+1}`, which stays finite for a sphere (αβ = 0). The series as
/// IBSI states it falls short of the exact area of a non-spherical ellipsoid (by 3.5% for
/// semi-axes 6, 4, 3); the reference values are computed with it, so it is kept.
pub fn ellipsoid_area(a: f64, b: f64, c: f64) -> f64 {
    let alpha2 = 1.0 - (b / a).powi(2);
    let beta2 = 1.0 - (c / a).powi(2);
    let (s, p2) = ((alpha2 + beta2) / 2.0, alpha2 * beta2);
    let (mut q_prev, mut q) = (1.0, s);
    let mut sum = 1.0 + q / (1.0 - 4.0);
    for nu in 1..20 {
        let nf = nu as f64;
        let q_next = ((2.0 * nf + 1.0) * s * q - nf * p2 * q_prev) / (nf + 1.0);
        let m = nf + 1.0;
        sum += q_next / (1.0 - 4.0 * m * m);
        (q_prev, q) = (q, q_next);
    }
    4.0 * PI * a * b * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabulated_pair_sums_equal_the_direct_ones() {
        // Scattered voxels of a 9 x 4 x 3 grid at anisotropic spacing, in memory order, in runs
        // along x of 1 to 8 voxels.
        let coords: Vec<[usize; 3]> =
            (0..108usize).filter(|i| (i * 7) % 11 > 1).map(|i| [i % 9, (i / 9) % 4, i / 36]).collect();
        let d: Vec<f64> = (0..coords.len()).map(|i| ((i * 13) % 7) as f64 - 3.1).collect();
        let sp = [0.7, 1.1, 2.5];
        let (mut w_sum, mut moran, mut geary) = (0.0, 0.0, 0.0);
        for k in 0..coords.len() {
            for l in 0..coords.len() {
                if k != l {
                    let r = (0..3).map(|a| ((coords[k][a] as f64 - coords[l][a] as f64) * sp[a]).powi(2)).sum::<f64>();
                    let w = 1.0 / r.sqrt();
                    w_sum += w;
                    moran += w * d[k] * d[l];
                    geary += w * (d[k] - d[l]).powi(2);
                }
            }
        }
        let got = moran_geary_sums(&coords, &d, sp);
        for (g, want) in [(got.0, w_sum), (got.1, moran), (got.2, geary)] {
            assert!((g - want).abs() <= 1e-12 * want.abs().max(1.0), "{g} vs {want}");
        }
        // Three voxels spread so far that the table would be too large: pair-wise weights.
        let far = [[0, 0, 0], [3000, 3000, 0], [1, 2000, 1]];
        let w = |a: [usize; 3], b: [usize; 3]| {
            1.0 / (0..3).map(|i| ((a[i] as f64 - b[i] as f64) * sp[i]).powi(2)).sum::<f64>().sqrt()
        };
        let (w01, w02, w12) = (w(far[0], far[1]), w(far[0], far[2]), w(far[1], far[2]));
        let dd = [1.0, -2.0, 0.5];
        let got = moran_geary_sums(&far, &dd, sp);
        let want_w = 2.0 * (w01 + w02 + w12);
        let want_m = 2.0 * (w01 * dd[0] * dd[1] + w02 * dd[0] * dd[2] + w12 * dd[1] * dd[2]);
        assert!((got.0 - want_w).abs() < 1e-15 && (got.1 - want_m).abs() < 1e-15, "{got:?}");
    }

    #[test]
    fn row_moments_give_the_two_pass_centre_and_covariance() {
        let mut next = crate::xorshift(0xA11C_E5ED);
        let dims = [7, 5, 4];
        let sp = [0.8, 1.3, 2.5];
        for _ in 0..10 {
            let mask: Vec<bool> = (0..140).map(|_| !next().is_multiple_of(3)).collect();
            // Intensities outside the mask are never read: NaN there must not leak in.
            let image: Vec<f64> =
                mask.iter().map(|&m| if m { (next() % 1000) as f64 * 0.37 - 50.0 } else { f64::NAN }).collect();
            let coords: Vec<[usize; 3]> = (0..140).filter(|&i| mask[i]).map(|i| [i % 7, (i / 7) % 5, i / 35]).collect();
            let lo: [usize; 3] = std::array::from_fn(|a| coords.iter().map(|c| c[a]).min().unwrap());
            let hi: [usize; 3] = std::array::from_fn(|a| coords.iter().map(|c| c[a]).max().unwrap());
            let m = Moments::of(dims, (lo, hi), &mask, Some(&image));
            // Rows and columns outside the box add nothing: the whole grid as the box agrees.
            assert_eq!(m, Moments::of(dims, ([0; 3], [6, 4, 3]), &mask, Some(&image)));
            let pos: Vec<([f64; 3], f64)> = (0..140)
                .filter(|&i| mask[i])
                .map(|i| ([i % 7, (i / 7) % 5, i / 35].map(|c| c as f64), image[i]))
                .map(|(c, v)| (std::array::from_fn(|a| c[a] * sp[a]), v))
                .collect();
            let n = pos.len() as f64;
            assert_eq!(m.n as usize, pos.len());
            let centre: [f64; 3] = std::array::from_fn(|a| pos.iter().map(|p| p.0[a]).sum::<f64>() / n);
            let total: f64 = pos.iter().map(|p| p.1).sum();
            assert!((m.weight - total).abs() < 1e-9 * total.abs().max(1.0));
            let cov = m.covariance_mm2(sp);
            for a in 0..3 {
                assert!((m.sum[a] as f64 / n * sp[a] - centre[a]).abs() < 1e-12);
                let weighted = pos.iter().map(|p| p.0[a] * p.1).sum::<f64>() / total;
                assert!((m.weighted[a] / total * sp[a] - weighted).abs() < 1e-9 * weighted.abs().max(1.0));
                for b in 0..3 {
                    let want = pos.iter().map(|p| (p.0[a] - centre[a]) * (p.0[b] - centre[b])).sum::<f64>() / (n - 1.0);
                    assert!((cov[a][b] - want).abs() < 1e-12 * want.abs().max(1.0), "{a}{b}: {} vs {want}", cov[a][b]);
                }
            }
        }
    }

    #[test]
    fn ellipsoid_area_follows_the_ibsi_series() {
        // A sphere: 4πr², exactly.
        assert!((ellipsoid_area(3.0, 3.0, 3.0) - 4.0 * PI * 9.0).abs() < 1e-12);
        // Semi-axes 6, 4, 3: the same series evaluated with numpy's Legendre polynomials
        // (numpy.polynomial.legendre.legval) gives 223.09185170651028. It is IBSI's definition,
        // not the exact area: numerical integration of the surface gives 231.248.
        let got = ellipsoid_area(6.0, 4.0, 3.0);
        assert!((got - 223.09185170651028).abs() < 1e-9, "{got}");
    }

    #[test]
    fn eigenvalues_of_a_rotated_diagonal_matrix() {
        // R diag(9, 4, 1) Rᵀ with R a rotation by 30° about z then 45° about x.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let (c2, s2) = (45f64.to_radians().cos(), 45f64.to_radians().sin());
        let rz = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, c2, -s2], [0.0, s2, c2]];
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
            std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
        };
        let r = mul(rx, rz);
        let rt: [[f64; 3]; 3] = std::array::from_fn(|i| std::array::from_fn(|j| r[j][i]));
        let d = [[9.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1.0]];
        let e = eigenvalues_sym3(mul(mul(r, d), rt));
        for (got, want) in e.iter().zip([9.0, 4.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{e:?}");
        }
    }
}
