//! The I/O shell around the SFU core: UDP sockets, a clock and channels. It owns no policy:
//! datagrams and commands go into [`Sfu`], and what comes out is written to sockets or reported.
//!
//! One socket per local address on the media port (as rtcd, which needs the address a packet
//! arrived at to match it to a candidate). Each socket has a reader task; the core runs in one
//! task that owns it, so no lock is taken per packet. Advertised addresses may differ from local
//! ones (host override, port override): the shell translates between the two, so the core only
//! ever sees advertised addresses.

use crate::core::{Sfu, SfuConfig, SfuOutput};
use calls_proto::RtcMessage;
use calls_proto::json::SessionConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

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
}

impl Shell {
    /// Binds one UDP socket per endpoint. Fails with the address that could not be bound.
    pub async fn bind(endpoints: &[Endpoint]) -> Result<Self, String> {
        let mut sockets = Vec::new();
        for e in endpoints {
            let s = UdpSocket::bind(e.local)
                .await
                .map_err(|err| format!("cannot bind UDP {}: {err}", e.local))?;
            sockets.push((*e, Arc::new(s)));
        }
        Ok(Self { sockets })
    }

    /// Runs the SFU until the command channel closes.
    pub fn spawn(
        self,
        mut cmds: mpsc::Receiver<Command>,
        reports: mpsc::Sender<Report>,
    ) -> tokio::task::JoinHandle<()> {
        let cfg = SfuConfig {
            udp_candidates: self.sockets.iter().map(|(e, _)| e.advertised).collect(),
            tcp_candidates: Vec::new(),
        };
        let (dgram_tx, mut dgram_rx) = mpsc::channel::<(SocketAddr, SocketAddr, Vec<u8>)>(4096);
        let mut by_advertised: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        for (e, sock) in &self.sockets {
            by_advertised.insert(e.advertised, sock.clone());
            let (sock, tx, advertised) = (sock.clone(), dgram_tx.clone(), e.advertised);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    match sock.recv_from(&mut buf).await {
                        Ok((n, src)) => {
                            if tx.send((src, advertised, buf[..n].to_vec())).await.is_err() {
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
                        let Some((src, dst, data)) = d else { break };
                        sfu.handle_datagram(Instant::now(), Protocol::Udp, src, dst, &data);
                    }
                    _ = sleep_until(deadline), if deadline.is_some() => sfu.handle_timeout(Instant::now()),
                }
                while let Some(o) = sfu.poll_output() {
                    match o {
                        SfuOutput::Transmit {
                            source,
                            destination,
                            contents,
                            ..
                        } => {
                            if let Some(sock) = by_advertised.get(&source)
                                && let Err(e) = sock.try_send_to(&contents, destination)
                            {
                                tracing::debug!(error = %e, %destination, "udp send dropped");
                            }
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
            }
        })
    }
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
