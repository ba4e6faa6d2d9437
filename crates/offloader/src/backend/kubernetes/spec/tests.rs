//! The built Job checked field by field against spec §4, plus one golden JSON serialization.

use std::time::Duration;

use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::*;

const ALPHABET: &str = "ybndrfg8ejkmcpqxot1uwisza345h769";
const ID: &str = "calls-recorder-job-8bq3k1xwa5jyfmp7o9ahhtsdre";

fn config(job_type: &str, runner: &str, input: Value) -> JobConfig {
    JobConfig {
        job_type: job_type.into(),
        max_duration_sec: 3600,
        runner: runner.into(),
        input_data: match input {
            Value::Object(m) => Some(m),
            _ => None,
        },
    }
}

fn recording() -> JobConfig {
    config(
        "recording",
        "mattermost/calls-recorder:v0.8.13",
        json!({
            "site_url": "http://localhost:8065",
            "call_id": "c1",
            "width": 1280,
            "live_captions_on": true,
        }),
    )
}

fn opts() -> BuildOptions {
    BuildOptions {
        namespace: "calls".into(),
        ..Default::default()
    }
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn env_of(c: &Container) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn job_names_use_the_type_prefix_and_a_mattermost_id() {
    let id26 = calls_core::ids::new_id();
    assert_eq!(id26.len(), 26);
    assert!(id26.chars().all(|c| ALPHABET.contains(c)));
    let rec = job_name("recording", &id26).expect("recording");
    assert_eq!(rec, format!("calls-recorder-job-{id26}"));
    assert_eq!(rec.len(), 45);
    let tr = job_name("transcribing", &id26).expect("transcribing");
    assert_eq!(tr, format!("calls-transcriber-job-{id26}"));
    assert_eq!(tr.len(), 48);
    assert_eq!(job_name("captioning", &id26), None);
}

#[test]
fn default_job_matches_the_spec_field_by_field() {
    let (job, runner) = build_job(ID, &recording(), &opts(), default_tolerations()).expect("build");
    assert_eq!(runner, "mattermost/calls-recorder:v0.8.13");

    let labels = BTreeMap::from([
        ("app".to_owned(), "mattermost-calls-offloader".to_owned()),
        ("job_name".to_owned(), ID.to_owned()),
    ]);
    assert_eq!(job.metadata.name.as_deref(), Some(ID));
    assert_eq!(job.metadata.namespace.as_deref(), Some("calls"));
    assert_eq!(job.metadata.labels.as_ref(), Some(&labels));

    let spec = job.spec.as_ref().expect("spec");
    assert_eq!(spec.parallelism, Some(1));
    assert_eq!(spec.completions, Some(1));
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(
        spec.ttl_seconds_after_finished, None,
        "no TTL without retention"
    );
    let tmeta = spec.template.metadata.as_ref().expect("template metadata");
    assert_eq!(tmeta.labels.as_ref(), Some(&labels));

    let pod = pod_spec(&job);
    assert_eq!(pod.init_containers, None, "no sysctls, no init containers");
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, ID);
    assert_eq!(
        c.image.as_deref(),
        Some("mattermost/calls-recorder:v0.8.13")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].name, ID);
    assert_eq!(mounts[0].mount_path, "/data");
    assert_eq!(
        env_of(c),
        vec![
            ("CALL_ID".to_owned(), "c1".to_owned()),
            ("LIVE_CAPTIONS_ON".to_owned(), "true".to_owned()),
            // No DEV_MODE: the site URL is passed through untouched.
            ("SITE_URL".to_owned(), "http://localhost:8065".to_owned()),
            ("WIDTH".to_owned(), "1280".to_owned()),
        ]
    );
    assert_eq!(c.resources, Some(ResourceRequirements::default()));
    let sc = c.security_context.as_ref().expect("security context");
    assert_eq!(sc.privileged, Some(false), "explicitly false");
    assert_eq!(c.command, None);

    let volumes = pod.volumes.as_ref().expect("volumes");
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].name, ID);
    assert_eq!(volumes[0].empty_dir, Some(EmptyDirVolumeSource::default()));
    assert_eq!(volumes[0].persistent_volume_claim, None);

    assert_eq!(pod.tolerations.as_ref(), Some(&default_tolerations()));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.termination_grace_period_seconds, Some(300));
    assert_eq!(pod.active_deadline_seconds, Some(3600));
    assert_eq!(pod.host_network, None);
    assert_eq!(pod.node_selector, None);
    assert_eq!(pod.affinity, None);
    assert_eq!(pod.service_account_name, None);
    assert_eq!(pod.image_pull_secrets, None);
    assert_eq!(pod.security_context, None);
    assert!(job.status.is_none());

    // The wire form spells the default toleration and the empty volume source out.
    let v = serde_json::to_value(&job).expect("json");
    assert_eq!(v["apiVersion"], "batch/v1");
    assert_eq!(v["kind"], "Job");
    assert_eq!(
        v["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "utilities", "operator": "Equal", "value": "true", "effect": "NoSchedule"}])
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["volumes"],
        json!([{"name": ID, "emptyDir": {}}])
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({})
    );
}

/// Every optional feature at once, compared with a reviewed golden serialization.
#[test]
fn full_featured_job_serializes_to_the_golden_json() {
    let id = "calls-transcriber-job-8bq3k1xwa5jyfmp7o9ahhtsdre";
    let cfg = config(
        "transcribing",
        "mattermost/calls-transcriber:v0.7.2",
        json!({
            "call_id": "c1",
            "num_threads": 2,
            "transcribe_api_options": "null",
            "live_captions_on": false,
        }),
    );
    let opts = BuildOptions {
        namespace: "calls".into(),
        resources: parse_resources(
            r#"{"transcribing":{"limits":{"cpu":"4000m"},"requests":{"cpu":"2000m"}},"recording":{"limits":{"cpu":"2000m"},"requests":{"cpu":"1000m"}}}"#,
        )
        .expect("resources"),
        persistent_volume_claim_name: "calls-data".into(),
        node_sysctls: parse_sysctls("kernel.unprivileged_userns_clone=1,net.core.somaxconn=1024"),
        failed_jobs_retention: Duration::from_secs(30 * 86_400),
        dev_mode: false,
        privileged: true,
    };
    let tolerations = parse_tolerations(
        "- key: dedicated\n  operator: Exists\n  effect: NoExecute\n  tolerationSeconds: 60\n",
    )
    .expect("tolerations");
    let (job, _) = build_job(id, &cfg, &opts, tolerations).expect("build");
    let got = serde_json::to_value(&job).expect("json");
    let golden: Value =
        serde_json::from_str(include_str!("../testdata/job_transcribing.json")).expect("golden");
    assert_eq!(
        got,
        golden,
        "got:\n{}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );
}

#[test]
fn sysctl_init_containers_follow_the_privileged_flag() {
    for privileged in [false, true] {
        let opts = BuildOptions {
            node_sysctls: parse_sysctls("a.b=1,c.d=2"),
            privileged,
            ..opts()
        };
        let (job, _) = build_job(ID, &recording(), &opts, vec![]).expect("build");
        let pod = pod_spec(&job);
        let init = pod.init_containers.as_ref().expect("init containers");
        assert_eq!(init.len(), 2);
        for (i, (c, ctl)) in init.iter().zip(["a.b=1", "c.d=2"]).enumerate() {
            assert_eq!(c.name, format!("{ID}-init-{i}"));
            assert_eq!(c.image.as_deref(), Some("busybox:1.36"));
            assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
            assert_eq!(
                c.command.as_deref(),
                Some(&["sysctl".to_owned(), "-w".to_owned(), ctl.to_owned()][..])
            );
            assert_eq!(
                c.security_context.as_ref().and_then(|s| s.privileged),
                Some(privileged)
            );
        }
        let main = &pod.containers[0];
        assert_eq!(
            main.security_context.as_ref().and_then(|s| s.privileged),
            Some(privileged)
        );
        assert_eq!(pod.tolerations, Some(vec![]));
    }
}

#[test]
fn sysctl_list_is_split_on_commas_without_blank_entries() {
    assert!(parse_sysctls("").is_empty());
    assert_eq!(parse_sysctls("a=1"), vec!["a=1"]);
    assert_eq!(parse_sysctls("a=1, b=2,"), vec!["a=1", "b=2"]);
}

#[test]
fn dev_mode_uses_the_local_image_host_network_and_a_reachable_site_url() {
    let opts = BuildOptions {
        dev_mode: true,
        ..opts()
    };
    let (job, runner) = build_job(ID, &recording(), &opts, vec![]).expect("build");
    assert_eq!(runner, "calls-recorder:master");
    let pod = pod_spec(&job);
    assert_eq!(pod.host_network, Some(true));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("calls-recorder:master"));
    let env = env_of(c);
    assert!(env.contains(&(
        "SITE_URL".to_owned(),
        "http://host.minikube.internal:8065".to_owned()
    )));
    assert_eq!(
        env.last(),
        Some(&("DEV_MODE".to_owned(), "true".to_owned()))
    );

    let tr = config("transcribing", "", json!({}));
    let (_, runner) = build_job(ID, &tr, &opts, vec![]).expect("build");
    assert_eq!(runner, "calls-transcriber:master");
}

#[test]
fn dev_site_url_rewrites_only_local_hosts() {
    let cases = [
        (
            "http://localhost:8065",
            "http://host.minikube.internal:8065",
        ),
        (
            "http://127.0.0.1:8065/",
            "http://host.minikube.internal:8065/",
        ),
        ("https://localhost", "https://host.minikube.internal"),
        (
            "http://u:p@localhost:8065/mm?x=1#f",
            "http://u:p@host.minikube.internal:8065/mm?x=1#f",
        ),
        ("http://mm.example.com:8065", "http://mm.example.com:8065"),
        (
            "http://localhost.example.com",
            "http://localhost.example.com",
        ),
        ("not a url", "not a url"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(dev_site_url(input), want, "{input}");
    }
}

#[test]
fn retention_sets_the_ttl_in_seconds_only_when_positive() {
    let ttl = |d: Duration| {
        let opts = BuildOptions {
            failed_jobs_retention: d,
            ..opts()
        };
        let (job, _) = build_job(ID, &recording(), &opts, vec![]).expect("build");
        job.spec.and_then(|s| s.ttl_seconds_after_finished)
    };
    assert_eq!(ttl(Duration::ZERO), None);
    assert_eq!(ttl(Duration::from_secs(60)), Some(60));
    assert_eq!(ttl(Duration::from_secs(7 * 86_400)), Some(604_800));
    assert_eq!(ttl(Duration::from_secs(u64::MAX)), Some(i32::MAX));
}

#[test]
fn resources_are_picked_per_job_type() {
    let opts = BuildOptions {
        resources: parse_resources("recording:\n  limits:\n    cpu: 2\n    memory: 4Gi\n")
            .expect("yaml"),
        ..opts()
    };
    let (job, _) = build_job(ID, &recording(), &opts, vec![]).expect("build");
    let res = pod_spec(&job).containers[0]
        .resources
        .clone()
        .expect("resources");
    let limits = res.limits.expect("limits");
    assert_eq!(limits.get("cpu"), Some(&Quantity("2".into())));
    assert_eq!(limits.get("memory"), Some(&Quantity("4Gi".into())));
    assert_eq!(res.requests, None);

    let tr = config("transcribing", "x", json!({}));
    let (job, _) = build_job(ID, &tr, &opts, vec![]).expect("build");
    assert_eq!(
        pod_spec(&job).containers[0].resources,
        Some(ResourceRequirements::default())
    );
}

#[test]
fn resource_requirement_errors_name_the_config_key() {
    assert!(parse_resources("").expect("empty").is_empty());
    assert!(parse_resources("  \n").expect("blank").is_empty());
    for bad in [
        "{not json",
        "[1,2]",
        "recording: [",
        r#"{"recording":{"limits":"lots"}}"#,
        "just a string",
    ] {
        let err = parse_resources(bad).expect_err(bad);
        assert!(
            err.contains("jobs.kubernetes.jobs_resource_requirements")
                && err.contains("JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn tolerations_parse_from_json_and_yaml() {
    let want = vec![Toleration {
        key: Some("k".into()),
        operator: Some("Equal".into()),
        value: Some("v".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: Some(30),
    }];
    let json_text = r#"[{"key":"k","operator":"Equal","value":"v","effect":"NoSchedule","tolerationSeconds":30}]"#;
    assert_eq!(parse_tolerations(json_text).expect("json"), want);
    let yaml_text = "- key: k\n  operator: Equal\n  value: \"v\"\n  effect: NoSchedule\n  tolerationSeconds: 30\n";
    assert_eq!(parse_tolerations(yaml_text).expect("yaml"), want);
    assert_eq!(parse_tolerations("[]").expect("empty list"), vec![]);
    for bad in [
        "[{",
        "key: k",
        "- key: [1",
        r#"[{"tolerationSeconds":"soon"}]"#,
    ] {
        let err = parse_tolerations(bad).expect_err(bad);
        assert!(
            err.starts_with("failed to unmarshal tolerations"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn outcome_comes_from_the_status_counters() {
    let with = |failed: Option<i32>, succeeded: Option<i32>| Job {
        status: Some(JobStatus {
            failed,
            succeeded,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(job_outcome(&Job::default()), None);
    assert_eq!(job_outcome(&with(None, None)), None);
    assert_eq!(job_outcome(&with(Some(0), Some(0))), None);
    assert_eq!(job_outcome(&with(Some(1), None)), Some(Outcome::Failed));
    assert_eq!(job_outcome(&with(None, Some(1))), Some(Outcome::Succeeded));
    assert_eq!(job_outcome(&with(Some(1), Some(1))), Some(Outcome::Failed));
}

#[test]
fn bad_requests_are_errors_not_jobs() {
    let mut cfg = recording();
    cfg.job_type = "captioning".into();
    assert!(build_job(ID, &cfg, &opts(), vec![]).is_err());
    let mut cfg = recording();
    cfg.max_duration_sec = 0;
    let err = build_job(ID, &cfg, &opts(), vec![]).expect_err("zero duration");
    assert!(err.contains("MaxDurationSec"), "{err}");
}
