//! Distribution drift of one monitored signal, a window of recent values against a reference,
//! and performance estimated without labels.
//!
//! - [`Reference`]: what a model bundle keeps of its training rows per signal: a sorted sample
//!   (every value up to a cap, evenly spaced order statistics beyond) and fixed quantile bins
//!   for the population stability index.
//! - [`compare`]: a window against a reference: [`psi`] on the reference's bins, the
//!   two-sample Kolmogorov–Smirnov statistic with its P value ([`ks_two_sample`]) and the
//!   Wasserstein-1 distance ([`wasserstein_1`]).
//! - [`cbpe`]: confidence-based performance estimation (NannyML's CBPE): from calibrated
//!   probabilities alone, the accuracy and ROC AUC to expect once labels arrive.
//!
//! Every function is pure; the monitor stage (`renal-monitor`) keeps the windows.
//!
//! ```
//! use renal_stats::drift::{compare, Reference};
//! let reference = Reference::new(&(0..1000).map(|i| f64::from(i) / 1000.0).collect::<Vec<_>>(), 10, 5_000).unwrap();
//! // The same distribution: no drift. Shifted by half its range: plain drift.
//! let same = compare(&reference, &(0..200).map(|i| f64::from(i) / 200.0).collect::<Vec<_>>());
//! let moved = compare(&reference, &(0..200).map(|i| 0.5 + f64::from(i) / 200.0).collect::<Vec<_>>());
//! assert!(same.psi < 0.01 && same.ks_p > 0.9);
//! assert!(moved.psi > 1.0 && moved.ks_p < 1e-10 && (moved.wasserstein - 0.5).abs() < 0.01);
//! ```

use serde::{Deserialize, Serialize};

/// The fraction a bin with no value counts as in [`psi`], so that an empty bin on one side gives
/// a large but finite term (Evidently and NannyML use the same floor).
pub const PSI_EMPTY_BIN: f64 = 1e-4;

/// Why a reference cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// No finite value to build it from.
    #[error("a reference needs at least one finite value")]
    Empty,
    /// Fewer than two bins or a sample cap below two.
    #[error("a reference needs at least 2 bins and a sample of at least 2 values (asked {bins} bins, cap {cap})")]
    Settings { bins: usize, cap: usize },
}

/// One signal's reference distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// How many finite values it was built from.
    pub count: u64,
    /// Sorted sample: all `count` values when they fit the cap, else `cap` evenly spaced order
    /// statistics (the reference's quantiles at `(i + 0.5) / cap`).
    pub sample: Vec<f64>,
    /// Interior bin edges, increasing; bin `k` holds values in `[edges[k-1], edges[k])`, the
    /// first and last bins are open-ended.
    pub edges: Vec<f64>,
    /// Fraction of the reference values in each bin (`edges.len() + 1` of them, sum 1).
    pub fractions: Vec<f64>,
}

impl Reference {
    /// Build from training values: `bins` quantile bins (fewer when ties merge edges), a sample
    /// of at most `cap` values. Non-finite values are left out.
    pub fn new(values: &[f64], bins: usize, cap: usize) -> Result<Reference, DriftError> {
        if bins < 2 || cap < 2 {
            return Err(DriftError::Settings { bins, cap });
        }
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return Err(DriftError::Empty);
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mut edges: Vec<f64> = (1..bins).map(|k| quantile_sorted(&sorted, k as f64 / bins as f64)).collect();
        edges.dedup();
        // An edge at the minimum would leave the first bin empty by construction.
        edges.retain(|&e| e > sorted[0]);
        let fractions = bin_fractions(&edges, &sorted);
        let sample = if n <= cap {
            sorted
        } else {
            (0..cap).map(|i| sorted[((i as f64 + 0.5) / cap as f64 * n as f64) as usize]).collect()
        };
        Ok(Reference { count: n as u64, sample, edges, fractions })
    }

    /// Whether [`Reference::sample`] holds every reference value (KS can then be exact).
    pub fn is_complete(&self) -> bool {
        self.sample.len() as u64 == self.count
    }
}

/// The `q` quantile of sorted values, linear between order statistics (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, frac) = (h.floor() as usize, h.fract());
    if lo + 1 < sorted.len() {
        sorted[lo] + frac * (sorted[lo + 1] - sorted[lo])
    } else {
        sorted[lo]
    }
}

/// Fraction of `values` in each bin that `edges` (increasing interior edges) make.
pub fn bin_fractions(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// Population stability index: `sum (a - e) ln(a / e)` over bins, `e` the expected (reference)
/// and `a` the actual fractions, each empty bin counted as [`PSI_EMPTY_BIN`]. Below 0.1 is usually
/// read as stable, above 0.25 as a shift.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    assert_eq!(expected.len(), actual.len(), "one fraction per bin on both sides");
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_EMPTY_BIN), a.max(PSI_EMPTY_BIN));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// A two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ks {
    /// Largest distance between the two empirical CDFs.
    pub statistic: f64,
    /// Two-sided P value of seeing at least that distance under one common distribution.
    pub p_value: f64,
    /// Whether the P value is exact (counted lattice paths) or the asymptotic Kolmogorov one.
    pub exact: bool,
}

/// Largest `m * n` (reference size times window size) for which [`ks_two_sample`] counts lattice
/// paths for an exact P value; beyond it the asymptotic distribution is close and much cheaper.
pub const KS_EXACT_CELLS: u64 = 1_000_000;

/// Two-sided two-sample KS test of sorted samples `a` (size m) and `b` (size n), as SciPy's
/// `ks_2samp` (its `exact` method up to [`KS_EXACT_CELLS`], else an asymptotic one).
///
/// The statistic is kept as the integer `h`, the largest `|n #{a <= x} - m #{b <= x}|` over the
/// merged sample (`D = h / (m n)`), so that the exact P value, `P(D >= d)`, counts lattice paths
/// from `(0, 0)` to `(m, n)` that stay strictly inside `|i n - j m| < h` without rounding error at
/// the boundary.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Ks {
    ks_two_sample_with(a, b, a.len() as u64, KS_EXACT_CELLS)
}

/// As [`ks_two_sample`], with `a` standing for a population of `population` values (its
/// quantiles when larger than `a`: the P value is then asymptotic, with `m = population`), and a
/// chosen exact limit.
///
/// Beyond the exact limit the P value is the Kolmogorov limit law at a corrected argument
/// `(sqrt(en) + w (0.12 + 0.11 / sqrt(en))) D`, `en = m n / (m + n)`, `w = 1 - min(m, n) /
/// max(m, n)`. Stephens' one-sample correction (`w = 1`) is right when one sample dwarfs the
/// other, the monitor's case (a window of 50 against a large reference: the bare limit law is
/// 0.0066 too high near P = 0.05, the corrected one exact to 1e-4); for equal sizes the bare
/// law is right (10,000 against 10,000: exact to 1e-5, Stephens' 0.0006 low), so the correction
/// is weighted by how unequal the sizes are. Measured against SciPy's exact P at P near 0.2,
/// 0.05 and 0.01 for sizes from 50 to 10,000: within 0.0025 when one sample is at least 4 times
/// the other or both are equal, within 0.006 otherwise but for near-equal sizes with a small
/// common divisor (60 and 50: up to 0.02), which the exact path covers up to 10^6 cells.
pub fn ks_two_sample_with(a: &[f64], b: &[f64], population: u64, exact_cells: u64) -> Ks {
    let (m, n) = (a.len() as u64, b.len() as u64);
    if m == 0 || n == 0 {
        return Ks { statistic: 0.0, p_value: 1.0, exact: true };
    }
    let h = ks_integer_statistic(a, b);
    let statistic = h as f64 / (m * n) as f64;
    if population == m && m.saturating_mul(n) <= exact_cells {
        let p_value = (1.0 - ks_paths_inside(m, n, h)).clamp(0.0, 1.0);
        return Ks { statistic, p_value, exact: true };
    }
    let en = (population as f64 * n as f64 / (population + n) as f64).sqrt();
    let w = 1.0 - population.min(n) as f64 / population.max(n) as f64;
    Ks { statistic, p_value: kolmogorov_sf((en + w * (0.12 + 0.11 / en)) * statistic), exact: false }
}

/// `max_x |n #{a <= x} - m #{b <= x}|` over the merged sorted samples, both counts taken after
/// every value equal to `x` (ties step together).
///
/// Only the smaller sample's distinct values are visited: between two of them its count is
/// constant and the larger sample's count rises, so the largest distance in that stretch is at
/// one of its two ends, each found in the larger sample by [`gallop`]ing forward. A reference of
/// 10,000 against a window of 50 costs about 100 short searches instead of a 10,050-step merge;
/// two samples of equal size cost a merge.
fn ks_integer_statistic(a: &[f64], b: &[f64]) -> u64 {
    // |n A - m B| is symmetric in (a, m) and (b, n): walk whichever is smaller.
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let (s_len, l_len) = (small.len() as u64, large.len() as u64);
    let distance = |l_count: usize, s_count: usize| (s_len * l_count as u64).abs_diff(l_len * s_count as u64);
    // Before the small sample's first value: its count is 0, the large one's up to #{< v_1}.
    let mut cursor = gallop(large, 0, |x| x < small[0]);
    let mut h = distance(cursor, 0);
    let mut k = 0;
    while k < small.len() {
        let v = small[k];
        while k < small.len() && small[k] <= v {
            k += 1;
        }
        // At v (after every value equal to it) ...
        cursor = gallop(large, cursor, |x| x <= v);
        h = h.max(distance(cursor, k));
        // ... and just before the next distinct value (the whole tail after the last one).
        let below_next = small.get(k).map_or(large.len(), |&next| gallop(large, cursor, |x| x < next));
        h = h.max(distance(below_next, k));
    }
    h
}

/// The first index at or after `from` where `below` stops holding in `sorted` (`below` true on
/// a prefix, false after), by galloping: probes 1, 2, 4, ... ahead, then a binary search within
/// the last step. Walking forward over increasing targets costs `O(s log(l / s))` for `s`
/// targets in `l` values: searches when `s` is small, a merge when it is not.
fn gallop(sorted: &[f64], from: usize, below: impl Fn(f64) -> bool) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < sorted.len() && below(sorted[hi]) {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(sorted.len());
    lo + sorted[lo..hi].partition_point(|&x| below(x))
}

/// Fraction of monotone lattice paths from `(0, 0)` to `(m, n)` with `|i n - j m| < h` at every
/// point.
///
/// Cells hold path counts (`row[j] += row[j - 1]`, one addition each); the outer loop runs over
/// the longer side, so each row of the band is short (about `2 h / max(m, n)` cells) and the
/// processor overlaps consecutive rows. Only the band is visited: in row `i`, `j` runs over the
/// open interval `((i n - h) / m, (i n + h) / m)`, about `2 D m n` cells in all (D is the
/// statistic). Both ends of the band only move right as `i` grows, so the cells that fall out on
/// the left are zeroed and those on the right were never set. Counts are rescaled by `2^-600`
/// (exact in binary) whenever they pass `2^600`, and the total `C(m + n, n)` is divided out in
/// logs.
fn ks_paths_inside(m: u64, n: u64, h: u64) -> f64 {
    if h == 0 {
        return 0.0;
    }
    // The band is symmetric under swapping the samples: keep the rows short.
    let (m, n) = if m >= n { (m, n) } else { (n, m) };
    let (big, scale) = (2f64.powi(600), 2f64.powi(-600));
    let mut rescaled = 0i64;
    let mut row = vec![0.0f64; n as usize + 1];
    row[0] = 1.0;
    let mut prev_lo = 0usize;
    for i in 0..=m {
        // Inside: i n - h < j m < i n + h.
        let lo = if i * n < h { 0 } else { ((i * n - h) / m + 1) as usize };
        let hi = (((i * n + h - 1) / m) as usize).min(n as usize);
        if lo > hi {
            // The band has left the grid: no path stays inside.
            return 0.0;
        }
        for cell in &mut row[prev_lo..lo] {
            *cell = 0.0;
        }
        prev_lo = lo;
        let band = &mut row[lo.saturating_sub(1)..=hi];
        // band[0] is row[lo - 1] (zero: outside) unless lo == 0, where it is row[0] itself,
        // whose only paths come from above.
        for k in 1..band.len() {
            band[k] += band[k - 1];
        }
        // Counts rise along a row (each is its left neighbour plus the cell above), so the
        // last is the largest; a row multiplies them by at most n + 1.
        if band[band.len() - 1] > big {
            band.iter_mut().for_each(|c| *c *= scale);
            rescaled += 1;
        }
    }
    let log_total: f64 = (1..=n).map(|k| ((m + k) as f64 / k as f64).ln()).sum();
    if row[n as usize] == 0.0 {
        return 0.0;
    }
    (row[n as usize].ln() + rescaled as f64 * 600.0 * std::f64::consts::LN_2 - log_total).exp().min(1.0)
}

/// Survival function of the Kolmogorov distribution, `P(K > x)` for the limit of `sqrt(n) D_n`
/// (SciPy's `kstwobign.sf`): the alternating series `2 sum (-1)^(k-1) exp(-2 k^2 x^2)` for
/// `x >= 1`, one minus Jacobi's theta form `sqrt(2 pi) / x sum exp(-(2k-1)^2 pi^2 / (8 x^2))`
/// below, each converging in a few terms there.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        let s: f64 = (1..=8)
            .map(|k| {
                let odd = (2 * k - 1) as f64;
                (-odd * odd * std::f64::consts::PI.powi(2) / (8.0 * x * x)).exp()
            })
            .sum();
        return (1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * s).clamp(0.0, 1.0);
    }
    let s: f64 = (1..=100)
        .map(|k| {
            let k = k as f64;
            let sign = if k as u64 % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * k * k * x * x).exp()
        })
        .sum();
    (2.0 * s).clamp(0.0, 1.0)
}

/// Wasserstein-1 (earth mover's) distance between two sorted samples: the area between their
/// empirical CDFs, `integral |F_a(x) - F_b(x)| dx` (SciPy's `wasserstein_distance`).
///
/// The smaller sample's distinct values cut the line into stretches where its CDF is a
/// constant `c`; inside each, the larger sample's values (found by [`gallop`]) are walked in one
/// branch-free pass adding `|F_large - c|` times each gap.
pub fn wasserstein_1(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let (s_len, l_len) = (small.len() as f64, large.len() as f64);
    // Area of |F_large - c| over [from, to], where the large sample's values strictly inside are
    // large[k0..k1] and F_large is k0 / l_len on [from, large[k0]).
    let stretch = |from: f64, to: f64, k0: usize, k1: usize, c: f64| {
        let mut area = 0.0;
        let mut x = from;
        for (k, &v) in large[k0..k1].iter().enumerate() {
            area += ((k0 + k) as f64 / l_len - c).abs() * (v - x);
            x = v;
        }
        area + (k1 as f64 / l_len - c).abs() * (to - x)
    };
    // Below the small sample's first value, its CDF is 0.
    let mut cursor = gallop(large, 0, |x| x < small[0]);
    let mut area = if cursor > 0 { stretch(large[0], small[0], 0, cursor, 0.0) } else { 0.0 };
    let mut k = 0;
    while k < small.len() {
        let v = small[k];
        while k < small.len() && small[k] <= v {
            k += 1;
        }
        let c = k as f64 / s_len;
        let k0 = gallop(large, cursor, |x| x <= v);
        area += match small.get(k) {
            Some(&next) => {
                cursor = gallop(large, k0, |x| x < next);
                stretch(v, next, k0, cursor, c)
            }
            // After the last value the small CDF is 1, up to the large sample's maximum.
            None if k0 < large.len() => stretch(v, large[large.len() - 1], k0, large.len(), 1.0),
            None => 0.0,
        };
    }
    area
}

/// One window of a signal against its reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Finite values in the window.
    pub n: u64,
    /// Population stability index on the reference's bins.
    pub psi: f64,
    /// Kolmogorov–Smirnov statistic against the reference sample.
    pub ks: f64,
    /// Its two-sided P value.
    pub ks_p: f64,
    /// Whether that P value is exact.
    pub ks_exact: bool,
    /// Wasserstein-1 distance to the reference sample, in the signal's unit.
    pub wasserstein: f64,
}

/// Compare a window of values (any order; non-finite ones left out) with a reference.
pub fn compare(reference: &Reference, window: &[f64]) -> Drift {
    let mut w: Vec<f64> = window.iter().copied().filter(|v| v.is_finite()).collect();
    w.sort_by(f64::total_cmp);
    let ks = ks_two_sample_with(&reference.sample, &w, reference.count, KS_EXACT_CELLS);
    Drift {
        n: w.len() as u64,
        psi: psi(&reference.fractions, &bin_fractions(&reference.edges, &w)),
        ks: ks.statistic,
        ks_p: ks.p_value,
        ks_exact: ks.exact,
        wasserstein: wasserstein_1(&reference.sample, &w),
    }
}

/// What CBPE expects of predictions whose labels are not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cbpe {
    /// Predictions it is estimated from.
    pub n: u64,
    /// Expected accuracy at the threshold: the mean of `p` over predicted positives and of
    /// `1 - p` over predicted negatives.
    pub expected_accuracy: f64,
    /// Expected ROC AUC (`NaN` for fewer than two distinct probabilities).
    pub expected_roc_auc: f64,
}

/// Confidence-based performance estimation from calibrated probabilities: each lesion counts as
/// `p` positive and `1 - p` negative. The expected ROC curve takes, at each distinct probability
/// as threshold, the expected true positives (sum of `p` at or above it) over the expected
/// positives (sum of all `p`), and the same for false positives with `1 - p`; its area is by
/// trapezoids, as NannyML's `estimate_roc_auc`.
pub fn cbpe(probabilities: &[f64], threshold: f64) -> Cbpe {
    let n = probabilities.len();
    if n == 0 {
        return Cbpe { n: 0, expected_accuracy: f64::NAN, expected_roc_auc: f64::NAN };
    }
    let expected_accuracy =
        probabilities.iter().map(|&p| if p >= threshold { p } else { 1.0 - p }).sum::<f64>() / n as f64;
    let mut sorted = probabilities.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (pos, neg) = (sorted.iter().sum::<f64>(), sorted.iter().map(|p| 1.0 - p).sum::<f64>());
    let mut distinct = 0;
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut last_tpr, mut last_fpr, mut area) = (0.0, 0.0, 0.0);
    let mut k = 0;
    while k < n {
        let t = sorted[k];
        while k < n && sorted[k] == t {
            tp += sorted[k];
            fp += 1.0 - sorted[k];
            k += 1;
        }
        distinct += 1;
        let (tpr, fpr) = (tp / pos, fp / neg);
        area += (fpr - last_fpr) * (tpr + last_tpr) / 2.0;
        (last_tpr, last_fpr) = (tpr, fpr);
    }
    let expected_roc_auc = if distinct < 2 || pos <= 0.0 || neg <= 0.0 { f64::NAN } else { area };
    Cbpe { n: n as u64, expected_accuracy, expected_roc_auc }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell of the grid, the definition as written.
    fn paths_inside_full_grid(m: u64, n: u64, h: u64) -> f64 {
        let inside = |i: u64, j: u64| (i * n).abs_diff(j * m) < h;
        let mut row = vec![0.0f64; n as usize + 1];
        for i in 0..=m {
            for j in 0..=n {
                let ju = j as usize;
                row[ju] = if !inside(i, j) {
                    0.0
                } else if i == 0 && j == 0 {
                    1.0
                } else {
                    let from_above = if i > 0 { row[ju] * i as f64 / (i + j) as f64 } else { 0.0 };
                    let from_left = if j > 0 { row[ju - 1] * j as f64 / (i + j) as f64 } else { 0.0 };
                    from_above + from_left
                };
            }
        }
        row[n as usize]
    }

    /// The band walk gives the full grid's fraction (to 1e-12) for every h of small grids, equal
    /// and unequal sizes, the boundary cases h = 0, 1 and m n included.
    #[test]
    fn the_band_walk_matches_the_full_grid() {
        for (m, n) in [(1, 1), (1, 7), (5, 5), (7, 3), (12, 30), (50, 40), (20, 300)] {
            for h in 0..=m * n {
                let (band, full) = (ks_paths_inside(m, n, h), paths_inside_full_grid(m, n, h));
                assert!((band - full).abs() < 1e-12, "m {m} n {n} h {h}: band {band} full {full}");
            }
        }
    }

    /// The statistic and Wasserstein-1 by walking the merged sample, as defined.
    fn merged_walk(a: &[f64], b: &[f64]) -> (u64, f64) {
        let (m, n) = (a.len() as u64, b.len() as u64);
        let (mut i, mut j, mut h, mut area) = (0usize, 0usize, 0u64, 0.0);
        let mut x = a[0].min(b[0]);
        while i < a.len() || j < b.len() {
            let next = a.get(i).copied().unwrap_or(f64::INFINITY).min(b.get(j).copied().unwrap_or(f64::INFINITY));
            area += (i as f64 / m as f64 - j as f64 / n as f64).abs() * (next - x);
            x = next;
            while i < a.len() && a[i] <= x {
                i += 1;
            }
            while j < b.len() && b[j] <= x {
                j += 1;
            }
            h = h.max((n * i as u64).abs_diff(m * j as u64));
        }
        (h, area)
    }

    /// The binary-search statistic and the stretch-wise Wasserstein-1 equal the merged walk on
    /// random samples of every size relation, with and without ties (values rounded to a grid).
    #[test]
    fn searched_statistic_and_stretches_equal_the_merged_walk() {
        let mut state = 12345u64;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (m, n) in [(1, 1), (1, 9), (9, 1), (3, 4), (50, 10_000), (10_000, 50), (200, 230), (7, 700)] {
            for grid in [0.0, 20.0] {
                let mut draw = |len: usize, shift: f64| {
                    let mut v: Vec<f64> = (0..len)
                        .map(|_| {
                            let x = shift + 3.0 * uniform();
                            if grid > 0.0 {
                                (x * grid).round() / grid
                            } else {
                                x
                            }
                        })
                        .collect();
                    v.sort_by(f64::total_cmp);
                    v
                };
                let (a, b) = (draw(m, 0.0), draw(n, 0.4));
                let (h, area) = merged_walk(&a, &b);
                assert_eq!(ks_integer_statistic(&a, &b), h, "m {m} n {n} grid {grid}");
                let w = wasserstein_1(&a, &b);
                assert!((w - area).abs() <= 1e-12 * area.max(1.0), "m {m} n {n} grid {grid}: {w} vs {area}");
            }
        }
    }

    fn binomial(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    /// Every way to place `a` among `a ∪ b` (all values distinct), the statistic counted by
    /// brute force: the exact P value is the share of placements at least as extreme.
    #[test]
    fn exact_p_value_counts_every_placement() {
        let a = [0.1, 0.4, 0.5, 0.9];
        let b = [0.2, 0.3, 0.6, 0.7, 0.8];
        let observed = ks_two_sample(&a, &b);
        let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
        all.sort_by(f64::total_cmp);
        let (mut extreme, mut total) = (0u64, 0u64);
        for mask in 0u32..(1 << 9) {
            if mask.count_ones() != 4 {
                continue;
            }
            let (x, y): (Vec<f64>, Vec<f64>) = {
                let (mut x, mut y) = (vec![], vec![]);
                for (k, v) in all.iter().enumerate() {
                    if mask >> k & 1 == 1 {
                        x.push(*v)
                    } else {
                        y.push(*v)
                    }
                }
                (x, y)
            };
            total += 1;
            if ks_two_sample(&x, &y).statistic >= observed.statistic - 1e-12 {
                extreme += 1;
            }
        }
        assert_eq!(total as f64, binomial(9, 4));
        assert!(observed.exact);
        assert!((observed.p_value - extreme as f64 / total as f64).abs() < 1e-12, "{observed:?} {extreme}/{total}");
    }

    #[test]
    fn wasserstein_of_shifted_and_equal_samples() {
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|v| v + 2.5).collect();
        assert!((wasserstein_1(&a, &b) - 2.5).abs() < 1e-12);
        assert!(wasserstein_1(&a, &a).abs() < 1e-15);
        // Unequal sizes: {0, 1} against {0}: half the mass moves by 1.
        assert!((wasserstein_1(&[0.0, 1.0], &[0.0]) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn quantile_bins_split_the_reference_evenly_and_psi_is_zero_on_it() {
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i).sqrt()).collect();
        let r = Reference::new(&values, 10, 100).unwrap();
        assert_eq!(r.fractions.len(), 10);
        assert!(r.fractions.iter().all(|f| (f - 0.1).abs() < 0.002), "{:?}", r.fractions);
        assert_eq!((r.sample.len(), r.count, r.is_complete()), (100, 1000, false));
        assert!(psi(&r.fractions, &bin_fractions(&r.edges, &values)).abs() < 1e-15);
        // Ties merge edges: a signal that is mostly one value keeps fewer bins.
        let tied: Vec<f64> = (0..100).map(|i| if i < 90 { 1.0 } else { f64::from(i) }).collect();
        let t = Reference::new(&tied, 10, 1000).unwrap();
        assert!(t.fractions.len() < 10 && (t.fractions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(Reference::new(&[f64::NAN], 10, 10), Err(DriftError::Empty));
        assert!(matches!(Reference::new(&[1.0], 1, 10), Err(DriftError::Settings { .. })));
    }

    #[test]
    fn kolmogorov_tail_is_continuous_where_the_series_switch() {
        let (below, above) = (kolmogorov_sf(1.0 - 1e-9), kolmogorov_sf(1.0));
        assert!((below - above).abs() < 1e-8, "{below} {above}");
        // Known value: P(K > 1.3581) = 0.05.
        assert!((kolmogorov_sf(1.358_099) - 0.05).abs() < 1e-5);
    }

    #[test]
    fn cbpe_of_certain_predictions_is_what_labels_would_give() {
        // Probabilities 0 and 1 only: the expectation is the realised value.
        let c = cbpe(&[1.0, 1.0, 0.0, 0.0, 1.0], 0.5);
        assert_eq!((c.expected_accuracy, c.expected_roc_auc), (1.0, 1.0));
        assert!(cbpe(&[0.3, 0.3], 0.5).expected_roc_auc.is_nan());
    }
}
