//! The `cases` table: one row per case revision, committed before the case is announced.

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use renal_messages::{CaseV1, Role};
use std::sync::Arc;

/// The table's name in the store.
pub const TABLE: &str = "cases";

/// The `cases` table row of a case.
pub fn cases_batch(case: &CaseV1, settings_sha256: &str) -> RecordBatch {
    let series = |role: Role| case.series.iter().find(|s| s.role == role);
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v.to_string()])) };
    let i = |v: Option<i32>| -> ArrayRef { Arc::new(Int32Array::from(vec![v])) };
    RecordBatch::try_from_iter(vec![
        ("case_id", s(&case.case_id)),
        ("revision", i(Some(case.revision as i32))),
        ("site", s(&case.site)),
        ("patient_pseudonym", s(&case.patient_pseudonym)),
        ("study_uid", s(&case.study_uid)),
        ("study_date", s(&case.study_date)),
        ("age_years", i(case.clinical.age_years.map(|a| a as i32))),
        ("sex", Arc::new(StringArray::from(vec![case.clinical.sex.map(|x| format!("{x:?}"))])) as ArrayRef),
        ("t2_series_uid", s(series(Role::T2).map(|x| x.series_uid.as_str()).unwrap_or(""))),
        ("t1c_series_uid", s(series(Role::T1C).map(|x| x.series_uid.as_str()).unwrap_or(""))),
        ("t2_instances", i(series(Role::T2).map(|x| x.instances as i32))),
        ("t1c_instances", i(series(Role::T1C).map(|x| x.instances as i32))),
        ("segmentations", i(Some(case.segmentations.len() as i32))),
        ("produced_at", s(&case.provenance.produced_at)),
        ("code_version", s(&case.provenance.code_version)),
        ("settings_sha256", s(settings_sha256)),
        ("input_sha256", s(&case.provenance.input_sha256)),
    ])
    .expect("columns have one row each")
}
