//! Ingest's pure core on files written by `renal synth`, de-identified as the worker does:
//! every lesion becomes exactly one case with the right series (under their remapped UIDs),
//! roles, clinical values and no patient identifier; completeness waits
//! for what the segmentations promise; late segmentations make a new revision; unusable
//! instances are refused with a reason code.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use renal_ingest::assemble::{Added, Assembler, AssemblyConfig, CaseError};
use renal_ingest::deid::{self, intake, Keys, Profile};
use renal_ingest::drop_folder::list_files;
use renal_ingest::instance::{self, InstanceError};
use renal_messages::{CaseV1, Role};
use renal_store::{BlobStore, LocalBlobStore};
use renal_synth::{generate, SynthConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cohort(dir: &Path) -> (PathBuf, Value) {
    let out = dir.join("cohort");
    let config = SynthConfig {
        lesions: 6,
        seed: 17,
        sites: vec!["MAY".into(), "TCIA".into(), "PHH".into()],
        multi_segmenter_fraction: 1.0,
        ..SynthConfig::default()
    };
    generate(&config, &out, &|_| {}).unwrap();
    let manifest = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (out, manifest)
}

/// Every DICOM file under the site folders, with its site (the drop folder it sits in).
fn dicom_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for site in std::fs::read_dir(root).unwrap().flatten().filter(|e| e.path().is_dir() && e.file_name() != "nifti") {
        let code = site.file_name().to_string_lossy().into_owned();
        for p in list_files(&site.path()).into_iter().filter(|p| p.extension().is_some_and(|x| x == "dcm")) {
            out.push((code.clone(), p));
        }
    }
    out.sort();
    out
}

fn config() -> AssemblyConfig {
    AssemblyConfig { quiet_period_ms: 1_000, incomplete_timeout_ms: 60_000, rules: BTreeMap::new() }
}

fn keys() -> Keys {
    Keys::new(b"test-secret")
}

fn profile() -> Profile {
    Profile { keys: keys(), private_creators: Default::default() }
}

/// The lesion id ingest gives a study of `site` with this accession number.
fn lesion_id(site: &str, accession: &str) -> String {
    deid::case_id(site, &keys().accession(site, accession))
}

/// Each file as the worker takes it: checked, de-identified, stored, assembled.
fn feed(asm: &mut Assembler, store: &dyn BlobStore, files: &[(String, PathBuf)], now_ms: u64) {
    for (site, path) in files {
        let bytes = std::fs::read(path).unwrap();
        let taken = intake(&bytes, site, &profile()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let blob = store.put(&taken.bytes).unwrap();
        asm.add(site, taken.instance, blob, now_ms);
    }
}

#[test]
fn every_lesion_becomes_one_case_with_the_right_series_and_no_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let (root, manifest) = cohort(dir.path());
    let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    let mut asm = Assembler::new();
    let mut files = dicom_files(&root);
    files.reverse(); // arrival order must not matter
    feed(&mut asm, &store, &files, 0);
    assert!(asm.ready(500, &config(), &store).is_empty(), "nothing before the quiet period");
    let cases: Vec<CaseV1> = asm.ready(1_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    let expected = manifest["cases"].as_array().unwrap();
    assert_eq!(cases.len(), expected.len());
    assert!(asm.ready(5_000, &config(), &store).is_empty(), "each case emitted once");

    for case in &cases {
        let truth = expected
            .iter()
            .find(|c| lesion_id(c["site"].as_str().unwrap(), c["case_id"].as_str().unwrap()) == case.case_id)
            .expect("the lesion id derives from the accession pseudonym");
        assert!(!case.case_id.contains(truth["case_id"].as_str().unwrap()), "never the accession number itself");
        assert_eq!(case.revision, 1);
        assert_eq!(case.site, truth["site"].as_str().unwrap());
        assert_eq!(case.clinical.age_years, Some(truth["age_years"].as_u64().unwrap() as u32));
        assert_eq!(format!("{:?}", case.clinical.sex.unwrap()), truth["sex"].as_str().unwrap());
        // Dates move back by the patient's offset; the study UID is remapped.
        let shift = keys().date_shift_days(truth["site"].as_str().unwrap(), truth["patient_id"].as_str().unwrap());
        let study_date = time::Date::parse(
            truth["study_date"].as_str().unwrap(),
            &time::format_description::well_known::Iso8601::DATE,
        )
        .unwrap();
        assert_eq!(case.study_date, renal_base::iso_date(study_date - time::Duration::days(shift)));
        assert_eq!(case.study_uid, keys().uid(truth["study_uid"].as_str().unwrap()));
        for s in &case.series {
            let m = manifest["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| keys().uid(m["series_uid"].as_str().unwrap()) == s.series_uid)
                .expect("series in manifest");
            assert_eq!(m["case_id"], truth["case_id"]);
            assert_eq!(m["role"], if s.role == Role::T2 { "T2" } else { "T1C" });
            assert_eq!(s.instances as u64, m["slices"].as_u64().unwrap());
            // The series manifest blob lists instances in position order.
            let listed: Value = serde_json::from_slice(&store.get(&s.blob).unwrap()).unwrap();
            let positions: Vec<f64> =
                listed["instances"].as_array().unwrap().iter().map(|i| i[1].as_f64().unwrap()).collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "sorted along the normal");
        }
        let readers = if truth["diagnosis_source"] == "imaging" { 1 } else { 3 };
        assert_eq!(case.segmentations.len(), 2 * readers);
        // No patient identifier anywhere in the message.
        let json = serde_json::to_string(case).unwrap();
        assert!(!json.contains(truth["patient_id"].as_str().unwrap()), "patient id leaked");
        assert_eq!(case.patient_pseudonym.len(), 64);
    }
    // Lesions of the same patient share a pseudonym; different patients do not.
    let mut by_patient: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in expected {
        let id = lesion_id(c["site"].as_str().unwrap(), c["case_id"].as_str().unwrap());
        let p = &cases.iter().find(|x| x.case_id == id).unwrap().patient_pseudonym;
        by_patient.entry(c["patient_id"].as_str().unwrap()).or_default().push(p);
    }
    let distinct: std::collections::BTreeSet<&str> = by_patient.values().map(|v| v[0]).collect();
    assert_eq!(distinct.len(), by_patient.len());
    assert!(by_patient.values().all(|v| v.iter().all(|p| *p == v[0])));
}

#[test]
fn waits_for_promised_instances_then_times_out_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = cohort(dir.path());
    let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    let files = dicom_files(&root);
    // Take one study and hold back one slice of an MR series.
    let study_dir = files[0].1.parent().unwrap().parent().unwrap().to_path_buf();
    let mut study: Vec<_> = files.iter().filter(|(_, p)| p.starts_with(&study_dir)).cloned().collect();
    let held = study.iter().position(|(_, p)| p.to_string_lossy().contains("SE003/0002.dcm")).unwrap();
    let late = study.remove(held);

    let mut asm = Assembler::new();
    feed(&mut asm, &store, &study, 0);
    assert!(asm.ready(30_000, &config(), &store).is_empty(), "incomplete: keep waiting");
    feed(&mut asm, &store, std::slice::from_ref(&late), 30_000);
    let cases = asm.ready(31_000, &config(), &store);
    assert_eq!(cases.len(), 1);
    assert!(cases[0].is_ok());

    let mut asm = Assembler::new();
    feed(&mut asm, &store, &study, 0);
    let gave_up = asm.ready(60_000, &config(), &store);
    assert_eq!(gave_up.len(), 1);
    let err = gave_up.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(err, CaseError::Incomplete { .. }));
    assert_eq!(err.code(), Some("incomplete_case"));
    assert!(err.to_string().contains("1 instances of series"), "{err}");
}

#[test]
fn a_late_segmentation_makes_a_new_revision_and_duplicates_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (root, manifest) = cohort(dir.path());
    let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    // A histopathology lesion has three readers; hold back reader R3's T1C SEG (series 113).
    let case =
        manifest["cases"].as_array().unwrap().iter().find(|c| c["diagnosis_source"] == "histopathology").unwrap();
    let t1c = manifest["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["case_id"] == case["case_id"] && s["role"] == "T1C")
        .unwrap();
    let r3 = root.join(t1c["segmentations"][2]["path"].as_str().unwrap());
    let study_dir = r3.parent().unwrap().parent().unwrap().to_path_buf();
    let (late, early): (Vec<_>, Vec<_>) =
        dicom_files(&root).into_iter().filter(|(_, p)| p.starts_with(&study_dir)).partition(|(_, p)| *p == r3);
    let mut asm = Assembler::new();
    feed(&mut asm, &store, &early, 0);
    let first: Vec<CaseV1> = asm.ready(2_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!((first.len(), first[0].revision, first[0].segmentations.len()), (1, 1, 5));
    // Redelivered instances are duplicates: no new revision.
    let bytes = std::fs::read(&early[0].1).unwrap();
    let taken = intake(&bytes, &early[0].0, &profile()).unwrap();
    let again = asm.add(&early[0].0, taken.instance, store.put(&taken.bytes).unwrap(), 3_000);
    assert_eq!(again, Added::Duplicate);
    assert!(asm.ready(10_000, &config(), &store).is_empty());
    feed(&mut asm, &store, &late, 10_000);
    let second: Vec<CaseV1> = asm.ready(12_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!((second.len(), second[0].revision, second[0].segmentations.len()), (1, 2, 6));
    assert_eq!(second[0].case_id, first[0].case_id);
}

/// The (site, file) pairs of one study of the cohort, by its accession number.
fn study_files(root: &Path, accession: &str) -> Vec<(String, PathBuf)> {
    dicom_files(root)
        .into_iter()
        .filter(|(_, p)| instance::parse(&std::fs::read(p).unwrap()).unwrap().accession == accession)
        .collect()
}

#[test]
fn idle_emitted_studies_are_forgotten_and_keep_their_revision_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (root, manifest) = cohort(dir.path());
    let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    let case_id = manifest["cases"][0]["case_id"].as_str().unwrap();
    let study = study_files(&root, case_id);
    let mut asm = Assembler::new();
    feed(&mut asm, &store, &study, 0);
    assert_eq!(asm.forget_idle(1_000_000, 1), 0, "never forget a study before its case is out");
    let first: Vec<CaseV1> = asm.ready(2_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!((first.len(), first[0].revision), (1, 1));
    assert_eq!(asm.forget_idle(2_500, 60_000), 0, "idle for less than the retention");
    assert_eq!(asm.forget_idle(70_000, 60_000), 1);
    assert_eq!(asm.held(), 0);
    // The whole study sent again (a PACS re-send): a new revision, never a second revision 1.
    feed(&mut asm, &store, &study, 80_000);
    let again: Vec<CaseV1> = asm.ready(90_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!((again.len(), again[0].revision), (1, 2));
    assert_eq!(again[0].case_id, first[0].case_id);
}

#[test]
fn a_restored_study_takes_its_delivered_instances_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (root, manifest) = cohort(dir.path());
    let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    let case_id = manifest["cases"][0]["case_id"].as_str().unwrap();
    let study = study_files(&root, case_id);
    let mut first = Assembler::new();
    feed(&mut first, &store, &study, 0);
    let cases: Vec<CaseV1> = first.ready(2_000, &config(), &store).into_iter().map(|r| r.unwrap()).collect();
    let (revision, delivered) = first.emitted(&cases[0].study_uid).expect("emitted");
    assert_eq!((revision, delivered.len()), (1, study.len()), "every instance of the case is recorded");

    // A new assembler (the worker restarted) told what was delivered: the whole study sent
    // again is all duplicates, and nothing becomes ready or is given up.
    let mut after = Assembler::new();
    after.restore(&cases[0].study_uid, revision, delivered.clone());
    for (site, path) in &study {
        let taken = intake(&std::fs::read(path).unwrap(), site, &profile()).unwrap();
        let blob = store.put(&taken.bytes).unwrap();
        assert_eq!(after.add(site, taken.instance, blob, 10_000), Added::Duplicate);
    }
    assert!(after.ready(u64::MAX / 2, &config(), &store).is_empty(), "no case, no incomplete study");
    // Without the record, the same resend assembles a case again (what a restart did before).
    let mut blind = Assembler::new();
    feed(&mut blind, &store, &study, 0);
    assert_eq!(blind.ready(2_000, &config(), &store).len(), 1);
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) -> Vec<u8> {
    let mut obj = dicom_object::open_file(path).unwrap();
    edit(&mut obj);
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

#[test]
fn unusable_instances_are_refused_with_reason_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = cohort(dir.path());
    let mr = dicom_files(&root).into_iter().find(|(_, p)| p.to_string_lossy().contains("SE003")).unwrap().1;
    let good = std::fs::read(&mr).unwrap();
    assert!(instance::parse(&good).is_ok());

    let truncated = instance::parse(&good[..300]).unwrap_err();
    assert_eq!(truncated.code(), "unreadable", "{truncated}");
    assert_eq!(instance::parse(b"").unwrap_err().code(), "unreadable");
    assert_eq!(instance::parse(&[0x42u8; 4096]).unwrap_err().code(), "unreadable");

    let ct = rewrite(&mr, |o| {
        o.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2")));
        o.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")));
    });
    let err = instance::parse(&ct).unwrap_err();
    assert_eq!(err.code(), "not_mr");
    assert!(err.to_string().contains("CT"), "{err}");

    let no_position = rewrite(&mr, |o| {
        o.remove_element(tags::IMAGE_POSITION_PATIENT);
    });
    assert_eq!(instance::parse(&no_position).unwrap_err(), InstanceError::BadGeometry("ImagePositionPatient".into()));

    let skewed = rewrite(&mr, |o| {
        o.put(DataElement::new(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, PrimitiveValue::from("1\\0\\0\\1\\0\\0")));
    });
    assert_eq!(instance::parse(&skewed).unwrap_err().code(), "missing_geometry");

    let anonymous = rewrite(&mr, |o| {
        o.remove_element(tags::PATIENT_ID);
    });
    assert_eq!(instance::parse(&anonymous).unwrap_err(), InstanceError::MissingTag("PatientID"));
}

#[test]
fn every_sites_protocols_classify_with_the_default_rules() {
    use renal_ingest::classify::{classify, Rules};
    use renal_ingest::instance::{MrInfo, SliceGeometry};
    let geometry = SliceGeometry {
        position: [0.0; 3],
        orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [1.0, 1.0],
        rows: 2,
        columns: 2,
    };
    for site in renal_synth::sites::SITES.iter() {
        for (protocol, contrast, want) in [(&site.t2, false, Role::T2), (&site.t1c, true, Role::T1C)] {
            let info = MrInfo {
                description: protocol.description.into(),
                scanning_sequence: protocol.scanning_sequence.into(),
                scan_options: protocol.scan_options.into(),
                echo_time_ms: Some(protocol.te_ms),
                contrast,
                manufacturer: site.manufacturer.into(),
                field_strength_t: Some(site.field_t),
                geometry: geometry.clone(),
                instance_number: None,
            };
            assert_eq!(classify(&info, &Rules::default()), Some(want), "{} {}", site.code, protocol.description);
            // Without the contrast tag, the post-contrast name alone must still carry T1C.
            if want == Role::T1C {
                let named_only = MrInfo { contrast: false, ..info.clone() };
                assert_eq!(classify(&named_only, &Rules::default()), Some(Role::T1C), "{}", protocol.description);
            }
        }
    }
    let localizer = MrInfo {
        description: "T2 localizer".into(),
        scanning_sequence: "SE".into(),
        scan_options: String::new(),
        echo_time_ms: Some(90.0),
        contrast: false,
        manufacturer: "X".into(),
        field_strength_t: None,
        geometry,
        instance_number: None,
    };
    assert_eq!(classify(&localizer, &Rules::default()), None);
}
