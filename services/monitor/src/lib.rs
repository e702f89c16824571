//! The monitor stage: is each site's input still what the served models were trained on, are
//! their probabilities still calibrated, and how well are they doing while pathology is pending?
//!
//! The same five parts as every stage: [`config`] (`[monitor]`), [`process`] (observations in,
//! findings out, tested without a bus), [`run`] (one loop over every watched topic, with a
//! journal that carries the state across restarts), [`events`] (log lines and gauges) and
//! [`serve`] (start-up on Kafka). [`reference`] is what the serving bundle's training saved of
//! its reference population; [`table`] the `drift` and `calibration` tables. The statistics
//! (PSI, KS, Wasserstein-1, CBPE) are pure functions in `renal_stats::drift`.
//!
//! Per (site, scanner, signal) a window of the most recent lesions is compared with the
//! reference every `stride_lesions` new lesions. Signals: the ensemble probability, both
//! networks' probabilities (each with its own gauges) and the watched radiomics features
//! (summarised per site and scanner on the gauges, row by row in the `drift` table). Labels join
//! predictions by lesion id, whichever comes first; per site, calibration and performance over
//! the most recent labelled lesions, and CBPE's expectation for the lesions still without one.
//!
//! ```
//! use renal_monitor::process::{Monitor, Observation};
//! use renal_monitor::reference::{MonitorReference, ReferenceSettings, ENSEMBLE};
//! use renal_monitor::MonitorConfig;
//! let reference_values = [(ENSEMBLE.to_string(), (0..200).map(|i| f64::from(i) / 200.0).collect())];
//! let reference =
//!     MonitorReference::build("ens-1", 0.5, 200, ReferenceSettings::default(), &reference_values.into()).unwrap();
//! let mut m = Monitor::new(MonitorConfig::new("r".into(), "s".into(), "t".into()), reference);
//! let mut psi = 0.0;
//! for i in 0..20u32 {
//!     let id = format!("MAY-{i}");
//!     m.observe(&Observation::Case { case_id: id.clone(), site: "MAY".into(), scanner: "GE 3T".into() }, 0);
//!     // A scanner whose probabilities all sit near 0.9.
//!     let values = vec![(ENSEMBLE.to_string(), 0.9 + f64::from(i) / 1000.0)];
//!     for row in m.observe(&Observation::Values { case_id: id, revision: 1, site: "MAY".into(), values }, 0).drift {
//!         psi = row.drift.psi;
//!     }
//! }
//! assert!(psi > 1.0);
//! ```

pub mod config;
pub mod events;
pub mod process;
pub mod reference;
pub mod report;
pub mod run;
pub mod serve;
pub mod table;

pub use config::MonitorConfig;
pub use process::{Monitor, MonitorError, Observation};
pub use run::{run, MonitorStats, GROUP};
pub use serve::{serve, ServeError};
