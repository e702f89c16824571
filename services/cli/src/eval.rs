//! `renal eval`: the evaluation report from CSV files.

use anyhow::{bail, Context, Result};
use renal_eval::input::{check_labelled, read_embeddings, read_labels, read_predictions, read_reads};
use renal_eval::report::{build, embedding_map, Settings};
use std::path::Path;

/// Read, check, compute, write, and print the headline table.
pub fn run(
    predictions: &Path,
    labels: &Path,
    experts: Option<&Path>,
    embeddings: Option<&Path>,
    out: &Path,
    settings: &Settings,
) -> Result<()> {
    if !(0.0..=1.0).contains(&settings.threshold) {
        bail!("--threshold must be within [0, 1], not {}", settings.threshold);
    }
    if settings.ece_bins == 0 || settings.bootstrap_resamples == 0 {
        bail!("--ece-bins and --bootstrap must be at least 1");
    }
    let labels = read_labels(labels)?;
    let predictions = read_predictions(predictions)?;
    if predictions.is_empty() {
        bail!("no predictions: the predictions file has a header but no rows");
    }
    check_labelled(&labels, &predictions, "model")?;
    let reads = match experts {
        Some(path) => {
            let reads = read_reads(path)?;
            check_labelled(&labels, &reads, "expert")?;
            reads
        }
        None => Default::default(),
    };
    let mut report = build(&labels, &predictions, &reads, settings);
    if let Some(path) = embeddings {
        let e = read_embeddings(path)?;
        check_labelled(&labels, &std::collections::BTreeMap::from([("embeddings".to_string(), e.clone())]), "file")?;
        let rows: Vec<(String, Vec<f64>, bool)> = e.into_iter().map(|(c, v)| (c, v, true)).collect();
        report.embedding_map = embedding_map(&labels, &rows, &format!("the embeddings in {}", path.display()));
        if report.embedding_map.is_none() {
            bail!("{}: a t-SNE map needs at least 4 cases with embeddings of one width", path.display());
        }
    }
    renal_eval::write_report(&report, out).with_context(|| format!("writing the report into {}", out.display()))?;
    for line in report.headline_table() {
        println!("{line}");
    }
    println!("report: {}", out.join("index.html").display());
    Ok(())
}
