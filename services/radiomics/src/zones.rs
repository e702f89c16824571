//! Zone families: grey level size zone (`szm_*`, IBSI 3.8) and distance zone (`dzm_*`, IBSI 3.9)
//! matrices. A zone is a connected set of ROI voxels of one grey level (26-connected in 3D,
//! 8-connected within a slice in 2D). Its distance is the smallest, over its voxels, of the
//! voxel's distance to the ROI's edge: 1 for a voxel with a face on a non-ROI voxel or on the
//! grid's edge, counted in face steps (6-connected in 3D, 4-connected in 2D).

use crate::matrix::{planar, size_features, Mat};
use crate::roi::Roi;
use crate::Features;
use std::collections::VecDeque;

/// A zone: its grey level, voxel count, distance to the ROI's edge, and the slice it starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// Grey level.
    pub level: u32,
    /// Voxels.
    pub size: usize,
    /// Smallest edge distance of its voxels ([`edge_distance`]).
    pub distance: u32,
    /// z of its first voxel (a 2D zone lies in that slice).
    pub slice: usize,
}

/// Zones of every slice (`planar`: 8-connected in-plane, so no zone leaves its slice) or of
/// the volume (26-connected), with distances from the matching [`edge_distance`].
pub fn zones(roi: &Roi, planar: bool, dist: &[u32]) -> Vec<Zone> {
    let offsets: Vec<isize> = neighbourhood(planar, false).into_iter().map(|o| roi.offset(o)).collect();
    let plane = roi.padded_dims[0] * roi.padded_dims[1];
    let mut seen = vec![false; roi.padded.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for &start in &roi.padded_voxels {
        if seen[start] {
            continue;
        }
        let level = roi.padded[start];
        let mut zone = Zone { level, size: 1, distance: dist[start], slice: start / plane - 1 };
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            for &o in &offsets {
                let j = (i as isize + o) as usize;
                if !seen[j] && roi.padded[j] == level {
                    seen[j] = true;
                    zone.size += 1;
                    zone.distance = zone.distance.min(dist[j]);
                    stack.push(j);
                }
            }
        }
        out.push(zone);
    }
    out
}

/// Offsets of the neighbours of a voxel: all 26 (or 8 in-plane), or only the 6 (4) sharing a face.
pub fn neighbourhood(planar: bool, faces_only: bool) -> Vec<[i64; 3]> {
    let mut out = Vec::new();
    let z_range: std::ops::RangeInclusive<i64> = if planar { 0..=0 } else { -1..=1 };
    for dz in z_range {
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let steps = dx.abs() + dy.abs() + dz.abs();
                if steps == 0 || (faces_only && steps > 1) {
                    continue;
                }
                out.push([dx, dy, dz]);
            }
        }
    }
    out
}

/// Distance of every voxel of the morphological mask to its edge on the padded grid (0
/// outside), by breadth-first search in face steps from the voxels that touch the outside;
/// in-plane steps only when `planar` (each slice on its own). The morphological mask, not the
/// intensity mask, so holes that re-segmentation cuts do not count as edges (IBSI 3.11).
pub fn edge_distance(roi: &Roi, planar: bool) -> Vec<u32> {
    let faces: Vec<isize> = neighbourhood(planar, true).into_iter().map(|o| roi.offset(o)).collect();
    let (inside, voxels) = roi.morphology_padded();
    let mut dist = vec![0u32; roi.padded.len()];
    let mut queue = VecDeque::new();
    for &i in &voxels {
        if faces.iter().any(|&o| !inside[(i as isize + o) as usize]) {
            dist[i] = 1;
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &o in &faces {
            let j = (i as isize + o) as usize;
            if inside[j] && dist[j] == 0 {
                dist[j] = dist[i] + 1;
                queue.push_back(j);
            }
        }
    }
    dist
}

/// The size zone and distance zone matrices of some zones, counted over `voxels` voxels.
fn zone_matrices<'a>(ng: u32, zs: impl Iterator<Item = &'a Zone> + Clone, voxels: usize) -> [Mat; 2] {
    let largest = zs.clone().map(|z| z.size).max().unwrap_or(1);
    let farthest = zs.clone().map(|z| z.distance as usize).max().unwrap_or(1);
    let mut sizes = Mat::zeros(ng as usize, largest);
    let mut distances = Mat::zeros(ng as usize, farthest);
    for z in zs {
        sizes.count(z.level, z.size);
        distances.count(z.level, z.distance as usize);
    }
    sizes.voxels = voxels as f64;
    distances.voxels = voxels as f64;
    [sizes, distances]
}

/// Size zone feature names (in [`size_features`] order).
pub const GLSZM_NAMES: [&str; 16] = [
    "sze",
    "lze",
    "lgze",
    "hgze",
    "szlge",
    "szhge",
    "lzlge",
    "lzhge",
    "glnu",
    "glnu_norm",
    "zsnu",
    "zsnu_norm",
    "z_perc",
    "gl_var",
    "zs_var",
    "zs_entr",
];

/// Distance zone feature names (in [`size_features`] order).
pub const GLDZM_NAMES: [&str; 16] = [
    "sde",
    "lde",
    "lgze",
    "hgze",
    "sdlge",
    "sdhge",
    "ldlge",
    "ldhge",
    "glnu",
    "glnu_norm",
    "zdnu",
    "zdnu_norm",
    "z_perc",
    "gl_var",
    "zd_var",
    "zd_entr",
];

fn push(out: &mut Features, prefix: &str, names: &[&str; 16], per_slice: &[Mat], volume: &Mat) {
    let features = |m: &Mat| size_features(m).map(|f| f[..16].to_vec());
    for (suffix, values) in planar(per_slice, |s| Mat::sum(s), volume, features) {
        for (name, v) in names.iter().zip(values) {
            out.push((format!("{prefix}_{name}_{suffix}"), v));
        }
    }
}

/// GLSZM and GLDZM features (`szm_*`, `dzm_*`, each `_2D`, `_2_5D`, `_3D`) from one pass over
/// the zones of every slice and one over the volume's.
pub fn zone_families(roi: &Roi, out: &mut Features) {
    let flat = zones(roi, true, &edge_distance(roi, true));
    let (s2, d2): (Vec<Mat>, Vec<Mat>) = roi
        .slice_voxels
        .iter()
        .map(|(z, range)| {
            let [a, b] = zone_matrices(roi.ng, flat.iter().filter(|zone| zone.slice == *z), range.len());
            (a, b)
        })
        .unzip();
    let volume = zones(roi, false, &edge_distance(roi, false));
    let [sizes, distances] = zone_matrices(roi.ng, volume.iter(), roi.padded_voxels.len());
    push(out, "szm", &GLSZM_NAMES, &s2, &sizes);
    push(out, "dzm", &GLDZM_NAMES, &d2, &distances);
}
