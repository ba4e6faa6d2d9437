//! A Docker daemon reached over TLS, as Go's `client.FromEnv` supports it: `DOCKER_HOST=tcp://…`,
//! `DOCKER_TLS_VERIFY=1` and `DOCKER_CERT_PATH` holding `ca.pem`, `cert.pem` and `key.pem`. The
//! test's own TLS endpoint on loopback forwards to the private test daemon's socket.

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn write_client_dir(dir: &Path, ca_pem: &str, p: &Pki) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &p.client_cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &p.client_key_pem).unwrap();
}

/// A TLS endpoint on 127.0.0.1 forwarding each connection to the test daemon's unix socket.
async fn tls_forwarder(p: &Pki, accepted: Arc<AtomicUsize>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(p.server_cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(p.server_key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let socket = docker_host()
        .strip_prefix("unix://")
        .expect("the test daemon listens on a unix socket")
        .to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, socket, accepted) = (acceptor.clone(), socket.clone(), accepted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                }
            });
        }
    });
    port
}

// Multi-threaded: `start` blocks its thread while the forwarder must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_over_tls_with_docker_tls_verify_and_cert_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let accepted = Arc::new(AtomicUsize::new(0));
    let port = tls_forwarder(&p, accepted.clone()).await;
    let certs = dir.path().join("certs");
    write_client_dir(&certs, &p.ca_pem, &p);
    let host = format!("tcp://127.0.0.1:{port}");
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
    ];
    let o = start(dir.path(), &env);
    assert!(o.log_contains("connected to docker API"));
    // A daemon call through TLS: the runner image is present, so init answers 200.
    let body = serde_json::json!({"Runners": [RECORDER]}).to_string();
    let r = o.post("/jobs/init", Some(&plugin_auth()), body).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(accepted.load(Ordering::SeqCst) >= 1);
    drop(o);

    // A daemon whose certificate the configured CA did not sign is refused, clearly.
    let other = pki();
    let wrong = dir.path().join("wrong");
    write_client_dir(&wrong, &other.ca_pem, &p);
    let env: Vec<(String, String)> = vec![
        ("DOCKER_HOST".into(), host.clone()),
        ("DOCKER_TLS_VERIFY".into(), "1".into()),
        ("DOCKER_CERT_PATH".into(), wrong.to_str().unwrap().into()),
    ];
    let dir2 = dir.path().to_owned();
    // Blocking wait off the runtime: the forwarder must keep serving meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_to_exit(&dir2, &env, &[])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.starts_with("calls-offloader: failed to get docker server version: "),
        "{err}"
    );
    assert!(err.contains(&format!("DOCKER_HOST={host}")), "{err}");
}
