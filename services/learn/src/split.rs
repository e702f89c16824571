//! Patient-grouped, label-stratified splits.
//!
//! The study split lesions, not patients, so a patient with two lesions could be in training
//! and test at once, and it let imaging-diagnosed lesions (no pathology) into its test set
//! (`method_notes.md` §3). Here a patient's lesions always land together, and a patient with any
//! lesion lacking histopathology is never put in a test set.
//!
//! Method: patients are shuffled with the seed, then taken largest first; each goes to the part
//! whose unmet quota of malignant and benign lesions it fills most (ties: the part with the
//! larger unmet quota relative to its size). Quotas are the fractions times the class totals.
//! With many small groups this lands within a lesion or two of every quota.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;

/// What the protocol needs to know of a lesion.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesion {
    /// Patient pseudonym (groups lesions).
    pub patient: String,
    /// Site code (for leave-one-institution-out).
    pub site: String,
    /// Malignant (true) or benign.
    pub malignant: bool,
    /// Diagnosed by histopathology (false: imaging follow-up only); only these may be tested on.
    pub histopathology: bool,
}

/// Indices into the lesion list.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Split {
    /// Fit on these.
    pub train: Vec<usize>,
    /// Select models and stop early on these.
    pub validation: Vec<usize>,
    /// Report on these, once.
    pub test: Vec<usize>,
}

/// Why a split cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// Fractions negative, or not summing to 1.
    #[error("split fractions {0:?} must be non-negative and sum to 1")]
    Fractions(Vec<f64>),
    /// Fewer patients than parts.
    #[error("{patients} patients cannot fill {parts} parts")]
    TooFewPatients { patients: usize, parts: usize },
    /// No lesion of the held-out site.
    #[error("no lesions from site {0}")]
    UnknownSite(String),
}

struct Group {
    members: Vec<usize>,
    counts: [f64; 2], // malignant, benign
    testable: bool,
}

fn groups(lesions: &[Lesion], seed: u64) -> Vec<Group> {
    let mut by_patient: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in lesions.iter().enumerate() {
        by_patient.entry(&l.patient).or_default().push(i);
    }
    let mut out: Vec<Group> = by_patient
        .into_values()
        .map(|members| {
            let m = members.iter().filter(|&&i| lesions[i].malignant).count() as f64;
            let testable = members.iter().all(|&i| lesions[i].histopathology);
            Group { counts: [m, members.len() as f64 - m], members, testable }
        })
        .collect();
    // Order by first lesion before shuffling, so that the split depends on the lesions' order
    // and the seed, not on how the pseudonyms happen to sort (they change with the secret).
    out.sort_by_key(|g| g.members[0]);
    out.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
    // Largest first (stable, so the shuffle decides among equals).
    out.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    out
}

/// Assign groups to parts with the given fractions; `allowed(part, group)` says where a group may go.
fn assign(groups: &[Group], fractions: &[f64], allowed: impl Fn(usize, &Group) -> bool) -> Vec<Vec<usize>> {
    let totals = groups.iter().fold([0.0; 2], |t, g| [t[0] + g.counts[0], t[1] + g.counts[1]]);
    let mut need: Vec<[f64; 2]> = fractions.iter().map(|f| [f * totals[0], f * totals[1]]).collect();
    let mut parts = vec![Vec::new(); fractions.len()];
    for g in groups {
        let candidates: Vec<usize> = (0..fractions.len()).filter(|&p| allowed(p, g)).collect();
        let fill = |p: usize| -> f64 { (0..2).map(|c| g.counts[c].min(need[p][c].max(0.0))).sum() };
        let slack = |p: usize| -> f64 {
            let quota = fractions[p] * (totals[0] + totals[1]);
            if quota == 0.0 {
                f64::NEG_INFINITY
            } else {
                (need[p][0] + need[p][1]) / quota
            }
        };
        let best = candidates
            .iter()
            .copied()
            .max_by(|&a, &b| fill(a).total_cmp(&fill(b)).then(slack(a).total_cmp(&slack(b))))
            .expect("every group may go somewhere");
        for c in 0..2 {
            need[best][c] -= g.counts[c];
        }
        parts[best].extend(&g.members);
    }
    for p in &mut parts {
        p.sort_unstable();
    }
    parts
}

fn check_fractions(f: &[f64]) -> Result<(), SplitError> {
    if f.iter().any(|&x| !(0.0..=1.0).contains(&x)) || (f.iter().sum::<f64>() - 1.0).abs() > 1e-9 {
        return Err(SplitError::Fractions(f.to_vec()));
    }
    Ok(())
}

/// Train / validation / test by `fractions` (the study: 0.7, 0.2, 0.1).
pub fn train_validation_test(lesions: &[Lesion], fractions: [f64; 3], seed: u64) -> Result<Split, SplitError> {
    check_fractions(&fractions)?;
    let g = groups(lesions, seed);
    if g.len() < 3 {
        return Err(SplitError::TooFewPatients { patients: g.len(), parts: 3 });
    }
    let mut parts = assign(&g, &fractions, |part, group| part != 2 || group.testable);
    let test = parts.pop().expect("three parts");
    let validation = parts.pop().expect("three parts");
    let train = parts.pop().expect("three parts");
    Ok(Split { train, validation, test })
}

/// `k` cross-validation folds: fold `i` tests on part `i` and trains on the rest (no separate
/// validation part; callers that stop early carve one from the training part). Patients with
/// any lesion lacking histopathology are never in a test part: they train in every fold.
pub fn k_fold(lesions: &[Lesion], k: usize, seed: u64) -> Result<Vec<Split>, SplitError> {
    let g = groups(lesions, seed);
    if k < 2 || g.len() < k {
        return Err(SplitError::TooFewPatients { patients: g.len(), parts: k.max(2) });
    }
    let testable: Vec<Group> = g.into_iter().filter(|x| x.testable).collect();
    let parts = assign(&testable, &vec![1.0 / k as f64; k], |_, _| true);
    let folds = (0..k)
        .map(|i| {
            let test = parts[i].clone();
            let in_test: std::collections::HashSet<usize> = test.iter().copied().collect();
            let train = (0..lesions.len()).filter(|j| !in_test.contains(j)).collect();
            Split { train, validation: Vec::new(), test }
        })
        .collect();
    Ok(folds)
}

/// `k` disjoint parts covering every lesion, grouped by patient and stratified by label (no
/// test restriction): the folds for out-of-fold predictions on a training set.
pub fn partition(lesions: &[Lesion], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, SplitError> {
    let g = groups(lesions, seed);
    if k < 2 || g.len() < k {
        return Err(SplitError::TooFewPatients { patients: g.len(), parts: k.max(2) });
    }
    Ok(assign(&g, &vec![1.0 / k as f64; k], |_, _| true))
}

/// Leave one institution out: test on `site`'s histopathology-confirmed lesions; split the other
/// sites' lesions into training and validation by `validation_fraction`, grouped and stratified.
/// The held-out site's imaging-diagnosed lesions are used nowhere.
pub fn leave_one_institution_out(
    lesions: &[Lesion],
    site: &str,
    validation_fraction: f64,
    seed: u64,
) -> Result<Split, SplitError> {
    check_fractions(&[1.0 - validation_fraction, validation_fraction])?;
    if !lesions.iter().any(|l| l.site == site) {
        return Err(SplitError::UnknownSite(site.into()));
    }
    let test: Vec<usize> =
        (0..lesions.len()).filter(|&i| lesions[i].site == site && lesions[i].histopathology).collect();
    let others: Vec<usize> = (0..lesions.len()).filter(|&i| lesions[i].site != site).collect();
    let subset: Vec<Lesion> = others.iter().map(|&i| lesions[i].clone()).collect();
    let g = groups(&subset, seed);
    if g.len() < 2 {
        return Err(SplitError::TooFewPatients { patients: g.len(), parts: 2 });
    }
    let parts = assign(&g, &[1.0 - validation_fraction, validation_fraction], |_, _| true);
    let back = |p: &Vec<usize>| p.iter().map(|&i| others[i]).collect::<Vec<_>>();
    Ok(Split { train: back(&parts[0]), validation: back(&parts[1]), test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// A cohort like the study's: 1,162 lesions, some patients with two or three, ~22% benign,
    /// ~8% without histopathology, five sites.
    fn cohort(seed: u64) -> Vec<Lesion> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let sites = ["HUP", "MAY", "TCIA", "SXH", "PHH"];
        let mut out = Vec::new();
        let mut p = 0;
        while out.len() < 1162 {
            p += 1;
            let lesions = if rng.random::<f64>() < 0.06 { 2 + usize::from(rng.random::<f64>() < 0.2) } else { 1 };
            let site = sites[(rng.random::<f64>().powi(3) * 5.0) as usize];
            for _ in 0..lesions {
                out.push(Lesion {
                    patient: format!("P{p}"),
                    site: site.into(),
                    malignant: rng.random::<f64>() < 0.78,
                    histopathology: rng.random::<f64>() < 0.92,
                });
            }
        }
        out
    }

    fn patients(l: &[Lesion], idx: &[usize]) -> std::collections::BTreeSet<String> {
        idx.iter().map(|&i| l[i].patient.clone()).collect()
    }

    #[test]
    fn seventy_twenty_ten_grouped_stratified_and_pathology_only_in_test() {
        let l = cohort(4);
        let s = train_validation_test(&l, [0.7, 0.2, 0.1], 9).unwrap();
        let n = l.len() as f64;
        // Every lesion exactly once.
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..l.len()).collect::<Vec<_>>());
        // No patient on two sides.
        let (a, b, c) = (patients(&l, &s.train), patients(&l, &s.validation), patients(&l, &s.test));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
        // Only histopathology in test.
        assert!(s.test.iter().all(|&i| l[i].histopathology));
        // Sizes within 1% of the lesions, malignant share within 2 points of the cohort's.
        let overall = l.iter().filter(|x| x.malignant).count() as f64 / n;
        for (part, want) in [(&s.train, 0.7), (&s.validation, 0.2), (&s.test, 0.1)] {
            assert!((part.len() as f64 / n - want).abs() < 0.01, "{} of {n} for {want}", part.len());
            let share = part.iter().filter(|&&i| l[i].malignant).count() as f64 / part.len() as f64;
            assert!((share - overall).abs() < 0.02, "malignant share {share} vs {overall}");
        }
        // Seeded, and blind to the pseudonyms' spelling (a new secret renames every patient).
        assert_eq!(s, train_validation_test(&l, [0.7, 0.2, 0.1], 9).unwrap());
        let renamed: Vec<Lesion> = l
            .iter()
            .map(|x| Lesion { patient: format!("z{}", x.patient.len() * 7919 % 101) + &x.patient, ..x.clone() })
            .collect();
        assert_eq!(s, train_validation_test(&renamed, [0.7, 0.2, 0.1], 9).unwrap());
        assert_ne!(s.test, train_validation_test(&l, [0.7, 0.2, 0.1], 10).unwrap().test);
        assert!(matches!(train_validation_test(&l, [0.7, 0.2, 0.2], 9), Err(SplitError::Fractions(_))));
    }

    #[test]
    fn folds_cover_every_testable_lesion_once() {
        let l = cohort(5);
        let folds = k_fold(&l, 5, 1).unwrap();
        let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
        tested.sort_unstable();
        // Testable: lesions of patients whose every lesion has histopathology.
        let unconfirmed: std::collections::BTreeSet<&str> =
            l.iter().filter(|x| !x.histopathology).map(|x| x.patient.as_str()).collect();
        let testable: Vec<usize> = (0..l.len()).filter(|&i| !unconfirmed.contains(l[i].patient.as_str())).collect();
        assert_eq!(tested, testable);
        for f in &folds {
            assert!(patients(&l, &f.train).is_disjoint(&patients(&l, &f.test)));
            assert!((f.test.len() as f64 - testable.len() as f64 / 5.0).abs() <= 3.0, "{}", f.test.len());
        }
    }

    #[test]
    fn leave_one_institution_out_tests_only_that_site() {
        let l = cohort(6);
        let s = leave_one_institution_out(&l, "MAY", 0.2, 3).unwrap();
        assert!(!s.test.is_empty() && s.test.iter().all(|&i| l[i].site == "MAY" && l[i].histopathology));
        assert!(s.train.iter().chain(&s.validation).all(|&i| l[i].site != "MAY"));
        assert!(patients(&l, &s.train).is_disjoint(&patients(&l, &s.validation)));
        let others = l.iter().filter(|x| x.site != "MAY").count();
        assert_eq!(s.train.len() + s.validation.len(), others);
        assert!(matches!(leave_one_institution_out(&l, "XYZ", 0.2, 3), Err(SplitError::UnknownSite(_))));
    }
}
