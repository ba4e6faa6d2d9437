//! Every simulated participant on one UDP socket, each with an address of its own ("AnyIP").
//!
//! An SFU tells its peers apart by address, so each participant needs a distinct one. With a
//! local route for a whole prefix (`ip route add local 10.204.0.0/16 dev lo`) every address in
//! it is this host's, and one socket bound to the wildcard address receives for all of them:
//! `IP_PKTINFO` says which participant a datagram is for, and sets the source address of each
//! one sent. That turns one `recvfrom` and one `sendto` per packet (a socket per participant)
//! into one `recvmmsg` and one `sendmmsg` per batch.
//!
//! The receive side is drained on a short timer instead of waiting on the socket: a socket
//! nobody sleeps on costs its sender no wake-up per datagram. Over loopback the sender is the SFU
//! under test, whose core would otherwise pay for the load generator's wake-ups, a cost a real
//! deployment leaves on the clients' machines (and `udp-ceiling`'s sink avoids the same way).

use calls_sfu::udp::mmsg::{self, set_int};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::Notify;

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 64;
/// Receive buffer per datagram; no WebRTC packet is larger.
const SLOT: usize = 2048;
/// How often the receive side drains the socket: well under an audio frame (20 ms).
pub const POLL: Duration = Duration::from_millis(1);
/// Socket buffers: the receive side must hold what arrives between two drains, plus scheduling
/// hiccups of the generator's thread (100k packets/s for 10 ms is about 1,000 datagrams).
const SOCKET_BUFFER: usize = 16 << 20;

/// An IPv4 prefix, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    base: u32,
    len: u8,
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 prefix like 10.204.0.0/16");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(format!("{s:?}: the prefix length must be 8 to 30"));
        }
        let mask = u32::MAX << (32 - len);
        Ok(Prefix {
            base: u32::from(ip) & mask,
            len,
        })
    }
}

impl Prefix {
    /// The `i`-th usable address: host parts ending in .0 or .255 are skipped, so that no
    /// participant gets an address that looks like a network or broadcast address.
    pub fn nth(&self, i: usize) -> Option<Ipv4Addr> {
        let host = (i / 254 * 256 + i % 254 + 1) as u64;
        (host < (1u64 << (32 - self.len)) - 1).then(|| Ipv4Addr::from(self.base + host as u32))
    }

    /// How many peers fit.
    pub fn capacity(&self) -> usize {
        let hosts = 1usize << (32 - self.len);
        hosts / 256 * 254 + (hosts % 256).saturating_sub(2)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

/// Datagrams waiting for one participant's task.
#[derive(Default)]
pub struct Inbox {
    queue: RefCell<VecDeque<(SocketAddr, Vec<u8>)>>,
    ready: Notify,
}

impl Inbox {
    /// The next datagram for this participant. Cancel-safe: a datagram is taken only when
    /// this returns.
    pub async fn recv(&self) -> (SocketAddr, Vec<u8>) {
        loop {
            if let Some(d) = self.queue.borrow_mut().pop_front() {
                return d;
            }
            self.ready.notified().await;
        }
    }
}

/// The shared socket and who is behind which address. Single-threaded (the load runs on one
/// thread), hence `Cell`/`RefCell`.
pub struct SharedNet {
    sock: std::net::UdpSocket,
    port: u16,
    prefix: Prefix,
    next: Cell<usize>,
    inboxes: RefCell<HashMap<Ipv4Addr, Rc<Inbox>>>,
    out: RefCell<Vec<(Ipv4Addr, SocketAddr, Vec<u8>)>>,
    out_ready: Notify,
}

impl SharedNet {
    /// Binds the shared socket and checks that the prefix is routed to this host.
    pub fn new(prefix: Prefix) -> Result<Self, String> {
        let first = prefix.nth(0).ok_or("empty prefix")?;
        // Binding one of the prefix's addresses succeeds only if the kernel takes it as local,
        // which is the one setting this mode needs; say which.
        std::net::UdpSocket::bind((first, 0)).map_err(|e| {
            format!(
                "{first} (in --anyip {prefix}) is not an address of this host ({e}); \
                 route the prefix here first: ip route add local {prefix} dev lo"
            )
        })?;
        let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .map_err(|e| format!("bind 0.0.0.0: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = sock.local_addr().map_err(|e| e.to_string())?.port();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .map_err(|e| format!("IP_PKTINFO: {e}"))?;
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            // The forcing variant needs CAP_NET_ADMIN; without it the plain one is capped by
            // net.core.[rw]mem_max, which only means drops under the heaviest rows.
            if set_int(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER as i32).is_err() {
                let _ = set_int(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER as i32);
            }
        }
        Ok(SharedNet {
            sock,
            port,
            prefix,
            next: Cell::new(0),
            inboxes: RefCell::default(),
            out: RefCell::default(),
            out_ready: Notify::new(),
        })
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    /// A new participant's address and inbox.
    pub fn join(&self) -> Result<(SocketAddr, Rc<Inbox>), String> {
        let i = self.next.get();
        let ip = self.prefix.nth(i).ok_or_else(|| {
            format!(
                "--anyip {} has room for {} peers",
                self.prefix,
                self.prefix.capacity()
            )
        })?;
        self.next.set(i + 1);
        let inbox = Rc::new(Inbox::default());
        self.inboxes.borrow_mut().insert(ip, inbox.clone());
        Ok((SocketAddr::V4(SocketAddrV4::new(ip, self.port)), inbox))
    }

    /// Stops delivering to `addr`; what arrives for it later is dropped.
    pub fn leave(&self, addr: SocketAddr) {
        if let SocketAddr::V4(a) = addr {
            self.inboxes.borrow_mut().remove(a.ip());
        }
    }

    /// Queues a datagram from `src`; [`SharedNet::send_loop`] sends the queue in batches.
    pub fn send(&self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let SocketAddr::V4(src) = src else { return };
        let mut out = self.out.borrow_mut();
        if out.is_empty() {
            self.out_ready.notify_one();
        }
        out.push((*src.ip(), dst, data));
    }

    /// Sends what participants queue, forever; `sent` is told how many went out per batch.
    /// Datagrams the socket buffer has no room for are dropped, as UDP would.
    pub async fn send_loop(&self, sent: impl Fn(u64)) {
        let mut pending = Vec::new();
        loop {
            self.out_ready.notified().await;
            std::mem::swap(&mut *self.out.borrow_mut(), &mut pending);
            for chunk in pending.chunks(BATCH) {
                let mut at = 0;
                while at < chunk.len() {
                    match send_batch(&self.sock, &chunk[at..]) {
                        Ok(n) => {
                            sent(n as u64);
                            at += n.max(1);
                        }
                        // A full socket buffer: the rest of the chunk is dropped.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // The first datagram was refused (full buffer, unreachable): drop it and
                        // go on with the rest.
                        Err(_) => at += 1,
                    }
                }
            }
            pending.clear();
        }
    }

    /// Drains the socket every [`POLL`] into the participants' inboxes, forever.
    pub async fn recv_loop(&self) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut batch = RecvBatch::new();
        loop {
            tick.tick().await;
            // Until the socket is empty (an error is EAGAIN or worse: try again next tick).
            while let Ok(n) = recv_batch(&self.sock, &mut batch) {
                let inboxes = self.inboxes.borrow();
                for i in 0..n {
                    let (Some(src), Some(dst)) = (batch.src[i], batch.dst[i]) else {
                        continue;
                    };
                    if let Some(inbox) = inboxes.get(&dst) {
                        let data = batch.buf[i * SLOT..i * SLOT + batch.len[i]].to_vec();
                        inbox.queue.borrow_mut().push_back((src, data));
                        inbox.ready.notify_one();
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
}

struct RecvBatch {
    buf: Vec<u8>,
    len: [usize; BATCH],
    src: [Option<SocketAddr>; BATCH],
    dst: [Option<Ipv4Addr>; BATCH],
}

impl RecvBatch {
    fn new() -> Self {
        RecvBatch {
            buf: vec![0; BATCH * SLOT],
            len: [0; BATCH],
            src: [None; BATCH],
            dst: [None; BATCH],
        }
    }
}

fn ipv4(a: &libc::sockaddr_in) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
        u16::from_be(a.sin_port),
    ))
}

/// One `recvmmsg` without waiting; each datagram with its source and the address it was sent
/// to (from `IP_PKTINFO`).
fn recv_batch(sock: &std::net::UdpSocket, b: &mut RecvBatch) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: every pointer handed to recvmmsg points into `b.buf`, `names`, `controls`, `iovs`
    // or `hdrs`, all of which outlive the call, with the lengths of the buffers they describe;
    // `mmsg::control` reads only headers recvmmsg has just filled.
    unsafe {
        let mut names: [libc::sockaddr_in; BATCH] = std::mem::zeroed();
        let mut controls: [mmsg::Control; BATCH] = [[0; 8]; BATCH];
        let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        let base = b.buf.as_mut_ptr();
        for i in 0..BATCH {
            iovs[i].iov_base = base.add(i * SLOT).cast();
            iovs[i].iov_len = SLOT;
            let h = &mut hdrs[i].msg_hdr;
            let name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            mmsg::point(h, name, size_of::<libc::sockaddr_in>(), &mut iovs[i]);
            h.msg_control = controls[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<mmsg::Control>() as _;
        }
        let n = mmsg::recv(sock.as_raw_fd(), &mut hdrs)?;
        for i in 0..n {
            b.len[i] = (hdrs[i].msg_len as usize).min(SLOT);
            b.src[i] = (names[i].sin_family as i32 == libc::AF_INET).then(|| ipv4(&names[i]));
            let info: Option<libc::in_pktinfo> =
                mmsg::control(&hdrs[i].msg_hdr, libc::IPPROTO_IP, libc::IP_PKTINFO);
            b.dst[i] = info.map(|info| Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
        }
        Ok(n)
    }
}

/// One `sendmmsg` of up to [`BATCH`] datagrams, each from its own source address
/// (`IP_PKTINFO`'s `ipi_spec_dst`). Returns how many the kernel took.
fn send_batch(
    sock: &std::net::UdpSocket,
    msgs: &[(Ipv4Addr, SocketAddr, Vec<u8>)],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = msgs.len().min(BATCH);
    // SAFETY: the headers point into `names`, `controls`, `iovs` and the caller's buffers, all
    // of which outlive the call; sendmmsg only reads through them. Each control buffer is
    // zeroed and aligned for cmsghdr, and `put_control` writes within it.
    unsafe {
        let mut names: [libc::sockaddr_in; BATCH] = std::mem::zeroed();
        let mut controls: [mmsg::Control; BATCH] = [[0; 8]; BATCH];
        let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        let mut k = 0;
        for (src, dst, data) in &msgs[..n] {
            // IPv4 only: an IPv6 destination ends the batch here (rtcd's candidates in this
            // mode are IPv4, as the prefix is).
            let SocketAddr::V4(dst) = dst else { break };
            names[k].sin_family = libc::AF_INET as libc::sa_family_t;
            names[k].sin_port = dst.port().to_be();
            names[k].sin_addr.s_addr = u32::from(*dst.ip()).to_be();
            iovs[k].iov_base = data.as_ptr() as *mut libc::c_void;
            iovs[k].iov_len = data.len();
            let h = &mut hdrs[k].msg_hdr;
            let name = (&mut names[k] as *mut libc::sockaddr_in).cast();
            mmsg::point(h, name, size_of::<libc::sockaddr_in>(), &mut iovs[k]);
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(*src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            mmsg::put_control(h, &mut controls[k], libc::IPPROTO_IP, libc::IP_PKTINFO, info);
            k += 1;
        }
        if k == 0 {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        mmsg::send(sock.as_raw_fd(), &mut hdrs[..k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_skip_network_and_broadcast_looking_hosts() {
        let p: Prefix = "10.204.3.7/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.204.0.0/16");
        assert_eq!(p.nth(0), Some(Ipv4Addr::new(10, 204, 0, 1)));
        assert_eq!(p.nth(253), Some(Ipv4Addr::new(10, 204, 0, 254)));
        assert_eq!(p.nth(254), Some(Ipv4Addr::new(10, 204, 1, 1)));
        assert_eq!(p.capacity(), 256 * 254);
        assert_eq!(
            p.nth(p.capacity() - 1),
            Some(Ipv4Addr::new(10, 204, 255, 254))
        );
        assert_eq!(p.nth(p.capacity()), None);
        let small: Prefix = "10.0.0.0/30".parse().unwrap();
        assert_eq!(small.capacity(), 2);
        assert_eq!(small.nth(1), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(small.nth(2), None);
        for bad in [
            "10.204.0.0",
            "10.204.0.0/33",
            "10.204.0.0/4",
            "x/16",
            "10.204.0.0/x",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }
}
