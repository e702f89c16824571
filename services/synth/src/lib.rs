//! A synthetic multi-site renal MRI cohort, written as five hospitals' scanners would export it.
//!
//! [`cohort`] draws patients and lesions from the study's Table 1 ([`table1`]); [`phantom`]
//! builds each patient's anatomy and lesion and samples it on each site's slice grids
//! ([`sites`]); [`export`] writes DICOM MR series, DICOM SEG objects, NIfTI masks, `labels.csv`
//! and `manifest.json`. The whole cohort is a pure function of the seed.
//!
//! ```no_run
//! use renal_synth::{generate, SynthConfig};
//!
//! let config = SynthConfig { lesions: 20, ..SynthConfig::default() };
//! let summary = generate(&config, "cohort".as_ref(), &|_| {})?;
//! println!("{} lesions, {} files", summary.lesions, summary.files);
//! # Ok::<(), renal_synth::SynthError>(())
//! ```

pub mod bias_phantom;
pub mod cohort;
pub mod drift;
pub mod export;
pub mod implied;
mod noise;
pub mod phantom;
pub mod sites;
pub mod table1;

use cohort::{CohortConfig, CohortError, LesionSpec};
use export::{CaseRecord, ExportError, LesionOutput, SeriesRecord};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of one `renal synth` run.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Total lesions (default 1,162, the study's cohort).
    pub lesions: usize,
    /// Master seed.
    pub seed: u64,
    /// Site codes to include.
    pub sites: Vec<String>,
    /// Fraction of histopathology-confirmed lesions with two extra readers' masks (default 0.15).
    pub multi_segmenter_fraction: f64,
    /// Probability that a patient has a second lesion in a later study (default 0.06).
    pub second_lesion_probability: f64,
    /// Write into a non-empty output folder.
    pub overwrite: bool,
    /// Sites whose acquisition changes part-way (`renal synth --drift`).
    pub drift: Vec<drift::DriftSpec>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            lesions: 1162,
            seed: 1,
            sites: sites::site_codes().into_iter().map(String::from).collect(),
            multi_segmenter_fraction: 0.15,
            second_lesion_probability: 0.06,
            overwrite: false,
            drift: Vec::new(),
        }
    }
}

impl SynthConfig {
    fn cohort(&self) -> CohortConfig {
        CohortConfig {
            lesions: self.lesions,
            seed: self.seed,
            sites: self.sites.clone(),
            multi_segmenter_fraction: self.multi_segmenter_fraction,
            second_lesion_probability: self.second_lesion_probability,
        }
    }
}

/// Why `renal synth` failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The cohort settings are invalid.
    #[error(transparent)]
    Cohort(#[from] CohortError),
    /// The output folder cannot be used.
    #[error("output folder {path}: {reason}")]
    OutputDir { path: PathBuf, reason: String },
    /// Writing a lesion failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Writing `labels.csv` or `manifest.json` failed.
    #[error("writing {path}: {reason}")]
    Index { path: PathBuf, reason: String },
}

/// `manifest.json`.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// Generator name and version.
    pub generator: String,
    /// Seed used.
    pub seed: u64,
    /// Lesions written.
    pub lesions: usize,
    /// Coordinate convention of every position in this file.
    pub coordinates: String,
    /// Ground truth per lesion.
    pub cases: Vec<CaseRecord>,
    /// Every MR series, with its segmentations.
    pub series: Vec<SeriesRecord>,
    /// Sites whose acquisition changes part-way (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<drift::DriftSpec>,
}

/// What a run wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Lesions written.
    pub lesions: usize,
    /// Distinct patients.
    pub patients: usize,
    /// Lesions per site.
    pub per_site: BTreeMap<String, usize>,
    /// Malignant lesions.
    pub malignant: usize,
    /// Benign lesions.
    pub benign: usize,
    /// Lesions with three readers' masks.
    pub multi_reader: usize,
    /// Files written (DICOM, NIfTI, index files).
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The cohort `config` describes, without rendering anything.
pub fn plan(config: &SynthConfig) -> Result<Vec<LesionSpec>, SynthError> {
    let mut specs = cohort::sample_cohort(&config.cohort())?;
    drift::apply(&mut specs, &config.drift);
    Ok(specs)
}

fn prepare_output(out: &Path, overwrite: bool) -> Result<(), SynthError> {
    let fail = |reason: String| SynthError::OutputDir { path: out.into(), reason };
    if out.exists() && !out.is_dir() {
        return Err(fail("exists and is not a folder".into()));
    }
    if out.is_dir() && !overwrite {
        let mut entries = std::fs::read_dir(out).map_err(|e| fail(e.to_string()))?;
        if entries.next().is_some() {
            return Err(fail("is not empty (pass --overwrite to write into it anyway)".into()));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| fail(format!("cannot create: {e}")))?;
    let probe = out.join(".renal-synth-write-probe");
    std::fs::write(&probe, b"probe").map_err(|e| fail(format!("not writable: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| fail(format!("not writable: {e}")))?;
    Ok(())
}

/// Generate the cohort under `out`. `progress` is called once per finished lesion, from
/// worker threads. Lesions render in parallel on the current rayon pool.
pub fn generate(
    config: &SynthConfig,
    out: &Path,
    progress: &(dyn Fn(&LesionSpec) + Sync),
) -> Result<Summary, SynthError> {
    let started = Instant::now();
    let specs = plan(config)?;
    prepare_output(out, config.overwrite)?;
    let outputs: Vec<LesionOutput> = specs
        .par_iter()
        .map(|spec| {
            let written = export::write_lesion(spec, out);
            progress(spec);
            written
        })
        .collect::<Result<_, _>>()?;

    let labels_path = out.join("labels.csv");
    let index_err = |path: &Path, reason: String| SynthError::Index { path: path.into(), reason };
    let mut w = csv::Writer::from_path(&labels_path).map_err(|e| index_err(&labels_path, e.to_string()))?;
    for o in &outputs {
        w.serialize(&o.label).map_err(|e| index_err(&labels_path, e.to_string()))?;
    }
    w.flush().map_err(|e| index_err(&labels_path, e.to_string()))?;

    let manifest = Manifest {
        generator: format!("renal-synth {}", env!("CARGO_PKG_VERSION")),
        seed: config.seed,
        lesions: outputs.len(),
        coordinates: "DICOM patient coordinates (LPS), millimetres".into(),
        cases: outputs.iter().map(|o| o.case.clone()).collect(),
        series: outputs.iter().flat_map(|o| o.series.iter().cloned()).collect(),
        drift: config.drift.clone(),
    };
    let manifest_path = out.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| index_err(&manifest_path, e.to_string()))?;
    write_atomically(&manifest_path, &json).map_err(|e| index_err(&manifest_path, e.to_string()))?;

    let mut per_site = BTreeMap::new();
    for s in &specs {
        *per_site.entry(s.site.code.to_string()).or_insert(0) += 1;
    }
    let patients: std::collections::HashSet<(&str, usize)> =
        specs.iter().map(|s| (s.site.code, s.patient_number)).collect();
    let labels_bytes = std::fs::metadata(&labels_path).map(|m| m.len()).unwrap_or(0);
    Ok(Summary {
        lesions: specs.len(),
        patients: patients.len(),
        per_site,
        malignant: specs.iter().filter(|s| s.malignant).count(),
        benign: specs.iter().filter(|s| !s.malignant).count(),
        multi_reader: specs.iter().filter(|s| s.segmenters > 1).count(),
        files: outputs.iter().map(|o| o.files).sum::<usize>() + 2,
        bytes: outputs.iter().map(|o| o.bytes).sum::<u64>() + json.len() as u64 + labels_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Write then rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
