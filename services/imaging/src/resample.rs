//! Resampling onto other grids, and cropping.
//!
//! Grids keep their orientation; only spacing and extent change. Isotropic resampling follows
//! IBSI's grid alignment: the new grid has the same centre as the old one and
//! `ceil(extent / new_spacing)` voxels per axis, where `extent = dims * spacing`. Values are
//! interpolated trilinearly inside the old grid and clamped to its edge voxels outside it; masks
//! are resampled by the same interpolation and kept where the interpolated value is >= 0.5,
//! and are empty beyond half a voxel outside their grid.

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

/// The IBSI-aligned grid of `spacing_mm` covering `g`.
pub fn isotropic_grid(g: &Geometry, spacing_mm: f64) -> Geometry {
    let dims: [usize; 3] =
        std::array::from_fn(|a| ((g.dims[a] as f64 * g.spacing_mm[a] / spacing_mm) - 1e-9).ceil().max(1.0) as usize);
    // Same centre: old centre at index (n-1)/2 in old voxels.
    let centre = g.to_patient(std::array::from_fn(|a| (g.dims[a] as f64 - 1.0) / 2.0));
    let mut origin = centre;
    for a in 0..3 {
        let dir = [g.row_dir, g.col_dir, g.normal][a];
        let half = (dims[a] as f64 - 1.0) / 2.0 * spacing_mm;
        for c in 0..3 {
            origin[c] -= dir[c] * half;
        }
    }
    Geometry { dims, spacing_mm: [spacing_mm; 3], origin_mm: origin, ..g.clone() }
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
        let iso = isotropic_grid(&g, 1.5);
        let r = resample(&v, &iso);
        for k in 0..iso.dims[2] {
            for j in 0..iso.dims[1] {
                for i in 0..iso.dims[0] {
                    let x = g.to_index(iso.to_patient([i as f64, j as f64, k as f64]));
                    let inside = (0..3).all(|a| x[a] >= -1e-9 && x[a] <= (g.dims[a] - 1) as f64 + 1e-9);
                    if inside {
                        let want = f(iso.to_patient([i as f64, j as f64, k as f64]));
                        assert!((f64::from(r.data[iso.index(i, j, k)]) - want).abs() < 1e-3);
                    }
                }
            }
        }
    }

    #[test]
    fn isotropic_grids_keep_the_centre_and_cover_the_extent() {
        let g = grid([10, 7, 3], [0.8, 0.8, 5.0]);
        let iso = isotropic_grid(&g, 2.0);
        // 8 mm -> 4 voxels, 5.6 mm -> 3, 15 mm -> 8 (IBSI: ceil of extent over spacing).
        assert_eq!(iso.dims, [4, 3, 8]);
        let c_old = g.to_patient([4.5, 3.0, 1.0]);
        let c_new = iso.to_patient([1.5, 1.0, 3.5]);
        for a in 0..3 {
            assert!((c_old[a] - c_new[a]).abs() < 1e-9);
        }
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
