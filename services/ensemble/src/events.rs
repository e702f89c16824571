//! What the ensemble stage reports besides the stage loop's events ([`renal_bus::events`]).

use renal_telemetry::{pipeline_metrics, InternalEvent};

/// The bundle is loaded.
pub struct EnsembleStarted<'a> {
    /// Ensemble bundle version.
    pub version: &'a str,
    /// CNN bundle it expects scores from.
    pub cnn_version: &'a str,
    /// Decision threshold.
    pub threshold: f64,
    /// How long a score waits for its lesion's clinical values, ms.
    pub lesion_wait_ms: u64,
    /// How long half a score waits for its other half, ms.
    pub modality_wait_ms: u64,
}

impl InternalEvent for EnsembleStarted<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "ensemble",
            "ensemble: serving {} over CNN bundle {} (threshold {}); waiting up to {} ms for a scored lesion's clinical values and {} ms for the other half of a half score",
            self.version,
            self.cnn_version,
            self.threshold,
            self.lesion_wait_ms,
            self.modality_wait_ms
        );
    }
}

/// A prediction left for `renal.predictions`: its end-to-end latency, from its lesion's first
/// instance reaching ingest, is observed when the lesion carries that time.
pub struct PredictionMade<'a> {
    /// Site code.
    pub site: &'a str,
    /// When the lesion's first instance reached ingest, RFC 3339.
    pub first_instance_at: Option<&'a str>,
}

impl InternalEvent for PredictionMade<'_> {
    fn emit(self) {
        use renal_base::time::{format_description::well_known::Rfc3339, OffsetDateTime};
        let Some(first) = self.first_instance_at.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()) else {
            return;
        };
        let seconds = (OffsetDateTime::now_utc() - first).as_seconds_f64().max(0.0);
        pipeline_metrics().latency.with_label_values(&[self.site]).observe(seconds);
        tracing::debug!(stage = "ensemble", site = self.site, latency_seconds = seconds, "prediction made");
    }
}

/// The worker stopped: what both loops and the sweeper did.
pub struct EnsembleStopped<'a> {
    /// Their counts.
    pub stats: &'a crate::run::EnsembleStats,
}

impl InternalEvent for EnsembleStopped<'_> {
    fn emit(self) {
        let s = self.stats;
        tracing::info!(
            stage = "ensemble",
            "ensemble stopped: {} scores, {} predictions, {} dead letters; {} lesions joined, {} dead letters; {} partial scores dead-lettered after the wait",
            s.scores.inputs, s.scores.outputs, s.scores.dead_letters, s.lesions.inputs, s.lesions.dead_letters, s.partial_dead_letters
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_observes_the_time_since_its_first_instance() {
        use renal_base::time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};
        let latency = pipeline_metrics().latency.with_label_values(&["LAT"]);
        let first = (OffsetDateTime::now_utc() - Duration::seconds(90)).format(&Rfc3339).unwrap();
        renal_telemetry::emit(PredictionMade { site: "LAT", first_instance_at: Some(&first) });
        // A prediction from before the time was recorded, or with a garbled one, is not observed.
        renal_telemetry::emit(PredictionMade { site: "LAT", first_instance_at: None });
        renal_telemetry::emit(PredictionMade { site: "LAT", first_instance_at: Some("yesterday") });
        assert_eq!(latency.get_sample_count(), 1);
        let seconds = latency.get_sample_sum();
        assert!((90.0..95.0).contains(&seconds), "{seconds}");
    }
}
