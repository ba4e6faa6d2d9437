//! The Kubernetes Job this service creates for one job request (spec §4), built without I/O so
//! every field can be checked against the spec in unit tests. Also the small parsers behind it:
//! per-type resource requirements, pod tolerations, node sysctls and the DEV_MODE site URL.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use crate::backend::{APP_LABEL_KEY, APP_LABEL_VALUE, Outcome};
use crate::job::{JOB_TYPE_RECORDING, JOB_TYPE_TRANSCRIBING, JobConfig, env_pairs};

/// The label that ties a Job and its pods to one job ID (watch and log selectors use it).
pub const JOB_NAME_LABEL: &str = "job_name";
/// Where the job's volume is mounted in the job container.
pub const VOLUME_PATH: &str = "/data";
/// The image of the sysctl init containers.
pub const INIT_CONTAINER_IMAGE: &str = "busybox:1.36";
/// Pod grace period; also how long the watch outlives `activeDeadlineSeconds`.
pub const TERMINATION_GRACE_SECS: i64 = 300;
/// The config key named in resource requirement errors.
pub const RESOURCES_KEY: &str = "jobs.kubernetes.jobs_resource_requirements";

/// Per job type resource requirements (`recording`, `transcribing`).
pub type JobsResources = BTreeMap<String, ResourceRequirements>;

/// Everything besides the request itself that shapes the Job.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    pub namespace: String,
    pub resources: JobsResources,
    /// `jobs.kubernetes.persistent_volume_claim_name`; empty means an `emptyDir` volume.
    pub persistent_volume_claim_name: String,
    /// `jobs.kubernetes.node_sysctls`, already split.
    pub node_sysctls: Vec<String>,
    /// `ttlSecondsAfterFinished` when non-zero.
    pub failed_jobs_retention: Duration,
    pub dev_mode: bool,
    /// `SECURITY_CONTEXT_PRIVILEGED`.
    pub privileged: bool,
}

/// The image prefix of a job type, which also names its Jobs.
pub fn job_prefix(job_type: &str) -> Option<&'static str> {
    match job_type {
        JOB_TYPE_RECORDING => Some("calls-recorder"),
        JOB_TYPE_TRANSCRIBING => Some("calls-transcriber"),
        _ => None,
    }
}

/// `calls-recorder-job-<id26>` / `calls-transcriber-job-<id26>`.
pub fn job_name(job_type: &str, id26: &str) -> Option<String> {
    job_prefix(job_type).map(|p| format!("{p}-job-{id26}"))
}

/// Parses `jobs.kubernetes.jobs_resource_requirements`: a JSON or YAML map from job type to a
/// Kubernetes `ResourceRequirements`. Empty means none. Bare numbers as quantities (`cpu: 2`) are
/// accepted as Kubernetes itself does.
pub fn parse_resources(text: &str) -> Result<JobsResources, String> {
    if text.trim().is_empty() {
        return Ok(JobsResources::new());
    }
    let bad = |e: String| {
        format!("invalid {RESOURCES_KEY} (env JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS): {e}")
    };
    let mut value = parse_json_or_yaml(text).map_err(bad)?;
    let Value::Object(types) = &mut value else {
        return Err(bad(
            "expected a map from job type to resource requirements".into()
        ));
    };
    for reqs in types.values_mut() {
        if let Value::Object(reqs) = reqs {
            for key in ["limits", "requests"] {
                if let Some(Value::Object(q)) = reqs.get_mut(key) {
                    quantities_as_strings(q);
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

fn quantities_as_strings(q: &mut Map<String, Value>) {
    for v in q.values_mut() {
        if let Value::Number(n) = v {
            *v = Value::String(n.to_string());
        }
    }
}

/// Splits `jobs.kubernetes.node_sysctls` on `,`. Unlike Go, blanks around entries and empty
/// entries (`a=1,` or `a=1, b=2`) are dropped: Go would run `sysctl -w ""` and fail every pod.
pub fn parse_sysctls(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The tolerations used when neither `K8S_JOB_POD_TOLERATIONS` nor its `_FILE` variant is set.
pub fn default_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("utilities".into()),
        operator: Some("Equal".into()),
        value: Some("true".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }]
}

/// Parses a toleration list given as JSON or YAML.
pub fn parse_tolerations(text: &str) -> Result<Vec<Toleration>, String> {
    let value =
        parse_json_or_yaml(text).map_err(|e| format!("failed to unmarshal tolerations: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("failed to unmarshal tolerations: {e}"))
}

/// Like Kubernetes' YAML-or-JSON decoder: text that starts with `{` or `[` is JSON, anything
/// else YAML. Only the first YAML document counts.
fn parse_json_or_yaml(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(|e| e.to_string());
    }
    let doc = serde_yaml::Deserializer::from_str(text)
        .next()
        .ok_or_else(|| "empty document".to_string())?;
    serde::Deserialize::deserialize(doc).map_err(|e: serde_yaml::Error| e.to_string())
}

/// DEV_MODE only: a `site_url` on `localhost`/`127.0.0.1` becomes `host.minikube.internal` with
/// the same port, so a pod can reach a Mattermost running on the developer's host. Go leaves a
/// dangling `:` when there is no port; this keeps the URL valid instead.
pub fn dev_site_url(site_url: &str) -> String {
    let Some((scheme, rest)) = site_url.split_once("://") else {
        return site_url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        _ => (hostport, ""),
    };
    if host != "localhost" && host != "127.0.0.1" {
        return site_url.to_owned();
    }
    let port = if port.is_empty() {
        String::new()
    } else {
        format!(":{port}")
    };
    format!("{scheme}://{userinfo}host.minikube.internal{port}{tail}")
}

/// The verdict a Job's status gives, if any: `failed > 0` wins over `succeeded > 0`, as in Go.
pub fn job_outcome(job: &Job) -> Option<Outcome> {
    let status = job.status.as_ref()?;
    if status.failed.unwrap_or(0) > 0 {
        Some(Outcome::Failed)
    } else if status.succeeded.unwrap_or(0) > 0 {
        Some(Outcome::Succeeded)
    } else {
        None
    }
}

fn labels(job_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (JOB_NAME_LABEL.to_owned(), job_id.to_owned()),
        (APP_LABEL_KEY.to_owned(), APP_LABEL_VALUE.to_owned()),
    ])
}

/// Builds the Job for `cfg` named `job_id` (spec §4 "CreateJob"). Returns it with the runner it
/// runs (`<prefix>:master` in DEV_MODE).
pub fn build_job(
    job_id: &str,
    cfg: &JobConfig,
    opts: &BuildOptions,
    tolerations: Vec<Toleration>,
) -> Result<(Job, String), String> {
    let prefix = job_prefix(&cfg.job_type)
        .ok_or_else(|| format!("invalid Type value: {:?}", cfg.job_type))?;
    if cfg.max_duration_sec <= 0 {
        return Err("invalid MaxDurationSec value: should be positive".into());
    }

    let mut input = cfg.input_data.clone();
    let mut runner = cfg.runner.clone();
    if opts.dev_mode {
        runner = format!("{prefix}:master");
        if let Some(Value::String(url)) = input.as_mut().and_then(|m| m.get_mut("site_url")) {
            *url = dev_site_url(url);
        }
    }
    let env = env_pairs(input.as_ref(), opts.dev_mode)
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();

    // Always explicit, so `privileged: false` is visible in the object as in Go.
    let security_context = SecurityContext {
        privileged: Some(opts.privileged),
        ..Default::default()
    };
    let init_containers: Vec<Container> = opts
        .node_sysctls
        .iter()
        .enumerate()
        .map(|(i, ctl)| Container {
            name: format!("{job_id}-init-{i}"),
            image: Some(INIT_CONTAINER_IMAGE.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["sysctl".into(), "-w".into(), ctl.clone()]),
            security_context: Some(security_context.clone()),
            ..Default::default()
        })
        .collect();

    let container = Container {
        name: job_id.to_owned(),
        image: Some(runner.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: job_id.to_owned(),
            mount_path: VOLUME_PATH.into(),
            ..Default::default()
        }]),
        env: Some(env),
        resources: Some(
            opts.resources
                .get(&cfg.job_type)
                .cloned()
                .unwrap_or_default(),
        ),
        security_context: Some(security_context),
        ..Default::default()
    };

    // The API server would default a volume without a source to `emptyDir`; say it explicitly.
    let volume = if opts.persistent_volume_claim_name.is_empty() {
        Volume {
            name: job_id.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }
    } else {
        Volume {
            name: job_id.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: opts.persistent_volume_claim_name.clone(),
                read_only: None,
            }),
            ..Default::default()
        }
    };

    let ttl = opts.failed_jobs_retention.as_secs();
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_id.to_owned()),
            namespace: Some(opts.namespace.clone()),
            labels: Some(labels(job_id)),
            ..Default::default()
        },
        spec: Some(JobSpec {
            parallelism: Some(1),
            completions: Some(1),
            // One attempt only: a failed recording must surface to the user, not rerun.
            backoff_limit: Some(0),
            ttl_seconds_after_finished: (ttl > 0).then(|| i32::try_from(ttl).unwrap_or(i32::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(job_id)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![container],
                    volumes: Some(vec![volume]),
                    tolerations: Some(tolerations),
                    restart_policy: Some("Never".into()),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECS),
                    active_deadline_seconds: Some(cfg.max_duration_sec),
                    host_network: opts.dev_mode.then_some(true),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    Ok((job, runner))
}

#[cfg(test)]
mod tests;
