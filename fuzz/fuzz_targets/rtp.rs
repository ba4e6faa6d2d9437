//! The voice fast path reads every RTP datagram a publisher sends before str0m does: header
//! parsing, packet-index guessing, replay checks and SRTP opening must never panic, whatever
//! the bytes, and must refuse anything not sealed with the session's keys.
#![no_main]
use calls_sfu::fast::parse_rtp;
use calls_sfu::srtp::{ReplayWindow, SrtpReceiver};
use libfuzzer_sys::fuzz_target;
use str0m::crypto::dtls::SrtpProfile;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let Some(rtp) = parse_rtp(packet, Some(selector & 0x0f), Some(selector >> 4)) else {
        return;
    };
    assert!(rtp.header_len >= 12 && rtp.header_len <= packet.len());
    let mut window = ReplayWindow::after(u64::from(selector) << 12);
    let Some(index) = window.index(rtp.seq) else {
        return;
    };
    if !window.is_new(index) {
        return;
    }
    let crypto = str0m::crypto::from_feature_flags();
    let profile = SrtpProfile::ALL[usize::from(selector >> 4) % SrtpProfile::ALL.len()];
    let material = vec![0x42; profile.keying_material_len()];
    let mut receiver = SrtpReceiver::new(&crypto, profile, &material, selector & 1 == 0).unwrap();
    let mut out = Vec::new();
    // Random bytes do not authenticate (a 2^-80 chance at the least).
    assert!(!receiver.unprotect_rtp(packet, rtp.header_len, (index >> 16) as u32, &mut out));
    assert!(out.is_empty());
    window.accept(index);
    assert!(!window.is_new(index));
});
