//! `calls-loadtest`: tools that measure an rtcd-compatible SFU and the machine under it.
//!
//! - [`affinity`]: pinning the current thread to one core, so a measurement's CPU is its own.
//! - `udp-ceiling` (binary): the raw `sendmmsg` rate one core reaches on loopback, the physical
//!   reference the SFU's forwarding rate is compared with.

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
