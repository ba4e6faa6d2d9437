//! The offloader's Prometheus series (the Go service has none). Names carry a
//! `calls_offloader_` prefix; labels are bounded: job `type` is one of the two valid types,
//! `route` is a route template, never a raw path.

use metrics::{counter, gauge, histogram};

pub const JOBS_CREATED: &str = "calls_offloader_jobs_created_total";
pub const JOBS_CREATE_ERRORS: &str = "calls_offloader_jobs_create_errors_total";
pub const JOBS_SUCCEEDED: &str = "calls_offloader_jobs_succeeded_total";
pub const JOBS_FAILED: &str = "calls_offloader_jobs_failed_total";
pub const JOBS_RUNNING: &str = "calls_offloader_jobs_running";
pub const JOB_DURATION: &str = "calls_offloader_job_duration_seconds";
pub const API_REQUESTS: &str = "calls_offloader_api_requests_total";
pub const API_REQUEST_DURATION: &str = "calls_offloader_api_request_duration_seconds";

/// Jobs last minutes to hours.
pub const JOB_DURATION_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0,
];
/// `/jobs/init` may pull images for minutes; the rest answers in milliseconds.
pub const API_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub const BUCKETS: &[(&str, &[f64])] = &[
    (JOB_DURATION, JOB_DURATION_BUCKETS),
    (API_REQUEST_DURATION, API_DURATION_BUCKETS),
];

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(JOBS_CREATED, "Jobs started, by type");
    describe_counter!(
        JOBS_CREATE_ERRORS,
        "Job creations that failed after validation (limit reached, backend error), by type and reason"
    );
    describe_counter!(
        JOBS_SUCCEEDED,
        "Jobs that ended successfully (exit code 0), by type"
    );
    describe_counter!(
        JOBS_FAILED,
        "Jobs that failed, were stopped with an error or disappeared, by type"
    );
    describe_gauge!(JOBS_RUNNING, "Jobs being watched by this instance, by type");
    describe_histogram!(
        JOB_DURATION,
        "Time from job start to its end, seconds, by type and outcome"
    );
    describe_counter!(
        API_REQUESTS,
        "HTTP API requests, by route, method and status code"
    );
    describe_histogram!(
        API_REQUEST_DURATION,
        "HTTP API request handling time, seconds, by route and method"
    );
}

/// A job type as a label: only the two valid types, anything else is `other`.
pub fn type_label(t: &str) -> &'static str {
    match t {
        crate::job::JOB_TYPE_RECORDING => crate::job::JOB_TYPE_RECORDING,
        crate::job::JOB_TYPE_TRANSCRIBING => crate::job::JOB_TYPE_TRANSCRIBING,
        _ => "other",
    }
}

pub fn job_created(t: &str) {
    counter!(JOBS_CREATED, "type" => type_label(t)).increment(1);
}

pub fn job_create_error(t: &str, reason: &'static str) {
    counter!(JOBS_CREATE_ERRORS, "type" => type_label(t), "reason" => reason).increment(1);
}

pub fn job_running(t: &str, delta: f64) {
    gauge!(JOBS_RUNNING, "type" => type_label(t)).increment(delta);
}

pub fn job_ended(t: &str, outcome: &'static str, secs: f64) {
    let t = type_label(t);
    if outcome == "succeeded" {
        counter!(JOBS_SUCCEEDED, "type" => t).increment(1);
    } else {
        counter!(JOBS_FAILED, "type" => t).increment(1);
    }
    histogram!(JOB_DURATION, "type" => t, "outcome" => outcome).record(secs.max(0.0));
}

pub fn api_request(route: &'static str, method: &'static str, code: u16, secs: f64) {
    counter!(API_REQUESTS, "route" => route, "method" => method, "code" => code.to_string())
        .increment(1);
    histogram!(API_REQUEST_DURATION, "route" => route, "method" => method).record(secs);
}
