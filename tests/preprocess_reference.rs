//! Our N4 and histogram matching against SimpleITK, run by `tests/reference/sitk_reference.py`
//! from the test venv on the same NIfTI files.
//!
//! Tolerances (issue: preprocess): histogram matching within 1% of the reference's intensity
//! range in mean absolute difference; N4 tissue CV within 10% of SimpleITK's and the recovered
//! field correlating with the true one at r >= 0.95.

use renal_e2e::venv_bin;
use renal_imaging::histmatch::{match_histograms, MatchSettings};
use renal_imaging::n4::{n4, N4Settings};
use renal_imaging::{nifti, Volume};
use renal_stats::pearson;
use renal_synth::bias_phantom::{bias_phantom, region_cv};
use std::path::Path;
use std::process::Command;

fn sitk(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/sitk_reference.py");
    let out = Command::new(venv_bin("python")).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "sitk_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(path: &Path, v: &Volume<f32>) {
    std::fs::write(path, nifti::encode_gz(v, "test")).unwrap();
}

fn read(path: &Path) -> Volume<f32> {
    nifti::decode(&std::fs::read(path).unwrap()).unwrap().volume
}

#[test]
fn histogram_matching_agrees_with_simpleitk() {
    let dir = tempfile::tempdir().unwrap();
    // Reference: the phantom; source: another noise draw through a non-linear scanner map.
    let reference = bias_phantom([96, 96, 12], [3.5, 3.5, 10.0], 4.0, 1).image;
    let other = bias_phantom([96, 96, 12], [3.5, 3.5, 10.0], 4.0, 2).image;
    let source = Volume {
        geometry: other.geometry.clone(),
        data: other.data.iter().map(|&v| 25.0 + 1.7 * v.powf(1.1)).collect(),
    };
    for (levels, points) in [(128, 7), (1024, 7), (64, 3)] {
        write(&dir.path().join("s.nii.gz"), &source);
        write(&dir.path().join("r.nii.gz"), &reference);
        let out = dir.path().join("o.nii.gz");
        sitk(&[
            "histmatch",
            "--source",
            dir.path().join("s.nii.gz").to_str().unwrap(),
            "--reference",
            dir.path().join("r.nii.gz").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--levels",
            &levels.to_string(),
            "--match-points",
            &points.to_string(),
        ]);
        let theirs = read(&out).data;
        let settings = MatchSettings { levels, match_points: points, threshold_at_mean: true };
        let ours = match_histograms(&source.data, &reference.data, &settings).unwrap();
        let (lo, hi) = reference.data.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let range = f64::from(hi - lo);
        let diffs: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| f64::from((a - b).abs())).collect();
        let mad = diffs.iter().sum::<f64>() / diffs.len() as f64 / range;
        let max = diffs.iter().fold(0.0f64, |m, &d| m.max(d)) / range;
        println!("histmatch {levels} levels, {points} points: mean |ours - SimpleITK| = {mad:.2e}, max {max:.2e} of the range");
        assert!(mad <= 0.01, "mean abs difference {mad} of the range");
        assert!(max <= 1e-3, "max abs difference {max} of the range");
    }
}

#[test]
fn n4_agrees_with_simpleitk_on_a_known_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = bias_phantom([128, 128, 20], [3.0, 3.0, 10.0], 4.0, 7);
    write(&dir.path().join("i.nii.gz"), &p.image);
    std::fs::write(dir.path().join("m.nii.gz"), nifti::encode_gz(&p.body, "test")).unwrap();
    let field_path = dir.path().join("f.nii.gz");
    let shrink = 2;
    let report = sitk(&[
        "n4",
        "--image",
        dir.path().join("i.nii.gz").to_str().unwrap(),
        "--mask",
        dir.path().join("m.nii.gz").to_str().unwrap(),
        "--out-field",
        field_path.to_str().unwrap(),
        "--shrink",
        &shrink.to_string(),
    ]);
    let their_field: Vec<f64> = read(&field_path).data.iter().map(|&f| f64::from(f)).collect();
    let their_corrected: Vec<f32> =
        p.image.data.iter().zip(&their_field).map(|(&v, f)| (f64::from(v) / f.exp()) as f32).collect();

    let started = std::time::Instant::now();
    let ours = n4(&p.image, Some(&p.body), &N4Settings { shrink_factor: shrink, ..N4Settings::default() }).unwrap();
    let our_seconds = started.elapsed().as_secs_f64();
    let our_field: Vec<f64> = ours.log_field.data.iter().map(|&f| f64::from(f)).collect();

    let body: Vec<usize> = (0..p.body.data.len()).filter(|&i| p.body.data[i] != 0).collect();
    let pick = |f: &[f64]| body.iter().map(|&i| f[i]).collect::<Vec<f64>>();
    let cv_before = region_cv(&p.image.data, &p.tissue);
    let cv_theirs = region_cv(&their_corrected, &p.tissue);
    let cv_ours = region_cv(&ours.corrected.data, &p.tissue);
    let r_ours = pearson(&pick(&our_field), &pick(&p.log_field));
    let r_theirs = pearson(&pick(&their_field), &pick(&p.log_field));
    let r_between = pearson(&pick(&our_field), &pick(&their_field));
    println!(
        "N4 shrink {shrink}: tissue CV {cv_before:.4} -> ours {cv_ours:.4} (iterations {:?}, {our_seconds:.2} s), \
         SimpleITK {cv_theirs:.4} ({:.2} s fit); r(field, truth) ours {r_ours:.4}, SimpleITK {r_theirs:.4}; \
         r(ours, SimpleITK) {r_between:.4}",
        ours.iterations_run, report["fit_seconds"]
    );
    assert!(cv_ours <= 1.1 * cv_theirs, "our tissue CV {cv_ours} vs SimpleITK's {cv_theirs}");
    assert!(r_ours >= 0.95, "r(field, truth) = {r_ours}");
    assert!(r_between >= 0.99, "r(ours, SimpleITK) = {r_between}");
}

#[test]
fn nrrd_files_written_by_simpleitk_read_back_with_their_geometry() {
    // An oblique grid, so that a swapped axis or a lost RAS/LPS flip shows.
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let geometry = renal_imaging::Geometry {
        dims: [7, 5, 4],
        spacing_mm: [0.75, 1.25, 3.0],
        origin_mm: [-12.5, 30.25, 101.0],
        row_dir: [c, s, 0.0],
        col_dir: [-s, c, 0.0],
        normal: [0.0, 0.0, 1.0],
    };
    let data: Vec<f32> = (0..geometry.len()).map(|n| ((n * 37) % 251) as f32 - 100.0).collect();
    let image = Volume { geometry, data };
    let dir = tempfile::tempdir().unwrap();
    let nii = dir.path().join("in.nii.gz");
    write(&nii, &image);
    for (pixel, compress) in [("int16", true), ("int16", false), ("float32", true), ("uint8", false)] {
        let out = dir.path().join(format!("out-{pixel}-{compress}.nrrd"));
        let mut args =
            vec!["convert", "--image", nii.to_str().unwrap(), "--out", out.to_str().unwrap(), "--pixel", pixel];
        if compress {
            args.push("--compress");
        }
        let theirs = sitk(&args);
        let ours = renal_imaging::nrrd::decode(&std::fs::read(&out).unwrap()).unwrap();
        let g = &ours.geometry;
        let f =
            |key: &str| -> Vec<f64> { theirs[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        assert_eq!(f("size"), g.dims.iter().map(|&d| d as f64).collect::<Vec<_>>());
        // SimpleITK's direction matrix is row-major with the index axes as columns.
        let direction = f("direction");
        for axis in 0..3 {
            let ours_axis = [g.row_dir, g.col_dir, g.normal][axis];
            for r in 0..3 {
                assert!(
                    (direction[3 * r + axis] - ours_axis[r]).abs() < 1e-6,
                    "{pixel}: direction {direction:?} vs {g:?}"
                );
            }
            assert!((f("spacing")[axis] - g.spacing_mm[axis]).abs() < 1e-6, "{pixel}: spacing");
            assert!((f("origin")[axis] - g.origin_mm[axis]).abs() < 1e-4, "{pixel}: origin");
            // And SimpleITK saw the geometry we wrote (float32 in NIfTI: 1e-4 mm).
            assert!((g.origin_mm[axis] - image.geometry.origin_mm[axis]).abs() < 1e-4, "{pixel}: origin vs ours");
        }
        if pixel == "uint8" {
            // SimpleITK casts out-of-range values to uint8 its own way; only the in-range ones are compared.
            let inrange = image.data.iter().zip(&ours.data).filter(|(v, _)| (0.0..=255.0).contains(*v));
            for (v, o) in inrange {
                assert_eq!(v, o, "uint8 value");
            }
        } else {
            assert_eq!(ours.data, image.data, "{pixel} values");
        }
        println!("{pixel} (compressed {compress}): {} voxels and the geometry match SimpleITK", ours.data.len());
    }
}
