//! The voice fast path: a forwarded Opus packet goes to a receiver without a pass through the
//! receiver's str0m session.
//!
//! A str0m session sends written media only from its poll loop, and each pass walks ICE, DTLS,
//! SCTP, every stream and the estimator: several times the cost of the packet itself when a
//! thousand receivers each get every voice packet. For voice, the core frames the RTP packet
//! here and encrypts it with the session's own SRTP keys ([`crate::keys`], [`crate::srtp`]),
//! straight to the address str0m sends the session's media to.
//!
//! What str0m still does for these streams: one packet in [`SYNC_EVERY`] goes through it, so its
//! RTCP sender reports keep a true RTP-to-wallclock mapping; it answers the receiver's RTCP.
//! Voice packets sent here carry no transport-wide sequence number, so the send-side bandwidth
//! estimate (which only chooses screen-share layers) counts video alone.

use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::keys::SrtpKeys;
use crate::srtp::{SrtpError, SrtpSender};

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

/// A receiver's SRTP sender for the fast path, with its scratch buffer.
pub struct FastPath {
    sender: SrtpSender,
    plain: Vec<u8>,
}

impl FastPath {
    pub fn new(keys: &SrtpKeys) -> Result<FastPath, SrtpError> {
        let sender = SrtpSender::new(
            crate::keys::crypto(),
            keys.profile,
            &keys.material,
            keys.client,
        )?;
        Ok(FastPath {
            sender,
            plain: Vec::with_capacity(1500),
        })
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
}
