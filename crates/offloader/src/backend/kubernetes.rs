//! The Kubernetes backend (spec §4). Placeholder: being written.

use std::time::Duration;

use super::{BackendError, JobState, Outcome, Started};
use crate::job::JobConfig;

pub struct KubernetesBackend {}

impl KubernetesBackend {
    pub async fn running_count(&self) -> Result<usize, BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn init(&self, _runners: &[String]) -> Result<(), BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn start(&self, _cfg: &JobConfig) -> Result<Started, BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn wait(&self, _id: &str, _remaining: Duration) -> Outcome {
        Outcome::Failed
    }
    pub async fn delete(&self, _id: &str) -> Result<(), BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn logs(&self, _id: &str) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn state(&self, _id: &str) -> Result<JobState, BackendError> {
        Err(BackendError::Other("not implemented".into()))
    }
    pub async fn shutdown(&self) {}
}
