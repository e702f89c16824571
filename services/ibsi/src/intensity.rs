//! Features of the intensity distribution (IBSI 1, §3.2-3.5): local intensity peaks,
//! intensity statistics (on the intensities), the intensity histogram (on the grey levels) and
//! the intensity-volume histogram.
//!
//! Moments are population moments (1/N); kurtosis is excess kurtosis; percentiles interpolate
//! linearly between order statistics (NumPy's default), as the IBSI reference implementations
//! do.

use crate::roi::Roi;
use crate::Features;
use serde::{Deserialize, Serialize};

/// Percentile `p` (0..1) of sorted values, linear between order statistics.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    percentile_of(sorted.len(), |k| sorted[k], p)
}

/// Percentile `p` (0..1) of `n` values whose `k`-th smallest is `order(k)`, linear between
/// order statistics.
fn percentile_of(n: usize, order: impl Fn(usize) -> f64, p: f64) -> f64 {
    let pos = p * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    order(lo) + (pos - lo as f64) * (order(hi) - order(lo))
}

/// The percentiles the distribution features use.
const QUANTILES: [f64; 5] = [0.10, 0.25, 0.5, 0.75, 0.90];

/// Order statistics of a distribution: minimum, the [`QUANTILES`] and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Order {
    min: f64,
    quantiles: [f64; 5],
    max: f64,
}

impl Order {
    /// From values in ascending order.
    fn of_sorted(sorted: &[f64]) -> Order {
        let quantiles = QUANTILES.map(|p| percentile(sorted, p));
        Order { min: sorted[0], quantiles, max: sorted[sorted.len() - 1] }
    }

    /// From values in any order, which are permuted: only the order statistics the
    /// percentiles read are put in place (repeated selection, linear time), not a full sort.
    fn of_unsorted(values: &mut [f64]) -> Order {
        let n = values.len();
        let mut ranks: Vec<usize> = vec![0, n - 1];
        for p in QUANTILES {
            let lo = (p * (n - 1) as f64).floor() as usize;
            ranks.extend([lo, (lo + 1).min(n - 1)]);
        }
        ranks.sort_unstable();
        ranks.dedup();
        select_ranks(values, &ranks);
        let quantiles = QUANTILES.map(|p| percentile_of(n, |k| values[k], p));
        Order { min: values[0], quantiles, max: values[n - 1] }
    }
}

/// Permute `values` so that `values[r]` is its `r`-th smallest for every `r` in `ranks`
/// (ascending, in range): select the middle rank, then recurse on each side of it.
fn select_ranks(values: &mut [f64], ranks: &[usize]) {
    let Some(&mid) = ranks.get(ranks.len() / 2) else { return };
    values.select_nth_unstable_by(mid, f64::total_cmp);
    let (left, right) = values.split_at_mut(mid);
    select_ranks(left, &ranks[..ranks.len() / 2]);
    let above: Vec<usize> = ranks[ranks.len() / 2 + 1..].iter().map(|r| r - mid - 1).collect();
    select_ranks(&mut right[1..], &above);
}

/// The features intensity statistics and the intensity histogram share, under `prefix`:
/// mean, var, skew, kurt, median, min, p10, p90, max, iqr, range, mad, rmad, medad, cov, qcod,
/// of `values` (in any order) with order statistics `order`.
fn distribution(prefix: &str, values: &[f64], order: Order, out: &mut Features) {
    let n = values.len() as f64;
    let Order { min, quantiles: [p10, p25, median, p75, p90], max } = order;
    // Two passes: the mean and the robust subset's mean (the values from p10 to p90, ends
    // included), then every sum of deviations from them.
    let robust = |v: f64| (p10..=p90).contains(&v);
    let (mut total, mut robust_sum, mut robust_n) = (0.0, 0.0, 0usize);
    for &v in values {
        total += v;
        if robust(v) {
            robust_sum += v;
            robust_n += 1;
        }
    }
    let mean = total / n;
    let robust_mean = robust_sum / robust_n as f64;
    let (mut m2, mut m3, mut m4, mut mad, mut medad, mut rmad) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &v in values {
        let d = v - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
        mad += d.abs();
        medad += (v - median).abs();
        if robust(v) {
            rmad += (v - robust_mean).abs();
        }
    }
    let var = m2 / n;
    let (m3, m4) = (m3 / n, m4 / n);
    let mut put = |name: &str, v: f64| out.push((format!("{prefix}_{name}"), v));
    put("mean", mean);
    put("var", var);
    // Skewness and kurtosis of a constant ROI are 0 (IBSI's convention).
    put("skew", if var > 0.0 { m3 / var.powf(1.5) } else { 0.0 });
    put("kurt", if var > 0.0 { m4 / (var * var) - 3.0 } else { 0.0 });
    put("median", median);
    put("min", min);
    put("p10", p10);
    put("p90", p90);
    put("max", max);
    put("iqr", p75 - p25);
    put("range", max - min);
    put("mad", mad / n);
    put("rmad", rmad / robust_n as f64);
    put("medad", medad / n);
    put("cov", var.sqrt() / mean);
    put("qcod", (p75 - p25) / (p75 + p25));
}

/// Intensity statistics (`stat_*`, IBSI 3.3) of the ROI's intensities: the shared distribution
/// features plus energy `Σ x²` (`stat_energy`) and root mean square (`stat_rms`).
pub fn statistics(roi: &Roi, out: &mut Features) {
    let mut x = roi.intensities();
    let order = Order::of_unsorted(&mut x);
    distribution("stat", &x, order, out);
    let energy: f64 = x.iter().map(|v| v * v).sum();
    out.push(("stat_energy".into(), energy));
    out.push(("stat_rms".into(), (energy / x.len() as f64).sqrt()));
}

/// Intensity histogram (`ih_*`, IBSI 3.4) of the grey levels: the shared distribution features
/// plus the mode (the most common level; on a tie the one closest to the mean level, then the
/// lower), entropy `-Σ p log2 p`,
/// uniformity `Σ p²`, and the largest and smallest histogram gradients with their levels (the
/// gradient by central differences over levels 1..=Ng, one-sided at the ends).
pub fn histogram(roi: &Roi, out: &mut Features) {
    let count = level_counts(roi);
    // The levels in ascending order, from their counts.
    let mut values = Vec::with_capacity(roi.padded_voxels.len());
    for (l, &c) in count.iter().enumerate() {
        values.resize(values.len() + c as usize, l as f64);
    }
    distribution("ih", &values, Order::of_sorted(&values), out);
    let ng = roi.ng as usize;
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let top = count.iter().copied().fold(0.0, f64::max);
    let mode = (1..=ng)
        .filter(|&l| count[l] == top)
        .fold(None::<usize>, |best, l| match best {
            Some(b) if (b as f64 - mean).abs() <= (l as f64 - mean).abs() => Some(b),
            _ => Some(l),
        })
        .expect("the ROI has a level");
    out.push(("ih_mode".into(), mode as f64));
    let p: Vec<f64> = count.iter().map(|c| c / n).collect();
    out.push(("ih_entropy".into(), -p.iter().filter(|&&v| v > 0.0).map(|v| v * v.log2()).sum::<f64>()));
    out.push(("ih_uniformity".into(), p.iter().map(|v| v * v).sum()));
    let gradient = |l: usize| -> f64 {
        if ng == 1 {
            0.0
        } else if l == 1 {
            count[2] - count[1]
        } else if l == ng {
            count[ng] - count[ng - 1]
        } else {
            (count[l + 1] - count[l - 1]) / 2.0
        }
    };
    let (mut gmax, mut lmax, mut gmin, mut lmin) = (f64::NEG_INFINITY, 1, f64::INFINITY, 1);
    for l in 1..=ng {
        let g = gradient(l);
        if g > gmax {
            (gmax, lmax) = (g, l);
        }
        if g < gmin {
            (gmin, lmin) = (g, l);
        }
    }
    out.push(("ih_max_grad".into(), gmax));
    out.push(("ih_max_grad_g".into(), lmax as f64));
    out.push(("ih_min_grad".into(), gmin));
    out.push(("ih_min_grad_g".into(), lmin as f64));
}

/// Voxels per grey level, index 0 (no ROI voxel has it) to Ng.
fn level_counts(roi: &Roi) -> Vec<f64> {
    let mut count = vec![0.0f64; roi.ng as usize + 1];
    for &p in &roi.padded_voxels {
        count[roi.padded[p] as usize] += 1.0;
    }
    count
}

/// How the intensity-volume histogram discretises intensities (IBSI 1, §3.5: its own
/// discretisation, not the texture grey levels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum IvhDiscretisation {
    /// The intensities themselves, every whole number from the lower to the upper bound a level
    /// (for images with whole-number intensities such as CT).
    None,
    /// Bins of `width` from `lower` (default: the re-segmentation range's lower bound, else the
    /// ROI minimum); a level's intensity is its bin centre.
    FixedBinSize {
        /// Bin width, intensity units.
        width: f64,
        /// Lower bound of the first bin, intensity units.
        #[serde(default)]
        lower: Option<f64>,
    },
    /// `bins` bins between the ROI's minimum and maximum; levels are reported as 1..=bins.
    FixedBinNumber {
        /// Number of bins.
        bins: u32,
    },
}

/// The most levels an intensity-volume histogram may have (a 1 HU histogram over -1000..3000
/// needs 4,001).
pub const MAX_IVH_LEVELS: usize = 100_000;

impl IvhDiscretisation {
    /// IBSI's recommendation for `values`: the intensities themselves when they are whole
    /// numbers (spanning at most [`MAX_IVH_LEVELS`]), else a fixed bin number of 1,000.
    pub fn default_for(values: &[f64]) -> IvhDiscretisation {
        let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if values.iter().all(|v| v.fract() == 0.0) && max - min < MAX_IVH_LEVELS as f64 {
            IvhDiscretisation::None
        } else {
            IvhDiscretisation::FixedBinNumber { bins: 1000 }
        }
    }
}

/// Intensity-volume histogram (`ivh_*`, IBSI 3.5) of the ROI's intensities under `ivh` (IBSI's
/// default when `None`), with the re-segmentation `range` (lower, upper), if any, bounding the
/// levels. Levels `g = 1..=L` stand for intensities `v_g` (raw: `lower + g - 1`; fixed bin size:
/// bin centres; fixed bin number: `g`); fractional level `γ = (g - 1) / (L - 1)`, volume
/// fraction `ν(g)` = share of voxels at level g or above. `V_x` is ν at the first level with
/// `γ ≥ x`; `I_x` the intensity of the first level with `ν ≤ x` (past the last level when
/// none). Reported: V10, V90, I10, I90 and the two differences. (The area under the curve is
/// not standardised and not reported.) Nothing is reported, and the reason returned, when the
/// discretisation does not fit the intensities (raw levels of non-integer intensities, or more
/// than [`MAX_IVH_LEVELS`] levels).
pub fn intensity_volume_histogram(
    roi: &Roi,
    ivh: Option<IvhDiscretisation>,
    range: [Option<f64>; 2],
    out: &mut Features,
) -> Result<(), String> {
    let values = roi.intensities();
    let ivh = ivh.unwrap_or_else(|| IvhDiscretisation::default_for(&values));
    let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (range[0].unwrap_or(min), range[1].unwrap_or(max));
    // Level of each voxel (1-based), the number of levels, and level g's intensity.
    type Levels = (Vec<usize>, usize, Box<dyn Fn(usize) -> f64>);
    let (levels, count, intensity): Levels = match ivh {
        IvhDiscretisation::None => {
            if let Some(v) = values.iter().find(|v| v.fract() != 0.0) {
                return Err(format!("intensity {v} is not a whole number; the IVH needs a discretisation"));
            }
            let n = (hi - lo + 1.0).max(1.0);
            if n > MAX_IVH_LEVELS as f64 {
                return Err(format!("{n} IVH levels (at most {MAX_IVH_LEVELS})"));
            }
            let levels = values.iter().map(|&v| (v - lo + 1.0).clamp(1.0, n) as usize).collect();
            (levels, n as usize, Box::new(move |g| lo + g as f64 - 1.0))
        }
        IvhDiscretisation::FixedBinSize { width, lower } => {
            let lower = lower.unwrap_or(lo);
            let n = ((hi - lower) / width).ceil().max(0.0) + 1.0;
            if !(width > 0.0 && n.is_finite()) || n > MAX_IVH_LEVELS as f64 {
                return Err(format!("IVH bins of {width} from {lower} to {hi}"));
            }
            let levels = values.iter().map(|&v| (((v - lower) / width).floor() + 1.0).clamp(1.0, n) as usize).collect();
            (levels, n as usize, Box::new(move |g| lower + (g as f64 - 0.5) * width))
        }
        IvhDiscretisation::FixedBinNumber { bins } => {
            if bins < 2 || bins as usize > MAX_IVH_LEVELS {
                return Err(format!("{bins} IVH bins"));
            }
            let nb = f64::from(bins);
            let levels = values
                .iter()
                .map(|&v| {
                    let g = if max > min { (nb * (v - min) / (max - min)).floor() + 1.0 } else { 1.0 };
                    g.clamp(1.0, nb) as usize
                })
                .collect();
            (levels, bins as usize, Box::new(|g| g as f64))
        }
    };
    let mut at_least = vec![0usize; count + 2];
    for &g in &levels {
        at_least[g] += 1;
    }
    for g in (1..=count).rev() {
        at_least[g] += at_least[g + 1];
    }
    let n = values.len() as f64;
    let nu = |g: usize| at_least[g] as f64 / n;
    let gamma = |g: usize| if count > 1 { (g - 1) as f64 / (count - 1) as f64 } else { 0.0 };
    let v_at = |x: f64| (1..=count).find(|&g| gamma(g) >= x).map_or(0.0, nu);
    let i_at = |x: f64| (1..=count).find(|&g| nu(g) <= x).map_or_else(|| intensity(count + 1), &intensity);
    let (v10, v90, i10, i90) = (v_at(0.1), v_at(0.9), i_at(0.1), i_at(0.9));
    for (name, v) in [
        ("ivh_v10", v10),
        ("ivh_v90", v90),
        ("ivh_i10", i10),
        ("ivh_i90", i90),
        ("ivh_diff_v10_v90", v10 - v90),
        ("ivh_diff_i10_i90", i10 - i90),
    ] {
        out.push((name.into(), v));
    }
    Ok(())
}

/// Voxels of one x-row whose sphere sums [`local_intensity`] accumulates together.
const LANES: usize = 16;

/// The sphere rows around the voxels of one x-row: prefix-sum windows, one per block of
/// [`LANES`] voxels, each `len` long from `start` (block 0) and `LANES` further per block,
/// and the window offsets `(ahead, behind)` of each sphere row's ends.
struct SphereRows<'a> {
    prefix: &'a [f64],
    start: usize,
    len: usize,
    ends: &'a [(usize, usize)],
}

impl SphereRows<'_> {
    /// The sphere sums `Σ P[ahead] - P[behind]` of the voxels, [`LANES`] at a time: the sums
    /// stay in registers across the rows. With `avx2` (the CPU has it) the same code is built
    /// for AVX2, four lanes an instruction instead of two; the additions and their order are
    /// the same, so the sums are bit-identical.
    fn sum_into(&self, sums: &mut [f64], avx2: bool) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `avx2` is true only when the CPU reports AVX2 (`has_avx2`).
            return unsafe { self.sum_into_avx2(sums) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = avx2; // (one build only)
        self.sum_into_portable(sums)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn sum_into_avx2(&self, sums: &mut [f64]) {
        self.sum_into_portable(sums)
    }

    #[inline(always)]
    fn sum_into_portable(&self, sums: &mut [f64]) {
        for (block, out) in sums.chunks_exact_mut(LANES).enumerate() {
            let window = &self.prefix[self.start + block * LANES..][..self.len];
            let mut acc = [0.0f64; LANES];
            for &(ahead, behind) in self.ends {
                let (ahead, behind) = (&window[ahead..ahead + LANES], &window[behind..behind + LANES]);
                for k in 0..LANES {
                    acc[k] += ahead[k] - behind[k];
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

/// Whether the CPU has AVX2 (the standard library caches the answer).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Local intensity peaks (IBSI 3.2): the mean intensity of every image voxel (inside the ROI or
/// not) whose centre lies within a sphere of 1 cm³ (radius 6.2 mm) around a voxel.
/// `loc_peak_loc`: around the ROI's brightest voxel (the highest such mean when several tie);
/// `loc_peak_glob`: the highest such mean around any ROI voxel.
///
/// The sphere is cut into rows along x. Every row near the ROI gets prefix sums, padded with the
/// row's first and last prefix so that a run clipped by the image's edge needs no branch (and
/// rows off the image are all 0, so they need none either); the sum of the run of half-width w
/// at x is then `P[x + w + 1] - P[x - w]`, and the sphere's sum at a voxel is the sum of about
/// 120 such differences (at 1 mm), added for 16 voxels of an x-row at a time in registers
/// (with an AVX2 build where the CPU has it). The voxel counts come the same way from the
/// clipped run lengths.
pub fn local_intensity(roi: &Roi, out: &mut Features) {
    let (local, global) = local_peaks(roi, has_avx2());
    out.push(("loc_peak_loc".into(), local));
    out.push(("loc_peak_glob".into(), global));
}

/// [`local_intensity`]'s two peaks (local, global), the sphere sums built for AVX2 or not.
fn local_peaks(roi: &Roi, avx2: bool) -> (f64, f64) {
    let radius = 10.0 * (3.0 / (4.0 * std::f64::consts::PI)).cbrt();
    let [nx, ny, nz] = roi.dims;
    let sp = roi.spacing_mm;
    // Rows of the sphere: (dy, dz, half-width in x).
    let (ry, rz) = ((radius / sp[1]).floor() as i64, (radius / sp[2]).floor() as i64);
    let mut rows = Vec::new();
    for dz in -rz..=rz {
        for dy in -ry..=ry {
            let left = radius * radius - (dz as f64 * sp[2]).powi(2) - (dy as f64 * sp[1]).powi(2);
            if left >= 0.0 {
                rows.push((dy, dz, (left.sqrt() / sp[0]).floor() as usize));
            }
        }
    }
    let widest = rows.iter().map(|r| r.2).max().unwrap_or(0);
    // The ROI's bounding box.
    let voxels = roi.voxels();
    let (lo, hi) = roi.bounding_box();
    let bx = hi[0] - lo[0] + 1;
    let (ry, rz) = (ry as usize, rz as usize);
    // Prefix rows for every row the spheres reach, y from lo[1] - ry and z from lo[2] - rz
    // (rows off the image stay 0, so they add nothing). Entry k of a row is the sum of the
    // row's intensities at x < k - widest (clipped to the row).
    let stride = nx + 2 * widest + 1;
    let (wy, wz) = (hi[1] - lo[1] + 1 + 2 * ry, hi[2] - lo[2] + 1 + 2 * rz);
    let row_of = |y: usize, z: usize| ((z + rz - lo[2]) * wy + (y + ry - lo[1])) * stride;
    // (LANES spare entries at the end: the last block of a row reads past the row.)
    let mut prefix = vec![0.0f64; wz * wy * stride + LANES];
    for z in lo[2].saturating_sub(rz)..=(hi[2] + rz).min(nz - 1) {
        for y in lo[1].saturating_sub(ry)..=(hi[1] + ry).min(ny - 1) {
            let row = &roi.image[roi.index(0, y, z)..][..nx];
            let p = &mut prefix[row_of(y, z)..][..stride];
            let mut acc = 0.0;
            for x in 0..nx {
                acc += row[x];
                p[widest + x + 1] = acc;
            }
            p[widest + nx + 1..].iter_mut().for_each(|v| *v = acc);
        }
    }
    // Each sphere row's prefix row, relative to the centre's (never before the first row).
    let steps: Vec<(isize, usize)> =
        rows.iter().map(|&(dy, dz, w)| ((dz as isize * wy as isize + dy as isize) * stride as isize, w)).collect();
    // The same as offsets of both ends into a window starting `reach` entries before the centre.
    let reach = steps.iter().map(|&(step, w)| w as isize - step).max().unwrap_or(0) as usize;
    let ends: Vec<(usize, usize)> = steps
        .iter()
        .map(|&(step, w)| {
            ((reach as isize + step + w as isize + 1) as usize, (reach as isize + step - w as isize) as usize)
        })
        .collect();
    let window_len = ends.iter().map(|e| e.0).max().unwrap_or(0) + LANES;
    // Voxels in the run of half-width w at x (x from lo[0]), clipped to the row.
    let counts: Vec<Vec<f64>> = (0..=widest)
        .map(|w| (lo[0]..=hi[0]).map(|x| ((x + w).min(nx - 1) - x.saturating_sub(w) + 1) as f64).collect())
        .collect();
    // The counts are the same for every x-row whose sphere stays inside the image in y and z.
    let mut full = vec![0.0f64; bx];
    for &(_, _, w) in &rows {
        full.iter_mut().zip(&counts[w]).for_each(|(a, v)| *a += v);
    }
    let (mut local, mut global) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let brightest = voxels.iter().map(|&i| roi.image[i]).fold(f64::NEG_INFINITY, f64::max);
    let (mut acc, mut cnt) = (vec![0.0f64; bx.next_multiple_of(LANES)], vec![0.0f64; bx]);
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            let row_start = roi.index(0, y, z);
            let Some(first) = (lo[0]..=hi[0]).find(|&x| roi.mask[row_start + x]) else { continue };
            let last = (lo[0]..=hi[0]).rev().find(|&x| roi.mask[row_start + x]).expect("found one");
            let span = first..last + 1;
            // P[x + w + 1] - P[x - w], both shifted by `widest`, summed over the sphere's rows.
            // Lanes past the span read the next prefix row and are not used.
            let windows = SphereRows {
                prefix: &prefix,
                start: row_of(y, z) + first + widest - reach,
                len: window_len,
                ends: &ends,
            };
            windows.sum_into(&mut acc[..span.len().next_multiple_of(LANES)], avx2);
            // The sphere's rows reach y ± ry and z ± rz.
            let inside = y >= ry && y + ry < ny && z >= rz && z + rz < nz;
            let counts_here = if inside {
                &full[first - lo[0]..]
            } else {
                let cnt = &mut cnt[..span.len()];
                cnt.iter_mut().for_each(|v| *v = 0.0);
                for &(dy, dz, w) in &rows {
                    let (yy, zz) = (y as i64 + dy, z as i64 + dz);
                    if yy >= 0 && yy < ny as i64 && zz >= 0 && zz < nz as i64 {
                        cnt.iter_mut().zip(&counts[w][first - lo[0]..]).for_each(|(a, v)| *a += v);
                    }
                }
                &cnt[..]
            };
            for (k, x) in span.enumerate() {
                if roi.mask[row_start + x] {
                    let mean = acc[k] / counts_here[k];
                    global = global.max(mean);
                    if roi.image[row_start + x] == brightest {
                        local = local.max(mean);
                    }
                }
            }
        }
    }
    (local, global)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local intensity peaks by direct summation: every image voxel within 6.2 mm of each ROI
    /// voxel's centre.
    fn peaks_directly(roi: &Roi) -> (f64, f64) {
        let radius = 10.0 * (3.0 / (4.0 * std::f64::consts::PI)).cbrt();
        let [nx, ny, nz] = roi.dims;
        let sp = roi.spacing_mm;
        let brightest = roi.intensities().into_iter().fold(f64::NEG_INFINITY, f64::max);
        let (mut local, mut global) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for &i in roi.voxels() {
            let c = roi.coords(i);
            let (mut sum, mut count) = (0.0, 0.0);
            for z in 0..nz {
                for y in 0..ny {
                    for x in 0..nx {
                        let d2: f64 = [x, y, z]
                            .iter()
                            .zip(c)
                            .zip(sp)
                            .map(|((&a, b), s)| ((a as f64 - b as f64) * s).powi(2))
                            .sum();
                        if d2 <= radius * radius {
                            sum += roi.image[roi.index(x, y, z)];
                            count += 1.0;
                        }
                    }
                }
            }
            global = global.max(sum / count);
            if roi.image[i] == brightest {
                local = local.max(sum / count);
            }
        }
        (local, global)
    }

    #[test]
    fn local_intensity_peaks_equal_direct_summation() {
        let mut next = crate::xorshift(0x10CA_1000);
        // Rows of 37 voxels span several blocks of LANES; a slope along x puts the peaks in the
        // last block or the first.
        let cases = [
            ([1.0, 1.0, 1.0], [13, 11, 7], 0.0),
            ([0.9, 1.7, 2.3], [13, 11, 7], 0.0),
            ([2.1, 0.6, 1.2], [13, 11, 7], 0.0),
            ([1.0, 1.0, 1.0], [37, 6, 5], 4.0),
            ([0.7, 1.1, 1.9], [37, 6, 5], -4.0),
        ];
        for (round, (sp, dims, slope)) in cases.into_iter().enumerate() {
            let n: usize = dims.iter().product();
            // Ties at the top, so several voxels hold the brightest intensity.
            let image: Vec<f64> = (0..n).map(|i| (next() % 50) as f64 * 1.5 + slope * (i % dims[0]) as f64).collect();
            // ROI voxels up to the image's edges, where spheres are clipped.
            let mask: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(4)).collect();
            let roi = Roi::new(dims, sp, image, mask, crate::roi::Discretisation::FixedBinNumber { bins: 8 }).unwrap();
            let mut out = Features::new();
            local_intensity(&roi, &mut out);
            let (local, global) = peaks_directly(&roi);
            assert_eq!(out[0].0, "loc_peak_loc");
            assert!((out[0].1 - local).abs() < 1e-9 * local.abs(), "round {round}: {} vs {local}", out[0].1);
            assert!((out[1].1 - global).abs() < 1e-9 * global.abs(), "round {round}: {} vs {global}", out[1].1);
            // Both builds of the sphere sums, where the CPU has AVX2: the same bits.
            let portable = local_peaks(&roi, false);
            assert_eq!((out[0].1, out[1].1), portable, "round {round}");
            if has_avx2() {
                assert_eq!(local_peaks(&roi, true), portable, "round {round}");
            }
        }
    }

    #[test]
    fn selected_order_statistics_equal_the_sorted_ones() {
        let mut next = crate::xorshift(0x5eed_0001);
        for n in [1usize, 2, 3, 4, 7, 10, 11, 100, 1001, 4096] {
            // Few distinct values, so ties straddle the selected ranks.
            let values: Vec<f64> = (0..n).map(|_| (next() % 37) as f64 * 0.5 - 4.0).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let mut permuted = values.clone();
            assert_eq!(Order::of_unsorted(&mut permuted), Order::of_sorted(&sorted), "n = {n}");
            permuted.sort_unstable_by(f64::total_cmp);
            assert_eq!(permuted, sorted, "selection only permutes");
        }
    }
}
