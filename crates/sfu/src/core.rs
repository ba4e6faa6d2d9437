//! The sans-IO SFU core: calls, sessions and the tracks forwarded between them.
//!
//! One [`str0m::Rtc`] per session does ICE (lite), DTLS, SRTP and SCTP. This module owns them all:
//! it routes datagrams to the right peer (by STUN ufrag, then by remote address), answers the
//! client's offers, runs the `calls-dc` data-channel protocol, makes the server's own offers when
//! tracks come and go, and forwards RTP from each publisher to every other session of its call.
//! It takes inputs with the current time and queues [`SfuOutput`]s; it has no sockets and reads
//! no clock. Media is forwarded when the shell polls, so the datagrams of one round go out
//! together. Voice takes the fast path ([`crate::fast`]): a publisher's voice is opened here as
//! it arrives (str0m never sees it; the fast path writes the feedback on it), and each
//! receiver's copy is framed and encrypted here and queued at once. Video is written to each
//! receiver's session, which is then driven once for all the packets it got.
//!
//! ICE-lite is a deliberate choice: rtcd always answers the client's first offer, so it is never
//! the controlling agent. As a lite agent it never sends connectivity checks, so it cannot meet
//! the role conflicts that full ICE must resolve (spec pitfall 1), and a peer's address is
//! learned from the checks the client sends (peer-reflexive), which is all rtcd relies on as well.

use crate::fast::{FastPath, Route, VoiceHeader, VoiceIn, is_rtp, parse_rtp};
use crate::feedback::Reception;
use crate::keys::KeySlot;
use crate::simulcast::{Layer, LayerSelector, RATE_H, RateMonitor};
use crate::srtp::ReplayWindow;
use calls_proto::dc::{DcMessage, TrackInfo};
use calls_proto::json::SessionConfig;
use calls_proto::{RtcMessage, RtcMessageType};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// How long a peer may stay ICE-disconnected before its session ends (pion's failed timeout).
pub const DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(25);
/// At most one keyframe request per second reaches a publisher's layer, however many viewers ask.
pub const PLI_INTERVAL: Duration = Duration::from_secs(1);
/// How long a server offer waits for its answer before it is abandoned and its tracks retried.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may hold the data-channel lock. rtcd never takes it back, so a client that
/// locks and vanishes starves every later server offer (pitfall 4); here the lock expires.
pub const CLIENT_LOCK_LIMIT: Duration = Duration::from_secs(10);
/// Rounds of due timers one `handle_timeout` call runs at most.
const TIMEOUT_ROUNDS: usize = 16;
/// Packets one `drive` lets str0m's pacer release in a row at most, each behind a timeout of
/// its own (see `drive`): more than a flush writes to one receiver ([`FLUSH_CHUNK`]) with room
/// for retransmissions, and the session's clock runs at most this many microseconds ahead.
const PACER_STEPS: usize = 64;
/// How far on str0m's pacer asks for the timeout that reopens it after a packet.
const PACER_TICK: Duration = Duration::from_micros(1);

/// Incoming packets forwarded per step of `poll_output`. A step drives each receiver once for
/// all of them; more per step saves little once a receiver takes a few, and each step's output
/// (up to this many packets per receiver) sits in memory until the shell sends it.
const FLUSH_CHUNK: usize = 8;

/// How long an audio-only peer's pacer, bandwidth-estimator and transport-feedback deadlines may
/// wait.
///
/// - str0m's pacer asks for a pass right after every packet it releases, only to reopen its
///   gate; the core gives a receiver a pass of its own whenever it writes to it, and audio is
///   never paced.
/// - The estimator's delay controller asks for a pass every 25 ms, but an audio-only peer's
///   estimate has nothing to work on: voice on the fast path carries no transport-wide sequence
///   numbers, and only screen-share layers depend on the estimate.
/// - str0m sends transport-wide feedback on what a peer published every 50 ms (a constant of
///   str0m's), and the fast path on the voice it opens ([`crate::feedback`]) once its oldest
///   packet is 50 ms old, on whichever pass comes next; rtcd's pion sends it every 100 ms.
///
/// With a thousand idle receivers those passes cost more than forwarding the voice. Whatever
/// else such a deadline hides (RTCP reports, consent, SCTP timers) runs at most this late, which
/// none of them minds. Peers with video defer less ([`VIDEO_IDLE_SLACK`]).
const AUDIO_ONLY_SLACK: Duration = Duration::from_millis(100);

/// Voice streams (SSRCs) a publisher's session opens on the fast path at most: a client that
/// replaces its microphone track starts a new one, and old ones stay until this many.
const VOICE_IN_MAX: usize = 4;

/// How long a peer with video may let its pacer's and estimator's routine deadlines wait while
/// str0m holds none of its packets.
///
/// - The delay controller asks for a pass every 25 ms to move the estimate on between
///   transport-wide feedback reports (each report moves it on as well); the pacer every 40 ms
///   to settle its debt and top the link up with padding. Both scale what they do by the time
///   elapsed, so a later pass does the same work.
/// - A screen-share viewer's session gets a pass for every frame it is sent anyway (str0m
///   stamps written packets only in a timeout pass), and any pass runs whatever of str0m is
///   due: at 15 frames a second they still run every 67 ms, and at most this late otherwise.
/// - While str0m holds packets of the peer (a retransmission, padding, a probe), every
///   deadline stays exact: the pacer's release time hides behind whichever deadline str0m
///   reports first.
/// - The pacer's other deadlines stay exact too: its probe clusters and padding are how the
///   estimate grows past what is sent. Deferring them as well kept every viewer of the
///   benchmark's `1x200+screen` row on the `l` layer (29k forwarded packets/s, against 47k).
///
/// At 1 x 200 with a screen share (`examples/forward.rs --screen true`, 2 s) timer passes fell
/// from 18.1k to 0.5k, each a full walk of the session. Probing and transport-wide feedback
/// deadlines always stay exact.
const VIDEO_IDLE_SLACK: Duration = Duration::from_millis(100);

/// How long a deadline of this reason may wait: for an audio-only peer, or for a peer with
/// video whose send queues are all empty (`idle`, asked only when it matters).
fn slack(
    reason: str0m::Reason,
    audio_only: bool,
    mut idle: impl FnMut() -> bool,
) -> Option<Duration> {
    use str0m::{PacerReason, Reason};
    match reason {
        Reason::Pacer(_)
        | Reason::Twcc
        | Reason::BweDelayControl
        | Reason::BweProbeControl
        | Reason::BweProbeEstimator
            if audio_only =>
        {
            Some(AUDIO_ONLY_SLACK)
        }
        Reason::Pacer(PacerReason::Handle) | Reason::BweDelayControl if idle() => {
            Some(VIDEO_IDLE_SLACK)
        }
        _ => None,
    }
}

/// Where the SFU can be reached, as advertised in candidates.
#[derive(Debug, Clone, Default)]
pub struct SfuConfig {
    pub udp_candidates: Vec<SocketAddr>,
    pub tcp_candidates: Vec<SocketAddr>,
    /// Video packets kept per stream to answer NACKs (`rtc.nack_buffer_size`; 0 means 256). The
    /// buffer holds owned copies, so wrapping can never corrupt a packet.
    pub nack_buffer_size: usize,
    /// Send-side bandwidth estimation (TWCC) per session, which drives screen-share layer
    /// switching. It also runs str0m's pacer for the session (on retransmissions and padding:
    /// video goes out unpaced, as behind rtcd's no-op pacer); the virtual-network tests turn it
    /// off because its deadlines at 1 ms steps make their fixed-time loops slow.
    pub bandwidth_estimation: bool,
    /// The first character of every local ufrag this core hands out. The shell runs one core per
    /// shard and reads the shard back from the USERNAME of a client's STUN checks.
    pub ufrag_prefix: Option<char>,
    /// Forward voice on the fast path ([`crate::fast`]): framed and encrypted here rather than
    /// by a pass through each receiver's str0m session.
    pub voice_fast_path: bool,
}

fn mime(codec: Option<Codec>) -> &'static str {
    match codec {
        Some(Codec::Opus) => "audio/opus",
        Some(Codec::Vp8) => "video/VP8",
        Some(Codec::Av1) => "video/AV1",
        _ => "unknown",
    }
}

/// What the I/O shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuOutput {
    /// Send a datagram (UDP) or an RFC 4571 frame (TCP).
    Transmit {
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// An `rtc` message for the plugin (SDP or ICE), addressed by `session_id`.
    Signal(RtcMessage),
    /// Voice activity changed for a session.
    Vad { session_id: String, on: bool },
    /// The session's connection failed; the control plane closes it.
    SessionEnded { session_id: String, reason: String },
}

type PeerId = u64;
/// A call (group + call ID), numbered so that the packet path never hashes or copies strings.
type CallKey = u64;

/// A map keyed by the core's own numbers (peers, calls). The packet path looks a peer up once
/// per receiver per packet; SipHash's resistance to chosen keys buys nothing for numbers the
/// core hands out itself, so these use the Fx hash.
type IdMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A map keyed by what the network chooses (a datagram's source address), looked up once per
/// datagram received. Seeded at random per map, so no one can aim keys at one bucket, and far
/// cheaper than SipHash, which cost 3.2% of the instructions at 500 calls x 2 (`forward.rs`
/// under callgrind: 836M -> 809M).
type NetMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A publisher's incoming track.
#[derive(Debug, Clone)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// `"<type>_<publisher session>_<8 chars>"`: clients parse type and sender from it.
    track_id: String,
    track_type: &'static str,
    mime: &'static str,
    /// Sent as simulcast layers (`l`/`h`); receivers get one of them.
    simulcast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TrackKey {
    publisher: PeerId,
    mid: Mid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    Negotiating,
    Open,
}

#[derive(Debug, Clone)]
struct TrackOut {
    key: TrackKey,
    mid: Mid,
    track_type: &'static str,
    state: OutState,
    /// The publisher's layer this receiver gets; `None` for single-layer tracks.
    rid: Option<Rid>,
    mime: &'static str,
    /// Voice fast path: how this receiver's copies are framed, once looked up.
    voice: Option<VoiceOut>,
    /// The sequence number from which the next packet goes through str0m ([`fast::SYNC_EVERY`]).
    next_sync: u64,
    /// A packet of this track went through str0m and is not out yet: the ones after it follow
    /// the same way, so the receiver gets them in order.
    sync_pending: bool,
    /// Subtracted from the publisher's extended sequence numbers for this receiver: the
    /// rollover count of the first packet it got. A receiver starts a stream's SRTP rollover
    /// counter at 0 (RFC 3711 3.3.1), so forwarding a publisher's own count once its sequence
    /// numbers had wrapped (after 32768 to 65536 packets, 11 to 22 minutes of voice) failed
    /// every packet's authentication: a receiver added later heard nothing of that speaker.
    seq_base: Option<u64>,
}

/// A receiver's framing of one voice track on the fast path.
#[derive(Debug, Clone, Copy)]
struct VoiceOut {
    pt: str0m::media::Pt,
    ssrc: u32,
    level_id: Option<u8>,
    mid_id: Option<u8>,
    /// The MID's bytes (str0m's `Mid` trims its padding on every read).
    mid: [u8; 16],
    mid_len: usize,
}

/// A receiver's voice fast path.
enum Fast {
    /// DTLS has not exported the keys yet.
    Waiting,
    Ready(Box<FastPath>),
    /// The keys could not be used (logged once); str0m sends everything.
    Off,
}

struct Peer {
    cfg: SessionConfig,
    call: CallKey,
    rtc: Rtc,
    ufrag: String,
    dc: Option<ChannelId>,
    dc_signaling: bool,
    /// The client joined with `av1Support`: it sends an AV1 screen/video variant and can decode one.
    av1: bool,
    /// The data channel opened and the call's existing tracks were queued for this session.
    tracks_ready: bool,
    /// The server's offer awaiting an answer.
    pending: Option<SdpPendingOffer>,
    /// Tracks to add to this receiver at the next server offer.
    to_add: BTreeSet<TrackKey>,
    /// Outgoing transceivers to stop at the next server offer.
    to_remove: BTreeSet<Mid>,
    /// `screen_on`/`video_on`: the MediaStream IDs this session's screen and camera tracks carry.
    screen_stream_id: Option<String>,
    video_stream_id: Option<String>,
    out: Vec<TrackOut>,
    tracks_in: Vec<TrackIn>,
    /// The client holds the renegotiation lock (DC `Lock`); server offers wait.
    client_lock: bool,
    /// When the client took the lock, and when the pending server offer went out.
    locked_at: Option<Instant>,
    offered_at: Option<Instant>,
    /// When the oldest track change still waiting for a server offer was queued (lock grab time).
    queued_at: Option<Instant>,
    muted: bool,
    /// As a publisher: what each simulcast screen layer really carries, by transceiver.
    layer_rates: HashMap<(Mid, Layer), RateMonitor>,
    /// As a receiver: the send-side bandwidth estimate (TWCC), and the screen layer decisions
    /// it drives.
    estimate: Option<u64>,
    selector: LayerSelector,
    /// The layer the next screen track added to this receiver uses (set by a layer switch).
    switch_to: Option<Layer>,
    /// Voice activity of the voice track, when its publisher negotiated audio levels.
    vad: Option<crate::vad::Vad>,
    disconnected_since: Option<Instant>,
    next_timeout: Option<Instant>,
    /// The latest instant handed to str0m as a timeout. Stepping the pacer in place runs the
    /// session's clock a few microseconds ahead of the core's (see `drive_paced`), and str0m
    /// ignores a timeout before its last one: the second chunk of a frame, written at the
    /// same `now`, then sat unstamped behind a "send now" deadline that every pass until the
    /// clock caught up ignored again (a wasted timer pass per frame per viewer).
    clock: Instant,
    created: Instant,
    answered_at: Option<Instant>,
    connected: bool,
    addrs: Vec<(Protocol, SocketAddr)>,
    /// The session's SRTP keys, filled when its DTLS handshake completes.
    keys: KeySlot,
    fast: Fast,
    /// Where str0m sends this session's media (the fast path sends there too).
    route: Option<Route>,
    /// As a publisher: the voice streams opened on the fast path.
    voice_in: Vec<VoiceIn>,
}

impl Peer {
    fn session_id(&self) -> &str {
        &self.cfg.session_id
    }

    /// Neither sends nor receives video (so str0m's pacer never holds a packet of this peer).
    fn audio_only(&self) -> bool {
        self.out.iter().all(|o| o.mime.starts_with("audio"))
            && self.tracks_in.iter().all(|t| t.kind == MediaKind::Audio)
    }

    /// Hands str0m a timeout at `at`, or at its last one if that was later.
    fn timeout(&mut self, at: Instant) {
        self.clock = self.clock.max(at);
        let _ = self.rtc.handle_input(Input::Timeout(self.clock));
    }

    /// Whether str0m holds none of this session's outgoing packets: every send queue was empty
    /// at its pacer's last update (each timeout pass, so also the one after the last release).
    fn send_idle(&mut self) -> bool {
        let mut api = self.rtc.direct_api();
        self.out.iter().all(|o| {
            api.stream_tx_by_mid(o.mid, o.rid)
                .and_then(|tx| tx.queue_info())
                .is_none_or(|q| q.packet_count() == 0)
        })
    }

    /// The session's fast path, set up once DTLS has exported its keys.
    fn fast_path(&mut self) -> Option<&mut FastPath> {
        if matches!(self.fast, Fast::Waiting) {
            let keys = self.keys.get()?;
            let rtcp_ssrc = fresh_ssrc(&mut self.rtc);
            self.fast = match FastPath::new(keys, rtcp_ssrc) {
                Ok(fp) => Fast::Ready(Box::new(fp)),
                Err(e) => {
                    tracing::warn!(session_id = %self.cfg.session_id, error = %e, "voice fast path off");
                    Fast::Off
                }
            };
        }
        match &mut self.fast {
            Fast::Ready(fp) => Some(&mut **fp),
            _ => None,
        }
    }

    /// Drops str0m's reception register on voice stream `i`, keeping the rollover cycle the
    /// fast path reached: when the fast path opens the stream, str0m's reports then leave it
    /// out; when it gives the stream back, str0m counts from the next packet on.
    fn reset_str0m_register(&mut self, i: usize) {
        let v = &self.voice_in[i];
        let roc = v.replay.max() >> 16;
        if let Some(s) = self.rtc.direct_api().stream_rx(&v.ssrc.into()) {
            s.reset_roc(roc);
        }
    }

    /// Gives str0m back voice stream `i`: str0m sees its packets again.
    fn hand_back(&mut self, i: usize) {
        self.reset_str0m_register(i);
        self.voice_in[i].engaged = false;
    }
}

/// A random SSRC no stream of `rtc` sends under (0 is avoided: some stacks treat it as unset).
fn fresh_ssrc(rtc: &mut Rtc) -> u32 {
    let mut api = rtc.direct_api();
    let mut unused = |ssrc: u32| ssrc != 0 && api.stream_tx(&ssrc.into()).is_none();
    for _ in 0..8 {
        let mut b = [0u8; 4];
        if getrandom::fill(&mut b).is_err() {
            break;
        }
        if unused(u32::from_be_bytes(b)) {
            return u32::from_be_bytes(b);
        }
    }
    // No randomness: any unused SSRC is as good.
    (0x5253_4643..=u32::MAX).find(|s| unused(*s)).unwrap_or(1)
}

/// The receiver's copy of a voice packet from the fast path, or `None` when str0m must send
/// this one: the fast path is not ready, the receiver is disconnected, or the track is due a
/// packet through str0m.
/// `out_seq` is the packet's sequence number for this receiver (rebased, [`TrackOut::seq_base`]).
fn send_voice_fast(
    rp: &mut Peer,
    oi: usize,
    codec: Codec,
    f: &Forward,
    out_seq: u64,
    spare: &mut Vec<Vec<u8>>,
) -> Option<SfuOutput> {
    let o = &rp.out[oi];
    if o.sync_pending || f.seq >= o.next_sync || rp.disconnected_since.is_some() {
        return None;
    }
    let route = rp.route?;
    rp.fast_path()?;
    let mid = rp.out[oi].mid;
    let voice = &match rp.out[oi].voice {
        Some(v) => v,
        None => {
            let ssrc = rp.rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
            let exts = rp.rtc.media(mid)?.remote_extmap();
            let name = mid.as_bytes();
            let mut bytes = [0; 16];
            let mid_len = name.len().min(16);
            bytes[..mid_len].copy_from_slice(&name[..mid_len]);
            let v = VoiceOut {
                pt: payload_type(&rp.rtc, codec)?,
                ssrc: *ssrc,
                level_id: exts.id_of(str0m::rtp::Extension::AudioLevel),
                mid_id: exts.id_of(str0m::rtp::Extension::RtpMid),
                mid: bytes,
                mid_len,
            };
            rp.out[oi].voice = Some(v);
            v
        }
    };
    let Fast::Ready(fp) = &mut rp.fast else {
        return None;
    };
    let (audio_level, voice_activity) = f.ext.level();
    let h = VoiceHeader {
        pt: *voice.pt,
        marker: f.marker,
        seq: out_seq,
        timestamp: f.timestamp,
        ssrc: voice.ssrc,
        level: voice
            .level_id
            .zip(audio_level)
            .map(|(id, l)| (id, l, voice_activity)),
        mid: voice.mid_id.map(|id| (id, &voice.mid[..voice.mid_len])),
    };
    let buf = spare
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(SPARE_CAPACITY));
    let contents = fp.seal(&h, f.payload.bytes(), buf)?;
    Some(SfuOutput::Transmit {
        proto: route.proto,
        source: route.source,
        destination: route.destination,
        contents,
    })
}

/// Opens a publisher's voice stream on the fast path, from the packet after `seq` (which str0m
/// has just handed over) on, when every track the publisher sends is voice and its keys are
/// there.
fn open_voice_stream(p: &mut Peer, ssrc: u32, mid: Mid, codec: (u8, Codec), seq: u64) {
    if p.voice_in.iter().any(|v| v.ssrc == ssrc)
        || !p.tracks_in.iter().all(|t| t.track_type == "voice")
        || p.fast_path().is_none()
    {
        return;
    }
    if p.voice_in.len() >= VOICE_IN_MAX {
        p.hand_back(0);
        p.voice_in.remove(0);
    }
    let Some(exts) = p.rtc.media(mid).map(|m| m.remote_extmap()) else {
        return;
    };
    let level_id = exts.id_of(str0m::rtp::Extension::AudioLevel);
    let twcc_id = exts.id_of(str0m::rtp::Extension::TransportSequenceNumber);
    let clock_rate = p
        .rtc
        .codec_config()
        .iter()
        .find(|c| *c.pt() == codec.0)
        .map_or(48_000, |c| c.spec().clock_rate.get());
    p.voice_in.push(VoiceIn {
        ssrc,
        mid,
        level_id,
        twcc_id,
        codec,
        replay: ReplayWindow::after(seq),
        reception: Reception::new(seq + 1, clock_rate),
        engaged: true,
    });
    // str0m counted this stream up to `seq`; its reports on it stop here and the fast path's
    // start.
    p.reset_str0m_register(p.voice_in.len() - 1);
}

/// The codec a session's payload type `pt` stands for.
fn codec_of(rtc: &Rtc, pt: Pt) -> Option<Codec> {
    rtc.codec_config()
        .iter()
        .find(|c| c.pt() == pt)
        .map(|c| c.spec().codec)
}

/// The receiver's payload type for `codec`.
fn payload_type(rtc: &Rtc, codec: Codec) -> Option<str0m::media::Pt> {
    rtc.codec_config()
        .iter()
        .find(|c| c.spec().codec == codec)
        .map(|c| c.pt())
}

/// At most this many spent datagram buffers wait for reuse ([`Sfu::recycle`]).
const SPARE_BUFFERS: usize = 4096;
/// The fast path's buffers hold this much (any voice packet but the rare largest Opus frames),
/// and smaller spent buffers are not kept: a voice packet would outgrow them.
const SPARE_CAPACITY: usize = 512;

/// A packet to forward: from str0m (video, and voice until the fast path opens its stream) or
/// opened on the fast path. Collected while draining a publisher, forwarded once it is released.
struct Forward {
    from: PeerId,
    /// The publisher's call and the packet's codec, found while the publisher's state is in
    /// the cache: looking the codec up at fan-out walked the publisher's whole codec list, a
    /// dozen cache lines, per packet (about 2.6% of the daemon at 500 calls x 2).
    call: CallKey,
    codec: Codec,
    mid: Mid,
    rid: Option<Rid>,
    /// The publisher's extended sequence number (its SRTP packet index).
    seq: u64,
    marker: bool,
    timestamp: u32,
    ext: Ext,
    payload: Payload,
}

/// A forwarded packet's header extension values, as far as its receivers get them. Video goes
/// without them (as rtcd sends it); voice opened here has its audio level and voice flag; voice
/// str0m received keeps them all, boxed: a `Forward` is moved a few times on its way, and
/// str0m's `ExtensionValues` took those moves to a few hundred bytes each (3% of the
/// instructions at 500 calls x 2).
enum Ext {
    /// Audio level (-dBov) and voice flag.
    Level(Option<i8>, Option<bool>),
    All(Box<ExtensionValues>),
}

impl Ext {
    fn level(&self) -> (Option<i8>, Option<bool>) {
        match self {
            Ext::Level(l, v) => (*l, *v),
            Ext::All(e) => (e.audio_level, e.voice_activity),
        }
    }

    fn values(&self) -> ExtensionValues {
        match self {
            Ext::Level(l, v) => ExtensionValues {
                audio_level: *l,
                voice_activity: *v,
                ..Default::default()
            },
            Ext::All(e) => (**e).clone(),
        }
    }
}

impl Forward {
    fn from_str0m(
        from: PeerId,
        call: CallKey,
        codec: Codec,
        mid: Mid,
        rid: Option<Rid>,
        pkt: str0m::rtp::RtpPacket,
    ) -> Self {
        Forward {
            from,
            call,
            codec,
            mid,
            rid,
            seq: *pkt.seq_no,
            marker: pkt.header.marker,
            timestamp: pkt.header.timestamp,
            ext: if matches!(codec, Codec::Opus) {
                Ext::All(Box::new(pkt.header.ext_vals))
            } else {
                Ext::Level(None, None)
            },
            payload: Payload::Str0m(pkt.payload),
        }
    }
}

/// A forwarded packet's payload.
enum Payload {
    /// As str0m received it.
    Str0m(Arc<[u8]>),
    /// Decrypted by the fast path into a spare buffer, which goes back to the pool once
    /// forwarded; shared with str0m (copied, once) only for a receiver whose copy goes through
    /// it.
    Opened(Vec<u8>, Option<Arc<[u8]>>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Str0m(p) => p,
            Payload::Opened(b, _) => b,
        }
    }

    fn shared(&mut self) -> Arc<[u8]> {
        match self {
            Payload::Str0m(p) => p.clone(),
            Payload::Opened(b, shared) => shared.get_or_insert_with(|| b.as_slice().into()).clone(),
        }
    }
}

#[derive(Default)]
pub struct Sfu {
    cfg: SfuConfig,
    next_id: PeerId,
    peers: IdMap<PeerId, Peer>,
    by_session: HashMap<String, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: NetMap<(Protocol, SocketAddr), PeerId>,
    calls: IdMap<CallKey, Vec<PeerId>>,
    /// The one screen sharer of each call.
    screens: IdMap<CallKey, PeerId>,
    /// (group, call ID) → call number, and the last number given out.
    call_keys: HashMap<(String, String), CallKey>,
    next_call: CallKey,
    /// Receivers written to during a flush, once per packet, each driven afterwards (reused
    /// buffer).
    touched: Vec<PeerId>,
    /// When the last datagram was handled: the time its pending forwards are sent at.
    last_input: Option<Instant>,
    /// When a keyframe was last requested from a publisher's track layer.
    last_pli: HashMap<(PeerId, Mid, Option<Rid>), Instant>,
    timers: BTreeSet<(Instant, PeerId)>,
    /// Peers whose timers are due in the current round of `handle_timeout` (reused buffer).
    due: Vec<PeerId>,
    out: VecDeque<SfuOutput>,
    forwards: VecDeque<Forward>,
    /// The packets `flush_some` is forwarding (a reused buffer).
    batch: Vec<Forward>,
    /// The events of one `drive` round (a reused buffer).
    events: Vec<Event>,
    /// Voice packets sent on the fast path, for tests and benchmarks.
    voice_fast: u64,
    /// Voice packets opened on the receive side of the fast path, for tests and benchmarks.
    voice_opened: u64,
    timer_passes: u64,
    /// Spent datagram buffers handed back by the shell ([`Sfu::recycle`]), for the fast path.
    spare: Vec<Vec<u8>>,
    /// Scratch list of the fast path's feedback datagrams.
    feedback: Vec<Vec<u8>>,
}

fn random_string(len: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).unwrap_or_default();
    bytes
        .iter()
        .map(|b| ALPHA[*b as usize % ALPHA.len()] as char)
        .collect()
}

fn sdp_json(kind: &str, sdp: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "type": kind, "sdp": sdp })).unwrap_or_default()
}

/// Deflates an SDP's JSON for the data channel (`DcMessage::Sdp` carries it zlib-compressed).
pub fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Inflates an SDP from the data channel, refusing more than 1 MiB of output.
pub fn unzlib(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(1 << 20)
        .read_to_end(&mut out)
        .map_err(|e| format!("failed to inflate sdp: {e}"))?;
    Ok(out)
}

impl Sfu {
    pub fn new(cfg: SfuConfig) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    /// The next thing for the shell to do. Media forwarded from the datagrams handled since the
    /// last call is sent now, at the time of the last of them, [`FLUSH_CHUNK`] packets at a
    /// time: a shell that hands over a batch of datagrams before polling lets every receiver
    /// take several packets in one go.
    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        if self.out.is_empty()
            && !self.forwards.is_empty()
            && let Some(now) = self.last_input
        {
            self.flush_some(now, FLUSH_CHUNK);
        }
        self.out.pop_front()
    }

    /// Hands back the buffer of a datagram the shell has sent: the fast path writes the next
    /// copies into spent buffers, so that forwarding allocates nothing once they circulate.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        // Enough for a round of a large call; more would only hold memory.
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() >= SPARE_CAPACITY {
            self.spare.push(buf);
        }
    }

    /// The earliest time [`Sfu::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.forwards.is_empty() {
            return self.last_input; // media waiting for `poll_output`
        }
        self.timers.first().map(|(t, _)| *t)
    }

    /// How many receiver copies of voice packets went out on the fast path.
    pub fn voice_fast_packets(&self) -> u64 {
        self.voice_fast
    }

    /// Voice packets received on the fast path: opened here, forwarded at once, and handed to
    /// str0m afterwards.
    pub fn voice_opened_packets(&self) -> u64 {
        self.voice_opened
    }

    /// How many times a session ran because its timer came due (each a pass through its str0m
    /// session): a cost figure for tests and benchmarks.
    pub fn timer_passes(&self) -> u64 {
        self.timer_passes
    }

    pub fn session_count(&self) -> usize {
        self.peers.len()
    }

    /// Creates the session's peer connection and waits for its first offer.
    pub fn init_session(&mut self, cfg: SessionConfig, now: Instant) -> Result<(), String> {
        if self.by_session.contains_key(&cfg.session_id) {
            return Err(format!("session {} already exists", cfg.session_id));
        }
        let ufrag = match self.cfg.ufrag_prefix {
            Some(c) => format!("{c}{}", random_string(15)),
            None => random_string(16),
        };
        let creds = str0m::IceCreds {
            ufrag: ufrag.clone(),
            pass: random_string(32),
        };
        let mut builder = Rtc::builder();
        if self.cfg.bandwidth_estimation {
            // rtcd's GCC starts (and bottoms out) at 250 kbps.
            builder = builder.enable_bwe(Some(Bitrate::kbps(250)));
        }
        let builder = builder
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_av1(true)
            .set_send_buffer_video(if self.cfg.nack_buffer_size == 0 {
                256
            } else {
                self.cfg.nack_buffer_size
            });
        let (mut rtc, keys) = crate::keys::build_rtc(builder, now);
        for a in &self.cfg.udp_candidates {
            if let Ok(c) = Candidate::host(*a, "udp") {
                let _ = rtc.add_local_candidate(c);
            }
        }
        for a in &self.cfg.tcp_candidates {
            if let Ok(c) = Candidate::builder()
                .tcp()
                .host(*a)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
            {
                let _ = rtc.add_local_candidate(c);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let dc_signaling = cfg
            .props
            .as_ref()
            .and_then(|p| p.get("dcSignaling"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let av1 = cfg
            .props
            .as_ref()
            .and_then(|p| p.get("av1Support"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let call = (cfg.group_id.clone(), cfg.call_id.clone());
        self.by_session.insert(cfg.session_id.clone(), id);
        self.by_ufrag.insert(ufrag.clone(), id);
        let next_call = &mut self.next_call;
        let call = *self.call_keys.entry(call).or_insert_with(|| {
            *next_call += 1;
            *next_call
        });
        self.calls.entry(call).or_default().push(id);
        self.peers.insert(
            id,
            Peer {
                cfg,
                call,
                rtc,
                ufrag,
                dc: None,
                dc_signaling,
                av1,
                tracks_ready: false,
                pending: None,
                to_add: BTreeSet::new(),
                to_remove: BTreeSet::new(),
                screen_stream_id: None,
                video_stream_id: None,
                out: Vec::new(),
                tracks_in: Vec::new(),
                client_lock: false,
                locked_at: None,
                offered_at: None,
                queued_at: None,
                muted: true,
                layer_rates: HashMap::new(),
                estimate: None,
                selector: LayerSelector::default(),
                switch_to: None,
                vad: None,
                disconnected_since: None,
                next_timeout: None,
                clock: now,
                created: now,
                answered_at: None,
                connected: false,
                addrs: Vec::new(),
                keys,
                fast: Fast::Waiting,
                route: None,
                voice_in: Vec::new(),
            },
        );
        self.drive(id, now);
        Ok(())
    }

    /// Releases everything the session holds. Idempotent.
    pub fn close_session(&mut self, session_id: &str, now: Instant) {
        let Some(id) = self.by_session.remove(session_id) else {
            return;
        };
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        peer.rtc.disconnect();
        crate::metrics::conn_state("closed");
        for t in &peer.tracks_in {
            crate::metrics::track(&peer.cfg.group_id, "in", t.mime, -1.0);
        }
        for t in &peer.out {
            crate::metrics::track(&peer.cfg.group_id, "out", t.mime, -1.0);
        }
        self.by_ufrag.remove(&peer.ufrag);
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        if let Some(t) = peer.next_timeout {
            self.timers.remove(&(t, id));
        }
        if let Some(members) = self.calls.get_mut(&peer.call) {
            members.retain(|p| *p != id);
            if members.is_empty() {
                self.calls.remove(&peer.call);
                self.call_keys
                    .remove(&(peer.cfg.group_id.clone(), peer.cfg.call_id.clone()));
            }
        }
        if self.screens.get(&peer.call) == Some(&id) {
            self.screens.remove(&peer.call);
        }
        self.last_pli.retain(|(p, _, _), _| *p != id);
        // Receivers stop getting its tracks: video is removed with a renegotiation; audio senders
        // are left negotiated and silent, as rtcd does (`ReplaceTrack(nil)` without renegotiation).
        let receivers: Vec<PeerId> = self.peers.keys().copied().collect();
        for r in receivers {
            self.unforward(r, now, |t| t.key.publisher == id);
            if let Some(rp) = self.peers.get_mut(&r) {
                rp.to_add.retain(|k| k.publisher != id);
            }
        }
    }

    /// Stops forwarding the receiver's outgoing tracks that match: video transceivers are queued
    /// for removal (renegotiated), audio ones just stop receiving packets.
    fn unforward(&mut self, receiver: PeerId, now: Instant, matches: impl Fn(&TrackOut) -> bool) {
        let Some(rp) = self.peers.get_mut(&receiver) else {
            return;
        };
        let mut removed = false;
        for o in rp.out.iter().filter(|o| matches(o)) {
            if o.track_type == "screen" || o.track_type == "video" {
                rp.to_remove.insert(o.mid);
                removed = true;
            }
        }
        for o in rp.out.iter().filter(|o| matches(o)) {
            crate::metrics::track(&rp.cfg.group_id, "out", o.mime, -1.0);
        }
        rp.out.retain(|o| !matches(o));
        if removed {
            self.negotiate(receiver, now);
        }
    }

    /// An `rtc` message from the plugin for a session.
    pub fn handle_rtc(&mut self, msg: RtcMessage, now: Instant) -> Result<(), String> {
        let id = *self
            .by_session
            .get(&msg.session_id)
            .ok_or("session not found")?;
        let kind = msg.kind().ok_or("unexpected message type")?;
        let res = match kind {
            RtcMessageType::Sdp => self.on_sdp(id, &msg.data, false, now),
            RtcMessageType::Ice => {
                let v: serde_json::Value = serde_json::from_slice(&msg.data)
                    .map_err(|e| format!("failed to unmarshal ice: {e}"))?;
                let cand = v
                    .get("candidate")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default();
                if !cand.is_empty() {
                    let peer = self.peers.get_mut(&id).ok_or("session not found")?;
                    match Candidate::from_sdp_string(cand) {
                        Ok(c) => peer.rtc.add_remote_candidate(c),
                        Err(e) => return Err(format!("invalid candidate: {e}")),
                    }
                }
                Ok(())
            }
            RtcMessageType::ScreenOn | RtcMessageType::VideoOn => {
                let v: serde_json::Value = serde_json::from_slice(&msg.data)
                    .map_err(|e| format!("invalid payload: {e}"))?;
                let key = if kind == RtcMessageType::ScreenOn {
                    "screenStreamID"
                } else {
                    "videoStreamID"
                };
                let stream = v
                    .get(key)
                    .and_then(|s| s.as_str())
                    .ok_or(format!("missing {key}"))?
                    .to_owned();
                let p = self.peers.get_mut(&id).ok_or("session not found")?;
                if kind == RtcMessageType::VideoOn {
                    p.video_stream_id = Some(stream);
                    return Ok(());
                }
                p.screen_stream_id = Some(stream);
                let call = p.call;
                match self.screens.get(&call) {
                    None => {
                        self.screens.insert(call, id);
                        Ok(())
                    }
                    Some(other) if *other == id => Ok(()),
                    // One sharer per call; rtcd keeps the stream ID but logs an error.
                    Some(_) => Err("call already has a screen sharer".into()),
                }
            }
            RtcMessageType::ScreenOff => {
                let p = self.peers.get_mut(&id).ok_or("session not found")?;
                if self.screens.get(&p.call) != Some(&id) {
                    return Err("screen_off from a session that is not sharing".into());
                }
                self.screens.remove(&p.call);
                p.screen_stream_id = None;
                let screen_mids: Vec<Mid> = p
                    .tracks_in
                    .iter()
                    .filter(|t| t.track_type == "screen")
                    .map(|t| t.mid)
                    .collect();
                for t in p.tracks_in.iter().filter(|t| t.track_type == "screen") {
                    crate::metrics::track(&p.cfg.group_id, "in", t.mime, -1.0);
                }
                p.tracks_in.retain(|t| t.track_type != "screen");
                // Forwarded screen-audio is left in place, as in rtcd.
                let receivers: Vec<PeerId> =
                    self.peers.keys().copied().filter(|r| *r != id).collect();
                for r in receivers {
                    self.unforward(r, now, |t| {
                        t.key.publisher == id && screen_mids.contains(&t.key.mid)
                    });
                    if let Some(rp) = self.peers.get_mut(&r) {
                        rp.to_add
                            .retain(|k| !(k.publisher == id && screen_mids.contains(&k.mid)));
                    }
                }
                Ok(())
            }
            RtcMessageType::Mute | RtcMessageType::Unmute => {
                // Before the voice track exists, mute and unmute are ignored (as in rtcd).
                let has_voice = |p: &&mut Peer| p.tracks_in.iter().any(|t| t.track_type == "voice");
                if let Some(p) = self.peers.get_mut(&id).filter(has_voice) {
                    p.muted = kind == RtcMessageType::Mute;
                    if let Some(vad) = p.vad.as_mut().filter(|_| p.muted) {
                        // rtcd resets the monitor and always reports voice off.
                        vad.reset();
                        self.out.push_back(SfuOutput::Vad {
                            session_id: msg.session_id.clone(),
                            on: false,
                        });
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if res.is_err()
            && let Some(p) = self.peers.get(&id)
        {
            let kind = if kind == RtcMessageType::Ice {
                "ice"
            } else {
                "signaling"
            };
            crate::metrics::error(&p.cfg.group_id, kind);
        }
        self.drive(id, now);
        self.flush_forwards(now);
        res
    }

    /// A datagram (or TCP frame) that arrived on one of the SFU's sockets. The media it carries
    /// is forwarded by the next [`Sfu::poll_output`].
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let id = match self.by_addr.get(&(proto, source)) {
            Some(id) => *id,
            None => {
                let Some(id) = crate::stun::local_ufrag(data)
                    .and_then(|u| self.by_ufrag.get(u))
                    .copied()
                else {
                    return; // unknown non-STUN traffic is dropped
                };
                self.by_addr.insert((proto, source), id);
                if let Some(p) = self.peers.get_mut(&id) {
                    p.addrs.push((proto, source));
                }
                id
            }
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if self.cfg.voice_fast_path
            && !peer.voice_in.is_empty()
            && is_rtp(data)
            && self.open_voice(id, now, data)
        {
            self.last_input = Some(now);
            return;
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(session_id = peer.session_id(), error = %e, "dropping unusable datagram");
        }
        self.drive(id, now);
        // What this datagram forwards waits for `poll_output`, with that of the rest of the batch.
        self.last_input = Some(now);
    }

    /// The receive side of the voice fast path: a datagram of one of the publisher's opened
    /// voice streams is checked, decrypted, counted for the feedback on it
    /// ([`crate::feedback`]) and queued for forwarding here; str0m never sees it. `false` if it
    /// is not such a datagram: str0m takes it.
    fn open_voice(&mut self, id: PeerId, now: Instant, data: &[u8]) -> bool {
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Some(vi) = p.voice_in.iter().position(|v| v.ssrc == ssrc && v.engaged) else {
            return false;
        };
        // A packet of an opened stream that cannot be read or has a payload type the session
        // did not negotiate is dropped, as str0m drops it; handing it over would also restart
        // str0m's register on the stream and so its reports.
        let Some(rtp) = parse_rtp(data, p.voice_in[vi].level_id, p.voice_in[vi].twcc_id) else {
            return true;
        };
        let codec = match p.voice_in[vi].codec {
            (pt, codec) if pt == rtp.pt => codec,
            _ => match codec_of(&p.rtc, rtp.pt.into()) {
                Some(codec) => codec,
                None => return true,
            },
        };
        let Fast::Ready(fp) = &mut p.fast else {
            return false;
        };
        let v = &mut p.voice_in[vi];
        // A replay, or a packet too old to tell, is dropped, as str0m would drop it.
        let Some(index) = v.replay.index(rtp.seq).filter(|i| v.replay.is_new(*i)) else {
            return true;
        };
        let mut payload = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SPARE_CAPACITY));
        if !fp.open(data, &rtp, index, &mut payload) {
            // Forged or corrupted: str0m would refuse it too.
            self.spare.push(payload);
            return true;
        }
        v.replay.accept(index);
        let arrival = now.saturating_duration_since(p.created);
        v.reception.record(index, rtp.timestamp, arrival);
        let first_feedback = match rtp.twcc {
            Some(seq) => {
                let first = fp.twcc.oldest().is_none();
                fp.twcc.record(seq, arrival, now);
                first
            }
            None => false,
        };
        self.voice_opened += 1;
        let mid = v.mid;
        // VAD listens even while muted, as rtcd does.
        if let Some(on) = p
            .vad
            .as_mut()
            .zip(rtp.level)
            .and_then(|(vad, (level, _))| vad.push(level.unsigned_abs(), now))
        {
            self.out.push_back(SfuOutput::Vad {
                session_id: p.cfg.session_id.clone(),
                on,
            });
        }
        if p.muted {
            self.spare.push(payload);
        } else {
            self.forwards.push_back(Forward {
                from: id,
                call: p.call,
                codec,
                mid,
                rid: None,
                seq: index,
                marker: rtp.marker,
                timestamp: rtp.timestamp,
                ext: Ext::Level(rtp.level.map(|l| l.0), rtp.level.map(|l| l.1)),
                payload: Payload::Opened(payload, None),
            });
        }
        if first_feedback {
            // It goes out on a pass that comes anyway if one does (see AUDIO_ONLY_SLACK).
            self.wake_by(id, now + crate::feedback::FEEDBACK_LIMIT);
        }
        true
    }

    /// Sends the receiver reports and transport-wide feedback due on the voice the peer's fast
    /// path opens ([`FastPath::feedback`]); `flush` sends all that waits.
    fn send_feedback(&mut self, id: PeerId, now: Instant, flush: bool) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.voice_in.is_empty() {
            return;
        }
        let Fast::Ready(fp) = &mut p.fast else {
            return;
        };
        // Without a route (not seen yet) the feedback is written and dropped all the same, so
        // that its deadlines move on rather than come due again at once.
        let mut datagrams = std::mem::take(&mut self.feedback);
        fp.feedback(&mut p.voice_in, now, flush, &mut datagrams);
        if let Some(route) = p.route {
            self.out
                .extend(datagrams.drain(..).map(|contents| SfuOutput::Transmit {
                    proto: route.proto,
                    source: route.source,
                    destination: route.destination,
                    contents,
                }));
        }
        datagrams.clear();
        self.feedback = datagrams;
    }

    /// Moves the peer's timer to `t` if it is due later.
    fn wake_by(&mut self, id: PeerId, t: Instant) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.next_timeout.is_some_and(|n| n <= t) {
            return;
        }
        if let Some(old) = p.next_timeout.replace(t) {
            self.timers.remove(&(old, id));
        }
        self.timers.insert((t, id));
    }

    /// Runs every peer whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Peers whose timers come due again at `now` run again, but in bounded rounds: a timer
        // that str0m keeps re-arming at `now` (its bandwidth estimator does with a zero RTT)
        // must not hold this call forever; the shell comes straight back, as `poll_timeout` is due.
        let mut due = std::mem::take(&mut self.due);
        for _ in 0..TIMEOUT_ROUNDS {
            while let Some(&(t, id)) = self.timers.first()
                && t <= now
            {
                self.timers.pop_first();
                due.push(id);
            }
            if due.is_empty() {
                break;
            }
            for id in due.drain(..) {
                self.run_timeout(id, now);
            }
        }
        self.due = due;
        self.flush_forwards(now);
    }

    /// One peer's due timer: str0m's, and the session's own deadlines.
    fn run_timeout(&mut self, id: PeerId, now: Instant) {
        self.timer_passes += 1;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.next_timeout = None;
        p.timeout(now);
        self.send_feedback(id, now, false);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.client_lock
            && p.locked_at
                .is_some_and(|t| now.saturating_duration_since(t) >= CLIENT_LOCK_LIMIT)
        {
            tracing::warn!(session_id = %p.cfg.session_id, "data-channel lock held too long: released");
            crate::metrics::error(&p.cfg.group_id, "signaling_lock_timeout");
            p.client_lock = false;
            self.negotiate(id, now);
        }
        if let Some(p) = self.peers.get_mut(&id)
            && p.pending.is_some()
            && p.offered_at
                .is_some_and(|t| now.saturating_duration_since(t) >= ANSWER_TIMEOUT)
        {
            // Dropping the pending offer rolls it back; its new tracks are queued again
            // rather than lost (rtcd drops them).
            tracing::warn!(session_id = %p.cfg.session_id, "no answer to the server offer: retrying");
            crate::metrics::error(&p.cfg.group_id, "signaling");
            p.pending = None;
            let retry: Vec<TrackKey> = p
                .out
                .iter()
                .filter(|o| o.state == OutState::Negotiating)
                .map(|o| o.key)
                .collect();
            for o in p.out.iter().filter(|o| o.state == OutState::Negotiating) {
                crate::metrics::track(&p.cfg.group_id, "out", o.mime, -1.0);
            }
            p.out.retain(|o| o.state != OutState::Negotiating);
            p.to_add.extend(retry);
            self.negotiate(id, now);
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(since) = p.disconnected_since
            && (now.duration_since(since) >= DISCONNECTED_TIMEOUT || !p.rtc.is_alive())
        {
            let sid = p.session_id().to_owned();
            self.out.push_back(SfuOutput::SessionEnded {
                session_id: sid.clone(),
                reason: "ice failed".into(),
            });
            self.close_session(&sid, now);
            return;
        }
        self.drive(id, now);
    }

    /// A JSON `RTCSessionDescription` from the client, over the plugin (`via_dc` false) or the
    /// data channel. Offers are answered on the path they came from.
    fn on_sdp(
        &mut self,
        id: PeerId,
        json: &[u8],
        via_dc: bool,
        now: Instant,
    ) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("failed to unmarshal sdp: {e}"))?;
        let sdp = v.get("sdp").and_then(|s| s.as_str()).unwrap_or_default();
        match v.get("type").and_then(|t| t.as_str()) {
            Some("offer") => self.on_offer(id, sdp, via_dc, now),
            Some("answer") => self.on_answer(id, sdp, now),
            other => Err(format!("unexpected sdp type: {other:?}")),
        }
    }

    fn on_offer(
        &mut self,
        id: PeerId,
        sdp: &str,
        via_dc: bool,
        now: Instant,
    ) -> Result<(), String> {
        let peer = self.peers.get_mut(&id).ok_or("session not found")?;
        // The server is the impolite peer: while its own offer is out, it ignores the client's.
        if peer.pending.is_some() {
            return Err("ignoring client offer: server offer in flight".into());
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("invalid offer: {e}"))?;
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("failed to accept offer: {e}"))?;
        let json = sdp_json("answer", &answer.to_sdp_string());
        let first = peer.dc.is_none() && !via_dc;
        if first {
            // The data channel's open time is measured from the first answer (rtcd's dc_open_time).
            peer.answered_at.get_or_insert(now);
        }
        if via_dc {
            Self::dc_send(peer, &DcMessage::Sdp(zlib(&json)));
        } else {
            let sid = peer.session_id().to_owned();
            self.signal(&sid, RtcMessageType::Sdp, json);
        }
        if first {
            self.trickle_candidates(id);
        }
        Ok(())
    }

    fn on_answer(&mut self, id: PeerId, sdp: &str, now: Instant) -> Result<(), String> {
        let peer = self.peers.get_mut(&id).ok_or("session not found")?;
        let pending = peer
            .pending
            .take()
            .ok_or("unexpected answer: no offer pending")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("invalid answer: {e}"))?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("failed to accept answer: {e}"))?;
        for t in peer.out.iter_mut() {
            t.state = OutState::Open;
        }
        if let Some(t) = peer.offered_at.take() {
            let held = now.saturating_duration_since(t).as_secs_f64();
            crate::metrics::seconds(crate::metrics::LOCK_LOCKED_TIME, &peer.cfg.group_id, held);
        }
        self.negotiate(id, now);
        Ok(())
    }

    /// Sends the host candidates as trickle ICE, as rtcd does after its first answer.
    fn trickle_candidates(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let sid = peer.session_id().to_owned();
        let cands: Vec<String> = self
            .cfg
            .udp_candidates
            .iter()
            .filter_map(|a| Candidate::host(*a, "udp").ok())
            .chain(self.cfg.tcp_candidates.iter().filter_map(|a| {
                Candidate::builder()
                    .tcp()
                    .host(*a)
                    .tcptype(str0m::net::TcpType::Passive)
                    .build()
                    .ok()
            }))
            .map(|c| c.to_sdp_string())
            .collect();
        for c in cands {
            let c = c.strip_prefix("a=").unwrap_or(&c).to_owned();
            let body = serde_json::json!({
                "candidate": { "candidate": c, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null },
                "type": "candidate",
            });
            self.signal(
                &sid,
                RtcMessageType::Ice,
                serde_json::to_vec(&body).unwrap_or_default(),
            );
        }
    }

    fn signal(&mut self, session_id: &str, ty: RtcMessageType, data: Vec<u8>) {
        self.out.push_back(SfuOutput::Signal(RtcMessage {
            session_id: session_id.to_owned(),
            ..RtcMessage::new(ty, data)
        }));
    }

    fn dc_send(peer: &mut Peer, msg: &DcMessage) {
        if let Some(mut ch) = peer.dc.and_then(|id| peer.rtc.channel(id))
            && let Err(e) = ch.write(true, &msg.encode())
        {
            tracing::warn!(session_id = %peer.cfg.session_id, error = %e, "data channel write failed");
        }
    }

    /// Makes one server offer for every queued track change, if the session is ready for it.
    fn negotiate(&mut self, id: PeerId, now: Instant) {
        let publishers: HashMap<TrackKey, (String, TrackIn, bool)> = {
            let Some(peer) = self.peers.get(&id) else {
                return;
            };
            if peer.to_add.is_empty() && peer.to_remove.is_empty() {
                return;
            }
            if peer.dc.is_none() || peer.pending.is_some() || peer.client_lock {
                // The signaling "lock" is busy: the wait shows in the grab-time histogram.
                if let Some(p) = self.peers.get_mut(&id) {
                    p.queued_at.get_or_insert(now);
                }
                return;
            }
            peer.to_add
                .iter()
                .filter_map(|k| {
                    let p = self.peers.get(&k.publisher)?;
                    let t = p.tracks_in.iter().find(|t| t.mid == k.mid)?;
                    Some((*k, (p.session_id().to_owned(), t.clone(), p.av1)))
                })
                .collect()
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let keys: Vec<TrackKey> = std::mem::take(&mut peer.to_add).into_iter().collect();
        let removals: Vec<Mid> = std::mem::take(&mut peer.to_remove).into_iter().collect();
        let mut api = peer.rtc.sdp_api();
        for mid in removals {
            api.stop_media(mid);
        }
        let mut added: Vec<TrackOut> = Vec::new();
        for k in keys {
            let Some((sender, t, sender_av1)) = publishers.get(&k) else {
                continue;
            };
            // Codec per receiver, as rtcd: the AV1 variant when both sides support AV1, else VP8.
            if (t.mime == "video/AV1" && !peer.av1)
                || (t.mime == "video/VP8" && *sender_av1 && peer.av1)
            {
                continue;
            }
            if peer.out.iter().any(|o| o.key == k) {
                continue; // never the same track twice
            }
            let has_screen = peer
                .out
                .iter()
                .chain(added.iter())
                .any(|o| o.track_type == "screen");
            if t.track_type == "screen" && has_screen {
                continue; // one screen per receiver
            }
            let mid = api.add_media(
                t.kind,
                Direction::SendOnly,
                Some(sender.clone()),
                Some(t.track_id.clone()),
                None,
            );
            added.push(TrackOut {
                key: k,
                mid,
                track_type: t.track_type,
                state: OutState::Negotiating,
                // A new simulcast track starts on `h` only if this receiver's estimate already
                // affords it (so late joiners start on `l`); a layer switch names its layer.
                rid: t.simulcast.then(|| {
                    let initial = Layer::initial(peer.estimate);
                    let layer = if t.track_type == "screen" {
                        peer.switch_to.take().unwrap_or(initial)
                    } else {
                        initial
                    };
                    Rid::from(layer.rid())
                }),
                mime: t.mime,
                voice: None,
                next_sync: 0,
                sync_pending: false,
                seq_base: None,
            });
            crate::metrics::track(&peer.cfg.group_id, "out", t.mime, 1.0);
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        if added
            .iter()
            .any(|o| o.track_type == "screen" && o.rid.is_some())
        {
            // Probe towards rtcd's ceiling (1.5 × the `h` rate) so the estimate can reach `h`.
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(0), Bitrate::bps(3 * RATE_H / 2));
        }
        peer.out.extend(added);
        peer.pending = Some(pending);
        peer.offered_at = Some(now);
        let waited = peer
            .queued_at
            .take()
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        crate::metrics::seconds(crate::metrics::LOCK_GRAB_TIME, &peer.cfg.group_id, waited);
        // str0m may not wake an idle peer for a long time: make sure the answer deadline is checked.
        self.timers.insert((now + ANSWER_TIMEOUT, id));
        // MediaMap first, so the client knows each new transceiver's type before the offer.
        let map: Vec<(String, TrackInfo)> = peer
            .out
            .iter()
            .map(|o| {
                (
                    o.mid.to_string(),
                    TrackInfo {
                        track_type: o.track_type.to_owned(),
                        sender_id: peer.cfg.session_id.clone(),
                    },
                )
            })
            .collect();
        Self::dc_send(peer, &DcMessage::MediaMap(map));
        let json = sdp_json("offer", &offer.to_sdp_string());
        if peer.dc_signaling {
            Self::dc_send(peer, &DcMessage::Sdp(zlib(&json)));
        } else {
            let sid = peer.session_id().to_owned();
            self.signal(&sid, RtcMessageType::Sdp, json);
        }
        self.drive(id, now);
    }

    fn on_dc(&mut self, id: PeerId, binary: bool, data: &[u8], now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !binary {
            if data == calls_proto::dc::LEGACY_TEXT_PING.as_bytes()
                && let Some(mut ch) = peer.dc.and_then(|c| peer.rtc.channel(c))
            {
                let _ = ch.write(false, calls_proto::dc::LEGACY_TEXT_PONG.as_bytes());
            }
            return;
        }
        let msg = match DcMessage::decode(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(session_id = %peer.cfg.session_id, error = %e, "bad data-channel message");
                return;
            }
        };
        match msg {
            DcMessage::Ping => Self::dc_send(peer, &DcMessage::Pong),
            DcMessage::Lock(_) => {
                // Try-lock: refused while the server's own offer is out or the client holds it.
                let granted = peer.pending.is_none() && !peer.client_lock;
                if granted {
                    peer.client_lock = true;
                    peer.locked_at = Some(now);
                    self.timers.insert((now + CLIENT_LOCK_LIMIT, id));
                }
                Self::dc_send(peer, &DcMessage::Lock(Some(granted)));
            }
            DcMessage::Unlock => {
                if peer.client_lock
                    && let Some(t) = peer.locked_at
                {
                    let held = now.saturating_duration_since(t).as_secs_f64();
                    crate::metrics::seconds(
                        crate::metrics::LOCK_LOCKED_TIME,
                        &peer.cfg.group_id,
                        held,
                    );
                }
                peer.client_lock = false;
                self.negotiate(id, now);
            }
            DcMessage::Sdp(z) => {
                let res = unzlib(&z).and_then(|json| self.on_sdp(id, &json, true, now));
                if let Err(e) = res {
                    tracing::warn!(error = %e, "data-channel sdp failed");
                }
            }
            DcMessage::LossRate(v) if v.is_finite() => {
                crate::metrics::seconds(crate::metrics::CLIENT_LOSS, &peer.cfg.group_id, v)
            }
            DcMessage::RoundTripTime(v) if v.is_finite() => {
                crate::metrics::seconds(crate::metrics::CLIENT_RTT, &peer.cfg.group_id, v)
            }
            DcMessage::Jitter(v) if v.is_finite() => {
                crate::metrics::seconds(crate::metrics::CLIENT_JITTER, &peer.cfg.group_id, v)
            }
            DcMessage::LossRate(_) | DcMessage::RoundTripTime(_) | DcMessage::Jitter(_) => {}
            DcMessage::Pong | DcMessage::MediaMap(_) => {}
        }
    }

    /// Drains a peer's outputs until its next timeout.
    fn drive(&mut self, id: PeerId, now: Instant) {
        self.drive_paced(id, now, 0);
    }

    /// [`Sfu::drive`] after `written` packets were written to the peer: how many of the
    /// pacer's timeouts it takes in place (after an RTP packet, and on the pacer's `Immediate`
    /// deadline). [`PACER_STEPS`],
    /// or for an audio-only peer one per packet written beyond the first: its pacer timeout
    /// otherwise waits [`AUDIO_ONLY_SLACK`], and stepping it after each voice packet str0m
    /// sends it (one a second per stream, [`crate::fast::SYNC_EVERY`]) cost a pass of its own
    /// (+3.4% instructions at 1 x 200, 2 speakers).
    fn drive_paced(&mut self, id: PeerId, now: Instant, written: usize) {
        let pacer_steps = match self.peers.get(&id) {
            Some(p) if p.audio_only() => written.saturating_sub(1).min(PACER_STEPS),
            _ => PACER_STEPS,
        };
        // Handling an event can queue more output for this peer (a data-channel answer, a
        // keyframe request), so drain again until a round produces no event. Bounded, so that a
        // peer that keeps producing events cannot hold the loop.
        let mut steps = 0;
        for _ in 0..64 {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let mut events = std::mem::take(&mut self.events);
            let mut released = false;
            loop {
                match peer.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        if let Some(r) =
                            Route::of_media(t.proto, t.source, t.destination, &t.contents)
                        {
                            peer.route = Some(r);
                        }
                        // An RTP packet came out of str0m's pacer, which is now shut until
                        // its next timeout: take that timeout before asking, instead of a
                        // poll that would only say so. That poll walks the whole session
                        // down to every stream's deadline for nothing (~4k instructions per
                        // packet at 1 x 200 with a screen share). The timeout is the one
                        // str0m would ask for, 1 µs on from its last, so every packet still
                        // gets a send time of its own for the estimator.
                        if steps < pacer_steps && crate::fast::is_rtp(&t.contents) {
                            steps += 1;
                            peer.timeout((peer.clock + PACER_TICK).max(now));
                        } else {
                            released = true;
                        }
                        self.out.push_back(SfuOutput::Transmit {
                            proto: t.proto,
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.into(),
                        })
                    }
                    // str0m's pacer shuts after every packet it releases and asks for a
                    // timeout 1 µs on to reopen (with estimation on, for every kind of media).
                    // That timeout is taken here and now, while the session is in the cache,
                    // rather than in a timer pass of its own per packet: 59k passes in 2 s at
                    // 1 x 200 with a screen share (`examples/forward.rs --screen true`). The
                    // pacer's own deadlines (a paced video queue in debt) still wait.
                    Ok(Output::Timeout(t))
                        if released
                            && steps < pacer_steps
                            && matches!(
                                peer.rtc.last_timeout_reason(),
                                str0m::Reason::Pacer(str0m::PacerReason::Immediate)
                            ) =>
                    {
                        steps += 1;
                        released = false;
                        peer.timeout(t.max(now));
                    }
                    Ok(Output::Timeout(t)) => {
                        let mut t = t.max(now);
                        let reason = peer.rtc.last_timeout_reason();
                        if let Some(d) = slack(reason, peer.audio_only(), || peer.send_idle()) {
                            t = t.max(now + d);
                        }
                        if let Fast::Ready(fp) = &peer.fast
                            && let Some(f) =
                                fp.feedback_deadline(peer.voice_in.iter().any(|v| v.engaged))
                        {
                            t = t.min(f.max(now));
                        }
                        // Most polls leave the deadline where it was: keep the entry then.
                        if peer.next_timeout != Some(t) {
                            if let Some(old) = peer.next_timeout.replace(t) {
                                self.timers.remove(&(old, id));
                            }
                            self.timers.insert((t, id));
                        }
                        break;
                    }
                    Ok(Output::Event(e)) => events.push(e),
                    Err(e) => {
                        tracing::warn!(session_id = %peer.cfg.session_id, error = %e, "peer connection failed");
                        peer.rtc.disconnect();
                        peer.disconnected_since.get_or_insert(now);
                        break;
                    }
                }
            }
            if events.is_empty() {
                self.events = events;
                return;
            }
            // Forwarding a packet queues nothing on its own peer's connection, so a round of
            // nothing but media needs no second pass: that pass cost a third of the work per
            // packet received (every str0m poll walks SCTP, DTLS, ICE and the streams).
            let again = events.iter().any(|e| !matches!(e, Event::RtpPacket(_)));
            for e in events.drain(..) {
                self.on_event(id, e, now);
            }
            self.events = events;
            if !again {
                return;
            }
        }
    }

    fn on_event(&mut self, id: PeerId, e: Event, now: Instant) {
        match e {
            Event::IceConnectionStateChange(s) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if matches!(
                        s,
                        IceConnectionState::Connected | IceConnectionState::Completed
                    ) && !p.connected
                    {
                        p.connected = true;
                        crate::metrics::conn_state("connected");
                        let secs = now.saturating_duration_since(p.created).as_secs_f64();
                        crate::metrics::seconds(
                            crate::metrics::CONNECTION_TIME,
                            &p.cfg.group_id,
                            secs,
                        );
                    }
                    if s == IceConnectionState::Disconnected {
                        crate::metrics::conn_state("disconnected");
                        p.disconnected_since.get_or_insert(now);
                    } else if matches!(
                        s,
                        IceConnectionState::Connected | IceConnectionState::Completed
                    ) {
                        p.disconnected_since = None;
                    }
                }
            }
            Event::ChannelOpen(cid, _label) => {
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                if let (None, Some(t)) = (p.dc, p.answered_at) {
                    let secs = now.saturating_duration_since(t).as_secs_f64();
                    crate::metrics::seconds(crate::metrics::DC_OPEN_TIME, &p.cfg.group_id, secs);
                }
                p.dc = Some(cid);
                if !p.tracks_ready {
                    p.tracks_ready = true;
                    // Every track already published in the call, queued atomically with readiness.
                    let call = p.call;
                    let keys: Vec<TrackKey> = self.calls[&call]
                        .iter()
                        .filter(|o| **o != id)
                        .flat_map(|o| {
                            self.peers[o].tracks_in.iter().map(|t| TrackKey {
                                publisher: *o,
                                mid: t.mid,
                            })
                        })
                        .collect();
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.to_add.extend(keys);
                    }
                    self.negotiate(id, now);
                }
            }
            Event::ChannelData(d) => self.on_dc(id, d.binary, &d.data, now),
            Event::MediaAdded(m) => {
                if !matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) {
                    return;
                }
                self.on_track(
                    id,
                    m.mid,
                    m.kind,
                    m.simulcast.is_some_and(|s| !s.recv.is_empty()),
                    now,
                );
            }
            Event::RtpPacket(pkt) => {
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                let ssrc = *pkt.header.ssrc;
                if p.voice_in
                    .iter()
                    .any(|v| v.ssrc == ssrc && *pkt.seq_no <= v.replay.max())
                {
                    return; // forwarded on the fast path when it arrived
                }
                let Some((mid, rid)) = p
                    .rtc
                    .direct_api()
                    .stream_rx(&pkt.header.ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                let track = p.tracks_in.iter().find(|t| t.mid == mid);
                let voice = track.is_some_and(|t| t.track_type == "voice");
                let layer = Layer::from_rid(rid.as_deref().unwrap_or(""));
                if let Some(layer) =
                    layer.filter(|_| track.is_some_and(|t| t.simulcast && t.track_type == "screen"))
                {
                    p.layer_rates
                        .entry((mid, layer))
                        .or_insert_with(|| RateMonitor::for_layer(layer))
                        .push(now, pkt.payload.len());
                }
                // Unknown to the session, it is not forwarded; VAD still hears it, as before
                // the codec was looked up here.
                let codec = codec_of(&p.rtc, pkt.header.payload_type);
                if voice {
                    // VAD listens even while muted, as rtcd does.
                    let level = pkt.header.ext_vals.audio_level;
                    if let Some(on) = p
                        .vad
                        .as_mut()
                        .zip(level)
                        .and_then(|(vad, l)| vad.push(l.unsigned_abs(), now))
                    {
                        self.out.push_back(SfuOutput::Vad {
                            session_id: p.cfg.session_id.clone(),
                            on,
                        });
                    }
                    if let Some(codec) = codec.filter(|_| self.cfg.voice_fast_path) {
                        let pt = *pkt.header.payload_type;
                        open_voice_stream(p, ssrc, mid, (pt, codec), *pkt.seq_no);
                    }
                    if p.muted {
                        return;
                    }
                }
                let Some(codec) = codec else {
                    return;
                };
                let call = p.call;
                self.forwards
                    .push_back(Forward::from_str0m(id, call, codec, mid, rid, pkt));
            }
            Event::KeyframeRequest(req) => self.on_keyframe_request(id, req.mid, now),
            // The publisher's SR on a stream the fast path reports on: its reports quote it.
            Event::SenderFeedback(f) => {
                if let Some(v) = self.peers.get_mut(&id).and_then(|p| {
                    p.voice_in
                        .iter_mut()
                        .find(|v| v.engaged && v.ssrc == *f.sender_info.ssrc)
                }) {
                    v.reception
                        .sender_report(f.sender_info.ntp_time, f.received_at);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.on_estimate(id, estimate.as_u64(), now)
            }
            // The peer closed DTLS or its SCTP association died: the session is over.
            Event::Closed => {
                if let Some(sid) = self.peers.get(&id).map(|p| p.cfg.session_id.clone()) {
                    self.out.push_back(SfuOutput::SessionEnded {
                        session_id: sid.clone(),
                        reason: "peer closed the connection".into(),
                    });
                    self.close_session(&sid, now);
                }
            }
            _ => {}
        }
    }

    /// A publisher's new incoming track: classify it (voice, screen-audio, screen, video) by its
    /// stream ID, as rtcd does, and queue it for every ready receiver of the call.
    fn on_track(&mut self, id: PeerId, mid: Mid, kind: MediaKind, simulcast: bool, now: Instant) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let stream = p
            .rtc
            .media(mid)
            .map(|m| m.stream_id().to_owned())
            .unwrap_or_default();
        let sharing = self.screens.get(&p.call) == Some(&id);
        let is_screen = sharing && p.screen_stream_id.as_deref() == Some(stream.as_str());
        let track_type = match kind {
            MediaKind::Audio if is_screen => "screen-audio",
            MediaKind::Audio => "voice",
            MediaKind::Video if is_screen => "screen",
            MediaKind::Video if p.video_stream_id.as_deref() == Some(stream.as_str()) => "video",
            MediaKind::Video => {
                // screen_on/video_on must come first (rtcd: "received unexpected video track").
                tracing::warn!(session_id = %p.cfg.session_id, stream, "received unexpected video track");
                return;
            }
        };
        let codec = p
            .rtc
            .media(mid)
            .and_then(|m| m.remote_pts().first().copied())
            .and_then(|pt| {
                p.rtc
                    .codec_config()
                    .iter()
                    .find(|c| c.pt() == pt)
                    .map(|c| c.spec().codec)
            });
        let mime = match kind {
            MediaKind::Audio => "audio/opus",
            MediaKind::Video => mime(codec),
        };
        // One slot per type, codec and publisher (rtcd keys video by `mime_rid`): a second voice
        // track replaces the first, while a VP8 screen and its AV1 variant coexist.
        for old in p
            .tracks_in
            .iter()
            .filter(|t| t.track_type == track_type && t.mime == mime)
        {
            crate::metrics::track(&p.cfg.group_id, "in", old.mime, -1.0);
        }
        p.tracks_in
            .retain(|t| !(t.track_type == track_type && t.mime == mime));
        crate::metrics::track(&p.cfg.group_id, "in", mime, 1.0);
        if track_type != "voice" && p.voice_in.iter().any(|v| v.engaged) {
            // Its transport-wide sequence numbers now interleave other media with the voice:
            // str0m must see every packet again, and its feedback takes over from here.
            self.send_feedback(id, now, true);
            let Some(p) = self.peers.get_mut(&id) else {
                return;
            };
            for i in 0..p.voice_in.len() {
                p.hand_back(i);
            }
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let track_id = format!("{track_type}_{}_{}", p.cfg.session_id, random_string(8));
        p.tracks_in.push(TrackIn {
            mid,
            kind,
            track_id,
            track_type,
            mime,
            simulcast,
        });
        if track_type == "voice" {
            p.muted = false;
            let levels = p.rtc.media(mid).is_some_and(|m| {
                m.remote_extmap()
                    .id_of(str0m::rtp::Extension::AudioLevel)
                    .is_some()
            });
            p.vad = levels.then(crate::vad::Vad::default);
        }
        let key = TrackKey { publisher: id, mid };
        let call = p.call;
        let receivers: Vec<PeerId> = self.calls[&call]
            .iter()
            .copied()
            .filter(|o| *o != id)
            .collect();
        for r in receivers {
            if let Some(rp) = self.peers.get_mut(&r)
                && rp.tracks_ready
            {
                rp.to_add.insert(key);
            }
            self.negotiate(r, now);
        }
    }

    /// A receiver asked for a keyframe on one of its outgoing tracks: ask the publisher for one on
    /// the layer this receiver gets, at most once per second per publisher layer (rtcd #154).
    fn on_keyframe_request(&mut self, receiver: PeerId, out_mid: Mid, now: Instant) {
        let Some(o) = self
            .peers
            .get(&receiver)
            .and_then(|r| r.out.iter().find(|o| o.mid == out_mid))
            .cloned()
        else {
            return;
        };
        let slot = (o.key.publisher, o.key.mid, o.rid);
        if self
            .last_pli
            .get(&slot)
            .is_some_and(|t| now.saturating_duration_since(*t) < PLI_INTERVAL)
        {
            return;
        }
        let Some(p) = self.peers.get_mut(&o.key.publisher) else {
            return;
        };
        let mut api = p.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(o.key.mid, o.rid) else {
            return;
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        self.last_pli.insert(slot, now);
        self.drive(o.key.publisher, now);
    }

    /// Writes collected packets to every receiver of their track (and layer), then drives each
    /// receiver once, so a burst of packets costs one poll per receiver rather than one per packet.
    /// A receiver's new bandwidth estimate: maybe switch its screen layer. A switch is carried
    /// out as rtcd does it, remove + add, here in one renegotiation. Camera video keeps the
    /// layer it was added with (rtcd switches only screen share).
    fn on_estimate(&mut self, id: PeerId, estimate: u64, now: Instant) {
        let Some(rp) = self.peers.get_mut(&id) else {
            return;
        };
        rp.estimate = Some(estimate);
        let Some((key, current)) = rp.out.iter().find_map(|o| {
            let layer = Layer::from_rid(o.rid.as_deref()?)?;
            (o.track_type == "screen" && o.state == OutState::Open).then_some((o.key, layer))
        }) else {
            return;
        };
        let Some(publisher) = self.peers.get(&key.publisher) else {
            return;
        };
        let rate = |l: Layer| {
            publisher
                .layer_rates
                .get(&(key.mid, l))
                .and_then(|m| m.rate(now))
        };
        let (high, low) = (rate(Layer::High), rate(Layer::Low));
        tracing::trace!(estimate, ?high, ?low, ?current, "bandwidth estimate");
        let Some(rp) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(target) = rp
            .selector
            .on_estimate(now, estimate, current, |l| match l {
                Layer::High => high,
                Layer::Low => low,
            })
        else {
            return;
        };
        // Only switch to a layer that is really arriving (rtcd #191).
        let arriving = match target {
            Layer::High => high.is_some_and(|r| r > 0),
            Layer::Low => low.is_some_and(|r| r > 0),
        };
        if !arriving {
            return;
        }
        rp.selector.switched(now);
        rp.switch_to = Some(target);
        rp.to_add.insert(key);
        crate::metrics::layer_switch(target.rid());
        self.unforward(id, now, |o| o.key == key);
    }

    fn flush_forwards(&mut self, now: Instant) {
        while !self.forwards.is_empty() {
            self.flush_some(now, usize::MAX);
        }
    }

    /// Forwards the oldest `limit` pending packets (and whatever that produces) to every
    /// receiver.
    fn flush_some(&mut self, now: Instant, limit: usize) {
        // From the front of a deque: splitting a Vec here copied all the packets behind the
        // chunk, every chunk (3% of the daemon's CPU at 500 calls x 2).
        let mut batch = std::mem::take(&mut self.batch);
        let n = limit.min(self.forwards.len());
        batch.extend(self.forwards.drain(..n));
        let mut touched = std::mem::take(&mut self.touched);
        for f in &mut batch {
            let (call, codec) = (f.call, f.codec);
            let audio = matches!(codec, Codec::Opus);
            let key = TrackKey {
                publisher: f.from,
                mid: f.mid,
            };
            let Some(members) = self.calls.get(&call) else {
                continue;
            };
            for &r in members {
                if r == f.from {
                    continue;
                }
                let Some(rp) = self.peers.get_mut(&r) else {
                    continue;
                };
                let Some(oi) = rp.out.iter().position(|o| {
                    o.key == key && o.state == OutState::Open && (o.rid.is_none() || o.rid == f.rid)
                }) else {
                    continue;
                };
                let o = &mut rp.out[oi];
                let out_mid = o.mid;
                let base = *o.seq_base.get_or_insert(f.seq & !0xffff);
                // A packet from before the first this receiver got has no place in its stream.
                let Some(out_seq) = f.seq.checked_sub(base) else {
                    continue;
                };
                if audio && self.cfg.voice_fast_path {
                    if let Some(t) = send_voice_fast(rp, oi, codec, f, out_seq, &mut self.spare) {
                        self.out.push_back(t);
                        self.voice_fast += 1;
                        continue;
                    }
                    // Through str0m, and the packets after it in this round follow it.
                    let o = &mut rp.out[oi];
                    o.sync_pending = true;
                    o.next_sync = f.seq + crate::fast::SYNC_EVERY;
                }
                let Some(pt) = payload_type(&rp.rtc, codec) else {
                    continue;
                };
                let mut api = rp.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                    continue;
                };
                let w = RtpWrite::new(pt, out_seq.into(), f.timestamp, now, f.payload.shared())
                    .marker(f.marker);
                // Audio keeps the publisher's header extensions (audio level); video is sent
                // without them, as rtcd does. Video is kept for retransmission on NACK.
                let w = if audio {
                    w.ext_vals(f.ext.values())
                } else {
                    // rtcd's congestion controller has a no-op pacer: the estimate only
                    // chooses screen-share layers, and a frame goes out as it came in.
                    // str0m's pacer held video to 1.1x the estimate instead, so a layer above
                    // it (a 1.6 Mbps screen against the 250 kbps starting estimate) queued for
                    // up to 2 s, and the queue cost a timer pass per release.
                    tx.set_unpaced(true);
                    w.nackable(true)
                };
                tx.write_rtp(w);
                touched.push(r);
            }
        }
        // Each receiver once, for all the packets written to it, while its state is in the
        // cache: with a thousand receivers, fetching a session's state from memory costs
        // more than sending the packet.
        touched.sort_unstable();
        for run in touched.chunk_by(|a, b| a == b) {
            let r = run[0];
            // str0m sends written media only after a timeout (its pacer takes a snapshot
            // of the queues then). Polling first would only return "timeout now", walking
            // the whole session for nothing; hand it the timeout straight away. `drive` then
            // takes the timeout the pacer asks for after each packet, so one pass sends them
            // all (a pass per packet written cost 3.8k instructions each for nothing but the
            // first: the pacer stays shut until its clock moves).
            let Some(rp) = self.peers.get_mut(&r) else {
                continue;
            };
            rp.timeout(now);
            self.drive_paced(r, now, run.len());
            if let Some(rp) = self.peers.get_mut(&r) {
                for o in &mut rp.out {
                    o.sync_pending = false;
                }
            }
        }
        touched.clear();
        self.touched = touched;
        for f in batch.drain(..) {
            if let Payload::Opened(buf, _) = f.payload
                && self.spare.len() < SPARE_BUFFERS
            {
                self.spare.push(buf);
            }
        }
        self.batch = batch;
    }
}
