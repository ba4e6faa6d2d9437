//! The binary's start-up contract: `-config`/`--config`, file + environment, and invalid values
//! failing with exit code 1 and one line that names the key and its variable.

mod common;
use std::process::Command;

fn rtcd(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtcd"));
    c.current_dir(dir).env_clear().args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn invalid_values_fail_with_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("RTCD_RTC_ICEPORTUDP", "70")],
            "rtc.ice_port_udp (env RTCD_RTC_ICEPORTUDP): 70 is not in allowed range [80, 49151]",
        ),
        (
            &[("RTCD_API_SECURITY_ENABLEADMIN", "true")],
            "api.security.admin_secret_key (env RTCD_API_SECURITY_ADMINSECRETKEY)",
        ),
        (
            &[("RTCD_LOGGER_CONSOLELEVEL", "chatty")],
            "logger.console_level (env RTCD_LOGGER_CONSOLELEVEL): invalid level \"chatty\"",
        ),
        (
            &[("RTCD_RTC_NACKBUFFERSIZE", "33")],
            "rtc.nack_buffer_size (env RTCD_RTC_NACKBUFFERSIZE)",
        ),
    ];
    for (env, want) in cases {
        let out = rtcd(dir.path(), &[], env);
        assert_eq!(out.status.code(), Some(1), "{want}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("rtcd: invalid configuration: "), "{err}");
        assert!(err.contains(want), "{err}");
    }
    std::fs::write(
        dir.path().join("bad.toml"),
        "[rtc]\nice_port_tcp = \"high\"\n",
    )
    .unwrap();
    let out = rtcd(dir.path(), &["-config", "bad.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("rtc.ice_port_tcp (env RTCD_RTC_ICEPORTTCP): invalid type"),
        "{err}"
    );
    // Unknown arguments are a usage error, not a panic.
    assert_eq!(rtcd(dir.path(), &["--bogus"], &[]).status.code(), Some(2));
    assert_eq!(rtcd(dir.path(), &["-config"], &[]).status.code(), Some(2));
    assert!(rtcd(dir.path(), &["-version"], &[]).status.success());
}

#[tokio::test]
async fn go_style_config_flag_file_and_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rtcd.toml");
    // The file asks for self-registration and a port; the environment overrides the address.
    std::fs::write(
        &cfg,
        format!(
            "[api]\nhttp.listen_address = \"127.0.0.1:1\"\nsecurity.allow_self_registration = true\n[store]\ndata_source = \"{}\"\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    for flag in [
        vec!["-config".to_string(), cfg.display().to_string()],
        vec![format!("--config={}", cfg.display())],
    ] {
        // start_with sets the listen address through the environment, which must win over the file.
        let r = common_start_with_args(dir.path(), &flag);
        let res = reqwest::Client::new()
            .post(r.url("/register"))
            .body(format!(
                r#"{{"clientID":"x{}","authKey":"{}"}}"#,
                flag.len(),
                common::KEY
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "self-registration from the file is on");
        assert!(!r.log_contains("config file not found"));
    }
}

/// Like `common::start` but with command-line arguments.
fn common_start_with_args(dir: &std::path::Path, args: &[String]) -> common::Rtcd {
    common::start_with(dir, &[("RTCD_API_SECURITY_ENABLEADMIN", "false")], args)
}

#[tokio::test]
async fn file_logging_writes_json_lines_with_session_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/rtcd.log");
    let r = common::start(
        dir.path(),
        &[
            ("RTCD_LOGGER_ENABLEFILE", "true"),
            ("RTCD_LOGGER_FILELOCATION", log.to_str().unwrap()),
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true"),
        ],
    );
    assert!(
        common::ws_connect(&r, &common::basic("filelog", common::KEY))
            .await
            .is_err(),
        "not registered yet"
    );
    assert_eq!(
        common::register(&r, "filelog", common::KEY).await.status(),
        201
    );
    let mut ws = common::ws_connect(&r, &common::basic("filelog", common::KEY))
        .await
        .unwrap();
    common::hello(&mut ws).await;
    let join = calls_proto::ClientMessage::Join(calls_proto::JoinData::new(
        "callF", "u", "sessF", "ch", false, false,
    ));
    common::send(&mut ws, &join).await;
    // The file is written by a background thread: poll it until the session line shows up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("session joined")) {
            break l.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session line in {}:\n{text}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON file lines");
    assert_eq!(v["fields"]["call_id"], "callF");
    assert_eq!(v["fields"]["session_id"], "sessF");
    assert_eq!(v["level"], "INFO");
}

#[test]
fn unwritable_log_file_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let out = rtcd(
        dir.path(),
        &[],
        &[("RTCD_LOGGER_FILELOCATION", "file/sub/rtcd.log")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot create log directory"), "{err}");
}

/// STUN discovery at start-up (spec §3.3): with `ice_servers` naming a STUN server and no host
/// override, rtcd asks the server from the media port itself and advertises the answer, with the
/// port override. The "STUN server" here is a loopback socket answering with a documentation
/// address (203.0.113.7), which only ever appears in candidates.
#[test]
fn stun_discovered_public_address_is_advertised() {
    let stun = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stun.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let stun_addr = stun.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = stun
            .recv_from(&mut buf)
            .expect("a binding request within 20 s");
        assert!(n >= 20 && buf[0..2] == [0, 1], "a STUN binding request");
        let mut resp = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        resp.extend_from_slice(&buf[8..20]);
        let port = 40000u16 ^ 0x2112;
        // 203.0.113.7 XORed with the magic cookie 0x2112a442.
        let ip: [u8; 4] = [203 ^ 0x21, 0x12, 113 ^ 0xa4, 7 ^ 0x42];
        resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        resp.extend_from_slice(&port.to_be_bytes());
        resp.extend_from_slice(&ip);
        stun.send_to(&resp, from).unwrap();
        from
    });
    let dir = tempfile::tempdir().unwrap();
    let servers = format!(r#"[{{"urls":["stun:{stun_addr}"]}}]"#);
    let r = common::start(
        dir.path(),
        &[
            ("RTCD_RTC_ICESERVERS", servers.as_str()),
            ("RTCD_RTC_ICEHOSTPORTOVERRIDE", "30443"),
        ],
    );
    let from = server.join().unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.1");
    assert!(
        r.log_contains("203.0.113.7:30443"),
        "the discovered address is advertised with the port override"
    );
    assert!(r.log_contains("public address discovered by STUN"));
}

/// A media port another process holds is a start-up error naming the address, even when that
/// process opened it with SO_REUSEPORT (which rtcd's own shards use and which would otherwise let
/// two daemons silently split one port's traffic).
#[test]
fn busy_media_port_fails_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for reuse_port in [false, true] {
        let _holder = calls_sfu::udp::bind_std(addr, reuse_port).unwrap();
        let port_s = port.to_string();
        let out = rtcd(
            dir.path(),
            &[],
            &[
                ("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1"),
                ("RTCD_RTC_ICEPORTUDP", port_s.as_str()),
                ("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1"),
                ("RTCD_API_HTTP_LISTENADDRESS", "127.0.0.1:0"),
                (
                    "RTCD_STORE_DATASOURCE",
                    dir.path().join("db").to_str().unwrap(),
                ),
                ("RTCD_LOGGER_ENABLEFILE", "false"),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "reuse_port={reuse_port}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot bind UDP 127.0.0.1:{port}")),
            "reuse_port={reuse_port}: {err}"
        );
    }
}
