//! Reading what scanners export back into volumes: every synthetic series of all five sites
//! (axial, coronal, oblique; ascending and descending numbering) stacks into the grid the
//! manifest describes, and every SEG becomes the same mask as the independent NIfTI copy the
//! generator wrote (Dice 1 through patient coordinates). Broken series are refused with the
//! reason.

use renal_dicom::read::{read_seg_mask, read_series, ReadError};
use renal_imaging::{dice, nifti, Volume};
use renal_synth::{generate, SynthConfig};

fn files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// `other` sampled at `onto`'s voxel centres (nearest voxel), through patient space.
fn on_grid(other: &Volume<f32>, onto: &Volume<u8>) -> Vec<u8> {
    let g = &onto.geometry;
    let mut out = vec![0u8; g.len()];
    for k in 0..g.dims[2] {
        for j in 0..g.dims[1] {
            for i in 0..g.dims[0] {
                let ijk = other.geometry.to_index(g.to_patient([i as f64, j as f64, k as f64]));
                let r: Vec<f64> = ijk.iter().map(|v| v.round()).collect();
                let inside = (0..3).all(|a| r[a] >= 0.0 && (r[a] as usize) < other.geometry.dims[a]);
                if inside && other.at(r[0] as usize, r[1] as usize, r[2] as usize) > 0.5 {
                    out[g.index(i, j, k)] = 1;
                }
            }
        }
    }
    out
}

#[test]
fn every_site_series_and_seg_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut sites = std::collections::BTreeSet::new();
    let mut last = None;
    // One lesion per site, each in its own folder (the study's proportions would give a
    // five-lesion cohort two sites); three readers each, so every SEG path is exercised.
    for site in ["HUP", "MAY", "TCIA", "SXH", "PHH"] {
        let root = dir.path().join(site);
        let cfg = SynthConfig {
            lesions: 1,
            seed: 12,
            sites: vec![site.into()],
            multi_segmenter_fraction: 1.0,
            ..SynthConfig::default()
        };
        generate(&cfg, &root, &|_| {}).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        for s in manifest["series"].as_array().unwrap() {
            let series = read_series(&files(&root.join(s["path"].as_str().unwrap()))).unwrap();
            let g = &series.volume.geometry;
            let dims = [
                s["columns"].as_u64().unwrap() as usize,
                s["rows"].as_u64().unwrap() as usize,
                s["slices"].as_u64().unwrap() as usize,
            ];
            assert_eq!(g.dims, dims, "{}", s["path"]);
            assert!((g.spacing_mm[2] - s["slice_spacing"].as_f64().unwrap()).abs() < 1e-3);
            assert_eq!(series.sop_instance_uids.len(), dims[2]);
            for seg in s["segmentations"].as_array().unwrap() {
                let mask = read_seg_mask(&std::fs::read(root.join(seg["path"].as_str().unwrap())).unwrap(), g).unwrap();
                let reference =
                    nifti::decode(&std::fs::read(root.join(seg["nifti"].as_str().unwrap())).unwrap()).unwrap().volume;
                let d = dice(&mask.data, &on_grid(&reference, &mask));
                assert!(d > 0.999, "{}: Dice {d}", seg["path"]);
                assert_eq!(mask.count_nonzero() as u64, seg["voxels"].as_u64().unwrap());
            }
            sites.insert(s["site"].as_str().unwrap().to_string());
        }
        last = Some((root, manifest));
    }
    assert_eq!(sites.len(), 5, "all five sites' protocols exercised");
    let (root, manifest) = last.unwrap();

    // Broken series: a repeated slice, a missing one, nothing at all, junk bytes.
    let first = &manifest["series"][0];
    let good = files(&root.join(first["path"].as_str().unwrap()));
    let mut twice = good.clone();
    twice.push(good[3].clone());
    assert!(matches!(read_series(&twice), Err(ReadError::Duplicate { .. })));
    let mut holed = good.clone();
    let series = read_series(&good).unwrap();
    let middle = series.sop_instance_uids[good.len() / 2].clone();
    holed.retain(|b| !String::from_utf8_lossy(b).contains(&middle));
    assert_eq!(holed.len(), good.len() - 1);
    assert!(matches!(read_series(&holed), Err(ReadError::Gap { .. })), "{:?}", read_series(&holed).err());
    assert_eq!(read_series(&[]).unwrap_err(), ReadError::Empty);
    assert!(matches!(read_series(&[b"junk".to_vec()]), Err(ReadError::Unreadable { index: 0, .. })));
    let cut = good[0][..good[0].len() - 1000].to_vec();
    assert!(read_series(&[cut]).is_err(), "truncated pixel data is refused");
}

#[test]
fn a_segmentation_without_frames_is_an_empty_mask() {
    // A lesion smaller than the gap between slices leaves a SEG with no frame (the 1,162-lesion
    // pipeline bench met two): that is a mask marking no voxel, not an unreadable series.
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let cfg = SynthConfig { lesions: 1, seed: 3, sites: vec!["MAY".into()], ..SynthConfig::default() };
    generate(&cfg, &root, &|_| {}).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let s = &manifest["series"][0];
    let series = read_series(&files(&root.join(s["path"].as_str().unwrap()))).unwrap();
    let seg = root.join(s["segmentations"][0]["path"].as_str().unwrap());
    let geometry = &series.volume.geometry;
    assert!(read_seg_mask(&std::fs::read(&seg).unwrap(), geometry).is_ok());
    let mut obj = dicom_object::open_file(&seg).unwrap();
    obj.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("0")));
    let empty = dir.path().join("empty-seg.dcm");
    obj.write_to_file(&empty).unwrap();
    assert_eq!(read_seg_mask(&std::fs::read(&empty).unwrap(), geometry).unwrap_err(), ReadError::EmptyMask);
}
