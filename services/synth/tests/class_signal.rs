//! The images carry a class signal that is real but not trivial.
//!
//! 240 lesions are rendered exactly as `renal synth` writes them. Per lesion and series, four
//! first-order statistics of the voxels inside the primary reader's mask (mean, standard
//! deviation, 10th and 90th percentile), each divided by the median of the image's foreground
//! (voxels above the volume mean) so that site intensity scales cancel: 8 features in all.
//! A logistic regression (L2 = 1 on standardised features) scored by 5-fold cross-validation
//! must reach an out-of-fold ROC AUC between 0.6 and 0.85, and no single feature used as a
//! threshold may reach 0.85 by itself. On the histopathology-confirmed lesions (the tested
//! population) each series' four features alone are scored the same way: each must carry
//! signal, and T2 must not carry clearly less than T1C (in the study T2 was the stronger
//! network). With 720 lesions (same seed) the two came out at 0.699 (T2) and 0.697 (T1C); at
//! 240 the estimates move by about 0.05, which is the margin allowed.

use rayon::prelude::*;
use renal_stats::curves::quantile_sorted;
use renal_stats::{roc_auc, LogisticModel};
use renal_synth::phantom::render_lesion;
use renal_synth::{plan, SynthConfig};

/// ROC AUC of a logistic regression (L2 = 1) scored out of fold over 5 interleaved folds.
fn out_of_fold_auc(rows: &[(Vec<f64>, bool)]) -> f64 {
    let mut oof = vec![0.0; rows.len()];
    for fold in 0..5 {
        let (train, test): (Vec<usize>, Vec<usize>) = (0..rows.len()).partition(|i| i % 5 != fold);
        let x: Vec<Vec<f64>> = train.iter().map(|&i| rows[i].0.clone()).collect();
        let y: Vec<bool> = train.iter().map(|&i| rows[i].1).collect();
        let model = LogisticModel::fit(&x, &y, 1.0).unwrap();
        for &i in &test {
            oof[i] = model.predict(&rows[i].0);
        }
    }
    roc_auc(&oof, &rows.iter().map(|r| r.1).collect::<Vec<_>>()).unwrap()
}

fn first_order(values: &[u16], mask: &[u8]) -> [f64; 4] {
    let mean_all = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
    let mut fg: Vec<f64> = values.iter().map(|&v| v as f64).filter(|&v| v > mean_all).collect();
    fg.sort_by(f64::total_cmp);
    let reference = quantile_sorted(&fg, 0.5);
    let mut inside: Vec<f64> =
        values.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v as f64 / reference).collect();
    inside.sort_by(f64::total_cmp);
    let n = inside.len() as f64;
    let mean = inside.iter().sum::<f64>() / n;
    let sd = (inside.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    [mean, sd, quantile_sorted(&inside, 0.1), quantile_sorted(&inside, 0.9)]
}

#[test]
fn first_order_classifier_is_better_than_chance_but_far_from_perfect() {
    let specs = plan(&SynthConfig { lesions: 240, seed: 11, ..SynthConfig::default() }).unwrap();
    let rows: Vec<(Vec<f64>, bool, bool)> = specs
        .par_iter()
        .filter_map(|spec| {
            let (_, series) = render_lesion(spec);
            if series.iter().any(|s| s.masks[0].count_nonzero() < 3) {
                return None; // sub-voxel lesions carry no statistics
            }
            let mut features = Vec::new();
            for s in &series {
                features.extend(first_order(&s.volume.data, &s.masks[0].data));
            }
            Some((features, spec.malignant, spec.diagnosis != renal_synth::cohort::Diagnosis::Imaging))
        })
        .collect();
    assert!(rows.len() > 230, "only {} lesions had a usable mask", rows.len());

    let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
    let all: Vec<(Vec<f64>, bool)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let auc = out_of_fold_auc(&all);
    // Each series alone, on the confirmed lesions.
    let series_auc = |columns: std::ops::Range<usize>| {
        let rows: Vec<(Vec<f64>, bool)> =
            rows.iter().filter(|r| r.2).map(|r| (r.0[columns.clone()].to_vec(), r.1)).collect();
        out_of_fold_auc(&rows)
    };
    let (t2, t1c) = (series_auc(0..4), series_auc(4..8));
    println!("confirmed lesions, 5-fold logistic ROC AUC on one series' 4 features: T2 {t2:.3}, T1C {t1c:.3}");
    assert!(t2 > 0.55 && t1c > 0.55, "a series without first-order signal: T2 {t2:.3}, T1C {t1c:.3}");
    assert!(t2 >= t1c - 0.05, "T1C ({t1c:.3}) carries clearly more first-order signal than T2 ({t2:.3})");
    let names = ["t2_mean", "t2_sd", "t2_p10", "t2_p90", "t1c_mean", "t1c_sd", "t1c_p10", "t1c_p90"];
    let single: Vec<f64> = (0..8)
        .map(|j| {
            let a = roc_auc(&rows.iter().map(|r| r.0[j]).collect::<Vec<_>>(), &labels).unwrap();
            a.max(1.0 - a)
        })
        .collect();
    println!("5-fold logistic ROC AUC on 8 first-order features: {auc:.3}");
    for (n, a) in names.iter().zip(&single) {
        println!("  single-feature AUC {n}: {a:.3}");
    }
    assert!((0.6..=0.85).contains(&auc), "logistic AUC {auc:.3} outside 0.6..0.85");
    for (n, a) in names.iter().zip(&single) {
        assert!(*a < 0.85, "feature {n} alone reaches AUC {a:.3}");
    }
}
