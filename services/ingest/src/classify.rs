//! Which series is the T2 and which the T1 post-contrast: per-site rules on SeriesDescription
//! plus sequence parameters.

use crate::instance::MrInfo;
use renal_messages::Role;
use serde::{Deserialize, Serialize};

/// Classification rules (one set per site; the defaults fit the common vendors' names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Case-insensitive substrings of SeriesDescription that mark a T2-weighted series.
    pub t2_description: Vec<String>,
    /// Substrings that mark a post-contrast series.
    pub post_contrast_description: Vec<String>,
    /// Substrings that exclude a series whatever else matches (localisers, diffusion, maps).
    pub exclude_description: Vec<String>,
    /// Shortest echo time of a T2-weighted series, ms.
    pub t2_min_echo_time_ms: f64,
    /// Longest echo time of a T1-weighted gradient-echo series, ms.
    pub t1_max_echo_time_ms: f64,
}

impl Default for Rules {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Rules {
            t2_description: v(&["t2", "haste", "ssfse", "frfse", "tse"]),
            post_contrast_description: v(&["post", "+c", "gad", "contrast", "nephro", "delay", "venous", "portal"]),
            exclude_description: v(&[
                "localizer",
                "localiser",
                "scout",
                "survey",
                "dwi",
                "adc",
                "diffusion",
                "map",
                "sub",
            ]),
            t2_min_echo_time_ms: 60.0,
            t1_max_echo_time_ms: 10.0,
        }
    }
}

fn has(haystack: &str, needles: &[String]) -> bool {
    needles.iter().any(|n| haystack.contains(&n.to_lowercase()))
}

/// T2, T1C, or neither. A T2 needs a long echo and a T2 name (or a spin-echo long-echo
/// acquisition with no T1 name); a T1C needs a short echo and either a contrast agent in the
/// header or a post-contrast name.
pub fn classify(info: &MrInfo, rules: &Rules) -> Option<Role> {
    let d = info.description.to_lowercase();
    if has(&d, &rules.exclude_description) {
        return None;
    }
    let te = info.echo_time_ms?;
    let named_t1 = d.contains("t1") || d.contains("vibe") || d.contains("lava") || d.contains("thrive");
    if te >= rules.t2_min_echo_time_ms && !named_t1 {
        let spin_echo = info.scanning_sequence.split('\\').any(|s| s == "SE");
        if has(&d, &rules.t2_description) || spin_echo {
            return Some(Role::T2);
        }
    }
    if te <= rules.t1_max_echo_time_ms && (info.contrast || has(&d, &rules.post_contrast_description)) {
        return Some(Role::T1C);
    }
    None
}
