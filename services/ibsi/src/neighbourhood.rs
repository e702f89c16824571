//! Neighbourhood families at Chebyshev distance 1, neighbours counted only inside the ROI:
//! neighbourhood grey tone difference (`ngt_*`, IBSI 3.10) and neighbouring grey level
//! dependence (`ngl_*`, IBSI 3.11, coarseness α = 0) matrices. 3D uses the 26 neighbours, 2D the
//! 8 in-plane ones; 2D features are averaged over slices, 2.5D merge the slices' matrices.

use crate::matrix::{planar, size_features, Mat};
use crate::roi::Roi;
use crate::zones::neighbourhood;
use crate::Features;

/// Per grey level: `n_i` (voxels with at least one ROI neighbour) and `s_i = Σ |i - Ā|` over
/// them, Ā the mean level of the voxel's ROI neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneDifference {
    /// `n_i`, index 0 = level 1.
    pub n: Vec<f64>,
    /// `s_i`.
    pub s: Vec<f64>,
}

/// The NGTDM and NGLDM of every slice (in-plane neighbours) and of the volume (all 26), from one
/// pass over the ROI's segments ([`Roi::segments`]): per voxel, the sum, count and same-level
/// count of its in-plane ROI neighbours, then of the 18 others.
pub struct NeighbourMatrices {
    /// NGTDM per slice holding ROI voxels.
    pub tone_per_slice: Vec<ToneDifference>,
    /// NGTDM of the volume.
    pub tone: ToneDifference,
    /// NGLDM per slice.
    pub dependence_per_slice: Vec<Mat>,
    /// NGLDM of the volume.
    pub dependence: Mat,
}

impl ToneDifference {
    /// No voxels, over `ng` levels.
    fn empty(ng: usize) -> ToneDifference {
        ToneDifference { n: vec![0.0; ng], s: vec![0.0; ng] }
    }
}

impl NeighbourMatrices {
    /// No slices, and empty volume matrices over `ng` levels.
    fn empty(ng: usize) -> NeighbourMatrices {
        NeighbourMatrices {
            tone_per_slice: Vec::new(),
            tone: ToneDifference::empty(ng),
            dependence_per_slice: Vec::new(),
            dependence: Mat::zeros(ng, 27),
        }
    }
}

/// Per voxel of a segment: the sum, count and same-level count of its ROI neighbours among
/// some offsets. Counts reach at most 26 and sums 26 levels of at most
/// [`crate::roi::MAX_GREY_LEVELS`], so two bytes hold them.
struct Tally {
    sum: Vec<u16>,
    count: Vec<u16>,
    same: Vec<u16>,
}

impl Tally {
    fn new(voxels: usize) -> Tally {
        Tally { sum: vec![0; voxels], count: vec![0; voxels], same: vec![0; voxels] }
    }

    /// Tally the segment of `levels.len()` voxels from padded index `start` (its neighbours
    /// along each offset are one slice of `padded`, so the loop over voxels vectorises).
    fn of_segment<const N: usize>(&mut self, padded: &[u16], start: usize, levels: &[u16], offsets: &[isize; N]) {
        let n = levels.len();
        let (sum, count, same) = (&mut self.sum[..n], &mut self.count[..n], &mut self.same[..n]);
        sum.fill(0);
        count.fill(0);
        same.fill(0);
        for &o in offsets {
            let from = start.wrapping_add_signed(o);
            let neighbours = &padded[from..from + n];
            for k in 0..n {
                let l = neighbours[k];
                sum[k] += l;
                count[k] += u16::from(l != 0);
                same[k] += u16::from(l == levels[k]);
            }
        }
    }
}

/// Both matrices of every slice and of the volume.
pub fn neighbour_matrices(roi: &Roi) -> NeighbourMatrices {
    let offsets = |planar: bool| -> Vec<isize> {
        neighbourhood(planar, false).into_iter().filter(|o| planar || o[2] != 0).map(|o| roi.offset(o)).collect()
    };
    // Fixed-size, so the loops over offsets unroll.
    let in_plane: [isize; 8] = offsets(true).try_into().expect("8 in-plane neighbours");
    let across: [isize; 18] = offsets(false).try_into().expect("18 neighbours off the plane");
    let ng = roi.ng as usize;
    let empty = || ToneDifference::empty(ng);
    let mut out = NeighbourMatrices::empty(ng);
    out.dependence.voxels = roi.padded_voxels.len() as f64;
    let add_tone = |t: &mut ToneDifference, level: u32, sum: u16, count: u16| {
        if count > 0 {
            let l = level as usize - 1;
            t.n[l] += 1.0;
            t.s[l] += (f64::from(level) - f64::from(sum) / f64::from(count)).abs();
        }
    };
    let widest = roi.longest_segment();
    let (mut near, mut far) = (Tally::new(widest), Tally::new(widest));
    for (_, segments) in &roi.slice_segments {
        let (mut tone, mut dependence) = (empty(), Mat::zeros(ng, 9));
        for segment in &roi.segments[segments.clone()] {
            let (start, n) = (segment.start, segment.len());
            dependence.voxels += n as f64;
            let levels = &roi.padded[start..start + n];
            near.of_segment(&roi.padded, start, levels, &in_plane);
            far.of_segment(&roi.padded, start, levels, &across);
            for k in 0..n {
                let level = u32::from(levels[k]);
                let (sum, count, same) = (near.sum[k], near.count[k], near.same[k]);
                add_tone(&mut tone, level, sum, count);
                dependence.count(level, usize::from(same) + 1);
                add_tone(&mut out.tone, level, sum + far.sum[k], count + far.count[k]);
                out.dependence.count(level, usize::from(same + far.same[k]) + 1);
            }
        }
        out.tone_per_slice.push(tone);
        out.dependence_per_slice.push(dependence);
    }
    out
}

/// Coarseness `1 / Σ p_i s_i`, contrast `[Σ_i Σ_j p_i p_j (i-j)² / (Ng_p (Ng_p - 1))] Σ s_i / N`,
/// busyness `Σ p_i s_i / Σ_i Σ_j |i p_i - j p_j|`, complexity
/// `Σ_i Σ_j |i-j| (p_i s_i + p_j s_j)/(p_i + p_j) / N` and strength
/// `Σ_i Σ_j (p_i + p_j)(i-j)² / Σ s_i`, sums over levels present (`p_i > 0`), `N = Σ n_i`,
/// `Ng_p` the number of levels present. `None` when no voxel has a neighbour.
pub fn ngtdm_features(t: &ToneDifference) -> Option<Vec<f64>> {
    let nvc: f64 = t.n.iter().sum();
    if nvc == 0.0 {
        return None;
    }
    let present: Vec<(f64, f64, f64)> =
        (0..t.n.len()).filter(|&l| t.n[l] > 0.0).map(|l| ((l + 1) as f64, t.n[l] / nvc, t.s[l])).collect();
    let ngp = present.len() as f64;
    let s_total: f64 = present.iter().map(|x| x.2).sum();
    let ps: f64 = present.iter().map(|(_, p, s)| p * s).sum();
    let (mut contrast, mut busy, mut complexity, mut strength) = (0.0, 0.0, 0.0, 0.0);
    for &(i, pi, si) in &present {
        for &(j, pj, sj) in &present {
            contrast += pi * pj * (i - j).powi(2);
            busy += (i * pi - j * pj).abs();
            complexity += (i - j).abs() * (pi * si + pj * sj) / (pi + pj);
            strength += (pi + pj) * (i - j).powi(2);
        }
    }
    let coarseness = if ps > 0.0 { 1.0 / ps } else { 1e6 };
    let contrast = if ngp > 1.0 { contrast / (ngp * (ngp - 1.0)) * s_total / nvc } else { 0.0 };
    let busyness = if busy > 0.0 { ps / busy } else { 0.0 };
    let strength = if s_total > 0.0 { strength / s_total } else { 0.0 };
    Some(vec![coarseness, contrast, busyness, complexity / nvc, strength])
}

/// NGTDM feature names.
pub const NGTDM_NAMES: [&str; 5] = ["coarseness", "contrast", "busyness", "complexity", "strength"];

/// NGLDM feature names (in [`size_features`] order).
pub const NGLDM_NAMES: [&str; 17] = [
    "lde",
    "hde",
    "lgce",
    "hgce",
    "ldlge",
    "ldhge",
    "hdlge",
    "hdhge",
    "glnu",
    "glnu_norm",
    "dcnu",
    "dcnu_norm",
    "dc_perc",
    "gl_var",
    "dc_var",
    "dc_entr",
    "dc_energy",
];

/// NGTDM and NGLDM features (`ngt_<name>_<2D|2_5D|3D>`, then `ngl_...`).
pub fn ngtdm_and_ngldm(roi: &Roi, out: &mut Features) {
    let m = neighbour_matrices(roi);
    let merge = |s: &[ToneDifference]| -> Option<ToneDifference> {
        let first = s.first()?;
        let mut acc = ToneDifference::empty(first.n.len());
        for t in s {
            acc.n.iter_mut().zip(&t.n).for_each(|(a, b)| *a += b);
            acc.s.iter_mut().zip(&t.s).for_each(|(a, b)| *a += b);
        }
        Some(acc)
    };
    for (suffix, values) in planar(&m.tone_per_slice, merge, &m.tone, ngtdm_features) {
        for (name, v) in NGTDM_NAMES.iter().zip(values) {
            out.push((format!("ngt_{name}_{suffix}"), v));
        }
    }
    let features = |m: &Mat| size_features(m).map(|f| f.to_vec());
    for (suffix, values) in planar(&m.dependence_per_slice, |s| Mat::sum(s), &m.dependence, features) {
        for (name, v) in NGLDM_NAMES.iter().zip(values) {
            out.push((format!("ngl_{name}_{suffix}"), v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roi::Discretisation;

    /// Both matrices by visiting every voxel's 26 neighbours by their coordinates.
    fn direct(roi: &Roi) -> NeighbourMatrices {
        let [nx, ny, nz] = roi.dims;
        let ng = roi.ng as usize;
        let level_at = |x: i64, y: i64, z: i64| -> u32 {
            if x < 0 || y < 0 || z < 0 || x >= nx as i64 || y >= ny as i64 || z >= nz as i64 {
                return 0;
            }
            let c = [x as usize, y as usize, z as usize];
            if !roi.mask[roi.index(c[0], c[1], c[2])] {
                return 0;
            }
            u32::from(roi.padded[roi.padded_index(c)])
        };
        let tone = |t: &mut ToneDifference, level: u32, sum: u32, count: u32| {
            if count > 0 {
                t.n[level as usize - 1] += 1.0;
                t.s[level as usize - 1] += (f64::from(level) - f64::from(sum) / f64::from(count)).abs();
            }
        };
        let empty = || ToneDifference::empty(ng);
        let mut out = NeighbourMatrices::empty(ng);
        for z in 0..nz as i64 {
            let (mut t, mut d) = (empty(), Mat::zeros(ng, 9));
            for y in 0..ny as i64 {
                for x in 0..nx as i64 {
                    let level = level_at(x, y, z);
                    if level == 0 {
                        continue;
                    }
                    // [in-plane, all 26] x (sum, count, same).
                    let mut tally = [[0u32; 3]; 2];
                    for o in neighbourhood(false, false) {
                        let l = level_at(x + o[0], y + o[1], z + o[2]);
                        for (k, counted) in tally.iter_mut().enumerate() {
                            if k == 1 || o[2] == 0 {
                                counted[0] += l;
                                counted[1] += u32::from(l != 0);
                                counted[2] += u32::from(l == level);
                            }
                        }
                    }
                    tone(&mut t, level, tally[0][0], tally[0][1]);
                    d.count(level, tally[0][2] as usize + 1);
                    d.voxels += 1.0;
                    tone(&mut out.tone, level, tally[1][0], tally[1][1]);
                    out.dependence.count(level, tally[1][2] as usize + 1);
                    out.dependence.voxels += 1.0;
                }
            }
            if d.voxels > 0.0 {
                out.tone_per_slice.push(t);
                out.dependence_per_slice.push(d);
            }
        }
        out
    }

    /// Same voxels in the same order, so the sums agree exactly.
    #[test]
    fn neighbour_matrices_equal_direct_visits() {
        let mut next = crate::xorshift(0x4e67_7464);
        for case in 0..30 {
            let dims = [2 + (next() % 11) as usize, 2 + (next() % 9) as usize, 1 + (next() % 6) as usize];
            let n: usize = dims.iter().product();
            let image: Vec<f64> = (0..n).map(|_| (next() % 7) as f64).collect();
            // Holes split rows into several segments.
            let mut mask: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(5)).collect();
            mask[n / 2] = true;
            let roi = Roi::new(dims, [1.0; 3], image, mask, Discretisation::FixedBinNumber { bins: 5 }).unwrap();
            let (got, want) = (neighbour_matrices(&roi), direct(&roi));
            assert_eq!(got.tone_per_slice, want.tone_per_slice, "case {case}");
            assert_eq!(got.tone, want.tone, "case {case}");
            assert_eq!(got.dependence_per_slice, want.dependence_per_slice, "case {case}");
            assert_eq!(got.dependence, want.dependence, "case {case}");
        }
    }
}
