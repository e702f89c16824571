//! The intake step: a labels CSV (`case_id,label[,subtype][,diagnosis_source]`, other columns
//! ignored; `renal synth` writes this file) to one `LabelV1` per row, or a typed error naming
//! the row and why. Columns a hospital export carries beside them (the patient's record number,
//! say) are never read into a message.

use renal_bus::Failure;
use renal_messages::{LabelV1, Provenance};
use std::collections::BTreeSet;

/// Why a row (or the whole file) cannot become a label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    /// The file is not CSV, or lacks a required column.
    #[error("labels file: {0}")]
    File(String),
    /// A row that cannot be read as a label.
    #[error("line {line}: {reason}")]
    Row {
        /// 1-based line of the file (the header is line 1).
        line: u64,
        /// What is wrong.
        reason: String,
        /// The dead-letter reason.
        code: &'static str,
    },
}

impl Failure for LabelError {
    fn code(&self) -> Option<&'static str> {
        match self {
            LabelError::File(_) => Some("bad_file"),
            LabelError::Row { code, .. } => Some(code),
        }
    }
}

/// The labels of a CSV file's bytes, one answer per data row in file order; a file that cannot
/// be read at all is one error.
pub fn parse(bytes: &[u8]) -> Result<Vec<Result<LabelV1, LabelError>>, LabelError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| LabelError::File(e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(case), Some(label)) = (column("case_id"), column("label")) else {
        let found: Vec<&str> = header.iter().collect();
        return Err(LabelError::File(format!("needs columns case_id and label; has {}", found.join(","))));
    };
    let (subtype, source) = (column("subtype"), column("diagnosis_source"));
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.push(Err(LabelError::Row { line, reason: e.to_string(), code: "bad_row" }));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim).unwrap_or("");
        let (label_word, source_word) = (field(Some(label)).to_ascii_lowercase(), field(source).to_ascii_lowercase());
        let row = |code, reason: String| Err(LabelError::Row { line, reason, code });
        let case_id = field(Some(case));
        let answer = if case_id.is_empty() {
            row("missing_case_id", "no case_id".into())
        } else if !matches!(label_word.as_str(), "benign" | "malignant") {
            row("bad_label", format!("label {:?} is neither benign nor malignant", field(Some(label))))
        } else if !matches!(source_word.as_str(), "" | "histopathology" | "imaging") {
            row("bad_source", format!("diagnosis_source {:?} is neither histopathology nor imaging", field(source)))
        } else if !seen.insert(case_id.to_string()) {
            row("duplicate", format!("case {case_id} is labelled twice in this file"))
        } else {
            Ok(LabelV1 {
                version: 1,
                case_id: case_id.into(),
                label: label_word,
                subtype: Some(field(subtype)).filter(|s| !s.is_empty()).map(String::from),
                // Without the column every label counts as histopathology.
                diagnosis_source: if source_word.is_empty() { "histopathology".into() } else { source_word },
                provenance: Provenance::now(renal_store::sha256_hex(
                    record.iter().collect::<Vec<_>>().join(",").as_bytes(),
                )),
            })
        };
        out.push(answer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_labels_or_say_what_is_wrong_and_identifiers_stay_behind() {
        let csv = "case_id,patient_id,label,subtype,diagnosis_source\n\
                   HUP-0001,MRN123,malignant,clear_cell,histopathology\n\
                   HUP-0002,MRN124,benign,,imaging\n\
                   ,MRN125,benign,,imaging\n\
                   HUP-0003,MRN126,maybe,,imaging\n\
                   HUP-0004,MRN127,benign,,guess\n\
                   HUP-0001,MRN123,benign,,imaging\n";
        let rows = parse(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 6);
        let first = rows[0].as_ref().unwrap();
        assert_eq!((first.case_id.as_str(), first.label.as_str()), ("HUP-0001", "malignant"));
        assert_eq!(first.subtype.as_deref(), Some("clear_cell"));
        assert_eq!(rows[1].as_ref().unwrap().diagnosis_source, "imaging");
        assert_eq!(rows[1].as_ref().unwrap().subtype, None);
        let codes: Vec<(u64, &str)> = rows[2..]
            .iter()
            .map(|r| match r {
                Err(LabelError::Row { line, code, .. }) => (*line, *code),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, vec![(4, "missing_case_id"), (5, "bad_label"), (6, "bad_source"), (7, "duplicate")]);
        let json = String::from_utf8(renal_messages::Message::encode(first)).unwrap();
        assert!(!json.contains("MRN"), "{json}");
        assert!(parse(b"case,outcome\nX,benign\n").unwrap_err().to_string().contains("case_id and label"));
        let plain = parse(b"case_id,label\nMAY-1,benign\n").unwrap();
        assert_eq!(plain[0].as_ref().unwrap().diagnosis_source, "histopathology");
    }
}
