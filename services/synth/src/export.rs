//! Writing a lesion as a scanner and a segmentation tool would: DICOM MR series, DICOM SEG,
//! NIfTI masks, plus the answer key (`labels.csv`, `manifest.json`).

use crate::cohort::{mix64, LesionSpec};
use crate::phantom::{self, Role};
use renal_dicom::{uid_from_u128, write_mr_series, write_seg, Equipment, MrSeries, Patient, Seg, Study, WriteError};
use renal_imaging::{dice, nifti};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Reader codes: the primary segmenter first.
pub const READERS: [&str; 3] = ["R1", "R2", "R3"];

/// One row of `labels.csv`, as a pathology export would have it: keyed by the study's
/// accession number and site (label intake turns them into the lesion id ingest derives).
#[derive(Debug, Clone, Serialize)]
pub struct LabelRow {
    /// The study's AccessionNumber (the cohort's case id).
    pub accession: String,
    /// The site's medical record number.
    pub patient_id: String,
    /// Site code.
    pub site: String,
    /// `benign` or `malignant`.
    pub label: String,
    /// Histologic subtype.
    pub subtype: String,
    /// `histopathology` or `imaging`.
    pub diagnosis_source: String,
    /// `surgical_excision`, `biopsy` or `imaging`.
    pub diagnosis_method: String,
    /// Fuhrman/ISUP grade, empty when benign or unavailable.
    pub grade: String,
    /// Readers whose segmentations exist, `;`-separated (`R1` or `R1;R2;R3`).
    pub segmenter: String,
}

/// One segmentation in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct SegRecord {
    /// `R1`, `R2` or `R3`.
    pub reader: String,
    /// The DICOM SEG file, relative to the output folder.
    pub path: String,
    /// The SEG's own series UID.
    pub seg_series_uid: String,
    /// The SEG's SOP instance UID.
    pub sop_instance_uid: String,
    /// The MR series it segments.
    pub referenced_series_uid: String,
    /// Frames in the SEG (non-empty slices).
    pub frames: usize,
    /// The same mask as NIfTI, relative to the output folder.
    pub nifti: String,
    /// Mask voxels.
    pub voxels: usize,
    /// Mask volume, mL.
    pub volume_ml: f64,
    /// Dice against R1 on the same grid.
    pub dice_vs_r1: f64,
}

/// One MR series in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRecord {
    /// Lesion id.
    pub case_id: String,
    /// Site code.
    pub site: String,
    /// `T2` or `T1C`.
    pub role: String,
    /// Series folder, relative to the output folder.
    pub path: String,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SeriesDescription.
    pub series_description: String,
    /// Rows (pixels per column).
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Number of slices (files).
    pub slices: usize,
    /// PixelSpacing: [row spacing, column spacing], mm.
    pub pixel_spacing: [f64; 2],
    /// Centre-to-centre slice distance, mm.
    pub slice_spacing: f64,
    /// SliceThickness, mm.
    pub slice_thickness: f64,
    /// ImageOrientationPatient.
    pub image_orientation: [f64; 6],
    /// Unit normal along which slice positions increase.
    pub slice_normal: [f64; 3],
    /// ImagePositionPatient of the first slice along the normal, mm.
    pub first_position: [f64; 3],
    /// `ascending` when instance 1 is the first slice along the normal, else `descending`.
    pub instance_order: String,
    /// Lesion centre in this series (after breath-hold shift), LPS mm.
    pub lesion_centre_mm: [f64; 3],
    /// Volume of the primary reader's mask, mL.
    pub lesion_volume_ml: f64,
    /// Partial-volume estimate of the true lesion volume on this grid, mL.
    pub lesion_partial_volume_ml: f64,
    /// Segmentations of this series.
    pub segmentations: Vec<SegRecord>,
}

/// One lesion in the manifest: the ground truth behind the files.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRecord {
    /// Lesion id.
    pub case_id: String,
    /// Medical record number.
    pub patient_id: String,
    /// Site code.
    pub site: String,
    /// `benign` or `malignant`.
    pub label: String,
    /// Histologic subtype.
    pub subtype: String,
    /// `histopathology` or `imaging`.
    pub diagnosis_source: String,
    /// Grade when known.
    pub grade: Option<u8>,
    /// Age on the study date, as written in PatientAge.
    pub age_years: u32,
    /// `M` or `F`.
    pub sex: String,
    /// PatientBirthDate, ISO.
    pub birth_date: String,
    /// StudyDate, ISO.
    pub study_date: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// Largest diameter drawn for the lesion, cm.
    pub size_cm: f64,
    /// `left` or `right`.
    pub side: String,
    /// `upper`, `interpolar` or `lower`.
    pub pole: String,
    /// Appearance parameters the renderer used.
    pub appearance: Appearance,
}

/// The lesion's drawn appearance, for checking that images carry what was intended.
#[derive(Debug, Clone, Serialize)]
pub struct Appearance {
    /// Solid-tissue relative signal on T2.
    pub t2_solid: f64,
    /// Solid-tissue relative signal on T1C.
    pub t1c_solid: f64,
    /// Heterogeneity amplitude.
    pub texture: f64,
    /// Necrotic fraction.
    pub necrosis: f64,
    /// Macroscopic fat fraction.
    pub fat: f64,
    /// Central scar.
    pub scar: bool,
    /// Cystic fraction.
    pub cystic: f64,
    /// T2-dark pseudocapsule.
    pub capsule: bool,
}

/// Everything written for one lesion.
#[derive(Debug, Clone)]
pub struct LesionOutput {
    /// `labels.csv` row.
    pub label: LabelRow,
    /// Manifest case entry.
    pub case: CaseRecord,
    /// Manifest series entries (T2, then T1C).
    pub series: Vec<SeriesRecord>,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Why a lesion could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A DICOM object failed.
    #[error("case {case_id}: {source}")]
    Dicom { case_id: String, source: WriteError },
    /// A plain file failed.
    #[error("case {case_id}: writing {path}: {source}")]
    Io { case_id: String, path: PathBuf, source: std::io::Error },
}

fn uid(seed: u64, purpose: u64) -> String {
    let hi = mix64(seed ^ mix64(purpose));
    let lo = mix64(hi ^ 0xA5A5_A5A5);
    // Clear the top bits so the decimal stays within 39 digits and a UID within 64 characters.
    uid_from_u128((((hi as u128) << 64) | lo as u128) >> 2)
}

fn hhmmss(seconds: u32) -> String {
    format!("{:02}{:02}{:02}", seconds / 3600, (seconds / 60) % 60, seconds % 60)
}

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out).unwrap_or(p).to_string_lossy().into_owned()
}

/// Render and write one lesion under `out`.
pub fn write_lesion(spec: &LesionSpec, out: &Path) -> Result<LesionOutput, ExportError> {
    let site = spec.site;
    let (anatomy, rendered_pair) = phantom::render_lesion(spec);
    let patient = Patient {
        name: spec.patient_name.clone(),
        id: spec.patient_id.clone(),
        birth_date: renal_base::dicom_date(spec.birth_date),
        sex: spec.sex.to_string(),
        age: format!("{:03}Y", spec.age_years()),
        weight_kg: (spec.weight_kg * 10.0).round() / 10.0,
    };
    let study = Study {
        instance_uid: uid(spec.seed, 1),
        date: renal_base::dicom_date(spec.study_date),
        time: hhmmss(spec.study_time_s),
        // The accession number is how a pathology export is joined to the images: it equals
        // the lesion's case id (one lesion per study in this cohort).
        accession: spec.case_id.clone(),
        id: format!("{}", 1 + mix64(spec.seed ^ 2) % 99_999),
        description: "MRI ABDOMEN WITH AND WITHOUT CONTRAST".into(),
    };
    let equipment = Equipment {
        manufacturer: site.manufacturer.into(),
        model: site.model.into(),
        field_strength_t: site.field_t,
        institution: site.institution.into(),
        station: format!("{}MR{}", site.code, 1 + spec.index % 3),
        software_versions: site.software.into(),
    };
    let frame_of_reference = uid(spec.seed, 2);
    let study_dir =
        out.join(site.code).join(format!("P{:05}", spec.patient_number)).join(format!("ST{}", spec.lesion_of_patient));
    let nifti_dir = out.join("nifti").join(&spec.case_id);
    let io_err = |path: &Path, source| ExportError::Io { case_id: spec.case_id.clone(), path: path.into(), source };
    std::fs::create_dir_all(&nifti_dir).map_err(|e| io_err(&nifti_dir, e))?;

    let mut series_records = Vec::new();
    let mut files = 0;
    let mut bytes = 0u64;
    for (n, (role, rendered)) in [Role::T2, Role::T1c].into_iter().zip(rendered_pair).enumerate() {
        let protocol = if role == Role::T2 { &site.t2 } else { &site.t1c };
        let geometry = rendered.volume.geometry.clone();
        let series_number = if role == Role::T2 { 3 } else { 11 };
        let start_s = spec.study_time_s + 300 + 600 * n as u32;
        let mr = MrSeries {
            instance_uid: uid(spec.seed, 10 + n as u64),
            number: series_number,
            description: protocol.description.into(),
            protocol: protocol.protocol.into(),
            frame_of_reference_uid: frame_of_reference.clone(),
            scanning_sequence: protocol.scanning_sequence.into(),
            sequence_variant: protocol.sequence_variant.into(),
            scan_options: protocol.scan_options.into(),
            acquisition_type: protocol.acquisition.into(),
            repetition_time_ms: protocol.tr_ms,
            echo_time_ms: protocol.te_ms,
            flip_angle_deg: protocol.flip_deg,
            echo_train_length: protocol.echo_train,
            slice_thickness_mm: protocol.thickness_mm,
            contrast_agent: (role == Role::T1c).then(|| site.contrast_agent.to_string()),
            rescale: site.rescale,
            bits_stored: site.bits_stored,
            patient_position: site.patient_position.into(),
            number_descending: protocol.number_descending,
            date: study.date.clone(),
            time: hhmmss(start_s),
            sop_instance_uids: (0..geometry.dims[2])
                .map(|k| uid(spec.seed, 1000 * (n as u64 + 1) + k as u64))
                .collect(),
        };
        let series_dir = study_dir.join(format!("SE{series_number:03}"));
        let written = write_mr_series(&patient, &study, &equipment, &mr, &rendered.volume, &series_dir)
            .map_err(|source| ExportError::Dicom { case_id: spec.case_id.clone(), source })?;
        files += written.len();
        bytes += written.iter().map(|w| w.bytes).sum::<u64>();

        let mut segs = Vec::new();
        for (r, mask) in rendered.masks.iter().enumerate() {
            let reader = READERS[r];
            let seg_number = 100 + 10 * series_number + r as u32 + 1;
            let seg = Seg {
                sop_instance_uid: uid(spec.seed, 100 + 10 * n as u64 + r as u64),
                series_uid: uid(spec.seed, 200 + 10 * n as u64 + r as u64),
                series_number: seg_number,
                series_description: format!("SEG {} lesion {}", role.as_str(), reader),
                content_creator: reader.into(),
                algorithm_type: "MANUAL".into(),
                segment_label: "Lesion".into(),
                date: study.date.clone(),
                time: hhmmss(start_s + 3600),
                device_serial: "synth-0001".into(),
            };
            let seg_path = study_dir.join(format!("SE{seg_number:03}")).join("0001.dcm");
            let frames = write_seg(&patient, &study, &equipment, &mr, &seg, mask, &seg_path)
                .map_err(|source| ExportError::Dicom { case_id: spec.case_id.clone(), source })?;
            let nifti_path = nifti_dir.join(format!("{}_{}.nii.gz", role.as_str(), reader));
            let voxels = mask.count_nonzero();
            let g_voxel_ml = mask.geometry.voxel_volume_mm3() / 1000.0;
            let encoded = nifti::encode_gz(mask, &format!("{} {} {}", spec.case_id, role.as_str(), reader));
            std::fs::write(&nifti_path, &encoded).map_err(|e| io_err(&nifti_path, e))?;
            files += 2;
            bytes += encoded.len() as u64 + std::fs::metadata(&seg_path).map(|m| m.len()).unwrap_or(0);
            segs.push(SegRecord {
                reader: reader.into(),
                path: rel(out, &seg_path),
                seg_series_uid: seg.series_uid.clone(),
                sop_instance_uid: seg.sop_instance_uid.clone(),
                referenced_series_uid: mr.instance_uid.clone(),
                frames,
                nifti: rel(out, &nifti_path),
                voxels,
                volume_ml: voxels as f64 * g_voxel_ml,
                dice_vs_r1: if r == 0 { 1.0 } else { dice(&rendered.masks[0].data, &mask.data) },
            });
        }
        let g = &geometry;
        series_records.push(SeriesRecord {
            case_id: spec.case_id.clone(),
            site: site.code.into(),
            role: role.as_str().into(),
            path: rel(out, &series_dir),
            series_uid: mr.instance_uid.clone(),
            series_description: mr.description.clone(),
            rows: g.dims[1],
            columns: g.dims[0],
            slices: g.dims[2],
            pixel_spacing: [g.spacing_mm[1], g.spacing_mm[0]],
            slice_spacing: g.spacing_mm[2],
            slice_thickness: protocol.thickness_mm,
            image_orientation: [g.row_dir[0], g.row_dir[1], g.row_dir[2], g.col_dir[0], g.col_dir[1], g.col_dir[2]],
            slice_normal: g.normal,
            first_position: g.origin_mm,
            instance_order: if protocol.number_descending { "descending" } else { "ascending" }.into(),
            lesion_centre_mm: rendered.lesion_centre_mm,
            lesion_volume_ml: segs[0].volume_ml,
            lesion_partial_volume_ml: rendered.partial_volume_ml,
            segmentations: segs,
        });
    }

    let look = &anatomy.lesion.look;
    let label = if spec.malignant { "malignant" } else { "benign" };
    Ok(LesionOutput {
        label: LabelRow {
            accession: spec.case_id.clone(),
            patient_id: spec.patient_id.clone(),
            site: site.code.into(),
            label: label.into(),
            subtype: spec.subtype.as_str().into(),
            diagnosis_source: spec.diagnosis.source().into(),
            diagnosis_method: spec.diagnosis.method().into(),
            grade: spec.grade.map(|g| g.to_string()).unwrap_or_default(),
            segmenter: READERS[..spec.segmenters].join(";"),
        },
        case: CaseRecord {
            case_id: spec.case_id.clone(),
            patient_id: spec.patient_id.clone(),
            site: site.code.into(),
            label: label.into(),
            subtype: spec.subtype.as_str().into(),
            diagnosis_source: spec.diagnosis.source().into(),
            grade: spec.grade,
            age_years: spec.age_years(),
            sex: spec.sex.to_string(),
            birth_date: renal_base::iso_date(spec.birth_date),
            study_date: renal_base::iso_date(spec.study_date),
            study_uid: study.instance_uid.clone(),
            size_cm: spec.size_cm,
            side: format!("{:?}", spec.side).to_lowercase(),
            pole: spec.pole.as_str().into(),
            appearance: Appearance {
                t2_solid: look.solid[0],
                t1c_solid: look.solid[1],
                texture: look.texture,
                necrosis: look.necrosis,
                fat: look.fat,
                scar: look.scar,
                cystic: look.cystic,
                capsule: look.capsule,
            },
        },
        series: series_records,
        files,
        bytes,
    })
}
