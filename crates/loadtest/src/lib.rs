//! `calls-loadtest`: tools that measure an rtcd-compatible SFU and the machine under it.
//!
//! Where a simulated participant's packet goes: [`run`] schedules participants and owns their
//! sockets (one each, or one shared by all, in [`net`]); each is a sans-IO [`peer::Peer`] (a
//! str0m client) fed by [`media`] clips; signaling
//! goes through [`rtcd`] (playing the Calls plugin) or [`janus`] (VideoRoom, for comparison).
//!
//! - `calls-loadtest` (binary): the load tool admins size deployments with.
//! - `calls-bench` (binary, run by `bench/run`): the benchmark harness; [`bench`] holds its
//!   measurements and report.
//! - `udp-ceiling` (binary): the raw `sendmmsg` rate one core reaches on loopback, the physical
//!   reference the SFU's forwarding rate is compared with.
//! - [`affinity`]: pinning the current thread to one core, so a measurement's CPU is its own.

pub mod bench;
pub mod janus;
pub mod media;
pub mod net;
pub mod peer;
pub mod rtcd;
pub mod run;

pub mod affinity {
    /// Pins the calling thread to `core`. Linux only; elsewhere a no-op that reports failure.
    pub fn pin(core: usize) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
            // sched_setaffinity(0, …) only reads it for the calling thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(core, &mut set);
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(format!(
                        "cannot pin to core {core}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(format!("cannot pin to core {core}: not supported here"))
        }
    }

    /// CPU time the calling thread has used, in seconds.
    pub fn thread_cpu_seconds() -> f64 {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getrusage writes into the zeroed struct we own.
            unsafe {
                let mut u: libc::rusage = std::mem::zeroed();
                if libc::getrusage(libc::RUSAGE_THREAD, &mut u) != 0 {
                    return 0.0;
                }
                let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
                t(u.ru_utime) + t(u.ru_stime)
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            0.0
        }
    }
}
