#![no_main]
//! The media port's demultiplexer reads any datagram from anyone: the STUN USERNAME parser and
//! the Binding-response parser (STUN discovery) must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = calls_sfu::stun::local_ufrag(data);
    let txid = data.get(8..20).and_then(|t| <[u8; 12]>::try_from(t).ok()).unwrap_or([0; 12]);
    let _ = calls_sfu::stun::mapped_address(data, txid);
});
