//! Wire formats of the Mattermost Calls services, with no I/O.
//!
//! Everything the plugin (or an end client) can observe on the wire lives here, so that the
//! daemons, the load-test tool and the tests share one definition of every byte:
//!
//! - [`envelope`]: the plugin ⇄ rtcd WebSocket frames (two concatenated msgpack values).
//! - [`rtc`]: the `rtc.Message` carried inside `rtc`/`vad` envelopes and its message types.
//! - [`dc`]: the `calls-dc` data-channel messages exchanged with end clients.
//! - [`json`]: JSON bodies of the HTTP APIs, encoded byte-for-byte like Go's `encoding/json`.
//! - [`msgpack`]: the tolerant msgpack reading shared by the decoders above.

pub mod dc;
pub mod envelope;
pub mod json;
pub mod msgpack;
pub mod rtc;

pub use envelope::{ClientMessage, JoinData};
pub use rtc::{RtcMessage, RtcMessageType};

/// Upper bound on any inbound WebSocket message (plugin ⇄ rtcd), as in rtcd (`connMaxReadBytes`).
pub const MAX_WS_MESSAGE_BYTES: usize = 1024 * 1024;
