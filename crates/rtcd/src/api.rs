//! rtcd's HTTP API (spec rtcd.md §1): routes, auth and the exact status codes and bodies.
//!
//! Go's `ServeMux` answers an unknown path, and each JSON handler a wrong method, with `404 page
//! not found`; `/metrics` takes any method; `/ws` authenticates before anything else.

use crate::service::ControlHandle;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Response, header};
use axum::response::IntoResponse;
use axum::routing::any;
use calls_core::auth::{AuthService, BasicPolicy, Identity};
use calls_core::http as h;
use calls_proto::json::{self, SystemInfo, VersionInfo};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct AppState {
    pub auth: AuthService,
    pub control: ControlHandle,
    pub version: VersionInfo,
    /// `/system` cpu_load as f64 bits, updated every second.
    pub cpu_load: AtomicU64,
    pub metrics: calls_core::metrics::Registry,
    /// Every WebSocket connection task, so shutdown can let them flush their last frames.
    pub ws_tasks: tokio_util::task::TaskTracker,
}

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", any(version))
        .route("/system", any(system))
        .route("/register", any(register))
        .route("/unregister", any(unregister))
        .route("/login", any(login))
        .route("/calls/{call_id}/sessions", any(sessions))
        .route("/calls/{call_id}/sessions/{session_id}", any(session))
        .route("/ws", any(ws))
        .route("/metrics", any(metrics))
        .fallback(|| async { h::not_found() })
        .with_state(state)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn version(State(s): St, method: Method) -> Response<Body> {
    if method != Method::GET {
        return h::not_found();
    }
    h::json(200, json::to_vec(&s.version))
}

async fn system(State(s): St, method: Method) -> Response<Body> {
    if method != Method::GET {
        return h::not_found();
    }
    let cpu_load = f64::from_bits(s.cpu_load.load(Ordering::Relaxed));
    h::json(200, json::to_vec(&SystemInfo { cpu_load }))
}

async fn metrics(State(s): St) -> Response<Body> {
    let mut r = Response::new(Body::from(s.metrics.render()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
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
    use calls_core::auth_api::UnregisterReply;
    calls_core::auth_api::unregister(
        &s.auth,
        &method,
        &headers,
        body,
        UnregisterReply::StatusJson,
    )
    .await
}

async fn login(State(s): St, method: Method, body: Body) -> Response<Body> {
    calls_core::auth_api::login(&s.auth, &method, body).await
}

/// Session queries answer GET only (anything else is Go's 404) and need a client identity: the
/// admin (no group) gets 401 like any failure. Returns the caller's group.
async fn session_query_group(
    s: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<String, Response<Body>> {
    if method != Method::GET {
        return Err(h::not_found());
    }
    match s
        .auth
        .check(authorization(headers), BasicPolicy::Strict)
        .await
    {
        Ok(Identity::Client(id)) => Ok(id),
        Ok(Identity::Admin) => Err(h::text_error(401, "unauthorized")),
        Err(e) => {
            tracing::warn!(error = %e, "failed to authenticate");
            Err(h::text_error(401, "unauthorized"))
        }
    }
}

async fn sessions(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Response<Body> {
    let group = match session_query_group(&s, &method, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match s.control.sessions(&group, &call_id).await {
        Ok(cfgs) => h::json(200, json::to_vec(&cfgs)),
        Err(e) => h::text_error(404, &format!("failed to get session configs: {e}")),
    }
}

async fn session(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    Path((call_id, session_id)): Path<(String, String)>,
) -> Response<Body> {
    let group = match session_query_group(&s, &method, &headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match s.control.session(&group, &call_id, &session_id).await {
        Ok(cfg) => h::json(200, json::to_vec(&cfg)),
        Err(e) => h::text_error(404, &format!("failed to get session config: {e}")),
    }
}

/// The plugin channel. Authentication comes first: a failure is a plain 401 (rtcd writes an empty
/// 200, which the client also treats as a failed handshake).
async fn ws(
    State(s): St,
    method: Method,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response<Body> {
    let who = match s
        .auth
        .check(authorization(&headers), BasicPolicy::Strict)
        .await
    {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!(error = %e, "ws: auth callback failed");
            return h::text_error(401, "unauthorized");
        }
    };
    if method != Method::GET {
        return h::text_error(405, "Method Not Allowed");
    }
    // gorilla's default origin check: an Origin header, if any, must name the Host.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return h::text_error(403, "Forbidden");
        }
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rej) => return rej.into_response(),
    };
    let client_id = who.client_id().to_owned();
    let conn_id = calls_core::ids::new_id();
    let control = s.control.clone();
    let tasks = s.ws_tasks.clone();
    upgrade
        .max_message_size(calls_proto::MAX_WS_MESSAGE_BYTES)
        .max_frame_size(calls_proto::MAX_WS_MESSAGE_BYTES)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "ws: failed to upgrade connection"))
        .on_upgrade(move |socket| {
            tasks.track_future(crate::ws::serve(socket, conn_id, client_id, control))
        })
        .into_response()
}
