//! Captures the git commit, build date and compiler version for `/version`.
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let hash = std::env::var("CALLS_BUILD_HASH")
        .ok()
        .or_else(|| run("git", &["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = std::env::var("CALLS_BUILD_DATE")
        .ok()
        .or_else(|| run("date", &["-u", "+%Y-%m-%d %H:%M"]))
        .unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_default();
    println!("cargo:rustc-env=CALLS_BUILD_HASH={hash}");
    println!("cargo:rustc-env=CALLS_BUILD_DATE={date}");
    println!("cargo:rustc-env=CALLS_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=CALLS_BUILD_HASH");
    println!("cargo:rerun-if-env-changed=CALLS_BUILD_DATE");
    // Rebuild the stamp when the checked-out commit moves, not on every build.
    if let Some(git_dir) = run("git", &["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        if let Some(r) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{r}");
        }
    }
}
