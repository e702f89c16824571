//! IBSI's diagnostic features (IBSI 1, the "Diagnostics" rows of the CT phantom's reference
//! tables): the image's and the ROI's dimensions, voxel counts and intensities after each
//! processing step, so a user comparing with another tool sees which step differs.
//!
//! Steps: `init` (the series as received), `interp` (after resampling; on the native grid the
//! same image, rounded if the setting rounds), `reseg` (after re-segmentation, which changes
//! only the intensity mask). Image rows (`*_img`) describe the whole image, not the region
//! around the lesion the extraction works on; ROI rows (`*_roi`) describe the intensity mask
//! (`int_mask_*`) and the morphological mask (`morph_mask_*`). Dimensions are voxels along x,
//! y, z; voxel sizes mm; intensities in the image's units.

use renal_ibsi::Features;
use renal_imaging::resample::IntensitySummary;

/// The processing steps diagnostics are reported after, in IBSI's order.
pub const STEPS: [&str; 3] = ["init", "interp", "reseg"];

/// The diagnostic tags, in IBSI's order: per step, the image's (not after re-segmentation,
/// which does not change the image), then the ROI's.
pub fn tags() -> Vec<String> {
    let mut out = Vec::with_capacity(60);
    for step in &STEPS[..2] {
        out.extend(image_tags(step));
    }
    for step in STEPS {
        out.extend(roi_tags(step));
    }
    out
}

fn image_tags(step: &str) -> Vec<String> {
    let mut out = Vec::new();
    for what in ["img_dim", "vox_dim"] {
        for axis in ["x", "y", "z"] {
            out.push(format!("{what}_{axis}_{step}_img"));
        }
    }
    for stat in ["mean", "min", "max"] {
        out.push(format!("{stat}_int_{step}_img"));
    }
    out
}

fn roi_tags(step: &str) -> Vec<String> {
    let mut out = Vec::new();
    for axis in ["x", "y", "z"] {
        out.push(format!("int_mask_dim_{axis}_{step}_roi"));
    }
    for mask in ["int", "morph"] {
        for axis in ["x", "y", "z"] {
            out.push(format!("{mask}_mask_bb_dim_{axis}_{step}_roi"));
        }
    }
    for mask in ["int", "morph"] {
        out.push(format!("{mask}_mask_vox_count_{step}_roi"));
    }
    for stat in ["mean", "min", "max"] {
        out.push(format!("int_mask_{stat}_int_{step}_roi"));
    }
    out
}

/// The image rows of `step`: dimensions, voxel size and intensities.
pub fn image(step: &str, dims: [usize; 3], spacing_mm: [f64; 3], summary: Option<IntensitySummary>) -> Features {
    let mut values: Vec<f64> = dims.iter().map(|&d| d as f64).collect();
    values.extend(spacing_mm);
    let s = summary.map_or([f64::NAN; 3], |s| [s.mean, s.min, s.max]);
    values.extend(s);
    image_tags(step).into_iter().zip(values).filter(|(_, v)| !v.is_nan()).collect()
}

/// The ROI rows of `step` for an intensity mask and a morphological mask on a grid of `dims`
/// (the whole image's; `values` and the masks may cover only part of it, as long as every mask
/// voxel is inside).
pub fn roi(
    step: &str,
    dims: [usize; 3],
    region: [usize; 3],
    values: &[f32],
    intensity: &[bool],
    morphology: &[bool],
) -> Features {
    let mut out: Vec<f64> = dims.iter().map(|&d| d as f64).collect();
    let (int_box, morph_box) = (bounding_box_dims(region, intensity), bounding_box_dims(region, morphology));
    out.extend(int_box.map(|d| d as f64));
    out.extend(morph_box.map(|d| d as f64));
    out.push(intensity.iter().filter(|&&m| m).count() as f64);
    out.push(morphology.iter().filter(|&&m| m).count() as f64);
    let s = IntensitySummary::of(values.iter().zip(intensity).filter(|(_, &m)| m).map(|(&v, _)| f64::from(v)));
    out.extend([s.mean, s.min, s.max]);
    roi_tags(step).into_iter().zip(out).filter(|(_, v)| !v.is_nan()).collect()
}

/// Extent in voxels along x, y, z of the set voxels of `mask` on a grid of `dims` (0 when none).
fn bounding_box_dims(dims: [usize; 3], mask: &[bool]) -> [usize; 3] {
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let c = [i % dims[0], i / dims[0] % dims[1], i / (dims[0] * dims[1])];
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    std::array::from_fn(|a| if lo[a] == usize::MAX { 0 } else { hi[a] - lo[a] + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_tags_as_ibsi_names_them() {
        let tags = tags();
        assert_eq!(tags.len(), 60);
        // Rows of IBSI's configuration D table.
        for t in ["img_dim_x_init_img", "vox_dim_z_interp_img", "max_int_interp_img", "morph_mask_bb_dim_y_init_roi"] {
            assert!(tags.contains(&t.to_string()), "{t}");
        }
        for t in ["int_mask_vox_count_reseg_roi", "morph_mask_vox_count_reseg_roi", "int_mask_mean_int_reseg_roi"] {
            assert!(tags.contains(&t.to_string()), "{t}");
        }
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), 60);
    }

    #[test]
    fn roi_rows_count_and_bound_the_masks() {
        // A 4 x 3 x 2 region; intensity mask two voxels, morphological mask three.
        let region = [4, 3, 2];
        let values: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let mut intensity = vec![false; 24];
        intensity[1] = true; // (1, 0, 0)
        intensity[1 + 4 * 2 + 12] = true; // (1, 2, 1)
        let mut morphology = intensity.clone();
        morphology[3] = true; // (3, 0, 0)
        let rows: std::collections::BTreeMap<String, f64> =
            roi("interp", [40, 30, 20], region, &values, &intensity, &morphology).into_iter().collect();
        assert_eq!(rows["int_mask_dim_x_interp_roi"], 40.0);
        assert_eq!(rows["int_mask_bb_dim_x_interp_roi"], 1.0);
        assert_eq!(rows["int_mask_bb_dim_y_interp_roi"], 3.0);
        assert_eq!(rows["int_mask_bb_dim_z_interp_roi"], 2.0);
        assert_eq!(rows["morph_mask_bb_dim_x_interp_roi"], 3.0);
        assert_eq!(rows["int_mask_vox_count_interp_roi"], 2.0);
        assert_eq!(rows["morph_mask_vox_count_interp_roi"], 3.0);
        assert_eq!(rows["int_mask_mean_int_interp_roi"], (1.0 + 21.0) / 2.0);
        assert_eq!((rows["int_mask_min_int_interp_roi"], rows["int_mask_max_int_interp_roi"]), (1.0, 21.0));
    }
}
