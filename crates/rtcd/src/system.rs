//! `/system`: the CPU load figure the plugin uses to place new calls on the least-loaded rtcd.
//!
//! rtcd reports `elapsed seconds / idle CPU-seconds` over the last second (an idle N-core host
//! reports about 1/N; busier hosts more). The same scale is kept so that Go and Rust nodes can
//! share one DNS pool during a migration, but the value is capped instead of becoming +Inf (which
//! makes Go answer an empty body) when the host had no idle time at all.

/// Upper bound of the reported load (a host with at most 1/1000 of a CPU idle).
pub const MAX_LOAD: f64 = 1000.0;

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// Idle ticks of all CPUs from the `cpu` line of `/proc/stat`.
pub fn parse_idle_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// The load over an interval, never NaN or infinite.
pub fn cpu_load(prev_idle_ticks: u64, cur_idle_ticks: u64, elapsed_secs: f64) -> f64 {
    if elapsed_secs <= 0.0 || !elapsed_secs.is_finite() {
        return 0.0;
    }
    let idle_secs = cur_idle_ticks.saturating_sub(prev_idle_ticks) as f64 / USER_HZ;
    (elapsed_secs / idle_secs.max(elapsed_secs / MAX_LOAD)).min(MAX_LOAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_scale_matches_rtcd_and_stays_finite() {
        let stat = "cpu  10 0 5 12345 7 0 0 0 0 0\ncpu0 5 0 2 6000 3 0 0 0 0 0\n";
        assert_eq!(parse_idle_ticks(stat), Some(12345));
        assert_eq!(parse_idle_ticks("garbage"), None);
        // 2 idle cores for 1 s: 200 idle ticks → 0.5 (1/N, as rtcd reports).
        assert_eq!(cpu_load(0, 200, 1.0), 0.5);
        // Half busy on 2 cores: 100 idle ticks → 1.0; busier means larger.
        assert_eq!(cpu_load(0, 100, 1.0), 1.0);
        assert!(cpu_load(0, 10, 1.0) > cpu_load(0, 100, 1.0));
        // No idle time at all (rtcd: +Inf) or a counter going backwards: capped, finite.
        assert_eq!(cpu_load(100, 100, 1.0), MAX_LOAD);
        assert_eq!(cpu_load(200, 100, 1.0), MAX_LOAD);
        assert_eq!(cpu_load(0, 100, 0.0), 0.0);
    }
}
