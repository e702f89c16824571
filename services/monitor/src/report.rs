//! `renal monitor report`: what the `drift` and `calibration` tables say, drawn: a heat map of
//! the latest drift per site and scanner (rows) and signal (columns), calibration per site over
//! its updates, and CBPE's expected accuracy against the realised one.
//!
//! Reading the tables is the only I/O here; the figures are SVG text built from the rows.

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `drift` row, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftRead {
    /// Site code.
    pub site: String,
    /// Scanner label.
    pub scanner: String,
    /// Signal.
    pub signal: String,
    /// When, ms since the Unix epoch.
    pub window_end_ms: i64,
    /// Lesions in the window.
    pub n: i64,
    /// PSI.
    pub psi: f64,
    /// KS P value.
    pub ks_p: f64,
}

/// One `calibration` row, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationRead {
    /// Site code.
    pub site: String,
    /// When, ms since the Unix epoch.
    pub window_end_ms: i64,
    /// Labelled lesions.
    pub n: i64,
    /// Expected calibration error.
    pub ece: f64,
    /// Its P value were the probabilities calibrated.
    pub ece_p: f64,
    /// Realised accuracy.
    pub accuracy: f64,
    /// CBPE's expected accuracy of the same lesions.
    pub cbpe_accuracy: f64,
}

/// Why the tables cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ReportError {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn files(root: &Path, table: &str) -> Result<Vec<PathBuf>, ReportError> {
    let fail = |p: &Path, e: std::io::Error| ReportError { path: p.into(), reason: e.to_string() };
    let mut out = Vec::new();
    let dir = root.join(table);
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| fail(&d, e))? {
            let p = e.map_err(|e| fail(&d, e))?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn batches(path: &Path) -> Result<Vec<RecordBatch>, ReportError> {
    let fail = |reason: String| ReportError { path: path.into(), reason };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| fail(e.to_string()))?;
    reader.map(|b| b.map_err(|e| fail(e.to_string()))).collect()
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T, ReportError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ReportError { path: path.into(), reason: format!("no column {name} of the expected type") })
}

/// Every row of the `drift` table under `root`.
pub fn read_drift(root: &Path) -> Result<Vec<DriftRead>, ReportError> {
    let mut out = Vec::new();
    for path in files(root, crate::table::DRIFT)? {
        for b in batches(&path)? {
            let (site, scanner, signal) = (
                column::<StringArray>(&b, "site", &path)?,
                column::<StringArray>(&b, "scanner", &path)?,
                column::<StringArray>(&b, "signal", &path)?,
            );
            let (at, n) = (column::<Int64Array>(&b, "window_end_ms", &path)?, column::<Int64Array>(&b, "n", &path)?);
            let (psi, p) = (column::<Float64Array>(&b, "psi", &path)?, column::<Float64Array>(&b, "ks_p", &path)?);
            for i in 0..b.num_rows() {
                out.push(DriftRead {
                    site: site.value(i).into(),
                    scanner: scanner.value(i).into(),
                    signal: signal.value(i).into(),
                    window_end_ms: at.value(i),
                    n: n.value(i),
                    psi: psi.value(i),
                    ks_p: p.value(i),
                });
            }
        }
    }
    Ok(out)
}

/// Every row of the `calibration` table under `root`, oldest first.
pub fn read_calibration(root: &Path) -> Result<Vec<CalibrationRead>, ReportError> {
    let mut out = Vec::new();
    for path in files(root, crate::table::CALIBRATION)? {
        for b in batches(&path)? {
            let site = column::<StringArray>(&b, "site", &path)?;
            let (at, n) = (column::<Int64Array>(&b, "window_end_ms", &path)?, column::<Int64Array>(&b, "n", &path)?);
            let ece = column::<Float64Array>(&b, "ece", &path)?;
            let ece_p = column::<Float64Array>(&b, "ece_p", &path)?;
            let acc = column::<Float64Array>(&b, "accuracy", &path)?;
            let cbpe = column::<Float64Array>(&b, "cbpe_accuracy_on_labelled", &path)?;
            for i in 0..b.num_rows() {
                out.push(CalibrationRead {
                    site: site.value(i).into(),
                    window_end_ms: at.value(i),
                    n: n.value(i),
                    ece: ece.value(i),
                    ece_p: ece_p.value(i),
                    accuracy: acc.value(i),
                    cbpe_accuracy: cbpe.value(i),
                });
            }
        }
    }
    out.sort_by_key(|r| (r.window_end_ms, r.site.clone()));
    Ok(out)
}

/// The heat map's column of a signal: score signals as they are, radiomics features by series
/// and family (`T2 stat`, `T1C morph`).
pub fn column_of(signal: &str) -> String {
    let mut parts = signal.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(series), Some(_setting), Some(tag)) => {
            format!("{series} {}", tag.split('_').next().unwrap_or(tag))
        }
        _ => signal.to_string(),
    }
}

/// One heat-map cell: the median over the column's signals of each signal's latest PSI, how
/// many signals it summarises, and how many of them had a KS P value below 0.01.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median latest PSI.
    pub psi: f64,
    /// Signals summarised.
    pub signals: usize,
    /// Of those, the ones whose latest KS P value is below 0.01.
    pub ks_rejected: usize,
}

/// The heat map's cells, per (site / scanner, column).
pub fn heat_cells(rows: &[DriftRead]) -> BTreeMap<(String, String), Cell> {
    let mut latest: BTreeMap<(&str, &str, &str), &DriftRead> = BTreeMap::new();
    for r in rows {
        let key = (r.site.as_str(), r.scanner.as_str(), r.signal.as_str());
        if latest.get(&key).is_none_or(|l| l.window_end_ms <= r.window_end_ms) {
            latest.insert(key, r);
        }
    }
    let mut groups: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for ((site, scanner, signal), r) in latest {
        groups.entry((format!("{site} / {scanner}"), column_of(signal))).or_default().push((r.psi, r.ks_p));
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let mut psi: Vec<f64> = v.iter().map(|x| x.0).collect();
            psi.sort_by(f64::total_cmp);
            let n = psi.len();
            let median = if n % 2 == 1 { psi[n / 2] } else { (psi[n / 2 - 1] + psi[n / 2]) / 2.0 };
            (k, Cell { psi: median, signals: n, ks_rejected: v.iter().filter(|x| x.1 < 0.01).count() })
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// White at PSI 0 to dark red at 0.5 and above.
fn colour(psi: f64) -> String {
    let t = (psi / 0.5).clamp(0.0, 1.0);
    let g = (255.0 * (1.0 - 0.85 * t)) as u8;
    let r = (255.0 * (1.0 - 0.35 * t.powi(2))) as u8;
    format!("rgb({r},{g},{g})")
}

/// The drift heat map as SVG: rows site / scanner, columns signals, each cell its PSI.
pub fn heatmap_svg(rows: &[DriftRead]) -> String {
    let cells = heat_cells(rows);
    let row_names: Vec<&String> = {
        let mut v: Vec<&String> = cells.keys().map(|k| &k.0).collect();
        v.dedup();
        v
    };
    let mut cols: Vec<&String> = cells.keys().map(|k| &k.1).collect();
    cols.sort_by_key(|c| (!crate::reference::SCORE_SIGNALS.contains(&c.as_str()), c.to_string()));
    cols.dedup();
    let (left, top, w, h) = (260.0, 90.0, 100.0, 30.0);
    let width = left + w * cols.len() as f64 + 20.0;
    let height = top + h * row_names.len().max(1) as f64 + 56.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\">Drift: PSI of the latest window against the reference (features: median over the family)</text>\n"
    );
    for (j, c) in cols.iter().enumerate() {
        let x = left + w * j as f64 + w / 2.0;
        let _ = writeln!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>", top - 10.0, esc(c));
    }
    for (i, r) in row_names.iter().enumerate() {
        let y = top + h * i as f64;
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", left - 8.0, y + h / 2.0 + 4.0, esc(r));
        for (j, c) in cols.iter().enumerate() {
            let x = left + w * j as f64;
            match cells.get(&((*r).clone(), (*c).clone())) {
                Some(cell) => {
                    // A score signal: its PSI, starred when its KS test rejects; a feature family:
                    // the median PSI and how many of its features' KS tests reject.
                    let label = if cell.signals == 1 {
                        format!("{:.2}{}", cell.psi, if cell.ks_rejected == 1 { " *" } else { "" })
                    } else {
                        format!("{:.2} ({}/{})", cell.psi, cell.ks_rejected, cell.signals)
                    };
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                        colour(cell.psi),
                        x + w / 2.0,
                        y + h / 2.0 + 4.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"#eee\" stroke=\"#999\"/>"
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{}\" fill=\"#555\">PSI below 0.1: stable; 0.1 to 0.25: a shift to watch; above 0.25: drift.</text>\n<text x=\"10\" y=\"{}\" fill=\"#555\">*: KS P &lt; 0.01; (k/n): features with KS P &lt; 0.01. Grey: no window filled.</text>\n</svg>",
        height - 28.0,
        height - 10.0
    );
    s
}

/// Calibration per site over its updates: ECE, and realised against CBPE-expected accuracy.
pub fn calibration_svg(rows: &[CalibrationRead]) -> String {
    let mut by_site: BTreeMap<&str, Vec<&CalibrationRead>> = BTreeMap::new();
    for r in rows {
        by_site.entry(&r.site).or_default().push(r);
    }
    let (panel_w, panel_h, left, top) = (320.0, 180.0, 50.0, 40.0);
    let width = left + (panel_w + 40.0) * by_site.len().max(1) as f64;
    let height = top + panel_h + 70.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\">Calibration per site, update by update: ECE (red), accuracy (black), CBPE expected accuracy (blue, dashed)</text>\n"
    );
    for (k, (site, rs)) in by_site.iter().enumerate() {
        let x0 = left + (panel_w + 40.0) * k as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{top}\" width=\"{panel_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{} ({} updates, last {} labelled)</text>",
            x0 + panel_w / 2.0,
            top + panel_h + 18.0,
            esc(site),
            rs.len(),
            rs.last().map_or(0, |r| r.n)
        );
        for v in [0.0, 0.5, 1.0] {
            let y = top + panel_h * (1.0 - v);
            let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v}</text>", x0 - 4.0, y + 4.0);
        }
        let xs = |i: usize| x0 + if rs.len() < 2 { panel_w / 2.0 } else { panel_w * i as f64 / (rs.len() - 1) as f64 };
        let ys = |v: f64| top + panel_h * (1.0 - v.clamp(0.0, 1.0));
        for (get, stroke, dash) in [
            (&(|r: &CalibrationRead| r.ece) as &dyn Fn(&CalibrationRead) -> f64, "#c0392b", ""),
            (&|r: &CalibrationRead| r.accuracy, "#000", ""),
            (&|r: &CalibrationRead| r.cbpe_accuracy, "#2c6fbb", " stroke-dasharray=\"5,3\""),
        ] {
            let points: Vec<String> =
                rs.iter().enumerate().map(|(i, r)| format!("{:.1},{:.1}", xs(i), ys(get(r)))).collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\"{dash}/>",
                points.join(" ")
            );
            for (i, r) in rs.iter().enumerate() {
                let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{stroke}\"/>", xs(i), ys(get(r)));
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The report page: both figures and the tables' latest values.
pub fn html(drift: &[DriftRead], calibration: &[CalibrationRead]) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>renal-mri monitor</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}</style></head><body>\n<h1>Monitor</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>{} windows compared, {} calibration updates. The heat map is also <a href=\"drift_heatmap.png\">a PNG</a>.</p>",
        drift.len(),
        calibration.len()
    );
    s += "<h2>Drift per site and scanner</h2>\n";
    s += &heatmap_svg(drift);
    s += "<h2>Calibration as labels arrive</h2>\n";
    s += &calibration_svg(calibration);
    s += "<h2>Latest calibration per site</h2><table><tr><th>site</th><th>labelled</th><th>ECE</th><th>ECE's P if calibrated</th><th>accuracy</th><th>CBPE expected accuracy</th></tr>\n";
    let mut latest: BTreeMap<&str, &CalibrationRead> = BTreeMap::new();
    for r in calibration {
        latest.insert(&r.site, r);
    }
    for (site, r) in latest {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            esc(site),
            r.n,
            r.ece,
            r.ece_p,
            r.accuracy,
            r.cbpe_accuracy
        );
    }
    s += "</table></body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(site: &str, scanner: &str, signal: &str, at: i64, psi: f64) -> DriftRead {
        DriftRead {
            site: site.into(),
            scanner: scanner.into(),
            signal: signal.into(),
            window_end_ms: at,
            n: 50,
            psi,
            ks_p: 0.5,
        }
    }

    #[test]
    fn cells_take_each_signals_latest_window_and_the_median_of_a_family() {
        let rows = vec![
            row("MAY", "GE 3T", "ensemble", 1, 0.9),
            row("MAY", "GE 3T", "ensemble", 2, 0.05),
            row("MAY", "GE 3T", "T2/2mm_fbn32/stat_mean", 1, 0.1),
            row("MAY", "GE 3T", "T2/2mm_fbn32/stat_median", 1, 0.3),
            row("MAY", "GE 3T", "T2/2mm_fbn32/stat_max", 1, 0.7),
        ];
        let cells = heat_cells(&rows);
        assert_eq!(cells[&("MAY / GE 3T".into(), "ensemble".into())], Cell { psi: 0.05, signals: 1, ks_rejected: 0 });
        assert_eq!(cells[&("MAY / GE 3T".into(), "T2 stat".into())], Cell { psi: 0.3, signals: 3, ks_rejected: 0 });
        let svg = heatmap_svg(&rows);
        assert!(svg.contains(">T2 stat<") && svg.contains(">0.30 (0/3)<"), "{svg}");
    }
}
