//! De-identification of real instances written by `renal synth`, with the identifying
//! attributes a hospital's files carry added to them (other names and IDs, addresses, a
//! physician, an operator, a private block, an overlay, a nested sequence with a name, a UID
//! and a date): nothing identifying survives byte for byte; what the pipeline needs does
//! (geometry, pixels, sex, age, the segmentation's references to its series and slices).

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use renal_ingest::deid::{deidentify, intake, Keys, Profile};
use renal_ingest::instance::{self, Kind};
use renal_synth::{generate, SynthConfig};
use std::path::{Path, PathBuf};

const SITE: &str = "MAY";

fn profile(private_creators: &[&str]) -> Profile {
    Profile {
        keys: Keys::new(b"deid-test"),
        private_creators: private_creators.iter().map(|s| s.to_string()).collect(),
    }
}

fn read(bytes: &[u8]) -> InMemDicomObject {
    OpenFileOptions::new().from_reader(&bytes[128..]).unwrap().into_inner()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    renal_dicom::read::text(obj, tag)
}

/// One lesion's DICOM files: its MR slices and its SEGs.
fn lesion(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let config = SynthConfig { lesions: 1, seed: 5, sites: vec![SITE.into()], ..SynthConfig::default() };
    generate(&config, dir, &|_| {}).unwrap();
    let files: Vec<PathBuf> = renal_ingest::drop_folder::list_files(&dir.join(SITE))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.into_iter().partition(|p| matches!(instance::parse(&std::fs::read(p).unwrap()).unwrap().kind, Kind::Mr(_)))
}

/// A hospital's extra identifiers, added to a file; returns the file and the values planted.
fn with_identifiers(path: &Path) -> (Vec<u8>, Vec<&'static str>) {
    let mut obj = dicom_object::open_file(path).unwrap();
    let put = |o: &mut dicom_object::DefaultDicomObject, tag: Tag, vr: VR, v: &str| {
        o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    };
    put(&mut obj, tags::OTHER_PATIENT_NAMES, VR::PN, "Smithers^Waylon");
    put(&mut obj, Tag(0x0010, 0x1000), VR::LO, "OTHERID-77812");
    put(&mut obj, tags::PATIENT_ADDRESS, VR::LO, "12 Evergreen Terrace");
    put(&mut obj, tags::PATIENT_TELEPHONE_NUMBERS, VR::SH, "555-0199");
    put(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Hibbert^Julius");
    put(&mut obj, tags::OPERATORS_NAME, VR::PN, "Nahasapeemapetilon");
    put(&mut obj, tags::INSTITUTION_NAME, VR::LO, "Springfield General");
    put(&mut obj, tags::PATIENT_COMMENTS, VR::LT, "claustrophobic, call Marge");
    put(&mut obj, tags::IMAGE_COMMENTS, VR::LT, "Hibbert repeat 20190302 ok");
    put(&mut obj, Tag(0x0029, 0x0010), VR::LO, "ACME PRIVATE");
    put(&mut obj, Tag(0x0029, 0x1001), VR::LO, "Burns^Montgomery");
    put(&mut obj, Tag(0x0031, 0x0010), VR::LO, "KEPT CREATOR");
    put(&mut obj, Tag(0x0031, 0x1002), VR::LO, "scanner bits");
    put(&mut obj, Tag(0x6000, 0x0022), VR::LO, "Overlay of Flanders");
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(tags::PERSON_NAME, VR::PN, PrimitiveValue::from("Szyslak^Moe")),
        DataElement::new(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.3.6.1.4.1.9590.100.1.2.999"),
        ),
        DataElement::new(tags::OBSERVATION_DATE_TIME, VR::DT, PrimitiveValue::from("20190301101500")),
    ]);
    obj.put(DataElement::new(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        VR::SQ,
        dicom_core::value::Value::from(DataSetSequence::new(vec![item], Length::UNDEFINED)),
    ));
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    let planted = vec![
        "Smithers",
        "Waylon",
        "OTHERID-77812",
        "Evergreen",
        "555-0199",
        "Hibbert",
        "Nahasapeemapetilon",
        "Springfield",
        "Marge",
        "Burns",
        "Flanders",
        "Szyslak",
        "1.3.6.1.4.1.9590.100.1.2.999",
        "20190301",
    ];
    (bytes, planted)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn nothing_identifying_survives_and_what_the_pipeline_needs_does() {
    let dir = tempfile::tempdir().unwrap();
    let (mrs, segs) = lesion(dir.path());
    let (raw, planted) = with_identifiers(&mrs[0]);
    let original = read(&raw);
    let mut identifiers: Vec<String> = planted.iter().map(|s| s.to_string()).collect();
    for tag in [
        tags::PATIENT_ID,
        tags::ACCESSION_NUMBER,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
        tags::PATIENT_BIRTH_DATE,
        tags::STUDY_DATE,
        tags::STATION_NAME,
    ] {
        let v = text(&original, tag);
        assert!(!v.is_empty(), "the synthetic instance has {tag}");
        identifiers.push(v);
    }
    identifiers.extend(text(&original, tags::PATIENT_NAME).split('^').map(str::to_string));

    let done = deidentify(&raw, SITE, &profile(&["KEPT CREATOR"])).unwrap();
    for id in &identifiers {
        assert!(!contains(&done.bytes, id), "{id:?} is still in the de-identified file");
    }
    let out = read(&done.bytes);
    let keys = Keys::new(b"deid-test");
    let patient_id = text(&original, tags::PATIENT_ID);
    assert_eq!(text(&out, tags::PATIENT_ID), keys.patient(SITE, &patient_id));
    assert!(text(&out, tags::PATIENT_NAME).starts_with("ANON^"));
    assert_eq!(text(&out, tags::PATIENT_BIRTH_DATE), "");
    assert_eq!(text(&out, tags::PATIENT_SEX), text(&original, tags::PATIENT_SEX), "sex is kept");
    assert_eq!(text(&out, tags::PATIENT_AGE), text(&original, tags::PATIENT_AGE), "age is kept");
    assert_eq!(text(&out, tags::ACCESSION_NUMBER), keys.accession(SITE, &text(&original, tags::ACCESSION_NUMBER)));
    assert_eq!(text(&out, tags::PATIENT_IDENTITY_REMOVED), "YES");
    assert_eq!(text(&out, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED), "MODIFIED");
    // Dates moved back by the patient's days, times kept.
    let shift = keys.date_shift_days(SITE, &patient_id);
    let date = |o: &InMemDicomObject| renal_base::parse_dicom_date(&text(o, tags::STUDY_DATE)).unwrap();
    assert_eq!((date(&original) - date(&out)).whole_days(), shift);
    assert_eq!(text(&out, tags::STUDY_TIME), text(&original, tags::STUDY_TIME));
    // UIDs remapped consistently; the standard's own UIDs kept.
    for tag in
        [tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID, tags::SOP_INSTANCE_UID, tags::FRAME_OF_REFERENCE_UID]
    {
        assert_eq!(text(&out, tag), keys.uid(&text(&original, tag)), "{tag}");
    }
    assert_eq!(text(&out, tags::SOP_CLASS_UID), text(&original, tags::SOP_CLASS_UID));
    let (study, series) = (text(&original, tags::STUDY_INSTANCE_UID), text(&original, tags::SERIES_INSTANCE_UID));
    assert_eq!(done.uid_map, vec![(keys.uid(&study), study), (keys.uid(&series), series)]);
    // The sequence was walked: its name gone, its UID remapped, its date-time shifted.
    let item = &out.element(tags::CONTRIBUTING_EQUIPMENT_SEQUENCE).unwrap().items().unwrap()[0];
    assert!(item.element_opt(tags::PERSON_NAME).unwrap().is_none());
    assert_eq!(text(item, tags::REFERENCED_SOP_INSTANCE_UID), keys.uid("1.3.6.1.4.1.9590.100.1.2.999"));
    let shifted = renal_base::parse_dicom_date(&text(item, tags::OBSERVATION_DATE_TIME)[..8]).unwrap();
    assert_eq!((renal_base::parse_dicom_date("20190301").unwrap() - shifted).whole_days(), shift);
    assert!(text(item, tags::OBSERVATION_DATE_TIME).ends_with("101500"));
    // Private blocks: the allowed creator's kept, the other dropped; overlays dropped.
    assert_eq!(text(&out, Tag(0x0031, 0x1002)), "scanner bits");
    assert!(out.element_opt(Tag(0x0029, 0x0010)).unwrap().is_none());
    assert!(out.element_opt(Tag(0x0029, 0x1001)).unwrap().is_none());
    assert!(out.element_opt(Tag(0x6000, 0x0022)).unwrap().is_none());
    // Descriptions cleaned, not emptied; geometry and pixels untouched.
    assert_eq!(text(&out, tags::SERIES_DESCRIPTION), text(&original, tags::SERIES_DESCRIPTION));
    assert_eq!(text(&out, tags::IMAGE_COMMENTS), "repeat ok", "cleaned of a name and a date");
    assert!(out.element_opt(tags::PATIENT_COMMENTS).unwrap().is_none(), "unvetted free text goes");
    for tag in [tags::IMAGE_POSITION_PATIENT, tags::IMAGE_ORIENTATION_PATIENT, tags::PIXEL_SPACING, tags::ROWS] {
        assert_eq!(text(&out, tag), text(&original, tag), "{tag}");
    }
    let pixels = |o: &InMemDicomObject| o.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().to_vec();
    assert_eq!(pixels(&out), pixels(&original));
    // Done twice, the same bytes: remapping is a function of the input and the secret.
    assert_eq!(deidentify(&raw, SITE, &profile(&["KEPT CREATOR"])).unwrap().bytes, done.bytes);
    let _ = segs;
}

#[test]
fn a_segmentation_still_references_its_de_identified_series_and_slices() {
    let dir = tempfile::tempdir().unwrap();
    let (mrs, segs) = lesion(dir.path());
    let taken_mr: Vec<_> =
        mrs.iter().map(|p| intake(&std::fs::read(p).unwrap(), SITE, &profile(&[])).unwrap().instance).collect();
    for seg in &segs {
        let taken = intake(&std::fs::read(seg).unwrap(), SITE, &profile(&[])).unwrap();
        let Kind::Seg(info) = &taken.instance.kind else { panic!("a SEG") };
        let series: Vec<_> = taken_mr.iter().filter(|m| m.series_uid == info.referenced_series_uid).collect();
        assert!(!series.is_empty(), "the SEG references a de-identified series ingest has");
        for sop in &info.referenced_instances {
            assert!(series.iter().any(|m| &m.sop_instance_uid == sop), "slice {sop} is in the series");
        }
        assert!(info.reader.starts_with('R') && info.reader.len() == 2, "reader code kept: {}", info.reader);
        assert_eq!(taken.instance.study_uid, taken_mr[0].study_uid);
        // The per-frame references (the SEG's source images) are remapped the same way.
        let out = read(&taken.bytes);
        let frames = out.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).unwrap().items().unwrap();
        let derivation = &frames[0].element(tags::DERIVATION_IMAGE_SEQUENCE).unwrap().items().unwrap()[0];
        let source = &derivation.element(tags::SOURCE_IMAGE_SEQUENCE).unwrap().items().unwrap()[0];
        let sop = text(source, tags::REFERENCED_SOP_INSTANCE_UID);
        assert!(taken_mr.iter().any(|m| m.sop_instance_uid == sop), "frame source {sop} is a de-identified slice");
    }
}

#[test]
fn ages_over_89_are_grouped_and_an_age_comes_from_the_dates_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (mrs, _) = lesion(dir.path());
    let rewrite = |edit: &dyn Fn(&mut dicom_object::DefaultDicomObject)| {
        let mut obj = dicom_object::open_file(&mrs[0]).unwrap();
        edit(&mut obj);
        let mut bytes = Vec::new();
        obj.write_all(&mut bytes).unwrap();
        read(&deidentify(&bytes, SITE, &profile(&[])).unwrap().bytes)
    };
    let old = rewrite(&|o| {
        o.put(DataElement::new(tags::PATIENT_AGE, VR::AS, PrimitiveValue::from("093Y")));
    });
    assert_eq!(text(&old, tags::PATIENT_AGE), "090Y");
    let dated = rewrite(&|o| {
        o.remove_element(tags::PATIENT_AGE);
        o.put(DataElement::new(tags::PATIENT_BIRTH_DATE, VR::DA, PrimitiveValue::from("19600615")));
        o.put(DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20190614")));
    });
    assert_eq!(text(&dated, tags::PATIENT_AGE), "058Y", "computed before the dates moved");
    assert_eq!(text(&dated, tags::PATIENT_BIRTH_DATE), "");
    let no_accession = rewrite(&|o| {
        o.remove_element(tags::ACCESSION_NUMBER);
    });
    assert_eq!(text(&no_accession, tags::ACCESSION_NUMBER).len(), 16, "a study without one still gets a pseudonym");
}
