//! The evaluation report (`renal eval`, and the end of `renal run`): per model and per expert
//! reader, the study's Table 2 metrics with their intervals and tests, plus calibration, as
//! `report.json`, SVG figures and `index.html`.
//!
//! [`input`] reads the CSVs, [`report`] computes (pure, over [`renal_stats`]), [`render`] draws;
//! [`write_report`] puts the files in a folder.

pub mod input;
pub mod render;
pub mod report;

use std::path::Path;

/// Write `report.json`, `index.html`, `roc.svg`, `pr.svg`, `reliability.svg`,
/// `confusion.svg` and, with an embedding map, `tsne.svg` into `out` (created), each file
/// atomically.
pub fn write_report(report: &report::Report, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = serde_json::to_string_pretty(report).expect("the report serialises");
    let mut files = vec![
        ("report.json", json),
        ("index.html", render::html(report)),
        ("roc.svg", render::roc_svg(report)),
        ("pr.svg", render::pr_svg(report)),
        ("reliability.svg", render::reliability_svg(report)),
        ("confusion.svg", render::confusion_svg(report)),
    ];
    if let Some(map) = &report.embedding_map {
        files.push(("tsne.svg", render::tsne_svg(map)));
    }
    for (name, text) in files {
        let tmp = out.join(format!(".{name}.partial"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, out.join(name))?;
    }
    Ok(())
}
