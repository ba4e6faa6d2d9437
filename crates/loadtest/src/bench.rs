//! The benchmark harness's parts that are not process plumbing: what a row is, what is measured
//! of the SFU process (`/proc`), and the report (Markdown and PNG plots).

use crate::run::LoadResult;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One load shape, as in Mattermost's published ceiling table (scaled where this machine's one
/// SFU core cannot carry the original).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Row {
    pub name: String,
    /// What the row corresponds to in the published table.
    pub published: String,
    pub calls: usize,
    pub participants: usize,
    pub unmuted: usize,
    pub screen: usize,
    /// Part of the participants sweep that the plots draw.
    pub sweep: bool,
}

impl Row {
    pub fn new(
        name: &str,
        published: &str,
        calls: usize,
        participants: usize,
        unmuted: usize,
    ) -> Row {
        Row {
            name: name.into(),
            published: published.into(),
            calls,
            participants,
            unmuted,
            screen: 0,
            sweep: false,
        }
    }

    pub fn screen(mut self, calls: usize) -> Row {
        self.screen = calls;
        self
    }

    pub fn sweep(mut self) -> Row {
        self.sweep = true;
        self
    }

    pub fn total(&self) -> usize {
        self.calls * self.participants
    }

    /// Somebody sends: a row with no media has no delivery or per-packet figures.
    pub fn has_media(&self) -> bool {
        self.unmuted + self.screen > 0
    }
}

/// CPU (user + system, seconds) and memory of a process, from `/proc`, and the datagrams its
/// network namespace's UDP sockets dropped on arrival (their receive buffers were full).
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    /// Dropped at the process's own UDP sockets.
    #[serde(default)]
    pub own_socket_drops: u64,
    /// Dropped at the namespace's other UDP sockets: in the harness, the load generator's.
    #[serde(default)]
    pub other_socket_drops: u64,
}

/// The `drops` of the UDP sockets in a `/proc/net/udp` or `udp6` table, split between the sockets
/// whose inode is in `own` and the others.
pub fn socket_drops(table: &str, own: &std::collections::HashSet<u64>) -> (u64, u64) {
    let (mut mine, mut others) = (0, 0);
    // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops.
    for f in table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
    {
        let (Some(inode), Some(drops)) = (
            f.get(9).and_then(|v| v.parse::<u64>().ok()),
            f.get(12).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if own.contains(&inode) {
            mine += drops;
        } else {
            others += drops;
        }
    }
    (mine, others)
}

/// [`socket_drops`] over the IPv4 and IPv6 tables of the namespace whose `/proc/.../net` is `net`.
pub(crate) fn namespace_drops(net: &str, own: &std::collections::HashSet<u64>) -> (u64, u64) {
    ["udp", "udp6"].iter().fold((0, 0), |(a, b), table| {
        let t = std::fs::read_to_string(format!("{net}/{table}")).unwrap_or_default();
        let (x, y) = socket_drops(&t, own);
        (a + x, b + y)
    })
}

/// The inodes of the sockets a process (`self` or a PID) holds open.
pub(crate) fn socket_inodes(pid: &str) -> std::collections::HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Default::default();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

pub fn sample_proc(pid: u32) -> Result<ProcSample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("process {pid} is gone: {e}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let cpu_seconds = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The tables are the namespace's, as the process sees it.
    let (own_socket_drops, other_socket_drops) = namespace_drops(
        &format!("/proc/{pid}/net"),
        &socket_inodes(&pid.to_string()),
    );
    Ok(ProcSample {
        cpu_seconds,
        rss_mb: kb("VmRSS:") / 1024.0,
        peak_rss_mb: kb("VmHWM:") / 1024.0,
        own_socket_drops,
        other_socket_drops,
    })
}

/// What the SFU's own metrics counted over the steady phase (rtcd's; Janus has none).
#[derive(Debug, Clone, Copy, Default)]
pub struct SfuCounters {
    /// Datagrams sent.
    pub sent: Option<f64>,
    /// Datagrams read but shed by the SFU's ingress queue when overloaded.
    pub shed: Option<f64>,
    /// Datagrams the SFU could not send (socket buffer full).
    pub unsent: Option<f64>,
}

/// Datagrams lost per second in a row's steady phase, by where they were dropped.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Drops {
    /// At the SFU's sockets, which were full: the SFU did not read them in time.
    pub sfu_socket: f64,
    /// Read by the SFU, then shed by its own ingress queue (rtcd only).
    pub sfu_shed: Option<f64>,
    /// Not sent by the SFU: its socket's send buffer was full (rtcd only).
    pub sfu_unsent: Option<f64>,
    /// At the load generator's sockets: the generator did not read them in time.
    pub generator_socket: f64,
}

/// One row measured on one SFU.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Measured {
    pub sfu: String,
    pub row: Row,
    pub load: LoadResult,
    /// SFU CPU over the steady phase: seconds and share of its one core.
    pub sfu_cpu_seconds: f64,
    pub sfu_cpu_share: f64,
    pub sfu_rss_mb: f64,
    pub sfu_peak_rss_mb: f64,
    /// RTP packets the participants received per second in the steady phase: what the SFU
    /// forwarded and delivered, counted the same way for every SFU.
    pub forwarded_pps: f64,
    /// Datagrams the SFU reports it sent per second (its own metric; rtcd only).
    pub sent_pps: Option<f64>,
    /// Forwarded packets per second per fully used SFU core.
    pub pps_per_core: f64,
    pub cpu_seconds_per_million: f64,
    pub kb_per_participant: f64,
    /// Where datagrams were dropped in the steady phase (absent from results before it existed).
    #[serde(default)]
    pub drops: Drops,
}

impl Measured {
    pub fn new(
        sfu: &str,
        row: Row,
        load: LoadResult,
        before: ProcSample,
        after: ProcSample,
        counters: SfuCounters,
    ) -> Measured {
        let secs = load.steady.seconds.max(1e-9);
        let per_second = |n: u64, m: u64| n.saturating_sub(m) as f64 / secs;
        let cpu = (after.cpu_seconds - before.cpu_seconds).max(0.0);
        let pps = load.steady.rx_pps;
        let million = load.steady.rx_packets as f64 / 1e6;
        Measured {
            sfu: sfu.into(),
            sfu_cpu_seconds: cpu,
            sfu_cpu_share: cpu / secs,
            sfu_rss_mb: after.rss_mb,
            sfu_peak_rss_mb: after.peak_rss_mb,
            forwarded_pps: pps,
            sent_pps: counters.sent.map(|s| s / secs),
            pps_per_core: if cpu > 0.0 { pps / (cpu / secs) } else { 0.0 },
            cpu_seconds_per_million: if million > 0.0 { cpu / million } else { 0.0 },
            kb_per_participant: after.rss_mb * 1024.0 / row.total().max(1) as f64,
            drops: Drops {
                sfu_socket: per_second(after.own_socket_drops, before.own_socket_drops),
                sfu_shed: counters.shed.map(|n| n / secs),
                sfu_unsent: counters.unsent.map(|n| n / secs),
                generator_socket: per_second(after.other_socket_drops, before.other_socket_drops),
            },
            row,
            load,
        }
    }
}

/// Everything one harness run produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub rows: Vec<Measured>,
    /// `udp-ceiling` output: datagrams per second one core sends at 200 B and 1200 B.
    pub ceiling_200: Option<f64>,
    pub ceiling_1200: Option<f64>,
    pub notes: Vec<String>,
}

/// The p99 join-to-audio cell: participants that never heard anyone count as infinitely late,
/// so a p99 among them is shown as such rather than as a number.
fn p99(l: &LoadResult) -> String {
    let p = l.join_to_first_audio.p99_ms;
    if p >= 3_600_000.0 {
        "never (some)".into()
    } else {
        format!("{p:.0} ms")
    }
}

/// The p99 voice delay cell ([`crate::peer::MediaClock`]): sender's schedule to receipt.
fn voice_delay(l: &LoadResult) -> String {
    let d = &l.steady.audio_delay;
    if d.count > 0 {
        format!("{:.1} ms", d.p99_ms)
    } else if l.steady.delay_unmeasured > 0 {
        "n/a (rewrites timestamps)".into()
    } else {
        "—".into()
    }
}

fn find<'a>(rows: &'a [Measured], sfu: &str, name: &str) -> Option<&'a Measured> {
    rows.iter().find(|m| m.sfu == sfu && m.row.name == name)
}

impl Report {
    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# SFU benchmark\n");
        let _ = writeln!(
            s,
            "Generated by `bench/run` on {} ({}). The SFU under test is pinned to one core and the load \
             generator (`calls-loadtest`, one thread) to the other; both run in a network namespace of the \
             harness's own. The participants share one socket, each with its own address on the \
             namespace's `lo` (`--anyip`), for both SFUs; Janus, which will not use loopback for ICE, \
             gathers on a veth pair and reaches them across it. CPU and memory come from `/proc/<pid>`, \
             sampled at both ends of \
             each row's steady phase (everyone joined, media flowing). *Forwarded* counts the RTP packets \
             the participants received, the same way for both SFUs. *p99 join→audio* runs from the later \
             of a participant's join and the join of the first speaker it can hear (participants join \
             call by call, so a call's second speaker can join long after its first). *p99 voice delay* \
             is one-way, over the steady phase, from the moment a speaker was due to send each packet \
             to the moment the generator read it: every participant stamps its media from one clock, so \
             it includes the generator's own lateness (see its CPU) as well as the SFU's queues. An SFU \
             that rewrites RTP timestamps cannot be timed this way.\n",
            self.date, self.machine
        );
        let _ = writeln!(s, "## Rows\n");
        let _ = writeln!(
            s,
            "| SFU | row | published row | participants | heard all | p99 join→audio | p99 voice delay | SFU CPU (one core) | SFU RSS | forwarded pkt/s | pkt/s per core | CPU-s per M pkts | KB per participant | loss | generator CPU |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for m in &self.rows {
            let l = &m.load;
            let media = |cell: String| {
                if m.row.has_media() {
                    cell
                } else {
                    "—".into()
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.1} MB | {:.0} | {} | {} | {:.0} | {} | {:.0}% |",
                m.sfu,
                m.row.name,
                m.row.published,
                m.row.total(),
                media(format!("{}/{}", l.hearing_all, l.listeners)),
                media(p99(l)),
                media(voice_delay(l)),
                m.sfu_cpu_share * 100.0,
                m.sfu_rss_mb,
                m.forwarded_pps,
                media(format!("{:.0}", m.pps_per_core)),
                media(format!("{:.2}", m.cpu_seconds_per_million)),
                m.kb_per_participant,
                media(format!("{:.3}%", l.loss_ratio * 100.0)),
                l.steady.loadgen_cpu_share * 100.0,
            );
        }
        for m in self
            .rows
            .iter()
            .filter(|m| !m.row.has_media() && m.row.total() > 0)
        {
            let _ = writeln!(
                s,
                "\n{}, row {} (everyone connected, nobody sending): {:.1}% of the core and {:.1} MB for {} \
                 participants, i.e. {:.0} µs of CPU per participant per second: what the sessions cost \
                 before any media (consent, RTCP, timers).",
                m.sfu,
                m.row.name,
                m.sfu_cpu_share * 100.0,
                m.sfu_rss_mb,
                m.row.total(),
                m.sfu_cpu_share * 1e6 / m.row.total() as f64,
            );
        }
        let _ = writeln!(s, "\n## Where datagrams were dropped\n");
        let _ = writeln!(
            s,
            "Per second of the steady phase, from the kernel's per-socket `drops` (`/proc/net/udp`: a \
             receive buffer was full) and rtcd's own counters (`{}`, `{}`). Whoever drops is the one \
             that did not keep up: drops at the generator's socket would mean the load tool, not the \
             SFU, limited the row. rtcd sheds media that waited over 250 ms, or over 100 ms once \
             overloaded (counted as shed); an SFU that does not, and whose backlog still fits its \
             socket's buffer, falls behind without dropping: that shows as delay (p99 voice \
             delay), not here.\n",
            calls_sfu::metrics::UDP_INGRESS_DROPPED,
            calls_sfu::metrics::UDP_DROPPED
        );
        let _ = writeln!(
            s,
            "| SFU | row | forwarded pkt/s | at the SFU's socket | shed by the SFU | not sent by the SFU | at the generator's socket |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
        for m in self.rows.iter().filter(|m| m.row.has_media()) {
            let d = &m.drops;
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {} | {} | {:.0} |",
                m.sfu,
                m.row.name,
                m.forwarded_pps,
                d.sfu_socket,
                opt(d.sfu_shed),
                opt(d.sfu_unsent),
                d.generator_socket
            );
        }
        let _ = writeln!(s, "\n## Side by side\n");
        let _ = writeln!(
            s,
            "| row | ours CPU-s per M pkts | Janus CPU-s per M pkts | Janus / ours | ours KB per participant | Janus KB per participant |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for m in self
            .rows
            .iter()
            .filter(|m| m.sfu == "rtcd" && m.row.has_media())
        {
            if let Some(j) = find(&self.rows, "janus", &m.row.name) {
                let ratio = if m.cpu_seconds_per_million > 0.0 {
                    j.cpu_seconds_per_million / m.cpu_seconds_per_million
                } else {
                    0.0
                };
                let _ = writeln!(
                    s,
                    "| {} | {:.2} | {:.2} | {:.2}x | {:.0} | {:.0} |",
                    m.row.name,
                    m.cpu_seconds_per_million,
                    j.cpu_seconds_per_million,
                    ratio,
                    m.kb_per_participant,
                    j.kb_per_participant
                );
            }
        }
        let _ = writeln!(s, "\n## Raw UDP ceiling\n");
        match (self.ceiling_200, self.ceiling_1200) {
            (Some(a), Some(b)) => {
                let _ = writeln!(
                    s,
                    "`udp-ceiling` (one pinned core, `sendmmsg` through the SFU's own send path to draining \
                     receivers): **{a:.0} datagrams/s at 200 B**, {b:.0} at 1200 B.\n"
                );
                let best = self
                    .rows
                    .iter()
                    .filter(|m| m.sfu == "rtcd")
                    .map(|m| m.pps_per_core)
                    .fold(0.0, f64::max);
                let _ = writeln!(
                    s,
                    "Best rtcd rate per core in this run: {best:.0} packets/s = **{:.2} of the ceiling** (200 B).",
                    best / a
                );
            }
            _ => {
                let _ = writeln!(s, "Not measured in this run.");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let _ = writeln!(
            s,
            "\n## Plots\n\n![CPU](cpu.png)\n\n![Memory](memory.png)\n\n![Throughput](throughput.png)"
        );
        s
    }

    /// PNG plots of the sweep rows: CPU, memory and forwarded packets against participants.
    pub fn plots(&self, dir: &Path) -> Result<(), String> {
        register_font()?;
        let series = |sfu: &str, f: &dyn Fn(&Measured) -> f64| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = self
                .rows
                .iter()
                .filter(|m| m.sfu == sfu && m.row.sweep)
                .map(|m| (m.row.total() as f64, f(m)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        type Metric<'a> = &'a dyn Fn(&Measured) -> f64;
        let plots: [(&str, &str, Metric); 3] = [
            ("cpu.png", "SFU CPU, % of one core", &|m| {
                m.sfu_cpu_share * 100.0
            }),
            ("memory.png", "SFU RSS, MB", &|m| m.sfu_rss_mb),
            ("throughput.png", "forwarded packets/s", &|m| {
                m.forwarded_pps
            }),
        ];
        for (file, label, f) in plots {
            let lines: Vec<(&str, Vec<(f64, f64)>)> = ["rtcd", "janus"]
                .into_iter()
                .map(|s| (s, series(s, f)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            line_plot(&dir.join(file), label, &lines)?;
        }
        Ok(())
    }
}

fn register_font() -> Result<(), String> {
    use std::sync::OnceLock;
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{path}: {e} (install the Debian package fonts-dejavu-core)"))?;
        plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{path}: not a usable font"))
    })
    .clone()
}

fn line_plot(path: &Path, y_label: &str, lines: &[(&str, Vec<(f64, f64)>)]) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let x_max = lines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(y_label, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("participants")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28)];
    for (i, (name, pts)) in lines.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_sampled() {
        let s = sample_proc(std::process::id()).unwrap();
        assert!(s.rss_mb > 0.5 && s.peak_rss_mb >= s.rss_mb, "{s:?}");
        assert!(sample_proc(u32::MAX).is_err());
    }

    /// Drops are split by socket owner; lines that are not socket rows are skipped.
    #[test]
    fn socket_drops_are_split_by_owner() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 1986: 00000000:955D 00000000:0000 07 00000000:00067180 00:00000000 00000000     0        0 484018 2 00000000a339f518 7        
 4960: 0101CB0A:20FB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 484808 2 000000009d2e85cd 13734    
 4961: 0101CB0A:20FC 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 484809 2 000000009d2e85ce 6    
 garbage
";
        let own: std::collections::HashSet<u64> = [484808, 484809].into();
        assert_eq!(socket_drops(table, &own), (13740, 7));
        assert_eq!(socket_drops("", &own), (0, 0));
    }

    /// The harness's own process holds a UDP socket: it is found among the namespace's sockets
    /// and counted as the process's own.
    #[test]
    fn own_sockets_are_found() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inodes = socket_inodes("self");
        assert!(!inodes.is_empty());
        let table = std::fs::read_to_string("/proc/self/net/udp").unwrap();
        let port = format!(":{:04X} ", sock.local_addr().unwrap().port());
        let row = table
            .lines()
            .find(|l| l.contains(&port))
            .expect("our socket is listed");
        let inode: u64 = row.split_whitespace().nth(9).unwrap().parse().unwrap();
        assert!(inodes.contains(&inode), "{inode} not in {inodes:?}");
    }

    fn measured(sfu: &str, row: Row, cpu: f64, rx_packets: u64) -> Measured {
        let mut load = LoadResult {
            listeners: if row.unmuted > 0 { row.total() } else { 0 },
            ..Default::default()
        };
        load.hearing_all = load.listeners;
        load.steady.seconds = 10.0;
        load.steady.rx_packets = rx_packets;
        load.steady.rx_pps = rx_packets as f64 / 10.0;
        let before = ProcSample::default();
        let after = ProcSample {
            cpu_seconds: cpu * 10.0,
            rss_mb: 50.0,
            peak_rss_mb: 50.0,
            ..Default::default()
        };
        Measured::new(sfu, row, load, before, after, SfuCounters::default())
    }

    /// A row where nobody sends reports its idle cost, with no per-packet figures (they would
    /// divide by zero packets) and no side-by-side ratio.
    #[test]
    fn a_muted_row_reports_its_idle_cost() {
        let report = Report {
            date: "today".into(),
            machine: "test".into(),
            rows: vec![
                measured(
                    "rtcd",
                    Row::new("big", "1 x 1000", 1, 1000, 2),
                    0.5,
                    1_000_000,
                ),
                measured(
                    "janus",
                    Row::new("big", "1 x 1000", 1, 1000, 2),
                    0.9,
                    500_000,
                ),
                measured("rtcd", Row::new("idle", "muted", 1, 1000, 0), 0.09, 0),
                measured("janus", Row::new("idle", "muted", 1, 1000, 0), 0.2, 0),
            ],
            ceiling_200: None,
            ceiling_1200: None,
            notes: Vec::new(),
        };
        let md = report.markdown();
        let idle_row = md
            .lines()
            .find(|l| l.starts_with("| rtcd | idle |"))
            .unwrap();
        assert!(
            idle_row.contains("| — | — | 9.0% | 50.0 MB | 0 | — | — |"),
            "{idle_row}"
        );
        assert!(
            md.contains("rtcd, row idle (everyone connected, nobody sending): 9.0% of the core and 50.0 MB for 1000 participants, i.e. 90 µs"),
            "{md}"
        );
        let side: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| big |") || l.starts_with("| idle |"))
            .collect();
        assert_eq!(
            side.len(),
            1,
            "only the row with media is compared: {side:?}"
        );
        assert!(side[0].contains("| 5.00 | 18.00 | 3.60x |"), "{}", side[0]);
        let drops: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("## Where datagrams were dropped"))
            .filter(|l| l.starts_with("| rtcd |") || l.starts_with("| janus |"))
            .collect();
        assert_eq!(
            drops,
            [
                "| rtcd | big | 100000 | 0 | — | — | 0 |",
                "| janus | big | 50000 | 0 | — | — | 0 |"
            ],
            "only rows with media, and counters not read shown as such"
        );
    }

    /// Drops between the two samples become rates over the steady phase.
    #[test]
    fn drops_are_rates_over_the_steady_phase() {
        let mut load = LoadResult::default();
        load.steady.seconds = 10.0;
        let before = ProcSample {
            own_socket_drops: 100,
            other_socket_drops: 5,
            ..Default::default()
        };
        let after = ProcSample {
            own_socket_drops: 1100,
            other_socket_drops: 5,
            ..Default::default()
        };
        let counters = SfuCounters {
            sent: Some(5000.0),
            shed: Some(200.0),
            unsent: Some(0.0),
        };
        let m = Measured::new(
            "rtcd",
            Row::new("r", "r", 1, 2, 2),
            load,
            before,
            after,
            counters,
        );
        assert_eq!(m.drops.sfu_socket, 100.0);
        assert_eq!(m.drops.generator_socket, 0.0);
        assert_eq!(m.drops.sfu_shed, Some(20.0));
        assert_eq!(m.drops.sfu_unsent, Some(0.0));
        assert_eq!(m.sent_pps, Some(500.0));
    }
}
