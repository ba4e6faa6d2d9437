//! `rtc.Message`: the payload of `rtc` and `vad` envelopes (rtcd `service/rtc/msg.go`).

use crate::msgpack::{self, MsgpackError, write};
use rmpv::Value;

/// `MessageType` (Go `iota + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RtcMessageType {
    Ice = 1,
    Sdp = 2,
    Mute = 3,
    Unmute = 4,
    ScreenOn = 5,
    ScreenOff = 6,
    VoiceOn = 7,
    VoiceOff = 8,
    VideoOn = 9,
    VideoOff = 10,
}

impl RtcMessageType {
    pub fn from_i64(v: i64) -> Option<Self> {
        use RtcMessageType::*;
        Some(match v {
            1 => Ice,
            2 => Sdp,
            3 => Mute,
            4 => Unmute,
            5 => ScreenOn,
            6 => ScreenOff,
            7 => VoiceOn,
            8 => VoiceOff,
            9 => VideoOn,
            10 => VideoOff,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use RtcMessageType::*;
        match self {
            Ice => "ice",
            Sdp => "sdp",
            Mute => "mute",
            Unmute => "unmute",
            ScreenOn => "screen_on",
            ScreenOff => "screen_off",
            VoiceOn => "voice_on",
            VoiceOff => "voice_off",
            VideoOn => "video_on",
            VideoOff => "video_off",
        }
    }
}

/// One `rtc.Message`. `msg_type` keeps the raw number so that unknown types survive decoding and
/// can be reported (rtcd rejects them later, when dispatching).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcMessage {
    pub group_id: String,
    pub user_id: String,
    pub session_id: String,
    pub call_id: String,
    pub msg_type: i64,
    pub data: Vec<u8>,
}

impl RtcMessage {
    pub fn new(msg_type: RtcMessageType, data: Vec<u8>) -> Self {
        Self {
            msg_type: msg_type as i64,
            data,
            ..Default::default()
        }
    }

    pub fn kind(&self) -> Option<RtcMessageType> {
        RtcMessageType::from_i64(self.msg_type)
    }

    /// rtcd's `Message.IsValid`.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.session_id.is_empty() {
            return Err("invalid SessionID value: should not be empty");
        }
        if self.msg_type == 0 {
            return Err("invalid Type value");
        }
        Ok(())
    }

    /// Appends the Go encoding: a map keyed in struct declaration order, `data` omitted when empty.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        write::map_len(buf, if self.data.is_empty() { 5 } else { 6 });
        for (k, v) in [
            ("group_id", &self.group_id),
            ("user_id", &self.user_id),
            ("session_id", &self.session_id),
            ("call_id", &self.call_id),
        ] {
            write::str(buf, k);
            write::str(buf, v);
        }
        write::str(buf, "type");
        write::int(buf, self.msg_type);
        if !self.data.is_empty() {
            write::str(buf, "data");
            write::bin(buf, &self.data);
        }
    }

    /// Decodes from a generic value, the way Go decodes into the struct: fields by key name, any
    /// order, unknown keys ignored, `nil` as the zero value.
    pub fn from_value(v: &Value) -> Result<Self, MsgpackError> {
        let mut m = RtcMessage::default();
        if let Value::Nil = v {
            return Ok(m);
        }
        let entries = msgpack::text_entries(v).ok_or(MsgpackError::Type {
            what: "rtc message",
            expected: "map",
            got: msgpack::kind(v),
        })?;
        for (key, val) in entries {
            let text = |what| {
                msgpack::as_text(val).ok_or(MsgpackError::Type {
                    what,
                    expected: "str",
                    got: msgpack::kind(val),
                })
            };
            match key.as_str() {
                "group_id" => m.group_id = text("rtc message group_id")?,
                "user_id" => m.user_id = text("rtc message user_id")?,
                "session_id" => m.session_id = text("rtc message session_id")?,
                "call_id" => m.call_id = text("rtc message call_id")?,
                "type" => {
                    m.msg_type = match val {
                        Value::Nil => 0,
                        _ => msgpack::as_i64(val).ok_or(MsgpackError::Type {
                            what: "rtc message type",
                            expected: "int",
                            got: msgpack::kind(val),
                        })?,
                    }
                }
                "data" => {
                    m.data = msgpack::as_bytes(val).ok_or(MsgpackError::Type {
                        what: "rtc message data",
                        expected: "bin",
                        got: msgpack::kind(val),
                    })?
                }
                _ => {}
            }
        }
        Ok(m)
    }
}
