//! `[preprocess]`: where blobs live, and how each case is preprocessed.

use renal_imaging::composite::ChannelOrder;
use renal_imaging::n4::N4Settings;
use serde::Deserialize;

/// `[preprocess]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Blob store shared with ingest: a folder or `s3://bucket[/prefix]`.
    pub blob_store: String,
    /// `[preprocess.settings]`; every field has a default.
    #[serde(default)]
    pub settings: PreprocessSettings,
}

/// How each case is preprocessed (`[preprocess.settings]`; every field has a default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessSettings {
    /// Side of the square composites, pixels (the study: 200).
    pub composite_size: usize,
    /// Channel order of the composites.
    pub channel_order: ChannelOrder,
    /// Reader whose masks are primary (the others feed the inter-reader evaluation).
    pub primary_reader: String,
    /// N4 fit subsampling.
    pub n4_shrink_factor: usize,
    /// N4 iterations per level.
    pub n4_iterations: Vec<usize>,
    /// N4 convergence threshold.
    pub n4_convergence_threshold: f64,
    /// Histogram levels for T2 -> T1C matching (the study: 128).
    pub histogram_levels: usize,
    /// Match points (the study: 7).
    pub match_points: usize,
}

impl Default for PreprocessSettings {
    fn default() -> Self {
        let n4 = N4Settings::default();
        PreprocessSettings {
            composite_size: 200,
            channel_order: ChannelOrder::Anatomical,
            primary_reader: "R1".into(),
            n4_shrink_factor: n4.shrink_factor,
            n4_iterations: n4.iterations,
            n4_convergence_threshold: n4.convergence_threshold,
            histogram_levels: 128,
            match_points: 7,
        }
    }
}

impl PreprocessSettings {
    /// The N4 settings these describe.
    pub fn n4(&self) -> N4Settings {
        N4Settings {
            shrink_factor: self.n4_shrink_factor,
            iterations: self.n4_iterations.clone(),
            convergence_threshold: self.n4_convergence_threshold,
            ..N4Settings::default()
        }
    }
}
