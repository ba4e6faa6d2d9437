//! Receive-side RTCP for the voice the fast path opens: receiver reports (RFC 3550 6.4.2, A.3,
//! A.8) and transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 3.1), written here because str0m no
//! longer sees those packets.
//!
//! Handing str0m every voice datagram only so that it could count it cost as much as all the
//! forwarding (a second decryption, its stream and feedback registers, a session pass): 39% of
//! the instructions of `examples/forward.rs --calls 500 --receivers 0`. Sans-IO: callers give
//! each packet's arrival time and the time to report at, and get plain RTCP bytes back, which
//! the fast path protects as SRTCP ([`crate::srtp::SrtcpSender`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A receiver report goes out at least this often per stream, as pion (rtcd) sends them.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Transport-wide feedback rides on the session's next pass once its oldest packet is this old,
/// and gets a pass of its own at [`FEEDBACK_LIMIT`]: rtcd's pion sends it every 100 ms.
pub const FEEDBACK_AFTER: Duration = Duration::from_millis(50);
pub const FEEDBACK_LIMIT: Duration = Duration::from_millis(150);

/// Packets reported on in one feedback message at most, so that a message with a loss pattern
/// at its worst (a run-length chunk and a large delta each) still fits a datagram.
const FEEDBACK_MAX_PACKETS: usize = 128;

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One received stream's reception statistics, from the first packet the fast path opened on.
#[derive(Debug, Clone)]
pub struct Reception {
    /// The first packet index counted here (str0m saw those before).
    base: u64,
    /// The highest index received.
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// RFC 3550 A.8's interarrival jitter, in RTP timestamp units, scaled by 16.
    jitter: u64,
    transit: Option<u32>,
    clock_rate: u32,
    /// The middle 32 bits of the NTP time of the sender's last SR, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    /// Counts from packet `base` on, for a stream of `clock_rate` Hz.
    pub fn new(base: u64, clock_rate: u32) -> Reception {
        Reception {
            base,
            max: base.saturating_sub(1),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0,
            transit: None,
            clock_rate: clock_rate.max(1),
            last_sr: None,
        }
    }

    /// A packet with index `index` and RTP timestamp `timestamp` arrived `arrival` after the
    /// session's epoch. Each index is counted once: the caller's replay window refuses copies.
    pub fn record(&mut self, index: u64, timestamp: u32, arrival: Duration) {
        self.received += 1;
        self.max = self.max.max(index);
        // RFC 3550 A.8, in wrapping 32-bit timestamp arithmetic.
        let now = (arrival.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = now.wrapping_sub(timestamp);
        if let Some(prev) = self.transit.replace(transit) {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter = self.jitter + d - ((self.jitter + 8) >> 4);
        }
    }

    /// The sender's SR: its NTP time, and when it arrived.
    pub fn sender_report(&mut self, ntp: SystemTime, at: Instant) {
        self.last_sr = Some((ntp_middle(ntp), at));
    }

    /// This stream's report block as of `now` (RFC 3550 6.4.1), and the interval counters moved
    /// on for the next.
    pub fn report_block(&mut self, ssrc: u32, now: Instant) -> [u8; 24] {
        let expected = (self.max + 1).saturating_sub(self.base);
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        // 24 bits, signed (more packets than expected arrive when some are duplicated by the
        // network past the replay window's reach, or reordered from before `base`).
        let cumulative = lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32 & 0x00ff_ffff;
        let (lsr, dlsr) = match self.last_sr {
            Some((ntp, at)) => {
                let delay = now.saturating_duration_since(at);
                (ntp, (delay.as_micros() * 65_536 / 1_000_000) as u32)
            }
            None => (0, 0),
        };
        let mut b = [0u8; 24];
        b[..4].copy_from_slice(&ssrc.to_be_bytes());
        b[4..8].copy_from_slice(&(u32::from(fraction) << 24 | cumulative).to_be_bytes());
        // The extended highest sequence number: the low 32 bits of the 48-bit index.
        b[8..12].copy_from_slice(&(self.max as u32).to_be_bytes());
        b[12..16].copy_from_slice(&((self.jitter >> 4) as u32).to_be_bytes());
        b[16..20].copy_from_slice(&lsr.to_be_bytes());
        b[20..24].copy_from_slice(&dlsr.to_be_bytes());
        b
    }
}

/// The middle 32 bits of the 64-bit NTP form of `t` (RFC 3550 4), rounded to the nearest unit.
fn ntp_middle(t: SystemTime) -> u32 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((u64::from(d.subsec_nanos()) << 32) + 500_000_000) / 1_000_000_000;
    // A fraction that rounds up to a whole second carries into the seconds.
    let ntp = (secs << 32).wrapping_add(frac);
    (ntp >> 16) as u32
}

/// Appends a receiver report from `sender_ssrc` with `blocks` (at most 31) to `out`.
pub fn write_receiver_report(sender_ssrc: u32, blocks: &[[u8; 24]], out: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(31)];
    out.push(0x80 | blocks.len() as u8);
    out.push(201);
    out.extend_from_slice(&((1 + 6 * blocks.len()) as u16).to_be_bytes());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(b);
    }
}

/// A session's received transport-wide sequence numbers and their arrival times, until they
/// are reported on.
#[derive(Debug, Default)]
pub struct TransportFeedback {
    /// Extended sequence number and arrival time since the session's epoch, in arrival order.
    records: Vec<(u64, Duration)>,
    /// When the oldest record arrived.
    oldest: Option<Instant>,
    /// The highest extended sequence number seen, to extend the next.
    max: Option<u64>,
    /// Everything below this was reported on already.
    next: Option<u64>,
    /// The feedback packet count (8 bits, wrapping).
    count: u8,
}

impl TransportFeedback {
    /// Records a packet with transport-wide sequence number `seq` that arrived `arrival` after
    /// the session's epoch, at `now`.
    pub fn record(&mut self, seq: u16, arrival: Duration, now: Instant) {
        let ext = extend_u16(self.max, seq);
        self.max = Some(self.max.map_or(ext, |m| m.max(ext)));
        if self.next.is_some_and(|n| ext < n) {
            // Reported as lost already; a late copy cannot be reported again.
            return;
        }
        self.records.push((ext, arrival));
        self.oldest.get_or_insert(now);
    }

    /// When the oldest packet not reported on yet arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    /// Appends one feedback message on the oldest packets recorded, as many as fit one, to
    /// `out`, and forgets them; what is left waits for the next ([`TransportFeedback::oldest`]
    /// stays set). `media_ssrc` names the stream they came on (receivers ignore it).
    pub fn write(&mut self, sender_ssrc: u32, media_ssrc: u32, out: &mut Vec<u8>) {
        if self.records.is_empty() {
            self.oldest = None;
            return;
        }
        let mut records = std::mem::take(&mut self.records);
        records.sort_by_key(|r| r.0);
        records.dedup_by_key(|r| r.0);
        let n = self.write_one(sender_ssrc, media_ssrc, &records, out);
        self.next = Some(records[n - 1].0 + 1);
        records.drain(..n);
        if records.is_empty() {
            self.oldest = None;
        }
        self.records = records;
    }

    /// One feedback message on the first packets of `records` (sorted, distinct), as many as
    /// its limits allow; returns how many.
    fn write_one(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        records: &[(u64, Duration)],
        out: &mut Vec<u8>,
    ) -> usize {
        const TICK_US: i64 = 250;
        // A message starts where the last one ended, so that packets lost between the two are
        // reported lost; after a gap too long to spell out, at the first packet received.
        let first = records[0].0;
        let base = match self.next {
            Some(n) if n <= first && first - n < 0x4000 => n,
            _ => first,
        };
        // The reference time: the first packet's arrival, in 64 ms units (24 bits).
        let reference = records[0].1.as_micros() as i64 / 64_000;
        let mut prev = reference * 256;
        // Status symbols (0 not received, 1 small delta, 2 large delta) from `base` on, and the
        // deltas of the received packets.
        let mut symbols: Vec<(u8, u16)> = Vec::new();
        let mut deltas: Vec<u8> = Vec::new();
        let mut taken = 0;
        let mut next_seq = base;
        for &(seq, arrival) in records.iter().take(FEEDBACK_MAX_PACKETS) {
            // The status count is 16 bits.
            if seq - base >= 0xffff {
                break;
            }
            let ticks = arrival.as_micros() as i64 / TICK_US;
            let delta = ticks - prev;
            let symbol = match delta {
                0..=255 => 1,
                d if i16::try_from(d).is_ok() => 2,
                // Too far from the previous one for this message: it starts the next.
                _ if taken > 0 => break,
                _ => 2,
            };
            if seq > next_seq {
                push_run(&mut symbols, 0, (seq - next_seq) as u16);
            }
            push_run(&mut symbols, symbol, 1);
            if symbol == 1 {
                deltas.push(delta as u8);
            } else {
                let d = delta.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
                deltas.extend_from_slice(&d.to_be_bytes());
            }
            prev = ticks;
            next_seq = seq + 1;
            taken += 1;
        }
        let start = out.len();
        out.extend_from_slice(&[0x80 | 15, 205, 0, 0]);
        out.extend_from_slice(&sender_ssrc.to_be_bytes());
        out.extend_from_slice(&media_ssrc.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&((next_seq - base) as u16).to_be_bytes());
        let reference = (reference as u32 & 0x00ff_ffff) << 8 | u32::from(self.count);
        out.extend_from_slice(&reference.to_be_bytes());
        self.count = self.count.wrapping_add(1);
        // Run-length chunks only: one per run of a symbol, 13 bits of length each.
        for &(symbol, mut run) in &symbols {
            while run > 0 {
                let n = run.min(0x1fff);
                out.extend_from_slice(&(u16::from(symbol) << 13 | n).to_be_bytes());
                run -= n;
            }
        }
        out.extend_from_slice(&deltas);
        let padding = (4 - (out.len() - start) % 4) % 4;
        if padding > 0 {
            // RFC 3550 6.4.1: the last padding octet counts the padding.
            out.extend(std::iter::repeat_n(0, padding - 1));
            out.push(padding as u8);
            out[start] |= 0x20;
        }
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        taken
    }
}

/// Adds `n` of `symbol` to a list of runs.
fn push_run(runs: &mut Vec<(u8, u16)>, symbol: u8, n: u16) {
    match runs.last_mut() {
        Some((s, run)) if *s == symbol && *run <= u16::MAX - n => *run += n,
        _ => runs.push((symbol, n)),
    }
}

/// Extends a 16-bit sequence number to the one nearest `prev` (RFC 3711 3.3.1's guess).
fn extend_u16(prev: Option<u64>, seq: u16) -> u64 {
    let Some(prev) = prev else {
        return u64::from(seq);
    };
    let roc = prev >> 16;
    let candidates = [roc.checked_sub(1), Some(roc), Some(roc + 1)];
    candidates
        .into_iter()
        .flatten()
        .map(|r| r << 16 | u64::from(seq))
        .min_by_key(|c| c.abs_diff(prev))
        .unwrap_or(u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A parsed feedback message: base, status count, reference (64 ms), count, and per
    /// sequence number its arrival delta in 250 µs ticks (None: not received).
    fn parse(p: &[u8]) -> (u16, u16, i32, u8, Vec<Option<i64>>) {
        assert_eq!(p[0] & 0xc0, 0x80);
        assert_eq!(p[0] & 0x1f, 15);
        assert_eq!(p[1], 205);
        let words = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert_eq!((words + 1) * 4, p.len(), "length field");
        let mut end = p.len();
        if p[0] & 0x20 != 0 {
            end -= usize::from(p[p.len() - 1]);
        }
        let base = u16::from_be_bytes([p[12], p[13]]);
        let count = u16::from_be_bytes([p[14], p[15]]);
        let reference = i32::from_be_bytes([0, p[16], p[17], p[18]]);
        let fb = p[19];
        let mut statuses = Vec::new();
        let mut i = 20;
        while statuses.len() < usize::from(count) {
            let c = u16::from_be_bytes([p[i], p[i + 1]]);
            i += 2;
            assert_eq!(c >> 15, 0, "only run-length chunks are written");
            statuses.extend(std::iter::repeat_n(
                (c >> 13) as u8 & 3,
                usize::from(c & 0x1fff),
            ));
        }
        assert_eq!(
            statuses.len(),
            usize::from(count),
            "runs add up to the count"
        );
        let mut deltas = Vec::new();
        for s in statuses {
            deltas.push(match s {
                0 => None,
                1 => {
                    i += 1;
                    Some(i64::from(p[i - 1]))
                }
                2 => {
                    i += 2;
                    Some(i64::from(i16::from_be_bytes([p[i - 2], p[i - 1]])))
                }
                _ => panic!("reserved symbol"),
            });
        }
        assert!(end - i < 4, "at most padding after the deltas");
        (base, count, reference, fb, deltas)
    }

    #[test]
    fn feedback_reports_arrivals_and_losses_in_order() {
        let t0 = Instant::now();
        let mut fb = TransportFeedback::default();
        // 10, 11, 13 (12 lost), 15 before 14 (reordered), at 1000 ms + 20 ms steps.
        for (seq, at) in [
            (10u16, 1000),
            (11, 1020),
            (13, 1060),
            (15, 1100),
            (14, 1101),
        ] {
            fb.record(seq, ms(at), t0);
        }
        assert_eq!(fb.oldest(), Some(t0));
        let mut out = Vec::new();
        fb.write(0x1111, 0x2222, &mut out);
        assert_eq!(fb.oldest(), None);
        assert_eq!(out[4..12], [0, 0, 0x11, 0x11, 0, 0, 0x22, 0x22]);
        let (base, count, reference, n, deltas) = parse(&out);
        assert_eq!((base, count, reference, n), (10, 6, 15, 0));
        // 1000 ms is 15 x 64 ms + 40 ms: 160 ticks; then 80 ticks (20 ms) apart. 15 arrived
        // 1 ms before 14, and the deltas go in sequence order: 15's is negative, a large one.
        assert_eq!(
            deltas,
            vec![Some(160), Some(80), None, Some(160), Some(164), Some(-4)]
        );
        // The next message counts on from the next sequence number, so that 16 and 17, lost
        // between the two, are reported lost; a late 12 was reported lost and is dropped.
        fb.record(12, ms(1200), t0);
        fb.record(18, ms(1200), t0);
        let mut out = Vec::new();
        fb.write(1, 2, &mut out);
        let (base, count, _, n, deltas) = parse(&out);
        assert_eq!((base, count, n), (16, 3, 1));
        assert_eq!(
            deltas,
            vec![None, None, Some(192)],
            "1200 ms is 18 x 64 ms + 48 ms"
        );
    }

    #[test]
    fn feedback_extends_sequence_numbers_across_the_wrap() {
        let t0 = Instant::now();
        let mut fb = TransportFeedback::default();
        fb.record(65534, ms(0), t0);
        fb.record(1, ms(60), t0);
        let mut out = Vec::new();
        fb.write(1, 2, &mut out);
        let (base, count, _, _, deltas) = parse(&out);
        assert_eq!((base, count), (65534, 4));
        assert_eq!(deltas, vec![Some(0), None, None, Some(240)]);
    }

    #[test]
    fn long_gaps_and_many_packets_split_into_messages_that_each_parse() {
        let t0 = Instant::now();
        let mut fb = TransportFeedback::default();
        // 300 packets, every third lost, then one 20 s later (past a large delta's 8.2 s).
        for i in 0..300u16 {
            if i % 3 != 2 {
                fb.record(i, ms(u64::from(i) * 20), t0);
            }
        }
        fb.record(300, ms(26_000), t0);
        let mut out = Vec::new();
        while fb.oldest().is_some() {
            fb.write(1, 2, &mut out);
        }
        let mut at = 0;
        let mut reported = Vec::new();
        let mut counts = Vec::new();
        while at < out.len() {
            let len = (usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]])) + 1) * 4;
            let (base, _, _, n, deltas) = parse(&out[at..at + len]);
            assert!(len <= 1200, "fits a datagram: {len}");
            counts.push(n);
            for (k, d) in deltas.iter().enumerate() {
                if d.is_some() {
                    reported.push(base as usize + k);
                }
            }
            at += len;
        }
        let mut expected: Vec<usize> = (0..300).filter(|i| i % 3 != 2).collect();
        expected.push(300);
        assert_eq!(reported, expected, "every packet once, in order");
        assert_eq!(counts, (0..counts.len() as u8).collect::<Vec<_>>());
        assert!(
            counts.len() >= 3,
            "split by size and by the gap: {counts:?}"
        );
    }

    #[test]
    fn reception_counts_loss_fraction_and_jitter() {
        let t0 = Instant::now();
        let mut r = Reception::new(1000, 48_000);
        // 1000..1010 with 1004 and 1007 lost, 20 ms apart, arriving 1 ms late every other one.
        for i in (1000u64..1010).filter(|i| *i != 1004 && *i != 1007) {
            let late = if i % 2 == 0 { 1 } else { 0 };
            r.record(i, (i as u32) * 960, ms(i * 20 + late));
        }
        let b = r.report_block(0xabcd, t0);
        assert_eq!(b[..4], 0xabcd_u32.to_be_bytes());
        assert_eq!(b[4], (2 * 256 / 10) as u8, "fraction lost");
        assert_eq!(
            u32::from_be_bytes([0, b[5], b[6], b[7]]),
            2,
            "cumulative lost"
        );
        assert_eq!(u32::from_be_bytes(b[8..12].try_into().unwrap()), 1009);
        let jitter = u32::from_be_bytes(b[12..16].try_into().unwrap());
        // 48 units (1 ms) of transit change per packet pair converge from 0 towards 48.
        assert!((10..48).contains(&jitter), "{jitter}");
        assert_eq!(b[16..24], [0; 8], "no SR yet");
        // Nothing new: no fraction lost this interval, the cumulative count stays.
        let b = r.report_block(0xabcd, t0);
        assert_eq!(b[4], 0);
        assert_eq!(u32::from_be_bytes([0, b[5], b[6], b[7]]), 2);
    }

    #[test]
    fn reception_quotes_the_last_sender_report() {
        let t0 = Instant::now();
        let mut r = Reception::new(0, 48_000);
        r.record(0, 0, ms(0));
        // 2024-01-01T00:00:00.5 UTC: NTP 3913056000.5.
        let ntp = UNIX_EPOCH + Duration::from_millis(1_704_067_200_500);
        r.sender_report(ntp, t0);
        let b = r.report_block(1, t0 + ms(250));
        let lsr = u32::from_be_bytes(b[16..20].try_into().unwrap());
        assert_eq!(lsr, ((3_913_056_000u64 & 0xffff) << 16 | 0x8000) as u32);
        let dlsr = u32::from_be_bytes(b[20..24].try_into().unwrap());
        assert_eq!(dlsr, 65_536 / 4, "a quarter of a second");
    }

    #[test]
    fn receiver_report_layout() {
        let mut out = Vec::new();
        write_receiver_report(0x0102_0304, &[], &mut out);
        assert_eq!(out, [0x80, 201, 0, 1, 1, 2, 3, 4]);
        out.clear();
        write_receiver_report(5, &[[7; 24], [8; 24]], &mut out);
        assert_eq!(out[..4], [0x82, 201, 0, 13]);
        assert_eq!(out.len(), 8 + 48);
    }
}
