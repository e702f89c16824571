//! `renal n4` and `renal histmatch` on NIfTI files: they correct what they should, write valid
//! NIfTI on the input's grid, and refuse bad input with a clear message and exit status 1.

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

    // Bad input: a missing file, a mask on another grid, a constant image, a wrong extension.
    let small = bias_phantom([32, 32, 4], [4.0, 4.0, 12.0], 4.0, 3);
    std::fs::write(at("small_mask.nii"), nifti::encode(&small.body, "t")).unwrap();
    let flat = Volume { geometry: p.image.geometry.clone(), data: vec![7.0f32; p.image.data.len()] };
    std::fs::write(at("flat.nii"), nifti::encode(&flat, "t")).unwrap();
    for (args, expect) in [
        (vec!["n4", "--image", &at("absent.nii"), "--out", &at("x.nii")][..].to_vec(), "reading"),
        (vec!["n4", "--image", &at("img.nii.gz"), "--mask", &at("small_mask.nii"), "--out", &at("x.nii")], "voxels"),
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
