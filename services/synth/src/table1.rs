//! The study's cohort (Xi et al. 2020, Table 1 and Methods), as numbers the sampler draws from.
//!
//! Counts are the published ones; the sampler turns them into probabilities, so a cohort of
//! any size has the same expected mix. Where the paper gives only a median and range, the
//! distribution's shape is our choice and is stated next to it.

/// Lesions per institution (Methods: 913 HUP, 118 MAY, 56 TCIA, 25 SXH, 50 PHH; 1,162 in all).
pub const SITE_LESIONS: [(&str, usize); 5] = [("HUP", 913), ("MAY", 118), ("TCIA", 56), ("SXH", 25), ("PHH", 50)];

/// Benign and malignant lesion counts.
pub const BENIGN: usize = 507;
/// See [`BENIGN`].
pub const MALIGNANT: usize = 655;

/// Age in years: median and range by class. Shape (ours): normal with SD [`AGE_SD_YEARS`],
/// centred on the median, redrawn outside the range.
pub const AGE_BENIGN: (f64, f64, f64) = (53.0, 5.0, 90.0);
/// See [`AGE_BENIGN`].
pub const AGE_MALIGNANT: (f64, f64, f64) = (61.0, 18.0, 92.0);
/// Spread of age within a class (our choice; puts the published ranges near ±3 SD).
pub const AGE_SD_YEARS: f64 = 13.0;

/// Male counts by class (151 of 507 benign, 441 of 655 malignant).
pub const MALE_BENIGN: usize = 151;
/// See [`MALE_BENIGN`].
pub const MALE_MALIGNANT: usize = 441;

/// Tumour size (largest diameter, cm): median and range by class. Shape (ours): log-normal
/// with log-SD [`SIZE_LOG_SD`], redrawn outside the range.
pub const SIZE_BENIGN_CM: (f64, f64, f64) = (2.2, 0.6, 14.2);
/// See [`SIZE_BENIGN_CM`].
pub const SIZE_MALIGNANT_CM: (f64, f64, f64) = (3.4, 0.2, 18.7);
/// Log-scale spread of size (our choice).
pub const SIZE_LOG_SD: f64 = 0.55;

/// Left-sided counts by class (259 benign, 311 malignant).
pub const LEFT_BENIGN: usize = 259;
/// See [`LEFT_BENIGN`].
pub const LEFT_MALIGNANT: usize = 311;

/// Location counts (upper, interpolar, lower) by class.
pub const LOCATION_BENIGN: [usize; 3] = [158, 210, 139];
/// See [`LOCATION_BENIGN`].
pub const LOCATION_MALIGNANT: [usize; 3] = [225, 255, 175];

/// Approach to diagnosis (surgical excision, biopsy, imaging) by class.
pub const DIAGNOSIS_BENIGN: [usize; 3] = [161, 1, 345];
/// See [`DIAGNOSIS_BENIGN`].
pub const DIAGNOSIS_MALIGNANT: [usize; 3] = [637, 18, 0];

/// Malignant subtypes with counts.
pub const MALIGNANT_SUBTYPES: [(Subtype, usize); 6] = [
    (Subtype::ClearCell, 425),
    (Subtype::Papillary, 152),
    (Subtype::Chromophobe, 32),
    (Subtype::ClearCellPapillary, 30),
    (Subtype::MultilocularCystic, 7),
    (Subtype::Unclassified, 9),
];

/// Benign subtypes with counts.
pub const BENIGN_SUBTYPES: [(Subtype, usize); 5] = [
    (Subtype::Oncocytoma, 92),
    (Subtype::Angiomyolipoma, 406),
    (Subtype::MixedEpithelialStromal, 3),
    (Subtype::MetanephricAdenoma, 3),
    (Subtype::RenalAdenoma, 3),
];

/// Fuhrman/ISUP grade counts for malignant lesions: grades 1-4, then unavailable.
pub const GRADES: [usize; 5] = [66, 304, 160, 35, 90];

/// Histologic subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subtype {
    /// Clear cell renal cell carcinoma.
    ClearCell,
    /// Papillary RCC.
    Papillary,
    /// Chromophobe RCC.
    Chromophobe,
    /// Clear cell papillary RCC.
    ClearCellPapillary,
    /// Multilocular cystic RCC.
    MultilocularCystic,
    /// Unclassified RCC.
    Unclassified,
    /// Oncocytoma (benign).
    Oncocytoma,
    /// Angiomyolipoma (benign).
    Angiomyolipoma,
    /// Mixed epithelial and stromal tumour (benign).
    MixedEpithelialStromal,
    /// Metanephric adenoma (benign).
    MetanephricAdenoma,
    /// Renal adenoma (benign).
    RenalAdenoma,
}

impl Subtype {
    /// True for the RCC subtypes.
    pub fn is_malignant(self) -> bool {
        MALIGNANT_SUBTYPES.iter().any(|(s, _)| *s == self)
    }

    /// The name used in `labels.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subtype::ClearCell => "clear_cell_rcc",
            Subtype::Papillary => "papillary_rcc",
            Subtype::Chromophobe => "chromophobe_rcc",
            Subtype::ClearCellPapillary => "clear_cell_papillary_rcc",
            Subtype::MultilocularCystic => "multilocular_cystic_rcc",
            Subtype::Unclassified => "unclassified_rcc",
            Subtype::Oncocytoma => "oncocytoma",
            Subtype::Angiomyolipoma => "angiomyolipoma",
            Subtype::MixedEpithelialStromal => "mixed_epithelial_stromal_tumor",
            Subtype::MetanephricAdenoma => "metanephric_adenoma",
            Subtype::RenalAdenoma => "renal_adenoma",
        }
    }
}
