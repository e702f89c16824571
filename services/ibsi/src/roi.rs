//! An ROI ready for feature extraction: intensities on a grid, the ROI mask, and the grey level
//! of every ROI voxel after discretisation (IBSI 1, §2.7).

use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Per slice holding ROI voxels: its z and a range of one of the ROI's lists.
pub type PerSlice = Vec<(usize, Range<usize>)>;

/// How intensities become grey levels 1..=Ng.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Discretisation {
    /// The intensities already are grey levels (whole numbers from 1); Ng is the largest.
    /// IBSI's digital phantom is computed this way.
    None,
    /// Fixed bin number (IBSI `FBN`): `floor(Nb (x - min) / (max - min)) + 1`, the maximum in
    /// bin Nb; min and max over the ROI. Ng = Nb.
    FixedBinNumber {
        /// Nb.
        bins: u32,
    },
    /// Fixed bin number after histogram equalisation (the study's "FBN with equalisation";
    /// IBSI 1 does not define it): each intensity is replaced by its rank fraction
    /// `F(x) = #{ROI voxels with intensity <= x} / N`, then binned like
    /// [`Discretisation::FixedBinNumber`] between the smallest and largest F. Only the grey
    /// levels change; intensity features still see the intensities. Ng = Nb.
    EqualisedBinNumber {
        /// Nb.
        bins: u32,
    },
    /// Fixed bin size (IBSI `FBS`): `floor((x - lower) / width) + 1`; Ng is the largest level
    /// in the ROI.
    FixedBinSize {
        /// Bin width, in intensity units.
        width: f64,
        /// Lower bound (the re-segmentation range's, or the ROI minimum).
        lower: f64,
    },
}

/// Why an ROI cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoiError {
    /// The arrays do not fit the grid.
    #[error("grid {dims:?} has {voxels} voxels; got {image} intensities and {mask} mask values")]
    Shape { dims: [usize; 3], voxels: usize, image: usize, mask: usize },
    /// No voxel in the mask.
    #[error("the mask is empty")]
    Empty,
    /// An intensity in the ROI is NaN or infinite.
    #[error("an intensity in the ROI is not finite")]
    NonFinite,
    /// `Discretisation::None` on intensities that are not whole numbers from 1.
    #[error("intensity {0} is not a grey level (a whole number from 1); choose a discretisation")]
    NotALevel(f64),
    /// A setting that cannot be used.
    #[error("discretisation: {0}")]
    Setting(String),
    /// The discretisation gives more grey levels than the texture matrices can hold.
    #[error("{ng} grey levels; at most {MAX_GREY_LEVELS} are supported (choose fewer bins or a wider bin size)")]
    TooManyLevels { ng: u32 },
}

/// The most grey levels an ROI may have. Texture matrices are dense over levels: a per-slice
/// co-occurrence matrix takes (Ng+1)² x 8 bytes, and the 2D aggregations keep 4 per slice
/// (at this limit, 33 MB per slice). IBSI's settings and the study's grid use at most 64.
pub const MAX_GREY_LEVELS: u32 = 1024;

/// The grid, the intensities, the mask and the grey levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    /// Voxels along x, y, z (x fastest in memory).
    pub dims: [usize; 3],
    /// Voxel spacing, mm.
    pub spacing_mm: [f64; 3],
    /// Every voxel's intensity (local intensity reads around the ROI too); shared with
    /// re-binned copies.
    pub image: Arc<Vec<f64>>,
    /// Voxels in the ROI.
    pub mask: Arc<Vec<bool>>,
    /// Number of grey levels.
    pub ng: u32,
    /// The grey levels on the padded grid: the morphological mask's bounding box (which holds
    /// the intensity mask's) with one voxel of padding on every side, 0 outside the ROI and in
    /// the padding, so a neighbour at Chebyshev distance 1 is `p + offset` with no bounds check.
    /// Two bytes a voxel (at most [`MAX_GREY_LEVELS`]), and the size of the lesion, not of the
    /// image, so it stays in cache.
    pub padded: Vec<u16>,
    /// Dimensions of the padded grid.
    pub padded_dims: [usize; 3],
    /// Grid coordinates of the bounding box's lowest corner (padded voxel (1, 1, 1)).
    pub padded_origin: [usize; 3],
    /// Padded indices of the ROI's voxels, in memory order (so grouped by slice).
    pub padded_voxels: Vec<usize>,
    /// Indices of the same voxels on the grid (unpadded), in the same order.
    pub voxel_index: Vec<usize>,
    /// Per slice holding ROI voxels: z and the range of `padded_voxels` in it.
    pub slice_voxels: PerSlice,
    /// The same voxels as ranges of consecutive padded indices (pieces of x-rows: the padding
    /// keeps each within a row), in memory order. A pass over a segment reads its neighbours
    /// along any offset as one slice of `padded`.
    pub segments: Vec<Range<usize>>,
    /// Per slice holding ROI voxels: z and its range of `segments`.
    pub slice_segments: PerSlice,
    /// The smallest and largest grid coordinate of the ROI's voxels along each axis.
    bbox: Bounds,
    /// The same for the morphological mask (the padded grid's box).
    morphology_bbox: Bounds,
    /// The morphological mask when it differs from the intensity mask `mask` (IBSI: the ROI
    /// before re-segmentation); morphology reads it, every other family reads `mask`.
    pub morphology_mask: Option<Vec<bool>>,
    /// What re-binned copies share: computed once from the masks and intensities.
    cache: Cache,
}

/// Values computed on demand from the rest of the ROI and shared by its re-binned copies: not
/// part of the ROI's value, so they never make two ROIs differ.
#[derive(Debug, Clone, Default)]
struct Cache {
    /// In-plane and 3D edge distances ([`Roi::edge_distances`]; they depend only on the masks).
    edge_distances: OnceLock<Arc<(Vec<u32>, Vec<u32>)>>,
    /// The intensities' ranks ([`ranks`]), for equalised binning.
    ranks: OnceLock<Arc<Ranks>>,
}

/// The smallest and largest grid coordinate along each axis of a set of voxels.
type Bounds = ([usize; 3], [usize; 3]);

/// The bounds of no voxel, which [`include_run`] widens.
const NO_BOUNDS: Bounds = ([usize::MAX; 3], [0; 3]);

/// Widen `bounds` to hold the voxels of row (y, z) from x `first` to `last`.
fn include_run(bounds: &mut Bounds, first: usize, last: usize, y: usize, z: usize) {
    for (a, v) in [(0, first), (0, last), (1, y), (2, z)] {
        bounds.0[a] = bounds.0[a].min(v);
        bounds.1[a] = bounds.1[a].max(v);
    }
}

/// A padded grid of `len` voxels holding `levels` at the padded indices `voxels`, 0 elsewhere.
fn levels_on_grid(len: usize, voxels: &[usize], levels: &[u16]) -> Vec<u16> {
    let mut padded = vec![0u16; len];
    for (&p, &l) in voxels.iter().zip(levels) {
        padded[p] = l;
    }
    padded
}

/// The intensity mask's voxels on a padded grid ([`Roi::padded`]), as [`Roi`] keeps them.
struct Layout {
    padded_dims: [usize; 3],
    padded_origin: [usize; 3],
    padded_voxels: Vec<usize>,
    voxel_index: Vec<usize>,
    slice_voxels: PerSlice,
    segments: Vec<Range<usize>>,
    slice_segments: PerSlice,
    /// The mask's bounding box.
    bbox: Bounds,
}

impl Layout {
    /// The voxels of `mask` on the padded grid over `grid_box` (the mask's own bounding box
    /// when `None`; otherwise it must hold the mask). Rows are scanned once for the voxels and
    /// the box; their padded indices follow from each row's place in the box.
    fn of(dims: [usize; 3], mask: &[bool], grid_box: Option<Bounds>) -> Result<Layout, RoiError> {
        let mut voxel_index = Vec::new();
        // Per row holding voxels: y, z and its first entry in `voxel_index`.
        let mut rows: Vec<(usize, usize, usize)> = Vec::new();
        let mut bounds = NO_BOUNDS;
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                let start = voxel_index.len();
                let row_index = dims[0] * (y + dims[1] * z);
                for (x, &m) in mask[row_index..row_index + dims[0]].iter().enumerate() {
                    if m {
                        voxel_index.push(row_index + x);
                    }
                }
                if voxel_index.len() > start {
                    // The row's first and last voxels.
                    let (first, last) =
                        (voxel_index[start] - row_index, voxel_index[voxel_index.len() - 1] - row_index);
                    include_run(&mut bounds, first, last, y, z);
                    rows.push((y, z, start));
                }
            }
        }
        if voxel_index.is_empty() {
            return Err(RoiError::Empty);
        }
        let (origin, top) = grid_box.unwrap_or(bounds);
        let padded_dims: [usize; 3] = std::array::from_fn(|a| top[a] - origin[a] + 3);
        let mut padded_voxels = Vec::with_capacity(voxel_index.len());
        let mut slice_voxels: PerSlice = Vec::new();
        for (r, &(y, z, start)) in rows.iter().enumerate() {
            let end = rows.get(r + 1).map_or(voxel_index.len(), |next| next.2);
            let row_index = dims[0] * (y + dims[1] * z);
            let padded_row = padded_dims[0] * ((y + 1 - origin[1]) + padded_dims[1] * (z + 1 - origin[2]));
            padded_voxels.extend(voxel_index[start..end].iter().map(|&i| padded_row + i - row_index + 1 - origin[0]));
            match slice_voxels.last_mut() {
                Some((last, range)) if *last == z => range.end = end,
                _ => slice_voxels.push((z, start..end)),
            }
        }
        let (segments, slice_segments) = segments_of(&padded_voxels, &slice_voxels);
        Ok(Layout {
            padded_dims,
            padded_origin: origin,
            padded_voxels,
            voxel_index,
            slice_voxels,
            segments,
            slice_segments,
            bbox: bounds,
        })
    }
}

/// The bounding box of the voxels of `mask` on a grid of `dims` (`None` when it has none).
fn box_of(dims: [usize; 3], mask: &[bool]) -> Option<Bounds> {
    let [nx, ny, nz] = dims;
    let mut bounds = NO_BOUNDS;
    for z in 0..nz {
        for y in 0..ny {
            let row = &mask[nx * (y + ny * z)..][..nx];
            if let (Some(first), Some(last)) = (row.iter().position(|&m| m), row.iter().rposition(|&m| m)) {
                include_run(&mut bounds, first, last, y, z);
            }
        }
    }
    (bounds != NO_BOUNDS).then_some(bounds)
}

/// Runs of consecutive padded indices in `voxels` (sorted), and per slice of `slices` its
/// range of runs.
fn segments_of(voxels: &[usize], slices: &PerSlice) -> (Vec<Range<usize>>, PerSlice) {
    let mut segments: Vec<Range<usize>> = Vec::new();
    let mut per_slice = Vec::new();
    for (z, range) in slices {
        let first = segments.len();
        for &p in &voxels[range.clone()] {
            match segments.last_mut() {
                Some(s) if s.end == p => s.end += 1,
                _ => segments.push(p..p + 1),
            }
        }
        per_slice.push((*z, first..segments.len()));
    }
    (segments, per_slice)
}

/// The part of `all` in slice `z` (`Some`, by the slice's range in `per_slice`; empty when the
/// slice holds no ROI voxel) or all of it.
fn in_slice<'a, T>(all: &'a [T], per_slice: &PerSlice, slice: Option<usize>) -> &'a [T] {
    match slice {
        None => all,
        Some(z) => per_slice.iter().find(|(s, _)| *s == z).map_or(&[][..], |(_, r)| &all[r.clone()]),
    }
}

impl PartialEq for Cache {
    fn eq(&self, _: &Cache) -> bool {
        true
    }
}

impl Roi {
    /// Discretise the ROI's intensities.
    pub fn new(
        dims: [usize; 3],
        spacing_mm: [f64; 3],
        image: Vec<f64>,
        mask: Vec<bool>,
        discretisation: Discretisation,
    ) -> Result<Roi, RoiError> {
        let voxels = dims.iter().product();
        if image.len() != voxels || mask.len() != voxels {
            return Err(RoiError::Shape { dims, voxels, image: image.len(), mask: mask.len() });
        }
        let layout = Layout::of(dims, &mask, None)?;
        let (levels, ng) = discretise(&image, &layout.voxel_index, discretisation, None)?;
        let padded = levels_on_grid(layout.padded_dims.iter().product(), &layout.padded_voxels, &levels);
        Ok(Roi {
            dims,
            spacing_mm,
            image: Arc::new(image),
            mask: Arc::new(mask),
            ng,
            padded,
            padded_dims: layout.padded_dims,
            padded_origin: layout.padded_origin,
            padded_voxels: layout.padded_voxels,
            voxel_index: layout.voxel_index,
            slice_voxels: layout.slice_voxels,
            segments: layout.segments,
            slice_segments: layout.slice_segments,
            bbox: layout.bbox,
            morphology_bbox: layout.bbox,
            morphology_mask: None,
            cache: Cache::default(),
        })
    }

    /// The same ROI discretised another way (its grid, masks and intensities reused, and its
    /// edge distances, computed here if they were not yet).
    pub fn rebinned(&self, discretisation: Discretisation) -> Result<Roi, RoiError> {
        self.cache.edge_distances.get_or_init(|| Arc::new(edge_distances_of(self)));
        let ranks = match discretisation {
            Discretisation::EqualisedBinNumber { .. } => {
                Some(self.cache.ranks.get_or_init(|| Arc::new(ranks(&self.intensities()))).as_ref())
            }
            _ => None,
        };
        let (levels, ng) = discretise(&self.image, &self.voxel_index, discretisation, ranks)?;
        let padded = levels_on_grid(self.padded.len(), &self.padded_voxels, &levels);
        Ok(Roi { ng, padded, ..self.clone() })
    }

    /// Use `morphology` as the morphological mask, `mask` staying the intensity mask (after
    /// re-segmentation, IBSI 2.5); it must hold every voxel of the intensity mask.
    pub fn with_morphology_mask(mut self, morphology: Vec<bool>) -> Result<Roi, RoiError> {
        if morphology.len() != self.mask.len() {
            let voxels = self.mask.len();
            return Err(RoiError::Shape { dims: self.dims, voxels, image: voxels, mask: morphology.len() });
        }
        if self.mask.iter().zip(&morphology).any(|(&i, &m)| i && !m) {
            return Err(RoiError::Setting("the intensity mask reaches outside the morphological mask".into()));
        }
        // The same mask as the intensity mask (no re-segmentation) is kept as none, so the
        // families take the intensity mask's precomputed voxel lists.
        let same = morphology[..] == self.mask[..];
        let grid_box = if same { self.bbox } else { box_of(self.dims, &morphology).expect("it holds the ROI") };
        if grid_box != self.morphology_bbox {
            // Another box: the same voxels and levels on another padded grid.
            let levels: Vec<u16> = self.padded_voxels.iter().map(|&p| self.padded[p]).collect();
            let layout = Layout::of(self.dims, &self.mask, Some(grid_box))?;
            self.padded = levels_on_grid(layout.padded_dims.iter().product(), &layout.padded_voxels, &levels);
            self.padded_dims = layout.padded_dims;
            self.padded_origin = layout.padded_origin;
            self.padded_voxels = layout.padded_voxels;
            self.slice_voxels = layout.slice_voxels;
            self.segments = layout.segments;
            self.slice_segments = layout.slice_segments;
        }
        self.morphology_bbox = grid_box;
        self.morphology_mask = (!same).then_some(morphology);
        self.cache = Cache::default();
        Ok(self)
    }

    /// In-plane and 3D distances of the ROI's voxels to the morphological mask's edge
    /// in face steps, in-plane and in 3D (IBSI 3.9, the distance zones' distance): computed here
    /// unless this ROI is a re-binned copy, which shares its source's.
    pub fn edge_distances(&self) -> Arc<(Vec<u32>, Vec<u32>)> {
        match self.cache.edge_distances.get() {
            Some(d) => Arc::clone(d),
            None => Arc::new(edge_distances_of(self)),
        }
    }

    /// The morphological mask (the intensity mask unless one was given).
    pub fn morphology(&self) -> &[bool] {
        self.morphology_mask.as_deref().unwrap_or(&self.mask)
    }

    /// Grid coordinates of the voxels of `mask` (the grid's size), in memory order.
    pub fn coords_of(&self, mask: &[bool]) -> Vec<[usize; 3]> {
        let [nx, ny, nz] = self.dims;
        let mut out = Vec::new();
        let mut i = 0;
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    if mask[i] {
                        out.push([x, y, z]);
                    }
                    i += 1;
                }
            }
        }
        out
    }

    /// The smallest and largest grid coordinate of the ROI's voxels along each axis.
    pub fn bounding_box(&self) -> ([usize; 3], [usize; 3]) {
        self.bbox
    }

    /// [`Roi::bounding_box`] of the morphological mask.
    pub fn morphology_bounding_box(&self) -> ([usize; 3], [usize; 3]) {
        self.morphology_bbox
    }

    /// Padded indices of the morphological mask's voxels, in memory order (the intensity
    /// mask's own when there is no separate one).
    pub fn morphology_padded_voxels(&self) -> Vec<usize> {
        match &self.morphology_mask {
            None => self.padded_voxels.clone(),
            Some(m) => self.coords_of(m).into_iter().map(|c| self.padded_index(c)).collect(),
        }
    }

    /// The morphological mask on the padded grid (without the voxel list: for the intensity
    /// mask, filled segment by segment).
    pub fn morphology_inside(&self) -> Vec<bool> {
        let mut inside = vec![false; self.padded.len()];
        match &self.morphology_mask {
            None => self.segments.iter().for_each(|s| inside[s.clone()].fill(true)),
            Some(_) => self.morphology_padded_voxels().into_iter().for_each(|p| inside[p] = true),
        }
        inside
    }

    /// Linear offset on the padded grid of a step of at most one voxel per axis.
    pub fn offset(&self, o: [i64; 3]) -> isize {
        let [px, py, _] = self.padded_dims;
        (o[0] + o[1] * px as i64 + o[2] * (px * py) as i64) as isize
    }

    /// Padded indices of the ROI voxels of slice `z` (`Some`) or of the whole ROI.
    pub fn padded_in(&self, slice: Option<usize>) -> &[usize] {
        in_slice(&self.padded_voxels, &self.slice_voxels, slice)
    }

    /// [`Roi::segments`] of slice `z` (`Some`) or of the whole ROI.
    pub fn segments_in(&self, slice: Option<usize>) -> &[Range<usize>] {
        in_slice(&self.segments, &self.slice_segments, slice)
    }

    /// The most voxels in one segment (the length scratch rows over segments need).
    pub fn longest_segment(&self) -> usize {
        self.segments.iter().map(|s| s.len()).max().unwrap_or(0)
    }

    /// Grid coordinates of the voxel at a padded index (inside the padding).
    pub fn padded_coords(&self, p: usize) -> [usize; 3] {
        let ([px, py, _], o) = (self.padded_dims, self.padded_origin);
        [p % px + o[0] - 1, (p / px) % py + o[1] - 1, p / (px * py) + o[2] - 1]
    }

    /// Padded index of the voxel at grid coordinates `c` (in the morphological mask's box).
    pub fn padded_index(&self, c: [usize; 3]) -> usize {
        let ([px, py, _], o) = (self.padded_dims, self.padded_origin);
        (c[0] + 1 - o[0]) + px * ((c[1] + 1 - o[1]) + py * (c[2] + 1 - o[2]))
    }

    /// Index of voxel (x, y, z).
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    /// Coordinates of an index.
    pub fn coords(&self, i: usize) -> [usize; 3] {
        let (nx, ny) = (self.dims[0], self.dims[1]);
        [i % nx, (i / nx) % ny, i / (nx * ny)]
    }

    /// Indices of the ROI's voxels, in memory order.
    pub fn voxels(&self) -> &[usize] {
        &self.voxel_index
    }

    /// The z indices that hold ROI voxels.
    pub fn slices(&self) -> Vec<usize> {
        self.slice_voxels.iter().map(|(z, _)| *z).collect()
    }

    /// Intensities of the ROI's voxels.
    pub fn intensities(&self) -> Vec<f64> {
        self.voxel_index.iter().map(|&i| self.image[i]).collect()
    }

    /// Grey levels of the ROI's voxels.
    pub fn grey_levels(&self) -> Vec<u32> {
        self.padded_voxels.iter().map(|&p| u32::from(self.padded[p])).collect()
    }
}

/// Per ROI voxel (in order), the rank `#{ROI voxels with intensity <= x}` of its intensity x,
/// as a whole number so equal fractions bin exactly, and the rank of the smallest intensity.
#[derive(Debug)]
struct Ranks {
    rank: Vec<u64>,
    lowest: u64,
}

/// The ranks of some intensities, by one sort.
fn ranks(inside: &[f64]) -> Ranks {
    let mut order: Vec<(f64, u32)> = inside.iter().enumerate().map(|(k, &v)| (v, k as u32)).collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Ranks { rank: vec![0u64; inside.len()], lowest: 0 };
    let mut end = 0;
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        end += group.len() as u64;
        if out.lowest == 0 {
            out.lowest = end;
        }
        for &(_, i) in group {
            out.rank[i as usize] = end;
        }
    }
    out
}

/// Grey levels of the ROI voxels `voxels` (grid indices) and Ng, at most [`MAX_GREY_LEVELS`];
/// `ranks` of their intensities when already known (equalised binning computes them otherwise).
fn discretise(
    image: &[f64],
    voxels: &[usize],
    discretisation: Discretisation,
    ranks_known: Option<&Ranks>,
) -> Result<(Vec<u16>, u32), RoiError> {
    let inside: Vec<f64> = voxels.iter().map(|&i| image[i]).collect();
    if inside.is_empty() {
        return Err(RoiError::Empty);
    }
    if inside.iter().any(|v| !v.is_finite()) {
        return Err(RoiError::NonFinite);
    }
    let (lo, hi) = inside.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let computed;
    let (rank, r_lo): (&[u64], u64) = match (discretisation, ranks_known) {
        (Discretisation::EqualisedBinNumber { .. }, Some(r)) => (&r.rank, r.lowest),
        (Discretisation::EqualisedBinNumber { .. }, None) => {
            computed = ranks(&inside);
            (&computed.rank, computed.lowest)
        }
        _ => (&[], 0),
    };
    let n_inside = inside.len() as u64;
    // Settings are checked once, then each discretisation is one loop over the voxels. The
    // bin formulas take the floor of non-negative numbers, which the cast to u32 does
    // (it truncates), so no call to `floor` is needed per voxel.
    let fixed_bins = |bins: u32| {
        if bins == 0 {
            return Err(RoiError::Setting("a fixed bin number needs at least 1 bin".into()));
        }
        Ok(bins)
    };
    let levels: Vec<u32> = match discretisation {
        Discretisation::None => inside
            .iter()
            .map(|&x| {
                if x >= 1.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) {
                    Ok(x as u32)
                } else {
                    Err(RoiError::NotALevel(x))
                }
            })
            .collect::<Result<_, _>>()?,
        Discretisation::FixedBinNumber { bins } => {
            let bins = fixed_bins(bins)?;
            if hi == lo {
                vec![1; inside.len()]
            } else {
                inside.iter().map(|&x| ((f64::from(bins) * (x - lo) / (hi - lo)) as u32 + 1).min(bins)).collect()
            }
        }
        Discretisation::EqualisedBinNumber { bins } => {
            let bins = fixed_bins(bins)?;
            if r_lo == n_inside {
                vec![1; inside.len()]
            } else {
                rank.iter()
                    .map(|&r| ((u64::from(bins) * (r - r_lo) / (n_inside - r_lo)) as u32 + 1).min(bins))
                    .collect()
            }
        }
        Discretisation::FixedBinSize { width, lower } => {
            if !(width > 0.0 && width.is_finite() && lower.is_finite()) {
                return Err(RoiError::Setting(format!("bin width {width} and lower bound {lower}")));
            }
            // Below `lower`, level 1; far above, a level past any bound (the cast saturates).
            inside.iter().map(|&x| (((x - lower) / width).max(0.0) as u32).saturating_add(1)).collect()
        }
    };
    let ng = match discretisation {
        Discretisation::FixedBinNumber { bins } | Discretisation::EqualisedBinNumber { bins } => bins,
        _ => *levels.iter().max().expect("not empty"),
    };
    if ng > MAX_GREY_LEVELS {
        return Err(RoiError::TooManyLevels { ng });
    }
    // Every level is at most Ng, so it fits.
    Ok((levels.into_iter().map(|l| l as u16).collect(), ng))
}

/// Distance of each ROI voxel (in `padded_voxels` order) to the edge of the
/// morphological mask, in face steps: in-plane steps only (each slice on its own) and in 3D.
/// The morphological mask, not the intensity mask, so holes that re-segmentation cuts do not
/// count as edges (IBSI 3.11).
///
/// The city-block distance transform is separable: a forward and a backward pass along x,
/// then along y, give the in-plane distances, and one more pair along z the 3D ones. A pass
/// is `d[p] = min(d[p], d[p - step] + 1)` everywhere: outside voxels hold 0 and stay 0. The
/// passes run on the padded grid (the mask's bounding box with a border of 0s, where they
/// start and end).
fn edge_distances_of(roi: &Roi) -> (Vec<u32>, Vec<u32>) {
    let far = u32::MAX / 2;
    let [gx, gy, gz] = roi.padded_dims;
    let index = |x: usize, y: usize, z: usize| x + gx * (y + gy * z);
    let mut planar = vec![0u32; roi.padded.len()];
    match &roi.morphology_mask {
        None => roi.segments.iter().for_each(|s| planar[s.clone()].fill(far)),
        Some(_) => roi.morphology_padded_voxels().into_iter().for_each(|p| planar[p] = far),
    }
    let [x0, y0, z0] = [1; 3];
    let [x1, y1, z1] = [gx - 2, gy - 2, gz - 2];
    let width = x1 - x0 + 1;
    // Along x: serial passes.
    for z in z0..=z1 {
        for y in y0..=y1 {
            let line = &mut planar[index(x0 - 1, y, z)..=index(x1 + 1, y, z)];
            for k in 1..line.len() {
                line[k] = line[k].min(line[k - 1] + 1);
            }
            for k in (0..line.len() - 1).rev() {
                line[k] = line[k].min(line[k + 1] + 1);
            }
        }
    }
    // Across rows (y) or planes (z): a row of the box at a time, so the minima vectorise.
    // `from` is the row stepped from, `to` the row updated.
    let step = |d: &mut [u32], from: usize, to: usize| {
        let (a, b) = (from.min(to), from.max(to));
        let (head, tail) = d.split_at_mut(b);
        let (src, dst) = if from < to {
            (&head[a..a + width], &mut tail[..width])
        } else {
            (&tail[..width], &mut head[a..a + width])
        };
        dst.iter_mut().zip(src).for_each(|(v, &u)| *v = (*v).min(u + 1));
    };
    for z in z0..=z1 {
        for y in y0..=y1 {
            step(&mut planar, index(x0, y - 1, z), index(x0, y, z));
        }
        for y in (y0..=y1).rev() {
            step(&mut planar, index(x0, y + 1, z), index(x0, y, z));
        }
    }
    let mut volume = planar.clone();
    for z in z0..=z1 {
        for y in y0..=y1 {
            step(&mut volume, index(x0, y, z - 1), index(x0, y, z));
        }
    }
    for z in (z0..=z1).rev() {
        for y in y0..=y1 {
            step(&mut volume, index(x0, y, z + 1), index(x0, y, z));
        }
    }
    // The ROI's voxels, a segment at a time.
    let n = roi.padded_voxels.len();
    let (mut planar_of, mut volume_of) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for s in &roi.segments {
        planar_of.extend_from_slice(&planar[s.clone()]);
        volume_of.extend_from_slice(&volume[s.clone()]);
    }
    (planar_of, volume_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounding_box_kept_at_construction_is_the_masks() {
        let mut next = crate::xorshift(0xB0B0_CAFE);
        for _ in 0..20 {
            let dims = [1 + (next() % 9) as usize, 1 + (next() % 7) as usize, 1 + (next() % 5) as usize];
            let n: usize = dims.iter().product();
            let mut mask: Vec<bool> = (0..n).map(|_| next().is_multiple_of(5)).collect();
            mask[(next() % n as u64) as usize] = true;
            let r = Roi::new(dims, [1.0; 3], vec![1.0; n], mask.clone(), Discretisation::None).unwrap();
            let coords: Vec<[usize; 3]> = (0..n).filter(|&i| mask[i]).map(|i| r.coords(i)).collect();
            let lo: [usize; 3] = std::array::from_fn(|a| coords.iter().map(|c| c[a]).min().unwrap());
            let hi: [usize; 3] = std::array::from_fn(|a| coords.iter().map(|c| c[a]).max().unwrap());
            assert_eq!(r.bounding_box(), (lo, hi));
            assert_eq!(box_of(dims, &mask), Some((lo, hi)));
            // The padded grid is that box and its padding.
            assert_eq!(r.padded_dims, std::array::from_fn(|a| hi[a] - lo[a] + 3));
            for (&p, &i) in r.padded_voxels.iter().zip(r.voxels()) {
                assert_eq!(r.padded_coords(p), r.coords(i));
                assert_eq!(r.padded_index(r.coords(i)), p);
            }
            // A larger morphological mask moves the ROI onto its box; the intensity mask again
            // moves it back.
            let levels = r.grey_levels();
            let wider: Vec<bool> = mask.iter().map(|&m| m || next().is_multiple_of(4)).collect();
            let (wlo, whi) = box_of(dims, &wider).unwrap();
            let w = r.clone().with_morphology_mask(wider.clone()).unwrap();
            assert_eq!((w.bounding_box(), w.morphology_bounding_box()), ((lo, hi), (wlo, whi)));
            assert_eq!(w.padded_dims, std::array::from_fn(|a| whi[a] - wlo[a] + 3));
            assert_eq!(w.grey_levels(), levels);
            for (&p, &i) in w.padded_voxels.iter().zip(w.voxels()) {
                assert_eq!(w.padded_coords(p), w.coords(i));
            }
            let inside = w.morphology_inside();
            assert_eq!(inside.iter().filter(|&&m| m).count(), wider.iter().filter(|&&m| m).count());
            assert_eq!(w.with_morphology_mask(mask.clone()).unwrap(), r);
        }
    }

    #[test]
    fn segments_are_the_voxels_in_maximal_runs_within_rows() {
        let mut next = crate::xorshift(0x5E6_3E47);
        for _ in 0..20 {
            let dims = [1 + (next() % 9) as usize, 1 + (next() % 7) as usize, 1 + (next() % 5) as usize];
            let n: usize = dims.iter().product();
            let mut mask: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(3)).collect();
            mask[(next() % n as u64) as usize] = true;
            let r = Roi::new(dims, [1.0; 3], vec![1.0; n], mask, Discretisation::None).unwrap();
            let flat: Vec<usize> = r.segments.iter().flat_map(|s| s.clone()).collect();
            assert_eq!(flat, r.padded_voxels);
            for s in &r.segments {
                // Maximal: the padded voxels either side are outside the ROI.
                assert_eq!((r.padded[s.start - 1], r.padded[s.end]), (0, 0));
                assert_eq!(s.start / r.padded_dims[0], (s.end - 1) / r.padded_dims[0], "one row");
            }
            for (z, range) in &r.slice_segments {
                let want: Vec<usize> = r.padded_in(Some(*z)).to_vec();
                assert_eq!(r.segments[range.clone()].iter().flat_map(|s| s.clone()).collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn discretisation_follows_the_ibsi_formulas() {
        let image = vec![0.0, 2.5, 5.0, 7.5, 10.0, 99.0];
        let mask = vec![true, true, true, true, true, false];
        let fbn =
            Roi::new([6, 1, 1], [1.0; 3], image.clone(), mask.clone(), Discretisation::FixedBinNumber { bins: 4 })
                .unwrap();
        // floor(4 x / 10) + 1, the maximum in bin 4.
        assert_eq!(fbn.grey_levels(), vec![1, 2, 3, 4, 4]);
        assert_eq!(fbn.ng, 4);
        let fbs = Roi::new(
            [6, 1, 1],
            [1.0; 3],
            image.clone(),
            mask.clone(),
            Discretisation::FixedBinSize { width: 3.0, lower: 0.0 },
        )
        .unwrap();
        assert_eq!(fbs.grey_levels(), vec![1, 1, 2, 3, 4]);
        assert_eq!(fbs.ng, 4);
        // Equalised: rank fractions 1/5 .. 5/5 of skewed intensities, binned between 1/5 and 1
        // into 4 bins: floor(4 (F - 0.2) / 0.8) + 1 = 1, 2, 3, 4, 4 whatever the spacing.
        let skewed = vec![0.0, 0.1, 0.2, 50.0, 1000.0, 99.0];
        let eq = Roi::new([6, 1, 1], [1.0; 3], skewed, mask.clone(), Discretisation::EqualisedBinNumber { bins: 4 })
            .unwrap();
        assert_eq!(eq.grey_levels(), vec![1, 2, 3, 4, 4]);
        assert_eq!(eq.image[4], 1000.0, "intensities are kept");
        // Re-binning an ROI gives what building it with that discretisation gives.
        let block: Vec<f64> = (0..60).map(|i| f64::from((i * 37 % 11) as u32) * 1.5).collect();
        let inside: Vec<bool> = (0..60).map(|i| i % 7 != 0).collect();
        let fbn = |bins| Discretisation::FixedBinNumber { bins };
        let first = Roi::new([5, 4, 3], [1.0; 3], block.clone(), inside.clone(), fbn(3)).unwrap();
        for d in [fbn(8), Discretisation::EqualisedBinNumber { bins: 4 }] {
            assert_eq!(
                first.rebinned(d).unwrap(),
                Roi::new([5, 4, 3], [1.0; 3], block.clone(), inside.clone(), d).unwrap()
            );
        }
        assert_eq!(
            Roi::new([6, 1, 1], [1.0; 3], image.clone(), mask.clone(), Discretisation::None).unwrap_err(),
            RoiError::NotALevel(0.0)
        );
        assert_eq!(
            Roi::new([6, 1, 1], [1.0; 3], image.clone(), vec![false; 6], Discretisation::None).unwrap_err(),
            RoiError::Empty
        );
        // More levels than the matrices can hold: a clear error, not a huge allocation.
        let fine = Discretisation::FixedBinSize { width: 0.001, lower: 0.0 };
        assert_eq!(
            Roi::new([6, 1, 1], [1.0; 3], image, mask.clone(), fine).unwrap_err(),
            RoiError::TooManyLevels { ng: 10001 }
        );
        assert_eq!(
            first.rebinned(fbn(MAX_GREY_LEVELS + 1)).unwrap_err(),
            RoiError::TooManyLevels { ng: MAX_GREY_LEVELS + 1 }
        );
        assert_eq!(first.rebinned(fbn(MAX_GREY_LEVELS)).unwrap().ng, MAX_GREY_LEVELS);
        let r = Roi::new([2, 3, 4], [1.0; 3], vec![1.0; 24], vec![true; 24], Discretisation::None).unwrap();
        assert_eq!(r.coords(r.index(1, 2, 3)), [1, 2, 3]);
        // A step on the padded grid: the neighbour's level, or 0 off the grid.
        let p = |x: usize, y: usize, z: usize| r.padded_index([x, y, z]);
        assert_eq!(r.padded[(p(1, 2, 3) as isize + r.offset([1, 0, 0])) as usize], 0);
        assert_eq!((p(0, 2, 3) as isize + r.offset([1, -1, -1])) as usize, p(1, 1, 2));
        assert_eq!(r.padded[p(1, 1, 2)], 1);
        assert_eq!(r.padded_in(Some(3)).len(), 6);
    }
}
