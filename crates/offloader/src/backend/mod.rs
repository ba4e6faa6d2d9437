//! Job backends: where a validated job actually runs.
//!
//! The job service (`crate::service`) owns the store record, the concurrency limit and the
//! stop callback; a backend only starts, watches, lists, removes and reads the logs of the
//! containers (Docker) or Jobs (Kubernetes) that carry this service's label. Keeping the record
//! handling out of the backends is what lets the service save a job *before* its watcher starts
//! and reconcile jobs after a restart the same way on both backends.

pub mod docker;
pub mod kubernetes;

use std::time::Duration;

use crate::job::JobConfig;

/// The label every resource this service creates carries (`app=mattermost-calls-offloader`).
pub const APP_LABEL_KEY: &str = "app";
pub const APP_LABEL_VALUE: &str = "mattermost-calls-offloader";

/// How a job ended, as the watcher saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Docker: exit code 0. Kubernetes: `status.succeeded > 0`.
    Succeeded,
    /// Any other ending, including a watch that ended without a verdict.
    Failed,
    /// The resource disappeared (deleted by someone else); no callback is due.
    Gone,
}

/// What a backend knows about one of its own jobs, for start-up reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Ended(Outcome),
}

/// A job the backend started.
#[derive(Clone, Debug)]
pub struct Started {
    /// The public job ID (Docker: first 12 hex chars of the container ID; Kubernetes: the Job name).
    pub id: String,
    /// The image actually run (differs from the request only in DEV_MODE).
    pub runner: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend has no such job (maps to the API's 404 where the Go service gives one).
    #[error("not found")]
    NotFound,
    /// Any other failure, already worded for the admin.
    #[error("{0}")]
    Other(String),
}

/// Environment switches the Go service reads outside its config file (spec §5.3).
#[derive(Clone, Debug, Default)]
pub struct RuntimeEnv {
    pub dev_mode: bool,
    pub test_mode: bool,
    /// `DOCKER_NETWORK`.
    pub docker_network: Option<String>,
    /// `K8S_NAMESPACE` (default `default`).
    pub k8s_namespace: Option<String>,
    /// `K8S_JOB_POD_TOLERATIONS`.
    pub k8s_tolerations: Option<String>,
    /// `K8S_JOB_POD_TOLERATIONS_FILE`.
    pub k8s_tolerations_file: Option<String>,
    /// `SECURITY_CONTEXT_PRIVILEGED` (Go `ParseBool`; anything else is false).
    pub security_context_privileged: bool,
    /// `KUBECONFIG`: a kubeconfig file to use instead of the in-cluster service account.
    pub kubeconfig: Option<String>,
}

/// The two backends behind one type, so the service needs no trait objects or boxed futures.
pub enum Backend {
    Docker(docker::DockerBackend),
    Kubernetes(kubernetes::KubernetesBackend),
}

impl Backend {
    /// Jobs of this service that are still running (the concurrency count, spec §2.6).
    pub async fn running_count(&self) -> Result<usize, BackendError> {
        match self {
            Backend::Docker(b) => b.running_count().await,
            Backend::Kubernetes(b) => b.running_count().await,
        }
    }

    /// `POST /jobs/init`: make the runner images available (Docker pulls; Kubernetes no-op).
    pub async fn init(&self, runners: &[String]) -> Result<(), BackendError> {
        match self {
            Backend::Docker(b) => b.init(runners).await,
            Backend::Kubernetes(b) => b.init(runners).await,
        }
    }

    /// Creates and starts the job. On error nothing is left behind.
    pub async fn start(&self, cfg: &JobConfig) -> Result<Started, BackendError> {
        match self {
            Backend::Docker(b) => b.start(cfg).await,
            Backend::Kubernetes(b) => b.start(cfg).await,
        }
    }

    /// Waits for the job to end, stopping it once `remaining` has elapsed (Docker: SIGTERM with a
    /// 300 s grace; Kubernetes relies on `activeDeadlineSeconds` and watches until
    /// `remaining + 300 s`).
    pub async fn wait(&self, id: &str, remaining: Duration) -> Outcome {
        match self {
            Backend::Docker(b) => b.wait(id, remaining).await,
            Backend::Kubernetes(b) => b.wait(id, remaining).await,
        }
    }

    /// Removes the job's resources (container and volume, or the Job with its pods).
    pub async fn delete(&self, id: &str) -> Result<(), BackendError> {
        match self {
            Backend::Docker(b) => b.delete(id).await,
            Backend::Kubernetes(b) => b.delete(id).await,
        }
    }

    /// The job's logs as the API returns them (Docker: stderr of the last hour).
    pub async fn logs(&self, id: &str) -> Result<Vec<u8>, BackendError> {
        match self {
            Backend::Docker(b) => b.logs(id).await,
            Backend::Kubernetes(b) => b.logs(id).await,
        }
    }

    /// The state of one of this service's jobs, for reconciliation after a restart.
    pub async fn state(&self, id: &str) -> Result<JobState, BackendError> {
        match self {
            Backend::Docker(b) => b.state(id).await,
            Backend::Kubernetes(b) => b.state(id).await,
        }
    }

    /// Stops background work (the Docker retention sweep). Running jobs keep running.
    pub async fn shutdown(&self) {
        match self {
            Backend::Docker(b) => b.shutdown().await,
            Backend::Kubernetes(b) => b.shutdown().await,
        }
    }
}
