//! The voice fast path: a voice packet is forwarded without a pass through the publisher's or
//! the receiver's str0m session.
//!
//! A str0m session handles media only in passes that walk ICE, DTLS, SCTP, every stream and
//! the estimator, and each datagram it is handed runs its whole timer sweep: several times the
//! cost of the packet itself, whether a thousand receivers each get every voice packet or
//! many small calls forward each packet once.
//!
//! - **Send side**: the core frames each receiver's copy here and encrypts it with the
//!   session's own SRTP keys ([`crate::keys`], [`crate::srtp`]), straight to the address str0m
//!   sends the session's media to. One packet in [`SYNC_EVERY`] goes through str0m, so its RTCP
//!   sender reports keep a true RTP-to-wallclock mapping; it answers the receiver's RTCP. These
//!   packets carry no transport-wide sequence number, so the send-side bandwidth estimate
//!   (which only chooses screen-share layers) counts video alone.
//! - **Receive side**: once str0m has mapped a publisher's voice SSRC to its track, the core
//!   reads each packet's header ([`parse_rtp`]), checks it against its [`ReplayWindow`], opens
//!   it with the publisher's keys and forwards it at once. str0m never sees the packet: the
//!   receiver reports and transport-wide feedback it would have sent on it are written here
//!   ([`crate::feedback`]) and protected as SRTCP under a sender SSRC of the fast path's own
//!   ([`FastPath::feedback`]). str0m keeps the stream, without its reception register, so that
//!   it still reads the publisher's sender reports, and takes it back, rollover counter and
//!   all, if the publisher adds video.

use std::net::SocketAddr;

use str0m::net::Protocol;

use std::time::Instant;

use crate::feedback::{
    FEEDBACK_AFTER, FEEDBACK_LIMIT, REPORT_INTERVAL, Reception, TransportFeedback,
    write_receiver_report,
};
use crate::keys::SrtpKeys;
use crate::srtp::{ReplayWindow, SrtcpSender, SrtpError, SrtpReceiver, SrtpSender};

/// One voice packet per stream in this many goes through str0m (one a second at 20 ms
/// packets), the first one included.
pub const SYNC_EVERY: u64 = 50;

/// Where a session's media goes: the ICE pair str0m nominated, as its own SRTP and DTLS
/// datagrams show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

impl Route {
    /// The route of a datagram str0m sent, if it is one that only goes on the nominated pair:
    /// DTLS or SRTP/SRTCP (RFC 7983), not a STUN answer to whichever pair was checked.
    pub fn of_media(
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> Option<Route> {
        match datagram.first() {
            Some(20..=63 | 128..=191) => Some(Route {
                proto,
                source,
                destination,
            }),
            _ => None,
        }
    }
}

/// Whether a datagram is SRTP rather than SRTCP or anything else: RTP's version bits (RFC 7983)
/// and a second byte outside RTCP's packet types 192–223 (RFC 5761), at least a fixed header.
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// How one receiver's copy of a voice packet is framed.
#[derive(Debug, Clone)]
pub struct VoiceHeader<'a> {
    pub pt: u8,
    pub marker: bool,
    /// Extended sequence number: the SRTP packet index (rollover counter and sequence number).
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The receiver's extension id for the audio level, and the level (-dBov) and voice flag.
    pub level: Option<(u8, i8, Option<bool>)>,
    /// The receiver's extension id for the MID, and the MID, so the packet binds to its
    /// transceiver even before the receiver has seen the SSRC.
    pub mid: Option<(u8, &'a [u8])>,
}

/// Writes the plain RTP packet into `buf` (cleared first) and returns the header's length.
pub fn write_rtp(h: &VoiceHeader, payload: &[u8], buf: &mut Vec<u8>) -> usize {
    buf.clear();
    // RFC 8285 one-byte elements: ids 1..=14, 1..=16 bytes of data.
    let level = h.level.filter(|(id, _, _)| (1..=14).contains(id));
    let mid = h
        .mid
        .filter(|(id, m)| (1..=14).contains(id) && (1..=16).contains(&m.len()));
    let has_ext = level.is_some() || mid.is_some();
    buf.push(0x80 | if has_ext { 0x10 } else { 0 });
    buf.push(u8::from(h.marker) << 7 | (h.pt & 0x7f));
    buf.extend_from_slice(&(h.seq as u16).to_be_bytes());
    buf.extend_from_slice(&h.timestamp.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());
    if has_ext {
        buf.extend_from_slice(&[0xbe, 0xde, 0, 0]);
        let start = buf.len();
        if let Some((id, dbov, vad)) = level {
            // RFC 6464: the V flag, then the level as 0..=127 (-dBov).
            let v = u8::from(vad.unwrap_or(false)) << 7;
            buf.extend_from_slice(&[id << 4, v | dbov.unsigned_abs().min(127)]);
        }
        if let Some((id, m)) = mid {
            buf.push(id << 4 | (m.len() as u8 - 1));
            buf.extend_from_slice(m);
        }
        while !(buf.len() - start).is_multiple_of(4) {
            buf.push(0);
        }
        let words = ((buf.len() - start) / 4) as u16;
        buf[start - 2..start].copy_from_slice(&words.to_be_bytes());
    }
    let header_len = buf.len();
    buf.extend_from_slice(payload);
    header_len
}

/// What the receive side reads from the clear header of a publisher's RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The fixed header, CSRCs and extension block.
    pub header_len: usize,
    /// The payload ends in padding (RFC 3550 5.1).
    pub padding: bool,
    /// The audio level element (RFC 6464): the level in str0m's form (-dBov, 0 loudest), and
    /// the voice flag.
    pub level: Option<(i8, bool)>,
    /// The transport-wide sequence number element.
    pub twcc: Option<u16>,
}

/// Reads an RTP header (RFC 3550 5.1) and its extension block in either RFC 8285 form, taking
/// the audio level from element `level_id` and the transport-wide sequence number from element
/// `twcc_id`. `None` if the datagram is not version 2 RTP or its header runs past its end.
pub fn parse_rtp(d: &[u8], level_id: Option<u8>, twcc_id: Option<u8>) -> Option<RtpInfo> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(d[0] & 0x0f);
    let mut header_len = 12 + 4 * csrcs;
    let mut level = None;
    let mut twcc = None;
    if d[0] & 0x10 != 0 {
        let ext = d.get(header_len..header_len + 4)?;
        let profile = u16::from_be_bytes([ext[0], ext[1]]);
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let start = header_len + 4;
        header_len = start + 4 * words;
        let block = d.get(start..header_len)?;
        let element = |id: u8| match profile {
            0xbede => one_byte_element(block, id),
            p if p & 0xfff0 == 0x1000 => two_byte_element(block, id),
            _ => None,
        };
        level = level_id
            .and_then(element)
            .and_then(|v| v.first())
            .map(|b| (-((b & 0x7f) as i8), b & 0x80 != 0));
        twcc = twcc_id
            .and_then(element)
            .and_then(|v| v.get(..2))
            .map(|v| u16::from_be_bytes([v[0], v[1]]));
    }
    if header_len > d.len() {
        return None;
    }
    Some(RtpInfo {
        marker: d[1] & 0x80 != 0,
        pt: d[1] & 0x7f,
        seq: u16::from_be_bytes([d[2], d[3]]),
        timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        header_len,
        padding: d[0] & 0x20 != 0,
        level,
        twcc,
    })
}

/// The data of element `id` in an RFC 8285 one-byte-header block.
fn one_byte_element(mut b: &[u8], id: u8) -> Option<&[u8]> {
    while let Some((&first, rest)) = b.split_first() {
        let el = first >> 4;
        if el == 0 {
            b = rest; // padding
            continue;
        }
        if el == 15 {
            return None; // the rest is not to be read (RFC 8285 4.2)
        }
        let len = usize::from(first & 0x0f) + 1;
        let data = rest.get(..len)?;
        if el == id {
            return Some(data);
        }
        b = &rest[len..];
    }
    None
}

/// The data of element `id` in an RFC 8285 two-byte-header block.
fn two_byte_element(mut b: &[u8], id: u8) -> Option<&[u8]> {
    while let Some((&el, rest)) = b.split_first() {
        if el == 0 {
            b = rest; // padding
            continue;
        }
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        let data = rest.get(..len)?;
        if el == id {
            return Some(data);
        }
        b = &rest[len..];
    }
    None
}

/// A publisher's voice stream on the receive side of the fast path.
#[derive(Debug, Clone)]
pub struct VoiceIn {
    pub ssrc: u32,
    /// The publisher's transceiver of the track.
    pub mid: str0m::media::Mid,
    /// The publisher's extension ids for the audio level and the transport-wide sequence number.
    pub level_id: Option<u8>,
    pub twcc_id: Option<u8>,
    /// The payload type the stream opened with, and its codec.
    pub codec: (u8, str0m::format::Codec),
    /// Indices of the packets forwarded (or refused) here; str0m saw the ones before.
    pub replay: ReplayWindow,
    /// What the receiver reports on this stream say.
    pub reception: Reception,
    /// Packets are opened here. Off once the publisher also sends video: its transport-wide
    /// sequence numbers then interleave voice and video, and str0m's feedback on them must see
    /// every packet.
    pub engaged: bool,
}

/// A session's SRTP for the fast path: the sender of what it receives, the receiver of what it
/// publishes, the feedback on what it publishes, and a scratch buffer.
pub struct FastPath {
    sender: SrtpSender,
    receiver: SrtpReceiver,
    rtcp: SrtcpSender,
    /// The sender SSRC of the fast path's RTCP: one str0m does not send under, so that the
    /// SRTCP index (and with it the AEAD nonce) is the fast path's alone.
    pub rtcp_ssrc: u32,
    /// Transport-wide sequence numbers of the voice opened here, until reported on.
    pub twcc: TransportFeedback,
    /// When the receiver reports on the opened voice are next due.
    pub next_report: Option<Instant>,
    plain: Vec<u8>,
}

impl FastPath {
    /// `rtcp_ssrc` as [`FastPath::rtcp_ssrc`].
    pub fn new(keys: &SrtpKeys, rtcp_ssrc: u32) -> Result<FastPath, SrtpError> {
        let crypto = crate::keys::crypto();
        let sender = SrtpSender::new(crypto, keys.profile, &keys.material, keys.client)?;
        let receiver = SrtpReceiver::new(crypto, keys.profile, &keys.material, keys.client)?;
        let rtcp = SrtcpSender::new(crypto, keys.profile, &keys.material, keys.client)?;
        Ok(FastPath {
            sender,
            receiver,
            rtcp,
            rtcp_ssrc,
            twcc: TransportFeedback::default(),
            next_report: None,
            plain: Vec::with_capacity(1500),
        })
    }

    /// When this session must next have a pass for its feedback: the latest a transport-wide
    /// feedback may wait, and the next receiver report if `reporting` (voice is opened here).
    pub fn feedback_deadline(&self, reporting: bool) -> Option<Instant> {
        let twcc = self.twcc.oldest().map(|t| t + FEEDBACK_LIMIT);
        let report = self.next_report.filter(|_| reporting);
        twcc.into_iter().chain(report).min()
    }

    /// The SRTCP datagrams of the feedback due at `now` on the voice streams `voice` (the
    /// engaged ones are reported on), appended to `out`: a receiver report once every
    /// [`REPORT_INTERVAL`], and transport-wide feedback once its oldest packet is
    /// [`FEEDBACK_AFTER`] old. `flush` sends whatever transport-wide feedback is waiting, as
    /// when str0m takes the publisher's feedback over. Each datagram is one compound packet,
    /// led by a receiver report (empty when none is due) as RFC 3550 6.1 asks.
    pub fn feedback(
        &mut self,
        voice: &mut [VoiceIn],
        now: Instant,
        flush: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        let engaged = voice.iter().any(|v| v.engaged);
        let report_due = engaged && self.next_report.is_none_or(|t| t <= now);
        let twcc_due = self
            .twcc
            .oldest()
            .is_some_and(|t| flush || now.saturating_duration_since(t) >= FEEDBACK_AFTER);
        if !report_due && !twcc_due {
            return;
        }
        let media_ssrc = voice.first().map_or(0, |v| v.ssrc);
        let mut blocks = Vec::new();
        if report_due {
            blocks = voice
                .iter_mut()
                .filter(|v| v.engaged)
                .map(|v| v.reception.report_block(v.ssrc, now))
                .collect();
            self.next_report = Some(now + REPORT_INTERVAL);
        }
        loop {
            self.plain.clear();
            write_receiver_report(self.rtcp_ssrc, &blocks, &mut self.plain);
            blocks.clear();
            if twcc_due {
                self.twcc.write(self.rtcp_ssrc, media_ssrc, &mut self.plain);
            }
            let mut datagram = Vec::with_capacity(self.plain.len() + 32);
            self.rtcp.protect_rtcp(&self.plain, &mut datagram);
            if !datagram.is_empty() {
                out.push(datagram);
            }
            if !twcc_due || self.twcc.oldest().is_none() {
                break;
            }
        }
    }

    /// Opens a publisher's voice datagram (whose header `rtp` describes) as packet `index`: its
    /// payload, padding removed, goes into `out` (cleared first). `false` if the packet does not
    /// authenticate or its padding is malformed.
    pub fn open(&mut self, datagram: &[u8], rtp: &RtpInfo, index: u64, out: &mut Vec<u8>) -> bool {
        let roc = (index >> 16) as u32;
        if !self
            .receiver
            .unprotect_rtp(datagram, rtp.header_len, roc, out)
        {
            return false;
        }
        if rtp.padding {
            // RFC 3550 5.1: the last octet counts the padding, itself included.
            match out.last().map(|n| usize::from(*n)) {
                Some(n) if n >= 1 && n <= out.len() => out.truncate(out.len() - n),
                _ => {
                    out.clear();
                    return false;
                }
            }
        }
        true
    }

    /// The SRTP datagram of one voice packet for this receiver, written into `out` (a spent
    /// datagram's buffer, so that forwarding allocates nothing); `None` if the crypto backend
    /// failed (then str0m sends the packet).
    pub fn seal(&mut self, h: &VoiceHeader, payload: &[u8], mut out: Vec<u8>) -> Option<Vec<u8>> {
        let header_len = write_rtp(h, payload, &mut self.plain);
        out.clear();
        out.reserve(self.plain.len() + self.sender.overhead());
        self.sender.protect_rtp(
            &self.plain,
            header_len,
            h.ssrc,
            h.seq & 0xffff_ffff_ffff,
            &mut out,
        );
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(level: Option<(u8, i8, Option<bool>)>, mid: Option<(u8, &[u8])>) -> VoiceHeader<'_> {
        VoiceHeader {
            pt: 111,
            marker: true,
            seq: 0x1_2345,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            level,
            mid,
        }
    }

    #[test]
    fn header_without_extensions() {
        let mut buf = Vec::new();
        let n = write_rtp(&header(None, None), &[9, 9], &mut buf);
        assert_eq!(n, 12);
        assert_eq!(
            buf,
            [
                0x80, 0xef, 0x23, 0x45, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 9, 9
            ]
        );
    }

    #[test]
    fn header_with_level_and_mid_is_padded_to_words() {
        let mut buf = Vec::new();
        let n = write_rtp(
            &header(Some((1, -30, Some(true))), Some((4, b"12"))),
            &[7],
            &mut buf,
        );
        // 12 + 4 (0xBEDE, length) + 2 (level) + 3 (mid) + 3 padding.
        assert_eq!(n, 24);
        assert_eq!(buf[0], 0x90, "extension bit set");
        assert_eq!(&buf[12..16], &[0xbe, 0xde, 0, 2]);
        assert_eq!(&buf[16..18], &[0x10, 0x80 | 30]);
        assert_eq!(&buf[18..21], &[0x41, b'1', b'2']);
        assert_eq!(&buf[21..24], &[0, 0, 0]);
        assert_eq!(buf[24], 7);
    }

    #[test]
    fn ids_a_one_byte_header_cannot_carry_are_left_out() {
        let mut buf = Vec::new();
        let n = write_rtp(
            &header(Some((15, -10, None)), Some((0, b"1"))),
            &[],
            &mut buf,
        );
        assert_eq!(n, 12);
        assert_eq!(buf[0], 0x80);
    }

    #[test]
    fn rtp_is_told_from_rtcp_and_the_rest() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert!(is_rtp(&rtp));
        rtp[1] = 0x80 | 111; // marker bit set
        assert!(is_rtp(&rtp));
        rtp[1] = 200; // a sender report
        assert!(!is_rtp(&rtp), "RTCP");
        assert!(!is_rtp(&rtp[..11]), "shorter than a fixed header");
        assert!(!is_rtp(&[22; 12]), "DTLS");
        assert!(!is_rtp(&[0; 20]), "STUN");
    }

    #[test]
    fn only_dtls_and_srtp_datagrams_show_the_route() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert!(Route::of_media(Protocol::Udp, a, b, &[0x80, 0]).is_some());
        assert!(Route::of_media(Protocol::Udp, a, b, &[22, 254]).is_some());
        assert!(
            Route::of_media(Protocol::Udp, a, b, &[0x01, 0x01]).is_none(),
            "STUN"
        );
        assert!(Route::of_media(Protocol::Udp, a, b, &[]).is_none());
    }

    #[test]
    fn the_receive_side_reads_what_the_send_side_writes() {
        for (level, mid) in [
            (None, None),
            (Some((3, -30, Some(true))), None),
            (Some((1, -127, Some(false))), Some((4, &b"0"[..]))),
            (None, Some((2, &b"abcdefghijklmnop"[..]))),
        ] {
            let h = header(level, mid);
            let mut buf = Vec::new();
            let n = write_rtp(&h, &[1, 2, 3], &mut buf);
            let info = parse_rtp(&buf, level.map(|l| l.0), None).unwrap();
            assert_eq!(
                info,
                RtpInfo {
                    marker: true,
                    pt: 111,
                    seq: 0x2345,
                    timestamp: 0xdead_beef,
                    ssrc: 0x0102_0304,
                    header_len: n,
                    padding: false,
                    level: level.map(|(_, l, v)| (l, v.unwrap_or(false))),
                    twcc: None,
                }
            );
            // Another element's id finds no level.
            assert_eq!(parse_rtp(&buf, Some(9), None).unwrap().level, None);
        }
    }

    #[test]
    fn headers_with_csrcs_two_byte_elements_and_padding() {
        // CC = 2, X and P set; a two-byte block (0x1000): padding, element 7 (2 bytes), then
        // the level as element 5.
        let d = [
            0xb2, 0x6f, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, // fixed header
            0, 0, 0, 9, 0, 0, 0, 8, // CSRCs
            0x10, 0x00, 0, 2, // two-byte profile, two words
            0, 7, 2, 0xaa, 0xbb, 5, 1, 0x85, // padding, element 7, element 5 = V + level 5
            0xff, 0xff, 0x01, // payload
        ];
        let info = parse_rtp(&d, Some(5), None).unwrap();
        assert_eq!(info.header_len, 12 + 8 + 4 + 8);
        assert!(info.padding && !info.marker);
        assert_eq!(
            (info.pt, info.seq, info.timestamp, info.ssrc),
            (111, 1, 2, 3)
        );
        assert_eq!(info.level, Some((-5, true)));
        assert_eq!(
            parse_rtp(&d, Some(7), None).unwrap().level.map(|l| l.0),
            Some(-0x2a)
        );
        // Element 7 as the transport-wide sequence number, beside the level.
        let both = parse_rtp(&d, Some(5), Some(7)).unwrap();
        assert_eq!((both.level, both.twcc), (Some((-5, true)), Some(0xaabb)));
        assert_eq!(
            parse_rtp(&d, None, Some(5)).unwrap().twcc,
            None,
            "one byte is too short"
        );
    }

    #[test]
    fn the_transport_wide_sequence_number_in_a_one_byte_block() {
        // Chrome's voice: audio level (id 1) and transport-cc (id 3, two bytes).
        let d = [
            0x90, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 2, 0x10, 0x9e, 0x31, 0x12,
            0x34, 0, 0, 0, 0xff,
        ];
        let info = parse_rtp(&d, Some(1), Some(3)).unwrap();
        assert_eq!(info.twcc, Some(0x1234));
        assert_eq!(info.level, Some((-0x1e, true)));
        assert_eq!(info.header_len, 24);
    }

    #[test]
    fn a_one_byte_block_stops_at_id_15() {
        // Element 15 ends the block (RFC 8285 4.2): the level after it is not read.
        let d = [
            0x90, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 0xf0, 0x10, 0x1e, 0,
        ];
        assert_eq!(parse_rtp(&d, Some(1), None).unwrap().level, None);
        let d = [
            0x90, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 0x00, 0x10, 0x1e, 0,
        ];
        assert_eq!(
            parse_rtp(&d, Some(1), None).unwrap().level,
            Some((-30, false))
        );
    }

    #[test]
    fn every_truncation_of_a_header_is_refused() {
        let mut buf = Vec::new();
        let n = write_rtp(
            &header(Some((1, -30, Some(true))), Some((4, b"12"))),
            &[],
            &mut buf,
        );
        assert!(parse_rtp(&buf, Some(1), None).is_some());
        for len in 0..n {
            assert_eq!(parse_rtp(&buf[..len], Some(1), None), None, "{len} bytes");
        }
        // An element longer than its block, a block longer than the datagram, CSRCs past the
        // end, another RTP version.
        let mut long_el = buf.clone();
        long_el[16] = 0x1f;
        long_el.truncate(n);
        assert!(parse_rtp(&long_el, Some(1), None).unwrap().level.is_none());
        let mut long_block = buf.clone();
        long_block[15] = 9;
        assert_eq!(parse_rtp(&long_block, None, None), None);
        let mut csrcs = buf.clone();
        csrcs[0] |= 0x0f;
        assert_eq!(parse_rtp(&csrcs, None, None), None);
        let mut v1 = buf;
        v1[0] = 0x50;
        assert_eq!(parse_rtp(&v1, None, None), None);
    }

    fn keys(client: bool) -> SrtpKeys {
        let profile = str0m::crypto::dtls::SrtpProfile::AEAD_AES_128_GCM;
        SrtpKeys {
            profile,
            material: (0..profile.keying_material_len() as u8).collect(),
            client,
        }
    }

    #[test]
    fn a_session_opens_what_its_peer_seals_and_strips_padding() {
        let mut server = FastPath::new(&keys(false), 1).unwrap();
        let mut client = FastPath::new(&keys(true), 2).unwrap();
        let h = header(Some((1, -40, Some(true))), None);
        let sealed = client.seal(&h, &[5, 6, 7, 8], Vec::new()).unwrap();
        let rtp = parse_rtp(&sealed, Some(1), None).unwrap();
        let mut out = Vec::new();
        assert!(server.open(&sealed, &rtp, h.seq, &mut out));
        assert_eq!(out, [5, 6, 7, 8]);
        assert!(
            !server.open(&sealed, &rtp, h.seq + 0x1_0000, &mut out),
            "another ROC"
        );
        assert!(out.is_empty());
        assert!(!client.open(&sealed, &rtp, h.seq, &mut out), "its own keys");

        // With P set, the last octet counts the padding: 2 here, then 0 and 5 (malformed).
        let padded = RtpInfo {
            padding: true,
            ..rtp
        };
        let mut raw = Vec::new();
        let n = write_rtp(&h, &[5, 6, 0, 2], &mut raw);
        raw[0] |= 0x20;
        let mut sealed = Vec::new();
        client
            .sender
            .protect_rtp(&raw, n, h.ssrc, h.seq, &mut sealed);
        assert!(server.open(&sealed, &padded, h.seq, &mut out));
        assert_eq!(out, [5, 6]);
        for bad in [0u8, 5] {
            let mut raw = Vec::new();
            let n = write_rtp(&h, &[5, 6, 0, bad], &mut raw);
            raw[0] |= 0x20;
            client
                .sender
                .protect_rtp(&raw, n, h.ssrc, h.seq, &mut sealed);
            assert!(
                !server.open(&sealed, &padded, h.seq, &mut out),
                "padding {bad}"
            );
            assert!(out.is_empty());
        }
    }
}
