//! The binary's start-up contract: `-config`/`--config`, file + environment, invalid values and an
//! unreachable or silent Docker daemon failing with exit code 1 and one clear line, never a panic.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn stderr_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn retention_strings_fail_start_up_with_the_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    for (value, hint) in [("0", "\"0\""), ("45s", "\"45s\""), ("10dd", "\"10dd\"")] {
        let out = run_to_exit(dir.path(), &[("JOBS_FAILEDJOBSRETENTIONTIME", value)], &[]);
        assert_eq!(out.status.code(), Some(1), "{value}");
        let err = stderr_line(&out);
        assert_eq!(
            err,
            format!(
                "calls-offloader: invalid configuration: jobs.failed_jobs_retention_time (env JOBS_FAILEDJOBSRETENTIONTIME): invalid retention time format: {hint} (use N followed by m, h or d, e.g. 30m, 24h, 30d; 0d keeps failed jobs forever)\n"
            )
        );
    }
    // The same from a file.
    std::fs::write(
        dir.path().join("c.toml"),
        "[jobs]\nfailed_jobs_retention_time = \"10dd\"\n",
    )
    .unwrap();
    for args in [
        &["-config", "c.toml"][..],
        &["--config", "c.toml"],
        &["--config=c.toml"],
    ] {
        let out = run_to_exit(dir.path(), &[], args);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_line(&out).contains("invalid retention time format: \"10dd\""));
    }
}

#[test]
fn other_invalid_values_and_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for (env, want) in [
        (
            ("JOBS_MAXCONCURRENTJOBS", "0"),
            "jobs.max_concurrent_jobs (env JOBS_MAXCONCURRENTJOBS): should be greater than zero, got 0",
        ),
        (
            ("JOBS_APITYPE", "swarm"),
            "jobs.api_type (env JOBS_APITYPE): invalid APIType value: \"swarm\"",
        ),
        (
            ("API_SECURITY_ENABLEADMIN", "maybe"),
            "api.security.enable_admin (env API_SECURITY_ENABLEADMIN): invalid boolean",
        ),
    ] {
        let out = run_to_exit(dir.path(), &[env], &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_line(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
    assert_eq!(
        run_to_exit(dir.path(), &[], &["--bogus"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run_to_exit(dir.path(), &[], &["-config"]).status.code(),
        Some(2)
    );
    let v = run_to_exit(dir.path(), &[], &["-version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains("API v0.9.5"));
}

#[test]
fn docker_daemon_down_fails_start_up_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let host = format!("unix://{}", sock.display());
    let out = run_to_exit(dir.path(), &[("DOCKER_HOST", &host)], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_line(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("calls-offloader: failed to create docker client: "),
        "{err}"
    );
    assert!(err.contains(&format!("DOCKER_HOST={host}")), "{err}");
    assert!(err.contains("docker group"), "{err}");
    // A socket file nobody listens on.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let host = format!("unix://{}", dead.display());
    let out = run_to_exit(dir.path(), &[("DOCKER_HOST", &host)], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_line(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("calls-offloader: failed to get docker server version: "),
        "{err}"
    );
    assert!(err.contains(&format!("DOCKER_HOST={host}")), "{err}");
}

#[test]
fn a_silent_docker_daemon_times_out_after_10_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("silent.sock");
    // Accepts connections and never answers.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let _acceptor = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    let host = format!("unix://{}", sock.display());
    let t0 = Instant::now();
    let out = run_to_exit(dir.path(), &[("DOCKER_HOST", &host)], &[]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_line(&out);
    assert!(err.contains("no answer within 10s"), "{err}");
    assert!(err.contains(&format!("DOCKER_HOST={host}")), "{err}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "{took:?}"
    );
}

#[tokio::test]
async fn config_file_and_environment_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped sample loads as is (apart from where it listens and stores).
    let sample = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/calls-offloader.sample.toml");
    let o = start(dir.path(), &[]);
    drop(o);
    let o = start_with_args(
        dir.path(),
        &[("JOBS_MAXCONCURRENTJOBS", "7")],
        &["--config", sample.to_str().unwrap()],
    );
    let r = o.request(reqwest::Method::GET, "/version", None).await;
    assert_eq!(r.status, 200);
    assert!(
        o.log_contains("retention job is starting"),
        "the sample's 30d retention is on"
    );
}
