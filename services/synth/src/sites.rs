//! The five institutions' scanners and protocols.
//!
//! Each site differs the way real sites do: vendor and field strength (and so bias-field
//! strength and SNR), matrix and voxel size, acquisition plane (axial, coronal, oblique axial),
//! slice gaps or overlaps, instance numbering direction, stored intensity range, rescale tags,
//! and its own SeriesDescription naming. Values are plausible for each vendor's abdominal
//! protocols; none is copied from a real institution.

use rand::Rng;

/// Acquisition plane of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plane {
    /// Transverse slices, normal towards the head.
    Axial,
    /// Transverse slices tilted about the left-right axis by this many degrees.
    ObliqueAxial(f64),
    /// Coronal slices, normal towards the back.
    Coronal,
}

/// One series' protocol.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// SeriesDescription, in the site's convention.
    pub description: &'static str,
    /// ProtocolName.
    pub protocol: &'static str,
    /// Acquisition plane.
    pub plane: Plane,
    /// Columns, rows.
    pub matrix: (usize, usize),
    /// In-plane pixel size, mm (square pixels).
    pub pixel_mm: f64,
    /// SliceThickness, mm.
    pub thickness_mm: f64,
    /// SpacingBetweenSlices, mm (larger than thickness: gap; smaller: overlap).
    pub spacing_mm: f64,
    /// `2D` or `3D`.
    pub acquisition: &'static str,
    /// ScanningSequence.
    pub scanning_sequence: &'static str,
    /// SequenceVariant.
    pub sequence_variant: &'static str,
    /// ScanOptions.
    pub scan_options: &'static str,
    /// RepetitionTime, ms.
    pub tr_ms: f64,
    /// EchoTime, ms.
    pub te_ms: f64,
    /// FlipAngle, degrees.
    pub flip_deg: f64,
    /// EchoTrainLength.
    pub echo_train: u32,
    /// Instance 1 is the most superior / anterior slice.
    pub number_descending: bool,
}

/// A site: scanner, protocols, and the traits that make its images its own.
#[derive(Debug, Clone)]
pub struct SiteProfile {
    /// Short code used in case ids, folders and labels.
    pub code: &'static str,
    /// InstitutionName.
    pub institution: &'static str,
    /// Lesions this site contributed to the study.
    pub study_lesions: usize,
    /// Manufacturer.
    pub manufacturer: &'static str,
    /// ManufacturerModelName.
    pub model: &'static str,
    /// MagneticFieldStrength, T.
    pub field_t: f64,
    /// SoftwareVersions.
    pub software: &'static str,
    /// T2-weighted protocol.
    pub t2: Protocol,
    /// T1 post-contrast protocol.
    pub t1c: Protocol,
    /// ContrastBolusAgent on the T1C series.
    pub contrast_agent: &'static str,
    /// Stored value of relative signal 1.0.
    pub intensity_scale: f64,
    /// Standard deviation of each quadrature noise channel, relative to signal 1.0.
    pub noise_sigma: f64,
    /// Standard deviation of the log bias field over the body.
    pub bias_strength: f64,
    /// (slope, intercept) written as Rescale tags, when the vendor writes them.
    pub rescale: Option<(f64, f64)>,
    /// BitsStored.
    pub bits_stored: u16,
    /// PatientPosition.
    pub patient_position: &'static str,
    /// Lesions' solid enhancement on the post-contrast series relative to the subtype's usual
    /// (1: the usual; below 1: a later phase, see `drift`).
    pub t1c_enhancement: f64,
}

impl SiteProfile {
    /// A medical record number in this site's format.
    pub fn patient_id(&self, rng: &mut impl Rng) -> String {
        match self.code {
            "HUP" => format!("{:08}", rng.random_range(10_000_000..99_999_999u32)),
            "MAY" => format!("MC{:07}", rng.random_range(0..9_999_999u32)),
            "TCIA" => format!("TCGA-{}{}-{:04}", letter(rng), letter(rng), rng.random_range(0..9999u32)),
            _ => format!("{}{:06}", self.code, rng.random_range(0..999_999u32)),
        }
    }
}

fn letter(rng: &mut impl Rng) -> char {
    (b'A' + rng.random_range(0..26u8)) as char
}

/// The site with this code, if any (case-insensitive).
pub fn site(code: &str) -> Option<&'static SiteProfile> {
    SITES.iter().find(|s| s.code.eq_ignore_ascii_case(code))
}

/// All site codes in the study's order.
pub fn site_codes() -> Vec<&'static str> {
    SITES.iter().map(|s| s.code).collect()
}

/// The five sites.
pub static SITES: std::sync::LazyLock<Vec<SiteProfile>> = std::sync::LazyLock::new(|| {
    vec![
        SiteProfile {
            code: "HUP",
            institution: "Synthetic University Hospital A",
            study_lesions: 913,
            manufacturer: "SIEMENS",
            model: "Avanto",
            field_t: 1.5,
            software: "syngo MR B17",
            t2: Protocol {
                description: "T2_HASTE_AX_BH",
                protocol: "T2_HASTE_AX_BH",
                plane: Plane::Axial,
                matrix: (256, 208),
                pixel_mm: 1.484375,
                thickness_mm: 6.0,
                spacing_mm: 7.2,
                acquisition: "2D",
                scanning_sequence: "SE",
                sequence_variant: "SK\\SP",
                scan_options: "PFP\\SAT1",
                tr_ms: 1200.0,
                te_ms: 92.0,
                flip_deg: 150.0,
                echo_train: 128,
                number_descending: true,
            },
            t1c: Protocol {
                description: "VIBE_FS_AX_POST_NEPHRO",
                protocol: "t1_vibe_fs_tra_bh_post",
                plane: Plane::Axial,
                matrix: (256, 192),
                pixel_mm: 1.484375,
                thickness_mm: 4.0,
                spacing_mm: 4.0,
                acquisition: "3D",
                scanning_sequence: "GR",
                sequence_variant: "SP\\SK",
                scan_options: "FS",
                tr_ms: 4.3,
                te_ms: 1.9,
                flip_deg: 10.0,
                echo_train: 1,
                number_descending: true,
            },
            contrast_agent: "Gadavist",
            intensity_scale: 1500.0,
            noise_sigma: 0.030,
            bias_strength: 0.12,
            rescale: None,
            bits_stored: 12,
            patient_position: "HFS",
            t1c_enhancement: 1.0,
        },
        SiteProfile {
            code: "MAY",
            institution: "Synthetic Clinic B",
            study_lesions: 118,
            manufacturer: "GE MEDICAL SYSTEMS",
            model: "Signa HDxt",
            field_t: 3.0,
            software: "16\\LX\\MR Software release:HD16.0_V02",
            t2: Protocol {
                description: "AX SSFSE T2",
                protocol: "ABD_KIDNEY/3",
                plane: Plane::Axial,
                matrix: (256, 256),
                pixel_mm: 1.5625,
                thickness_mm: 5.0,
                spacing_mm: 6.0,
                acquisition: "2D",
                scanning_sequence: "SE",
                sequence_variant: "SK\\SS",
                scan_options: "FAST_GEMS\\SS_GEMS",
                tr_ms: 1800.0,
                te_ms: 86.0,
                flip_deg: 90.0,
                echo_train: 1,
                number_descending: false,
            },
            t1c: Protocol {
                description: "COR LAVA POST",
                protocol: "ABD_KIDNEY/3",
                plane: Plane::Coronal,
                matrix: (256, 256),
                pixel_mm: 1.5625,
                thickness_mm: 4.4,
                spacing_mm: 3.0,
                acquisition: "3D",
                scanning_sequence: "GR",
                sequence_variant: "SS\\SK",
                scan_options: "FAST_GEMS\\EDR_GEMS\\ZIP2_GEMS",
                tr_ms: 3.9,
                te_ms: 1.8,
                flip_deg: 12.0,
                echo_train: 1,
                number_descending: false,
            },
            contrast_agent: "MULTIHANCE",
            intensity_scale: 2600.0,
            noise_sigma: 0.025,
            bias_strength: 0.30,
            rescale: None,
            bits_stored: 12,
            patient_position: "FFS",
            t1c_enhancement: 1.0,
        },
        SiteProfile {
            code: "TCIA",
            institution: "Synthetic Archive Collection C",
            study_lesions: 56,
            manufacturer: "Philips Medical Systems",
            model: "Achieva",
            field_t: 1.5,
            software: "3.2.1\\3.2.1.1",
            t2: Protocol {
                description: "T2W_TSE_COR",
                protocol: "WIP T2W_TSE_COR",
                plane: Plane::Coronal,
                matrix: (256, 256),
                pixel_mm: 1.40625,
                thickness_mm: 6.0,
                spacing_mm: 6.6,
                acquisition: "2D",
                scanning_sequence: "SE",
                sequence_variant: "SK",
                scan_options: "",
                tr_ms: 1500.0,
                te_ms: 100.0,
                flip_deg: 90.0,
                echo_train: 64,
                number_descending: true,
            },
            t1c: Protocol {
                description: "T1W_THRIVE_AX_POST",
                protocol: "WIP T1W_THRIVE_AX_POST",
                plane: Plane::Axial,
                matrix: (224, 224),
                pixel_mm: 1.696428,
                thickness_mm: 4.0,
                spacing_mm: 4.0,
                acquisition: "3D",
                scanning_sequence: "GR",
                sequence_variant: "SP",
                scan_options: "FS",
                tr_ms: 4.1,
                te_ms: 2.0,
                flip_deg: 10.0,
                echo_train: 1,
                number_descending: false,
            },
            contrast_agent: "Magnevist",
            intensity_scale: 1100.0,
            noise_sigma: 0.040,
            bias_strength: 0.18,
            rescale: Some((1.53419, 0.0)),
            bits_stored: 12,
            patient_position: "HFS",
            t1c_enhancement: 1.0,
        },
        SiteProfile {
            code: "SXH",
            institution: "Synthetic Hospital D",
            study_lesions: 25,
            manufacturer: "SIEMENS",
            model: "Skyra",
            field_t: 3.0,
            software: "syngo MR E11",
            t2: Protocol {
                description: "t2_haste_tra_mbh",
                protocol: "t2_haste_tra_mbh",
                plane: Plane::ObliqueAxial(8.0),
                matrix: (256, 208),
                pixel_mm: 1.40625,
                thickness_mm: 5.0,
                spacing_mm: 6.0,
                acquisition: "2D",
                scanning_sequence: "SE",
                sequence_variant: "SK\\SP",
                scan_options: "PFP\\FS",
                tr_ms: 1400.0,
                te_ms: 95.0,
                flip_deg: 160.0,
                echo_train: 104,
                number_descending: true,
            },
            t1c: Protocol {
                description: "t1_vibe_fs_tra_caipi_post",
                protocol: "t1_vibe_fs_tra_caipi_post",
                plane: Plane::Axial,
                matrix: (256, 176),
                pixel_mm: 1.484375,
                thickness_mm: 3.5,
                spacing_mm: 3.5,
                acquisition: "3D",
                scanning_sequence: "GR",
                sequence_variant: "SP\\SK",
                scan_options: "FS",
                tr_ms: 3.97,
                te_ms: 1.29,
                flip_deg: 9.0,
                echo_train: 1,
                number_descending: true,
            },
            contrast_agent: "Gadovist",
            intensity_scale: 2000.0,
            noise_sigma: 0.020,
            bias_strength: 0.35,
            rescale: None,
            bits_stored: 12,
            patient_position: "HFS",
            t1c_enhancement: 1.0,
        },
        SiteProfile {
            code: "PHH",
            institution: "Synthetic Hospital E",
            study_lesions: 50,
            manufacturer: "GE MEDICAL SYSTEMS",
            model: "Discovery MR750",
            field_t: 3.0,
            software: "24\\LX\\MR Software release:DV24.0_R01",
            t2: Protocol {
                description: "Ax FRFSE T2 FS",
                protocol: "RENAL MASS",
                plane: Plane::Axial,
                matrix: (256, 224),
                pixel_mm: 1.484375,
                thickness_mm: 6.0,
                spacing_mm: 7.0,
                acquisition: "2D",
                scanning_sequence: "SE",
                sequence_variant: "SK\\OSP",
                scan_options: "FAST_GEMS\\FS",
                tr_ms: 6000.0,
                te_ms: 85.0,
                flip_deg: 110.0,
                echo_train: 18,
                number_descending: false,
            },
            t1c: Protocol {
                description: "Ax LAVA-Flex +C",
                protocol: "RENAL MASS",
                plane: Plane::Axial,
                matrix: (256, 224),
                pixel_mm: 1.484375,
                thickness_mm: 5.0,
                spacing_mm: 3.5,
                acquisition: "3D",
                scanning_sequence: "GR",
                sequence_variant: "SS\\SK",
                scan_options: "FAST_GEMS\\EDR_GEMS",
                tr_ms: 4.1,
                te_ms: 1.7,
                flip_deg: 12.0,
                echo_train: 1,
                number_descending: false,
            },
            contrast_agent: "OMNISCAN",
            intensity_scale: 3200.0,
            noise_sigma: 0.035,
            bias_strength: 0.28,
            rescale: None,
            bits_stored: 12,
            patient_position: "FFS",
            t1c_enhancement: 1.0,
        },
    ]
});
