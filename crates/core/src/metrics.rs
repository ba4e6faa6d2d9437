//! The Prometheus registry: the `metrics` facade with a Prometheus recorder, plus process metrics
//! under the daemon's namespace (`rtcd_process_cpu_seconds_total`, ...), as the Go services' process
//! collectors publish them, so existing dashboards keep working.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Prometheus client defaults (`prometheus.DefBuckets`).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Registry {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Registry {
    /// Installs the global recorder. `buckets` gives per-metric histogram buckets; every other
    /// histogram uses [`DEFAULT_BUCKETS`] (never a summary). `namespace` prefixes process metrics.
    pub fn install(namespace: &str, buckets: &[(&str, &[f64])]) -> Result<Self, String> {
        let mut b = PrometheusBuilder::new()
            .set_buckets(DEFAULT_BUCKETS)
            .map_err(|e| e.to_string())?;
        for (name, bk) in buckets {
            b = b
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), bk)
                .map_err(|e| e.to_string())?;
        }
        let handle = b
            .install_recorder()
            .map_err(|e| format!("failed to install metrics recorder: {e}"))?;
        let process = metrics_process::Collector::new(format!("{namespace}_"));
        process.describe();
        Ok(Self { handle, process })
    }

    /// The text exposition, with process metrics sampled now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}
