//! The I/O shell around the SFU core: UDP sockets, a clock and channels. It owns no policy:
//! datagrams and commands go into [`Sfu`], and what comes out is written to sockets or reported.
//!
//! One socket per local address on the media port (as rtcd, which needs the address a packet
//! arrived at to match it to a candidate), with large buffers. Each socket has a reader task that
//! reads batches with `recvmmsg` into recycled buffers; the core runs in one task that owns it, so
//! no lock is taken per packet, and what a round of input produces leaves with `sendmmsg`. Advertised addresses may differ from local
//! ones (host override, port override): the shell translates between the two, so the core only
//! ever sees advertised addresses.

use crate::core::{Sfu, SfuConfig, SfuOutput};
use crate::udp::RecvBatch;
use calls_proto::RtcMessage;
use calls_proto::json::SessionConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Ingress messages (UDP batches, TCP frames) handled per round before output is flushed.
const INGRESS_ROUND: usize = 16;

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

pub struct Shell {
    sockets: Vec<(Endpoint, Arc<UdpSocket>)>,
    tcp: Vec<(Endpoint, TcpListener)>,
    /// See [`SfuConfig::nack_buffer_size`].
    pub nack_buffer_size: usize,
}

impl Shell {
    /// Binds one UDP socket per UDP endpoint and one ICE-TCP listener per TCP endpoint. Fails
    /// with the address that could not be bound.
    pub async fn bind(udp: &[Endpoint], tcp: &[Endpoint]) -> Result<Self, String> {
        let mut sockets = Vec::new();
        for e in udp {
            let s = crate::udp::bind(e.local)
                .map_err(|err| format!("cannot bind UDP {}: {err}", e.local))?;
            sockets.push((*e, Arc::new(s)));
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
            nack_buffer_size: 0,
        })
    }

    /// Runs the SFU until the command channel closes.
    pub fn spawn(
        self,
        mut cmds: mpsc::Receiver<Command>,
        reports: mpsc::Sender<Report>,
    ) -> tokio::task::JoinHandle<()> {
        let cfg = SfuConfig {
            udp_candidates: self.sockets.iter().map(|(e, _)| e.advertised).collect(),
            tcp_candidates: self.tcp.iter().map(|(e, _)| e.advertised).collect(),
            nack_buffer_size: self.nack_buffer_size,
            bandwidth_estimation: true,
        };
        let (dgram_tx, mut dgram_rx) = mpsc::channel::<Ingress>(4096);
        for (e, listener) in self.tcp {
            tokio::spawn(accept_loop(listener, e.advertised, dgram_tx.clone()));
        }
        let mut by_advertised: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        for (e, sock) in &self.sockets {
            by_advertised.insert(e.advertised, sock.clone());
            let (sock, tx, advertised) = (sock.clone(), dgram_tx.clone(), e.advertised);
            tokio::spawn(async move {
                // Batches circulate between this reader and the core task: no allocation per
                // datagram, one channel message per `recvmmsg`.
                let (recycle, mut returned) = mpsc::unbounded_channel::<Box<RecvBatch>>();
                loop {
                    let mut batch = returned.try_recv().unwrap_or_default();
                    match crate::udp::recv(&sock, &mut batch).await {
                        Ok(_) => {
                            let p = Ingress::Udp {
                                destination: advertised,
                                batch,
                                recycle: recycle.clone(),
                            };
                            if tx.send(p).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "udp receive error"),
                    }
                }
            });
        }
        drop(dgram_tx);
        tokio::spawn(async move {
            let mut sfu = Sfu::new(cfg);
            let mut tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
            // Outgoing datagrams per local socket, flushed with sendmmsg after each round.
            let mut egress: HashMap<SocketAddr, Vec<(SocketAddr, Vec<u8>)>> = HashMap::new();
            loop {
                let deadline = sfu.poll_timeout();
                tokio::select! {
                    cmd = cmds.recv() => {
                        let Some(cmd) = cmd else { break };
                        let now = Instant::now();
                        tracing::debug!(?cmd, "media command");
                        let res = match cmd {
                            Command::Init(c) => sfu.init_session(c, now),
                            Command::Rtc(m) => sfu.handle_rtc(m, now),
                            Command::Close(id) => { sfu.close_session(&id, now); Ok(()) }
                        };
                        if let Err(e) = res {
                            tracing::warn!(error = %e, "media command failed");
                        }
                    }
                    d = dgram_rx.recv() => {
                        let Some(mut d) = d else { break };
                        // Take what else is already queued too (bounded), so that the output of
                        // many datagrams leaves in few sendmmsg calls.
                        let now = Instant::now();
                        for _ in 0..INGRESS_ROUND {
                            match d {
                                Ingress::Udp { destination, batch, recycle } => {
                                    for (source, data) in batch.iter() {
                                        sfu.handle_datagram(now, Protocol::Udp, source, destination, data);
                                    }
                                    let _ = recycle.send(batch);
                                }
                                Ingress::Packet { proto, source, destination, data } => {
                                    sfu.handle_datagram(now, proto, source, destination, &data)
                                }
                                Ingress::TcpOpen { peer, tx } => {
                                    tcp_conns.insert(peer, tx);
                                }
                                Ingress::TcpClosed { peer } => {
                                    tcp_conns.remove(&peer);
                                }
                            }
                            match dgram_rx.try_recv() {
                                Ok(next) => d = next,
                                Err(_) => break,
                            }
                        }
                    }
                    _ = sleep_until(deadline), if deadline.is_some() => sfu.handle_timeout(Instant::now()),
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
                        } => egress
                            .entry(source)
                            .or_default()
                            .push((destination, contents)),
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
                for (source, queued) in egress.iter_mut().filter(|(_, q)| !q.is_empty()) {
                    if let Some(sock) = by_advertised.get(source) {
                        let msgs: Vec<(SocketAddr, &[u8])> =
                            queued.iter().map(|(d, c)| (*d, c.as_slice())).collect();
                        match crate::udp::send(sock, &msgs) {
                            Ok(n) if n < msgs.len() => {
                                tracing::debug!(
                                    dropped = msgs.len() - n,
                                    "udp send buffer full: datagrams dropped"
                                )
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "udp send failed"),
                        }
                    }
                    queued.clear();
                }
            }
        })
    }
}

/// Accepts ICE-TCP connections (RFC 6544 passive); each carries RFC 4571 frames.
async fn accept_loop(
    listener: TcpListener,
    advertised: SocketAddr,
    ingress: mpsc::Sender<Ingress>,
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

/// One ICE-TCP connection: 2-byte big-endian length, then the packet, both ways.
async fn tcp_conn(
    stream: TcpStream,
    peer: SocketAddr,
    advertised: SocketAddr,
    ingress: mpsc::Sender<Ingress>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    if ingress.send(Ingress::TcpOpen { peer, tx }).await.is_err() {
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
    let mut len = [0u8; 2];
    let mut buf = vec![0u8; u16::MAX as usize];
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
