//! Plugin ⇄ rtcd frames: decoding never panics, and whatever decodes re-encodes to bytes that
//! decode to the same message.
#![no_main]
use calls_proto::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ClientMessage::decode(data) {
        let again = ClientMessage::decode(&m.encode()).expect("re-encoded frame must decode");
        // Unknown types drop their data; everything else must survive the round trip.
        if !matches!(m, ClientMessage::Unknown { .. }) {
            assert_eq!(again, m);
        }
    }
});
