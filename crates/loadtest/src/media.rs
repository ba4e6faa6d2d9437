//! Sample media for simulated participants: Opus packets from Ogg files and VP8 frames from IVF
//! files, cut into RTP payloads once at start-up and replayed in a loop with their real timing.
//!
//! Parsing is done by hand because both containers are a few lines of framing and the tool
//! never decodes media: it only needs packet boundaries and durations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest RTP payload a VP8 packet carries (a 1200-byte datagram budget, as browsers use).
pub const MAX_PAYLOAD: usize = 1100;

/// One RTP payload with what the sender needs to stamp it.
#[derive(Debug, Clone)]
pub struct Packet {
    /// When it is sent, from the start of one pass over the file.
    pub at: Duration,
    /// RTP timestamp from the start of one pass, in the clock rate of the codec.
    pub rtp_time: u32,
    /// Last packet of a frame (video); always set for audio.
    pub marker: bool,
    pub payload: Arc<[u8]>,
}

/// A file cut into packets, replayed forever: pass `n` adds `n × duration` to every time.
#[derive(Debug, Clone)]
pub struct Clip {
    pub packets: Vec<Packet>,
    /// Length of one pass.
    pub duration: Duration,
    /// RTP ticks of one pass.
    pub rtp_duration: u32,
    /// Average payload bitrate (bits per second) of one pass.
    pub bitrate: u64,
}

impl Clip {
    fn new(packets: Vec<Packet>, duration: Duration, rtp_duration: u32) -> Result<Self, String> {
        if packets.is_empty() || duration.is_zero() {
            return Err("no media packets".into());
        }
        let bytes: usize = packets.iter().map(|p| p.payload.len()).sum();
        let bitrate = (bytes as f64 * 8.0 / duration.as_secs_f64()) as u64;
        Ok(Clip {
            packets,
            duration,
            rtp_duration,
            bitrate,
        })
    }

    /// The `i`-th packet of the endless replay, with its send time and RTP time.
    pub fn get(&self, i: u64) -> (Duration, u32, &Packet) {
        let n = self.packets.len() as u64;
        let (pass, idx) = (i / n, (i % n) as usize);
        let p = &self.packets[idx];
        let at = self.duration * pass as u32 + p.at;
        let rtp = p
            .rtp_time
            .wrapping_add(self.rtp_duration.wrapping_mul(pass as u32));
        (at, rtp, p)
    }
}

/// Where the sample media lives: `$CALLS_TESTDATA`, else the first `shared/testdata` found
/// beside the repository, the working directory or the executable, walking up (the project's
/// checkout sits next to `shared/`), else `/work/shared/testdata`.
pub fn testdata_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("CALLS_TESTDATA") {
        return Ok(PathBuf::from(d));
    }
    let starts = [
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
    ];
    starts
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s.ancestors()
                .map(|a| a.join("shared/testdata"))
                .collect::<Vec<_>>()
        })
        // Last, where this project's machines keep it, for checkouts made elsewhere (a CI
        // clone in /tmp has no `shared/` beside it).
        .chain([PathBuf::from("/work/shared/testdata")])
        .find(|d| d.join("speech_0.ogg").is_file())
        .ok_or_else(|| {
            "sample media not found: set CALLS_TESTDATA to the directory holding speech_0.ogg"
                .into()
        })
}

/// Samples (48 kHz) of one Opus packet, from its TOC byte (RFC 6716 §3.1).
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in units of 2.5 ms (120 samples at 48 kHz).
    let units = match config {
        0..=11 => [4u32, 8, 16, 24][(config % 4) as usize],
        12..=15 => [4, 8][(config % 2) as usize],
        _ => [1, 2, 4, 8][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => (*packet.get(1)? & 0x3f) as u32,
    };
    Some(units * 120 * frames)
}

/// The Opus packets of an Ogg Opus file (RFC 7845), without the two header packets.
pub fn read_ogg_opus(path: &Path) -> Result<Clip, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let packets = ogg_packets(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    if packets.first().is_none_or(|p| !p.starts_with(b"OpusHead")) {
        return Err(format!("{}: not an Ogg Opus file", path.display()));
    }
    let mut out = Vec::new();
    let mut samples = 0u32;
    for p in packets.into_iter().skip(2) {
        let Some(n) = opus_samples(&p) else { continue };
        out.push(Packet {
            at: Duration::from_micros(samples as u64 * 1_000_000 / 48_000),
            rtp_time: samples,
            marker: true,
            payload: p.into(),
        });
        samples += n;
    }
    let duration = Duration::from_micros(samples as u64 * 1_000_000 / 48_000);
    Clip::new(out, duration, samples).map_err(|e| format!("{}: {e}", path.display()))
}

/// Splits an Ogg stream into packets (one logical stream assumed, as in the sample files).
fn ogg_packets(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let hdr = data.get(pos..pos + 27).ok_or("truncated Ogg page header")?;
        if &hdr[..4] != b"OggS" {
            return Err(format!("no Ogg page at byte {pos}"));
        }
        let nseg = hdr[26] as usize;
        let table = data
            .get(pos + 27..pos + 27 + nseg)
            .ok_or("truncated Ogg segment table")?;
        let mut body = pos + 27 + nseg;
        for &len in table {
            let seg = data
                .get(body..body + len as usize)
                .ok_or("truncated Ogg page")?;
            partial.extend_from_slice(seg);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pos = body;
    }
    Ok(packets)
}

/// An IVF file: its codec (FourCC), its frames with their presentation times, and how long
/// one pass lasts.
pub struct Ivf {
    pub fourcc: String,
    pub frames: Vec<(Duration, Vec<u8>)>,
    pub duration: Duration,
}

/// Reads an IVF file.
pub fn read_ivf(path: &Path) -> Result<Ivf, String> {
    let err = |e: &str| format!("{}: {e}", path.display());
    let data = std::fs::read(path).map_err(|e| err(&e.to_string()))?;
    if data.len() < 32 || &data[..4] != b"DKIF" {
        return Err(err("not an IVF file"));
    }
    let u16le = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u32le = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or_default());
    let fourcc = String::from_utf8_lossy(&data[8..12]).into_owned();
    let (rate, scale) = (u32le(16) as u64, u32le(20).max(1) as u64);
    if rate == 0 {
        return Err(err("IVF frame rate is 0"));
    }
    let mut pos = u16le(6).max(32);
    let mut frames = Vec::new();
    while pos + 12 <= data.len() {
        let size = u32le(pos) as usize;
        let pts = u64::from_le_bytes(data[pos + 4..pos + 12].try_into().unwrap_or_default());
        let frame = data
            .get(pos + 12..pos + 12 + size)
            .ok_or_else(|| err("truncated IVF frame"))?;
        frames.push((
            Duration::from_micros(pts * scale * 1_000_000 / rate),
            frame.to_vec(),
        ));
        pos += 12 + size;
    }
    // One pass lasts until the frame after the last one would be shown.
    let frame_time = Duration::from_micros(scale * 1_000_000 / rate);
    let duration = frames.last().map(|f| f.0 + frame_time).unwrap_or_default();
    Ok(Ivf {
        fourcc,
        frames,
        duration,
    })
}

/// A VP8 IVF file cut into RTP payloads (RFC 7741: a one-byte descriptor, S set on a frame's
/// first packet, PID 0), timed by the file's own timestamps on the 90 kHz clock.
pub fn read_ivf_vp8(path: &Path) -> Result<Clip, String> {
    let Ivf {
        fourcc,
        frames,
        duration,
    } = read_ivf(path)?;
    if fourcc != "VP80" {
        return Err(format!("{}: codec {fourcc}, expected VP80", path.display()));
    }
    let mut out = Vec::new();
    for (at, frame) in frames {
        let rtp_time = (at.as_micros() * 90 / 1000) as u32;
        let chunks: Vec<&[u8]> = frame.chunks(MAX_PAYLOAD - 1).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, c) in chunks.into_iter().enumerate() {
            let mut payload = Vec::with_capacity(c.len() + 1);
            payload.push(if i == 0 { 0x10 } else { 0x00 });
            payload.extend_from_slice(c);
            out.push(Packet {
                at,
                rtp_time,
                marker: i == last,
                payload: payload.into(),
            });
        }
    }
    let rtp_duration = (duration.as_micros() * 90 / 1000) as u32;
    Clip::new(out, duration, rtp_duration).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        super::testdata_dir().unwrap().join(name)
    }

    #[test]
    fn opus_toc_durations() {
        assert_eq!(opus_samples(&[0b1111_1000]), Some(960)); // CELT 20 ms, one frame
        assert_eq!(opus_samples(&[0b0000_1001]), Some(1920)); // SILK 20 ms, two frames
        assert_eq!(opus_samples(&[0b0111_1011, 3]), Some(2880)); // hybrid 20 ms × 3
        assert_eq!(opus_samples(&[0b1000_0000]), Some(120)); // CELT 2.5 ms
        assert_eq!(opus_samples(&[]), None);
        assert_eq!(opus_samples(&[0b0000_0011]), None); // code 3 without its count byte
    }

    #[test]
    fn speech_sample_is_about_80_kbps_of_20_ms_packets() {
        let clip = read_ogg_opus(&testdata("speech_0.ogg")).unwrap();
        let secs = clip.duration.as_secs_f64();
        assert!((33.0..36.0).contains(&secs), "{secs}");
        assert!((60_000..85_000).contains(&clip.bitrate), "{}", clip.bitrate);
        assert_eq!(clip.packets[1].rtp_time - clip.packets[0].rtp_time, 960);
        // The second pass continues the clock.
        let n = clip.packets.len() as u64;
        let (at, rtp, _) = clip.get(n);
        assert_eq!(at, clip.duration);
        assert_eq!(rtp, clip.rtp_duration);
    }

    #[test]
    fn screen_samples_are_vp8_at_their_rates() {
        let h = read_ivf_vp8(&testdata("screen_h.ivf")).unwrap();
        let l = read_ivf_vp8(&testdata("screen_l.ivf")).unwrap();
        assert!(
            h.bitrate > 1_200_000 && h.bitrate < 2_000_000,
            "{}",
            h.bitrate
        );
        assert!(l.bitrate > 300_000 && l.bitrate < 700_000, "{}", l.bitrate);
        assert!(h.packets.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
        assert_eq!(
            h.packets[0].payload[0], 0x10,
            "first packet starts a partition"
        );
        // Frames end with a marker; 20 fps on the 90 kHz clock.
        let first_marker = h.packets.iter().position(|p| p.marker).unwrap();
        assert_eq!(h.packets[first_marker + 1].rtp_time, 4500);
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"OggS\0\0").unwrap();
        assert!(read_ogg_opus(&p).unwrap_err().contains("truncated"));
        std::fs::write(&p, b"DKIF").unwrap();
        assert!(read_ivf_vp8(&p).unwrap_err().contains("not an IVF"));
        assert!(read_ivf_vp8(&dir.path().join("missing")).is_err());
    }
}
