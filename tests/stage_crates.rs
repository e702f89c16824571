//! The workspace's shape, as a newcomer relies on it: every producer named in the topic graph
//! (`services/messages/src/topics.rs`) is one crate under `services/`, named after its stage,
//! and every stage that runs on the bus has the same parts (`config`, `run`, `serve`).

use renal_messages::topics;
use std::path::{Path, PathBuf};

fn services() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services")
}

#[test]
fn every_producer_in_the_topic_graph_is_a_crate_named_after_its_stage() {
    let mut producers: Vec<&str> = topics::ALL.iter().map(|t| t.producer).collect();
    producers.sort();
    producers.dedup();
    assert!(producers.len() >= 7, "{producers:?}");
    for stage in producers {
        let manifest = services().join(stage).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{stage} produces a topic but {} is unreadable: {e}", manifest.display()));
        assert!(
            text.contains(&format!("name = \"renal-{stage}\"")),
            "{} is not the crate renal-{stage}",
            manifest.display()
        );
    }
}

#[test]
fn every_stage_on_the_bus_has_config_events_run_and_serve() {
    let consumers: std::collections::BTreeSet<&str> =
        topics::ALL.iter().flat_map(|t| t.consumers.iter().copied()).collect();
    // Stages that consume a topic with a run loop; the replayer is a tool an operator runs (no loop).
    let on_bus: Vec<&str> = consumers.into_iter().filter(|s| services().join(s).join("src/run.rs").exists()).collect();
    assert_eq!(
        on_bus,
        ["ensemble", "inference", "monitor", "preprocess", "radiomics", "trainer"],
        "stages with a run loop"
    );
    for stage in on_bus.iter().copied().chain(["ingest"]) {
        let src = services().join(stage).join("src");
        for part in ["config.rs", "events.rs", "run.rs", "serve.rs"] {
            assert!(src.join(part).exists(), "{stage} lacks {part}");
        }
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        assert!(lib.contains("pub use serve::{serve"), "{stage}'s lib.rs does not export serve");
        assert!(lib.contains("pub use run::{run"), "{stage}'s lib.rs does not export run");
        assert!(lib.contains("pub mod events;"), "{stage}'s lib.rs has no events module");
    }
}
