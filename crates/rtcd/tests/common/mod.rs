//! Test harness: runs the built `rtcd` binary on an ephemeral loopback port, the way an admin
//! would, and offers HTTP and WebSocket clients that speak to it like the Calls plugin.
#![allow(dead_code)]

use base64::Engine;
use calls_proto::ClientMessage;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

pub const KEY: &str = "Ey4-H_BJA00_TVByPi8DozE12ekN3S7L";
pub const ADMIN_SECRET: &str = "admin_secret_key";

pub fn basic(id: &str, key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"))
    )
}

/// The Python with the third-party test clients (`scripts/test.sh` installs them into `.venv`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLS_TEST_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs tests/interop/requirements.txt",
        p.display()
    );
    p
}

/// A network namespace of the test's own, with only `lo` up, deleted (by name) on drop. WebRTC
/// peers gather candidates on every interface; inside it they can only use loopback.
pub struct NetNs(pub String);

impl NetNs {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "calls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        assert!(
            ok(Command::new("ip").args(["netns", "add", &name])),
            "ip netns add {name} failed (needs root and iproute2)"
        );
        assert!(ok(Command::new("ip").args([
            "netns", "exec", &name, "ip", "link", "set", "lo", "up"
        ])));
        NetNs(name)
    }

    /// Adds a veth pair with both ends inside the namespace: `10.203.0.1/24` and `10.203.0.2/24`.
    /// Some stacks (aioice, Janus) refuse loopback-only ICE; these addresses exist only here.
    pub fn with_veth(self) -> Self {
        let ns = self.0.clone();
        let run = |args: &[&str]| {
            let st = Command::new("ip")
                .args(["netns", "exec", &ns, "ip"])
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?} failed in {ns}");
        };
        run(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
        run(&["addr", "add", "10.203.0.1/24", "dev", "vt0"]);
        run(&["addr", "add", "10.203.0.2/24", "dev", "vt1"]);
        run(&["link", "set", "vt0", "up"]);
        run(&["link", "set", "vt1", "up"]);
        self
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A TCP port in rtcd's allowed range that is free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    loop {
        let p = free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A UDP port in rtcd's allowed range (80..49151) that is free on 127.0.0.1 right now.
pub fn free_udp_port() -> u16 {
    use std::net::UdpSocket;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seed = u64::from(std::process::id()) ^ nanos;
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + (seed >> 33) as u16 % 29000;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port found");
}

type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

pub struct Rtcd {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    lines: Lines,
}

/// Starts rtcd with `env` (on top of settings that keep it on loopback and quiet on disk) and
/// waits until it logs the address it listens on.
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Rtcd {
    start_with(dir, env, &[])
}

/// [`start`] with command-line arguments.
pub fn start_with(dir: &Path, env: &[(&str, &str)], args: &[String]) -> Rtcd {
    start_in(dir, env, args, None)
}

/// [`start_with`], optionally inside a network namespace (`ip netns exec NS rtcd …`).
pub fn start_in(dir: &Path, env: &[(&str, &str)], args: &[String], netns: Option<&str>) -> Rtcd {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rtcd")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_rtcd")),
    };
    cmd.current_dir(dir)
        .args(args)
        .env_clear()
        .env("RTCD_API_HTTP_LISTENADDRESS", "127.0.0.1:0")
        // Media on loopback only, on a port of its own (tests run in parallel).
        .env("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1")
        .env("RTCD_RTC_ICEPORTUDP", free_udp_port().to_string())
        .env("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1")
        .env("RTCD_RTC_ICEPORTTCP", free_tcp_port().to_string())
        .env("RTCD_STORE_DATASOURCE", dir.join("db"))
        .env("RTCD_LOGGER_ENABLEFILE", "false")
        .env("RTCD_LOGGER_CONSOLEJSON", "true")
        .env("RTCD_LOGGER_CONSOLELEVEL", "DEBUG")
        .env("RTCD_API_SECURITY_ENABLEADMIN", "true")
        .env("RTCD_API_SECURITY_ADMINSECRETKEY", ADMIN_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Ok(filter) = std::env::var("RUST_LOG") {
        cmd.env("RUST_LOG", filter); // debugging aid: RUST_LOG=str0m=debug cargo test …
    }
    let mut child = cmd.spawn().expect("spawn rtcd");
    let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("RTCD_TEST_ECHO").is_some() {
                    eprintln!("rtcd| {line}");
                }
                let (m, cv) = &*lines;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
    }
    let mut r = Rtcd {
        child,
        addr: String::new(),
        dir: dir.to_owned(),
        lines,
    };
    let line = wait_lines(&r.lines, 0, "api server listening", Duration::from_secs(30));
    let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
    r.addr = v["fields"]["address"]
        .as_str()
        .expect("address field")
        .to_owned();
    r
}

impl Rtcd {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_log_from(0, needle, timeout).await
    }

    /// Number of lines logged so far, to wait only for later lines.
    pub fn log_mark(&self) -> usize {
        self.lines.0.lock().unwrap().len()
    }

    /// Waits for a log line containing `needle` among lines logged after `from` (see
    /// [`Rtcd::log_mark`]), without blocking the test's async runtime.
    pub async fn wait_log_from(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let (lines, needle) = (self.lines.clone(), needle.to_owned());
        match tokio::task::spawn_blocking(move || wait_lines(&lines, from, &needle, timeout)).await
        {
            Ok(l) => l,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, then waits for exit; returns the exit status code.
    pub fn stop(self) -> Option<i32> {
        self.terminate();
        self.wait_exit()
    }

    /// Waits (up to 15 s) for the process to exit on its own; returns the exit status code.
    pub fn wait_exit(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            assert!(Instant::now() < deadline, "rtcd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (as `kill -9`), then reaps.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The value of a metric series from `/metrics` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

fn wait_lines(lines: &Lines, from: usize, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let (m, cv) = &**lines;
    let mut g = m.lock().unwrap();
    loop {
        if let Some(l) = g.iter().skip(from).find(|l| l.contains(needle)) {
            return l.clone();
        }
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                g.join("\n")
            );
        }
        g = cv.wait_timeout(g, deadline - now).unwrap().0;
    }
}

impl Drop for Rtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `/ws` with an Authorization header, as the plugin does.
pub async fn ws_connect(r: &Rtcd, auth: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/ws", r.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20));
    tokio_tungstenite::connect_async_with_config(req, Some(cfg), false)
        .await
        .map(|(ws, _)| ws)
}

/// Next binary frame decoded (skipping control frames), or panics after `timeout`.
pub async fn recv(ws: &mut Ws, timeout: Duration) -> ClientMessage {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("ws error");
        match msg {
            Message::Binary(b) => return ClientMessage::decode(&b).expect("decodable frame"),
            Message::Close(c) => panic!("connection closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Asserts no binary frame arrives within `window` (control frames are consumed).
pub async fn expect_silence(ws: &mut Ws, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Binary(b)))) => {
                panic!("unexpected frame: {:?}", ClientMessage::decode(&b))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, m: &ClientMessage) {
    ws.send(Message::Binary(m.encode().into())).await.unwrap();
}

/// Waits for `close` for `sid`, skipping trickled candidates and other signaling on the way.
pub async fn recv_close(ws: &mut Ws, sid: &str) {
    loop {
        match recv(ws, Duration::from_secs(5)).await {
            ClientMessage::Close { session_id } if session_id == sid => return,
            ClientMessage::Rtc(_) => continue,
            other => panic!("expected close for {sid}, got {other:?}"),
        }
    }
}

pub async fn hello(ws: &mut Ws) -> (String, String) {
    match recv(ws, Duration::from_secs(5)).await {
        ClientMessage::Hello { client_id, conn_id } => (client_id, conn_id),
        other => panic!("expected hello, got {other:?}"),
    }
}

/// Registers `id` with the admin secret.
pub async fn register(r: &Rtcd, id: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(r.url("/register"))
        .header("Authorization", basic("", ADMIN_SECRET))
        .body(format!(r#"{{"clientID":"{id}","authKey":"{key}"}}"#))
        .send()
        .await
        .unwrap()
}
