//! The control core: a sans-IO state machine for everything between the plugin's WebSocket
//! connections and the media plane.
//!
//! It owns the plugin connections (by connID), the group → call → session registry, the routing of
//! each session's output to a connection (`reconnect` moves it), and the first-offer deadline of
//! the session lifecycle. It takes inputs with the current time and queues outputs: frames for a
//! connection, and commands for the media plane. It never touches a socket or reads a clock, so
//! every rule here is tested deterministically (see the tests at the bottom).
//!
//! The media plane plugs in through [`MediaCommand`] (what the SFU must do) and
//! [`Control::media_event`] (what the SFU reports back).

use crate::metrics as m;
use calls_proto::envelope::{ClientMessage, JoinData};
use calls_proto::json::SessionConfig;
use calls_proto::{RtcMessage, RtcMessageType};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a new session may wait for the client's first SDP offer (rtcd: 10 s).
pub const FIRST_OFFER_TIMEOUT: Duration = Duration::from_secs(10);

pub type ConnId = String;

/// Something for the I/O shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write one binary frame to a plugin connection. `kind` is the envelope type, for metrics.
    Send {
        conn_id: ConnId,
        frame: Vec<u8>,
        kind: &'static str,
    },
    /// Ask the media plane to do something.
    Media(MediaCommand),
}

/// The seam to the media plane (the SFU). Until one is attached the shell logs and drops these.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaCommand {
    /// A session joined: create its peer connection.
    InitSession(SessionConfig),
    /// An `rtc` message for a session that exists (ICE, SDP, mute, screen, video).
    Rtc(RtcMessage),
    /// The session ended (leave, timeout, shutdown): release everything it holds.
    CloseSession { session_id: String },
}

/// What the media plane reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// An `rtc` message (SDP/ICE) for the plugin; routed by `session_id`.
    Signal(RtcMessage),
    /// Voice activity on/off for a session.
    Vad { session_id: String, on: bool },
    /// The session's peer connection failed or closed.
    SessionEnded { session_id: String, reason: String },
}

struct Conn {
    client_id: String,
}

struct Session {
    cfg: SessionConfig,
    /// The connection that sent `join`.
    join_conn: ConnId,
    /// Where the session's `rtc`/`vad` output goes; `reconnect` moves it.
    route: ConnId,
    /// Set until the client's first SDP offer arrives.
    offer_deadline: Option<Instant>,
}

/// Why a session ended, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Leave,
    NoOffer,
    MediaEnded,
    Shutdown,
}

#[derive(Default)]
pub struct Control {
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<String, Session>,
    /// group → call → sessions, for the HTTP session queries and per-call bookkeeping.
    groups: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// First-offer deadlines, ordered, so the next timeout is the first entry.
    deadlines: BTreeSet<(Instant, String)>,
    outputs: VecDeque<Output>,
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Control::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// A plugin connection authenticated and upgraded: greet it with `hello`.
    pub fn conn_opened(&mut self, conn_id: &str, client_id: &str) {
        self.conns.insert(
            conn_id.to_owned(),
            Conn {
                client_id: client_id.to_owned(),
            },
        );
        m::ws_connection(client_id, 1.0);
        let hello = ClientMessage::Hello {
            client_id: client_id.to_owned(),
            conn_id: conn_id.to_owned(),
        };
        self.send(conn_id, &hello);
    }

    /// A plugin connection went away. Its sessions keep running (the plugin reconnects and sends
    /// `reconnect`); their output is dropped until then.
    pub fn conn_closed(&mut self, conn_id: &str) {
        if let Some(c) = self.conns.remove(conn_id) {
            m::ws_connection(&c.client_id, -1.0);
        }
    }

    /// One binary frame from a connection. An `Err` is for the log: rtcd never answers errors on
    /// the WebSocket, and a bad frame affects nothing but itself.
    pub fn client_frame(
        &mut self,
        conn_id: &str,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), String> {
        let client_id = self
            .conns
            .get(conn_id)
            .map(|c| c.client_id.clone())
            .ok_or("unknown connection")?;
        let msg =
            ClientMessage::decode(frame).map_err(|e| format!("failed to unpack data: {e}"))?;
        m::ws_message(&client_id, m::inbound_type_label(msg.type_name()), "in");
        match msg {
            ClientMessage::Join(j) => self.join(conn_id, &client_id, j, now),
            ClientMessage::Leave { session_id } => {
                self.own_session(&client_id, &session_id, "leave")?;
                self.close_session(&session_id, CloseReason::Leave);
                Ok(())
            }
            ClientMessage::Reconnect { session_id } => {
                self.own_session(&client_id, &session_id, "reconnect")?;
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    s.route = conn_id.to_owned();
                }
                tracing::debug!(session_id, conn_id, "reconnect: session output re-routed");
                Ok(())
            }
            ClientMessage::Rtc(msg) => self.rtc(&client_id, msg),
            other => Err(format!(
                "unexpected client message type: {}",
                other.type_name()
            )),
        }
    }

    /// Checks that the session exists and belongs to the caller's group. rtcd looks sessions up
    /// in one global map without checking the group; a client cannot touch another installation's
    /// sessions here (the plugin never tries to, so it cannot tell the difference).
    fn own_session(
        &self,
        client_id: &str,
        session_id: &str,
        what: &str,
    ) -> Result<&Session, String> {
        if session_id.is_empty() {
            return Err(format!("{what}: missing sessionID in client message"));
        }
        match self.sessions.get(session_id) {
            Some(s) if s.cfg.group_id == client_id => Ok(s),
            Some(_) => Err(format!(
                "{what}: session {session_id} belongs to another client"
            )),
            // Leave is idempotent in rtcd: unknown sessions are a no-op, reported only in logs.
            None => Err(format!("{what}: session {session_id} not found")),
        }
    }

    fn join(
        &mut self,
        conn_id: &str,
        client_id: &str,
        j: JoinData,
        now: Instant,
    ) -> Result<(), String> {
        let cfg = SessionConfig {
            group_id: client_id.to_owned(),
            call_id: j.call_id.clone(),
            user_id: j.user_id.clone(),
            session_id: j.session_id.clone(),
            props: Some(BTreeMap::from([
                ("channelID".to_owned(), j.channel_id.clone()),
                ("av1Support".to_owned(), j.av1_support.clone()),
                ("dcSignaling".to_owned(), j.dc_signaling.clone()),
            ])),
        };
        for (field, v) in [
            ("GroupID", &cfg.group_id),
            ("CallID", &cfg.call_id),
            ("UserID", &cfg.user_id),
            ("SessionID", &cfg.session_id),
        ] {
            if v.is_empty() {
                return Err(format!(
                    "failed to initialize rtc session: invalid {field} value: should not be empty"
                ));
            }
        }
        // Session IDs route rtc messages globally, so they must be unique across calls and groups.
        // Nothing is created for a refused join (rtcd leaks a peer connection and a gauge here).
        if self.sessions.contains_key(&cfg.session_id) {
            return Err(format!(
                "failed to initialize rtc session: user session {} already exists",
                cfg.session_id
            ));
        }
        let deadline = now + FIRST_OFFER_TIMEOUT;
        self.deadlines.insert((deadline, cfg.session_id.clone()));
        self.groups
            .entry(cfg.group_id.clone())
            .or_default()
            .entry(cfg.call_id.clone())
            .or_default()
            .insert(cfg.session_id.clone());
        m::sessions(&cfg.group_id, 1.0);
        tracing::info!(call_id = %cfg.call_id, session_id = %cfg.session_id, user_id = %cfg.user_id, "session joined");
        self.outputs
            .push_back(Output::Media(MediaCommand::InitSession(cfg.clone())));
        self.sessions.insert(
            cfg.session_id.clone(),
            Session {
                cfg,
                join_conn: conn_id.to_owned(),
                route: conn_id.to_owned(),
                offer_deadline: Some(deadline),
            },
        );
        Ok(())
    }

    fn rtc(&mut self, client_id: &str, msg: RtcMessage) -> Result<(), String> {
        msg.validate()
            .map_err(|e| format!("invalid rtc message: {e}"))?;
        let session_id = msg.session_id.clone();
        self.own_session(client_id, &session_id, "rtc")?;
        let kind = msg
            .kind()
            .ok_or_else(|| format!("unexpected rtc message type {}", msg.msg_type))?;
        match kind {
            RtcMessageType::Sdp => {
                let sdp: serde_json::Value = serde_json::from_slice(&msg.data)
                    .map_err(|e| format!("failed to unmarshal sdp: {e}"))?;
                match sdp.get("type").and_then(|t| t.as_str()) {
                    Some("offer") => {
                        if let Some(s) = self.sessions.get_mut(&session_id)
                            && let Some(d) = s.offer_deadline.take()
                        {
                            self.deadlines.remove(&(d, session_id.clone()));
                        }
                    }
                    Some("answer") => {}
                    other => {
                        return Err(format!(
                            "unexpected sdp type: {}",
                            other.unwrap_or("<missing>")
                        ));
                    }
                }
            }
            RtcMessageType::VoiceOn | RtcMessageType::VoiceOff => {
                return Err(format!(
                    "unexpected rtc message type {} from the plugin",
                    kind.name()
                ));
            }
            _ => {}
        }
        self.outputs
            .push_back(Output::Media(MediaCommand::Rtc(msg)));
        Ok(())
    }

    /// Closes sessions whose first offer did not arrive in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((t, sid)) = self.deadlines.first().cloned() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            tracing::warn!(session_id = %sid, "no SDP offer within {:?}: closing session", FIRST_OFFER_TIMEOUT);
            m::rtc_error(
                self.sessions.get(&sid).map_or("", |s| &s.cfg.group_id),
                "signaling",
            );
            self.close_session(&sid, CloseReason::NoOffer);
        }
    }

    /// Output from the media plane.
    pub fn media_event(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Signal(msg) => self.route_to_session(msg, false),
            MediaEvent::Vad { session_id, on } => {
                let ty = if on {
                    RtcMessageType::VoiceOn
                } else {
                    RtcMessageType::VoiceOff
                };
                self.route_to_session(
                    RtcMessage {
                        session_id,
                        ..RtcMessage::new(ty, Vec::new())
                    },
                    true,
                )
            }
            MediaEvent::SessionEnded { session_id, reason } => {
                tracing::info!(session_id, reason, "media session ended");
                self.close_session(&session_id, CloseReason::MediaEnded);
            }
        }
    }

    fn route_to_session(&mut self, mut msg: RtcMessage, vad: bool) {
        let Some(s) = self.sessions.get(&msg.session_id) else {
            tracing::debug!(session_id = %msg.session_id, "dropping media output for a closed session");
            return;
        };
        msg.group_id = s.cfg.group_id.clone();
        msg.user_id = s.cfg.user_id.clone();
        msg.call_id = s.cfg.call_id.clone();
        let route = s.route.clone();
        if !self.conns.contains_key(&route) {
            tracing::warn!(session_id = %msg.session_id, conn_id = %route, "failed to get conn for sending: waiting for reconnect");
            return;
        }
        let group = msg.group_id.clone();
        let env = if vad {
            ClientMessage::Vad(msg)
        } else {
            ClientMessage::Rtc(msg)
        };
        self.send(&route, &env);
        m::ws_message(&group, if vad { "vad" } else { "rtc" }, "out");
    }

    /// Ends a session (idempotent) and tells the plugin with `close`.
    pub fn close_session(&mut self, session_id: &str, reason: CloseReason) {
        let Some(s) = self.sessions.remove(session_id) else {
            return;
        };
        if let Some(d) = s.offer_deadline {
            self.deadlines.remove(&(d, session_id.to_owned()));
        }
        if let Some(calls) = self.groups.get_mut(&s.cfg.group_id) {
            if let Some(set) = calls.get_mut(&s.cfg.call_id) {
                set.remove(session_id);
                if set.is_empty() {
                    calls.remove(&s.cfg.call_id);
                }
            }
            if calls.is_empty() {
                self.groups.remove(&s.cfg.group_id);
            }
        }
        m::sessions(&s.cfg.group_id, -1.0);
        tracing::info!(call_id = %s.cfg.call_id, session_id, ?reason, "session closed");
        if reason != CloseReason::MediaEnded {
            self.outputs
                .push_back(Output::Media(MediaCommand::CloseSession {
                    session_id: session_id.to_owned(),
                }));
        }
        // rtcd sends `close` to the connection that sent `join`. When that connection is gone the
        // Go server loses the message; here it goes to the session's current route instead, so the
        // plugin always learns that the session ended.
        let target = [&s.join_conn, &s.route]
            .into_iter()
            .find(|c| self.conns.contains_key(*c))
            .cloned();
        match target {
            Some(conn) => self.send(
                &conn,
                &ClientMessage::Close {
                    session_id: session_id.to_owned(),
                },
            ),
            None => tracing::warn!(session_id, "no live connection to send close to"),
        }
    }

    /// Closes every session (shutdown).
    pub fn close_all(&mut self) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.close_session(&id, CloseReason::Shutdown);
        }
    }

    fn send(&mut self, conn_id: &str, msg: &ClientMessage) {
        let kind = match msg {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::Close { .. } => "close",
            ClientMessage::Vad(_) => "vad",
            _ => "rtc",
        };
        self.outputs.push_back(Output::Send {
            conn_id: conn_id.to_owned(),
            frame: msg.encode(),
            kind,
        });
    }

    /// `GET /calls/{callID}/sessions/{sessionID}` for the caller's group.
    pub fn session_config(
        &self,
        group: &str,
        call: &str,
        session: &str,
    ) -> Result<SessionConfig, &'static str> {
        let calls = self.groups.get(group).ok_or("group not found")?;
        let set = calls.get(call).ok_or("call not found")?;
        if !set.contains(session) {
            return Err("session not found");
        }
        self.sessions
            .get(session)
            .map(|s| s.cfg.clone())
            .ok_or("session not found")
    }

    /// `GET /calls/{callID}/sessions` for the caller's group.
    pub fn session_configs(
        &self,
        group: &str,
        call: &str,
    ) -> Result<Vec<SessionConfig>, &'static str> {
        let calls = self.groups.get(group).ok_or("group not found")?;
        let set = calls.get(call).ok_or("call not found")?;
        let out: Vec<SessionConfig> = set
            .iter()
            .filter_map(|id| self.sessions.get(id).map(|s| s.cfg.clone()))
            .collect();
        if out.is_empty() {
            return Err("no sessions found");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Control) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn frames(out: &[Output]) -> Vec<(String, ClientMessage)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { conn_id, frame, .. } => {
                    Some((conn_id.clone(), ClientMessage::decode(frame).unwrap()))
                }
                _ => None,
            })
            .collect()
    }

    fn join(sid: &str) -> Vec<u8> {
        ClientMessage::Join(JoinData::new("call1", "user1", sid, "chan1", false, true)).encode()
    }

    fn rtc(sid: &str, ty: RtcMessageType, data: &[u8]) -> Vec<u8> {
        ClientMessage::Rtc(RtcMessage {
            session_id: sid.into(),
            ..RtcMessage::new(ty, data.to_vec())
        })
        .encode()
    }

    fn setup() -> (Control, Instant) {
        let mut c = Control::new();
        c.conn_opened("connA", "clientA");
        let out = drain(&mut c);
        assert_eq!(
            frames(&out),
            vec![(
                "connA".into(),
                ClientMessage::Hello {
                    client_id: "clientA".into(),
                    conn_id: "connA".into()
                }
            )]
        );
        (c, Instant::now())
    }

    #[test]
    fn join_registers_and_leave_closes_with_close() {
        let (mut c, t0) = setup();
        c.client_frame("connA", &join("s1"), t0).unwrap();
        let out = drain(&mut c);
        assert!(
            matches!(&out[..], [Output::Media(MediaCommand::InitSession(cfg))] if cfg.session_id == "s1" && cfg.group_id == "clientA")
        );
        let cfg = c.session_config("clientA", "call1", "s1").unwrap();
        assert_eq!(
            String::from_utf8(calls_proto::json::to_vec(&cfg)).unwrap(),
            "{\"GroupID\":\"clientA\",\"CallID\":\"call1\",\"UserID\":\"user1\",\"SessionID\":\"s1\",\
             \"Props\":{\"av1Support\":false,\"channelID\":\"chan1\",\"dcSignaling\":true}}\n"
        );
        assert_eq!(c.session_configs("clientA", "call1").unwrap().len(), 1);
        assert_eq!(
            c.session_configs("clientB", "call1"),
            Err("group not found")
        );
        assert_eq!(c.session_configs("clientA", "call2"), Err("call not found"));
        assert_eq!(
            c.session_config("clientA", "call1", "s2"),
            Err("session not found")
        );

        c.client_frame(
            "connA",
            &ClientMessage::Leave {
                session_id: "s1".into(),
            }
            .encode(),
            t0,
        )
        .unwrap();
        let out = drain(&mut c);
        assert_eq!(
            out[0],
            Output::Media(MediaCommand::CloseSession {
                session_id: "s1".into()
            })
        );
        assert_eq!(
            frames(&out),
            vec![(
                "connA".into(),
                ClientMessage::Close {
                    session_id: "s1".into()
                }
            )]
        );
        assert_eq!(
            c.session_configs("clientA", "call1"),
            Err("group not found"),
            "empty calls and groups are removed"
        );
        // Leave is idempotent: a second one changes nothing and emits nothing.
        assert!(
            c.client_frame(
                "connA",
                &ClientMessage::Leave {
                    session_id: "s1".into()
                }
                .encode(),
                t0
            )
            .is_err()
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.session_count(), 0);
    }

    #[test]
    fn invalid_and_duplicate_joins_create_nothing() {
        let (mut c, t0) = setup();
        let bad = ClientMessage::Join(JoinData::new("call1", "", "s1", "c", false, false)).encode();
        let e = c.client_frame("connA", &bad, t0).unwrap_err();
        assert!(e.contains("invalid UserID value"), "{e}");
        c.client_frame("connA", &join("s1"), t0).unwrap();
        let e = c.client_frame("connA", &join("s1"), t0).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        drain(&mut c);
        assert_eq!(c.session_count(), 1);
        // An admin connection (clientID "") cannot create sessions.
        c.conn_opened("connAdmin", "");
        drain(&mut c);
        let e = c.client_frame("connAdmin", &join("s2"), t0).unwrap_err();
        assert!(e.contains("invalid GroupID value"), "{e}");
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn no_offer_within_ten_seconds_closes_the_session() {
        let (mut c, t0) = setup();
        c.client_frame("connA", &join("s1"), t0).unwrap();
        c.client_frame("connA", &join("s2"), t0 + Duration::from_secs(1))
            .unwrap();
        drain(&mut c);
        assert_eq!(c.poll_timeout(), Some(t0 + FIRST_OFFER_TIMEOUT));
        // s2 sends its offer in time.
        let offer = br#"{"type":"offer","sdp":"v=0\r\n"}"#;
        c.client_frame(
            "connA",
            &rtc("s2", RtcMessageType::Sdp, offer),
            t0 + Duration::from_secs(2),
        )
        .unwrap();
        assert!(
            matches!(&drain(&mut c)[..], [Output::Media(MediaCommand::Rtc(m))] if m.session_id == "s2")
        );
        c.handle_timeout(t0 + FIRST_OFFER_TIMEOUT - Duration::from_millis(1));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(t0 + FIRST_OFFER_TIMEOUT);
        let out = drain(&mut c);
        assert_eq!(
            frames(&out),
            vec![(
                "connA".into(),
                ClientMessage::Close {
                    session_id: "s1".into()
                }
            )]
        );
        assert_eq!(c.poll_timeout(), None, "s2 has no deadline left");
        c.handle_timeout(t0 + Duration::from_secs(60));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.session_count(), 1);
    }

    #[test]
    fn sessions_survive_disconnect_and_reconnect_reroutes_output() {
        let (mut c, t0) = setup();
        c.client_frame("connA", &join("s1"), t0).unwrap();
        drain(&mut c);
        let signal = |c: &mut Control| {
            c.media_event(MediaEvent::Signal(RtcMessage {
                session_id: "s1".into(),
                ..RtcMessage::new(RtcMessageType::Ice, b"{}".to_vec())
            }))
        };
        c.conn_closed("connA");
        signal(&mut c);
        assert!(
            drain(&mut c).is_empty(),
            "output for a session whose connection is gone is dropped"
        );
        assert_eq!(c.session_count(), 1, "the session survives the disconnect");
        c.conn_opened("connB", "clientA");
        drain(&mut c);
        c.client_frame(
            "connB",
            &ClientMessage::Reconnect {
                session_id: "s1".into(),
            }
            .encode(),
            t0,
        )
        .unwrap();
        signal(&mut c);
        let f = frames(&drain(&mut c));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "connB");
        let ClientMessage::Rtc(m) = &f[0].1 else {
            panic!()
        };
        assert_eq!(
            (m.group_id.as_str(), m.user_id.as_str(), m.call_id.as_str()),
            ("clientA", "user1", "call1")
        );
        c.media_event(MediaEvent::Vad {
            session_id: "s1".into(),
            on: true,
        });
        let f = frames(&drain(&mut c));
        assert!(matches!(&f[0].1, ClientMessage::Vad(m) if m.msg_type == 7));
        // The join connection is gone, so close goes to the current route.
        c.media_event(MediaEvent::SessionEnded {
            session_id: "s1".into(),
            reason: "failed".into(),
        });
        let out = drain(&mut c);
        assert_eq!(
            frames(&out),
            vec![(
                "connB".into(),
                ClientMessage::Close {
                    session_id: "s1".into()
                }
            )]
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Media(_))),
            "the media plane ended it itself"
        );
    }

    #[test]
    fn close_prefers_the_join_connection_like_rtcd() {
        let (mut c, t0) = setup();
        c.conn_opened("connB", "clientA");
        c.client_frame("connA", &join("s1"), t0).unwrap();
        c.client_frame(
            "connB",
            &ClientMessage::Reconnect {
                session_id: "s1".into(),
            }
            .encode(),
            t0,
        )
        .unwrap();
        drain(&mut c);
        c.close_all();
        assert_eq!(
            frames(&drain(&mut c)),
            vec![(
                "connA".into(),
                ClientMessage::Close {
                    session_id: "s1".into()
                }
            )]
        );
    }

    #[test]
    fn other_clients_cannot_touch_a_session_and_bad_frames_change_nothing() {
        let (mut c, t0) = setup();
        c.conn_opened("connX", "clientX");
        c.client_frame("connA", &join("s1"), t0).unwrap();
        drain(&mut c);
        for f in [
            ClientMessage::Leave {
                session_id: "s1".into(),
            }
            .encode(),
            ClientMessage::Reconnect {
                session_id: "s1".into(),
            }
            .encode(),
            rtc("s1", RtcMessageType::Mute, b""),
        ] {
            assert!(
                c.client_frame("connX", &f, t0)
                    .unwrap_err()
                    .contains("another client")
            );
        }
        for f in [
            vec![0xff, 0x00],
            ClientMessage::Reconnect {
                session_id: "nope".into(),
            }
            .encode(),
            rtc("", RtcMessageType::Mute, b""),
            rtc("s1", RtcMessageType::Sdp, b"not json"),
            rtc(
                "s1",
                RtcMessageType::Sdp,
                br#"{"type":"pranswer","sdp":""}"#,
            ),
            rtc("s1", RtcMessageType::VoiceOn, b""),
            ClientMessage::Rtc(RtcMessage {
                session_id: "s1".into(),
                msg_type: 99,
                ..Default::default()
            })
            .encode(),
            ClientMessage::Close {
                session_id: "s1".into(),
            }
            .encode(),
            ClientMessage::Unknown {
                msg_type: "custom".into(),
            }
            .encode(),
        ] {
            assert!(c.client_frame("connA", &f, t0).is_err());
        }
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.session_count(), 1);
        assert!(c.client_frame("nosuchconn", &join("s9"), t0).is_err());
    }
}
