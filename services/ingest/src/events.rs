//! What ingest reports: each event's log line and metrics in one place.
//!
//! Labels are site codes from the configuration and reason codes, never a file name, UID or
//! patient value.

use renal_telemetry::{ingest_metrics, stage_metrics, InternalEvent};

/// The loop started; every site's series start at 0.
pub struct IngestStarted<'a> {
    /// Configured site codes.
    pub sites: &'a [&'a str],
}

impl InternalEvent for IngestStarted<'_> {
    fn emit(self) {
        let (m, s) = (ingest_metrics(), stage_metrics());
        for site in self.sites {
            for outcome in ["new", "duplicate", "rejected"] {
                m.instances.with_label_values(&[site, outcome]);
            }
            m.cases.with_label_values(&[site]);
        }
        s.outputs.with_label_values(&["ingest", renal_messages::topics::CASES.name]);
        tracing::info!(stage = "ingest", sites = self.sites.len(), "ingest started");
    }
}

/// A C-STORE receiver listens for a site.
pub struct ReceiverListening<'a> {
    /// Its AE title.
    pub ae_title: &'a str,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The site whose drop folder it fills.
    pub site: &'a str,
}

impl InternalEvent for ReceiverListening<'_> {
    fn emit(self) {
        for outcome in ["ok", "failed", "refused", "busy"] {
            ingest_metrics().associations.with_label_values(&[self.site, outcome]);
        }
        tracing::info!(stage = "ingest", site = self.site, "C-STORE receiver {} on {}", self.ae_title, self.addr);
    }
}

/// A DICOM file was taken in (`new`) or was one seen before (`duplicate`).
pub struct InstanceTaken<'a> {
    /// Site code.
    pub site: &'a str,
    /// `new` or `duplicate`.
    pub outcome: &'static str,
}

impl InternalEvent for InstanceTaken<'_> {
    fn emit(self) {
        ingest_metrics().instances.with_label_values(&[self.site, self.outcome]).inc();
    }
}

/// A file that is not a usable DICOM instance was dead-lettered.
pub struct FileRejected<'a> {
    /// Site code.
    pub site: &'a str,
    /// Reason code.
    pub code: &'a str,
}

impl InternalEvent for FileRejected<'_> {
    fn emit(self) {
        ingest_metrics().instances.with_label_values(&[self.site, "rejected"]).inc();
        stage_metrics().dead_letters.with_label_values(&["ingest", self.code]).inc();
        tracing::warn!(stage = "ingest", site = self.site, reason = self.code, "file dead-lettered");
    }
}

/// A study that cannot become a case (unclassifiable series, incomplete) was dead-lettered.
pub struct StudyRejected<'a> {
    /// Reason code.
    pub code: &'a str,
}

impl InternalEvent for StudyRejected<'_> {
    fn emit(self) {
        stage_metrics().dead_letters.with_label_values(&["ingest", self.code]).inc();
        tracing::warn!(stage = "ingest", reason = self.code, "study dead-lettered");
    }
}

/// A case was delivered on `renal.cases`.
pub struct CaseEmitted<'a> {
    /// Site code.
    pub site: &'a str,
    /// Its revision (1 for the first emission).
    pub revision: u32,
}

impl InternalEvent for CaseEmitted<'_> {
    fn emit(self) {
        ingest_metrics().cases.with_label_values(&[self.site]).inc();
        stage_metrics().outputs.with_label_values(&["ingest", renal_messages::topics::CASES.name]).inc();
        tracing::debug!(stage = "ingest", site = self.site, revision = self.revision, "case emitted");
    }
}

/// The record of an emitted study could not be written (a restart will send its case again).
pub struct RecordFailed {
    /// The I/O error (it names the record's file, a hash, never a UID).
    pub error: String,
}

impl InternalEvent for RecordFailed {
    fn emit(self) {
        tracing::warn!(stage = "ingest", "record of an emitted study not written: {}", self.error);
    }
}

/// A C-STORE association ended.
pub struct AssociationEnded<'a> {
    /// The site its receiver serves.
    pub site: &'a str,
    /// `ok`; `failed` (aborted, malformed PDU, a store that failed); `refused` (an AE title not
    /// allowed); `busy` (over `max_associations`).
    pub outcome: &'static str,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl InternalEvent for AssociationEnded<'_> {
    fn emit(self) {
        ingest_metrics().associations.with_label_values(&[self.site, self.outcome]).inc();
        match self.error {
            // The error names PDUs, AE titles and I/O, not instances.
            Some(e) => {
                tracing::warn!(stage = "ingest", site = self.site, "c-store association {}: {e}", self.outcome)
            }
            None => tracing::debug!(stage = "ingest", site = self.site, "c-store association ended"),
        }
    }
}

/// The worker stopped.
pub struct IngestStopped<'a> {
    /// What it did.
    pub stats: &'a crate::run::IngestStats,
}

impl InternalEvent for IngestStopped<'_> {
    fn emit(self) {
        let s = self.stats;
        tracing::info!(
            stage = "ingest",
            "ingest stopped: {} instances, {} cases, {} dead letters",
            s.instances,
            s.cases,
            s.dead_letters
        );
    }
}
