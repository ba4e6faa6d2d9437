//! Test harness: runs the built `rtcd` binary on an ephemeral loopback port, the way an admin
//! would, and offers HTTP and WebSocket clients that speak to it like the Calls plugin.
#![allow(dead_code)]

use calls_proto::ClientMessage;
use futures_util::{SinkExt, StreamExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

pub const KEY: &str = "Ey4-H_BJA00_TVByPi8DozE12ekN3S7L";
pub const ADMIN_SECRET: &str = "admin_secret_key";

#[allow(unused_imports)] // each test binary uses a different part
pub use calls_testkit::{NetNs, basic, free_tcp_port, free_udp_port, python};
/// The rtcd under test (see [`calls_testkit::Daemon`]).
pub type Rtcd = calls_testkit::Daemon;

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
    calls_testkit::Daemon::start("rtcd", cmd, dir, "RTCD_TEST_ECHO")
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
