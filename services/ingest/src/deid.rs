//! De-identification of one instance, before anything of it is stored or sent.
//!
//! DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile with two of its
//! options: Retain Longitudinal Temporal Information with Modified Dates (every date moves by
//! the same per-patient number of days, so intervals between a patient's studies survive) and
//! Clean Descriptors (free-text descriptions are kept once cleaned, because the site's series
//! rules read them). Patient sex is kept and the age is written out before the dates move: the
//! clinical model needs both.
//!
//! Each attribute gets one action, decided in this order:
//! 1. the file meta group is rebuilt from the result;
//! 2. private attributes are dropped unless their private creator is on the allow list;
//!    overlays (60xx) and curves (50xx) are dropped whole;
//! 3. the attributes of [`PROFILE`] get the action listed there (the identifying attributes
//!    of the profile's table E.1-1 that MR and SEG objects carry);
//! 4. everything else by its value representation: a UID is remapped (unless it is one the
//!    standard defines, under `1.2.840.10008.`); dates (DA) and date-times (DT) are shifted;
//!    person names (PN) and unvetted free text (LT, ST, UT, UC) are removed; short and long
//!    strings (SH, LO) are cleaned; numbers, codes and pixels are kept;
//! 5. sequences are walked: every item gets the same rules.
//!
//! Every derived value is keyed by the deployment's secret ([`Keys`]): the same input gives
//! the same output within a deployment, and nothing can be traced back without the secret.
//! A remapped UID is `2.25.` and a version 8 UUID made from an HMAC of the original, so a
//! segmentation still references its series, and the series' slices still share a frame of
//! reference, after remapping.

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{InMemDicomObject, OpenFileOptions};
pub use renal_base::keys::{case_id, Keys};
use renal_dicom::read::text;
use std::collections::BTreeSet;

/// Why an instance could not be de-identified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeidError {
    /// Not parseable as a DICOM file.
    #[error("unreadable DICOM: {0}")]
    Unreadable(String),
    /// The de-identified object could not be encoded again.
    #[error("cannot encode the de-identified instance: {0}")]
    Encode(String),
}

/// What one attribute of [`PROFILE`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Removed (PS3.15 `X`).
    Remove,
    /// Kept with an empty value (`Z`).
    Empty,
    /// Replaced by the keyed patient pseudonym (`D`, consistent per patient).
    PatientPseudonym,
    /// Replaced by `ANON^` and the start of the patient pseudonym (`D`).
    PatientName,
    /// Replaced by the keyed accession pseudonym (`D`, consistent per accession): how labels,
    /// exported against the hospital's accession numbers, find their lesion.
    Accession,
    /// Written as the age at the study, in years, with ages over 89 grouped as `090Y`.
    Age,
    /// Kept when it is a short reader code such as `R2`, else replaced by a keyed code: the
    /// segmentation's author (ContentCreatorName) tells readers apart.
    ReaderCode,
    /// Cleaned of identifying words (Clean Descriptors option, `C`).
    Clean,
    /// Kept as it is (`K`).
    Keep,
}

/// The identifying attributes an MR or SEG instance carries, with their actions. Keyword
/// and tag from PS3.6; action from PS3.15 table E.1-1 with the options above.
pub const PROFILE: &[(&str, Tag, Action)] = &[
    ("AccessionNumber", Tag(0x0008, 0x0050), Action::Accession),
    ("InstitutionName", Tag(0x0008, 0x0080), Action::Remove),
    ("InstitutionAddress", Tag(0x0008, 0x0081), Action::Remove),
    ("ReferringPhysicianName", Tag(0x0008, 0x0090), Action::Empty),
    ("ReferringPhysicianAddress", Tag(0x0008, 0x0092), Action::Remove),
    ("ReferringPhysicianTelephoneNumbers", Tag(0x0008, 0x0094), Action::Remove),
    ("ReferringPhysicianIdentificationSequence", Tag(0x0008, 0x0096), Action::Remove),
    ("TimezoneOffsetFromUTC", Tag(0x0008, 0x0201), Action::Remove),
    ("StationName", Tag(0x0008, 0x1010), Action::Remove),
    ("StudyDescription", Tag(0x0008, 0x1030), Action::Clean),
    ("SeriesDescription", Tag(0x0008, 0x103E), Action::Clean),
    ("InstitutionalDepartmentName", Tag(0x0008, 0x1040), Action::Remove),
    ("PhysiciansOfRecord", Tag(0x0008, 0x1048), Action::Remove),
    ("PhysiciansOfRecordIdentificationSequence", Tag(0x0008, 0x1049), Action::Remove),
    ("PerformingPhysicianName", Tag(0x0008, 0x1050), Action::Remove),
    ("PerformingPhysicianIdentificationSequence", Tag(0x0008, 0x1052), Action::Remove),
    ("NameOfPhysiciansReadingStudy", Tag(0x0008, 0x1060), Action::Remove),
    ("PhysiciansReadingStudyIdentificationSequence", Tag(0x0008, 0x1062), Action::Remove),
    ("OperatorsName", Tag(0x0008, 0x1070), Action::Remove),
    ("OperatorIdentificationSequence", Tag(0x0008, 0x1072), Action::Remove),
    ("AdmittingDiagnosesDescription", Tag(0x0008, 0x1080), Action::Remove),
    ("AdmittingDiagnosesCodeSequence", Tag(0x0008, 0x1084), Action::Remove),
    ("ReferencedStudySequence", Tag(0x0008, 0x1110), Action::Remove),
    ("ReferencedPerformedProcedureStepSequence", Tag(0x0008, 0x1111), Action::Remove),
    ("ReferencedPatientSequence", Tag(0x0008, 0x1120), Action::Remove),
    ("DerivationDescription", Tag(0x0008, 0x2111), Action::Clean),
    ("IdentifyingComments", Tag(0x0008, 0x4000), Action::Remove),
    ("PatientName", Tag(0x0010, 0x0010), Action::PatientName),
    ("PatientID", Tag(0x0010, 0x0020), Action::PatientPseudonym),
    ("IssuerOfPatientID", Tag(0x0010, 0x0021), Action::Remove),
    ("PatientBirthDate", Tag(0x0010, 0x0030), Action::Empty),
    ("PatientBirthTime", Tag(0x0010, 0x0032), Action::Remove),
    ("PatientSex", Tag(0x0010, 0x0040), Action::Keep),
    ("PatientInsurancePlanCodeSequence", Tag(0x0010, 0x0050), Action::Remove),
    ("PatientPrimaryLanguageCodeSequence", Tag(0x0010, 0x0101), Action::Remove),
    ("OtherPatientIDs", Tag(0x0010, 0x1000), Action::Remove),
    ("OtherPatientNames", Tag(0x0010, 0x1001), Action::Remove),
    ("OtherPatientIDsSequence", Tag(0x0010, 0x1002), Action::Remove),
    ("PatientBirthName", Tag(0x0010, 0x1005), Action::Remove),
    ("PatientAge", Tag(0x0010, 0x1010), Action::Age),
    ("PatientSize", Tag(0x0010, 0x1020), Action::Remove),
    ("PatientWeight", Tag(0x0010, 0x1030), Action::Remove),
    ("PatientAddress", Tag(0x0010, 0x1040), Action::Remove),
    ("PatientMotherBirthName", Tag(0x0010, 0x1060), Action::Remove),
    ("MilitaryRank", Tag(0x0010, 0x1080), Action::Remove),
    ("BranchOfService", Tag(0x0010, 0x1081), Action::Remove),
    ("MedicalRecordLocator", Tag(0x0010, 0x1090), Action::Remove),
    ("MedicalAlerts", Tag(0x0010, 0x2000), Action::Remove),
    ("Allergies", Tag(0x0010, 0x2110), Action::Remove),
    ("CountryOfResidence", Tag(0x0010, 0x2150), Action::Remove),
    ("RegionOfResidence", Tag(0x0010, 0x2152), Action::Remove),
    ("PatientTelephoneNumbers", Tag(0x0010, 0x2154), Action::Remove),
    ("EthnicGroup", Tag(0x0010, 0x2160), Action::Remove),
    ("Occupation", Tag(0x0010, 0x2180), Action::Remove),
    ("SmokingStatus", Tag(0x0010, 0x21A0), Action::Remove),
    ("AdditionalPatientHistory", Tag(0x0010, 0x21B0), Action::Remove),
    ("PatientReligiousPreference", Tag(0x0010, 0x21F0), Action::Remove),
    ("PatientComments", Tag(0x0010, 0x4000), Action::Remove),
    ("DeviceSerialNumber", Tag(0x0018, 0x1000), Action::Remove),
    ("ProtocolName", Tag(0x0018, 0x1030), Action::Clean),
    ("StudyID", Tag(0x0020, 0x0010), Action::Empty),
    ("ImageComments", Tag(0x0020, 0x4000), Action::Clean),
    ("RequestingPhysician", Tag(0x0032, 0x1032), Action::Remove),
    ("RequestingService", Tag(0x0032, 0x1033), Action::Remove),
    ("RequestedProcedureDescription", Tag(0x0032, 0x1060), Action::Clean),
    ("StudyComments", Tag(0x0032, 0x4000), Action::Remove),
    ("AdmissionID", Tag(0x0038, 0x0010), Action::Remove),
    ("CurrentPatientLocation", Tag(0x0038, 0x0300), Action::Remove),
    ("PatientInstitutionResidence", Tag(0x0038, 0x0400), Action::Remove),
    ("PatientState", Tag(0x0038, 0x0500), Action::Remove),
    ("PerformedStationAETitle", Tag(0x0040, 0x0241), Action::Remove),
    ("PerformedStationName", Tag(0x0040, 0x0242), Action::Remove),
    ("PerformedLocation", Tag(0x0040, 0x0243), Action::Remove),
    ("PerformedProcedureStepID", Tag(0x0040, 0x0253), Action::Remove),
    ("PerformedProcedureStepDescription", Tag(0x0040, 0x0254), Action::Clean),
    ("RequestAttributesSequence", Tag(0x0040, 0x0275), Action::Remove),
    ("RequestedProcedureID", Tag(0x0040, 0x1001), Action::Remove),
    ("ContentSequence", Tag(0x0040, 0xA730), Action::Remove),
    ("ContentCreatorName", Tag(0x0070, 0x0084), Action::ReaderCode),
    ("OriginalAttributesSequence", Tag(0x0400, 0x0561), Action::Remove),
];

/// The action [`PROFILE`] gives `tag`, if it lists it.
pub fn profile_action(tag: Tag) -> Option<Action> {
    PROFILE.iter().find(|(_, t, _)| *t == tag).map(|(_, _, a)| *a)
}

/// A de-identified instance.
#[derive(Debug, Clone)]
pub struct Deidentified {
    /// The de-identified file, encoded in the original's transfer syntax.
    pub bytes: Vec<u8>,
    /// (remapped, original) StudyInstanceUID and SeriesInstanceUID: the only way back to the
    /// hospital's study, for the store that only the results stage reads.
    pub uid_map: Vec<(String, String)>,
}

/// Settings of one de-identification.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The keys.
    pub keys: Keys,
    /// Private creators whose blocks are kept (e.g. `SIEMENS CSA HEADER`); none by default.
    pub private_creators: BTreeSet<String>,
}

/// What the rules need to know about the instance as a whole.
struct Context<'a> {
    profile: &'a Profile,
    site: &'a str,
    patient_id: String,
    /// What AccessionNumber becomes (from the study UID when the study has none).
    accession: String,
    shift_days: i64,
    age: Option<String>,
    /// Words of the instance that identify someone, lower-cased: names and identifiers.
    words: BTreeSet<String>,
}

/// De-identify the DICOM file in `bytes` (with or without its 128-byte preamble) for `site`.
pub fn deidentify(bytes: &[u8], site: &str, profile: &Profile) -> Result<Deidentified, DeidError> {
    renal_dicom::guard::declared_lengths_fit(bytes).map_err(DeidError::Unreadable)?;
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" { &bytes[128..] } else { bytes };
    let file = OpenFileOptions::new().from_reader(body).map_err(|e| DeidError::Unreadable(e.to_string()))?;
    let transfer_syntax = file.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let obj = file.into_inner();
    let patient_id = text(&obj, tags::PATIENT_ID);
    let mut words = BTreeSet::new();
    for tag in [
        tags::PATIENT_NAME,
        tags::OTHER_PATIENT_NAMES,
        tags::PATIENT_BIRTH_NAME,
        tags::PATIENT_MOTHER_BIRTH_NAME,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::PERFORMING_PHYSICIAN_NAME,
        tags::OPERATORS_NAME,
    ] {
        for part in text(&obj, tag).split(['^', '=', ' ', '\\']) {
            if part.len() >= 2 {
                words.insert(part.to_lowercase());
            }
        }
    }
    for tag in [tags::PATIENT_ID, Tag(0x0010, 0x1000), tags::ACCESSION_NUMBER, tags::STUDY_ID] {
        let v = text(&obj, tag);
        if !v.is_empty() {
            words.insert(v.to_lowercase());
        }
    }
    let accession = match text(&obj, tags::ACCESSION_NUMBER) {
        a if a.is_empty() => profile.keys.accession(site, &format!("study:{}", text(&obj, tags::STUDY_INSTANCE_UID))),
        a => profile.keys.accession(site, &a),
    };
    let ctx = Context {
        profile,
        site,
        accession,
        shift_days: profile.keys.date_shift_days(site, &patient_id),
        age: age_at_study(&obj),
        patient_id,
        words,
    };
    let mut uid_map = Vec::new();
    for tag in [tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID] {
        let original = text(&obj, tag);
        if !original.is_empty() {
            uid_map.push((profile.keys.uid(&original), original));
        }
    }
    let mut out = deidentify_object(obj, &ctx, true);
    out.put(DataElement::new(tags::PATIENT_IDENTITY_REMOVED, VR::CS, PrimitiveValue::from("YES")));
    out.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD,
        VR::LO,
        PrimitiveValue::from("PS3.15 Basic; Retain Longitudinal Modified Dates; Clean Descriptors"),
    ));
    let code = |value: &str, meaning: &str| {
        InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
            DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from("DCM")),
            DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
        ])
    };
    out.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
        VR::SQ,
        Value::from(DataSetSequence::new(
            vec![
                code("113100", "Basic Application Confidentiality Profile"),
                code("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
                code("113105", "Clean Descriptors Option"),
            ],
            Length::UNDEFINED,
        )),
    ));
    out.put(DataElement::new(
        tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
        VR::CS,
        PrimitiveValue::from("MODIFIED"),
    ));
    let file = out
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(transfer_syntax))
        .map_err(|e| DeidError::Encode(e.to_string()))?;
    let mut bytes = Vec::with_capacity(bytes.len());
    file.write_all(&mut bytes).map_err(|e| DeidError::Encode(e.to_string()))?;
    Ok(Deidentified { bytes, uid_map })
}

/// An instance as ingest keeps it: checked, de-identified, and read again.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The de-identified instance's header values (its UIDs remapped, its patient ID the
    /// pseudonym, its accession number the accession pseudonym).
    pub instance: crate::instance::Instance,
    /// The de-identified file.
    pub bytes: Vec<u8>,
    /// (remapped, original) study and series UIDs.
    pub uid_map: Vec<(String, String)>,
}

/// Check an instance as received (so a refusal names what is wrong with what the site sent),
/// de-identify it, and read the result back.
pub fn intake(bytes: &[u8], site: &str, profile: &Profile) -> Result<Intake, crate::instance::InstanceError> {
    use crate::instance::{parse, InstanceError};
    parse(bytes)?;
    let done = deidentify(bytes, site, profile).map_err(|e| match e {
        DeidError::Unreadable(m) => InstanceError::Unreadable(m),
        DeidError::Encode(m) => InstanceError::Deidentification(m),
    })?;
    let instance = parse(&done.bytes).map_err(|e| InstanceError::Deidentification(e.to_string()))?;
    Ok(Intake { instance, bytes: done.bytes, uid_map: done.uid_map })
}

/// PatientAge as written after de-identification: the age at the study in years (from
/// PatientAge, else birth and study dates), `090Y` for anyone older than 89; ages given in
/// months, weeks or days are kept as they are.
fn age_at_study(obj: &InMemDicomObject) -> Option<String> {
    let age = text(obj, tags::PATIENT_AGE);
    let years = if age.len() == 4 && age[..3].bytes().all(|b| b.is_ascii_digit()) {
        if !age.ends_with('Y') {
            return Some(age);
        }
        age[..3].parse::<u32>().ok()?
    } else {
        let birth = renal_base::parse_dicom_date(&text(obj, tags::PATIENT_BIRTH_DATE))?;
        let study = renal_base::parse_dicom_date(&text(obj, tags::STUDY_DATE))?;
        if birth > study {
            return None;
        }
        renal_base::completed_years(birth, study)
    };
    Some(format!("{:03}Y", years.min(90)))
}

fn deidentify_object(obj: InMemDicomObject, ctx: &Context, top_level: bool) -> InMemDicomObject {
    let kept_private_blocks: BTreeSet<(u16, u16)> = obj
        .iter()
        .filter(|e| e.tag().group() % 2 == 1 && (0x0010..=0x00FF).contains(&e.tag().element()))
        .filter(|e| {
            let creator = e.value().to_str().map(|s| s.trim().to_string()).unwrap_or_default();
            ctx.profile.private_creators.contains(&creator)
        })
        .map(|e| (e.tag().group(), e.tag().element()))
        .collect();
    let mut out = Vec::new();
    for element in obj {
        let tag = element.tag();
        let group = tag.group();
        if group == 0x0002 || (0x5000..=0x50FF).contains(&group) || (0x6000..=0x60FF).contains(&group) {
            continue;
        }
        if group % 2 == 1 {
            let block = if tag.element() <= 0x00FF { tag.element() } else { tag.element() >> 8 };
            if kept_private_blocks.contains(&(group, block)) {
                out.push(element);
            }
            continue;
        }
        if let Some(e) = apply(element, ctx, top_level) {
            out.push(e);
        }
    }
    if top_level {
        out.push(DataElement::new(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::from(ctx.accession.as_str())));
        if let Some(age) = &ctx.age {
            out.push(DataElement::new(tags::PATIENT_AGE, VR::AS, PrimitiveValue::from(age.as_str())));
        }
    }
    InMemDicomObject::from_element_iter(out)
}

type Element = dicom_object::mem::InMemElement;

fn apply(element: Element, ctx: &Context, top_level: bool) -> Option<Element> {
    let (tag, vr) = (element.tag(), element.vr());
    let strings = || element.value().to_multi_str().map(|v| v.to_vec()).unwrap_or_default();
    let keys = &ctx.profile.keys;
    let put = |s: String| Some(DataElement::new(tag, vr, PrimitiveValue::from(s)));
    match profile_action(tag) {
        Some(Action::Remove) => return None,
        Some(Action::Empty) => return Some(DataElement::new(tag, vr, PrimitiveValue::Empty)),
        Some(Action::Keep) => return Some(element),
        Some(Action::PatientPseudonym) => return put(keys.patient(ctx.site, &ctx.patient_id)),
        Some(Action::PatientName) => return put(format!("ANON^{}", &keys.patient(ctx.site, &ctx.patient_id)[..12])),
        // Both written at the top level: the accession pseudonym even when the study had no
        // accession number, the age as computed before the dates moved.
        Some(Action::Accession | Action::Age) => {
            return if top_level { None } else { Some(DataElement::new(tag, vr, PrimitiveValue::Empty)) };
        }
        Some(Action::ReaderCode) => {
            let name = strings().join("\\");
            let code_like = name.len() <= 6
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            return put(if code_like { name } else { keys.reader(ctx.site, &name) });
        }
        Some(Action::Clean) => return put(clean(&strings().join("\\"), &ctx.words)),
        None => {}
    }
    match vr {
        VR::SQ => {
            let (header, value) = element.into_parts();
            let Value::Sequence(seq) = value else {
                return Some(DataElement::new(header.tag, header.vr, value));
            };
            let items: Vec<InMemDicomObject> =
                seq.into_items().into_iter().map(|item| deidentify_object(item, ctx, false)).collect();
            Some(DataElement::new(tag, VR::SQ, Value::from(DataSetSequence::new(items, Length::UNDEFINED))))
        }
        VR::UI => {
            let uids: Vec<String> = strings()
                .iter()
                .map(|u| u.trim_end_matches('\0').trim().to_string())
                .map(|u| if u.is_empty() || u.starts_with("1.2.840.10008.") { u } else { keys.uid(&u) })
                .collect();
            Some(DataElement::new(tag, vr, PrimitiveValue::Strs(uids.into())))
        }
        VR::DA => {
            let dates: Vec<String> = strings().iter().map(|d| shift_date(d.trim(), ctx.shift_days)).collect();
            Some(DataElement::new(tag, vr, PrimitiveValue::Strs(dates.into())))
        }
        VR::DT => {
            let values: Vec<String> = strings()
                .iter()
                .map(|d| {
                    let d = d.trim();
                    if d.len() >= 8 {
                        format!("{}{}", shift_date(&d[..8], ctx.shift_days), &d[8..])
                    } else {
                        String::new()
                    }
                })
                .collect();
            Some(DataElement::new(tag, vr, PrimitiveValue::Strs(values.into())))
        }
        VR::PN | VR::LT | VR::ST | VR::UT | VR::UC => None,
        VR::SH | VR::LO => {
            let values: Vec<String> = strings().iter().map(|s| clean(s, &ctx.words)).collect();
            Some(DataElement::new(tag, vr, PrimitiveValue::Strs(values.into())))
        }
        _ => Some(element),
    }
}

/// `YYYYMMDD` moved `days` back; anything that is not a date becomes empty.
fn shift_date(date: &str, days: i64) -> String {
    renal_base::parse_dicom_date(date)
        .and_then(|d| d.checked_sub(time::Duration::days(days)))
        .map(renal_base::dicom_date)
        .unwrap_or_default()
}

/// A description without the words that could identify someone: any word holding one of
/// `identifying` (names and identifiers of this instance, lower-case; one of four or more
/// characters anywhere in the word, a shorter one as a whole part of it, so a patient called
/// Co does not take "COR" away), and any word with four or more digits in a row (record
/// numbers, dates, telephone numbers).
pub fn clean(text: &str, identifying: &BTreeSet<String>) -> String {
    let keep = |word: &str| {
        let lower = word.to_lowercase();
        let mut run = 0;
        let long_number = word.chars().any(|c| {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            run >= 4
        });
        let names = |w: &String| {
            if w.len() >= 4 {
                lower.contains(w.as_str())
            } else {
                lower.split(|c: char| !c.is_alphanumeric()).any(|part| part == w)
            }
        };
        !long_number && !identifying.iter().any(names)
    };
    text.split_whitespace().filter(|w| keep(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_stable_keyed_and_valid() {
        let keys = Keys::new(b"secret");
        let a = keys.uid("1.2.3.4");
        assert_eq!(a, keys.uid("1.2.3.4"), "same input, same output");
        assert_ne!(a, keys.uid("1.2.3.5"));
        assert_ne!(a, Keys::new(b"other").uid("1.2.3.4"), "another deployment maps elsewhere");
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        assert!(a[5..].bytes().all(|b| b.is_ascii_digit()) && !a[5..].starts_with('0'), "{a}");
        let n: u128 = a[5..].parse().unwrap();
        assert_eq!((n >> 76) & 0xf, 8, "UUID version 8");
        assert_eq!((n >> 62) & 0x3, 0b10, "RFC 9562 variant");
    }

    #[test]
    fn dates_move_by_a_per_patient_number_of_days() {
        let keys = Keys::new(b"secret");
        let d = keys.date_shift_days("HUP", "123");
        assert!((1..=3650).contains(&d));
        assert_eq!(d, keys.date_shift_days("HUP", "123"));
        let shifts: BTreeSet<i64> = (0..50).map(|i| keys.date_shift_days("HUP", &i.to_string())).collect();
        assert!(shifts.len() > 40, "offsets differ between patients");
        assert_eq!(shift_date("20190301", 1), "20190228");
        assert_eq!(shift_date("20200301", 1), "20200229", "leap year");
        assert_eq!(shift_date("20190301", 365), "20180301");
        assert_eq!(shift_date("2019", 3), "", "not a date");
    }

    #[test]
    fn descriptions_lose_names_and_numbers_and_keep_the_rest() {
        let words: BTreeSet<String> = ["doe", "jane", "mrn12345"].iter().map(|s| s.to_string()).collect();
        assert_eq!(clean("T2 HASTE COR", &words), "T2 HASTE COR");
        assert_eq!(clean("AX T1 VIBE POST 3D", &words), "AX T1 VIBE POST 3D");
        assert_eq!(clean("T2 DOE^JANE MRN12345 call 555-1234", &words), "T2 call");
        assert_eq!(clean("study 20190301", &words), "study");
        let short: BTreeSet<String> = ["co", "li"].iter().map(|s| s.to_string()).collect();
        assert_eq!(clean("T2 HASTE COR clinical", &short), "T2 HASTE COR clinical", "short names only whole");
        assert_eq!(clean("CO^LI T2", &short), "T2");
    }

    #[test]
    fn the_profile_lists_each_tag_once() {
        let tags: BTreeSet<Tag> = PROFILE.iter().map(|(_, t, _)| *t).collect();
        assert_eq!(tags.len(), PROFILE.len());
        assert_eq!(profile_action(tags::PATIENT_SEX), Some(Action::Keep));
        assert_eq!(profile_action(tags::SOP_INSTANCE_UID), None, "UIDs go by their VR");
    }
}
