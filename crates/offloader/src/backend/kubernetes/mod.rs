//! The Kubernetes backend (spec §4): each job is a `batch/v1` Job in one namespace, labelled
//! `app=mattermost-calls-offloader` and `job_name=<id>`. This module talks to the API server
//! (create, watch, list, delete, pod logs); the Job object itself is built in [`spec`].

pub mod spec;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Toleration};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::Instant;

use self::spec::{BuildOptions, JOB_NAME_LABEL, TERMINATION_GRACE_SECS, build_job, job_outcome};
use super::{APP_LABEL_KEY, APP_LABEL_VALUE, BackendError, JobState, Outcome, RuntimeEnv, Started};
use crate::job::JobConfig;

/// Bound of every single API call (as Go's 10 s request contexts). Watches are bounded by
/// their own deadline instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before re-listing after a watch that failed or ended at once, doubled up to the max.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A watch that stayed open this long counts as healthy, resetting the retry pause.
const HEALTHY_WATCH: Duration = Duration::from_secs(2);

/// The `jobs.kubernetes.*` settings plus the shared retention.
#[derive(Clone, Debug, Default)]
pub struct KubernetesSettings {
    /// JSON or YAML map from job type to a Kubernetes `ResourceRequirements`.
    pub jobs_resource_requirements: String,
    pub persistent_volume_claim_name: String,
    /// Comma-separated sysctls, one privileged init container each.
    pub node_sysctls: String,
    /// `jobs.failed_jobs_retention_time`; zero keeps failed Jobs forever.
    pub failed_jobs_retention: Duration,
}

pub struct KubernetesBackend {
    client: Client,
    namespace: String,
    // Boxed so the `Backend` enum stays small next to the Docker variant.
    opts: Box<BuildOptions>,
    env: Box<RuntimeEnv>,
    /// How long a watch outlives the job's deadline before it counts as failed.
    watch_grace: Duration,
}

impl KubernetesBackend {
    /// Connects with `KUBECONFIG` (`RuntimeEnv::kubeconfig`) when set, else the in-cluster
    /// service account, and checks the API server answers.
    pub async fn connect(settings: KubernetesSettings, env: RuntimeEnv) -> Result<Self, String> {
        let mut config = match env.kubeconfig.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| format!("failed to read kubeconfig {path} (KUBECONFIG): {e}"))?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("invalid kubeconfig {path} (KUBECONFIG): {e}"))?
            }
            None => Config::incluster().map_err(|e| {
                format!(
                    "failed to create in-cluster config (run in a pod with a service account, \
                     or set KUBECONFIG): {e}"
                )
            })?,
        };
        config.connect_timeout = Some(REQUEST_TIMEOUT);
        let client = Client::try_from(config)
            .map_err(|e| format!("failed to create kubernetes client: {e}"))?;
        Self::with_client(client, settings, env).await
    }

    /// Builds the backend on an existing client; still checks the API server answers.
    pub async fn with_client(
        client: Client,
        settings: KubernetesSettings,
        env: RuntimeEnv,
    ) -> Result<Self, String> {
        let resources = spec::parse_resources(&settings.jobs_resource_requirements)?;
        let namespace = env
            .k8s_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let version = call(client.apiserver_version())
            .await
            .map_err(|e| format!("failed to get kubernetes server version: {e}"))?;
        tracing::info!(
            version = %format!("{}.{}", version.major, version.minor),
            git_version = %version.git_version,
            %namespace,
            "connected to kubernetes API"
        );
        let opts = BuildOptions {
            namespace: namespace.clone(),
            resources,
            persistent_volume_claim_name: settings.persistent_volume_claim_name,
            node_sysctls: spec::parse_sysctls(&settings.node_sysctls),
            failed_jobs_retention: settings.failed_jobs_retention,
            dev_mode: env.dev_mode,
            privileged: env.security_context_privileged,
        };
        Ok(Self {
            client,
            namespace,
            opts: Box::new(opts),
            env: Box::new(env),
            watch_grace: Duration::from_secs(TERMINATION_GRACE_SECS as u64),
        })
    }

    /// Overrides the 300 s the watch outlives a job's deadline (tests use short values).
    pub fn with_watch_grace(mut self, grace: Duration) -> Self {
        self.watch_grace = grace;
        self
    }

    /// The namespace the Jobs live in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Unfinished Jobs of this service. Go counted every Job in the namespace, so unrelated
    /// workloads (or other offloaders sharing it) ate into `max_concurrent_jobs`; the label
    /// selector restricts the count to Jobs this service created.
    pub async fn running_count(&self) -> Result<usize, BackendError> {
        let lp = ListParams::default().labels(&format!("{APP_LABEL_KEY}={APP_LABEL_VALUE}"));
        let list = call(self.jobs().list(&lp))
            .await
            .map_err(|e| BackendError::Other(format!("failed to list jobs: {e}")))?;
        Ok(list
            .items
            .iter()
            .filter(|j| job_outcome(j).is_none())
            .count())
    }

    /// Images are pulled by the kubelet when the first pod runs.
    pub async fn init(&self, _runners: &[String]) -> Result<(), BackendError> {
        Ok(())
    }

    pub async fn start(&self, cfg: &JobConfig) -> Result<Started, BackendError> {
        let tolerations = self
            .pod_tolerations()
            .await
            .map_err(|e| BackendError::Other(format!("failed to get job pod tolerations: {e}")))?;
        let id = spec::job_name(&cfg.job_type, &calls_core::ids::new_id()).ok_or_else(|| {
            BackendError::Other(format!("invalid Type value: {:?}", cfg.job_type))
        })?;
        let (job, runner) =
            build_job(&id, cfg, &self.opts, tolerations).map_err(BackendError::Other)?;
        call(self.jobs().create(&PostParams::default(), &job))
            .await
            .map_err(|e| BackendError::Other(format!("failed to create job: {e}")))?;
        tracing::info!(job_id = %id, %runner, "kubernetes job created");
        Ok(Started { id, runner })
    }

    /// Read at every creation so an operator can change them without a restart (as in Go).
    async fn pod_tolerations(&self) -> Result<Vec<Toleration>, String> {
        if let Some(text) = self
            .env
            .k8s_tolerations
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            return spec::parse_tolerations(text);
        }
        if let Some(path) = self
            .env
            .k8s_tolerations_file
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                format!("failed to open file {path} (K8S_JOB_POD_TOLERATIONS_FILE): {e}")
            })?;
            return spec::parse_tolerations(&text);
        }
        Ok(spec::default_tolerations())
    }

    /// Waits for the Job's verdict: `failed > 0` → Failed, `succeeded > 0` → Succeeded, deleted
    /// → Gone, nothing by `remaining` + the grace → Failed.
    ///
    /// Unlike Go, a watch that ends early (API server restart, dropped connection, expired
    /// resourceVersion) does not count as a failure: the Job is listed again (catching anything
    /// missed meanwhile) and watched from there, until the deadline.
    pub async fn wait(&self, id: &str, remaining: Duration) -> Outcome {
        let now = Instant::now();
        let deadline = now
            .checked_add(remaining.saturating_add(self.watch_grace))
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        match tokio::time::timeout_at(deadline, self.watch_until_verdict(id, deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(job_id = %id, "kubernetes job gave no verdict before its deadline");
                Outcome::Failed
            }
        }
    }

    async fn watch_until_verdict(&self, id: &str, deadline: Instant) -> Outcome {
        let api = self.jobs();
        let selector = format!("{JOB_NAME_LABEL}=={id}");
        let lp = ListParams::default().labels(&selector);
        let mut pause = RETRY_MIN;
        loop {
            let opened = Instant::now();
            match self.watch_once(&api, &lp, &selector, deadline).await {
                Ok(Some(outcome)) => {
                    tracing::info!(job_id = %id, ?outcome, "kubernetes job ended");
                    return outcome;
                }
                Ok(None) => tracing::debug!(job_id = %id, "job watch ended, watching again"),
                Err(e) => tracing::warn!(job_id = %id, error = %e, "job watch failed, retrying"),
            }
            if opened.elapsed() >= HEALTHY_WATCH {
                pause = RETRY_MIN;
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }

    /// One list + watch round: `Ok(None)` when the watch ended without a verdict.
    async fn watch_once(
        &self,
        api: &Api<Job>,
        lp: &ListParams,
        selector: &str,
        deadline: Instant,
    ) -> Result<Option<Outcome>, String> {
        let list = call(api.list(lp)).await.map_err(|e| e.to_string())?;
        let Some(job) = list.items.first() else {
            // Deleted by someone else while we were not watching.
            return Ok(Some(Outcome::Gone));
        };
        if let Some(outcome) = job_outcome(job) {
            return Ok(Some(outcome));
        }
        let version = list.metadata.resource_version.unwrap_or_default();
        let left = deadline.saturating_duration_since(Instant::now());
        let secs = u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            .unwrap_or(u32::MAX)
            .max(1);
        let wp = WatchParams::default().labels(selector).timeout(secs);
        let stream = call(api.watch(&wp, &version))
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event.map_err(|e| e.to_string())? {
                WatchEvent::Added(job) | WatchEvent::Modified(job) => {
                    if let Some(outcome) = job_outcome(&job) {
                        return Ok(Some(outcome));
                    }
                }
                // Go looks at the status first: a Job deleted after it succeeded still did.
                WatchEvent::Deleted(job) => {
                    return Ok(Some(job_outcome(&job).unwrap_or(Outcome::Gone)));
                }
                WatchEvent::Bookmark(_) => {}
                // e.g. 410 Gone for an expired resourceVersion: list again.
                WatchEvent::Error(status) => return Err(status.to_string()),
            }
        }
        Ok(None)
    }

    /// Deletes the Job and, in the background, its pods.
    pub async fn delete(&self, id: &str) -> Result<(), BackendError> {
        call(self.jobs().delete(id, &DeleteParams::background()))
            .await
            .map(|_| ())
            .map_err(|e| not_found_or(e, "failed to delete job"))
    }

    /// All the logs of the first pod of the Job.
    pub async fn logs(&self, id: &str) -> Result<Vec<u8>, BackendError> {
        let lp = ListParams::default().labels(&format!("{JOB_NAME_LABEL}=={id}"));
        let pods = call(self.pods().list(&lp))
            .await
            .map_err(|e| BackendError::Other(format!("failed to list pods for job: {e}")))?;
        // Go answers "no pods found" here; the service words the API error.
        let Some(pod) = pods.items.first() else {
            return Err(BackendError::NotFound);
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let fetch = async {
            let req =
                kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", self.namespace))
                    .logs(&name, &LogParams::default())
                    .map_err(|e| e.to_string())?;
            let res = self
                .client
                .send(req.map(kube::client::Body::from))
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            let body = res
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| e.to_string())?;
            if !status.is_success() {
                let message = serde_json::from_slice::<kube::core::Status>(&body)
                    .map(|s| s.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
                return Err(format!("{status}: {message}"));
            }
            Ok(body.to_vec())
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fetch).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(BackendError::Other(format!("failed to get pod logs: {e}"))),
            Err(_) => Err(BackendError::Other(
                "failed to get pod logs: timed out".to_owned(),
            )),
        }
    }

    /// The Job's state for reconciliation after a restart.
    pub async fn state(&self, id: &str) -> Result<JobState, BackendError> {
        let job = call(self.jobs().get(id))
            .await
            .map_err(|e| not_found_or(e, "failed to get job"))?;
        Ok(match job_outcome(&job) {
            Some(outcome) => JobState::Ended(outcome),
            None => JobState::Running,
        })
    }

    /// Nothing runs in the background; Jobs keep running.
    pub async fn shutdown(&self) {}
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("request timed out after {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
}

async fn call<T>(fut: impl Future<Output = Result<T, kube::Error>>) -> Result<T, CallError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(res) => res.map_err(CallError::Kube),
        Err(_) => Err(CallError::Timeout),
    }
}

fn not_found_or(e: CallError, what: &str) -> BackendError {
    match &e {
        CallError::Kube(kube::Error::Api(status)) if status.is_not_found() => {
            BackendError::NotFound
        }
        _ => BackendError::Other(format!("{what}: {e}")),
    }
}
