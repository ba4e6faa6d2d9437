//! The load tool's side of the rtcd protocol: it plays the Calls plugin, which registers with
//! rtcd, holds one WebSocket for all its sessions and relays each client's `join`, `rtc` and
//! `leave` messages. Any rtcd-compatible server (ours or Mattermost's) can be driven this way,
//! without a Mattermost server in front.

use calls_proto::{ClientMessage, JoinData, RtcMessage, RtcMessageType};
use calls_testkit::basic;
use futures_util::{SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// What rtcd says to one session.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Offer(String),
    Answer(String),
    Candidate(String),
    /// rtcd ended the session (`close`).
    Closed,
}

/// Credentials of the plugin-side client, and how to register it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub auth_key: String,
    /// rtcd's `admin_secret_key`, when registration needs the admin (self-registration off).
    pub admin_secret: Option<String>,
}

/// Registers the client (`POST /register`); an already registered client is fine.
pub async fn register(base: &str, creds: &Credentials) -> Result<(), String> {
    let body = serde_json::json!({"clientID": creds.client_id, "authKey": creds.auth_key});
    let mut req = reqwest::Client::new()
        .post(format!("{base}/register"))
        .timeout(Duration::from_secs(15))
        .body(body.to_string());
    if let Some(secret) = &creds.admin_secret {
        req = req.header("Authorization", basic("", secret));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach rtcd at {base}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.as_u16() == 201 || text.contains("already registered") {
        return Ok(());
    }
    Err(format!(
        "registering client {:?} failed ({status}): {text}; pass --admin-secret, or enable \
         api.security.allow_self_registration on the server",
        creds.client_id
    ))
}

/// The plugin's WebSocket to rtcd, shared by every simulated session of this process.
#[derive(Clone)]
pub struct Plugin {
    out: mpsc::UnboundedSender<ClientMessage>,
    routes: Rc<RefCell<HashMap<String, mpsc::UnboundedSender<Inbound>>>>,
    /// The writer, then the reader: both are awaited by [`Plugin::close`].
    tasks: Rc<RefCell<Option<[tokio::task::JoinHandle<()>; 2]>>>,
}

impl Plugin {
    /// Connects to `/ws` and waits for rtcd's `hello`. Must run inside a `LocalSet`.
    pub async fn connect(base: &str, creds: &Credentials) -> Result<Plugin, String> {
        let ws_url = match base.split_once("://") {
            Some(("http", rest)) => format!("ws://{rest}/ws"),
            Some(("https", _)) => {
                return Err("https is not supported by the load tool; use http://".into());
            }
            _ => return Err(format!("bad rtcd URL {base:?}: expected http://host:port")),
        };
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad rtcd URL {base:?}: {e}"))?;
        let auth = basic(&creds.client_id, &creds.auth_key)
            .parse()
            .map_err(|_| "credentials are not valid header text".to_string())?;
        req.headers_mut().insert("Authorization", auth);
        let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(calls_proto::MAX_WS_MESSAGE_BYTES));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), false)
            .await
            .map_err(|e| format!("WebSocket to {ws_url} failed: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        // The first frame is `hello`.
        let hello = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .map_err(|_| "no hello from rtcd within 10 s".to_string())?;
        match hello {
            Some(Ok(Message::Binary(b))) => match ClientMessage::decode(&b) {
                Ok(ClientMessage::Hello { .. }) => {}
                other => return Err(format!("expected hello, got {other:?}")),
            },
            other => return Err(format!("expected hello, got {other:?}")),
        }
        let (out, mut rx) = mpsc::unbounded_channel::<ClientMessage>();
        let writer = tokio::task::spawn_local(async move {
            let mut buf = Vec::new();
            while let Some(m) = rx.recv().await {
                buf.clear();
                m.encode_into(&mut buf);
                if sink
                    .send(Message::Binary(buf.clone().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let routes: Rc<RefCell<HashMap<String, mpsc::UnboundedSender<Inbound>>>> = Rc::default();
        let r = routes.clone();
        let reader = tokio::task::spawn_local(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(b) = msg else { continue };
                let Ok(m) = ClientMessage::decode(&b) else {
                    continue;
                };
                let (sid, inbound) = match m {
                    ClientMessage::Rtc(m) => match parse_rtc(&m) {
                        Some(i) => (m.session_id, i),
                        None => continue,
                    },
                    ClientMessage::Close { session_id } => (session_id, Inbound::Closed),
                    _ => continue,
                };
                if let Some(tx) = r.borrow().get(&sid) {
                    let _ = tx.send(inbound);
                }
            }
            // The WebSocket is gone: every session ends.
            for tx in r.borrow().values() {
                let _ = tx.send(Inbound::Closed);
            }
        });
        Ok(Plugin {
            out,
            routes,
            tasks: Rc::new(RefCell::new(Some([writer, reader]))),
        })
    }

    /// Sends what is queued (every `leave`, so rtcd does not wait for the sessions to time out)
    /// and closes the WebSocket with the closing handshake: it reads on until rtcd's Close frame,
    /// so that rtcd has read every frame before the connection ends. (Dropping the socket with
    /// rtcd's replies still unread makes the kernel reset the connection, and rtcd's kernel then
    /// discards the leaves it had not read yet: the bench saw a third of a 500-session call stay
    /// behind that way, and rtcd drain until those sessions timed out.) Call once every other
    /// clone is gone.
    pub async fn close(self) {
        let tasks = self.tasks.borrow_mut().take();
        drop(self);
        if let Some([writer, reader]) = tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
    }

    /// Joins a session; what rtcd says to it arrives on the returned channel.
    pub fn join(&self, join: JoinData) -> mpsc::UnboundedReceiver<Inbound> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.borrow_mut().insert(join.session_id.clone(), tx);
        let _ = self.out.send(ClientMessage::Join(join));
        rx
    }

    pub fn rtc(&self, session_id: &str, ty: RtcMessageType, data: Vec<u8>) {
        let _ = self.out.send(ClientMessage::Rtc(RtcMessage {
            session_id: session_id.into(),
            ..RtcMessage::new(ty, data)
        }));
    }

    pub fn sdp(&self, session_id: &str, kind: &str, sdp: &str) {
        let data = serde_json::json!({"type": kind, "sdp": sdp}).to_string();
        self.rtc(session_id, RtcMessageType::Sdp, data.into_bytes());
    }

    pub fn leave(&self, session_id: &str) {
        self.routes.borrow_mut().remove(session_id);
        let _ = self.out.send(ClientMessage::Leave {
            session_id: session_id.into(),
        });
    }
}

/// An `rtc` message from rtcd: an SDP or a trickled candidate.
fn parse_rtc(m: &RtcMessage) -> Option<Inbound> {
    let v: serde_json::Value = serde_json::from_slice(&m.data).ok()?;
    match m.kind()? {
        RtcMessageType::Sdp => {
            let sdp = v.get("sdp")?.as_str()?.to_owned();
            match v.get("type")?.as_str()? {
                "offer" => Some(Inbound::Offer(sdp)),
                "answer" => Some(Inbound::Answer(sdp)),
                _ => None,
            }
        }
        RtcMessageType::Ice => {
            let c = v.get("candidate")?.get("candidate")?.as_str()?;
            Some(Inbound::Candidate(c.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: RtcMessageType, v: serde_json::Value) -> RtcMessage {
        RtcMessage::new(ty, v.to_string().into_bytes())
    }

    #[test]
    fn rtc_messages_become_inbound_steps() {
        let offer = msg(
            RtcMessageType::Sdp,
            serde_json::json!({"type":"offer","sdp":"v=0"}),
        );
        assert_eq!(parse_rtc(&offer), Some(Inbound::Offer("v=0".into())));
        let cand = msg(
            RtcMessageType::Ice,
            serde_json::json!({"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}}),
        );
        assert!(matches!(parse_rtc(&cand), Some(Inbound::Candidate(c)) if c.contains("typ host")));
        // Anything else (bad JSON, other types) is ignored, never a panic.
        assert_eq!(
            parse_rtc(&RtcMessage::new(RtcMessageType::Sdp, b"{".to_vec())),
            None
        );
        assert_eq!(
            parse_rtc(&msg(
                RtcMessageType::Sdp,
                serde_json::json!({"type":"pranswer","sdp":""})
            )),
            None
        );
        assert_eq!(
            parse_rtc(&msg(RtcMessageType::Mute, serde_json::json!({}))),
            None
        );
    }
}
