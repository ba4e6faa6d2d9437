//! Plugin ⇄ rtcd WebSocket frames (rtcd `service/client_msg.go`).
//!
//! A binary frame is **two msgpack values concatenated** (vmihailenco `EncodeMulti`): a str with the
//! message type, then the data. It is not an array: a decoder that expects one breaks the plugin.

use crate::msgpack::{self, MsgpackError, Reader, write};
use crate::rtc::RtcMessage;
use rmpv::Value;
use serde_json::Value as Json;

pub const TYPE_JOIN: &str = "join";
pub const TYPE_LEAVE: &str = "leave";
pub const TYPE_RTC: &str = "rtc";
pub const TYPE_HELLO: &str = "hello";
pub const TYPE_RECONNECT: &str = "reconnect";
pub const TYPE_CLOSE: &str = "close";
pub const TYPE_VAD: &str = "vad";

/// One frame of the plugin channel.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// rtcd → plugin, first frame on every connection.
    Hello { client_id: String, conn_id: String },
    /// plugin → rtcd: create a session.
    Join(JoinData),
    /// plugin → rtcd: close a session.
    Leave { session_id: String },
    /// plugin → rtcd: route a session's output to this connection from now on.
    Reconnect { session_id: String },
    /// rtcd → plugin: a session ended.
    Close { session_id: String },
    /// Both directions: signaling and control for one session.
    Rtc(RtcMessage),
    /// rtcd → plugin: voice activity (`rtc.Message` of type 7/8).
    Vad(RtcMessage),
    /// A well-formed frame of a type rtcd does not handle; the data is decoded and dropped.
    Unknown { msg_type: String },
}

/// The data of a `join` frame. rtcd keeps the three props as the plugin sent them (Go `any`), so
/// they are kept as JSON values here: they are echoed by `GET /calls/{id}/sessions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinData {
    pub call_id: String,
    pub user_id: String,
    pub session_id: String,
    pub channel_id: Json,
    pub av1_support: Json,
    pub dc_signaling: Json,
}

impl JoinData {
    pub fn new(
        call_id: &str,
        user_id: &str,
        session_id: &str,
        channel_id: &str,
        av1: bool,
        dc: bool,
    ) -> Self {
        Self {
            call_id: call_id.into(),
            user_id: user_id.into(),
            session_id: session_id.into(),
            channel_id: Json::String(channel_id.into()),
            av1_support: Json::Bool(av1),
            dc_signaling: Json::Bool(dc),
        }
    }
    /// As Go's `SessionProps.ChannelID()`: the value if it is a string, else "".
    pub fn channel_id(&self) -> &str {
        self.channel_id.as_str().unwrap_or("")
    }
    pub fn av1_support(&self) -> bool {
        self.av1_support.as_bool().unwrap_or(false)
    }
    pub fn dc_signaling(&self) -> bool {
        self.dc_signaling.as_bool().unwrap_or(false)
    }
}

/// Why a frame was rejected. Every variant is answered by logging and dropping the frame; the
/// connection stays up, as in rtcd.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("failed to decode message type: {0}")]
    Type(MsgpackError),
    #[error("failed to decode {msg_type} data: {err}")]
    Data { msg_type: String, err: MsgpackError },
    #[error("unexpected {msg_type} data: {reason}")]
    Shape { msg_type: String, reason: String },
}

impl ClientMessage {
    /// The envelope type string.
    pub fn type_name(&self) -> &str {
        match self {
            ClientMessage::Hello { .. } => TYPE_HELLO,
            ClientMessage::Join(_) => TYPE_JOIN,
            ClientMessage::Leave { .. } => TYPE_LEAVE,
            ClientMessage::Reconnect { .. } => TYPE_RECONNECT,
            ClientMessage::Close { .. } => TYPE_CLOSE,
            ClientMessage::Rtc(_) => TYPE_RTC,
            ClientMessage::Vad(_) => TYPE_VAD,
            ClientMessage::Unknown { msg_type } => msg_type,
        }
    }

    /// Encodes exactly as rtcd's Go code does.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64);
        self.encode_into(&mut buf);
        buf
    }

    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        write::str(buf, self.type_name());
        match self {
            ClientMessage::Hello { client_id, conn_id } => {
                write_str_map(buf, &[("clientID", client_id), ("connID", conn_id)])
            }
            ClientMessage::Leave { session_id }
            | ClientMessage::Reconnect { session_id }
            | ClientMessage::Close { session_id } => {
                write_str_map(buf, &[("sessionID", session_id)])
            }
            ClientMessage::Rtc(m) | ClientMessage::Vad(m) => m.encode_into(buf),
            ClientMessage::Join(j) => {
                write::map_len(buf, 6);
                for (k, v) in [
                    ("callID", &j.call_id),
                    ("userID", &j.user_id),
                    ("sessionID", &j.session_id),
                ] {
                    write::str(buf, k);
                    write::str(buf, v);
                }
                for (k, v) in [
                    ("channelID", &j.channel_id),
                    ("av1Support", &j.av1_support),
                    ("dcSignaling", &j.dc_signaling),
                ] {
                    write::str(buf, k);
                    write_json(buf, v);
                }
            }
            ClientMessage::Unknown { .. } => write::nil(buf),
        }
    }

    /// Decodes one frame. Tolerant like vmihailenco: any int width, str or bin for text, any key
    /// order, unknown keys ignored, trailing bytes after the data ignored.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let mut rd = Reader::new(frame);
        let ty = rd.value().map_err(DecodeError::Type)?;
        let msg_type = msgpack::as_text(&ty).ok_or(DecodeError::Type(MsgpackError::Type {
            what: "message type",
            expected: "str",
            got: msgpack::kind(&ty),
        }))?;
        let data = rd.value().map_err(|err| DecodeError::Data {
            msg_type: msg_type.clone(),
            err,
        })?;
        let shape = |reason: String| DecodeError::Shape {
            msg_type: msg_type.clone(),
            reason,
        };
        Ok(match msg_type.as_str() {
            TYPE_JOIN => ClientMessage::Join(decode_join(&data).map_err(shape)?),
            TYPE_LEAVE | TYPE_RECONNECT | TYPE_CLOSE => {
                let map = string_map(&data).map_err(shape)?;
                let session_id = lookup(&map, "sessionID").to_owned();
                match msg_type.as_str() {
                    TYPE_LEAVE => ClientMessage::Leave { session_id },
                    TYPE_RECONNECT => ClientMessage::Reconnect { session_id },
                    _ => ClientMessage::Close { session_id },
                }
            }
            TYPE_HELLO => {
                let map = string_map(&data).map_err(shape)?;
                ClientMessage::Hello {
                    client_id: lookup(&map, "clientID").to_owned(),
                    conn_id: lookup(&map, "connID").to_owned(),
                }
            }
            TYPE_RTC | TYPE_VAD => {
                let m = RtcMessage::from_value(&data).map_err(|err| DecodeError::Data {
                    msg_type: msg_type.clone(),
                    err,
                })?;
                if msg_type == TYPE_RTC {
                    ClientMessage::Rtc(m)
                } else {
                    ClientMessage::Vad(m)
                }
            }
            _ => ClientMessage::Unknown { msg_type },
        })
    }
}

fn lookup<'a>(map: &'a [(String, String)], key: &str) -> &'a str {
    // Last occurrence wins, as when Go fills a map from a stream with duplicate keys.
    map.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `leave`, `reconnect`, `close` and `hello` data: Go decodes them with `DecodeTypedMap` and then
/// asserts `map[string]string`, so anything but a non-empty all-string map is refused.
fn string_map(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Map(entries) = v else {
        return Err(format!(
            "expected a map of strings, got {}",
            msgpack::kind(v)
        ));
    };
    if entries.is_empty() {
        return Err("expected a map of strings, got an empty map".into());
    }
    entries
        .iter()
        .map(|(k, val)| match (k, val) {
            (Value::String(_) | Value::Binary(_), Value::String(_) | Value::Binary(_)) => Ok((
                msgpack::as_text(k).unwrap_or_default(),
                msgpack::as_text(val).unwrap_or_default(),
            )),
            _ => Err(format!(
                "expected a map of strings, found a {} value",
                msgpack::kind(val)
            )),
        })
        .collect()
}

fn decode_join(v: &Value) -> Result<JoinData, String> {
    let entries = match v {
        Value::Map(_) => msgpack::text_entries(v).ok_or_else(|| "expected a map".to_string())?,
        other => return Err(format!("expected a map, got {}", msgpack::kind(other))),
    };
    let mut j = JoinData {
        channel_id: Json::Null,
        av1_support: Json::Null,
        dc_signaling: Json::Null,
        ..Default::default()
    };
    for (key, val) in entries {
        // Go reads the IDs with a `.(string)` assertion: anything else is the empty string, which
        // session validation then rejects with a message naming the field.
        let text = || match val {
            Value::String(_) => msgpack::as_text(val).unwrap_or_default(),
            _ => String::new(),
        };
        match key.as_str() {
            "callID" => j.call_id = text(),
            "userID" => j.user_id = text(),
            "sessionID" => j.session_id = text(),
            "channelID" => j.channel_id = to_json(val),
            "av1Support" => j.av1_support = to_json(val),
            "dcSignaling" => j.dc_signaling = to_json(val),
            _ => {}
        }
    }
    Ok(j)
}

/// Converts a decoded value to the JSON Go's `encoding/json` would write for the same `any`.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match i.as_i64() {
            Some(n) => Json::from(n),
            None => Json::from(i.as_u64().unwrap_or_default()),
        },
        Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(_) => Json::String(msgpack::as_text(v).unwrap_or_default()),
        // Go marshals []byte as base64.
        Value::Binary(b) => Json::String(base64_std(b)),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        msgpack::as_text(k).unwrap_or_else(|| format!("{k}")),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(..) => Json::Null,
    }
}

fn base64_std(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn write_str_map(buf: &mut Vec<u8>, entries: &[(&str, &String)]) {
    write::map_len(buf, entries.len() as u32);
    for (k, v) in entries {
        write::str(buf, k);
        write::str(buf, v);
    }
}

fn write_json(buf: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => write::nil(buf),
        Json::Bool(b) => write::bool(buf, *b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                write::int(buf, i)
            } else if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(buf, u);
            } else {
                write::f64(buf, n.as_f64().unwrap_or_default())
            }
        }
        Json::String(s) => write::str(buf, s),
        Json::Array(a) => {
            let _ = rmp::encode::write_array_len(buf, a.len() as u32);
            a.iter().for_each(|v| write_json(buf, v));
        }
        Json::Object(o) => {
            write::map_len(buf, o.len() as u32);
            for (k, v) in o {
                write::str(buf, k);
                write_json(buf, v);
            }
        }
    }
}
