//! The sampled cohort reproduces the study's Table 1 within sampling error.
//!
//! For each of three seeds a full-size (1,162-lesion) cohort is drawn. Every proportion must
//! lie within 3.5 binomial standard errors of the published one (|p̂ − p| ≤ 3.5·sqrt(p(1−p)/n));
//! medians of age and size within 3.5 standard errors of the median
//! (SE ≈ 1.2533·σ/√n for the sampling distribution's σ); ranges inside the published ranges.
//! Site counts are exact.

use renal_synth::cohort::{Diagnosis, LesionSpec, Pole, Side};
use renal_synth::table1::{self, Subtype};
use renal_synth::{plan, SynthConfig};

const Z: f64 = 3.5;

fn check_proportion(what: &str, hits: usize, n: usize, p: f64) {
    let se = (p * (1.0 - p) / n as f64).sqrt();
    let got = hits as f64 / n as f64;
    assert!((got - p).abs() <= Z * se + 1e-12, "{what}: {hits}/{n} = {got:.4}, Table 1 {p:.4}, allowed ±{:.4}", Z * se);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn check_class(cohort: &[LesionSpec], malignant: bool) {
    let class: Vec<&LesionSpec> = cohort.iter().filter(|l| l.malignant == malignant).collect();
    let n = class.len();
    let (n_table, male, left, location, diagnosis, age, size, subtypes) = if malignant {
        (
            table1::MALIGNANT,
            table1::MALE_MALIGNANT,
            table1::LEFT_MALIGNANT,
            table1::LOCATION_MALIGNANT,
            table1::DIAGNOSIS_MALIGNANT,
            table1::AGE_MALIGNANT,
            table1::SIZE_MALIGNANT_CM,
            &table1::MALIGNANT_SUBTYPES[..],
        )
    } else {
        (
            table1::BENIGN,
            table1::MALE_BENIGN,
            table1::LEFT_BENIGN,
            table1::LOCATION_BENIGN,
            table1::DIAGNOSIS_BENIGN,
            table1::AGE_BENIGN,
            table1::SIZE_BENIGN_CM,
            &table1::BENIGN_SUBTYPES[..],
        )
    };
    let class_name = if malignant { "malignant" } else { "benign" };
    let frac = |k: usize| k as f64 / n_table as f64;

    // Lesions of one patient share sex, so count sex per patient-lesion as Table 1 does (per lesion).
    check_proportion(&format!("{class_name} male"), class.iter().filter(|l| l.sex == 'M').count(), n, frac(male));
    check_proportion(
        &format!("{class_name} left"),
        class.iter().filter(|l| l.side == Side::Left).count(),
        n,
        frac(left),
    );
    for (pole, count) in [Pole::Upper, Pole::Interpolar, Pole::Lower].into_iter().zip(location) {
        check_proportion(
            &format!("{class_name} {}", pole.as_str()),
            class.iter().filter(|l| l.pole == pole).count(),
            n,
            frac(count),
        );
    }
    for (dx, count) in [Diagnosis::Surgical, Diagnosis::Biopsy, Diagnosis::Imaging].into_iter().zip(diagnosis) {
        check_proportion(
            &format!("{class_name} {}", dx.method()),
            class.iter().filter(|l| l.diagnosis == dx).count(),
            n,
            frac(count),
        );
    }
    for &(subtype, count) in subtypes {
        check_proportion(
            &format!("{class_name} {}", subtype.as_str()),
            class.iter().filter(|l| l.subtype == subtype).count(),
            n,
            frac(count),
        );
    }

    let ages: Vec<f64> = class.iter().map(|l| l.age_years() as f64).collect();
    let se_age = 1.2533 * table1::AGE_SD_YEARS / (n as f64).sqrt();
    // Whole years: allow one extra year for truncation of age to completed years.
    let m = median(ages.clone());
    assert!((m - age.0).abs() <= Z * se_age + 1.0, "{class_name} median age {m} vs {}", age.0);
    let (lo, hi) = ages.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(lo >= age.1 && hi <= age.2, "{class_name} ages {lo}..{hi} outside {}..{}", age.1, age.2);

    let sizes: Vec<f64> = class.iter().map(|l| l.size_cm).collect();
    let m = median(sizes.clone());
    let se_log = 1.2533 * table1::SIZE_LOG_SD / (n as f64).sqrt();
    assert!((m.ln() - size.0.ln()).abs() <= Z * se_log, "{class_name} median size {m:.2} vs {}", size.0);
    assert!(sizes.iter().all(|&s| s >= size.1 && s <= size.2), "{class_name} size outside Table 1 range");
}

#[test]
fn full_cohort_matches_table_1() {
    for seed in [1, 2, 3] {
        let cohort = plan(&SynthConfig { seed, ..SynthConfig::default() }).unwrap();
        assert_eq!(cohort.len(), 1162);
        for (code, count) in table1::SITE_LESIONS {
            assert_eq!(cohort.iter().filter(|l| l.site.code == code).count(), count, "site {code}");
        }
        let malignant = cohort.iter().filter(|l| l.malignant).count();
        check_proportion("malignant", malignant, 1162, 655.0 / 1162.0);
        check_class(&cohort, true);
        check_class(&cohort, false);

        // Grades among malignant lesions, unavailable included.
        let mal: Vec<_> = cohort.iter().filter(|l| l.malignant).collect();
        let total: usize = table1::GRADES.iter().sum();
        for (g, &count) in table1::GRADES.iter().enumerate() {
            let want = if g < 4 { Some(g as u8 + 1) } else { None };
            let hits = mal.iter().filter(|l| l.grade == want).count();
            check_proportion(&format!("grade {want:?}"), hits, mal.len(), count as f64 / total as f64);
        }

        // Imaging-diagnosed lesions are benign AMLs (the study kept them out of the test set).
        assert!(cohort
            .iter()
            .filter(|l| l.diagnosis == Diagnosis::Imaging)
            .all(|l| l.subtype == Subtype::Angiomyolipoma && !l.malignant));
    }
}

#[test]
fn scaled_cohort_keeps_site_proportions() {
    let cohort = plan(&SynthConfig { lesions: 160, ..SynthConfig::default() }).unwrap();
    let counts: Vec<usize> =
        table1::SITE_LESIONS.iter().map(|(c, _)| cohort.iter().filter(|l| l.site.code == *c).count()).collect();
    // 160 × (913, 118, 56, 25, 50) / 1162 = (125.7, 16.2, 7.7, 3.4, 6.9), largest remainder.
    assert_eq!(counts, vec![126, 16, 8, 3, 7]);
}

/// The drawn cohort is exactly as telling as the generator's shapes say, and no more telling
/// than Table 1 implies (renal_synth::implied). On 20,000 drawn lesions the best score's ROC AUC
/// (the generator's likelihood ratio on age, sex and size) has a standard error of about 0.003;
/// it must lie within 0.01 of the computed value, and at most 0.01 above Table 1's.
#[test]
fn drawn_clinical_variables_are_no_more_telling_than_table_1() {
    let generator = renal_synth::implied::from_generator();
    let table = renal_synth::implied::from_table1();
    let cohort = plan(&SynthConfig { lesions: 20_000, seed: 7, ..SynthConfig::default() }).unwrap();
    // Ages are whole years at the study (the draw floored): score the middle of the year.
    let scores: Vec<f64> = cohort
        .iter()
        .map(|l| generator.log_likelihood_ratio(l.age_years() as f64 + 0.5, l.sex == 'M', l.size_cm.ln()))
        .collect();
    let labels: Vec<bool> = cohort.iter().map(|l| l.malignant).collect();
    let drawn = renal_stats::roc_auc(&scores, &labels).unwrap();
    eprintln!(
        "best clinical ROC AUC: drawn {drawn:.4}, generator's shapes {:.4}, Table 1 {:.4}",
        generator.auc, table.auc
    );
    assert!((drawn - generator.auc).abs() < 0.01, "drawn {drawn:.4}, the generator's shapes {:.4}", generator.auc);
    assert!(drawn <= table.auc + 0.01, "drawn {drawn:.4}, Table 1 implies {:.4}", table.auc);
}
