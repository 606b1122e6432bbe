//! The metrics page, from the descriptions adit registers when its recorder is installed
//! (`src/metrics_catalog.rs` and the pipelines' own): captured by a recorder that only keeps
//! what is described, so the page lists every metric whichever roles a process runs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// What one metric is: its type and its `# HELP` text.
type Described = BTreeMap<String, (&'static str, String)>;

/// Keeps every description; registers nothing.
#[derive(Default)]
struct Descriptions(Mutex<Described>);

impl Descriptions {
    fn keep(&self, name: KeyName, kind: &'static str, help: SharedString) {
        self.0
            .lock()
            .unwrap()
            .insert(name.as_str().to_string(), (kind, help.to_string()));
    }
}

impl Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, help: SharedString) {
        self.keep(key, "counter", help);
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, help: SharedString) {
        self.keep(key, "gauge", help);
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, help: SharedString) {
        self.keep(key, "histogram", help);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// `docs/src/reference/metrics.md`.
pub(super) fn page() -> String {
    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, adit::metrics_catalog::register);
    let described = recorder.0.into_inner().unwrap();
    let mut out = String::from(
        "# Metrics\n\n\
         Generated from the descriptions adit registers (`src/metrics_catalog.rs` and the \
         pipelines' `runtime/metrics.rs`) by `cargo nextest run --workspace -E \
         'test(/^reference::/)'`; do not edit by hand. `GET /metrics` serves them in Prometheus's \
         text format (see [Monitoring](../operate/monitoring.md)); those that only move when \
         something happens start at zero.\n\n\
         | metric | type | meaning |\n| --- | --- | --- |\n",
    );
    for (name, (kind, help)) in &described {
        out.push_str(&format!(
            "| `{name}` | {kind} | {} |\n",
            super::cli::cell(help)
        ));
    }
    out
}
