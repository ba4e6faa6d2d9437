//! The media plane of rtcd: a selective forwarding unit.
//!
//! - [`core`]: the sans-IO SFU core (calls, sessions, tracks, signaling, data channel) on str0m.
//! - [`fast`]: the voice fast path, which frames and encrypts forwarded Opus itself with the
//!   session keys [`keys`] captures from str0m's DTLS, and [`feedback`] writes the receiver
//!   reports and transport-wide feedback on the voice it opens.
//! - [`metrics`]: the `rtcd_rtc_*` Prometheus series the media plane fills.
//! - [`shed`]: which received media an overloaded shard sheds, sans-IO.
//! - [`shell`]: the I/O shell: UDP sockets, timers and the channels to the control plane.
//! - [`vad`]: voice activity detection from audio levels, with rtcd's thresholds.
//! - [`stun`]: the STUN parsing that demultiplexes one UDP port among all sessions.

pub mod core;
pub mod fast;
pub mod feedback;
pub mod keys;
pub mod metrics;
pub mod shed;
pub mod shell;
pub mod simulcast;
pub mod srtp;
pub mod stun;
pub mod udp;
pub mod vad;

pub use crate::core::{Sfu, SfuConfig, SfuOutput};
