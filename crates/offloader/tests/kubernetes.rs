//! The Kubernetes backend against a fake API server on loopback (no cluster can run here): what
//! it sends (the Job JSON, selectors, delete options), how it reads watch streams, and how it
//! reports errors.

mod support_k8s;

use std::time::{Duration, Instant};

use calls_offloader::backend::kubernetes::{KubernetesBackend, KubernetesSettings};
use calls_offloader::backend::{BackendError, JobState, Outcome, RuntimeEnv};
use calls_offloader::job::JobConfig;
use serde_json::{Value, json};
use support_k8s::FakeK8s;

const NS: &str = "calls";

fn env() -> RuntimeEnv {
    RuntimeEnv {
        k8s_namespace: Some(NS.into()),
        ..Default::default()
    }
}

async fn backend(
    fake: &FakeK8s,
    settings: KubernetesSettings,
    env: RuntimeEnv,
) -> KubernetesBackend {
    KubernetesBackend::with_client(fake.client(), settings, env)
        .await
        .expect("backend")
}

fn recording() -> JobConfig {
    JobConfig {
        job_type: "recording".into(),
        max_duration_sec: 3600,
        runner: "mattermost/calls-recorder:v0.8.13".into(),
        input_data: Some(
            json!({"site_url": "https://mm.example.com", "call_id": "c1", "width": 1280})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    }
}

fn foreign_job(name: &str, labels: Value, status: Value) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}]}}},
        "status": status,
    })
}

fn tolerations_sent(fake: &FakeK8s) -> Value {
    let created = fake.created();
    assert_eq!(created.len(), 1, "one Job created");
    created[0]["spec"]["template"]["spec"]["tolerations"].clone()
}

#[tokio::test]
async fn create_posts_the_spec_job() {
    let fake = FakeK8s::start().await;
    let settings = KubernetesSettings {
        jobs_resource_requirements:
            r#"{"recording":{"limits":{"cpu":"2000m"},"requests":{"cpu":"1000m"}}}"#.into(),
        persistent_volume_claim_name: "calls-pvc".into(),
        node_sysctls: "kernel.unprivileged_userns_clone=1".into(),
        failed_jobs_retention: Duration::from_secs(86_400),
    };
    let env = RuntimeEnv {
        security_context_privileged: true,
        ..env()
    };
    let b = backend(&fake, settings, env).await;
    let started = b.start(&recording()).await.expect("start");
    let id = started.id.clone();
    let suffix = id.strip_prefix("calls-recorder-job-").expect("prefix");
    assert_eq!(suffix.len(), 26);
    assert!(
        suffix
            .chars()
            .all(|c| "ybndrfg8ejkmcpqxot1uwisza345h769".contains(c))
    );
    assert_eq!(started.runner, "mattermost/calls-recorder:v0.8.13");

    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/apis/batch/v1/namespaces/calls/jobs");

    let labels = json!({"app": "mattermost-calls-offloader", "job_name": id});
    let expected = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": id, "namespace": NS, "labels": labels},
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "initContainers": [{
                        "name": format!("{id}-init-0"),
                        "image": "busybox:1.36",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sysctl", "-w", "kernel.unprivileged_userns_clone=1"],
                        "securityContext": {"privileged": true},
                    }],
                    "containers": [{
                        "name": id,
                        "image": "mattermost/calls-recorder:v0.8.13",
                        "imagePullPolicy": "IfNotPresent",
                        "volumeMounts": [{"name": id, "mountPath": "/data"}],
                        "env": [
                            {"name": "CALL_ID", "value": "c1"},
                            {"name": "SITE_URL", "value": "https://mm.example.com"},
                            {"name": "WIDTH", "value": "1280"},
                        ],
                        "resources": {"limits": {"cpu": "2000m"}, "requests": {"cpu": "1000m"}},
                        "securityContext": {"privileged": true},
                    }],
                    "volumes": [{"name": id, "persistentVolumeClaim": {"claimName": "calls-pvc"}}],
                    "tolerations": [
                        {"key": "utilities", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
                    ],
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 300,
                    "activeDeadlineSeconds": 3600,
                },
            },
        },
    });
    assert_eq!(fake.created(), vec![expected]);
    assert_eq!(b.state(&id).await.expect("state"), JobState::Running);
}

#[tokio::test]
async fn running_count_ignores_foreign_and_finished_jobs() {
    let fake = FakeK8s::start().await;
    let b = backend(&fake, KubernetesSettings::default(), env()).await;
    let ours = json!({"app": "mattermost-calls-offloader"});
    fake.insert_job(
        NS,
        foreign_job("backup-123", json!({"app": "backup"}), json!({})),
    );
    fake.insert_job(
        NS,
        foreign_job("unlabelled", json!({}), json!({"active": 1})),
    );
    fake.insert_job(
        NS,
        foreign_job("done", ours.clone(), json!({"succeeded": 1})),
    );
    fake.insert_job(
        NS,
        foreign_job("broken", ours.clone(), json!({"failed": 1})),
    );
    fake.insert_job(
        "other-ns",
        foreign_job("elsewhere", ours.clone(), json!({})),
    );
    assert_eq!(b.running_count().await.expect("count"), 0);

    b.start(&recording()).await.expect("start 1");
    b.start(&recording()).await.expect("start 2");
    fake.insert_job(
        NS,
        foreign_job("older-run", ours, json!({"active": 1, "failed": 0})),
    );
    assert_eq!(b.running_count().await.expect("count"), 3);

    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/apis/batch/v1/namespaces/calls/jobs")
        .collect();
    assert!(!lists.is_empty());
    for r in lists {
        assert_eq!(
            r.query.get("labelSelector").map(String::as_str),
            Some("app=mattermost-calls-offloader")
        );
    }
}

/// Starts a job and a waiter on it; returns once the waiter's watch is open.
async fn start_and_watch(
    fake: &FakeK8s,
    b: std::sync::Arc<KubernetesBackend>,
    remaining: Duration,
) -> (String, tokio::task::JoinHandle<Outcome>) {
    let id = b.start(&recording()).await.expect("start").id;
    let waiter = {
        let (b, id) = (b.clone(), id.clone());
        tokio::spawn(async move { b.wait(&id, remaining).await })
    };
    fake.wait_until("the watch to open", |f| f.open_watches() == 1)
        .await;
    (id, waiter)
}

async fn outcome(waiter: tokio::task::JoinHandle<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("wait returned in time")
        .expect("wait task")
}

#[tokio::test]
async fn wait_reports_success_from_the_watch() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(3600)).await;

    let watch = &fake.watch_requests()[0];
    assert_eq!(watch.path, "/apis/batch/v1/namespaces/calls/jobs");
    assert_eq!(
        watch.query.get("labelSelector"),
        Some(&format!("job_name=={id}"))
    );
    let timeout: u64 = watch.query["timeoutSeconds"]
        .parse()
        .expect("timeoutSeconds");
    assert!(
        (3899..=3900).contains(&timeout),
        "remaining + 300 s, got {timeout}"
    );

    fake.set_job_status(NS, &id, json!({"active": 1}));
    fake.set_job_status(NS, &id, json!({"succeeded": 1}));
    assert_eq!(outcome(waiter).await, Outcome::Succeeded);
    assert_eq!(
        b.state(&id).await.expect("state"),
        JobState::Ended(Outcome::Succeeded)
    );
}

#[tokio::test]
async fn wait_reports_failure_from_the_watch() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(60)).await;
    // DeadlineExceeded: the Job controller reports the pod as failed.
    fake.set_job_status(NS, &id, json!({"failed": 1}));
    assert_eq!(outcome(waiter).await, Outcome::Failed);
    assert_eq!(
        b.state(&id).await.expect("state"),
        JobState::Ended(Outcome::Failed)
    );
}

#[tokio::test]
async fn wait_reports_gone_when_the_job_is_deleted() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(60)).await;
    fake.remove_job(NS, &id);
    assert_eq!(outcome(waiter).await, Outcome::Gone);
    assert!(matches!(b.state(&id).await, Err(BackendError::NotFound)));
}

#[tokio::test]
async fn wait_without_a_verdict_fails_at_the_deadline() {
    let fake = FakeK8s::start().await;
    let b = backend(&fake, KubernetesSettings::default(), env())
        .await
        .with_watch_grace(Duration::from_secs(1));
    let id = b.start(&recording()).await.expect("start").id;
    let began = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), b.wait(&id, Duration::ZERO))
        .await
        .expect("wait returned in time");
    assert_eq!(got, Outcome::Failed);
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    let watch = &fake.watch_requests()[0];
    assert_eq!(
        watch.query.get("timeoutSeconds").map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn a_dropped_watch_is_resumed() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(60)).await;

    fake.drop_watches();
    fake.wait_until("a second watch", |f| {
        f.watch_requests().len() >= 2 && f.open_watches() == 1
    })
    .await;
    assert!(!waiter.is_finished(), "a dropped watch is not a verdict");
    fake.set_job_status(NS, &id, json!({"succeeded": 1}));
    assert_eq!(outcome(waiter).await, Outcome::Succeeded);
}

#[tokio::test]
async fn a_verdict_reached_while_disconnected_is_not_missed() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(60)).await;

    // The status changes with no watcher connected; only a fresh list can see it.
    fake.drop_watches();
    fake.set_job_status(NS, &id, json!({"succeeded": 1}));
    assert_eq!(outcome(waiter).await, Outcome::Succeeded);
}

#[tokio::test]
async fn an_expired_watch_is_listed_and_watched_again() {
    let fake = FakeK8s::start().await;
    let b = std::sync::Arc::new(backend(&fake, KubernetesSettings::default(), env()).await);
    let (id, waiter) = start_and_watch(&fake, b.clone(), Duration::from_secs(60)).await;

    fake.expire_watches();
    fake.wait_until("a new watch after 410", |f| {
        f.watch_requests().len() >= 2 && f.open_watches() == 1
    })
    .await;
    fake.remove_job(NS, &id);
    assert_eq!(outcome(waiter).await, Outcome::Gone);
}

#[tokio::test]
async fn delete_propagates_to_pods_in_the_background() {
    let fake = FakeK8s::start().await;
    let b = backend(&fake, KubernetesSettings::default(), env()).await;
    let id = b.start(&recording()).await.expect("start").id;
    fake.add_pod(NS, &format!("{id}-x7k2p"), &id, b"log");

    b.delete(&id).await.expect("delete");
    assert_eq!(
        fake.deletes(),
        vec![(id.clone(), Some("Background".into()))]
    );
    assert!(fake.job(NS, &id).is_none());
    assert_eq!(fake.pod_count(), 0);

    assert!(matches!(b.delete(&id).await, Err(BackendError::NotFound)));
}

#[tokio::test]
async fn logs_are_the_first_pods_bytes() {
    let fake = FakeK8s::start().await;
    let b = backend(&fake, KubernetesSettings::default(), env()).await;
    let id = b.start(&recording()).await.expect("start").id;
    assert!(matches!(b.logs(&id).await, Err(BackendError::NotFound)));

    let log = b"recorder starting\n\xff not utf-8\nstderr line\n";
    fake.add_pod(NS, &format!("{id}-a1b2c"), &id, log);
    fake.add_pod(NS, "unrelated-pod", "calls-recorder-job-other", b"other");
    assert_eq!(b.logs(&id).await.expect("logs"), log.to_vec());

    let pod_lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/calls/pods")
        .collect();
    assert_eq!(
        pod_lists[0].query.get("labelSelector"),
        Some(&format!("job_name=={id}"))
    );
}

#[tokio::test]
async fn state_of_a_missing_job_is_not_found() {
    let fake = FakeK8s::start().await;
    let b = backend(&fake, KubernetesSettings::default(), env()).await;
    assert!(matches!(
        b.state("calls-recorder-job-nosuchjob").await,
        Err(BackendError::NotFound)
    ));
    // Nothing is running and nothing is in the background.
    b.init(&["mattermost/calls-recorder:v0.8.13".into()])
        .await
        .expect("init is a no-op");
    b.shutdown().await;
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn tolerations_come_from_env_json_or_yaml() {
    let fake = FakeK8s::start().await;
    let env_json = RuntimeEnv {
        k8s_tolerations: Some(
            r#"[{"key":"calls","operator":"Exists","effect":"NoSchedule"}]"#.into(),
        ),
        // The env string wins over the file.
        k8s_tolerations_file: Some("/nonexistent/tolerations.yaml".into()),
        ..env()
    };
    let b = backend(&fake, KubernetesSettings::default(), env_json).await;
    b.start(&recording()).await.expect("start");
    assert_eq!(
        tolerations_sent(&fake),
        json!([{"key": "calls", "operator": "Exists", "effect": "NoSchedule"}])
    );

    let fake = FakeK8s::start().await;
    let env_yaml = RuntimeEnv {
        k8s_tolerations: Some(
            "- key: gpu\n  operator: Equal\n  value: \"yes\"\n  effect: NoExecute\n  tolerationSeconds: 30\n"
                .into(),
        ),
        ..env()
    };
    let b = backend(&fake, KubernetesSettings::default(), env_yaml).await;
    b.start(&recording()).await.expect("start");
    assert_eq!(
        tolerations_sent(&fake),
        json!([{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30}])
    );
}

#[tokio::test]
async fn tolerations_come_from_a_file_read_at_every_creation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tolerations.yaml");
    std::fs::write(&path, "- key: a\n  operator: Exists\n").expect("write");
    let fake = FakeK8s::start().await;
    let env = RuntimeEnv {
        k8s_tolerations_file: Some(path.display().to_string()),
        ..env()
    };
    let b = backend(&fake, KubernetesSettings::default(), env).await;
    b.start(&recording()).await.expect("start");
    std::fs::write(&path, r#"[{"key":"b","operator":"Exists"}]"#).expect("rewrite as JSON");
    b.start(&recording()).await.expect("start again");
    let sent: Vec<Value> = fake
        .created()
        .iter()
        .map(|j| j["spec"]["template"]["spec"]["tolerations"].clone())
        .collect();
    assert_eq!(
        sent,
        vec![
            json!([{"key": "a", "operator": "Exists"}]),
            json!([{"key": "b", "operator": "Exists"}]),
        ]
    );
}

#[tokio::test]
async fn bad_tolerations_fail_creation_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(&bad_file, "- key: [unclosed\n").expect("write");
    let missing = dir.path().join("missing.yaml");
    let cases = [
        (
            Some("[{\"key\":".to_owned()),
            None,
            "failed to unmarshal tolerations",
        ),
        (
            Some("key: not-a-list".to_owned()),
            None,
            "failed to unmarshal tolerations",
        ),
        (
            None,
            Some(bad_file.display().to_string()),
            "failed to unmarshal tolerations",
        ),
        (
            None,
            Some(missing.display().to_string()),
            "K8S_JOB_POD_TOLERATIONS_FILE",
        ),
    ];
    let fake = FakeK8s::start().await;
    for (text, file, want) in cases {
        let env = RuntimeEnv {
            k8s_tolerations: text,
            k8s_tolerations_file: file,
            ..env()
        };
        let b = backend(&fake, KubernetesSettings::default(), env).await;
        match b.start(&recording()).await {
            Err(BackendError::Other(e)) => {
                assert!(e.starts_with("failed to get job pod tolerations: "), "{e}");
                assert!(e.contains(want), "{e}");
            }
            other => panic!("expected a tolerations error, got {other:?}"),
        }
    }
    assert!(fake.created().is_empty());
}

#[tokio::test]
async fn dev_mode_runs_the_local_image() {
    let fake = FakeK8s::start().await;
    let env = RuntimeEnv {
        dev_mode: true,
        ..env()
    };
    let b = backend(&fake, KubernetesSettings::default(), env).await;
    let started = b.start(&recording()).await.expect("start");
    assert_eq!(started.runner, "calls-recorder:master");
    let job = &fake.created()[0];
    assert_eq!(job["spec"]["template"]["spec"]["hostNetwork"], json!(true));
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("calls-recorder:master")
    );
}

#[tokio::test]
async fn bad_resource_requirements_fail_construction() {
    let fake = FakeK8s::start().await;
    let settings = KubernetesSettings {
        jobs_resource_requirements: "{\"recording\": ".into(),
        ..Default::default()
    };
    let err = KubernetesBackend::with_client(fake.client(), settings, env())
        .await
        .err()
        .expect("error");
    assert!(
        err.contains("jobs.kubernetes.jobs_resource_requirements"),
        "{err}"
    );
}

fn write_kubeconfig(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: tester\n  user:\n    token: not-a-secret\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: from-kubeconfig\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path.display().to_string()
}

#[tokio::test]
async fn connect_uses_the_kubeconfig_file() {
    let fake = FakeK8s::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = RuntimeEnv {
        kubeconfig: Some(write_kubeconfig(dir.path(), &fake.url())),
        ..env()
    };
    let b = KubernetesBackend::connect(KubernetesSettings::default(), env)
        .await
        .expect("connect");
    // K8S_NAMESPACE decides, as in Go, not the kubeconfig context.
    assert_eq!(b.namespace(), NS);
    assert_eq!(b.running_count().await.expect("count"), 0);
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec!["/version", "/apis/batch/v1/namespaces/calls/jobs"]
    );

    // Without K8S_NAMESPACE the namespace is `default`.
    let env = RuntimeEnv {
        kubeconfig: Some(write_kubeconfig(dir.path(), &fake.url())),
        ..Default::default()
    };
    let b = KubernetesBackend::connect(KubernetesSettings::default(), env)
        .await
        .expect("connect");
    assert_eq!(b.namespace(), "default");
}

#[tokio::test]
async fn connect_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = RuntimeEnv {
        kubeconfig: Some(dir.path().join("nope").display().to_string()),
        ..env()
    };
    let err = KubernetesBackend::connect(KubernetesSettings::default(), missing)
        .await
        .err()
        .expect("missing kubeconfig");
    assert!(err.contains("KUBECONFIG"), "{err}");

    // A server that is not there: the start-up version call fails.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let env = RuntimeEnv {
        kubeconfig: Some(write_kubeconfig(dir.path(), &format!("http://{closed}"))),
        ..env()
    };
    let err = KubernetesBackend::connect(KubernetesSettings::default(), env)
        .await
        .err()
        .expect("no server");
    assert!(
        err.starts_with("failed to get kubernetes server version"),
        "{err}"
    );
}
