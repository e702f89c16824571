//! The fuzz targets' short run in the suite: each target's body (`fuzz/bodies.rs`, the same
//! code `cargo fuzz` drives in `scripts/fuzz.sh`) over its seeds (a synthetic cohort's MR and
//! SEG instances, real messages), every saved regression input (`fuzz/regressions/<target>/`),
//! and a few thousand seeded mutations of the seeds (bit flips, interesting lengths and values,
//! cuts, repeats, insertions). A panic fails the test; each target's count is printed.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use renal_messages::{
    BlobRef, CaseV1, Clinical, DeadLetterSource, DeadLetterV1, Message, Provenance, Role, SegRef, SeriesRef, Sex,
};
use std::path::Path;

const MUTATIONS_PER_TARGET: usize = 2_000;

/// A target: its name, its seeds and its body.
type Target<'a> = (&'a str, &'a [Vec<u8>], fn(&[u8]));

/// xorshift64*: a seeded stream, so a failure here is reproduced by running the test again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len().max(1));
        match rng.below(7) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = [0x00, 0xFF, 0x7F, 0x80, 0x01][rng.below(5)],
            2 if v.len() >= at + 4 => {
                let n: u32 = [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0xFFFF, 0x1_0000, 65_535 * 65_535][rng.below(7)];
                v[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            3 => v.truncate(at),
            4 if !v.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            5 if !v.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
            _ => {
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
        }
    }
    v
}

/// Run `body` over the seeds and every saved regression input of `target`; returns how many.
fn replay_saved(target: &str, seeds: &[Vec<u8>], body: fn(&[u8])) -> usize {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    for s in seeds {
        body(s);
    }
    let saved = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut regressions = 0;
    if let Ok(entries) = std::fs::read_dir(&saved) {
        for e in entries.flatten() {
            body(&std::fs::read(e.path()).unwrap());
            regressions += 1;
        }
    }
    println!("{target}: {} seeds and {regressions} saved regressions, no panic", seeds.len());
    seeds.len() + regressions
}

/// This process's peak resident memory, KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Run `body` over seeded mutations of the seeds.
fn mutations(target: &str, seeds: &[Vec<u8>], body: fn(&[u8])) -> usize {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for i in 0..MUTATIONS_PER_TARGET {
        let input = mutate(&seeds[i % seeds.len()], &mut rng);
        body(&input);
    }
    println!("{target}: {MUTATIONS_PER_TARGET} mutations, no panic");
    MUTATIONS_PER_TARGET
}

fn blob(n: u8) -> BlobRef {
    BlobRef { key: format!("sha256/{n:02x}/{}", "cd".repeat(32)), sha256: "cd".repeat(32), bytes: 10 }
}

fn messages() -> Vec<Vec<u8>> {
    let provenance = Provenance {
        code_version: "0".into(),
        produced_at: "2026-12-07T00:00:00Z".into(),
        input_sha256: "ab".repeat(32),
    };
    let case = CaseV1 {
        version: 1,
        case_id: "MAY-0123456789abcdef".into(),
        first_instance_at: None,
        revision: 1,
        site: "MAY".into(),
        patient_pseudonym: "9f".repeat(32),
        study_uid: "2.25.1".into(),
        study_date: "2019-05-02".into(),
        clinical: Clinical { age_years: Some(61), sex: Some(Sex::F) },
        series: vec![SeriesRef {
            role: Role::T2,
            series_uid: "2.25.2".into(),
            description: "T2".into(),
            manufacturer: "X".into(),
            field_strength_t: Some(1.5),
            instances: 3,
            blob: blob(1),
        }],
        segmentations: vec![SegRef {
            role: Role::T2,
            reader: "R1".into(),
            seg_series_uid: "2.25.3".into(),
            referenced_series_uid: "2.25.2".into(),
            blob: blob(2),
        }],
        provenance,
    };
    let letter = renal_bus::with_input(
        DeadLetterV1 {
            version: 1,
            stage: "ensemble".into(),
            reason_code: "unknown_lesion".into(),
            reason: "r".into(),
            source: DeadLetterSource {
                topic: Some("renal.scores".into()),
                partition: Some(0),
                offset: Some(1),
                key: "k".into(),
            },
            input_sha256: "00".repeat(32),
            at: "2026-12-07T00:00:00Z".into(),
            input_base64: None,
        },
        b"{}",
    );
    vec![
        case.encode(),
        letter.encode(),
        b"case_id,label\nMAY-0001,malignant\nMAY-0002,benign\n".to_vec(),
        b"accession,site,label,subtype\nA1,MAY,malignant,clear cell\n".to_vec(),
    ]
}

#[test]
fn every_fuzz_target_survives_its_seeds_saved_crashes_and_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = dir.path().join("cohort");
    let config = renal_synth::SynthConfig { lesions: 1, seed: 5, sites: vec!["MAY".into()], ..Default::default() };
    renal_synth::generate(&config, &cohort, &|_| {}).unwrap();
    let files = renal_ingest::drop_folder::list_files(&cohort.join("MAY"));
    let dicom: Vec<Vec<u8>> =
        files.iter().filter(|p| p.extension().is_some_and(|x| x == "dcm")).map(|p| std::fs::read(p).unwrap()).collect();
    let kind =
        |b: &[u8]| renal_ingest::instance::parse(b).map(|i| matches!(i.kind, renal_ingest::instance::Kind::Seg(_)));
    let (segs, mrs): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = dicom.iter().partition(|b| kind(b).unwrap());
    assert!(segs.len() >= 2 && mrs.len() >= 10, "{} SEG, {} MR", segs.len(), mrs.len());
    // A few instances of each kind, small enough to mutate quickly.
    let instance_seeds: Vec<Vec<u8>> = mrs.iter().take(3).chain(segs.iter().take(2)).map(|b| b.to_vec()).collect();
    let series_seeds: Vec<Vec<u8>> =
        vec![bodies::join(&[&mrs[0][..], &mrs[1][..], &mrs[2][..]]), bodies::join(&[&mrs[3][..]])];
    let seg_seeds: Vec<Vec<u8>> = segs.iter().map(|s| bodies::join(&[&mrs[0][..], &s[..]])).collect();
    let messages = messages();

    let targets: [Target; 4] = [
        ("instance", &instance_seeds, bodies::instance),
        ("series", &series_seeds, bodies::series),
        ("seg", &seg_seeds, bodies::seg),
        ("message", &messages, bodies::message),
    ];
    let saved: usize = targets.iter().map(|(t, seeds, body)| replay_saved(t, seeds, *body)).sum();
    // The saved inputs once made the parser reserve gigabytes (declared lengths far past the
    // end of the file); refused up front now, they leave this process's peak memory small.
    let peak = peak_kib();
    assert!(peak < 512 * 1024, "peak memory {peak} KiB after the seeds and saved regressions");
    let mutated: usize = targets.iter().map(|(t, seeds, body)| mutations(t, seeds, *body)).sum();
    assert!(saved >= 3 && mutated == 4 * MUTATIONS_PER_TARGET);
    // The seeds themselves go the whole way: an untouched MR instance is taken in, the
    // series decodes, and the SEG reads onto the grid (so mutations start from deep paths).
    assert!(renal_ingest::instance::parse(&instance_seeds[0]).is_ok());
    assert!(renal_dicom::read::read_series(&[mrs[0].to_vec(), mrs[1].to_vec()]).is_ok());
}
