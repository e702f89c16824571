//! Labels onto the bus: each good row to `renal.labels` keyed by lesion id (a later label of the
//! same lesion replaces the earlier one downstream), each bad row to `renal.dead.labels` with
//! its reason, every send retried until the broker takes it.

use crate::process::LabelError;
use renal_bus::{dead_letter, send_with_retry, Backoff, Bus, BusError, Failure, Output};
use renal_messages::{topics, DeadLetterSource, DeadLetterV1, LabelV1, Message};

/// What an import sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Labels sent.
    pub labels: u64,
    /// Rows dead-lettered.
    pub dead_letters: u64,
}

/// The dead letter of a bad row of the file named `source`: keyed `source:line` (the file's
/// name alone for a file that cannot be read as labels), with the row's reason.
pub fn dead_letter_of(source: &str, e: &LabelError) -> DeadLetterV1 {
    let key = match e {
        LabelError::Row { line, .. } => format!("{source}:{line}"),
        LabelError::File(_) => source.to_string(),
    };
    let at = DeadLetterSource { topic: None, partition: None, offset: None, key: key.clone() };
    let code = e.code().unwrap_or("bad_row");
    dead_letter("labels", at, code, e.to_string(), renal_store::sha256_hex(key.as_bytes()))
}

/// Send the parsed rows of the file named `source` (named in dead letters; it must not name a
/// patient).
pub async fn import<B: Bus>(
    bus: &B,
    source: &str,
    rows: Vec<Result<LabelV1, LabelError>>,
) -> Result<ImportStats, BusError> {
    let mut stats = ImportStats::default();
    for row in rows {
        let out = match row {
            Ok(label) => {
                stats.labels += 1;
                Output { topic: topics::LABELS, key: label.case_id.clone(), payload: label.encode() }
            }
            Err(e) => {
                stats.dead_letters += 1;
                let letter = dead_letter_of(source, &e);
                Output { topic: topics::DEAD_LABELS, key: letter.source.key.clone(), payload: letter.encode() }
            }
        };
        send_with_retry(bus, &out, Backoff::WORKER).await?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_bus::InProcessBus;
    use renal_messages::DeadLetterV1;

    #[test]
    fn good_rows_go_to_labels_and_bad_rows_to_their_dead_letters() {
        let rows = crate::parse(b"case_id,label\nMAY-1,benign\nMAY-2,unsure\nMAY-3,malignant\n", None).unwrap();
        let bus = InProcessBus::new(2);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stats = rt.block_on(import(&bus, "labels.csv", rows)).unwrap();
        assert_eq!(stats, ImportStats { labels: 2, dead_letters: 1 });
        let mut keys: Vec<String> = bus.records(topics::LABELS).into_iter().map(|r| r.key).collect();
        keys.sort();
        assert_eq!(keys, ["MAY-1", "MAY-3"]);
        let letter = DeadLetterV1::decode(&bus.records(topics::DEAD_LABELS)[0].payload).unwrap();
        assert_eq!((letter.reason_code.as_str(), letter.source.key.as_str()), ("bad_label", "labels.csv:3"));
    }
}
