//! Property tests: every message round-trips, and no byte string makes a decoder panic.

use calls_proto::dc::DcMessage;
use calls_proto::{ClientMessage, JoinData, RtcMessage};
use proptest::prelude::*;

fn rtc_msg() -> impl Strategy<Value = RtcMessage> {
    (
        ".{0,40}",
        ".{0,30}",
        ".{0,30}",
        ".{0,30}",
        0i64..200,
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(g, u, s, c, t, d)| RtcMessage {
            group_id: g,
            user_id: u,
            session_id: s,
            call_id: c,
            msg_type: t,
            data: d,
        })
}

fn client_msg() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (".{0,40}", ".{0,40}").prop_map(|(c, i)| ClientMessage::Hello {
            client_id: c,
            conn_id: i
        }),
        ".{1,40}".prop_map(|s| ClientMessage::Leave { session_id: s }),
        ".{1,40}".prop_map(|s| ClientMessage::Reconnect { session_id: s }),
        ".{1,40}".prop_map(|s| ClientMessage::Close { session_id: s }),
        rtc_msg().prop_map(ClientMessage::Rtc),
        rtc_msg().prop_map(ClientMessage::Vad),
        (
            ".{0,30}",
            ".{0,30}",
            ".{0,30}",
            ".{0,30}",
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(c, u, s, ch, a, d)| ClientMessage::Join(JoinData::new(
                &c, &u, &s, &ch, a, d
            ))),
    ]
}

proptest! {
    #[test]
    fn envelopes_round_trip(m in client_msg()) {
        prop_assert_eq!(ClientMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn envelope_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ClientMessage::decode(&bytes);
    }

    #[test]
    fn envelope_decoder_survives_mutations(m in client_msg(), idx in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = m.encode();
        let i = idx.index(bytes.len());
        bytes[i] = b;
        let _ = ClientMessage::decode(&bytes);
        let _ = ClientMessage::decode(&bytes[..i]);
    }

    #[test]
    fn dc_round_trip(f in -1e9f64..1e9, b in any::<bool>(), sdp in proptest::collection::vec(any::<u8>(), 0..200)) {
        for m in [DcMessage::Ping, DcMessage::Pong, DcMessage::Unlock, DcMessage::Lock(None), DcMessage::Lock(Some(b)),
                  DcMessage::LossRate(f), DcMessage::RoundTripTime(f), DcMessage::Jitter(f), DcMessage::Sdp(sdp.clone())] {
            prop_assert_eq!(DcMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn dc_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = DcMessage::decode(&bytes);
    }
}
