//! Jobs on a real Docker Engine (the private dockerd of `scripts/test.sh`), driven through the
//! built binary's HTTP API as the plugin drives it. The runner images are tiny local images whose
//! entrypoint (`tests/offloader/entrypoint.sh`) behaves as its env vars say.
//!
//! These tests run one at a time (nextest group `offloader-docker`): the concurrency limit counts
//! every labelled container of the daemon, as in Go, so parallel tests would disturb each other.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const CLEANUP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn successful_job_runs_as_specified_and_is_removed_with_its_volume_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let d = docker();
    let t0 = Instant::now();
    let r = o
        .create(&job_request(
            "recording",
            RECORDER,
            60,
            json!({"site_url": "http://mm.test:8065", "marker": "hello", "sleep_sec": 2, "auth_token": "tok-secret-1"}),
        ))
        .await;
    let create_latency = t0.elapsed();
    eprintln!("job create latency: {create_latency:?}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert!(r.body.ends_with("}\n"));
    let job = r.json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 12, "first 12 chars of the container ID");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(job["type"], "recording");
    assert_eq!(job["runner"], RECORDER);
    assert_eq!(job["max_duration_sec"], 60);
    assert_eq!(job["input_data"]["marker"], "hello");
    assert!(
        job["start_at"].as_i64().unwrap() > 1_600_000_000_000,
        "milliseconds"
    );
    assert!(job.get("stop_at").is_none());
    // Go's field order.
    let keys: Vec<&str> = job
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(&r.body[..8], "{\"type\":");
    assert!(keys.contains(&"input_data"));

    // The container as spec §3 describes it.
    let c = container(&d, &id)
        .await
        .expect("container exists while running");
    let labels = c.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(
        labels.get("app").map(String::as_str),
        Some("mattermost-calls-offloader")
    );
    let others: Vec<&String> = labels
        .keys()
        .filter(|k| *k != "app" && *k != "calls-test-build")
        .collect();
    assert!(
        others.is_empty(),
        "the only label (besides the test image's own): {others:?}"
    );
    let volume = data_volume(&c);
    let suffix = volume
        .strip_prefix("calls-recorder-")
        .expect("volume name prefix");
    assert_eq!(suffix.len(), 26);
    let hc = c.host_config.as_ref().unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("none"), "DOCKER_NETWORK");
    let sec = hc.security_opt.clone().unwrap_or_default();
    assert!(
        sec.iter()
            .any(|s| s.starts_with("seccomp=") && s.contains("\"openat2\"")),
        "{sec:?}"
    );
    assert_ne!(hc.privileged, Some(true));
    let env = c.config.as_ref().unwrap().env.clone().unwrap();
    assert!(
        env.contains(&"SITE_URL=http://mm.test:8065".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"SLEEP_SEC=2".to_string()));

    // The job ran (marker written) and exited 0: everything is removed.
    let r = o.wait_job(&id, CLEANUP, |r| r.status == 404).await;
    r.assert_error(404, "failed to get job failed to get job: error: not found");
    assert_removed(&d, &id, &volume, CLEANUP).await;
    assert!(
        !o.all_logs().contains("tok-secret-1"),
        "input_data values are never logged"
    );
    assert!(o.log_contains("\"input_keys\""), "keys are");
    assert_eq!(
        o.metric("calls_offloader_jobs_succeeded_total{type=\"recording\"}")
            .await,
        1.0
    );
    assert_eq!(
        o.metric("calls_offloader_jobs_created_total{type=\"recording\"}")
            .await,
        1.0
    );
    assert_eq!(
        o.metric("calls_offloader_jobs_running{type=\"recording\"}")
            .await,
        0.0
    );
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn failed_job_is_kept_with_stop_at_then_removed_by_the_retention_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(
        dir.path(),
        &[
            ("JOBS_FAILEDJOBSRETENTIONTIME", "1m"),
            ("CALLS_OFFLOADER_TEST_SWEEP_INTERVAL_MS", "500"),
        ],
    );
    let d = docker();
    let r = o
        .create(&job_request(
            "transcribing",
            TRANSCRIBER,
            60,
            json!({"exit_code": 3, "marker": "keep"}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = o
        .wait_job(&id, CLEANUP, |r| {
            r.status == 200 && r.json().get("stop_at").is_some()
        })
        .await;
    let job = r.json();
    assert!(job["stop_at"].as_i64().unwrap() >= job["start_at"].as_i64().unwrap());
    // Kept for the admin: exited container (code 3) and its volume.
    let c = container(&d, &id).await.expect("failed container kept");
    let state = c.state.clone().unwrap();
    assert_eq!(state.exit_code, Some(3));
    let volume = data_volume(&c);
    assert!(volume.starts_with("calls-transcriber-"));
    assert!(volume_exists(&d, &volume).await);
    assert_eq!(
        o.metric("calls_offloader_jobs_failed_total{type=\"transcribing\"}")
            .await,
        1.0
    );

    // The sweep removes both once the exit is older than the retention (1 minute).
    let mark = o.log_mark();
    assert_removed(&d, &id, &volume, Duration::from_secs(90)).await;
    o.wait_log_from(
        mark,
        "retention job: removed failed job",
        Duration::from_secs(5),
    )
    .await;
    // The record stays, as in Go.
    let r = o.get_job(&id).await;
    assert_eq!(r.status, 200);
    // DELETE of a job whose resources are already gone succeeds.
    let r = o
        .request(
            reqwest::Method::DELETE,
            &format!("/jobs/{id}"),
            Some(&plugin_auth()),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn max_duration_stops_the_job_and_exit_code_after_sigterm_decides() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let d = docker();
    // Clean exit after SIGTERM (the recorder uploads, exits 0): removed.
    let ok = o
        .create(&job_request(
            "recording",
            RECORDER,
            2,
            json!({"sleep_sec": 600}),
        ))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok_id = ok.json()["id"].as_str().unwrap().to_owned();
    let ok_volume = data_volume(&container(&d, &ok_id).await.unwrap());
    // Non-zero exit after SIGTERM: kept.
    let bad = o
        .create(&job_request(
            "recording",
            RECORDER,
            2,
            json!({"sleep_sec": 600, "term_exit_code": 7}),
        ))
        .await;
    assert_eq!(bad.status, 200, "{}", bad.body);
    let bad_id = bad.json()["id"].as_str().unwrap().to_owned();

    // A running job cannot be deleted.
    let r = o
        .request(
            reqwest::Method::DELETE,
            &format!("/jobs/{bad_id}"),
            Some(&plugin_auth()),
        )
        .await;
    r.assert_error(400, "job is running");

    let t0 = Instant::now();
    o.wait_job(&ok_id, CLEANUP, |r| r.status == 404).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "stopped at max duration, not before"
    );
    assert_removed(&d, &ok_id, &ok_volume, CLEANUP).await;
    o.wait_job(&bad_id, CLEANUP, |r| {
        r.status == 200 && r.json().get("stop_at").is_some()
    })
    .await;
    let c = container(&d, &bad_id).await.expect("kept");
    assert_eq!(c.state.clone().unwrap().exit_code, Some(7));
    let logs = o
        .request(
            reqwest::Method::GET,
            &format!("/jobs/{bad_id}/logs"),
            Some(&plugin_auth()),
        )
        .await;
    assert!(logs.body.contains("runner: got SIGTERM"), "{}", logs.body);

    // The admin removes the failed job: container and volume go, the record stays (Go quirk).
    let volume = data_volume(&c);
    let r = o
        .request(
            reqwest::Method::DELETE,
            &format!("/jobs/{bad_id}"),
            Some(&basic("", ADMIN_SECRET)),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_removed(&d, &bad_id, &volume, CLEANUP).await;
    assert_eq!(o.get_job(&bad_id).await.status, 200);
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn concurrency_limit_holds_under_parallel_creates() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[("JOBS_MAXCONCURRENTJOBS", "3")]);
    let d = docker();
    assert!(
        labelled_containers(&d).await.is_empty(),
        "another test left containers behind"
    );
    let body = job_request("recording", RECORDER, 3, json!({"sleep_sec": 600}));
    let o = std::sync::Arc::new(o);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (o, body) = (o.clone(), body.clone());
        tasks.push(tokio::spawn(async move { o.create(&body).await }));
    }
    let mut ids = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ids.push(r.json()["id"].as_str().unwrap().to_owned()),
            _ => {
                r.assert_error(
                    500,
                    "failed to create recording job: max concurrent jobs reached",
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        (ids.len(), refused),
        (3, 5),
        "exactly max_concurrent_jobs start"
    );
    assert_eq!(
        o.metric("calls_offloader_jobs_create_errors_total{type=\"recording\",reason=\"max_concurrent_jobs\"}")
            .await,
        5.0
    );
    // They stop at their max duration (exit 0 after SIGTERM) and are cleaned up.
    for id in &ids {
        o.wait_job(id, CLEANUP, |r| r.status == 404).await;
    }
    eventually(CLEANUP, "no labelled containers left", || async {
        labelled_containers(&d).await.is_empty()
    })
    .await;
    // With the jobs gone, a new one is admitted again.
    let r = o
        .create(&job_request("recording", RECORDER, 60, json!({})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    o.wait_job(&id, CLEANUP, |r| r.status == 404).await;
    let o = std::sync::Arc::try_unwrap(o).ok().expect("sole owner");
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn env_formatting_and_logs_as_go_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let input = json!({
        "echo_env": true,
        "sleep_sec": 30,
        "width": 1280,
        "video_rate": 2500,
        "big": 1000000,
        "ratio": 1.5,
        "live_captions_on": true,
        "webvtt_omit_speaker": false,
        "transcribe_api_options": "null",
        "nothing": null,
        "list": ["a", 2],
        "obj": {"b": 1, "a": "x"},
        "site_url": "http://mm.test:8065",
        "auth_token": "tok-secret-2",
    });
    let r = o
        .create(&job_request("transcribing", TRANSCRIBER, 3, input))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/jobs/{id}/logs");
    let deadline = Instant::now() + CLEANUP;
    let logs = loop {
        let r = o
            .request(reqwest::Method::GET, &path, Some(&plugin_auth()))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body.contains("env: WIDTH=") {
            break r.body;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not print its environment: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for want in [
        "env: WIDTH=1280",
        "env: VIDEO_RATE=2500",
        "env: BIG=1e+06",
        "env: RATIO=1.5",
        "env: LIVE_CAPTIONS_ON=true",
        "env: WEBVTT_OMIT_SPEAKER=false",
        "env: TRANSCRIBE_API_OPTIONS=null",
        "env: NOTHING=<nil>",
        "env: LIST=[a 2]",
        "env: OBJ=map[a:x b:1]",
        "env: SITE_URL=http://mm.test:8065",
        "env: AUTH_TOKEN=tok-secret-2",
        "runner: starting",
    ] {
        assert!(logs.contains(want), "missing {want:?} in:\n{logs}");
    }
    assert!(!logs.contains("env: DEV_MODE"), "nothing injected");
    assert!(
        !logs.contains("this line goes to stdout"),
        "only stderr, as in Go"
    );
    o.wait_job(&id, CLEANUP, |r| r.status == 404).await;
    // Logs of a container that does not exist: 403 with the reason.
    let r = o
        .request(
            reqwest::Method::GET,
            &format!("/jobs/{id}/logs"),
            Some(&plugin_auth()),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to get recording job logs: "),
        "{}",
        r.body
    );
    assert!(!o.all_logs().contains("tok-secret-2"));
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn init_prefetches_present_images_and_reports_unpullable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let body = format!("{}\n", json!({"Runners": [RECORDER, TRANSCRIBER]}));
    let r = o.post("/jobs/init", Some(&plugin_auth()), body).await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_type.as_deref()),
        (200, "", None)
    );
    let r = o
        .post(
            "/jobs/init",
            Some(&plugin_auth()),
            json!({"runners": [RECORDER]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "lower-case key accepted too: {}", r.body);
    drop(o);

    // A registry that exists only on loopback and refuses connections: the pull fails fast,
    // with the image named.
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[("JOBS_IMAGEREGISTRY", "127.0.0.1:9/mm")]);
    let runner = "127.0.0.1:9/mm/calls-recorder:v0.8.13";
    let t0 = Instant::now();
    let r = o
        .post(
            "/jobs/init",
            Some(&plugin_auth()),
            json!({"Runners": [runner]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        err.starts_with(&format!(
            "failed to update job runner: failed to pull docker image {runner}: "
        )),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    // The same for a job using it: nothing is created.
    let d = docker();
    let before = labelled_containers(&d).await.len();
    let r = o
        .create(&job_request("recording", runner, 60, json!({})))
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to create recording job: failed to update job runner: failed to pull docker image"),
        "{}",
        r.body
    );
    assert_eq!(labelled_containers(&d).await.len(), before);
    drop(o);
}

#[tokio::test]
async fn a_container_that_fails_to_start_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[]);
    let d = docker();
    let volumes_before = calls_volumes(&d).await;
    let r = o
        .create(&job_request("recording", BROKEN_RECORDER, 60, json!({})))
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        err.starts_with("failed to create recording job: failed to start container: "),
        "{err}"
    );
    assert!(
        labelled_containers(&d).await.is_empty(),
        "Go leaks it; this must not"
    );
    assert_eq!(
        calls_volumes(&d).await,
        volumes_before,
        "no volume left either"
    );
    assert_eq!(o.stop(), Some(0));
}

async fn calls_volumes(d: &bollard::Docker) -> Vec<String> {
    let mut v: Vec<String> = d
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .expect("list volumes")
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| n.starts_with("calls-"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn restart_reconciles_jobs_that_ended_or_kept_running_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let d = docker();
    let o = start(dir.path(), &[("JOBS_MAXCONCURRENTJOBS", "4")]);
    let create = |sleep: u64, exit: i64| {
        job_request(
            "recording",
            RECORDER,
            60,
            json!({"sleep_sec": sleep, "exit_code": exit}),
        )
    };
    // The short jobs must outlive the other creations and the stop (a busy machine takes a
    // second or more per creation): were one to end while the offloader is still up, its
    // watcher would clean it up and there would be nothing to reconcile.
    let ended_ok = o.create(&create(5, 0)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let volume_ok = data_volume(&container(&d, &ended_ok).await.unwrap());
    let ended_bad = o.create(&create(5, 4)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let still_running = o.create(&create(12, 0)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Stop the offloader at once: its watchers go away, the jobs keep running.
    assert_eq!(o.stop(), Some(0));
    assert!(container(&d, &still_running).await.is_some());
    eventually(
        CLEANUP,
        "the short jobs ended while the offloader was down",
        || async {
            let exited = |c: Option<bollard::models::ContainerInspectResponse>| {
                c.and_then(|c| c.state).and_then(|s| s.running) == Some(false)
            };
            exited(container(&d, &ended_ok).await) && exited(container(&d, &ended_bad).await)
        },
    )
    .await;
    assert!(
        container(&d, &ended_ok).await.is_some(),
        "nobody cleaned up while down"
    );

    let o = start(dir.path(), &[("JOBS_MAXCONCURRENTJOBS", "4")]);
    o.wait_log_from(0, "reconciled jobs from the previous run", CLEANUP)
        .await;
    // Ended successfully while down: cleaned up now.
    o.wait_job(&ended_ok, CLEANUP, |r| r.status == 404).await;
    assert_removed(&d, &ended_ok, &volume_ok, CLEANUP).await;
    // Failed while down: kept, stop_at set.
    let r = o
        .wait_job(&ended_bad, CLEANUP, |r| {
            r.status == 200 && r.json().get("stop_at").is_some()
        })
        .await;
    assert!(r.json()["stop_at"].as_i64().unwrap() > 0);
    // Still running: watched again, cleaned up when it ends.
    let line = o
        .wait_log_from(
            0,
            "re-attaching watcher to a job that kept running",
            CLEANUP,
        )
        .await;
    assert!(line.contains(&still_running), "{line}");
    o.wait_job(&still_running, CLEANUP, |r| r.status == 404)
        .await;
    // Clean up the failed one.
    let r = o
        .request(
            reqwest::Method::DELETE,
            &format!("/jobs/{ended_bad}"),
            Some(&plugin_auth()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(CLEANUP, "nothing left", || async {
        labelled_containers(&d).await.is_empty()
    })
    .await;
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn output_logs_copies_job_output_into_the_offloader_log() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), &[("JOBS_DOCKER_OUTPUTLOGS", "true")]);
    let r = o
        .create(&job_request(
            "recording",
            RECORDER,
            60,
            json!({"sleep_sec": 1}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    o.wait_log_from(0, "runner: starting", CLEANUP).await;
    o.wait_log_from(0, "runner: this line goes to stdout", CLEANUP)
        .await;
    o.wait_job(&id, CLEANUP, |r| r.status == 404).await;
    assert_eq!(o.stop(), Some(0));
}

#[tokio::test]
async fn dev_mode_runs_local_master_images_and_the_limit_only_warns() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(
        dir.path(),
        &[("DEV_MODE", "true"), ("JOBS_MAXCONCURRENTJOBS", "1")],
    );
    let d = docker();
    let mut ids = Vec::new();
    for runner in ["anything-goes", ""] {
        let r = o
            .create(&job_request(
                "transcribing",
                runner,
                3,
                json!({"sleep_sec": 600, "echo_env": true}),
            ))
            .await;
        assert_eq!(
            r.status, 200,
            "runner validation is skipped in DEV_MODE: {}",
            r.body
        );
        assert_eq!(r.json()["runner"], "calls-transcriber:master");
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    assert!(o.log_contains("max concurrent jobs reached (DEV_MODE: starting anyway)"));
    let c = container(&d, &ids[0]).await.expect("running");
    let env = c.config.unwrap().env.unwrap();
    assert!(env.contains(&"DEV_MODE=true".to_string()), "{env:?}");
    assert_eq!(
        c.host_config.unwrap().network_mode.as_deref(),
        Some("none"),
        "DOCKER_NETWORK wins over DEV_MODE's host network"
    );
    for id in &ids {
        o.wait_job(id, CLEANUP, |r| r.status == 404).await;
    }
    assert_eq!(o.stop(), Some(0));
}
