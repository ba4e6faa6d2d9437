//! `calls-bench`: the one-command benchmark (run through `bench/run`). In a network namespace of
//! its own, for every row it starts the SFU pinned to core 1, runs `calls-loadtest`'s engine on a
//! thread pinned to core 0, samples the SFU's CPU and memory at both ends of the steady phase,
//! and stops the SFU by its PID. Then the same rows against Janus's VideoRoom, the raw UDP
//! ceiling of core 1, and the report (Markdown, JSON, PNG plots).

use calls_loadtest::bench::{Measured, ProcSample, Report, Row, SfuCounters, sample_proc};
use calls_loadtest::peer::RxMode;
use calls_loadtest::rtcd::Credentials;
use calls_loadtest::run::{self, LoadConfig, Target};
use calls_testkit::{Daemon, NetNs};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// rtcd and its clients use addresses on the namespace's `lo`. Linux caches the output route to
// a local address only when the address sits on the device the packet leaves by (`lo`); to an
// address on a veth end it allocates and RCU-frees a route for every datagram, which cost the SFU
// core about 9% in the 1x1000 row. A real deployment sends through a cached gateway route, and
// `udp-ceiling`'s receivers (127.0.0.1) get the cached route too, so this keeps the comparison
// fair.
const SFU_IP: &str = "10.203.1.1";
const LOAD_IP: &str = "10.203.1.2";
// Participants share one socket, each with an address of this prefix, routed to `lo`
// (`calls_loadtest::net`): batched I/O keeps the generator off the critical path, nobody's
// datagram wakes it, and the addresses get the cached route too.
const ANYIP: &str = "10.204.0.0/16";
// The veth end opposite Janus. Janus gathers on `vt0` (10.203.0.1) only and sends from a socket
// tied to it, for which the local route above does not apply: it reaches the prefix through this
// end of the pair (`calls_loadtest::janus`). Clients with a socket each
// (CALLS_BENCH_SOCKET_PER_PEER) bind here for Janus rows.
const VT1_IP: &str = "10.203.0.2";
const SFU_CORE: &str = "1";
const LOAD_CORE: usize = 0;

#[derive(Parser, Debug)]
#[command(about = "SFU benchmark: published rows, Janus side by side, raw UDP ceiling")]
struct Args {
    /// Where the report, plots and JSON go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Small rows and short phases: checks that everything works, measures nothing useful.
    #[arg(long)]
    quick: bool,
    /// Skip the Janus rows.
    #[arg(long)]
    no_janus: bool,
    /// Only the row of this name, or else the rows whose name contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Only render the report (Markdown and plots) again from this results.json.
    #[arg(long)]
    render: Option<PathBuf>,
    /// Seconds of each row's measured phase.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
}

fn rows(quick: bool) -> Vec<Row> {
    if quick {
        return vec![
            Row::new("quick-a", "smoke", 1, 20, 2).sweep(),
            Row::new("quick-b", "smoke", 4, 3, 1).screen(1),
        ];
    }
    vec![
        Row::new("1x100", "sweep", 1, 100, 2).sweep(),
        Row::new("1x250", "sweep", 1, 250, 2).sweep(),
        Row::new("1x500", "sweep", 1, 500, 2).sweep(),
        Row::new("1x1000", "1 x 1000, 2 unmuted", 1, 1000, 2).sweep(),
        Row::new("1x1000-muted", "1 x 1000, all muted", 1, 1000, 0),
        Row::new("100x10", "100 x 10, 2 unmuted", 100, 10, 2),
        Row::new("500x2", "1000 x 2 (halved)", 500, 2, 2),
        Row::new("1x200+screen", "1 x 1000 + screen (1/5)", 1, 200, 1).screen(1),
        Row::new("50x10+screen", "250 x 10 + screen (1/5)", 50, 10, 2).screen(50),
        Row::new("1x400x10", "saturation: 10 unmuted", 1, 400, 10),
        // 16 voice streams to 399 listeners offer 319k packets/s, past what one core of this VM
        // forwards even in its fast periods (10 streams, 200k/s, fitted in 78% of it in one).
        Row::new("1x400x16", "saturation: 16 unmuted", 1, 400, 16),
    ]
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("calls-bench: {e}");
        std::process::exit(1);
    }
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

fn real_main(a: Args) -> Result<(), String> {
    if let Some(json) = &a.render {
        let data = std::fs::read(json).map_err(|e| format!("{}: {e}", json.display()))?;
        let report: Report = serde_json::from_slice(&data)
            .map_err(|e| format!("{}: not a calls-bench result: {e}", json.display()))?;
        return write_report(&report, &a.out);
    }
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root: it creates a network namespace (run it with sudo)".into());
    }
    let rtcd = exe_dir().join("rtcd");
    if !rtcd.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release -p rtcd), or use bench/run",
            rtcd.display()
        ));
    }
    let janus = Path::new("/usr/bin/janus");
    let with_janus = !a.no_janus;
    if with_janus && !janus.is_file() {
        return Err("Janus is not installed (apt-get install janus), or pass --no-janus".into());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let media_dir = calls_loadtest::media::testdata_dir()?;
    let ns = NetNs::new("bench").with_veth();
    let (sfu_ip, load_ip) = (format!("{SFU_IP}/32"), format!("{LOAD_IP}/32"));
    let setup: [&[&str]; 4] = [
        &["addr", "add", &sfu_ip, "dev", "lo"],
        &["addr", "add", &load_ip, "dev", "lo"],
        &["route", "add", "local", ANYIP, "dev", "lo"],
        &["route", "add", ANYIP, "via", VT1_IP, "dev", "vt0"],
    ];
    for args in setup {
        let st = ns
            .command("ip")
            .args(args)
            .status()
            .map_err(|e| format!("ip {args:?}: {e}"))?;
        if !st.success() {
            return Err(format!("ip {args:?} in the namespace: {st}"));
        }
    }
    if with_janus {
        calls_loadtest::janus::accept_local_veth(&ns.0, &["vt0", "vt1"])?;
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The SFUs' configs, stores and logs; kept for a look when CALLS_BENCH_KEEP is set.
    let work = if std::env::var_os("CALLS_BENCH_KEEP").is_some() {
        let kept = work.keep();
        eprintln!("keeping SFU logs and configs in {}", kept.display());
        Work::Kept(kept)
    } else {
        Work::Temp(work)
    };
    let duration = if a.quick { 3.0 } else { a.duration };
    let mut report = Report {
        date: date(),
        machine: machine(),
        rows: Vec::new(),
        ceiling_200: None,
        ceiling_1200: None,
        notes: Vec::new(),
    };
    let all = rows(a.quick);
    // A row's exact name picks that row alone (`1x1000`, not `1x1000-muted` too).
    let exact = a
        .only
        .as_deref()
        .is_some_and(|o| all.iter().any(|r| r.name == o));
    let rows: Vec<Row> = all
        .into_iter()
        .filter(|r| match a.only.as_deref() {
            None => true,
            Some(o) if exact => r.name == o,
            Some(o) => r.name.contains(o),
        })
        .collect();
    if rows.is_empty() {
        return Err(format!(
            "no row matches --only {:?}",
            a.only.unwrap_or_default()
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        eprintln!(
            "[{}/{}] {}: {} calls x {} participants, {} unmuted, {} screen",
            i + 1,
            rows.len(),
            row.name,
            row.calls,
            row.participants,
            row.unmuted,
            row.screen
        );
        let m = bench_rtcd(
            &ns,
            &rtcd,
            work.path(),
            row,
            &media_dir,
            duration,
            &mut report.notes,
        )?;
        eprintln!("{}", summary(&m));
        report.rows.push(m);
        // In Janus's VideoRoom a participant with nothing to publish and no publisher to
        // subscribe to has no peer connection at all, so a row without media would compare
        // rtcd's connected sessions with nothing.
        if with_janus && row.has_media() {
            match bench_janus(&ns, work.path(), row, &media_dir, duration) {
                Ok(m) => {
                    eprintln!("{}", summary(&m));
                    report.rows.push(m);
                }
                Err(e) => {
                    eprintln!("  janus: {e}");
                    report.notes.push(format!("Janus, row {}: {e}", row.name));
                }
            }
        }
    }
    eprintln!("raw UDP ceiling on core {SFU_CORE}");
    report.ceiling_200 = ceiling(&ns, 200, a.quick);
    report.ceiling_1200 = ceiling(&ns, 1200, a.quick);
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(a.out.join("results.json"), json).map_err(|e| format!("results.json: {e}"))?;
    write_report(&report, &a.out)
}

fn write_report(report: &Report, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(out.join("report.md"), report.markdown())
        .map_err(|e| format!("report.md: {e}"))?;
    report.plots(out)?;
    eprintln!("report: {}", out.join("report.md").display());
    Ok(())
}

enum Work {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Work {
    fn path(&self) -> &Path {
        match self {
            Work::Temp(t) => t.path(),
            Work::Kept(p) => p,
        }
    }
}

fn summary(m: &Measured) -> String {
    format!(
        "  {:<6} CPU {:>5.1}%  RSS {:>6.1} MB  forwarded {:>7.0} pkt/s  heard all {}/{}  p99 join->audio {:.0} ms  generator {:.0}%",
        m.sfu,
        m.sfu_cpu_share * 100.0,
        m.sfu_rss_mb,
        m.forwarded_pps,
        m.load.hearing_all,
        m.load.listeners,
        m.load.join_to_first_audio.p99_ms,
        m.load.steady.loadgen_cpu_share * 100.0
    )
}

fn load_config(
    target: Target,
    bind_ip: &str,
    row: &Row,
    media_dir: &Path,
    duration: f64,
) -> LoadConfig {
    // CALLS_BENCH_SOCKET_PER_PEER: a socket per participant, to compare layouts.
    let anyip = std::env::var_os("CALLS_BENCH_SOCKET_PER_PEER")
        .is_none()
        .then(|| ANYIP.parse().expect("prefix"));
    LoadConfig {
        target,
        calls: row.calls,
        participants: row.participants,
        unmuted: row.unmuted,
        screen_calls: row.screen,
        video: 0,
        join_rate: 50.0,
        warmup: Duration::from_secs(5),
        duration: Duration::from_secs_f64(duration),
        bind_ip: bind_ip.parse().expect("ip"),
        rx: RxMode::Count,
        media_dir: media_dir.to_owned(),
        connect_timeout: Duration::from_secs(20),
        progress: true,
        anyip,
    }
}

/// Runs the load on a thread inside the namespace, pinned to the generator's core, sampling
/// `pid` at both ends of the steady phase, and rtcd's own counters when `rtcd_metrics`.
fn measure(
    ns: &NetNs,
    pid: u32,
    cfg: LoadConfig,
    rtcd_metrics: bool,
) -> Result<(run::LoadResult, ProcSample, ProcSample, SfuCounters), String> {
    use calls_sfu::metrics::{UDP_DROPPED, UDP_INGRESS_DROPPED, UDP_SENT};
    const NAMES: [&str; 3] = [UDP_SENT, UDP_INGRESS_DROPPED, UDP_DROPPED];
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(ns)?;
            calls_loadtest::affinity::pin(LOAD_CORE)?;
            let mut samples = Vec::new();
            let mut scraped = Vec::new();
            let result = run::run(cfg, &mut |_phase| {
                samples.push(sample_proc(pid));
                if rtcd_metrics {
                    scraped.push(scrape(&NAMES));
                }
            })?;
            let (Some(Ok(before)), Some(Ok(after))) = (samples.first(), samples.get(1)) else {
                return Err("the SFU exited during the run".to_string());
            };
            let delta = |i: usize| match (scraped.first(), scraped.get(1)) {
                (Some(a), Some(b)) => Some(b[i]? - a[i]?),
                _ => None,
            };
            let counters = SfuCounters {
                sent: delta(0),
                shed: delta(1),
                unsent: delta(2),
            };
            Ok((result, *before, *after, counters))
        })
        .join()
        .map_err(|_| "load thread panicked".to_string())?
    })
}

/// Moves the calling thread into the harness's namespace.
fn enter_netns(ns: &NetNs) -> Result<(), String> {
    calls_loadtest::janus::enter_netns(&ns.0).map_err(|e| format!("setns {}: {e}", ns.0))
}

/// The sum of each counter's series on rtcd's `/metrics` (inside the namespace); `None` for a
/// counter rtcd has not registered yet (nothing counted) or when the scrape failed.
fn scrape<const N: usize>(names: &[&str; N]) -> [Option<f64>; N] {
    use std::io::{Read, Write};
    let body = (|| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", 8045)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: rtcd\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    })();
    names.map(|name| {
        let body = body.as_ref()?;
        let values: Vec<f64> = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    })
}

fn bench_rtcd(
    ns: &NetNs,
    rtcd: &Path,
    work: &Path,
    row: &Row,
    media_dir: &Path,
    duration: f64,
    notes: &mut Vec<String>,
) -> Result<Measured, String> {
    let dir = work.join(format!("rtcd-{}", row.name));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd = ns.command("taskset");
    cmd.args(["-c", SFU_CORE])
        .arg(rtcd)
        .env("RTCD_API_HTTP_LISTENADDRESS", "127.0.0.1:8045")
        .env("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true")
        .env("RTCD_RTC_ICEADDRESSUDP", SFU_IP)
        .env("RTCD_RTC_ICEPORTUDP", "8443")
        .env("RTCD_RTC_ICEADDRESSTCP", SFU_IP)
        .env("RTCD_RTC_ICEPORTTCP", "8443")
        .env("RTCD_STORE_DATASOURCE", dir.join("db"))
        .env("RTCD_LOGGER_ENABLEFILE", "false")
        .env("RTCD_LOGGER_CONSOLEJSON", "true")
        .env("RTCD_LOGGER_CONSOLELEVEL", "INFO");
    let d = Daemon::start("rtcd", cmd, &dir, "CALLS_BENCH_ECHO");
    let target = Target::Rtcd {
        url: "http://127.0.0.1:8045".into(),
        creds: Credentials {
            client_id: "calls-bench".into(),
            auth_key: "calls-bench-auth-key-000000000000000".into(),
            admin_secret: None,
        },
    };
    let cfg = load_config(target, LOAD_IP, row, media_dir, duration);
    let res = measure(ns, d.pid(), cfg, true);
    if let Err(e) = d.stop_within(Duration::from_secs(30)) {
        eprintln!("  {e}");
        notes.push(format!("row {}: {e}", row.name));
    }
    let (load, before, after, counters) = res?;
    Ok(Measured::new(
        "rtcd",
        row.clone(),
        load,
        before,
        after,
        counters,
    ))
}

fn bench_janus(
    ns: &NetNs,
    work: &Path,
    row: &Row,
    media_dir: &Path,
    duration: f64,
) -> Result<Measured, String> {
    let dir = work.join(format!("janus-{}", row.name));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg_path = calls_loadtest::janus::write_config(&dir, "vt0", 8188, (20000, 40000), 1)
        .map_err(|e| format!("janus config: {e}"))?;
    let mut child = ns
        .command("taskset")
        .args(["-c", SFU_CORE, "/usr/bin/janus", "-C"])
        .arg(&cfg_path)
        .arg("-F")
        .arg(&dir)
        .arg("-L")
        .arg(dir.join("janus.log"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start janus: {e}"))?;
    let pid = child.id();
    let cfg = load_config(
        Target::Janus {
            ws_url: "ws://127.0.0.1:8188".into(),
        },
        VT1_IP,
        row,
        media_dir,
        duration,
    );
    let res = wait_port(ns, 8188).and_then(|_| measure(ns, pid, cfg, false));
    // SAFETY: signals only the child we started, by its PID.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let (load, before, after, counters) = res?;
    Ok(Measured::new(
        "janus",
        row.clone(),
        load,
        before,
        after,
        counters,
    ))
}

/// Waits until something accepts on `127.0.0.1:port` inside the namespace.
fn wait_port(ns: &NetNs, port: u16) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(ns)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(format!("nothing listens on port {port} after 20 s"))
        })
        .join()
        .map_err(|_| "wait thread panicked".to_string())?
    })
}

/// `udp-ceiling` pinned to the SFU's core, inside the namespace.
fn ceiling(ns: &NetNs, payload: usize, quick: bool) -> Option<f64> {
    let bin = exe_dir().join("udp-ceiling");
    let out = ns
        .command(bin.to_str()?)
        .args(["--core", SFU_CORE, "--sink-core", "0", "--payload"])
        .arg(payload.to_string())
        .args(["--seconds", if quick { "0.5" } else { "5" }])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["datagrams_per_second"].as_f64()
}

fn date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
