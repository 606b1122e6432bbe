//! Drives one pipeline instance (a pipeline, or one partition of it): lease, recovery, then
//! epoch after epoch until shutdown or until the lease is lost.
//!
//! One epoch:
//! 1. wait for input on any stream input (or a timer); take what is there;
//! 2. decode and validate it, dead-lettering what is refused (stored before step 4, so a
//!    replay of a recorded epoch files none again);
//! 3. run the step;
//! 4. write the epoch record (positions, `now`, ticks, the state when a snapshot is due);
//! 5. check the lease, then commit each output table's rows with application transaction
//!    `(instance, epoch)` — a table with nothing to add is skipped unless it trails by
//!    [`MAX_QUIET_EPOCHS`];
//! 6. publish the step's result messages (dedupe ids), then ack the inputs.
//!
//! **Recovery**: each table's committed epoch is read back; from the newest state snapshot at
//! or below the lowest of them, the recorded epochs up to the highest are replayed with their
//! recorded messages, `now` and ticks, committing only to the tables that lack them. Nothing is
//! lost and nothing is written twice, and state always belongs to the positions it is
//! resumed with.

use adit_schemas::time::from_micros;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use adit_bus::publish::{Outgoing, Publisher};
use adit_bus::{DecodedBatch, RawBatch, RawMessage, decode_batch};
use adit_sinks::{EpochLog, EpochRecord, ExactlyOnceTable, Snapshot};
use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::runtime::context::PipelineContext;
use crate::runtime::inputs::{Inputs, stream_state};
use crate::runtime::metrics;
use crate::runtime::pipeline::{
    CAUGHT_UP, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput,
};
use adit_bus::Lease;

/// A table with nothing to add is still committed (empty, moving its epoch) once it trails the
/// instance by this many epochs, so a restart never replays more than this for its sake.
pub const MAX_QUIET_EPOCHS: u64 = 100;

/// Old epoch records are pruned every this many epochs.
const PRUNE_EVERY: u64 = 64;

/// The instance name of `pipeline` for `partition`: its Delta application id, lease key and
/// the stem of its consumer names.
pub fn instance_name(pipeline: &str, partition: Option<&str>) -> String {
    match partition {
        Some(key) => format!("{pipeline}.{key}"),
        None => pipeline.to_string(),
    }
}

/// Runs `pipeline` (one `partition` of it) until `shutdown`: waits for its lease as a hot
/// standby, recovers, and runs epochs. Returns an error the supervisor retries when the lease
/// is lost, so the process goes back to standing by.
pub async fn run_instance<P: Pipeline>(
    pipeline: &P,
    ctx: &PipelineContext,
    partition: Option<&str>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let spec = pipeline.spec();
    let instance = instance_name(&spec.name, partition);
    let Some(lease) = Lease::acquire_in(
        &ctx.js,
        &instance,
        &ctx.holder,
        ctx.config.lease_ttl,
        shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    // Watched for lag from now on, through failures, until another process holds the lease.
    ctx.progress.watch(&spec, &instance, partition);
    let stop = shutdown.child_token();
    let watcher = {
        let (lost, stop) = (lease.lost(), stop.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.cancel();
        })
    };
    let result = async {
        let mut runner = Runner::open(pipeline, ctx, spec, &instance).await?;
        runner.run(partition, &lease, &stop).await
    }
    .await;
    watcher.abort();
    if shutdown.is_cancelled() {
        ctx.progress.forget(&instance);
        lease.release().await;
        return result;
    }
    match result {
        Ok(()) => Err(lease.lost_error().into()),
        Err(e) => Err(e),
    }
}

/// Runs one epoch of `pipeline` (one `partition` of it) now and returns its result messages:
/// takes its lease (waiting at most `wait` for a holder to let it go), recovers, reads every
/// input up to now (within `wait`), steps once with every timer due, commits, and releases the
/// lease. For installations that run a pipeline from cron instead of as a service (`adit
/// control --once`); an instance another process holds is refused after `wait`.
pub async fn run_once<P: Pipeline>(
    pipeline: &P,
    ctx: &PipelineContext,
    partition: Option<&str>,
    wait: Duration,
) -> Result<Vec<ResultMessage>> {
    let spec = pipeline.spec();
    let instance = instance_name(&spec.name, partition);
    let give_up = CancellationToken::new();
    let timer = {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            give_up.cancel();
        })
    };
    let lease = Lease::acquire_in(
        &ctx.js,
        &instance,
        &ctx.holder,
        ctx.config.lease_ttl,
        &give_up,
    )
    .await;
    timer.abort();
    let Some(lease) = lease? else {
        return Err(Error::Spec {
            pipeline: instance,
            reason: format!(
                "another process holds its lease (the pipelines role runs it there); not taken \
                 within {wait:?}"
            ),
        });
    };
    let result = async {
        let mut runner = Runner::open(pipeline, ctx, spec, &instance).await?;
        runner.once(partition, &lease, wait).await
    }
    .await;
    lease.release().await;
    result
}

/// Longest wait at start for a reference input to be read to its stream's end.
const REFERENCE_WAIT: Duration = Duration::from_secs(30);

/// Where a recovery starts: a state, its positions and epoch, and the epochs to replay.
struct Resume<S> {
    /// State after `epoch`.
    state: S,
    /// Input positions after `epoch`.
    positions: BTreeMap<String, u64>,
    /// The epoch the state belongs to.
    epoch: u64,
    /// Recorded epochs after it, up to the newest any table has.
    replay: Vec<EpochRecord>,
}

/// Where instance `instance` resumes, given each output table's committed epoch: from the
/// newest snapshot at or below the lowest epoch some table still needs (`initial` positions
/// and the default state when nothing was committed), replaying the recorded epochs up to the
/// highest. A table behind the others needs nothing while no later epoch wrote to it (a
/// landing's quiet tables): it does not hold the restart back.
async fn resume_point<S: serde::de::DeserializeOwned + Default>(
    log: &EpochLog,
    instance: &str,
    committed: &[(String, u64)],
    initial: &BTreeMap<String, u64>,
) -> Result<Resume<S>> {
    let highest = committed.iter().map(|(_, e)| *e).max().unwrap_or(0);
    let fresh = || Resume {
        state: S::default(),
        positions: initial.clone(),
        epoch: 0,
        replay: Vec::new(),
    };
    if highest == 0 {
        return Ok(fresh());
    }
    let record = |epoch: u64| async move {
        log.get(epoch)
            .await?
            .ok_or_else(|| missing_records(instance, epoch))
    };
    let epochs = log.epochs().await?;
    let lowest = settled_through(log, &epochs, committed, highest).await?;
    let mut start = None;
    for e in epochs.iter().rev().filter(|e| **e <= lowest) {
        let found = record(*e).await?;
        let Some(snapshot) = found.state.clone() else {
            continue;
        };
        match snapshot.read::<S>() {
            Ok(state) => {
                start = Some(Resume {
                    state,
                    positions: found.positions,
                    epoch: found.epoch,
                    replay: Vec::new(),
                });
                break;
            }
            // An older adit wrote `"state": null` for "no snapshot" too: a state that is not
            // null-shaped reads it as none and looks further back.
            Err(_) if found.state.as_ref().is_some_and(Snapshot::is_null) => {}
            Err(e) => {
                return Err(Error::State {
                    instance: instance.to_string(),
                    source: e,
                });
            }
        }
    }
    let mut resume = match start {
        Some(resume) => resume,
        None if epochs.first() == Some(&1) => fresh(),
        None => return Err(missing_records(instance, lowest)),
    };
    for e in resume.epoch + 1..=highest {
        resume.replay.push(record(e).await?);
    }
    Ok(resume)
}

/// The lowest epoch through which every table holds all its rows: a table committed at `at`
/// holds them up to the first later epoch that wrote to it, else through `highest` (a missing
/// record counts as writing to it).
/// Epochs below the oldest record were pruned once every table held them: settled.
async fn settled_through(
    log: &EpochLog,
    epochs: &[u64],
    committed: &[(String, u64)],
    highest: u64,
) -> Result<u64> {
    let oldest = epochs.first().copied().unwrap_or(0);
    let mut lowest = highest;
    let mut records: BTreeMap<u64, Option<EpochRecord>> = BTreeMap::new();
    for (table, at) in committed {
        for epoch in (at + 1).max(oldest)..=lowest {
            let record = match records.entry(epoch) {
                Entry::Occupied(cached) => cached.into_mut(),
                Entry::Vacant(slot) => slot.insert(log.get(epoch).await?),
            };
            if record.as_ref().is_none_or(|r| r.wrote(table)) {
                // Nothing for it between its commit and this epoch: settled just before.
                lowest = epoch - 1;
                break;
            }
        }
    }
    Ok(lowest)
}

fn missing_records(instance: &str, epoch: u64) -> Error {
    Error::Recovery {
        instance: instance.to_string(),
        reason: format!(
            "its tables are at epoch {epoch} but the epoch records under _adit/pipelines/{instance} \
             that lead there are missing (tables written by an older adit, or records deleted); \
             move the pipeline's tables aside to rebuild them from the streams"
        ),
    }
}

/// A running instance.
struct Runner<'a, P: Pipeline> {
    /// The pipeline.
    pipeline: &'a P,
    /// Bus, tables and settings.
    ctx: &'a PipelineContext,
    /// Its declaration.
    spec: PipelineSpec,
    /// Instance name.
    instance: String,
    /// Output tables, in the order of the spec.
    tables: Vec<ExactlyOnceTable>,
    /// Epoch records.
    log: EpochLog,
    /// Current state.
    state: P::State,
    /// Last epoch stepped.
    epoch: u64,
    /// Input positions after `epoch`.
    positions: BTreeMap<String, u64>,
    /// Epochs whose record holds a state snapshot.
    snapshots: BTreeSet<u64>,
    /// Processing time of the last snapshot.
    last_snapshot: Option<DateTime<Utc>>,
}

impl<'a, P: Pipeline> Runner<'a, P> {
    async fn open(
        pipeline: &'a P,
        ctx: &'a PipelineContext,
        spec: PipelineSpec,
        instance: &str,
    ) -> Result<Self> {
        if spec.outputs.is_empty() {
            return Err(Error::Spec {
                pipeline: spec.name.clone(),
                reason: "declares no output table; its commits are what own its positions".into(),
            });
        }
        // Opened (or created) side by side: a landing has up to six tables, and each open
        // waits on its store; the pipeline's start, which a restart and a backlog's landing
        // wait on, is the slowest table's open, not their sum.
        let tables = futures::future::try_join_all(spec.outputs.iter().map(|out| async move {
            let partitions: Vec<&str> = out.partitions.iter().map(String::as_str).collect();
            ExactlyOnceTable::open(
                &ctx.store,
                &out.name,
                &out.schema,
                &partitions,
                instance,
                ctx.config.maintenance.clone(),
            )
            .await
        }))
        .await?;
        Ok(Self {
            pipeline,
            ctx,
            log: EpochLog::open(&ctx.store, instance)?,
            instance: instance.to_string(),
            positions: spec.inputs.iter().map(|i| (i.name.clone(), 0)).collect(),
            spec,
            tables,
            state: P::State::default(),
            epoch: 0,
            snapshots: BTreeSet::new(),
            last_snapshot: None,
        })
    }

    /// Decides where to resume from the tables' epochs and the epoch records.
    async fn resume_point(&self) -> Result<Resume<P::State>> {
        let committed: Vec<(String, u64)> = self
            .tables
            .iter()
            .map(|t| (t.name().to_string(), t.committed()))
            .collect();
        resume_point(&self.log, &self.instance, &committed, &self.positions).await
    }

    async fn run(
        &mut self,
        partition: Option<&str>,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Result<()> {
        let mut inputs = self.recover(partition, lease, stop).await?;
        let timers = self.spec.timers.clone();
        let mut next: Vec<DateTime<Utc>> =
            timers.iter().map(|t| t.next_after(Utc::now())).collect();
        loop {
            let wake = next
                .iter()
                .min()
                .map(|t| (*t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            if !inputs.any_pending() {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    got = inputs.wait_any() => got?,
                    _ = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600))) => {}
                }
            }
            if stop.is_cancelled() {
                return Ok(());
            }
            let now = Utc::now();
            let mut ticks = Vec::new();
            for (timer, due) in timers.iter().zip(next.iter_mut()) {
                if *due <= now {
                    ticks.push(timer.name().to_string());
                    *due = timer.next_after(now);
                }
            }
            let raw: Vec<Vec<RawMessage>> = (0..self.spec.inputs.len())
                .map(|i| inputs.take_all(i))
                .collect();
            if ticks.is_empty() && raw.iter().all(Vec::is_empty) {
                continue;
            }
            self.epoch_step(&mut inputs, raw, now, ticks, None, lease, stop)
                .await?;
        }
    }

    /// One epoch now, as a cron job would run it: recovers, takes every message each input's
    /// filter matches as of now (within `limit`), and steps once with every timer due and
    /// [`CAUGHT_UP`]; returns the result messages it published.
    async fn once(
        &mut self,
        partition: Option<&str>,
        lease: &Lease,
        limit: Duration,
    ) -> Result<Vec<ResultMessage>> {
        let stop = CancellationToken::new();
        let mut inputs = self.recover(partition, lease, &stop).await?;
        if !inputs.catch_up(&self.ctx.js, limit).await? {
            return Err(Error::Spec {
                pipeline: self.instance.clone(),
                reason: format!("its inputs were not read up to now within {limit:?}"),
            });
        }
        let raw: Vec<Vec<RawMessage>> = (0..self.spec.inputs.len())
            .map(|i| inputs.take_all(i))
            .collect();
        let ticks = self
            .spec
            .timers
            .iter()
            .map(|t| t.name().to_string())
            .chain([CAUGHT_UP.to_string()])
            .collect();
        self.epoch_step(&mut inputs, raw, Utc::now(), ticks, None, lease, &stop)
            .await
    }

    /// Resumes from the newest snapshot and replays the recorded epochs after it, then reads
    /// the reference inputs up to now: what runs before the first live epoch.
    async fn recover(
        &mut self,
        partition: Option<&str>,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Result<Inputs> {
        let resume = self.resume_point().await?;
        tracing::info!(
            pipeline = %self.instance,
            epoch = resume.epoch,
            replay = resume.replay.len(),
            positions = ?resume.positions,
            "pipeline starting"
        );
        self.state = resume.state;
        self.epoch = resume.epoch;
        self.positions = resume.positions;
        // The state resumed from is a snapshot (epoch 0: the default state).
        self.snapshots.insert(self.epoch);
        let mut inputs = Inputs::start(
            self.ctx,
            &self.spec,
            &self.instance,
            partition,
            &self.positions,
        )
        .await?;
        for record in resume.replay {
            let mut raw = Vec::new();
            for (i, input) in self.spec.inputs.iter().enumerate() {
                let target = record.positions.get(&input.name).copied().unwrap_or(0);
                let before = self.positions.get(&input.name).copied().unwrap_or(0);
                raw.push(if target > before {
                    inputs.take_until(&self.ctx.js, i, target).await?
                } else {
                    Vec::new()
                });
            }
            let now = from_micros(record.now_us);
            self.epoch_step(
                &mut inputs,
                raw,
                now,
                record.ticks.clone(),
                Some(&record),
                lease,
                stop,
            )
            .await?;
        }
        self.read_references(&mut inputs).await?;
        Ok(inputs)
    }

    /// Before the first live step, every reference input (the registry) is read up to its
    /// stream's end as it is now, so the first readings are judged against the whole registry,
    /// not against whichever part its consumer delivered first. A reference input that does
    /// not get there within [`REFERENCE_WAIT`] is logged and the pipeline goes on.
    async fn read_references(&self, inputs: &mut Inputs) -> Result<()> {
        for (i, input) in self.spec.inputs.iter().enumerate() {
            if !input.is_reference() {
                continue;
            }
            let last = stream_state(&self.ctx.js, &input.stream)
                .await?
                .last_sequence;
            let read = self.positions.get(&input.name).copied().unwrap_or(0);
            if last > read && !inputs.read_to(i, last, REFERENCE_WAIT).await? {
                tracing::warn!(
                    pipeline = %self.instance,
                    input = %input.name,
                    last,
                    "the reference input was not read to its end in time; going on"
                );
            }
        }
        Ok(())
    }

    /// Decodes `raw` (per input), dead-letters what is refused unless `replaying`, and returns
    /// the decoded batches; moves the positions.
    ///
    /// A recorded epoch's dead letters were stored before its record was written, so a replay
    /// (after a crash or a failover, however long after) never files them again.
    async fn decode(
        &mut self,
        raw: Vec<Vec<RawMessage>>,
        now: DateTime<Utc>,
        replaying: bool,
    ) -> Result<(Vec<DecodedBatch>, usize, usize)> {
        let mut decoded = Vec::with_capacity(raw.len());
        let (mut messages, mut rejected) = (0, 0);
        for (input, msgs) in self.spec.inputs.iter().zip(raw) {
            if let Some(last) = msgs.last() {
                self.positions.insert(input.name.clone(), last.seq);
            }
            messages += msgs.len();
            let batch = decode_batch(
                &RawBatch::from_messages(msgs),
                &input.kinds,
                &self.ctx.policy,
                now,
            );
            if input.dead_letters && !replaying {
                batch
                    .dead_letter(&self.ctx.publisher, &input.stream)
                    .await?;
            } else if !batch.rejected.is_empty() && !input.dead_letters {
                // Filed by the subject's owner (`StreamInput::dead_letters`).
                tracing::debug!(input = %input.name, refused = batch.rejected.len(), "refused messages skipped; their owner files them");
            }
            rejected += batch.rejected.len();
            decoded.push(batch);
        }
        Ok((decoded, messages, rejected))
    }

    /// One epoch: step, record (unless replaying `recorded`), commit, publish, ack.
    #[allow(clippy::too_many_arguments)]
    async fn epoch_step(
        &mut self,
        inputs: &mut Inputs,
        raw: Vec<Vec<RawMessage>>,
        now: DateTime<Utc>,
        ticks: Vec<String>,
        recorded: Option<&EpochRecord>,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Result<Vec<ResultMessage>> {
        let started = std::time::Instant::now();
        let epoch = self.epoch + 1;
        let (decoded, messages, rejected) = self.decode(raw, now, recorded.is_some()).await?;
        let decoded_at = std::time::Instant::now();
        // The newest event time of each input, for the event-time lag once committed.
        let newest: Vec<Option<DateTime<Utc>>> = decoded
            .iter()
            .map(|batch| batch.rows.values().flatten().map(|(_, e)| e.ts()).max())
            .collect();
        let output = self
            .pipeline
            .step(
                &mut self.state,
                StepInput {
                    now,
                    ticks: ticks.clone(),
                    inputs: decoded,
                },
            )
            .await?;
        let stepped_at = std::time::Instant::now();
        match recorded {
            Some(record) => {
                if record.state.is_some() {
                    self.snapshots.insert(epoch);
                }
            }
            None => {
                let mut written: Vec<String> = output
                    .tables
                    .iter()
                    .filter(|(_, batch)| batch.num_rows() > 0)
                    .map(|(table, _)| table.clone())
                    .collect();
                written.sort();
                written.dedup();
                self.write_record(epoch, now, ticks, written).await?
            }
        }
        lease.confirm().await?;
        let recorded_at = std::time::Instant::now();
        let rows = output.row_count();
        let StepOutput {
            tables,
            results,
            late,
        } = output;
        self.commit(epoch, tables).await?;
        let committed_at = std::time::Instant::now();
        self.epoch = epoch;
        publish(self.ctx, &results, stop).await;
        for (i, input) in self.spec.inputs.iter().enumerate() {
            let position = self.positions.get(&input.name).copied().unwrap_or(0);
            inputs.ack(i, position).await;
        }
        for (input, newest) in self.spec.inputs.iter().zip(newest) {
            if let Some(ts) = newest {
                let behind = (Utc::now() - ts).num_milliseconds() as f64 / 1000.0;
                metrics::event_lag_seconds(&self.instance, &input.name, behind);
            }
        }
        metrics::epoch_committed(
            &self.instance,
            messages,
            rows,
            rejected,
            late,
            started.elapsed(),
            epoch,
        );
        if epoch.is_multiple_of(PRUNE_EVERY) {
            self.prune().await?;
        }
        for table in &mut self.tables {
            table.maintain_if_due().await?;
        }
        // Where the epoch's time went, for a profile of the landing path.
        let ms = |from: std::time::Instant, to: std::time::Instant| (to - from).as_millis() as u64;
        let done = std::time::Instant::now();
        tracing::debug!(
            pipeline = %self.instance, epoch, messages, rows, rejected,
            ms = ms(started, done),
            decode_ms = ms(started, decoded_at),
            step_ms = ms(decoded_at, stepped_at),
            record_ms = ms(stepped_at, recorded_at),
            commit_ms = ms(recorded_at, committed_at),
            after_ms = ms(committed_at, done),
            "epoch committed"
        );
        Ok(results)
    }

    async fn write_record(
        &mut self,
        epoch: u64,
        now: DateTime<Utc>,
        ticks: Vec<String>,
        written: Vec<String>,
    ) -> Result<()> {
        let due = self.last_snapshot.is_none_or(|last| {
            (now - last).to_std().unwrap_or(Duration::ZERO) >= self.spec.snapshot_every
        });
        let state = if due {
            // A large state (thousands of machines) takes a while to copy.
            Some(
                super::cpu::in_place(|| Snapshot::of(&self.state)).map_err(|e| {
                    Error::Snapshot {
                        instance: self.instance.clone(),
                        source: e,
                    }
                })?,
            )
        } else {
            None
        };
        self.log
            .put(&EpochRecord {
                epoch,
                positions: self.positions.clone(),
                now_us: now.timestamp_micros(),
                ticks,
                state,
                written: Some(written),
            })
            .await?;
        if due {
            self.snapshots.insert(epoch);
            self.last_snapshot = Some(now);
        }
        Ok(())
    }

    /// Commits each table's rows with the epoch.
    async fn commit(&mut self, epoch: u64, rows: Vec<(String, RecordBatch)>) -> Result<()> {
        let mut by_table: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for (table, batch) in rows {
            if !self.spec.outputs.iter().any(|o| o.name == table) {
                return Err(Error::Spec {
                    pipeline: self.spec.name.clone(),
                    reason: format!("its step wrote to {table}, which it does not declare"),
                });
            }
            by_table.entry(table).or_default().push(batch);
        }
        for table in &mut self.tables {
            let batches = by_table.remove(table.name()).unwrap_or_default();
            let has_rows = batches.iter().any(|b| b.num_rows() > 0);
            if has_rows || epoch.saturating_sub(table.committed()) >= MAX_QUIET_EPOCHS {
                table.commit(batches, epoch).await?;
            }
        }
        Ok(())
    }

    /// Deletes epoch records no recovery can need: those below the newest snapshot at or
    /// below every table's epoch (a restart takes records below the oldest kept as settled).
    async fn prune(&mut self) -> Result<()> {
        let lowest = self
            .tables
            .iter()
            .map(ExactlyOnceTable::committed)
            .min()
            .unwrap_or(0);
        let Some(keep) = self.snapshots.range(..=lowest).next_back().copied() else {
            return Ok(());
        };
        if keep > 0 {
            self.log.delete_below(keep).await?;
        }
        self.snapshots = self.snapshots.split_off(&keep);
        Ok(())
    }
}

/// Publishes result messages until stored (their ids make retries safe). The tables are the
/// record: a shutdown in the middle leaves them in the tables only, and says so.
async fn publish(ctx: &PipelineContext, results: &[ResultMessage], stop: &CancellationToken) {
    if results.is_empty() {
        return;
    }
    let msgs: Vec<Outgoing> = results
        .iter()
        .map(|r| Outgoing::new(r.subject.clone(), r.id.clone(), r.payload.clone()))
        .collect();
    let publisher = Publisher::new(ctx.js.clone());
    while let Err(e) = publisher.publish_all(msgs.clone()).await {
        tracing::warn!(error = %e, "cannot publish results; retrying");
        tokio::select! {
            _ = stop.cancelled() => {
                tracing::warn!(count = msgs.len(), "stopping with results committed but not published");
                return;
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_sinks::TableStore;

    fn record(epoch: u64, state: Option<serde_json::Value>) -> EpochRecord {
        EpochRecord {
            epoch,
            positions: BTreeMap::from([("telemetry".to_string(), epoch * 100)]),
            now_us: 0,
            ticks: Vec::new(),
            state: state.map(|s| Snapshot::of(&s).expect("a JSON value")),
            written: None,
        }
    }

    fn pairs(committed: &[(&str, u64)]) -> Vec<(String, u64)> {
        committed.iter().map(|(t, e)| (t.to_string(), *e)).collect()
    }

    async fn log_with(
        records: impl IntoIterator<Item = EpochRecord>,
    ) -> (tempfile::TempDir, EpochLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let log = EpochLog::open(&store, "telemetry").unwrap();
        for r in records {
            log.put(&r).await.unwrap();
        }
        (dir, log)
    }

    /// A landing pipeline (state `()`, a snapshot every epoch, old records pruned) resumes
    /// from its last record at or below its tables' lowest epoch: its positions, not the
    /// stream's start, and it replays only the epochs one table lacks.
    #[tokio::test]
    async fn a_stateless_pipeline_resumes_at_its_last_record_after_pruning() {
        let (_dir, log) =
            log_with((65..=70).map(|e| record(e, Some(serde_json::Value::Null)))).await;
        let initial = BTreeMap::from([("telemetry".to_string(), 0)]);
        let resume: Resume<()> = resume_point(
            &log,
            "telemetry",
            &pairs(&[("sensor_readings", 70), ("energy_readings", 68)]),
            &initial,
        )
        .await
        .unwrap();
        assert_eq!(resume.epoch, 68);
        assert_eq!(resume.positions["telemetry"], 6_800);
        let replayed: Vec<u64> = resume.replay.iter().map(|r| r.epoch).collect();
        assert_eq!(replayed, vec![69, 70]);
    }

    /// A stateful pipeline skips records without a snapshot, and the `null` an older adit
    /// wrote for "no snapshot", back to its newest real one.
    #[tokio::test]
    async fn a_stateful_pipeline_resumes_from_its_newest_real_snapshot() {
        let (_dir, log) = log_with([
            record(1, Some(serde_json::json!(5))),
            record(2, None),
            record(3, Some(serde_json::Value::Null)),
            record(4, None),
        ])
        .await;
        let resume: Resume<u64> = resume_point(
            &log,
            "energy",
            &pairs(&[("energy_minutes", 4)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        assert_eq!((resume.epoch, resume.state), (1, 5));
        let replayed: Vec<u64> = resume.replay.iter().map(|r| r.epoch).collect();
        assert_eq!(replayed, vec![2, 3, 4]);
        // Records pruned below a table's epoch with no snapshot left: a clear refusal.
        log.delete_below(2).await.unwrap();
        let err = resume_point::<u64>(
            &log,
            "energy",
            &pairs(&[("energy_minutes", 4)]),
            &BTreeMap::new(),
        )
        .await
        .err()
        .expect("no snapshot to resume from");
        assert!(err.to_string().contains("are missing"), "{err}");
    }

    /// A landing whose readings are all energy: its other tables were never committed, yet
    /// nothing was written to them, so the restart resumes at the last epoch (it replayed the
    /// whole stream: 52 epochs, a million messages, in `adit bench ingest`). A table that had
    /// rows in an epoch it has not committed pulls the resume back to just before that epoch.
    #[tokio::test]
    async fn quiet_tables_do_not_hold_a_restart_back() {
        let written = |epoch: u64, tables: &[&str]| EpochRecord {
            written: Some(tables.iter().map(|t| t.to_string()).collect()),
            ..record(epoch, Some(serde_json::Value::Null))
        };
        let (_dir, log) = log_with((1..=52).map(|e| {
            if e == 30 {
                written(e, &["energy_readings", "sensor_readings"])
            } else {
                written(e, &["energy_readings"])
            }
        }))
        .await;
        let initial = BTreeMap::from([("telemetry".to_string(), 0)]);
        let quiet = pairs(&[
            ("energy_readings", 52),
            ("sensor_readings", 30),
            ("miner_stats", 0),
        ]);
        let resume: Resume<()> = resume_point(&log, "telemetry", &quiet, &initial)
            .await
            .unwrap();
        assert_eq!((resume.epoch, resume.replay.len()), (52, 0));
        // sensor_readings lost its epoch-30 commit (it was at 20, with nothing between):
        // replayed from epoch 30.
        let behind = pairs(&[("energy_readings", 52), ("sensor_readings", 20)]);
        let resume: Resume<()> = resume_point(&log, "telemetry", &behind, &initial)
            .await
            .unwrap();
        assert_eq!(resume.epoch, 29);
        assert_eq!(resume.replay.first().map(|r| r.epoch), Some(30));
        assert_eq!(resume.replay.len(), 23);
        // Records pruned below 40 (every table held them): a quiet table at 0 is settled. A
        // stateful pipeline's table at 100 whose epoch-130 commit was lost, records pruned below
        // a snapshot at 128, resumes from that snapshot (it used to need the pruned ones).
        log.delete_below(40).await.unwrap();
        let resume: Resume<()> = resume_point(&log, "telemetry", &quiet, &initial)
            .await
            .unwrap();
        assert_eq!((resume.epoch, resume.replay.len()), (52, 0));

        let (_dir, log) = log_with((128..=131).map(|e| EpochRecord {
            written: Some(if e == 130 {
                vec!["energy_minutes".into()]
            } else {
                vec!["energy_periods".into()]
            }),
            ..record(e, (e == 128).then(|| serde_json::json!(7)))
        }))
        .await;
        let committed = pairs(&[("energy_minutes", 100), ("energy_periods", 131)]);
        let resume: Resume<u64> = resume_point(&log, "energy", &committed, &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!((resume.epoch, resume.state), (128, 7));
        let replayed: Vec<u64> = resume.replay.iter().map(|r| r.epoch).collect();
        assert_eq!(replayed, vec![129, 130, 131]);
    }
}
