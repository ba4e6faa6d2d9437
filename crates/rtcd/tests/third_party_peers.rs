//! Real third-party WebRTC stacks against the built binary, inside a network namespace the test
//! creates (the peers gather candidates on every interface; there they only have loopback).

mod common;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn aiortc_peers_connect_and_hear_each_other() {
    // aioice never gathers 127.0.0.1, so the namespace gets a veth pair of its own.
    let ns = common::NetNs::new("aiortc").with_veth();
    let dir = tempfile::tempdir().unwrap();
    let r = common::start_in(
        dir.path(),
        &[
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true"),
            ("RTCD_RTC_ICEADDRESSUDP", "10.203.0.1"),
        ],
        &[],
        Some(&ns.0),
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/aiortc_call.py");
    let mut child = ns
        .command(common::python().to_str().unwrap())
        .arg(script)
        .arg(r.url(""))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run aiortc scenario");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("aiortc scenario did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "aiortc scenario failed:\nstdout: {so}\nstderr: {se}"
    );
    eprintln!("aiortc scenario: {}", so.trim());
    let v: serde_json::Value = serde_json::from_str(so.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(v["dc_pong"], true);
    assert!(v["b_audio_frames"].as_u64().unwrap() >= 50, "{v}");
    assert_eq!(v["b_tracks"], 1, "{v}");
    let map = v["media_map"].as_object().unwrap();
    assert_eq!(map.values().next().unwrap()["sender_id"], "B");
    assert!(
        v["audio_frames_during_flood"].as_u64().unwrap() >= 60,
        "audio kept flowing during the junk flood: {v}"
    );
    assert_eq!(
        v["closed"],
        serde_json::json!(["A", "B"]),
        "leave and peer close both end with close: {v}"
    );
    assert_eq!(v["sessions_gauge"], 0.0, "{v}");
    let states = &v["conn_states"];
    assert_eq!(
        states["rtcd_rtc_conn_states_total{type=\"connected\"}"], 2.0,
        "{v}"
    );
    assert_eq!(
        states["rtcd_rtc_conn_states_total{type=\"closed\"}"], 2.0,
        "{v}"
    );
    let tracks = v["tracks"].as_object().unwrap();
    assert!(
        !tracks.is_empty() && tracks.values().all(|n| n.as_f64() == Some(0.0)),
        "tracks freed: {v}"
    );
    for c in v["candidates"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        if c.contains(" udp ") {
            assert!(
                c.contains("10.203.0.1"),
                "UDP candidates use the namespace address: {c}"
            );
        } else {
            assert!(c.contains(" tcp ") && c.contains("tcptype passive"), "{c}");
        }
    }
}

/// Headless Chromium (libwebrtc, the webapp's stack): a speaker, a simulcast screen sharer (with
/// an AV1 variant), a listener and ten more viewers (one of them AV1-capable) in one page, with the plugin's relay played by
/// `tests/interop/chromium_call.py` over the DevTools protocol. The namespace's second veth
/// address stands in for a NAT's external address: rtcd maps `10.203.0.1` to it with a port
/// override, so the override must show up only on that external candidate.
#[test]
fn chromium_meeting_with_simulcast_screen_share() {
    let ns = common::NetNs::new("chromium").with_veth();
    let dir = tempfile::tempdir().unwrap();
    let r = common::start_in(
        dir.path(),
        &[
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true"),
            // Every address of the namespace, on the default port: the namespace is ours alone.
            ("RTCD_RTC_ICEADDRESSUDP", ""),
            ("RTCD_RTC_ICEADDRESSTCP", ""),
            ("RTCD_RTC_ICEPORTUDP", "8443"),
            ("RTCD_RTC_ICEPORTTCP", "8443"),
            ("RTCD_RTC_ICEHOSTOVERRIDE", "10.203.0.2/10.203.0.1"),
            ("RTCD_RTC_ICEHOSTPORTOVERRIDE", "9443"),
        ],
        &[],
        Some(&ns.0),
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/chromium_call.py");
    let mut child = ns
        .command(common::python().to_str().unwrap())
        .arg(script)
        .arg(r.url(""))
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the chromium scenario");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium scenario did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let chromium_log = std::fs::read_to_string(dir.path().join("chromium.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "chromium scenario failed:\nstdout: {so}\nstderr: {se}\nchromium log tail: {}",
        chromium_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("chromium scenario: {}", so.trim());
    let v: serde_json::Value = serde_json::from_str(so.lines().last().unwrap_or("{}")).unwrap();
    let n = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert_eq!(v["dc_pong"], true, "{v}");
    assert!(n("c_audio_packets") >= 100.0, "C hears A: {v}");
    assert!(n("c_video_frames") >= 10.0, "C decodes B's screen: {v}");
    // New viewers get the low layer (half of the 1280-pixel canvas).
    assert_eq!(n("c_video_width"), 640.0, "{v}");
    // B sends VP8 simulcast (l, h) and, having joined with av1Support, an AV1 variant (no rid).
    assert_eq!(v["sharer_layers"], serde_json::json!(["", "h", "l"]), "{v}");
    assert_eq!(
        v["sharer_codecs"],
        serde_json::json!(["video/AV1", "video/VP8"]),
        "{v}"
    );
    // Codec per receiver: V0 (av1Support) decodes AV1, everyone else VP8.
    for (viewer, codecs) in v["viewer_codecs"].as_object().unwrap() {
        let want = if viewer == "V0" {
            "video/AV1"
        } else {
            "video/VP8"
        };
        assert_eq!(codecs, &serde_json::json!([want]), "{viewer}: {v}");
    }
    // TWCC feedback from Chromium drives the estimate past what `h` carries on this unlimited
    // link, and C is moved to the full-resolution layer.
    assert_eq!(n("c_width_after_bwe"), 1280.0, "C switched to h: {v}");
    assert_eq!(
        v["c_media_map_types"],
        serde_json::json!(["screen", "voice"]),
        "{v}"
    );
    // Most of the eleven viewers asked for keyframes (one whose first frame is a keyframe needs
    // none: 9 to 25 requests in all over 13 runs), more than reached the sharer, which saw at
    // most one PLI per second.
    assert!(
        n("viewer_plis") >= 6.0 && n("viewer_plis") > n("sharer_plis"),
        "the viewers did request keyframes: {v}"
    );
    assert!(
        n("sharer_plis") >= 1.0 && n("sharer_plis") <= n("share_seconds").floor() + 1.0,
        "PLIs reach the sharer at most once per second: {v}"
    );
    // VAD: voice on while A speaks, voice off on mute.
    let vad: Vec<(String, i64)> = v["vad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_i64().unwrap()))
        .collect();
    assert_eq!(vad.first(), Some(&("A".to_owned(), 7)), "{v}");
    assert!(vad.contains(&("A".to_owned(), 8)), "{v}");
    // Receiver reports on A's voice (written by the fast path, as SRTCP), read by libwebrtc:
    // nothing lost inside the namespace, and a round trip from the sender reports they quote.
    let reports = &v["a_voice_reports"];
    assert_eq!(reports["packetsLost"].as_f64(), Some(0.0), "{v}");
    assert!(reports["rttCount"].as_f64().unwrap_or(0.0) >= 2.0, "{v}");
    let rtt = reports["rtt"].as_f64().unwrap_or(-1.0);
    assert!((0.0..0.5).contains(&rtt), "{v}");
    // Mute gating: A kept sending, C received nothing of it.
    assert!(n("a_still_sending") > n("c_audio_packets"), "{v}");
    assert_eq!(n("c_audio_packets_while_muted"), 0.0, "{v}");
    // screen_off renegotiates the track away at every other session (A, C, ten viewers).
    assert_eq!(n("screen_off_offers"), 12.0, "{v}");
    assert_eq!(n("sessions_gauge"), 0.0, "{v}");
    // Every server offer (36 at least: the first media of 13 sessions, the screen at 12, its
    // removal at 12) grabbed and released the signaling lock; all 13 connected.
    assert!(n("signaling_lock_grab_time_count") >= 36.0, "{v}");
    assert!(n("signaling_lock_locked_time_count") >= 36.0, "{v}");
    assert_eq!(n("connection_time_count"), 13.0, "{v}");
    assert_eq!(n("dc_open_time_count"), 13.0, "{v}");
    assert!(n("switches_to_h") >= 1.0, "{v}");
    assert_eq!(
        v["closed"].as_array().unwrap().len(),
        13,
        "every session ended with close: {v}"
    );
    // Advertised addresses: 10.203.0.1 is replaced by the external 10.203.0.2 with the port
    // override; unchanged local addresses keep the real port.
    let cands: Vec<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for proto in ["udp", "tcp"] {
        let has = |addr: &str| {
            cands
                .iter()
                .any(|c| c.contains(&format!(" {proto} ")) && c.contains(addr))
        };
        assert!(
            has(" 10.203.0.2 9443 "),
            "{proto} external candidate: {cands:?}"
        );
        assert!(
            has(" 10.203.0.2 8443 "),
            "{proto} local candidate: {cands:?}"
        );
        assert!(
            has(" 127.0.0.1 8443 "),
            "{proto} loopback candidate: {cands:?}"
        );
    }
    assert!(
        !cands.iter().any(|c| c.contains("10.203.0.1")),
        "the overridden address is not advertised: {cands:?}"
    );
    assert!(
        !cands
            .iter()
            .any(|c| c.contains(" 9443 ") && !c.contains(" 10.203.0.2 9443 ")),
        "the port override applies only to the external address: {cands:?}"
    );
}
