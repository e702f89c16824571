//! Zone families: grey level size zone (`szm_*`, IBSI 3.8) and distance zone (`dzm_*`, IBSI 3.9)
//! matrices. A zone is a connected set of ROI voxels of one grey level (26-connected in 3D,
//! 8-connected within a slice in 2D). Its distance is the smallest, over its voxels, of the
//! voxel's distance to the ROI's edge: 1 for a voxel with a face on a non-ROI voxel or on the
//! grid's edge, counted in face steps (6-connected in 3D, 4-connected in 2D).
//!
//! Zones are labelled in one raster pass with two union-find forests (in-plane and 3D) over
//! the ROI's voxels: each voxel is joined to its already-visited neighbours of the same level,
//! the 4 in-plane ones in both forests and the 9 in the slice below in the 3D one; a zone's
//! root is its first voxel in memory order. Edge distances are city-block distance transforms
//! (a forward and a backward pass along each axis), which equal the breadth-first face-step
//! distances: the nearest outside voxel in city-block distance is reached by a monotone path
//! whose voxels before it are all inside.

use crate::matrix::{cell_features, counted, mean_of};
use crate::roi::Roi;
use crate::Features;

/// A zone: its grey level, voxel count, distance to the ROI's edge, and the slice it starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// Grey level.
    pub level: u32,
    /// Voxels.
    pub size: usize,
    /// Smallest edge distance of its voxels ([`Roi::edge_distances`]).
    pub distance: u32,
    /// z of its first voxel (a 2D zone lies in that slice).
    pub slice: usize,
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

/// The root of `p`'s tree, halving the path on the way.
fn find(parent: &mut [u32], mut p: u32) -> u32 {
    while parent[p as usize] != p {
        let up = parent[parent[p as usize] as usize];
        parent[p as usize] = up;
        p = up;
    }
    p
}

/// Join the tree with root `root` and the tree of `b`; the smaller root (the earlier voxel)
/// stays the root, which is returned.
fn union(parent: &mut [u32], root: u32, b: u32) -> u32 {
    let rb = find(parent, b);
    parent[root.max(rb) as usize] = root.min(rb);
    root.min(rb)
}

/// The zones of every slice (8-connected in-plane, so no zone leaves its slice) and of the
/// volume (26-connected), each in the memory order of their first voxels, with the voxels'
/// distances from [`Roi::edge_distances`].
pub fn zones(roi: &Roi, planar_distance: &[u32], volume_distance: &[u32]) -> (Vec<Zone>, Vec<Zone>) {
    // The neighbours visited before a voxel: 4 in its slice, then 9 in the slice below.
    let in_plane = [[-1, 0, 0], [-1, -1, 0], [0, -1, 0], [1, -1, 0]];
    let below = neighbourhood(true, false).into_iter().chain([[0, 0, 0]]).map(|[x, y, _]| [x, y, -1]);
    let offsets: Vec<isize> = in_plane.into_iter().chain(below).map(|o| roi.offset(o)).collect();
    let voxels = &roi.padded_voxels;
    assert!(voxels.len() < u32::MAX as usize, "the ROI's voxels fit u32 indices");
    // The forests are over the voxels' ranks (their order in memory), so they stay small; a
    // neighbour's rank is looked up on the padded grid (only ROI voxels are read there).
    let mut rank = vec![0u32; roi.padded.len()];
    for (k, &p) in voxels.iter().enumerate() {
        rank[p] = k as u32;
    }
    let mut flat: Vec<u32> = (0..voxels.len() as u32).collect();
    let mut volume = flat.clone();
    let widest = roi.longest_segment();
    let mut same_of = vec![0u16; widest];
    let mut k = 0u32;
    for segment in &roi.segments {
        let (start, n) = (segment.start, segment.len());
        let levels = &roi.padded[start..start + n];
        // Which neighbours share each voxel's level, as bits: the neighbours along an offset
        // are one slice of the padded grid, so the comparisons vectorise (and do not branch
        // on the unpredictable levels). Then one union per set bit.
        let same_of = &mut same_of[..n];
        same_of.fill(0);
        for (b, &o) in offsets.iter().enumerate() {
            let from = start.wrapping_add_signed(o);
            for (same, (&l, &m)) in same_of.iter_mut().zip(levels.iter().zip(&roi.padded[from..from + n])) {
                *same |= u16::from(l == m) << b;
            }
        }
        // Earlier voxels never join later ones, so voxel k starts as its own root in both
        // forests, and its roots are carried along its unions rather than found again.
        for (j, &bits) in same_of.iter().enumerate() {
            let (mut flat_root, mut volume_root) = (k, k);
            let mut same = bits;
            while same != 0 {
                let b = same.trailing_zeros() as usize;
                same &= same - 1;
                let q = rank[(start + j).wrapping_add_signed(offsets[b])];
                if b < in_plane.len() {
                    flat_root = union(&mut flat, flat_root, q);
                }
                volume_root = union(&mut volume, volume_root, q);
            }
            k += 1;
        }
    }
    // Zone index of each root; every root is written before it is read.
    let mut zone_of = vec![0u32; voxels.len()];
    let mut gather = |parent: &mut [u32], distance: &[u32]| -> Vec<Zone> {
        // Every parent precedes its child (a root is its tree's earliest voxel, and halving
        // only points a voxel further up), so one pass in order leaves each voxel pointing at
        // its root and numbers the roots (the zones) in order: a root's number is the count
        // of roots before it (written for every voxel, read only for roots).
        let mut zones = 0u32;
        for k in 0..parent.len() {
            parent[k] = parent[parent[k] as usize];
            zone_of[k] = zones;
            zones += u32::from(parent[k] as usize == k);
        }
        // Then each voxel adds to its zone without a branch: a zone's level is any voxel's,
        // and its slice the least of its voxels' (its first voxel's).
        let mut out = vec![Zone { level: 0, size: 0, distance: u32::MAX, slice: usize::MAX }; zones as usize];
        for (z, range) in &roi.slice_voxels {
            for k in range.clone() {
                let zone = &mut out[zone_of[parent[k] as usize] as usize];
                zone.level = u32::from(roi.padded[voxels[k]]);
                zone.size += 1;
                zone.distance = zone.distance.min(distance[k]);
                zone.slice = zone.slice.min(*z);
            }
        }
        out
    };
    (gather(&mut flat, planar_distance), gather(&mut volume, volume_distance))
}

/// Size zone feature names (in [`cell_features`] order).
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

/// Distance zone feature names (in [`cell_features`] order).
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

/// The size zone and distance zone features of some zones counted over `voxels` voxels;
/// `None` without zones.
fn zone_features(ng: u32, zones: &[Zone], voxels: usize) -> Option<[Vec<f64>; 2]> {
    let features = |key: &dyn Fn(&Zone) -> u64| {
        let mut pairs: Vec<u64> = zones.iter().map(|z| key(z) << 32 | u64::from(z.level)).collect();
        cell_features(ng as usize, &counted(&mut pairs, ng), voxels as f64).map(|f| f[..16].to_vec())
    };
    Some([features(&|z| z.size as u64)?, features(&|z| u64::from(z.distance))?])
}

/// GLSZM and GLDZM features (`szm_*`, `dzm_*`, each `_2D`, `_2_5D`, `_3D`): per slice
/// averaged, the slices' zones merged, and the volume's zones.
pub fn zone_families(roi: &Roi, out: &mut Features) {
    let distances = roi.edge_distances();
    let (flat, volume) = zones(roi, &distances.0, &distances.1);
    let mut per_slice: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    let mut rest = &flat[..];
    for (z, range) in &roi.slice_voxels {
        let (these, tail) = rest.split_at(rest.partition_point(|zone| zone.slice == *z));
        rest = tail;
        if let Some([sizes, distances]) = zone_features(roi.ng, these, range.len()) {
            per_slice[0].push(sizes);
            per_slice[1].push(distances);
        }
    }
    let voxels = roi.padded_voxels.len();
    let merged = zone_features(roi.ng, &flat, voxels);
    let whole = zone_features(roi.ng, &volume, voxels);
    for (family, (prefix, names)) in [("szm", &GLSZM_NAMES), ("dzm", &GLDZM_NAMES)].into_iter().enumerate() {
        for (suffix, values) in [
            ("2D", mean_of(&per_slice[family])),
            ("2_5D", merged.as_ref().map(|m| m[family].clone())),
            ("3D", whole.as_ref().map(|m| m[family].clone())),
        ] {
            for (name, v) in names.iter().zip(values.into_iter().flatten()) {
                out.push((format!("{prefix}_{name}_{suffix}"), v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roi::Discretisation;
    use std::collections::VecDeque;

    /// Breadth-first face-step distances from the voxels touching the outside.
    fn bfs_distance(roi: &Roi, planar: bool) -> Vec<u32> {
        let faces: Vec<isize> = neighbourhood(planar, true).into_iter().map(|o| roi.offset(o)).collect();
        let (inside, voxels) = (roi.morphology_inside(), roi.morphology_padded_voxels());
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

    /// Zones by flood fill from each unvisited voxel in memory order.
    fn flood_zones(roi: &Roi, planar: bool, dist: &[u32]) -> Vec<Zone> {
        let offsets: Vec<isize> = neighbourhood(planar, false).into_iter().map(|o| roi.offset(o)).collect();
        let mut seen = vec![false; roi.padded.len()];
        let mut out = Vec::new();
        for &start in &roi.padded_voxels {
            if seen[start] {
                continue;
            }
            let level = roi.padded[start];
            let mut zone =
                Zone { level: u32::from(level), size: 0, distance: u32::MAX, slice: roi.padded_coords(start)[2] };
            seen[start] = true;
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                zone.size += 1;
                zone.distance = zone.distance.min(dist[i]);
                for &o in &offsets {
                    let j = (i as isize + o) as usize;
                    if !seen[j] && roi.padded[j] == level {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            out.push(zone);
        }
        out
    }

    #[test]
    fn union_find_zones_and_distance_transforms_match_flood_fill_and_breadth_first_search() {
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        for case in 0..40 {
            let dims = [3 + (next() % 9) as usize, 3 + (next() % 9) as usize, 1 + (next() % 7) as usize];
            let n: usize = dims.iter().product();
            let levels = 1 + case % 4;
            let image: Vec<f64> = (0..n).map(|_| (1 + next() % levels) as f64).collect();
            let mut mask: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(5)).collect();
            mask[0] = true;
            let mut roi = Roi::new(dims, [1.0; 3], image, mask.clone(), Discretisation::None).unwrap();
            if case % 3 == 0 {
                // A morphological mask larger than the intensity mask (as after re-segmentation),
                // with the intensity mask's last slice emptied.
                let morphology: Vec<bool> = mask.iter().map(|&m| m || next().is_multiple_of(2)).collect();
                let plane = dims[0] * dims[1];
                if dims[2] > 1 {
                    mask[n - plane..].iter_mut().for_each(|m| *m = false);
                }
                roi = Roi::new(dims, [1.0; 3], roi.image.to_vec(), mask.clone(), Discretisation::None)
                    .unwrap()
                    .with_morphology_mask(morphology)
                    .unwrap();
            }
            let distances = roi.edge_distances();
            let (planar, volume) = (&distances.0, &distances.1);
            let (want_planar, want_volume) = (bfs_distance(&roi, true), bfs_distance(&roi, false));
            assert_eq!(planar.len(), roi.padded_voxels.len());
            for (k, &p) in roi.padded_voxels.iter().enumerate() {
                assert_eq!((planar[k], volume[k]), (want_planar[p], want_volume[p]), "case {case} voxel {p}");
            }
            let (flat, whole) = zones(&roi, planar, volume);
            assert_eq!(flat, flood_zones(&roi, true, &want_planar), "2D zones, case {case}");
            assert_eq!(whole, flood_zones(&roi, false, &want_volume), "3D zones, case {case}");
        }
    }
}
