//! `renal n4`, `renal histmatch` and `renal preprocess` on files: they correct what they should,
//! write valid outputs on the input's grid, take masks on other grids and in other formats, and
//! refuse bad input with a clear message and exit status 1.

use renal_e2e::renal;
use renal_imaging::{nifti, Volume};
use renal_synth::bias_phantom::{bias_phantom, region_cv};

#[test]
fn n4_and_histmatch_on_files() {
    let dir = tempfile::tempdir().unwrap();
    let at = |n: &str| dir.path().join(n).display().to_string();
    let p = bias_phantom([96, 96, 12], [4.0, 4.0, 12.0], 4.0, 3);
    std::fs::write(at("img.nii.gz"), nifti::encode_gz(&p.image, "t")).unwrap();
    std::fs::write(at("mask.nii"), nifti::encode(&p.body, "t")).unwrap();

    let out = renal(&[
        "n4",
        "--image",
        &at("img.nii.gz"),
        "--mask",
        &at("mask.nii"),
        "--out",
        &at("n4.nii.gz"),
        "--field",
        &at("field.nii.gz"),
        "--shrink",
        "2",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let corrected = nifti::decode(&std::fs::read(at("n4.nii.gz")).unwrap()).unwrap().volume;
    assert_eq!(corrected.geometry.dims, p.image.geometry.dims);
    let (before, after) = (region_cv(&p.image.data, &p.tissue), region_cv(&corrected.data, &p.tissue));
    assert!(after < 0.35 * before, "tissue CV {before} -> {after}");
    assert!(std::fs::metadata(at("field.nii.gz")).unwrap().len() > 0);

    let out =
        renal(&["histmatch", "--image", &at("n4.nii.gz"), "--reference", &at("img.nii.gz"), "--out", &at("hm.nii")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let matched = nifti::decode(&std::fs::read(at("hm.nii")).unwrap()).unwrap().volume;
    let max = |d: &[f32]| d.iter().fold(f32::MIN, |m, &v| m.max(v));
    assert!((max(&matched.data) - max(&p.image.data)).abs() < 1e-3 * max(&p.image.data), "maxima match");

    // Bad input: a missing file, a mask outside the image, a constant image, a wrong extension.
    let mut far = p.body.clone();
    far.geometry.origin_mm[2] += 1000.0;
    std::fs::write(at("far_mask.nii"), nifti::encode(&far, "t")).unwrap();
    let flat = Volume { geometry: p.image.geometry.clone(), data: vec![7.0f32; p.image.data.len()] };
    std::fs::write(at("flat.nii"), nifti::encode(&flat, "t")).unwrap();
    for (args, expect) in [
        (vec!["n4", "--image", &at("absent.nii"), "--out", &at("x.nii")][..].to_vec(), "reading"),
        (vec!["n4", "--image", &at("img.nii.gz"), "--mask", &at("far_mask.nii"), "--out", &at("x.nii")], "outside"),
        (vec!["n4", "--image", &at("flat.nii"), "--out", &at("x.nii")], "constant"),
        (vec!["n4", "--image", &at("img.nii.gz"), "--out", &at("x.png")], ".nii"),
        (
            vec!["histmatch", "--image", &at("mask.nii"), "--reference", &at("absent.nii"), "--out", &at("x.nii")],
            "reading",
        ),
    ] {
        let out = renal(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// An NRRD file (raw uchar, LPS) holding `mask` upsampled 2x per axis: each voxel becomes eight
/// of half the spacing, centred so that the original voxel centres fall between them.
fn nrrd_upsampled(mask: &Volume<f32>) -> Vec<u8> {
    let g = &mask.geometry;
    let d = g.dims;
    let axes = [g.row_dir, g.col_dir, g.normal];
    let mut origin = g.origin_mm;
    for (a, axis) in axes.iter().enumerate() {
        for c in 0..3 {
            origin[c] -= axis[c] * g.spacing_mm[a] / 4.0;
        }
    }
    let vector = |v: [f64; 3]| format!("({},{},{})", v[0], v[1], v[2]);
    let directions: Vec<String> =
        axes.iter().enumerate().map(|(a, v)| vector(v.map(|x| x * g.spacing_mm[a] / 2.0))).collect();
    let mut bytes = format!(
        "NRRD0004\ntype: uchar\ndimension: 3\nspace: left-posterior-superior\nsizes: {} {} {}\n\
         space directions: {}\nkinds: domain domain domain\nencoding: raw\nspace origin: {}\n\n",
        2 * d[0],
        2 * d[1],
        2 * d[2],
        directions.join(" "),
        vector(origin)
    )
    .into_bytes();
    for k in 0..2 * d[2] {
        for j in 0..2 * d[1] {
            for i in 0..2 * d[0] {
                bytes.push(u8::from(mask.data[g.index(i / 2, j / 2, k / 2)] > 0.5));
            }
        }
    }
    bytes
}

#[test]
fn preprocess_a_dicom_series_with_seg_nifti_and_nrrd_masks() {
    let dir = tempfile::tempdir().unwrap();
    let at = |n: &str| dir.path().join(n).display().to_string();
    let out = renal(&["synth", "--out", &at("cohort"), "--lesions", "1", "--sites", "HUP", "--seed", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // renal synth: T2 is series 3, reader R1's SEG of it series 131; NIfTI masks under nifti/.
    let series = at("cohort/HUP/P00001/ST1/SE003");
    let seg = at("cohort/HUP/P00001/ST1/SE131/0001.dcm");
    let nii = at("cohort/nifti/HUP-0001/T2_R1.nii.gz");
    let mask = nifti::decode(&std::fs::read(&nii).unwrap()).unwrap().volume;
    std::fs::write(at("fine_mask.nrrd"), nrrd_upsampled(&mask)).unwrap();

    let run = |mask: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["preprocess", "--image", &series, "--mask", mask, "--out", out];
        args.extend_from_slice(extra);
        let o = renal(&args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{out}/composite.json")).unwrap()).unwrap();
        let composite = std::fs::read(format!("{out}/composite.f32")).unwrap();
        (summary, composite, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (from_seg, seg_composite, _) = run(&seg, &at("seg"), &["--preview", "--size", "128"]);
    let (from_nii, nii_composite, nii_log) = run(&nii, &at("nii"), &["--size", "128"]);
    let (from_nrrd, nrrd_composite, nrrd_log) = run(&at("fine_mask.nrrd"), &at("nrrd"), &["--size", "128"]);

    // The SEG, the NIfTI mask and the NRRD mask on a finer grid all mark the same voxels.
    assert!(!nii_log.contains("resampled"), "NIfTI mask is on the series grid: {nii_log}");
    assert!(nrrd_log.contains("resampled"), "NRRD mask is on a finer grid: {nrrd_log}");
    let voxels = mask.data.iter().filter(|&&v| v > 0.5).count() as u64;
    for s in [&from_seg, &from_nii, &from_nrrd] {
        assert_eq!(s["mask_voxels"].as_u64(), Some(voxels), "{s}");
        assert_eq!(s["planes"], from_seg["planes"]);
        let ml = voxels as f64 * mask.geometry.voxel_volume_mm3() / 1000.0;
        // Relative 1e-6: NIfTI stores the spacing as float32, DICOM as decimal text.
        assert!((s["tumour_volume_ml"].as_f64().unwrap() / ml - 1.0).abs() < 1e-6, "{s} vs {ml} mL");
    }
    assert_eq!(seg_composite.len(), 3 * 128 * 128 * 4);
    assert_eq!(seg_composite, nii_composite);
    assert_eq!(seg_composite, nrrd_composite);
    let values: Vec<f32> = seg_composite.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)) && values.contains(&1.0));
    // The N4 QC values are there (body CV is mostly tissue contrast; N4 need not lower it).
    let cv = from_seg["n4_body_cv_before_after"].as_array().unwrap();
    assert!(cv.len() == 2 && cv.iter().all(|v| v.as_f64().is_some_and(|x| x > 0.0)), "{cv:?}");

    // The preview: 3 x 2 panels of 128 px; the lesion outlined in red on top, grey composites below.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(at("seg/preview.png")).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (384, 256, png::ColorType::Rgb));
    let pixels: Vec<&[u8]> = rgb.chunks_exact(3).collect();
    let (top, bottom) = pixels.split_at(384 * 128);
    for panel in 0..3 {
        let red = top.iter().enumerate().filter(|(n, p)| n % 384 / 128 == panel && p[..] == [255, 40, 40]).count();
        assert!(red >= 8, "panel {panel}: {red} outline pixels");
    }
    assert!(bottom.iter().all(|p| p[0] == p[1] && p[1] == p[2]), "composites are grey");
    assert!(bottom.iter().filter(|p| p[0] == 255).count() >= 3, "each composite reaches 1.0");

    // Bad masks: empty, or lying outside the image.
    let empty = Volume { geometry: mask.geometry.clone(), data: vec![0.0f32; mask.data.len()] };
    std::fs::write(at("empty.nii"), nifti::encode(&empty, "t")).unwrap();
    let mut far = mask.clone();
    far.geometry.origin_mm[0] += 5000.0;
    std::fs::write(at("far.nii"), nifti::encode(&far, "t")).unwrap();
    for (m, expect) in [(at("empty.nii"), "empty"), (at("far.nii"), "outside")] {
        let o = renal(&["preprocess", "--image", &series, "--mask", &m, "--out", &at("bad")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "{err}");
    }
}
