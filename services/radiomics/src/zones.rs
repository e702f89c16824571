//! Zone families: grey level size zone (`szm_*`, IBSI 3.8) and distance zone (`dzm_*`, IBSI 3.9)
//! matrices. A zone is a connected set of ROI voxels of one grey level (26-connected in 3D,
//! 8-connected within a slice in 2D). Its distance is the smallest, over its voxels, of the
//! voxel's distance to the ROI's edge: 1 for a voxel with a face on a non-ROI voxel or on the
//! grid's edge, counted in face steps (6-connected in 3D, 4-connected in 2D).

use crate::matrix::{planar, size_features, Mat};
use crate::roi::Roi;
use crate::Features;
use std::collections::VecDeque;

/// Zones of one slice (`Some(z)`, 2D) or of the volume (`None`, 3D): for each zone its grey
/// level and voxel indices.
pub fn zones(roi: &Roi, slice: Option<usize>) -> Vec<(u32, Vec<usize>)> {
    let neighbours: Vec<[i64; 3]> = neighbourhood(slice.is_some(), false);
    let voxels = roi.voxels(slice);
    let mut seen = vec![false; roi.mask.len()];
    let mut out = Vec::new();
    for &start in &voxels {
        if seen[start] {
            continue;
        }
        let level = roi.levels[start];
        let mut zone = vec![start];
        seen[start] = true;
        let mut queue = VecDeque::from([start]);
        while let Some(i) = queue.pop_front() {
            for &o in &neighbours {
                if let Some(j) = roi.step(i, o) {
                    if !seen[j] && roi.mask[j] && roi.levels[j] == level {
                        seen[j] = true;
                        zone.push(j);
                        queue.push_back(j);
                    }
                }
            }
        }
        out.push((level, zone));
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

/// Distance of every ROI voxel to the ROI's edge (0 outside the ROI), by breadth-first search in
/// face steps from the voxels that touch the outside; within one slice when `slice` is given.
pub fn edge_distance(roi: &Roi, slice: Option<usize>) -> Vec<u32> {
    let faces = neighbourhood(slice.is_some(), true);
    let voxels = roi.voxels(slice);
    let mut dist = vec![0u32; roi.mask.len()];
    let mut queue = VecDeque::new();
    for &i in &voxels {
        if faces.iter().any(|&o| roi.step(i, o).is_none_or(|j| !roi.mask[j])) {
            dist[i] = 1;
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &o in &faces {
            if let Some(j) = roi.step(i, o) {
                if roi.mask[j] && dist[j] == 0 {
                    dist[j] = dist[i] + 1;
                    queue.push_back(j);
                }
            }
        }
    }
    dist
}

fn size_zone_matrix(roi: &Roi, slice: Option<usize>) -> Mat {
    let zs = zones(roi, slice);
    let largest = zs.iter().map(|(_, z)| z.len()).max().unwrap_or(1);
    let mut m = Mat::zeros(roi.ng as usize, largest);
    for (level, zone) in &zs {
        m.count(*level, zone.len());
    }
    m.voxels = roi.voxels(slice).len() as f64;
    m
}

fn distance_zone_matrix(roi: &Roi, slice: Option<usize>) -> Mat {
    let dist = edge_distance(roi, slice);
    let zs = zones(roi, slice);
    let far = roi.dims.iter().max().expect("three axes").div_ceil(2) + 1;
    let mut m = Mat::zeros(roi.ng as usize, far);
    for (level, zone) in &zs {
        let d = zone.iter().map(|&i| dist[i]).min().expect("zones are not empty");
        m.count(*level, d as usize);
    }
    m.voxels = roi.voxels(slice).len() as f64;
    m
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

fn family(roi: &Roi, prefix: &str, names: &[&str; 16], build: fn(&Roi, Option<usize>) -> Mat, out: &mut Features) {
    let per_slice: Vec<Mat> = roi.slices().into_iter().map(|z| build(roi, Some(z))).collect();
    let volume = build(roi, None);
    let features = |m: &Mat| size_features(m).map(|f| f[..16].to_vec());
    for (suffix, values) in planar(&per_slice, |s| Mat::sum(s), &volume, features) {
        for (name, v) in names.iter().zip(values) {
            out.push((format!("{prefix}_{name}_{suffix}"), v));
        }
    }
}

/// GLSZM features (`szm_<name>_<2D|2_5D|3D>`).
pub fn glszm(roi: &Roi, out: &mut Features) {
    family(roi, "szm", &GLSZM_NAMES, size_zone_matrix, out);
}

/// GLDZM features (`dzm_<name>_<2D|2_5D|3D>`).
pub fn gldzm(roi: &Roi, out: &mut Features) {
    family(roi, "dzm", &GLDZM_NAMES, distance_zone_matrix, out);
}
