//! A Ballista cluster on loopback: one scheduler and one executor, started in this process by
//! the same functions the `ballista-scheduler` and `ballista-executor` binaries run.
//!
//! Tasks are pushed to the executor (`push-staged`), the policy under which a cancelled job
//! reaches its running tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::JobId;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::job_status::Status;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::free_port;

/// A running scheduler and executor; they stop with the test's runtime.
pub struct Cluster {
    /// The address adit is given: `ballista://127.0.0.1:<port>`.
    pub address: String,
    scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
}

impl Cluster {
    /// Starts a scheduler and an executor with `slots` task slots; returns once the scheduler
    /// answers (the executor registers itself soon after, and jobs wait for it).
    pub async fn start(slots: usize) -> Self {
        let port = free_port();
        let config = SchedulerConfig::default()
            .with_hostname("127.0.0.1")
            .with_port(port)
            .with_scheduler_policy(TaskSchedulingPolicy::PushStaged);
        let state = BallistaCluster::new_from_config(&config)
            .await
            .expect("the scheduler's cluster state");
        let scheduler = create_scheduler(state, Arc::new(config))
            .await
            .expect("a scheduler");
        let addr = format!("127.0.0.1:{port}").parse().expect("an address");
        tokio::spawn(start_grpc_service(addr, scheduler.clone()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while SchedulerGrpcClient::connect(url.clone()).await.is_err() {
            assert!(Instant::now() < deadline, "the scheduler never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let executor = ExecutorProcessConfig {
            bind_host: "127.0.0.1".into(),
            external_host: Some("127.0.0.1".into()),
            port: free_port(),
            grpc_port: free_port(),
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: port,
            vcores: slots,
            task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
            ..ExecutorProcessConfig::default()
        };
        tokio::spawn(start_executor_process(Arc::new(executor)));
        Self {
            address: format!("ballista://127.0.0.1:{port}"),
            scheduler,
        }
    }

    /// The job the scheduler is running, once it runs one (within `wait`).
    pub async fn running_job(&self, wait: Duration) -> JobId {
        let deadline = Instant::now() + wait;
        loop {
            let jobs = self.scheduler.state.task_manager.get_running_job_cache();
            if let Some(job) = jobs.keys().next() {
                return job.clone();
            }
            assert!(Instant::now() < deadline, "no job ran within {wait:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Job `job`'s state at the scheduler, if it knows the job.
    pub async fn job_status(&self, job: &JobId) -> Option<Status> {
        self.scheduler
            .state
            .task_manager
            .get_job_status(job)
            .await
            .expect("the scheduler's job state")
            .and_then(|s| s.status)
    }
}
