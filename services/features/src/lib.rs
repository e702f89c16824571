//! The radiomics stage. [`settings`] holds the extraction settings (the study's 32-setting
//! grid by default) and their hash, [`extract`] turns a lesion's volume and mask into one
//! feature set per setting (crop, IBSI resampling, discretisation, [`renal_radiomics`]),
//! [`table`] lays those out as the `features` table's Arrow rows, and [`worker`] runs it on
//! `renal.lesions`, committing one Parquet file per lesion revision and announcing it on
//! `renal.features`.

pub mod extract;
pub mod settings;
pub mod table;
pub mod worker;
