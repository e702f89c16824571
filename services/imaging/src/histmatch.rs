//! Histogram matching: map a source image's intensities so its histogram resembles a
//! reference's, by piecewise-linear interpolation between matched quantiles.
//!
//! The method is the one ITK's `HistogramMatchingImageFilter` implements (and SimpleITK
//! exposes), so results can be compared with it voxel by voxel:
//!
//! 1. min, max and mean of each image over all voxels;
//! 2. with `threshold_at_mean`, only voxels at or above the image's mean enter its histogram
//!    (background excluded), else everything from the minimum up;
//! 3. a histogram of `levels` equal bins over `[threshold, max]` per image;
//! 4. quantiles at `j / (match_points + 1)`, `j = 1..=match_points`, read from each histogram
//!    by linear interpolation inside the bin where the cumulative frequency crosses `p`
//!    (scanning from the low end for `p < 0.5`, from the high end otherwise); the table is
//!    closed by `(threshold, max)` at both ends;
//! 5. each source value is mapped linearly within its quantile interval; below the source
//!    threshold along the line through `(source min, reference min)` and the first table
//!    point, above the source max along the line through the last point and `(source max,
//!    reference max)`.
//!
//! The study matched each lesion's T2 series to its T1C series with 128 levels and 7 match
//! points, thresholding at the mean ([`MatchSettings::default`]).

/// Parameters, named as in ITK.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchSettings {
    /// Histogram bins per image.
    pub levels: usize,
    /// Quantiles matched between the two histograms (besides the two ends).
    pub match_points: usize,
    /// Exclude voxels below each image's mean intensity from its histogram.
    pub threshold_at_mean: bool,
}

impl Default for MatchSettings {
    fn default() -> Self {
        MatchSettings { levels: 128, match_points: 7, threshold_at_mean: true }
    }
}

/// Why matching cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    /// An image has no voxels.
    #[error("{0} image is empty")]
    Empty(&'static str),
    /// An image holds NaN or infinite values.
    #[error("{0} image has non-finite values")]
    NonFinite(&'static str),
    /// Settings out of range.
    #[error("histogram matching needs at least 1 level and 1 match point (got {levels}, {match_points})")]
    Settings { levels: usize, match_points: usize },
}

/// The piecewise-linear intensity map fitted between two images.
#[derive(Debug, Clone, PartialEq)]
pub struct IntensityMap {
    /// Source intensities of the table points, ascending: threshold, quantiles, max.
    pub source_points: Vec<f64>,
    /// Reference intensities they map to.
    pub reference_points: Vec<f64>,
    source_min: f64,
    source_max: f64,
    reference_min: f64,
    reference_max: f64,
    gradients: Vec<f64>,
    lower_gradient: f64,
    upper_gradient: f64,
}

struct Summary {
    min: f64,
    max: f64,
    threshold: f64,
    quantiles: Vec<f64>,
}

fn summarise(values: &[f32], settings: &MatchSettings, which: &'static str) -> Result<Summary, MatchError> {
    if values.is_empty() {
        return Err(MatchError::Empty(which));
    }
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &v in values {
        let v = f64::from(v);
        if !v.is_finite() {
            return Err(MatchError::NonFinite(which));
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
    }
    let mean = sum / values.len() as f64;
    let threshold = if settings.threshold_at_mean { mean } else { min };
    let histogram = Histogram::build(values, threshold, max, settings.levels);
    let delta = 1.0 / (settings.match_points as f64 + 1.0);
    let quantiles = (1..=settings.match_points).map(|j| histogram.quantile(j as f64 * delta)).collect();
    Ok(Summary { min, max, threshold, quantiles })
}

/// Equal bins over `[lower, upper]`; a value equal to `upper` counts in the last bin.
struct Histogram {
    lower: f64,
    width: f64,
    counts: Vec<f64>,
}

impl Histogram {
    fn build(values: &[f32], lower: f64, upper: f64, bins: usize) -> Histogram {
        let width = (upper - lower) / bins as f64;
        let mut counts = vec![0.0; bins];
        for &v in values {
            let v = f64::from(v);
            if v < lower || v > upper {
                continue;
            }
            let i = if width > 0.0 { ((v - lower) / width) as usize } else { 0 };
            counts[i.min(bins - 1)] += 1.0;
        }
        Histogram { lower, width, counts }
    }

    fn bin_min(&self, i: usize) -> f64 {
        self.lower + i as f64 * self.width
    }

    /// The `p`-quantile, interpolated inside the bin where the cumulative share crosses `p`.
    fn quantile(&self, p: f64) -> f64 {
        let total: f64 = self.counts.iter().sum();
        let size = self.counts.len();
        if total == 0.0 {
            return self.lower;
        }
        if p < 0.5 {
            // Walk up from the lowest bin until the cumulative share reaches p.
            let mut cumulated = 0.0;
            for (n, &f) in self.counts.iter().enumerate() {
                let before = cumulated / total;
                cumulated += f;
                if cumulated / total >= p || n + 1 == size {
                    return self.bin_min(n) + (p - before) / (f / total) * self.width;
                }
            }
            unreachable!("the loop returns at the last bin")
        } else {
            // Walk down from the highest bin until the share above falls to p.
            let mut cumulated = 0.0;
            for (m, n) in (0..size).rev().enumerate() {
                let f = self.counts[n];
                let before = 1.0 - cumulated / total;
                cumulated += f;
                if 1.0 - cumulated / total <= p || m + 1 == size {
                    return self.bin_min(n) + self.width - (before - p) / (f / total) * self.width;
                }
            }
            unreachable!("the loop returns at the first bin")
        }
    }
}

fn slope(dy: f64, dx: f64) -> f64 {
    if dx != 0.0 {
        dy / dx
    } else {
        0.0
    }
}

impl IntensityMap {
    /// Fit the map that takes `source` towards `reference` (both flattened voxel arrays; the
    /// grids need not match).
    pub fn fit(source: &[f32], reference: &[f32], settings: &MatchSettings) -> Result<IntensityMap, MatchError> {
        if settings.levels == 0 || settings.match_points == 0 {
            return Err(MatchError::Settings { levels: settings.levels, match_points: settings.match_points });
        }
        let s = summarise(source, settings, "source")?;
        let r = summarise(reference, settings, "reference")?;
        let source_points: Vec<f64> =
            std::iter::once(s.threshold).chain(s.quantiles.iter().copied()).chain([s.max]).collect();
        let reference_points: Vec<f64> =
            std::iter::once(r.threshold).chain(r.quantiles.iter().copied()).chain([r.max]).collect();
        let gradients = source_points
            .windows(2)
            .zip(reference_points.windows(2))
            .map(|(sp, rp)| slope(rp[1] - rp[0], sp[1] - sp[0]))
            .collect();
        let last = source_points.len() - 1;
        Ok(IntensityMap {
            lower_gradient: slope(reference_points[0] - r.min, source_points[0] - s.min),
            upper_gradient: slope(reference_points[last] - r.max, source_points[last] - s.max),
            source_points,
            reference_points,
            source_min: s.min,
            source_max: s.max,
            reference_min: r.min,
            reference_max: r.max,
            gradients,
        })
    }

    /// Map one source intensity.
    pub fn apply(&self, value: f64) -> f64 {
        let j = self.source_points.iter().position(|&p| value < p).unwrap_or(self.source_points.len());
        if j == 0 {
            self.reference_min + (value - self.source_min) * self.lower_gradient
        } else if j == self.source_points.len() {
            self.reference_max + (value - self.source_max) * self.upper_gradient
        } else {
            self.reference_points[j - 1] + (value - self.source_points[j - 1]) * self.gradients[j - 1]
        }
    }
}

/// Match `source` to `reference` and return the mapped source voxels.
pub fn match_histograms(source: &[f32], reference: &[f32], settings: &MatchSettings) -> Result<Vec<f32>, MatchError> {
    let map = IntensityMap::fit(source, reference, settings)?;
    Ok(source.iter().map(|&v| map.apply(f64::from(v)) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_histogram_are_exact() {
        // 1000 values spread evenly over [0, 1000): every bin of 100 holds 100 of them.
        let values: Vec<f32> = (0..1000).map(|v| v as f32 + 0.5).collect();
        let h = Histogram::build(&values, 0.0, 1000.0, 10);
        assert!(h.counts.iter().all(|&c| c == 100.0));
        for p in [0.125, 0.25, 0.375, 0.5, 0.625, 0.875] {
            assert!((h.quantile(p) - 1000.0 * p).abs() < 1e-9, "p = {p}: {}", h.quantile(p));
        }
    }

    #[test]
    fn an_affine_copy_maps_back_onto_its_reference() {
        // source = 3 * reference + 50: the fitted map must undo it wherever the histograms
        // are dense (quantile interpolation is exact for an affine relation between images).
        let reference: Vec<f32> = (0..20_000).map(|i| ((i * 7919) % 10_000) as f32 / 10.0).collect();
        let source: Vec<f32> = reference.iter().map(|&v| 3.0 * v + 50.0).collect();
        let matched = match_histograms(&source, &reference, &MatchSettings::default()).unwrap();
        let worst = matched.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1.0, "worst {worst} on a range of 1000");
    }

    #[test]
    fn the_map_is_monotone_and_hits_the_table_points() {
        let reference: Vec<f32> = (0..5000).map(|i| ((i * 31) % 997) as f32).collect();
        let source: Vec<f32> = (0..3000).map(|i| (((i * 17) % 613) as f32).powf(1.3)).collect();
        let map = IntensityMap::fit(&source, &reference, &MatchSettings::default()).unwrap();
        assert_eq!(map.source_points.len(), 9);
        for (s, r) in map.source_points.iter().zip(&map.reference_points).skip(1) {
            assert!((map.apply(*s) - r).abs() < 1e-9);
        }
        let mut last = f64::NEG_INFINITY;
        for v in 0..4000 {
            let m = map.apply(v as f64);
            assert!(m >= last - 1e-9);
            last = m;
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let s = MatchSettings::default();
        assert_eq!(IntensityMap::fit(&[], &[1.0], &s), Err(MatchError::Empty("source")));
        assert_eq!(IntensityMap::fit(&[1.0], &[f32::NAN], &s), Err(MatchError::NonFinite("reference")));
        let zero = MatchSettings { match_points: 0, ..s };
        assert!(matches!(IntensityMap::fit(&[1.0], &[1.0], &zero), Err(MatchError::Settings { .. })));
        // A constant image is legal and maps everything to something finite.
        let out = match_histograms(&[5.0; 10], &[1.0, 2.0, 3.0], &s).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
