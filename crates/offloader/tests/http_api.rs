//! The HTTP contract of spec §1 against the built binary: routes, methods, auth, the Go error
//! envelope and every bad-input answer of `POST /jobs` and `POST /jobs/init`. No job starts here
//! (every request is refused before the backend), so these tests run alongside the Docker ones.

mod common;
use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn version_reports_a_plugin_compatible_build() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let r = o.request(Method::GET, "/version", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v["buildVersion"], "v0.9.5",
        "passes the plugin's >= v0.9.0 check"
    );
    assert!(
        r.body.starts_with("{\"buildDate\":"),
        "Go's field order: {}",
        r.body
    );
    for k in [
        "buildHash",
        "goVersion",
        "implementation",
        "implementationVersion",
    ] {
        assert!(
            v[k].as_str().is_some_and(|s| !s.is_empty()),
            "{k}: {}",
            r.body
        );
    }
    assert_eq!(v["implementation"], "calls-rs calls-offloader");
    // Routes without a method filter answer a wrong method with Go's 404.
    for (m, p) in [
        (Method::POST, "/version"),
        (Method::GET, "/register"),
        (Method::GET, "/login"),
        (Method::GET, "/unregister"),
    ] {
        let r = o.request(m.clone(), p, None).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "404 page not found\n"),
            "{m} {p}"
        );
    }
}

#[tokio::test]
async fn routes_methods_and_ids_as_gorilla_answers_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let auth = plugin_auth();
    // Known route, wrong method: 405 with an empty body.
    for (m, p) in [
        (Method::GET, "/jobs"),
        (Method::PUT, "/jobs"),
        (Method::GET, "/jobs/init"),
        (Method::POST, "/jobs/0123456789ab"),
        (Method::PUT, "/jobs/0123456789ab"),
        (Method::POST, "/jobs/0123456789ab/logs"),
        (Method::DELETE, "/jobs/0123456789ab/logs"),
    ] {
        let r = o.request(m.clone(), p, Some(&auth)).await;
        assert_eq!((r.status, r.body.as_str()), (405, ""), "{m} {p}");
    }
    // IDs outside [a-z0-9]{12,26} do not match the route.
    for p in [
        "/jobs/0123456789a",
        "/jobs/0123456789ABCD",
        "/jobs/abcdefghijklmnopqrstuvwxyz0",
        "/jobs/calls-recorder-job-abcdefghijklmnopqrstuvwxyz",
        "/jobs/0123456789ab/logs/x",
        "/jobs/",
        "/nope",
    ] {
        let r = o.request(Method::GET, p, Some(&auth)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "404 page not found\n"),
            "{p}"
        );
    }
    let r = o.get_job("0123456789ab").await;
    r.assert_error(404, "failed to get job failed to get job: error: not found");
    let r = o
        .request(
            Method::DELETE,
            "/jobs/abcdefghijklmnopqrstuvwxyz",
            Some(&auth),
        )
        .await;
    r.assert_error(404, "failed to get job failed to get job: error: not found");
    let r = o
        .request(Method::GET, "/jobs/0123456789ab/logs", Some(&auth))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to get recording job logs: ")
    );
    // Metrics: API requests by route template.
    let m = reqwest::get(o.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(
            "calls_offloader_api_requests_total{route=\"/jobs/{id}\",method=\"GET\",code=\"404\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains("calls_offloader_api_request_duration_seconds_bucket"),
        "{m}"
    );
}

#[tokio::test]
async fn auth_basic_self_registration_admin_and_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let init = json!({"Runners": [RECORDER]}).to_string();
    let r = o.post("/jobs/init", None, init.clone()).await;
    r.assert_error(401, "authentication failed: invalid auth header");
    let r = o
        .post("/jobs/init", Some(&basic("", "whatever-key")), init.clone())
        .await;
    r.assert_error(401, "authentication failed: unauthorized");
    let r = o
        .post(
            "/jobs/init",
            Some(&basic("shortkey-client", "short")),
            init.clone(),
        )
        .await;
    r.assert_error(401, "unauthorized");
    // First contact registers the client; a different key for it is refused afterwards.
    let r = o
        .post("/jobs/init", Some(&plugin_auth()), init.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = o
        .post(
            "/jobs/init",
            Some(&basic(CLIENT_ID, "another-key-that-is-32-chars-long!")),
            init.clone(),
        )
        .await;
    r.assert_error(401, "authentication failed");
    // The admin (any client ID, the admin key).
    let r = o
        .post("/jobs/init", Some(&basic("", ADMIN_SECRET)), init.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Bearer from /login.
    let r = o
        .post(
            "/login",
            None,
            json!({"clientID": CLIENT_ID, "authKey": KEY}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200);
    let token = r.json()["bearerToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert_eq!(r.json()["code"], "200");
    let r = o
        .post("/jobs/init", Some(&format!("Bearer {token}")), init.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = o.post("/jobs/init", Some("Bearer nope"), init).await;
    r.assert_error(401, "authentication failed: token is invalid");
    // Register and unregister (no auth needed with self-registration on).
    let r = o
        .post(
            "/register",
            None,
            json!({"clientID": "other", "authKey": KEY}).to_string(),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (201, "{\"clientID\":\"other\",\"code\":\"201\"}\n")
    );
    let r = o
        .post(
            "/unregister",
            Some(&basic("other", KEY)),
            json!({"clientID": "other"}).to_string(),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[tokio::test]
async fn bad_job_requests_get_go_status_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let auth = plugin_auth();
    let post = |body: Vec<u8>| {
        let (o, auth) = (&o, auth.clone());
        async move { o.post("/jobs", Some(&auth), body).await }
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "failed to decode request body: EOF"),
        (b"{\"type\":".to_vec(), "failed to decode request body: unexpected EOF"),
        (
            b"[1,2]".to_vec(),
            "failed to decode request body: json: cannot unmarshal array into Go value of type job.Config",
        ),
        (
            json!({"type": "recording", "max_duration_sec": "60", "runner": RECORDER}).to_string().into_bytes(),
            "failed to decode request body: json: cannot unmarshal string into Go struct field Config.max_duration_sec of type int64",
        ),
        (
            json!({"type": 1}).to_string().into_bytes(),
            "failed to decode request body: json: cannot unmarshal number 1 into Go struct field Config.type of type job.Type",
        ),
        (
            json!({"type": "recording", "runner": RECORDER, "max_duration_sec": 60, "input_data": [1]}).to_string().into_bytes(),
            "failed to decode request body: json: cannot unmarshal array into Go struct field Config.input_data of type job.InputData",
        ),
        (json!({}).to_string().into_bytes(), "invalid Type value: should not be empty"),
        (
            json!({"type": "recording"}).to_string().into_bytes(),
            "invalid Runner value: runner should not be empty",
        ),
        (
            json!({"type": "captioning", "runner": RECORDER, "max_duration_sec": 60}).to_string().into_bytes(),
            "invalid Type value: \"captioning\"",
        ),
        (
            json!({"type": "recording", "runner": "evil.example/calls-recorder:v0.8.13", "max_duration_sec": 60}).to_string().into_bytes(),
            "invalid Runner value: failed to validate runner \"evil.example/calls-recorder:v0.8.13\"",
        ),
        (
            json!({"type": "recording", "runner": "mattermost/calls-recorder@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "max_duration_sec": 60}).to_string().into_bytes(),
            "invalid Runner value: failed to validate runner \"mattermost/calls-recorder@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        ),
        (
            json!({"type": "recording", "runner": "mattermost/calls-recorder:v0.5.0", "max_duration_sec": 60}).to_string().into_bytes(),
            "invalid Runner value: actual version (0.5.0) is lower than minimum supported version (0.6.0)",
        ),
        (
            json!({"type": "recording", "runner": RECORDER, "max_duration_sec": 0}).to_string().into_bytes(),
            "invalid MaxDurationSec value: should be positive",
        ),
    ];
    for (body, want) in cases {
        let r = post(body.clone()).await;
        r.assert_error(400, want);
    }
    // 1 MiB cap: a valid job padded past it is refused, one just under it is decoded.
    let pad = |n: usize| {
        let mut v = json!({"type": "captioning", "runner": RECORDER, "max_duration_sec": 60, "input_data": {"pad": ""}});
        v["input_data"]["pad"] = json!("x".repeat(n));
        v.to_string().into_bytes()
    };
    let small = pad(1000);
    let over = pad((1 << 20) - small.len() + 1000 + 1);
    assert!(over.len() > 1 << 20);
    post(over).await.assert_error(
        400,
        "failed to decode request body: http: request body too large",
    );
    let under = pad((1 << 20) - small.len() + 1000 - 10);
    assert!(under.len() <= 1 << 20);
    post(under)
        .await
        .assert_error(400, "invalid Type value: \"captioning\"");
    // The same rules on /jobs/init.
    for (body, want) in [
        ("", "failed to decode request body: EOF"),
        (
            "{\"Runners\":\"x\"}",
            "failed to decode request body: json: cannot unmarshal string into Go struct field ServiceConfig.Runners of type []string",
        ),
        ("{}", "invalid job service config: invalid empty Runners"),
        (
            "{\"Runners\":[\"other/calls-recorder:v0.8.13\"]}",
            "invalid job service config: failed to validate runner \"other/calls-recorder:v0.8.13\"",
        ),
    ] {
        let r = o.post("/jobs/init", Some(&auth), body.to_string()).await;
        r.assert_error(400, want);
    }
    let big = format!("{{\"Runners\":[\"{}\"]}}", "x".repeat(1 << 20));
    o.post("/jobs/init", Some(&auth), big).await.assert_error(
        400,
        "failed to decode request body: http: request body too large",
    );
    assert!(!o.all_logs().contains("panicked"));
}
