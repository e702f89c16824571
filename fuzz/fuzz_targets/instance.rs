//! `cargo fuzz run instance`: see `fuzz/bodies.rs`.
#![no_main]

#[allow(dead_code)] // each target uses part of the shared bodies
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::instance(data));
