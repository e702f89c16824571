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
/// pass over the ROI: per voxel, the sum, count and same-level count of its in-plane ROI
/// neighbours, then of the 18 others.
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

/// Both matrices of every slice and of the volume.
pub fn neighbour_matrices(roi: &Roi) -> NeighbourMatrices {
    let offsets = |planar: bool| -> Vec<isize> {
        neighbourhood(planar, false).into_iter().filter(|o| planar || o[2] != 0).map(|o| roi.offset(o)).collect()
    };
    // Fixed-size, so the neighbour loops unroll.
    let in_plane: [isize; 8] = offsets(true).try_into().expect("8 in-plane neighbours");
    let across: [isize; 18] = offsets(false).try_into().expect("18 neighbours off the plane");
    let ng = roi.ng as usize;
    let empty = || ToneDifference { n: vec![0.0; ng], s: vec![0.0; ng] };
    let mut out = NeighbourMatrices {
        tone_per_slice: Vec::new(),
        tone: empty(),
        dependence_per_slice: Vec::new(),
        dependence: Mat::zeros(ng, 27),
    };
    out.dependence.voxels = roi.padded_voxels.len() as f64;
    // Sum, count and same-level count of a voxel's ROI neighbours among `offsets`.
    fn tally<const N: usize>(padded: &[u16], p: usize, level: u16, offsets: &[isize; N]) -> (u32, u32, usize) {
        let (mut sum, mut count, mut same) = (0, 0, 0);
        for &o in offsets {
            let l = padded[(p as isize + o) as usize];
            sum += u32::from(l);
            count += u32::from(l != 0);
            same += usize::from(l == level);
        }
        (sum, count, same)
    }
    let add_tone = |t: &mut ToneDifference, level: u32, sum: u32, count: u32| {
        if count > 0 {
            let l = level as usize - 1;
            t.n[l] += 1.0;
            t.s[l] += (f64::from(level) - f64::from(sum) / f64::from(count)).abs();
        }
    };
    for (_, range) in &roi.slice_voxels {
        let (mut tone, mut dependence) = (empty(), Mat::zeros(ng, 9));
        dependence.voxels = range.len() as f64;
        for &p in &roi.padded_voxels[range.clone()] {
            let grey = roi.padded[p];
            let level = u32::from(grey);
            let (sum, count, same) = tally(&roi.padded, p, grey, &in_plane);
            add_tone(&mut tone, level, sum, count);
            dependence.count(level, same + 1);
            let (sum_z, count_z, same_z) = tally(&roi.padded, p, grey, &across);
            add_tone(&mut out.tone, level, sum + sum_z, count + count_z);
            out.dependence.count(level, same + same_z + 1);
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
        let mut acc = ToneDifference { n: vec![0.0; first.n.len()], s: vec![0.0; first.s.len()] };
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
