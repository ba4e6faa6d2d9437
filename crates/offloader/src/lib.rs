//! `calls-offloader`: the job service of Mattermost Calls, wire-compatible with the Go service
//! the Calls plugin talks to (recordings and transcriptions as Docker containers or Kubernetes
//! Jobs).
//!
//! Where things go:
//! - [`config`]: keys, defaults, environment variables and validation (spec §5).
//! - [`job`]: the job model, validation and `input_data` → environment rules (no I/O).
//! - [`service`]: records, the concurrency limit, watchers, stop callback, reconciliation.
//! - [`api`]: the HTTP API (spec §1) and `/metrics` ([`metrics`]).
//! - [`backend`]: where a job runs: [`backend::docker`] (Docker Engine) or
//!   [`backend::kubernetes`] (Kubernetes Jobs).
pub mod api;
pub mod backend;
pub mod config;
pub mod job;
pub mod metrics;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, RuntimeEnv};

/// The upstream release whose API this build speaks, reported as `buildVersion` (the plugin
/// requires >= v0.9.0).
pub const COMPAT_VERSION: &str = "v0.9.5";
/// This implementation's name in `/version`.
pub const IMPLEMENTATION: &str = "calls-rs calls-offloader";
/// Test-only: the retention sweep period in milliseconds (default one minute, as in Go). Lets
/// the test suite watch the sweep without waiting minutes; not meant for production.
pub const TEST_SWEEP_INTERVAL_ENV: &str = "CALLS_OFFLOADER_TEST_SWEEP_INTERVAL_MS";

/// The environment switches read outside the config file (spec §5.3).
pub fn runtime_env(get: &dyn Fn(&str) -> Option<String>) -> RuntimeEnv {
    RuntimeEnv {
        dev_mode: get("DEV_MODE").as_deref() == Some("true"),
        test_mode: get("TEST_MODE").as_deref() == Some("true"),
        docker_network: get("DOCKER_NETWORK").filter(|v| !v.is_empty()),
        k8s_namespace: get("K8S_NAMESPACE").filter(|v| !v.is_empty()),
        k8s_tolerations: get("K8S_JOB_POD_TOLERATIONS").filter(|v| !v.is_empty()),
        k8s_tolerations_file: get("K8S_JOB_POD_TOLERATIONS_FILE").filter(|v| !v.is_empty()),
        security_context_privileged: get("SECURITY_CONTEXT_PRIVILEGED")
            .and_then(|v| calls_core::config::parse_go_bool(&v))
            .unwrap_or(false),
        kubeconfig: get("KUBECONFIG").filter(|v| !v.is_empty()),
    }
}

async fn connect_backend(cfg: &config::Config, env: RuntimeEnv) -> Result<Backend, String> {
    match cfg.api_type() {
        config::ApiType::Docker => {
            let sweep_interval = std::env::var(TEST_SWEEP_INTERVAL_ENV)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(
                    backend::docker::DEFAULT_SWEEP_INTERVAL,
                    Duration::from_millis,
                );
            let settings = backend::docker::DockerSettings {
                output_logs: cfg.jobs.docker.output_logs,
                failed_jobs_retention: cfg.retention(),
                sweep_interval,
            };
            backend::docker::DockerBackend::connect(settings, env)
                .await
                .map(Backend::Docker)
        }
        config::ApiType::Kubernetes => connect_kubernetes(cfg, env).await,
    }
}

async fn connect_kubernetes(cfg: &config::Config, env: RuntimeEnv) -> Result<Backend, String> {
    let settings = backend::kubernetes::KubernetesSettings {
        jobs_resource_requirements: cfg.jobs.kubernetes.jobs_resource_requirements.clone(),
        persistent_volume_claim_name: cfg.jobs.kubernetes.persistent_volume_claim_name.clone(),
        node_sysctls: cfg.jobs.kubernetes.node_sysctls.clone(),
        failed_jobs_retention: cfg.retention(),
    };
    backend::kubernetes::KubernetesBackend::connect(settings, env)
        .await
        .map(Backend::Kubernetes)
}

/// Runs the offloader until SIGINT/SIGTERM. Errors are start-up failures, one line each.
pub async fn run(cfg: config::Config) -> Result<(), String> {
    let version = calls_core::buildinfo::version_info(IMPLEMENTATION, COMPAT_VERSION, false);
    tracing::info!(
        build_version = %version.build_version,
        build_hash = %version.build_hash,
        build_date = %version.build_date,
        version = %version.implementation_version,
        "calls-offloader: starting up"
    );
    let env = runtime_env(&calls_core::config::process_env);
    if env.dev_mode {
        tracing::warn!(
            "DEV_MODE=true: runner images are not validated, the job limit only warns, jobs run <prefix>:master images"
        );
    } else if env.test_mode {
        tracing::warn!("TEST_MODE=true: runner images are not validated");
    }
    let metrics = calls_core::metrics::Registry::install("calls_offloader", metrics::BUCKETS)?;
    metrics::describe();

    let store = calls_core::store::open_configured(&cfg.store).await?;
    let store = Arc::new(store);

    let backend = Arc::new(connect_backend(&cfg, env.clone()).await?);
    let jobs = service::JobService::new(
        backend,
        store.clone(),
        service::ServiceSettings {
            max_concurrent_jobs: usize::try_from(cfg.jobs.max_concurrent_jobs).unwrap_or(1),
            image_registry: cfg.jobs.image_registry.clone(),
            runner_check: if env.dev_mode || env.test_mode {
                job::RunnerCheck::Skip
            } else {
                job::RunnerCheck::Enforce
            },
            dev_mode: env.dev_mode,
        },
    );
    jobs.reconcile().await?;

    let auth = calls_core::auth::AuthService::new(store, cfg.api.security.clone());
    let (listener, tls) = calls_core::http::bind_api(&cfg.api.http)?;
    let state = Arc::new(api::AppState {
        auth,
        jobs: jobs.clone(),
        version,
        metrics,
    });
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut signals = calls_core::daemon::ShutdownSignals::install()?;
    tracing::info!(address = %local, tls = cfg.api.http.tls.enable, "api server listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(calls_core::http::serve(
        listener,
        tls,
        api::router(state),
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::select! {
        _ = signals.recv() => {}
        res = &mut server => {
            return match res {
                Ok(Ok(())) => Err("api server stopped unexpectedly".into()),
                Ok(Err(e)) => Err(format!("api server failed: {e}")),
                Err(e) => Err(format!("api server task failed: {e}")),
            };
        }
    }
    tracing::info!(
        "calls-offloader: shutting down (running jobs keep running and are picked up at the next start)"
    );
    let _ = stop_tx.send(());
    jobs.shutdown().await;
    // In-flight requests get up to 10 s to finish.
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("api server failed: {e}")),
        Err(e) => Err(format!("api server task failed: {e}")),
    }
}
