//! The ensemble stage on a bus: `renal.scores` joined with `renal.lesions` by lesion id, out to
//! `renal.predictions`; dead letters to `renal.dead.ensemble`.
//!
//! Two loops run in one worker, each with its own consumer group and the usual at-least-once
//! contract ([`renal_bus::run_stage`]):
//! - **lesions** (`renal-ensemble-lesions`): each `LesionV1`'s clinical values (age, sex,
//!   tumour volume) go into the join table ([`crate::join`]) under its lesion id and revision;
//! - **scores** (`renal-ensemble`): each `ScoresV1` is matched with the row of the same lesion
//!   id *and* revision and predicted ([`crate::process::Scoring`]); while a score waits for its
//!   lesion, later scores on its partition wait behind it (their offsets cannot be committed
//!   past it).
//!
//! A sweeper dead-letters parked half scores whose other half did not come in time. Like every
//! send outside a stage loop, its sends retry until the broker takes them.

use crate::bundle::Bundle;
use crate::config::EnsembleConfig;
use crate::events::PredictionMade;
use crate::join::{ClinicalTable, PartialTable};
use crate::process::{expired, take_lesion, Scored, Scoring};
use renal_bus::{run_stage, send_with_retry, Backoff, Bus, BusError, Outcome, Output, Record, StageConfig, StageStats};
use renal_messages::{topics, LesionV1, Message};
use renal_registry::follow::ModelSwitched;
use renal_telemetry::emit;
use std::future::Future;
use std::time::{Duration, Instant};

/// Consumer group of the scores loop.
pub const GROUP: &str = "renal-ensemble";
/// Consumer group of the lesions loop.
pub const LESION_GROUP: &str = "renal-ensemble-lesions";

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Dead-letter expired partial scores every `period` until `stop` turns true; returns how many.
async fn sweep<B: Bus>(
    bus: B,
    partials: PartialTable,
    wait_ms: u64,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, BusError> {
    let mut sent = 0;
    loop {
        for (p, letter) in expired(&partials, now_ms(), wait_ms) {
            let out = Output { topic: topics::DEAD_ENSEMBLE, key: p.source.key.clone(), payload: letter.encode() };
            send_with_retry(&bus, &out, Backoff::WORKER).await?;
            // Sent before forgotten: a crash in between sends the letter again, never loses it.
            // A state folder that cannot be written now is tried again at the next sweep.
            if partials.remove(&p.case_id, p.revision).is_ok() {
                sent += 1;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return Ok(sent),
        }
    }
}

/// What both loops did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsembleStats {
    /// The lesions loop.
    pub lesions: StageStats,
    /// The scores loop.
    pub scores: StageStats,
    /// Partial scores dead-lettered after `modality_wait_ms`.
    pub partial_dead_letters: u64,
}

/// Run `task`, then tell the others to stop (whether it ended on the signal or failed).
async fn then_stop<T>(task: impl Future<Output = T>, stop: &tokio::sync::watch::Sender<bool>) -> T {
    let out = task.await;
    let _ = stop.send(true);
    out
}

/// Run both loops and the sweeper until `shutdown` resolves (or one of them fails, which stops
/// the others); `progress` gets the number of score attempts so far. A bundle received on
/// `swaps` (a newly promoted model, loaded) is served from the next score on
/// ([`Scoring::serve`]).
pub async fn run<B: Bus>(
    cfg: &EnsembleConfig,
    bundle: Bundle,
    bus: B,
    mut swaps: Option<tokio::sync::mpsc::UnboundedReceiver<Bundle>>,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EnsembleStats, BusError> {
    let table = ClinicalTable::open(&cfg.state_dir.join("lesions")).map_err(|e| BusError::Fatal(e.to_string()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let lesions = {
        let table = table.clone();
        let loop_ = run_stage(
            bus.clone(),
            StageConfig::new("ensemble", LESION_GROUP, vec![topics::LESIONS]),
            move |r: Record| {
                let o = match r.decode::<LesionV1>() {
                    Ok(lesion) => match take_lesion(&lesion, &table) {
                        Ok(()) => Outcome::Done(Vec::new()),
                        Err(e) => Outcome::failed(&e),
                    },
                    Err(outcome) => outcome,
                };
                async move { o }
            },
            until_stopped(stopped.clone()),
        );
        then_stop(loop_, &stop)
    };
    let partials =
        PartialTable::open(&cfg.state_dir.join("partial-scores")).map_err(|e| BusError::Fatal(e.to_string()))?;
    let sweeper = {
        let period = Duration::from_millis((cfg.modality_wait_ms / 4).clamp(10, 1_000));
        let loop_ = sweep(bus.clone(), partials.clone(), cfg.modality_wait_ms, period, stopped.clone());
        then_stop(loop_, &stop)
    };
    let mut scoring = Scoring::new(bundle, table, partials, Duration::from_millis(cfg.lesion_wait_ms));
    let mut attempts = 0u64;
    let scores = {
        let loop_ = run_stage(
            bus,
            StageConfig::new("ensemble", GROUP, vec![topics::SCORES]),
            move |r: Record| {
                while let Some(next) = swaps.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    let to = next.version.clone();
                    let from = scoring.serve(next);
                    emit(ModelSwitched { stage: "ensemble", from: &from, to: &to });
                }
                attempts += 1;
                progress(attempts);
                let o = match scoring.process(&r.payload, &r.source(), Instant::now()) {
                    Ok(Scored::Predicted(p)) => {
                        emit(PredictionMade { site: &p.site, first_instance_at: p.first_instance_at.as_deref() });
                        Outcome::emit(topics::PREDICTIONS, &p.case_id, &*p)
                    }
                    Ok(Scored::Parked) => Outcome::Done(Vec::new()),
                    Err(e) => Outcome::failed(&e),
                };
                async move { o }
            },
            until_stopped(stopped.clone()),
        );
        then_stop(loop_, &stop)
    };
    let signal = async {
        let mut rx = stopped.clone();
        tokio::select! {
            _ = shutdown => { let _ = stop.send(true); }
            _ = rx.wait_for(|s| *s) => {}
        }
    };
    let ((), lesions, scores, swept) = tokio::join!(signal, lesions, scores, sweeper);
    Ok(EnsembleStats { lesions: lesions?, scores: scores?, partial_dead_letters: swept? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{self, tests::content};
    use crate::process::tests::{lesion, scores, CNN};
    use renal_bus::{Consumer, InProcessBus};
    use renal_messages::{DeadLetterV1, PredictionV1};

    #[test]
    fn the_worker_joins_over_the_bus_and_dead_letters_what_never_joins() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("models");
        let b = bundle::save(&reg, content(CNN), "t", "t").unwrap();
        let cfg = EnsembleConfig {
            lesion_wait_ms: 800,
            modality_wait_ms: 300,
            ..EnsembleConfig::new(reg, &b.version, dir.path().join("state"))
        };
        let bus = InProcessBus::new(3);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stats = rt.block_on(async {
            // Scores first, lesions later: the join waits for them.
            for i in 0..4 {
                let id = format!("MAY-{i:04}");
                bus.send(topics::SCORES, &id, scores(&id, 1, 0.6, 0.5, CNN).encode()).await.unwrap();
            }
            bus.send(topics::SCORES, "MAY-0099", scores("MAY-0099", 1, 0.6, 0.5, CNN).encode()).await.unwrap();
            let mut half = serde_json::to_value(scores("MAY-0098", 1, 0.6, 0.5, CNN)).unwrap();
            half.as_object_mut().unwrap().remove("t2_probability");
            bus.send(topics::SCORES, "MAY-0098", serde_json::to_vec(&half).unwrap()).await.unwrap();
            let feeder = bus.clone();
            let feed = async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                for i in (0..4).rev() {
                    let l = lesion(&format!("MAY-{i:04}"), 1, Some(50 + i), 10.0 * f64::from(i));
                    feeder.send(topics::LESIONS, &l.case_id, l.encode()).await.unwrap();
                }
            };
            let watcher = bus.clone();
            let done = async move {
                let mut out = watcher.consumer("check", &[topics::PREDICTIONS, topics::DEAD_ENSEMBLE]).unwrap();
                for _ in 0..6 {
                    out.recv().await.unwrap();
                }
                // Let the loops commit what they delivered.
                tokio::time::sleep(Duration::from_millis(1_200)).await;
            };
            let (_, stats) = tokio::join!(feed, run(&cfg, b.clone(), bus.clone(), None, done, &|_| {}));
            stats.unwrap()
        });
        let predictions: Vec<PredictionV1> =
            bus.records(topics::PREDICTIONS).iter().map(|r| PredictionV1::decode(&r.payload).unwrap()).collect();
        assert_eq!(predictions.len(), 4);
        for p in &predictions {
            let i: u32 = p.case_id[4..].parse().unwrap();
            let want = b.content.call(0.6, 0.5, &[f64::from(50 + i), 1.0, 10.0 * f64::from(i)]);
            assert_eq!(p.inputs, want.inputs, "{}", p.case_id);
        }
        let dead: Vec<DeadLetterV1> =
            bus.records(topics::DEAD_ENSEMBLE).iter().map(|r| DeadLetterV1::decode(&r.payload).unwrap()).collect();
        let codes: std::collections::BTreeSet<(&str, &str)> =
            dead.iter().map(|d| (d.reason_code.as_str(), d.source.key.as_str())).collect();
        assert_eq!(codes, [("missing_modality", "MAY-0098"), ("unknown_lesion", "MAY-0099")].into_iter().collect());
        assert_eq!((stats.scores.inputs, stats.scores.outputs, stats.scores.dead_letters), (6, 4, 1));
        assert_eq!(stats.partial_dead_letters, 1);
        assert_eq!((stats.lesions.inputs, stats.lesions.outputs), (4, 0));
        assert!(stats.scores.retries > 0, "the early scores waited");
        assert!(bus.caught_up(GROUP, topics::SCORES) && bus.caught_up(LESION_GROUP, topics::LESIONS));
    }
}
