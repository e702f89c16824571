//! The ingest worker over drop folders on the in-process bus: every lesion once in
//! `renal.cases` and in the `cases` table, junk dead-lettered with a reason, files taken out
//! only after their case is out (the raw instance kept only in the quarantine store, the
//! original UIDs only in the UID map), and a second run over the same folders finds nothing new.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use renal_bus::InProcessBus;
use renal_ingest::drop_folder::list_files;
use renal_ingest::{run, IngestConfig, Mode, SiteConfig};
use renal_messages::{topics, CaseV1, DeadLetterV1, Message};
use renal_synth::{generate, SynthConfig};
use std::collections::BTreeSet;

#[test]
fn drop_folders_to_cases_with_dead_letters_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("in");
    let synth = SynthConfig {
        lesions: 5,
        seed: 31,
        sites: vec!["MAY".into(), "SXH".into()],
        multi_segmenter_fraction: 0.0,
        ..SynthConfig::default()
    };
    generate(&synth, &cohort, &|_| {}).unwrap();
    // Junk a scanner or a person might drop: text, a truncated instance.
    std::fs::write(cohort.join("MAY/notes.txt"), b"not dicom").unwrap();
    let some = std::fs::read(cohort.join("MAY/P00001/ST1/SE003/0001.dcm")).unwrap();
    std::fs::write(cohort.join("MAY/truncated.dcm"), &some[..400]).unwrap();
    let sites = ["MAY", "SXH"]
        .iter()
        .map(|c| SiteConfig { code: c.to_string(), drop_folder: cohort.join(c), rules: Default::default() })
        .collect();
    let config = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        scan_interval_ms: 10,
        file_settle_ms: 0,
        move_processed: true,
        quarantine_store: Some(dir.path().join("quarantine").display().to_string()),
        uid_map_root: Some(dir.path().join("uid-map")),
        ..IngestConfig::new(sites, dir.path().join("blobs").display().to_string(), dir.path().join("store"))
    };
    let raw_study_uid = renal_ingest::instance::parse(&some).unwrap().study_uid;
    let bus = InProcessBus::new(3);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stats = rt
        .block_on(run(&config, b"secret".to_vec(), bus.clone(), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    assert_eq!(stats.cases, 5);
    assert_eq!(stats.dead_letters, 2);

    let cases: Vec<CaseV1> = bus.records(topics::CASES).iter().map(|r| CaseV1::decode(&r.payload).unwrap()).collect();
    let ids: BTreeSet<&str> = cases.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(ids.len(), 5, "each lesion once");
    let letters: Vec<DeadLetterV1> =
        bus.records(topics::DEAD_INGEST).iter().map(|r| DeadLetterV1::decode(&r.payload).unwrap()).collect();
    let codes: BTreeSet<&str> = letters.iter().map(|l| l.reason_code.as_str()).collect();
    assert_eq!(codes, BTreeSet::from(["unreadable"]));
    assert!(letters.iter().all(|l| l.source.key.starts_with("MAY:")));

    let files: Vec<_> = list_files(&dir.path().join("store/cases"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert_eq!(files.len(), 5);
    let mut table_ids = BTreeSet::new();
    for f in &files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col =
                batch.column_by_name("case_id").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
            table_ids.insert(col.value(0).to_string());
            for p in ["code_version", "settings_sha256", "input_sha256"] {
                assert!(batch.column_by_name(p).is_some(), "{p}");
            }
        }
        assert!(f.to_string_lossy().contains("/site="), "partitioned by site");
    }
    assert_eq!(table_ids.iter().map(String::as_str).collect::<BTreeSet<_>>(), ids);

    // Everything handled was moved out of the drop folders.
    for site in ["MAY", "SXH"] {
        let left = list_files(&cohort.join(site));
        assert!(left.is_empty(), "{site}: {left:?}");
    }
    assert!(cohort.join("MAY/.rejected/notes.txt").exists());
    assert!(!cohort.join("MAY/P00001/ST1/SE003/0001.dcm").exists(), "deleted once its case was sent");
    // The file as received is in the quarantine store only; the blob store has its
    // de-identified copy; the UID map leads back to the hospital's study.
    let quarantined = renal_store::LocalBlobStore::new(&dir.path().join("quarantine")).unwrap();
    let raw_ref = renal_store::blob_ref(&some);
    assert_eq!(renal_store::BlobStore::get(&quarantined, &raw_ref).unwrap(), some);
    let blobs = renal_store::LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
    assert!(renal_store::BlobStore::get(&blobs, &raw_ref).is_err(), "no raw instance in the blob store");
    let case = cases.iter().find(|c| c.site == "MAY").unwrap();
    assert_ne!(case.study_uid, raw_study_uid);
    let map_root = dir.path().join("uid-map");
    let restored: BTreeSet<String> =
        cases.iter().filter_map(|c| renal_ingest::run::original_uid(&map_root, &c.study_uid)).collect();
    assert_eq!(restored.len(), 5, "every study's original UID is in the map");
    assert!(restored.contains(&raw_study_uid));
    assert_eq!(renal_ingest::run::original_uid(&map_root, "../../etc/passwd"), None);

    // A second run finds nothing to do.
    let again = rt
        .block_on(run(&config, b"secret".to_vec(), bus.clone(), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    assert_eq!((again.instances, again.cases, again.dead_letters), (0, 0, 0));
}

#[test]
fn continuous_mode_waits_for_files_to_settle() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("in");
    let synth = SynthConfig { lesions: 1, seed: 5, sites: vec!["TCIA".into()], ..SynthConfig::default() };
    generate(&synth, &cohort, &|_| {}).unwrap();
    let site = SiteConfig { code: "TCIA".into(), drop_folder: cohort.join("TCIA"), rules: Default::default() };
    let mut config = IngestConfig {
        quiet_period_ms: 0,
        scan_interval_ms: 20,
        file_settle_ms: 60_000, // the files were just written: none is settled
        ..IngestConfig::new(vec![site], dir.path().join("blobs").display().to_string(), dir.path().join("store"))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stop = || async { tokio::time::sleep(std::time::Duration::from_millis(300)).await };
    let bus = InProcessBus::new(1);
    let waiting = rt.block_on(run(&config, b"s".to_vec(), bus.clone(), Mode::Continuous, stop(), &|_| {})).unwrap();
    assert_eq!((waiting.instances, waiting.cases), (0, 0), "fresh files must not be read");
    config.file_settle_ms = 0;
    let read = rt.block_on(run(&config, b"s".to_vec(), bus.clone(), Mode::Continuous, stop(), &|_| {})).unwrap();
    assert!(read.instances > 0);
    assert_eq!(read.cases, 1);
}
