//! The one list of pipelines. Adding a pipeline is adding it here; the runtime runs what this
//! list holds and never names one.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::anomalies::Anomalies;
use crate::curtailment::Curtailment;
use crate::energy::Energy;
use crate::error::Result;
use crate::hashrate::Hashrate;
use crate::landing::Landing;
use crate::pipeline::Pipeline;
use crate::pplns::Pplns;
use crate::registry_log::RegistryLog;
use crate::runner::run_instance;
use crate::runtime::{PipelineContext, PipelinesConfig};
use crate::violations::Violations;

/// A pipeline with its types erased, so different pipelines sit in one list.
pub trait Runnable: Send + Sync {
    /// The pipeline's name.
    fn name(&self) -> String;
    /// Its declaration.
    fn spec(&self) -> crate::pipeline::PipelineSpec;
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

    fn spec(&self) -> crate::pipeline::PipelineSpec {
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
    vec![
        Arc::new(Landing::telemetry()),
        Arc::new(Landing::grid()),
        Arc::new(Landing::shares()),
        Arc::new(Landing::alerts()),
        Arc::new(Landing::notifications()),
        Arc::new(Landing::audit()),
        Arc::new(Energy::new(config.energy.clone())),
        Arc::new(Pplns::new(config.pplns.clone())),
        Arc::new(Hashrate::new(config.hashrate.clone())),
        Arc::new(RegistryLog),
        Arc::new(Violations::new(config.violations.clone())),
        Arc::new(Anomalies::new(config.anomalies.clone())),
        Arc::new(Curtailment::new(config.curtailment.clone())),
    ]
}
