//! The load run: participants joining on a schedule, a steady phase in which everybody is in
//! their call, then everyone leaving. Everything runs on one thread (a current-thread runtime
//! and a `LocalSet`), so the generator's CPU is one number that can be shown beside the SFU's.
//!
//! Timeline: joins at `join_rate` per second; `warmup` after the last join the steady phase
//! starts and lasts `duration`; then every participant leaves. Counters are snapshotted at both
//! ends of the steady phase, and the caller is told (for the benchmark harness to sample the SFU).

use crate::media::{self, Clip};
use crate::peer::{MediaClock, MediaDelay, Peer, PeerEvent, RxMode, RxStats, SendPlan};
use crate::rtcd::{Credentials, Inbound, Plugin};
use calls_proto::{JoinData, RtcMessageType};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// An rtcd-compatible server, driven as the Calls plugin drives it.
    Rtcd { url: String, creds: Credentials },
    /// Janus's VideoRoom over its WebSocket API (`ws://host:8188`).
    Janus { ws_url: String },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Rtcd { .. } => "rtcd",
            Target::Janus { .. } => "janus",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: Target,
    pub calls: usize,
    pub participants: usize,
    /// Unmuted participants per call (the first ones of each call).
    pub unmuted: usize,
    /// Calls whose first participant shares a simulcast screen.
    pub screen_calls: usize,
    /// Participants per call with a camera on (the first ones).
    pub video: usize,
    pub join_rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// The address participants' sockets bind to (and announce as their candidate).
    pub bind_ip: IpAddr,
    pub rx: RxMode,
    pub media_dir: PathBuf,
    /// Give up on a participant that is not connected this long after joining.
    pub connect_timeout: Duration,
    pub progress: bool,
    /// Every participant on one shared socket, each peer with an address of its own from this
    /// prefix, which must be routed to this host (see [`crate::net`]).
    pub anyip: Option<crate::net::Prefix>,
}

impl LoadConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.calls == 0 || self.participants == 0 {
            return Err("--calls and --participants must be at least 1".into());
        }
        if self.unmuted > self.participants || self.video > self.participants {
            return Err("--unmuted and --video cannot exceed --participants".into());
        }
        if self.screen_calls > self.calls {
            return Err("--screen cannot exceed --calls (one sharer per call)".into());
        }
        if !(self.join_rate > 0.0 && self.join_rate.is_finite()) {
            return Err("--join-rate must be a positive number of joins per second".into());
        }
        let total = self.calls * self.participants;
        if total > 20_000 {
            return Err(format!("{total} participants: at most 20000 per process"));
        }
        // Against Janus a participant may have two peers (publisher and subscriber).
        let peers = match self.target {
            Target::Rtcd { .. } => total,
            Target::Janus { .. } => 2 * total,
        };
        if let Some(p) = self.anyip
            && peers > p.capacity()
        {
            return Err(format!(
                "--anyip {p} has room for {} peers, not {peers}",
                p.capacity()
            ));
        }
        Ok(())
    }

    fn total(&self) -> usize {
        self.calls * self.participants
    }
}

/// Moments of the run the caller may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    SteadyStart,
    SteadyEnd,
}

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of microseconds.
    fn of_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        Percentiles {
            count: h.len() as usize,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1e3,
        }
    }

    pub fn of(mut v: Vec<Duration>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            v[i].as_secs_f64() * 1e3
        };
        Percentiles {
            count: v.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Counters over the steady phase.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Steady {
    pub seconds: f64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_pps: f64,
    pub rx_mbps: f64,
    pub tx_packets: u64,
    pub tx_pps: f64,
    /// CPU the generator's thread used, in seconds and as a share of one core.
    pub loadgen_cpu_seconds: f64,
    pub loadgen_cpu_share: f64,
    /// Datagrams the generator's own sockets dropped because it did not read them in time: the
    /// generator, not the SFU, lost those.
    #[serde(default)]
    pub loadgen_socket_drops: u64,
    /// One-way delay of the voice and video received, from the moment the sender was due to
    /// send each packet to the moment the generator read it ([`MediaClock`]).
    #[serde(default)]
    pub audio_delay: Percentiles,
    #[serde(default)]
    pub video_delay: Percentiles,
    /// Media packets whose delay could not be measured: the server rewrote their timestamps.
    #[serde(default)]
    pub delay_unmeasured: u64,
}

/// The datagrams this process's UDP sockets have dropped on arrival, in the calling thread's
/// network namespace (the harness runs the load on a thread that entered one).
fn own_socket_drops() -> u64 {
    crate::bench::namespace_drops(
        "/proc/thread-self/net",
        &crate::bench::socket_inodes("self"),
    )
    .0
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct LoadResult {
    pub target: String,
    pub calls: usize,
    pub participants: usize,
    pub unmuted: usize,
    pub screen_calls: usize,
    pub video: usize,
    pub rx_mode: RxMode,
    pub joined: usize,
    pub connected: usize,
    pub failed: usize,
    /// Participants that received audio from every other unmuted member of their call.
    pub hearing_all: usize,
    /// Participants expected to hear somebody.
    pub listeners: usize,
    /// Participants of shared calls that received screen video.
    pub seeing_screen: usize,
    pub screen_viewers: usize,
    pub join_to_connected: Percentiles,
    /// From the later of a participant's join and the join of the first speaker it can hear.
    pub join_to_first_audio: Percentiles,
    pub join_to_first_video: Percentiles,
    pub steady: Steady,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub lost: u64,
    pub expected: u64,
    pub loss_ratio: f64,
    pub errors: Vec<String>,
}

/// Live counters for the progress display and the steady-phase snapshots.
#[derive(Default)]
struct Live {
    joined: Cell<usize>,
    connected: Cell<usize>,
    failed: Cell<usize>,
    rx_packets: Cell<u64>,
    rx_bytes: Cell<u64>,
    tx_packets: Cell<u64>,
    delays: RefCell<Delays>,
    errors: RefCell<Vec<String>>,
}

impl Live {
    fn error(&self, e: String) {
        self.failed.set(self.failed.get() + 1);
        let mut errs = self.errors.borrow_mut();
        if errs.len() < 20 && !errs.contains(&e) {
            errs.push(e);
        }
    }
}

/// One-way media delays, voice and video apart, from the sender's schedule to the receiver
/// ([`MediaClock`]); cleared when the steady phase starts.
struct Delays {
    audio: Histogram<u64>,
    video: Histogram<u64>,
    /// Packets whose timestamps were not their sender's (rewritten by the server).
    unmeasured: u64,
}

impl Default for Delays {
    fn default() -> Self {
        // Microseconds, to a minute, at 1% precision: a few kilobytes for the whole run.
        let h = || {
            Histogram::new_with_bounds(1, crate::peer::MAX_MEDIA_DELAY.as_micros() as u64, 2)
                .expect("valid histogram bounds")
        };
        Delays {
            audio: h(),
            video: h(),
            unmeasured: 0,
        }
    }
}

impl Delays {
    fn record(&mut self, d: MediaDelay) {
        let Some(delay) = d.delay else {
            self.unmeasured += 1;
            return;
        };
        let h = if d.audio {
            &mut self.audio
        } else {
            &mut self.video
        };
        h.saturating_record(delay.as_micros() as u64);
    }

    fn clear(&mut self) {
        self.audio.reset();
        self.video.reset();
        self.unmeasured = 0;
    }
}

struct Media {
    speech: Vec<Arc<Clip>>,
    screen_l: Option<Arc<Clip>>,
    screen_h: Option<Arc<Clip>>,
    video: Option<Arc<Clip>>,
}

impl Media {
    fn load(cfg: &LoadConfig) -> Result<Media, String> {
        let d = &cfg.media_dir;
        let speech = ["speech_0.ogg", "speech_1.ogg"]
            .iter()
            .map(|f| media::read_ogg_opus(&d.join(f)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (screen_l, screen_h) = if cfg.screen_calls > 0 {
            (
                Some(Arc::new(media::read_ivf_vp8(&d.join("screen_l.ivf"))?)),
                Some(Arc::new(media::read_ivf_vp8(&d.join("screen_h.ivf"))?)),
            )
        } else {
            (None, None)
        };
        let video = if cfg.video > 0 {
            Some(Arc::new(media::read_ivf_vp8(&d.join("video_l.ivf"))?))
        } else {
            None
        };
        Ok(Media {
            speech,
            screen_l,
            screen_h,
            video,
        })
    }
}

/// One participant's place in the run.
#[derive(Debug, Clone, Copy)]
struct Slot {
    call: usize,
    user: usize,
    speaker: bool,
    sharer: bool,
    camera: bool,
    /// Unmuted others in the call this participant should hear.
    hear: usize,
    /// Whether a screen is shared in the call by somebody else.
    see_screen: bool,
}

struct Outcome {
    slot: Slot,
    stats: RxStats,
    joined_at: Instant,
    connected_at: Option<Instant>,
    audio_sources: usize,
}

pub(crate) struct Ctx {
    cfg: LoadConfig,
    media: Media,
    live: Live,
    run_tag: String,
    steady_end: Cell<Option<Instant>>,
    end: tokio::sync::watch::Receiver<bool>,
    /// Janus: the published feeds of each call, by publishing user.
    feeds: RefCell<std::collections::HashMap<usize, Vec<(usize, u64)>>>,
    feeds_changed: tokio::sync::Notify,
    /// The shared socket, with `--anyip`.
    net: Option<Rc<crate::net::SharedNet>>,
    /// The RTP clock of every participant's media, so that receivers can time it.
    clock: MediaClock,
}

/// One peer's way onto the network: a socket of its own, or an address on the shared socket
/// (given back when dropped).
pub(crate) enum Endpoint {
    Socket(UdpSocket),
    Shared {
        net: Rc<crate::net::SharedNet>,
        local: SocketAddr,
        inbox: Rc<crate::net::Inbox>,
    },
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Endpoint::Shared { net, local, .. } = self {
            net.leave(*local);
        }
    }
}

impl Endpoint {
    async fn open(ctx: &Ctx) -> Result<Endpoint, String> {
        match &ctx.net {
            Some(net) => {
                let (local, inbox) = net.join()?;
                Ok(Endpoint::Shared {
                    net: net.clone(),
                    local,
                    inbox,
                })
            }
            None => UdpSocket::bind(SocketAddr::new(ctx.cfg.bind_ip, 0))
                .await
                .map(Endpoint::Socket)
                .map_err(|e| format!("bind {}: {e}", ctx.cfg.bind_ip)),
        }
    }

    fn local(&self) -> Result<SocketAddr, String> {
        match self {
            Endpoint::Socket(s) => s.local_addr().map_err(|e| e.to_string()),
            Endpoint::Shared { local, .. } => Ok(*local),
        }
    }

    /// Sends now (own socket) or queues for the next batch (shared). True if it went out now;
    /// queued datagrams are counted by the batch that sends them.
    fn send(&self, dst: SocketAddr, data: Vec<u8>) -> bool {
        match self {
            // A full socket buffer drops, as UDP does.
            Endpoint::Socket(s) => s.try_send_to(&data, dst).is_ok(),
            Endpoint::Shared { net, local, .. } => {
                net.send(*local, dst, data);
                false
            }
        }
    }

    /// The next datagram into `buf`. Cancel-safe in both modes.
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            Endpoint::Socket(s) => s.recv_from(buf).await,
            Endpoint::Shared { inbox, .. } => {
                let (src, data) = inbox.recv().await;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, src))
            }
        }
    }
}

/// Runs the load on the current thread and returns its result. `on_phase` is called at the start
/// and end of the steady phase.
pub fn run(cfg: LoadConfig, on_phase: &mut dyn FnMut(Phase)) -> Result<LoadResult, String> {
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run_local(cfg, on_phase))
}

async fn run_local(cfg: LoadConfig, on_phase: &mut dyn FnMut(Phase)) -> Result<LoadResult, String> {
    // Local settings first: their errors name the setting, before any connection is tried.
    let net = match cfg.anyip {
        Some(p) => Some(Rc::new(crate::net::SharedNet::new(p)?)),
        None => None,
    };
    let media = Media::load(&cfg)?;
    let plugin = match &cfg.target {
        Target::Rtcd { url, creds } => {
            crate::rtcd::register(url, creds).await?;
            Some(Plugin::connect(url, creds).await?)
        }
        Target::Janus { .. } => None,
    };
    let janus = match &cfg.target {
        Target::Janus { ws_url } => {
            let j = crate::janus::Janus::connect(ws_url).await?;
            for call in 0..cfg.calls {
                j.create_room(room_of(call), publishers_per_call(&cfg) as u32 + 1)
                    .await?;
            }
            Some(j)
        }
        Target::Rtcd { .. } => None,
    };
    let (end_tx, end_rx) = tokio::sync::watch::channel(false);
    let ctx = Rc::new(Ctx {
        media,
        live: Live::default(),
        run_tag: format!("{:06x}", crate::peer::random_u32() & 0xff_ffff),
        steady_end: Cell::new(None),
        end: end_rx,
        feeds: RefCell::default(),
        feeds_changed: tokio::sync::Notify::new(),
        net,
        clock: MediaClock::new(Instant::now()),
        cfg,
    });
    // The shared socket's two loops live as long as the run; aborted at its end.
    let net_tasks: Vec<tokio::task::JoinHandle<()>> = match &ctx.net {
        Some(net) => {
            let (rx, tx, counters) = (net.clone(), net.clone(), ctx.clone());
            vec![
                tokio::task::spawn_local(async move { rx.recv_loop().await }),
                tokio::task::spawn_local(async move {
                    tx.send_loop(|n| {
                        let live = &counters.live;
                        live.tx_packets.set(live.tx_packets.get() + n);
                    })
                    .await
                }),
            ]
        }
        None => Vec::new(),
    };
    let cfg = &ctx.cfg;
    let total = cfg.total();
    let bar = progress_bar(cfg.progress, total);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    // Call-major within a user index: every call's first participants (speakers, sharers) join
    // before anyone who only listens.
    let mut k = 0usize;
    for user in 0..cfg.participants {
        for call in 0..cfg.calls {
            let at = start + Duration::from_secs_f64(k as f64 / cfg.join_rate);
            k += 1;
            let slot = slot(cfg, call, user);
            let task_ctx = ctx.clone();
            let plugin = plugin.clone();
            let janus = janus.clone();
            tokio::time::sleep_until(at).await;
            tasks.push(tokio::task::spawn_local(async move {
                match (plugin, janus) {
                    (Some(p), _) => participant_rtcd(task_ctx, p, slot).await,
                    (None, Some(j)) => participant_janus(task_ctx, j, slot).await,
                    _ => Err("no target".into()),
                }
            }));
            update_bar(&bar, &ctx, "joining");
        }
    }
    // Let the last joiners connect and get their tracks, then measure.
    let steady_at = tokio::time::Instant::now() + cfg.warmup;
    while tokio::time::Instant::now() < steady_at {
        update_bar(&bar, &ctx, "warming up");
        tokio::time::sleep(Duration::from_millis(250).min(steady_at - tokio::time::Instant::now()))
            .await;
    }
    on_phase(Phase::SteadyStart);
    let t0 = Instant::now();
    let cpu0 = crate::affinity::thread_cpu_seconds();
    let drops0 = own_socket_drops();
    ctx.live.delays.borrow_mut().clear();
    let (rx0, bytes0, tx0) = (
        ctx.live.rx_packets.get(),
        ctx.live.rx_bytes.get(),
        ctx.live.tx_packets.get(),
    );
    let steady_end = t0 + cfg.duration;
    ctx.steady_end.set(Some(steady_end));
    while Instant::now() < steady_end {
        update_bar(&bar, &ctx, "steady");
        let left = steady_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(Duration::from_millis(250).min(left)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = crate::affinity::thread_cpu_seconds() - cpu0;
    let rx = ctx.live.rx_packets.get() - rx0;
    let bytes = ctx.live.rx_bytes.get() - bytes0;
    let tx = ctx.live.tx_packets.get() - tx0;
    let drops = own_socket_drops().saturating_sub(drops0);
    let (audio_delay, video_delay, delay_unmeasured) = {
        let d = ctx.live.delays.borrow();
        (
            Percentiles::of_micros(&d.audio),
            Percentiles::of_micros(&d.video),
            d.unmeasured,
        )
    };
    on_phase(Phase::SteadyEnd);
    let _ = end_tx.send(true);
    let mut outcomes = Vec::with_capacity(total);
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => ctx.live.error(e),
            Err(e) => ctx.live.error(format!("participant task failed: {e}")),
        }
    }
    for t in net_tasks {
        t.abort();
    }
    if let Some(p) = plugin {
        p.close().await;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let steady = Steady {
        seconds: secs,
        rx_packets: rx,
        rx_bytes: bytes,
        rx_pps: rx as f64 / secs,
        rx_mbps: bytes as f64 * 8.0 / secs / 1e6,
        tx_packets: tx,
        tx_pps: tx as f64 / secs,
        loadgen_cpu_seconds: cpu,
        loadgen_cpu_share: cpu / secs,
        loadgen_socket_drops: drops,
        audio_delay,
        video_delay,
        delay_unmeasured,
    };
    Ok(summarize(&ctx, outcomes, steady))
}

fn slot(cfg: &LoadConfig, call: usize, user: usize) -> Slot {
    let speaker = user < cfg.unmuted;
    let sharer = user == 0 && call < cfg.screen_calls;
    Slot {
        call,
        user,
        speaker,
        sharer,
        camera: user < cfg.video,
        hear: cfg.unmuted - usize::from(speaker),
        see_screen: call < cfg.screen_calls && !sharer,
    }
}

fn plan(ctx: &Ctx, slot: Slot, data_channel: bool) -> SendPlan {
    let m = &ctx.media;
    let stream = |kind: &str| format!("{kind}-{}-{}-{}", ctx.run_tag, slot.call, slot.user);
    SendPlan {
        data_channel,
        audio: slot
            .speaker
            .then(|| m.speech[slot.user % m.speech.len()].clone()),
        screen: match (&m.screen_l, &m.screen_h) {
            (Some(l), Some(h)) if slot.sharer => Some((stream("screen"), l.clone(), h.clone())),
            _ => None,
        },
        video: m
            .video
            .clone()
            .filter(|_| slot.camera)
            .map(|v| (stream("video"), v)),
        high_layer_first: false,
    }
}

async fn participant_rtcd(ctx: Rc<Ctx>, plugin: Plugin, slot: Slot) -> Result<Outcome, String> {
    let cfg = &ctx.cfg;
    let ep = Endpoint::open(&ctx).await?;
    let local = ep.local()?;
    let sid = format!("lt{}c{}u{}", ctx.run_tag, slot.call, slot.user);
    let call_id = format!("lt{}-call{}", ctx.run_tag, slot.call);
    let plan = plan(&ctx, slot, true);
    let screen_id = plan.screen.as_ref().map(|s| s.0.clone());
    let video_id = plan.video.as_ref().map(|s| s.0.clone());
    let now = Instant::now();
    let mut peer = Peer::new(local, cfg.rx, plan, ctx.clock, now);
    let joined_at = now;
    ctx.live.joined.set(ctx.live.joined.get() + 1);
    let mut inbound = plugin.join(JoinData::new(
        &call_id,
        &format!("user{}", slot.user),
        &sid,
        &format!("channel{}", slot.call),
        false,
        false,
    ));
    // As the clients do: announce the stream IDs before the offer that carries the tracks.
    if let Some(id) = &screen_id {
        let data = serde_json::json!({ "screenStreamID": id }).to_string();
        plugin.rtc(&sid, RtcMessageType::ScreenOn, data.into_bytes());
    }
    if let Some(id) = &video_id {
        let data = serde_json::json!({ "videoStreamID": id }).to_string();
        plugin.rtc(&sid, RtcMessageType::VideoOn, data.into_bytes());
    }
    let offer = peer.create_offer(now)?;
    plugin.sdp(&sid, "offer", &offer);
    let res = drive(
        &ctx,
        &ep,
        &mut peer,
        joined_at,
        |peer, m| match m {
            Inbound::Answer(sdp) => peer.accept_answer(&sdp, Instant::now()),
            Inbound::Offer(sdp) => {
                let answer = peer.accept_offer(&sdp, Instant::now())?;
                plugin.sdp(&sid, "answer", &answer);
                Ok(())
            }
            Inbound::Candidate(c) => peer.add_remote_candidate(&c),
            Inbound::Closed => Err("rtcd closed the session".into()),
        },
        &mut inbound,
    )
    .await;
    plugin.leave(&sid);
    peer.close();
    let connected_at = res?;
    Ok(outcome(slot, peer, joined_at, connected_at))
}

/// Janus VideoRoom room of a call.
fn room_of(call: usize) -> u64 {
    1000 + call as u64
}

/// Participants who publish in each call: the unmuted ones, and the sharer.
fn publishers_per_call(cfg: &LoadConfig) -> usize {
    cfg.unmuted.max(usize::from(cfg.screen_calls > 0))
}

/// The same participant against Janus's VideoRoom: what it sends goes up a publisher
/// PeerConnection (once its feed is up, the others can subscribe to it), and what it receives
/// comes down one subscription to every other publisher of its room, once they are all up.
async fn participant_janus(
    ctx: Rc<Ctx>,
    janus: crate::janus::Janus,
    slot: Slot,
) -> Result<Outcome, String> {
    let cfg = &ctx.cfg;
    let room = room_of(slot.call);
    let joined_at = Instant::now();
    ctx.live.joined.set(ctx.live.joined.get() + 1);
    let plan = SendPlan {
        high_layer_first: true,
        ..plan(&ctx, slot, false)
    };
    let publishes = plan.audio.is_some() || plan.screen.is_some() || plan.video.is_some();
    let (_never, mut quiet) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (_never2, mut quiet2) = tokio::sync::mpsc::unbounded_channel::<()>();
    let no_signal = |_: &mut Peer, _: ()| Ok(());
    let mut sessions = Vec::new();

    let publisher = async {
        if !publishes {
            return Ok::<_, String>(None);
        }
        let ep = Endpoint::open(&ctx).await?;
        let local = ep.local()?;
        let mut peer = Peer::new(local, cfg.rx, plan.clone(), ctx.clock, Instant::now());
        let offer = peer.create_offer(Instant::now())?;
        let p = janus
            .publish(room, &format!("user{}", slot.user), &offer)
            .await?;
        peer.accept_answer(&p.answer_sdp, Instant::now())?;
        let up = async {
            janus.wait_up(p.handle, cfg.connect_timeout).await?;
            ctx.feeds
                .borrow_mut()
                .entry(slot.call)
                .or_default()
                .push((slot.user, p.feed));
            ctx.feeds_changed.notify_waiters();
            Ok::<_, String>(())
        };
        let (driven, up) = tokio::join!(
            drive(&ctx, &ep, &mut peer, joined_at, no_signal, &mut quiet),
            up
        );
        up?;
        driven?;
        peer.close();
        Ok(Some((p.session, peer)))
    };

    let subscriber = async {
        let want = publishers_per_call(cfg) - usize::from(publishes);
        if want == 0 {
            return Ok::<_, String>(None);
        }
        // Every other publisher of the room, once all of them are up.
        let deadline = tokio::time::Instant::from_std(joined_at + cfg.connect_timeout);
        let feeds = loop {
            let changed = ctx.feeds_changed.notified();
            let feeds: Vec<u64> = ctx
                .feeds
                .borrow()
                .get(&slot.call)
                .map(|v| v.iter().filter(|f| f.0 != slot.user).map(|f| f.1).collect())
                .unwrap_or_default();
            if feeds.len() >= want {
                break feeds;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!(
                    "only {} of {want} publishers of room {room} were up after {} s",
                    feeds.len(),
                    cfg.connect_timeout.as_secs()
                ));
            }
        };
        let ep = Endpoint::open(&ctx).await?;
        let local = ep.local()?;
        let mut peer = Peer::new(
            local,
            cfg.rx,
            SendPlan::default(),
            ctx.clock,
            Instant::now(),
        );
        let sub = janus.subscribe(room, &feeds).await?;
        let answer = peer.accept_offer(&sub.offer_sdp, Instant::now())?;
        janus.start(&sub, &answer).await?;
        let connected = drive(&ctx, &ep, &mut peer, joined_at, no_signal, &mut quiet2).await?;
        peer.close();
        Ok(Some((sub.session, peer, connected)))
    };

    let (p, s) = tokio::join!(publisher, subscriber);
    if let Ok(Some((session, _))) = &p {
        sessions.push(*session);
    }
    if let Ok(Some((session, _, _))) = &s {
        sessions.push(*session);
    }
    for session in sessions {
        let _ = janus.destroy(session).await;
    }
    let p = p?;
    let s = s?;
    // What the participant received came down its subscription; a lone publisher only sends.
    Ok(match (s, p) {
        (Some((_, peer, connected)), p) => {
            let mut o = outcome(slot, peer, joined_at, connected);
            if let Some((_, pp)) = p {
                o.stats.sent_packets += pp.stats.sent_packets;
                o.stats.sent_bytes += pp.stats.sent_bytes;
            }
            o
        }
        (None, Some((_, peer))) => outcome(slot, peer, joined_at, Some(joined_at)),
        (None, None) => outcome(
            slot,
            Peer::new(
                SocketAddr::new(cfg.bind_ip, 0),
                cfg.rx,
                SendPlan::default(),
                ctx.clock,
                joined_at,
            ),
            joined_at,
            None,
        ),
    })
}

fn outcome(slot: Slot, peer: Peer, joined_at: Instant, connected_at: Option<Instant>) -> Outcome {
    let audio_sources = peer.stats.audio_streams();
    Outcome {
        slot,
        stats: peer.stats,
        joined_at,
        connected_at,
        audio_sources,
    }
}

/// The I/O loop of one peer until the run ends: its socket, its signaling and its timers.
/// Returns when the peer connected, or an error.
pub(crate) async fn drive<M>(
    ctx: &Ctx,
    io: &Endpoint,
    peer: &mut Peer,
    joined_at: Instant,
    mut on_signal: impl FnMut(&mut Peer, M) -> Result<(), String>,
    inbound: &mut tokio::sync::mpsc::UnboundedReceiver<M>,
) -> Result<Option<Instant>, String> {
    let live = &ctx.live;
    let mut end = ctx.end.clone();
    let mut buf = vec![0u8; 2048];
    let mut connected_at = None;
    let mut signaling_open = true;
    let deadline = joined_at + ctx.cfg.connect_timeout;
    loop {
        // Due timers first: the socket branch below wins every race while datagrams keep
        // arriving, and media must still go out on time.
        let now = Instant::now();
        if peer.poll_timeout() <= now {
            peer.handle_timeout(now);
        }
        for (dst, data) in peer.drain_transmit() {
            if io.send(dst, data) {
                live.tx_packets.set(live.tx_packets.get() + 1);
            }
        }
        while let Some(e) = peer.poll_event() {
            match e {
                PeerEvent::Connected => {
                    connected_at = Some(Instant::now());
                    live.connected.set(live.connected.get() + 1);
                }
                PeerEvent::Closed(why) => {
                    if connected_at.is_some() {
                        live.connected.set(live.connected.get() - 1);
                    }
                    return Err(format!("connection ended: {why}"));
                }
                PeerEvent::ChannelOpen | PeerEvent::ChannelData(_) => {}
            }
        }
        if connected_at.is_none() && Instant::now() > deadline {
            return Err(format!(
                "not connected {} s after joining",
                ctx.cfg.connect_timeout.as_secs()
            ));
        }
        let wake = tokio::time::Instant::from_std(peer.poll_timeout().min(deadline.max(
            if connected_at.is_some() {
                Instant::now() + Duration::from_secs(3600)
            } else {
                deadline
            },
        )));
        tokio::select! {
            biased;
            _ = end.changed() => return Ok(connected_at),
            r = io.recv(&mut buf) => {
                if let Ok((n, src)) = r {
                    let before = (peer.stats.packets, peer.stats.bytes);
                    peer.handle_datagram(Instant::now(), src, &buf[..n]);
                    let mut delays = live.delays.borrow_mut();
                    for d in peer.drain_delays() {
                        delays.record(d);
                    }
                    live.rx_packets.set(live.rx_packets.get() + peer.stats.packets - before.0);
                    live.rx_bytes.set(live.rx_bytes.get() + peer.stats.bytes - before.1);
                }
            }
            m = inbound.recv(), if signaling_open => match m {
                Some(m) => on_signal(peer, m)?,
                None => signaling_open = false,
            },
            _ = tokio::time::sleep_until(wake) => peer.handle_timeout(Instant::now()),
        }
    }
}

fn summarize(ctx: &Ctx, outcomes: Vec<Outcome>, steady: Steady) -> LoadResult {
    let cfg = &ctx.cfg;
    let mut r = LoadResult {
        target: cfg.target.name().into(),
        calls: cfg.calls,
        participants: cfg.participants,
        unmuted: cfg.unmuted,
        screen_calls: cfg.screen_calls,
        video: cfg.video,
        rx_mode: cfg.rx,
        joined: ctx.live.joined.get(),
        connected: outcomes.iter().filter(|o| o.connected_at.is_some()).count(),
        failed: ctx.live.failed.get(),
        hearing_all: 0,
        listeners: 0,
        seeing_screen: 0,
        screen_viewers: 0,
        join_to_connected: Percentiles::default(),
        join_to_first_audio: Percentiles::default(),
        join_to_first_video: Percentiles::default(),
        steady,
        rx_packets: 0,
        rx_bytes: 0,
        lost: 0,
        expected: 0,
        loss_ratio: 0.0,
        errors: ctx.live.errors.borrow().clone(),
    };
    let (mut conn, mut audio, mut video) = (vec![], vec![], vec![]);
    let joins: Vec<(Slot, Instant)> = outcomes.iter().map(|o| (o.slot, o.joined_at)).collect();
    let audio_from = audio_expected_from(&joins);
    for (o, &from) in outcomes.iter().zip(&audio_from) {
        let s = &o.stats;
        r.rx_packets += s.packets;
        r.rx_bytes += s.bytes;
        r.lost += s.lost();
        r.expected += s.expected();
        if let Some(t) = o.connected_at {
            conn.push(t - o.joined_at);
        }
        if o.slot.hear > 0 {
            r.listeners += 1;
            if o.audio_sources >= o.slot.hear {
                r.hearing_all += 1;
            }
            if let Some(t) = s.first_audio {
                audio.push(t.saturating_duration_since(from));
            }
        }
        if o.slot.see_screen {
            r.screen_viewers += 1;
            if let Some(t) = s.first_video {
                r.seeing_screen += 1;
                video.push(t - o.joined_at);
            }
        }
    }
    // Participants that never got audio count as the slowest (not silently dropped).
    let missing = r.listeners - audio.len();
    audio.extend(std::iter::repeat_n(Duration::from_secs(3600), missing));
    r.join_to_connected = Percentiles::of(conn);
    r.join_to_first_audio = Percentiles::of(audio);
    r.join_to_first_video = Percentiles::of(video);
    r.loss_ratio = if r.expected > 0 {
        r.lost as f64 / r.expected as f64
    } else {
        0.0
    };
    r
}

/// When audio could first reach each participant: its own join or, if later, the join of the
/// first other speaker of its call.
///
/// Participants join call-major, so a call's second speaker joins a whole round of calls after
/// its first (10 s later at 500 calls and 50 joins a second). Timed from its own join, the first
/// speaker's wait would measure that schedule, not the SFU.
fn audio_expected_from(joins: &[(Slot, Instant)]) -> Vec<Instant> {
    let mut speakers: std::collections::HashMap<usize, Vec<(usize, Instant)>> =
        std::collections::HashMap::new();
    for (slot, at) in joins.iter().filter(|(s, _)| s.speaker) {
        speakers
            .entry(slot.call)
            .or_default()
            .push((slot.user, *at));
    }
    joins
        .iter()
        .map(|(slot, at)| {
            let first_other = speakers
                .get(&slot.call)
                .into_iter()
                .flatten()
                .filter(|(user, _)| *user != slot.user)
                .map(|(_, t)| *t)
                .min();
            first_other.map_or(*at, |t| t.max(*at))
        })
        .collect()
}

fn progress_bar(enabled: bool, total: usize) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} joined  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn update_bar(bar: &Option<indicatif::ProgressBar>, ctx: &Ctx, phase: &str) {
    let Some(b) = bar else { return };
    let l = &ctx.live;
    b.set_position(l.joined.get() as u64);
    b.set_message(format!(
        "{phase}: {} connected, {} failed, {} packets received",
        l.connected.get(),
        l.failed.get(),
        l.rx_packets.get()
    ));
}

/// The share of its core past which the generator may itself be what limits a run.
const LOADGEN_BUSY: f64 = 0.9;

/// The summary table printed at the end of a run.
pub fn table(r: &LoadResult) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
    row("target", r.target.clone());
    row(
        "calls x participants",
        format!(
            "{} x {} ({} unmuted, {} sharing, {} camera)",
            r.calls, r.participants, r.unmuted, r.screen_calls, r.video
        ),
    );
    row(
        "joined / connected / failed",
        format!("{} / {} / {}", r.joined, r.connected, r.failed),
    );
    row(
        "hearing every speaker",
        format!("{} of {}", r.hearing_all, r.listeners),
    );
    if r.screen_viewers > 0 {
        row(
            "receiving the screen",
            format!("{} of {}", r.seeing_screen, r.screen_viewers),
        );
    }
    let p = |p: &Percentiles| {
        format!(
            "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
        )
    };
    row("join -> connected", p(&r.join_to_connected));
    row("join -> first audio", p(&r.join_to_first_audio));
    if r.screen_viewers > 0 {
        row("join -> first video", p(&r.join_to_first_video));
    }
    // Loopback delays are fractions of a millisecond: one decimal.
    let mut delay = |kind: &str, p: &Percentiles| {
        if p.count > 0 {
            let v = format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} packets)",
                p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            );
            row(&format!("{kind} delay"), v);
        }
    };
    delay("voice", &r.steady.audio_delay);
    delay("video", &r.steady.video_delay);
    if r.steady.delay_unmeasured > 0 {
        row(
            "delay not measured",
            format!(
                "{} packets: the server rewrote their RTP timestamps",
                r.steady.delay_unmeasured
            ),
        );
    }
    row(
        "steady phase",
        format!(
            "{:.1} s: {:.0} packets/s in ({:.1} Mbit/s), {:.0} packets/s out",
            r.steady.seconds, r.steady.rx_pps, r.steady.rx_mbps, r.steady.tx_pps
        ),
    );
    row(
        "loss",
        format!(
            "{} of {} ({:.3}%)",
            r.lost,
            r.expected,
            r.loss_ratio * 100.0
        ),
    );
    row(
        "load generator CPU",
        format!(
            "{:.2} s ({:.0}% of one core, receive mode {:?})",
            r.steady.loadgen_cpu_seconds,
            r.steady.loadgen_cpu_share * 100.0,
            r.rx_mode
        ),
    );
    row(
        "load generator drops",
        format!(
            "{} datagrams dropped at its own sockets in the steady phase",
            r.steady.loadgen_socket_drops
        ),
    );
    if r.steady.loadgen_socket_drops > 0 || r.steady.loadgen_cpu_share > LOADGEN_BUSY {
        row(
            "warning",
            "the load generator was at its limit: it may have lost or delayed media itself; \
             run fewer participants per generator, or several generators"
                .into(),
        );
    }
    for e in &r.errors {
        row("error", e.clone());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams that overflow one of the process's sockets are counted as the generator's own
    /// drops (loopback only).
    #[test]
    fn overflowing_an_own_socket_counts_as_a_generator_drop() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = own_socket_drops();
        // Far more than a receive buffer holds: nobody reads `rx`.
        for _ in 0..2000 {
            let _ = tx.send_to(&[0u8; 1000], rx.local_addr().unwrap());
        }
        let dropped = own_socket_drops() - before;
        assert!(dropped > 1000, "{dropped} drops counted");
    }

    #[test]
    fn the_summary_warns_when_the_generator_was_the_limit() {
        let mut r = LoadResult::default();
        r.steady.loadgen_cpu_share = 0.5;
        let t = table(&r);
        let line = format!("{:<28} 0 datagrams dropped", "load generator drops");
        assert!(t.contains(&line), "{t}");
        assert!(!t.contains("warning"), "{t}");
        r.steady.loadgen_socket_drops = 3;
        assert!(table(&r).contains("warning"));
        r.steady.loadgen_socket_drops = 0;
        r.steady.loadgen_cpu_share = 0.95;
        assert!(table(&r).contains("warning"));
    }

    fn slot_of(call: usize, user: usize, speaker: bool) -> Slot {
        Slot {
            call,
            user,
            speaker,
            sharer: false,
            camera: false,
            hear: 1,
            see_screen: false,
        }
    }

    #[test]
    fn audio_is_timed_from_when_a_speaker_is_in_the_call() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let joins = [
            (slot_of(0, 0, true), t0),         // waits for the other speaker
            (slot_of(0, 1, true), t0 + s(10)), // the first speaker is already in
            (slot_of(0, 2, false), t0 + s(1)), // a listener after the first speaker
            (slot_of(1, 2, false), t0),        // a listener before any speaker of call 1
            (slot_of(1, 0, true), t0 + s(3)),  // call 1's only speaker: nobody to hear
        ];
        assert_eq!(
            audio_expected_from(&joins),
            [t0 + s(10), t0 + s(10), t0 + s(1), t0 + s(3), t0 + s(3)]
        );
    }
}
