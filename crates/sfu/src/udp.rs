//! Batched UDP I/O for the shell: `recvmmsg`/`sendmmsg` on Linux (one syscall per batch rather
//! than per datagram), UDP segmentation offload for runs of equal datagrams to one destination
//! (a video frame to one viewer: one trip through the stack for the run, see [`gso_run`]), large
//! socket buffers, and receive buffers that are reused rather than allocated per datagram.
//! Other systems fall back to one datagram per call.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;
/// Room per received datagram: above any path MTU a WebRTC peer uses.
const SLOT: usize = 2048;
/// Datagrams one segmented send carries at most (`UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_SEGMENTS: usize = 64;
/// The largest datagram sent segmented: an Ethernet MTU's UDP payload. WebRTC stays under
/// about 1200 bytes; anything larger goes alone, as it would without segmentation.
const GSO_SEGMENT_MAX: usize = 1472;
/// Whether segmented sends work here; cleared for good the first time the kernel refuses a run
/// that then goes out datagram by datagram (a device without checksum offload, `SO_NO_CHECK`).
static GSO: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));
/// Socket buffers asked for: bursts of a large call (a keyframe to hundreds of viewers) must not
/// overflow the kernel's default ~200 KB. The kernel caps this at `net.core.{r,w}mem_max`.
const SOCKET_BUFFER: usize = 8 << 20;

/// Binds a non-blocking UDP socket with large buffers, registered with the current runtime.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::from_std(bind_std(addr, false)?)
}

/// Binds a non-blocking UDP socket with large buffers; with `reuse_port`, one of a
/// `SO_REUSEPORT` group among which the kernel spreads remote addresses.
pub fn bind_std(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    #[cfg(unix)]
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    // Best effort: a smaller buffer still works, it just drops sooner under bursts.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    never_fragment(&s, addr.is_ipv6())?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sets DF on every datagram and never fragments locally (`IP_PMTUDISC_PROBE`, as QUIC stacks
/// do). WebRTC keeps its packets under about 1200 bytes, so fragmenting is never wanted; and with
/// the default (`IP_PMTUDISC_WANT`) Linux lets a DF datagram be fragmented locally and so draws
/// a fresh IP ID for each one from a shared hashed table (`__ip_select_ident`), about 3% of the
/// SFU's core at 1 x 1000 in `perf`. PROBE also ignores ICMP-learned path MTUs, which an
/// attacker could otherwise lower. A datagram above the device MTU is refused with EMSGSIZE,
/// which [`send`] counts against that datagram alone.
#[cfg(target_os = "linux")]
fn never_fragment(s: &socket2::Socket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    mmsg::set_int(s.as_raw_fd(), level, name, value)
}

#[cfg(not(target_os = "linux"))]
fn never_fragment(_: &socket2::Socket, _: bool) -> io::Result<()> {
    Ok(())
}

/// Asks the kernel to stamp every datagram with the time it arrived (`SO_TIMESTAMPNS`), which
/// [`RecvBatch::received`] then gives: how long a datagram waited in the socket's queue is what
/// tells a backlog from a burst. Elsewhere than Linux datagrams have no time and this is a no-op.
#[cfg(target_os = "linux")]
pub fn stamp_arrivals(s: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    mmsg::set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

#[cfg(not(target_os = "linux"))]
pub fn stamp_arrivals(_: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Up to [`BATCH`] received datagrams in one reusable buffer.
pub struct RecvBatch {
    buf: Vec<u8>,
    lens: [usize; BATCH],
    addrs: [Option<SocketAddr>; BATCH],
    /// When each arrived, if the socket stamps arrivals ([`stamp_arrivals`]).
    received: [Option<SystemTime>; BATCH],
    /// Datagrams handed elsewhere (another shard) and skipped by [`RecvBatch::iter`].
    skip: [bool; BATCH],
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buf: vec![0; SLOT * BATCH],
            lens: [0; BATCH],
            addrs: [None; BATCH],
            received: [None; BATCH],
            skip: [false; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// The datagrams of the last receive not skipped, with their source addresses.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        (0..self.count)
            .filter(|i| !self.skip[*i])
            .filter_map(move |i| self.get(i))
    }

    /// Leaves out of [`RecvBatch::iter`] the datagrams still in it for which `keep` is false;
    /// returns how many that was.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(SocketAddr, &[u8], Option<SystemTime>) -> bool,
    ) -> usize {
        let mut dropped = 0;
        for i in 0..self.count {
            if self.skip[i] {
                continue;
            }
            if let Some((addr, data)) = self.get(i)
                && !keep(addr, data, self.received[i])
            {
                self.skip[i] = true;
                dropped += 1;
            }
        }
        dropped
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.count {
            return None;
        }
        let addr = self.addrs[i]?;
        Some((addr, &self.buf[i * SLOT..i * SLOT + self.lens[i]]))
    }

    /// When datagram `i` of the last receive reached the socket (kernel clock, `CLOCK_REALTIME`);
    /// `None` when the socket does not stamp arrivals.
    pub fn received(&self, i: usize) -> Option<SystemTime> {
        self.received.get(i).copied().flatten()
    }

    /// Leaves datagram `i` out of [`RecvBatch::iter`].
    pub fn skip(&mut self, i: usize) {
        if i < BATCH {
            self.skip[i] = true;
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// A batch as if these datagrams had been received, for tests of what handles batches.
    #[cfg(test)]
    pub(crate) fn of(datagrams: &[(SocketAddr, &[u8], Option<SystemTime>)]) -> Self {
        let mut b = Self::default();
        for (i, (addr, data, received)) in datagrams.iter().take(BATCH).enumerate() {
            b.buf[i * SLOT..i * SLOT + data.len()].copy_from_slice(data);
            b.lens[i] = data.len();
            b.addrs[i] = Some(*addr);
            b.received[i] = *received;
            b.count = i + 1;
        }
        b
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Waits until the socket is readable, then fills `batch` with what is queued (at least one).
pub async fn recv(sock: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || recv_now(sock, batch)) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What [`send`] did with a queue of datagrams.
#[derive(Debug, Default)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams refused one by one (no route, too large, wrong address family...): each is
    /// dropped alone, and the rest of the queue still goes out.
    pub refused: usize,
    /// The last refusal's error, for the log.
    pub error: Option<io::Error>,
    /// Messages the kernel took: one per run of datagrams sent segmented ([`gso_run`]).
    pub messages: usize,
}

/// How many datagrams from the front of `msgs` go out as one segmented send (`UDP_SEGMENT`):
/// a run to one destination in which every datagram has the first one's length, but for the
/// last, which may be shorter (the kernel cuts the run into pieces of the first one's length).
/// A video frame to one viewer is such a run: its packets are split equally. 1 when the front
/// datagram goes alone, 0 for no datagrams.
pub fn gso_run<B: AsRef<[u8]>>(msgs: &[(SocketAddr, B)]) -> usize {
    let Some((to, first)) = msgs.first() else {
        return 0;
    };
    let size = first.as_ref().len();
    if !(1..=GSO_SEGMENT_MAX).contains(&size) {
        return 1;
    }
    let mut n = 1;
    for (dest, data) in &msgs[1..] {
        let len = data.as_ref().len();
        if n == GSO_SEGMENTS || dest != to || len == 0 || len > size {
            break;
        }
        n += 1;
        if len < size {
            break; // only the last piece may be short
        }
    }
    n
}

/// Sends as many of `msgs` as the socket takes now. A full socket buffer stops the queue (the
/// rest is dropped by the caller, as UDP would). Any other error belongs to one datagram:
/// `sendmmsg` stops at the first message it cannot send, so that message is skipped and the
/// next call resumes after it. (Before, such an error ended the whole queue: one receiver with
/// no route dropped every other receiver's copy behind it.) Generic over the payload, so that
/// owned queues go out as they are, with no slice list built per call.
pub fn send<B: AsRef<[u8]>>(sock: &UdpSocket, msgs: &[(SocketAddr, B)]) -> Sent {
    send_with(sock, msgs, GSO.load(Ordering::Relaxed))
}

/// [`send`], with runs sent segmented or not.
fn send_with<B: AsRef<[u8]>>(sock: &UdpSocket, msgs: &[(SocketAddr, B)], gso: bool) -> Sent {
    let mut out = Sent::default();
    let mut next = 0;
    while next < msgs.len() {
        let end = (next + BATCH).min(msgs.len());
        // Straight to the non-blocking socket: tokio's write readiness is not needed, since a
        // full buffer means dropping, never waiting.
        match send_now(sock, &msgs[next..end], gso) {
            Ok((0, _)) => break,
            Ok((n, messages)) => {
                out.sent += n;
                out.messages += messages;
                next += n;
            }
            Err(e) if buffer_full(&e) => break,
            Err(e) => {
                // The kernel refused the first message: one datagram, or a segmented run.
                let run = if gso { gso_run(&msgs[next..end]) } else { 1 };
                if run > 1 && segmenting_refused(&e) {
                    let r = send_with(sock, &msgs[next..next + run], false);
                    if r.sent > 0 {
                        // The datagrams go where the run did not: segmenting is what failed.
                        GSO.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, "UDP segmentation offload refused: sending datagram by datagram from now on");
                    }
                    out.sent += r.sent;
                    out.messages += r.messages;
                    out.refused += r.refused;
                    out.error = r.error.or(out.error);
                    if r.sent + r.refused < run {
                        break; // the buffer filled
                    }
                } else {
                    out.refused += run;
                    out.error = Some(e);
                }
                next += run;
            }
        }
    }
    out
}

/// What the kernel answers a segmented send it cannot make: EIO where the device has no
/// checksum offload, EINVAL where the socket sends without checksums or the route's MTU is
/// below the segment size.
fn segmenting_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

/// The socket (or the device queue behind it) has no room now: nothing later would fare better.
fn buffer_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

#[cfg(target_os = "linux")]
fn recv_now(sock: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: every pointer handed to recvmmsg points into `batch.buf`, `storage`, `iovs` or
    // `hdrs`, all of which outlive the call; lengths match the buffers they describe.
    unsafe {
        let mut storage: [libc::sockaddr_storage; BATCH] = std::mem::zeroed();
        let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        // Room for the arrival time's control message.
        let mut control: [mmsg::Control; BATCH] = [[0; 8]; BATCH];
        let base = batch.buf.as_mut_ptr();
        for i in 0..BATCH {
            iovs[i].iov_base = base.add(i * SLOT).cast();
            iovs[i].iov_len = SLOT;
            mmsg::point(
                &mut hdrs[i].msg_hdr,
                (&mut storage[i] as *mut libc::sockaddr_storage).cast(),
                size_of::<libc::sockaddr_storage>(),
                &mut iovs[i],
            );
            hdrs[i].msg_hdr.msg_control = control[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = size_of::<mmsg::Control>() as _;
        }
        batch.count = 0;
        let n = mmsg::recv(sock.as_raw_fd(), &mut hdrs)?;
        for i in 0..n {
            // A datagram larger than a slot is truncated (MSG_TRUNC); no WebRTC packet is.
            batch.lens[i] = (hdrs[i].msg_len as usize).min(SLOT);
            batch.addrs[i] = from_storage(&storage[i]);
            batch.received[i] = arrival(&hdrs[i].msg_hdr);
            batch.skip[i] = false;
        }
        batch.count = n;
        Ok(n)
    }
}

/// The arrival time in the control messages recvmmsg wrote for one datagram, if any.
#[cfg(target_os = "linux")]
fn arrival(h: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `h` is a header recvmmsg just filled, its control buffer ours and still alive.
    let ts: libc::timespec = unsafe { mmsg::control(h, libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) }?;
    let since = std::time::Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    );
    SystemTime::UNIX_EPOCH.checked_add(since)
}

/// The source address recvmmsg wrote (IPv4 or IPv6; anything else is not ours).
#[cfg(target_os = "linux")]
fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // enough for and aligned for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One `sendmmsg` of the front of `msgs` (at most [`BATCH`] datagrams); with `gso`, each run
/// [`gso_run`] finds is one message. Returns the datagrams and the messages the kernel took; an
/// error is the first message's.
#[cfg(target_os = "linux")]
fn send_now<B: AsRef<[u8]>>(
    sock: &UdpSocket,
    msgs: &[(SocketAddr, B)],
    gso: bool,
) -> io::Result<(usize, usize)> {
    use std::os::fd::AsRawFd;
    let msgs = &msgs[..msgs.len().min(BATCH)];
    // On the stack, not in a Vec: no allocation per sendmmsg. Slots past the last are unused.
    let unused = SocketAddr::from(([0, 0, 0, 0], 0));
    let addrs: [socket2::SockAddr; BATCH] =
        std::array::from_fn(|i| msgs.get(i).map_or(unused, |(a, _)| *a).into());
    // Datagrams per message.
    let mut runs = [0usize; BATCH];
    // SAFETY: the headers point into `addrs`, `iovs`, `control` and the caller's slices, which
    // all outlive the call; sendmmsg only reads through them. A run's iovecs are consecutive
    // entries of `iovs`, and a control message is written only within its own `control` slot.
    unsafe {
        let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        let mut control: [mmsg::Control; BATCH] = std::mem::zeroed();
        for (i, (_, data)) in msgs.iter().enumerate() {
            let data = data.as_ref();
            iovs[i].iov_base = data.as_ptr() as *mut libc::c_void;
            iovs[i].iov_len = data.len();
        }
        let (mut first, mut m) = (0, 0);
        while first < msgs.len() {
            let run = if gso { gso_run(&msgs[first..]) } else { 1 };
            let addr = &addrs[first];
            let h = &mut hdrs[m].msg_hdr;
            mmsg::point(
                h,
                addr.as_ptr() as *mut libc::c_void,
                addr.len() as usize,
                &mut iovs[first],
            );
            h.msg_iovlen = run as _;
            if run > 1 {
                let size = msgs[first].1.as_ref().len() as u16;
                mmsg::put_control(h, &mut control[m], libc::SOL_UDP, libc::UDP_SEGMENT, size);
            }
            runs[m] = run;
            first += run;
            m += 1;
        }
        let sent = mmsg::send(sock.as_raw_fd(), &mut hdrs[..m])?;
        Ok((runs[..sent].iter().sum(), sent))
    }
}

/// Raw `recvmmsg`/`sendmmsg` over headers the caller prepares, without waiting, and the integer
/// socket options socket2 has no setter for; shared with the load tool's shared socket
/// (`calls_loadtest::net`), which adds `IP_PKTINFO` control messages.
#[cfg(target_os = "linux")]
pub mod mmsg {
    use std::io;
    use std::os::fd::RawFd;

    /// `setsockopt` of one `int` option.
    pub fn set_int(
        fd: RawFd,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: passes a pointer to a live c_int and its size; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Room for one small control message per datagram (an `SCM_TIMESTAMPNS` or an
    /// `IP_PKTINFO` with its 16-byte header), aligned for `cmsghdr`.
    pub type Control = [u64; 8];

    /// The first control message of `level` and `kind` among those the kernel wrote for one
    /// received datagram, read as a `T`; `None` if there is none, or it is too short for a `T`.
    ///
    /// # Safety
    /// `h` must be a header `recvmsg`/`recvmmsg` has just filled: its `msg_control` valid for
    /// reads of the `msg_controllen` the kernel wrote back.
    pub unsafe fn control<T: Copy>(
        h: &libc::msghdr,
        level: libc::c_int,
        kind: libc::c_int,
    ) -> Option<T> {
        // SAFETY: CMSG_FIRSTHDR/NXTHDR stay within `msg_controllen`, as the caller vouches the
        // kernel wrote it; a T is read (unaligned) only from a message long enough to hold one.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == level
                    && (*c).cmsg_type == kind
                    && (*c).cmsg_len as usize >= libc::CMSG_LEN(size_of::<T>() as u32) as usize
                {
                    return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<T>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Points `h` at one datagram: its address buffer and its one data buffer.
    pub fn point(
        h: &mut libc::msghdr,
        name: *mut libc::c_void,
        namelen: usize,
        iov: &mut libc::iovec,
    ) {
        h.msg_name = name;
        h.msg_namelen = namelen as libc::socklen_t;
        h.msg_iov = iov;
        h.msg_iovlen = 1;
    }

    /// Gives `h` one control message of `level` and `kind` carrying `value`, written into
    /// `buf`.
    pub fn put_control<T: Copy>(
        h: &mut libc::msghdr,
        buf: &mut Control,
        level: libc::c_int,
        kind: libc::c_int,
        value: T,
    ) {
        // SAFETY: CMSG_SPACE of a T fits `buf` (asserted), which outlives the header's use;
        // CMSG_FIRSTHDR of a header whose control length covers a cmsghdr points at `buf`'s
        // start, and the value is written unaligned within CMSG_LEN of it.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<T>() as u32) as usize;
            assert!(space <= size_of::<Control>());
            h.msg_control = buf.as_mut_ptr().cast();
            h.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<T>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<T>(), value);
        }
    }

    /// `recvmmsg(MSG_DONTWAIT)` into `hdrs`; returns how many were filled.
    ///
    /// # Safety
    /// Every pointer in `hdrs` (names, iovecs and their buffers, control buffers) must be valid
    /// for writes of the lengths given, for the duration of the call.
    pub unsafe fn recv(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        // SAFETY: the caller vouches for the pointers inside; the slice bounds the count.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// `sendmmsg(MSG_DONTWAIT)` of `hdrs`; returns how many the kernel took.
    ///
    /// # Safety
    /// Every pointer in `hdrs` must be valid for reads of the lengths given, for the duration of
    /// the call.
    pub unsafe fn send(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        // SAFETY: as for `recv`, for reads.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn recv_now(sock: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    let (n, addr) = sock.try_recv_from(&mut batch.buf[..SLOT])?;
    batch.lens[0] = n;
    batch.addrs[0] = Some(addr);
    batch.received[0] = None;
    batch.skip[0] = false;
    batch.count = 1;
    Ok(1)
}

#[cfg(not(target_os = "linux"))]
fn send_now<B: AsRef<[u8]>>(
    sock: &UdpSocket,
    msgs: &[(SocketAddr, B)],
    _gso: bool,
) -> io::Result<(usize, usize)> {
    let (addr, data) = &msgs[0];
    sock.try_send_to(data.as_ref(), *addr).map(|_| (1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_round_trip_over_loopback() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 10 + i as usize * 13]).collect();
        let msgs: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(
            send(&a, &msgs).sent,
            70,
            "three sendmmsg calls carry all 70"
        );
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut batch = RecvBatch::default();
        while got.len() < 70 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), recv(&b, &mut batch))
                .await
                .expect("datagrams arrive")
                .unwrap();
            assert!((1..=BATCH).contains(&n));
            for (from, data) in batch.iter() {
                assert_eq!(from, a.local_addr().unwrap());
                got.push(data.to_vec());
            }
        }
        assert_eq!(got, payloads);
    }

    #[test]
    fn a_run_is_equal_datagrams_to_one_destination_and_a_shorter_last() {
        let (a, b): (SocketAddr, SocketAddr) =
            ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        let run = |spec: &[(SocketAddr, usize)]| {
            let msgs: Vec<(SocketAddr, Vec<u8>)> =
                spec.iter().map(|&(to, len)| (to, vec![0; len])).collect();
            gso_run(&msgs)
        };
        assert_eq!(run(&[]), 0);
        assert_eq!(run(&[(a, 1100)]), 1);
        assert_eq!(run(&[(a, 1100), (a, 1100), (a, 1100), (b, 1100)]), 3, "to one destination");
        assert_eq!(run(&[(a, 1100), (a, 1100), (a, 700), (a, 700)]), 3, "a short one ends it");
        assert_eq!(run(&[(a, 700), (a, 1100)]), 1, "a longer one cannot follow");
        assert_eq!(run(&[(a, 1100), (a, 0)]), 1, "no empty piece");
        assert_eq!(run(&[(a, 1500), (a, 1500)]), 1, "above an Ethernet payload: alone");
        assert_eq!(run(&vec![(a, 200); 100]), GSO_SEGMENTS, "the kernel's limit");
    }

    /// Runs to one receiver go out as one segmented message each and arrive as the datagrams
    /// they were. Where the kernel refuses to segment (here a socket sending without UDP
    /// checksums), the run goes datagram by datagram, and later runs too.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn runs_go_segmented_and_arrive_as_datagrams_or_go_one_by_one_where_refused() {
        use std::os::fd::AsRawFd;
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let c = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        // A frame of 10 packets to b, another receiver's 5, then 3 more to b.
        let mut msgs: Vec<(SocketAddr, Vec<u8>)> = (0..9u8).map(|i| (to_b, vec![i; 1100])).collect();
        msgs.push((to_b, vec![9; 500]));
        msgs.extend((0..5u8).map(|i| (to_c, vec![100 + i; 300])));
        msgs.extend((0..3u8).map(|i| (to_b, vec![200 + i; 1100])));
        let want = |to: SocketAddr| -> Vec<Vec<u8>> {
            msgs.iter().filter(|(d, _)| *d == to).map(|(_, p)| p.clone()).collect()
        };
        async fn drain(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
            let (mut got, mut batch) = (Vec::new(), RecvBatch::default());
            while got.len() < n {
                tokio::time::timeout(std::time::Duration::from_secs(5), recv(sock, &mut batch))
                    .await
                    .expect("datagrams arrive")
                    .unwrap();
                got.extend(batch.iter().map(|(_, d)| d.to_vec()));
            }
            got
        }
        for checksums in [true, false] {
            let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            if !checksums {
                mmsg::set_int(a.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
            }
            let r = send(&a, &msgs);
            assert_eq!((r.sent, r.refused), (18, 0), "{r:?}");
            if checksums {
                assert_eq!(r.messages, 3, "one message per run: {r:?}");
            } else {
                assert_eq!(r.messages, 18, "from the refused run on, one per datagram: {r:?}");
                assert!(!GSO.load(Ordering::Relaxed), "segmenting is off from now on");
            }
            assert_eq!(drain(&b, 13).await, want(to_b));
            assert_eq!(drain(&c, 5).await, want(to_c));
        }
    }

    /// A socket that stamps arrivals gives each datagram the time the kernel queued it: after
    /// it was sent, before it was read. One that does not gives none.
    #[tokio::test]
    async fn arrivals_are_stamped_by_the_kernel() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stamped = bind_std("127.0.0.1:0".parse().unwrap(), false).unwrap();
        stamp_arrivals(&stamped).unwrap();
        let stamped = UdpSocket::from_std(stamped).unwrap();
        let plain = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let before = SystemTime::now();
        let msgs: Vec<(SocketAddr, &[u8])> = (0..3)
            .flat_map(|_| {
                [
                    (stamped.local_addr().unwrap(), &b"x"[..]),
                    (plain.local_addr().unwrap(), &b"y"[..]),
                ]
            })
            .collect();
        assert_eq!(send(&a, &msgs).sent, 6);
        for (sock, want_time) in [(&stamped, true), (&plain, false)] {
            let mut batch = RecvBatch::default();
            let mut seen = 0;
            while seen < 3 {
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), recv(sock, &mut batch))
                        .await
                        .expect("datagrams arrive")
                        .unwrap();
                let after = SystemTime::now();
                for i in 0..n {
                    match batch.received(i) {
                        Some(t) if cfg!(target_os = "linux") => {
                            assert!(want_time, "a socket that was not asked stamps nothing");
                            assert!(
                                before <= t && t <= after,
                                "{before:?} <= {t:?} <= {after:?}"
                            );
                        }
                        t => assert!(!want_time || !cfg!(target_os = "linux"), "no time: {t:?}"),
                    }
                }
                seen += n;
            }
        }
    }

    /// A datagram the kernel refuses costs only itself: the ones after it in the same
    /// `sendmmsg` batch, and in the next, still go out.
    #[tokio::test]
    async fn a_refused_datagram_does_not_drop_the_rest() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap(); // EAFNOSUPPORT on an IPv4 socket
        let huge = vec![7u8; 70_000]; // above any UDP datagram: EMSGSIZE
        let small: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 20]).collect();
        let mut msgs: Vec<(SocketAddr, &[u8])> = vec![(to, &huge), (v6, &small[0])];
        msgs.extend(small[1..].iter().map(|p| (to, p.as_slice())));
        msgs.insert(35, (to, &huge)); // in the second sendmmsg batch
        let r = send(&a, &msgs);
        assert_eq!((r.sent, r.refused), (39, 3), "{r:?}");
        let mut got = Vec::new();
        let mut batch = RecvBatch::default();
        while got.len() < 39 {
            tokio::time::timeout(std::time::Duration::from_secs(5), recv(&b, &mut batch))
                .await
                .expect("the datagrams after the refused ones arrive")
                .unwrap();
            got.extend(batch.iter().map(|(_, d)| d.to_vec()));
        }
        assert_eq!(got, small[1..].to_vec());
    }

    /// Media sockets set DF and never fragment (no IP ID drawn per datagram).
    #[cfg(target_os = "linux")]
    #[test]
    fn media_sockets_never_fragment() {
        use std::os::fd::AsRawFd;
        for (addr, level, name, want) in [
            (
                "127.0.0.1:0",
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            ),
            (
                "[::1]:0",
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            ),
        ] {
            let Ok(s) = bind_std(addr.parse().unwrap(), false) else {
                assert!(addr.starts_with('['), "IPv4 loopback must bind");
                continue; // no IPv6 on this machine
            };
            let mut v: libc::c_int = -1;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: v and len outlive the call and describe a c_int.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    level,
                    name,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0, "{addr}");
            assert_eq!(v, want, "{addr}");
        }
    }
}
