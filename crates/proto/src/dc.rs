//! The `calls-dc` data-channel protocol between end clients and the SFU (rtcd `service/rtc/dc`).
//!
//! A binary message is a msgpack message-type integer optionally followed by one payload value,
//! concatenated. Go writes the type as `uint8` (`cc NN`), the JS client as a positive fixint (`NN`);
//! both are accepted, and float payloads may arrive as integers. SDP payloads are
//! zlib-compressed JSON inside a msgpack bin; (de)compression is left to the caller.

use crate::msgpack::{self, MsgpackError, Reader, write};
use rmpv::Value;

/// Message type numbers.
pub mod ty {
    pub const PING: u8 = 1;
    pub const PONG: u8 = 2;
    pub const SDP: u8 = 3;
    pub const LOSS_RATE: u8 = 4;
    pub const ROUND_TRIP_TIME: u8 = 5;
    pub const JITTER: u8 = 6;
    pub const LOCK: u8 = 7;
    pub const UNLOCK: u8 = 8;
    pub const MEDIA_MAP: u8 = 9;
}

/// What a MediaMap entry says about one transceiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// `voice`, `screen`, `screen-audio` or `video`.
    pub track_type: String,
    /// rtcd fills this with the *receiving* session's ID (a quirk the webapp tolerates).
    pub sender_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DcMessage {
    Ping,
    Pong,
    /// zlib-compressed JSON `RTCSessionDescription`.
    Sdp(Vec<u8>),
    LossRate(f64),
    RoundTripTime(f64),
    Jitter(f64),
    /// Client → server: a request (`None`). Server → client: the answer (`Some(granted)`).
    Lock(Option<bool>),
    Unlock,
    /// `mid` → track info, written in the given order.
    MediaMap(Vec<(String, TrackInfo)>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DcError {
    #[error("failed to decode data-channel message type: {0}")]
    Type(MsgpackError),
    #[error("unknown data-channel message type {0}")]
    UnknownType(i64),
    #[error("failed to decode data-channel payload of type {ty}: {err}")]
    Payload { ty: u8, err: MsgpackError },
}

impl DcMessage {
    pub fn type_code(&self) -> u8 {
        match self {
            DcMessage::Ping => ty::PING,
            DcMessage::Pong => ty::PONG,
            DcMessage::Sdp(_) => ty::SDP,
            DcMessage::LossRate(_) => ty::LOSS_RATE,
            DcMessage::RoundTripTime(_) => ty::ROUND_TRIP_TIME,
            DcMessage::Jitter(_) => ty::JITTER,
            DcMessage::Lock(_) => ty::LOCK,
            DcMessage::Unlock => ty::UNLOCK,
            DcMessage::MediaMap(_) => ty::MEDIA_MAP,
        }
    }

    /// Encodes as rtcd's Go code does (type as `cc NN`).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16);
        write::u8_marked(&mut buf, self.type_code());
        match self {
            DcMessage::Ping | DcMessage::Pong | DcMessage::Unlock | DcMessage::Lock(None) => {}
            DcMessage::Sdp(b) => write::bin(&mut buf, b),
            DcMessage::LossRate(f) | DcMessage::RoundTripTime(f) | DcMessage::Jitter(f) => {
                write::f64(&mut buf, *f)
            }
            DcMessage::Lock(Some(b)) => write::bool(&mut buf, *b),
            DcMessage::MediaMap(entries) => {
                write::map_len(&mut buf, entries.len() as u32);
                for (mid, info) in entries {
                    write::str(&mut buf, mid);
                    write::map_len(&mut buf, 2);
                    write::str(&mut buf, "type");
                    write::str(&mut buf, &info.track_type);
                    write::str(&mut buf, "sender_id");
                    write::str(&mut buf, &info.sender_id);
                }
            }
        }
        buf
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DcError> {
        let mut rd = Reader::new(buf);
        let t = rd.value().map_err(DcError::Type)?;
        let code = msgpack::as_i64(&t).ok_or(DcError::Type(MsgpackError::Type {
            what: "data-channel message type",
            expected: "int",
            got: msgpack::kind(&t),
        }))?;
        let ty = u8::try_from(code).map_err(|_| DcError::UnknownType(code))?;
        let payload = |rd: &mut Reader| rd.value().map_err(|err| DcError::Payload { ty, err });
        let bad = |what: &'static str, expected: &'static str, v: &Value| DcError::Payload {
            ty,
            err: MsgpackError::Type {
                what,
                expected,
                got: msgpack::kind(v),
            },
        };
        Ok(match ty {
            ty::PING => DcMessage::Ping,
            ty::PONG => DcMessage::Pong,
            ty::UNLOCK => DcMessage::Unlock,
            ty::LOCK => {
                if rd.is_empty() {
                    DcMessage::Lock(None)
                } else {
                    match payload(&mut rd)? {
                        Value::Boolean(b) => DcMessage::Lock(Some(b)),
                        Value::Nil => DcMessage::Lock(None),
                        v => return Err(bad("lock payload", "bool", &v)),
                    }
                }
            }
            ty::SDP => {
                let v = payload(&mut rd)?;
                DcMessage::Sdp(msgpack::as_bytes(&v).ok_or_else(|| bad("sdp payload", "bin", &v))?)
            }
            ty::LOSS_RATE | ty::ROUND_TRIP_TIME | ty::JITTER => {
                let v = payload(&mut rd)?;
                let f = msgpack::as_f64(&v).ok_or_else(|| bad("metric payload", "float", &v))?;
                match ty {
                    ty::LOSS_RATE => DcMessage::LossRate(f),
                    ty::ROUND_TRIP_TIME => DcMessage::RoundTripTime(f),
                    _ => DcMessage::Jitter(f),
                }
            }
            ty::MEDIA_MAP => {
                let v = payload(&mut rd)?;
                let entries =
                    msgpack::text_entries(&v).ok_or_else(|| bad("media map", "map", &v))?;
                let mut out = Vec::new();
                for (mid, info) in entries {
                    let mut ti = TrackInfo {
                        track_type: String::new(),
                        sender_id: String::new(),
                    };
                    let fields = msgpack::text_entries(info)
                        .ok_or_else(|| bad("media map entry", "map", info))?;
                    for (k, fv) in fields {
                        let s = msgpack::as_text(fv)
                            .ok_or_else(|| bad("media map field", "str", fv))?;
                        match k.as_str() {
                            "type" => ti.track_type = s,
                            "sender_id" => ti.sender_id = s,
                            _ => {}
                        }
                    }
                    out.push((mid, ti));
                }
                DcMessage::MediaMap(out)
            }
            _ => return Err(DcError::UnknownType(code)),
        })
    }
}

/// The legacy text ping of old mobile clients, answered with the text `pong`.
pub const LEGACY_TEXT_PING: &str = "ping";
pub const LEGACY_TEXT_PONG: &str = "pong";
