//! The metrics the pipelines report: every instance's batch size, step time, lag, epoch, late
//! and dead-lettered events; and the farm's power, allocation, temperatures and open violations
//! as the violations pipeline sees them.

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

/// Records how many messages `instance`'s `input` has not committed yet.
pub fn lag(instance: &str, input: &str, messages: u64) {
    metrics::gauge!(
        "adit_pipeline_lag_messages",
        "pipeline" => instance.to_string(),
        "input" => input.to_string()
    )
    .set(messages as f64);
}

/// Records how old the oldest message `instance`'s `input` has not read is, in seconds of wall
/// time since it was stored (0 when it has read everything).
pub fn lag_seconds(instance: &str, input: &str, seconds: f64) {
    metrics::gauge!(
        "adit_pipeline_lag_seconds",
        "pipeline" => instance.to_string(),
        "input" => input.to_string()
    )
    .set(seconds.max(0.0));
}

/// Records how far behind now the newest event `instance` committed from `input` is, in
/// seconds of event time (the source's delay and the pipeline's together).
pub fn event_lag_seconds(instance: &str, input: &str, seconds: f64) {
    metrics::gauge!(
        "adit_pipeline_event_lag_seconds",
        "pipeline" => instance.to_string(),
        "input" => input.to_string()
    )
    .set(seconds.max(0.0));
}

/// Records a site's power at its latest evaluation, and its allocation when the registry
/// gives one (both W), as the violations pipeline checks them.
pub fn site_power(site: &str, power_w: f64, allocation_w: Option<f64>) {
    metrics::gauge!("adit_site_power_watts", "site" => site.to_string()).set(power_w);
    if let Some(allocation_w) = allocation_w {
        metrics::gauge!("adit_site_allocation_watts", "site" => site.to_string()).set(allocation_w);
    }
}

/// Records a temperature sensor's latest value (NaN once it is stale, so an old reading is
/// never shown as current).
pub fn sensor_temperature(site: &str, sensor: &str, celsius: f64) {
    metrics::gauge!(
        "adit_sensor_temperature_celsius",
        "site" => site.to_string(),
        "sensor" => sensor.to_string()
    )
    .set(celsius);
}

/// Records how many violations of `kind` at `severity` are open at `site`.
pub fn violations_open(site: &str, kind: &'static str, severity: &'static str, open: usize) {
    metrics::gauge!(
        "adit_violations_open",
        "site" => site.to_string(),
        "kind" => kind,
        "severity" => severity
    )
    .set(open as f64);
}

/// Describes this crate's metrics (Prometheus `# HELP`) and starts its event counters at zero,
/// once at start.
pub fn register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "adit_pipeline_batch_messages",
        "Messages in one committed epoch, by pipeline instance."
    );
    describe_histogram!(
        "adit_pipeline_batch_rows",
        "Rows written by one committed epoch, by pipeline instance."
    );
    describe_histogram!(
        "adit_pipeline_step_seconds",
        "Time a pipeline instance's step took, by pipeline instance."
    );
    describe_counter!(
        "adit_pipeline_messages_total",
        "Messages read by a pipeline instance."
    );
    describe_counter!(
        "adit_pipeline_rows_total",
        "Rows committed by a pipeline instance."
    );
    describe_counter!(
        "adit_pipeline_dead_lettered_total",
        "Messages a pipeline instance sent to the dead-letter stream."
    );
    describe_counter!(
        "adit_pipeline_late_events_total",
        "Events that arrived after their window closed (kept, not used to rewrite it)."
    );
    describe_counter!(
        "adit_profit_shares_without_energy_total",
        "Accepted shares of a machine that had no energy in their settlement interval: counted, not priced in machine_profit."
    );
    describe_gauge!(
        "adit_pipeline_epoch",
        "The last epoch a pipeline instance committed."
    );
    describe_gauge!(
        "adit_pipeline_event_lag_seconds",
        "Now minus the event time of the newest event a pipeline instance committed from an input, in seconds."
    );
    describe_gauge!(
        "adit_pipeline_lag_messages",
        "Messages on a pipeline instance's input that it has not committed yet (its consumer's pending and unacknowledged ones)."
    );
    describe_gauge!(
        "adit_pipeline_lag_seconds",
        "How long ago the oldest message a pipeline instance has not committed was stored, in seconds (over pipelines.max_lag: stalled, /ready 503)."
    );
    describe_gauge!(
        "adit_pplns_blocks_waiting",
        "Blocks found by a pool that wait for their shares before being split."
    );
    describe_counter!(
        "adit_farm_unregistered_readings_total",
        "Readings from devices the registry does not know."
    );
    metrics::counter!("adit_farm_unregistered_readings_total").increment(0);
    describe_gauge!(
        "adit_site_power_watts",
        "A site's power at its latest evaluation (main meters, else the sum over its machines), W."
    );
    describe_gauge!(
        "adit_site_allocation_watts",
        "A site's power allocation in the registry, W."
    );
    describe_gauge!(
        "adit_sensor_temperature_celsius",
        "A temperature sensor's latest value, °C (NaN once stale)."
    );
    describe_gauge!(
        "adit_violations_open",
        "Violations open at a site, by kind and severity (the violations table is the record)."
    );
}
