//! The `main` both daemons share: parse `-config PATH` (and `-help`, `-version`), load and
//! validate the configuration, start logging, run on a multi-threaded runtime, and turn the
//! outcome into an exit code (2: usage, 1: configuration or start-up error).

use crate::config::{ConfigArgs, Loaded};
use crate::logging::LoggerConfig;
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

/// What a daemon says about itself on the command line.
pub struct About {
    /// The binary's name, prefixed to every error line.
    pub name: &'static str,
    pub usage: &'static str,
    pub default_config: &'static str,
    /// `implementation` of `/version`, the upstream version it speaks, and what that version is
    /// called in `-version` output ("protocol", "API").
    pub implementation: &'static str,
    pub compat_version: &'static str,
    pub compat_label: &'static str,
    pub with_platform: bool,
}

/// Runs a daemon to completion. `load` reads the configuration, `logger` picks its `[logger]`
/// section, and `run` is the daemon itself (its `Err` is a one-line start-up error).
pub fn main<C, E, F>(
    about: &About,
    load: impl FnOnce(&Path) -> Result<Loaded<C>, E>,
    logger: fn(&C) -> &LoggerConfig,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    E: Display,
    F: Future<Output = Result<(), String>>,
{
    let name = about.name;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match crate::config::config_path_from_args(&args, about.default_config) {
        Ok(ConfigArgs::Run(p)) => p,
        Ok(ConfigArgs::Help) => {
            println!("{}", about.usage);
            return ExitCode::SUCCESS;
        }
        Ok(ConfigArgs::Version) => {
            let v = crate::buildinfo::version_info(
                about.implementation,
                about.compat_version,
                about.with_platform,
            );
            println!(
                "{name} {} ({} {}, commit {}, built {})",
                v.implementation_version,
                about.compat_label,
                v.build_version,
                v.build_hash,
                v.build_date
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e}\n\n{}", about.usage);
            return ExitCode::from(2);
        }
    };
    let loaded = match load(Path::new(&path)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = match crate::logging::init(logger(&loaded.config)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{name}: {e}");
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
            eprintln!("{name}: failed to start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(run(loaded.config));
    // Tasks still waiting (a job watcher, a stalled connection) are not waited for: the daemon
    // has already drained what it promised to.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{name}: {e}");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT and SIGTERM (the signals systemd and `docker stop` send), listened for from start-up
/// on. Every signal counts: each one not yet taken is returned by the next
/// [`ShutdownSignals::recv`].
///
/// tokio alone cannot promise that. It reports only the signals that arrive while a listener
/// exists (so the listeners live for the whole run), and it folds signals that arrive before its
/// listener is polled into one: two `kill`s back to back, the "stop now" an admin sends after
/// "drain", would read as a single one. A handler of our own counts each delivery, and tokio's
/// listeners only wake `recv` to look at the count.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    taken: usize,
}

impl ShutdownSignals {
    /// Installs the listeners; call it before saying the daemon is up. Needs a tokio runtime.
    pub fn install() -> Result<Self, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::signal::unix::{SignalKind, signal};
        let received = std::sync::Arc::new(AtomicUsize::new(0));
        for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
            let count = received.clone();
            // SAFETY: the action only increments an atomic, which is async-signal-safe. It is
            // registered before tokio's listener, so the count is up when tokio wakes `recv`.
            unsafe {
                signal_hook_registry::register(sig, move || {
                    count.fetch_add(1, Ordering::SeqCst);
                })
            }
            .map_err(|e| format!("cannot listen for {name}: {e}"))?;
        }
        let listen =
            |kind, name| signal(kind).map_err(|e| format!("cannot listen for {name}: {e}"));
        Ok(Self {
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            received,
            taken: 0,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM (or at once for one already received).
    pub async fn recv(&mut self) {
        use std::sync::atomic::Ordering;
        loop {
            if self.received.load(Ordering::SeqCst) > self.taken {
                self.taken += 1;
                return;
            }
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sends this process SIGTERM and returns once the kernel has delivered it: one sent while
    /// another is still pending would be merged into it by the kernel, before any handler runs.
    fn sigterm_self() {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success());
        calls_testkit::wait_sigterm_delivered(std::process::id());
    }

    /// A signal that arrives while nothing awaits `recv` (the daemon busy handling the first one)
    /// is still returned by the next `recv`. (nextest runs each test in its own process, and the
    /// listener's handler keeps SIGTERM from ending it.)
    /// Two signals delivered before anything polls the listener (tokio folds those into one)
    /// are two signals.
    #[tokio::test]
    async fn two_signals_before_a_receive_count_twice() {
        let mut signals = ShutdownSignals::install().unwrap();
        sigterm_self();
        sigterm_self();
        for n in ["first", "second"] {
            tokio::time::timeout(Duration::from_secs(10), signals.recv())
                .await
                .unwrap_or_else(|_| panic!("the {n} SIGTERM was not reported"));
        }
    }

    #[tokio::test]
    async fn a_signal_sent_between_receives_is_not_lost() {
        let mut signals = ShutdownSignals::install().unwrap();
        for n in ["first", "second"] {
            sigterm_self();
            tokio::time::timeout(Duration::from_secs(10), signals.recv())
                .await
                .unwrap_or_else(|_| panic!("the {n} SIGTERM was not reported"));
        }
    }
}
