//! A deterministic forwarding benchmark of the sans-IO core: C calls, each with N receivers and
//! S speakers that each send one ~80-byte Opus packet every 20 ms of virtual time.
//!
//! ```text
//! cargo run --release -p calls-sfu --example forward -- --receivers 1000 --speakers 2 --seconds 5
//! cargo run --release -p calls-sfu --example forward -- --calls 100 --receivers 0 --speakers 2
//! cargo run --release -p calls-sfu --example forward -- --receivers 200 --speakers 1 --screen true
//! ```
//!
//! The first shape is one large call (fan-out: one packet in, a thousand out); the second is many
//! small ones (every packet in is forwarded once), where receiving costs as much as sending. With
//! `--screen true` the first speaker of every call also shares a screen: 15 VP8 frames a second
//! of 12 packets of 1100 bytes (1.6 Mbps, the size of the `screen_h` sample), which go through
//! str0m (unpaced) to every viewer.
//!
//! Setup joins every client over an in-memory network in virtual time (as `tests/loopback.rs`
//! does): DC-only offer over the plugin path, ICE-lite + DTLS + SCTP, then each speaker adds a
//! sendonly Opus track and every other session gets it in a server offer over the data channel.
//! The measurement phase then runs the SFU alone inside [`measure`]: the speakers' packets are
//! encrypted outside it, and forwarded RTP is only counted (no client decrypts it), so that
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*forward::measure*' \
//!     target/release/examples/forward --receivers 200
//! ```
//!
//! counts the SFU's own instructions only. STUN, DTLS and RTCP still reach the clients, so that
//! their sessions stay alive. Prints one JSON line.

use calls_proto::dc::DcMessage;
use calls_proto::json::SessionConfig;
use calls_proto::{RtcMessage, RtcMessageType};
use calls_sfu::core::{unzlib, zlib};
use calls_sfu::fast::is_rtp;
use calls_sfu::{Sfu, SfuConfig, SfuOutput};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU_ADDR: &str = "10.0.0.1:8443";
/// One Opus frame per 20 ms per speaker.
const FRAME: Duration = Duration::from_millis(20);
/// Like tokio's timer wheel, the clock advances in steps of at least 1 ms.
const TICK: Duration = Duration::from_millis(1);
/// One-way delay from the SFU to the clients. A zero round-trip time is unrealistic and makes
/// str0m's bandwidth estimator ask for a timeout "now" forever.
const LATENCY: Duration = Duration::from_millis(10);
/// A screen share: 15 frames a second of 12 packets of 1100 bytes (1.6 Mbps), a keyframe a
/// second.
const SCREEN_FRAME: Duration = Duration::from_nanos(1_000_000_000 / 15);
const SCREEN_PACKETS: u64 = 12;
const SCREEN_PAYLOAD: usize = 1100;

struct Args {
    calls: usize,
    receivers: usize,
    speakers: usize,
    seconds: u64,
    bwe: bool,
    fast: bool,
    screen: bool,
}

fn args() -> Args {
    let mut a = Args {
        calls: 1,
        receivers: 1000,
        speakers: 2,
        seconds: 5,
        bwe: true,
        fast: true,
        screen: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--calls" => a.calls = value().parse().expect("--calls N"),
            "--receivers" => a.receivers = value().parse().expect("--receivers N"),
            "--speakers" => a.speakers = value().parse().expect("--speakers N"),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--bwe" => a.bwe = value().parse().expect("--bwe true|false"),
            "--fast" => a.fast = value().parse().expect("--fast true|false"),
            "--screen" => a.screen = value().parse().expect("--screen true|false"),
            _ => panic!(
                "usage: forward [--calls N] [--receivers N] [--speakers N] [--seconds N] [--bwe true|false] \
                 [--fast true|false] [--screen true|false]"
            ),
        }
    }
    a
}

fn session_config(sid: &str, call: usize) -> SessionConfig {
    SessionConfig {
        group_id: "g".into(),
        call_id: format!("call-{call}"),
        user_id: format!("u-{sid}"),
        session_id: sid.into(),
        props: Some(BTreeMap::from([
            ("channelID".into(), serde_json::json!(format!("ch-{call}"))),
            ("av1Support".into(), serde_json::json!(false)),
            ("dcSignaling".into(), serde_json::json!(true)),
        ])),
    }
}

struct Client {
    sid: String,
    rtc: Rtc,
    dc: Option<ChannelId>,
    pending: Option<SdpPendingOffer>,
    next: Instant,
    /// Tracks the server added to this client.
    media_added: usize,
    /// A speaker's microphone, its payload type and its next sequence number.
    mic: Option<(Mid, str0m::media::Pt, u64)>,
    /// A sharer's screen track, its payload type and its next sequence number.
    screen: Option<(Mid, str0m::media::Pt, u64)>,
}

struct Datagram {
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

/// What the SFU emitted in the measurement phase.
#[derive(Default)]
struct Counts {
    packets_in: u64,
    packets_out: u64,
    forwarded_rtp: u64,
}

struct Net {
    now: Instant,
    sfu: Sfu,
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    by_sid: HashMap<String, usize>,
    /// Clients that may have output to poll.
    dirty: Vec<usize>,
    /// SFU output just polled, and what is on its way to clients and "the plugin".
    deliver: Vec<SfuOutput>,
    in_flight: VecDeque<(Instant, SfuOutput)>,
}

impl Net {
    fn new(bwe: bool, fast: bool) -> Self {
        let sfu = Sfu::new(SfuConfig {
            udp_candidates: vec![SFU_ADDR.parse().unwrap()],
            bandwidth_estimation: bwe,
            voice_fast_path: fast,
            ..Default::default()
        });
        Net {
            now: Instant::now(),
            sfu,
            clients: vec![],
            by_addr: HashMap::new(),
            by_sid: HashMap::new(),
            dirty: vec![],
            deliver: vec![],
            in_flight: VecDeque::new(),
        }
    }

    fn join(&mut self, sid: &str, call: usize, addr: SocketAddr, rtp_mode: bool) {
        self.sfu
            .init_session(session_config(sid, call), self.now)
            .unwrap();
        let mut rtc = Rtc::builder().set_rtp_mode(rtp_mode).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap())
            .unwrap();
        let mut api = rtc.sdp_api();
        api.add_channel("calls-dc".into());
        let (offer, pending) = api.apply().unwrap();
        let data =
            serde_json::to_vec(&serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()}))
                .unwrap();
        let i = self.clients.len();
        self.clients.push(Client {
            sid: sid.into(),
            rtc,
            dc: None,
            pending: Some(pending),
            next: self.now,
            media_added: 0,
            mic: None,
            screen: None,
        });
        self.by_addr.insert(addr, i);
        self.by_sid.insert(sid.into(), i);
        let msg = RtcMessage {
            session_id: sid.into(),
            ..RtcMessage::new(RtcMessageType::Sdp, data)
        };
        self.sfu.handle_rtc(msg, self.now).unwrap();
        self.deliver
            .extend(std::iter::from_fn(|| self.sfu.poll_output()));
        self.dirty.push(i);
    }

    /// Sends what the SFU just emitted on its way, and hands what arrived to the clients. In
    /// the measurement phase no media is on its way.
    fn deliver(&mut self) {
        let arrival = self.now + LATENCY;
        self.in_flight
            .extend(self.deliver.drain(..).map(|o| (arrival, o)));
        while self.in_flight.front().is_some_and(|(t, _)| *t <= self.now) {
            let (_, o) = self.in_flight.pop_front().unwrap();
            match o {
                SfuOutput::Transmit {
                    proto,
                    source,
                    destination,
                    contents,
                } => {
                    let Some(&i) = self.by_addr.get(&destination) else {
                        continue;
                    };
                    let r = Receive {
                        proto,
                        source,
                        destination,
                        contents: contents.as_slice().try_into().unwrap(),
                    };
                    let c = &mut self.clients[i];
                    // A client that is no longer served (a dead session) may refuse input.
                    let _ = c.rtc.handle_input(Input::Receive(self.now, r));
                    self.dirty.push(i);
                }
                SfuOutput::Signal(m) => {
                    let i = self.by_sid[&m.session_id];
                    let c = &mut self.clients[i];
                    let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                    if m.msg_type == RtcMessageType::Sdp as i64 {
                        let ans = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                        c.rtc
                            .sdp_api()
                            .accept_answer(c.pending.take().unwrap(), ans)
                            .unwrap();
                    } else {
                        let cand = v["candidate"]["candidate"].as_str().unwrap();
                        c.rtc
                            .add_remote_candidate(Candidate::from_sdp_string(cand).unwrap());
                    }
                    self.dirty.push(i);
                }
                SfuOutput::SessionEnded { session_id, reason } => {
                    panic!("session {session_id} ended: {reason}")
                }
                SfuOutput::Vad { .. } => {}
            }
        }
    }

    /// Polls every dirty client, answering server offers over the data channel.
    fn poll_clients(&mut self, to_sfu: &mut Vec<Datagram>) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for i in std::mem::take(&mut self.dirty) {
            let c = &mut self.clients[i];
            loop {
                match c.rtc.poll_output().unwrap() {
                    Output::Transmit(t) => to_sfu.push(Datagram {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    }),
                    Output::Timeout(t) => {
                        c.next = t;
                        break;
                    }
                    Output::Event(Event::ChannelOpen(id, _)) => c.dc = Some(id),
                    Output::Event(Event::MediaAdded(_)) => c.media_added += 1,
                    Output::Event(Event::ChannelData(d)) => {
                        let Ok(DcMessage::Sdp(z)) = DcMessage::decode(&d.data) else {
                            continue;
                        };
                        let v: serde_json::Value =
                            serde_json::from_slice(&unzlib(&z).unwrap()).unwrap();
                        let sdp = v["sdp"].as_str().unwrap();
                        if v["type"] == "offer" {
                            let offer = SdpOffer::from_sdp_string(sdp).unwrap();
                            let ans = c.rtc.sdp_api().accept_offer(offer).unwrap();
                            let j = serde_json::to_vec(
                                &serde_json::json!({"type":"answer","sdp":ans.to_sdp_string()}),
                            )
                            .unwrap();
                            let mut ch = c.rtc.channel(c.dc.unwrap()).unwrap();
                            ch.write(true, &DcMessage::Sdp(zlib(&j)).encode()).unwrap();
                        } else {
                            let ans = SdpAnswer::from_sdp_string(sdp).unwrap();
                            let pending = c.pending.take().expect("answer without offer");
                            c.rtc.sdp_api().accept_answer(pending, ans).unwrap();
                        }
                    }
                    Output::Event(_) => {}
                }
            }
        }
    }

    /// Fires the clients' due timers.
    fn client_timeouts(&mut self) {
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.next <= self.now {
                c.rtc.handle_input(Input::Timeout(self.now)).unwrap();
                self.dirty.push(i);
            }
        }
    }

    /// The next time anything is due, at least one tick ahead, at most `end`.
    fn advance(&mut self, end: Instant, extra: Option<Instant>) {
        let mut next = end;
        if let Some(t) = self.sfu.poll_timeout() {
            next = next.min(t);
        }
        if let Some(t) = extra {
            next = next.min(t);
        }
        if let Some((t, _)) = self.in_flight.front() {
            next = next.min(*t);
        }
        for c in &self.clients {
            next = next.min(c.next);
        }
        self.now = next.max(self.now + TICK).min(end);
    }

    /// Setup: moves everything until the network settles.
    fn pump(&mut self) {
        let mut to_sfu = Vec::new();
        for _ in 0..100_000 {
            self.deliver();
            self.poll_clients(&mut to_sfu);
            if to_sfu.is_empty() {
                return;
            }
            for d in to_sfu.drain(..) {
                self.sfu
                    .handle_datagram(self.now, d.proto, d.source, d.destination, &d.contents);
            }
            self.deliver
                .extend(std::iter::from_fn(|| self.sfu.poll_output()));
        }
        panic!("network did not settle");
    }

    /// Setup: runs the whole network in virtual time.
    fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        while self.now < end {
            self.pump();
            self.advance(end, None);
            if self.sfu.poll_timeout().is_some_and(|t| t <= self.now) {
                self.sfu.handle_timeout(self.now);
                self.deliver
                    .extend(std::iter::from_fn(|| self.sfu.poll_output()));
            }
            self.client_timeouts();
        }
        self.pump();
    }

    /// A speaker unmutes: a sendonly Opus track in an offer over the data channel.
    fn publish_voice(&mut self, i: usize) {
        let mid = self.publish(i, MediaKind::Audio, self.clients[i].sid.clone(), "mic");
        self.clients[i].mic = Some((mid, 0.into(), 1));
    }

    /// A sharer announces its screen (`screen_on`, as the plugin relays it) and offers the track.
    fn publish_screen(&mut self, i: usize) {
        let stream = format!("scr-{}", self.clients[i].sid);
        let data = serde_json::to_vec(&serde_json::json!({ "screenStreamID": stream })).unwrap();
        let msg = RtcMessage {
            session_id: self.clients[i].sid.clone(),
            ..RtcMessage::new(RtcMessageType::ScreenOn, data)
        };
        self.sfu.handle_rtc(msg, self.now).unwrap();
        let mid = self.publish(i, MediaKind::Video, stream, "screen");
        self.clients[i].screen = Some((mid, 0.into(), 1));
    }

    /// A sendonly track in an offer over the data channel.
    fn publish(&mut self, i: usize, kind: MediaKind, stream: String, track: &str) -> Mid {
        let c = &mut self.clients[i];
        let mut api = c.rtc.sdp_api();
        let mid = api.add_media(
            kind,
            Direction::SendOnly,
            Some(stream),
            Some(track.into()),
            None,
        );
        let (offer, pending) = api.apply().unwrap();
        assert!(c.pending.is_none(), "{}: offer already pending", c.sid);
        c.pending = Some(pending);
        let j =
            serde_json::to_vec(&serde_json::json!({"type":"offer","sdp":offer.to_sdp_string()}))
                .unwrap();
        let mut ch = c.rtc.channel(c.dc.expect("dc open")).unwrap();
        ch.write(true, &DcMessage::Sdp(zlib(&j)).encode()).unwrap();
        self.dirty.push(i);
        mid
    }
}

/// Setup: everyone joins and connects, then the k-th speaker of every call publishes, in turn
/// for each k. Client `i` is in call `i / (receivers + speakers)`; the first `speakers` of each
/// call speak.
fn setup(a: &Args) -> Net {
    let mut net = Net::new(a.bwe, a.fast);
    let per_call = a.receivers + a.speakers;
    let total = a.calls * per_call;
    let is_speaker = |i: usize| i % per_call < a.speakers;
    for i in 0..total {
        let addr = SocketAddr::from((
            [
                10,
                1 + (i / 62500) as u8,
                (i / 250 % 250) as u8,
                (i % 250) as u8 + 1,
            ],
            5000,
        ));
        let sid = if is_speaker(i) {
            format!("S{i}")
        } else {
            format!("R{i}")
        };
        net.join(&sid, i / per_call, addr, is_speaker(i));
        if i % 50 == 49 {
            net.pump();
        }
    }
    net.run(Duration::from_secs(3));
    let open = net.clients.iter().filter(|c| c.dc.is_some()).count();
    assert_eq!(open, total, "every data channel opens");
    for s in 0..a.speakers {
        for call in 0..a.calls {
            net.publish_voice(call * per_call + s);
        }
        net.run(Duration::from_secs(2));
        for call in 0..a.calls {
            let c = &mut net.clients[call * per_call + s];
            let (mid, _, seq) = c.mic.unwrap();
            let pt = c.rtc.media(mid).expect("mic negotiated").remote_pts()[0];
            c.mic = Some((mid, pt, seq));
        }
    }
    if a.screen {
        for call in 0..a.calls {
            net.publish_screen(call * per_call);
        }
        net.run(Duration::from_secs(2));
        for call in 0..a.calls {
            let c = &mut net.clients[call * per_call];
            let (mid, _, seq) = c.screen.unwrap();
            let pt = c.rtc.media(mid).expect("screen negotiated").remote_pts()[0];
            c.screen = Some((mid, pt, seq));
        }
    }
    for (i, c) in net.clients.iter().enumerate() {
        let viewer = a.screen && i % per_call != 0;
        let expected = a.speakers - usize::from(is_speaker(i)) + usize::from(viewer);
        assert_eq!(
            c.media_added, expected,
            "{}: every voice (and screen) track added",
            c.sid
        );
    }
    speak(&mut net, Duration::from_secs(2), None);
    net
}

/// The SFU's side of one round of the measurement phase, and nothing else: callgrind counts the
/// instructions of this function (and its callees) only.
#[inline(never)]
fn measure(
    sfu: &mut Sfu,
    now: Instant,
    input: &[Datagram],
    counts: &mut Counts,
    deliver: &mut Vec<SfuOutput>,
) {
    sfu_round(sfu, now, input, Some(counts), deliver);
}

/// One round of the SFU: due timers, the clients' datagrams, then its output. With `counts`,
/// RTP is counted and dropped (as the shell frees it after `sendmmsg`) instead of delivered.
#[inline(always)]
fn sfu_round(
    sfu: &mut Sfu,
    now: Instant,
    input: &[Datagram],
    mut counts: Option<&mut Counts>,
    deliver: &mut Vec<SfuOutput>,
) {
    if sfu.poll_timeout().is_some_and(|t| t <= now) {
        sfu.handle_timeout(now);
    }
    for d in input {
        sfu.handle_datagram(now, d.proto, d.source, d.destination, &d.contents);
    }
    while let Some(o) = sfu.poll_output() {
        if let (Some(c), SfuOutput::Transmit { contents, .. }) = (counts.as_deref_mut(), &o) {
            c.packets_out += 1;
            if is_rtp(contents) {
                c.forwarded_rtp += 1;
                // "Sent": the buffer goes back to the core, as the daemon's shell does.
                if let SfuOutput::Transmit { contents, .. } = o {
                    sfu.recycle(contents);
                }
                continue;
            }
        }
        deliver.push(o);
    }
}

/// Speakers send for `dur`, each staggered by its share of the 20 ms frame. Without `counts`
/// (the warm-up), everything is delivered, so that receivers learn the streams and report on
/// them (RTCP RR, after which str0m stops sending the MID extension, as with real peers).
fn speak(net: &mut Net, dur: Duration, mut counts: Option<&mut Counts>) -> Duration {
    let mut sfu_time = Duration::ZERO;
    let end = net.now + dur;
    let speakers: Vec<usize> = (0..net.clients.len())
        .filter(|i| net.clients[*i].mic.is_some())
        .collect();
    let stagger = FRAME / speakers.len().max(1) as u32;
    let start = net.now;
    let mut sent = vec![0u64; speakers.len()];
    let mut input = Vec::new();
    let payload: Vec<u8> = (0..80u8).collect();
    let due = |k: usize, sent: &[u64]| start + stagger * k as u32 + FRAME * sent[k] as u32;
    let sharers: Vec<usize> = (0..net.clients.len())
        .filter(|i| net.clients[*i].screen.is_some())
        .collect();
    let mut frames = 0u64;
    let mut video = vec![0u8; SCREEN_PAYLOAD];
    while net.now < end {
        // Each sharer's frame, all its packets at once as an encoder emits them.
        while start + SCREEN_FRAME * frames as u32 <= net.now && !sharers.is_empty() {
            let key = frames.is_multiple_of(15);
            for &i in &sharers {
                let c = &mut net.clients[i];
                let (mid, pt, seq) = c.screen.as_mut().unwrap();
                for k in 0..SCREEN_PACKETS {
                    // VP8 descriptor (start of a partition on the first packet), then the
                    // payload header's inverse keyframe bit and a keyframe's start code.
                    video[0] = if k == 0 { 0x10 } else { 0x00 };
                    video[1..7].copy_from_slice(&[u8::from(!key) | 0x10, 0, 0, 0x9d, 0x01, 0x2a]);
                    let w = RtpWrite::new(
                        *pt,
                        (*seq).into(),
                        (frames * 6000) as u32,
                        net.now,
                        video.as_slice(),
                    )
                    .marker(k + 1 == SCREEN_PACKETS);
                    *seq += 1;
                    let mut api = c.rtc.direct_api();
                    api.stream_tx_by_mid(*mid, None)
                        .expect("screen stream")
                        .write_rtp(w);
                }
                net.dirty.push(i);
            }
            frames += 1;
        }
        // Client side: each speaker whose frame is due encrypts it; levels swing like speech.
        for (k, &i) in speakers.iter().enumerate() {
            if due(k, &sent) > net.now {
                continue;
            }
            let frame = sent[k];
            sent[k] += 1;
            let c = &mut net.clients[i];
            let (mid, pt, seq) = c.mic.as_mut().unwrap();
            let ext = ExtensionValues {
                audio_level: Some(if frame.is_multiple_of(2) { -20 } else { -70 }),
                voice_activity: Some(true),
                ..Default::default()
            };
            let w = RtpWrite::new(
                *pt,
                (*seq).into(),
                (*seq * 960) as u32,
                net.now,
                payload.as_slice(),
            )
            .ext_vals(ext);
            *seq += 1;
            let mut api = c.rtc.direct_api();
            api.stream_tx_by_mid(*mid, None)
                .expect("mic stream")
                .write_rtp(w);
            net.dirty.push(i);
        }
        net.client_timeouts();
        // Until this instant settles: clients' datagrams in, the SFU's output out.
        loop {
            net.poll_clients(&mut input);
            if let Some(c) = counts.as_deref_mut() {
                c.packets_in += input.len() as u64;
                let t0 = Instant::now();
                measure(&mut net.sfu, net.now, &input, c, &mut net.deliver);
                sfu_time += t0.elapsed();
            } else {
                sfu_round(&mut net.sfu, net.now, &input, None, &mut net.deliver);
            }
            input.clear();
            net.deliver();
            if net.dirty.is_empty() {
                break;
            }
        }
        let next_screen = (!sharers.is_empty()).then(|| start + SCREEN_FRAME * frames as u32);
        let next_frame = (0..speakers.len())
            .map(|k| due(k, &sent))
            .chain(next_screen)
            .min();
        net.advance(end, next_frame);
    }
    sfu_time
}

fn main() {
    let a = args();
    let t0 = Instant::now();
    let mut net = setup(&a);
    let setup_secs = t0.elapsed().as_secs_f64();
    let mut c = Counts::default();
    let opened_before = net.sfu.voice_opened_packets();
    let passes_before = net.sfu.timer_passes();
    let sfu_time = speak(&mut net, Duration::from_secs(a.seconds), Some(&mut c));
    let ns = sfu_time.as_nanos() as f64 / c.forwarded_rtp.max(1) as f64;
    let viewers = (a.calls * (a.receivers + a.speakers - 1)) as u64;
    let expected = (a.calls * a.speakers * (a.receivers + a.speakers - 1)) as u64 * a.seconds * 50
        + u64::from(a.screen) * viewers * a.seconds * 15 * SCREEN_PACKETS;
    println!(
        "{}",
        serde_json::json!({
            "calls": a.calls,
            "receivers": a.receivers,
            "speakers": a.speakers,
            "seconds": a.seconds,
            "bwe": a.bwe,
            "voice_fast_path": a.fast,
            "screen": a.screen,
            "packets_in": c.packets_in,
            "packets_out": c.packets_out,
            "forwarded_rtp": c.forwarded_rtp,
            "voice_opened": net.sfu.voice_opened_packets() - opened_before,
            "timer_passes": net.sfu.timer_passes() - passes_before,
            "expected_rtp": expected,
            "sfu_wall_ns_per_forwarded": (ns * 10.0).round() / 10.0,
            "setup_wall_s": (setup_secs * 10.0).round() / 10.0,
        })
    );
}
