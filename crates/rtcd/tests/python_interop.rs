//! A client this project did not write (Python `websockets` + `msgpack` from PyPI) completes the
//! plugin's flow against the built binary. `scripts/test.sh` installs them into `.venv`.

mod common;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_websockets_msgpack_client_completes_the_plugin_flow() {
    let dir = tempfile::tempdir().unwrap();
    let r = common::start(
        dir.path(),
        &[("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true")],
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/plugin_flow.py");
    let out = Command::new(common::python())
        .arg(script)
        .arg(r.url(""))
        .output()
        .expect("run python");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "python client failed:\n{so}\n{se}");
    assert!(so.contains("plugin flow ok"), "{so}");
}
