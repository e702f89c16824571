//! Our C-STORE SCU against an independent receiver, DCMTK's `storescp`: every instance arrives
//! with its data set byte for byte, over one association. Bad files and absent receivers are
//! clear errors, and the SCU and our SCP agree with each other too.

use dicom_object::meta::FileMetaTable;
use renal_ingest::drop_folder::list_files;
use renal_ingest::scp::{Scp, ACCEPTED};
use renal_ingest::scu::{ScuError, StoreScu};
use renal_ingest::ScpConfig;
use renal_synth::{generate, SynthConfig};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// (SOP instance UID, data set bytes) of a Part 10 file.
fn dataset(bytes: &[u8]) -> (String, Vec<u8>) {
    let mut reader = std::io::Cursor::new(&bytes[128..]);
    let meta = FileMetaTable::from_reader(&mut reader).unwrap();
    let start = 128 + reader.position() as usize;
    (meta.media_storage_sop_instance_uid().to_string(), bytes[start..].to_vec())
}

fn is_seg(bytes: &[u8]) -> bool {
    let meta = FileMetaTable::from_reader(&mut std::io::Cursor::new(&bytes[128..])).unwrap();
    meta.media_storage_sop_class_uid() == renal_ingest::instance::SEGMENTATION_STORAGE
}

/// A data set's elements as dcmdump prints them, without lengths or sequence encodings.
fn content(dataset: &[u8]) -> Vec<String> {
    let path = std::env::temp_dir().join(format!("scu-content-{}-{}", std::process::id(), dataset.len()));
    std::fs::write(&path, dataset).unwrap();
    let out = Command::new("dcmdump").args(["-f", "-te", "+L"]).arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "dcmdump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('(') && !l.contains("Delimitation"))
        .map(|l| {
            let l = l.split('#').next().unwrap_or("").replace("undefined length", "").replace("explicit length", "");
            l.trim().to_string()
        })
        .collect()
}

fn cohort(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let root = dir.join("cohort");
    let cfg = SynthConfig { lesions: 2, seed: 4, sites: vec!["SXH".into()], ..SynthConfig::default() };
    generate(&cfg, &root, &|_| {}).unwrap();
    list_files(&root.join("SXH")).into_iter().filter(|p| p.extension().is_some_and(|x| x == "dcm")).collect()
}

#[test]
fn scu_to_dcmtk_storescp_delivers_every_data_set_unchanged() {
    let found = Command::new("sh").arg("-c").arg("command -v storescp").status().unwrap().success();
    assert!(found, "storescp missing: scripts/setup.sh installs dcmtk");
    let dir = tempfile::tempdir().unwrap();
    let files = cohort(dir.path());
    let out = dir.path().join("received");
    std::fs::create_dir_all(&out).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut storescp = Command::new("storescp")
        .args(["-aet", "DCMTK", "-od"])
        .arg(&out)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "storescp did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut scu = StoreScu::connect(&addr, "RENAL_SCU", "DCMTK", &ACCEPTED).unwrap();
    for f in &files {
        scu.store_file(f).unwrap();
    }
    scu.release().unwrap();
    let _ = storescp.kill();
    let _ = storescp.wait();

    let sent: BTreeMap<String, Vec<u8>> = files.iter().map(|f| dataset(&std::fs::read(f).unwrap())).collect();
    let got: BTreeMap<String, Vec<u8>> = list_files(&out).iter().map(|f| dataset(&std::fs::read(f).unwrap())).collect();
    assert_eq!(got.len(), sent.len(), "one file per instance");
    // storescp re-encodes sequences with explicit lengths, so SEG files (which have sequences)
    // come back shorter; their content must still be the same element for element.
    let mut reencoded = 0;
    for (uid, data) in &sent {
        let g = &got[uid];
        if g != data {
            assert_eq!(content(g), content(data), "content of {uid} changed in transit");
            reencoded += 1;
        }
    }
    let segs = files.iter().filter(|f| is_seg(&std::fs::read(f).unwrap())).count();
    assert!(reencoded <= segs, "only SEGs may differ in encoding ({reencoded} did, {segs} SEGs)");
}

#[test]
fn bad_files_and_absent_receivers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let files = cohort(dir.path());
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = StoreScu::connect(&format!("127.0.0.1:{unused}"), "A", "B", &ACCEPTED);
    assert!(matches!(refused, Err(ScuError::Associate { .. })));

    let drop = dir.path().join("drop");
    let scp = Scp::start(&ScpConfig::new("HUP", "RENAL", "127.0.0.1:0"), &drop).unwrap();
    let mut scu = StoreScu::connect(&scp.addr.to_string(), "A", "RENAL", &ACCEPTED).unwrap();
    assert!(matches!(scu.store_bytes("junk", b"not dicom"), Err(ScuError::NotPart10 { .. })));
    let whole = std::fs::read(&files[0]).unwrap();
    assert!(matches!(scu.store_bytes("cut", &whole[..130]), Err(ScuError::NotPart10 { .. })));
    // A class the association did not negotiate is refused before anything is sent.
    let mut mr_only = StoreScu::connect(&scp.addr.to_string(), "A", "RENAL", &[ACCEPTED[0]]).unwrap();
    let seg = files.iter().find(|f| is_seg(&std::fs::read(f).unwrap()));
    assert!(matches!(mr_only.store_file(seg.unwrap()), Err(ScuError::NoContext { .. })));
    // The association stays usable after a refusal.
    scu.store_bytes("whole", &whole).unwrap();
    mr_only.release().unwrap();
    scu.release().unwrap();
    scp.stop();
    assert_eq!(list_files(&drop).len(), 1);
}
