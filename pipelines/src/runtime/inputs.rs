//! The stream inputs of one pipeline instance: a durable pull consumer per input, each in its
//! own task, feeding one channel the runner reads (`Inputs`), and what the runner asks of them —
//! what is ready, exactly the messages up to a recorded position (a replay), up to a stream's
//! end (the references), or up to what the consumers have not yet delivered (a catch-up).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use adit_bus::{Acker, BatchConsumer, ConsumerConfig, RawBatch, RawMessage};
use async_nats::jetstream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::runtime::context::PipelineContext;
use crate::runtime::pipeline::PipelineSpec;

/// One stream input being read.
pub(super) struct Reader {
    /// Input name (its key in the positions).
    pub(super) name: String,
    /// Stream, for dead letters and lag.
    pub(super) stream: String,
    /// Its durable consumer's name.
    durable: String,
    /// Messages received and not yet stepped.
    pub(super) pending: VecDeque<RawMessage>,
    /// Received batches to acknowledge once committed past their last sequence.
    ackers: VecDeque<(u64, usize, Acker)>,
}

/// Every stream input of an instance, each filled by its own consumer task.
pub(super) struct Inputs {
    /// One per [`PipelineSpec::inputs`].
    pub(super) readers: Vec<Reader>,
    /// Batches from every consumer task, tagged with the reader's index.
    rx: mpsc::Receiver<(usize, RawBatch)>,
    /// The consumer tasks.
    tasks: Vec<JoinHandle<()>>,
    /// Each consumer's part in the vitals (down while it is stuck).
    parts: Vec<String>,
    /// Where the consumers report.
    vitals: adit_supervise::Vitals,
}

impl Inputs {
    /// Starts a consumer for each input just after its position.
    pub(super) async fn start(
        ctx: &PipelineContext,
        spec: &PipelineSpec,
        instance: &str,
        partition: Option<&str>,
        positions: &BTreeMap<String, u64>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(spec.inputs.len().max(1));
        let mut readers = Vec::new();
        let mut tasks = Vec::new();
        let mut parts = Vec::new();
        for (i, input) in spec.inputs.iter().enumerate() {
            let config = ConsumerConfig {
                stream: input.stream.clone(),
                durable: crate::runtime::progress::consumer_name(instance, &input.name),
                filter_subject: input.filter(partition).ok_or_else(|| Error::Spec {
                    pipeline: spec.name.clone(),
                    reason: format!("input {} cannot be partitioned", input.name),
                })?,
                max_rows: ctx.config.batch_max_rows,
                max_wait: ctx.config.batch_max_wait,
                stall_after: adit_bus::consumer::STALL_AFTER,
            };
            let after = positions.get(&input.name).copied().unwrap_or(0);
            let part = consumer_part(&config.durable);
            let durable = config.durable.clone();
            let mut consumer = BatchConsumer::start(ctx.js.clone(), config, after).await?;
            let tx = tx.clone();
            let vitals = ctx.vitals.clone();
            vitals.report(&part, Ok(()));
            parts.push(part.clone());
            tasks.push(tokio::spawn(async move {
                let mut stuck = false;
                loop {
                    let batch = consumer.next_batch(Duration::from_secs(1)).await;
                    // `/ready` names a stuck consumer until it moves again.
                    if consumer.stuck().is_some() != stuck {
                        stuck = !stuck;
                        let state = consumer.stuck().map_or(Ok(()), |why| Err(why.to_string()));
                        vitals.report(&part, state);
                    }
                    if batch.is_empty() {
                        if tx.is_closed() {
                            return;
                        }
                        continue;
                    }
                    if tx.send((i, batch)).await.is_err() {
                        return;
                    }
                }
            }));
            readers.push(Reader {
                name: input.name.clone(),
                stream: input.stream.clone(),
                durable,
                pending: VecDeque::new(),
                ackers: VecDeque::new(),
            });
        }
        Ok(Self {
            readers,
            rx,
            tasks,
            parts,
            vitals: ctx.vitals.clone(),
        })
    }

    pub(super) fn route(&mut self, (i, batch): (usize, RawBatch)) {
        let hi = batch.hi;
        let (messages, acker) = batch.into_parts();
        let reader = &mut self.readers[i];
        let count = messages.len();
        reader.pending.extend(messages);
        reader.ackers.push_back((hi, count, acker));
    }

    /// Takes in whatever the consumers have ready, without waiting.
    pub(super) fn drain_ready(&mut self) {
        while let Ok(item) = self.rx.try_recv() {
            self.route(item);
        }
    }

    /// Waits for the next batch of any input.
    pub(super) async fn wait_any(&mut self) -> Result<()> {
        match self.rx.recv().await {
            Some(item) => {
                self.route(item);
                self.drain_ready();
                Ok(())
            }
            None => Err(self.died()),
        }
    }

    pub(super) fn died(&self) -> Error {
        Error::InputEnded {
            input: self.readers.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Routes what the consumers deliver until input `i` has received up to `target` (kept
    /// pending, not taken), or `limit` passes; whether it got there.
    pub(super) async fn read_to(&mut self, i: usize, target: u64, limit: Duration) -> Result<bool> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if self.readers[i]
                .pending
                .back()
                .is_some_and(|m| m.seq >= target)
            {
                return Ok(true);
            }
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(item)) => self.route(item),
                Ok(None) => return Err(self.died()),
                Err(_) => return Ok(false),
            }
        }
    }

    /// Routes what the consumers deliver until every input has received each message its
    /// filter matched when it was asked, or `limit` passes; whether every input got there.
    ///
    /// The server's word for "received": its consumer has nothing left to deliver, and no more
    /// messages await an ack than this side holds unacknowledged (every ack is ack-all, so a
    /// delivered message still on its way here is one the server counts and this side does
    /// not). Its last delivered stream sequence is no guide: a filtered consumer moves it past
    /// the messages its filter skips.
    pub(super) async fn catch_up(
        &mut self,
        js: &jetstream::Context,
        limit: Duration,
    ) -> Result<bool> {
        let until = tokio::time::Instant::now() + limit;
        for i in 0..self.readers.len() {
            loop {
                let reader = &self.readers[i];
                let info = consumer_info(js, &reader.stream, &reader.durable).await?;
                let held: usize = reader.ackers.iter().map(|(_, n, _)| n).sum();
                if info.num_pending == 0 && info.num_ack_pending <= held {
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    return Ok(false);
                }
                // A batch, or a moment for an ack or a delivery to reach the server.
                if let Ok(got) = tokio::time::timeout(CATCH_UP_POLL, self.rx.recv()).await {
                    match got {
                        Some(item) => self.route(item),
                        None => return Err(self.died()),
                    }
                }
            }
        }
        Ok(true)
    }

    pub(super) fn any_pending(&self) -> bool {
        self.readers.iter().any(|r| !r.pending.is_empty())
    }

    /// Everything pending on input `i`.
    pub(super) fn take_all(&mut self, i: usize) -> Vec<RawMessage> {
        self.readers[i].pending.drain(..).collect()
    }

    /// Exactly the messages of input `i` up to `target` (a replay of a recorded epoch). Waits
    /// for them to arrive; messages the stream no longer holds (past its retention) are
    /// skipped with a warning, since no one can have them.
    pub(super) async fn take_until(
        &mut self,
        js: &jetstream::Context,
        i: usize,
        target: u64,
    ) -> Result<Vec<RawMessage>> {
        let mut out = Vec::new();
        loop {
            while let Some(front) = self.readers[i].pending.front() {
                if front.seq > target {
                    return Ok(out);
                }
                let done = front.seq == target;
                out.extend(self.readers[i].pending.pop_front());
                if done {
                    return Ok(out);
                }
            }
            match tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await {
                Ok(Some(item)) => self.route(item),
                Ok(None) => return Err(self.died()),
                Err(_) => {
                    let reader = &self.readers[i];
                    let first = first_sequence(js, &reader.stream).await?;
                    if first > target {
                        tracing::warn!(input = %reader.name, target, first, "replay: the stream no longer holds these messages");
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// Acknowledges input `i` up to `position`.
    pub(super) async fn ack(&mut self, i: usize, position: u64) {
        let ackers = &mut self.readers[i].ackers;
        while ackers.front().is_some_and(|(hi, _, _)| *hi <= position) {
            if let Some((_, _, acker)) = ackers.pop_front() {
                acker.ack().await;
            }
        }
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // A consumer that no longer runs here is not stuck here.
        for part in &self.parts {
            self.vitals.report(part, Ok(()));
        }
    }
}

/// The vitals part of a pipeline's consumer: `consumer:<durable>`.
fn consumer_part(durable: &str) -> String {
    format!("consumer:{durable}")
}

pub(super) async fn first_sequence(js: &jetstream::Context, stream: &str) -> Result<u64> {
    Ok(stream_state(js, stream).await?.first_sequence)
}

/// `stream`'s first and last sequences, as its leader has them now.
pub(super) async fn stream_state(
    js: &jetstream::Context,
    stream: &str,
) -> Result<jetstream::stream::State> {
    let mut s = js.get_stream(stream).await.map_err(|e| Error::Stream {
        stream: stream.to_string(),
        source: Box::new(e),
    })?;
    let info = s.info().await.map_err(|e| Error::Stream {
        stream: stream.to_string(),
        source: Box::new(e),
    })?;
    Ok(info.state.clone())
}

/// How often a catch-up asks the server again while nothing arrives.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);

/// What the server knows of consumer `durable` on `stream`: what it has left to deliver and
/// the last it delivered.
async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<jetstream::consumer::Info> {
    let failed = |e: String| Error::Stream {
        stream: stream.to_string(),
        source: e.into(),
    };
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| failed(e.to_string()))?;
    s.consumer_info(durable)
        .await
        .map_err(|e| failed(format!("consumer {durable}: {e}")))
}
