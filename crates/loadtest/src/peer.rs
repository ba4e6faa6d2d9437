//! One simulated WebRTC endpoint, sans-IO: a str0m client in RTP mode that offers or answers,
//! sends sample media on its own timeline and counts what it receives.
//!
//! Receiving is where a load generator can become the bottleneck, so in [`RxMode::Count`] voice is
//! counted from its header (sequence number and SSRC travel in clear in SRTP) and never
//! decrypted; video, STUN, DTLS and RTCP still go through str0m, which keeps ICE consent and
//! RTCP alive and answers video with the feedback the SFU's bandwidth estimate needs.
//! [`RxMode::Full`] hands every packet to str0m, as a real client would (receiver reports,
//! NACKs and TWCC feedback then flow back to the SFU for voice too).

use crate::media::Clip;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// How received media is handled.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RxMode {
    /// Count voice from its clear header only; video, STUN, DTLS and RTCP go through the stack.
    #[default]
    Count,
    /// Also decrypt and process every packet in the stack, as a real client.
    Full,
}

/// What a peer sends.
#[derive(Debug, Clone, Default)]
pub struct SendPlan {
    /// A data channel named `calls-dc` in the first offer (the Calls clients' signaling channel).
    pub data_channel: bool,
    pub audio: Option<Arc<Clip>>,
    /// Screen share as simulcast `l` and `h` layers, under this MediaStream ID.
    pub screen: Option<(String, Arc<Clip>, Arc<Clip>)>,
    /// Offer the screen's `h` layer first. Janus's VideoRoom takes the first rid of an offer for
    /// the highest quality (its documented convention) and by default forwards the highest; the
    /// Calls clients list `l` first, and rtcd goes by the names.
    pub high_layer_first: bool,
    /// Camera video under this MediaStream ID.
    pub video: Option<(String, Arc<Clip>)>,
}

/// The RTP clock every simulated participant of one run stamps its media with, so that any
/// participant of the same process can tell how long a packet took to reach it: a packet's RTP
/// timestamp is the moment it was due to be sent, in the codec's clock rate, counted from a
/// shared epoch. The delay then needs no per-stream state and no baseline, and it includes
/// everything between the sender's schedule and the receiver: the generator's own lateness,
/// the network and the server.
///
/// Timestamps start 2^31 ticks past the epoch rather than at a random offset (RFC 3550 asks
/// for one against known-plaintext attacks on the payload, which SRTP does not need). A server
/// that rewrites timestamps from zero, as Janus's VideoRoom does, then gives delays about 2^31
/// ticks (hours) away, which [`MediaClock::delay`] refuses, rather than plausible wrong ones.
#[derive(Debug, Clone, Copy)]
pub struct MediaClock {
    epoch: Instant,
}

/// Longest delay taken as measured; beyond it the timestamp is taken as not ours.
pub const MAX_MEDIA_DELAY: Duration = Duration::from_secs(60);

/// How early a packet may arrive: the clips' durations are whole microseconds, so the schedule
/// and the timestamps of a long replay drift apart by a little.
const EARLY_TOLERANCE: Duration = Duration::from_millis(5);

impl MediaClock {
    pub fn new(epoch: Instant) -> Self {
        MediaClock { epoch }
    }

    /// The RTP timestamp of a moment, at `rate` ticks per second.
    pub fn ticks(&self, at: Instant, rate: u32) -> u32 {
        let d = at.saturating_duration_since(self.epoch);
        let t = d.as_nanos() * rate as u128 / 1_000_000_000;
        (1u32 << 31).wrapping_add(t as u32)
    }

    /// How long before `now` a packet stamped `ts` was due to be sent; `None` when the
    /// timestamp cannot be one of this clock's (rewritten by the server, or absurdly late).
    pub fn delay(&self, now: Instant, ts: u32, rate: u32) -> Option<Duration> {
        let diff = self.ticks(now, rate).wrapping_sub(ts) as i32 as i64;
        let nanos = diff * 1_000_000_000 / rate as i64;
        if nanos < 0 {
            return (nanos.unsigned_abs() <= EARLY_TOLERANCE.as_nanos() as u64)
                .then_some(Duration::ZERO);
        }
        let d = Duration::from_nanos(nanos as u64);
        (d <= MAX_MEDIA_DELAY).then_some(d)
    }
}

/// RTP clock rate of the codecs the tool sends.
fn clock_rate(codec: Codec) -> u32 {
    if codec == Codec::Opus { 48_000 } else { 90_000 }
}

/// One received media packet's delay from its sender's schedule ([`MediaClock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaDelay {
    pub audio: bool,
    /// `None` when the packet's timestamp was not the sender's (see [`MediaClock::delay`]).
    pub delay: Option<Duration>,
}

/// Per-SSRC sequence tracking for loss.
#[derive(Debug, Clone, Copy)]
struct SeqTrack {
    ssrc: u32,
    audio: bool,
    first: u64,
    max: u64,
    received: u64,
}

/// What a peer received (and sent).
#[derive(Debug, Clone, Default)]
pub struct RxStats {
    pub packets: u64,
    pub bytes: u64,
    pub audio_packets: u64,
    pub video_packets: u64,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub first_audio: Option<Instant>,
    pub first_video: Option<Instant>,
    streams: Vec<SeqTrack>,
}

impl RxStats {
    /// Packets missing from the sequence numbers seen so far (reordering-tolerant: a late
    /// packet fills its gap).
    pub fn lost(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| (s.max - s.first + 1).saturating_sub(s.received))
            .sum()
    }

    /// Packets expected from the sequence numbers seen so far.
    pub fn expected(&self) -> u64 {
        self.streams.iter().map(|s| s.max - s.first + 1).sum()
    }

    /// Distinct audio streams (SSRCs) received.
    pub fn audio_streams(&self) -> usize {
        self.streams.iter().filter(|s| s.audio).count()
    }

    /// Counts a packet of a tracked payload type (`audio` or video) for loss.
    fn on_rtp(&mut self, ssrc: u32, seq: u16, tracked: Option<bool>) {
        let Some(audio) = tracked else {
            return;
        };
        let s = match self.streams.iter_mut().find(|s| s.ssrc == ssrc) {
            Some(s) => s,
            None => {
                // Start a little above 0 so that a packet reordered before the first one
                // still has room below.
                let ext = (1u64 << 16) + seq as u64;
                self.streams.push(SeqTrack {
                    ssrc,
                    audio,
                    first: ext,
                    max: ext,
                    received: 1,
                });
                return;
            }
        };
        // Extend to the candidate closest to the highest seen (RFC 3550 A.1, simplified).
        let base = s.max & !0xffff;
        let ext = [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .map(|b| b + seq as u64)
            .min_by_key(|e| e.abs_diff(s.max))
            .unwrap_or(s.max);
        if ext < s.first {
            s.first = ext;
        }
        s.max = s.max.max(ext);
        s.received += 1;
    }
}

/// One sending stream: a clip replayed on a transceiver (and layer).
struct Sender {
    mid: Mid,
    rid: Option<Rid>,
    codec: Codec,
    clip: Arc<Clip>,
    next: u64,
    seq: u64,
    /// RTP timestamp of `start` ([`MediaClock::ticks`]).
    rtp_base: u32,
    start: Option<Instant>,
}

impl Sender {
    /// Starts the stream's timeline at `now` unless it has one; returns its start.
    fn begin(&mut self, clock: MediaClock, now: Instant) -> Instant {
        match self.start {
            Some(start) => start,
            None => self.restart(clock, now),
        }
    }

    /// Moves the stream's timeline to `start`, and its RTP timestamps with it.
    fn restart(&mut self, clock: MediaClock, start: Instant) -> Instant {
        self.start = Some(start);
        self.rtp_base = clock.ticks(start, clock_rate(self.codec));
        start
    }
}

/// A signaling step the peer asks its driver to carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// ICE connected and DTLS done: media can flow.
    Connected,
    /// The data channel opened.
    ChannelOpen,
    /// A message on the data channel.
    ChannelData(Vec<u8>),
    /// The connection failed or was closed.
    Closed(String),
}

pub struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    rx_mode: RxMode,
    clock: MediaClock,
    /// Delays of the media received since the driver last drained them.
    delays: Vec<MediaDelay>,
    pending: Option<SdpPendingOffer>,
    plan: SendPlan,
    senders: Vec<Sender>,
    channel: Option<str0m::channel::ChannelId>,
    connected: bool,
    pub stats: RxStats,
    events: Vec<PeerEvent>,
    transmit: Vec<(SocketAddr, Vec<u8>)>,
    next_rtc: Instant,
    /// Payload types of the two codecs whose loss is tracked (resends and padding are not).
    opus_pt: Option<u8>,
    vp8_pt: Option<u8>,
}

pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

impl Peer {
    pub fn new(
        local: SocketAddr,
        rx_mode: RxMode,
        plan: SendPlan,
        clock: MediaClock,
        now: Instant,
    ) -> Self {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        if let Ok(c) = Candidate::host(local, "udp") {
            let _ = rtc.add_local_candidate(c);
        }
        let pt = |codec| {
            rtc.codec_config()
                .iter()
                .find(|c| c.spec().codec == codec)
                .map(|c| *c.pt())
        };
        let (opus_pt, vp8_pt) = (pt(Codec::Opus), pt(Codec::Vp8));
        Peer {
            rtc,
            local,
            rx_mode,
            clock,
            delays: Vec::new(),
            pending: None,
            plan,
            senders: Vec::new(),
            channel: None,
            connected: false,
            stats: RxStats::default(),
            events: Vec::new(),
            transmit: Vec::new(),
            next_rtc: now,
            opus_pt,
            vp8_pt,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The first offer: the data channel and every track of the plan.
    pub fn create_offer(&mut self, now: Instant) -> Result<String, String> {
        let mut api = self.rtc.sdp_api();
        if self.plan.data_channel {
            api.add_channel("calls-dc".into());
        }
        let mut senders = Vec::new();
        let stream = format!("{:08x}", random_u32());
        if let Some(clip) = &self.plan.audio {
            let mid = api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream.clone()),
                None,
                None,
            );
            senders.push((mid, None, Codec::Opus, clip.clone()));
        }
        if let Some((id, l, h)) = &self.plan.screen {
            let mut sim = Simulcast::new();
            let order = if self.plan.high_layer_first {
                ["h", "l"]
            } else {
                ["l", "h"]
            };
            for rid in order {
                sim.add_send_layer(SimulcastLayer::new(rid));
            }
            let mid = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(id.clone()),
                None,
                Some(sim),
            );
            senders.push((mid, Some(Rid::from("l")), Codec::Vp8, l.clone()));
            senders.push((mid, Some(Rid::from("h")), Codec::Vp8, h.clone()));
        }
        if let Some((id, clip)) = &self.plan.video {
            let mid = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(id.clone()),
                None,
                None,
            );
            senders.push((mid, None, Codec::Vp8, clip.clone()));
        }
        let Some((offer, pending)) = api.apply() else {
            return Err("nothing to offer".into());
        };
        self.pending = Some(pending);
        self.senders = senders
            .into_iter()
            .map(|(mid, rid, codec, clip)| Sender {
                mid,
                rid,
                codec,
                clip,
                next: 0,
                seq: (random_u32() & 0x7fff) as u64,
                rtp_base: 0,
                start: None,
            })
            .collect();
        self.poll(now);
        Ok(offer.to_sdp_string())
    }

    pub fn accept_answer(&mut self, sdp: &str, now: Instant) -> Result<(), String> {
        let pending = self.pending.take().ok_or("answer without an offer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad answer: {e}"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer refused: {e}"))?;
        self.tick(now);
        Ok(())
    }

    /// An offer from the server: answered at once.
    pub fn accept_offer(&mut self, sdp: &str, now: Instant) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("bad offer: {e}"))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("offer refused: {e}"))?;
        self.tick(now);
        Ok(answer.to_sdp_string())
    }

    pub fn add_remote_candidate(&mut self, sdp_line: &str) -> Result<(), String> {
        let c = Candidate::from_sdp_string(sdp_line).map_err(|e| format!("bad candidate: {e}"))?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Writes on the data channel (binary).
    pub fn channel_write(&mut self, data: &[u8], now: Instant) {
        if let Some(mut ch) = self.channel.and_then(|c| self.rtc.channel(c)) {
            let _ = ch.write(true, data);
        }
        self.poll(now);
    }

    /// A datagram that arrived on the peer's socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if calls_sfu::fast::is_rtp(data) {
            let pt = data[1] & 0x7f;
            let seq = u16::from_be_bytes([data[2], data[3]]);
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let s = &mut self.stats;
            s.packets += 1;
            s.bytes += data.len() as u64;
            let audio = Some(pt) == self.opus_pt;
            if audio {
                s.audio_packets += 1;
                s.first_audio.get_or_insert(now);
            } else {
                s.video_packets += 1;
                s.first_video.get_or_insert(now);
            }
            let tracked = (audio || Some(pt) == self.vp8_pt).then_some(audio);
            s.on_rtp(ssrc, seq, tracked);
            if tracked.is_some() {
                let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                let rate = clock_rate(if audio { Codec::Opus } else { Codec::Vp8 });
                let delay = self.clock.delay(now, ts, rate);
                self.delays.push(MediaDelay { audio, delay });
            }
            // Video still goes through the stack: a browser answers it with the transport-wide
            // feedback, receiver reports and NACKs that the SFU's bandwidth estimate lives on,
            // and that estimate paces the video and picks screen layers. Without it the
            // estimate stays at its floor, and the SFU spends its time pacing a standing queue.
            if self.rx_mode == RxMode::Count && audio {
                return;
            }
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.handle_input(input).is_ok() {
            self.poll(now);
        }
    }

    /// Sends the media that is due and runs the stack's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.connected {
            self.send_media(now);
        }
        if now >= self.next_rtc {
            let _ = self.rtc.handle_input(Input::Timeout(now));
        }
        self.poll(now);
    }

    /// When [`Peer::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Instant {
        let media = self
            .senders
            .iter()
            .filter_map(|s| Some(s.start? + s.clip.get(s.next).0))
            .min();
        media.map_or(self.next_rtc, |m| m.min(self.next_rtc))
    }

    /// Datagrams to send, drained.
    pub fn drain_transmit(&mut self) -> std::vec::Drain<'_, (SocketAddr, Vec<u8>)> {
        self.transmit.drain(..)
    }

    /// Delays of the media received since the last call, drained.
    pub fn drain_delays(&mut self) -> std::vec::Drain<'_, MediaDelay> {
        self.delays.drain(..)
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    pub fn close(&mut self) {
        self.rtc.disconnect();
    }

    fn send_media(&mut self, now: Instant) {
        let clock = self.clock;
        for s in &mut self.senders {
            let mut start = s.begin(clock, now);
            let pt = self
                .rtc
                .codec_config()
                .iter()
                .find(|c| c.spec().codec == s.codec)
                .map(|c| c.pt());
            let mut api = self.rtc.direct_api();
            let (Some(pt), Some(tx)) = (pt, api.stream_tx_by_mid(s.mid, s.rid)) else {
                continue;
            };
            loop {
                let (at, rtp_time, p) = s.clip.get(s.next);
                if start + at > now {
                    break;
                }
                let mut ext = ExtensionValues::default();
                if s.codec == Codec::Opus {
                    // A speaking level, so the SFU's voice activity detection has input.
                    ext.audio_level = Some(-30);
                    ext.voice_activity = Some(true);
                }
                let w = RtpWrite::new(
                    pt,
                    SeqNo::from(s.seq),
                    s.rtp_base.wrapping_add(rtp_time),
                    now,
                    p.payload.clone(),
                )
                .marker(p.marker)
                .ext_vals(ext);
                tx.write_rtp(w);
                self.stats.sent_packets += 1;
                self.stats.sent_bytes += p.payload.len() as u64;
                s.seq += 1;
                s.next += 1;
                // A long stall (the generator overloaded) skips media rather than bursting it,
                // and the timestamps skip with it, as a capture clock's would.
                if now.saturating_duration_since(start + at) > Duration::from_secs(1) {
                    start = s.restart(clock, now - at);
                }
            }
        }
    }

    /// Gives the stack the time after a signaling change: str0m schedules nothing, ICE checks
    /// included, until it is told the time (with the candidates in an SDP, nothing else would).
    fn tick(&mut self, now: Instant) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.poll(now);
    }

    fn poll(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    self.transmit.push((t.destination, t.contents.to_vec()));
                }
                Ok(Output::Timeout(t)) => {
                    self.next_rtc = t.max(now);
                    return;
                }
                Ok(Output::Event(e)) => self.on_event(e, now),
                Err(e) => {
                    self.events.push(PeerEvent::Closed(e.to_string()));
                    self.next_rtc = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                self.connected = true;
                // The media clock starts now, so `poll_timeout` asks for the first packet at
                // once. Waiting for the stack's own next deadline instead could take forever:
                // str0m's ICE deadline is at least 50 ms after the latest input, so a peer that
                // receives a packet every 20 ms (voice without transport-wide feedback) never
                // reaches it.
                for s in &mut self.senders {
                    s.begin(self.clock, now);
                }
                self.events.push(PeerEvent::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.events
                    .push(PeerEvent::Closed("ICE disconnected".into()));
            }
            Event::ChannelOpen(id, _) => {
                self.channel = Some(id);
                self.events.push(PeerEvent::ChannelOpen);
            }
            Event::ChannelData(d) => self.events.push(PeerEvent::ChannelData(d.data)),
            Event::Closed => self.events.push(PeerEvent::Closed("closed".into())),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_gaps_and_survives_wrap_and_reordering() {
        let mut s = RxStats::default();
        for seq in [65530u16, 65531, 65533, 65535, 0, 2, 1, 3] {
            s.on_rtp(7, seq, Some(true));
        }
        // 65530..=3 is 10 packets; 65532 and 65534 never came.
        assert_eq!(s.expected(), 10);
        assert_eq!(s.lost(), 2);
        // A packet from before the first one seen widens the range instead of counting as loss.
        s.on_rtp(7, 65529, Some(true));
        assert_eq!((s.expected(), s.lost()), (11, 2));
        // Untracked payloads (resends, padding) never count.
        s.on_rtp(9, 100, None);
        assert_eq!(s.expected(), 11);
        assert_eq!(s.audio_streams(), 1);
    }

    #[test]
    fn the_media_clock_times_packets_and_refuses_foreign_timestamps() {
        let epoch = Instant::now();
        let clock = MediaClock::new(epoch);
        let sent = epoch + Duration::from_secs(7);
        let ms = Duration::from_millis;
        for rate in [48_000, 90_000] {
            let ts = clock.ticks(sent, rate);
            let d = clock.delay(sent + ms(30), ts, rate).unwrap();
            assert!(d.abs_diff(ms(30)) < Duration::from_micros(25), "{d:?}");
            // A few microseconds early is the clips' rounding; well before the schedule is not.
            assert_eq!(
                clock.delay(sent, ts.wrapping_add(1), rate),
                Some(Duration::ZERO)
            );
            assert_eq!(clock.delay(sent, ts.wrapping_add(rate / 10), rate), None);
            // Up to a minute late is a delay; a timestamp rewritten from zero is hours off.
            assert!(
                clock
                    .delay(sent + Duration::from_secs(59), ts, rate)
                    .is_some()
            );
            assert_eq!(clock.delay(sent + Duration::from_secs(61), ts, rate), None);
            assert_eq!(clock.delay(sent, 960, rate), None);
        }
        // Past the 32-bit wrap (about 12 hours at 48 kHz from the first tick at 2^31).
        let late = epoch + Duration::from_secs(13 * 3600);
        let ts = clock.ticks(late, 48_000);
        assert!(ts < 1 << 31);
        assert_eq!(clock.delay(late + ms(20), ts, 48_000), Some(ms(20)));
    }

    #[test]
    fn received_media_is_timed_from_its_senders_schedule() {
        let now = Instant::now();
        let clock = MediaClock::new(now - Duration::from_secs(5));
        let mut p = Peer::new(
            "127.0.0.1:40000".parse().unwrap(),
            RxMode::Count,
            SendPlan::default(),
            clock,
            now,
        );
        let rtp = |pt: u8, seq: u8, ts: u32| {
            let mut pkt = vec![0x80, pt, 0, seq];
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&[0, 0, 0, 42]);
            pkt.extend_from_slice(&[0u8; 60]);
            pkt
        };
        let src = "127.0.0.1:8443".parse().unwrap();
        let (opus, vp8) = (p.opus_pt.unwrap(), p.vp8_pt.unwrap());
        let due = now - Duration::from_millis(40);
        p.handle_datagram(now, src, &rtp(opus, 1, clock.ticks(due, 48_000)));
        p.handle_datagram(now, src, &rtp(vp8, 2, clock.ticks(due, 90_000)));
        // Rewritten by the server: counted, not timed.
        p.handle_datagram(now, src, &rtp(opus, 3, 960));
        // Neither Opus nor VP8 (a resend, padding): not media to time.
        p.handle_datagram(now, src, &rtp(127, 4, 0));
        let d: Vec<MediaDelay> = p.drain_delays().collect();
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].audio && !d[1].audio && d[2].audio);
        for x in &d[..2] {
            let delay = x.delay.unwrap();
            assert!(delay.abs_diff(Duration::from_millis(40)) < Duration::from_micros(25));
        }
        assert_eq!(d[2].delay, None);
        assert_eq!(p.drain_delays().count(), 0);
    }

    #[test]
    fn rtp_is_counted_from_its_clear_header() {
        let now = Instant::now();
        let mut p = Peer::new(
            "127.0.0.1:40000".parse().unwrap(),
            RxMode::Count,
            SendPlan::default(),
            MediaClock::new(now),
            now,
        );
        let opus = p.opus_pt.unwrap();
        let mut pkt = vec![0x80, opus, 0, 5, 0, 0, 0, 0, 0, 0, 0, 42];
        pkt.extend_from_slice(&[0u8; 60]);
        p.handle_datagram(now, "127.0.0.1:8443".parse().unwrap(), &pkt);
        pkt[3] = 7;
        p.handle_datagram(now, "127.0.0.1:8443".parse().unwrap(), &pkt);
        // RTCP (PT 200) and junk are not media.
        p.handle_datagram(now, "127.0.0.1:8443".parse().unwrap(), &[0x80, 200, 0, 1]);
        p.handle_datagram(now, "127.0.0.1:8443".parse().unwrap(), &[]);
        assert_eq!(p.stats.packets, 2);
        assert_eq!(p.stats.audio_packets, 2);
        assert_eq!(p.stats.bytes, 144);
        assert_eq!(p.stats.lost(), 1);
        assert_eq!(p.stats.first_audio, Some(now));
    }
}
