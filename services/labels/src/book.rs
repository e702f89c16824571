//! The label book: the latest label of each lesion, as the trainer reads it. On Kafka it is
//! `renal.labels` read to its end (keyed by lesion id, a later label replacing an earlier
//! one); for an embedded run's output folder it is `OUT/labels.jsonl`, one `LabelV1` per
//! lesion, rewritten atomically when labels are imported.

use renal_messages::LabelV1;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Latest label per lesion id.
pub type Book = BTreeMap<String, LabelV1>;

/// What merging labels into a book changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Lesions labelled for the first time.
    pub new: usize,
    /// Lesions whose label, subtype or diagnosis source changed (a corrected diagnosis).
    pub revised: usize,
    /// Labels identical to the book's.
    pub unchanged: usize,
}

/// Merge `labels` (in arrival order) into `book`: a later label of a lesion replaces the
/// earlier one.
pub fn merge(book: &mut Book, labels: impl IntoIterator<Item = LabelV1>) -> Merged {
    let mut m = Merged::default();
    for l in labels {
        match book.get(&l.case_id) {
            None => m.new += 1,
            Some(old)
                if (&old.label, &old.subtype, &old.diagnosis_source) == (&l.label, &l.subtype, &l.diagnosis_source) =>
            {
                m.unchanged += 1;
                continue;
            }
            Some(_) => m.revised += 1,
        }
        book.insert(l.case_id.clone(), l);
    }
    m
}

/// Read a book file (empty when there is none).
pub fn read(path: &Path) -> Result<Book, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Book::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut book = Book::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let label: LabelV1 =
            serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        book.insert(label.case_id.clone(), label);
    }
    Ok(book)
}

/// Write a book file through a temporary file and a rename.
pub fn write(path: &Path, book: &Book) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for label in book.values() {
        writeln!(f, "{}", serde_json::to_string(label).expect("labels serialise"))?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_label_replaces_an_earlier_one_and_the_book_survives_a_round_trip() {
        let first = crate::parse(b"case_id,label\nMAY-1,benign\nMAY-2,malignant\n", None).unwrap();
        let mut book = Book::new();
        assert_eq!(
            merge(&mut book, first.into_iter().map(Result::unwrap)),
            Merged { new: 2, revised: 0, unchanged: 0 }
        );
        let later =
            crate::parse(b"case_id,label,subtype\nMAY-1,malignant,papillary\nMAY-2,malignant,\nMAY-3,benign,\n", None)
                .unwrap();
        assert_eq!(
            merge(&mut book, later.into_iter().map(Result::unwrap)),
            Merged { new: 1, revised: 1, unchanged: 1 }
        );
        assert_eq!((book["MAY-1"].label.as_str(), book["MAY-1"].subtype.as_deref()), ("malignant", Some("papillary")));
        let dir = std::env::temp_dir().join(format!("renal-label-book-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labels.jsonl");
        assert!(read(&path).unwrap().is_empty(), "no file: an empty book");
        write(&path, &book).unwrap();
        assert_eq!(read(&path).unwrap(), book);
        std::fs::write(&path, "{\"case_id\":1}\n").unwrap();
        assert!(read(&path).unwrap_err().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
