//! Who is in the cohort: patients and lesions drawn from Table 1, before any pixel exists.
//!
//! Everything here is a pure function of the seed, so a cohort can be inspected (and its
//! statistics tested) without rendering images.

use crate::sites::{site, SiteProfile};
use crate::table1::{self, Subtype};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use renal_base::time::{Date, Duration};

/// What the cohort sampler needs.
#[derive(Debug, Clone)]
pub struct CohortConfig {
    /// Total lesions; split over sites in the study's proportions.
    pub lesions: usize,
    /// Master seed; the same seed gives the same cohort, files and UIDs.
    pub seed: u64,
    /// Site codes to include (subset of HUP, MAY, TCIA, SXH, PHH).
    pub sites: Vec<String>,
    /// Fraction of histopathology-confirmed lesions that get two extra segmentations.
    pub multi_segmenter_fraction: f64,
    /// Probability that a patient has a second lesion (imaged in a later, separate study).
    pub second_lesion_probability: f64,
}

/// Why a cohort cannot be drawn.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CohortError {
    /// `lesions` was zero.
    #[error("the cohort needs at least one lesion")]
    NoLesions,
    /// A site code that is not one of the five.
    #[error("unknown site {0:?}; known sites are HUP, MAY, TCIA, SXH, PHH")]
    UnknownSite(String),
    /// The site list was empty or repeated a site.
    #[error("site list must name each site at most once and not be empty (got {0:?})")]
    BadSiteList(Vec<String>),
    /// A probability outside 0..=1.
    #[error("{name} must lie in 0..=1, got {value}")]
    BadFraction { name: &'static str, value: f64 },
}

/// How the diagnosis was established (Table 1, "Approach for diagnosis").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnosis {
    /// Surgical excision, histopathology.
    Surgical,
    /// Biopsy, histopathology.
    Biopsy,
    /// Typical imaging features and stable follow-up (benign only).
    Imaging,
}

impl Diagnosis {
    /// `histopathology` or `imaging`, the `diagnosis_source` column.
    pub fn source(self) -> &'static str {
        match self {
            Diagnosis::Surgical | Diagnosis::Biopsy => "histopathology",
            Diagnosis::Imaging => "imaging",
        }
    }

    /// `surgical_excision`, `biopsy` or `imaging`, the `diagnosis_method` column.
    pub fn method(self) -> &'static str {
        match self {
            Diagnosis::Surgical => "surgical_excision",
            Diagnosis::Biopsy => "biopsy",
            Diagnosis::Imaging => "imaging",
        }
    }
}

/// Kidney side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Patient left (+x in LPS).
    Left,
    /// Patient right.
    Right,
}

/// Position along the kidney's long axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pole {
    /// Upper pole.
    Upper,
    /// Interpolar region.
    Interpolar,
    /// Lower pole.
    Lower,
}

impl Pole {
    /// Lower-case name for the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Pole::Upper => "upper",
            Pole::Interpolar => "interpolar",
            Pole::Lower => "lower",
        }
    }
}

/// One lesion of one patient: everything the renderer and the exporter need.
#[derive(Debug, Clone)]
pub struct LesionSpec {
    /// Position in the cohort (0-based), fixes the per-lesion random stream.
    pub index: usize,
    /// `SITE-NNNN`; carries no patient information.
    pub case_id: String,
    /// Site profile.
    pub site: &'static SiteProfile,
    /// 1-based patient number within the site (used for folder names, not an identifier).
    pub patient_number: usize,
    /// The site's medical record number (DICOM PatientID, and `labels.csv`).
    pub patient_id: String,
    /// DICOM PatientName, synthetic.
    pub patient_name: String,
    /// `true` for RCC.
    pub malignant: bool,
    /// Histologic subtype.
    pub subtype: Subtype,
    /// Fuhrman/ISUP grade 1-4 for RCC when known.
    pub grade: Option<u8>,
    /// How the label was established.
    pub diagnosis: Diagnosis,
    /// `M` or `F`.
    pub sex: char,
    /// Date of birth.
    pub birth_date: Date,
    /// Date of the MRI study that shows this lesion.
    pub study_date: Date,
    /// Seconds after midnight of the study start.
    pub study_time_s: u32,
    /// Body weight in kg.
    pub weight_kg: f64,
    /// Largest diameter, cm.
    pub size_cm: f64,
    /// Kidney side.
    pub side: Side,
    /// Position along the kidney.
    pub pole: Pole,
    /// 1 or 3 (the primary reader plus two simulated readers).
    pub segmenters: usize,
    /// 1 for a patient's first lesion, 2 for the second.
    pub lesion_of_patient: usize,
    /// Seed of this lesion's own random stream.
    pub seed: u64,
}

impl LesionSpec {
    /// Age in completed years on the study date.
    pub fn age_years(&self) -> u32 {
        renal_base::completed_years(self.birth_date, self.study_date)
    }
}

/// splitmix64: a well-mixed 64-bit hash used to derive independent seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lesions per site: the study's shares scaled to `total` by largest remainder.
pub fn site_counts(total: usize, sites: &[&'static SiteProfile]) -> Vec<usize> {
    let weights: Vec<usize> = sites.iter().map(|s| s.study_lesions).collect();
    let sum: usize = weights.iter().sum();
    let mut counts: Vec<usize> = weights.iter().map(|w| total * w / sum).collect();
    let mut remainders: Vec<(usize, usize)> = weights.iter().enumerate().map(|(n, w)| ((total * w) % sum, n)).collect();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let short = total - counts.iter().sum::<usize>();
    for &(_, n) in remainders.iter().take(short) {
        counts[n] += 1;
    }
    counts
}

fn pick<T: Copy>(rng: &mut impl Rng, items: &[(T, usize)]) -> T {
    let total: usize = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    unreachable!("weights sum to total")
}

fn truncated_normal(rng: &mut impl Rng, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
    let d = Normal::new(mean, sd).expect("positive sd");
    loop {
        let x = d.sample(rng);
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
}

/// Resolve and check a site list.
pub fn resolve_sites(codes: &[String]) -> Result<Vec<&'static SiteProfile>, CohortError> {
    if codes.is_empty() {
        return Err(CohortError::BadSiteList(codes.to_vec()));
    }
    let mut out: Vec<&'static SiteProfile> = Vec::new();
    for code in codes {
        let s = site(code.trim()).ok_or_else(|| CohortError::UnknownSite(code.clone()))?;
        if out.iter().any(|o| o.code == s.code) {
            return Err(CohortError::BadSiteList(codes.to_vec()));
        }
        out.push(s);
    }
    Ok(out)
}

/// Draw the whole cohort. Lesions come out ordered by site (in the given order), then patient.
pub fn sample_cohort(cfg: &CohortConfig) -> Result<Vec<LesionSpec>, CohortError> {
    if cfg.lesions == 0 {
        return Err(CohortError::NoLesions);
    }
    for (name, value) in [
        ("multi-segmenter fraction", cfg.multi_segmenter_fraction),
        ("second-lesion probability", cfg.second_lesion_probability),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(CohortError::BadFraction { name, value });
        }
    }
    let sites = resolve_sites(&cfg.sites)?;
    let counts = site_counts(cfg.lesions, &sites);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix64(cfg.seed));
    let p_malignant = table1::MALIGNANT as f64 / (table1::BENIGN + table1::MALIGNANT) as f64;
    let mut out = Vec::with_capacity(cfg.lesions);
    for (site, &count) in sites.iter().zip(&counts) {
        let mut patient_number = 0;
        let mut in_site = 0;
        while in_site < count {
            patient_number += 1;
            let malignant = rng.random_bool(p_malignant);
            let (male, age, sizes, left, poles, mix) = if malignant {
                (
                    table1::MALE_MALIGNANT as f64 / table1::MALIGNANT as f64,
                    table1::AGE_MALIGNANT,
                    table1::SIZE_MALIGNANT_CM,
                    table1::LEFT_MALIGNANT as f64 / table1::MALIGNANT as f64,
                    table1::LOCATION_MALIGNANT,
                    &table1::MALIGNANT_SUBTYPES[..],
                )
            } else {
                (
                    table1::MALE_BENIGN as f64 / table1::BENIGN as f64,
                    table1::AGE_BENIGN,
                    table1::SIZE_BENIGN_CM,
                    table1::LEFT_BENIGN as f64 / table1::BENIGN as f64,
                    table1::LOCATION_BENIGN,
                    &table1::BENIGN_SUBTYPES[..],
                )
            };
            let sex = if rng.random_bool(male) { 'M' } else { 'F' };
            // Age at the first study; a second lesion's study can be up to two years later, so
            // the draw stops two years short of the published maximum.
            let age = truncated_normal(&mut rng, age.0, table1::AGE_SD_YEARS, age.1, age.2 - 2.0).floor() as i32;
            let weight_kg = truncated_normal(&mut rng, if sex == 'M' { 86.0 } else { 72.0 }, 15.0, 20.0, 180.0);
            // Day offsets are drawn as i64, the type the seeded streams were first drawn in.
            let start = renal_base::date(2008, 1, 1).expect("a calendar date");
            let first_study = start + Duration::days(rng.random_range(0i64..(11 * 365 + 180)));
            // Exactly `age` completed years on the first study date.
            let anniversary =
                Date::from_calendar_date(first_study.year() - age, first_study.month(), first_study.day().min(28))
                    .expect("days up to the 28th exist in every month");
            let birth_date = anniversary - Duration::days(rng.random_range(0i64..365));
            let patient_id = site.patient_id(&mut rng);
            let patient_name = synthetic_name(&mut rng);
            let n_lesions = if count - in_site >= 2 && rng.random_bool(cfg.second_lesion_probability) { 2 } else { 1 };
            let mut study_date = first_study;
            for lesion_of_patient in 1..=n_lesions {
                if lesion_of_patient > 1 {
                    study_date += Duration::days(rng.random_range(90i64..720));
                }
                let subtype = pick(&mut rng, mix);
                let diagnosis = if malignant {
                    let [surgical, biopsy, _] = table1::DIAGNOSIS_MALIGNANT;
                    pick(&mut rng, &[(Diagnosis::Surgical, surgical), (Diagnosis::Biopsy, biopsy)])
                } else if subtype == Subtype::Angiomyolipoma
                    && rng.random_bool(table1::DIAGNOSIS_BENIGN[2] as f64 / 406.0)
                {
                    // Typical (fat-containing) AMLs are diagnosed on imaging; that is all of
                    // Table 1's 345 imaging diagnoses.
                    Diagnosis::Imaging
                } else {
                    let [surgical, biopsy, _] = table1::DIAGNOSIS_BENIGN;
                    pick(&mut rng, &[(Diagnosis::Surgical, surgical), (Diagnosis::Biopsy, biopsy)])
                };
                let grade = if malignant {
                    pick(
                        &mut rng,
                        &[
                            (Some(1u8), table1::GRADES[0]),
                            (Some(2), table1::GRADES[1]),
                            (Some(3), table1::GRADES[2]),
                            (Some(4), table1::GRADES[3]),
                            (None, table1::GRADES[4]),
                        ],
                    )
                } else {
                    None
                };
                let log_size =
                    truncated_normal(&mut rng, sizes.0.ln(), table1::SIZE_LOG_SD, sizes.1.ln(), sizes.2.ln());
                let side = if rng.random_bool(left) { Side::Left } else { Side::Right };
                let pole =
                    pick(&mut rng, &[(Pole::Upper, poles[0]), (Pole::Interpolar, poles[1]), (Pole::Lower, poles[2])]);
                let segmenters = if diagnosis != Diagnosis::Imaging && rng.random_bool(cfg.multi_segmenter_fraction) {
                    3
                } else {
                    1
                };
                in_site += 1;
                let index = out.len();
                out.push(LesionSpec {
                    index,
                    case_id: format!("{}-{:04}", site.code, in_site),
                    site,
                    patient_number,
                    patient_id: patient_id.clone(),
                    patient_name: patient_name.clone(),
                    malignant,
                    subtype,
                    grade,
                    diagnosis,
                    sex,
                    birth_date,
                    study_date,
                    study_time_s: rng.random_range(7 * 3600..19 * 3600),
                    weight_kg,
                    size_cm: log_size.exp(),
                    side,
                    pole,
                    segmenters,
                    lesion_of_patient,
                    seed: mix64(cfg.seed ^ mix64(index as u64 + 1)),
                });
            }
        }
    }
    Ok(out)
}

fn synthetic_name(rng: &mut impl Rng) -> String {
    let letters = |rng: &mut dyn rand::RngCore, n: usize| -> String {
        (0..n).map(|_| (b'A' + (rng.next_u32() % 26) as u8) as char).collect()
    };
    format!("SYNTH{}^{}", letters(rng, 6), letters(rng, 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lesions: usize) -> CohortConfig {
        CohortConfig {
            lesions,
            seed: 7,
            sites: ["HUP", "MAY", "TCIA", "SXH", "PHH"].iter().map(|s| s.to_string()).collect(),
            multi_segmenter_fraction: 0.15,
            second_lesion_probability: 0.06,
        }
    }

    #[test]
    fn full_size_site_counts_are_the_studys() {
        let sites = resolve_sites(&config(1).sites).unwrap();
        assert_eq!(site_counts(1162, &sites), vec![913, 118, 56, 25, 50]);
        let small = site_counts(40, &sites);
        assert_eq!(small.iter().sum::<usize>(), 40);
        assert!(small[0] > small[1] && small[1] > small[2]);
    }

    #[test]
    fn same_seed_same_cohort_other_seed_other_cohort() {
        let a = sample_cohort(&config(50)).unwrap();
        let b = sample_cohort(&config(50)).unwrap();
        assert_eq!(
            a.iter().map(|l| (&l.case_id, &l.patient_id, l.size_cm.to_bits())).collect::<Vec<_>>(),
            b.iter().map(|l| (&l.case_id, &l.patient_id, l.size_cm.to_bits())).collect::<Vec<_>>()
        );
        let mut other = config(50);
        other.seed = 8;
        let c = sample_cohort(&other).unwrap();
        assert_ne!(
            a.iter().map(|l| l.size_cm.to_bits()).collect::<Vec<_>>(),
            c.iter().map(|l| l.size_cm.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        assert_eq!(sample_cohort(&config(0)).unwrap_err(), CohortError::NoLesions);
        let mut c = config(5);
        c.sites = vec!["HUP".into(), "XYZ".into()];
        assert_eq!(sample_cohort(&c).unwrap_err(), CohortError::UnknownSite("XYZ".into()));
        c.sites = vec!["HUP".into(), "HUP".into()];
        assert!(matches!(sample_cohort(&c).unwrap_err(), CohortError::BadSiteList(_)));
        let mut c = config(5);
        c.multi_segmenter_fraction = 1.5;
        assert!(matches!(sample_cohort(&c).unwrap_err(), CohortError::BadFraction { .. }));
    }

    #[test]
    fn imaging_diagnoses_are_benign_angiomyolipomas_only() {
        for l in sample_cohort(&config(600)).unwrap() {
            if l.diagnosis == Diagnosis::Imaging {
                assert_eq!(l.subtype, Subtype::Angiomyolipoma);
                assert_eq!(l.segmenters, 1, "extra readers only on histopathology lesions");
            }
            assert_eq!(l.malignant, l.subtype.is_malignant());
            assert!(l.malignant || l.grade.is_none(), "benign lesions have no grade");
        }
    }

    #[test]
    fn second_lesions_share_the_patient_and_come_later() {
        let cohort = sample_cohort(&config(1162)).unwrap();
        let seconds: Vec<_> = cohort.iter().filter(|l| l.lesion_of_patient == 2).collect();
        assert!(!seconds.is_empty());
        for s in seconds {
            let first = &cohort[s.index - 1];
            assert_eq!(first.patient_id, s.patient_id);
            assert_eq!(first.birth_date, s.birth_date);
            assert!(s.study_date > first.study_date);
        }
    }
}
