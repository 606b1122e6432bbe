//! A pipeline with its types erased, so that different pipelines sit in one list the runtime
//! runs ([`super::run_all`]).

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::runtime::context::PipelineContext;
use crate::runtime::pipeline::{Pipeline, PipelineSpec};
use crate::runtime::runner::run_instance;

/// A pipeline with its types erased, so different pipelines sit in one list.
pub trait Runnable: Send + Sync {
    /// The pipeline's name.
    fn name(&self) -> String;
    /// Its declaration.
    fn spec(&self) -> PipelineSpec;
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

    fn spec(&self) -> PipelineSpec {
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
