//! Instances into series, series into cases.
//!
//! A case is one lesion: the T2 and T1C series its segmentations reference, plus those
//! segmentations. The segmentation says what completeness means: every instance it lists must
//! have arrived. A case is emitted once that holds and no instance of the study arrived for a
//! quiet period; an instance arriving later makes the next emission a new revision. Time is
//! passed in, so the logic is testable without clocks.

use crate::classify::{classify, Rules};
use crate::instance::{Instance, Kind, MrInfo, SegInfo};
use renal_messages::{BlobRef, CaseV1, Clinical, Provenance, Role, SegRef, SeriesManifest, SeriesRef, Sex};
use renal_store::{sha256_hex, BlobError, BlobStore};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// What became of an added instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// New to its study.
    New,
    /// Already seen (redelivery, resend): ignored.
    Duplicate,
}

/// Why a study cannot become a case.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// Segmentations exist but the referenced series cannot be told apart as T2 and T1C.
    #[error("study {study_uid}: {reason}")]
    Unclassified { study_uid: String, reason: String },
    /// Still incomplete long after the last instance arrived.
    #[error("study {study_uid}: incomplete after {waited_ms} ms: {missing}")]
    Incomplete { study_uid: String, waited_ms: u64, missing: String },
    /// The blob store failed (transient: retry).
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl CaseError {
    /// Dead-letter reason code (`None` for transient failures).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            CaseError::Unclassified { .. } => Some("unclassified_series"),
            CaseError::Incomplete { .. } => Some("incomplete_case"),
            CaseError::Blob(_) => None,
        }
    }
}

/// Assembly settings.
#[derive(Debug, Clone)]
pub struct AssemblyConfig {
    /// Emit a complete study only after this long without new instances, ms.
    pub quiet_period_ms: u64,
    /// Give up on an incomplete study after this long without new instances, ms.
    pub incomplete_timeout_ms: u64,
    /// Classification rules per site code (missing sites use the defaults).
    pub rules: BTreeMap<String, Rules>,
}

#[derive(Debug)]
struct Slice {
    along_normal: f64,
    blob: BlobRef,
}

#[derive(Debug)]
struct Series {
    info: MrInfo,
    slices: BTreeMap<String, Slice>,
}

#[derive(Debug)]
struct Seg {
    info: SegInfo,
    series_uid: String,
    blob: BlobRef,
}

#[derive(Debug)]
struct Study {
    site: String,
    first: Instance,
    /// When its first instance arrived, RFC 3339 (the start of its end-to-end latency).
    first_instance_at: String,
    series: BTreeMap<String, Series>,
    segs: BTreeMap<String, Seg>,
    last_arrival_ms: u64,
    revision: u32,
    dirty: bool,
    /// Instances in a case emitted before this assembly began (before a restart, or before
    /// the study was forgotten): taken as duplicates, though their bytes are not held.
    emitted_before: BTreeSet<String>,
}

/// Holds studies until they form complete cases, and for a while after, so late instances
/// give a revision rather than a new case.
#[derive(Debug, Default)]
pub struct Assembler {
    studies: BTreeMap<String, Study>,
    /// Last revision emitted for studies dropped by [`Assembler::forget_idle`] or named by
    /// [`Assembler::restore`], with the instances of that revision when known: a study that
    /// comes back continues its numbering instead of reusing revision 1, and instances it
    /// already delivered are duplicates.
    forgotten: BTreeMap<String, (u32, BTreeSet<String>)>,
}

impl Assembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Studies currently held.
    pub fn pending(&self) -> usize {
        self.studies.values().filter(|s| s.dirty).count()
    }

    /// Studies held in memory, emitted or not.
    pub fn held(&self) -> usize {
        self.studies.len()
    }

    /// Whether an assembly of `study_uid` is held (emitted or not).
    pub fn holds(&self, study_uid: &str) -> bool {
        self.studies.contains_key(study_uid)
    }

    /// Name a study emitted before this assembler existed (read back from the record of
    /// emitted studies after a restart): its next case is revision `revision + 1`, and the
    /// instances in `instances` are duplicates when they come again. Ignored for a study held.
    pub fn restore(&mut self, study_uid: &str, revision: u32, instances: BTreeSet<String>) {
        if !self.holds(study_uid) {
            self.forgotten.insert(study_uid.to_string(), (revision, instances));
        }
    }

    /// The SOP instance UIDs of a held study's last emission and its revision, for the record
    /// of emitted studies; `None` for a study not held or never emitted.
    pub fn emitted(&self, study_uid: &str) -> Option<(u32, BTreeSet<String>)> {
        let s = self.studies.get(study_uid).filter(|s| s.revision > 0)?;
        let mut all = s.emitted_before.clone();
        all.extend(s.series.values().flat_map(|series| series.slices.keys().cloned()));
        all.extend(s.segs.keys().cloned());
        Some((s.revision, all))
    }

    /// Drop studies already emitted and idle for `retention_ms` or longer, so a worker that runs
    /// for months holds a bounded set; returns how many were dropped. Instances of a dropped
    /// study that arrive later start a new assembly of it with its revision number continuing
    /// from the last one emitted. Instances the run loop's record shows were delivered (see
    /// [`Assembler::restore`]) are duplicates; a new instance needing earlier ones (which are not
    /// re-read) leaves the study incomplete, dead-lettered at the timeout.
    pub fn forget_idle(&mut self, now_ms: u64, retention_ms: u64) -> usize {
        let idle: Vec<String> = self
            .studies
            .iter()
            .filter(|(_, s)| !s.dirty && s.revision > 0 && now_ms.saturating_sub(s.last_arrival_ms) >= retention_ms)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &idle {
            let study = self.studies.remove(uid).expect("listed above");
            // Only the revision is remembered, so memory stays bounded; the run loop's record
            // of emitted studies tells which instances were delivered.
            self.forgotten.insert(uid.clone(), (study.revision, BTreeSet::new()));
        }
        idle.len()
    }

    /// Add a parsed instance whose bytes are stored at `blob`.
    pub fn add(&mut self, site: &str, instance: Instance, blob: BlobRef, now_ms: u64) -> Added {
        let forgotten = &mut self.forgotten;
        let study = self.studies.entry(instance.study_uid.clone()).or_insert_with(|| {
            // The revision stays remembered (a study given up later still continues its
            // numbering); the instance set moves into the study.
            let (revision, emitted_before) = match forgotten.get_mut(&instance.study_uid) {
                Some((revision, instances)) => (*revision, std::mem::take(instances)),
                None => (0, BTreeSet::new()),
            };
            Study {
                site: site.to_string(),
                first: instance.clone(),
                first_instance_at: renal_base::now_rfc3339(),
                series: BTreeMap::new(),
                segs: BTreeMap::new(),
                last_arrival_ms: now_ms,
                revision,
                dirty: false,
                emitted_before,
            }
        });
        let sop = instance.sop_instance_uid.clone();
        if study.emitted_before.contains(&sop) {
            return Added::Duplicate;
        }
        let added = match &instance.kind {
            Kind::Mr(info) => {
                let n = info.geometry.normal();
                let p = info.geometry.position;
                let along_normal = n[0] * p[0] + n[1] * p[1] + n[2] * p[2];
                let series = study
                    .series
                    .entry(instance.series_uid.clone())
                    .or_insert_with(|| Series { info: info.clone(), slices: BTreeMap::new() });
                match series.slices.entry(sop) {
                    Entry::Occupied(_) => Added::Duplicate,
                    Entry::Vacant(v) => {
                        v.insert(Slice { along_normal, blob });
                        Added::New
                    }
                }
            }
            Kind::Seg(info) => match study.segs.entry(sop) {
                Entry::Occupied(_) => Added::Duplicate,
                Entry::Vacant(v) => {
                    v.insert(Seg { info: info.clone(), series_uid: instance.series_uid.clone(), blob });
                    Added::New
                }
            },
        };
        if added == Added::New {
            study.last_arrival_ms = now_ms;
            study.dirty = true;
        }
        added
    }

    /// Cases ready at `now_ms`, and studies given up on. Ready cases' series manifests are
    /// written to `store`.
    pub fn ready(
        &mut self,
        now_ms: u64,
        cfg: &AssemblyConfig,
        store: &dyn BlobStore,
    ) -> Vec<Result<CaseV1, CaseError>> {
        let mut out = Vec::new();
        let mut give_up = Vec::new();
        for (uid, study) in self.studies.iter_mut() {
            if !study.dirty {
                continue;
            }
            let waited = now_ms.saturating_sub(study.last_arrival_ms);
            if waited < cfg.quiet_period_ms {
                continue;
            }
            match missing(study) {
                Some(m) if waited >= cfg.incomplete_timeout_ms => {
                    out.push(Err(CaseError::Incomplete { study_uid: uid.clone(), waited_ms: waited, missing: m }));
                    give_up.push(uid.clone());
                }
                Some(_) => {}
                None => match build_case(study, cfg, store) {
                    Ok(case) => {
                        study.dirty = false;
                        out.push(Ok(case));
                    }
                    Err(e @ CaseError::Blob(_)) => out.push(Err(e)),
                    Err(e) => {
                        out.push(Err(e));
                        give_up.push(uid.clone());
                    }
                },
            }
        }
        for uid in give_up {
            self.studies.remove(&uid);
        }
        out
    }
}

/// What a study still waits for, if anything.
fn missing(study: &Study) -> Option<String> {
    if study.segs.is_empty() {
        return Some("no segmentation yet".into());
    }
    for seg in study.segs.values() {
        let Some(series) = study.series.get(&seg.info.referenced_series_uid) else {
            return Some(format!("series {} referenced by a segmentation", seg.info.referenced_series_uid));
        };
        let absent = seg.info.referenced_instances.iter().filter(|sop| !series.slices.contains_key(*sop)).count();
        if absent > 0 {
            return Some(format!("{absent} instances of series {}", seg.info.referenced_series_uid));
        }
    }
    None
}

fn parse_age(age: &str, birth: &str, study_date: &str) -> Option<u32> {
    if age.len() == 4 {
        let n: u32 = age[..3].parse().ok()?;
        return match &age[3..] {
            "Y" => Some(n),
            "M" => Some(n / 12),
            "W" => Some(n / 52),
            "D" => Some(n / 365),
            _ => None,
        };
    }
    let (birth, study) = (renal_base::parse_dicom_date(birth)?, renal_base::parse_dicom_date(study_date)?);
    (birth <= study).then(|| renal_base::completed_years(birth, study))
}

fn iso_date(dicom: &str) -> String {
    if dicom.len() == 8 {
        format!("{}-{}-{}", &dicom[0..4], &dicom[4..6], &dicom[6..8])
    } else {
        String::new()
    }
}

fn build_case(study: &mut Study, cfg: &AssemblyConfig, store: &dyn BlobStore) -> Result<CaseV1, CaseError> {
    let study_uid = study.first.study_uid.clone();
    let rules = cfg.rules.get(&study.site).cloned().unwrap_or_default();
    // The series that matter are the ones the segmentations reference.
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for seg in study.segs.values() {
        let uid = &seg.info.referenced_series_uid;
        let series = &study.series[uid];
        let role = classify(&series.info, &rules).ok_or_else(|| CaseError::Unclassified {
            study_uid: study_uid.clone(),
            reason: format!("segmented series {:?} is neither T2 nor T1C by the site's rules", series.info.description),
        })?;
        roles.insert(uid.clone(), role);
    }
    for want in [Role::T2, Role::T1C] {
        let n = roles.values().filter(|&&r| r == want).count();
        if n != 1 {
            return Err(CaseError::Unclassified {
                study_uid,
                reason: format!("{n} segmented series classified as {want:?}, expected exactly one"),
            });
        }
    }
    let mut series_refs = Vec::new();
    for (uid, role) in &roles {
        let s = &study.series[uid];
        let mut slices: Vec<(String, f64, BlobRef)> =
            s.slices.iter().map(|(sop, sl)| (sop.clone(), sl.along_normal, sl.blob.clone())).collect();
        slices.sort_by(|a, b| a.1.total_cmp(&b.1));
        let manifest = SeriesManifest { series_uid: uid.clone(), normal: s.info.geometry.normal(), instances: slices };
        let blob = store.put(&serde_json::to_vec(&manifest).expect("manifest serialises"))?;
        series_refs.push(SeriesRef {
            role: *role,
            series_uid: uid.clone(),
            description: s.info.description.clone(),
            manufacturer: s.info.manufacturer.clone(),
            field_strength_t: s.info.field_strength_t,
            instances: s.slices.len() as u32,
            blob,
        });
    }
    series_refs.sort_by_key(|s| if s.role == Role::T2 { 0 } else { 1 });
    let mut seg_refs: Vec<SegRef> = study
        .segs
        .values()
        .map(|seg| SegRef {
            role: roles[&seg.info.referenced_series_uid],
            reader: seg.info.reader.clone(),
            seg_series_uid: seg.series_uid.clone(),
            referenced_series_uid: seg.info.referenced_series_uid.clone(),
            blob: seg.blob.clone(),
        })
        .collect();
    seg_refs.sort_by(|a, b| (a.role == Role::T1C, &a.reader).cmp(&(b.role == Role::T1C, &b.reader)));
    let mut input_hashes: Vec<&str> = series_refs.iter().map(|s| s.blob.sha256.as_str()).collect();
    input_hashes.extend(seg_refs.iter().map(|s| s.blob.sha256.as_str()));
    let input_sha256 = sha256_hex(input_hashes.join(",").as_bytes());
    study.revision += 1;
    let first = &study.first;
    let study_hash = sha256_hex(study_uid.as_bytes());
    let sex = match first.sex.as_str() {
        "M" => Some(Sex::M),
        "F" => Some(Sex::F),
        "O" => Some(Sex::O),
        _ => None,
    };
    Ok(CaseV1 {
        version: 1,
        // De-identified instances always carry the accession pseudonym; the study UID (itself
        // remapped) stands in for instances that did not pass through de-identification.
        case_id: crate::deid::case_id(
            &study.site,
            if first.accession.is_empty() { &study_hash[..16] } else { &first.accession },
        ),
        first_instance_at: Some(study.first_instance_at.clone()),
        revision: study.revision,
        site: study.site.clone(),
        // The de-identified PatientID is the pseudonym already.
        patient_pseudonym: first.patient_id.clone(),
        study_uid,
        study_date: iso_date(&first.study_date),
        clinical: Clinical { age_years: parse_age(&first.age, &first.birth_date, &first.study_date), sex },
        series: series_refs,
        segmentations: seg_refs,
        provenance: Provenance::now(input_sha256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_from_age_string_or_dates() {
        assert_eq!(parse_age("061Y", "", ""), Some(61));
        assert_eq!(parse_age("018M", "", ""), Some(1));
        assert_eq!(parse_age("", "19600615", "20190614"), Some(58));
        assert_eq!(parse_age("", "19600615", "20190615"), Some(59));
        assert_eq!(parse_age("", "", ""), None);
        assert_eq!(parse_age("61", "", ""), None);
        assert_eq!(parse_age("", "20200101", "20190101"), None, "born after the study");
    }
}
