//! The client-management endpoints both daemons serve identically: `POST /register`,
//! `POST /unregister` and `POST /login`, with the Go services' status codes and string-valued
//! bodies. Each handler answers any other method with Go's `404 page not found` (these routes
//! have no method filter in Go; the handlers check it).

use crate::auth::{AuthService, BasicPolicy, Identity};
use crate::http::{not_found, status_json, string_map_body};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, header};

/// Bodies here are a few dozen bytes; Go has no cap, anything past this is refused.
pub const MAX_BODY: usize = 64 * 1024;

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `POST /register`: open when self-registration is on, else any valid credentials (in practice
/// the admin's). 201 `{"clientID","code":"201"}`; 400 with the registration error.
pub async fn register(
    auth: &AuthService,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Response<Body> {
    if method != Method::POST {
        return not_found();
    }
    if !auth.config().allow_self_registration
        && let Err(e) = auth
            .check(authorization(headers), BasicPolicy::Strict)
            .await
    {
        return status_json(e.status, Some(&e.message), &[]);
    }
    let req = match string_map_body(body, MAX_BODY).await {
        Ok(m) => m,
        Err(e) => return status_json(400, Some(&e), &[]),
    };
    let id = req.get("clientID").map_or("", String::as_str);
    let key = req.get("authKey").map_or("", String::as_str);
    match auth.register(id, key).await {
        Ok(()) => {
            tracing::info!(client_id = id, "registered new client");
            status_json(201, None, &[("clientID", id)])
        }
        Err(e) => status_json(400, Some(&e), &[]),
    }
}

/// What a successful `/unregister` answers: the two Go services differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnregisterReply {
    /// rtcd: 200 `{"code":"200"}`.
    StatusJson,
    /// calls-offloader: 200 with an empty body.
    Empty,
}

/// `POST /unregister`: 403 unless the admin or self-registration is enabled; Basic auth here
/// never auto-registers; a client may only remove itself.
pub async fn unregister(
    auth: &AuthService,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
    reply: UnregisterReply,
) -> Response<Body> {
    if method != Method::POST {
        return not_found();
    }
    let sec = auth.config();
    if !sec.enable_admin && !sec.allow_self_registration {
        tracing::warn!(
            "/unregister was called, but enable_admin and allow_self_registration are both false"
        );
        return status_json(403, Some("unregister not enabled"), &[]);
    }
    let who = match auth
        .check(authorization(headers), BasicPolicy::Strict)
        .await
    {
        Ok(who) => who,
        Err(e) => return status_json(e.status, Some(&e.message), &[]),
    };
    let req = match string_map_body(body, MAX_BODY).await {
        Ok(m) => m,
        Err(e) => return status_json(400, Some(&e), &[]),
    };
    let id = req.get("clientID").map_or("", String::as_str);
    if id.is_empty() {
        return status_json(400, Some("client id should not be empty"), &[]);
    }
    if let Identity::Client(me) = &who
        && me != id
    {
        return status_json(403, Some("client id not valid"), &[]);
    }
    match auth.unregister(id).await {
        Ok(()) => {
            tracing::info!(client_id = id, "unregistered client");
            match reply {
                UnregisterReply::StatusJson => status_json(200, None, &[]),
                UnregisterReply::Empty => Response::new(Body::empty()),
            }
        }
        Err(e) => status_json(400, Some(&e), &[]),
    }
}

/// `POST /login`: no Authorization header; 200 `{"bearerToken","code":"200"}` or 400.
pub async fn login(auth: &AuthService, method: &Method, body: Body) -> Response<Body> {
    if method != Method::POST {
        return not_found();
    }
    let req = match string_map_body(body, MAX_BODY).await {
        Ok(m) => m,
        Err(e) => return status_json(400, Some(&e), &[]),
    };
    let id = req.get("clientID").map_or("", String::as_str);
    let key = req.get("authKey").map_or("", String::as_str);
    match auth.login(id, key).await {
        Ok(token) => {
            tracing::info!(client_id = id, "logged in client");
            status_json(200, None, &[("bearerToken", &token)])
        }
        Err(e) => status_json(400, Some(&e), &[]),
    }
}
