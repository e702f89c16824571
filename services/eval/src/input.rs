//! The report's inputs as CSV: predictions (`case_id,model,probability`), labels
//! (`case_id,label` with `benign`/`malignant`), expert reads (`case_id,expert,call` with the
//! same two words) and embeddings (`case_id` then one column per dimension). Every problem is reported with its file and line; nothing is guessed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why an input file was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The header lacks a required column.
    #[error("{path}: no `{column}` column (header: {header})")]
    MissingColumn { path: PathBuf, column: &'static str, header: String },
    /// A row is malformed.
    #[error("{path} line {line}: {reason}")]
    Row { path: PathBuf, line: u64, reason: String },
    /// The files do not fit together.
    #[error("{0}")]
    Mismatch(String),
}

/// The truth, by case id (true = malignant).
pub type Labels = BTreeMap<String, bool>;
/// Probabilities of malignancy per model, by case id.
pub type Predictions = BTreeMap<String, BTreeMap<String, f64>>;
/// Calls per expert, by case id (true = malignant).
pub type Reads = BTreeMap<String, BTreeMap<String, bool>>;
/// An embedding per case id.
pub type Embeddings = BTreeMap<String, Vec<f64>>;

fn word(path: &Path, line: u64, text: &str) -> Result<bool, InputError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "malignant" => Ok(true),
        "benign" => Ok(false),
        other => Err(InputError::Row {
            path: path.into(),
            line,
            reason: format!("{other:?} is neither `benign` nor `malignant`"),
        }),
    }
}

/// A CSV file's header and records with their line numbers (fields trimmed).
fn records(path: &Path) -> Result<(csv::StringRecord, Vec<(u64, csv::StringRecord)>), InputError> {
    let io = |source| InputError::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let header =
        reader.headers().map_err(|e| InputError::Row { path: path.into(), line: 1, reason: e.to_string() })?.clone();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| InputError::Row {
            path: path.into(),
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        })?;
        out.push((record.position().map_or(0, |p| p.line()), record));
    }
    Ok((header, out))
}

/// Rows of a CSV file as (line, values of `columns` in order).
fn rows(path: &Path, columns: &[&'static str]) -> Result<Vec<(u64, Vec<String>)>, InputError> {
    let (header, records) = records(path)?;
    let mut at = Vec::new();
    for &c in columns {
        let i = header.iter().position(|h| h == c).ok_or_else(|| InputError::MissingColumn {
            path: path.into(),
            column: c,
            header: header.iter().collect::<Vec<_>>().join(","),
        })?;
        at.push(i);
    }
    let mut out = Vec::new();
    for (line, record) in records {
        let values: Vec<String> = at.iter().map(|&i| record.get(i).unwrap_or("").to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(InputError::Row { path: path.into(), line, reason: format!("empty value in {columns:?}") });
        }
        out.push((line, values));
    }
    Ok(out)
}

/// Read `case_id,label`.
pub fn read_labels(path: &Path) -> Result<Labels, InputError> {
    let mut labels = Labels::new();
    for (line, v) in rows(path, &["case_id", "label"])? {
        let y = word(path, line, &v[1])?;
        if labels.insert(v[0].clone(), y).is_some() {
            return Err(InputError::Row { path: path.into(), line, reason: format!("case {} labelled twice", v[0]) });
        }
    }
    Ok(labels)
}

/// Read `case_id,model,probability`.
pub fn read_predictions(path: &Path) -> Result<Predictions, InputError> {
    let mut out = Predictions::new();
    for (line, v) in rows(path, &["case_id", "model", "probability"])? {
        let p: f64 = v[2].parse().map_err(|_| InputError::Row {
            path: path.into(),
            line,
            reason: format!("probability {:?} is not a number", v[2]),
        })?;
        if !(0.0..=1.0).contains(&p) {
            return Err(InputError::Row {
                path: path.into(),
                line,
                reason: format!("probability {p} is outside [0, 1]"),
            });
        }
        if out.entry(v[1].clone()).or_default().insert(v[0].clone(), p).is_some() {
            return Err(InputError::Row {
                path: path.into(),
                line,
                reason: format!("model {} has two predictions for case {}", v[1], v[0]),
            });
        }
    }
    Ok(out)
}

/// Read `case_id,expert,call`.
pub fn read_reads(path: &Path) -> Result<Reads, InputError> {
    let mut out = Reads::new();
    for (line, v) in rows(path, &["case_id", "expert", "call"])? {
        let call = word(path, line, &v[2])?;
        if out.entry(v[1].clone()).or_default().insert(v[0].clone(), call).is_some() {
            return Err(InputError::Row {
                path: path.into(),
                line,
                reason: format!("expert {} called case {} twice", v[1], v[0]),
            });
        }
    }
    Ok(out)
}

/// Read `case_id,<d1>,<d2>,...`: the first column names the case, every other column is one
/// dimension (at least one), every value a finite number.
pub fn read_embeddings(path: &Path) -> Result<Embeddings, InputError> {
    let (header, records) = records(path)?;
    if header.get(0) != Some("case_id") || header.len() < 2 {
        return Err(InputError::MissingColumn {
            path: path.into(),
            column: "case_id (first) and at least one dimension",
            header: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut out = Embeddings::new();
    for (line, record) in records {
        let row = |reason: String| InputError::Row { path: path.into(), line, reason };
        let values = record
            .iter()
            .skip(1)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| row(format!("{v:?} is not a finite number")))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        if out.insert(record[0].to_string(), values).is_some() {
            return Err(row(format!("case {} has two embeddings", &record[0])));
        }
    }
    Ok(out)
}

/// Every case a model or expert scored must have a label (a prediction without truth is a
/// pipeline error, not something to drop quietly).
pub fn check_labelled<V>(
    labels: &Labels,
    by_source: &BTreeMap<String, BTreeMap<String, V>>,
    what: &str,
) -> Result<(), InputError> {
    for (source, cases) in by_source {
        let unlabelled: Vec<&String> = cases.keys().filter(|c| !labels.contains_key(*c)).collect();
        if !unlabelled.is_empty() {
            return Err(InputError::Mismatch(format!(
                "{what} {source} has {} case(s) without a label, e.g. {}",
                unlabelled.len(),
                unlabelled[0]
            )));
        }
    }
    Ok(())
}
