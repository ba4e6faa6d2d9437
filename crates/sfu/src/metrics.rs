//! The media plane's Prometheus series, under rtcd's names and labels (spec rtcd.md §5), so that
//! existing dashboards keep working.

use metrics::{counter, gauge, histogram};

pub const CONN_STATES: &str = "rtcd_rtc_conn_states_total";
pub const TRACKS: &str = "rtcd_rtc_rtp_tracks_total";
pub const ERRORS: &str = "rtcd_rtc_errors_total";
pub const CONNECTION_TIME: &str = "rtcd_rtc_connection_time";
pub const DC_OPEN_TIME: &str = "rtcd_rtc_dc_open_time";
pub const LOCK_GRAB_TIME: &str = "rtcd_rtc_signaling_lock_grab_time";
pub const LOCK_LOCKED_TIME: &str = "rtcd_rtc_signaling_lock_locked_time";
pub const CLIENT_LOSS: &str = "rtcd_rtc_client_loss_rate";
pub const CLIENT_RTT: &str = "rtcd_rtc_client_rtt";
pub const CLIENT_JITTER: &str = "rtcd_rtc_client_jitter";

/// `connected`, `disconnected`, `failed` or `closed`.
pub fn conn_state(state: &'static str) {
    counter!(CONN_STATES, "type" => state).increment(1);
}

/// Active tracks by direction (`in`/`out`) and MIME type.
pub fn track(group: &str, direction: &'static str, mime: &'static str, delta: f64) {
    gauge!(TRACKS, "groupID" => group.to_owned(), "direction" => direction, "type" => mime)
        .increment(delta);
}

/// `rtp`, `ice`, `signaling`, `signaling_lock_timeout` or `track`.
pub fn error(group: &str, kind: &'static str) {
    counter!(ERRORS, "groupID" => group.to_owned(), "type" => kind).increment(1);
}

pub fn seconds(name: &'static str, group: &str, secs: f64) {
    histogram!(name, "groupID" => group.to_owned()).record(secs);
}

/// Screen-share layer switches by the layer switched to (`l`/`h`). Not an rtcd series: rtcd
/// only logs its switches.
pub const LAYER_SWITCHES: &str = "rtcd_rtc_simulcast_switches_total";

pub fn layer_switch(layer: &'static str) {
    counter!(LAYER_SWITCHES, "layer" => layer).increment(1);
}

/// UDP datagrams the media plane sent, and those dropped because a socket buffer was full. Not
/// rtcd series: they give the forwarding rate (the benchmark reads it) and show send overload.
/// Counted once per `sendmmsg` round, not per packet.
pub const UDP_SENT: &str = "rtcd_rtc_udp_datagrams_sent_total";
pub const UDP_DROPPED: &str = "rtcd_rtc_udp_datagrams_dropped_total";

pub fn udp_sent(n: usize) {
    counter!(UDP_SENT).increment(n as u64);
}

pub fn udp_dropped(n: usize) {
    counter!(UDP_DROPPED).increment(n as u64);
}

/// Received media datagrams dropped because their shard's queue was full (the media plane is
/// overloaded). Not an rtcd series.
pub const UDP_INGRESS_DROPPED: &str = "rtcd_rtc_udp_ingress_dropped_total";

pub fn ingress_dropped(n: usize) {
    counter!(UDP_INGRESS_DROPPED).increment(n as u64);
}

/// Describes the media plane's own counters and shows them at zero from the start, so that a
/// scrape (or a `rate()` over it) sees "nothing dropped" rather than no series at all.
pub fn describe() {
    use metrics::describe_counter;
    describe_counter!(UDP_SENT, "UDP datagrams the media plane sent");
    describe_counter!(
        UDP_DROPPED,
        "UDP datagrams the media plane could not send (socket send buffer full)"
    );
    describe_counter!(
        UDP_INGRESS_DROPPED,
        "UDP datagrams received but shed because the media plane was overloaded"
    );
    for name in [UDP_SENT, UDP_DROPPED, UDP_INGRESS_DROPPED] {
        counter!(name).increment(0);
    }
}
