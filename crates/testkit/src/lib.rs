//! What the daemons' integration tests share: a built binary run as a child process whose log
//! lines are collected and can be waited for (no sleeps as synchronisation), stopped only by its
//! own PID; the Python interpreter with the third-party test clients; free ports; Basic auth; network namespaces of the test's own.

use base64::Engine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// A TCP port in the same range that is free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    loop {
        let p = free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A daemon under test: the child process, its API address and working directory, and every
/// line it logged (stdout and stderr).
pub struct Daemon {
    child: Child,
    name: &'static str,
    pub addr: String,
    pub dir: PathBuf,
    lines: Lines,
}

impl Daemon {
    /// Spawns `cmd` (stdout/stderr are captured), echoing its lines to the test's stderr when the
    /// environment variable `echo_var` is set, and waits until it logs `api server listening`
    /// with its address (JSON console logs).
    pub fn start(name: &'static str, mut cmd: Command, dir: &Path, echo_var: &'static str) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os(echo_var).is_some() {
                        eprintln!("{name}| {line}");
                    }
                    let (m, cv) = &*lines;
                    m.lock().unwrap().push(line);
                    cv.notify_all();
                }
            });
        }
        let mut d = Daemon {
            child,
            name,
            addr: String::new(),
            dir: dir.to_owned(),
            lines,
        };
        let line = wait_lines(&d.lines, 0, "api server listening", Duration::from_secs(30));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        d.addr = v["fields"]["address"]
            .as_str()
            .expect("address field")
            .to_owned();
        d
    }

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
    /// [`Daemon::log_mark`]), without blocking the test's async runtime.
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

    pub fn all_logs(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM (by PID) without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends SIGTERM (by PID), then waits until the kernel has delivered it
    /// ([`wait_sigterm_delivered`]).
    pub fn terminate_delivered(&self) {
        self.terminate();
        wait_sigterm_delivered(self.child.id());
    }

    /// SIGTERM, then waits for exit; returns the exit status code.
    pub fn stop(self) -> Option<i32> {
        self.terminate();
        self.wait_exit()
    }

    /// Waits (up to 20 s) for the process to exit on its own; returns the exit status code.
    pub fn wait_exit(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `limit`; a process still running then is killed (SIGKILL) and
    /// reported as an error instead of a panic, for callers that must keep their results.
    pub fn stop_within(mut self, limit: Duration) -> Result<Option<i32>, String> {
        self.terminate();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Ok(st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let name = self.name;
        self.kill9();
        Err(format!(
            "{name} did not exit within {limit:?} of SIGTERM: killed"
        ))
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
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what the daemon said last (CI keeps only the test's output).
        if std::thread::panicking() {
            let g = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
            let tail = &g[g.len().saturating_sub(60)..];
            eprintln!("--- last {} lines of {}'s log ---", tail.len(), self.name);
            for l in tail {
                eprintln!("{}| {l}", self.name);
            }
        }
    }
}

fn wait_lines(lines: &Lines, from: usize, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let (m, cv) = &**lines;
    let mut g = m.lock().unwrap();
    // Each line is looked at once. Rescanning from `from` at every new line was quadratic and
    // held the lock the reader threads need: with 60 KB session IDs in every line, a loaded CI
    // machine fell so far behind that the daemon blocked on its full stdout pipe.
    let mut next = from;
    loop {
        if let Some(l) = g.iter().skip(next).find(|l| l.contains(needle)) {
            return l.clone();
        }
        next = next.max(g.len());
        let now = Instant::now();
        if now >= deadline {
            let shown: Vec<&str> = g.iter().map(|l| l.get(..2000).unwrap_or(l)).collect();
            panic!(
                "no log line containing {needle:?} within {timeout:?}; log (lines cut at 2000 bytes):\n{}",
                shown.join("\n")
            );
        }
        g = cv.wait_timeout(g, deadline - now).unwrap().0;
    }
}

/// Waits (at most 10 s) until no SIGTERM is pending for process `pid` (`SigPnd`/`ShdPnd` in
/// `/proc/<pid>/status`), i.e. the kernel has delivered the last one sent. The kernel merges a
/// SIGTERM sent while another is still pending into it, so a test of what a second signal does
/// must not send it before the first was delivered.
pub fn wait_sigterm_delivered(pid: u32) {
    const SIGTERM_BIT: u64 = 1 << (15 - 1); // SIGTERM is 15 on every Linux architecture
    let status = format!("/proc/{pid}/status");
    let pending = || {
        let Ok(s) = std::fs::read_to_string(&status) else {
            return false; // gone: nothing is pending any more
        };
        s.lines()
            .filter_map(|l| {
                let v = l
                    .strip_prefix("SigPnd:")
                    .or_else(|| l.strip_prefix("ShdPnd:"))?;
                u64::from_str_radix(v.trim(), 16).ok()
            })
            .any(|mask| mask & SIGTERM_BIT != 0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM still pending after 10 s"
        );
        std::thread::yield_now();
    }
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
