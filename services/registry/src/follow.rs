//! Following a deployment's promoted model from `renal.models`: how the inference and ensemble
//! workers learn that they should serve another version without a restart.
//!
//! An event is only a wake-up: on each `promoted` or `rolled_back` event of the deployment the
//! follower reads the deployment's pointer (the registry is the truth) and passes it on when it
//! names a version other than the one last passed on. So events replayed from the start of the
//! topic, repeated, or out of order end at the pointer's version, and a promotion made between a
//! worker's start-up and its subscription is caught by the read at subscription.
//!
//! Every replica must see every event, so each follower reads in a consumer group of its own
//! (`<stage>-models-<process id>-<start time>`) and commits nothing.

use crate::{Pointer, Registry};
use renal_bus::{Bus, BusError, Consumer};
use renal_messages::{topics, Message, ModelEventV1};
use renal_telemetry::{emit, InternalEvent};
use std::future::Future;

/// A consumer group no other replica shares.
pub fn own_group(stage: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{stage}-models-{}-{nanos}", std::process::id())
}

/// Send on `tx` each new pointer of `deployment` (other than `serving`, the version served at
/// start-up) until `shutdown` resolves or the receiver is dropped.
pub async fn follow<B: Bus>(
    bus: &B,
    group: &str,
    registry: &Registry,
    deployment: &str,
    serving: &str,
    tx: tokio::sync::mpsc::UnboundedSender<Pointer>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BusError> {
    let mut consumer = bus.consumer(group, &[topics::MODELS])?;
    let mut last = serving.to_string();
    let check = |last: &mut String| -> bool {
        match registry.promoted(deployment) {
            Ok(Some(p)) if p.version != *last => {
                *last = p.version.clone();
                tx.send(p).is_ok()
            }
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(deployment, "model registry: {e}; still serving {last}");
                true
            }
        }
    };
    if !check(&mut last) {
        return Ok(());
    }
    tokio::pin!(shutdown);
    loop {
        let record = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = consumer.recv() => r,
        };
        let record = match record {
            Ok(r) => r,
            Err(BusError::Transient(why)) => {
                tracing::warn!(deployment, "reading renal.models: {why}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(event) = ModelEventV1::decode(&record.payload) else {
            tracing::warn!(offset = record.offset, "renal.models: a message that is not a ModelEventV1, ignored");
            continue;
        };
        let moved = matches!(event.event.as_str(), "promoted" | "rolled_back");
        if moved && event.deployment.as_deref() == Some(deployment) && !check(&mut last) {
            return Ok(());
        }
    }
}

/// What a worker follows: its deployment's pointer, and how to load the part of a model it serves.
pub struct Following<'a, L> {
    /// The stage (names its follower's consumer group and its events).
    pub stage: &'static str,
    /// Where the pointer is.
    pub registry: &'a Registry,
    /// Whose pointer.
    pub deployment: &'a str,
    /// The pointer served at start-up.
    pub serving: &'a Pointer,
    /// The version of what this worker serves: the CNN bundle for inference, the ensemble
    /// bundle for the ensemble (a recalibrated model changes the second only).
    pub part: fn(&Pointer) -> &str,
    /// Load a version of that part (on a blocking thread).
    pub load: L,
}

/// Run a stage loop (`run`, given the receiver of newly loaded models, which it swaps in at
/// its next input) beside a [`follow`]er that loads each newly promoted part; the follower
/// stops when the loop ends. A load that fails is reported and the loop keeps what it serves.
pub async fn run_following<B, T, L, F, Fut, R>(bus: &B, f: Following<'_, L>, run: F) -> Result<R, BusError>
where
    B: Bus,
    T: Send + 'static,
    L: Fn(&str) -> Result<T, String> + Send + Sync + Clone + 'static,
    F: FnOnce(tokio::sync::mpsc::UnboundedReceiver<T>) -> Fut,
    Fut: Future<Output = Result<R, BusError>>,
{
    let (loaded, swaps) = tokio::sync::mpsc::unbounded_channel::<T>();
    let (pointers, mut moved) = tokio::sync::mpsc::unbounded_channel::<Pointer>();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let until_stopped = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let group = own_group(f.stage);
    let following = follow(bus, &group, f.registry, f.deployment, &f.serving.version, pointers, until_stopped);
    let (stage, part, load) = (f.stage, f.part, f.load);
    let loader = async move {
        let mut current = part(f.serving).to_string();
        while let Some(p) = moved.recv().await {
            let wanted = part(&p).to_string();
            if wanted == current {
                continue;
            }
            let (load, version) = (load.clone(), wanted.clone());
            let result = tokio::task::spawn_blocking(move || load(&version)).await.map_err(|e| e.to_string());
            match result.and_then(|r| r) {
                Ok(next) => {
                    emit(ModelLoaded { stage, version: &wanted });
                    current = wanted;
                    if loaded.send(next).is_err() {
                        return;
                    }
                }
                Err(error) => emit(ModelNotLoaded { stage, version: &wanted, error: &error }),
            }
        }
    };
    let running = async {
        let r = run(swaps).await;
        let _ = stop.send(true);
        r
    };
    let (ran, followed, ()) = tokio::join!(running, following, loader);
    followed?;
    ran
}

/// A newly promoted model is loaded and will be served from the stage's next input on.
pub struct ModelLoaded<'a> {
    /// Stage.
    pub stage: &'static str,
    /// Version loaded.
    pub version: &'a str,
}

impl InternalEvent for ModelLoaded<'_> {
    fn emit(self) {
        tracing::info!(
            stage = self.stage,
            version = self.version,
            "{}: loaded {}, served from the next input on",
            self.stage,
            self.version
        );
    }
}

/// A newly promoted model could not be loaded; the served one stays.
pub struct ModelNotLoaded<'a> {
    /// Stage.
    pub stage: &'static str,
    /// Version that was promoted.
    pub version: &'a str,
    /// Why it could not be loaded.
    pub error: &'a str,
}

impl InternalEvent for ModelNotLoaded<'_> {
    fn emit(self) {
        tracing::error!(
            stage = self.stage,
            version = self.version,
            "{}: promoted model not loaded, still serving the previous one: {}",
            self.stage,
            self.error
        );
    }
}

/// A stage swapped in a newly loaded model, between two inputs.
pub struct ModelSwitched<'a> {
    /// Stage.
    pub stage: &'static str,
    /// Version served until now.
    pub from: &'a str,
    /// Version served from now on.
    pub to: &'a str,
}

impl InternalEvent for ModelSwitched<'_> {
    fn emit(self) {
        tracing::info!(stage = self.stage, from = self.from, to = self.to, "{}: now serving {}", self.stage, self.to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use renal_bus::InProcessBus;

    #[test]
    fn each_move_of_the_pointer_is_passed_on_once_and_other_deployments_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let reg = crate::tests::registry(dir.path(), &["ens-a", "ens-b", "ens-c"]);
        reg.promote("default", "ens-a", None, "first").unwrap();
        let bus = InProcessBus::new(1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let seen = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let follower = {
                let (bus, reg) = (bus.clone(), reg.clone());
                async move {
                    let mut stopped = stopped;
                    let until = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    follow(&bus, "g", &reg, "default", "ens-a", tx, until).await
                }
            };
            let driver = async {
                let send = |e: ModelEventV1| {
                    let bus = bus.clone();
                    async move { bus.send(topics::MODELS, &e.model_version, e.encode()).await.unwrap() }
                };
                let mut seen = Vec::new();
                let e = reg.promote("default", "ens-b", Some("ens-a"), "better").unwrap().unwrap();
                send(e.clone()).await;
                seen.push(rx.recv().await.unwrap().version);
                // The same event again, and another deployment's: nothing new.
                send(e).await;
                send(reg.promote("HUP", "ens-c", None, "pilot").unwrap().unwrap()).await;
                send(reg.rollback("default", "alert").unwrap()).await;
                seen.push(rx.recv().await.unwrap().version);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                assert!(rx.try_recv().is_err(), "a pointer passed on twice");
                let _ = stop.send(true);
                seen
            };
            let (result, seen) = tokio::join!(follower, driver);
            result.unwrap();
            seen
        });
        assert_eq!(seen, ["ens-b", "ens-a"]);
    }
}
