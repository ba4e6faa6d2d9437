//! The `rtcd` binary: parse `-config PATH`, load and validate the configuration, start logging, run.

use std::process::ExitCode;

const ABOUT: calls_core::daemon::About = calls_core::daemon::About {
    name: "rtcd",
    usage: "Usage: rtcd [-config PATH]\n\n  -config PATH   path to the configuration file (default config/config.toml)\n  -version       print version information and exit\n\nEvery key can also be set with an RTCD_* environment variable; see config/rtcd.sample.toml.",
    default_config: rtcd::config::DEFAULT_CONFIG_PATH,
    implementation: rtcd::IMPLEMENTATION,
    compat_version: rtcd::COMPAT_VERSION,
    compat_label: "protocol",
    with_platform: true,
};

fn main() -> ExitCode {
    calls_core::daemon::main(&ABOUT, rtcd::config::load, |c| &c.logger, rtcd::run)
}
