//! The monitor's tables in the Parquet store (`schemas/tables/drift.md`):
//! - `drift`: one row per window compared, per site, scanner and signal;
//! - `calibration`: one row per site each time its calibration is recomputed.
//!
//! Each observation's rows are one file, keyed by the observation that caused them, so a
//! redelivered message rewrites its file instead of adding rows.

use crate::process::{CalibrationRow, DriftRow};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use std::sync::Arc;

/// The drift table's name.
pub const DRIFT: &str = "drift";
/// The calibration table's name.
pub const CALIBRATION: &str = "calibration";

/// Provenance shared by a file's rows.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// Code version.
    pub code_version: &'a str,
    /// SHA-256 of the monitor's settings.
    pub settings_sha256: &'a str,
    /// SHA-256 of the reference compared with.
    pub input_sha256: &'a str,
    /// Ensemble bundle the reference describes.
    pub reference: &'a str,
}

fn text(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn float(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

fn provenance_columns(n: usize, p: &Provenance) -> Vec<(&'static str, ArrayRef)> {
    vec![
        ("reference", text(vec![p.reference.to_string(); n])),
        ("code_version", text(vec![p.code_version.to_string(); n])),
        ("settings_sha256", text(vec![p.settings_sha256.to_string(); n])),
        ("input_sha256", text(vec![p.input_sha256.to_string(); n])),
    ]
}

/// `window_end` as RFC 3339 text (UTC, seconds).
pub fn rfc3339_ms(ms: u64) -> String {
    use renal_base::time::OffsetDateTime;
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    renal_base::rfc3339(t)
}

/// The drift rows as a record batch.
pub fn drift_batch(rows: &[DriftRow], p: &Provenance) -> RecordBatch {
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("site", text(rows.iter().map(|r| r.site.clone()).collect())),
        ("scanner", text(rows.iter().map(|r| r.scanner.clone()).collect())),
        ("signal", text(rows.iter().map(|r| r.signal.clone()).collect())),
        ("window_end", text(rows.iter().map(|r| rfc3339_ms(r.window_end_ms)).collect())),
        ("window_end_ms", Arc::new(Int64Array::from(rows.iter().map(|r| r.window_end_ms as i64).collect::<Vec<_>>()))),
        ("n", Arc::new(Int64Array::from(rows.iter().map(|r| r.drift.n as i64).collect::<Vec<_>>()))),
        ("psi", float(rows.iter().map(|r| r.drift.psi).collect())),
        ("ks", float(rows.iter().map(|r| r.drift.ks).collect())),
        ("ks_p", float(rows.iter().map(|r| r.drift.ks_p).collect())),
        ("ks_exact", Arc::new(BooleanArray::from(rows.iter().map(|r| r.drift.ks_exact).collect::<Vec<_>>()))),
        ("wasserstein", float(rows.iter().map(|r| r.drift.wasserstein).collect())),
    ];
    cols.extend(provenance_columns(rows.len(), p));
    RecordBatch::try_from_iter(cols).expect("columns of one length")
}

/// The calibration rows as a record batch (the reliability diagram as JSON text).
pub fn calibration_batch(rows: &[CalibrationRow], p: &Provenance) -> RecordBatch {
    let f = |get: fn(&CalibrationRow) -> f64| float(rows.iter().map(get).collect());
    let i = |get: fn(&CalibrationRow) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from(rows.iter().map(|r| get(r) as i64).collect::<Vec<_>>()))
    };
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("site", text(rows.iter().map(|r| r.site.clone()).collect())),
        ("window_end", text(rows.iter().map(|r| rfc3339_ms(r.window_end_ms)).collect())),
        ("window_end_ms", i(|r| r.window_end_ms)),
        ("n", i(|r| r.n)),
        ("positives", i(|r| r.positives)),
        ("roc_auc", f(|r| r.roc_auc)),
        ("sensitivity", f(|r| r.sensitivity)),
        ("specificity", f(|r| r.specificity)),
        ("accuracy", f(|r| r.accuracy)),
        ("brier", f(|r| r.brier)),
        ("ece", f(|r| r.ece)),
        ("ece_p", f(|r| r.ece_p)),
        ("reliability", text(rows.iter().map(|r| serde_json::to_string(&r.reliability).unwrap_or_default()).collect())),
        ("cbpe_accuracy_on_labelled", f(|r| r.cbpe_accuracy_on_labelled)),
        ("unlabelled", i(|r| r.unlabelled)),
        ("expected_accuracy", f(|r| r.expected_accuracy)),
        ("expected_roc_auc", f(|r| r.expected_roc_auc)),
    ];
    cols.extend(provenance_columns(rows.len(), p));
    RecordBatch::try_from_iter(cols).expect("columns of one length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_stats::drift::Drift;

    #[test]
    fn drift_rows_have_the_issue_columns_and_provenance() {
        let d = Drift { n: 30, psi: 0.4, ks: 0.3, ks_p: 0.01, ks_exact: true, wasserstein: 0.2 };
        let row = DriftRow {
            site: "MAY".into(),
            scanner: "GE 1.5T".into(),
            signal: "t2".into(),
            window_end_ms: 1_000,
            drift: d,
        };
        let p = Provenance { code_version: "c", settings_sha256: "s", input_sha256: "i", reference: "ens-1" };
        let b = drift_batch(&[row], &p);
        for c in ["site", "scanner", "signal", "window_end", "n", "psi", "ks", "ks_p", "wasserstein"] {
            assert!(b.schema().field_with_name(c).is_ok(), "{c}");
        }
        for c in renal_store::table::PROVENANCE_COLUMNS {
            assert!(b.schema().field_with_name(c).is_ok(), "{c}");
        }
        assert_eq!(rfc3339_ms(1_000), "1970-01-01T00:00:01Z");
    }
}
