//! The HTTP API against the built binary: the status matrix of spec rtcd.md §1.4, `/version`,
//! `/system`, the session queries, Go's 404s, bounded bodies, and persistence of registrations.

mod common;
use common::*;
use std::time::Duration;

struct Resp {
    status: u16,
    ctype: String,
    body: String,
}

async fn call(method: &str, url: &str, auth: Option<&str>, body: Option<&str>) -> Resp {
    let c = reqwest::Client::new();
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Resp {
        status,
        ctype,
        body: r.text().await.unwrap(),
    }
}

fn check(r: &Resp, status: u16, body: &str) {
    assert_eq!(
        (r.status, r.body.as_str()),
        (status, body),
        "content-type {}",
        r.ctype
    );
}

#[tokio::test]
async fn version_system_metrics_and_go_404s() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), &[]);
    let v = call("GET", &r.url("/version"), None, None).await;
    assert_eq!((v.status, v.ctype.as_str()), (200, "application/json"));
    assert!(v.body.ends_with("}\n"));
    let j: serde_json::Value = serde_json::from_str(&v.body).unwrap();
    // Keys in Go's order first, then this project's own identification.
    let pos: Vec<usize> = [
        "buildDate",
        "buildVersion",
        "buildHash",
        "goVersion",
        "goOS",
        "goArch",
        "implementation",
    ]
    .iter()
    .map(|k| {
        v.body
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("missing {k}"))
    })
    .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "field order: {}",
        v.body
    );
    assert!(v.body.starts_with("{\"buildDate\":"), "{}", v.body);
    // The plugin accepts v-prefixed semver >= v1.0.0 (and >= min_rtcd_version v0.17.0).
    let bv = j["buildVersion"].as_str().unwrap();
    let parts: Vec<u64> = bv
        .strip_prefix('v')
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(parts[0] >= 1, "{bv}");
    assert_eq!(j["implementation"], "calls-rs rtcd");
    assert_eq!(j["implementationVersion"], env!("CARGO_PKG_VERSION"));

    let s = call("GET", &r.url("/system"), None, None).await;
    assert_eq!((s.status, s.ctype.as_str()), (200, "application/json"));
    let load = serde_json::from_str::<serde_json::Value>(&s.body).unwrap()["cpu_load"]
        .as_f64()
        .unwrap();
    assert!(load.is_finite() && load >= 0.0);

    for (m, p) in [
        ("POST", "/version"),
        ("POST", "/system"),
        ("GET", "/register"),
        ("GET", "/login"),
        ("GET", "/unregister"),
        ("POST", "/calls/c/sessions"),
        ("DELETE", "/calls/c/sessions/s"),
        ("GET", "/nope"),
        ("GET", "/version/"),
        ("GET", "/debug/pprof/heap"),
    ] {
        let x = call(m, &r.url(p), None, None).await;
        check(&x, 404, "404 page not found\n");
        assert_eq!(x.ctype, "text/plain; charset=utf-8", "{m} {p}");
    }
    let m = call("POST", &r.url("/metrics"), None, None).await;
    assert_eq!(m.status, 200, "/metrics accepts any method");
    for series in [
        "rtcd_process_resident_memory_bytes",
        "rtcd_process_cpu_seconds_total",
        "rtcd_process_open_fds",
    ] {
        assert!(m.body.contains(series), "missing {series}");
    }
    // The media plane's drop counters exist before anything is dropped.
    for series in [
        "rtcd_rtc_udp_datagrams_sent_total 0",
        "rtcd_rtc_udp_datagrams_dropped_total 0",
        "rtcd_rtc_udp_ingress_dropped_total 0",
    ] {
        assert!(
            m.body.lines().any(|l| l == series),
            "missing {series}:\n{}",
            m.body
        );
    }
}

#[tokio::test]
async fn auth_status_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), &[]); // admin on, self-registration off
    let admin = basic("", ADMIN_SECRET);
    let reg = |id: &str, key: &str| format!(r#"{{"clientID":"{id}","authKey":"{key}"}}"#);

    // /register needs auth when self-registration is off.
    check(
        &call("POST", &r.url("/register"), None, Some(&reg("a", KEY))).await,
        401,
        "{\"code\":\"401\",\"error\":\"authentication failed: invalid auth header\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&basic("x", "wrong")),
            Some(&reg("a", KEY)),
        )
        .await,
        401,
        "{\"code\":\"401\",\"error\":\"authentication failed\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some("Bearer nope"),
            Some(&reg("a", KEY)),
        )
        .await,
        401,
        "{\"code\":\"401\",\"error\":\"authentication failed: token is invalid\"}\n",
    );
    let ok = call(
        "POST",
        &r.url("/register"),
        Some(&admin),
        Some(&reg("a", KEY)),
    )
    .await;
    check(&ok, 201, "{\"clientID\":\"a\",\"code\":\"201\"}\n");
    assert_eq!(ok.ctype, "application/json");
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&admin),
            Some(&reg("a", KEY)),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"registration failed: already registered\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&admin),
            Some(&reg("b", "short")),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"registration failed: key not long enough\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&admin),
            Some(&reg("", KEY)),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"registration failed: error: empty key\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&admin),
            Some(r#"{"clientID":1}"#),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"json: cannot unmarshal number into Go value of type string\"}\n",
    );
    check(
        &call("POST", &r.url("/register"), Some(&admin), Some("")).await,
        400,
        "{\"code\":\"400\",\"error\":\"EOF\"}\n",
    );
    // An already registered client may register others.
    check(
        &call(
            "POST",
            &r.url("/register"),
            Some(&basic("a", KEY)),
            Some(&reg("b", KEY)),
        )
        .await,
        201,
        "{\"clientID\":\"b\",\"code\":\"201\"}\n",
    );
    // A huge body is refused, not buffered.
    let huge = format!(r#"{{"clientID":"c","authKey":"{}"}}"#, "k".repeat(200_000));
    check(
        &call("POST", &r.url("/register"), Some(&admin), Some(&huge)).await,
        400,
        "{\"code\":\"400\",\"error\":\"http: request body too large\"}\n",
    );

    // /login: credentials in the body; failures are 400.
    let login = call("POST", &r.url("/login"), None, Some(&reg("a", KEY))).await;
    assert_eq!(login.status, 200);
    let token = serde_json::from_str::<serde_json::Value>(&login.body).unwrap()["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 32);
    assert_eq!(
        login.body,
        format!("{{\"bearerToken\":\"{token}\",\"code\":\"200\"}}\n")
    );
    check(
        &call(
            "POST",
            &r.url("/login"),
            None,
            Some(&reg("a", &"x".repeat(32))),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"login failed: authentication failed\"}\n",
    );
    check(
        &call("POST", &r.url("/login"), None, Some(&reg("zz", KEY))).await,
        400,
        "{\"code\":\"400\",\"error\":\"login failed: authentication failed: error: not found\"}\n",
    );
    let bearer = format!("Bearer {token}");

    // Session queries: client identity required (admin refused), scoped to the caller's group.
    check(
        &call("GET", &r.url("/calls/c1/sessions"), None, None).await,
        401,
        "unauthorized\n",
    );
    check(
        &call("GET", &r.url("/calls/c1/sessions"), Some(&admin), None).await,
        401,
        "unauthorized\n",
    );
    check(
        &call("GET", &r.url("/calls/c1/sessions"), Some(&bearer), None).await,
        404,
        "failed to get session configs: group not found\n",
    );
    check(
        &call(
            "GET",
            &r.url("/calls/c1/sessions/s1"),
            Some(&basic("a", KEY)),
            None,
        )
        .await,
        404,
        "failed to get session config: group not found\n",
    );

    // /unregister: a client may only remove itself; bad inputs; success drops the bearer token.
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            None,
            Some(r#"{"clientID":"a"}"#),
        )
        .await,
        401,
        "{\"code\":\"401\",\"error\":\"authentication failed: invalid auth header\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&basic("a", KEY)),
            Some(r#"{"clientID":"b"}"#),
        )
        .await,
        403,
        "{\"code\":\"403\",\"error\":\"client id not valid\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&admin),
            Some(r#"{"clientID":""}"#),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"client id should not be empty\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&admin),
            Some(r#"{"clientID":"nope"}"#),
        )
        .await,
        400,
        "{\"code\":\"400\",\"error\":\"unregister failed: error: not found\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&bearer),
            Some(r#"{"clientID":"a"}"#),
        )
        .await,
        200,
        "{\"code\":\"200\"}\n",
    );
    check(
        &call("GET", &r.url("/calls/c1/sessions"), Some(&bearer), None).await,
        401,
        "unauthorized\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&admin),
            Some(r#"{"clientID":"b"}"#),
        )
        .await,
        200,
        "{\"code\":\"200\"}\n",
    );
    // The WebSocket refuses bad credentials with a non-101 answer.
    assert!(ws_connect(&r, &basic("a", KEY)).await.is_err());
}

#[tokio::test]
async fn self_registration_and_disabled_unregister() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(
        dir.path(),
        &[
            ("RTCD_API_SECURITY_ENABLEADMIN", "false"),
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true"),
        ],
    );
    check(
        &call(
            "POST",
            &r.url("/register"),
            None,
            Some(&format!(r#"{{"clientID":"a","authKey":"{KEY}"}}"#)),
        )
        .await,
        201,
        "{\"clientID\":\"a\",\"code\":\"201\"}\n",
    );
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&basic("a", KEY)),
            Some(r#"{"clientID":"a"}"#),
        )
        .await,
        200,
        "{\"code\":\"200\"}\n",
    );
    drop(r);
    let dir2 = tempfile::tempdir().unwrap();
    let r = start(dir2.path(), &[("RTCD_API_SECURITY_ENABLEADMIN", "false")]);
    check(
        &call(
            "POST",
            &r.url("/unregister"),
            Some(&basic("a", KEY)),
            Some(r#"{"clientID":"a"}"#),
        )
        .await,
        403,
        "{\"code\":\"403\",\"error\":\"unregister not enabled\"}\n",
    );
}

#[tokio::test]
async fn registrations_survive_restart_and_kill_9_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), &[]);
    assert_eq!(register(&r, "persist", KEY).await.status(), 201);
    assert_eq!(r.stop(), Some(0), "clean exit on SIGTERM");

    let r = start(dir.path(), &[]);
    let mut ws = ws_connect(&r, &basic("persist", KEY))
        .await
        .expect("registered client connects after restart");
    assert_eq!(hello(&mut ws).await.0, "persist");
    drop(ws);

    // Fire registrations concurrently and kill -9 while they are being written.
    let mark = r.log_mark();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = r.url("/register");
            tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .post(url)
                    .header("Authorization", basic("", ADMIN_SECRET))
                    .body(format!(r#"{{"clientID":"c{i}","authKey":"{KEY}"}}"#))
                    .send()
                    .await;
                (i, res.map(|r| r.status().as_u16()).ok())
            })
        })
        .collect();
    r.wait_log_from(mark, "registered new client", Duration::from_secs(20))
        .await;
    r.kill9();
    let mut acked = Vec::new();
    for t in tasks {
        if let (i, Some(201)) = t.await.unwrap() {
            acked.push(i);
        }
    }
    assert!(acked.len() < 40, "the kill should interrupt the batch");

    let r = start(dir.path(), &[]);
    for i in acked {
        let mut ws = ws_connect(&r, &basic(&format!("c{i}"), KEY))
            .await
            .unwrap_or_else(|e| panic!("c{i} acknowledged but lost: {e}"));
        hello(&mut ws).await;
    }
    let mut ws = ws_connect(&r, &basic("persist", KEY)).await.unwrap();
    hello(&mut ws).await;
}

#[tokio::test]
async fn tls_listener_with_p256_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let r = start(
        dir.path(),
        &[
            ("RTCD_API_HTTP_TLS_ENABLE", "true"),
            ("RTCD_API_HTTP_TLS_CERTFILE", cert_path.to_str().unwrap()),
            ("RTCD_API_HTTP_TLS_CERTKEY", key_path.to_str().unwrap()),
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(&r.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name());
    assert_eq!(
        group,
        Some(rustls::NamedGroup::secp256r1),
        "the server offers P-256 only"
    );
    tls.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tls.read_to_string(&mut resp).await.unwrap_or_default();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"buildVersion\":\"v1.2.6\""), "{resp}");
    // Plain HTTP on the TLS port does not get an answer from the API.
    assert!(
        reqwest::get(r.url("/version"))
            .await
            .map(|x| x.status() != 200)
            .unwrap_or(true)
    );
}
