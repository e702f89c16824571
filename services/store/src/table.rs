//! Parquet tables partitioned by site and date, one atomically committed file per key.
//!
//! Layout: `<root>/<table>/site=<site>/date=<YYYY-MM-DD>/<key>.parquet`. A file is written
//! under a temporary name and renamed into place, so readers never see a partial file, and a
//! redelivered write of the same key replaces the file instead of adding a duplicate row.
//! Every table carries the provenance columns [`PROVENANCE_COLUMNS`].

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};

/// Columns every row must carry: how it was made.
pub const PROVENANCE_COLUMNS: [&str; 3] = ["code_version", "settings_sha256", "input_sha256"];

/// Why a table write failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The batch lacks a provenance column.
    #[error("table {table}: batch lacks provenance column {column}")]
    MissingProvenance { table: String, column: &'static str },
    /// A partition value or key that would escape its folder.
    #[error("table {table}: invalid partition or key {value:?}")]
    BadName { table: String, value: String },
    /// File system failure.
    #[error("table {table}: {path}: {source}")]
    Io { table: String, path: PathBuf, source: std::io::Error },
    /// Parquet encoding failure.
    #[error("table {table}: parquet: {source}")]
    Parquet { table: String, source: parquet::errors::ParquetError },
}

fn safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !s.starts_with('.')
}

/// Writes Parquet files under one root.
#[derive(Debug, Clone)]
pub struct TableWriter {
    root: PathBuf,
}

impl TableWriter {
    /// Tables under `root` (created on first write).
    pub fn new(root: &Path) -> Self {
        TableWriter { root: root.into() }
    }

    /// Commit `batch` as `<table>/site=<site>/date=<date>/<key>.parquet`; returns the path
    /// relative to the root.
    pub fn write(
        &self,
        table: &str,
        site: &str,
        date: &str,
        key: &str,
        batch: &RecordBatch,
    ) -> Result<PathBuf, TableError> {
        for column in PROVENANCE_COLUMNS {
            if batch.schema().field_with_name(column).is_err() {
                return Err(TableError::MissingProvenance { table: table.into(), column });
            }
        }
        for v in [table, site, date, key] {
            if !safe(v) {
                return Err(TableError::BadName { table: table.into(), value: v.into() });
            }
        }
        let rel = PathBuf::from(table)
            .join(format!("site={site}"))
            .join(format!("date={date}"))
            .join(format!("{key}.parquet"));
        let path = self.root.join(&rel);
        let io = |path: &Path, source| TableError::Io { table: table.into(), path: path.into(), source };
        let dir = path.parent().expect("has a folder");
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(".{key}.parquet.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let props =
            WriterProperties::builder().set_created_by(format!("renal-mri {}", env!("CARGO_PKG_VERSION"))).build();
        let pq = |source| TableError::Parquet { table: table.into(), source };
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(pq)?;
        writer.write(batch).map_err(pq)?;
        let file = writer.into_inner().map_err(pq)?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    fn batch(with_provenance: bool, value: i64) -> RecordBatch {
        let mut cols: Vec<(&str, ArrayRef)> = vec![
            ("case_id", Arc::new(StringArray::from(vec!["HUP-0001"]))),
            ("value", Arc::new(Int64Array::from(vec![value]))),
        ];
        if with_provenance {
            for c in PROVENANCE_COLUMNS {
                cols.push((c, Arc::new(StringArray::from(vec!["x"]))));
            }
        }
        RecordBatch::try_from_iter(cols).unwrap()
    }

    #[test]
    fn writes_partitioned_files_that_read_back_and_overwrite_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let w = TableWriter::new(dir.path());
        let rel = w.write("cases", "HUP", "2026-11-27", "HUP-0001", &batch(true, 1)).unwrap();
        assert_eq!(rel, PathBuf::from("cases/site=HUP/date=2026-11-27/HUP-0001.parquet"));
        w.write("cases", "HUP", "2026-11-27", "HUP-0001", &batch(true, 2)).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("cases/site=HUP/date=2026-11-27")).unwrap().collect();
        assert_eq!(files.len(), 1, "same key overwrites, no temporary left behind");
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(dir.path().join(&rel)).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let v = batches[0].column_by_name("value").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().value(0);
        assert_eq!(v, 2);
    }

    #[test]
    fn refuses_rows_without_provenance_and_escaping_names() {
        let dir = tempfile::tempdir().unwrap();
        let w = TableWriter::new(dir.path());
        assert!(matches!(
            w.write("cases", "HUP", "2026-11-27", "k", &batch(false, 1)),
            Err(TableError::MissingProvenance { .. })
        ));
        assert!(matches!(
            w.write("cases", "../x", "2026-11-27", "k", &batch(true, 1)),
            Err(TableError::BadName { .. })
        ));
        assert!(matches!(
            w.write("cases", "HUP", "2026-11-27", "a/b", &batch(true, 1)),
            Err(TableError::BadName { .. })
        ));
    }
}
