//! A client this project did not write (Python `requests` from PyPI) drives `/version`,
//! `POST /jobs/init` and `POST /jobs` exactly as the plugin does (Basic auth, self-registration)
//! against the built binary and the test Docker Engine. `scripts/test.sh` installs it into `.venv`.

mod common;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_requests_client_completes_the_plugin_flow() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::start(dir.path(), &[("JOBS_MAXCONCURRENTJOBS", "2")]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/offloader_plugin_flow.py");
    let out = Command::new(common::python())
        .arg(script)
        .arg(o.url(""))
        .output()
        .expect("run python");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "python client failed:\n{so}\n{se}\noffloader log:\n{}",
        o.all_logs()
    );
    assert!(so.contains("offloader plugin flow ok"), "{so}");
}
