//! Ingest then preprocess on the in-process bus: one `renal.lesions` message per case, with
//! composites of the documented shape and range, NIfTI volumes on the series grids, the tumour
//! volume of the primary mask, and sane N4 QC values; broken messages and cases are
//! dead-lettered with reason codes while the rest go through.

use renal_bus::{Bus, InProcessBus};
use renal_imaging::nifti;
use renal_ingest::{IngestConfig, Mode, SiteConfig};
use renal_messages::{topics, BlobRef, CaseV1, DeadLetterV1, LesionV1, Message, VolumeBlobs};
use renal_preprocess::PreprocessSettings;
use renal_store::{BlobStore, LocalBlobStore};
use renal_synth::{generate, SynthConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

#[test]
fn cases_become_lesions_and_bad_input_becomes_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("cohort");
    let synth = SynthConfig {
        lesions: 4,
        seed: 21,
        sites: vec!["MAY".into(), "PHH".into()],
        multi_segmenter_fraction: 0.0,
        ..SynthConfig::default()
    };
    generate(&synth, &cohort, &|_| {}).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cohort.join("manifest.json")).unwrap()).unwrap();
    let sites = ["MAY", "PHH"]
        .iter()
        .map(|c| SiteConfig { code: c.to_string(), drop_folder: cohort.join(c), rules: Default::default() })
        .collect();
    let blobs = dir.path().join("blobs");
    let ingest = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        scan_interval_ms: 0,
        file_settle_ms: 0,
        ..IngestConfig::new(sites, blobs.display().to_string(), dir.path().join("store"))
    };
    let bus = InProcessBus::new(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(renal_ingest::run(&ingest, b"k".to_vec(), bus.clone(), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    let cases: Vec<CaseV1> = bus.records(topics::CASES).iter().map(|r| CaseV1::decode(&r.payload).unwrap()).collect();
    assert_eq!(cases.len(), 4);

    // Broken input next to the good cases: a payload that is not a case, and a case whose
    // T2 manifest is garbage.
    let store: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(&blobs).unwrap());
    let mut broken = cases[0].clone();
    broken.case_id = "MAY-broken".into();
    broken.series[0].blob = store.put(b"not a manifest").unwrap();
    // And one that names a blob the store never had: dead-lettered, not retried forever.
    let mut dangling = cases[1].clone();
    dangling.case_id = "MAY-dangling".into();
    dangling.segmentations[0].blob = renal_store::blob_ref(b"never stored");
    rt.block_on(async {
        bus.send(topics::CASES, &dangling.case_id, dangling.encode()).await.unwrap();
        bus.send(topics::CASES, "junk", b"{\"version\": 9}".to_vec()).await.unwrap();
        bus.send(topics::CASES, &broken.case_id, broken.encode()).await.unwrap();
    });

    let stats = rt
        .block_on(renal_preprocess::run(
            PreprocessSettings::default(),
            store.clone(),
            bus.clone(),
            bus.drained(renal_preprocess::GROUP, topics::CASES),
            &|_| {},
        ))
        .unwrap();
    assert_eq!((stats.inputs, stats.outputs, stats.dead_letters), (7, 4, 3));

    let letters: BTreeMap<String, String> = bus
        .records(topics::DEAD_PREPROCESS)
        .iter()
        .map(|r| {
            let l = DeadLetterV1::decode(&r.payload).unwrap();
            (l.source.key.clone(), l.reason_code)
        })
        .collect();
    assert_eq!(letters["junk"], "bad_message");
    assert_eq!(letters["MAY-broken"], "bad_manifest");
    assert_eq!(letters["MAY-dangling"], "missing_blob");

    let get = |b: &BlobRef| store.get(b).unwrap();
    for r in bus.records(topics::LESIONS) {
        let lesion = LesionV1::decode(&r.payload).unwrap();
        let truth = manifest["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                // Ingest names the lesion by its accession pseudonym under the run's secret.
                let id = renal_base::keys::Keys::new(b"k")
                    .lesion_id(s["site"].as_str().unwrap(), s["case_id"].as_str().unwrap());
                id == lesion.case_id && s["role"] == "T1C"
            })
            .unwrap();
        let r1_ml = truth["segmentations"][0]["volume_ml"].as_f64().unwrap();
        assert!(
            (lesion.tumour_volume_ml - r1_ml).abs() < 1e-6 * r1_ml.max(1.0),
            "{} vs {r1_ml}",
            lesion.tumour_volume_ml
        );
        for c in &lesion.composites {
            let bytes = get(c);
            assert_eq!(bytes.len(), 3 * 200 * 200 * 4);
            let values = renal_imaging::composite::decode_f32_le(&bytes).unwrap();
            assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
            for channel in values.chunks(200 * 200) {
                let top = channel.iter().fold(0.0f32, |m, &v| m.max(v));
                assert!((top - 1.0).abs() < 1e-6, "each channel is scaled to reach 1");
            }
        }
        for v in &lesion.volumes {
            let bundle: VolumeBlobs = serde_json::from_slice(&get(v)).unwrap();
            let image = nifti::decode(&get(&bundle.image)).unwrap().volume;
            let mask = nifti::decode(&get(&bundle.mask)).unwrap().volume;
            assert_eq!(image.geometry.dims, mask.geometry.dims);
            assert!(mask.data.iter().any(|&m| m > 0.5));
        }
        // The body holds many tissues, so its CV is mostly contrast; N4 (checked against
        // SimpleITK elsewhere) must leave it of the same order, not wreck the image.
        let [before, after] = lesion.qc.n4_cv_before_after;
        assert!(before > 0.0 && after > 0.0 && (after - before).abs() < 0.5 * before, "{before} -> {after}");
        assert!(lesion.qc.mask_voxels.iter().all(|&n| n > 0));
    }
}
