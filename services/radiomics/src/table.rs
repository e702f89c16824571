//! The `features` table: one row per (lesion revision, series, setting), the fixed columns,
//! one nullable Float64 column per IBSI feature tag, then one per IBSI diagnostic tag
//! (`schemas/tables/features.md`).

use crate::extract::SettingFeatures;
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use renal_ibsi::roi::{Discretisation, Roi};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Table name in the feature store.
pub const TABLE: &str = "features";

/// Every tag `renal_ibsi::extract` can report, in its order: the feature columns.
pub fn feature_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        // A small ROI on which every family reports: a 4 x 4 x 3 block of mixed levels with one
        // corner missing, so it is neither flat nor symmetric.
        let dims = [4, 4, 3];
        let n = 48;
        let image: Vec<f64> = (0..n).map(|i| f64::from((i * 7 % 5 + 1) as u32)).collect();
        let mask: Vec<bool> = (0..n).map(|i| i != 0).collect();
        let roi = Roi::new(dims, [1.0, 1.0, 2.0], image, mask, Discretisation::None).expect("a valid ROI");
        renal_ibsi::extract(&roi).into_iter().map(|(t, _)| t).collect()
    })
}

/// IBSI's diagnostic tags ([`crate::diagnostics::tags`]): the columns after the features.
pub fn diagnostic_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(crate::diagnostics::tags)
}

/// A lesion revision's identity and provenance, shared by its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RowKey<'a> {
    /// Lesion id.
    pub case_id: &'a str,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: &'a str,
    /// RFC 3339 UTC.
    pub produced_at: &'a str,
    /// Provenance: code version.
    pub code_version: &'a str,
    /// Provenance: SHA-256 of the settings.
    pub settings_sha256: &'a str,
    /// Provenance: SHA-256 of the input message and volumes.
    pub input_sha256: &'a str,
}

/// The rows of one lesion revision: per series (`T2`, `T1C`), per setting.
pub fn features_batch(key: &RowKey, series: &[(&str, &[SettingFeatures])]) -> RecordBatch {
    let rows: Vec<(&str, &SettingFeatures)> =
        series.iter().flat_map(|(name, sets)| sets.iter().map(move |s| (*name, s))).collect();
    let n = rows.len();
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v.to_string(); n])) };
    let method = |d: &Discretisation| match d {
        Discretisation::None => "none",
        Discretisation::FixedBinNumber { .. } => "fixed_bin_number",
        Discretisation::EqualisedBinNumber { .. } => "equalised_bin_number",
        Discretisation::FixedBinSize { .. } => "fixed_bin_size",
    };
    let bins = |d: &Discretisation| match *d {
        Discretisation::FixedBinNumber { bins } | Discretisation::EqualisedBinNumber { bins } => Some(bins as i32),
        _ => None,
    };
    let width = |d: &Discretisation| match *d {
        Discretisation::FixedBinSize { width, .. } => Some(width),
        _ => None,
    };
    let mut columns: Vec<(String, ArrayRef)> = vec![
        ("case_id".into(), text(key.case_id)),
        ("revision".into(), Arc::new(Int32Array::from(vec![key.revision as i32; n]))),
        ("site".into(), text(key.site)),
        ("series".into(), Arc::new(StringArray::from(rows.iter().map(|(s, _)| *s).collect::<Vec<_>>()))),
        (
            "setting".into(),
            Arc::new(StringArray::from(rows.iter().map(|(_, r)| r.setting.label()).collect::<Vec<_>>())),
        ),
        (
            "spacing_mm".into(),
            Arc::new(Float64Array::from(rows.iter().map(|(_, r)| r.setting.spacing_mm).collect::<Vec<_>>())),
        ),
        (
            "discretisation".into(),
            Arc::new(StringArray::from(
                rows.iter().map(|(_, r)| method(&r.setting.discretisation)).collect::<Vec<_>>(),
            )),
        ),
        (
            "bins".into(),
            Arc::new(Int32Array::from(rows.iter().map(|(_, r)| bins(&r.setting.discretisation)).collect::<Vec<_>>())),
        ),
        (
            "bin_width".into(),
            Arc::new(Float64Array::from(
                rows.iter().map(|(_, r)| width(&r.setting.discretisation)).collect::<Vec<_>>(),
            )),
        ),
        (
            "equalised".into(),
            Arc::new(BooleanArray::from(
                rows.iter()
                    .map(|(_, r)| matches!(r.setting.discretisation, Discretisation::EqualisedBinNumber { .. }))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "roi_voxels".into(),
            Arc::new(Int64Array::from(rows.iter().map(|(_, r)| r.roi_voxels as i64).collect::<Vec<_>>())),
        ),
        (
            "error".into(),
            Arc::new(StringArray::from(
                rows.iter().map(|(_, r)| r.features.as_ref().err().cloned()).collect::<Vec<_>>(),
            )),
        ),
        ("produced_at".into(), text(key.produced_at)),
        ("code_version".into(), text(key.code_version)),
        ("settings_sha256".into(), text(key.settings_sha256)),
        ("input_sha256".into(), text(key.input_sha256)),
    ];
    let values: Vec<HashMap<&str, f64>> = rows
        .iter()
        .map(|(_, r)| {
            r.features.as_ref().map(|f| f.iter().map(|(t, v)| (t.as_str(), *v)).collect()).unwrap_or_default()
        })
        .collect();
    let fixed = columns.len();
    for tag in feature_tags() {
        let col: Vec<Option<f64>> = values.iter().map(|m| m.get(tag.as_str()).copied()).collect();
        columns.push((tag.clone(), Arc::new(Float64Array::from(col))));
    }
    // IBSI's diagnostic features, after the features (present even for a setting that failed).
    let diagnostics: Vec<HashMap<&str, f64>> =
        rows.iter().map(|(_, r)| r.diagnostics.iter().map(|(t, v)| (t.as_str(), *v)).collect()).collect();
    for tag in diagnostic_tags() {
        let col: Vec<Option<f64>> = diagnostics.iter().map(|m| m.get(tag.as_str()).copied()).collect();
        columns.push((tag.clone(), Arc::new(Float64Array::from(col))));
    }
    // The schema is fixed, whatever this batch's nulls: the optional columns and every feature
    // are nullable.
    let optional = ["spacing_mm", "bins", "bin_width", "error"];
    RecordBatch::try_from_iter_with_nullable(columns.into_iter().enumerate().map(|(i, (name, array))| {
        let nullable = i >= fixed || optional.contains(&name.as_str());
        (name, array, nullable)
    }))
    .expect("columns have one value per row")
}

/// Feature values present in a batch (non-null feature cells).
pub fn reported_values(batch: &RecordBatch) -> usize {
    feature_tags()
        .iter()
        .map(|t| {
            let c = batch.column_by_name(t).expect("a feature column");
            c.len() - c.null_count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Setting;
    use arrow_array::Array;

    #[test]
    fn every_tag_is_a_column_and_failed_settings_are_null() {
        assert_eq!(feature_tags().len(), 482, "every IBSI-benchmarked feature we compute");
        let ok = SettingFeatures {
            setting: Setting::new(Some(2.0), Discretisation::FixedBinNumber { bins: 8 }),
            roi_voxels: 10,
            features: Ok(vec![("stat_mean".into(), 3.5)]),
            diagnostics: vec![("int_mask_vox_count_reseg_roi".into(), 10.0)],
        };
        let failed = SettingFeatures {
            setting: Setting::new(Some(4.0), Discretisation::EqualisedBinNumber { bins: 8 }),
            roi_voxels: 0,
            features: Err("no ROI voxel on this grid".into()),
            diagnostics: vec![("int_mask_vox_count_reseg_roi".into(), 0.0)],
        };
        let key = RowKey {
            case_id: "HUP-0001",
            revision: 2,
            site: "HUP",
            produced_at: "2026-11-29T00:00:00Z",
            code_version: "0.1.0",
            settings_sha256: "s",
            input_sha256: "i",
        };
        let t1c = [ok.clone(), failed];
        let b = features_batch(&key, &[("T2", std::slice::from_ref(&ok)), ("T1C", &t1c)]);
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.num_columns(), 16 + 482 + 60);
        assert_eq!(reported_values(&b), 2);
        // Diagnostics are reported for the failed setting too.
        let count = b.column_by_name("int_mask_vox_count_reseg_roi").unwrap();
        let count = count.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!([count.value(0), count.value(2)], [10.0, 0.0]);
        let err = b.column_by_name("error").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert!(err.is_null(0) && err.value(2) == "no ROI voxel on this grid");
        let series = b.column_by_name("series").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!([series.value(0), series.value(1)], ["T2", "T1C"]);
        let setting = b.column_by_name("setting").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(setting.value(2), "4mm_fbneq8");
    }
}
