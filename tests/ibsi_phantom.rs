//! renal-ibsi on the IBSI-1 digital phantom, against the consensus reference values
//! (`tests/reference/ibsi/`, read directly from the IBSI table as CSV).
//!
//! IBSI's rule: a value matches when `|signif(x, 3) - reference| <= tolerance` (tolerance 0 for
//! all but morphology). Every feature we report must match; the test prints "N of M matched"
//! over the features that have a reference value, per family, and the features we do not
//! report yet.

use renal_ibsi::roi::{Discretisation, Roi};
use std::collections::BTreeMap;
use std::path::Path;

/// `x` rounded to 3 significant digits.
fn signif3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 3 - x.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn phantom() -> Roi {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/ibsi");
    let read = |name: &str| renal_imaging::nifti::decode(&std::fs::read(dir.join(name)).unwrap()).unwrap().volume;
    let (image, mask) = (read("phantom.nii.gz"), read("mask.nii.gz"));
    assert_eq!(image.geometry.dims, [5, 4, 4]);
    Roi::new(
        image.geometry.dims,
        image.geometry.spacing_mm,
        image.data.iter().map(|&v| f64::from(v)).collect(),
        mask.data.iter().map(|&v| v > 0.5).collect(),
        Discretisation::None,
    )
    .unwrap()
}

#[test]
fn ibsi_digital_phantom_features_match_the_reference_values() {
    let roi = phantom();
    assert_eq!(roi.voxels().len(), 74, "the phantom's ROI");
    let ours: BTreeMap<String, f64> = renal_ibsi::extract(&roi).into_iter().collect();

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/ibsi/ibsi_1_reference_values_digital_phantom.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let (mut matched, mut with_value) = (0, 0);
    let mut by_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut wrong, mut missing) = (Vec::new(), Vec::new());
    for row in reader.records() {
        let row = row.unwrap();
        let (family, tag, reference, tolerance) = (&row[1], &row[9], row[4].trim(), row[5].trim());
        if reference.is_empty() {
            continue;
        }
        with_value += 1;
        let reference: f64 = reference.parse().unwrap();
        let tolerance: f64 = tolerance.parse().unwrap_or(0.0);
        let entry = by_family.entry(family.to_string()).or_default();
        entry.1 += 1;
        match ours.get(tag) {
            Some(&v) => {
                // Half a unit in the third significant digit of slack for the decimal text.
                if (signif3(v) - reference).abs() <= tolerance + 1e-9 * reference.abs().max(1e-12) {
                    matched += 1;
                    entry.0 += 1;
                } else {
                    wrong.push(format!("{tag}: ours {v} ({}), reference {reference} ± {tolerance}", signif3(v)));
                }
            }
            None => missing.push(tag.to_string()),
        }
    }
    for (family, (m, n)) in &by_family {
        println!("{family}: {m} of {n}");
    }
    println!("not reported yet: {}", missing.join(", "));
    println!("{matched} of {with_value} matched");
    assert!(wrong.is_empty(), "{} reported features differ from the reference:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(with_value, 482, "the reference table");
    // Every feature with a reference value, mesh-based morphology included.
    assert_eq!(matched, 482, "{matched} of {with_value} matched");
    assert!(missing.is_empty());
}

#[test]
fn the_radiomics_benchmark_prints_its_table() {
    let out = renal_e2e::renal(&["bench", "radiomics", "--repeat", "1", "--bins", "16"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("| GLCM (6 aggregations) | 150 |"), "{text}");
    // Every feature, Moran's I and Geary's C included (by FFT above 4,000 voxels).
    assert!(text.contains("| **one setting, all of the above** | 482 |"), "{text}");
    assert!(text.contains("Moran's I + Geary's C by FFT, 46"), "{text}");
    assert!(text.contains("ellipsoid ROI of 31040 voxels"), "{text}");
}

#[test]
fn renal_ibsi_writes_the_phantom_features_by_ibsi_tag_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("phantom.csv");
    let out = renal_e2e::renal(&["radiomics", "--ibsi-phantom", "--out", csv_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let value = |tag: &str| -> f64 { row[header.iter().position(|h| h == tag).unwrap()].parse().unwrap() };
    let first: Vec<&str> = header.iter().take(6).collect();
    assert_eq!(first, ["image", "mask", "image_sha256", "mask_sha256", "settings", "code_version"]);
    assert_eq!(header.len() - 6, 482);
    assert_eq!(signif3(value("morph_volume")), 556.0);
    assert_eq!(signif3(value("cm_joint_max_3D_avg")), 0.503);
    assert_eq!(signif3(value("szm_sze_3D")), 0.255);
    assert_eq!(signif3(value("stat_kurt")), -0.355);
    assert_eq!(&row[2], "83773ac2a288aa93cf819a98eaf301c18d35d5876182ec9c18733184e2b7a83a");

    // An image with an empty mask, and missing arguments: clear errors, no panic.
    let x_csv = dir.path().join("x.csv");
    let image = dir.path().join("image.nii.gz");
    let mask = dir.path().join("mask.nii.gz");
    let geometry = renal_imaging::Geometry {
        dims: [4, 4, 2],
        spacing_mm: [1.0; 3],
        origin_mm: [0.0; 3],
        row_dir: [1.0, 0.0, 0.0],
        col_dir: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, 1.0],
    };
    let vol = renal_imaging::Volume { geometry: geometry.clone(), data: vec![1.0f32; 32] };
    std::fs::write(&image, renal_imaging::nifti::encode_gz(&vol, "t")).unwrap();
    let empty = renal_imaging::Volume { geometry, data: vec![0u8; 32] };
    std::fs::write(&mask, renal_imaging::nifti::encode_gz(&empty, "t")).unwrap();
    // A settings file: one row per setting, each equal to extracting that setting directly.
    let settings_path = dir.path().join("settings.json");
    std::fs::write(
        &settings_path,
        r#"{"settings": [{"spacing_mm": 1.0, "discretisation": {"method": "fixed_bin_number", "bins": 4}},
            {"discretisation": {"method": "equalised_bin_number", "bins": 3}}]}"#,
    )
    .unwrap();
    let grid_csv = dir.path().join("grid.csv");
    let out = renal_e2e::renal(&[
        "radiomics",
        "--ibsi-phantom",
        "--settings",
        settings_path.to_str().unwrap(),
        "--out",
        grid_csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&grid_csv).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    // Provenance, the features, then IBSI's 60 diagnostic values.
    assert_eq!((rows.len(), header.len()), (2, 6 + 482 + 60));
    let at = |tag: &str| header.iter().position(|h| h == tag).unwrap();
    // The phantom: 5 x 4 x 4 voxels of 2 mm; 74 ROI voxels of levels 1 to 6 on the native grid.
    for row in &rows {
        assert_eq!(&row[at("img_dim_x_init_img")], "5");
        assert_eq!(&row[at("vox_dim_z_init_img")], "2");
        assert_eq!(&row[at("int_mask_vox_count_init_roi")], "74");
        assert_eq!(&row[at("int_mask_max_int_init_roi")], "6");
    }
    let settings = renal_radiomics::settings::read(&settings_path).unwrap();
    let roi = phantom();
    let volume = renal_imaging::nifti::decode(include_bytes!("reference/ibsi/phantom.nii.gz")).unwrap().volume;
    let phantom_mask = renal_imaging::Volume {
        geometry: volume.geometry.clone(),
        data: roi.mask.iter().map(|&m| u8::from(m)).collect(),
    };
    let direct = renal_radiomics::extract::extract_series(&volume, &phantom_mask, &settings).unwrap();
    for (row, want) in rows.iter().zip(&direct) {
        assert_eq!(&row[4], serde_json::to_string(&want.setting).unwrap());
        for (tag, v) in want.features.as_ref().unwrap() {
            let got: f64 = row[header.iter().position(|h| h == tag).unwrap()].parse().unwrap();
            assert_eq!(got, *v, "{tag}");
        }
    }

    for (args, expect) in [
        (vec!["--image", image.to_str().unwrap(), "--mask", mask.to_str().unwrap()], "is empty"),
        (vec!["--image", image.to_str().unwrap()], "give --image and --mask, or --ibsi-phantom"),
        (vec!["--ibsi-phantom", "--image", image.to_str().unwrap()], "leave out --image and --mask"),
    ] {
        let mut all = vec!["radiomics"];
        all.extend(args);
        all.extend(["--out", x_csv.to_str().unwrap()]);
        let out = renal_e2e::renal(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{expect}: {err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "want {expect:?} in: {err}");
    }
}

#[test]
fn fixed_bin_sizes_start_at_the_resegmentation_range() {
    // The phantom's intensities are 1, 3, 4 and 6 (and a 9 outside the ROI). Bins of 2 from the
    // range's lower bound 0 give levels 1, 2, 3, 4; from the ROI's minimum (1) they would give
    // 1, 2, 2, 3.
    let dir = tempfile::tempdir().unwrap();
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/ibsi");
    let csv_path = dir.path().join("fbs.csv");
    let out = renal_e2e::renal(&[
        "radiomics",
        "--image",
        &format!("{reference}/phantom.nii.gz"),
        "--mask",
        &format!("{reference}/mask.nii.gz"),
        "--bin-width",
        "2",
        "--resegment",
        "0",
        "8",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let value = |tag: &str| -> f64 { row[header.iter().position(|h| h == tag).unwrap()].parse().unwrap() };
    let roi = phantom();
    let levels = |lower: f64| {
        let r = Roi::new(
            roi.dims,
            roi.spacing_mm,
            roi.image.to_vec(),
            roi.mask.to_vec(),
            Discretisation::FixedBinSize { width: 2.0, lower },
        )
        .unwrap();
        let mut out = Vec::new();
        renal_ibsi::intensity::histogram(&r, &mut out);
        out.into_iter().find(|(t, _)| t == "ih_max").unwrap().1
    };
    assert_eq!((levels(0.0), levels(1.0)), (4.0, 3.0));
    assert_eq!(value("ih_max"), 4.0, "bins start at the range's lower bound");
    assert!(String::from_utf8_lossy(&renal_e2e::renal(&["radiomics", "--help"]).stdout)
        .contains("re-segmentation range's lower bound"));
}
