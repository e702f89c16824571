//! The monitor in `renal run`: the same processing step and tables as `renal worker monitor`,
//! fed in-process.
//!
//! Each round of the protocol serves its own bundles, so each round gets its own reference and
//! its own monitor: the reference population is the round's validation lesions as the round's
//! stages score them (the ensemble and both networks) and its training and validation lesions'
//! watched radiomics features; it is saved as `OUT/models/monitor/<ensemble version>.json`,
//! where `renal worker monitor` finds it. The round's held-out lesions then arrive as a site
//! would send them (case, features, scores, prediction, in case-id order), and their labels
//! after all of them, as pathology does. Findings go to `OUT/store/drift` and
//! `OUT/store/calibration`.

use anyhow::{Context, Result};
use renal_messages::{CaseV1, PredictionV1};
use renal_monitor::process::{observe_case, observe_prediction, CalibrationRow, Findings, Monitor, Observation};
use renal_monitor::reference::{self, feature_values, MonitorReference, ReferenceSettings, ENSEMBLE, T1C, T2};
use renal_monitor::run::{now_ms, Sink};
use renal_monitor::MonitorConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One round as the monitor sees it.
pub struct RoundInput<'a> {
    /// 1-based round number.
    pub round: usize,
    /// The round's ensemble bundle version.
    pub ensemble_version: &'a str,
    /// The ensemble bundle's decision threshold.
    pub threshold: f64,
    /// The reference population's predictions (validation lesions through the round's stages).
    pub reference: &'a [PredictionV1],
    /// Lesions whose features make the features' reference (training and validation).
    pub reference_lesions: Vec<(String, u32)>,
    /// The held-out lesions' predictions, as they left the ensemble stage.
    pub held_out: &'a [PredictionV1],
}

/// What the monitor found over every round.
#[derive(Debug, Default)]
pub struct Monitored {
    /// Drift rows written.
    pub drift_rows: u64,
    /// Calibration rows written.
    pub calibration_rows: u64,
    /// The latest comparison per (site, scanner, signal) over all rounds: (PSI, KS P value, n).
    pub latest: BTreeMap<(String, String, String), (f64, f64, u64)>,
    /// The latest calibration per site.
    pub calibration: BTreeMap<String, CalibrationRow>,
    /// The references written.
    pub references: Vec<PathBuf>,
}

impl Monitored {
    fn take(&mut self, f: &Findings) {
        for r in &f.drift {
            let key = (r.site.clone(), r.scanner.clone(), r.signal.clone());
            self.latest.insert(key, (r.drift.psi, r.drift.ks_p, r.drift.n));
        }
        for c in &f.calibration {
            self.calibration.insert(c.site.clone(), c.clone());
        }
    }
}

fn features_of(
    index: &BTreeMap<(String, u32), PathBuf>,
    case_id: &str,
    revision: u32,
    settings: &ReferenceSettings,
) -> Result<Vec<(String, f64)>> {
    match index.get(&(case_id.to_string(), revision)) {
        Some(file) => Ok(feature_values(file, settings)?),
        None => Ok(Vec::new()),
    }
}

/// Build, save and stream every round; `malignant` is each labelled lesion's truth.
pub fn run(
    rounds: &[RoundInput],
    cases: &[CaseV1],
    malignant: &BTreeMap<String, bool>,
    registry: &Path,
    table_root: &Path,
) -> Result<Monitored> {
    let settings = ReferenceSettings::default();
    let index = renal_radiomics::table::index(table_root)?;
    let cases: BTreeMap<&str, &CaseV1> = cases.iter().map(|c| (c.case_id.as_str(), c)).collect();
    let mut monitored = Monitored::default();
    for r in rounds {
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for p in r.reference {
            values.entry(ENSEMBLE.into()).or_default().push(p.probability);
            values.entry(T2.into()).or_default().push(p.inputs[0]);
            values.entry(T1C.into()).or_default().push(p.inputs[1]);
        }
        for (case_id, revision) in &r.reference_lesions {
            for (signal, v) in features_of(&index, case_id, *revision, &settings)? {
                values.entry(signal).or_default().push(v);
            }
        }
        let reference = MonitorReference::build(
            r.ensemble_version,
            r.threshold,
            r.reference.len() as u64,
            settings.clone(),
            &values,
        )?;
        let path = reference::path(registry, r.ensemble_version);
        reference.save(&path)?;
        monitored.references.push(path.clone());

        let config = MonitorConfig::new(path, table_root.into(), PathBuf::new()).validate()?;
        let mut sink = Sink::new(&config, &reference);
        let mut monitor = Monitor::new(config, reference);
        let mut step = |monitor: &mut Monitor, key: String, o: &Observation| -> Result<()> {
            let f = monitor.observe(o, now_ms());
            sink.write(&key, &f).context("writing the monitor's tables")?;
            monitored.take(&f);
            Ok(())
        };
        let mut held_out: Vec<&PredictionV1> = r.held_out.iter().collect();
        held_out.sort_by(|a, b| a.case_id.cmp(&b.case_id));
        for p in &held_out {
            let key = |kind: &str| format!("run-r{}-{}-{kind}", r.round, p.case_id);
            if let Some(c) = cases.get(p.case_id.as_str()) {
                step(&mut monitor, key("case"), &observe_case(c))?;
            }
            let features = features_of(&index, &p.case_id, p.revision, &monitor.reference().settings)?;
            let o = Observation::Values {
                case_id: p.case_id.clone(),
                revision: p.revision,
                site: p.site.clone(),
                values: features,
            };
            step(&mut monitor, key("features"), &o)?;
            let scores = Observation::Values {
                case_id: p.case_id.clone(),
                revision: p.revision,
                site: p.site.clone(),
                values: vec![(T2.into(), p.inputs[0]), (T1C.into(), p.inputs[1])],
            };
            step(&mut monitor, key("scores"), &scores)?;
            for (k, o) in observe_prediction(p).iter().enumerate() {
                step(&mut monitor, key(&format!("prediction{k}")), o)?;
            }
        }
        let labelled: BTreeSet<&str> = held_out.iter().map(|p| p.case_id.as_str()).collect();
        for case_id in labelled {
            if let Some(&m) = malignant.get(case_id) {
                let o = Observation::Label { case_id: case_id.into(), malignant: m };
                step(&mut monitor, format!("run-r{}-{case_id}-label", r.round), &o)?;
            }
        }
        monitored.drift_rows += sink.drift_rows;
        monitored.calibration_rows += sink.calibration_rows;
    }
    Ok(monitored)
}

/// Lines for people: per site and scanner, the score signals' latest PSI and KS P value, and
/// how many watched features drifted (latest KS P below 0.01); per site, the calibration.
pub fn summary(m: &Monitored, table_root: &Path) -> Vec<String> {
    let mut lines = vec![format!(
        "monitor: {} windows compared, {} calibration rows (in {} and {})",
        m.drift_rows,
        m.calibration_rows,
        table_root.join(renal_monitor::table::DRIFT).display(),
        table_root.join(renal_monitor::table::CALIBRATION).display()
    )];
    // Per (site, scanner): (signal, PSI, KS P value, lesions).
    type Latest<'a> = Vec<(&'a str, f64, f64, u64)>;
    let mut groups: BTreeMap<(&str, &str), Latest> = BTreeMap::new();
    for ((site, scanner, signal), &(psi, p, n)) in &m.latest {
        groups.entry((site, scanner)).or_default().push((signal, psi, p, n));
    }
    for ((site, scanner), signals) in &groups {
        let scores: Vec<String> = signals
            .iter()
            .filter(|s| renal_monitor::reference::SCORE_SIGNALS.contains(&s.0))
            .map(|(s, psi, p, n)| format!("{s} PSI {psi:.2} KS p {p:.3} (n {n})"))
            .collect();
        let features: Vec<&(&str, f64, f64, u64)> =
            signals.iter().filter(|s| !renal_monitor::reference::SCORE_SIGNALS.contains(&s.0)).collect();
        let drifted = features.iter().filter(|f| f.2 < 0.01).count();
        lines.push(format!(
            "  {site} / {scanner}: {}; features: {drifted} of {} with KS p < 0.01",
            if scores.is_empty() { "no score window filled".to_string() } else { scores.join(", ") },
            features.len()
        ));
    }
    if groups.is_empty() {
        lines.push(format!(
            "  no window filled: a window needs {} lesions of one site and scanner in one round",
            MonitorConfig::new(PathBuf::new(), PathBuf::new(), PathBuf::new()).min_lesions
        ));
    }
    for (site, c) in &m.calibration {
        lines.push(format!(
            "  {site}: {} labelled, ECE {:.3} (P {:.3} were it calibrated), accuracy {:.3} (CBPE expected {:.3})",
            c.n, c.ece, c.ece_p, c.accuracy, c.cbpe_accuracy_on_labelled
        ));
    }
    if let Some(first) = m.references.first() {
        lines.push(format!("  references: {} (and one per round)", first.display()));
    }
    lines
}

/// `renal monitor report`: the figures and page from the store's monitor tables, and the PNG
/// of the heat map (the SVG rendered with resvg, text in the system's fonts).
pub fn report(store: &Path, out: &Path) -> Result<Vec<String>> {
    use renal_monitor::report;
    let drift = report::read_drift(store)?;
    let calibration = report::read_calibration(store)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let heat = report::heatmap_svg(&drift);
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        std::fs::write(out.join(name), bytes).with_context(|| format!("writing {}", out.join(name).display()))
    };
    write("drift_heatmap.svg", heat.as_bytes())?;
    write("drift_heatmap.png", &svg_to_png(&heat)?)?;
    write("calibration.svg", report::calibration_svg(&calibration).as_bytes())?;
    write("index.html", report::html(&drift, &calibration).as_bytes())?;
    Ok(vec![format!(
        "monitor report: {} windows, {} calibration updates -> {}",
        drift.len(),
        calibration.len(),
        out.join("index.html").display()
    )])
}

/// Render SVG text to PNG bytes.
fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("parsing the heat map's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("an empty heat map")?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding the heat map as PNG")
}
