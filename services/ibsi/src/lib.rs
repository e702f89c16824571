//! Radiomics features as the Image Biomarker Standardisation Initiative defines them (IBSI 1,
//! Zwanenburg et al., Radiology 2020; reference manual arXiv:1612.07003), named by the tags of
//! the IBSI reference tables (`stat_mean`, `cm_joint_max_3D_avg`, `szm_sze_3D`, ...).
//!
//! [`roi::Roi`] holds a discretised ROI; each family is a module of pure functions:
//! [`intensity`] (local intensity, statistics, histogram, intensity-volume histogram),
//! [`texture`] (co-occurrence and run length matrices, six aggregations each), [`zones`] (size
//! and distance zone matrices) and [`neighbourhood`] (grey tone difference and grey level
//! dependence matrices), three aggregations each. [`extract`] runs them all.
//!
//! [`morphology`] has the morphological features, on the surface [`mesh`] and its convex hull.
//!
//! Resampling, re-segmentation, the study's 32-setting grid, the worker and the feature store
//! live in `renal-radiomics`; a grid's ROI is built once and re-binned per setting
//! ([`roi::Roi::rebinned`]), sharing what does not depend on the grey levels.
//!
//! Speed: `renal bench radiomics [--grid]` prints a table per family. The hot loops avoid
//! unpredictable branches (neighbour comparisons become bit masks or arithmetic), integer
//! division per voxel, and full-grid scratch arrays per call. Neighbour passes walk the ROI's
//! segments (runs of consecutive voxels, [`roi::Roi::segments`]): a segment's neighbours along
//! any offset are one slice of the padded grid, so the per-voxel loops vectorise. The local
//! intensity sphere sums, the one loop where wider vectors pay, also have an AVX2 build chosen
//! at run time (same additions in the same order, so the same bits).

pub mod autocorrelation;
pub mod intensity;
pub mod matrix;
pub mod mesh;
pub mod morphology;
pub mod neighbourhood;
pub mod roi;
pub mod texture;
pub mod zones;

/// Moran's I and Geary's C are summed directly, over every voxel pair, for ROIs of at most this
/// many voxels (8 million pairs); larger ROIs use the FFT convolution of [`autocorrelation`],
/// which gives the same sums up to rounding.
pub const MORAN_GEARY_DIRECT_MAX_VOXELS: usize = 4000;

/// A seeded xorshift64 generator, for the unit tests' random ROIs without a dependency.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Features in computation order: (IBSI tag, value).
pub type Features = Vec<(String, f64)>;

/// Every family this crate computes, on one discretised ROI: [`extract_unbinned`], the
/// intensity-volume histogram with IBSI's default discretisation (raw intensities when they are
/// whole numbers, else 1,000 bins) and no re-segmentation range, then [`extract_binned`].
pub fn extract(roi: &roi::Roi) -> Features {
    let mut out = extract_unbinned(roi);
    // The default discretisation fits any finite intensities.
    intensity::intensity_volume_histogram(roi, None, [None, None], &mut out).expect("IBSI's default IVH");
    out.extend(extract_binned(roi));
    out
}

/// The families that do not depend on the discretisation (morphology, local intensity,
/// intensity statistics): the same for every setting on one grid.
pub fn extract_unbinned(roi: &roi::Roi) -> Features {
    let mut out = Features::new();
    morphology::morphology(roi, MORAN_GEARY_DIRECT_MAX_VOXELS, &mut out);
    intensity::local_intensity(roi, &mut out);
    intensity::statistics(roi, &mut out);
    out
}

/// The families computed on the texture grey levels (intensity histogram and the six texture
/// matrices). The intensity-volume histogram has its own discretisation
/// ([`intensity::intensity_volume_histogram`]).
pub fn extract_binned(roi: &roi::Roi) -> Features {
    let mut out = Features::new();
    intensity::histogram(roi, &mut out);
    texture::glcm(roi, &mut out);
    texture::glrlm(roi, &mut out);
    zones::zone_families(roi, &mut out);
    neighbourhood::ngtdm_and_ngldm(roi, &mut out);
    out
}
