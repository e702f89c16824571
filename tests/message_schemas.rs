//! Every topic's payload type has a JSON Schema in `schemas/messages/`, the schema's required
//! fields are exactly the fields the Rust type writes, and example messages of every type
//! validate against their schema and survive a round trip unchanged.

use renal_e2e::validate_schema;
use renal_messages::*;
use serde_json::Value;

fn provenance() -> Provenance {
    Provenance {
        code_version: "0.1.0".into(),
        produced_at: "2026-11-27T18:00:00Z".into(),
        input_sha256: "ab".repeat(32),
    }
}

fn blob(n: u8) -> BlobRef {
    BlobRef { key: format!("sha256/{n:02x}/{}", "cd".repeat(32)), sha256: "cd".repeat(32), bytes: 1000 + n as u64 }
}

fn clinical() -> Clinical {
    Clinical { age_years: Some(61), sex: Some(Sex::F) }
}

/// Payload name, example as JSON, and a decoder that checks the round trip.
type Example = (&'static str, Value, Box<dyn Fn(&[u8]) -> Value>);

fn examples() -> Vec<Example> {
    fn entry<M: Message + Clone + PartialEq + std::fmt::Debug + 'static>(m: M) -> Example {
        let value = serde_json::to_value(&m).unwrap();
        let original = m.clone();
        (
            M::NAME,
            value,
            Box::new(move |bytes: &[u8]| {
                let back = M::decode(bytes).unwrap();
                assert_eq!(back, original, "{} round trip", M::NAME);
                serde_json::to_value(&back).unwrap()
            }),
        )
    }
    vec![
        entry(CaseV1 {
            version: 1,
            case_id: "HUP-0001".into(),
            first_instance_at: Some("2026-11-27T17:55:00Z".into()),
            revision: 2,
            site: "HUP".into(),
            patient_pseudonym: "9f".repeat(32),
            study_uid: "2.25.1".into(),
            study_date: "2019-05-02".into(),
            clinical: clinical(),
            series: vec![
                SeriesRef {
                    role: Role::T2,
                    series_uid: "2.25.2".into(),
                    description: "T2_HASTE_AX_BH".into(),
                    manufacturer: "SIEMENS".into(),
                    field_strength_t: Some(1.5),
                    instances: 24,
                    blob: blob(1),
                },
                SeriesRef {
                    role: Role::T1C,
                    series_uid: "2.25.3".into(),
                    description: "VIBE_FS_AX_POST".into(),
                    manufacturer: "SIEMENS".into(),
                    field_strength_t: None,
                    instances: 40,
                    blob: blob(2),
                },
            ],
            segmentations: vec![
                SegRef {
                    role: Role::T2,
                    reader: "R1".into(),
                    seg_series_uid: "2.25.4".into(),
                    referenced_series_uid: "2.25.2".into(),
                    blob: blob(3),
                },
                SegRef {
                    role: Role::T1C,
                    reader: "R1".into(),
                    seg_series_uid: "2.25.5".into(),
                    referenced_series_uid: "2.25.3".into(),
                    blob: blob(4),
                },
            ],
            provenance: provenance(),
        }),
        entry(LesionV1 {
            version: 1,
            case_id: "MAY-0003".into(),
            first_instance_at: Some("2026-11-27T17:55:00Z".into()),
            revision: 1,
            site: "MAY".into(),
            patient_pseudonym: "01".repeat(32),
            clinical: Clinical { age_years: None, sex: None },
            tumour_volume_ml: 12.5,
            composites: [blob(5), blob(6)],
            volumes: [blob(7), blob(8)],
            qc: LesionQc {
                mask_voxels: [1200, 4100],
                n4_cv_before_after: [0.31, 0.12],
                reader_dice: vec![ReaderDice { role: Role::T2, reader: "R2".into(), dice: 0.87 }],
            },
            other_readers: vec![ReaderComposites {
                reader: "R2".into(),
                composites: [blob(9), blob(10)],
                tumour_volume_ml: 11.0,
            }],
            provenance: provenance(),
        }),
        entry(FeaturesV1 {
            version: 1,
            case_id: "TCIA-0001".into(),
            revision: 1,
            site: "TCIA".into(),
            table: "features".into(),
            file: "features/site=TCIA/date=2026-11-27/part-0.parquet".into(),
            features: 3087,
            settings_sha256: "ef".repeat(32),
            provenance: provenance(),
        }),
        entry(ScoresV1 {
            version: 1,
            case_id: "SXH-0002".into(),
            revision: 1,
            site: "SXH".into(),
            t2_probability: 0.25,
            t1c_probability: 0.75,
            embeddings: [vec![0.5, 1.0], vec![0.0, 2.0]],
            model_version: "m-0001".into(),
            provenance: provenance(),
        }),
        entry(PredictionV1 {
            version: 1,
            case_id: "PHH-0001".into(),
            first_instance_at: Some("2026-11-27T17:55:00Z".into()),
            revision: 1,
            site: "PHH".into(),
            probability: 0.8125,
            class: "malignant".into(),
            threshold: 0.5,
            inputs: [0.25, 0.75, 0.5],
            model_version: "ens-0123456789ab".into(),
            cnn_model_version: "cnn-0123456789ab".into(),
            provenance: provenance(),
        }),
        entry(LabelV1 {
            version: 1,
            case_id: "HUP-0009".into(),
            label: "benign".into(),
            subtype: Some("oncocytoma".into()),
            diagnosis_source: "histopathology".into(),
            provenance: provenance(),
        }),
        entry(ModelEventV1 {
            version: 1,
            event: "promoted".into(),
            model_version: "ens-0123456789ab".into(),
            bundle: blob(9),
            deployment: Some("default".into()),
            reason: Some("ROC AUC 0.84 vs 0.82 (DeLong lower bound -0.03 > -0.05)".into()),
            provenance: provenance(),
        }),
        entry(DeadLetterV1 {
            version: 1,
            stage: "ingest".into(),
            reason_code: "not_mr".into(),
            reason: "Modality CT is not MR".into(),
            source: DeadLetterSource { topic: None, partition: None, offset: None, key: "drop/HUP/0001.dcm".into() },
            input_sha256: "12".repeat(32),
            at: "2026-11-27T18:00:01Z".into(),
            input_base64: None,
        }),
        entry(DeadLetterV1 {
            version: 1,
            stage: "ensemble".into(),
            reason_code: "unknown_lesion".into(),
            reason: "no lesion MAY-0001 revision 1 after 600 s".into(),
            source: DeadLetterSource {
                topic: Some("renal.scores".into()),
                partition: Some(0),
                offset: Some(17),
                key: "MAY-0001".into(),
            },
            input_sha256: "34".repeat(32),
            at: "2026-11-27T18:00:02Z".into(),
            input_base64: Some("eyJ2ZXJzaW9uIjoxfQ==".into()),
        }),
        entry(ReplayV1 {
            version: 1,
            replay_id: "fix-2026-11-28".into(),
            dead_letter: DeadLetterSource {
                topic: Some("renal.dead.ensemble".into()),
                partition: Some(0),
                offset: Some(3),
                key: "MAY-0001".into(),
            },
            stage: "ensemble".into(),
            reason_code: "unknown_lesion".into(),
            to_topic: "renal.scores".into(),
            input_sha256: "34".repeat(32),
            at: "2026-11-28T09:00:00Z".into(),
        }),
    ]
}

fn schema_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/messages")
}

fn schema_of(name: &str) -> Value {
    let path = schema_dir().join(format!("{name}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn every_topic_payload_has_exactly_one_schema_file() {
    let payloads: std::collections::BTreeSet<&str> = topics::ALL.iter().map(|t| t.payload).collect();
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".schema.json").to_string())
        .collect();
    assert_eq!(payloads.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>(), files);
}

#[test]
fn examples_validate_round_trip_and_match_required_fields() {
    let all = examples();
    // One of every payload type (two dead letters: with and without their input).
    let names: std::collections::BTreeSet<&str> = all.iter().map(|e| e.0).collect();
    let payloads: std::collections::BTreeSet<&str> = topics::ALL.iter().map(|t| t.payload).collect();
    assert_eq!(names, payloads);
    assert_eq!(all.len(), payloads.len() + 1);
    for (name, value, round_trip) in all {
        let schema = schema_of(name);
        let errors = validate_schema(&schema, &value);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        let mut required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let mut written: Vec<&str> = value.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        required.sort();
        written.sort();
        assert_eq!(required, written, "{name}: schema required fields vs fields the type writes");
        let bytes = serde_json::to_vec(&value).unwrap();
        assert_eq!(round_trip(&bytes), value);
    }
}

#[test]
fn schemas_reject_what_consumers_must_reject() {
    let mut case = examples().remove(0).1;
    case.as_object_mut().unwrap().remove("case_id");
    case["series"][0]["role"] = Value::from("FLAIR");
    case["clinical"]["sex"] = Value::from("X");
    let text = validate_schema(&schema_of("CaseV1"), &case).join("\n");
    assert!(text.contains("\"case_id\" is a required property"), "{text}");
    assert!(text.contains("/series/0/role: \"FLAIR\""), "{text}");
    assert!(text.contains("/clinical/sex: \"X\""), "{text}");
    assert_eq!(text.lines().count(), 3, "exactly the three faults: {text}");
}
