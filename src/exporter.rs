//! `/metrics` itself (`[metrics]`): whether it is served, and the `environment` label every
//! series carries so one Prometheus can scrape production and staging apart. Installs the
//! Prometheus recorder and registers adit's metrics ([`crate::metrics_catalog`]). Timings and
//! sizes are histograms (Prometheus's convention: aggregatable across processes, and never a
//! stale quantile after a quiet spell).

use adit_config::{Checked, check};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` and record metrics at all; `false` answers `/metrics` with 404.
    pub enabled: bool,
    /// A label `environment="<this>"` on every series (e.g. `production`); none when unset.
    /// 1 to 64 letters, digits, `_`, `-` or `.`.
    pub environment: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            environment: None,
        }
    }
}

impl MetricsConfig {
    /// Checks every value, naming the key.
    pub fn validate(&self) -> Checked {
        let Some(environment) = &self.environment else {
            return Ok(());
        };
        check(
            (1..=64).contains(&environment.len())
                && environment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
            "metrics.environment",
            "must be 1 to 64 letters, digits, '_', '-' or '.'",
        )
    }
}

/// Buckets for timings, in seconds: 0.5 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for batch sizes.
const COUNT_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// Installs the recorder as `config` asks; `None` when metrics are off (or the recorder could
/// not be installed, which is logged).
pub fn install(config: &MetricsConfig) -> Option<PrometheusHandle> {
    if !config.enabled {
        tracing::info!("metrics are off (metrics.enabled = false): /metrics answers 404");
        return None;
    }
    let mut builder = PrometheusBuilder::new();
    if let Some(environment) = &config.environment {
        builder = builder.add_global_label("environment", environment);
    }
    let built = builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Prefix("adit_pipeline_batch_".into()),
                COUNT_BUCKETS,
            )
        })
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            crate::metrics_catalog::register();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: the Prometheus recorder could not be installed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_is_a_plain_label_value() {
        let with = |e: &str| MetricsConfig {
            environment: Some(e.into()),
            ..Default::default()
        };
        assert!(with("production").validate().is_ok());
        assert!(with("eu-west.2").validate().is_ok());
        for bad in ["", "a\"b", "a b", "x\n", &"x".repeat(65)] {
            let e = with(bad).validate().unwrap_err();
            assert_eq!(e.key, "metrics.environment", "{bad:?}");
        }
    }
}
