//! Every topic, declared once: name, producer, consumers, payload.
//!
//! No topic name appears as a string anywhere else in the workspace; workers refer to these
//! constants. `tests::every_topic_has_one_producer_and_a_consumer` keeps the graph honest.
//!
//! ```text
//! scanner/PACS ─C-STORE─┐
//! drop folder ──files───┴─> ingest ─renal.cases─> preprocess ─renal.lesions─┬─> radiomics ─renal.features─> ensemble*
//!                                                                          ├─> inference ─renal.scores──> ensemble ─renal.predictions─>
//!                                                                          └─> ensemble (clinical values, joined by lesion id)
//! labels import ─renal.labels─> trainer ─renal.models─> inference, ensemble
//! every stage ─renal.dead.<stage>─> replay, monitor
//! replay ─renal.replays─> replay (its ledger: what each replay id re-drove), and the input topics
//! ```
//! (*) the radiomics arm is the comparison model; the ensemble reads its features from the store.

/// A Kafka topic and its place in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    /// Topic name on the broker.
    pub name: &'static str,
    /// The one worker that writes it.
    pub producer: &'static str,
    /// Workers that read it.
    pub consumers: &'static [&'static str],
    /// Rust payload type (in `renal_messages`) and JSON Schema file stem under `schemas/messages/`.
    pub payload: &'static str,
}

/// New or revised cases (a lesion's T2 and T1C series plus segmentations), keyed by case id.
pub const CASES: Topic =
    Topic { name: "renal.cases", producer: "ingest", consumers: &["preprocess", "monitor"], payload: "CaseV1" };
/// Preprocessed lesions: references to corrected volumes, masks and 2.5D composites.
pub const LESIONS: Topic = Topic {
    name: "renal.lesions",
    producer: "preprocess",
    consumers: &["radiomics", "inference", "ensemble", "monitor"],
    payload: "LesionV1",
};
/// Radiomics feature rows written to the feature store.
pub const FEATURES: Topic =
    Topic { name: "renal.features", producer: "radiomics", consumers: &["ensemble", "monitor"], payload: "FeaturesV1" };
/// Per-series CNN probabilities and embeddings.
pub const SCORES: Topic =
    Topic { name: "renal.scores", producer: "inference", consumers: &["ensemble", "monitor"], payload: "ScoresV1" };
/// Calibrated ensemble predictions.
pub const PREDICTIONS: Topic =
    Topic { name: "renal.predictions", producer: "ensemble", consumers: &["monitor"], payload: "PredictionV1" };
/// Ground truth arriving later (pathology or follow-up).
pub const LABELS: Topic =
    Topic { name: "renal.labels", producer: "labels", consumers: &["trainer", "monitor"], payload: "LabelV1" };
/// Model registry events (trained, promoted, rolled back).
pub const MODELS: Topic =
    Topic { name: "renal.models", producer: "trainer", consumers: &["inference", "ensemble"], payload: "ModelEventV1" };

/// Dead letters of ingest.
pub const DEAD_INGEST: Topic = dead("renal.dead.ingest", "ingest");
/// Dead letters of preprocess.
pub const DEAD_PREPROCESS: Topic = dead("renal.dead.preprocess", "preprocess");
/// Dead letters of radiomics.
pub const DEAD_RADIOMICS: Topic = dead("renal.dead.radiomics", "radiomics");
/// Dead letters of inference.
pub const DEAD_INFERENCE: Topic = dead("renal.dead.inference", "inference");
/// Dead letters of the ensemble.
pub const DEAD_ENSEMBLE: Topic = dead("renal.dead.ensemble", "ensemble");
/// Dead letters of the trainer.
pub const DEAD_TRAINER: Topic = dead("renal.dead.trainer", "trainer");
/// Dead letters of label intake (rows that are not labels).
pub const DEAD_LABELS: Topic = dead("renal.dead.labels", "labels");
/// Dead letters of the monitor (messages it cannot read: a label that is no label, a features
/// file that is gone). The monitor does not read its own.
pub const DEAD_MONITOR: Topic =
    Topic { name: "renal.dead.monitor", producer: "monitor", consumers: &["replay"], payload: "DeadLetterV1" };

/// What `renal replay` re-drove, per replay id: its own ledger, read back so that a replay id
/// re-drives each dead letter at most once (the one topic its producer also reads).
pub const REPLAYS: Topic =
    Topic { name: "renal.replays", producer: "replay", consumers: &["replay"], payload: "ReplayV1" };

const fn dead(name: &'static str, producer: &'static str) -> Topic {
    Topic { name, producer, consumers: &["replay", "monitor"], payload: "DeadLetterV1" }
}

/// The whole graph.
pub const ALL: &[Topic] = &[
    CASES,
    LESIONS,
    FEATURES,
    SCORES,
    PREDICTIONS,
    LABELS,
    MODELS,
    DEAD_INGEST,
    DEAD_PREPROCESS,
    DEAD_RADIOMICS,
    DEAD_INFERENCE,
    DEAD_ENSEMBLE,
    DEAD_TRAINER,
    DEAD_LABELS,
    DEAD_MONITOR,
    REPLAYS,
];

/// The dead-letter topic of a stage.
pub fn dead_letters_of(stage: &str) -> Option<Topic> {
    ALL.iter().copied().find(|t| t.payload == "DeadLetterV1" && t.producer == stage)
}

/// Look a topic up by name.
pub fn by_name(name: &str) -> Option<Topic> {
    ALL.iter().copied().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_one_producer_and_a_consumer() {
        let mut names = std::collections::HashSet::new();
        for t in ALL {
            assert!(names.insert(t.name), "{} declared twice", t.name);
            assert!(!t.producer.is_empty() && !t.consumers.is_empty(), "{}", t.name);
            // A ledger read back by its writer is the one loop allowed.
            assert!(!t.consumers.contains(&t.producer) || *t == REPLAYS, "{} consumes its own output", t.name);
        }
        // Exactly one producer per topic is structural (one field); also no two topics share a
        // name prefix that would make a regex subscription ambiguous.
        for a in ALL {
            for b in ALL {
                assert!(a == b || !b.name.starts_with(&format!("{}.", a.name)), "{} nests {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn every_stage_that_consumes_has_a_dead_letter_topic() {
        for stage in ["ingest", "preprocess", "radiomics", "inference", "ensemble", "trainer", "labels"] {
            assert!(dead_letters_of(stage).is_some(), "{stage}");
        }
        assert_eq!(by_name("renal.cases"), Some(CASES));
    }
}
