//! The study's test-set statistics (paper, Results and Table 2), reproduced from counts alone.
//!
//! Test set: 112 lesions, 63 malignant and 49 benign. The paper gives each model's sensitivity
//! and specificity; the counts below are the only integers that round to them, and from those
//! counts accuracy, F1, the adjusted-Wald 95% intervals (reported to two digits, one to three)
//! and the binomial P value against the zero rule must come out as published.

use renal_stats::{adjusted_wald, binomial_test_two_sided, Confusion, Z95};

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

struct Row {
    model: &'static str,
    tp: u64,
    tn: u64,
    accuracy: [f64; 3],
    sensitivity: [f64; 3],
    specificity: [f64; 3],
    f1: f64,
}

#[test]
fn table_2_test_set_from_counts() {
    let rows = [
        Row {
            model: "clinical",
            tp: 52,
            tn: 6,
            accuracy: [0.52, 0.43, 0.61],
            sensitivity: [0.83, 0.71, 0.90],
            specificity: [0.12, 0.054, 0.25],
            f1: 0.66,
        },
        Row {
            model: "t1c",
            tp: 55,
            tn: 17,
            accuracy: [0.64, 0.55, 0.73],
            sensitivity: [0.87, 0.77, 0.94],
            specificity: [0.35, 0.23, 0.49],
            f1: 0.73,
        },
        Row {
            model: "t2",
            tp: 57,
            tn: 20,
            accuracy: [0.69, 0.60, 0.77],
            sensitivity: [0.90, 0.80, 0.96],
            specificity: [0.41, 0.28, 0.55],
            f1: 0.77,
        },
        Row {
            model: "ensemble",
            tp: 58,
            tn: 20,
            accuracy: [0.70, 0.61, 0.77],
            sensitivity: [0.92, 0.82, 0.97],
            specificity: [0.41, 0.28, 0.55],
            f1: 0.77,
        },
    ];
    for r in rows {
        let c = Confusion { tp: r.tp, fn_: 63 - r.tp, tn: r.tn, fp: 49 - r.tn };
        // Published digits: two, except where the paper printed three (0.054).
        let digits = |x: f64| if x < 0.1 && x > 0.0 { 3 } else { 2 };
        let check = |what: &str, estimate: f64, ci: [f64; 2], published: [f64; 3]| {
            let ours = [estimate, ci[0], ci[1]];
            for (o, p) in ours.iter().zip(published) {
                assert_eq!(round(*o, digits(p)), p, "{} {what}: ours {ours:?}, published {published:?}", r.model);
            }
            println!("{:9} {what:12} {:.3} ({:.3}-{:.3})  published {published:?}", r.model, ours[0], ours[1], ours[2]);
        };
        check("accuracy", c.accuracy(), adjusted_wald(c.tp + c.tn, c.n(), Z95), r.accuracy);
        check("sensitivity", c.sensitivity(), adjusted_wald(c.tp, c.positives(), Z95), r.sensitivity);
        check("specificity", c.specificity(), adjusted_wald(c.tn, c.negatives(), Z95), r.specificity);
        assert_eq!(round(c.f1(), 2), r.f1, "{} F1 {}", r.model, c.f1());
    }

    // "Compared with a baseline zero rule algorithm, the ensemble ... accuracy (0.70 vs. 0.56,
    // P = 0.004)": exact two-sided binomial test of 78 correct of 112 against 63/112.
    let ensemble = Confusion { tp: 58, fn_: 5, tn: 20, fp: 29 };
    assert_eq!(round(ensemble.zero_rule_rate(), 2), 0.56);
    let p = binomial_test_two_sided(ensemble.tp + ensemble.tn, ensemble.n(), ensemble.zero_rule_rate());
    println!("ensemble vs zero rule: P = {p:.5} (published 0.004)");
    assert_eq!(round(p, 3), 0.004, "P {p}");
}
