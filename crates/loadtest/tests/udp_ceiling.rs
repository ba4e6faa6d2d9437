//! The ceiling tool runs bounded, sends and receives on loopback, and reports its figures.

#[test]
fn udp_ceiling_reports_a_positive_rate() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_udp-ceiling"))
        .args(["--seconds", "0.3", "--receivers", "4", "--payload", "200"])
        .output()
        .expect("run udp-ceiling");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON line on stdout");
    let sent = v["datagrams_sent"].as_u64().unwrap();
    assert!(sent > 1000, "{v}");
    assert!(v["datagrams_received"].as_u64().unwrap() > 0, "{v}");
    assert!(v["seconds"].as_f64().unwrap() < 5.0, "bounded: {v}");
    assert_eq!(v["receivers"], 4);
}
