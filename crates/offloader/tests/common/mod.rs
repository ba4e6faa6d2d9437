//! Test harness: runs the built `calls-offloader` binary on an ephemeral loopback port against the
//! private Docker Engine that `scripts/test.sh` starts (`DOCKER_HOST`), and talks to it the way
//! the Calls plugin does.
#![allow(dead_code)]

use bollard::Docker;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_SECRET: &str = "admin_secret_key";
/// The plugin's client: a 26-char diagnostic ID and a 32-char key.
pub const CLIENT_ID: &str = "q3hgcw7mxtgu8rzofz9pijzz6h";
pub const KEY: &str = "Ey4-H_BJA00_TVByPi8DozE12ekN3S7L";
pub const RECORDER: &str = "mattermost/calls-recorder:v0.8.13";
pub const TRANSCRIBER: &str = "mattermost/calls-transcriber:v0.7.2";
/// A valid runner name whose entrypoint does not exist: container start fails.
pub const BROKEN_RECORDER: &str = "mattermost/calls-recorder:v0.6.0-dev1";
pub const LABEL: &str = "app=mattermost-calls-offloader";

pub fn plugin_auth() -> String {
    basic(CLIENT_ID, KEY)
}

/// The test Docker Engine. Only the private one `scripts/test.sh` starts is used.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => panic!(
            "DOCKER_HOST is not set: run scripts/test.sh, which starts a private dockerd and builds the \
             test runner images (or: export DOCKER_HOST=$(scripts/test-dockerd.sh start /tmp/calls-dockerd))"
        ),
    }
}

pub fn docker() -> Docker {
    docker_host();
    Docker::connect_with_defaults().expect("docker client")
}

#[allow(unused_imports)] // each test binary uses a different part
pub use calls_testkit::{basic, python};

/// The offloader under test: a [`calls_testkit::Daemon`] plus the plugin's HTTP calls.
pub struct Offloader(pub calls_testkit::Daemon);

impl std::ops::Deref for Offloader {
    type Target = calls_testkit::Daemon;
    fn deref(&self) -> &calls_testkit::Daemon {
        &self.0
    }
}

/// The environment every test offloader gets: loopback, a store in `dir`, JSON console logs,
/// admin and self-registration on, job containers without network.
fn base_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calls-offloader"));
    cmd.current_dir(dir)
        .env_clear()
        .env("DOCKER_HOST", docker_host())
        .env("API_HTTP_LISTENADDRESS", "127.0.0.1:0")
        .env("STORE_DATASOURCE", dir.join("db"))
        .env("LOGGER_ENABLEFILE", "false")
        .env("LOGGER_CONSOLEJSON", "true")
        .env("LOGGER_CONSOLELEVEL", "DEBUG")
        .env("API_SECURITY_ENABLEADMIN", "true")
        .env("API_SECURITY_ADMINSECRETKEY", ADMIN_SECRET)
        .env("API_SECURITY_ALLOWSELFREGISTRATION", "true")
        .env("DOCKER_NETWORK", "none");
    if let Ok(filter) = std::env::var("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    cmd
}

/// Starts the offloader with `env` on top of [`base_command`]'s, and waits until it listens.
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Offloader {
    start_with_args(dir, env, &[])
}

/// [`start`] with command-line arguments.
pub fn start_with_args(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Offloader {
    let mut cmd = base_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Offloader(calls_testkit::Daemon::start(
        "calls-offloader",
        cmd,
        dir,
        "OFFLOADER_TEST_ECHO",
    ))
}

/// Runs the binary to completion (start-up failures), with `env` on top of the base environment.
pub fn run_to_exit(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = base_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("calls-offloader did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Offloader {
    /// SIGTERM (by PID), then waits for the exit; returns the exit code.
    pub fn stop(self) -> Option<i32> {
        self.0.stop()
    }

    pub async fn post(
        &self,
        path: &str,
        auth: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut req = reqwest::Client::new().post(self.url(path)).body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, auth: Option<&str>) -> Resp {
        let mut req = reqwest::Client::new().request(method, self.url(path));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    /// `POST /jobs` as the plugin sends it (Go's encoder adds a newline).
    pub async fn create(&self, body: &serde_json::Value) -> Resp {
        self.post("/jobs", Some(&plugin_auth()), format!("{body}\n"))
            .await
    }

    pub async fn get_job(&self, id: &str) -> Resp {
        self.request(
            reqwest::Method::GET,
            &format!("/jobs/{id}"),
            Some(&plugin_auth()),
        )
        .await
    }

    /// Polls `GET /jobs/{id}` until `pred` holds (bounded).
    pub async fn wait_job(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Resp) -> bool,
    ) -> Resp {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get_job(id).await;
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: condition not met within {timeout:?}; last answer {} {}\nlog:\n{}",
                r.status,
                r.body,
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.text().await.expect("body");
        Self {
            status,
            content_type,
            body,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts Go's error envelope: status, `{"code":"<status>","error":"<msg>"}\n`.
    pub fn assert_error(&self, status: u16, msg: &str) {
        let want = format!(
            "{}\n",
            serde_json::json!({"code": status.to_string(), "error": msg})
        );
        assert_eq!((self.status, self.body.as_str()), (status, want.as_str()));
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
    }
}

/// A job request as the plugin builds it.
pub fn job_request(
    job_type: &str,
    runner: &str,
    max_duration_sec: i64,
    input: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "type": job_type,
        "max_duration_sec": max_duration_sec,
        "runner": runner,
        "input_data": input,
    })
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The container with this (short) ID, if it exists.
pub async fn container(d: &Docker, id: &str) -> Option<bollard::models::ContainerInspectResponse> {
    d.inspect_container(
        id,
        None::<bollard::query_parameters::InspectContainerOptions>,
    )
    .await
    .ok()
}

pub async fn volume_exists(d: &Docker, name: &str) -> bool {
    d.inspect_volume(name).await.is_ok()
}

/// The named volume mounted at /data.
pub fn data_volume(c: &bollard::models::ContainerInspectResponse) -> String {
    c.mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.destination.as_deref() == Some("/data")))
        .and_then(|m| m.name.clone())
        .expect("a /data volume")
}

/// IDs of labelled containers (all states).
pub async fn labelled_containers(d: &Docker) -> Vec<String> {
    let opts = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![LABEL.to_string()],
        )])),
        ..Default::default()
    };
    d.list_containers(Some(opts))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Waits until the container and its volume are gone.
pub async fn assert_removed(d: &Docker, id: &str, volume: &str, timeout: Duration) {
    eventually(
        timeout,
        &format!("container {id} and volume {volume} removed"),
        || async { container(d, id).await.is_none() && !volume_exists(d, volume).await },
    )
    .await;
}
