//! The Janus side of the benchmark against the real Janus (Debian's `janus` package): our
//! generated configuration starts it, and [`calls_loadtest::janus::Janus`] drives a VideoRoom
//! where one str0m publisher (Opus, RTP mode) is heard by two str0m subscribers over real UDP.
//!
//! Janus will not use loopback for ICE, so Janus and the clients run inside a network namespace
//! of the test's own with a veth pair (Janus on `vt0` = 10.203.0.1, clients on 10.203.0.2).

use calls_loadtest::janus::{self, Janus, Notice};
use calls_testkit::NetNs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

const JANUS: &str = "/usr/bin/janus";
const WS_PORT: u16 = 8188;
const ROOM: u64 = 4242;
const CLIENT_IP: &str = "10.203.0.2";
/// Packets each subscriber must receive (one second of 20 ms Opus frames).
const WANT_PACKETS: usize = 50;

/// The Janus process: killed by its PID when the test ends, however it ends; on a failure its
/// log is printed.
struct JanusProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- janus log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

#[test]
fn videoroom_publisher_is_heard_by_two_subscribers() {
    assert!(
        Path::new(JANUS).exists(),
        "{JANUS} is missing: install janus (scripts/test.sh does)"
    );
    let t0 = Instant::now();
    let ns = NetNs::new("janus").with_veth();
    janus::accept_local_veth(&ns.0, &["vt0", "vt1"]).expect("veth sysctls");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = janus::write_config(dir.path(), "vt0", WS_PORT, (20000, 20999), 1)
        .expect("write janus config");
    let log = dir.path().join("janus.out");
    let out = std::fs::File::create(&log).expect("janus log file");
    let err = out.try_clone().expect("janus log file");
    let child = ns
        .command(JANUS)
        .arg("-C")
        .arg(&cfg)
        .arg("-F")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn janus");
    let janus_proc = JanusProcess { child, log };
    let pid = janus_proc.child.id();

    // The clients run on a thread of their own inside the namespace, with their own runtime.
    let netns = ns.0.clone();
    let run = std::thread::spawn(move || {
        janus::enter_netns(&netns).expect("enter the test's network namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(scenario(pid))
    });
    let counts = match run.join() {
        Ok(c) => c,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    drop(janus_proc);
    drop(ns);
    eprintln!(
        "janus e2e: subscribers received {counts:?} packets; test took {:?}",
        t0.elapsed()
    );
    assert_eq!(counts.len(), 2);
    assert!(counts.iter().all(|&n| n >= WANT_PACKETS), "{counts:?}");
}

/// Everything inside the namespace: wait for Janus, create the room, publish, subscribe twice,
/// and count each subscriber's packets.
async fn scenario(janus_pid: u32) -> Vec<usize> {
    let t = Instant::now();
    wait_for_ws(janus_pid, Duration::from_secs(10)).await;
    eprintln!("janus accepting WebSocket after {:?}", t.elapsed());
    let j = Janus::connect(&format!("ws://127.0.0.1:{WS_PORT}"))
        .await
        .expect("connect");
    let mut notices = j.notices();
    j.create_room(ROOM, 16).await.expect("create room");
    j.create_room(ROOM, 16)
        .await
        .expect("creating an existing room is fine");
    let err = j.subscribe(ROOM + 1, &[1]).await.expect_err("no such room");
    assert!(err.starts_with("janus subscribe: 426 "), "{err}");
    assert_eq!(j.session_count(), 0, "failed calls leave no session behind");

    // The publisher: audio only, send only, its host candidate in the offer.
    let (mut rtc, sock) = client().await;
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("publisher offer");
    let t = Instant::now();
    let publisher = j
        .publish(ROOM, "speaker", &offer.to_sdp_string())
        .await
        .expect("publish");
    eprintln!("publish took {:?} (feed {})", t.elapsed(), publisher.feed);
    let answer = SdpAnswer::from_sdp_string(&publisher.answer_sdp).expect("janus answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accept janus answer");
    let deadline = Instant::now() + Duration::from_secs(15);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(drive(rtc, sock, Role::Send(mid, stop.clone()), deadline));
    // VideoRoom accepts subscriptions to a feed only once its PeerConnection is up.
    let t = Instant::now();
    j.wait_up(publisher.handle, Duration::from_secs(5))
        .await
        .expect("publisher webrtcup");
    eprintln!("publisher up after {:?}", t.elapsed());

    // Two subscribers: Janus offers, they answer.
    let mut receivers = Vec::new();
    let mut sessions = vec![publisher.session];
    for _ in 0..2 {
        let t = Instant::now();
        let sub = j
            .subscribe(ROOM, &[publisher.feed])
            .await
            .expect("subscribe");
        let subscribed = t.elapsed();
        assert!(
            sub.streams
                .iter()
                .any(|s| s.kind == "audio" && s.feed == Some(publisher.feed)),
            "{:?}",
            sub.streams
        );
        let (mut rtc, sock) = client().await;
        let offer = SdpOffer::from_sdp_string(&sub.offer_sdp).expect("janus offer parses");
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("answer janus offer");
        j.start(&sub, &answer.to_sdp_string()).await.expect("start");
        eprintln!(
            "subscribe took {subscribed:?}, start {:?}",
            t.elapsed() - subscribed
        );
        sessions.push(sub.session);
        receivers.push(tokio::spawn(drive(rtc, sock, Role::Receive, deadline)));
    }

    let mut counts = Vec::new();
    for r in receivers {
        counts.push(r.await.expect("subscriber task").expect("subscriber"));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await.expect("publisher task").expect("publisher");
    eprintln!("publisher sent {sent} packets");

    for s in sessions {
        j.destroy(s).await.expect("destroy session");
    }
    assert_eq!(j.session_count(), 0);
    let mut kinds = Vec::new();
    while let Ok(Notice { kind, .. }) = notices.try_recv() {
        kinds.push(kind);
    }
    assert!(
        kinds.iter().filter(|k| *k == "webrtcup").count() >= 3,
        "every PeerConnection came up: {kinds:?}"
    );
    counts
}

/// Polls the WebSocket port until Janus accepts (it takes a moment to load), failing early if
/// Janus has exited.
async fn wait_for_ws(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", WS_PORT))
            .await
            .is_ok()
        {
            return;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        assert!(
            matches!(state, Some(s) if s != "Z" && s != "X"),
            "janus exited before listening on {WS_PORT}"
        );
        assert!(
            Instant::now() < deadline,
            "janus not listening on {WS_PORT} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A str0m client in RTP mode with Opus only and one host candidate on the veth address.
async fn client() -> (Rtc, UdpSocket) {
    let sock = UdpSocket::bind((CLIENT_IP, 0))
        .await
        .expect("bind client socket");
    let local = sock.local_addr().expect("local addr");
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"))
        .expect("add candidate");
    (rtc, sock)
}

enum Role {
    /// Sends an Opus-sized packet on this mid every 20 ms once connected, until told to stop.
    Send(Mid, Arc<AtomicBool>),
    /// Counts received RTP packets until it has [`WANT_PACKETS`].
    Receive,
}

/// Runs one client over its UDP socket; returns the packets sent or received.
async fn drive(
    mut rtc: Rtc,
    sock: UdpSocket,
    role: Role,
    deadline: Instant,
) -> Result<usize, String> {
    let local: SocketAddr = sock.local_addr().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2000];
    let (mut connected, mut count, mut seq) = (false, 0usize, 0u64);
    let frame = Duration::from_millis(20);
    let mut next_send = Instant::now();
    let payload: Arc<[u8]> = vec![0x78u8; 80].into();
    // str0m schedules nothing (ICE checks included) before it is first given the time.
    rtc.handle_input(Input::Timeout(Instant::now()))
        .map_err(|e| e.to_string())?;
    loop {
        let now = Instant::now();
        match &role {
            Role::Receive if count >= WANT_PACKETS => return Ok(count),
            Role::Send(_, stop) if stop.load(Ordering::Relaxed) => return Ok(count),
            _ if now >= deadline => {
                return Err(format!(
                    "deadline passed: connected {connected}, {count} packets"
                ));
            }
            _ => {}
        }
        if let Role::Send(mid, _) = &role
            && connected
            && now >= next_send
        {
            let pt = rtc
                .media(*mid)
                .and_then(|m| m.remote_pts().first().copied())
                .ok_or("no negotiated payload type")?;
            let mut api = rtc.direct_api();
            let tx = api.stream_tx_by_mid(*mid, None).ok_or("no send stream")?;
            tx.write_rtp(RtpWrite::new(
                pt,
                seq.into(),
                (seq * 960) as u32,
                now,
                payload.clone(),
            ));
            seq += 1;
            count += 1;
            next_send += frame;
        }
        let wait = match rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Transmit(t) => {
                sock.send_to(&t.contents, t.destination)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Output::Event(Event::Connected) => {
                connected = true;
                next_send = Instant::now();
                continue;
            }
            Output::Event(Event::RtpPacket(p)) => {
                if !p.payload.is_empty() {
                    count += 1;
                }
                continue;
            }
            Output::Event(_) => continue,
            Output::Timeout(t) => {
                let mut until = t.min(deadline);
                if matches!(role, Role::Send(..)) && connected {
                    until = until.min(next_send);
                }
                until.saturating_duration_since(Instant::now())
            }
        };
        match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, source))) => {
                let Ok(contents) = buf[..n].try_into() else {
                    continue;
                };
                let rcv = Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                };
                rtc.handle_input(Input::Receive(Instant::now(), rcv))
                    .map_err(|e| e.to_string())?;
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => rtc
                .handle_input(Input::Timeout(Instant::now()))
                .map_err(|e| e.to_string())?,
        }
    }
}
