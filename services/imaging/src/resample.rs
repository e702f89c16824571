//! Resampling onto other grids, and cropping.
//!
//! [`IsotropicGrid`] is the resampling radiomics uses, IBSI 1's (section 2.4): the new grid has
//! the same centre and orientation as the whole old image and `ceil(n s / s')` voxels per axis;
//! sample positions come from whole-number arithmetic, values are trilinear, masks are
//! interpolated the same way and kept at >= 0.5, and intensities can be rounded to whole
//! numbers. Any region of the new grid can be computed alone with the same values, so callers
//! crop after choosing the grid, never before.
//!
//! [`resample`] and [`resample_mask`] sample onto an arbitrary grid of the same orientation
//! (a mask onto its image's grid, say): values are trilinear inside the old grid and clamped to
//! its edge voxels outside it; masks are kept where the interpolated value is >= 0.5 and are
//! empty beyond half a voxel outside their grid.

use crate::{Geometry, Volume};

/// Trilinear value at fractional index `x` (clamped to the grid).
pub fn trilinear(v: &Volume<f32>, x: [f64; 3]) -> f64 {
    let d = v.geometry.dims;
    let mut base = [0usize; 3];
    let mut t = [0.0f64; 3];
    for a in 0..3 {
        let c = x[a].clamp(0.0, (d[a] - 1) as f64);
        let f = (c.floor() as usize).min(d[a].saturating_sub(2));
        base[a] = f;
        t[a] = if d[a] > 1 { c - f as f64 } else { 0.0 };
    }
    let mut acc = 0.0;
    for dz in 0..2 {
        let (k, wz) = (if d[2] > 1 { base[2] + dz } else { 0 }, if dz == 0 { 1.0 - t[2] } else { t[2] });
        for dy in 0..2 {
            let (j, wy) = (if d[1] > 1 { base[1] + dy } else { 0 }, if dy == 0 { 1.0 - t[1] } else { t[1] });
            for dx in 0..2 {
                let (i, wx) = (if d[0] > 1 { base[0] + dx } else { 0 }, if dx == 0 { 1.0 - t[0] } else { t[0] });
                let w = wx * wy * wz;
                if w != 0.0 {
                    acc += w * f64::from(v.data[v.geometry.index(i, j, k)]);
                }
            }
        }
    }
    acc
}

/// Where one axis of an [`IsotropicGrid`] samples the old grid: for new index `i`, the old
/// neighbours `lo` and `hi` (equal on a one-voxel axis) and the weight `t` of `hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AxisSample {
    lo: usize,
    hi: usize,
    t: f64,
    /// Inside `[0, n - 1]`: masks are zero outside (scipy's `constant` mode); images take the
    /// edge voxel (`nearest`).
    inside: bool,
}

/// An isotropic grid laid over an image the way IBSI 1 (section 2.4) lays it: the same centre
/// and orientation, `ceil(n s / s')` voxels per axis. Sample positions are computed per axis
/// from whole numbers, `x = ((n - 1) s + (2i + 1 - n') s') / (2 s)` in old voxel indices, so a
/// sample exactly half-way between two old voxels stays exactly half-way (for spacings that are
/// binary fractions, such as 3 mm to 2 mm); nothing accumulates from step to step.
///
/// Values are trilinear, computed separably (x, then y, then z, each `a + t (b - a)`), so a
/// voxel's value does not depend on the region it is computed in: [`IsotropicGrid::image`] on a
/// small region gives the same bits as on the whole grid.
#[derive(Debug, Clone)]
pub struct IsotropicGrid {
    /// The grid being sampled.
    pub from: Geometry,
    /// The whole new grid.
    pub grid: Geometry,
    axes: [Vec<AxisSample>; 3],
}

/// An inclusive index box `[lo, hi]` per axis.
pub type IndexBox = [[usize; 2]; 3];

/// Mean, minimum and maximum of an image's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntensitySummary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl IntensitySummary {
    /// The summary of `values` (NaN entries when there are none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> IntensitySummary {
        let (mut n, mut sum, mut min, mut max) = (0usize, 0.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return IntensitySummary { mean: f64::NAN, min: f64::NAN, max: f64::NAN };
        }
        IntensitySummary { mean: sum / n as f64, min, max }
    }
}

/// How an interpolated mask becomes a mask again: kept where the interpolated value is at least
/// `threshold`. Values within `1e-9` below it count as equal: sample positions of spacings that
/// are not binary fractions (0.98 mm, say) carry rounding error, and IBSI keeps ties.
fn keep(v: f64, threshold: f64) -> bool {
    v >= threshold - 1e-9
}

/// An interpolated value as an image stores it: rounded to a whole number when `round` is set
/// ([`round_intensity`]), then as f32.
pub fn stored_intensity(v: f64, round: bool) -> f32 {
    (if round { round_intensity(v) } else { v }) as f32
}

/// The value IBSI's rounding gives: the nearest whole number, ties to even (numpy's `round`,
/// which MIRP uses). Written as the addition of 1.5 x 2^52 and back, which rounds in the FPU's
/// default mode (ties to even) and vectorises; `f64::round_ties_even` is a library call on
/// baseline x86-64. Values of 2^51 and more are whole numbers already.
pub fn round_intensity(v: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    if v.abs() < 2_251_799_813_685_248.0 {
        (v + SHIFT) - SHIFT
    } else {
        v
    }
}

impl IsotropicGrid {
    /// The IBSI grid of `spacing_mm` over `from`.
    pub fn new(from: &Geometry, spacing_mm: f64) -> IsotropicGrid {
        let dims: [usize; 3] = std::array::from_fn(|a| {
            // ceil(n s / s'), with products of whole numbers and spacings kept exact where they
            // can be: 10 x 0.8 / 2 must give 4, not 4.000000000000001.
            let v = from.dims[a] as f64 * from.spacing_mm[a] / spacing_mm;
            let r = v.round();
            (if (v - r).abs() < 1e-9 * v.max(1.0) { r } else { v.ceil() }).max(1.0) as usize
        });
        let axes: [Vec<AxisSample>; 3] = std::array::from_fn(|a| {
            let (n, s, m) = (from.dims[a], from.spacing_mm[a], dims[a]);
            (0..m)
                .map(|i| {
                    let x = ((n as f64 - 1.0) * s + (2.0 * i as f64 + 1.0 - m as f64) * spacing_mm) / (2.0 * s);
                    let inside = x >= -1e-9 && x <= (n - 1) as f64 + 1e-9;
                    let c = x.clamp(0.0, (n - 1) as f64);
                    if n == 1 {
                        return AxisSample { lo: 0, hi: 0, t: 0.0, inside };
                    }
                    let lo = (c.floor() as usize).min(n - 2);
                    AxisSample { lo, hi: lo + 1, t: c - lo as f64, inside }
                })
                .collect()
        });
        let x0: [f64; 3] = std::array::from_fn(|a| {
            let (n, s, m) = (from.dims[a], from.spacing_mm[a], dims[a]);
            ((n as f64 - 1.0) * s + (1.0 - m as f64) * spacing_mm) / (2.0 * s)
        });
        let grid = Geometry { dims, spacing_mm: [spacing_mm; 3], origin_mm: from.to_patient(x0), ..from.clone() };
        IsotropicGrid { from: from.clone(), grid, axes }
    }

    /// The whole new grid as a box.
    pub fn whole(&self) -> IndexBox {
        std::array::from_fn(|a| [0, self.grid.dims[a] - 1])
    }

    /// The box of new voxels within `margin_mm` of the old voxels in `old` (clipped to the grid):
    /// every new voxel whose trilinear sample touches `old` lies inside when `margin_mm` is at
    /// least one old voxel.
    pub fn region_around(&self, old: IndexBox, margin_mm: f64) -> IndexBox {
        std::array::from_fn(|a| {
            let (n, s, m, s2) =
                (self.from.dims[a], self.from.spacing_mm[a], self.grid.dims[a], self.grid.spacing_mm[a]);
            // New index of old index x: (m - 1) / 2 + (x - (n - 1) / 2) s / s'.
            let at = |x: f64| (m as f64 - 1.0) / 2.0 + (x - (n as f64 - 1.0) / 2.0) * s / s2;
            let lo = (at(old[a][0] as f64) - margin_mm / s2).floor().max(0.0) as usize;
            let hi = ((at(old[a][1] as f64) + margin_mm / s2).ceil().max(0.0) as usize).min(m - 1);
            [lo.min(hi), hi]
        })
    }

    /// The geometry of `region` of the new grid.
    pub fn region_geometry(&self, region: IndexBox) -> Geometry {
        let dims = std::array::from_fn(|a| region[a][1] - region[a][0] + 1);
        let origin_mm = self.grid.to_patient(std::array::from_fn(|a| region[a][0] as f64));
        Geometry { dims, origin_mm, ..self.grid.clone() }
    }

    /// `v` (on [`IsotropicGrid::from`]) sampled on `region` of the new grid, rounded to whole
    /// numbers when `round` is set.
    pub fn image(&self, v: &Volume<f32>, region: IndexBox, round: bool) -> Volume<f32> {
        let mut data = Vec::with_capacity(self.region_geometry(region).len());
        self.slices(
            |i| f64::from(v.data[i]),
            region,
            false,
            |slice| {
                data.extend(slice.iter().map(|&x| stored_intensity(x, round)));
            },
        );
        Volume { geometry: self.region_geometry(region), data }
    }

    /// Mean, minimum and maximum of `v` sampled on the whole new grid (as [`IsotropicGrid::image`]
    /// gives them), without holding the new grid in memory.
    pub fn image_summary(&self, v: &Volume<f32>, round: bool) -> IntensitySummary {
        // Eight independent lanes, so the sums and comparisons vectorise (this runs over every
        // sample of the whole grid: 23 million for a 256 x 256 x 30 series at 1 mm).
        const LANES: usize = 8;
        let (mut n, mut sum, mut min, mut max) =
            (0usize, [0.0f64; LANES], [f64::INFINITY; LANES], [f64::NEG_INFINITY; LANES]);
        let stored = |x: f64| f64::from(stored_intensity(x, round));
        self.slices(
            |i| f64::from(v.data[i]),
            self.whole(),
            false,
            |slice| {
                let mut chunks = slice.chunks_exact(LANES);
                let mut lane_sum = [0.0f64; LANES];
                for chunk in &mut chunks {
                    for l in 0..LANES {
                        // The value the image would hold: rounded, then stored as f32.
                        let x = stored(chunk[l]);
                        lane_sum[l] += x;
                        min[l] = if x < min[l] { x } else { min[l] };
                        max[l] = if x > max[l] { x } else { max[l] };
                    }
                }
                for (l, &x) in chunks.remainder().iter().enumerate() {
                    let x = stored(x);
                    lane_sum[l] += x;
                    min[l] = min[l].min(x);
                    max[l] = max[l].max(x);
                }
                for l in 0..LANES {
                    sum[l] += lane_sum[l];
                }
                n += slice.len();
            },
        );
        let total: f64 = sum.iter().sum();
        IntensitySummary {
            mean: total / n as f64,
            min: min.iter().fold(f64::INFINITY, |a, &b| a.min(b)),
            max: max.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
        }
    }

    /// `mask` (on [`IsotropicGrid::from`]) on `region` of the new grid: interpolated as a 0/1
    /// image, zero outside the old grid, kept where the value is at least `threshold` (IBSI:
    /// 0.5).
    pub fn mask(&self, mask: &Volume<u8>, region: IndexBox, threshold: f64) -> Volume<u8> {
        let mut data = Vec::with_capacity(self.region_geometry(region).len());
        self.slices(
            |i| f64::from(mask.data[i].min(1)),
            region,
            true,
            |slice| {
                data.extend(slice.iter().map(|&x| u8::from(keep(x, threshold))));
            },
        );
        Volume { geometry: self.region_geometry(region), data }
    }

    /// The separable trilinear samples of `value` (indexed like the old grid) on `region`,
    /// handed to `emit` one new slice (x fastest, then y) at a time. With `zero_outside`,
    /// samples outside the old grid are 0.
    fn slices(&self, value: impl Fn(usize) -> f64, region: IndexBox, zero_outside: bool, mut emit: impl FnMut(&[f64])) {
        let [ax, ay, az] = &self.axes;
        let (xs, ys, zs) =
            (&ax[region[0][0]..=region[0][1]], &ay[region[1][0]..=region[1][1]], &az[region[2][0]..=region[2][1]]);
        let d = self.from.dims;
        // Old rows and slices the region needs.
        let jr = [ys.iter().map(|s| s.lo).min().unwrap_or(0), ys.iter().map(|s| s.hi).max().unwrap_or(0)];
        let kr = [zs.iter().map(|s| s.lo).min().unwrap_or(0), zs.iter().map(|s| s.hi).max().unwrap_or(0)];
        let (nx, ny, nj) = (xs.len(), ys.len(), jr[1] - jr[0] + 1);
        let lerp = |a: f64, b: f64, s: &AxisSample| -> f64 {
            if zero_outside && !s.inside {
                0.0
            } else {
                a + s.t * (b - a)
            }
        };
        // Per old slice: x pass over its rows, then y pass; kept for the slices still needed.
        let mut planes: Vec<Option<Vec<f64>>> = vec![None; kr[1] - kr[0] + 1];
        let mut rows = vec![0.0f64; nj * nx];
        let mut plane_of = |k: usize, planes: &mut Vec<Option<Vec<f64>>>| {
            if planes[k - kr[0]].is_none() {
                for j in jr[0]..=jr[1] {
                    let row = &mut rows[(j - jr[0]) * nx..][..nx];
                    let base = d[0] * (j + d[1] * k);
                    for (out, s) in row.iter_mut().zip(xs) {
                        *out = lerp(value(base + s.lo), value(base + s.hi), s);
                    }
                }
                let mut plane = vec![0.0f64; ny * nx];
                for (y, s) in ys.iter().enumerate() {
                    let (a, b) = (&rows[(s.lo - jr[0]) * nx..][..nx], &rows[(s.hi - jr[0]) * nx..][..nx]);
                    for x in 0..nx {
                        plane[y * nx + x] = lerp(a[x], b[x], s);
                    }
                }
                planes[k - kr[0]] = Some(plane);
            }
        };
        let mut out = vec![0.0f64; ny * nx];
        for (z, s) in zs.iter().enumerate() {
            plane_of(s.lo, &mut planes);
            plane_of(s.hi, &mut planes);
            let (a, b) =
                (planes[s.lo - kr[0]].as_ref().expect("computed"), planes[s.hi - kr[0]].as_ref().expect("computed"));
            if zero_outside && !s.inside {
                out.fill(0.0);
            } else {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    *o = a + s.t * (b - a);
                }
            }
            emit(&out);
            // Old slices below the next sample's lower neighbour are done with.
            if let Some(next) = zs.get(z + 1) {
                for k in kr[0]..next.lo {
                    planes[k - kr[0]] = None;
                }
            }
        }
    }
}

/// Sample `v` at every voxel centre of `onto` (same orientation), trilinearly.
pub fn resample(v: &Volume<f32>, onto: &Geometry) -> Volume<f32> {
    let mut data = Vec::with_capacity(onto.len());
    let index = v.geometry.index_map();
    for k in 0..onto.dims[2] {
        for j in 0..onto.dims[1] {
            for i in 0..onto.dims[0] {
                let x = index.apply(onto.to_patient([i as f64, j as f64, k as f64]));
                data.push(trilinear(v, x) as f32);
            }
        }
    }
    Volume { geometry: onto.clone(), data }
}

/// A mask resampled onto `onto`: interpolated as a 0/1 image and kept where >= 0.5. Unlike
/// image values, a mask is not extended past its grid: points more than half a voxel outside
/// it are background.
pub fn resample_mask(mask: &Volume<u8>, onto: &Geometry) -> Volume<u8> {
    let as_f =
        Volume { geometry: mask.geometry.clone(), data: mask.data.iter().map(|&m| f32::from(m.min(1))).collect() };
    let d = mask.geometry.dims;
    let mut data = Vec::with_capacity(onto.len());
    let index = mask.geometry.index_map();
    for k in 0..onto.dims[2] {
        for j in 0..onto.dims[1] {
            for i in 0..onto.dims[0] {
                let x = index.apply(onto.to_patient([i as f64, j as f64, k as f64]));
                let inside = (0..3).all(|a| x[a] >= -0.5 && x[a] <= d[a] as f64 - 0.5);
                data.push(u8::from(inside && trilinear(&as_f, x) >= 0.5));
            }
        }
    }
    Volume { geometry: onto.clone(), data }
}

/// Inclusive index bounding box `[min, max]` per axis of the non-zero voxels, if any.
pub fn bounding_box(mask: &Volume<u8>) -> Option<[[usize; 2]; 3]> {
    let d = mask.geometry.dims;
    let mut b = [[usize::MAX, 0]; 3];
    let mut any = false;
    for k in 0..d[2] {
        for j in 0..d[1] {
            for i in 0..d[0] {
                if mask.data[mask.geometry.index(i, j, k)] != 0 {
                    any = true;
                    for (a, x) in [i, j, k].into_iter().enumerate() {
                        b[a][0] = b[a][0].min(x);
                        b[a][1] = b[a][1].max(x);
                    }
                }
            }
        }
    }
    any.then_some(b)
}

/// The sub-volume `[min - margin, max + margin]` (clipped to the grid) of `v`.
pub fn crop<T: Copy>(v: &Volume<T>, bbox: [[usize; 2]; 3], margin: usize) -> Volume<T> {
    let d = v.geometry.dims;
    let lo: [usize; 3] = std::array::from_fn(|a| bbox[a][0].saturating_sub(margin));
    let hi: [usize; 3] = std::array::from_fn(|a| (bbox[a][1] + margin).min(d[a] - 1));
    let dims: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a] + 1);
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in lo[2]..=hi[2] {
        for j in lo[1]..=hi[1] {
            for i in lo[0]..=hi[0] {
                data.push(v.data[v.geometry.index(i, j, k)]);
            }
        }
    }
    let origin_mm = v.geometry.to_patient([lo[0] as f64, lo[1] as f64, lo[2] as f64]);
    Volume { geometry: Geometry { dims, origin_mm, ..v.geometry.clone() }, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dims: [usize; 3], spacing_mm: [f64; 3]) -> Geometry {
        Geometry {
            dims,
            spacing_mm,
            origin_mm: [10.0, -5.0, 3.0],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 0.0, -1.0],
            normal: [0.0, 1.0, 0.0],
        }
    }

    #[test]
    fn trilinear_reproduces_a_linear_field_exactly() {
        let g = grid([6, 5, 4], [1.0, 2.0, 3.0]);
        let f = |p: [f64; 3]| 2.0 * p[0] - 0.5 * p[1] + 0.25 * p[2] + 7.0;
        let mut v = Volume::filled(g.clone(), 0.0f32);
        for k in 0..4 {
            for j in 0..5 {
                for i in 0..6 {
                    v.data[g.index(i, j, k)] = f(g.to_patient([i as f64, j as f64, k as f64])) as f32;
                }
            }
        }
        let plan = IsotropicGrid::new(&g, 1.5);
        let iso = plan.grid.clone();
        let r = plan.image(&v, plan.whole(), false);
        // The general resampler samples the same points.
        let direct = resample(&v, &iso);
        for k in 0..iso.dims[2] {
            for j in 0..iso.dims[1] {
                for i in 0..iso.dims[0] {
                    let at = iso.index(i, j, k);
                    assert!((r.data[at] - direct.data[at]).abs() < 1e-4, "{i} {j} {k}");
                    let x = g.to_index(iso.to_patient([i as f64, j as f64, k as f64]));
                    let inside = (0..3).all(|a| x[a] >= -1e-9 && x[a] <= (g.dims[a] - 1) as f64 + 1e-9);
                    if inside {
                        let want = f(iso.to_patient([i as f64, j as f64, k as f64]));
                        assert!((f64::from(r.data[at]) - want).abs() < 1e-3);
                    }
                }
            }
        }
    }

    #[test]
    fn isotropic_grids_keep_the_centre_and_cover_the_extent() {
        let g = grid([10, 7, 3], [0.8, 0.8, 5.0]);
        let iso = IsotropicGrid::new(&g, 2.0).grid;
        // 8 mm -> 4 voxels, 5.6 mm -> 3, 15 mm -> 8 (IBSI: ceil of extent over spacing).
        assert_eq!(iso.dims, [4, 3, 8]);
        let c_old = g.to_patient([4.5, 3.0, 1.0]);
        let c_new = iso.to_patient([1.5, 1.0, 3.5]);
        for a in 0..3 {
            assert!((c_old[a] - c_new[a]).abs() < 1e-9);
        }
        // IBSI configuration D's image: 204 x 201 x 60 voxels of 0.977 x 0.977 x 3 mm gives
        // 100 x 99 x 90 at 2 mm (the reference table's interpolated dimensions).
        let ct = grid([204, 201, 60], [0.977, 0.977, 3.0]);
        assert_eq!(IsotropicGrid::new(&ct, 2.0).grid.dims, [100, 99, 90]);
    }

    #[test]
    fn a_region_holds_the_same_bits_as_the_whole_grid() {
        let g = grid([23, 17, 9], [0.98, 0.98, 3.0]);
        let mut v = Volume::filled(g.clone(), 0.0f32);
        let mut m = Volume::filled(g.clone(), 0u8);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for x in v.data.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *x = (state % 2001) as f32 - 1000.0;
        }
        for k in 2..6 {
            for j in 4..12 {
                for i in 6..15 {
                    m.data[g.index(i, j, k)] = 1;
                }
            }
        }
        let plan = IsotropicGrid::new(&g, 2.0);
        let whole = plan.image(&v, plan.whole(), true);
        let whole_mask = plan.mask(&m, plan.whole(), 0.5);
        let region = plan.region_around([[6, 14], [4, 11], [2, 5]], 4.0);
        let part = plan.image(&v, region, true);
        let part_mask = plan.mask(&m, region, 0.5);
        assert_eq!(part.geometry, plan.region_geometry(region));
        for k in 0..part.geometry.dims[2] {
            for j in 0..part.geometry.dims[1] {
                for i in 0..part.geometry.dims[0] {
                    let w = plan.grid.index(i + region[0][0], j + region[1][0], k + region[2][0]);
                    assert_eq!(part.at(i, j, k).to_bits(), whole.data[w].to_bits());
                    assert_eq!(part_mask.at(i, j, k), whole_mask.data[w]);
                }
            }
        }
        // Every mask voxel of the whole grid lies in the region.
        assert_eq!(part_mask.count_nonzero(), whole_mask.count_nonzero());
        assert!(whole_mask.count_nonzero() > 0);
        // Rounded to whole numbers, and the summary is the whole grid's.
        assert!(whole.data.iter().all(|x| x.fract() == 0.0));
        let want = IntensitySummary::of(whole.data.iter().map(|&x| f64::from(x)));
        let got = plan.image_summary(&v, true);
        assert_eq!((got.min, got.max), (want.min, want.max));
        assert!((got.mean - want.mean).abs() < 1e-9 * want.mean.abs().max(1.0));
    }

    #[test]
    fn rounding_goes_to_the_nearest_even_whole_number_on_ties() {
        for (v, want) in
            [(2.5, 2.0), (3.5, 4.0), (-2.5, -2.0), (-3.5, -4.0), (0.49999, 0.0), (-7.2, -7.0), (1e17, 1e17)]
        {
            assert_eq!(round_intensity(v), want, "{v}");
            assert_eq!(round_intensity(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn half_way_mask_samples_are_kept_exactly() {
        // 3 mm slices on a 2 mm grid: 4 old slices give 6 new ones, at old positions
        // 1.5 + (i - 2.5) 2/3: -1/6, 1/2, 7/6, 11/6, 5/2, 19/6. A mask of slices 0-2 gives
        // exactly 0.5 at 5/2, which IBSI keeps.
        let g = grid([1, 1, 4], [1.0, 1.0, 3.0]);
        let mut m = Volume::filled(g.clone(), 0u8);
        m.data[..3].fill(1);
        let plan = IsotropicGrid::new(&g, 2.0);
        assert_eq!(plan.grid.dims[2], 6);
        let positions: Vec<f64> = plan.axes[2].iter().map(|s| s.lo as f64 + s.t).collect();
        let want = [0.0, 0.5, 7.0 / 6.0, 11.0 / 6.0, 2.5, 3.0]; // clamped to [0, 3]
        for (p, w) in positions.iter().zip(want) {
            assert!((p - w).abs() < 1e-12, "{positions:?}");
        }
        assert_eq!(plan.axes[2][4].t, 0.5, "the tie is exact");
        let r = plan.mask(&m, plan.whole(), 0.5);
        // -1/6 and 19/6 lie outside the old grid (zero); 5/2 is the tie.
        assert_eq!(r.data, [0, 1, 1, 1, 1, 0]);
        assert_eq!(plan.mask(&m, plan.whole(), 0.6).data, [0, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn bounding_box_and_crop() {
        let g = grid([8, 6, 5], [1.0; 3]);
        let mut m = Volume::filled(g.clone(), 0u8);
        m.data[g.index(2, 1, 3)] = 1;
        m.data[g.index(5, 4, 2)] = 1;
        assert_eq!(bounding_box(&m), Some([[2, 5], [1, 4], [2, 3]]));
        assert_eq!(bounding_box(&Volume::filled(g.clone(), 0u8)), None);
        let c = crop(&m, bounding_box(&m).unwrap(), 1);
        // One voxel of margin, clipped at the grid's edges: i 1..=6, j 0..=5, k 1..=4.
        assert_eq!(c.geometry.dims, [6, 6, 4]);
        assert_eq!(c.count_nonzero(), 2);
        // The crop's voxel (1, 1, 2) is the original (2, 1, 3) and sits at the same place.
        assert_eq!(c.at(1, 1, 2), 1);
        assert_eq!(c.geometry.to_patient([1.0, 1.0, 2.0]), g.to_patient([2.0, 1.0, 3.0]));
        // A mask resampled onto its own grid is itself.
        assert_eq!(resample_mask(&m, &g).data, m.data);
        // A full mask covers a shifted grid's voxels up to half a voxel past its edge, no further.
        let full = Volume::filled(g.clone(), 1u8);
        let mut shifted = g.clone();
        shifted.origin_mm = g.to_patient([6.0, 0.0, 0.0]); // i 6, 7 overlap, 8.. lie outside
        let r = resample_mask(&full, &shifted);
        for i in 0..8 {
            assert_eq!(r.at(i, 2, 2), u8::from(i < 2), "i {i}");
        }
    }
}
