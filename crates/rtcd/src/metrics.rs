//! rtcd's Prometheus metrics: the names, types, labels and buckets of Go rtcd (`service/perf`),
//! so existing Grafana dashboards keep working. The media plane fills the `rtcd_rtc_*` series
//! that depend on peer connections.

use metrics::{counter, gauge};

pub const WS_CONNECTIONS: &str = "rtcd_ws_connections_total";
pub const WS_MESSAGES: &str = "rtcd_ws_messages_total";
pub const RTC_SESSIONS: &str = "rtcd_rtc_sessions_total";
pub const RTC_ERRORS: &str = "rtcd_rtc_errors_total";
pub const RTC_CONN_STATES: &str = "rtcd_rtc_conn_states_total";
pub const RTC_TRACKS: &str = "rtcd_rtc_rtp_tracks_total";
pub const RTC_TRACK_WRITES: &str = "rtcd_rtc_rtp_tracks_writes_time";
pub const RTC_CONNECTION_TIME: &str = "rtcd_rtc_connection_time";
pub const RTC_DC_OPEN_TIME: &str = "rtcd_rtc_dc_open_time";
pub const RTC_LOCK_GRAB_TIME: &str = "rtcd_rtc_signaling_lock_grab_time";
pub const RTC_LOCK_LOCKED_TIME: &str = "rtcd_rtc_signaling_lock_locked_time";
pub const RTC_CLIENT_LOSS: &str = "rtcd_rtc_client_loss_rate";
pub const RTC_CLIENT_RTT: &str = "rtcd_rtc_client_rtt";
pub const RTC_CLIENT_JITTER: &str = "rtcd_rtc_client_jitter";

pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
];
pub const LOSS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
];

/// Histogram buckets by metric; the rest use Prometheus' defaults.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (RTC_TRACK_WRITES, LATENCY_BUCKETS),
    (RTC_CLIENT_RTT, LATENCY_BUCKETS),
    (RTC_CLIENT_JITTER, LATENCY_BUCKETS),
    (RTC_CLIENT_LOSS, LOSS_BUCKETS),
];

/// Registers help texts so every series appears with `# HELP`/`# TYPE` lines.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        WS_CONNECTIONS,
        "Total number of active WebSocket connections"
    );
    describe_counter!(
        WS_MESSAGES,
        "Total number of sent/received WebSocket messages"
    );
    describe_gauge!(RTC_SESSIONS, "Total number of active RTC sessions");
    describe_counter!(RTC_ERRORS, "Total number of RTC errors");
    describe_counter!(
        RTC_CONN_STATES,
        "Total number of RTC connection state changes"
    );
    describe_gauge!(RTC_TRACKS, "Total number of incoming/outgoing RTP tracks");
    describe_histogram!(
        RTC_TRACK_WRITES,
        "Time taken to write to outgoing RTP tracks"
    );
    describe_histogram!(
        RTC_CONNECTION_TIME,
        "Time taken to establish RTC connections"
    );
    describe_histogram!(RTC_DC_OPEN_TIME, "Time taken to open the data channel");
    describe_histogram!(RTC_LOCK_GRAB_TIME, "Time taken to grab the signaling lock");
    describe_histogram!(RTC_LOCK_LOCKED_TIME, "Time the signaling lock was held");
    describe_histogram!(RTC_CLIENT_LOSS, "Client-reported packet loss rate");
    describe_histogram!(RTC_CLIENT_RTT, "Client-reported round-trip time");
    describe_histogram!(RTC_CLIENT_JITTER, "Client-reported jitter");
    calls_sfu::metrics::describe();
}

pub fn ws_connection(client_id: &str, delta: f64) {
    gauge!(WS_CONNECTIONS, "clientID" => client_id.to_owned()).increment(delta);
}

pub fn ws_message(client_id: &str, msg_type: &'static str, direction: &'static str) {
    counter!(WS_MESSAGES, "clientID" => client_id.to_owned(), "type" => msg_type, "direction" => direction).increment(1);
}

/// rtcd labels inbound messages with whatever type string the client sent; that lets a client
/// create unbounded series, so types rtcd does not know are counted as `unknown`.
pub fn inbound_type_label(t: &str) -> &'static str {
    use calls_proto::envelope::*;
    match t {
        TYPE_JOIN => TYPE_JOIN,
        TYPE_LEAVE => TYPE_LEAVE,
        TYPE_RECONNECT => TYPE_RECONNECT,
        TYPE_RTC => TYPE_RTC,
        TYPE_HELLO => TYPE_HELLO,
        TYPE_CLOSE => TYPE_CLOSE,
        TYPE_VAD => TYPE_VAD,
        _ => "unknown",
    }
}

pub fn sessions(group_id: &str, delta: f64) {
    gauge!(RTC_SESSIONS, "groupID" => group_id.to_owned()).increment(delta);
}

pub fn rtc_error(group_id: &str, kind: &'static str) {
    counter!(RTC_ERRORS, "groupID" => group_id.to_owned(), "type" => kind).increment(1);
}
