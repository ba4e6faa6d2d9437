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
