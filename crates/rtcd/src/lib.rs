//! `rtcd`: a wire-compatible implementation of Mattermost's WebRTC SFU daemon.
//!
//! Where things go:
//! - [`api`]: the HTTP API on `api.http.listen_address` (default `:8045`) and the `/ws` upgrade.
//! - [`ws`]: one task pair per plugin WebSocket connection (pings, deadlines, frames).
//! - [`service`]: the task that owns the control core and routes frames between connections.
//! - [`control`]: the sans-IO control core: sessions, routing, lifecycle. The media plane (SFU)
//!   plugs in through [`control::MediaCommand`] and [`control::MediaEvent`].
//! - [`media`]: the media plane (`calls-sfu`) attached to the control plane: sockets, addresses.
//! - [`config`], [`metrics`], [`system`]: configuration, Prometheus series, `/system` load.

pub mod api;
pub mod config;
pub mod control;
pub mod media;
pub mod metrics;
pub mod service;
pub mod system;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The upstream rtcd release whose protocol this build speaks; reported as `buildVersion`.
pub const COMPAT_VERSION: &str = "v1.2.6";
/// This implementation's name in `/version` (`implementation`).
pub const IMPLEMENTATION: &str = "calls-rs rtcd";

/// Runs rtcd until SIGINT/SIGTERM. Errors are start-up failures, as one line for the admin.
pub async fn run(cfg: config::Config) -> Result<(), String> {
    let version = calls_core::buildinfo::version_info(IMPLEMENTATION, COMPAT_VERSION, true);
    tracing::info!(
        build_version = %version.build_version,
        build_hash = %version.build_hash,
        build_date = %version.build_date,
        version = %version.implementation_version,
        "rtcd: starting up"
    );
    let metrics = calls_core::metrics::Registry::install("rtcd", metrics::BUCKETS)?;
    metrics::describe();

    let store = calls_core::store::open_configured(&cfg.store).await?;
    let auth = calls_core::auth::AuthService::new(Arc::new(store), cfg.api.security.clone());

    let (listener, tls) = calls_core::http::bind_api(&cfg.api.http)?;

    let (shell, endpoints) = media::bind(&cfg.rtc).await?;
    for e in &endpoints {
        tracing::info!(local = %e.local, advertised = %e.advertised, "rtc: listening for media (UDP, then ICE-TCP)");
    }
    let (plane, media_cmds) = media::channel();
    let control = service::spawn(Box::new(plane));
    media::start(shell, media_cmds, control.clone());
    let ws_tasks = tokio_util::task::TaskTracker::new();
    let state = Arc::new(api::AppState {
        auth,
        control: control.clone(),
        version,
        cpu_load: AtomicU64::new(0),
        metrics,
        ws_tasks: ws_tasks.clone(),
    });
    tokio::spawn(sample_cpu_load(state.clone()));

    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut signals = calls_core::daemon::ShutdownSignals::install()?;
    tracing::info!(address = %local, tls = cfg.api.http.tls.enable, "api server listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(calls_core::http::serve(
        listener,
        tls,
        api::router(state),
        async {
            let _ = stop_rx.await;
        },
    ));

    signals.recv().await;
    drain(&control, &mut signals).await;
    tracing::info!("rtcd: shutting down");
    // Close every session first, so the plugin gets a `close` for each; then let the connection
    // tasks write what they have queued (they end once the control task drops their queues).
    control.shutdown().await;
    ws_tasks.close();
    if tokio::time::timeout(calls_core::http::SHUTDOWN_GRACE, ws_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some plugin connections did not finish writing within the grace period");
    }
    let _ = stop_tx.send(());
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("api server failed: {e}")),
        Err(e) => Err(format!("api server task failed: {e}")),
    }
}

/// How long a SIGTERM waits for calls to end before closing what is left.
pub const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Draining, as rtcd's `Stop()`: wait until every session has ended on its own (new joins are
/// still served meanwhile), so that a rolling restart does not cut calls. rtcd waits forever;
/// here the wait is bounded by [`DRAIN_LIMIT`], and a second SIGTERM/SIGINT stops at once.
async fn drain(
    control: &service::ControlHandle,
    signals: &mut calls_core::daemon::ShutdownSignals,
) {
    let n = control.session_count().await;
    if n == 0 {
        return;
    }
    tracing::info!(
        sessions = n,
        limit_secs = DRAIN_LIMIT.as_secs(),
        "rtcd: draining: waiting for calls to end (signal again to stop now)"
    );
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let mut check = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = signals.recv() => {
                tracing::info!("rtcd: second signal: closing the remaining sessions now");
                return;
            }
            _ = check.tick() => {
                if control.session_count().await == 0 {
                    tracing::info!("rtcd: drained: every session has ended");
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!("rtcd: drain limit reached: closing the remaining sessions");
                    return;
                }
            }
        }
    }
}

/// Samples `/proc/stat` every second for `/system` (0 until the second sample, as in rtcd).
async fn sample_cpu_load(state: Arc<api::AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut prev: Option<(u64, std::time::Instant)> = None;
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        let idle = match tokio::fs::read_to_string("/proc/stat")
            .await
            .ok()
            .as_deref()
            .and_then(system::parse_idle_ticks)
        {
            Some(i) => i,
            None => {
                tracing::error!("failed to read cpu stat from /proc/stat");
                continue;
            }
        };
        if let Some((p_idle, p_t)) = prev {
            let load = system::cpu_load(p_idle, idle, (now - p_t).as_secs_f64());
            state.cpu_load.store(load.to_bits(), Ordering::Relaxed);
        }
        prev = Some((idle, now));
    }
}
