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

/// One row read back from a lesion revision's file: its series and setting, and the values of
/// the columns asked for (`None`: null).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRow {
    /// `T2` or `T1C`.
    pub series: String,
    /// Setting label.
    pub setting: String,
    /// Isotropic spacing the setting resamples to; `None`: the acquired grid.
    pub spacing_mm: Option<f64>,
    /// Why the setting has no features; `None` when it has.
    pub error: Option<String>,
    /// The asked-for columns' values, in the order asked.
    pub values: Vec<Option<f64>>,
}

/// Why the table could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// File system failure.
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    /// Not a Parquet file of this table.
    #[error("{path}: {reason}")]
    Format { path: std::path::PathBuf, reason: String },
}

/// The files of the `features` table under `root` (a store root), by (lesion id, revision):
/// `<root>/features/site=*/date=*/<case_id>-r<revision>.parquet`. No table yet: none.
pub fn index(
    root: &std::path::Path,
) -> Result<std::collections::BTreeMap<(String, u32), std::path::PathBuf>, ReadError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    };
    let mut out = std::collections::BTreeMap::new();
    let table = root.join(TABLE);
    if !table.exists() {
        return Ok(out);
    }
    let folders = |dir: &std::path::Path, prefix: &str| -> Result<Vec<std::path::PathBuf>, ReadError> {
        let mut v = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                v.push(entry.path());
            }
        }
        Ok(v)
    };
    for site in folders(&table, "site=")? {
        for date in folders(&site, "date=")? {
            for file in std::fs::read_dir(&date).map_err(io(&date))? {
                let path = file.map_err(io(&date))?.path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                // Temporary files of a write in progress start with a dot.
                let Some(stem) = name.strip_suffix(".parquet").filter(|_| !name.starts_with('.')) else { continue };
                let Some((case, revision)) = stem.rsplit_once("-r") else { continue };
                if let Ok(revision) = revision.parse::<u32>() {
                    out.insert((case.to_string(), revision), path);
                }
            }
        }
    }
    Ok(out)
}

/// Read `columns` (feature or diagnostic tags) of every row of one file, with each row's series,
/// setting, spacing and error; only those columns are decoded.
pub fn read(path: &std::path::Path, columns: &[&str]) -> Result<Vec<ReadRow>, ReadError> {
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let format = |reason: String| ReadError::Format { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format(e.to_string()))?;
    let fixed = ["series", "setting", "spacing_mm", "error"];
    let mask = ProjectionMask::columns(builder.parquet_schema(), fixed.iter().chain(columns).copied());
    let reader = builder.with_projection(mask).build().map_err(|e| format(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format(format!("no column {name}")));
        let text = |name: &str| -> Result<StringArray, ReadError> {
            column(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| format(format!("column {name} is not text")))
        };
        let number = |name: &str| -> Result<Float64Array, ReadError> {
            column(name)?
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .ok_or_else(|| format(format!("column {name} is not Float64")))
        };
        let (series, setting, error) = (text("series")?, text("setting")?, text("error")?);
        let spacing = number("spacing_mm")?;
        let values: Vec<Float64Array> = columns.iter().map(|c| number(c)).collect::<Result<_, _>>()?;
        let opt = |a: &Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            out.push(ReadRow {
                series: series.value(i).to_string(),
                setting: setting.value(i).to_string(),
                spacing_mm: opt(&spacing, i),
                error: (!error.is_null(i)).then(|| error.value(i).to_string()),
                values: values.iter().map(|a| opt(a, i)).collect(),
            });
        }
    }
    Ok(out)
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

    #[test]
    fn files_index_by_lesion_revision_and_read_back_the_columns_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let writer = renal_store::TableWriter::new(dir.path());
        assert!(index(dir.path()).unwrap().is_empty(), "no table yet: no files");
        let set = |spacing, mean: Result<f64, &str>| SettingFeatures {
            setting: Setting::new(spacing, Discretisation::FixedBinNumber { bins: 16 }),
            roi_voxels: 5,
            features: mean.map(|m| vec![("stat_mean".into(), m), ("stat_var".into(), 2.0)]).map_err(String::from),
            diagnostics: vec![("mean_int_init_img".into(), 100.0)],
        };
        for (case, revision, site) in [("HUP-0001", 1, "HUP"), ("HUP-0001", 2, "HUP"), ("MAY-0009-b", 1, "MAY")] {
            let key = RowKey {
                case_id: case,
                revision,
                site,
                produced_at: "t",
                code_version: "c",
                settings_sha256: "s",
                input_sha256: "i",
            };
            let t2 = [set(Some(1.0), Ok(f64::from(revision))), set(Some(2.0), Err("no ROI voxel on this grid"))];
            let t1c = [set(None, Ok(7.0))];
            let batch = features_batch(&key, &[("T2", &t2), ("T1C", &t1c)]);
            writer.write(TABLE, site, "2026-12-06", &format!("{case}-r{revision}"), &batch).unwrap();
        }
        let files = index(dir.path()).unwrap();
        let keys: Vec<(&str, u32)> = files.keys().map(|(c, r)| (c.as_str(), *r)).collect();
        assert_eq!(keys, [("HUP-0001", 1), ("HUP-0001", 2), ("MAY-0009-b", 1)]);
        let rows = read(&files[&("HUP-0001".to_string(), 2)], &["stat_mean", "mean_int_init_img", "stat_p10"]).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].series.as_str(), rows[0].setting.as_str()), ("T2", "1mm_fbn16"));
        assert_eq!(rows[0].spacing_mm, Some(1.0));
        assert_eq!(rows[0].values, [Some(2.0), Some(100.0), None], "stat_p10 was not reported: null");
        assert_eq!(rows[1].error.as_deref(), Some("no ROI voxel on this grid"));
        assert_eq!(rows[1].values[0], None);
        assert_eq!((rows[2].series.as_str(), rows[2].spacing_mm, rows[2].values[0]), ("T1C", None, Some(7.0)));
        assert!(matches!(
            read(&files[&("HUP-0001".to_string(), 1)], &["no_such_feature"]),
            Err(ReadError::Format { .. })
        ));
    }
}
