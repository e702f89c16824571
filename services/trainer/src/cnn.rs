//! The T2 and T1C networks of one split: composites read from the blob store, both networks
//! trained (epochs chosen on a fifth of the training part), Platt-calibrated on validation,
//! scored on the test part and saved as a bundle.

use crate::error::{io, TrainerError};
use indicatif::{ProgressBar, ProgressStyle};
use renal_cnn::bundle::{self, DataManifest, Manifest, SeriesToSave};
use renal_cnn::train::{predict, train, EpochLog, Samples, TrainConfig, COMPOSITE_PX};
use renal_messages::LesionV1;
use renal_stats::Platt;
use renal_store::BlobStore;
use std::path::Path;
use std::time::Duration;
use tch::Device;

/// Both composites of each lesion, read from the blob store.
pub fn read_composites(store: &dyn BlobStore, lesions: &[&LesionV1]) -> Result<Vec<[Vec<f32>; 2]>, TrainerError> {
    let bar = bar(lesions.len() as u64, "read composites");
    let mut out = Vec::with_capacity(lesions.len());
    for l in lesions {
        let mut pair: [Vec<f32>; 2] = Default::default();
        for (slot, blob) in pair.iter_mut().zip(&l.composites) {
            let (side, values) = read_composite(store, blob, &format!("composite of {}", l.case_id))?;
            if side as i64 != COMPOSITE_PX {
                return Err(TrainerError::Composite {
                    what: format!("composite of {}", l.case_id),
                    reason: format!("is {side}x{side}; training reads {COMPOSITE_PX}x{COMPOSITE_PX} composites"),
                });
            }
            *slot = values;
        }
        out.push(pair);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// One composite from the blob store (hash-checked): its side and values; `what` names it in
/// errors.
pub fn read_composite(
    store: &dyn BlobStore,
    blob: &renal_messages::BlobRef,
    what: &str,
) -> Result<(usize, Vec<f32>), TrainerError> {
    let bytes = store.get(blob).map_err(|source| TrainerError::Blob { what: what.into(), source })?;
    renal_imaging::composite::decode_blob(&bytes)
        .map_err(|e| TrainerError::Composite { what: what.into(), reason: e.to_string() })
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}"))
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The CNN arm of one split: both networks trained, calibrated on validation, and scored on the
/// test part.
pub struct CnnFit {
    /// Bundle written to the registry.
    pub manifest: Manifest,
    /// Calibrated test probabilities, T2 then T1C, in `split.test` order.
    pub test: [Vec<f64>; 2],
    /// Raw (uncalibrated) outputs on the calibration part, T2 then T1C, in its order.
    pub validation_raw: [Vec<f64>; 2],
    /// Raw test outputs, T2 then T1C.
    pub test_raw: [Vec<f64>; 2],
    /// Penultimate-layer embeddings of every lesion of the four parts (by index into the
    /// lesions), T2's then T1C's values.
    pub embeddings: std::collections::BTreeMap<usize, Vec<f64>>,
}

/// Train T2 and T1C networks on the first of `parts`, choose their epochs on the second
/// (`protocol::selection_split`), calibrate on the third and predict the fourth, the test part;
/// the bundle goes to `registry` (its data manifest's validation lesions: the second part).
/// `checkpoint`: a folder to keep each network's checkpoint in (one sub-folder per series) and
/// resume from.
#[allow(clippy::too_many_arguments)]
pub fn fit_split(
    lesions: &[&LesionV1],
    composites: &[[Vec<f32>; 2]],
    malignant: &[bool],
    parts: [&[usize]; 4],
    config: &TrainConfig,
    device: Device,
    registry: &Path,
    label: &str,
    checkpoint: Option<&Path>,
) -> Result<CnnFit, TrainerError> {
    let [train_idx, select_idx, calibration_idx, test_idx] = parts;
    let pick = |idx: &[usize], r: usize| -> Samples {
        let images: Vec<&[f32]> = idx.iter().map(|&i| composites[i][r].as_slice()).collect();
        Samples::new(&images, idx.iter().map(|&i| malignant[i]).collect(), COMPOSITE_PX)
    };
    let manifest_of = |idx: &[usize], r: usize| -> Vec<(String, String)> {
        idx.iter().map(|&i| (lesions[i].case_id.clone(), lesions[i].composites[r].sha256.clone())).collect()
    };
    let mut trained = Vec::new();
    let mut test = Vec::new();
    let (mut validation_raw, mut test_raw) = (Vec::new(), Vec::new());
    let mut embeddings: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for (r, role) in ["t2", "t1c"].iter().enumerate() {
        let (tr, va, ca, te) = (pick(train_idx, r), pick(select_idx, r), pick(calibration_idx, r), pick(test_idx, r));
        let epochs = (config.max_epochs * config.trials) as u64;
        let progress = bar(epochs, &format!("{label}cnn {role}"));
        let mut log_line = |e: &EpochLog| {
            progress.inc(1);
            progress.set_message(format!(
                "trial {} epoch {} val AUC {:.3} loss {:.3}",
                e.trial + 1,
                e.epoch,
                e.validation_auc,
                e.validation_loss
            ));
            progress.suspend(|| eprintln!(
                "  {label}cnn {role} trial {} epoch {:>3}: train loss {:.4}, validation loss {:.4}, AUC {:.3}, accuracy {:.3} ({:.1} s)",
                e.trial + 1,
                e.epoch,
                e.train_loss,
                e.validation_loss,
                e.validation_auc,
                e.validation_accuracy,
                e.seconds
            ));
        };
        let folder = checkpoint.map(|c| c.join(role));
        let result = train(config, &tr, &va, device, folder.as_deref(), &mut log_line)
            .map_err(|source| TrainerError::Network { role: role.to_string(), source })?;
        progress.finish_and_clear();
        let (raw_cal, emb_cal) = predict(&result.net, &ca.images, device, 32);
        let cal = Platt::fit_non_decreasing(&raw_cal, &ca.malignant)
            .map_err(|source| TrainerError::Calibration { model: format!("{role} network"), source })?;
        let (raw_test, emb_test) = predict(&result.net, &te.images, device, 32);
        let (_, emb_train) = predict(&result.net, &tr.images, device, 32);
        let (_, emb_val) = predict(&result.net, &va.images, device, 32);
        // Once per lesion and series (a small cohort chooses and calibrates on the same part).
        let mut seen = std::collections::BTreeSet::new();
        for (idx, emb) in
            [(train_idx, emb_train), (select_idx, emb_val), (calibration_idx, emb_cal), (test_idx, emb_test)]
        {
            for (&i, e) in idx.iter().zip(emb).filter(|(&i, _)| seen.insert(i)) {
                embeddings.entry(i).or_default().extend(e.into_iter().map(f64::from));
            }
        }
        test.push(raw_test.iter().map(|&p| cal.probability(p)).collect::<Vec<f64>>());
        validation_raw.push(raw_cal);
        test_raw.push(raw_test);
        trained.push((
            result,
            tr.malignant.iter().filter(|&&m| m).count(),
            va.malignant.iter().filter(|&&m| m).count(),
        ));
    }
    let series: Vec<SeriesToSave<'_>> = trained
        .iter()
        .enumerate()
        .map(|(r, (t, tm, vm))| SeriesToSave {
            vs: &t.vs,
            best: t.best.clone(),
            history: t.history.clone(),
            data: DataManifest {
                train: manifest_of(train_idx, r),
                validation: manifest_of(select_idx, r),
                train_malignant: *tm,
                validation_malignant: *vm,
            },
        })
        .collect();
    let Ok([s2, s1]): Result<[SeriesToSave<'_>; 2], _> = series.try_into() else { unreachable!("two series") };
    let manifest = bundle::save(
        registry,
        config.net,
        config,
        [s2, s1],
        renal_messages::code_version(),
        &renal_base::now_rfc3339(),
    )?;
    let two = |v: Vec<Vec<f64>>| -> [Vec<f64>; 2] {
        let [a, b]: [Vec<f64>; 2] = v.try_into().expect("two series");
        [a, b]
    };
    Ok(CnnFit { manifest, test: two(test), validation_raw: two(validation_raw), test_raw: two(test_raw), embeddings })
}

/// The lesions a `renal run` output folder recorded (`lesions.jsonl`, as they rode
/// `renal.lesions`).
pub fn read_lesions_file(path: &Path) -> Result<Vec<LesionV1>, TrainerError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut messages = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: LesionV1 = serde_json::from_str(line).map_err(|e| TrainerError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1)),
        })?;
        messages.push(l);
    }
    Ok(messages)
}

/// `renal train cnn`: the networks of one split of a `renal run` output (`run`: its folder,
/// with `lesions.jsonl` and `blobs/`), saved to `registry`; returns the lines to print. `keys`:
/// the run's de-identification keys, for a labels file keyed by accession number.
#[allow(clippy::too_many_arguments)]
pub fn train_cnn(
    run: &Path,
    labels: &Path,
    keys: Option<&renal_base::keys::Keys>,
    registry: &Path,
    checkpoint: Option<&Path>,
    parts: [f64; 3],
    config: &TrainConfig,
    device: Device,
) -> Result<Vec<String>, TrainerError> {
    let messages = read_lesions_file(&run.join("lesions.jsonl"))?;
    let (lesions, protocol, split) = crate::protocol::labelled_split(&messages, labels, keys, parts)?;
    let (fit_idx, select_idx) = crate::protocol::selection_split(&protocol, &split.train)?
        .unwrap_or_else(|| (split.train.clone(), split.validation.clone()));
    let store = renal_store::open(&run.join("blobs").display().to_string())
        .map_err(|source| TrainerError::Blob { what: "the run's blob store".into(), source })?;
    let composites = read_composites(&*store, &lesions)?;
    let y: Vec<bool> = protocol.iter().map(|l| l.malignant).collect();
    let calibration = crate::protocol::confirmed_rows(&protocol, &split.validation);
    let choose = crate::protocol::confirmed_rows(&protocol, &select_idx);
    let parts = [&fit_idx[..], &choose, &calibration, &split.test];
    let fit = fit_split(&lesions, &composites, &y, parts, config, device, registry, "", checkpoint)?;
    let mut lines = vec![format!(
        "bundle {} in {}",
        fit.manifest.version,
        bundle::folder(registry).join(&fit.manifest.version).display()
    )];
    // The network's own ranking (its raw score) and the calibrated probability's: a calibrator
    // fitted on few lesions can come out flat (kept so rather than inverted), which leaves every
    // lesion at the base rate and the calibrated AUC at 0.5 whatever the network ranked.
    let truth: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
    let auc =
        |p: &[f64]| renal_stats::roc_auc(p, &truth).map(|a| format!("{a:.3}")).unwrap_or_else(|| "undefined".into());
    for ((s, probs), raw) in fit.manifest.series.iter().zip(&fit.test).zip(&fit.test_raw) {
        lines.push(format!(
            "  {}: best epoch {} of trial {} (selection AUC {:.3}); held-out test ROC AUC {} from the network's score, {} calibrated, on {} lesions",
            s.role,
            s.best.epoch,
            s.best.trial + 1,
            s.best.validation_auc,
            auc(raw),
            auc(probs),
            truth.len()
        ));
    }
    Ok(lines)
}
