//! The `calls-offloader` binary: parse `-config PATH`, load and validate the configuration, start
//! logging, run.

use std::process::ExitCode;

const USAGE: &str = "Usage: calls-offloader [-config PATH]\n\n  -config PATH   path to the configuration file (default config/config.toml)\n  -version       print version information and exit\n\nEvery key can also be set with an environment variable (API_HTTP_LISTENADDRESS, JOBS_MAXCONCURRENTJOBS, ...); see config/calls-offloader.sample.toml.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match calls_core::config::config_path_from_args(
        &args,
        calls_offloader::config::DEFAULT_CONFIG_PATH,
    ) {
        Ok(calls_core::config::ConfigArgs::Run(p)) => p,
        Ok(calls_core::config::ConfigArgs::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(calls_core::config::ConfigArgs::Version) => {
            let v = calls_core::buildinfo::version_info(
                calls_offloader::IMPLEMENTATION,
                calls_offloader::COMPAT_VERSION,
                false,
            );
            println!(
                "calls-offloader {} (API {}, commit {}, built {})",
                v.implementation_version, v.build_version, v.build_hash, v.build_date
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("calls-offloader: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let loaded = match calls_offloader::config::load(std::path::Path::new(&path)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("calls-offloader: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = match calls_core::logging::init(&loaded.config.logger) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("calls-offloader: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in &loaded.notices {
        tracing::info!("{n}");
    }
    // A Docker daemon behind TLS (DOCKER_TLS_VERIFY) and the Kubernetes client use rustls' process
    // provider; choosing it here keeps that independent of the features other crates enable.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("calls-offloader: failed to start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(calls_offloader::run(loaded.config));
    // Watchers still waiting on running jobs are dropped here; the next start re-attaches them.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("calls-offloader: {e}");
            eprintln!("calls-offloader: {e}");
            ExitCode::FAILURE
        }
    }
}
