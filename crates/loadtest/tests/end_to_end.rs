//! The load tool and the benchmark harness against the real rtcd binary of this workspace (and,
//! in the harness, the real Janus):
//! participants join through the plugin protocol, connect with ICE/DTLS/SRTP over loopback, hear
//! every speaker and see the screen share; the harness produces its report.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's rtcd binary, built beside this package's binaries.
fn rtcd_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_calls-loadtest"))
        .parent()
        .unwrap()
        .join("rtcd");
    assert!(
        bin.is_file(),
        "{} missing: build the workspace",
        bin.display()
    );
    bin
}

/// rtcd started by `cmd`, self-registration on, media on 127.0.0.1 at these ports, its store in
/// `dir`, JSON console logs.
fn start_rtcd(mut cmd: Command, dir: &Path, udp: u16, tcp: u16) -> calls_testkit::Daemon {
    cmd.env("RTCD_API_HTTP_LISTENADDRESS", "127.0.0.1:0")
        .env("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true")
        .env("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1")
        .env("RTCD_RTC_ICEPORTUDP", udp.to_string())
        .env("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1")
        .env("RTCD_RTC_ICEPORTTCP", tcp.to_string())
        .env("RTCD_STORE_DATASOURCE", dir.join("db"))
        .env("RTCD_LOGGER_ENABLEFILE", "false")
        .env("RTCD_LOGGER_CONSOLEJSON", "true");
    calls_testkit::Daemon::start("rtcd", cmd, dir, "RTCD_TEST_ECHO")
}

#[test]
fn participants_hear_every_speaker_and_see_the_screen() {
    let dir = tempfile::tempdir().unwrap();
    let rtcd = start_rtcd(
        Command::new(rtcd_bin()),
        dir.path(),
        calls_testkit::free_udp_port(),
        calls_testkit::free_tcp_port(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_calls-loadtest"))
        .args(["--url", &rtcd.url("")])
        .args([
            "--calls",
            "2",
            "--participants",
            "4",
            "--unmuted",
            "2",
            "--screen",
            "1",
        ])
        .args([
            "--join-rate",
            "20",
            "--warmup",
            "2",
            "--duration",
            "2",
            "--quiet",
        ])
        .args(["--json", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(r["joined"], 8, "{r}");
    assert_eq!(r["connected"], 8, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // Everyone hears both speakers of their call (the speakers each hear the other one).
    assert_eq!(r["listeners"], 8);
    assert_eq!(r["hearing_all"], 8, "{r}");
    // The sharer's three viewers in call 0 get screen video.
    assert_eq!(r["screen_viewers"], 3);
    assert_eq!(r["seeing_screen"], 3, "{r}");
    // 2 calls × (2 speakers × 3 listeners) × 50 packets/s of audio, plus video: at least the audio.
    let pps = r["steady"]["rx_pps"].as_f64().unwrap();
    assert!(pps > 500.0, "{r}");
    // Loopback loses nothing and neither may the SFU: a bound above zero hid a shell bug that
    // dropped every 17th queued batch of datagrams (about 1.5 % of the screen video here).
    assert_eq!(r["lost"], 0, "{r}");
    assert!(
        r["join_to_first_audio"]["p99_ms"].as_f64().unwrap() < 5000.0,
        "{r}"
    );
    // rtcd keeps each sender's RTP timestamps, so every voice and video packet of the steady
    // phase is timed from its sender's schedule. The bound is loose for a loaded CI machine;
    // the sender's lateness alone can reach a second before it skips.
    let steady = &r["steady"];
    assert_eq!(steady["delay_unmeasured"], 0, "{r}");
    for kind in ["audio_delay", "video_delay"] {
        let d = &steady[kind];
        assert!(d["count"].as_u64().unwrap() > 100, "{kind}: {r}");
        assert!(d["p50_ms"].as_f64().unwrap() < 250.0, "{kind}: {r}");
        assert!(d["max_ms"].as_f64().unwrap() >= d["p99_ms"].as_f64().unwrap());
    }
    assert!(stderr.contains("voice delay"), "{stderr}");
    // The summary table goes to stderr.
    assert!(
        stderr.contains("hearing every speaker        8 of 8"),
        "{stderr}"
    );
    // rtcd read every leave before the WebSocket closed: nothing is left to drain, so SIGTERM
    // stops it at once (a session left behind would hold it in draining).
    assert!(
        rtcd.log_contains("session closed"),
        "rtcd logged the leaves"
    );
    assert_eq!(rtcd.stop(), Some(0));
}

#[test]
fn participants_on_one_shared_socket_each_get_their_own_media() {
    // `--anyip`: one socket, an address per participant from a prefix routed to `lo`. Inside a
    // namespace of the test's own, where that prefix exists.
    let ns = calls_testkit::NetNs::new("anyip");
    let st = ns
        .command("ip")
        .args(["route", "add", "local", "10.204.0.0/16", "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success());
    let dir = tempfile::tempdir().unwrap();
    // The namespace is the test's own: the default ports are free there.
    let cmd = ns.command(rtcd_bin().to_str().unwrap());
    let rtcd = start_rtcd(cmd, dir.path(), 8443, 8443);
    let out = ns
        .command(env!("CARGO_BIN_EXE_calls-loadtest"))
        .args(["--url", &rtcd.url(""), "--anyip", "10.204.0.0/16"])
        .args(["--calls", "3", "--participants", "5", "--unmuted", "2"])
        .args(["--screen", "1", "--rx", "count"])
        .args(["--join-rate", "30", "--warmup", "2", "--duration", "2"])
        .args(["--quiet", "--json", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(r["connected"], 15, "{r}");
    // Demultiplexed by destination address: everybody hears exactly their call's speakers,
    // and the screen reaches the sharer's four viewers only.
    assert_eq!(r["listeners"], 15);
    assert_eq!(r["hearing_all"], 15, "{r}");
    assert_eq!(r["screen_viewers"], 4);
    assert_eq!(r["seeing_screen"], 4, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    // 3 calls x (2 speakers x 4 others) x 50 packets/s of audio, plus the screen.
    assert!(r["steady"]["rx_pps"].as_f64().unwrap() > 1100.0, "{r}");
    // Sent through the batches: 6 speakers' audio at 50 packets/s at least.
    assert!(r["steady"]["tx_pps"].as_f64().unwrap() > 290.0, "{r}");
    assert_eq!(rtcd.stop(), Some(0));
}

#[test]
fn bad_arguments_are_refused_with_the_setting_to_fix() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_calls-loadtest"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--unmuted", "11", "--participants", "10"]).contains("--unmuted"));
    assert!(run(&["--screen", "2", "--calls", "1"]).contains("--screen"));
    assert!(run(&["--auth-key", "short"]).contains("--auth-key"));
    assert!(run(&["--join-rate", "0"]).contains("--join-rate"));
    assert!(run(&["--anyip", "10.204.0.0"]).contains("--anyip"));
    // A prefix that is not routed here: the command that fixes it. (Only a bind is tried.)
    let e = run(&["--anyip", "192.0.2.0/24"]);
    assert!(e.contains("ip route add local 192.0.2.0/24 dev lo"), "{e}");
    let e = run(&["--anyip", "10.204.0.0/30", "--participants", "3"]);
    assert!(e.contains("room for 2 peers, not 3"), "{e}");
    // Nothing listens there: a clear error, not a hang.
    let port = calls_testkit::free_tcp_port();
    let e = run(&[
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--participants",
        "1",
    ]);
    assert!(e.contains("cannot reach rtcd"), "{e}");
}

#[test]
fn the_harness_produces_its_report() {
    let out_dir = tempfile::tempdir().unwrap();
    rtcd_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_calls-bench"))
        .args(["--quick", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = std::fs::read_to_string(out_dir.path().join("report.md")).unwrap();
    assert!(report.contains("| rtcd | quick-a |"), "{report}");
    assert!(report.contains("| janus | quick-a |"), "{report}");
    assert!(report.contains("Raw UDP ceiling"), "{report}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("results.json")).unwrap())
            .unwrap();
    let rows = v["rows"].as_array().unwrap();
    // Both rows on both SFUs, under the same load.
    assert_eq!(rows.len(), 4, "{v}");
    for r in rows {
        assert_eq!(r["load"]["hearing_all"], r["load"]["listeners"], "{r}");
        assert!(r["sfu_cpu_seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["sfu_rss_mb"].as_f64().unwrap() > 1.0, "{r}");
        assert!(r["forwarded_pps"].as_f64().unwrap() > 100.0, "{r}");
        // Voice delay is timed for rtcd; Janus rewrites RTP timestamps, which the tool detects
        // rather than reporting hours of delay.
        let steady = &r["load"]["steady"];
        if r["sfu"] == "rtcd" {
            assert!(steady["audio_delay"]["count"].as_u64().unwrap() > 0, "{r}");
            assert_eq!(steady["delay_unmeasured"], 0, "{r}");
        } else {
            assert_eq!(steady["audio_delay"]["count"], 0, "{r}");
            assert!(steady["delay_unmeasured"].as_u64().unwrap() > 0, "{r}");
        }
    }
    assert!(report.contains("p99 voice delay"), "{report}");
    assert!(v["ceiling_200"].as_f64().unwrap() > 1000.0, "{v}");
    for png in ["cpu.png", "memory.png", "throughput.png"] {
        let b = std::fs::read(out_dir.path().join(png)).unwrap();
        assert_eq!(&b[..4], b"\x89PNG", "{png}");
    }
}
