//! `manifest.json` conforms to `schemas/synth-manifest.schema.json`, and the validator used
//! for it catches violations.

use renal_e2e::{renal, validate_schema};
use serde_json::Value;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/synth-manifest.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn generated_manifest_conforms_to_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let run = renal(&["synth", "--out", out.to_str().unwrap(), "--lesions", "3", "--sites", "SXH,PHH", "--seed", "4"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let errors = validate_schema(&schema(), &manifest);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(manifest["lesions"], 3);
}

#[test]
fn validator_reports_missing_fields_bad_enums_and_types() {
    let bad = serde_json::json!({
        "generator": "x", "seed": 1, "lesions": 0, "coordinates": "LPS",
        "cases": [], "series": [{"role": "FLAIR", "rows": "many"}]
    });
    let errors = validate_schema(&schema(), &bad);
    let text = errors.join("\n");
    assert!(text.contains("/lesions: 0 is less than the minimum of 1"), "{text}");
    assert!(text.contains("/series/0: \"path\" is a required property"), "{text}");
    assert!(text.contains("/series/0/role: \"FLAIR\" is not one of"), "{text}");
    assert!(text.contains("/series/0/rows: \"many\" is not of type"), "{text}");
}
