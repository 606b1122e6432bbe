//! Lag, and the stalled pipeline it reveals. Each pipeline instance this process holds the
//! lease of is watched: every few seconds, for each stream input, its durable consumer says
//! how many messages the instance has not yet committed (pending and unacknowledged, since the
//! runner acknowledges only what it has committed) and where its acknowledged floor is; the
//! first message past that floor matching its filter is the oldest unread one, and JetStream's
//! stored time gives its age. Both are gauges (`adit_pipeline_lag_messages`,
//! `adit_pipeline_lag_seconds`); an age over `pipelines.max_lag` reports the part
//! `lag:<instance>` down, so `/ready` answers 503 naming it until the instance catches up.
//!
//! An instance stays watched through its failures (one failing at every epoch is the stall to
//! see) until another process holds its lease or this one stops: the watch reads the lease
//! bucket, and reports nothing for an instance a standby has taken over.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use adit_schemas::names;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::runtime::pipeline::PipelineSpec;

/// One input of a watched instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedInput {
    /// Input name (the `input` label).
    pub name: String,
    /// Its stream.
    pub stream: String,
    /// Its subject filter (empty: the whole stream).
    pub filter: String,
    /// Its durable consumer.
    pub consumer: String,
}

/// The instances this process runs, by instance name; shared by the runners, which add them
/// when they take a lease, and the watch.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<BTreeMap<String, Vec<WatchedInput>>>>);

impl Progress {
    /// Watches `instance` of `spec` for `partition` from now on.
    pub fn watch(&self, spec: &PipelineSpec, instance: &str, partition: Option<&str>) {
        let inputs = spec
            .inputs
            .iter()
            .map(|input| WatchedInput {
                name: input.name.clone(),
                stream: input.stream.clone(),
                filter: input.filter(partition).unwrap_or_default(),
                consumer: consumer_name(instance, &input.name),
            })
            .collect();
        self.lock().insert(instance.to_string(), inputs);
    }

    /// Stops watching `instance` (this process no longer runs it).
    pub fn forget(&self, instance: &str) {
        self.lock().remove(instance);
    }

    /// Every watched instance and its inputs.
    pub fn instances(&self) -> Vec<(String, Vec<WatchedInput>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<WatchedInput>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The durable consumer of `instance`'s `input`.
pub fn consumer_name(instance: &str, input: &str) -> String {
    format!("adit-{}-{input}", instance.replace('.', "_"))
}

/// The vitals part of `instance`'s lag.
pub fn part_name(instance: &str) -> String {
    format!("lag:{instance}")
}

/// How far one input is behind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Messages not yet committed.
    pub messages: u64,
    /// Age of the oldest of them, seconds (0 when there is none).
    pub seconds: f64,
}

/// How often the watch looks: a quarter of the bound, between 1 s and 15 s.
pub fn check_every(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Why an instance whose inputs are `lags` behind is stalled under `max_lag`, if it is.
pub fn stalled(lags: &[(String, Lag)], max_lag: Duration) -> Option<String> {
    let (input, worst) = lags
        .iter()
        .max_by(|a, b| a.1.seconds.total_cmp(&b.1.seconds))?;
    (worst.seconds > max_lag.as_secs_f64()).then(|| {
        format!(
            "{} messages not committed on input {input}; the oldest was stored {:.0} s ago, \
             over pipelines.max_lag ({max_lag:?})",
            worst.messages, worst.seconds,
        )
    })
}

/// What the lag watch reads and where it reports (taken from the pipelines' context).
#[derive(Clone)]
pub struct LagWatch {
    /// JetStream, for the consumers' pending counts and the lease bucket.
    pub js: jetstream::Context,
    /// This process's name on the leases it holds.
    pub holder: String,
    /// Past this, an instance is stalled.
    pub max_lag: Duration,
    /// The instances this process runs.
    pub progress: Progress,
    /// Where a stalled instance is reported (read by `/ready`).
    pub vitals: adit_supervise::Vitals,
}

/// Watches every instance in `ctx.progress` until `shutdown`.
pub async fn watch(
    ctx: LagWatch,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let max_lag = ctx.max_lag;
    let mut tick = tokio::time::interval(check_every(max_lag));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        for (instance, inputs) in ctx.progress.instances() {
            if held_elsewhere(&ctx, &instance).await {
                ctx.progress.forget(&instance);
                ctx.vitals.report(&part_name(&instance), Ok(()));
                continue;
            }
            let mut lags = Vec::new();
            for input in &inputs {
                if let Some(lag) = input_lag(&ctx.js, input).await {
                    crate::runtime::metrics::lag(&instance, &input.name, lag.messages);
                    crate::runtime::metrics::lag_seconds(&instance, &input.name, lag.seconds);
                    lags.push((input.name.clone(), lag));
                }
            }
            let state = stalled(&lags, max_lag).map_or(Ok(()), Err);
            let was_up = ctx.vitals.report(&part_name(&instance), state.clone());
            match (state, was_up) {
                (Err(reason), true) => {
                    tracing::warn!(pipeline = %instance, %reason, "pipeline stalled: /ready says so until it catches up");
                }
                (Ok(()), false) => tracing::info!(pipeline = %instance, "pipeline caught up"),
                _ => {}
            }
        }
    }
}

/// Whether another process holds `instance`'s lease now.
async fn held_elsewhere(ctx: &LagWatch, instance: &str) -> bool {
    let Ok(kv) = ctx.js.get_key_value(names::KV_LEASES).await else {
        return false;
    };
    match kv.get(instance).await {
        Ok(Some(holder)) => holder.as_ref() != ctx.holder.as_bytes(),
        _ => false,
    }
}

/// One input's lag, from its consumer; `None` when it cannot be read (no consumer yet).
async fn input_lag(js: &jetstream::Context, input: &WatchedInput) -> Option<Lag> {
    let stream = js.get_stream_no_info(&input.stream).await.ok()?;
    let info = stream.consumer_info(&input.consumer).await.ok()?;
    let messages = info.num_pending + info.num_ack_pending as u64;
    if messages == 0 {
        return Some(Lag {
            messages,
            seconds: 0.0,
        });
    }
    let filter = if input.filter.is_empty() {
        ">"
    } else {
        &input.filter
    };
    let oldest = stream
        .raw_message_builder()
        .sequence(info.ack_floor.stream_sequence + 1)
        .next_by_subject(filter)
        .send()
        .await
        .ok()?;
    let seconds = SystemTime::now()
        .duration_since(SystemTime::from(oldest.time))
        .map_or(0.0, |age| age.as_secs_f64());
    Some(Lag { messages, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(messages: u64, seconds: f64) -> Lag {
        Lag { messages, seconds }
    }

    #[test]
    fn an_instance_is_stalled_by_its_oldest_unread_message() {
        let bound = Duration::from_secs(60);
        assert_eq!(stalled(&[], bound), None);
        let fresh = [
            ("a".to_string(), lag(5000, 3.0)),
            ("b".to_string(), lag(0, 0.0)),
        ];
        assert_eq!(stalled(&fresh, bound), None, "many messages, all young");
        let old = [
            ("a".to_string(), lag(1, 3.0)),
            ("b".to_string(), lag(7, 61.4)),
        ];
        let reason = stalled(&old, bound).unwrap();
        assert!(
            reason.starts_with("7 messages not committed on input b"),
            "{reason}"
        );
        assert!(reason.contains("61 s ago") && reason.contains("pipelines.max_lag (60s)"));
    }

    #[test]
    fn the_watch_looks_often_enough_for_its_bound() {
        assert_eq!(check_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(check_every(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(
            check_every(Duration::from_secs(3600)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn a_partitioned_instance_watches_its_own_filter_and_consumer() {
        let spec = crate::catalog::all(&crate::PipelinesConfig::default())
            .into_iter()
            .map(|p| p.spec())
            .find(|s| s.name == "telemetry")
            .unwrap();
        let progress = Progress::default();
        progress.watch(&spec, "telemetry.site-01", Some("site-01"));
        let watched = progress.instances();
        assert_eq!(watched.len(), 1);
        let input = &watched[0].1[0];
        assert!(input.filter.contains("site-01"), "{input:?}");
        assert_eq!(
            input.consumer,
            format!("adit-telemetry_site-01-{}", input.name)
        );
        progress.forget("telemetry.site-01");
        assert!(progress.instances().is_empty());
    }
}
