//! The media plane of rtcd: a selective forwarding unit.
//!
//! - [`core`]: the sans-IO SFU core (calls, sessions, tracks, signaling, data channel) on str0m.
//! - [`metrics`]: the `rtcd_rtc_*` Prometheus series the media plane fills.
//! - [`shell`]: the I/O shell: UDP sockets, timers and the channels to the control plane.
//! - [`vad`]: voice activity detection from audio levels, with rtcd's thresholds.
//! - [`stun`]: the STUN parsing that demultiplexes one UDP port among all sessions.

pub mod core;
pub mod metrics;
pub mod shell;
pub mod simulcast;
pub mod stun;
pub mod udp;
pub mod vad;

pub use crate::core::{Sfu, SfuConfig, SfuOutput};
