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
        let area = |a: usize| plane(mask, axis, a).0.iter().filter(|&&m| m != 0).count();
        // Largest area; ties go to the first such slice.
        let (best, best_area) = (0..d[axis]).map(|a| (a, area(a))).fold((0, 0), |m, x| if x.1 > m.1 { x } else { m });
        if best_area == 0 {
            return Err(CompositeError::EmptyMask);
        }
        planes[c] = (axis, best);
        let (pixels, w, _) = plane(image, axis, best);
        let (inside, _, _) = plane(mask, axis, best);
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        for (p, _) in inside.iter().enumerate().filter(|(_, &m)| m != 0) {
            let (x, y) = (p % w, p / w);
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
        let crop: Vec<f32> = (y0..=y1)
            .flat_map(|y| (x0..=x1).map(move |x| y * w + x))
            .map(|p| if inside[p] != 0 { pixels[p].max(0.0) } else { 0.0 })
            .collect();
        let resized = resize_bilinear(&crop, cw, ch, size, size);
        let top = resized.iter().fold(0.0f32, |m, &x| m.max(x));
        data.extend(resized.iter().map(|&x| if top > 0.0 { x / top } else { 0.0 }));
    }
    Ok(Composite { size, data, planes })
}

/// The two volume axes spanning the plane across `axis`, in storage order: the plane's x, then y.
fn in_plane_axes(axis: usize) -> (usize, usize) {
    match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

/// The plane of `v` where volume axis `axis` equals `index`: row-major pixels, width, height.
/// Its x runs along the faster of the two remaining axes (so axial planes look as stored).
pub fn plane<T: Copy>(v: &Volume<T>, axis: usize, index: usize) -> (Vec<T>, usize, usize) {
    let d = v.geometry.dims;
    let (u, w) = in_plane_axes(axis);
    let mut ijk = [0usize; 3];
    ijk[axis] = index;
    let mut out = Vec::with_capacity(d[u] * d[w]);
    for y in 0..d[w] {
        for x in 0..d[u] {
            ijk[u] = x;
            ijk[w] = y;
            out.push(v.data[v.geometry.index(ijk[0], ijk[1], ijk[2])]);
        }
    }
    (out, d[u], d[w])
}

/// An RGB picture for a person to check a composite: the top row shows the chosen plane of each
/// channel whole, in physical proportions (superior up), with the lesion outlined in red; the
/// bottom row the three channels as the network sees them. Returns pixels (RGB, row-major),
/// width (`3 * size`) and height (`2 * size`).
pub fn preview_rgb(image: &Volume<f32>, mask: &Volume<u8>, c: &Composite) -> (Vec<u8>, usize, usize) {
    let size = c.size;
    let (width, height) = (3 * size, 2 * size);
    let mut rgb = vec![0u8; width * height * 3];
    let mut put = |x: usize, y: usize, px: [u8; 3]| rgb[(y * width + x) * 3..][..3].copy_from_slice(&px);
    let grey = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    for (channel, &(axis, index)) in c.planes.iter().enumerate() {
        let (pixels, w, h) = plane(image, axis, index);
        let (inside, _, _) = plane(mask, axis, index);
        let (u, v) = in_plane_axes(axis);
        let g = &image.geometry;
        let (w_mm, h_mm) = (w as f64 * g.spacing_mm[u], h as f64 * g.spacing_mm[v]);
        let fit = size as f64 / w_mm.max(h_mm);
        let (pw, ph) = (((w_mm * fit).round() as usize).clamp(1, size), ((h_mm * fit).round() as usize).clamp(1, size));
        let shown = resize_bilinear(&pixels, w, h, pw, ph);
        let lesion: Vec<bool> =
            resize_bilinear(&inside.iter().map(|&m| f32::from(m.min(1))).collect::<Vec<_>>(), w, h, pw, ph)
                .iter()
                .map(|&m| m >= 0.5)
                .collect();
        let mut sorted = shown.clone();
        sorted.sort_by(f32::total_cmp);
        let top = sorted[(sorted.len() - 1) * 995 / 1000].max(f32::MIN_POSITIVE);
        let flip = v == 2 && g.normal[2] > 0.0; // slice index runs superior: draw it upwards
        let (ox, oy) = (channel * size + (size - pw) / 2, (size - ph) / 2);
        for y in 0..ph {
            for x in 0..pw {
                let p = y * pw + x;
                let edge = lesion[p]
                    && (x == 0
                        || y == 0
                        || x + 1 == pw
                        || y + 1 == ph
                        || !lesion[p - 1]
                        || !lesion[p + 1]
                        || !lesion[p - pw]
                        || !lesion[p + pw]);
                let g = grey(shown[p] / top);
                let row = if flip { ph - 1 - y } else { y };
                put(ox + x, oy + row, if edge { [255, 40, 40] } else { [g, g, g] });
            }
        }
        for y in 0..size {
            for x in 0..size {
                let g = grey(c.data[channel * size * size + y * size + x]);
                put(channel * size + x, size + y, [g, g, g]);
            }
        }
    }
    (rgb, width, height)
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

/// Float32 values as little-endian bytes: the composite blob format (`renal.lesions` carries
/// composites as `3 x S x S` of these, channel-major).
pub fn encode_f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`encode_f32_le`]; `None` when the length is not a multiple of 4.
pub fn decode_f32_le(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes
        .len()
        .is_multiple_of(4)
        .then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The side S of a `3 x S x S` composite of `values` floats, if it is one (S from 8 to 1,024).
pub fn side_of(values: usize) -> Option<usize> {
    let s = ((values / 3) as f64).sqrt().round() as usize;
    (values.is_multiple_of(3) && s * s * 3 == values && (8..=1024).contains(&s)).then_some(s)
}

/// Why bytes are not a composite blob.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    /// Not `3 x S x S` float32.
    #[error("has {0} bytes, not 3 x S x S float32 with S from 8 to 1,024")]
    Length(usize),
    /// NaN or infinite values.
    #[error("has non-finite values")]
    NotFinite,
}

/// Read a composite blob: its side and values, checked for shape and finite values.
pub fn decode_blob(bytes: &[u8]) -> Result<(usize, Vec<f32>), BlobError> {
    let values = decode_f32_le(bytes).ok_or(BlobError::Length(bytes.len()))?;
    let side = side_of(values.len()).ok_or(BlobError::Length(bytes.len()))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(BlobError::NotFinite);
    }
    Ok((side, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_blobs_round_trip_and_bad_ones_are_named() {
        assert_eq!(side_of(3 * 200 * 200), Some(200));
        assert_eq!(side_of(3 * 96 * 96), Some(96));
        assert_eq!(side_of(3 * 200 * 200 - 3), None);
        assert_eq!(side_of(250), None);
        assert_eq!(side_of(3 * 4 * 4), None, "too small");
        assert_eq!(side_of(0), None);
        let values: Vec<f32> = (0..3 * 8 * 8).map(|i| i as f32 / 7.0).collect();
        assert_eq!(decode_blob(&encode_f32_le(&values)), Ok((8, values.clone())));
        assert_eq!(decode_f32_le(&[0u8; 6]), None);
        assert_eq!(decode_blob(&[0u8; 1000]), Err(BlobError::Length(1000)));
        let mut bad = values;
        bad[5] = f32::NAN;
        assert_eq!(decode_blob(&encode_f32_le(&bad)), Err(BlobError::NotFinite));
    }

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

    #[test]
    fn preview_outlines_the_lesion_and_shows_the_channels() {
        // 20x20x10 at 1x1x2 mm; a 6x6x3 lesion brighter than its surroundings.
        let g = grid([20, 20, 10], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]);
        let g = Geometry { spacing_mm: [1.0, 1.0, 2.0], ..g };
        let mut image = Volume::filled(g.clone(), 1.0f32);
        let mut mask = Volume::filled(g.clone(), 0u8);
        for k in 4..7 {
            for j in 7..13 {
                for i in 7..13 {
                    mask.data[g.index(i, j, k)] = 1;
                    image.data[g.index(i, j, k)] = 3.0;
                }
            }
        }
        let c = composite(&image, &mask, 40, ChannelOrder::Anatomical).unwrap();
        let (rgb, w, h) = preview_rgb(&image, &mask, &c);
        assert_eq!((w, h, rgb.len()), (120, 80, 120 * 80 * 3));
        let px = |x: usize, y: usize| [rgb[(y * w + x) * 3], rgb[(y * w + x) * 3 + 1], rgb[(y * w + x) * 3 + 2]];
        // Axial panel (x 0..40, y 0..40): 20 mm square, scaled 2x; the lesion spans 14..26.
        assert_eq!(px(14, 20), [255, 40, 40], "left edge of the lesion is outlined");
        assert_eq!(px(20, 20), [255, 255, 255], "lesion interior is the brightest grey");
        assert!(px(5, 20)[0] < 120 && px(5, 20)[0] == px(5, 20)[1], "background is darker grey: {:?}", px(5, 20));
        // Sagittal panel: 20 mm wide (j) by 20 mm high (k at 2 mm), so it fills the square too.
        assert_eq!(px(40 + 20, 20), [255, 255, 255]);
        // Bottom row: the composite itself, all lesion (uniform 3.0 -> 1.0 -> 255).
        for channel in 0..3 {
            assert_eq!(px(channel * 40 + 20, 60), [255, 255, 255]);
        }
    }
}
