//! A fake Kubernetes API server for the backend tests: it speaks the real JSON of the few
//! endpoints the backend uses (version, batch/v1 Jobs with list/watch/get/create/delete, core/v1
//! pods and pod logs, `Status` errors), keeps what it receives for assertions, and lets a test
//! change Job status, delete Jobs behind the backend's back and cut watch connections.
//! Only loopback is used.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Params = HashMap<String, String>;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Params,
}

struct Watcher {
    ns: String,
    selector: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct HistoryEvent {
    rv: u64,
    ns: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    /// (namespace, name) → Job as stored (with apiVersion/kind).
    jobs: BTreeMap<(String, String), Value>,
    pods: Vec<(String, Value)>,
    logs: HashMap<String, Vec<u8>>,
    rv: u64,
    history: Vec<HistoryEvent>,
    watchers: Vec<Watcher>,
    requests: Vec<Recorded>,
    /// Raw bodies of `POST .../jobs`.
    created: Vec<Value>,
    /// (job name, effective propagationPolicy) of every DELETE.
    deletes: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct FakeK8s {
    inner: Arc<Mutex<Inner>>,
    pub addr: std::net::SocketAddr,
}

impl FakeK8s {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/version", get(version))
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                get(list_or_watch_jobs).post(create_job),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(get_job).delete(delete_job),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{pod}/log", get(pod_log))
            .fallback(unknown)
            .layer(axum::middleware::from_fn_with_state(inner.clone(), record))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API server");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("uri"));
        kube::Client::try_from(config).expect("client")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a Job as another workload (or an earlier run) would have created it.
    pub fn insert_job(&self, ns: &str, mut job: Value) {
        let mut inner = self.lock();
        let name = job["metadata"]["name"].as_str().expect("name").to_owned();
        inner.rv += 1;
        let rv = inner.rv;
        job["apiVersion"] = json!("batch/v1");
        job["kind"] = json!("Job");
        job["metadata"]["namespace"] = json!(ns);
        job["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.jobs.insert((ns.to_owned(), name), job.clone());
        inner.emit(ns, "ADDED", job);
    }

    /// Replaces a Job's status as the Job controller would, notifying watchers.
    pub fn set_job_status(&self, ns: &str, name: &str, status: Value) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let job = inner
            .jobs
            .get_mut(&(ns.to_owned(), name.to_owned()))
            .expect("job to update");
        job["status"] = status;
        job["metadata"]["resourceVersion"] = json!(rv.to_string());
        let job = job.clone();
        inner.emit(ns, "MODIFIED", job);
    }

    /// Deletes a Job behind the backend's back.
    pub fn remove_job(&self, ns: &str, name: &str) {
        self.lock().delete(ns, name, true);
    }

    /// Cuts every open watch cleanly (like an API server restart).
    pub fn drop_watches(&self) {
        self.lock().watchers.clear();
    }

    /// Ends every open watch with a 410 `Expired` error event, as for a too old resourceVersion.
    pub fn expire_watches(&self) {
        let mut inner = self.lock();
        for w in inner.watchers.drain(..) {
            let status = status_json(410, "Expired", "too old resource version: 1 (2)");
            let _ = w.tx.send(event_line("ERROR", &status));
        }
    }

    pub fn add_pod(&self, ns: &str, name: &str, job_name: &str, logs: &[u8]) {
        let pod = json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"job_name": job_name}},
            "spec": {"containers": [{"name": job_name}]},
        });
        let mut inner = self.lock();
        inner.pods.push((ns.to_owned(), pod));
        inner.logs.insert(name.to_owned(), logs.to_vec());
    }

    pub fn job(&self, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .jobs
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn pod_count(&self) -> usize {
        self.lock().pods.len()
    }

    pub fn created(&self) -> Vec<Value> {
        self.lock().created.clone()
    }

    pub fn deletes(&self) -> Vec<(String, Option<String>)> {
        self.lock().deletes.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn watch_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| is_watch(&r.query))
            .collect()
    }

    pub fn open_watches(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }

    /// Polls `cond` until it holds, failing the test after 5 s.
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Inner {
    fn emit(&mut self, ns: &str, kind: &'static str, object: Value) {
        let rv = self.rv;
        let labels = labels_of(&object);
        self.watchers.retain(|w| {
            if w.ns != ns || !selector_matches(&w.selector, &labels) {
                return !w.tx.is_closed();
            }
            w.tx.send(event_line(kind, &object)).is_ok()
        });
        self.history.push(HistoryEvent {
            rv,
            ns: ns.to_owned(),
            kind,
            object,
        });
    }

    /// Removes a Job; with `gc_pods` its pods go too, as the garbage collector does for a
    /// Background or Foreground propagation policy.
    fn delete(&mut self, ns: &str, name: &str, gc_pods: bool) -> Option<Value> {
        let mut job = self.jobs.remove(&(ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        job["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(ns, "DELETED", job.clone());
        if gc_pods {
            self.pods
                .retain(|(pns, p)| !(pns == ns && p["metadata"]["labels"]["job_name"] == name));
        }
        Some(job)
    }
}

fn is_watch(q: &Params) -> bool {
    matches!(q.get("watch").map(String::as_str), Some("true" | "1"))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Equality-based label selectors (`k=v`, `k==v`, `k!=v`, comma-separated), as the real server.
fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else {
                labels.contains_key(term)
            }
        })
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status_json(code.as_u16(), reason, message))
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
    )
}

/// List items carry no apiVersion/kind on a real server.
fn list_item(obj: &Value) -> Value {
    let mut item = obj.clone();
    if let Some(m) = item.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    item
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let query: Params = Query::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(Recorded {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query,
        });
    next.run(req).await
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        }),
    )
}

async fn unknown(method: Method, uri: Uri) -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({method} {uri})"),
    )
}

async fn list_or_watch_jobs(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
    if !is_watch(&q) {
        let items: Vec<Value> = guard
            .jobs
            .iter()
            .filter(|((jns, _), j)| *jns == ns && selector_matches(&selector, &labels_of(j)))
            .map(|(_, j)| list_item(j))
            .collect();
        return json_response(
            StatusCode::OK,
            &json!({
                "apiVersion": "batch/v1",
                "kind": "JobList",
                "metadata": {"resourceVersion": guard.rv.to_string()},
                "items": items,
            }),
        );
    }

    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let since = q
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if since == 0 {
        // No resourceVersion: the current objects first, as synthetic ADDED events.
        for ((jns, _), j) in &guard.jobs {
            if *jns == ns && selector_matches(&selector, &labels_of(j)) {
                let _ = tx.send(event_line("ADDED", j));
            }
        }
    } else {
        for ev in &guard.history {
            if ev.rv > since && ev.ns == ns && selector_matches(&selector, &labels_of(&ev.object)) {
                let _ = tx.send(event_line(ev.kind, &ev.object));
            }
        }
    }
    guard.watchers.push(Watcher { ns, selector, tx });
    drop(guard);

    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1800);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(bytes)) => Some((Ok::<_, std::io::Error>(bytes), rx)),
            // Closed by the test, or timeoutSeconds reached: end the response cleanly.
            Ok(None) | Err(_) => None,
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn create_job(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(mut job) = serde_json::from_slice::<Value>(&body) else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON");
    };
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.created.push(job.clone());
    let Some(name) = job["metadata"]["name"].as_str().map(str::to_owned) else {
        return status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "name required");
    };
    if inner.jobs.contains_key(&(ns.clone(), name.clone())) {
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    inner.rv += 1;
    let rv = inner.rv;
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["resourceVersion"] = json!(rv.to_string());
    job["metadata"]["uid"] = json!(format!("uid-{rv}"));
    job["status"] = json!({});
    inner.jobs.insert((ns.clone(), name), job.clone());
    inner.emit(&ns, "ADDED", job.clone());
    json_response(StatusCode::CREATED, &job)
}

async fn get_job(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    match inner.jobs.get(&(ns, name.clone())) {
        Some(job) => json_response(StatusCode::OK, job),
        None => not_found("jobs.batch", &name),
    }
}

async fn delete_job(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    body: Bytes,
) -> Response {
    // DeleteOptions may come as a body or as query parameters.
    let from_body = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["propagationPolicy"].as_str().map(str::to_owned));
    let policy = from_body.or_else(|| q.get("propagationPolicy").cloned());
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.deletes.push((name.clone(), policy.clone()));
    // Unset means orphan for batch/v1 Jobs: their pods would stay behind.
    let gc_pods = matches!(policy.as_deref(), Some("Background" | "Foreground"));
    match inner.delete(&ns, &name, gc_pods) {
        Some(job) => json_response(StatusCode::OK, &job),
        None => not_found("jobs.batch", &name),
    }
}

async fn list_pods(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let items: Vec<Value> = inner
        .pods
        .iter()
        .filter(|(pns, p)| *pns == ns && selector_matches(&selector, &labels_of(p)))
        .map(|(_, p)| p.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        }),
    )
}

async fn pod_log(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((ns, pod)): Path<(String, String)>,
) -> Response {
    let inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let exists = inner
        .pods
        .iter()
        .any(|(pns, p)| *pns == ns && p["metadata"]["name"] == pod.as_str());
    match inner.logs.get(&pod) {
        Some(bytes) if exists => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            bytes.clone(),
        )
            .into_response(),
        _ => not_found("pods", &pod),
    }
}
