//! The I/O shell around the SFU core: UDP sockets, a clock and channels. Datagrams and commands
//! go into [`Sfu`], and what comes out is written to sockets or reported. Its one policy is for
//! overload: handshake and signaling datagrams (STUN, DTLS) have a queue of their own that is
//! served first, and media is shed when its queue is full, so joins do not wait behind media.
//!
//! Sharded by call across cores: each shard is a thread with its own core ([`Sfu`]) and, for
//! every local address on the media port (one per address, as rtcd needs the address a packet
//! arrived at to match it to a candidate), its own `SO_REUSEPORT` socket with large buffers. A
//! call lives on one shard, so forwarding never crosses threads and no lock is taken per packet.
//! The kernel spreads remote addresses over the sockets without knowing the shards, so readers
//! send each datagram to its session's shard (named by the first character of the ufrag in its
//! STUN checks). Readers take batches with `recvmmsg` into recycled buffers, and what a round of
//! input produces leaves with `sendmmsg`. A router task gives each session's commands to the
//! shard of its call. Advertised addresses may differ from local
//! ones (host override, port override): the shell translates between the two, so the core only
//! ever sees advertised addresses.

use crate::core::{Sfu, SfuConfig, SfuOutput};
use crate::shed::Shedder;
use crate::udp::RecvBatch;
use calls_proto::RtcMessage;
use calls_proto::json::SessionConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Ingress messages (UDP batches, TCP frames) handled per round before output is flushed.
const INGRESS_ROUND: usize = 16;

/// How long one round may spend on media before control datagrams, commands and timers get
/// their turn. A round of [`INGRESS_ROUND`] full batches in a large call is hundreds of thousands
/// of datagrams out, about a second of work when the shard is saturated; the joins and
/// renegotiations behind it waited as long. A batch is the unit: it is finished once begun.
const MEDIA_ROUND_BUDGET: Duration = Duration::from_millis(10);

/// Media ingress messages a shard may have waiting. A UDP batch is up to 64 KB, so this bounds an
/// overloaded shard's backlog to about 16 MB; beyond it the readers shed media batches (see
/// `read_loop`). (At 4096 a saturated shard held a quarter of a gigabyte of stale media, and
/// forwarded it late.)
const INGRESS_QUEUE: usize = 256;

/// Handshake and signaling datagrams (STUN, DTLS, SCTP over DTLS) a shard may have waiting. They
/// have a queue of their own, served before media, so that joins and data-channel signaling are
/// not stuck behind a media backlog when the shard is overloaded.
const CONTROL_QUEUE: usize = 1024;

/// Frames queued for one ICE-TCP connection before further ones are dropped.
const TCP_QUEUE: usize = 1024;

/// What the socket tasks hand to the core task.
enum Ingress {
    /// Datagrams read by one UDP socket in one `recvmmsg`; the buffer goes back to `recycle`.
    Udp {
        destination: SocketAddr,
        batch: Box<RecvBatch>,
        recycle: mpsc::UnboundedSender<Box<RecvBatch>>,
    },
    Packet {
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
        /// When a UDP datagram reached its socket, if known (never for ICE-TCP frames, which
        /// are not shed: TCP has already delivered everything before them).
        received: Option<SystemTime>,
    },
    TcpOpen {
        peer: SocketAddr,
        tx: mpsc::Sender<Vec<u8>>,
    },
    TcpClosed {
        peer: SocketAddr,
    },
}

/// What the control plane asks of the media plane.
#[derive(Debug)]
pub enum Command {
    Init(SessionConfig),
    Rtc(RtcMessage),
    Close(String),
}

/// What the media plane reports to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Signal(RtcMessage),
    Vad { session_id: String, on: bool },
    SessionEnded { session_id: String, reason: String },
}

/// One local socket address and the address advertised for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub local: SocketAddr,
    pub advertised: SocketAddr,
}

/// Local IPs to listen on: every address of every interface that is up (loopback included, as in
/// rtcd), IPv6 only when enabled and globally routable.
pub fn local_ips(enable_ipv6: bool) -> std::io::Result<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => {
                enable_ipv6 && !v6.is_loopback() && (v6.segments()[0] & 0xe000) == 0x2000
            }
        })
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Characters that start each shard's local ufrags (and so bound the number of shards).
const SHARD_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Remote addresses a reader remembers the shard of before it starts over (bounds memory against
/// address churn; forgotten addresses are learned again from their next STUN check).
const LEARNED_MAX: usize = 1 << 16;

/// The shard whose core handed out `ufrag`.
fn shard_of_ufrag(ufrag: &str) -> Option<usize> {
    let c = *ufrag.as_bytes().first()?;
    SHARD_CHARS.iter().position(|x| *x == c)
}

/// The shard a call lives on: every session of a call is on one core, so forwarding never
/// crosses threads.
fn shard_of_call(group: &str, call: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (group, call).hash(&mut h);
    (h.finish() % shards as u64) as usize
}

pub struct Shell {
    /// Per UDP endpoint, one `SO_REUSEPORT` socket per shard.
    sockets: Vec<(Endpoint, Vec<std::net::UdpSocket>)>,
    tcp: Vec<(Endpoint, TcpListener)>,
    shards: usize,
    /// See [`SfuConfig::nack_buffer_size`].
    pub nack_buffer_size: usize,
}

impl Shell {
    /// How many cores this machine gives the media plane (one shard each).
    pub fn default_shards() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, SHARD_CHARS.len())
    }

    /// Binds [`Shell::default_shards`] UDP sockets per UDP endpoint and one ICE-TCP listener per
    /// TCP endpoint. Fails with the address that could not be bound.
    pub async fn bind(udp: &[Endpoint], tcp: &[Endpoint]) -> Result<Self, String> {
        Self::bind_sharded(udp, tcp, Self::default_shards()).await
    }

    /// As [`Shell::bind`] with an explicit number of shards (1..=52).
    pub async fn bind_sharded(
        udp: &[Endpoint],
        tcp: &[Endpoint],
        shards: usize,
    ) -> Result<Self, String> {
        let shards = shards.clamp(1, SHARD_CHARS.len());
        let mut sockets = Vec::new();
        for e in udp {
            // SO_REUSEPORT would let us join another process's group on a busy port: probe the
            // port exclusively first, so a port in use stays a start-up error.
            drop(
                crate::udp::bind_std(e.local, false)
                    .map_err(|err| format!("cannot bind UDP {}: {err}", e.local))?,
            );
            let group = (0..shards)
                .map(|_| crate::udp::bind_std(e.local, true))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| format!("cannot bind UDP {}: {err}", e.local))?;
            for s in &group {
                // Without arrival times nothing is shed by age (crate::shed); media still
                // flows, so this is not worth refusing to start over.
                if let Err(err) = crate::udp::stamp_arrivals(s) {
                    tracing::warn!(local = %e.local, error = %err, "no arrival times on the media socket: an overloaded shard will fall behind instead of shedding stale media");
                }
            }
            sockets.push((*e, group));
        }
        let mut listeners = Vec::new();
        for e in tcp {
            let l = TcpListener::bind(e.local)
                .await
                .map_err(|err| format!("cannot listen on TCP {}: {err}", e.local))?;
            listeners.push((*e, l));
        }
        Ok(Self {
            sockets,
            tcp: listeners,
            shards,
            nack_buffer_size: 0,
        })
    }

    /// Runs the SFU until the command channel closes: one thread per shard, each with its own
    /// core, sockets and timers, and a router task here that sends each session's commands to
    /// the shard of its call.
    pub fn spawn(
        self,
        mut cmds: mpsc::Receiver<Command>,
        reports: mpsc::Sender<Report>,
    ) -> tokio::task::JoinHandle<()> {
        let n = self.shards;
        tracing::info!(shards = n, "rtc: media shards (one core thread each)");
        let base = SfuConfig {
            udp_candidates: self.sockets.iter().map(|(e, _)| e.advertised).collect(),
            tcp_candidates: self.tcp.iter().map(|(e, _)| e.advertised).collect(),
            nack_buffer_size: self.nack_buffer_size,
            bandwidth_estimation: true,
            ufrag_prefix: None,
            voice_fast_path: true,
        };
        let mut ingress_txs = Vec::new();
        let mut ingress_rxs = Vec::new();
        let mut control_txs = Vec::new();
        let mut control_rxs = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::channel::<Ingress>(INGRESS_QUEUE);
            ingress_txs.push(tx);
            ingress_rxs.push(rx);
            let (tx, rx) = mpsc::channel::<Ingress>(CONTROL_QUEUE);
            control_txs.push(tx);
            control_rxs.push(rx);
        }
        let (shard_reports, mut shard_reports_rx) = mpsc::channel::<Report>(2000);
        let mut shard_cmds = Vec::new();
        let mut sockets: Vec<Vec<(Endpoint, std::net::UdpSocket)>> =
            (0..n).map(|_| Vec::new()).collect();
        for (e, group) in self.sockets {
            for (k, sock) in group.into_iter().enumerate() {
                sockets[k].push((e, sock));
            }
        }
        let queues = ingress_rxs.into_iter().zip(control_rxs);
        for (k, (socks, (ingress, control))) in sockets.into_iter().zip(queues).enumerate() {
            let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(2000);
            shard_cmds.push(cmd_tx);
            let shard = Shard {
                index: k,
                cfg: SfuConfig {
                    ufrag_prefix: Some(SHARD_CHARS[k] as char),
                    ..base.clone()
                },
                sockets: socks,
                cmds: cmd_rx,
                ingress,
                control,
                peers: Queues {
                    media: ingress_txs.clone(),
                    control: control_txs.clone(),
                },
                reports: shard_reports.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("sfu-{k}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(shard.run()),
                        Err(e) => {
                            tracing::error!(shard = k, error = %e, "cannot start media shard")
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(shard = k, error = %e, "cannot start media shard thread");
            }
        }
        drop(shard_reports);
        for (e, listener) in self.tcp {
            tokio::spawn(accept_loop(listener, e.advertised, ingress_txs.clone()));
        }
        drop(ingress_txs);
        drop(control_txs);
        tokio::spawn(async move {
            // Session → shard, for the commands that follow a join. Entries go when the session
            // is closed by the control plane or ends in the media plane.
            let mut sessions: HashMap<String, usize> = HashMap::new();
            loop {
                tokio::select! {
                    cmd = cmds.recv() => {
                        let Some(cmd) = cmd else { break };
                        let shard = match &cmd {
                            Command::Init(c) => {
                                let k = shard_of_call(&c.group_id, &c.call_id, n);
                                sessions.entry(c.session_id.clone()).or_insert(k);
                                Some(k)
                            }
                            Command::Rtc(m) => sessions.get(&m.session_id).copied(),
                            Command::Close(id) => sessions.remove(id),
                        };
                        match shard {
                            Some(k) => {
                                if shard_cmds[k].send(cmd).await.is_err() {
                                    tracing::error!(shard = k, "media shard is gone: command dropped");
                                }
                            }
                            None => tracing::debug!(?cmd, "media command for an unknown session dropped"),
                        }
                    }
                    r = shard_reports_rx.recv() => {
                        let Some(r) = r else { break };
                        if let Report::SessionEnded { session_id, .. } = &r {
                            sessions.remove(session_id);
                        }
                        forward(&reports, r);
                    }
                }
            }
        })
    }
}

/// One media shard: a core, this shard's socket of every UDP endpoint, and its timers, all on one
/// thread, so no lock is taken per packet.
struct Shard {
    index: usize,
    cfg: SfuConfig,
    sockets: Vec<(Endpoint, std::net::UdpSocket)>,
    cmds: mpsc::Receiver<Command>,
    ingress: mpsc::Receiver<Ingress>,
    control: mpsc::Receiver<Ingress>,
    /// Every shard's queues (this one's included), for datagrams the kernel gave the wrong shard.
    peers: Queues,
    reports: mpsc::Sender<Report>,
}

/// The ingress queues of every shard, by shard: media (and ICE-TCP), and control datagrams.
/// ICE-TCP frames, handshakes included, stay on the media queue: they must not overtake the
/// `TcpOpen` that registers their connection, or the answer would have nowhere to go.
#[derive(Clone)]
struct Queues {
    media: Vec<mpsc::Sender<Ingress>>,
    control: Vec<mpsc::Sender<Ingress>>,
}

impl Shard {
    async fn run(self) {
        let Shard {
            index,
            cfg,
            sockets,
            mut cmds,
            mut ingress,
            mut control,
            peers,
            reports,
        } = self;
        let mut egress = Egress::default();
        for (e, std_sock) in sockets {
            let sock = match UdpSocket::from_std(std_sock) {
                Ok(s) => Arc::new(s),
                Err(err) => {
                    tracing::error!(local = %e.local, error = %err, "cannot register media socket");
                    continue;
                }
            };
            egress.queues.push((e.advertised, sock.clone(), Vec::new()));
            tokio::spawn(read_loop(sock, e.advertised, index, peers.clone()));
        }
        drop(peers);
        let mut sfu = Sfu::new(cfg);
        let mut tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let mut shedder = Shedder::new();
        loop {
            let deadline = sfu.poll_timeout();
            tokio::select! {
                // Control datagrams first, then commands and timers, media last: under overload
                // media waits (and is shed by the readers), joins and signaling do not.
                biased;
                d = control.recv() => {
                    let Some(d) = d else { break };
                    let now = Instant::now();
                    for d in round(d, &mut control, INGRESS_ROUND) {
                        ingest(&mut sfu, &mut tcp_conns, now, None, d);
                    }
                }
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    tracing::debug!(?cmd, shard = index, "media command");
                    let res = match cmd {
                        Command::Init(c) => sfu.init_session(c, now),
                        Command::Rtc(m) => sfu.handle_rtc(m, now),
                        Command::Close(id) => { sfu.close_session(&id, now); Ok(()) }
                    };
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "media command failed");
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => sfu.handle_timeout(Instant::now()),
                d = ingress.recv() => {
                    let Some(d) = d else { break };
                    // Take what else is already queued too (bounded), so that the output of
                    // many datagrams leaves in few sendmmsg calls.
                    let now = Instant::now();
                    let overloaded = shedder.overloaded();
                    for d in round(d, &mut ingress, INGRESS_ROUND) {
                        ingest(&mut sfu, &mut tcp_conns, now, Some(&mut shedder), d);
                        // What is left waits for the next round, after control and timers.
                        if now.elapsed() > MEDIA_ROUND_BUDGET {
                            break;
                        }
                    }
                    if shedder.overloaded() != overloaded {
                        tracing::debug!(shard = index, overloaded = !overloaded, "media shard {}", if overloaded { "caught up" } else { "overloaded: shedding media past the target wait" });
                    }
                }
            }
            while let Some(o) = sfu.poll_output() {
                match o {
                    SfuOutput::Transmit {
                        proto: Protocol::Tcp,
                        destination,
                        contents,
                        ..
                    } => match tcp_conns.get(&destination) {
                        Some(tx) => {
                            if tx.try_send(contents).is_err() {
                                tracing::debug!(%destination, "ice-tcp send queue full: frame dropped");
                            }
                        }
                        None => {
                            tracing::debug!(%destination, "no ice-tcp connection for frame")
                        }
                    },
                    SfuOutput::Transmit {
                        source,
                        destination,
                        contents,
                        ..
                    } => {
                        egress.push(source, destination, contents);
                        egress.give_back(&mut sfu);
                    }
                    SfuOutput::Signal(m) => {
                        tracing::debug!(session_id = %m.session_id, msg_type = m.msg_type, "signal to the plugin");
                        forward(&reports, Report::Signal(m))
                    }
                    SfuOutput::Vad { session_id, on } => {
                        forward(&reports, Report::Vad { session_id, on })
                    }
                    SfuOutput::SessionEnded { session_id, reason } => {
                        forward(&reports, Report::SessionEnded { session_id, reason })
                    }
                }
            }
            egress.flush();
            egress.give_back(&mut sfu);
        }
    }
}

/// Hands one ingress message to the core, shedding the media that `shedder` finds too late
/// (none from the control queue, which passes no shedder).
fn ingest(
    sfu: &mut Sfu,
    tcp_conns: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    now: Instant,
    shedder: Option<&mut Shedder>,
    d: Ingress,
) {
    // Waits are measured per message, not per round: a round's earlier batches may have taken
    // most of a second to forward when the shard is saturated.
    let mut shedding = shedder.map(|sh| (sh, (Instant::now(), SystemTime::now())));
    match d {
        Ingress::Udp {
            destination,
            mut batch,
            recycle,
        } => {
            let shed = shed_late(&mut batch, shedding.as_mut());
            if shed > 0 {
                crate::metrics::ingress_dropped(shed);
                tracing::debug!(shed, "media shard behind: stale media shed");
            }
            for (source, data) in batch.iter() {
                sfu.handle_datagram(now, Protocol::Udp, source, destination, data);
            }
            let _ = recycle.send(batch);
        }
        Ingress::Packet {
            proto,
            source,
            destination,
            data,
            received,
        } => {
            if let Some((sh, clocks)) = shedding.as_mut()
                && !admit(sh, *clocks, received, &data)
            {
                crate::metrics::ingress_dropped(1);
                return;
            }
            sfu.handle_datagram(now, proto, source, destination, &data)
        }
        Ingress::TcpOpen { peer, tx } => {
            tcp_conns.insert(peer, tx);
        }
        Ingress::TcpClosed { peer } => {
            tcp_conns.remove(&peer);
        }
    }
}

/// Datagrams waiting to leave, per local socket. They go with sendmmsg after each round, or as
/// soon as a socket has [`EGRESS_BATCH`] of them: a round of a large call produces hundreds of
/// thousands, which would otherwise all sit in memory (and then hit the socket buffers at once).
#[derive(Default)]
struct Egress {
    /// Advertised address, its socket, and what waits to leave through it. A shard has one
    /// socket per media address (usually one or two), so a scan beats hashing per datagram.
    queues: Vec<(SocketAddr, Arc<UdpSocket>, Vec<Datagram>)>,
    /// Buffers of datagrams sent, to go back to the core ([`Sfu::recycle`]).
    spent: Vec<Vec<u8>>,
}

/// Destination and contents.
type Datagram = (SocketAddr, Vec<u8>);

/// Datagrams queued for one socket before they are sent without waiting for the round's end.
const EGRESS_BATCH: usize = 1024;

impl Egress {
    fn push(&mut self, source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) {
        let Some((_, sock, q)) = self.queues.iter_mut().find(|(a, _, _)| *a == source) else {
            tracing::debug!(%source, "no socket for datagram");
            return;
        };
        q.push((destination, contents));
        if q.len() >= EGRESS_BATCH {
            Self::send(sock, q, &mut self.spent);
        }
    }

    /// Hands the buffers of what was sent back to the core, for its next datagrams. Also
    /// mid-round: a queue that fills sends at once, and a large round reuses those buffers.
    fn give_back(&mut self, sfu: &mut Sfu) {
        for b in self.spent.drain(..) {
            sfu.recycle(b);
        }
    }

    fn flush(&mut self) {
        for (_, sock, q) in self.queues.iter_mut().filter(|(_, _, q)| !q.is_empty()) {
            Self::send(sock, q, &mut self.spent);
        }
    }

    fn send(sock: &UdpSocket, queued: &mut Vec<Datagram>, spent: &mut Vec<Vec<u8>>) {
        let r = crate::udp::send(sock, queued.as_slice());
        if let Some(e) = &r.error {
            tracing::debug!(refused = r.refused, error = %e, "udp send refused datagrams");
        }
        let full = queued.len() - r.sent - r.refused;
        if full > 0 {
            tracing::debug!(dropped = full, "udp send buffer full: datagrams dropped");
        }
        if r.sent < queued.len() {
            crate::metrics::udp_dropped(queued.len() - r.sent);
        }
        crate::metrics::udp_sent(r.sent);
        spent.extend(queued.drain(..).map(|(_, b)| b));
    }
}

/// `first`, then what else is queued now, `max` messages in all. Nothing is taken from the queue
/// beyond `max`: what is left stays queued for the next round. (An earlier loop took one message
/// past its bound and dropped it: every 17th queued batch of up to 32 datagrams was lost under
/// load, and a lost `TcpClosed` would have kept a dead connection's entry.)
fn round<T>(first: T, rx: &mut mpsc::Receiver<T>, max: usize) -> impl Iterator<Item = T> + '_ {
    std::iter::once(first)
        .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(max.saturating_sub(1)))
}

/// Leaves the media of `batch` that the shedder finds too late out of its iteration; returns how
/// many datagrams that was. `shedding` pairs the shedder with the monotonic and wall clocks at
/// dequeue; without it (the control queue) nothing is shed.
fn shed_late(
    batch: &mut RecvBatch,
    shedding: Option<&mut (&mut Shedder, (Instant, SystemTime))>,
) -> usize {
    let Some((shedder, clocks)) = shedding else {
        return 0;
    };
    batch.retain(|_, data, received| admit(shedder, *clocks, received, data))
}

/// Whether a datagram dequeued at `clocks` goes on to the core. Handshakes always do; media
/// does unless `shedder` finds it too late. Without proof of lateness (no arrival time, or an
/// arrival after the wall clock, which stepped back) it does, and its wait is not counted.
fn admit(
    shedder: &mut Shedder,
    (now, wall): (Instant, SystemTime),
    received: Option<SystemTime>,
    datagram: &[u8],
) -> bool {
    if is_control(datagram) {
        return true;
    }
    match received.map(|r| wall.duration_since(r)) {
        Some(Ok(wait)) => shedder.admit(now, wait),
        _ => true,
    }
}

/// STUN (first byte 0..=3) or DTLS (20..=63), by RFC 7983's demultiplexing. Anything else is
/// media or junk, and may be shed.
fn is_control(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(0..=3 | 20..=63))
}

/// Reads one shard's socket of one endpoint. The kernel spreads remote addresses over the
/// `SO_REUSEPORT` group without knowing our shards, so each datagram goes to the shard of its
/// session: a STUN check names it (the first ufrag character), and the reader remembers the
/// sender's address for the DTLS/SRTP that follows. Datagrams of this shard stay in the batch
/// (no copy); others are copied to their shard.
///
/// Control datagrams (STUN, and DTLS, which carries the data channel's SCTP) are copied to the
/// shard's control queue, served first and never shed. Media goes in batches to the media queue;
/// when that is full the shard is overloaded and the batch is dropped, counted in
/// `rtcd_rtc_udp_ingress_dropped_total`: media that waited longer would arrive too late to be
/// played, and waiting in the socket buffer instead would put joins behind it.
async fn read_loop(sock: Arc<UdpSocket>, advertised: SocketAddr, own: usize, queues: Queues) {
    // Batches circulate between this reader and its core: no allocation per datagram, one
    // channel message per `recvmmsg`.
    let (recycle, mut returned) = mpsc::unbounded_channel::<Box<RecvBatch>>();
    let mut learned: HashMap<SocketAddr, usize> = HashMap::new();
    let mut spare: Option<Box<RecvBatch>> = None;
    let shards = queues.media.len();
    loop {
        let mut batch = spare
            .take()
            .or_else(|| returned.try_recv().ok())
            .unwrap_or_default();
        if let Err(e) = crate::udp::recv(&sock, &mut batch).await {
            tracing::debug!(error = %e, "udp receive error");
            spare = Some(batch);
            continue;
        }
        let mut media = 0;
        for i in 0..batch.len() {
            let Some((source, data)) = batch.get(i) else {
                continue;
            };
            let target = if shards > 1 {
                match crate::stun::local_ufrag(data).and_then(shard_of_ufrag) {
                    Some(k) if k < shards => {
                        if learned.len() >= LEARNED_MAX {
                            learned.clear();
                        }
                        learned.insert(source, k);
                        k
                    }
                    _ => learned.get(&source).copied().unwrap_or(own),
                }
            } else {
                own
            };
            let control = is_control(data);
            if !control && target == own {
                media += 1;
                continue;
            }
            let p = Ingress::Packet {
                proto: Protocol::Udp,
                source,
                destination: advertised,
                data: data.to_vec(),
                received: batch.received(i),
            };
            batch.skip(i);
            if control {
                if queues.control[target].send(p).await.is_err() {
                    return;
                }
            } else if queues.media[target].try_send(p).is_err() {
                crate::metrics::ingress_dropped(1);
                tracing::debug!(shard = target, "media shard queue full: datagram dropped");
            }
        }
        if media == 0 {
            spare = Some(batch);
            continue;
        }
        let p = Ingress::Udp {
            destination: advertised,
            batch,
            recycle: recycle.clone(),
        };
        match queues.media[own].try_send(p) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Ingress::Udp { batch, .. })) => {
                crate::metrics::ingress_dropped(media);
                tracing::debug!(dropped = media, "media shard overloaded: datagrams dropped");
                spare = Some(batch);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Accepts ICE-TCP connections (RFC 6544 passive); each carries RFC 4571 frames.
async fn accept_loop(
    listener: TcpListener,
    advertised: SocketAddr,
    ingress: Vec<mpsc::Sender<Ingress>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_conn(stream, peer, advertised, ingress.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ice-tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One ICE-TCP connection: 2-byte big-endian length, then the packet, both ways. Its first
/// frame must be a STUN check, whose ufrag names the shard the connection belongs to.
async fn tcp_conn(
    stream: TcpStream,
    peer: SocketAddr,
    advertised: SocketAddr,
    shards: Vec<mpsc::Sender<Ingress>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut len = [0u8; 2];
    let mut buf = vec![0u8; u16::MAX as usize];
    if rd.read_exact(&mut len).await.is_err() {
        return;
    }
    let n = u16::from_be_bytes(len) as usize;
    if rd.read_exact(&mut buf[..n]).await.is_err() {
        return;
    }
    let Some(ingress) = crate::stun::local_ufrag(&buf[..n])
        .and_then(shard_of_ufrag)
        .and_then(|k| shards.get(k))
        .cloned()
    else {
        return; // not ICE: nothing of ours
    };
    drop(shards);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    if ingress.send(Ingress::TcpOpen { peer, tx }).await.is_err() {
        return;
    }
    let first = Ingress::Packet {
        proto: Protocol::Tcp,
        source: peer,
        destination: advertised,
        data: buf[..n].to_vec(),
        received: None,
    };
    if ingress.send(first).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            let mut buf = Vec::with_capacity(frame.len() + 2);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&frame);
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    loop {
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = u16::from_be_bytes(len) as usize;
        if rd.read_exact(&mut buf[..n]).await.is_err() {
            break;
        }
        let p = Ingress::Packet {
            proto: Protocol::Tcp,
            source: peer,
            destination: advertised,
            data: buf[..n].to_vec(),
            received: None,
        };
        if ingress.send(p).await.is_err() {
            break;
        }
    }
    writer.abort();
    let _ = ingress.send(Ingress::TcpClosed { peer }).await;
}

fn forward(reports: &mpsc::Sender<Report>, r: Report) {
    if let Err(e) = reports.try_send(r) {
        tracing::error!(error = %e, "media report dropped: control plane is not keeping up");
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Media past the outer bound is shed; handshakes never are, and without proof of lateness
    /// (no arrival time, or a clock that stepped back) nothing is.
    #[test]
    fn only_media_proven_late_is_shed() {
        use crate::shed::BURST;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = Instant::now();
        let (rtp, rtcp, stun, dtls) = (
            &[0x80u8, 111, 0, 1][..],
            &[0x81u8, 201, 0, 7][..],
            &[0x00u8, 0x01, 0, 0][..],
            &[23u8, 0xfe, 0xfd][..],
        );
        let mut sh = Shedder::new();
        let late = (now, t0 + BURST + Duration::from_millis(1));
        assert!(!admit(&mut sh, late, Some(t0), rtp));
        assert!(!admit(&mut sh, late, Some(t0), rtcp));
        assert!(admit(&mut sh, late, Some(t0), stun));
        assert!(admit(&mut sh, late, Some(t0), dtls));
        assert!(
            admit(&mut sh, (now, t0 + BURST), Some(t0), rtp),
            "at the bound"
        );
        assert!(admit(&mut sh, late, None, rtp), "no arrival time");
        assert!(
            admit(&mut sh, (now, t0), late.1.into(), rtp),
            "the clock stepped back"
        );
    }

    /// A batch sheds exactly its late media, and does not count what was already handed to
    /// another shard.
    #[test]
    fn a_batch_sheds_its_late_media_only() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let from: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let (rtp, stun) = (&[0x80u8, 111, 0, 1][..], &[0x00u8, 0x01, 0, 0][..]);
        let fresh = t0 + Duration::from_millis(200);
        let mut batch = RecvBatch::of(&[
            (from, rtp, Some(t0)),  // already copied to another shard
            (from, stun, Some(t0)), // old, but a handshake
            (from, rtp, Some(t0)),  // late
            (from, rtp, Some(fresh)),
            (from, rtp, None),
        ]);
        batch.skip(0);
        let mut sh = Shedder::new();
        let clocks = (Instant::now(), t0 + Duration::from_millis(300));
        assert_eq!(
            shed_late(&mut batch, None),
            0,
            "no shedder (no clock): nothing shed"
        );
        assert_eq!(batch.iter().count(), 4);
        let mut shedding = (&mut sh, clocks);
        assert_eq!(shed_late(&mut batch, Some(&mut shedding)), 1);
        let left: Vec<&[u8]> = batch.iter().map(|(_, d)| d).collect();
        assert_eq!(left, [stun, rtp, rtp]);
        assert_eq!(shed_late(&mut batch, Some(&mut shedding)), 0, "shed once");
    }

    #[test]
    fn handshakes_are_control_and_media_is_not() {
        // A STUN binding request, a DTLS ClientHello record and DTLS application data (the data
        // channel's SCTP) take the control queue.
        assert!(is_control(&[0x00, 0x01, 0x00, 0x00]));
        assert!(is_control(&[22, 0xfe, 0xfd]));
        assert!(is_control(&[23, 0xfe, 0xfd]));
        // RTP (V=2), RTCP (a receiver report), junk and nothing at all are sheddable.
        assert!(!is_control(&[0x80, 111, 0, 1]));
        assert!(!is_control(&[0x81, 201, 0, 7]));
        for junk in [4u8, 19, 64, 127, 192, 255] {
            assert!(!is_control(&[junk, 0, 0]), "{junk}");
        }
        assert!(!is_control(&[]));
    }

    #[test]
    fn ufrags_name_their_shard() {
        for (k, c) in SHARD_CHARS.iter().enumerate() {
            let ufrag = format!("{}abcdefghijklmno", *c as char);
            assert_eq!(shard_of_ufrag(&ufrag), Some(k));
        }
        assert_eq!(shard_of_ufrag(""), None);
        assert_eq!(shard_of_ufrag("1abc"), None);
    }

    #[test]
    fn a_call_always_lands_on_one_shard_and_calls_spread() {
        let k = shard_of_call("g", "call-1", 8);
        for _ in 0..10 {
            assert_eq!(shard_of_call("g", "call-1", 8), k);
        }
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| shard_of_call("g", &format!("call-{i}"), 8))
            .collect();
        assert_eq!(used.len(), 8, "200 calls use all 8 shards");
        assert!((0..100).all(|i| shard_of_call("g", &format!("c{i}"), 1) == 0));
    }

    #[test]
    fn a_round_takes_at_most_its_bound_and_loses_nothing() {
        let (tx, mut rx) = mpsc::channel(64);
        for i in 1..40 {
            tx.try_send(i).unwrap();
        }
        let mut seen: Vec<i32> = round(0, &mut rx, INGRESS_ROUND).collect();
        assert_eq!(seen, (0..INGRESS_ROUND as i32).collect::<Vec<_>>());
        // The rest is still queued, in order, over the following rounds.
        while let Ok(first) = rx.try_recv() {
            let r: Vec<i32> = round(first, &mut rx, INGRESS_ROUND).collect();
            assert!(r.len() <= INGRESS_ROUND);
            seen.extend(r);
        }
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        // A short queue ends the round early.
        tx.try_send(7).unwrap();
        assert_eq!(round(6, &mut rx, INGRESS_ROUND).collect::<Vec<_>>(), [6, 7]);
    }
}
