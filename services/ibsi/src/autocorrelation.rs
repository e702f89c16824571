//! Moran's I and Geary's C of large ROIs by FFT convolution.
//!
//! Both features need, over every ordered pair of distinct ROI voxels with weight
//! `w = 1 / distance`, the sums `Σ w`, `Σ w d_k d_l` and `Σ w (d_k - d_l)²` of the centred
//! intensities `d`. Pair by pair that is O(N²): 2 billion pairs for a 46,000-voxel ROI. On a
//! grid the weight depends only on the offset between two voxels, so with the mask indicator
//! `m`, the centred image `z = d m` and the kernel `K(o) = 1 / |o|` (`K(0) = 0`):
//!
//! * `Σ w = Σ m (K * m)`, `Σ w d_k d_l = Σ z (K * z)`,
//! * `Σ w (d_k - d_l)² = 2 Σ z² (K * m) - 2 Σ z (K * z)`,
//!
//! and each convolution over the ROI's bounding box is exact as a circular convolution on a
//! grid padded to at least `2n - 1` per axis, which a real-to-complex FFT computes in
//! O(N log N). The only error is floating-point rounding in the transforms (about 1e-15 of the
//! sums' scale); [`crate::morphology::moran_geary_sums`] is the direct sum the tests compare
//! with.

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use rustfft::FftPlanner;

/// The smallest length at least `n` whose only prime factors are 2, 3 and 5 (fast FFT sizes).
fn fast_length(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5] {
            while r.is_multiple_of(p) {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// A real 3D array's spectrum: real FFT along x, complex FFTs along y and z.
struct Spectra {
    dims: [usize; 3],
    /// Complex bins along x (`dims[0] / 2 + 1`).
    hx: usize,
    real: RealFftPlanner<f64>,
    complex: FftPlanner<f64>,
}

impl Spectra {
    fn new(dims: [usize; 3]) -> Spectra {
        Spectra { dims, hx: dims[0] / 2 + 1, real: RealFftPlanner::new(), complex: FftPlanner::new() }
    }

    /// The spectrum of `data` (x fastest), laid out as `[z][y][kx]`.
    fn forward(&mut self, mut data: Vec<f64>) -> Vec<Complex<f64>> {
        let [nx, ny, nz] = self.dims;
        let hx = self.hx;
        let r2c = self.real.plan_fft_forward(nx);
        let mut out = vec![Complex::new(0.0, 0.0); hx * ny * nz];
        for (row, spec) in data.chunks_exact_mut(nx).zip(out.chunks_exact_mut(hx)) {
            r2c.process(row, spec).expect("lengths match the plan");
        }
        self.along_y_and_z(&mut out, false);
        out
    }

    /// The real array whose spectrum is `spec` (consumed), scaled so `inverse(forward(x)) = x`.
    fn inverse(&mut self, mut spec: Vec<Complex<f64>>) -> Vec<f64> {
        let [nx, ny, nz] = self.dims;
        let hx = self.hx;
        self.along_y_and_z(&mut spec, true);
        let c2r = self.real.plan_fft_inverse(nx);
        let mut out = vec![0.0f64; nx * ny * nz];
        let scale = 1.0 / (nx * ny * nz) as f64;
        for (spec_row, row) in spec.chunks_exact_mut(hx).zip(out.chunks_exact_mut(nx)) {
            // The inverse real FFT needs the DC (and, for even lengths, the Nyquist) bin real;
            // after a circular convolution of real arrays they are, up to rounding.
            spec_row[0].im = 0.0;
            if nx % 2 == 0 {
                spec_row[hx - 1].im = 0.0;
            }
            c2r.process(spec_row, row).expect("lengths match the plan");
        }
        out.iter_mut().for_each(|v| *v *= scale);
        out
    }

    /// Complex FFTs along y and z. Each pass transposes one block (a z-plane `[y][kx]` for y,
    /// a y-row across z `[z][kx]` for z) so its lines are contiguous, transforms every line of
    /// the block in one call, and transposes back.
    fn along_y_and_z(&mut self, data: &mut [Complex<f64>], inverse: bool) {
        let [_, ny, nz] = self.dims;
        let hx = self.hx;
        let plan = |planner: &mut FftPlanner<f64>, n: usize| {
            if inverse {
                planner.plan_fft_inverse(n)
            } else {
                planner.plan_fft_forward(n)
            }
        };
        // (line length, number of blocks, block start, stride between a line's elements).
        for (n, blocks, start, stride) in [(ny, nz, hx * ny, hx), (nz, ny, hx, hx * ny)] {
            if n == 1 {
                continue;
            }
            let fft = plan(&mut self.complex, n);
            let mut block = vec![Complex::new(0.0, 0.0); n * hx];
            let mut scratch = vec![Complex::new(0.0, 0.0); fft.get_inplace_scratch_len()];
            for b in 0..blocks {
                let base = b * start;
                for t in 0..n {
                    let row = &data[base + t * stride..][..hx];
                    for (kx, v) in row.iter().enumerate() {
                        block[kx * n + t] = *v;
                    }
                }
                fft.process_with_scratch(&mut block, &mut scratch);
                for t in 0..n {
                    let row = &mut data[base + t * stride..][..hx];
                    for (kx, v) in row.iter_mut().enumerate() {
                        *v = block[kx * n + t];
                    }
                }
            }
        }
    }
}

/// `Σ w`, `Σ w d_k d_l` and `Σ w (d_k - d_l)²` over every ordered pair of distinct voxels, for
/// voxels at grid `coords` with centred values `d` (as [`crate::morphology::moran_geary_sums`]
/// returns them), by FFT convolution over the voxels' bounding box.
pub fn moran_geary_sums_fft(coords: &[[usize; 3]], d: &[f64], spacing_mm: [f64; 3]) -> (f64, f64, f64) {
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for c in coords {
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    let b: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a] + 1);
    let dims: [usize; 3] = std::array::from_fn(|a| fast_length(2 * b[a] - 1));
    let [nx, ny, _] = dims;
    let len = dims.iter().product();
    let at = |c: [usize; 3]| c[0] + nx * (c[1] + ny * c[2]);
    let (mut m, mut z) = (vec![0.0f64; len], vec![0.0f64; len]);
    for (c, &v) in coords.iter().zip(d) {
        let i = at(std::array::from_fn(|a| c[a] - lo[a]));
        m[i] = 1.0;
        z[i] = v;
    }
    // The kernel at every offset within the box, wrapped onto the padded grid.
    let mut kernel = vec![0.0f64; len];
    let offsets = |a: usize| -> Vec<(usize, f64)> {
        (0..b[a]).map(|o| (o, o as f64)).chain((1..b[a]).map(|o| (dims[a] - o, -(o as f64)))).collect()
    };
    let (ox, oy, oz) = (offsets(0), offsets(1), offsets(2));
    for &(k, dz) in &oz {
        for &(j, dy) in &oy {
            for &(i, dx) in &ox {
                let r2 = (dx * spacing_mm[0]).powi(2) + (dy * spacing_mm[1]).powi(2) + (dz * spacing_mm[2]).powi(2);
                if r2 > 0.0 {
                    kernel[at([i, j, k])] = 1.0 / r2.sqrt();
                }
            }
        }
    }
    let mut fft = Spectra::new(dims);
    let k_hat = fft.forward(kernel);
    let m_hat = fft.forward(m.clone());
    let z_hat = fft.forward(z.clone());
    let km = fft.inverse(m_hat.iter().zip(&k_hat).map(|(a, b)| a * b).collect());
    let kz = fft.inverse(z_hat.iter().zip(&k_hat).map(|(a, b)| a * b).collect());
    let (mut w_sum, mut moran, mut z2_km) = (0.0, 0.0, 0.0);
    for c in coords {
        let i = at(std::array::from_fn(|a| c[a] - lo[a]));
        w_sum += km[i];
        moran += z[i] * kz[i];
        z2_km += z[i] * z[i] * km[i];
    }
    (w_sum, moran, 2.0 * (z2_km - moran))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::moran_geary_sums;

    #[test]
    fn fast_lengths_have_small_factors() {
        assert_eq!([1, 7, 11, 13, 49, 97].map(fast_length), [1, 8, 12, 15, 50, 100]);
    }

    /// Moran's I and Geary's C from the three sums.
    fn features(n: usize, d: &[f64], (w, moran, geary): (f64, f64, f64)) -> (f64, f64) {
        let ss: f64 = d.iter().map(|v| v * v).sum();
        let n = n as f64;
        (n * moran / (w * ss), (n - 1.0) * geary / (2.0 * w * ss))
    }

    #[test]
    fn the_fft_sums_equal_the_direct_sums_up_to_4000_voxels() {
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        // Irregular ROIs in boxes of several shapes, anisotropic voxels; intensities a smooth
        // field plus noise (spatially correlated, so Moran's I is far from zero) or noise alone.
        for (case, (dims, spacing, fill)) in [
            ([7, 5, 3], [0.8, 0.8, 3.0], 0.7),
            ([12, 11, 6], [1.0, 1.0, 1.0], 0.6),
            ([20, 17, 9], [0.98, 0.98, 3.0], 0.8),
            ([24, 24, 10], [2.0, 2.0, 2.0], 0.65),
        ]
        .into_iter()
        .enumerate()
        {
            for smooth in [true, false] {
                let mut coords = Vec::new();
                let mut values = Vec::new();
                for k in 0..dims[2] {
                    for j in 0..dims[1] {
                        for i in 0..dims[0] {
                            if (next() % 1000) as f64 / 1000.0 < fill {
                                coords.push([i + 3, j + 1, k + 2]);
                                let noise = (next() % 10_000) as f64 / 100.0;
                                let field = if smooth { 40.0 * (i as f64 * 0.4).sin() + 7.0 * k as f64 } else { 0.0 };
                                values.push(100.0 + field + noise);
                            }
                        }
                    }
                }
                assert!(coords.len() <= 4000);
                let mu = values.iter().sum::<f64>() / values.len() as f64;
                let d: Vec<f64> = values.iter().map(|v| v - mu).collect();
                let direct = moran_geary_sums(&coords, &d, spacing);
                let fft = moran_geary_sums_fft(&coords, &d, spacing);
                let (i0, c0) = features(coords.len(), &d, direct);
                let (i1, c1) = features(coords.len(), &d, fft);
                for (what, a, b) in [("Moran's I", i0, i1), ("Geary's C", c0, c1), ("weight sum", direct.0, fft.0)] {
                    assert!(
                        (a - b).abs() <= 1e-9 * a.abs(),
                        "case {case} smooth {smooth} ({} voxels): {what} direct {a}, FFT {b}",
                        coords.len()
                    );
                }
            }
        }
    }
}
