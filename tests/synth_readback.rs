//! `renal synth` output read back by independent tools.
//!
//! DCMTK's `dcmdump` reads every MR instance and SEG object; `dcm2niix` reconstructs each MR
//! series into a volume. The test checks, against `manifest.json`:
//! - each series has the promised number of files, rows, columns, pixel spacing, slice
//!   thickness and orientation, and its slice positions (sorted along the normal, not by
//!   InstanceNumber) are `first_position + k * slice_spacing * normal` within 1e-3 mm;
//! - dcm2niix's volume has the same dimensions and the same eight corner voxel centres as the
//!   manifest's grid and as our NIfTI mask, within 0.05 mm (it stores float32 affines);
//! - each SEG references its series, every per-frame source image is an instance of that
//!   series at the frame's position, and the bits of its pixel data (extracted by dcmdump)
//!   equal the NIfTI mask's non-empty slices;
//! - AccessionNumber equals the case id, the key `labels.csv` joins on;
//! - PatientAge equals the completed years between PatientBirthDate and StudyDate.

use renal_e2e::{dcmdump, decimals, renal, require_tool, top_level};
use renal_imaging::nifti;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn corners(
    dims: [usize; 3],
    first: [f64; 3],
    row: [f64; 3],
    col: [f64; 3],
    normal: [f64; 3],
    sp: [f64; 3],
) -> Vec<[f64; 3]> {
    let g = renal_imaging::Geometry { dims, spacing_mm: sp, origin_mm: first, row_dir: row, col_dir: col, normal };
    g.corners().to_vec()
}

fn same_corner_sets(a: &[[f64; 3]], b: &[[f64; 3]], tol: f64) -> bool {
    a.iter().all(|p| b.iter().any(|q| (0..3).all(|i| (p[i] - q[i]).abs() <= tol)))
}

fn arr3(v: &Value) -> [f64; 3] {
    let a: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    [a[0], a[1], a[2]]
}

fn years_between(birth: &str, at: &str) -> i32 {
    let p =
        |s: &str| (s[0..4].parse::<i32>().unwrap(), s[4..6].parse::<u32>().unwrap(), s[6..8].parse::<u32>().unwrap());
    let (by, bm, bd) = p(birth);
    let (ay, am, ad) = p(at);
    ay - by - if (am, ad) < (bm, bd) { 1 } else { 0 }
}

#[test]
fn dcmtk_and_dcm2niix_reconstruct_what_the_manifest_promises() {
    require_tool("dcmdump");
    require_tool("dcm2niix");
    let dir = tempfile::tempdir().unwrap();
    // HUP alone, then the four smaller sites (which a proportional split of a few lesions
    // would otherwise leave out); every histopathology lesion gets three readers.
    let mut sites_seen = std::collections::BTreeSet::new();
    for (n, (sites, lesions)) in [("HUP", "3"), ("MAY,TCIA,SXH,PHH", "8")].into_iter().enumerate() {
        let out = dir.path().join(format!("cohort{n}"));
        let run = renal(&[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--lesions",
            lesions,
            "--seed",
            "5",
            "--sites",
            sites,
            "--multi-reader-fraction",
            "1.0",
        ]);
        assert!(run.status.success(), "renal synth failed: {}", String::from_utf8_lossy(&run.stderr));
        sites_seen.extend(check_cohort(&out, dir.path()));
    }
    assert_eq!(sites_seen.len(), 5, "every site checked: {sites_seen:?}");
}

fn check_cohort(out: &Path, scratch: &Path) -> Vec<String> {
    let dir = scratch;
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let series = manifest["series"].as_array().unwrap();
    assert_eq!(series.len(), 2 * manifest["cases"].as_array().unwrap().len());
    let mut seg_checked = 0;
    for s in series {
        let case = s["case_id"].as_str().unwrap();
        let folder = out.join(s["path"].as_str().unwrap());
        let mut files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let slices = s["slices"].as_u64().unwrap() as usize;
        assert_eq!(files.len(), slices, "{case} {}: file count", s["role"]);
        let iop: Vec<f64> = s["image_orientation"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let normal = arr3(&s["slice_normal"]);
        let first = arr3(&s["first_position"]);
        let spacing = s["slice_spacing"].as_f64().unwrap();
        let pixel: Vec<f64> = s["pixel_spacing"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();

        // dcmdump every instance: geometry tags, sorted by position along the normal.
        let mut positions = Vec::new();
        let mut sop_by_position = Vec::new();
        let mut instance_numbers = Vec::new();
        for f in &files {
            let tags = top_level(&dcmdump(f));
            assert_eq!(tags["0008,0016"], "1.2.840.10008.5.1.4.1.1.4", "MR Image Storage");
            assert_eq!(tags["0002,0010"], "1.2.840.10008.1.2.1", "explicit VR little endian");
            assert_eq!(tags["0008,0060"], "MR");
            assert_eq!(tags["0008,0050"], case, "AccessionNumber is the accession labels.csv joins on");
            assert_eq!(tags["0020,000e"], s["series_uid"].as_str().unwrap());
            assert_eq!(tags["0028,0010"].parse::<usize>().unwrap(), s["rows"].as_u64().unwrap() as usize);
            assert_eq!(tags["0028,0011"].parse::<usize>().unwrap(), s["columns"].as_u64().unwrap() as usize);
            let ps = decimals(&tags["0028,0030"]);
            assert!((ps[0] - pixel[0]).abs() < 1e-6 && (ps[1] - pixel[1]).abs() < 1e-6);
            assert!((decimals(&tags["0018,0050"])[0] - s["slice_thickness"].as_f64().unwrap()).abs() < 1e-6);
            let o = decimals(&tags["0020,0037"]);
            for i in 0..6 {
                assert!((o[i] - iop[i]).abs() < 1e-6, "{case}: orientation {o:?} vs {iop:?}");
            }
            let age: i32 = tags["0010,1010"].trim_end_matches('Y').parse().unwrap();
            assert_eq!(age, years_between(&tags["0010,0030"], &tags["0008,0020"]), "{case}: PatientAge");
            if s["role"] == "T1C" {
                assert!(!tags["0018,0010"].is_empty(), "{case}: contrast agent on T1C");
            }
            let p = decimals(&tags["0020,0032"]);
            let along = p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
            positions.push((along, [p[0], p[1], p[2]]));
            sop_by_position.push((along, tags["0008,0018"].clone()));
            instance_numbers.push((along, tags["0020,0013"].parse::<i64>().unwrap()));
        }
        positions.sort_by(|a, b| a.0.total_cmp(&b.0));
        sop_by_position.sort_by(|a, b| a.0.total_cmp(&b.0));
        instance_numbers.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (k, (_, p)) in positions.iter().enumerate() {
            for a in 0..3 {
                let want = first[a] + k as f64 * spacing * normal[a];
                assert!((p[a] - want).abs() < 1e-3, "{case}: slice {k} position {p:?}");
            }
        }
        let ascending = instance_numbers.first().unwrap().1 < instance_numbers.last().unwrap().1;
        assert_eq!(ascending, s["instance_order"] == "ascending", "{case}: instance order");

        // dcm2niix reconstructs the same grid.
        let nii_dir = dir.join(format!("nii-{case}-{}", s["role"].as_str().unwrap()));
        std::fs::create_dir_all(&nii_dir).unwrap();
        let conv = Command::new("dcm2niix")
            .args(["-z", "n", "-b", "n", "-f", "vol", "-o"])
            .arg(&nii_dir)
            .arg(&folder)
            .output()
            .unwrap();
        assert!(conv.status.success(), "dcm2niix: {}", String::from_utf8_lossy(&conv.stderr));
        let rebuilt = nifti::decode(&std::fs::read(nii_dir.join("vol.nii")).unwrap()).unwrap().volume.geometry;
        let dims = [s["columns"].as_u64().unwrap() as usize, s["rows"].as_u64().unwrap() as usize, slices];
        let mut a = rebuilt.dims;
        let mut b = dims;
        a.sort();
        b.sort();
        assert_eq!(a, b, "{case}: dcm2niix dims {:?} vs {dims:?}", rebuilt.dims);
        let manifest_corners = corners(
            dims,
            first,
            [iop[0], iop[1], iop[2]],
            [iop[3], iop[4], iop[5]],
            normal,
            [pixel[1], pixel[0], spacing],
        );
        assert!(
            same_corner_sets(&rebuilt.corners(), &manifest_corners, 0.05),
            "{case} {}: dcm2niix corners {:?} vs manifest {:?}",
            s["role"],
            rebuilt.corners(),
            manifest_corners
        );

        // Every segmentation: SEG references and bits against the NIfTI mask.
        for seg in s["segmentations"].as_array().unwrap() {
            let mask = nifti::decode(&std::fs::read(out.join(seg["nifti"].as_str().unwrap())).unwrap()).unwrap().volume;
            assert!(same_corner_sets(&mask.geometry.corners(), &manifest_corners, 1e-3), "{case}: mask grid");
            let seg_path = out.join(seg["path"].as_str().unwrap());
            let pixel_dir = dir.join(format!("px-{case}-{}", seg_checked));
            std::fs::create_dir_all(&pixel_dir).unwrap();
            let dump = Command::new("dcmdump")
                .args(["-q", "+L", "-Un", "+W"])
                .arg(&pixel_dir)
                .arg(&seg_path)
                .output()
                .unwrap();
            assert!(dump.status.success());
            let lines = renal_e2e::parse_dump(&String::from_utf8_lossy(&dump.stdout));
            let tags = top_level(&lines);
            assert_eq!(tags["0008,0016"], "1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage");
            assert_eq!(tags["0062,0001"], "BINARY");
            assert_eq!(tags["0020,0052"], s_frame_of_reference(&files[0]));
            // ReferencedSeriesSequence > SeriesInstanceUID
            let referenced_series: Vec<&str> =
                lines.iter().filter(|l| l.tag == "0020,000e" && l.depth > 0).map(|l| l.value.as_str()).collect();
            assert_eq!(referenced_series, vec![s["series_uid"].as_str().unwrap()], "{case}: referenced series");
            // Per-frame part: after PerFrameFunctionalGroupsSequence (5200,9230).
            let start = lines.iter().position(|l| l.tag == "5200,9230").expect("per-frame groups");
            let frame_sources: Vec<&str> =
                lines[start..].iter().filter(|l| l.tag == "0008,1155").map(|l| l.value.as_str()).collect();
            let frame_positions: Vec<Vec<f64>> =
                lines[start..].iter().filter(|l| l.tag == "0020,0032").map(|l| decimals(&l.value)).collect();
            let frames: usize = tags["0028,0008"].parse().unwrap();
            assert_eq!(frames, seg["frames"].as_u64().unwrap() as usize);
            assert_eq!(frame_sources.len(), frames);
            let [nx, ny, nz] = mask.geometry.dims;
            let nonempty: Vec<usize> =
                (0..nz).filter(|&k| mask.data[k * nx * ny..(k + 1) * nx * ny].iter().any(|&v| v != 0.0)).collect();
            assert_eq!(nonempty.len(), frames, "{case}: SEG frames vs non-empty mask slices");
            for (f, &k) in nonempty.iter().enumerate() {
                // The source of frame f is the instance at grid slice k.
                assert_eq!(frame_sources[f], sop_by_position[k].1, "{case}: frame {f} source image");
                for a in 0..3 {
                    assert!((frame_positions[f][a] - positions[k].1[a]).abs() < 1e-3);
                }
            }
            // Pixel bits: LSB first, frames back to back.
            let raw_name = format!("{}.0.raw", seg_path.file_name().unwrap().to_string_lossy());
            let bits = std::fs::read(pixel_dir.join(raw_name)).unwrap();
            let mut bit = 0usize;
            for &k in &nonempty {
                for v in &mask.data[k * nx * ny..(k + 1) * nx * ny] {
                    let set = bits[bit / 8] >> (bit % 8) & 1 == 1;
                    assert_eq!(set, *v != 0.0, "{case}: SEG bit {bit}");
                    bit += 1;
                }
            }
            seg_checked += 1;
        }
    }
    assert!(seg_checked >= series.len(), "checked {seg_checked} segmentations");

    // labels.csv agrees with the manifest.
    let labels = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    assert_eq!(
        lines.next().unwrap(),
        "accession,patient_id,site,label,subtype,diagnosis_source,diagnosis_method,grade,segmenter"
    );
    let cases = manifest["cases"].as_array().unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), cases.len());
    for (row, case) in rows.iter().zip(cases) {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols[0], case["case_id"].as_str().unwrap());
        assert_eq!(cols[3], case["label"].as_str().unwrap());
        assert!(cols[8] == "R1" || cols[8] == "R1;R2;R3");
    }
    series.iter().map(|s| s["site"].as_str().unwrap().to_string()).collect()
}

fn s_frame_of_reference(mr_file: &Path) -> String {
    top_level(&dcmdump(mr_file))["0020,0052"].clone()
}
