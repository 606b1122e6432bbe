//! The metrics every pipeline instance reports: batch size, step time, lag, epoch, late and
//! dead-lettered events.

use std::time::Duration;

/// Records one committed epoch of `instance`.
pub fn epoch_committed(
    instance: &str,
    messages: usize,
    rows: usize,
    rejected: usize,
    late: u64,
    step: Duration,
    epoch: u64,
) {
    let labels = [("pipeline", instance.to_string())];
    metrics::histogram!("adit_pipeline_batch_messages", &labels).record(messages as f64);
    metrics::histogram!("adit_pipeline_batch_rows", &labels).record(rows as f64);
    metrics::histogram!("adit_pipeline_step_seconds", &labels).record(step.as_secs_f64());
    metrics::counter!("adit_pipeline_messages_total", &labels).increment(messages as u64);
    metrics::counter!("adit_pipeline_rows_total", &labels).increment(rows as u64);
    metrics::counter!("adit_pipeline_dead_lettered_total", &labels).increment(rejected as u64);
    metrics::counter!("adit_pipeline_late_events_total", &labels).increment(late);
    metrics::gauge!("adit_pipeline_epoch", &labels).set(epoch as f64);
}

/// Records how far `instance`'s `input` is behind the end of its stream, in messages.
pub fn lag(instance: &str, input: &str, messages: u64) {
    metrics::gauge!(
        "adit_pipeline_lag_messages",
        "pipeline" => instance.to_string(),
        "input" => input.to_string()
    )
    .set(messages as f64);
}
