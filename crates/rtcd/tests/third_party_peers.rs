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
