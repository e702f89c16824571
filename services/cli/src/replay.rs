//! `renal replay list|run`: dead letters on the broker, and re-driving them after a fix
//! (the `renal-replay` crate does the work; this reads the worker file and prints).

use anyhow::{bail, Context, Result};
use renal_bus::KafkaBus;
use renal_messages::topics;
use renal_replay::{self as replay, Filter, Plan};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How long reading the dead-letter topics to their end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Which letters: every option given must hold.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Letters of this stage (ingest, preprocess, radiomics, inference, ensemble, trainer, labels, monitor).
    #[arg(long)]
    stage: Option<String>,
    /// Letters with this reason code (e.g. unknown_lesion).
    #[arg(long)]
    reason: Option<String>,
    /// Letters of this input key (a lesion id); repeat for several.
    #[arg(long = "key")]
    keys: Vec<String>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Filter {
        Filter { stage: a.stage, reason: a.reason, keys: a.keys }
    }
}

fn connect(config: &Path) -> Result<KafkaBus> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut table: toml::Table = toml::from_str(&text).with_context(|| config.display().to_string())?;
    let mut kafka = crate::worker::kafka_section(&mut table).with_context(|| config.display().to_string())?;
    kafka.client_id = "renal-replay".into();
    Ok(KafkaBus::new(kafka)?)
}

/// The letters of every dead-letter topic, and how many records there were not letters.
fn read_letters(bus: &KafkaBus) -> Result<(Vec<replay::Letter>, usize)> {
    let records = bus.read_to_end(&replay::dead_letter_topics(), READ_TIMEOUT).context("reading dead letters")?;
    let (letters, unreadable) = replay::letters(&records);
    Ok((letters, unreadable.len()))
}

/// `renal replay list`.
pub fn list(config: &Path, filter: &Filter, verbose: bool) -> Result<()> {
    let bus = connect(config)?;
    let (letters, unreadable) = read_letters(&bus)?;
    let plans = replay::plan(&letters, filter, &Default::default());
    let mut counts: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for p in &plans {
        let (l, ok) = match p {
            Plan::Redrive { letter, .. } => (letter, 1),
            Plan::Skip { letter, .. } => (letter, 0),
        };
        let c = counts.entry((l.letter.stage.clone(), l.letter.reason_code.clone())).or_default();
        c.0 += 1;
        c.1 += ok;
    }
    println!("{:<12} {:<24} {:>8} {:>11}", "stage", "reason", "letters", "replayable");
    for ((stage, reason), (n, ok)) in &counts {
        println!("{stage:<12} {reason:<24} {n:>8} {ok:>11}");
    }
    println!(
        "{} letters selected of {}; {} records on dead-letter topics were not letters",
        plans.len(),
        letters.len(),
        unreadable
    );
    if verbose {
        for p in &plans {
            let (l, what) = match p {
                Plan::Redrive { letter, to, .. } => (letter, format!("replayable to {}", to.name)),
                Plan::Skip { letter, why } => (letter, format!("not replayable: {why}")),
            };
            let (topic, partition, offset) = l.position();
            println!(
                "{topic}/{partition}@{offset}  {}  {}  key={}  at={}  {what}",
                l.letter.stage, l.letter.reason_code, l.letter.source.key, l.letter.at
            );
        }
    }
    Ok(())
}

/// `renal replay run`.
pub fn run(config: &Path, replay_id: &str, filter: &Filter, all: bool, dry_run: bool) -> Result<()> {
    if replay_id.trim().is_empty() {
        bail!("renal replay run: --id must name this replay");
    }
    if !filter.is_narrowed() && !all {
        bail!("renal replay run: select letters with --stage, --reason or --key (or --all for every letter)");
    }
    let bus = connect(config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut wanted = replay::dead_letter_topics();
    wanted.push(topics::REPLAYS);
    rt.block_on(bus.ensure_topics(&wanted)).context("creating topics")?;
    let (letters, _) = read_letters(&bus)?;
    let ledger = bus.read_to_end(&[topics::REPLAYS], READ_TIMEOUT).context("reading renal.replays")?;
    let done = replay::done(&ledger, replay_id);
    let plans = replay::plan(&letters, filter, &done);
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &plans {
        if let Plan::Skip { why, .. } = p {
            *skipped.entry(why).or_default() += 1;
        }
    }
    let ready = plans.iter().filter(|p| matches!(p, Plan::Redrive { .. })).count();
    let sent = if dry_run { 0 } else { rt.block_on(replay::redrive(&bus, replay_id, &plans))? };
    println!(
        "replay {replay_id}: {} letters selected, {ready} replayable, {sent} re-driven{}",
        plans.len(),
        if dry_run { " (dry run)" } else { "" }
    );
    for (why, n) in skipped {
        println!("  {n} skipped: {why}");
    }
    Ok(())
}
