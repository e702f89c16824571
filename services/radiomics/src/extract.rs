//! One lesion series to feature sets: lay each setting's grid over the whole image (IBSI 1,
//! section 2.4: same centre, `ceil(n s / s')` voxels), compute only the region of it around the
//! mask (the same samples as the whole grid would hold, so the crop changes nothing), round if
//! the setting says so, re-segment, discretise and compute every IBSI family. The families that
//! do not depend on the grey levels are computed once per grid and shared by its settings.
//!
//! The region keeps [`CROP_MARGIN_MM`] (at least two old voxels) around the mask's bounding box:
//! enough for the local intensity sphere (6.2 mm) and for every new voxel whose interpolation
//! touches the mask. Each setting's row also carries IBSI's diagnostic features
//! ([`crate::diagnostics`]); the interpolated image's mean, minimum and maximum are over the
//! whole new grid, streamed slice by slice, and left out for grids over
//! [`MAX_SUMMARY_VOXELS`].

use crate::diagnostics;
use crate::settings::{Resegmentation, Setting};
use renal_ibsi::intensity::intensity_volume_histogram;
use renal_ibsi::roi::{Discretisation, Roi, RoiError};
use renal_ibsi::Features;
use renal_imaging::resample::{bounding_box, crop, stored_intensity, IntensitySummary, IsotropicGrid};
use renal_imaging::Volume;

/// Margin kept around the mask's bounding box, mm.
pub const CROP_MARGIN_MM: f64 = 10.0;
/// Largest region around the mask accepted, voxels (an absurd mask or grid fails rather than
/// eats the machine).
pub const MAX_CROP_VOXELS: usize = 16_000_000;
/// Largest ROI on any setting's grid, voxels.
pub const MAX_ROI_VOXELS: usize = 2_000_000;
/// Largest whole grid whose interpolated intensities are summarised for the diagnostics.
pub const MAX_SUMMARY_VOXELS: usize = 200_000_000;

/// Why a series cannot be processed at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// Image and mask are not on the same grid.
    #[error("the mask's grid {mask:?} is not the image's {image:?}")]
    GridMismatch { image: [usize; 3], mask: [usize; 3] },
    /// No voxel in the mask.
    #[error("the mask is empty")]
    EmptyMask,
    /// The region around the mask is too large to process.
    #[error("the region around the mask has {voxels} voxels (at most {MAX_CROP_VOXELS})")]
    TooLarge { voxels: usize },
}

/// What a grid depends on: spacing, rounding and the mask threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GridKey {
    spacing_mm: Option<f64>,
    round: bool,
    mask_threshold: f64,
}

/// The region of one grid around the mask, and its diagnostics.
struct Grid {
    key: GridKey,
    image: Volume<f32>,
    mask: Volume<u8>,
    /// Dimensions of the whole grid.
    dims: [usize; 3],
    /// Image diagnostics (initial and interpolated) and the ROI's initial and interpolated ones.
    diagnostics: Features,
}

/// One grid and re-segmentation, ready for its settings.
struct Prepared {
    key: (GridKey, Option<Resegmentation>),
    /// Voxels of the intensity mask.
    roi_voxels: usize,
    /// The ROI (binned into one level; each setting re-bins it), or why there is none.
    roi: Result<Roi, String>,
    /// Morphology, local intensity and statistics, once the first setting has computed them.
    unbinned: Option<Features>,
    /// The grid's diagnostics and the re-segmented ROI's.
    diagnostics: Features,
}

/// The region of `key`'s grid around `bbox` (the mask's, on the image's grid), with the
/// `init` diagnostics extended by the interpolated ones.
fn grid(
    image: &Volume<f32>,
    mask: &Volume<u8>,
    bbox: [[usize; 2]; 3],
    key: GridKey,
    init: &Features,
) -> Result<Grid, ExtractError> {
    let g = &image.geometry;
    let (img, msk, dims, spacing, summary) = match key.spacing_mm {
        None => {
            let margin = (0..3).map(|a| (CROP_MARGIN_MM / g.spacing_mm[a]).ceil() as usize).max().unwrap_or(1);
            let voxels: usize = (0..3)
                .map(|a| (bbox[a][1] + margin).min(g.dims[a] - 1) + 1 - bbox[a][0].saturating_sub(margin))
                .product();
            if voxels > MAX_CROP_VOXELS {
                return Err(ExtractError::TooLarge { voxels });
            }
            // The acquired grid's values, rounded as interpolated ones would be.
            let mut img = crop(image, bbox, margin);
            img.data.iter_mut().for_each(|x| *x = stored_intensity(f64::from(*x), key.round));
            let summary =
                IntensitySummary::of(image.data.iter().map(|&x| f64::from(stored_intensity(f64::from(x), key.round))));
            (img, crop(mask, bbox, margin), g.dims, g.spacing_mm, Some(summary))
        }
        Some(s) => {
            let plan = IsotropicGrid::new(g, s);
            let max_old = g.spacing_mm.iter().fold(0.0f64, |m, &x| m.max(x));
            let region = plan.region_around(bbox, CROP_MARGIN_MM.max(2.0 * max_old));
            let voxels = plan.region_geometry(region).len();
            if voxels > MAX_CROP_VOXELS {
                return Err(ExtractError::TooLarge { voxels });
            }
            let summary = (plan.grid.len() <= MAX_SUMMARY_VOXELS).then(|| plan.image_summary(image, key.round));
            let img = plan.image(image, region, key.round);
            let msk = plan.mask(mask, region, key.mask_threshold);
            (img, msk, plan.grid.dims, plan.grid.spacing_mm, summary)
        }
    };
    let mut diagnostics = init.clone();
    diagnostics.extend(diagnostics::image("interp", dims, spacing, summary));
    let m: Vec<bool> = msk.data.iter().map(|&m| m != 0).collect();
    diagnostics.extend(diagnostics::roi("interp", dims, img.geometry.dims, &img.data, &m, &m));
    Ok(Grid { key, image: img, mask: msk, dims, diagnostics })
}

/// The ROI of a grid: the intensity mask after any re-segmentation, the morphological mask as
/// resampled.
fn prepare(grid: &Grid, resegmentation: Option<&Resegmentation>) -> Prepared {
    let (img, msk) = (&grid.image, &grid.mask);
    let morphology: Vec<bool> = msk.data.iter().map(|&m| m != 0).collect();
    let intensity = match resegmentation {
        Some(r) => r.apply(&img.data, &msk.data),
        None => morphology.clone(),
    };
    let mut diagnostics = grid.diagnostics.clone();
    diagnostics.extend(diagnostics::roi("reseg", grid.dims, img.geometry.dims, &img.data, &intensity, &morphology));
    let roi_voxels = intensity.iter().filter(|&&m| m).count();
    let roi = if roi_voxels > MAX_ROI_VOXELS {
        Err(format!("{roi_voxels} ROI voxels (at most {MAX_ROI_VOXELS})"))
    } else if roi_voxels == 0 && resegmentation.is_some() && morphology.contains(&true) {
        Err("no ROI voxel left after re-segmentation".to_string())
    } else {
        // One level cannot fail on finite intensities, so only the ROI itself can be refused.
        Roi::new(
            img.geometry.dims,
            img.geometry.spacing_mm,
            img.data.iter().map(|&v| f64::from(v)).collect(),
            intensity,
            Discretisation::FixedBinNumber { bins: 1 },
        )
        .and_then(|roi| roi.with_morphology_mask(morphology))
        .map_err(describe)
    };
    Prepared { key: (grid.key, resegmentation.copied()), roi_voxels, roi, unbinned: None, diagnostics }
}

/// Why an ROI gave no features, for its row.
fn describe(e: RoiError) -> String {
    match e {
        RoiError::Empty => "no ROI voxel on this grid".to_string(),
        e => e.to_string(),
    }
}

/// The features of one setting, or why that setting gave none (a lesion smaller than one voxel
/// of a coarse grid, say).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingFeatures {
    /// The setting.
    pub setting: Setting,
    /// ROI voxels on the setting's grid.
    pub roi_voxels: usize,
    /// Features, or the reason there are none.
    pub features: Result<Features, String>,
    /// IBSI's diagnostic features ([`crate::diagnostics`]), reported even when the features are
    /// not.
    pub diagnostics: Features,
}

/// Every setting's features for one series.
pub fn extract_series(
    image: &Volume<f32>,
    mask: &Volume<u8>,
    settings: &[Setting],
) -> Result<Vec<SettingFeatures>, ExtractError> {
    if !image.geometry.same_grid(&mask.geometry, 1e-3) || image.data.len() != mask.data.len() {
        return Err(ExtractError::GridMismatch { image: image.geometry.dims, mask: mask.geometry.dims });
    }
    let bbox = bounding_box(mask).ok_or(ExtractError::EmptyMask)?;
    let dims = image.geometry.dims;
    let mut init = diagnostics::image(
        "init",
        dims,
        image.geometry.spacing_mm,
        Some(IntensitySummary::of(image.data.iter().map(|&x| f64::from(x)))),
    );
    let init_mask: Vec<bool> = mask.data.iter().map(|&m| m != 0).collect();
    init.extend(diagnostics::roi("init", dims, dims, &image.data, &init_mask, &init_mask));
    let mut grids: Vec<Grid> = Vec::new();
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut out = Vec::with_capacity(settings.len());
    for setting in settings {
        let key = GridKey {
            spacing_mm: setting.spacing_mm,
            round: setting.round_intensities,
            mask_threshold: setting.mask_threshold(),
        };
        let pkey = (key, setting.resegmentation);
        if !prepared.iter().any(|p| p.key == pkey) {
            if !grids.iter().any(|g| g.key == key) {
                grids.push(grid(image, mask, bbox, key, &init)?);
            }
            let g = grids.iter().find(|g| g.key == key).expect("just added");
            prepared.push(prepare(g, setting.resegmentation.as_ref()));
        }
        let p = prepared.iter_mut().find(|p| p.key == pkey).expect("just added");
        let range = setting.resegmentation.map_or([None, None], |r| [r.range_min, r.range_max]);
        let features = match &p.roi {
            Err(e) => Err(e.clone()),
            Ok(base) => base.rebinned(setting.discretisation).map_err(describe).map(|roi| {
                let mut features = p.unbinned.get_or_insert_with(|| renal_ibsi::extract_unbinned(&roi)).clone();
                // A discretisation that does not fit (raw levels of fractional intensities) leaves
                // the IVH columns empty rather than the whole row.
                let _ = intensity_volume_histogram(&roi, setting.ivh, range, &mut features);
                features.extend(renal_ibsi::extract_binned(&roi));
                features
            }),
        };
        out.push(SettingFeatures {
            setting: *setting,
            roi_voxels: p.roi_voxels,
            features,
            diagnostics: p.diagnostics.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_imaging::Geometry;

    fn geometry(dims: [usize; 3], spacing: [f64; 3]) -> Geometry {
        Geometry {
            dims,
            spacing_mm: spacing,
            origin_mm: [0.0; 3],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
        }
    }

    /// A sphere of radius `r_mm` on a grid, with an intensity ramp.
    pub(crate) fn sphere(dims: [usize; 3], spacing: [f64; 3], r_mm: f64) -> (Volume<f32>, Volume<u8>) {
        let g = geometry(dims, spacing);
        let c: [f64; 3] = std::array::from_fn(|a| (dims[a] as f64 - 1.0) / 2.0 * spacing[a]);
        let (mut img, mut msk) = (Vec::new(), Vec::new());
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = [i as f64 * spacing[0], j as f64 * spacing[1], k as f64 * spacing[2]];
                    let d2: f64 = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum();
                    img.push((100.0 + 3.0 * p[0] + 2.0 * p[1] - p[2]) as f32);
                    msk.push(u8::from(d2 <= r_mm * r_mm));
                }
            }
        }
        (Volume { geometry: g.clone(), data: img }, Volume { geometry: g, data: msk })
    }

    #[test]
    fn each_setting_gets_its_grid_and_levels() {
        let (img, msk) = sphere([40, 40, 12], [0.8, 0.8, 3.0], 8.0);
        let settings = [
            Setting::new(None, Discretisation::FixedBinNumber { bins: 8 }),
            Setting::new(Some(2.0), Discretisation::FixedBinNumber { bins: 16 }),
            Setting::new(Some(2.0), Discretisation::EqualisedBinNumber { bins: 16 }),
        ];
        let out = extract_series(&img, &msk, &settings).unwrap();
        let value = |i: usize, tag: &str| -> f64 {
            out[i].features.as_ref().unwrap().iter().find(|(t, _)| t == tag).unwrap().1
        };
        assert_eq!(out[0].roi_voxels, msk.count_nonzero(), "native grid keeps the mask");
        // A sphere of 8 mm: 2144.7 mm³; the 2 mm grid's voxel volume is within 10%.
        let v = 4.0 / 3.0 * std::f64::consts::PI * 512.0;
        assert!((value(1, "morph_vol_approx") - v).abs() / v < 0.1, "{}", value(1, "morph_vol_approx"));
        assert_eq!(out[1].roi_voxels, out[2].roi_voxels, "same grid");
        // Equalisation changes only the grey levels.
        assert_eq!(value(1, "stat_mean"), value(2, "stat_mean"));
        assert_ne!(value(1, "cm_joint_max_3D_avg"), value(2, "cm_joint_max_3D_avg"));
        // Levels 1..=Nb: the grey-level mean lies in range.
        assert!((1.0..=16.0).contains(&value(1, "ih_mean")));
        // Sharing the grid's unbinned families changes nothing: each setting equals a
        // stand-alone extraction of its own ROI.
        for (i, s) in settings.iter().enumerate() {
            let alone = extract_series(&img, &msk, std::slice::from_ref(s)).unwrap();
            assert_eq!(alone[0].features, out[i].features, "{}", s.label());
        }
    }

    #[test]
    fn bad_masks_are_refused_and_a_vanishing_roi_is_reported() {
        let (img, msk) = sphere([20, 20, 10], [1.0; 3], 4.0);
        let empty = Volume { geometry: msk.geometry.clone(), data: vec![0; msk.data.len()] };
        let s = [Setting::new(Some(4.0), Discretisation::FixedBinNumber { bins: 8 })];
        assert_eq!(extract_series(&img, &empty, &s).unwrap_err(), ExtractError::EmptyMask);
        let other = Volume { geometry: geometry([20, 20, 9], [1.0; 3]), data: vec![1; 3600] };
        assert!(matches!(extract_series(&img, &other, &s).unwrap_err(), ExtractError::GridMismatch { .. }));
        // One voxel lesion: nothing left at 4 mm, said so for that setting only.
        let mut dot = empty.clone();
        dot.data[img.geometry.index(10, 10, 5)] = 1;
        let out = extract_series(&img, &dot, &s).unwrap();
        assert_eq!(out[0].features.as_ref().unwrap_err(), "no ROI voxel on this grid");
    }
}
