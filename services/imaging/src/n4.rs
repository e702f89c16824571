//! N4 bias-field correction (Tustison et al., IEEE TMI 29(6):1310-1320, 2010).
//!
//! MRI intensities carry a smooth multiplicative field from coil sensitivity and B1
//! inhomogeneity. N4 works on `v = log(image)`, where the field is additive, and repeats:
//!
//! 1. **sharpen** the histogram of the current corrected log image: bin it (triangular Parzen
//!    window, `histogram_bins` bins), deconvolve it with a Gaussian of FWHM `fwhm` (the assumed
//!    blur the field adds) by a Wiener filter with noise `wiener_noise`, and map every voxel to
//!    the expected true intensity given its observed one, `E[u | v]`;
//! 2. **fit** a cubic B-spline to the residual `v - E[u | v]` inside the mask, by the
//!    single-level multilevel-B-spline approximation of Lee, Wolberg and Shin (1997);
//! 3. **add** it to the log field estimate and stop the level when the coefficient of
//!    variation of `exp(new field - old field)` inside the mask falls below
//!    `convergence_threshold`, or after `iterations[level]`.
//!
//! Each fitting level doubles the number of B-spline spans (control points per axis:
//! `(control_points - 3) * 2^level + 3`). The fit runs on the image shrunk by
//! `shrink_factor` (every `shrink_factor`-th voxel, as ITK's shrink filter subsamples) and the
//! field is then evaluated at full resolution from the control lattices.
//!
//! What we do the same as ITK's `N4BiasFieldCorrectionImageFilter` (and so SimpleITK and
//! ANTs): every step above, with its defaults (4 levels of 50 iterations, threshold 0.001, 4
//! control points, 200 bins, FWHM 0.15, Wiener noise 0.01; shrink 4 as ANTs). What we do
//! differently, on purpose:
//!
//! - the B-spline domain is the full-resolution grid's index extent, for fitting and for
//!   evaluation alike (ITK fits on the shrunk image's extent and stretches the lattice over
//!   the full image when asked for the full-resolution field);
//! - ITK refines each level's lattice into the next (exact knot insertion); we keep one lattice
//!   per level and sum their fields, which is the same function;
//! - the fit and the evaluation are separable tensor contractions (the MBA weights of a
//!   tensor-product spline factor per axis), so an iteration costs a few passes over the
//!   shrunk grid instead of 64 lattice updates per voxel.
//!
//! Everything is deterministic and single-threaded.

use crate::volume::Volume;

/// N4 parameters (defaults as ITK/SimpleITK, shrink as ANTs).
#[derive(Debug, Clone, PartialEq)]
pub struct N4Settings {
    /// Subsampling factor for the fit along every axis (1 = fit at full resolution).
    pub shrink_factor: usize,
    /// Maximum iterations per fitting level; the number of levels is its length.
    pub iterations: Vec<usize>,
    /// Stop a level when the CV of the field update inside the mask falls below this.
    pub convergence_threshold: f64,
    /// B-spline control points per axis at the first level (at least 4: cubic splines).
    pub control_points: usize,
    /// Bins of the log-intensity histogram.
    pub histogram_bins: usize,
    /// Full width at half maximum of the Gaussian the field is assumed to blur the log
    /// histogram with, in log-intensity units.
    pub fwhm: f64,
    /// Noise term of the Wiener deconvolution.
    pub wiener_noise: f64,
}

impl Default for N4Settings {
    fn default() -> Self {
        N4Settings {
            shrink_factor: 4,
            iterations: vec![50, 50, 50, 50],
            convergence_threshold: 0.001,
            control_points: 4,
            histogram_bins: 200,
            fwhm: 0.15,
            wiener_noise: 0.01,
        }
    }
}

/// Why N4 cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum N4Error {
    /// Mask and image grids differ.
    #[error("mask has {mask:?} voxels but the image {image:?}")]
    MaskShape { image: [usize; 3], mask: [usize; 3] },
    /// Nothing to fit: no positive voxel inside the mask.
    #[error("no voxel inside the mask has a positive intensity")]
    EmptyMask,
    /// All masked voxels have the same intensity: there is no histogram to sharpen.
    #[error("the image is constant inside the mask")]
    Constant,
    /// Settings out of range.
    #[error("N4 settings: {0}")]
    Settings(String),
}

/// Result of a correction.
#[derive(Debug, Clone)]
pub struct N4Output {
    /// `image / exp(log_field)`, on the input's grid (voxels outside the mask are corrected too).
    pub corrected: Volume<f32>,
    /// The estimated log bias field on the input's grid.
    pub log_field: Volume<f32>,
    /// Iterations run per level.
    pub iterations_run: Vec<usize>,
    /// Last convergence value per level.
    pub convergence: Vec<f64>,
}

/// Correct `image` (intensities > 0 inside `mask`; without a mask every positive voxel counts).
pub fn n4(image: &Volume<f32>, mask: Option<&Volume<u8>>, settings: &N4Settings) -> Result<N4Output, N4Error> {
    check_settings(settings)?;
    let dims = image.geometry.dims;
    if let Some(m) = mask {
        if m.geometry.dims != dims {
            return Err(N4Error::MaskShape { image: dims, mask: m.geometry.dims });
        }
    }
    // The shrunk grid: every s-th voxel, starting half a block in so the samples sit centred.
    let s = settings.shrink_factor;
    let axes: [Vec<usize>; 3] = std::array::from_fn(|a| {
        let n = (dims[a] / s).max(1);
        let offset = (dims[a] - (n - 1) * s - 1) / 2;
        (0..n).map(|o| offset + o * s).collect()
    });
    let small = [axes[0].len(), axes[1].len(), axes[2].len()];
    let count = small[0] * small[1] * small[2];
    let mut log_input = vec![0.0f64; count];
    let mut inside = vec![false; count];
    let mut n = 0;
    for (kk, &k) in axes[2].iter().enumerate() {
        for (jj, &j) in axes[1].iter().enumerate() {
            for (ii, &i) in axes[0].iter().enumerate() {
                let idx = image.geometry.index(i, j, k);
                let v = image.data[idx];
                let m = mask.is_none_or(|m| m.data[idx] != 0);
                let at = ii + small[0] * (jj + small[1] * kk);
                if m && v > 0.0 && v.is_finite() {
                    log_input[at] = f64::from(v).ln();
                    inside[at] = true;
                    n += 1;
                }
            }
        }
    }
    if n == 0 {
        return Err(N4Error::EmptyMask);
    }
    let positions: [Vec<f64>; 3] = std::array::from_fn(|a| axes[a].iter().map(|&i| i as f64).collect());
    let mut field = vec![0.0f64; count];
    let mut lattices = Vec::new();
    let mut iterations_run = Vec::new();
    let mut convergence = Vec::new();
    for (level, &max_iterations) in settings.iterations.iter().enumerate() {
        let spans = (settings.control_points - 3) << level;
        let basis: [Basis; 3] = std::array::from_fn(|a| Basis::new(&positions[a], spans, dims[a]));
        let mut lattice = vec![0.0f64; (spans + 3).pow(3)];
        let mut measure = f64::INFINITY;
        let mut runs = 0;
        while runs < max_iterations && measure > settings.convergence_threshold {
            runs += 1;
            let uncorrected: Vec<f64> = log_input.iter().zip(&field).map(|(v, f)| v - f).collect();
            let sharpened = sharpen(&uncorrected, &inside, settings)?;
            let residual: Vec<f64> =
                (0..count).map(|p| if inside[p] { uncorrected[p] - sharpened[p] } else { 0.0 }).collect();
            let phi = fit(&residual, &inside, small, &basis);
            let update = evaluate(&phi, small, &basis);
            measure = update_cv(&update, &inside);
            for (l, p) in lattice.iter_mut().zip(&phi) {
                *l += p;
            }
            for (f, u) in field.iter_mut().zip(&update) {
                *f += u;
            }
        }
        lattices.push((spans, lattice));
        iterations_run.push(runs);
        convergence.push(measure);
    }
    // The field at full resolution: every level's lattice evaluated on the full grid.
    let full_positions: [Vec<f64>; 3] = std::array::from_fn(|a| (0..dims[a]).map(|i| i as f64).collect());
    let mut full = vec![0.0f64; image.data.len()];
    for (spans, lattice) in &lattices {
        let basis: [Basis; 3] = std::array::from_fn(|a| Basis::new(&full_positions[a], *spans, dims[a]));
        for (f, v) in full.iter_mut().zip(evaluate(lattice, dims, &basis)) {
            *f += v;
        }
    }
    let corrected = image.data.iter().zip(&full).map(|(&v, &f)| (f64::from(v) / f.exp()) as f32).collect();
    Ok(N4Output {
        corrected: Volume { geometry: image.geometry.clone(), data: corrected },
        log_field: Volume { geometry: image.geometry.clone(), data: full.iter().map(|&f| f as f32).collect() },
        iterations_run,
        convergence,
    })
}

fn check_settings(s: &N4Settings) -> Result<(), N4Error> {
    let bad = |m: &str| Err(N4Error::Settings(m.to_string()));
    if s.shrink_factor == 0 {
        return bad("shrink_factor must be at least 1");
    }
    if s.iterations.is_empty() || s.iterations.len() > 8 {
        return bad("between 1 and 8 fitting levels");
    }
    if s.control_points < 4 {
        return bad("control_points must be at least 4 (cubic B-splines)");
    }
    if s.histogram_bins < 2 {
        return bad("histogram_bins must be at least 2");
    }
    if !(s.fwhm > 0.0 && s.wiener_noise >= 0.0 && s.convergence_threshold >= 0.0) {
        return bad("fwhm must be positive, wiener_noise and convergence_threshold non-negative");
    }
    Ok(())
}

/// Cubic B-spline weights of one axis: for each sample position, the first of the four
/// control points it touches and their weights.
struct Basis {
    first: Vec<usize>,
    weights: Vec<[f64; 4]>,
    controls: usize,
}

impl Basis {
    /// Samples at index positions `x` of an axis of `n` voxels, spline with `spans` spans
    /// over `[0, n - 1]`.
    fn new(x: &[f64], spans: usize, n: usize) -> Basis {
        let extent = (n.max(2) - 1) as f64;
        let mut first = Vec::with_capacity(x.len());
        let mut weights = Vec::with_capacity(x.len());
        for &xi in x {
            let u = (xi / extent * spans as f64).clamp(0.0, spans as f64 * (1.0 - 1e-12));
            let span = (u.floor() as usize).min(spans - 1);
            let t = u - span as f64;
            first.push(span);
            weights.push(cubic_weights(t));
        }
        Basis { first, weights, controls: spans + 3 }
    }
}

/// Uniform cubic B-spline basis at offset `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    let s = 1.0 - t;
    [s * s * s / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0, (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0]
}

/// Contract `values` on a `dims` grid with per-axis weights raised to `power` into a lattice:
/// `out[c] = sum_p values[p] * prod_a w_a(p, c)^power`.
fn scatter(values: &[f64], dims: [usize; 3], basis: &[Basis; 3], power: i32) -> Vec<f64> {
    let [nx, ny, nz] = dims;
    let [cx, cy, cz] = [basis[0].controls, basis[1].controls, basis[2].controls];
    let pw = |w: &[f64; 4]| w.map(|v| v.powi(power));
    let wx: Vec<[f64; 4]> = basis[0].weights.iter().map(pw).collect();
    let wy: Vec<[f64; 4]> = basis[1].weights.iter().map(pw).collect();
    let wz: Vec<[f64; 4]> = basis[2].weights.iter().map(pw).collect();
    // Along x: (z, y, cx).
    let mut a = vec![0.0; nz * ny * cx];
    for zy in 0..nz * ny {
        let row = &values[zy * nx..(zy + 1) * nx];
        let out = &mut a[zy * cx..(zy + 1) * cx];
        for (x, &v) in row.iter().enumerate() {
            if v != 0.0 {
                let f = basis[0].first[x];
                for q in 0..4 {
                    out[f + q] += v * wx[x][q];
                }
            }
        }
    }
    // Along y: (z, cy, cx).
    let mut b = vec![0.0; nz * cy * cx];
    for z in 0..nz {
        for y in 0..ny {
            let f = basis[1].first[y];
            let src = &a[(z * ny + y) * cx..(z * ny + y + 1) * cx];
            for q in 0..4 {
                let w = wy[y][q];
                let dst = &mut b[(z * cy + f + q) * cx..(z * cy + f + q + 1) * cx];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
    // Along z: (cz, cy, cx).
    let plane = cy * cx;
    let mut c = vec![0.0; cz * plane];
    for z in 0..nz {
        let f = basis[2].first[z];
        let src = &b[z * plane..(z + 1) * plane];
        for q in 0..4 {
            let w = wz[z][q];
            let dst = &mut c[(f + q) * plane..(f + q + 1) * plane];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    c
}

/// Single-level MBA fit of `residual` at the `inside` samples. For a sample with weights
/// `w_c` (over its 4x4x4 control points) and residual `r`, each control point gets the local
/// solution `phi_c = w_c r / sum w^2`, and the lattice is the `w_c^2`-weighted mean of those:
/// `sum_p w_c^3 r / sum w^2` over `sum_p w_c^2`. Both sums factor per axis.
fn fit(residual: &[f64], inside: &[bool], dims: [usize; 3], basis: &[Basis; 3]) -> Vec<f64> {
    let [nx, ny, _] = dims;
    let norm = |b: &Basis, i: usize| b.weights[i].iter().map(|w| w * w).sum::<f64>();
    let numer_in: Vec<f64> = (0..residual.len())
        .map(|p| {
            if !inside[p] {
                return 0.0;
            }
            let (x, y, z) = (p % nx, (p / nx) % ny, p / (nx * ny));
            residual[p] / (norm(&basis[0], x) * norm(&basis[1], y) * norm(&basis[2], z))
        })
        .collect();
    let ones: Vec<f64> = inside.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let numer = scatter(&numer_in, dims, basis, 3);
    let denom = scatter(&ones, dims, basis, 2);
    numer.iter().zip(&denom).map(|(n, d)| if *d > 0.0 { n / d } else { 0.0 }).collect()
}

/// The spline with control `lattice` at every sample of a `dims` grid.
fn evaluate(lattice: &[f64], dims: [usize; 3], basis: &[Basis; 3]) -> Vec<f64> {
    let [nx, ny, nz] = dims;
    let [cx, cy, _] = [basis[0].controls, basis[1].controls, basis[2].controls];
    let plane = cy * cx;
    // Along z: (z, cy, cx).
    let mut a = vec![0.0; nz * plane];
    for z in 0..nz {
        let f = basis[2].first[z];
        let dst = &mut a[z * plane..(z + 1) * plane];
        for q in 0..4 {
            let w = basis[2].weights[z][q];
            for (d, s) in dst.iter_mut().zip(&lattice[(f + q) * plane..(f + q + 1) * plane]) {
                *d += w * s;
            }
        }
    }
    // Along y: (z, y, cx).
    let mut b = vec![0.0; nz * ny * cx];
    for z in 0..nz {
        for y in 0..ny {
            let f = basis[1].first[y];
            let dst = &mut b[(z * ny + y) * cx..(z * ny + y + 1) * cx];
            for q in 0..4 {
                let w = basis[1].weights[y][q];
                let src = &a[(z * cy + f + q) * cx..(z * cy + f + q + 1) * cx];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
    // Along x: (z, y, x).
    let mut out = vec![0.0; nz * ny * nx];
    for zy in 0..nz * ny {
        let src = &b[zy * cx..(zy + 1) * cx];
        for x in 0..nx {
            let f = basis[0].first[x];
            let w = &basis[0].weights[x];
            out[zy * nx + x] = w[0] * src[f] + w[1] * src[f + 1] + w[2] * src[f + 2] + w[3] * src[f + 3];
        }
    }
    out
}

/// Coefficient of variation of `exp(update)` inside the mask (sample SD over mean).
fn update_cv(update: &[f64], inside: &[bool]) -> f64 {
    renal_stats::coefficient_of_variation(update.iter().zip(inside).filter(|(_, &m)| m).map(|(u, _)| u.exp()))
}

/// `E[u | v]` for every inside voxel of the log image `v` (0 elsewhere).
fn sharpen(v: &[f64], inside: &[bool], settings: &N4Settings) -> Result<Vec<f64>, N4Error> {
    let bins = settings.histogram_bins;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, _) in v.iter().zip(inside).filter(|(_, &m)| m) {
        lo = lo.min(*x);
        hi = hi.max(*x);
    }
    if hi <= lo {
        return Err(N4Error::Constant);
    }
    let slope = (hi - lo) / (bins - 1) as f64;
    let mut histogram = vec![0.0; bins];
    for (x, _) in v.iter().zip(inside).filter(|(_, &m)| m) {
        let c = (x - lo) / slope;
        let i = c.floor() as usize;
        let off = c - i as f64;
        if off == 0.0 || i + 1 >= bins {
            histogram[i.min(bins - 1)] += 1.0;
        } else {
            histogram[i] += 1.0 - off;
            histogram[i + 1] += off;
        }
    }
    let padded = 1usize << ((bins as f64).log2().ceil() as u32 + 1);
    let offset = (padded - bins) / 2;
    let mut vf = vec![Complex::default(); padded];
    for (n, h) in histogram.iter().enumerate() {
        vf[n + offset].re = *h;
    }
    fft(&mut vf, false);
    // Gaussian of the given FWHM, in bins, centred at 0 with wrap-around.
    let scaled_fwhm = settings.fwhm / slope;
    let exp_factor = 4.0 * std::f64::consts::LN_2 / (scaled_fwhm * scaled_fwhm);
    let scale_factor = 2.0 * (std::f64::consts::LN_2 / std::f64::consts::PI).sqrt() / scaled_fwhm;
    let mut ff = vec![Complex::default(); padded];
    ff[0].re = scale_factor;
    for n in 1..=padded / 2 {
        let g = scale_factor * (-((n * n) as f64) * exp_factor).exp();
        ff[n].re = g;
        ff[padded - n].re = g;
    }
    fft(&mut ff, false);
    // Wiener deconvolution: U = V conj(F) / (|F|^2 + noise), clipped at zero.
    let mut u: Vec<Complex> = vf
        .iter()
        .zip(&ff)
        .map(|(v, f)| {
            let g = f.conj().scale(1.0 / (f.norm_sqr() + settings.wiener_noise));
            v.mul(&g)
        })
        .collect();
    fft(&mut u, true);
    let u: Vec<f64> = u.iter().map(|c| c.re.max(0.0)).collect();
    // E[u | v] = (F * (u x)) / (F * u) at each bin.
    let mut numer: Vec<Complex> = u
        .iter()
        .enumerate()
        .map(|(n, &un)| Complex { re: (lo + (n as f64 - offset as f64) * slope) * un, im: 0.0 })
        .collect();
    let mut denom: Vec<Complex> = u.iter().map(|&un| Complex { re: un, im: 0.0 }).collect();
    for x in [&mut numer, &mut denom] {
        fft(x, false);
        for (a, f) in x.iter_mut().zip(&ff) {
            *a = a.mul(f);
        }
        fft(x, true);
    }
    let expected: Vec<f64> = (0..bins)
        .map(|n| {
            let d = denom[n + offset].re;
            if d != 0.0 {
                numer[n + offset].re / d
            } else {
                0.0
            }
        })
        .collect();
    Ok(v.iter()
        .zip(inside)
        .map(|(x, &m)| {
            if !m {
                return 0.0;
            }
            let c = (x - lo) / slope;
            let i = c.floor() as usize;
            if i + 1 < bins {
                expected[i] + (expected[i + 1] - expected[i]) * (c - i as f64)
            } else {
                expected[bins - 1]
            }
        })
        .collect())
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    fn mul(&self, o: &Complex) -> Complex {
        Complex { re: self.re * o.re - self.im * o.im, im: self.re * o.im + self.im * o.re }
    }
    fn conj(&self) -> Complex {
        Complex { re: self.re, im: -self.im }
    }
    fn scale(&self, s: f64) -> Complex {
        Complex { re: self.re * s, im: self.im * s }
    }
    fn norm_sqr(&self) -> f64 {
        self.re * self.re + self.im * self.im
    }
}

/// In-place radix-2 FFT (length a power of two); the inverse is scaled by 1/n.
fn fft(a: &mut [Complex], inverse: bool) {
    let n = a.len();
    debug_assert!(n.is_power_of_two());
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            a.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = 2.0 * std::f64::consts::PI / len as f64 * if inverse { 1.0 } else { -1.0 };
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let w = Complex { re: (angle * k as f64).cos(), im: (angle * k as f64).sin() };
                let even = a[start + k];
                let odd = a[start + k + len / 2].mul(&w);
                a[start + k] = Complex { re: even.re + odd.re, im: even.im + odd.im };
                a[start + k + len / 2] = Complex { re: even.re - odd.re, im: even.im - odd.im };
            }
        }
        len <<= 1;
    }
    if inverse {
        for x in a.iter_mut() {
            *x = x.scale(1.0 / n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn grid(dims: [usize; 3]) -> Geometry {
        Geometry {
            dims,
            spacing_mm: [1.5, 1.5, 5.0],
            origin_mm: [0.0; 3],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
        }
    }

    #[test]
    fn fft_matches_the_direct_sum() {
        let x: Vec<Complex> =
            (0..16).map(|i| Complex { re: (i as f64 * 0.7).sin() + 0.1 * i as f64, im: 0.0 }).collect();
        let mut y = x.clone();
        fft(&mut y, false);
        for (k, yk) in y.iter().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, xn) in x.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / 16.0;
                re += xn.re * a.cos();
                im += xn.re * a.sin();
            }
            assert!((yk.re - re).abs() < 1e-9 && (yk.im - im).abs() < 1e-9);
        }
        fft(&mut y, true);
        for (a, b) in x.iter().zip(&y) {
            assert!((a.re - b.re).abs() < 1e-12 && b.im.abs() < 1e-12);
        }
    }

    #[test]
    fn cubic_basis_is_a_partition_of_unity_and_reproduces_lines() {
        for t in [0.0, 0.1, 0.5, 0.99] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // Control points at their Greville abscissae (c - 1) reproduce f(u) = u.
            let u: f64 = w.iter().enumerate().map(|(q, wq)| wq * (q as f64 - 1.0)).sum();
            assert!((u - t).abs() < 1e-12);
        }
    }

    #[test]
    fn separable_evaluation_equals_the_direct_sum() {
        let dims = [7, 5, 4];
        let pos: [Vec<f64>; 3] = std::array::from_fn(|a| (0..dims[a]).map(|i| i as f64).collect());
        let basis: [Basis; 3] = std::array::from_fn(|a| Basis::new(&pos[a], 2, dims[a]));
        let lattice: Vec<f64> = (0..125).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        let fast = evaluate(&lattice, dims, &basis);
        for z in 0..4 {
            for y in 0..5 {
                for x in 0..7 {
                    let mut direct = 0.0;
                    for (qz, wz) in basis[2].weights[z].iter().enumerate() {
                        for (qy, wy) in basis[1].weights[y].iter().enumerate() {
                            for (qx, wx) in basis[0].weights[x].iter().enumerate() {
                                let c = (basis[2].first[z] + qz) * 25
                                    + (basis[1].first[y] + qy) * 5
                                    + basis[0].first[x]
                                    + qx;
                                direct += wz * wy * wx * lattice[c];
                            }
                        }
                    }
                    assert!((fast[x + 7 * (y + 5 * z)] - direct).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn separable_fit_equals_the_direct_mba_formula() {
        // Lee, Wolberg and Shin's single-level MBA written out point by point.
        let dims = [9, 6, 5];
        let pos: [Vec<f64>; 3] = std::array::from_fn(|a| (0..dims[a]).map(|i| i as f64).collect());
        let basis: [Basis; 3] = std::array::from_fn(|a| Basis::new(&pos[a], 2, dims[a]));
        let n: usize = dims.iter().product();
        let residual: Vec<f64> = (0..n).map(|p| ((p * 13) % 7) as f64 * 0.1 - 0.3).collect();
        let inside: Vec<bool> = (0..n).map(|p| p % 5 != 0).collect();
        let fast = fit(&residual, &inside, dims, &basis);
        let (mut numer, mut denom) = (vec![0.0; 125], vec![0.0; 125]);
        for p in (0..n).filter(|&p| inside[p]) {
            let (x, y, z) = (p % 9, (p / 9) % 6, p / 54);
            let mut local = Vec::new();
            for (qz, wz) in basis[2].weights[z].iter().enumerate() {
                for (qy, wy) in basis[1].weights[y].iter().enumerate() {
                    for (qx, wx) in basis[0].weights[x].iter().enumerate() {
                        let c = (basis[2].first[z] + qz) * 25 + (basis[1].first[y] + qy) * 5 + basis[0].first[x] + qx;
                        local.push((c, wz * wy * wx));
                    }
                }
            }
            let sum_w2: f64 = local.iter().map(|(_, w)| w * w).sum();
            for (c, w) in local {
                let phi = w * residual[p] / sum_w2;
                numer[c] += w * w * phi;
                denom[c] += w * w;
            }
        }
        for c in 0..125 {
            let direct = if denom[c] > 0.0 { numer[c] / denom[c] } else { 0.0 };
            assert!((fast[c] - direct).abs() < 1e-12, "control point {c}: {} vs {direct}", fast[c]);
        }
    }

    #[test]
    fn repeated_fits_converge_on_a_field_in_the_spline_space() {
        // A quadratic of position is in the cubic spline space; refitting the remainder (what
        // N4's iterations do) must shrink the error steadily.
        let dims = [24, 20, 8];
        let pos: [Vec<f64>; 3] = std::array::from_fn(|a| (0..dims[a]).map(|i| i as f64).collect());
        let basis: [Basis; 3] = std::array::from_fn(|a| Basis::new(&pos[a], 4, dims[a]));
        let truth: Vec<f64> = (0..dims.iter().product())
            .map(|p| {
                let (x, y, z) = ((p % 24) as f64 / 23.0, ((p / 24) % 20) as f64 / 19.0, (p / 480) as f64 / 7.0);
                0.3 * x - 0.2 * y * y + 0.1 * x * z
            })
            .collect();
        let inside = vec![true; truth.len()];
        let mut field = vec![0.0; truth.len()];
        let mut errors = Vec::new();
        for _ in 0..50 {
            let r: Vec<f64> = truth.iter().zip(&field).map(|(t, f)| t - f).collect();
            errors.push(r.iter().map(|v| v * v).sum::<f64>().sqrt());
            let phi = fit(&r, &inside, dims, &basis);
            for (f, u) in field.iter_mut().zip(evaluate(&phi, dims, &basis)) {
                *f += u;
            }
        }
        assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
        assert!(errors[49] < 0.1 * errors[0], "{} -> {}", errors[0], errors[49]);
    }

    #[test]
    fn recovers_a_known_multiplicative_field() {
        // Two tissues (100 and 250) under a smooth field with range about 0.6-1.6.
        let dims = [48, 40, 12];
        let g = grid(dims);
        let mut image = Volume::filled(g.clone(), 0.0f32);
        let mut truth = vec![0.0f64; g.len()];
        let mut tissue = Vec::new();
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let (x, y, z) = (i as f64 / 47.0 - 0.5, j as f64 / 39.0 - 0.5, k as f64 / 11.0 - 0.5);
                    let log_b = 0.5 * x + 0.3 * y * y - 0.2 * x * y + 0.15 * z;
                    let p = g.index(i, j, k);
                    let base = if ((i / 6) + (j / 6)) % 3 == 0 { 250.0 } else { 100.0 };
                    if base == 100.0 {
                        tissue.push(p);
                    }
                    // Deterministic small texture so the histogram is not two spikes.
                    let wobble = 1.0 + 0.03 * (((p * 7919) % 101) as f64 / 50.0 - 1.0);
                    image.data[p] = (base * wobble * log_b.exp()) as f32;
                    truth[p] = log_b;
                }
            }
        }
        let settings = N4Settings { shrink_factor: 2, ..N4Settings::default() };
        let out = n4(&image, None, &settings).unwrap();
        let cv = |d: &[f32]| renal_stats::coefficient_of_variation(tissue.iter().map(|&p| f64::from(d[p])));
        let before = cv(&image.data);
        let after = cv(&out.corrected.data);
        assert!(after < 0.35 * before, "tissue CV {before:.4} -> {after:.4}");
        // Field recovered up to a constant: correlation with the truth.
        let est: Vec<f64> = out.log_field.data.iter().map(|&f| f64::from(f)).collect();
        let r = renal_stats::pearson(&est, &truth);
        assert!(r > 0.95, "r = {r}");
    }

    #[test]
    fn bad_input_is_refused() {
        let g = grid([8, 8, 4]);
        let image = Volume::filled(g.clone(), 10.0f32);
        let s = N4Settings::default();
        assert_eq!(n4(&image, None, &s).unwrap_err(), N4Error::Constant);
        let empty = Volume::filled(g.clone(), 0u8);
        assert_eq!(n4(&image, Some(&empty), &s).unwrap_err(), N4Error::EmptyMask);
        let wrong = Volume::filled(grid([8, 8, 3]), 1u8);
        assert!(matches!(n4(&image, Some(&wrong), &s), Err(N4Error::MaskShape { .. })));
        let bad = N4Settings { control_points: 3, ..N4Settings::default() };
        assert!(matches!(n4(&image, None, &bad), Err(N4Error::Settings(_))));
    }
}
