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

/// The NGTDM of a slice or the volume.
pub fn tone_difference(roi: &Roi, slice: Option<usize>) -> ToneDifference {
    let offsets: Vec<isize> = neighbourhood(slice.is_some(), false).into_iter().map(|o| roi.offset(o)).collect();
    let ng = roi.ng as usize;
    let mut t = ToneDifference { n: vec![0.0; ng], s: vec![0.0; ng] };
    for &i in roi.padded_in(slice) {
        let (mut sum, mut count) = (0u32, 0u32);
        for &o in &offsets {
            let l = roi.padded[(i as isize + o) as usize];
            if l != 0 {
                sum += l;
                count += 1;
            }
        }
        if count > 0 {
            let l = roi.padded[i] as usize - 1;
            t.n[l] += 1.0;
            t.s[l] += ((l + 1) as f64 - f64::from(sum) / f64::from(count)).abs();
        }
    }
    t
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

/// NGLDM: per voxel, its level and `1 +` the number of ROI neighbours with the same level.
pub fn dependence(roi: &Roi, slice: Option<usize>) -> Mat {
    let offsets: Vec<isize> = neighbourhood(slice.is_some(), false).into_iter().map(|o| roi.offset(o)).collect();
    let mut m = Mat::zeros(roi.ng as usize, offsets.len() + 1);
    let voxels = roi.padded_in(slice);
    for &i in voxels {
        let level = roi.padded[i];
        let same = offsets.iter().filter(|&&o| roi.padded[(i as isize + o) as usize] == level).count();
        m.count(level, same + 1);
    }
    m.voxels = voxels.len() as f64;
    m
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

/// NGTDM features (`ngt_<name>_<2D|2_5D|3D>`).
pub fn ngtdm(roi: &Roi, out: &mut Features) {
    let per_slice: Vec<ToneDifference> = roi.slices().into_iter().map(|z| tone_difference(roi, Some(z))).collect();
    let merge = |s: &[ToneDifference]| -> Option<ToneDifference> {
        let first = s.first()?;
        let mut acc = ToneDifference { n: vec![0.0; first.n.len()], s: vec![0.0; first.s.len()] };
        for t in s {
            acc.n.iter_mut().zip(&t.n).for_each(|(a, b)| *a += b);
            acc.s.iter_mut().zip(&t.s).for_each(|(a, b)| *a += b);
        }
        Some(acc)
    };
    for (suffix, values) in planar(&per_slice, merge, &tone_difference(roi, None), ngtdm_features) {
        for (name, v) in NGTDM_NAMES.iter().zip(values) {
            out.push((format!("ngt_{name}_{suffix}"), v));
        }
    }
}

/// NGLDM features (`ngl_<name>_<2D|2_5D|3D>`).
pub fn ngldm(roi: &Roi, out: &mut Features) {
    let per_slice: Vec<Mat> = roi.slices().into_iter().map(|z| dependence(roi, Some(z))).collect();
    let features = |m: &Mat| size_features(m).map(|f| f.to_vec());
    for (suffix, values) in planar(&per_slice, |s| Mat::sum(s), &dependence(roi, None), features) {
        for (name, v) in NGLDM_NAMES.iter().zip(values) {
            out.push((format!("ngl_{name}_{suffix}"), v));
        }
    }
}
