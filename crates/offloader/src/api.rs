//! The HTTP API of spec §1, byte-compatible with the Go service where the plugin or the public Go
//! client can see it: status codes, the `{"code":"NNN","error":"…"}` envelope with a *string*
//! code, empty 200 bodies, Job JSON as `text/plain`, gorilla's 405-with-empty-body on the job
//! routes and Go's `404 page not found` elsewhere, job IDs matching `[a-z0-9]{12,26}`.
//!
//! Unlike Go there is no 60 s write timeout: `POST /jobs/init` may pull images for 2 minutes.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::routing::any;
use calls_core::auth::{AuthService, BasicPolicy, Identity};
use calls_core::http::{self as h, status_json};
use calls_proto::json::{self, VersionInfo};

use crate::job;
use crate::service::{CreateError, DeleteError, JobService};

/// Go's `MaxBytesReader` limit on `POST /jobs` and `POST /jobs/init`.
pub const MAX_JOB_BODY: usize = 1 << 20;

pub struct AppState {
    pub auth: AuthService,
    pub jobs: Arc<JobService>,
    pub version: VersionInfo,
    pub metrics: calls_core::metrics::Registry,
}

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", any(version))
        .route("/register", any(register))
        .route("/unregister", any(unregister))
        .route("/login", any(login))
        .route("/jobs", any(create_job))
        .route("/jobs/init", any(init))
        .route("/jobs/{id}", any(job))
        .route("/jobs/{id}/logs", any(job_logs))
        .route("/metrics", any(metrics))
        .fallback(|| async { h::not_found() })
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Request counts and latencies per route template (never the raw path: IDs would make
/// unbounded series).
async fn track(req: Request, next: Next) -> Response<Body> {
    let route = route_label(req.uri().path());
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    crate::metrics::api_request(
        route,
        method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// The route template a path falls under, for metric labels.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/version" => "/version",
        "/register" => "/register",
        "/unregister" => "/unregister",
        "/login" => "/login",
        "/jobs" => "/jobs",
        "/jobs/init" => "/jobs/init",
        "/metrics" => "/metrics",
        p => match p.strip_prefix("/jobs/") {
            Some(rest) => match rest.split_once('/') {
                None if valid_job_id(rest) => "/jobs/{id}",
                Some((id, "logs")) if valid_job_id(id) => "/jobs/{id}/logs",
                _ => "other",
            },
            None => "other",
        },
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// gorilla's answer to a known route with the wrong method.
fn method_not_allowed() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// Go's implicit 200 with no body.
fn empty_ok() -> Response<Body> {
    Response::new(Body::empty())
}

fn error(status: u16, msg: &str) -> Response<Body> {
    status_json(status, Some(msg), &[])
}

/// Go writes the Job with `json.Encoder` and no Content-Type; `net/http` sniffs `text/plain`.
fn job_body(job: &job::Job) -> Response<Body> {
    let mut r = Response::new(Body::from(json::to_vec(job)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Go's route pattern for job IDs; other IDs do not match the route at all.
pub fn valid_job_id(id: &str) -> bool {
    (12..=26).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The offloader's auth handler: Basic (auto-registering unknown clients when self-registration
/// is on) or Bearer.
async fn authenticate(s: &AppState, headers: &HeaderMap) -> Result<Identity, Response<Body>> {
    let policy = if s.auth.config().allow_self_registration {
        BasicPolicy::AutoRegister
    } else {
        BasicPolicy::Strict
    };
    s.auth
        .check(authorization(headers), policy)
        .await
        .map_err(|e| error(e.status, &e.message))
}

async fn version(State(s): St, method: Method) -> Response<Body> {
    if method != Method::GET {
        return h::not_found();
    }
    h::json(200, json::to_vec(&s.version))
}

async fn metrics(State(s): St) -> Response<Body> {
    let mut r = Response::new(Body::from(s.metrics.render()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn register(State(s): St, method: Method, headers: HeaderMap, body: Body) -> Response<Body> {
    calls_core::auth_api::register(&s.auth, &method, &headers, body).await
}

async fn unregister(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    calls_core::auth_api::unregister(
        &s.auth,
        &method,
        &headers,
        body,
        calls_core::auth_api::UnregisterReply::Empty,
    )
    .await
}

async fn login(State(s): St, method: Method, body: Body) -> Response<Body> {
    calls_core::auth_api::login(&s.auth, &method, body).await
}

async fn create_job(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    if method != Method::POST {
        return method_not_allowed();
    }
    if let Err(r) = authenticate(&s, &headers).await {
        return r;
    }
    let cfg = match h::read_body(body, MAX_JOB_BODY)
        .await
        .and_then(|b| job::decode_job_config(&b))
    {
        Ok(c) => c,
        Err(e) => return error(400, &format!("failed to decode request body: {e}")),
    };
    match s.jobs.create(cfg).await {
        Ok(job) => job_body(&job),
        Err(CreateError::Invalid(e)) => error(400, &e),
        Err(CreateError::Backend(e)) => error(500, &format!("failed to create recording job: {e}")),
        Err(CreateError::Save(e)) => error(500, &format!("failed to save job: {e}")),
    }
}

async fn init(State(s): St, method: Method, headers: HeaderMap, body: Body) -> Response<Body> {
    if method != Method::POST {
        return method_not_allowed();
    }
    if let Err(r) = authenticate(&s, &headers).await {
        return r;
    }
    let cfg = match h::read_body(body, MAX_JOB_BODY)
        .await
        .and_then(|b| job::decode_service_config(&b))
    {
        Ok(c) => c,
        Err(e) => return error(400, &format!("failed to decode request body: {e}")),
    };
    let settings = s.jobs.settings();
    if let Err(e) = cfg.is_valid(&settings.image_registry, settings.runner_check) {
        return error(400, &format!("invalid job service config: {e}"));
    }
    match s.jobs.backend().init(&cfg.runners).await {
        Ok(()) => empty_ok(),
        Err(e) => {
            tracing::error!(error = %e, "failed to update job runner");
            error(500, &format!("failed to update job runner: {e}"))
        }
    }
}

/// The `{id}` of a job route, if it matches `[a-z0-9]{12,26}` (otherwise Go's route does not
/// match and the answer is `404 page not found`).
fn job_id(p: Result<Path<String>, PathRejection>) -> Option<String> {
    p.ok().map(|Path(id)| id).filter(|id| valid_job_id(id))
}

async fn job(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Response<Body> {
    let Some(id) = job_id(p) else {
        return h::not_found();
    };
    if method != Method::GET && method != Method::DELETE {
        return method_not_allowed();
    }
    if let Err(r) = authenticate(&s, &headers).await {
        return r;
    }
    if method == Method::GET {
        return match s.jobs.get(&id).await {
            Ok(job) => job_body(&job),
            Err(e) => error(404, &format!("failed to get job failed to get job: {e}")),
        };
    }
    match s.jobs.delete(&id).await {
        Ok(()) => empty_ok(),
        Err(DeleteError::NotFound(e)) => error(404, &format!("failed to get job {e}")),
        Err(DeleteError::Running) => error(400, "job is running"),
        Err(DeleteError::Backend(e)) => error(500, &format!("failed to delete recording job: {e}")),
    }
}

async fn job_logs(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Response<Body> {
    let Some(id) = job_id(p) else {
        return h::not_found();
    };
    if method != Method::GET {
        return method_not_allowed();
    }
    if let Err(r) = authenticate(&s, &headers).await {
        return r;
    }
    match s.jobs.backend().logs(&id).await {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Err(e) => error(403, &format!("failed to get recording job logs: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_route_pattern() {
        assert!(valid_job_id("0123456789ab"));
        assert!(valid_job_id("abcdefghijklmnopqrstuvwxyz"));
        assert!(!valid_job_id("0123456789a"), "11 chars");
        assert!(!valid_job_id("abcdefghijklmnopqrstuvwxyz0"), "27 chars");
        assert!(!valid_job_id("0123456789AB"), "upper case");
        assert!(
            !valid_job_id("calls-recorder-job-abcdefghijklmnopqrstuvwxyz"),
            "Kubernetes IDs never match, as in Go"
        );
        assert!(!valid_job_id("init"));
    }

    #[test]
    fn metric_route_labels_are_bounded() {
        assert_eq!(route_label("/jobs/0123456789ab"), "/jobs/{id}");
        assert_eq!(route_label("/jobs/0123456789ab/logs"), "/jobs/{id}/logs");
        assert_eq!(route_label("/jobs/init"), "/jobs/init");
        assert_eq!(route_label("/jobs/x"), "other");
        assert_eq!(route_label("/jobs/0123456789ab/x"), "other");
        assert_eq!(route_label("/anything/else"), "other");
    }
}
