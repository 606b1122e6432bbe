//! The metrics every pipeline reports: batch size, step time, lag and position.

use std::time::Duration;

/// Records one committed batch of `pipeline`.
pub fn batch_committed(pipeline: &str, rows: usize, rejected: usize, step: Duration, hi: u64) {
    let labels = [("pipeline", pipeline.to_string())];
    metrics::histogram!("adit_pipeline_batch_rows", &labels).record(rows as f64);
    metrics::histogram!("adit_pipeline_step_seconds", &labels).record(step.as_secs_f64());
    metrics::counter!("adit_pipeline_rows_total", &labels).increment(rows as u64);
    metrics::counter!("adit_pipeline_dead_lettered_total", &labels).increment(rejected as u64);
    metrics::gauge!("adit_pipeline_committed_sequence", &labels).set(hi as f64);
}

/// Records how far `pipeline` is behind the end of its stream, in messages.
pub fn lag(pipeline: &str, messages: u64) {
    metrics::gauge!("adit_pipeline_lag_messages", "pipeline" => pipeline.to_string())
        .set(messages as f64);
}
