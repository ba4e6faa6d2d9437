//! HTTP plumbing: serving a router (plain or TLS) with Go-like limits and graceful shutdown, and
//! responses shaped exactly as Go's `net/http` helpers shape them.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Go `http.Server` timeouts the originals use.
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Go's `http.Error`: plain text, `nosniff`, message plus newline.
pub fn text_error(status: u16, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Go's `http.NotFound`.
pub fn not_found() -> Response<Body> {
    text_error(404, "404 page not found")
}

/// A JSON body already encoded (normally by [`calls_proto::json::to_vec`]).
pub fn json(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The string-valued `{"code":"…","error":"…",…}` envelope.
pub fn status_json(status: u16, err: Option<&str>, extra: &[(&str, &str)]) -> Response<Body> {
    json(status, calls_proto::json::status_body(status, err, extra))
}

/// Reads at most `limit` bytes of a request body; `Err` with a message past that.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, String> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("length limit") {
            "http: request body too large".to_string()
        } else {
            format!("failed to read request body: {msg}")
        }
    })
}

/// Reads a bounded body and decodes it as [`decode_string_map`] does; the error text is what the
/// Go services put in their 400 answers.
pub async fn string_map_body(body: Body, limit: usize) -> Result<HashMap<String, String>, String> {
    decode_string_map(&read_body(body, limit).await?)
}

/// The first JSON value of a body, as Go's `json.Decoder.Decode` reads it: whatever follows that
/// value is ignored, an empty body is `EOF` and a truncated one `unexpected EOF`.
pub fn first_json_value(body: &[u8]) -> Result<serde_json::Value, String> {
    let mut it = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    match it.next() {
        None => Err("EOF".into()),
        Some(Err(e)) if e.is_eof() => Err("unexpected EOF".into()),
        Some(Err(e)) => Err(format!("invalid JSON: {e}")),
        Some(Ok(v)) => Ok(v),
    }
}

/// The word Go's `json: cannot unmarshal <kind> into ...` errors use for a JSON value.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Decodes a body the way Go decodes into `map[string]string` with `json.Decoder.Decode`: the
/// first JSON value must be an object of strings (a `null` member is the empty string, a `null`
/// body an empty map), and anything after that first value is ignored. Errors use Go's wording
/// where it is short to reproduce.
pub fn decode_string_map(body: &[u8]) -> Result<HashMap<String, String>, String> {
    use serde_json::Value;
    let v = first_json_value(body)?;
    let kind = json_kind;
    match v {
        Value::Null => Ok(HashMap::new()),
        Value::Object(o) => o
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Null => Ok((k, String::new())),
                other => Err(format!(
                    "json: cannot unmarshal {} into Go value of type string",
                    kind(&other)
                )),
            })
            .collect(),
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type map[string]string",
            kind(&other)
        )),
    }
}

/// Where to listen and whether to use TLS (`api.http` in both daemons).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen_address: String,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TlsConfig {
    pub enable: bool,
    pub cert_file: String,
    pub cert_key: String,
}

impl HttpConfig {
    pub fn with_address(addr: &str) -> Self {
        Self {
            listen_address: addr.into(),
            tls: TlsConfig::default(),
        }
    }

    pub fn validate(&self, section: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        if self.listen_address.is_empty() {
            return Err(ConfigError::new(
                format!("{section}.listen_address"),
                "should not be empty",
            ));
        }
        if let Err(e) = split_listen_address(&self.listen_address) {
            return Err(ConfigError::new(format!("{section}.listen_address"), e));
        }
        if self.tls.enable {
            if self.tls.cert_file.is_empty() {
                return Err(ConfigError::new(
                    format!("{section}.tls.cert_file"),
                    "should not be empty when tls.enable is true",
                ));
            }
            if self.tls.cert_key.is_empty() {
                return Err(ConfigError::new(
                    format!("{section}.tls.cert_key"),
                    "should not be empty when tls.enable is true",
                ));
            }
            if let Err(e) = tls_server_config(&self.tls) {
                return Err(ConfigError::new(
                    format!("{section}.tls.cert_file"),
                    format!("failed to load cert files: {e}"),
                ));
            }
        }
        Ok(())
    }
}

/// Splits a Go listen address (`:8045`, `127.0.0.1:8045`, `[::1]:8045`, `localhost:8045`).
pub fn split_listen_address(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("missing port in address {addr:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port in address {addr:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// Binds like Go's `net.Listen("tcp", addr)`: an empty host means every interface (dual-stack
/// where the kernel has IPv6, IPv4 otherwise); a name is resolved and its first address used.
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let (host, port) = split_listen_address(addr).map_err(std::io::Error::other)?;
    let listener = if host.is_empty() {
        TcpListener::bind(SocketAddr::from(([0u16; 8], port)))
            .or_else(|_| TcpListener::bind(SocketAddr::from(([0u8; 4], port))))?
    } else {
        TcpListener::bind((host.as_str(), port))?
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// TLS like the Go services: TLS 1.2 minimum, P-256 as the only key-exchange group.
pub fn tls_server_config(cfg: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .map_err(|e| format!("{}: {e}", cfg.cert_file))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cfg.cert_file))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cfg.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.cert_key)
        .map_err(|e| format!("{}: {e}", cfg.cert_key))?;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![rustls::crypto::ring::kx_group::SECP256R1];
    rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// Serves `router` on an already bound listener until `shutdown` completes, then lets in-flight
/// requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?.handle(handle);
            limit_header_time(server.http_builder());
            server.serve(app).await
        }
        Some(cfg) => {
            let rustls_cfg = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
            let mut server =
                axum_server::tls_rustls::from_tcp_rustls(listener, rustls_cfg)?.handle(handle);
            limit_header_time(server.http_builder());
            server.serve(app).await
        }
    }
}

/// Go's `ReadHeaderTimeout`: a client that trickles its headers is cut off.
fn limit_header_time(
    b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(READ_HEADER_TIMEOUT);
}

/// The API listener of `api.http` and its TLS configuration when enabled; errors name the setting.
pub fn bind_api(cfg: &HttpConfig) -> Result<(TcpListener, Option<rustls::ServerConfig>), String> {
    let listener = bind(&cfg.listen_address).map_err(|e| {
        format!(
            "failed to listen on {} (api.http.listen_address): {e}",
            cfg.listen_address
        )
    })?;
    let tls = if cfg.tls.enable {
        Some(tls_server_config(&cfg.tls)?)
    } else {
        None
    };
    Ok((listener, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_map_decoding_follows_go() {
        assert_eq!(decode_string_map(b""), Err("EOF".into()));
        assert_eq!(decode_string_map(b"null").unwrap().len(), 0);
        let m = decode_string_map(br#"{"clientID":"a","authKey":null} trailing garbage"#).unwrap();
        assert_eq!((m["clientID"].as_str(), m["authKey"].as_str()), ("a", ""));
        assert_eq!(
            decode_string_map(br#"{"clientID":1}"#),
            Err("json: cannot unmarshal number into Go value of type string".into())
        );
        assert!(
            decode_string_map(b"[1]")
                .unwrap_err()
                .contains("map[string]string")
        );
        assert!(decode_string_map(b"{").is_err());
        assert!(
            decode_string_map(b"xyz")
                .unwrap_err()
                .starts_with("invalid JSON")
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(split_listen_address(":8045"), Ok(("".into(), 8045)));
        assert_eq!(split_listen_address("[::1]:80"), Ok(("::1".into(), 80)));
        assert_eq!(
            split_listen_address("localhost:1"),
            Ok(("localhost".into(), 1))
        );
        assert!(split_listen_address("8045").is_err());
        assert!(split_listen_address(":99999").is_err());
    }
}
