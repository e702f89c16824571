//! What each fuzz target does with its bytes, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`) and the short run in the suite (`tests/fuzz_smoke.rs`). Every input
//! must end in `Ok` or an error: a panic, a hang or an allocation beyond libFuzzer's memory
//! limit is a finding.

/// Split `data` into length-prefixed parts (a little-endian u32 length, then that many bytes;
/// a length past the end takes the rest), at most `max` of them.
pub fn parts(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 4 && out.len() < max {
        let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let rest = &data[4..];
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// Length-prefix `parts` the way [`parts`] reads them (for seeds).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A file from a drop folder or a C-STORE: parsed, then de-identified and read back (ingest's
/// intake).
pub fn instance(data: &[u8]) {
    let _ = renal_ingest::instance::parse(data);
    let profile = renal_ingest::deid::Profile {
        keys: renal_base::keys::Keys::new(b"fuzz"),
        private_creators: Default::default(),
    };
    let _ = renal_ingest::deid::intake(data, "FUZ", &profile);
}

/// A series' instances (up to 4 length-prefixed parts) decoded and stacked into a volume, as
/// preprocess does with a series manifest's instances.
pub fn series(data: &[u8]) {
    let instances: Vec<Vec<u8>> = parts(data, 4).into_iter().map(<[u8]>::to_vec).collect();
    let _ = renal_dicom::read::read_series(&instances);
}

/// A SEG read onto the grid of a series: the first part is one MR instance (its grid, as a
/// one-slice series), the second the SEG.
pub fn seg(data: &[u8]) {
    let p = parts(data, 2);
    if p.len() < 2 {
        return;
    }
    if let Ok(series) = renal_dicom::read::read_series(&[p[0].to_vec()]) {
        let _ = renal_dicom::read::read_seg_mask(p[1], &series.volume.geometry);
    }
}

/// A message payload, as each consumer decodes it, and a labels CSV, as label intake parses it.
pub fn message(data: &[u8]) {
    use renal_messages::*;
    let _ = CaseV1::decode(data);
    let _ = LesionV1::decode(data);
    let _ = FeaturesV1::decode(data);
    let _ = ScoresV1::decode(data);
    let _ = PredictionV1::decode(data);
    let _ = LabelV1::decode(data);
    let _ = ModelEventV1::decode(data);
    let _ = DeadLetterV1::decode(data);
    let _ = ReplayV1::decode(data);
    let _ = renal_labels::parse(data, Some(&renal_base::keys::Keys::new(b"fuzz")));
}
