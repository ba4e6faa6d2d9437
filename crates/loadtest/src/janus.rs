//! Janus VideoRoom signaling for the load tool: the same simulated participants that load our SFU
//! are run against Janus (`janus.plugin.videoroom`, Janus 1.x multistream) side by side.
//!
//! [`write_config`] writes a private Janus configuration with the benchmark's fairness settings
//! (ICE-lite, a fixed number of event loops, only VideoRoom and WebSockets loaded), and [`Janus`]
//! is one WebSocket connection that multiplexes the Janus sessions of many participants: replies
//! are matched by `transaction`, and every session is kept alive by one shared timer.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long one Janus request may take before it is reported as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive period for every session (Janus drops sessions idle for `session_timeout`, 60 s).
pub const KEEPALIVE_PERIOD: Duration = Duration::from_secs(25);
/// VideoRoom's error code for "room already exists" (`JANUS_VIDEOROOM_ERROR_ROOM_EXISTS`).
const ROOM_EXISTS: i64 = 427;
const VIDEOROOM: &str = "janus.plugin.videoroom";

/// Moves the calling thread into the network namespace `name` (as made by `ip netns add`).
///
/// Janus refuses loopback-only ICE, so the benchmark runs it and its clients inside a namespace
/// with a veth pair. Call this on a fresh thread before it creates sockets or a tokio runtime:
/// sockets belong to the namespace of the thread that creates them, and threads spawned later
/// from this one inherit it.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(Path::new("/var/run/netns").join(name))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: setns only reads the namespace file descriptor we hold open.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(file);
        Err(std::io::Error::other("network namespaces need Linux"))
    }
}

/// Lets the veth pair `ifaces` of namespace `netns` carry Janus's media to clients in the same
/// namespace.
///
/// Janus (libnice) sends from a socket tied to its `ice_enforce_list` interface, so its packets
/// to a client address on the other end of the pair cross the wire instead of loopback and
/// arrive with a source address local to the namespace; Linux drops such packets as martians
/// unless `accept_local` is on (with reverse-path filtering off). Without this, ICE never
/// completes: Janus answers the client's checks, the answers never arrive.
pub fn accept_local_veth(netns: &str, ifaces: &[&str]) -> Result<(), String> {
    let mut settings = vec!["net.ipv4.conf.all.rp_filter=0".to_owned()];
    for i in ifaces {
        settings.push(format!("net.ipv4.conf.{i}.rp_filter=0"));
        settings.push(format!("net.ipv4.conf.{i}.accept_local=1"));
    }
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-q", "-w"])
        .args(&settings)
        .status()
        .map_err(|e| format!("ip netns exec {netns} sysctl: {e}"))?;
    if !status.success() {
        return Err(format!(
            "ip netns exec {netns} sysctl {settings:?}: {status}"
        ));
    }
    Ok(())
}

/// Writes a complete private Janus configuration into `dir` and returns the path of its
/// `janus.jcfg` (run `janus -C <that> -F <dir>`).
///
/// Only the VideoRoom plugin and the WebSocket transport (plain `ws`, on 127.0.0.1:`ws_port`;
/// run Janus and its clients in one namespace) are loaded. ICE gathers on `iface` only, in
/// ICE-lite mode like our SFU, with media ports from `rtp_ports`; `event_loops` fixes Janus's
/// media threads (0 keeps Janus's default of one thread per handle).
pub fn write_config(
    dir: &Path,
    iface: &str,
    ws_port: u16,
    rtp_ports: (u16, u16),
    event_loops: u32,
) -> std::io::Result<PathBuf> {
    let lib = janus_lib_dir();
    // Everything installed but VideoRoom and WebSockets is disabled: a quick start, no other
    // ports open and no CPU spent on other plugins.
    let off = |sub: &str, keep: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(lib.join(sub))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".so") && n != keep)
            .collect();
        names.sort();
        names
    };
    std::fs::create_dir_all(dir)?;
    let opts = CoreOptions {
        configs: dir,
        lib: &lib,
        plugins_off: &off("plugins", "libjanus_videoroom.so"),
        transports_off: &off("transports", "libjanus_websockets.so"),
        loggers_off: &off("loggers", ""),
        iface,
        rtp_ports,
        event_loops,
    };
    let main = dir.join("janus.jcfg");
    std::fs::write(&main, render_core(&opts))?;
    std::fs::write(
        dir.join("janus.transport.websockets.jcfg"),
        render_websockets(ws_port),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), VIDEOROOM_JCFG)?;
    Ok(main)
}

/// Where the Janus plugin and transport folders are (Debian's multiarch path, else a source
/// install's).
fn janus_lib_dir() -> PathBuf {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/janus"),
        "/usr/lib/janus".into(),
        "/usr/local/lib/janus".into(),
        "/opt/janus/lib/janus".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.join("plugins").is_dir())
    .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/{arch}-linux-gnu/janus")))
}

struct CoreOptions<'a> {
    configs: &'a Path,
    lib: &'a Path,
    plugins_off: &'a [String],
    transports_off: &'a [String],
    loggers_off: &'a [String],
    iface: &'a str,
    rtp_ports: (u16, u16),
    event_loops: u32,
}

/// `janus.jcfg`. The settings are the benchmark's fairness choices (see bench/janus/README.md).
fn render_core(o: &CoreOptions) -> String {
    let lib = o.lib.display();
    let event_loops = match o.event_loops {
        0 => String::new(),
        n => format!("\tevent_loops = {n}\n"),
    };
    let list = |v: &[String]| v.join(",");
    format!(
        r#"# Generated by calls-loadtest (janus::write_config): only VideoRoom over WebSockets.
general: {{
	configs_folder = "{configs}"
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = 3
	debug_timestamps = true
	debug_colors = false
	session_timeout = 60
	reclaim_session_timeout = 0
	hide_dependencies = true
{event_loops}}}
certificates: {{
}}
media: {{
	rtp_port_range = "{lo}-{hi}"
	no_media_timer = 1
	nack_optimizations = false
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = true
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{iface}"
}}
plugins: {{
	disable = "{plugins}"
}}
transports: {{
	disable = "{transports}"
}}
loggers: {{
	disable = "{loggers}"
}}
events: {{
	broadcast = false
}}
"#,
        configs = o.configs.display(),
        lo = o.rtp_ports.0,
        hi = o.rtp_ports.1,
        iface = o.iface,
        plugins = list(o.plugins_off),
        transports = list(o.transports_off),
        loggers = list(o.loggers_off),
    )
}

/// `janus.transport.websockets.jcfg`: plain `ws` on loopback, compact JSON, no admin API.
fn render_websockets(port: u16) -> String {
    format!(
        r#"general: {{
	json = "compact"
	ws = true
	ws_port = {port}
	ws_ip = "127.0.0.1"
	wss = false
	ws_logging = "err,warn"
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
"#
    )
}

/// `janus.plugin.videoroom.jcfg`: no static rooms (the load tool creates its own), no events.
const VIDEOROOM_JCFG: &str = r#"general: {
	events = false
	string_ids = false
}
"#;

/// A publisher in a room: its own Janus session and handle, its feed id and Janus's answer.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub session: u64,
    pub handle: u64,
    /// The publisher (feed) id subscribers ask for.
    pub feed: u64,
    pub answer_sdp: String,
}

/// A subscription to one or more feeds: its own Janus session and handle, and Janus's offer.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: u64,
    pub handle: u64,
    pub offer_sdp: String,
    /// Which feed each m-line of the offer carries.
    pub streams: Vec<SubStream>,
}

/// One m-line of a subscription offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubStream {
    pub mid: String,
    /// `audio`, `video` or `data`.
    pub kind: String,
    /// The publisher it comes from (none for the shared data m-line).
    pub feed: Option<u64>,
}

/// A message from Janus that answered no request: `webrtcup`, `media`, `slowlink`, `hangup`,
/// `detached`, or a plugin event such as another publisher joining.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The `janus` field.
    pub kind: String,
    pub session: Option<u64>,
    /// The handle it is about.
    pub sender: Option<u64>,
    pub body: Value,
}

/// A client of the Janus WebSocket API that many tasks share: one connection, many sessions.
///
/// Clones share the connection; it closes (and Janus destroys its sessions) when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Janus {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<String>,
    next_tx: AtomicU64,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A request waiting for its reply; `ack_is_reply` for core requests Janus only acknowledges.
struct Pending {
    ack_is_reply: bool,
    reply: oneshot::Sender<Value>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashSet<u64>>,
    notices: Mutex<Option<mpsc::UnboundedSender<Notice>>>,
    /// Handles whose PeerConnection is up (`webrtcup`, until `hangup` or `detached`).
    up: Mutex<HashSet<u64>>,
    up_changed: tokio::sync::Notify,
    /// Why the connection ended, once it has.
    closed: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Delivers one message from Janus: to the request it answers, else as a notice.
    fn dispatch(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let kind = v["janus"].as_str().unwrap_or_default();
        if let Some(tx) = v["transaction"].as_str() {
            let mut pending = lock(&self.pending);
            if let Some(p) = pending.get(tx)
                && (kind != "ack" || p.ack_is_reply)
                && let Some(p) = pending.remove(tx)
            {
                let _ = p.reply.send(v);
                return;
            }
        }
        if kind == "ack" {
            return;
        }
        if let Some(handle) = v["sender"].as_u64() {
            match kind {
                "webrtcup" => {
                    lock(&self.up).insert(handle);
                    self.up_changed.notify_waiters();
                }
                "hangup" | "detached" => {
                    lock(&self.up).remove(&handle);
                }
                _ => {}
            }
        }
        if let Some(sink) = lock(&self.notices).as_ref() {
            let _ = sink.send(Notice {
                kind: kind.to_owned(),
                session: v["session_id"].as_u64(),
                sender: v["sender"].as_u64(),
                body: v,
            });
        }
    }

    /// Fails every waiting request: the connection is gone.
    fn close(&self, why: String) {
        lock(&self.closed).get_or_insert(why);
        lock(&self.pending).clear();
        self.up_changed.notify_waiters();
    }
}

/// The error a Janus reply carries, if any: a core `error` or a plugin `error_code`.
fn reply_error(what: &str, v: &Value) -> Option<String> {
    if v["janus"] == "error" {
        let e = &v["error"];
        return Some(format!(
            "janus {what}: {} {}",
            e["code"].as_i64().unwrap_or(0),
            e["reason"].as_str().unwrap_or("(no reason)")
        ));
    }
    let data = &v["plugindata"]["data"];
    if data.get("error_code").is_some() || data.get("error").is_some() {
        return Some(format!(
            "janus {what}: {} {}",
            data["error_code"].as_i64().unwrap_or(0),
            data["error"].as_str().unwrap_or("(no reason)")
        ));
    }
    None
}

/// A `message` request: `body` for the plugin on `handle`, with an optional `jsep`.
fn plugin_message(session: u64, handle: u64, body: Value, jsep: Option<Value>) -> Value {
    let mut msg =
        json!({"janus": "message", "session_id": session, "handle_id": handle, "body": body});
    if let Some(j) = jsep {
        msg["jsep"] = j;
    }
    msg
}

fn plugin_error_code(v: &Value) -> Option<i64> {
    v["plugindata"]["data"]["error_code"].as_i64()
}

/// The SDP of the reply's `jsep`, which must be of type `kind`.
fn jsep_sdp(what: &str, v: &Value, kind: &str) -> Result<String, String> {
    let jsep = &v["jsep"];
    match (jsep["type"].as_str(), jsep["sdp"].as_str()) {
        (Some(t), Some(sdp)) if t == kind => Ok(sdp.to_owned()),
        _ => Err(format!("janus {what}: no {kind} in reply: {v}")),
    }
}

/// `data.id` of a `success` reply to `create`/`attach`.
fn data_id(what: &str, v: &Value) -> Result<u64, String> {
    v["data"]["id"]
        .as_u64()
        .ok_or_else(|| format!("janus {what}: no id in reply: {v}"))
}

/// The m-lines of a subscriber's `attached` event.
fn sub_streams(data: &Value) -> Vec<SubStream> {
    data["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some(SubStream {
                        mid: s["mid"].as_str()?.to_owned(),
                        kind: s["type"].as_str().unwrap_or_default().to_owned(),
                        feed: s["feed_id"].as_u64(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Janus {
    /// Connects to a Janus WebSocket endpoint (`ws://127.0.0.1:8188`), with the
    /// `janus-protocol` subprotocol Janus requires, and starts the reader and keepalive tasks
    /// (on the current tokio runtime).
    pub async fn connect(url: &str) -> Result<Janus, String> {
        let mut req = url
            .into_client_request()
            .map_err(|e| format!("janus url {url}: {e}"))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| format!("janus connect {url}: timed out"))?
            .map_err(|e| format!("janus connect {url}: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let shared = Arc::new(Shared::default());
        let (out, mut outq) = mpsc::unbounded_channel::<String>();

        let s = shared.clone();
        let writer = tokio::spawn(async move {
            while let Some(text) = outq.recv().await {
                if let Err(e) = sink.send(Message::text(text)).await {
                    s.close(format!("janus connection: {e}"));
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let s = shared.clone();
        let reader = tokio::spawn(async move {
            let why = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => s.dispatch(t.as_str()),
                    Some(Ok(Message::Binary(b))) => {
                        if let Ok(t) = std::str::from_utf8(&b) {
                            s.dispatch(t);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break "closed by Janus".to_owned(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                }
            };
            s.close(format!("janus connection: {why}"));
        });
        let (s, ka_out) = (shared.clone(), out.clone());
        let keepalive = tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE_PERIOD);
            tick.tick().await;
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let sessions: Vec<u64> = lock(&s.sessions).iter().copied().collect();
                for id in sessions {
                    n += 1;
                    let msg = json!({"janus": "keepalive", "session_id": id, "transaction": format!("ka{n}")});
                    if ka_out.send(msg.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Janus {
            inner: Arc::new(Inner {
                shared,
                out,
                next_tx: AtomicU64::new(1),
                tasks: vec![
                    writer.abort_handle(),
                    reader.abort_handle(),
                    keepalive.abort_handle(),
                ],
            }),
        })
    }

    /// From now on, messages that answer no request (`webrtcup`, `hangup`, `media`, plugin
    /// events…) go to the returned receiver; before this call, and after it is dropped, they are
    /// discarded. A second call replaces the first receiver.
    pub fn notices(&self) -> mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.shared.notices) = Some(tx);
        rx
    }

    /// Waits until Janus reports `handle`'s PeerConnection up (`webrtcup`: ICE and DTLS done).
    ///
    /// VideoRoom refuses subscriptions to a publisher before that ("428 No such feed"), so a
    /// publisher's feed is only usable once this returns.
    pub async fn wait_up(&self, handle: u64, limit: Duration) -> Result<(), String> {
        let shared = &self.inner.shared;
        let wait = async {
            loop {
                let changed = shared.up_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if lock(&shared.up).contains(&handle) {
                    return Ok(());
                }
                if let Some(why) = lock(&shared.closed).clone() {
                    return Err(format!("janus webrtcup of {handle}: {why}"));
                }
                changed.await;
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or_else(|_| Err(format!("janus webrtcup of {handle}: not within {limit:?}")))
    }

    /// Number of sessions this connection keeps alive.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.shared.sessions).len()
    }

    /// Sends `msg` with a fresh transaction and waits (up to [`REQUEST_TIMEOUT`]) for its reply,
    /// returned as is: only the transport can fail here.
    async fn call(&self, what: &str, mut msg: Value, ack_is_reply: bool) -> Result<Value, String> {
        let shared = &self.inner.shared;
        if let Some(why) = lock(&shared.closed).clone() {
            return Err(format!("janus {what}: {why}"));
        }
        let tx = format!("t{}", self.inner.next_tx.fetch_add(1, Ordering::Relaxed));
        msg["transaction"] = Value::String(tx.clone());
        let (reply, rx) = oneshot::channel();
        lock(&shared.pending).insert(
            tx.clone(),
            Pending {
                ack_is_reply,
                reply,
            },
        );
        if self.inner.out.send(msg.to_string()).is_err() {
            lock(&shared.pending).remove(&tx);
            return Err(format!("janus {what}: connection closed"));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => {
                let why = lock(&shared.closed).clone();
                Err(format!(
                    "janus {what}: {}",
                    why.unwrap_or_else(|| "connection closed".into())
                ))
            }
            Err(_) => {
                lock(&shared.pending).remove(&tx);
                Err(format!("janus {what}: no reply within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    /// [`Janus::call`], with an error reply turned into `Err`.
    async fn request(&self, what: &str, msg: Value, ack_is_reply: bool) -> Result<Value, String> {
        let v = self.call(what, msg, ack_is_reply).await?;
        match reply_error(what, &v) {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }

    /// A plugin request on `handle` (Janus acks it, then the plugin answers with an event).
    async fn message(
        &self,
        what: &str,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        self.request(what, plugin_message(session, handle, body, jsep), false)
            .await
    }

    /// A new session (kept alive from now on) with a VideoRoom handle attached.
    async fn session_with_handle(&self) -> Result<(u64, u64), String> {
        let v = self
            .request("create", json!({"janus": "create"}), false)
            .await?;
        let session = data_id("create", &v)?;
        lock(&self.inner.shared.sessions).insert(session);
        let attach = json!({"janus": "attach", "session_id": session, "plugin": VIDEOROOM});
        match self
            .request("attach", attach, false)
            .await
            .and_then(|v| data_id("attach", &v))
        {
            Ok(handle) => Ok((session, handle)),
            Err(e) => {
                let _ = self.destroy(session).await;
                Err(e)
            }
        }
    }

    /// Runs `f` with a fresh session and handle and destroys the session afterwards, also when
    /// `f` fails (the first error is reported).
    async fn with_session<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(u64, u64) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let (session, handle) = self.session_with_handle().await?;
        let r = f(session, handle).await;
        if r.is_err() {
            let _ = self.destroy(session).await;
        }
        r
    }

    /// Creates VideoRoom `room` for up to `publishers` publishers (the shipped demo room allows
    /// 6), not persisted, without recording or audio-level events. A room that already exists is
    /// fine.
    pub async fn create_room(&self, room: u64, publishers: u32) -> Result<(), String> {
        let (session, handle) = self.session_with_handle().await?;
        let body = json!({
            "request": "create",
            "room": room,
            "publishers": publishers,
            "permanent": false,
            "is_private": true,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "record": false,
            "audiolevel_event": false,
            "notify_joining": false,
        });
        let msg = plugin_message(session, handle, body, None);
        let r = self.call("create room", msg, false).await.and_then(|v| {
            match (plugin_error_code(&v), reply_error("create room", &v)) {
                (Some(ROOM_EXISTS), _) | (_, None) => Ok(()),
                (_, Some(e)) => Err(e),
            }
        });
        let d = self.destroy(session).await;
        r.and(d)
    }

    /// Joins `room` as publisher `display` and publishes with `offer_sdp` (with its candidates:
    /// the client does not trickle). Returns Janus's answer and the feed id; subscribe to the
    /// feed only after [`Janus::wait_up`] on its handle.
    pub async fn publish(
        &self,
        room: u64,
        display: &str,
        offer_sdp: &str,
    ) -> Result<Publisher, String> {
        self.with_session(|session, handle| async move {
            let join =
                json!({"request": "join", "ptype": "publisher", "room": room, "display": display});
            let v = self.message("join", session, handle, join, None).await?;
            let feed = v["plugindata"]["data"]["id"]
                .as_u64()
                .ok_or_else(|| format!("janus join: no publisher id in reply: {v}"))?;
            let jsep = json!({"type": "offer", "sdp": offer_sdp, "trickle": false});
            let body = json!({"request": "publish"});
            let v = self
                .message("publish", session, handle, body, Some(jsep))
                .await?;
            let answer_sdp = jsep_sdp("publish", &v, "answer")?;
            Ok(Publisher {
                session,
                handle,
                feed,
                answer_sdp,
            })
        })
        .await
    }

    /// Subscribes to `feeds` of `room` (one subscription, one PeerConnection). Janus offers;
    /// answer with [`Janus::start`].
    pub async fn subscribe(&self, room: u64, feeds: &[u64]) -> Result<Subscriber, String> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.with_session(|session, handle| async move {
            let join =
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
            let v = self
                .message("subscribe", session, handle, join, None)
                .await?;
            let offer_sdp = jsep_sdp("subscribe", &v, "offer")?;
            Ok(Subscriber {
                session,
                handle,
                offer_sdp,
                streams: sub_streams(&v["plugindata"]["data"]),
            })
        })
        .await
    }

    /// Answers a subscription's offer; media flows once ICE and DTLS are up.
    pub async fn start(&self, sub: &Subscriber, answer_sdp: &str) -> Result<(), String> {
        let jsep = json!({"type": "answer", "sdp": answer_sdp, "trickle": false});
        let body = json!({"request": "start"});
        self.message("start", sub.session, sub.handle, body, Some(jsep))
            .await
            .map(drop)
    }

    /// Leaves the room on `handle` (a publisher unpublishes; a subscriber stops), keeping the
    /// session.
    pub async fn leave(&self, session: u64, handle: u64) -> Result<(), String> {
        self.message("leave", session, handle, json!({"request": "leave"}), None)
            .await
            .map(drop)
    }

    /// Destroys a session: Janus hangs up its PeerConnections and detaches its handles (a
    /// publisher leaves its room). Its keepalives stop.
    pub async fn destroy(&self, session: u64) -> Result<(), String> {
        lock(&self.inner.shared.sessions).remove(&session);
        self.request(
            "destroy",
            json!({"janus": "destroy", "session_id": session}),
            false,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_and_plugin_errors_become_messages() {
        let core = json!({"janus": "error", "transaction": "t1", "error": {"code": 458, "reason": "No such session"}});
        assert_eq!(
            reply_error("attach", &core).as_deref(),
            Some("janus attach: 458 No such session")
        );
        let plugin = json!({"janus": "event", "sender": 7, "plugindata": {"plugin": VIDEOROOM,
            "data": {"videoroom": "event", "error_code": 426, "error": "No such room (9)"}}});
        assert_eq!(
            reply_error("join", &plugin).as_deref(),
            Some("janus join: 426 No such room (9)")
        );
        assert_eq!(plugin_error_code(&plugin), Some(426));
        let malformed = json!({"janus": "error"});
        assert_eq!(
            reply_error("x", &malformed).as_deref(),
            Some("janus x: 0 (no reason)")
        );
        let ok = json!({"janus": "success", "data": {"id": 5}});
        assert_eq!(reply_error("create", &ok), None);
        assert_eq!(data_id("create", &ok), Ok(5));
        assert!(data_id("create", &json!({"janus": "success"})).is_err());
    }

    #[test]
    fn jsep_of_the_expected_type_only() {
        let v = json!({"jsep": {"type": "answer", "sdp": "v=0\r\n"}});
        assert_eq!(jsep_sdp("publish", &v, "answer"), Ok("v=0\r\n".to_owned()));
        assert!(jsep_sdp("subscribe", &v, "offer").is_err());
        assert!(jsep_sdp("publish", &json!({}), "answer").is_err());
    }

    #[test]
    fn subscription_streams_map_mids_to_feeds() {
        let data = json!({"videoroom": "attached", "streams": [
            {"type": "audio", "mid": "0", "feed_id": 11, "feed_mid": "0"},
            {"type": "data", "mid": "1"},
            {"type": "video"}
        ]});
        assert_eq!(
            sub_streams(&data),
            vec![
                SubStream {
                    mid: "0".into(),
                    kind: "audio".into(),
                    feed: Some(11)
                },
                SubStream {
                    mid: "1".into(),
                    kind: "data".into(),
                    feed: None
                },
            ]
        );
        assert!(sub_streams(&json!({})).is_empty());
    }

    /// Acks of plugin requests are skipped; the event with the same transaction answers;
    /// anything else is a notice; malformed text is dropped.
    #[test]
    fn dispatch_matches_transactions_and_routes_notices() {
        let s = Shared::default();
        let (reply, mut rx) = oneshot::channel();
        lock(&s.pending).insert(
            "t1".into(),
            Pending {
                ack_is_reply: false,
                reply,
            },
        );
        let (ntx, mut notices) = mpsc::unbounded_channel();
        *lock(&s.notices) = Some(ntx);

        s.dispatch("not json {");
        s.dispatch(r#"{"janus":"ack","session_id":1,"transaction":"t1"}"#);
        assert!(
            rx.try_recv().is_err(),
            "an ack does not answer a plugin request"
        );
        s.dispatch(r#"{"janus":"webrtcup","session_id":1,"sender":2}"#);
        s.dispatch(r#"{"janus":"event","session_id":1,"sender":2,"transaction":"t1","plugindata":{"data":{"videoroom":"joined","id":9}}}"#);
        assert_eq!(
            rx.try_recv().map(|v| v["plugindata"]["data"]["id"].clone()),
            Ok(json!(9))
        );
        assert!(lock(&s.pending).is_empty());
        // A late ack of an answered request is dropped, not a notice.
        s.dispatch(r#"{"janus":"ack","session_id":1,"transaction":"t1"}"#);

        assert!(lock(&s.up).contains(&2), "webrtcup marks the handle up");
        let n = notices.try_recv().expect("webrtcup notice");
        assert_eq!(
            (n.kind.as_str(), n.session, n.sender),
            ("webrtcup", Some(1), Some(2))
        );
        assert!(notices.try_recv().is_err());

        let (reply, mut rx) = oneshot::channel();
        lock(&s.pending).insert(
            "t2".into(),
            Pending {
                ack_is_reply: true,
                reply,
            },
        );
        s.dispatch(r#"{"janus":"ack","session_id":1,"transaction":"t2"}"#);
        assert!(
            rx.try_recv().is_ok(),
            "an ack answers a keepalive or trickle"
        );

        let (reply, mut rx) = oneshot::channel();
        lock(&s.pending).insert(
            "t3".into(),
            Pending {
                ack_is_reply: false,
                reply,
            },
        );
        s.close("janus connection: closed by Janus".into());
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn config_has_the_fairness_settings_and_only_videoroom_over_ws() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = write_config(dir.path(), "vt0", 8188, (20000, 20999), 1).expect("write config");
        assert_eq!(main, dir.path().join("janus.jcfg"));
        let core = std::fs::read_to_string(&main).expect("janus.jcfg");
        for want in [
            "ice_lite = true",
            "full_trickle = false",
            "ice_enforce_list = \"vt0\"",
            "rtp_port_range = \"20000-20999\"",
            "event_loops = 1",
            "debug_level = 3",
            "broadcast = false",
            &format!("configs_folder = \"{}\"", dir.path().display()),
        ] {
            assert!(core.contains(want), "{want} missing from:\n{core}");
        }
        let ws = std::fs::read_to_string(dir.path().join("janus.transport.websockets.jcfg"))
            .expect("websockets config");
        assert!(
            ws.contains("ws_port = 8188") && ws.contains("ws_ip = \"127.0.0.1\""),
            "{ws}"
        );
        assert!(
            ws.contains("admin_ws = false") && ws.contains("wss = false"),
            "{ws}"
        );
        assert!(dir.path().join("janus.plugin.videoroom.jcfg").exists());
        assert!(
            !write_config(dir.path(), "vt0", 8188, (1, 2), 0)
                .and_then(std::fs::read_to_string)
                .expect("rewrite")
                .contains("event_loops"),
            "0 keeps Janus's default"
        );
    }

    #[test]
    fn disabled_lists_never_hold_the_kept_modules() {
        let lib = Path::new("/lib/janus");
        let off = [
            "libjanus_echotest.so".to_owned(),
            "libjanus_sip.so".to_owned(),
        ];
        let core = render_core(&CoreOptions {
            configs: Path::new("/tmp/x"),
            lib,
            plugins_off: &off,
            transports_off: &["libjanus_http.so".to_owned()],
            loggers_off: &[],
            iface: "eth9",
            rtp_ports: (1000, 2000),
            event_loops: 2,
        });
        assert!(
            core.contains("disable = \"libjanus_echotest.so,libjanus_sip.so\""),
            "{core}"
        );
        assert!(core.contains("disable = \"libjanus_http.so\""), "{core}");
        assert!(
            core.contains("plugins_folder = \"/lib/janus/plugins\""),
            "{core}"
        );
        assert!(
            !core.contains("videoroom") && !core.contains("websockets"),
            "{core}"
        );
    }
}
