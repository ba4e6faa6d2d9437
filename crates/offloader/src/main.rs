//! The `calls-offloader` binary: parse `-config PATH`, load and validate the configuration, start
//! logging, run.

use std::process::ExitCode;

const ABOUT: calls_core::daemon::About = calls_core::daemon::About {
    name: "calls-offloader",
    usage: "Usage: calls-offloader [-config PATH]\n\n  -config PATH   path to the configuration file (default config/config.toml)\n  -version       print version information and exit\n\nEvery key can also be set with an environment variable (API_HTTP_LISTENADDRESS, JOBS_MAXCONCURRENTJOBS, ...); see config/calls-offloader.sample.toml.",
    default_config: calls_offloader::config::DEFAULT_CONFIG_PATH,
    implementation: calls_offloader::IMPLEMENTATION,
    compat_version: calls_offloader::COMPAT_VERSION,
    compat_label: "API",
    with_platform: false,
};

fn main() -> ExitCode {
    // A Docker daemon behind TLS (DOCKER_TLS_VERIFY) and the Kubernetes client use rustls' process
    // provider; choosing it here keeps that independent of the features other crates enable.
    let _ = rustls::crypto::ring::default_provider().install_default();
    calls_core::daemon::main(
        &ABOUT,
        calls_offloader::config::load,
        |c| &c.logger,
        calls_offloader::run,
    )
}
