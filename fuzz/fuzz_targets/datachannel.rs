//! Data-channel messages: decoding never panics, and decoded messages round-trip.
#![no_main]
use calls_proto::dc::DcMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = DcMessage::decode(data) {
        let again = DcMessage::decode(&m.encode()).expect("re-encoded message must decode");
        // NaN payloads are not equal to themselves.
        let nan = matches!(m, DcMessage::LossRate(f) | DcMessage::RoundTripTime(f) | DcMessage::Jitter(f) if f.is_nan());
        if !nan {
            assert_eq!(again, m);
        }
    }
});
