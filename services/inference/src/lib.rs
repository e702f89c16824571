//! The inference stage: `renal.lesions` in, `renal.scores` out, dead letters to
//! `renal.dead.inference`.
//!
//! The same five parts as every stage: [`config`] (`[inference]`), [`process`] (a batch of
//! lesions to one score or typed error each; tested without a bus), [`run`] (the batching loop
//! on `renal.lesions`) and [`serve`] (start-up on Kafka). The networks themselves, their
//! bundles and the scorer are `renal_cnn`'s. The bundle is loaded once at start-up: a version
//! that does not exist stops the worker before it consumes anything.
//!
//! Dead-letter reasons: `bad_message` (not a LesionV1), `missing_blob`, `corrupt_blob` (the
//! stored bytes do not hash to the reference), `bad_composite` (not 3 x S x S float32, or not
//! finite).

pub mod config;
pub mod events;
pub mod process;
pub mod run;
pub mod serve;

pub use config::InferenceConfig;
pub use process::{score_batch, InferenceError};
pub use run::{run, GROUP};
pub use serve::{serve, ServeError};
