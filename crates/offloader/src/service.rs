//! The job service: validation, the concurrency limit, the job records (store table `jobs`),
//! one watcher per running job, the stop callback and start-up reconciliation. Backends only
//! run containers or Kubernetes Jobs; everything about records lives here, identically for both.
//!
//! Improvements over Go, all invisible on the wire:
//! - the record is saved *before* the watcher starts, so a job that exits at once is still
//!   cleaned up (Go's callback raced the save and leaked such jobs);
//! - the limit is checked under a lock that also counts creations still in flight, so parallel
//!   requests cannot overshoot `max_concurrent_jobs`;
//! - at start-up every record without `stop_at` is reconciled with its backend resource: still
//!   running → watched again; ended meanwhile → the stop callback runs now; gone → marked stopped;
//! - `input_data` values (the bot's `auth_token`) are never logged, only its keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use calls_core::store::{Store, StoreError};
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, BackendError, JobState, Outcome};
use crate::job::{Job, JobConfig, RunnerCheck};
use crate::metrics;

/// The store table of job records, keyed by job ID.
pub const JOBS_TABLE: &str = "jobs";
/// Go's exact text for the concurrency limit.
pub const MAX_JOBS_REACHED: &str = "max concurrent jobs reached";

#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub max_concurrent_jobs: usize,
    pub image_registry: String,
    pub runner_check: RunnerCheck,
    /// DEV_MODE: the limit only warns.
    pub dev_mode: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The request is invalid (HTTP 400, message as is).
    Invalid(String),
    /// The backend refused or failed, the limit included (HTTP 500 `failed to create recording job: …`).
    Backend(String),
    /// The job runs but its record could not be saved (HTTP 500 `failed to save job: …`).
    Save(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteError {
    NotFound(String),
    Running,
    Backend(String),
}

pub struct JobService {
    backend: Arc<Backend>,
    store: Arc<Store>,
    settings: ServiceSettings,
    /// Serialises the limit check; held only for the count, not for the (slow) start.
    admission: tokio::sync::Mutex<()>,
    /// Creations admitted but not yet started, counted against the limit.
    in_flight: Arc<AtomicUsize>,
    watchers: TaskTracker,
}

/// One admitted creation, counted until dropped (after the start, success or not).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether a new job may start: `running` jobs plus `in_flight` creations against the limit.
pub fn admit(running: usize, in_flight: usize, max: usize) -> bool {
    running.saturating_add(in_flight) < max
}

/// What is left of a job's max duration at `now` (zero once it is over).
pub fn remaining(job: &Job, now_ms: i64) -> Duration {
    let end = job
        .start_at
        .saturating_add(job.config.max_duration_sec.saturating_mul(1000));
    Duration::from_millis(end.saturating_sub(now_ms).max(0) as u64)
}

/// The `input_data` keys of a job, for logs (values may be secrets).
fn input_keys(cfg: &JobConfig) -> Vec<String> {
    cfg.input_data
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Gone => "gone",
    }
}

impl JobService {
    pub fn new(backend: Arc<Backend>, store: Arc<Store>, settings: ServiceSettings) -> Arc<Self> {
        Arc::new(Self {
            backend,
            store,
            settings,
            admission: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            watchers: TaskTracker::new(),
        })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// The stored record of a job.
    pub async fn get(&self, id: &str) -> Result<Job, StoreError> {
        let id = id.to_owned();
        let raw = self.blocking(move |s| s.get(JOBS_TABLE, &id)).await?;
        serde_json::from_str(&raw)
            .map_err(|e| StoreError::Backend(format!("corrupt job record: {e}")))
    }

    async fn save(&self, job: &Job) -> Result<(), StoreError> {
        let raw = serde_json::to_string(job).map_err(|e| StoreError::Backend(e.to_string()))?;
        let id = job.id.clone();
        self.blocking(move |s| s.set(JOBS_TABLE, &id, &raw)).await
    }

    async fn remove_record(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        match self.blocking(move |s| s.delete(JOBS_TABLE, &id)).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /jobs`: validate, admit, start, save, watch.
    pub async fn create(self: &Arc<Self>, cfg: JobConfig) -> Result<Job, CreateError> {
        cfg.is_valid(&self.settings.image_registry, self.settings.runner_check)
            .map_err(CreateError::Invalid)?;
        let slot = self.admit(&cfg.job_type).await?;
        let started = self.backend.start(&cfg).await;
        drop(slot);
        let started = started.map_err(|e| {
            metrics::job_create_error(&cfg.job_type, "backend");
            tracing::error!(job_type = %cfg.job_type, runner = %cfg.runner, error = %e, "failed to start job");
            CreateError::Backend(e.to_string())
        })?;
        let job = Job {
            config: JobConfig {
                runner: started.runner,
                ..cfg
            },
            id: started.id,
            start_at: now_ms(),
            stop_at: 0,
            output_data: None,
        };
        tracing::info!(
            id = %job.id,
            job_type = %job.config.job_type,
            runner = %job.config.runner,
            max_duration_sec = job.config.max_duration_sec,
            input_keys = ?input_keys(&job.config),
            "job started"
        );
        metrics::job_created(&job.config.job_type);
        metrics::job_running(&job.config.job_type, 1.0);
        let saved = self.save(&job).await;
        // Watch in any case: even without a record, the job's resources must be cleaned up.
        self.spawn_watcher(
            job.clone(),
            Duration::from_secs(job.config.max_duration_sec.max(0) as u64),
        );
        match saved {
            Ok(()) => Ok(job),
            Err(e) => {
                tracing::error!(id = %job.id, error = %e, "failed to save job record");
                Err(CreateError::Save(e.to_string()))
            }
        }
    }

    async fn admit(&self, job_type: &str) -> Result<Slot, CreateError> {
        let _turn = self.admission.lock().await;
        let running = self.backend.running_count().await.map_err(|e| {
            metrics::job_create_error(job_type, "backend");
            CreateError::Backend(e.to_string())
        })?;
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        let max = self.settings.max_concurrent_jobs;
        if !admit(running, in_flight, max) {
            if !self.settings.dev_mode {
                metrics::job_create_error(job_type, "max_concurrent_jobs");
                tracing::warn!(running, in_flight, max, "{MAX_JOBS_REACHED}");
                return Err(CreateError::Backend(MAX_JOBS_REACHED.into()));
            }
            tracing::warn!(
                running,
                in_flight,
                max,
                "{MAX_JOBS_REACHED} (DEV_MODE: starting anyway)"
            );
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(Slot(self.in_flight.clone()))
    }

    fn spawn_watcher(self: &Arc<Self>, job: Job, remaining: Duration) {
        let svc = self.clone();
        self.watchers.spawn(async move {
            let outcome = svc.backend.wait(&job.id, remaining).await;
            svc.on_stop(job, outcome).await;
        });
    }

    /// The stop callback: record `stop_at`; on success remove the resources and the record; on
    /// failure keep everything for the admin (the backend's retention removes the resources).
    async fn on_stop(&self, job: Job, outcome: Outcome) {
        let mut rec = match self.get(&job.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(id = %job.id, error = %e, "job record unavailable at stop; using the one in memory");
                job
            }
        };
        if rec.stop_at == 0 {
            rec.stop_at = now_ms();
        }
        if let Err(e) = self.save(&rec).await {
            tracing::error!(id = %rec.id, error = %e, "failed to save job stop time");
        }
        let t = rec.config.job_type.clone();
        metrics::job_running(&t, -1.0);
        metrics::job_ended(
            &t,
            outcome_label(outcome),
            (rec.stop_at - rec.start_at) as f64 / 1000.0,
        );
        match outcome {
            Outcome::Succeeded => {
                tracing::info!(id = %rec.id, job_type = %t, "job completed successfully, removing it");
                match self.backend.delete(&rec.id).await {
                    Ok(()) | Err(BackendError::NotFound) => {
                        if let Err(e) = self.remove_record(&rec.id).await {
                            tracing::error!(id = %rec.id, error = %e, "failed to delete job record");
                        }
                    }
                    Err(e) => {
                        tracing::error!(id = %rec.id, error = %e, "failed to remove resources of a successful job; its record is kept");
                    }
                }
            }
            Outcome::Failed => {
                tracing::warn!(id = %rec.id, job_type = %t, "job failed; its resources and record are kept for inspection");
            }
            Outcome::Gone => {
                tracing::warn!(id = %rec.id, job_type = %t, "job resources disappeared; record kept, marked stopped");
            }
        }
    }

    /// Start-up reconciliation of records left by a previous run (see the module docs).
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), String> {
        let records = self
            .blocking(|s| s.list(JOBS_TABLE))
            .await
            .map_err(|e| format!("failed to list job records: {e}"))?;
        let (mut watched, mut ended, mut gone) = (0, 0, 0);
        for (key, raw) in records {
            let mut job: Job = match serde_json::from_str(&raw) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(id = %key, error = %e, "skipping unreadable job record");
                    continue;
                }
            };
            if job.stop_at != 0 {
                continue;
            }
            match self.backend.state(&job.id).await {
                Ok(JobState::Running) => {
                    let left = remaining(&job, now_ms());
                    tracing::info!(id = %job.id, remaining_secs = left.as_secs(), "re-attaching watcher to a job that kept running");
                    metrics::job_running(&job.config.job_type, 1.0);
                    self.spawn_watcher(job, left);
                    watched += 1;
                }
                Ok(JobState::Ended(outcome)) => {
                    tracing::info!(id = %job.id, outcome = outcome_label(outcome), "job ended while the offloader was down");
                    metrics::job_running(&job.config.job_type, 1.0);
                    let svc = self.clone();
                    self.watchers
                        .spawn(async move { svc.on_stop(job, outcome).await });
                    ended += 1;
                }
                Err(BackendError::NotFound) => {
                    tracing::warn!(id = %job.id, "job's resources no longer exist; marking it stopped (record kept)");
                    job.stop_at = now_ms();
                    if let Err(e) = self.save(&job).await {
                        tracing::error!(id = %job.id, error = %e, "failed to save job stop time");
                    }
                    gone += 1;
                }
                Err(e) => {
                    tracing::error!(id = %job.id, error = %e, "could not check job state; it will be checked again at the next start");
                }
            }
        }
        tracing::info!(
            watched,
            ended,
            gone,
            "reconciled jobs from the previous run"
        );
        Ok(())
    }

    /// `DELETE /jobs/{id}`: only stopped jobs; the record stays (Go quirk).
    pub async fn delete(&self, id: &str) -> Result<(), DeleteError> {
        let job = self
            .get(id)
            .await
            .map_err(|e| DeleteError::NotFound(format!("failed to get job: {e}")))?;
        if job.stop_at == 0 {
            return Err(DeleteError::Running);
        }
        match self.backend.delete(id).await {
            // Already removed (by the retention sweep, say): nothing left to do.
            Ok(()) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(DeleteError::Backend(e.to_string())),
        }
    }

    /// Lets running watchers go; jobs keep running and are reconciled at the next start.
    pub async fn shutdown(&self) {
        self.watchers.close();
        self.backend.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_running_and_in_flight() {
        assert!(admit(0, 0, 2));
        assert!(admit(1, 0, 2));
        assert!(admit(0, 1, 2));
        assert!(!admit(1, 1, 2));
        assert!(!admit(2, 0, 2));
        assert!(!admit(0, 2, 2));
        assert!(!admit(5, 0, 2));
        assert!(!admit(usize::MAX, 1, 2));
    }

    #[test]
    fn remaining_duration_after_a_restart() {
        let job = Job {
            config: JobConfig {
                max_duration_sec: 60,
                ..Default::default()
            },
            start_at: 1_000_000,
            ..Default::default()
        };
        assert_eq!(remaining(&job, 1_000_000), Duration::from_secs(60));
        assert_eq!(remaining(&job, 1_030_500), Duration::from_millis(29_500));
        assert_eq!(remaining(&job, 1_060_000), Duration::ZERO);
        assert_eq!(remaining(&job, 9_000_000), Duration::ZERO, "over: stop now");
        let huge = Job {
            config: JobConfig {
                max_duration_sec: i64::MAX,
                ..Default::default()
            },
            start_at: i64::MAX - 1,
            ..Default::default()
        };
        assert!(remaining(&huge, 0) > Duration::from_secs(1), "no overflow");
    }
}
