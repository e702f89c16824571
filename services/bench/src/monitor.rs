//! `renal bench monitor`: the monitor's drift statistics against the drift tools people use,
//! on the same data in the same run.
//!
//! A reference set and an analysis set of `rows` x `features` (normal columns, each with its own
//! location and scale; a share of the analysis columns shifted by 0.01 to 0.2 of their standard
//! deviation, the rest drawn from the reference's own distribution). Timed:
//! - renal-monitor: every column's window against its reference (PSI, KS with its P value,
//!   Wasserstein-1), on the current thread pool and on one thread; the references are built once
//!   beforehand, as a bundle's training does, twice: as the monitor keeps them by default (at
//!   most 1,000 values, quantiles beyond, so the KS P value is asymptotic for larger
//!   references, as NannyML bins references of 10,000 rows and more) and with every value kept
//!   (KS P values exact while reference x window <= 10^6); the ratios are against the default;
//! - Evidently's `DataDriftPreset` with the KS test on every column, and with its own choice of
//!   test per column; NannyML's `UnivariateDriftCalculator` with KS and Wasserstein
//!   (`tests/reference/drift_bench.py`, loading the data untimed);
//! - one monitoring window (the first 50 analysis rows) against the same full reference, by
//!   renal-monitor and by Evidently's KS preset and NannyML;
//! - the streaming cost per lesion: a monitor watching `2 x features` signals (both series)
//!   taking lesions one by one, windows of 50 compared every 10 lesions.
//!
//! Agreement, for both references: each column's verdict (KS P < 0.05) against Evidently's KS
//! verdict, and the KS statistic and Wasserstein distance against NannyML's values.

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use renal_stats::drift::{compare, Drift, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A small seeded generator (xorshift64*), normal draws by Box–Muller.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Column-major data: `columns[j][i]`.
struct Data {
    reference: Vec<Vec<f64>>,
    analysis: Vec<Vec<f64>>,
    /// The shift of each analysis column, in its standard deviations (0: none).
    shift_sd: Vec<f64>,
}

fn make_data(rows: usize, features: usize, shifted_share: f64, seed: u64) -> Data {
    let shifted = (features as f64 * shifted_share).round() as usize;
    let columns: Vec<(Vec<f64>, Vec<f64>, f64)> = (0..features)
        .into_par_iter()
        .map(|j| {
            let mut rng =
                Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let (loc, scale) = (rng.normal() * 10.0, 0.5 + 4.0 * rng.uniform());
            let shift = if j < shifted { 0.01 + 0.19 * j as f64 / shifted.max(1) as f64 } else { 0.0 };
            let r = (0..rows).map(|_| loc + scale * rng.normal()).collect();
            let a = (0..rows).map(|_| loc + scale * (shift + rng.normal())).collect();
            (r, a, shift)
        })
        .collect();
    let mut d = Data { reference: Vec::new(), analysis: Vec::new(), shift_sd: Vec::new() };
    for (r, a, s) in columns {
        d.reference.push(r);
        d.analysis.push(a);
        d.shift_sd.push(s);
    }
    d
}

fn write_parquet(path: &Path, columns: &[Vec<f64>]) -> Result<()> {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    let batch = RecordBatch::try_from_iter(
        columns.iter().enumerate().map(|(j, c)| (format!("f{j}"), Arc::new(Float64Array::from(c.clone())) as ArrayRef)),
    )?;
    let file = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// The drift venv's Python and a script under tests/reference/.
fn drift_python(file: &str) -> Result<(PathBuf, PathBuf)> {
    crate::venv_script("RENAL_DRIFT_VENV", "drift-venv", file, "the Evidently and NannyML side (or --no-python) needs")
}

/// Lesions in a monitoring window (the monitor's default `window_lesions`).
const WINDOW_LESIONS: usize = 50;

/// How long Evidently's preset may run on the window under `--window-only` (on 3,087 columns it
/// ran past 25 minutes).
const EVIDENTLY_WINDOW_LIMIT_S: u64 = 1_200;

/// Seconds per lesion of a monitor watching `signals` features per lesion (windows of 50,
/// compared every 10 lesions), over `lesions` lesions after the windows fill.
fn streaming_cost(data: &Data, lesions: usize) -> Result<(f64, usize)> {
    use renal_monitor::process::{Monitor, Observation};
    use renal_monitor::reference::{MonitorReference, ReferenceSettings};
    // Both series: every column twice, as T2 and T1C features of one setting.
    let names: Vec<String> =
        ["T2", "T1C"].iter().flat_map(|s| (0..data.reference.len()).map(move |j| format!("{s}/bench/f{j}"))).collect();
    let values: BTreeMap<String, Vec<f64>> = names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            (n.clone(), data.reference[k % data.reference.len()][..1000.min(data.reference[0].len())].to_vec())
        })
        .collect();
    let settings = ReferenceSettings { sample_cap: 1_000, ..ReferenceSettings::default() };
    let reference = MonitorReference::build("bench", 0.5, 1_000, settings, &values)?;
    let config = renal_monitor::MonitorConfig::new(PathBuf::new(), PathBuf::new(), PathBuf::new());
    let mut monitor = Monitor::new(config, reference);
    monitor.observe(&Observation::Case { case_id: "warm".into(), site: "B".into(), scanner: "S".into() }, 0);
    let rows = data.analysis[0].len();
    let lesion = |i: usize| Observation::Values {
        case_id: format!("L{i}"),
        revision: 1,
        site: "B".into(),
        values: names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.clone(), data.analysis[k % data.analysis.len()][i % rows]))
            .collect(),
    };
    let mut compared = 0;
    // Fill the windows first (untimed), then time `lesions` more.
    for i in 0..50 {
        monitor.observe(&Observation::Case { case_id: format!("L{i}"), site: "B".into(), scanner: "S".into() }, 0);
        monitor.observe(&lesion(i), 0);
    }
    let started = std::time::Instant::now();
    for i in 50..50 + lesions {
        monitor.observe(&Observation::Case { case_id: format!("L{i}"), site: "B".into(), scanner: "S".into() }, 0);
        compared += monitor.observe(&lesion(i), 0).drift.len();
    }
    Ok((started.elapsed().as_secs_f64() / lesions as f64, compared))
}

/// What `renal bench monitor` runs of Evidently and NannyML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Neither: renal-monitor alone.
    Skip,
    /// The monitoring window only (Evidently's presets on the whole analysis set of 10,000 rows
    /// x 3,087 columns run for more than half an hour).
    Window,
    /// The whole analysis set and the window.
    All,
}

/// The bench.
pub fn monitor(rows: usize, features: usize, shifted_share: f64, seed: u64, peers: Peers) -> Result<()> {
    if rows < 2 || features == 0 {
        bail!("--rows must be at least 2 and --features at least 1");
    }
    println!(
        "renal bench monitor: {rows} reference rows and {rows} analysis rows x {features} features ({:.0}% of them shifted by 0.01-0.2 SD), seed {seed}, {} threads",
        shifted_share * 100.0,
        rayon::current_num_threads()
    );
    let data = make_data(rows, features, shifted_share, seed);
    // As the monitor keeps a reference (its default settings: a sample of at most 1,000 values,
    // quantiles beyond, so the KS P value is asymptotic for larger references) and with every
    // reference value kept (the KS P value exact while rows x window <= 10^6).
    let settings = renal_monitor::reference::ReferenceSettings::default();
    let started = std::time::Instant::now();
    let kept: Vec<Reference> = data
        .reference
        .par_iter()
        .map(|c| Reference::new(c, settings.psi_bins, settings.sample_cap))
        .collect::<Result<_, _>>()?;
    let build_s = started.elapsed().as_secs_f64();
    let every: Vec<Reference> =
        data.reference.par_iter().map(|c| Reference::new(c, settings.psi_bins, rows)).collect::<Result<_, _>>()?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let window = WINDOW_LESIONS.min(rows);
    let threads = rayon::current_num_threads();
    let mut table = Vec::new();
    let mut window_table = Vec::new();
    let mut results = Vec::new();
    for (what, references) in [
        (format!("its default reference ({} values kept, quantiles beyond)", settings.sample_cap), &kept),
        ("every reference value kept".to_string(), &every),
    ] {
        // Every column's first `len` analysis rows against its reference, on the current pool.
        let compare_all = |len: usize| -> Result<Vec<Drift>> {
            Ok(references.par_iter().zip(&data.analysis).map(|(r, w)| compare(r, &w[..len])).collect())
        };
        let (whole_s, drift) = crate::timed(3, || compare_all(rows))?;
        let (window_s, window_drift) = crate::timed(3, || compare_all(window))?;
        // One thread too: the Python tools below use one core.
        let (whole_one_s, _) = one.install(|| crate::timed(3, || compare_all(rows)))?;
        let (window_one_s, _) = one.install(|| crate::timed(3, || compare_all(window)))?;
        let exact = window_drift.iter().filter(|d| d.ks_exact).count();
        table.push((format!("renal-monitor, {what}, {threads} threads"), whole_s));
        table.push((format!("renal-monitor, {what}, 1 thread"), whole_one_s));
        window_table.push((format!("renal-monitor, {what}, {threads} threads ({exact} exact KS P values)"), window_s));
        window_table.push((format!("renal-monitor, {what}, 1 thread"), window_one_s));
        results.push((what, drift, window_drift));
    }
    // The headline ratios are against the monitor as it runs: its default reference.
    let (ours_s, ours_one_s) = (table[0].1, table[1].1);
    let (window_s, window_one_s) = (window_table[0].1, window_table[1].1);
    let (per_lesion_s, compared) = streaming_cost(&data, 100)?;
    let drift = &results[0].1;
    let ours_verdicts: Vec<bool> = drift.iter().map(|d| d.ks_p < 0.05).collect();

    let mut notes = Vec::new();
    if peers != Peers::Skip {
        let (python_bin, script) = drift_python("drift_bench.py")?;
        let dir = tempfile::tempdir()?;
        let (r, a) = (dir.path().join("reference.parquet"), dir.path().join("analysis.parquet"));
        let w = dir.path().join("window.parquet");
        write_parquet(&r, &data.reference)?;
        write_parquet(&a, &data.analysis)?;
        let firsts: Vec<Vec<f64>> = data.analysis.iter().map(|c| c[..window].to_vec()).collect();
        write_parquet(&w, &firsts)?;
        let mut command = std::process::Command::new(&python_bin);
        command.arg(&script);
        if peers == Peers::Window {
            command.arg("--window-only").arg("--evidently-limit-s").arg(EVIDENTLY_WINDOW_LIMIT_S.to_string());
            println!(
                "  running NannyML, then Evidently (stopped after {EVIDENTLY_WINDOW_LIMIT_S} s), on the monitoring window ..."
            );
        } else {
            println!("  running Evidently and NannyML on the same data (minutes at 10,000 x 300) ...");
        }
        let out = command.arg(&r).arg(&a).arg(&w).output()?;
        if !out.status.success() {
            bail!("drift_bench.py failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let secs = |k: &str| theirs[k]["seconds"].as_f64().unwrap_or(f64::NAN);
        let column = |j: usize| format!("f{j}");
        // Per feature: our KS verdict against another tool's, our statistics against another's;
        // `verdicts` and `statistics` are each a JSON key and the tool's name.
        let agreement = |what: &str, drift: &[Drift], verdicts: (&str, &str), statistics: (&str, &str)| {
            let agree = (0..features)
                .filter(|&j| theirs[verdicts.0]["drift"][column(j)].as_bool() == Some(drift[j].ks_p < 0.05))
                .count();
            let max_diff = |key: &str, ours: &dyn Fn(&Drift) -> f64| {
                (0..features)
                    .map(|j| {
                        (ours(&drift[j]) - theirs[statistics.0][key][column(j)].as_f64().unwrap_or(f64::NAN)).abs()
                    })
                    .fold(0.0, f64::max)
            };
            format!(
                "{what}: drift verdicts (KS P < 0.05) the same as {} on {agree} of {features} features ({:.2}%); KS statistic within {:.2e} of {}'s, Wasserstein-1 within {:.2e}",
                verdicts.1,
                100.0 * agree as f64 / features as f64,
                max_diff("ks", &|d| d.ks),
                statistics.1,
                max_diff("wasserstein", &|d| d.wasserstein)
            )
        };
        if peers == Peers::All {
            table.push(("Evidently DataDriftPreset, KS on every column".into(), secs("evidently_ks")));
            table.push(("Evidently DataDriftPreset, its default test per column".into(), secs("evidently_default")));
            table.push(("NannyML UnivariateDriftCalculator, KS and Wasserstein (calculate)".into(), secs("nannyml")));
            notes.push(format!(
                "NannyML's fit on the reference, apart from its calculation: {:.3} s (renal-monitor's references: below)",
                theirs["nannyml"]["fit_seconds"].as_f64().unwrap_or(f64::NAN)
            ));
            for (what, drift, _) in &results {
                notes.push(agreement(
                    &format!("all {rows} rows, {what}"),
                    drift,
                    ("evidently_ks", "Evidently's KS test"),
                    ("nannyml", "NannyML"),
                ));
            }
            let default_agree = (0..features)
                .filter(|&j| theirs["evidently_default"]["drift"][column(j)].as_bool() == Some(ours_verdicts[j]))
                .count();
            notes.push(format!(
                "Evidently's default test per column (normed Wasserstein above 0.1 at this size) agrees with the KS verdict on {default_agree} of {features}"
            ));
        }
        window_table
            .push(("NannyML UnivariateDriftCalculator, KS and Wasserstein (calculate)".into(), secs("window_nannyml")));
        let stopped = theirs["window_evidently_ks"]["timed_out_after_s"].as_f64();
        match stopped {
            // A lower bound: the ratios against it are "at least".
            Some(limit) => window_table.push((
                "Evidently DataDriftPreset, KS on every column: stopped unfinished at the limit, so at least".into(),
                limit,
            )),
            None => {
                window_table.push(("Evidently DataDriftPreset, KS on every column".into(), secs("window_evidently_ks")))
            }
        }
        for (what, _, window_drift) in &results {
            let scipy = ("window_scipy", "SciPy's ks_2samp (the test Evidently's KS preset calls)");
            notes.push(agreement(
                &format!("window of {window}, {what}"),
                window_drift,
                scipy,
                ("window_scipy", "SciPy"),
            ));
            if stopped.is_none() {
                let evidently = ("window_evidently_ks", "Evidently's KS test");
                notes.push(agreement(
                    &format!("window of {window}, {what}"),
                    window_drift,
                    evidently,
                    ("window_scipy", "SciPy"),
                ));
            }
        }
        // The largest gap between NannyML's estimate of a statistic and SciPy's exact value.
        let nannyml_gap = |key: &str| {
            (0..features)
                .map(|j| {
                    let c = column(j);
                    (theirs["window_nannyml"][key][&c].as_f64().unwrap_or(f64::NAN)
                        - theirs["window_scipy"][key][&c].as_f64().unwrap_or(f64::NAN))
                    .abs()
                })
                .fold(0.0, f64::max)
        };
        notes.push(format!(
            "window of {window}: NannyML estimates its statistics from 10,000 histogram bins for references of 10,000 rows and more; against SciPy's exact values its KS statistic is within {:.2e} and its Wasserstein-1 within {:.2e}",
            nannyml_gap("ks"),
            nannyml_gap("wasserstein")
        ));
    }
    let truly = data.shift_sd.iter().filter(|&&s| s > 0.0).count();
    let found = ours_verdicts.iter().zip(&data.shift_sd).filter(|(&v, &s)| v && s > 0.0).count();
    let false_alarms = ours_verdicts.iter().zip(&data.shift_sd).filter(|(&v, &s)| v && s == 0.0).count();
    println!(
        "\n| one window of {rows} rows x {features} features | s (renal-monitor: median of 3; Python: one run) | vs renal-monitor (default reference) | vs the same on 1 thread |\n|---|---:|---:|---:|"
    );
    for (name, s) in &table {
        println!("| {name} | {s:.4} | {:.1}x | {:.1}x |", s / ours_s, s / ours_one_s);
    }
    println!(
        "\n| one monitoring window of {window} lesions x {features} features, same reference | s (renal-monitor: median of 3; Python: one run) | vs renal-monitor (default reference) | vs the same on 1 thread |\n|---|---:|---:|---:|"
    );
    for (name, s) in &window_table {
        println!("| {name} | {s:.4} | {:.1}x | {:.1}x |", s / window_s, s / window_one_s);
    }
    println!();
    println!(
        "- renal-monitor: default references built once in {build_s:.3} s ({} PSI bins, {} values kept per feature)",
        settings.psi_bins, settings.sample_cap
    );
    println!(
        "- renal-monitor (default reference): KS flags {found} of the {truly} shifted features and {false_alarms} of the {} unshifted ones (P < 0.05)",
        features - truly
    );
    println!(
        "- streaming: {:.2} ms per lesion watching {} signals (both series), windows of 50 compared every 10 lesions ({compared} comparisons over 100 lesions)",
        per_lesion_s * 1e3,
        2 * features
    );
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}
