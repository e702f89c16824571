//! One lesion series to feature sets: crop around the mask, resample to each setting's grid
//! (IBSI: trilinear for the image, trilinear then >= 0.5 for the mask, grids aligned on the
//! cropped region's centre), discretise and compute every IBSI family. The families that do
//! not depend on the grey levels are computed once per grid and shared by its settings.
//!
//! The crop keeps [`CROP_MARGIN_MM`] around the mask's bounding box, enough for the local
//! intensity sphere (6.2 mm) and the interpolation at 4 mm spacing. Aligning the new grid on
//! the crop rather than on the whole image moves it by less than one new voxel; MIRP crops the
//! same way before resampling.

use crate::settings::{Resegmentation, Setting};
use renal_ibsi::roi::{Discretisation, Roi, RoiError};
use renal_ibsi::Features;
use renal_imaging::resample::{bounding_box, crop, isotropic_grid, resample, resample_mask};
use renal_imaging::Volume;

/// Margin kept around the mask's bounding box, mm.
pub const CROP_MARGIN_MM: f64 = 10.0;
/// Largest cropped region accepted, voxels (an absurd mask or grid fails rather than eats the
/// machine).
pub const MAX_CROP_VOXELS: usize = 16_000_000;
/// Largest ROI on any setting's grid, voxels.
pub const MAX_ROI_VOXELS: usize = 2_000_000;

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

/// What the unbinned families depend on: the grid spacing and the re-segmentation.
type GridKey = (Option<f64>, Option<Resegmentation>);

/// One grid and re-segmentation, ready for its settings.
struct Prepared {
    /// Voxels of the intensity mask.
    roi_voxels: usize,
    /// The ROI (binned into one level; each setting re-bins it), or why there is none.
    roi: Result<Roi, String>,
    /// Morphology and intensity features, once the first setting has computed them.
    unbinned: Option<Features>,
}

/// The ROI of a resampled grid: the intensity mask after any re-segmentation, the morphological
/// mask as resampled.
fn prepare(img: &Volume<f32>, msk: &Volume<u8>, resegmentation: Option<&Resegmentation>) -> Prepared {
    let morphology: Vec<bool> = msk.data.iter().map(|&m| m != 0).collect();
    let intensity = match resegmentation {
        Some(r) => r.apply(&img.data, &msk.data),
        None => morphology.clone(),
    };
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
    Prepared { roi_voxels, roi, unbinned: None }
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
    let margin = (0..3).map(|a| (CROP_MARGIN_MM / image.geometry.spacing_mm[a]).ceil() as usize).max().unwrap_or(1);
    let crop_dims: Vec<usize> = (0..3)
        .map(|a| (bbox[a][1] + margin).min(image.geometry.dims[a] - 1) + 1 - bbox[a][0].saturating_sub(margin))
        .collect();
    let voxels: usize = crop_dims.iter().product();
    if voxels > MAX_CROP_VOXELS {
        return Err(ExtractError::TooLarge { voxels });
    }
    let (image, mask) = (crop(image, bbox, margin), crop(mask, bbox, margin));

    // Resampled volumes per spacing; per spacing and re-segmentation, the ROI (discretised per
    // setting by re-binning) and the families that do not depend on the grey levels.
    let mut grids: Vec<(Option<f64>, Volume<f32>, Volume<u8>)> = Vec::new();
    let mut prepared: Vec<(GridKey, Prepared)> = Vec::new();
    let mut out = Vec::with_capacity(settings.len());
    for &setting in settings {
        let key = (setting.spacing_mm, setting.resegmentation);
        if !prepared.iter().any(|(k, _)| *k == key) {
            if !grids.iter().any(|(s, _, _)| *s == setting.spacing_mm) {
                let (img, msk) = match setting.spacing_mm {
                    None => (image.clone(), mask.clone()),
                    Some(s) => {
                        let g = isotropic_grid(&image.geometry, s);
                        if g.len() > MAX_CROP_VOXELS {
                            return Err(ExtractError::TooLarge { voxels: g.len() });
                        }
                        (resample(&image, &g), resample_mask(&mask, &g))
                    }
                };
                grids.push((setting.spacing_mm, img, msk));
            }
            let (_, img, msk) = grids.iter().find(|(s, _, _)| *s == setting.spacing_mm).expect("just added");
            prepared.push((key, prepare(img, msk, setting.resegmentation.as_ref())));
        }
        let (_, p) = prepared.iter_mut().find(|(k, _)| *k == key).expect("just added");
        let features = match &p.roi {
            Err(e) => Err(e.clone()),
            Ok(base) => base.rebinned(setting.discretisation).map_err(describe).map(|roi| {
                let mut features = p.unbinned.get_or_insert_with(|| renal_ibsi::extract_unbinned(&roi)).clone();
                features.extend(renal_ibsi::extract_binned(&roi));
                features
            }),
        };
        out.push(SettingFeatures { setting, roi_voxels: p.roi_voxels, features });
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
            Setting {
                spacing_mm: None,
                discretisation: Discretisation::FixedBinNumber { bins: 8 },
                resegmentation: None,
            },
            Setting {
                spacing_mm: Some(2.0),
                discretisation: Discretisation::FixedBinNumber { bins: 16 },
                resegmentation: None,
            },
            Setting {
                spacing_mm: Some(2.0),
                discretisation: Discretisation::EqualisedBinNumber { bins: 16 },
                resegmentation: None,
            },
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
        let s = [Setting {
            spacing_mm: Some(4.0),
            discretisation: Discretisation::FixedBinNumber { bins: 8 },
            resegmentation: None,
        }];
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
