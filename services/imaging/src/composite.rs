//! The 2.5D composite a CNN sees: three orthogonal lesion slices as the channels of one image.
//!
//! For each of three planes: the slice (of the volume's own grid) with the largest lesion area,
//! cropped to the lesion's bounding box within that slice, voxels outside the lesion set to 0,
//! resized bilinearly to `size x size` (half-pixel centres, as TensorFlow 2 and OpenCV resize),
//! and divided by the largest value of the crop so it spans 0..1.
//!
//! Channel order, [`ChannelOrder`]: the study's text names the channels axial, sagittal, coronal
//! ([`ChannelOrder::Anatomical`], our default: for each of those planes we use the volume axis
//! closest to its normal, so an oblique or coronal acquisition still gives an axial-most
//! first channel); its code stacked the array axes in storage order
//! ([`ChannelOrder::ArrayAxes`]: planes across slices, then across rows, then across columns).

use crate::{Geometry, Volume};

/// Which plane goes into which channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    /// Axial, sagittal, coronal (the study's text).
    #[default]
    Anatomical,
    /// Planes across the slice axis, the row axis, the column axis (the study's code).
    ArrayAxes,
}

/// Why a composite cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompositeError {
    /// Image and mask grids differ.
    #[error("mask has {mask:?} voxels but the image {image:?}")]
    Shape { image: [usize; 3], mask: [usize; 3] },
    /// The mask marks nothing.
    #[error("the lesion mask is empty")]
    EmptyMask,
    /// Output size 0.
    #[error("composite size must be at least 1")]
    Size,
}

/// A `3 x size x size` image, channel-major, row-major within a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    /// Side length.
    pub size: usize,
    /// `3 * size * size` values in 0..1.
    pub data: Vec<f32>,
    /// For each channel, the volume axis held constant and the slice index chosen.
    pub planes: [(usize, usize); 3],
}

/// Volume axes (0 = i/columns, 1 = j/rows, 2 = k/slices) for the three channels.
pub fn channel_axes(g: &Geometry, order: ChannelOrder) -> [usize; 3] {
    match order {
        ChannelOrder::ArrayAxes => [2, 1, 0],
        ChannelOrder::Anatomical => {
            // Patient normals: axial = z (superior), sagittal = x (left), coronal = y (posterior).
            let dirs = [g.row_dir, g.col_dir, g.normal];
            let mut free = vec![0usize, 1, 2];
            let mut out = [0usize; 3];
            for (c, patient_axis) in [2usize, 0, 1].into_iter().enumerate() {
                let best = *free
                    .iter()
                    .max_by(|&&a, &&b| dirs[a][patient_axis].abs().total_cmp(&dirs[b][patient_axis].abs()))
                    .expect("three axes for three channels");
                out[c] = best;
                free.retain(|&a| a != best);
            }
            out
        }
    }
}

/// Build the composite of `image` around the lesion `mask`.
pub fn composite(
    image: &Volume<f32>,
    mask: &Volume<u8>,
    size: usize,
    order: ChannelOrder,
) -> Result<Composite, CompositeError> {
    let d = image.geometry.dims;
    if mask.geometry.dims != d {
        return Err(CompositeError::Shape { image: d, mask: mask.geometry.dims });
    }
    if size == 0 {
        return Err(CompositeError::Size);
    }
    let axes = channel_axes(&image.geometry, order);
    let mut data = Vec::with_capacity(3 * size * size);
    let mut planes = [(0, 0); 3];
    for (c, &axis) in axes.iter().enumerate() {
        // The two in-plane axes, in storage order (the faster one is the image's x).
        let (u, v) = match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        let at = |a: usize, x: usize, y: usize| -> usize {
            let mut ijk = [0usize; 3];
            ijk[axis] = a;
            ijk[u] = x;
            ijk[v] = y;
            image.geometry.index(ijk[0], ijk[1], ijk[2])
        };
        let area =
            |a: usize| (0..d[v]).map(|y| (0..d[u]).filter(|&x| mask.data[at(a, x, y)] != 0).count()).sum::<usize>();
        // Largest area; ties go to the first such slice.
        let (best, best_area) = (0..d[axis]).map(|a| (a, area(a))).fold((0, 0), |m, x| if x.1 > m.1 { x } else { m });
        if best_area == 0 {
            return Err(CompositeError::EmptyMask);
        }
        planes[c] = (axis, best);
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        for y in 0..d[v] {
            for x in 0..d[u] {
                if mask.data[at(best, x, y)] != 0 {
                    (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
                }
            }
        }
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        let crop: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let p = at(best, x0 + x, y0 + y);
                if mask.data[p] != 0 {
                    image.data[p].max(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        let resized = resize_bilinear(&crop, w, h, size, size);
        let top = resized.iter().fold(0.0f32, |m, &x| m.max(x));
        data.extend(resized.iter().map(|&x| if top > 0.0 { x / top } else { 0.0 }));
    }
    Ok(Composite { size, data, planes })
}

/// Bilinear resize of a row-major `w x h` image to `out_w x out_h`, half-pixel centres
/// (output pixel centre `(i + 0.5) * w / out_w - 0.5` in input pixels, clamped to the edges).
pub fn resize_bilinear(src: &[f32], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    let coord = |i: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let x = ((i as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).clamp(0.0, (n_in - 1) as f64);
        let x0 = x.floor() as usize;
        let x1 = (x0 + 1).min(n_in - 1);
        (x0, x1, (x - x0 as f64) as f32)
    };
    let xs: Vec<_> = (0..out_w).map(|i| coord(i, w, out_w)).collect();
    let mut out = Vec::with_capacity(out_w * out_h);
    for j in 0..out_h {
        let (y0, y1, ty) = coord(j, h, out_h);
        for &(x0, x1, tx) in &xs {
            let top = src[y0 * w + x0] * (1.0 - tx) + src[y0 * w + x1] * tx;
            let bottom = src[y1 * w + x0] * (1.0 - tx) + src[y1 * w + x1] * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dims: [usize; 3], row: [f64; 3], col: [f64; 3], normal: [f64; 3]) -> Geometry {
        Geometry { dims, spacing_mm: [1.0; 3], origin_mm: [0.0; 3], row_dir: row, col_dir: col, normal }
    }

    #[test]
    fn resize_reproduces_known_points() {
        // 2x2 -> 4x4 with half-pixel centres: output centres at -0.25, 0.25, 0.75, 1.25 input px.
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        assert_eq!(&out[0..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&out[12..16], &[2.0, 2.25, 2.75, 3.0]);
        // Identity size is the identity.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&src, 4, 3, 4, 3), src);
    }

    #[test]
    fn channels_follow_the_patient_for_any_acquisition_plane() {
        let axial = grid([4, 4, 4], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]);
        assert_eq!(channel_axes(&axial, ChannelOrder::Anatomical), [2, 0, 1]);
        // Coronal: rows run along -z (feet), slices along y.
        let coronal = grid([4, 4, 4], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]);
        assert_eq!(channel_axes(&coronal, ChannelOrder::Anatomical), [1, 0, 2]);
        assert_eq!(channel_axes(&coronal, ChannelOrder::ArrayAxes), [2, 1, 0]);
    }

    #[test]
    fn largest_slice_crop_zeroing_and_scale() {
        let g = grid([10, 8, 6], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]);
        let mut image = Volume::filled(g.clone(), 5.0f32);
        let mut mask = Volume::filled(g.clone(), 0u8);
        // Lesion: slice 2 holds a 3x2 block at i 4..=6, j 3..=4; slice 3 a single voxel.
        for (i, j, k) in [(4, 3, 2), (5, 3, 2), (6, 3, 2), (4, 4, 2), (5, 4, 2), (6, 4, 2), (5, 3, 3)] {
            mask.data[g.index(i, j, k)] = 1;
            image.data[g.index(i, j, k)] = (10 * i + j) as f32;
        }
        let c = composite(&image, &mask, 3, ChannelOrder::Anatomical).unwrap();
        assert_eq!(c.planes[0], (2, 2), "axial channel: slice 2 has the most lesion voxels");
        // Axial crop is 3 wide x 2 high, resized to 3x3: columns map 1:1 (x = i).
        let axial = &c.data[0..9];
        let top = 64.0f32; // the crop's largest value: i = 6, j = 4
        assert!((axial[0] - 43.0 / top).abs() < 1e-6, "{axial:?}");
        assert!((axial[2] - 63.0 / top).abs() < 1e-6);
        assert!((axial[8] - 1.0).abs() < 1e-6);
        // Sagittal (axis 0): slice i = 5 has three lesion voxels (two in k = 2, one in k = 3).
        assert_eq!(c.planes[1], (0, 5));
        // Outside-lesion voxels are zero: in the sagittal crop (j 3..=4 x k 2..=3), (j 4, k 3) is outside.
        let sag = &c.data[9..18];
        assert_eq!(sag[8], 0.0);
        assert!(c.data.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Background (5.0 everywhere else) never leaks in.
        let empty = Volume::filled(g.clone(), 0u8);
        assert_eq!(composite(&image, &empty, 3, ChannelOrder::Anatomical), Err(CompositeError::EmptyMask));
    }
}
