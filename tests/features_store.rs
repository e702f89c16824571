//! The radiomics worker on the in-process bus: lesions in, one Parquet file per lesion revision
//! in the feature store and a `renal.features` message out; broken input dead-lettered with
//! its reason. The files are read back by pyarrow (`tests/reference/features_readback.py`),
//! an independent Parquet reader, and compared with features computed directly.

use renal_bus::{Bus, InProcessBus};
use renal_e2e::{as_stored, lesion_with_volumes as lesion, put_series, synthetic_lesion};
use renal_ibsi::roi::Discretisation;
use renal_imaging::Volume;
use renal_messages::{topics, DeadLetterV1, FeaturesV1, Message};
use renal_radiomics::extract::extract_series;
use renal_radiomics::settings::Setting;
use renal_radiomics::{Extractor, RadiomicsConfig};
use renal_store::{BlobStore, LocalBlobStore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[test]
fn lesions_become_parquet_rows_that_pyarrow_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(&dir.path().join("blobs")).unwrap());
    let settings = vec![
        Setting::new(Some(1.0), Discretisation::FixedBinNumber { bins: 16 }),
        Setting::new(Some(2.0), Discretisation::EqualisedBinNumber { bins: 8 }),
        Setting::new(Some(4.0), Discretisation::FixedBinNumber { bins: 8 }),
    ];
    let settings_file = dir.path().join("settings.json");
    std::fs::write(&settings_file, serde_json::json!({ "settings": settings }).to_string()).unwrap();
    let cfg = RadiomicsConfig {
        blob_store: dir.path().join("blobs").display().to_string(),
        table_root: dir.path().join("store"),
        settings: Some(settings_file),
    };
    assert_eq!(cfg.load_settings().unwrap(), settings);

    // Two good lesions (anisotropic T2, finer T1C) and the ways a lesion can be broken.
    let t2 = synthetic_lesion([48, 48, 10], [0.75, 0.75, 4.0], [9.0, 7.0, 8.0], 1);
    let t1c = synthetic_lesion([56, 56, 20], [0.6, 0.6, 2.0], [9.0, 7.0, 8.0], 2);
    let (t2_ref, t1c_ref) = (put_series(&*store, &t2.0, &t2.1), put_series(&*store, &t1c.0, &t1c.1));
    let small = synthetic_lesion([30, 30, 12], [1.0, 1.0, 3.0], [1.2, 1.2, 2.0], 3);
    let small_ref = put_series(&*store, &small.0, &small.1);
    let empty = Volume { geometry: t2.1.geometry.clone(), data: vec![0u8; t2.1.data.len()] };
    let empty_ref = put_series(&*store, &t2.0, &empty);
    let other_grid = put_series(&*store, &t2.0, &t1c.1);
    let dangling = renal_store::blob_ref(b"never stored");
    let not_a_bundle = store.put(b"{\"image\": 1}").unwrap();

    let bus = InProcessBus::new(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for l in [
            lesion("MAY-0001", "MAY", [t2_ref.clone(), t1c_ref.clone()]),
            lesion("PHH-0002", "PHH", [small_ref.clone(), t1c_ref.clone()]),
            lesion("MAY-empty", "MAY", [empty_ref, t1c_ref.clone()]),
            lesion("MAY-grid", "MAY", [other_grid, t1c_ref.clone()]),
            lesion("MAY-dangling", "MAY", [t2_ref.clone(), dangling]),
            lesion("MAY-bundle", "MAY", [not_a_bundle, t1c_ref.clone()]),
            lesion("../escape", "MAY", [t2_ref.clone(), t1c_ref.clone()]),
        ] {
            bus.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
        }
        bus.send(topics::LESIONS, "junk", b"{\"version\": 1}".to_vec()).await.unwrap();
        // A redelivery of the first lesion: its file is rewritten, not duplicated.
        let again = lesion("MAY-0001", "MAY", [t2_ref.clone(), t1c_ref.clone()]);
        bus.send(topics::LESIONS, &again.case_id, again.encode()).await.unwrap();
    });
    let stats = rt
        .block_on(renal_radiomics::run(
            Extractor::new(store.clone(), renal_store::TableWriter::new(&cfg.table_root), settings.clone()),
            bus.clone(),
            bus.drained(renal_radiomics::GROUP, topics::LESIONS),
            &|_| {},
        ))
        .unwrap();
    assert_eq!((stats.inputs, stats.outputs, stats.dead_letters), (9, 3, 6));
    let letters: BTreeMap<String, String> = bus
        .records(topics::DEAD_RADIOMICS)
        .iter()
        .map(|r| {
            let l = DeadLetterV1::decode(&r.payload).unwrap();
            (l.source.key.clone(), l.reason_code)
        })
        .collect();
    assert_eq!(letters["MAY-empty"], "empty_mask");
    assert_eq!(letters["MAY-grid"], "mask_mismatch");
    assert_eq!(letters["MAY-dangling"], "missing_blob");
    assert_eq!(letters["MAY-bundle"], "bad_volume");
    assert_eq!(letters["../escape"], "bad_message");
    assert_eq!(letters["junk"], "bad_message");

    let announced: Vec<FeaturesV1> =
        bus.records(topics::FEATURES).iter().map(|r| FeaturesV1::decode(&r.payload).unwrap()).collect();
    let first = &announced[0];
    assert_eq!(first.case_id, "MAY-0001");
    assert!(first.file.starts_with("features/site=MAY/date=") && first.file.ends_with("/MAY-0001-r1.parquet"));
    assert!(dir.path().join("store").join(&first.file).exists());
    assert_eq!(first.settings_sha256, renal_radiomics::settings::sha256(&settings));

    // pyarrow, reading the store as a Hive-partitioned dataset.
    let out = std::process::Command::new(renal_e2e::venv_bin("python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/reference/features_readback.py"))
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["files"], 2, "one file per lesion revision; the redelivery overwrote its own");
    let schema = &read["schema"];
    assert_eq!(schema["case_id"], serde_json::json!(["string", false]));
    assert_eq!(schema["revision"], serde_json::json!(["int32", false]));
    assert_eq!(schema["spacing_mm"], serde_json::json!(["double", true]));
    assert_eq!(schema["morph_volume"], serde_json::json!(["double", true]));
    assert!(schema.get("patient_pseudonym").is_none(), "no patient identifier in the table");
    // The `site` partition key is also a column of the file; `date` comes from the path only.
    assert_eq!(schema["int_mask_vox_count_reseg_roi"], serde_json::json!(["double", true]));
    assert_eq!(
        schema.as_object().unwrap().len(),
        16 + 482 + 60 + 1,
        "fixed columns, 482 features, 60 diagnostics, the date key"
    );
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * settings.len());

    // Every value pyarrow reads equals the value computed directly for that series and setting,
    // from the volumes as stored (NIfTI keeps the grid in float32).
    let stored = |(img, msk): &(Volume<f32>, Volume<u8>)| as_stored(img, msk);
    let (t2, t1c, small) = (stored(&t2), stored(&t1c), stored(&small));
    let direct = |case: &str, role: &str| {
        let (img, msk) = match (case, role) {
            (_, "T1C") => &t1c,
            ("MAY-0001", _) => &t2,
            _ => &small,
        };
        extract_series(img, msk, &settings).unwrap()
    };
    let mut compared = 0;
    for row in rows {
        let (case, role) = (row["case_id"].as_str().unwrap(), row["series"].as_str().unwrap());
        assert_eq!(row["site"], &case[..3]);
        assert_eq!(row["date"].as_str().unwrap().len(), 10);
        let want = direct(case, role);
        let s = want.iter().find(|s| s.setting.label() == row["setting"].as_str().unwrap()).unwrap();
        assert_eq!(row["roi_voxels"], s.roi_voxels);
        match &s.features {
            Ok(f) => {
                assert!(row["error"].is_null());
                for tag in ["morph_volume", "stat_mean", "cm_joint_max_3D_avg"] {
                    let v = f.iter().find(|(t, _)| t == tag).unwrap().1;
                    assert_eq!(row[tag].as_f64().unwrap(), v, "{case} {role} {tag}");
                    compared += 1;
                }
            }
            Err(e) => {
                assert_eq!(row["error"], e.as_str());
                assert!(row["stat_mean"].is_null());
            }
        }
    }
    assert!(compared >= 30, "{compared} values compared");
    // The small lesion (a few voxels) leaves nothing on the 4 mm grid: said so in its row.
    assert!(rows.iter().any(|r| r["case_id"] == "PHH-0002" && r["series"] == "T2" && r["error"].is_string()));
}
