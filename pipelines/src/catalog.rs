//! The one list of pipelines. Adding a pipeline is adding it here; the runtime runs what this
//! list holds and never names one.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::control::curtailment::Curtailment;
use crate::error::Result;
use crate::farm::anomalies::Anomalies;
use crate::farm::energy::Energy;
use crate::farm::registry_log::RegistryLog;
use crate::farm::violations::Violations;
use crate::landing::Landing;
use crate::pool::hashrate::Hashrate;
use crate::pool::pplns::Pplns;
use crate::runtime::pipeline::Pipeline;
use crate::runtime::runner::run_instance;
use crate::runtime::{PipelineContext, PipelinesConfig};

/// A pipeline with its types erased, so different pipelines sit in one list.
pub trait Runnable: Send + Sync {
    /// The pipeline's name.
    fn name(&self) -> String;
    /// Its declaration.
    fn spec(&self) -> crate::runtime::pipeline::PipelineSpec;
    /// Runs one instance (see [`run_instance`]).
    fn run<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        partition: Option<&'a str>,
        shutdown: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<P: Pipeline> Runnable for P {
    fn name(&self) -> String {
        Pipeline::spec(self).name
    }

    fn spec(&self) -> crate::runtime::pipeline::PipelineSpec {
        Pipeline::spec(self)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a PipelineContext,
        partition: Option<&'a str>,
        shutdown: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(run_instance(self, ctx, partition, shutdown))
    }
}

/// Every pipeline, configured.
pub fn all(config: &PipelinesConfig) -> Vec<Arc<dyn Runnable>> {
    let landings = Landing::all()
        .into_iter()
        .map(|l| Arc::new(l) as Arc<dyn Runnable>);
    let others: [Arc<dyn Runnable>; 7] = [
        Arc::new(Energy::new(config.energy.clone())),
        Arc::new(Pplns::new(config.pplns.clone())),
        Arc::new(Hashrate::new(config.hashrate.clone())),
        Arc::new(RegistryLog),
        Arc::new(Violations::new(config.violations.clone())),
        Arc::new(Anomalies::new(config.anomalies.clone())),
        Arc::new(Curtailment::new(config.curtailment.clone())),
    ];
    landings.chain(others).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::pipeline::StreamInput;

    /// Whether every subject matching the filter `inner` also matches `outer` (NATS filters;
    /// empty: the whole stream).
    fn covers(outer: &str, inner: &str) -> bool {
        if outer.is_empty() {
            return true;
        }
        if inner.is_empty() {
            return false;
        }
        let (outer, inner): (Vec<&str>, Vec<&str>) =
            (outer.split('.').collect(), inner.split('.').collect());
        for i in 0.. {
            match (outer.get(i).copied(), inner.get(i).copied()) {
                (Some(">"), Some(_)) | (None, None) => return true,
                (Some("*"), Some(token)) if token != ">" => {}
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
        unreachable!()
    }

    /// Whether some subject matches both filters.
    fn overlap(a: &str, b: &str) -> bool {
        if a.is_empty() || b.is_empty() {
            return true;
        }
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
        for i in 0.. {
            match (a.get(i).copied(), b.get(i).copied()) {
                (Some(">"), Some(_)) | (Some(_), Some(">")) | (None, None) => return true,
                (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
                _ => return false,
            }
        }
        unreachable!()
    }

    #[test]
    fn subject_filters_cover_and_overlap_as_nats_matches_them() {
        assert!(covers("", "telemetry.energy.>"));
        assert!(covers("telemetry.>", "telemetry.energy.>"));
        assert!(covers("mining.*.p1", "mining.share.p1"));
        assert!(!covers("mining.share.>", "mining.>"));
        assert!(!covers("mining.*", "mining.>"));
        assert!(overlap("results.alert.>", "results.*.x"));
        assert!(!overlap("results.alert.>", "results.notification.>"));
        assert!(!overlap("control.audit.x", "control.audit"));
    }

    /// Every input that skips its refused messages reads only subjects an owner files, and no
    /// two owners file the same subject: each bad message becomes exactly one dead letter.
    #[test]
    fn each_subject_read_has_exactly_one_dead_letter_owner() {
        let inputs: Vec<(String, StreamInput)> = all(&PipelinesConfig::default())
            .into_iter()
            .flat_map(|p| {
                let spec = p.spec();
                spec.inputs.into_iter().map(move |i| (spec.name.clone(), i))
            })
            .collect();
        let owners: Vec<&(String, StreamInput)> =
            inputs.iter().filter(|(_, i)| i.dead_letters).collect();
        for (pipeline, input) in &inputs {
            let owned_by: Vec<&String> = owners
                .iter()
                .filter(|(_, o)| o.stream == input.stream && covers(&o.subject, &input.subject))
                .map(|(p, _)| p)
                .collect();
            assert!(
                !owned_by.is_empty(),
                "{pipeline}'s input {} ({} {:?}) has no owner to file its dead letters",
                input.name,
                input.stream,
                input.subject
            );
        }
        for (i, (a, x)) in owners.iter().enumerate() {
            for (b, y) in &owners[i + 1..] {
                assert!(
                    x.stream != y.stream || !overlap(&x.subject, &y.subject),
                    "{a} and {b} both file dead letters of {} {:?} / {:?}",
                    x.stream,
                    x.subject,
                    y.subject
                );
            }
        }
    }
}
