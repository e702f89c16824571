//! The blob store on a real S3-compatible server (moto, from the test venv): the ingest worker
//! with `blob_store = "s3://..."` puts every instance and series manifest there, an
//! independent client (boto3) finds exactly those objects with contents that hash to their
//! keys, and our store reads them back verified.

use renal_bus::InProcessBus;
use renal_e2e::S3Server;
use renal_ingest::{run, IngestConfig, Mode, SiteConfig};
use renal_messages::{topics, CaseV1, Message};
use renal_store::{sha256_hex, BlobStore, ObjectBlobStore};
use renal_synth::{generate, SynthConfig};
use std::collections::BTreeSet;

#[test]
fn ingest_puts_instances_and_manifests_into_s3() {
    let s3 = S3Server::start();
    s3.boto3("s3.create_bucket(Bucket='renal-blobs')");
    // object_store reads its settings from the standard AWS variables, as a deployment would.
    for (k, v) in [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }

    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("in");
    let synth = SynthConfig {
        lesions: 3,
        seed: 5,
        sites: vec!["TCIA".into()],
        multi_segmenter_fraction: 0.0,
        ..SynthConfig::default()
    };
    generate(&synth, &cohort, &|_| {}).unwrap();
    let site = SiteConfig { code: "TCIA".into(), drop_folder: cohort.join("TCIA"), rules: Default::default() };
    let config = IngestConfig {
        quiet_period_ms: 0,
        incomplete_timeout_ms: 0,
        scan_interval_ms: 0,
        file_settle_ms: 0,
        ..IngestConfig::new(vec![site], "s3://renal-blobs/ingest", dir.path().join("store"))
    };
    let bus = InProcessBus::new(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stats = rt
        .block_on(run(&config, b"secret".to_vec(), bus.clone(), Mode::Batch, std::future::pending(), &|_| {}))
        .unwrap();
    assert_eq!(stats.cases, 3);
    assert_eq!(stats.dead_letters, 0);

    // What an independent client sees: key -> SHA-256 of the object's bytes.
    let listing = s3.boto3(
        "import hashlib\n\
         pages = s3.get_paginator('list_objects_v2').paginate(Bucket='renal-blobs', Prefix='ingest/')\n\
         for page in pages:\n\
         \x20   for o in page.get('Contents', []):\n\
         \x20       body = s3.get_object(Bucket='renal-blobs', Key=o['Key'])['Body'].read()\n\
         \x20       print(o['Key'], hashlib.sha256(body).hexdigest())",
    );
    let objects: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let (k, h) = l.split_once(' ').unwrap();
            (k.to_string(), h.to_string())
        })
        .collect();
    for (key, sha) in &objects {
        assert_eq!(key, &format!("ingest/sha256/{}/{}", &sha[..2], sha), "object named by its content");
    }
    let keys: BTreeSet<String> = objects.iter().map(|(k, _)| k["ingest/".len()..].to_string()).collect();

    // Every instance, de-identified as ingest does it (never as received), and every series
    // manifest the cases point to are there.
    let profile = renal_ingest::deid::Profile {
        keys: renal_ingest::deid::Keys::new(b"secret"),
        private_creators: Default::default(),
    };
    let key_of = |bytes: &[u8]| {
        let sha = sha256_hex(bytes);
        format!("sha256/{}/{}", &sha[..2], sha)
    };
    let files = renal_e2e::files_under(&cohort.join("TCIA"), Some("dcm"));
    let instances: BTreeSet<String> = files
        .iter()
        .map(|p| key_of(&renal_ingest::deid::deidentify(&std::fs::read(p).unwrap(), "TCIA", &profile).unwrap().bytes))
        .collect();
    assert!(files.iter().all(|p| !keys.contains(&key_of(&std::fs::read(p).unwrap()))), "an instance as received");
    assert!(instances.is_subset(&keys), "{} instances, {} objects", instances.len(), keys.len());
    let store = ObjectBlobStore::from_url("s3://renal-blobs/ingest").unwrap();
    let mut manifests = BTreeSet::new();
    for r in bus.records(topics::CASES) {
        let case = CaseV1::decode(&r.payload).unwrap();
        for blob in case.series.iter().map(|s| &s.blob).chain(case.segmentations.iter().map(|s| &s.blob)) {
            let bytes = store.get(blob).unwrap();
            assert_eq!(bytes.len() as u64, blob.bytes);
            manifests.insert(blob.key.clone());
        }
    }
    let expected: BTreeSet<String> = instances.union(&manifests).cloned().collect();
    assert_eq!(keys, expected, "exactly the instances and the manifests the cases point to");
}
