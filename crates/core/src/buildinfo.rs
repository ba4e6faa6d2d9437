//! What `/version` reports.

use calls_proto::json::VersionInfo;

pub const BUILD_HASH: &str = env!("CALLS_BUILD_HASH");
pub const BUILD_DATE: &str = env!("CALLS_BUILD_DATE");
pub const RUSTC_VERSION: &str = env!("CALLS_RUSTC_VERSION");
/// This project's version (all crates share the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Go's `runtime.GOARCH` name for this target.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Version info for a daemon. `compat_version` is the version of the Go service whose wire
/// protocol this build implements: the plugin gates features on it, so it must be a real
/// upstream release (e.g. `v1.2.6`), never this project's own `0.x` version. The project's own
/// name and version travel in the extra `implementation*` fields.
pub fn version_info(
    implementation: &str,
    compat_version: &str,
    with_platform: bool,
) -> VersionInfo {
    VersionInfo {
        build_date: BUILD_DATE.into(),
        build_version: compat_version.into(),
        build_hash: BUILD_HASH.into(),
        go_version: RUSTC_VERSION.into(),
        go_os: with_platform.then(|| std::env::consts::OS.into()),
        go_arch: with_platform.then(|| go_arch().into()),
        implementation: implementation.into(),
        implementation_version: VERSION.into(),
        rust_version: RUSTC_VERSION.into(),
    }
}
