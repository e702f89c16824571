//! How telling age, sex and tumour size can be, from the study's Table 1 alone.
//!
//! Table 1 gives, per class, the male count and the median and range of age and of tumour size.
//! Read with three stated assumptions, that fixes the best ROC AUC any clinical model on those
//! three variables can reach:
//!
//! - within a class, age is normal and tumour size log-normal, centred on the published median
//!   and truncated to the published range;
//! - their spread follows from the range: the expected range of n normal draws is `d2(n)`
//!   standard deviations (the quality-control constant), so SD = range / d2(n), n the class
//!   count (507 benign, 655 malignant);
//! - given the class, age, sex and size are independent.
//!
//! The best score is then the likelihood ratio, and its ROC AUC is computed on a fine grid
//! (age 0.05 y, log size 1/1000 of its span; both sexes) by the Mann-Whitney sum with ties
//! counted half. The generator's own shapes ([`crate::table1`]: one SD for both classes) go
//! through the same computation, so the two can be compared: a generator more telling than
//! Table 1 implies would make the clinical model look better than the study's data allow.

use crate::table1;

/// One continuous variable's shape in one class: a normal (on the log scale for size) with
/// `centre` and `sd`, truncated to `lo..=hi` (same scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Centre (the median).
    pub centre: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// Age (years), log size (log cm) and probability of male sex, per class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassModel {
    /// Age in years.
    pub age: Shape,
    /// Natural log of the largest diameter in cm.
    pub log_size: Shape,
    /// P(male).
    pub male: f64,
}

/// What a clinical model on age, sex and size could reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Implied {
    /// Benign class.
    pub benign: ClassModel,
    /// Malignant class.
    pub malignant: ClassModel,
    /// ROC AUC of the likelihood ratio of all three.
    pub auc: f64,
    /// ROC AUC of each variable alone: age, sex, size.
    pub auc_each: [f64; 3],
}

impl Shape {
    /// Log density at `x` of the truncated normal (minus infinity outside the bounds).
    pub fn log_density(&self, x: f64) -> f64 {
        if x < self.lo || x > self.hi {
            return f64::NEG_INFINITY;
        }
        let z = (x - self.centre) / self.sd;
        let inside = normal_cdf((self.hi - self.centre) / self.sd) - normal_cdf((self.lo - self.centre) / self.sd);
        -0.5 * z * z - self.sd.ln() - inside.ln()
    }
}

impl Implied {
    /// The best score for one lesion: log P(x | malignant) - log P(x | benign), with age in
    /// years, `male` the sex and `log_size` the natural log of the largest diameter in cm.
    pub fn log_likelihood_ratio(&self, age: f64, male: bool, log_size: f64) -> f64 {
        let class = |c: &ClassModel| {
            c.age.log_density(age) + c.log_size.log_density(log_size) + if male { c.male } else { 1.0 - c.male }.ln()
        };
        class(&self.malignant) - class(&self.benign)
    }
}

/// Expected range of `n` independent standard normal draws (`d2(n)` of quality-control
/// tables): the integral over x of 1 - Phi(x)^n - (1 - Phi(x))^n, by the trapezoid rule on
/// [-12, 12] in steps of 1/1000 (the integrand is below 1e-30 outside for n up to 10^6).
pub fn expected_range(n: usize) -> f64 {
    assert!(n >= 2, "a range needs at least two draws");
    let n = n as i32;
    let step = 1e-3;
    let steps = 24_000;
    let f = |x: f64| {
        let p = normal_cdf(x);
        1.0 - p.powi(n) - (1.0 - p).powi(n)
    };
    let inner: f64 = (1..steps).map(|i| f(-12.0 + i as f64 * step)).sum();
    step * (inner + 0.5 * (f(-12.0) + f(12.0)))
}

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Table 1 read with the module's assumptions (SD from the range and the class count).
pub fn from_table1() -> Implied {
    from_spreads(|age, size, n| {
        let d2 = expected_range(n);
        ((age.2 - age.1) / d2, (size.2 / size.1).ln() / d2)
    })
}

/// The generator's own shapes ([`crate::table1`]'s SDs, one for both classes) through the same
/// computation.
pub fn from_generator() -> Implied {
    from_spreads(|_, _, _| (table1::AGE_SD_YEARS, table1::SIZE_LOG_SD))
}

/// Both classes from Table 1's medians, ranges and male counts, with the spreads `sds` gives a
/// class from its age row, size row (median, min, max) and count: (age SD in years, log-size
/// SD).
fn from_spreads(sds: impl Fn((f64, f64, f64), (f64, f64, f64), usize) -> (f64, f64)) -> Implied {
    let class = |age: (f64, f64, f64), size: (f64, f64, f64), male: usize, n: usize| {
        let (age_sd, size_sd) = sds(age, size, n);
        ClassModel {
            age: Shape { centre: age.0, sd: age_sd, lo: age.1, hi: age.2 },
            log_size: Shape { centre: size.0.ln(), sd: size_sd, lo: size.1.ln(), hi: size.2.ln() },
            male: male as f64 / n as f64,
        }
    };
    let benign = class(table1::AGE_BENIGN, table1::SIZE_BENIGN_CM, table1::MALE_BENIGN, table1::BENIGN);
    let malignant = class(table1::AGE_MALIGNANT, table1::SIZE_MALIGNANT_CM, table1::MALE_MALIGNANT, table1::MALIGNANT);
    implied(benign, malignant)
}

/// Probability mass of `shape` on each cell of `grid` (cell centres, equal widths): the density
/// at the centre (zero outside the bounds), normalised to sum to one.
fn masses(shape: &Shape, grid: &[f64]) -> Vec<f64> {
    let density: Vec<f64> = grid.iter().map(|&x| shape.log_density(x).exp()).collect();
    let total: f64 = density.iter().sum();
    density.iter().map(|m| m / total).collect()
}

/// ROC AUC of the likelihood-ratio score over cells with masses `benign` and `malignant`: the
/// probability that a malignant cell scores above a benign one, ties counted half.
pub fn likelihood_ratio_auc(benign: &[f64], malignant: &[f64]) -> f64 {
    assert_eq!(benign.len(), malignant.len());
    let mut cells: Vec<(f64, f64, f64)> = benign
        .iter()
        .zip(malignant)
        .filter(|(b, m)| **b > 0.0 || **m > 0.0)
        .map(|(&b, &m)| (m.ln() - b.ln(), b, m))
        .collect();
    cells.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below, mut auc) = (0.0, 0.0);
    let mut i = 0;
    while i < cells.len() {
        let mut j = i;
        let (mut b, mut m) = (0.0, 0.0);
        while j < cells.len() && cells[j].0 == cells[i].0 {
            b += cells[j].1;
            m += cells[j].2;
            j += 1;
        }
        auc += m * (below + 0.5 * b);
        below += b;
        i = j;
    }
    auc
}

/// The best ROC AUC on age, sex and size for two class models.
pub fn implied(benign: ClassModel, malignant: ClassModel) -> Implied {
    let span = |f: fn(&ClassModel) -> Shape| {
        let (a, b) = (f(&benign), f(&malignant));
        (a.lo.min(b.lo), a.hi.max(b.hi))
    };
    let (age_lo, age_hi) = span(|c| c.age);
    let ages: Vec<f64> = (0..).map(|i| age_lo + 0.025 + 0.05 * i as f64).take_while(|&a| a < age_hi).collect();
    let (size_lo, size_hi) = span(|c| c.log_size);
    let width = (size_hi - size_lo) / 1000.0;
    let sizes: Vec<f64> = (0..1000).map(|i| size_lo + width * (i as f64 + 0.5)).collect();
    let per_class = |c: &ClassModel| (masses(&c.age, &ages), masses(&c.log_size, &sizes), [1.0 - c.male, c.male]);
    let (age_b, size_b, sex_b) = per_class(&benign);
    let (age_m, size_m, sex_m) = per_class(&malignant);
    let joint = |age: &[f64], size: &[f64], sex: &[f64; 2]| -> Vec<f64> {
        let mut out = Vec::with_capacity(age.len() * size.len() * 2);
        for a in age {
            for z in size {
                for s in sex {
                    out.push(a * z * s);
                }
            }
        }
        out
    };
    let auc = likelihood_ratio_auc(&joint(&age_b, &size_b, &sex_b), &joint(&age_m, &size_m, &sex_m));
    let auc_each = [
        likelihood_ratio_auc(&age_b, &age_m),
        likelihood_ratio_auc(&sex_b, &sex_m),
        likelihood_ratio_auc(&size_b, &size_m),
    ];
    Implied { benign, malignant, auc, auc_each }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_range_matches_the_quality_control_tables() {
        // d2 of the usual control-chart tables (ASTM STP 15D; Montgomery, Appendix VI).
        for (n, d2) in [(2, 1.128), (3, 1.693), (5, 2.326), (10, 3.078), (25, 3.931)] {
            assert!((expected_range(n) - d2).abs() < 1e-3, "d2({n}) = {} against {d2}", expected_range(n));
        }
    }

    #[test]
    fn normal_cdf_at_known_points() {
        // Phi(0) = 1/2; Phi(1.959964) = 0.975; Phi(-1) = 0.158655 (tables, 6 places).
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158655).abs() < 1e-6);
    }

    #[test]
    fn grid_auc_agrees_with_closed_forms() {
        // Two normals of equal SD, untruncated in effect (bounds at +-10 SD): the likelihood
        // ratio is monotone in x, AUC = Phi(delta / (sd sqrt 2)). Grid error under 1e-3.
        let wide = |centre: f64, sd: f64| Shape { centre, sd, lo: centre - 10.0 * sd, hi: centre + 10.0 * sd };
        let b = ClassModel { age: wide(50.0, 12.0), log_size: wide(0.0, 0.5), male: 0.5 };
        let m = ClassModel { age: wide(60.0, 12.0), ..b };
        let r = implied(b, m);
        let expected = normal_cdf(10.0 / (12.0 * std::f64::consts::SQRT_2));
        assert!((r.auc_each[0] - expected).abs() < 1e-3, "{} vs {expected}", r.auc_each[0]);
        // Size and sex carry nothing here, so all three together give age's AUC.
        assert!((r.auc - expected).abs() < 1e-3, "{} vs {expected}", r.auc);
        assert!((r.auc_each[1] - 0.5).abs() < 1e-12 && (r.auc_each[2] - 0.5).abs() < 1e-3);
        // A binary variable alone: AUC = 1/2 + (p_m - p_b) / 2.
        let r = implied(ClassModel { male: 0.3, ..b }, ClassModel { male: 0.7, ..b });
        assert!((r.auc_each[1] - 0.7).abs() < 1e-12, "{}", r.auc_each[1]);
        assert!((r.auc - 0.7).abs() < 1e-6, "{}", r.auc);
        // Two independent equal-SD normals: the likelihood ratio is linear in both, and its
        // AUC is Phi(sqrt(d1^2 + d2^2) / sqrt 2), d the separations in SDs.
        let m = ClassModel { age: wide(62.0, 12.0), log_size: wide(0.4, 0.5), male: 0.5 };
        let r = implied(b, m);
        let expected = normal_cdf((1.0f64 + 0.64).sqrt() / std::f64::consts::SQRT_2);
        assert!((r.auc - expected).abs() < 2e-3, "{} vs {expected}", r.auc);
    }

    #[test]
    fn table1_implies_an_auc_near_0_82_and_the_generator_is_no_more_telling() {
        let t = from_table1();
        // SDs from the ranges: age 85 / d2(507) and 74 / d2(655) years; log size
        // ln(14.2 / 0.6) / d2(507) and ln(18.7 / 0.2) / d2(655).
        assert!((t.benign.age.sd - 13.98).abs() < 0.01 && (t.malignant.age.sd - 11.87).abs() < 0.01, "{t:?}");
        assert!((t.benign.log_size.sd - 0.520).abs() < 1e-3 && (t.malignant.log_size.sd - 0.728).abs() < 1e-3);
        // tests/stats_reference.rs checks this computation against SciPy's (0.8216 there).
        assert!((t.auc - 0.8215).abs() < 0.002, "Table 1 implies {}", t.auc);
        let g = from_generator();
        assert!(g.auc <= t.auc + 0.01, "the generator implies {} against Table 1's {}", g.auc, t.auc);
        assert!(g.auc >= t.auc - 0.05, "the generator implies {} against Table 1's {}", g.auc, t.auc);
    }
}
