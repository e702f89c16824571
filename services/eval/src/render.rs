//! The report as figures (SVG) and one HTML page that shows them with the tables.
//!
//! Figures: `roc.svg` and `pr.svg` (every model's curve, experts as points), `reliability.svg`
//! (mean predicted probability against observed rate per bin), and `confusion.svg` (one 2x2
//! matrix per model and expert), and `tsne.svg` (the embedding map, when there is one). SVG is written by hand: a few hundred lines of plotting are
//! simpler to check than a plotting dependency.

use crate::report::{CallMetrics, EmbeddingMap, Report};
use std::fmt::Write;

const W: f64 = 580.0;
const H: f64 = 420.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const SIDE: f64 = 330.0;
const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Plot coordinates of a unit-square point.
fn at(x: f64, y: f64) -> (f64, f64) {
    (LEFT + x * SIDE, TOP + (1.0 - y) * SIDE)
}

/// The opening of a figure: white page, title centred at `title_x`, the plot square's frame.
fn frame(title: &str, title_x: f64, title_size: u32) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{title_x}" y="18" text-anchor="middle" font-size="{title_size}">{}</text>
<rect x="{LEFT}" y="{TOP}" width="{SIDE}" height="{SIDE}" fill="none" stroke="black"/>
"#,
        esc(title)
    )
}

/// An empty unit-square plot with axes, ticks, labels and title.
fn axes(title: &str, x_label: &str, y_label: &str, diagonal: Option<bool>) -> String {
    let mut s = frame(title, LEFT + SIDE / 2.0, 14);
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let (x, y0) = at(v, 0.0);
        let (x0, y) = at(0.0, v);
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="black"/><text x="{x}" y="{}" text-anchor="middle">{v:.1}</text>
<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="black"/><text x="{}" y="{}" text-anchor="end">{v:.1}</text>
<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#eee"/><line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>
"##,
            y0 + 5.0,
            y0 + 18.0,
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            TOP + SIDE,
            LEFT + SIDE
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"#,
        LEFT + SIDE / 2.0,
        TOP + SIDE + 36.0,
        esc(x_label),
        TOP + SIDE / 2.0,
        TOP + SIDE / 2.0,
        esc(y_label)
    );
    if let Some(rising) = diagonal {
        let (x1, y1) = at(0.0, if rising { 0.0 } else { 1.0 });
        let (x2, y2) = at(1.0, if rising { 1.0 } else { 0.0 });
        let _ =
            writeln!(s, r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#999" stroke-dasharray="4 4"/>"##);
    }
    s
}

fn polyline(xs: &[f64], ys: &[f64], colour: &str, step: bool) -> String {
    let mut pts = Vec::new();
    for i in 0..xs.len() {
        if step && i > 0 {
            // Step from the previous point: horizontal first, then vertical.
            pts.push(at(xs[i], ys[i - 1]));
        }
        pts.push(at(xs[i], ys[i]));
    }
    let text: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.2},{y:.2}")).collect();
    format!(r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, text.join(" ")) + "\n"
}

/// Left edge of the legend's text.
const LEGEND_TEXT_X: f64 = LEFT + SIDE + 28.0;
/// Width of one legend character at its 10 px font, generously (sans-serif averages ~5.5 px).
const LEGEND_CHAR_PX: f64 = 6.2;

/// `svg` (opened by [`frame`], `W` wide) widened so that the longest legend entry fits.
fn fit_legend(svg: String, entries: &[(String, &str, bool)]) -> String {
    let longest = entries.iter().map(|(t, _, _)| t.chars().count()).max().unwrap_or(0);
    let width = (LEGEND_TEXT_X + LEGEND_CHAR_PX * longest as f64 + 12.0).max(W).ceil();
    if width <= W {
        return svg;
    }
    let (from, to) = (
        format!("width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\""),
        format!("width=\"{width}\" height=\"{H}\" viewBox=\"0 0 {width} {H}\""),
    );
    svg.replacen(&from, &to, 1).replacen(&format!("<rect width=\"{W}\""), &format!("<rect width=\"{width}\""), 1)
}

fn legend(entries: &[(String, &str, bool)]) -> String {
    let mut s = String::new();
    for (i, (text, colour, point)) in entries.iter().enumerate() {
        let y = TOP + 14.0 + 16.0 * i as f64;
        let x = LEFT + SIDE + 8.0;
        if *point {
            let _ = write!(s, r#"<rect x="{}" y="{}" width="8" height="8" fill="{colour}"/>"#, x + 4.0, y - 8.0);
        } else {
            let _ = write!(
                s,
                r#"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="3"/>"#,
                y - 4.0,
                x + 16.0,
                y - 4.0
            );
        }
        let _ = writeln!(s, r#"<text x="{LEGEND_TEXT_X}" y="{y}" font-size="10">{}</text>"#, esc(text));
    }
    s
}

fn expert_points(
    report: &Report,
    point: impl Fn(&CallMetrics) -> (f64, f64),
    colour_base: usize,
) -> (String, Vec<(String, String)>) {
    let mut s = String::new();
    let mut entries = Vec::new();
    for (i, (name, m)) in report.experts.iter().enumerate() {
        let colour = COLOURS[(colour_base + i) % COLOURS.len()];
        let (x, y) = point(m);
        if x.is_finite() && y.is_finite() {
            let (px, py) = at(x, y);
            let _ = writeln!(s, r#"<rect x="{}" y="{}" width="8" height="8" fill="{colour}"/>"#, px - 4.0, py - 4.0);
        }
        entries.push((format!("{name} (reader)"), colour.to_string()));
    }
    (s, entries)
}

/// `roc.svg`.
pub fn roc_svg(report: &Report) -> String {
    let mut s = axes("ROC", "1 - specificity (false-positive rate)", "sensitivity", Some(true));
    let mut entries: Vec<(String, String, bool)> = Vec::new();
    for (i, (name, m)) in report.models.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        s += &polyline(&m.roc_curve[0], &m.roc_curve[1], colour, false);
        let auc = if m.roc_auc.estimate.is_finite() {
            format!("AUC {:.2}", m.roc_auc.estimate)
        } else {
            "AUC n/a (one class)".to_string()
        };
        entries.push((format!("{name} {auc}"), colour.into(), false));
    }
    let (points, experts) =
        expert_points(report, |m| (1.0 - m.specificity.estimate, m.sensitivity.estimate), report.models.len());
    s += &points;
    entries.extend(experts.into_iter().map(|(t, c)| (t, c, true)));
    let entries: Vec<(String, &str, bool)> = entries.iter().map(|(t, c, p)| (t.clone(), c.as_str(), *p)).collect();
    s += &legend(&entries);
    fit_legend(s + "</svg>\n", &entries)
}

/// `pr.svg`.
pub fn pr_svg(report: &Report) -> String {
    let mut s = axes("Precision-recall", "recall (sensitivity)", "precision (PPV)", None);
    let mut entries: Vec<(String, String, bool)> = Vec::new();
    for (i, (name, m)) in report.models.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        s += &polyline(&m.pr_curve[0], &m.pr_curve[1], colour, true);
        entries.push((format!("{name} AP {:.2}", m.pr_auc.estimate), colour.into(), false));
    }
    let (points, experts) = expert_points(report, |m| (m.sensitivity.estimate, m.ppv), report.models.len());
    s += &points;
    entries.extend(experts.into_iter().map(|(t, c)| (t, c, true)));
    let entries: Vec<(String, &str, bool)> = entries.iter().map(|(t, c, p)| (t.clone(), c.as_str(), *p)).collect();
    s += &legend(&entries);
    fit_legend(s + "</svg>\n", &entries)
}

/// `reliability.svg`.
pub fn reliability_svg(report: &Report) -> String {
    let title = format!("Reliability ({} equal-width bins)", report.settings.ece_bins);
    let mut s = axes(&title, "mean predicted probability", "observed malignant rate", Some(true));
    let mut entries = Vec::new();
    for (i, (name, m)) in report.models.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let used: Vec<_> = m.reliability.iter().filter(|b| b.count > 0).collect();
        let xs: Vec<f64> = used.iter().map(|b| b.mean_predicted).collect();
        let ys: Vec<f64> = used.iter().map(|b| b.observed_rate).collect();
        s += &polyline(&xs, &ys, colour, false);
        for (x, y) in xs.iter().zip(&ys) {
            let (px, py) = at(*x, *y);
            let _ = writeln!(s, r#"<circle cx="{px:.2}" cy="{py:.2}" r="3" fill="{colour}"/>"#);
        }
        entries.push((format!("{name} ECE {:.3}", m.ece), colour, false));
    }
    let entries: Vec<(String, &str, bool)> = entries.iter().map(|(t, c, p)| (t.clone(), *c, *p)).collect();
    s += &legend(&entries);
    fit_legend(s + "</svg>\n", &entries)
}

/// `confusion.svg`: rows are the truth (malignant, benign), columns the call; shading is the
/// share of the row.
pub fn confusion_svg(report: &Report) -> String {
    let all: Vec<(String, &CallMetrics)> = report
        .models
        .iter()
        .map(|(n, m)| (n.clone(), &m.calls))
        .chain(report.experts.iter().map(|(n, m)| (format!("{n} (reader)"), m)))
        .collect();
    let cell = 56.0;
    let block = 2.0 * cell + 40.0;
    let x_start = 110.0;
    let width = x_start + block * all.len().max(1) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="210" viewBox="0 0 {width} 210" font-family="sans-serif" font-size="12">
<rect width="{width}" height="210" fill="white"/>
<text x="{}" y="62" text-anchor="end" font-size="11">call:</text>
<text x="{}" y="{}" text-anchor="end">truth malignant</text>
<text x="{}" y="{}" text-anchor="end">truth benign</text>
"#,
        x_start - 6.0,
        x_start - 6.0,
        70.0 + cell / 2.0 + 4.0,
        x_start - 6.0,
        70.0 + 1.5 * cell + 4.0
    );
    for (i, (name, m)) in all.iter().enumerate() {
        let x0 = x_start + block * i as f64;
        let c = m.confusion;
        let _ =
            writeln!(s, r#"<text x="{}" y="30" text-anchor="middle" font-size="13">{}</text>"#, x0 + cell, esc(name));
        let _ =
            writeln!(s, r#"<text x="{}" y="62" text-anchor="middle" font-size="11">malignant</text>"#, x0 + cell / 2.0);
        let _ =
            writeln!(s, r#"<text x="{}" y="62" text-anchor="middle" font-size="11">benign</text>"#, x0 + 1.5 * cell);
        let cells = [
            (c.tp, c.positives(), 0, 0, "TP"),
            (c.fn_, c.positives(), 1, 0, "FN"),
            (c.fp, c.negatives(), 0, 1, "FP"),
            (c.tn, c.negatives(), 1, 1, "TN"),
        ];
        for (count, row_total, col, row, tag) in cells {
            let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
            let shade = (255.0 - 180.0 * share).round() as u8;
            let (x, y) = (x0 + col as f64 * cell, 70.0 + row as f64 * cell);
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="black"/><text x="{}" y="{}" text-anchor="middle" font-size="15">{count}</text><text x="{}" y="{}" text-anchor="middle" font-size="9">{tag}</text>"#,
                x + cell / 2.0,
                y + cell / 2.0 + 2.0,
                x + cell / 2.0,
                y + cell - 6.0
            );
        }
    }
    s + "</svg>\n"
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

fn interval(i: &crate::report::Interval) -> String {
    format!("{} ({}–{})", fmt(i.estimate), fmt(i.ci95[0]), fmt(i.ci95[1]))
}

/// `tsne.svg`: the embedding map, benign blue and malignant red, held-out lesions filled.
pub fn tsne_svg(map: &EmbeddingMap) -> String {
    let title = format!("t-SNE of {} ({} lesions)", map.source, map.points.len());
    let mut s = frame(&title, W / 2.0, 13);
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in &map.points {
        for (c, v) in [p.x, p.y].into_iter().enumerate() {
            lo[c] = lo[c].min(v);
            hi[c] = hi[c].max(v);
        }
    }
    // One scale for both axes (t-SNE distances are isotropic), 5% margin.
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-12) * 1.1;
    let mid = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let (benign, malignant) = (COLOURS[0], COLOURS[1]);
    // Hollow (training and validation) first, so held-out lesions are drawn on top.
    let mut order: Vec<&crate::report::MapPoint> = map.points.iter().collect();
    order.sort_by_key(|p| p.held_out);
    for p in order {
        let (x, y) = at(0.5 + (p.x - mid[0]) / span, 0.5 + (p.y - mid[1]) / span);
        let colour = if p.malignant { malignant } else { benign };
        let fill = if p.held_out { colour } else { "none" };
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.2}" cy="{y:.2}" r="4" fill="{fill}" stroke="{colour}" stroke-width="1.5"/>"#
        );
    }
    let x = LEFT + SIDE + 12.0;
    for (i, (text, colour, filled)) in [
        ("benign, held out", benign, true),
        ("malignant, held out", malignant, true),
        ("benign, not held out", benign, false),
        ("malignant, not held out", malignant, false),
    ]
    .into_iter()
    .enumerate()
    {
        let y = TOP + 14.0 + 18.0 * i as f64;
        let fill = if filled { colour } else { "none" };
        let _ = writeln!(
            s,
            r#"<circle cx="{}" cy="{}" r="4" fill="{fill}" stroke="{colour}" stroke-width="1.5"/><text x="{}" y="{y}" font-size="11">{text}</text>"#,
            x + 4.0,
            y - 4.0,
            x + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="11">{}-d embeddings, perplexity {:.1}, KL {:.3}</text>"#,
        LEFT,
        TOP + SIDE + 24.0,
        map.dimensions,
        map.perplexity,
        map.kl_divergence
    );
    s + "</svg>\n"
}

/// `index.html`: the tables and the figures.
pub fn html(report: &Report) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>renal-mri evaluation</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}</style></head><body>\n",
    );
    let _ = writeln!(
        s,
        "<h1>Evaluation</h1><p>{} labelled cases; generated {}; a probability &ge; {} is a malignant call.</p>",
        report.cases, report.generated_at, report.settings.threshold
    );
    s += "<h2>Models</h2><table><tr><th>model</th><th>n</th><th>accuracy (95% CI)</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th><th>FDR</th><th>F1</th><th>ROC AUC</th><th>PR AUC (AP)</th><th>PR AUC (trapezoid)</th><th>Brier</th><th>ECE</th><th>P vs zero rule</th></tr>\n";
    for (name, m) in &report.models {
        let c = &m.calls;
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            c.n,
            interval(&c.accuracy),
            interval(&c.sensitivity),
            interval(&c.specificity),
            fmt(c.ppv),
            fmt(c.npv),
            fmt(c.fdr),
            fmt(c.f1),
            interval(&m.roc_auc),
            interval(&m.pr_auc),
            fmt(m.pr_auc_trapezoid),
            fmt(m.brier),
            fmt(m.ece),
            fmt(c.p_vs_zero_rule)
        );
    }
    s += "</table>\n";
    if !report.notes.is_empty() {
        s += "<h2>How the models were made</h2><ul>\n";
        for n in &report.notes {
            let _ = writeln!(s, "<li>{}</li>", esc(n));
        }
        s += "</ul>\n";
    }
    if !report.calibrators.is_empty() {
        s += "<h2>Calibrators on the held-out cases</h2><p>Each fitted on every round's calibration cases (validation cases that chose nothing), scored on the pooled held-out cases; * the one served.</p><table><tr><th>model</th><th>method</th><th>n</th><th>ECE</th><th>Brier</th><th>log loss</th></tr>\n";
        for c in &report.calibrators {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.model),
                esc(&c.method),
                if c.served { " *" } else { "" },
                c.n,
                fmt(c.ece),
                fmt(c.brier),
                fmt(c.log_loss)
            );
        }
        s += "</table>\n";
    }
    if !report.selections.is_empty() {
        s += "<h2>Choices made before testing, and their optimism</h2><table><tr><th>model</th><th>round</th><th>choice</th><th>ROC AUC where chosen</th><th>held-out ROC AUC</th><th>optimism</th></tr>\n";
        for c in &report.selections {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.model),
                c.round,
                esc(&c.choice),
                fmt(c.chosen_auc),
                fmt(c.held_out_auc),
                fmt(c.optimism)
            );
        }
        s += "</table>\n";
    }
    if !report.experts.is_empty() {
        s += "<h2>Readers</h2><table><tr><th>reader</th><th>n</th><th>accuracy (95% CI)</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th><th>F1</th><th>P vs zero rule</th></tr>\n";
        for (name, c) in &report.experts {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                c.n,
                interval(&c.accuracy),
                interval(&c.sensitivity),
                interval(&c.specificity),
                fmt(c.ppv),
                fmt(c.npv),
                fmt(c.f1),
                fmt(c.p_vs_zero_rule)
            );
        }
        s += "</table>\n";
    }
    if !report.comparisons.is_empty() {
        s += "<h2>Paired comparisons (exact McNemar)</h2><table><tr><th>model</th><th>versus</th><th>cases</th><th>model accuracy</th><th>versus accuracy</th><th>only model right</th><th>only versus right</th><th>P</th></tr>\n";
        for c in &report.comparisons {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.model),
                esc(&c.versus),
                c.cases,
                fmt(c.model_accuracy),
                fmt(c.versus_accuracy),
                c.model_only_correct,
                c.versus_only_correct,
                fmt(c.p_value)
            );
        }
        s += "</table>\n";
    }
    s += "<h2>Figures</h2><p><img src=\"roc.svg\" alt=\"ROC curves\"> <img src=\"pr.svg\" alt=\"precision-recall curves\"> <img src=\"reliability.svg\" alt=\"reliability diagram\"></p><p><img src=\"confusion.svg\" alt=\"confusion matrices\"></p>\n";
    if report.embedding_map.is_some() {
        s += "<p><img src=\"tsne.svg\" alt=\"t-SNE map of the networks' embeddings\"></p>\n";
    }
    s += "<h2>Methods</h2><ul>\n";
    for (k, v) in &report.methods {
        let _ = writeln!(s, "<li><b>{}</b>: {}</li>", esc(k), esc(v));
    }
    s + "</ul></body></html>\n"
}

#[cfg(test)]
mod legend_tests {
    use super::*;

    #[test]
    fn a_long_model_name_fits_inside_the_figure() {
        let short = fit_legend(frame("t", 10.0, 14) + "</svg>", &[("ensemble AUC 0.75".into(), "#000", false)]);
        assert!(short.contains(&format!("width=\"{W}\"")), "short names keep the page size");
        let name = "ensemble@primary AUC n/a (one class)".to_string();
        let svg = fit_legend(frame("t", 10.0, 14) + "</svg>", &[(name.clone(), "#000", false)]);
        let width: f64 = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        // The text starts at LEGEND_TEXT_X; at 10 px a sans-serif character is under 6.2 px.
        assert!(width >= LEGEND_TEXT_X + 6.2 * name.len() as f64, "{width}");
        assert!(
            svg.contains(&format!("viewBox=\"0 0 {width} {H}\"")) && svg.contains(&format!("<rect width=\"{width}\""))
        );
    }
}
