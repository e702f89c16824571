//! Zone families: grey level size zone (`szm_*`, IBSI 3.8) and distance zone (`dzm_*`, IBSI 3.9)
//! matrices. A zone is a connected set of ROI voxels of one grey level (26-connected in 3D,
//! 8-connected within a slice in 2D). Its distance is the smallest, over its voxels, of the
//! voxel's distance to the ROI's edge: 1 for a voxel with a face on a non-ROI voxel or on the
//! grid's edge, counted in face steps (6-connected in 3D, 4-connected in 2D).

use crate::matrix::{planar, size_features, Mat};
use crate::roi::Roi;
use crate::Features;
use std::collections::VecDeque;

/// A zone: its grey level, voxel count and distance to the ROI's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// Grey level.
    pub level: u32,
    /// Voxels.
    pub size: usize,
    /// Smallest edge distance of its voxels ([`edge_distance`]).
    pub distance: u32,
}

/// Zones of one slice (`Some(z)`, 2D) or of the volume (`None`, 3D), with distances from
/// `dist` (the same slice's or volume's [`edge_distance`]).
pub fn zones(roi: &Roi, slice: Option<usize>, dist: &[u32]) -> Vec<Zone> {
    let offsets: Vec<isize> = neighbourhood(slice.is_some(), false).into_iter().map(|o| roi.offset(o)).collect();
    let mut seen = vec![false; roi.padded.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for &start in roi.padded_in(slice) {
        if seen[start] {
            continue;
        }
        let level = roi.padded[start];
        let mut zone = Zone { level, size: 1, distance: dist[start] };
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

/// Distance of every ROI voxel to the ROI's edge on the padded grid (0 outside the ROI), by
/// breadth-first search in face steps from the voxels that touch the outside; within one slice
/// when `slice` is given.
pub fn edge_distance(roi: &Roi, slice: Option<usize>) -> Vec<u32> {
    let faces: Vec<isize> = neighbourhood(slice.is_some(), true).into_iter().map(|o| roi.offset(o)).collect();
    let mut dist = vec![0u32; roi.padded.len()];
    let mut queue = VecDeque::new();
    for &i in roi.padded_in(slice) {
        if faces.iter().any(|&o| roi.padded[(i as isize + o) as usize] == 0) {
            dist[i] = 1;
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &o in &faces {
            let j = (i as isize + o) as usize;
            if roi.padded[j] != 0 && dist[j] == 0 {
                dist[j] = dist[i] + 1;
                queue.push_back(j);
            }
        }
    }
    dist
}

/// The size zone and distance zone matrices of a slice or of the volume.
fn zone_matrices(roi: &Roi, slice: Option<usize>) -> [Mat; 2] {
    let dist = edge_distance(roi, slice);
    let zs = zones(roi, slice, &dist);
    let largest = zs.iter().map(|z| z.size).max().unwrap_or(1);
    let farthest = zs.iter().map(|z| z.distance as usize).max().unwrap_or(1);
    let mut sizes = Mat::zeros(roi.ng as usize, largest);
    let mut distances = Mat::zeros(roi.ng as usize, farthest);
    for z in &zs {
        sizes.count(z.level, z.size);
        distances.count(z.level, z.distance as usize);
    }
    let voxels = roi.padded_in(slice).len() as f64;
    sizes.voxels = voxels;
    distances.voxels = voxels;
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
/// the zones.
pub fn zone_families(roi: &Roi, out: &mut Features) {
    let per_slice: Vec<[Mat; 2]> = roi.slices().into_iter().map(|z| zone_matrices(roi, Some(z))).collect();
    let [sizes, distances] = zone_matrices(roi, None);
    let (s2, d2): (Vec<Mat>, Vec<Mat>) = per_slice.into_iter().map(|[a, b]| (a, b)).unzip();
    push(out, "szm", &GLSZM_NAMES, &s2, &sizes);
    push(out, "dzm", &GLDZM_NAMES, &d2, &distances);
}
