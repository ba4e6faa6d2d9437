//! The Docker Engine backend (spec §3): one container per job, labelled
//! `app=mattermost-calls-offloader`, with a named volume `<prefix>-<id26>` at `/data`, the job's
//! `input_data` as environment, and the Go service's permissive seccomp profile inline.
//!
//! What differs from Go, on purpose: a container that fails to start is removed (with its
//! volume) instead of leaking; a watcher whose stop or inspect fails still reports a failure
//! instead of never calling back; a wait interrupted by a daemon restart looks again instead of
//! giving up; pull errors are reported by the pull, not by the later create.
//!
//! The pieces without I/O (container spec, seccomp profile, image references, timestamps) are
//! plain functions with unit tests; the daemon calls are thin around them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
};
use bollard::query_parameters::{
    CreateImageOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::time::{Instant, timeout};

use super::{APP_LABEL_KEY, APP_LABEL_VALUE, BackendError, JobState, Outcome, RuntimeEnv, Started};
use crate::job::{JobConfig, env_pairs, job_prefix};

/// Every short daemon call (Go's `dockerRequestTimeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pulling a missing runner image.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// SIGTERM → SIGKILL grace when a job reaches its max duration (the recorder uploads meanwhile).
pub const STOP_GRACE: Duration = Duration::from_secs(300);
/// The Go service's retention sweep period.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Where each job's volume is mounted.
pub const VOLUME_PATH: &str = "/data";
/// bollard applies one timeout to every request; waits and stops last hours, so the client's is
/// effectively unlimited and each call above carries its own.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 86400);

/// The allow-list of the Go service's seccomp profile (326 names, in its file order). Kept as data
/// so that adding a syscall newer runner images need is a one-line change.
const SECCOMP_ALLOW: &str = include_str!("seccomp_allow.txt");

/// Settings taken from the configuration.
#[derive(Clone, Debug)]
pub struct DockerSettings {
    /// `jobs.docker.output_logs`.
    pub output_logs: bool,
    /// `jobs.failed_jobs_retention_time`; zero disables the sweep.
    pub failed_jobs_retention: Duration,
    /// The sweep period: one minute, shortened only by the test suite.
    pub sweep_interval: Duration,
}

pub struct DockerBackend {
    docker: Docker,
    settings: DockerSettings,
    env: RuntimeEnv,
    sweep: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The names of the seccomp allow-list, in order.
pub fn seccomp_syscalls() -> impl Iterator<Item = &'static str> {
    SECCOMP_ALLOW.split_whitespace()
}

/// `seccomp=<compact JSON>` as Go passes it: default errno, each name allowed with `args: null`,
/// no `architectures`.
pub fn seccomp_security_opt() -> String {
    // Written by hand because the fields must come in Go's order, not sorted.
    let mut out = String::from(r#"seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":["#);
    for (i, name) in seccomp_syscalls().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"name":"#);
        out.push_str(&serde_json::Value::from(name).to_string());
        out.push_str(r#","action":"SCMP_ACT_ALLOW","args":null}"#);
    }
    out.push_str("]}");
    out
}

/// The volume of a job: `<prefix>-<26-char id>`, e.g. `calls-recorder-<id26>`.
pub fn volume_name(prefix: &str, id26: &str) -> String {
    format!("{prefix}-{id26}")
}

/// The network mode of job containers: `DOCKER_NETWORK` if set, else `host` in DEV_MODE on Linux,
/// else Docker's default (bridge).
pub fn network_mode(env: &RuntimeEnv) -> Option<String> {
    if let Some(n) = env.docker_network.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    (env.dev_mode && cfg!(target_os = "linux")).then(|| "host".to_owned())
}

/// The container create request of spec §3 step 7. Only what Go sets: no name, limits, restart
/// policy, auto-remove, privileges, capabilities or user.
pub fn container_spec(
    image: &str,
    env: Vec<(String, String)>,
    volume: &str,
    network: Option<String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        tty: Some(false),
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(HashMap::from([(
            APP_LABEL_KEY.to_owned(),
            APP_LABEL_VALUE.to_owned(),
        )])),
        host_config: Some(HostConfig {
            network_mode: network,
            mounts: Some(vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.to_owned()),
                target: Some(VOLUME_PATH.to_owned()),
                ..Default::default()
            }]),
            security_opt: Some(vec![seccomp_security_opt()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Splits an image reference into what the pull API takes: the name and the tag or digest
/// (`latest` when there is neither, as the Docker CLI does; an empty tag would pull every tag).
pub fn split_image_ref(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name.to_owned(), digest.to_owned());
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_owned(),
            image[last_slash + i + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

/// DEV_MODE image for `/jobs/init`: `mattermost/<name>:vX.Y.Z[-dev]` becomes `<name>:master`
/// (other names are kept as they are, where Go would pull `:master`).
pub fn dev_image(runner: &str) -> String {
    let Some(rest) = runner.strip_prefix("mattermost/") else {
        return runner.to_owned();
    };
    match rest.split_once(":v") {
        Some((name, _)) if !name.is_empty() => format!("{name}:master"),
        _ => runner.to_owned(),
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp as Docker writes them
/// (`2024-05-01T10:00:00.123456789Z`, or with a `+hh:mm` offset). `None` if malformed.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_secs = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let h: i64 = o[1..3].parse().ok()?;
            let m: i64 = o[4..6].parse().ok()?;
            let v = h * 3600 + m * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs * 1000 + millis)
}

/// Whether an exited container is older than the retention, given `FinishedAt` and now (ms).
pub fn retention_expired(finished_at: &str, now_ms: i64, retention: Duration) -> bool {
    match parse_rfc3339_ms(finished_at) {
        // Docker's zero time (`0001-01-01T00:00:00Z`) means "never finished": not ours to judge.
        Some(t) if t > 0 => now_ms - t > retention.as_millis() as i64,
        _ => false,
    }
}

fn outcome_of(exit_code: i64) -> Outcome {
    if exit_code == 0 {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn label_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{APP_LABEL_KEY}={APP_LABEL_VALUE}")],
    )])
}

/// Runs `fut` with a deadline, folding the timeout into the error text.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, String> {
    match timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {}s", limit.as_secs())),
    }
}

fn other(e: String) -> BackendError {
    BackendError::Other(e)
}

/// Where the client connects: `DOCKER_HOST` or the default socket, for error messages.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

impl DockerBackend {
    /// Connects with the standard Docker environment (`DOCKER_HOST`) and checks the daemon answers
    /// within 10 s, negotiating the API version down to the daemon's. Starts the retention sweep.
    pub async fn connect(settings: DockerSettings, env: RuntimeEnv) -> Result<Self, String> {
        let host = docker_host();
        let hint = format!(
            "is dockerd running, and may this user use its socket (root, or member of the docker group)? DOCKER_HOST={host}"
        );
        let docker = Docker::connect_with_defaults()
            .map_err(|e| format!("failed to create docker client: {e} ({hint})"))?
            .with_timeout(CLIENT_TIMEOUT);
        let docker = match timeout(REQUEST_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(format!("failed to get docker server version: {e} ({hint})")),
            Err(_) => {
                return Err(format!(
                    "failed to get docker server version: no answer within {}s ({hint})",
                    REQUEST_TIMEOUT.as_secs()
                ));
            }
        };
        let version = within(
            REQUEST_TIMEOUT,
            "failed to get docker server version",
            docker.version(),
        )
        .await
        .map_err(|e| format!("{e} ({hint})"))?;
        tracing::info!(
            version = version.version.as_deref().unwrap_or(""),
            api_version = version.api_version.as_deref().unwrap_or(""),
            docker_host = %host,
            "connected to docker API"
        );
        let backend = Self {
            docker,
            settings,
            env,
            sweep: Mutex::new(None),
        };
        backend.start_sweep();
        Ok(backend)
    }

    fn start_sweep(&self) {
        let retention = self.settings.failed_jobs_retention;
        if retention.is_zero() {
            tracing::info!("skipping retention job: failed jobs are kept until deleted");
            return;
        }
        tracing::info!(
            retention_secs = retention.as_secs(),
            interval_ms = self.settings.sweep_interval.as_millis() as u64,
            "retention job is starting"
        );
        let docker = self.docker.clone();
        let interval = self.settings.sweep_interval.max(Duration::from_millis(100));
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sweep_once(&docker, retention).await;
            }
        });
        *self.sweep.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    pub async fn running_count(&self) -> Result<usize, BackendError> {
        let opts = ListContainersOptions {
            all: false,
            filters: Some(label_filter()),
            ..Default::default()
        };
        within(
            REQUEST_TIMEOUT,
            "failed to list containers",
            self.docker.list_containers(Some(opts)),
        )
        .await
        .map(|l| l.len())
        .map_err(other)
    }

    pub async fn init(&self, runners: &[String]) -> Result<(), BackendError> {
        let images: Vec<String> = runners
            .iter()
            .map(|r| {
                if self.env.dev_mode {
                    dev_image(r)
                } else {
                    r.clone()
                }
            })
            .collect();
        let results =
            futures_util::future::join_all(images.iter().map(|i| self.ensure_image(i))).await;
        // Go reports the first error to arrive; all pulls run to completion either way.
        results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), |e| Err(other(e)))
    }

    /// Makes `image` available locally: nothing if present, else a pull of at most 2 minutes.
    async fn ensure_image(&self, image: &str) -> Result<(), String> {
        if let Ok(Ok(_)) = timeout(REQUEST_TIMEOUT, self.docker.inspect_image(image)).await {
            return Ok(());
        }
        tracing::info!(image, "image is missing, pulling it from its registry");
        let (name, tag) = split_image_ref(image);
        let opts = CreateImageOptions {
            from_image: Some(name),
            tag: Some(tag),
            ..Default::default()
        };
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                            return Err(msg);
                        }
                        tracing::debug!(
                            image,
                            status = info.status.as_deref().unwrap_or(""),
                            "pulling"
                        );
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        };
        match timeout(PULL_TIMEOUT, pull).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("failed to pull docker image {image}: {e}")),
            Err(_) => {
                return Err(format!(
                    "failed to pull docker image {image}: timed out after {}s",
                    PULL_TIMEOUT.as_secs()
                ));
            }
        }
        within(
            REQUEST_TIMEOUT,
            &format!("docker image {image} is still missing after the pull"),
            self.docker.inspect_image(image),
        )
        .await
        .map(|_| tracing::info!(image, "image pulled"))
    }

    pub async fn start(&self, cfg: &JobConfig) -> Result<Started, BackendError> {
        let prefix = job_prefix(&cfg.job_type)
            .ok_or_else(|| other(format!("invalid job type {:?}", cfg.job_type)))?;
        // DEV_MODE runs the locally built `<prefix>:master`, as Go does.
        let image = if self.env.dev_mode {
            format!("{prefix}:master")
        } else {
            cfg.runner.clone()
        };
        self.ensure_image(&image)
            .await
            .map_err(|e| other(format!("failed to update job runner: {e}")))?;

        let volume = volume_name(prefix, &calls_core::ids::new_id());
        let spec = container_spec(
            &image,
            env_pairs(cfg.input_data.as_ref(), self.env.dev_mode),
            &volume,
            network_mode(&self.env),
        );
        let created = match within(
            REQUEST_TIMEOUT,
            "failed to create container",
            self.docker.create_container(None, spec),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                // The daemon may have created the volume before failing.
                self.remove_volume_quietly(&volume).await;
                return Err(other(e));
            }
        };
        for w in &created.warnings {
            tracing::warn!(container = %created.id, warning = %w, "docker warning on create");
        }
        if let Err(e) = within(
            REQUEST_TIMEOUT,
            "failed to start container",
            self.docker.start_container(&created.id, None),
        )
        .await
        {
            // Go leaks the created container here; remove it and its volume.
            let force = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            if let Err(re) = within(
                REQUEST_TIMEOUT,
                "failed to remove container",
                self.docker.remove_container(&created.id, Some(force)),
            )
            .await
            {
                tracing::error!(container = %created.id, error = %re, "could not remove a container that failed to start");
            }
            self.remove_volume_quietly(&volume).await;
            return Err(other(e));
        }
        let id: String = created.id.chars().take(12).collect();
        tracing::info!(id = %id, image = %image, volume = %volume, "job container started");
        Ok(Started { id, runner: image })
    }

    async fn remove_volume_quietly(&self, volume: &str) {
        match timeout(
            REQUEST_TIMEOUT,
            self.docker
                .remove_volume(volume, None::<RemoveVolumeOptions>),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) if is_not_found(&e) => {}
            Ok(Err(e)) => tracing::warn!(volume, error = %e, "failed to remove volume"),
            Err(_) => tracing::warn!(volume, "timed out removing volume"),
        }
    }

    /// Waits for the container to stop; once `remaining` is over, stops it (SIGTERM, SIGKILL after
    /// [`STOP_GRACE`]) and reports by its exit code.
    pub async fn wait(&self, id: &str, remaining: Duration) -> Outcome {
        let deadline = Instant::now() + remaining;
        let follower = self
            .settings
            .output_logs
            .then(|| tokio::spawn(follow_logs(self.docker.clone(), id.to_owned())));
        let outcome = self.wait_until(id, deadline).await;
        if let Some(f) = follower {
            f.abort();
        }
        outcome
    }

    async fn wait_until(&self, id: &str, deadline: Instant) -> Outcome {
        loop {
            let opts = WaitContainerOptions {
                condition: "not-running".into(),
            };
            let mut stream = self.docker.wait_container(id, Some(opts));
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => break,
                Ok(Some(Ok(r))) => return outcome_of(r.status_code),
                Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => {
                    return outcome_of(code);
                }
                Ok(Some(Err(e))) if is_not_found(&e) => {
                    tracing::warn!(id, "job container disappeared while being watched");
                    return Outcome::Gone;
                }
                Ok(other) => {
                    // The daemon restarted or the connection broke: look again.
                    let err = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "wait ended without a status".into(),
                    };
                    tracing::warn!(id, error = %err, "waiting for job container failed, checking its state");
                    match self.state(id).await {
                        Ok(JobState::Ended(o)) => return o,
                        Err(BackendError::NotFound) => return Outcome::Gone,
                        Ok(JobState::Running) | Err(BackendError::Other(_)) => {
                            let pause = Instant::now() + Duration::from_secs(2);
                            tokio::time::sleep_until(pause.min(deadline)).await;
                        }
                    }
                }
            }
        }
        tracing::info!(
            id,
            grace_secs = STOP_GRACE.as_secs(),
            "job reached its max duration, stopping it"
        );
        let opts = StopContainerOptions {
            t: Some(STOP_GRACE.as_secs() as i32),
            signal: None,
        };
        if let Err(e) = within(
            STOP_GRACE + Duration::from_secs(30),
            "failed to stop container",
            self.docker.stop_container(id, Some(opts)),
        )
        .await
        {
            tracing::error!(id, error = %e, "could not stop job container; reporting it as failed");
            return Outcome::Failed;
        }
        match self.state(id).await {
            Ok(JobState::Ended(o)) => o,
            Ok(JobState::Running) => Outcome::Failed,
            Err(BackendError::NotFound) => Outcome::Gone,
            Err(e) => {
                tracing::error!(id, error = %e, "could not inspect stopped job container; reporting it as failed");
                Outcome::Failed
            }
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, BackendError> {
        match timeout(
            REQUEST_TIMEOUT,
            self.docker
                .inspect_container(id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) if is_not_found(&e) => Err(BackendError::NotFound),
            Ok(Err(e)) => Err(other(format!("failed to inspect container: {e}"))),
            Err(_) => Err(other("failed to inspect container: timed out".into())),
        }
    }

    /// Removes the container, then its volume. A running container is refused by Docker.
    pub async fn delete(&self, id: &str) -> Result<(), BackendError> {
        let c = self.inspect(id).await?;
        within(
            REQUEST_TIMEOUT,
            "failed to remove container",
            self.docker
                .remove_container(id, None::<RemoveContainerOptions>),
        )
        .await
        .map_err(other)?;
        let volume = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find_map(|m| m.name)
            .ok_or_else(|| other("container should have one volume".into()))?;
        within(
            REQUEST_TIMEOUT,
            "failed to remove volume",
            self.docker
                .remove_volume(&volume, None::<RemoveVolumeOptions>),
        )
        .await
        .map_err(other)?;
        tracing::info!(id, volume = %volume, "job container and volume removed");
        Ok(())
    }

    /// The container's stderr of the last hour (stdout is dropped, as in Go).
    pub async fn logs(&self, id: &str) -> Result<Vec<u8>, BackendError> {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            since: (now_ms() / 1000 - 3600) as i32,
            follow: false,
            ..Default::default()
        };
        let collect = async {
            let mut out = Vec::new();
            let mut stream = self.docker.logs(id, Some(opts));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        out.extend_from_slice(&message)
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        };
        within(REQUEST_TIMEOUT, "failed to get container logs", collect)
            .await
            .map_err(other)
    }

    pub async fn state(&self, id: &str) -> Result<JobState, BackendError> {
        use bollard::models::ContainerStateStatusEnum as S;
        let c = self.inspect(id).await?;
        let ours = c
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.as_ref())
            .and_then(|l| l.get(APP_LABEL_KEY))
            .is_some_and(|v| v == APP_LABEL_VALUE);
        if !ours {
            return Err(BackendError::NotFound);
        }
        let state = c.state.unwrap_or_default();
        Ok(match state.status {
            Some(S::RUNNING | S::PAUSED | S::RESTARTING | S::STOPPING) => JobState::Running,
            _ if state.running == Some(true) => JobState::Running,
            // Created but never started: it will not run by itself.
            Some(S::CREATED) => JobState::Ended(Outcome::Failed),
            _ => JobState::Ended(outcome_of(state.exit_code.unwrap_or(-1))),
        })
    }

    pub async fn shutdown(&self) {
        if let Some(h) = self.sweep.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}

/// Copies a job's output to the offloader's stdout/stderr (`jobs.docker.output_logs`).
async fn follow_logs(docker: Docker, id: String) {
    use tokio::io::AsyncWriteExt;
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut stream = docker.logs(&id, Some(opts));
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    while let Some(Ok(item)) = stream.next().await {
        use bollard::container::LogOutput as L;
        let _ = match item {
            L::StdErr { message } => err.write_all(&message).await,
            L::StdOut { message } | L::Console { message } => out.write_all(&message).await,
            L::StdIn { .. } => Ok(()),
        };
    }
}

/// One pass of the retention sweep: exited, labelled containers whose `FinishedAt` is older than
/// the retention are removed with their volume. Job records are the service's and stay.
async fn sweep_once(docker: &Docker, retention: Duration) {
    let mut filters = label_filter();
    filters.insert("status".into(), vec!["exited".into()]);
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = match within(
        REQUEST_TIMEOUT,
        "failed to list containers",
        docker.list_containers(Some(opts)),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "retention job");
            return;
        }
    };
    for c in list {
        let Some(id) = c.id else { continue };
        let short: String = id.chars().take(12).collect();
        let inspected = match within(
            REQUEST_TIMEOUT,
            "failed to inspect container",
            docker.inspect_container(&id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(id = %short, error = %e, "retention job");
                continue;
            }
        };
        let finished = inspected
            .state
            .as_ref()
            .and_then(|s| s.finished_at.clone())
            .unwrap_or_default();
        if !retention_expired(&finished, now_ms(), retention) {
            continue;
        }
        if let Err(e) = within(
            REQUEST_TIMEOUT,
            "failed to remove container",
            docker.remove_container(&id, None::<RemoveContainerOptions>),
        )
        .await
        {
            tracing::error!(id = %short, error = %e, "retention job");
            continue;
        }
        let volume = inspected
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find_map(|m| m.name);
        if let Some(v) = &volume
            && let Err(e) = within(
                REQUEST_TIMEOUT,
                "failed to remove volume",
                docker.remove_volume(v, None::<RemoveVolumeOptions>),
            )
            .await
        {
            tracing::error!(id = %short, error = %e, "retention job");
        }
        tracing::info!(id = %short, volume = volume.as_deref().unwrap_or(""), finished_at = %finished, "retention job: removed failed job past its retention");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_profile_is_the_go_allow_list_in_order() {
        let names: Vec<&str> = seccomp_syscalls().collect();
        assert_eq!(names.len(), 326);
        assert_eq!(names.first(), Some(&"accept"));
        assert_eq!(names.last(), Some(&"writev"));
        for n in [
            "statx",
            "openat2",
            "close_range",
            "clone3",
            "unshare",
            "setns",
            "chroot",
            "pidfd_open",
            "epoll_pwait2",
            "futex_waitv",
            "_llseek",
            "_newselect",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 326, "no duplicates");
        // Order is the Go file's, e.g. epoll_wait comes before epoll_pwait2.
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("epoll_wait") < pos("epoll_pwait2"));
        assert!(pos("pipe") < pos("pidfd_getfd") && pos("pidfd_send_signal") < pos("pipe2"));

        let opt = seccomp_security_opt();
        let json = opt.strip_prefix("seccomp=").unwrap();
        assert!(!json.contains(' ') && !json.contains('\n'), "compact");
        assert!(json.starts_with(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"accept","action":"SCMP_ACT_ALLOW","args":null},"#
        ));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["syscalls"].as_array().unwrap().len(), 326);
        assert!(v.get("architectures").is_none());
    }

    #[test]
    fn container_spec_sets_what_go_sets_and_nothing_else() {
        let spec = container_spec(
            "mattermost/calls-recorder:v0.8.13",
            vec![
                ("SITE_URL".into(), "http://mm".into()),
                ("WIDTH".into(), "1280".into()),
            ],
            "calls-recorder-abc",
            Some("none".into()),
        );
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["Image"], "mattermost/calls-recorder:v0.8.13");
        assert_eq!(v["Tty"], false);
        assert_eq!(
            v["Env"],
            serde_json::json!(["SITE_URL=http://mm", "WIDTH=1280"])
        );
        assert_eq!(
            v["Labels"],
            serde_json::json!({"app": "mattermost-calls-offloader"})
        );
        let hc = &v["HostConfig"];
        assert_eq!(hc["NetworkMode"], "none");
        assert_eq!(
            hc["Mounts"],
            serde_json::json!([{"Target": "/data", "Source": "calls-recorder-abc", "Type": "volume"}])
        );
        assert_eq!(hc["SecurityOpt"].as_array().unwrap().len(), 1);
        for absent in [
            "Privileged",
            "Memory",
            "NanoCpus",
            "RestartPolicy",
            "AutoRemove",
            "CapAdd",
            "Binds",
        ] {
            assert!(hc.get(absent).is_none(), "{absent}");
        }
        for absent in ["User", "Volumes", "Hostname"] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn network_mode_precedence() {
        let mut env = RuntimeEnv::default();
        assert_eq!(network_mode(&env), None, "Docker's default bridge");
        env.dev_mode = true;
        assert_eq!(network_mode(&env).as_deref(), Some("host"));
        env.docker_network = Some("mm-net".into());
        assert_eq!(network_mode(&env).as_deref(), Some("mm-net"));
        env.docker_network = Some(String::new());
        assert_eq!(
            network_mode(&env).as_deref(),
            Some("host"),
            "empty means unset"
        );
    }

    #[test]
    fn image_references() {
        assert_eq!(
            split_image_ref("mattermost/calls-recorder:v0.8.13"),
            ("mattermost/calls-recorder".into(), "v0.8.13".into())
        );
        assert_eq!(
            split_image_ref("registry.local:5000/mm/calls-recorder:v1.0.0"),
            (
                "registry.local:5000/mm/calls-recorder".into(),
                "v1.0.0".into()
            )
        );
        assert_eq!(
            split_image_ref("registry.local:5000/busybox"),
            ("registry.local:5000/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_image_ref("busybox@sha256:abcd"),
            ("busybox".into(), "sha256:abcd".into())
        );
        assert_eq!(
            dev_image("mattermost/calls-recorder:v0.8.13"),
            "calls-recorder:master"
        );
        assert_eq!(
            dev_image("mattermost/calls-transcriber:v0.1.0-dev2"),
            "calls-transcriber:master"
        );
        assert_eq!(
            dev_image("other/calls-recorder:v0.8.13"),
            "other/calls-recorder:v0.8.13"
        );
        assert_eq!(volume_name("calls-recorder", "x"), "calls-recorder-x");
    }

    #[test]
    fn rfc3339_and_retention() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:00:01.5Z"),
            Some(1709208001500)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:00:01.123456789Z"),
            Some(1709208001123)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T14:00:01+02:00"),
            Some(1709208001000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T11:30:01-00:30"),
            Some(1709208001000)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:00:01",
            "2024-02-29T12:00:01.Z",
            "x024-02-29T12:00:01Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
        let finished = "2024-02-29T12:00:00Z";
        let t = parse_rfc3339_ms(finished).unwrap();
        let minute = Duration::from_secs(60);
        assert!(
            !retention_expired(finished, t + 60_000, minute),
            "not older than"
        );
        assert!(retention_expired(finished, t + 60_001, minute));
        assert!(
            !retention_expired("0001-01-01T00:00:00Z", t, minute),
            "zero time"
        );
        assert!(!retention_expired("garbage", t, minute));
    }
}
