//! The numbers of the report: one entry per model and per expert, and paired comparisons.

use crate::input::{Labels, Predictions, Reads};
use renal_stats::{
    adjusted_wald, average_precision, binomial_test_two_sided, bootstrap_ci, brier, expected_calibration_error,
    mcnemar_exact, pr_auc_trapezoid, pr_curve, reliability_bins, roc_auc, roc_curve, Confusion, ReliabilityBin, Z95,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// How the report is computed (all of it is written into the report).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// A probability at or above this is a malignant call.
    pub threshold: f64,
    /// Bootstrap resamples for the AUC intervals.
    pub bootstrap_resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Equal-width bins over [0, 1] for ECE and the reliability diagram.
    pub ece_bins: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { threshold: 0.5, bootstrap_resamples: 2000, seed: 1, ece_bins: 10 }
    }
}

/// A point estimate with its 95% interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// The estimate.
    pub estimate: f64,
    /// Lower and upper 95% bounds.
    pub ci95: [f64; 2],
}

/// What is known from calls alone (models at the threshold, experts as read).
#[derive(Debug, Clone, Serialize)]
pub struct CallMetrics {
    /// Cases.
    pub n: u64,
    /// Malignant cases.
    pub positives: u64,
    /// Benign cases.
    pub negatives: u64,
    /// Counts.
    pub confusion: Confusion,
    /// With adjusted-Wald interval over all cases.
    pub accuracy: Interval,
    /// With adjusted-Wald interval over the malignant cases.
    pub sensitivity: Interval,
    /// With adjusted-Wald interval over the benign cases.
    pub specificity: Interval,
    /// Positive predictive value.
    pub ppv: f64,
    /// Negative predictive value.
    pub npv: f64,
    /// False discovery rate.
    pub fdr: f64,
    /// F1 of the malignant class.
    pub f1: f64,
    /// Accuracy of always calling the majority class of these cases.
    pub zero_rule_rate: f64,
    /// Exact two-sided binomial test of the correct calls against the zero rule's rate.
    pub p_vs_zero_rule: f64,
}

/// A model's entry: the call metrics plus what its probabilities show.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Metrics of the calls at the threshold.
    #[serde(flatten)]
    pub calls: CallMetrics,
    /// ROC AUC with a percentile bootstrap interval.
    pub roc_auc: Interval,
    /// PR AUC as average precision (step-wise), with a percentile bootstrap interval.
    pub pr_auc: Interval,
    /// PR AUC by the trapezoid rule (what the study's code reported).
    pub pr_auc_trapezoid: f64,
    /// Brier score.
    pub brier: f64,
    /// Expected calibration error over the equal-width bins.
    pub ece: f64,
    /// Reliability diagram.
    pub reliability: Vec<ReliabilityBin>,
    /// ROC curve points: false-positive rate, true-positive rate.
    pub roc_curve: [Vec<f64>; 2],
    /// PR curve points: recall, precision.
    pub pr_curve: [Vec<f64>; 2],
}

/// A paired comparison on the cases both sides called.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The model.
    pub model: String,
    /// The expert or other model.
    pub versus: String,
    /// Always "exact McNemar (two-sided binomial on discordant pairs)".
    pub test: &'static str,
    /// Cases both called.
    pub cases: u64,
    /// Model right, the other wrong.
    pub model_only_correct: u64,
    /// The other right, model wrong.
    pub versus_only_correct: u64,
    /// Accuracies on these cases.
    pub model_accuracy: f64,
    /// The other's accuracy on these cases.
    pub versus_accuracy: f64,
    /// Two-sided P value.
    pub p_value: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Report format version.
    pub version: u32,
    /// RFC 3339 UTC.
    pub generated_at: String,
    /// How it was computed.
    pub settings: Settings,
    /// Notes on the methods, for a reader of the JSON.
    pub methods: BTreeMap<&'static str, &'static str>,
    /// Labelled cases.
    pub cases: u64,
    /// Per model.
    pub models: BTreeMap<String, ModelReport>,
    /// Per expert.
    pub experts: BTreeMap<String, CallMetrics>,
    /// Each model against each expert, and each model against `radiomics` when present.
    pub comparisons: Vec<Comparison>,
    /// A t-SNE map of the networks' penultimate-layer embeddings, when they were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_map: Option<EmbeddingMap>,
    /// How the models were made: protocol, departures from the study, what the stacker chose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Each model's calibrators side by side on the held-out cases, when the trainer gave them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calibrators: Vec<CalibratorScore>,
    /// Choices made on validation cases and what they were worth on held-out ones, when the
    /// trainer gave them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selections: Vec<SelectionScore>,
}

/// One calibrator of one model: fitted on each round's validation cases, scored on the pooled
/// held-out cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibratorScore {
    /// Model.
    pub model: String,
    /// `platt`, `isotonic` or `temperature`.
    pub method: String,
    /// Held-out cases scored.
    pub n: u64,
    /// Expected calibration error (the report's bins).
    pub ece: f64,
    /// Brier score.
    pub brier: f64,
    /// Mean log loss.
    pub log_loss: f64,
    /// The one the served model uses.
    pub served: bool,
}

/// A choice made on cases other than the held-out ones (an epoch, a stacker) and what it was
/// worth held out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectionScore {
    /// Model that chose.
    pub model: String,
    /// Round of the protocol (1-based).
    pub round: usize,
    /// What it chose.
    pub choice: String,
    /// ROC AUC on the cases it was chosen by (a network's or the clinical model's selection
    /// part, the stacker's validation part, out of fold).
    pub chosen_auc: f64,
    /// ROC AUC of the same model on that round's held-out cases (null: one class there).
    pub held_out_auc: f64,
    /// `chosen_auc - held_out_auc`: how optimistic the chosen score was.
    pub optimism: f64,
}

/// One lesion on the embedding map.
#[derive(Debug, Clone, Serialize)]
pub struct MapPoint {
    /// Lesion id.
    pub case_id: String,
    /// Map coordinates (arbitrary units; only distances between points mean anything).
    pub x: f64,
    /// See `x`.
    pub y: f64,
    /// Its label.
    pub malignant: bool,
    /// Held out from training and model selection (drawn filled), or in the training or
    /// validation part (drawn hollow).
    pub held_out: bool,
}

/// A t-SNE map of embeddings (`renal_stats::tsne`, scikit-learn's exact method).
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingMap {
    /// What was embedded.
    pub source: String,
    /// Width of each embedding.
    pub dimensions: usize,
    /// Perplexity used.
    pub perplexity: f64,
    /// KL divergence of the map from the affinities, nats.
    pub kl_divergence: f64,
    /// The lesions.
    pub points: Vec<MapPoint>,
}

/// The t-SNE map of labelled lesions' embeddings (`rows`: lesion id, embedding, held out);
/// `None` when fewer than 4 rows are labelled or the widths differ.
pub fn embedding_map(labels: &Labels, rows: &[(String, Vec<f64>, bool)], source: &str) -> Option<EmbeddingMap> {
    let kept: Vec<&(String, Vec<f64>, bool)> = rows.iter().filter(|r| labels.contains_key(&r.0)).collect();
    let width = kept.first()?.1.len();
    if kept.len() < 4 || width == 0 || kept.iter().any(|r| r.1.len() != width || r.1.iter().any(|v| !v.is_finite())) {
        return None;
    }
    let x: Vec<Vec<f64>> = kept.iter().map(|r| r.1.clone()).collect();
    let map = renal_stats::tsne(&x, &renal_stats::TsneSettings::default());
    let points = kept
        .iter()
        .zip(&map.points)
        .map(|(r, p)| MapPoint { case_id: r.0.clone(), x: p[0], y: p[1], malignant: labels[&r.0], held_out: r.2 })
        .collect();
    Some(EmbeddingMap {
        source: source.into(),
        dimensions: width,
        perplexity: map.perplexity,
        kl_divergence: map.kl_divergence,
        points,
    })
}

fn call_metrics(calls: &[bool], truth: &[bool]) -> CallMetrics {
    let c = Confusion::from_calls(calls, truth);
    let interval = |estimate: f64, k: u64, n: u64| Interval { estimate, ci95: adjusted_wald(k, n, Z95) };
    let zero = c.zero_rule_rate();
    CallMetrics {
        n: c.n(),
        positives: c.positives(),
        negatives: c.negatives(),
        accuracy: interval(c.accuracy(), c.tp + c.tn, c.n()),
        sensitivity: interval(c.sensitivity(), c.tp, c.positives()),
        specificity: interval(c.specificity(), c.tn, c.negatives()),
        ppv: c.ppv(),
        npv: c.npv(),
        fdr: c.fdr(),
        f1: c.f1(),
        zero_rule_rate: zero,
        p_vs_zero_rule: if c.n() == 0 { f64::NAN } else { binomial_test_two_sided(c.tp + c.tn, c.n(), zero) },
        confusion: c,
    }
}

/// A model's entry from its probabilities `p`, its calls at the threshold and the truth `y`.
fn model_report(p: &[f64], calls: &[bool], y: &[bool], s: &Settings) -> ModelReport {
    let resampled = |f: fn(&[f64], &[bool]) -> Option<f64>| {
        move |idx: &[usize]| {
            let (rp, ry): (Vec<f64>, Vec<bool>) = idx.iter().map(|&i| (p[i], y[i])).unzip();
            f(&rp, &ry)
        }
    };
    let nan2 = [f64::NAN, f64::NAN];
    let auc = roc_auc(p, y).unwrap_or(f64::NAN);
    let ap = average_precision(p, y).unwrap_or(f64::NAN);
    let roc = roc_curve(p, y).map(|c| [c.x, c.y]).unwrap_or_default();
    let pr = pr_curve(p, y).map(|c| [c.x, c.y]).unwrap_or_default();
    ModelReport {
        calls: call_metrics(calls, y),
        roc_auc: Interval {
            estimate: auc,
            ci95: bootstrap_ci(p.len(), s.bootstrap_resamples, s.seed, resampled(roc_auc)).unwrap_or(nan2),
        },
        pr_auc: Interval {
            estimate: ap,
            ci95: bootstrap_ci(p.len(), s.bootstrap_resamples, s.seed, resampled(average_precision)).unwrap_or(nan2),
        },
        pr_auc_trapezoid: pr_auc_trapezoid(p, y).unwrap_or(f64::NAN),
        brier: brier(p, y),
        ece: expected_calibration_error(p, y, s.ece_bins),
        reliability: reliability_bins(p, y, s.ece_bins),
        roc_curve: roc,
        pr_curve: pr,
    }
}

fn compare(
    model: &str,
    versus: &str,
    a: &BTreeMap<String, bool>,
    b: &BTreeMap<String, bool>,
    labels: &Labels,
) -> Comparison {
    let (mut n, mut a_only, mut b_only, mut a_right, mut b_right) = (0, 0, 0, 0, 0);
    for (case, &call_a) in a {
        let Some(&call_b) = b.get(case) else { continue };
        let truth = labels[case];
        let (ra, rb) = (call_a == truth, call_b == truth);
        n += 1;
        a_right += u64::from(ra);
        b_right += u64::from(rb);
        a_only += u64::from(ra && !rb);
        b_only += u64::from(rb && !ra);
    }
    let rate = |k: u64| if n == 0 { f64::NAN } else { k as f64 / n as f64 };
    Comparison {
        model: model.into(),
        versus: versus.into(),
        test: "exact McNemar (two-sided binomial on discordant pairs)",
        cases: n,
        model_only_correct: a_only,
        versus_only_correct: b_only,
        model_accuracy: rate(a_right),
        versus_accuracy: rate(b_right),
        p_value: mcnemar_exact(a_only, b_only),
    }
}

/// Compute the report. Inputs must already be checked ([`crate::input::check_labelled`]).
pub fn build(labels: &Labels, predictions: &Predictions, reads: &Reads, settings: &Settings) -> Report {
    let mut models = BTreeMap::new();
    let mut model_calls: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for (model, cases) in predictions {
        let calls: BTreeMap<String, bool> = cases.iter().map(|(c, &v)| (c.clone(), v >= settings.threshold)).collect();
        let p: Vec<f64> = cases.values().copied().collect();
        let y: Vec<bool> = cases.keys().map(|c| labels[c]).collect();
        let c: Vec<bool> = calls.values().copied().collect();
        models.insert(model.clone(), model_report(&p, &c, &y, settings));
        model_calls.insert(model.clone(), calls);
    }
    let mut experts = BTreeMap::new();
    for (expert, calls) in reads {
        let c: Vec<bool> = calls.values().copied().collect();
        let y: Vec<bool> = calls.keys().map(|k| labels[k]).collect();
        experts.insert(expert.clone(), call_metrics(&c, &y));
    }
    let mut comparisons = Vec::new();
    for (model, calls) in &model_calls {
        for (expert, read) in reads {
            comparisons.push(compare(model, expert, calls, read, labels));
        }
        if model != "radiomics" {
            if let Some(radiomics) = model_calls.get("radiomics") {
                comparisons.push(compare(model, "radiomics", calls, radiomics, labels));
            }
        }
    }
    let methods = BTreeMap::from([
        ("threshold", "a probability at or above settings.threshold is a malignant call"),
        ("proportion_ci", "adjusted Wald (Agresti-Coull) 95%; the estimate is the raw proportion"),
        ("auc_ci", "percentile bootstrap 95% over cases, seeded; resamples with one class are skipped"),
        ("pr_auc", "average precision (step-wise, no interpolation); pr_auc_trapezoid is the trapezoid rule"),
        ("p_vs_zero_rule", "exact two-sided binomial test of correct calls against the majority-class rate"),
        ("ece", "equal-width bins over [0, 1]; case-weighted mean |observed rate - mean probability|"),
        ("comparisons", "exact McNemar on the cases both sides called"),
        (
            "embedding_map",
            "exact t-SNE (scikit-learn's method and defaults, perplexity capped at (n-1)/3) of the embeddings given",
        ),
    ]);
    Report {
        version: 1,
        generated_at: renal_base::now_rfc3339(),
        settings: settings.clone(),
        methods,
        cases: labels.len() as u64,
        models,
        experts,
        comparisons,
        embedding_map: None,
        notes: Vec::new(),
        calibrators: Vec::new(),
        selections: Vec::new(),
    }
}

impl Report {
    /// The headline numbers as a Markdown table: one row per model, then per expert reader.
    pub fn headline_table(&self) -> Vec<String> {
        let mut lines = vec![
            "| model | n | accuracy (95% CI) | sensitivity | specificity | ROC AUC (95% CI) | PR AUC (AP) | ECE | P vs zero rule |".to_string(),
            "|---|---|---|---|---|---|---|---|---|".to_string(),
        ];
        let i = |v: &Interval| format!("{:.2} ({:.2}-{:.2})", v.estimate, v.ci95[0], v.ci95[1]);
        for (name, m) in &self.models {
            let c = &m.calls;
            lines.push(format!(
                "| {name} | {} | {} | {} | {} | {} | {:.2} | {:.3} | {:.3} |",
                c.n,
                i(&c.accuracy),
                i(&c.sensitivity),
                i(&c.specificity),
                i(&m.roc_auc),
                m.pr_auc.estimate,
                m.ece,
                c.p_vs_zero_rule
            ));
        }
        for (name, c) in &self.experts {
            lines.push(format!(
                "| {name} (reader) | {} | {} | {:.2} | {:.2} | | | | {:.3} |",
                c.n,
                i(&c.accuracy),
                c.sensitivity.estimate,
                c.specificity.estimate,
                c.p_vs_zero_rule
            ));
        }
        lines
    }
}
