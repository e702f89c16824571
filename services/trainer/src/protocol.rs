//! Which lesions train, validate and test: the labels, and the three protocols.
//!
//! Protocols ([`Protocol`]): 70/20/10 train/validation/test (default), k folds, or leave one
//! institution out; always grouped by patient pseudonym, stratified by label, lesions without
//! histopathology never tested on (`renal_learn::split`).

use crate::error::TrainerError;
use renal_learn::split::{k_fold, leave_one_institution_out, train_validation_test, Lesion, Split};
use renal_messages::LesionV1;
use std::collections::BTreeMap;
use std::path::Path;

/// Seed of every split the trainer makes.
pub const SPLIT_SEED: u64 = 1;

/// Fewer labelled lesions than this are not split and trained on (a 10% test part of fewer
/// than two lesions says nothing).
pub const MIN_LABELLED: usize = 20;

/// The training part is cut into this many patient-grouped parts; one of them makes each
/// model's own choices ([`selection_split`]).
pub const SELECTION_PARTS: usize = 5;

/// Fewest lesions of each class the selection part must hold; with fewer, choices are made on
/// the validation part instead ([`selection_split`]).
pub const MIN_SELECTION_PER_CLASS: usize = 3;

/// Lesions to fit on, and lesions to choose on.
pub type FitAndSelect = (Vec<usize>, Vec<usize>);

/// A round's training part cut for each model's own choices: (fit on these, choose on these),
/// grouped by patient and stratified, one part in [`SELECTION_PARTS`] choosing. The clinical
/// model's early stopping and a network's epoch and trial are chosen there, so the validation
/// part chooses nothing: every calibrator and the stacker are fitted on it. `None` when that
/// part would hold fewer than [`MIN_SELECTION_PER_CLASS`] lesions of either class (a small
/// cohort): the caller then chooses on the validation part, as the study did, and says so.
pub fn selection_split(facts: &[Lesion], train: &[usize]) -> Result<Option<FitAndSelect>, TrainerError> {
    let sub: Vec<Lesion> = train.iter().map(|&i| facts[i].clone()).collect();
    let Ok(parts) = renal_learn::split::partition(&sub, SELECTION_PARTS, SPLIT_SEED) else { return Ok(None) };
    let select: Vec<usize> = parts[0].iter().map(|&j| train[j]).collect();
    let malignant = select.iter().filter(|&&i| facts[i].malignant).count();
    if malignant.min(select.len() - malignant) < MIN_SELECTION_PER_CLASS {
        return Ok(None);
    }
    let fit: Vec<usize> = parts[1..].iter().flatten().map(|&j| train[j]).collect();
    Ok(Some((fit, select)))
}

/// The histopathology-confirmed lesions of `rows`: the population every test part is drawn
/// from. Calibrators and the stacker learn on the validation part's (imaging-diagnosed lesions
/// are never tested on, and in the study's labels they are all benign, so a calibrator fitted
/// on them too learns a lower malignancy rate than the tested one: on a 160-lesion cohort
/// (seed 21) 56% of the validation part was malignant against 84% of the tested lesions), and
/// the networks choose their epoch on the selection part's (with imaging-diagnosed lesions,
/// mostly fat-containing angiomyolipomas that are easy to tell, the chosen epochs' AUC exceeded
/// the held-out one by 0.11-0.17 at 1,162 lesions). All of `rows` when the confirmed ones hold
/// fewer than two of either class.
pub fn confirmed_rows(facts: &[Lesion], rows: &[usize]) -> Vec<usize> {
    let confirmed: Vec<usize> = rows.iter().copied().filter(|&i| facts[i].histopathology).collect();
    let malignant = confirmed.iter().filter(|&&i| facts[i].malignant).count();
    if malignant.min(confirmed.len() - malignant) < 2 {
        return rows.to_vec();
    }
    confirmed
}

/// Folds of a round's cross-fitted calibration ([`calibration_folds`]).
pub const CALIBRATION_FOLDS: usize = 5;

/// One fold of a cross-fitted calibration: fit on the first rows, score the second.
pub type FitAndScore = (Vec<usize>, Vec<usize>);

/// The folds a cheap model's calibrator learns from: [`CALIBRATION_FOLDS`] patient-grouped
/// folds over the round's training and validation parts together, each scoring only
/// histopathology-confirmed lesions (the tested population; `renal_learn::split::k_fold`), so
/// that every such lesion outside the test part gets an out-of-fold score. On the validation
/// part alone a calibrator sees a fifth of that: leaving HUP out of a 1,162-lesion cohort, 34
/// confirmed lesions, 5 of them benign, on which the clinical model's Platt slope came out
/// inverted (its raw scores ranked the held-out site at ROC AUC 0.79; the inverted calibrator
/// turned that into 0.21). `None` when the folds cannot be made or their scored rows hold fewer
/// than two lesions of either class: the caller then calibrates on the validation part.
pub fn calibration_folds(facts: &[Lesion], split: &Split) -> Option<Vec<FitAndScore>> {
    let pool: Vec<usize> = split.train.iter().chain(&split.validation).copied().collect();
    let sub: Vec<Lesion> = pool.iter().map(|&i| facts[i].clone()).collect();
    let folds = k_fold(&sub, CALIBRATION_FOLDS, SPLIT_SEED).ok()?;
    let back = |idx: &[usize]| idx.iter().map(|&j| pool[j]).collect::<Vec<usize>>();
    let folds: Vec<FitAndScore> = folds.iter().map(|f| (back(&f.train), back(&f.test))).collect();
    let scored: Vec<usize> = folds.iter().flat_map(|f| f.1.iter().copied()).collect();
    let malignant = scored.iter().filter(|&&i| facts[i].malignant).count();
    let both = folds.iter().all(|(fit, _)| {
        let m = fit.iter().filter(|&&i| facts[i].malignant).count();
        m > 0 && m < fit.len()
    });
    (both && malignant.min(scored.len() - malignant) >= 2).then_some(folds)
}

/// How lesions are held out for the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// One patient-grouped 70/20/10 split: report on the 10%.
    Split,
    /// `k` patient-grouped folds: each fold's lesions predicted by a model trained on the
    /// others (80/20 train/validation); report on every testable lesion.
    KFold(usize),
    /// Test on one site's lesions; train and validate (80/20) on the other sites'.
    LeaveOut(String),
    /// Test on these patients' histopathology-confirmed lesions (a champion's held-out set, to
    /// compare a challenger with it on lesions neither saw); train and validate (80/20) on
    /// every other patient's. Not a command-line protocol: the trainer builds it from the
    /// registry.
    HeldOut(HeldOutPatients),
}

/// Patient pseudonyms whose lesions are held out; shown as a count, so that a protocol printed
/// into a bundle's notes lists no pseudonyms.
#[derive(Clone, PartialEq)]
pub struct HeldOutPatients(pub std::sync::Arc<std::collections::BTreeSet<String>>);

impl std::fmt::Debug for HeldOutPatients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} patients", self.0.len())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.split_once(':') {
            None if s == "split" => Ok(Protocol::Split),
            Some(("kfold", k)) => match k.parse::<usize>() {
                Ok(k) if k >= 2 => Ok(Protocol::KFold(k)),
                _ => Err(format!("kfold:{k}: want at least 2 folds")),
            },
            Some(("loio", site)) if !site.is_empty() => Ok(Protocol::LeaveOut(site.to_uppercase())),
            _ => Err(format!("{s:?}: want split, kfold:K or loio:SITE")),
        }
    }
}

/// What the labels say of each lesion: `case_id -> (malignant, histopathology)`.
pub type Truth = BTreeMap<String, (bool, bool)>;

/// Read a labels file through label intake's step (`case_id,label[,diagnosis_source]`, or keyed
/// by `accession` and `site`, which needs the deployment's `keys`; without `diagnosis_source`
/// every label counts as histopathology). Any bad row stops the read: a model is not trained on
/// a file with labels it could not read.
pub fn read_truth(path: &Path, keys: Option<&renal_base::keys::Keys>) -> Result<Truth, TrainerError> {
    let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
    let labels = |source| TrainerError::Labels { path: path.to_path_buf(), source };
    let mut out = BTreeMap::new();
    for row in renal_labels::parse(&bytes, keys).map_err(labels)? {
        let l = row.map_err(labels)?;
        out.insert(l.case_id, (l.label == "malignant", l.diagnosis_source == "histopathology"));
    }
    Ok(out)
}

/// The latest revision of each labelled lesion, in case-id order, with its protocol facts.
pub fn labelled<'a>(lesion_messages: &'a [LesionV1], truth: &Truth) -> (Vec<&'a LesionV1>, Vec<Lesion>) {
    let mut latest: BTreeMap<&str, &LesionV1> = BTreeMap::new();
    for l in lesion_messages {
        if truth.contains_key(&l.case_id) && latest.get(l.case_id.as_str()).is_none_or(|o| o.revision < l.revision) {
            latest.insert(&l.case_id, l);
        }
    }
    let lesions: Vec<&LesionV1> = latest.into_values().collect();
    let protocol = lesions
        .iter()
        .map(|l| {
            let (malignant, histopathology) = truth[&l.case_id];
            Lesion { patient: l.patient_pseudonym.clone(), site: l.site.clone(), malignant, histopathology }
        })
        .collect();
    (lesions, protocol)
}

/// A fold's training part cut 80/20 into training and validation (grouped, stratified).
fn carve_validation(lesions: &[Lesion], fold: Split) -> Result<Split, renal_learn::split::SplitError> {
    let subset: Vec<Lesion> = fold.train.iter().map(|&i| lesions[i].clone()).collect();
    let inner = train_validation_test(&subset, [0.8, 0.2, 0.0], SPLIT_SEED)?;
    let back = |idx: &[usize]| idx.iter().map(|&i| fold.train[i]).collect::<Vec<_>>();
    Ok(Split { train: back(&inner.train), validation: back(&inner.validation), test: fold.test })
}

/// The rounds of `protocol` over `lesions`: one split, or one per fold.
pub fn splits(lesions: &[Lesion], protocol: &Protocol) -> Result<Vec<Split>, TrainerError> {
    if lesions.len() < MIN_LABELLED {
        return Err(TrainerError::TooFewLabelled { labelled: lesions.len(), needed: MIN_LABELLED });
    }
    let splits: Vec<Split> = match protocol {
        Protocol::Split => vec![train_validation_test(lesions, [0.7, 0.2, 0.1], SPLIT_SEED)?],
        Protocol::KFold(k) => k_fold(lesions, *k, SPLIT_SEED)?
            .into_iter()
            .map(|fold| carve_validation(lesions, fold))
            .collect::<Result<_, _>>()?,
        Protocol::LeaveOut(site) => vec![leave_one_institution_out(lesions, site, 0.2, SPLIT_SEED)?],
        Protocol::HeldOut(patients) => {
            let held = |i: &usize| patients.0.contains(&lesions[*i].patient);
            let test = (0..lesions.len()).filter(|i| held(i) && lesions[*i].histopathology).collect();
            let train = (0..lesions.len()).filter(|i| !held(i)).collect();
            vec![carve_validation(lesions, Split { train, validation: Vec::new(), test })?]
        }
    };
    if splits.iter().any(|s| s.test.is_empty() || s.validation.is_empty() || s.train.is_empty()) {
        return Err(TrainerError::Protocol(format!("{} labelled lesions are too few for {protocol:?}", lesions.len())));
    }
    Ok(splits)
}

/// The labelled lesions and a split of them like `renal run`'s (`parts`: train, validation
/// and test fractions; `renal run` uses 0.7, 0.2, 0.1).
pub fn labelled_split<'a>(
    lesion_messages: &'a [LesionV1],
    labels: &Path,
    keys: Option<&renal_base::keys::Keys>,
    parts: [f64; 3],
) -> Result<(Vec<&'a LesionV1>, Vec<Lesion>, Split), TrainerError> {
    let truth = read_truth(labels, keys)?;
    let (lesions, protocol) = labelled(lesion_messages, &truth);
    if lesions.len() < MIN_LABELLED {
        return Err(TrainerError::TooFewLabelled { labelled: lesions.len(), needed: MIN_LABELLED });
    }
    let split = train_validation_test(&protocol, parts, SPLIT_SEED)?;
    Ok((lesions, protocol, split))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesions(n: usize) -> Vec<Lesion> {
        (0..n)
            .map(|i| Lesion {
                patient: format!("P{}", i / 2),
                site: "HUP".into(),
                malignant: i % 5 < 3,
                histopathology: true,
            })
            .collect()
    }

    #[test]
    fn a_held_out_patient_set_is_tested_on_and_none_of_its_lesions_trains() {
        let mut facts = lesions(100);
        facts[3].histopathology = false;
        // Patients 0 and 1 (lesions 0-3), and one nobody has.
        let patients: std::collections::BTreeSet<String> = ["P0", "P1", "P77"].iter().map(|s| s.to_string()).collect();
        let protocol = Protocol::HeldOut(HeldOutPatients(std::sync::Arc::new(patients)));
        assert_eq!(format!("{protocol:?}"), "HeldOut(3 patients)");
        let split = &splits(&facts, &protocol).unwrap()[0];
        assert_eq!(split.test, vec![0, 1, 2], "lesion 3 is imaging-diagnosed: neither tested nor trained on");
        let mut rest: Vec<usize> = split.train.iter().chain(&split.validation).copied().collect();
        rest.sort();
        assert_eq!(rest, (4..100).collect::<Vec<_>>());
        assert!((15..=25).contains(&split.validation.len()), "about a fifth validates: {}", split.validation.len());
    }

    #[test]
    fn a_fifth_of_the_training_part_chooses_grouped_by_patient_with_both_classes() {
        let facts = lesions(200);
        let train: Vec<usize> = (0..200).filter(|i| i % 10 < 8).collect();
        let (fit, select) = selection_split(&facts, &train).unwrap().unwrap();
        let mut all: Vec<usize> = fit.iter().chain(&select).copied().collect();
        all.sort();
        assert_eq!(all, train, "the two cover the training part once");
        let patients =
            |idx: &[usize]| idx.iter().map(|&i| facts[i].patient.clone()).collect::<std::collections::BTreeSet<_>>();
        assert!(patients(&fit).is_disjoint(&patients(&select)), "a patient on both sides");
        assert!((28..=36).contains(&select.len()), "about a fifth: {}", select.len());
        let malignant = select.iter().filter(|&&i| facts[i].malignant).count();
        assert!(malignant >= MIN_SELECTION_PER_CLASS && select.len() - malignant >= MIN_SELECTION_PER_CLASS);
        // Too small to set a fifth aside with three of each class: the caller chooses on validation.
        let tiny: Vec<usize> = (0..20).collect();
        assert_eq!(selection_split(&facts, &tiny).unwrap(), None);
    }

    #[test]
    fn calibrators_learn_on_the_confirmed_lesions_unless_too_few() {
        let mut facts = lesions(40);
        for (i, l) in facts.iter_mut().enumerate() {
            l.histopathology = i % 4 != 0;
        }
        let validation: Vec<usize> = (0..20).collect();
        let rows = confirmed_rows(&facts, &validation);
        assert_eq!(rows, validation.iter().copied().filter(|i| i % 4 != 0).collect::<Vec<_>>());
        // Confirmed lesions all malignant: the whole validation part.
        for l in facts.iter_mut().filter(|l| !l.malignant) {
            l.histopathology = false;
        }
        assert_eq!(confirmed_rows(&facts, &validation), validation);
    }

    #[test]
    fn cross_fitted_calibration_scores_every_confirmed_lesion_outside_the_test_part_once() {
        let mut facts = lesions(300);
        for (i, l) in facts.iter_mut().enumerate() {
            // Patients 0, 7, 14, ... have an imaging-diagnosed lesion.
            l.histopathology = (i / 2) % 7 != 0;
        }
        let split = Split { train: (0..200).collect(), validation: (200..250).collect(), test: (250..300).collect() };
        let folds = calibration_folds(&facts, &split).unwrap();
        assert_eq!(folds.len(), CALIBRATION_FOLDS);
        let mut scored: Vec<usize> = folds.iter().flat_map(|f| f.1.iter().copied()).collect();
        scored.sort();
        let confirmed: Vec<usize> = (0..250).filter(|&i| facts[i].histopathology).collect();
        assert_eq!(scored, confirmed, "each confirmed non-test lesion scored exactly once");
        let patients =
            |idx: &[usize]| idx.iter().map(|&i| facts[i].patient.clone()).collect::<std::collections::BTreeSet<_>>();
        for (fit, score) in &folds {
            assert!(patients(fit).is_disjoint(&patients(score)), "a patient on both sides of a fold");
            assert!(fit.iter().chain(score).all(|&i| i < 250), "a test lesion in a calibration fold");
            assert_eq!(fit.len() + score.len(), 250, "every other lesion trains");
        }
        // Confirmed lesions of one class only: nothing to calibrate on.
        for l in facts.iter_mut().filter(|l| !l.malignant) {
            l.histopathology = false;
        }
        assert_eq!(calibration_folds(&facts, &split), None);
    }
}
