//! The intake step: a labels CSV to one `LabelV1` per row, or a typed error naming the row and
//! why. A row names its lesion in one of two ways:
//! - `case_id`: the lesion id as the pipeline's outputs give it (a correction of a label
//!   already given, say);
//! - `accession` and `site`: the hospital's accession number, as a pathology export carries it
//!   (and as `renal synth` writes `labels.csv`). It becomes the lesion id ingest gave the same
//!   study, through the deployment's keys ([`renal_base::keys::Keys::lesion_id`]): without
//!   them such a file is refused.
//!
//! Besides `label`, `subtype` and `diagnosis_source` are read; columns a hospital export carries
//! beside them (the patient's record number, say) are never read into a message, and the
//! accession number is not kept.

use renal_base::keys::Keys;
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

/// How the rows of a file name their lesions.
enum Key<'a> {
    /// The `case_id` column.
    Lesion(usize),
    /// The `accession` and `site` columns, through the keys.
    Accession { accession: usize, site: usize, keys: &'a Keys },
}

/// The labels of a CSV file's bytes, one answer per data row in file order; a file that cannot
/// be read at all is one error. `keys`: the deployment's, to read a file keyed by accession
/// number (none: such a file is refused).
pub fn parse(bytes: &[u8], keys: Option<&Keys>) -> Result<Vec<Result<LabelV1, LabelError>>, LabelError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| LabelError::File(e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let found = || header.iter().collect::<Vec<&str>>().join(",");
    let key = match (column("case_id"), column("accession"), column("site")) {
        (Some(_), Some(_), _) => {
            return Err(LabelError::File(format!("has both case_id and accession; keep one ({})", found())));
        }
        (Some(case), None, _) => Key::Lesion(case),
        (None, Some(_), None) => {
            return Err(LabelError::File("keyed by accession, so it needs a site column too".into()));
        }
        (None, Some(accession), Some(site)) => match keys {
            Some(keys) => Key::Accession { accession, site, keys },
            None => {
                return Err(LabelError::File(
                    "keyed by accession number: reading it needs the deployment's de-identification secret \
                     (renal labels import maps accession numbers to lesion ids)"
                        .into(),
                ))
            }
        },
        (None, None, _) => {
            return Err(LabelError::File(format!("needs a case_id or accession column; has {}", found())));
        }
    };
    let Some(label) = column("label") else {
        return Err(LabelError::File(format!("needs a label column; has {}", found())));
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
        let case_id = match &key {
            Key::Lesion(case) => field(Some(*case)).to_string(),
            Key::Accession { accession, site, keys } => match (field(Some(*accession)), field(Some(*site))) {
                ("", _) | (_, "") => String::new(),
                (accession, site) => keys.lesion_id(site, accession),
            },
        };
        let case_id = case_id.as_str();
        let answer = if case_id.is_empty() {
            row("missing_case_id", "no case_id (or no accession and site)".into())
        } else if !matches!(label_word.as_str(), "benign" | "malignant") {
            row("bad_label", format!("label {:?} is neither benign nor malignant", field(Some(label))))
        } else if !matches!(source_word.as_str(), "" | "histopathology" | "imaging") {
            row("bad_source", format!("diagnosis_source {:?} is neither histopathology nor imaging", field(source)))
        } else if !seen.insert(case_id.to_string()) {
            row("duplicate", format!("case {case_id} is labelled twice in this file"))
        } else {
            // A hash of what the label says, never of the row: a hash of a record number
            // can be confirmed by trying record numbers.
            let said =
                renal_store::sha256_hex([case_id, &label_word, field(subtype), &source_word].join(",").as_bytes());
            Ok(LabelV1 {
                version: 1,
                case_id: case_id.into(),
                label: label_word,
                subtype: Some(field(subtype)).filter(|s| !s.is_empty()).map(String::from),
                // Without the column every label counts as histopathology.
                diagnosis_source: if source_word.is_empty() { "histopathology".into() } else { source_word },
                provenance: Provenance::now(said),
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
        let rows = parse(csv.as_bytes(), None).unwrap();
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
        assert!(parse(b"case,outcome\nX,benign\n", None)
            .unwrap_err()
            .to_string()
            .contains("needs a case_id or accession column"));
        let plain = parse(b"case_id,label\nMAY-1,benign\n", None).unwrap();
        assert_eq!(plain[0].as_ref().unwrap().diagnosis_source, "histopathology");
    }

    #[test]
    fn a_file_keyed_by_accession_reaches_the_lesions_ingest_named() {
        let csv = b"accession,patient_id,site,label\nA100,MRN1,HUP,benign\nA100,MRN9,MAY,malignant\n,MRN2,HUP,benign\n";
        let refused = parse(csv, None).unwrap_err().to_string();
        assert!(refused.contains("secret"), "{refused}");
        let keys = Keys::new(b"k");
        let rows = parse(csv, Some(&keys)).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().case_id, keys.lesion_id("HUP", "A100"));
        assert_eq!(
            rows[1].as_ref().unwrap().case_id,
            keys.lesion_id("MAY", "A100"),
            "the same accession at another site"
        );
        assert!(matches!(rows[2], Err(LabelError::Row { code: "missing_case_id", .. })));
        let json = String::from_utf8(renal_messages::Message::encode(rows[0].as_ref().unwrap())).unwrap();
        assert!(!json.contains("A100") && !json.contains("MRN"), "{json}");
        assert!(parse(b"case_id,accession,site,label\n", Some(&keys)).unwrap_err().to_string().contains("both"));
        assert!(parse(b"accession,label\n", Some(&keys)).unwrap_err().to_string().contains("site column"));
    }
}
