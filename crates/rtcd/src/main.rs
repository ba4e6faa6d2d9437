//! The `rtcd` binary: parse `-config PATH`, load and validate the configuration, start logging, run.

use std::process::ExitCode;

const USAGE: &str = "Usage: rtcd [-config PATH]\n\n  -config PATH   path to the configuration file (default config/config.toml)\n  -version       print version information and exit\n\nEvery key can also be set with an RTCD_* environment variable; see config/rtcd.sample.toml.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path =
        match calls_core::config::config_path_from_args(&args, rtcd::config::DEFAULT_CONFIG_PATH) {
            Ok(calls_core::config::ConfigArgs::Run(p)) => p,
            Ok(calls_core::config::ConfigArgs::Help) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Ok(calls_core::config::ConfigArgs::Version) => {
                let v = calls_core::buildinfo::version_info(
                    "calls-rs rtcd",
                    rtcd::COMPAT_VERSION,
                    true,
                );
                println!(
                    "rtcd {} (protocol {}, commit {}, built {})",
                    v.implementation_version, v.build_version, v.build_hash, v.build_date
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("rtcd: {e}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
    let loaded = match rtcd::config::load(std::path::Path::new(&path)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rtcd: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = match calls_core::logging::init(&loaded.config.logger) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rtcd: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in &loaded.notices {
        tracing::info!("{n}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtcd: failed to start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(rtcd::run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("rtcd: {e}");
            eprintln!("rtcd: {e}");
            ExitCode::FAILURE
        }
    }
}
