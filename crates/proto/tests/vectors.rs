//! The byte vectors of spec rtcd.md §2.3 (WebSocket envelopes) and §3.14 (data channel), plus the
//! tolerance the Go decoders have.

use calls_proto::dc::{DcMessage, TrackInfo};
use calls_proto::envelope::DecodeError;
use calls_proto::{ClientMessage, JoinData, RtcMessage, RtcMessageType};

/// Builds bytes from hex tokens and 'quoted' ASCII tokens: `a5 'hello' 82`.
fn hx(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').expect("closing quote");
            out.extend_from_slice(&r.as_bytes()[..end]);
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '\'')
                .unwrap_or(rest.len());
            let tok = &rest[..end];
            assert!(tok.len().is_multiple_of(2), "odd hex token {tok}");
            for i in (0..tok.len()).step_by(2) {
                out.push(u8::from_str_radix(&tok[i..i + 2], 16).expect("hex"));
            }
            rest = rest[end..].trim_start();
        }
    }
    out
}

fn rtc(session: &str, ty: RtcMessageType, data: &[u8]) -> RtcMessage {
    RtcMessage {
        session_id: session.into(),
        msg_type: ty as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

#[test]
fn hello_vector() {
    let conn_id = "ybndrfg8ejkmcpqxot1uwisza3";
    let m = ClientMessage::Hello {
        client_id: "clientA".into(),
        conn_id: conn_id.into(),
    };
    let want = hx(&format!(
        "a5 'hello' 82 a8 'clientID' a7 'clientA' a6 'connID' ba '{conn_id}'"
    ));
    assert_eq!(m.encode(), want);
    assert_eq!(ClientMessage::decode(&want).unwrap(), m);
}

#[test]
fn join_vector() {
    let bytes = hx(
        "a4 'join' 86 a6 'callID' a2 'c1' a6 'userID' a2 'u1' a9 'sessionID' a2 's1' \
                    a9 'channelID' a3 'ch1' aa 'av1Support' c2 ab 'dcSignaling' c3",
    );
    let m = ClientMessage::Join(JoinData::new("c1", "u1", "s1", "ch1", false, true));
    assert_eq!(m.encode(), bytes);
    let ClientMessage::Join(j) = ClientMessage::decode(&bytes).unwrap() else {
        panic!("not a join")
    };
    assert_eq!(
        (
            j.call_id.as_str(),
            j.user_id.as_str(),
            j.session_id.as_str()
        ),
        ("c1", "u1", "s1")
    );
    assert_eq!(
        (j.channel_id(), j.av1_support(), j.dc_signaling()),
        ("ch1", false, true)
    );
}

#[test]
fn leave_and_close_vectors() {
    let leave = hx("a5 'leave' 81 a9 'sessionID' a2 's1'");
    assert_eq!(
        ClientMessage::Leave {
            session_id: "s1".into()
        }
        .encode(),
        leave
    );
    assert_eq!(
        ClientMessage::decode(&leave).unwrap(),
        ClientMessage::Leave {
            session_id: "s1".into()
        }
    );
    let close = hx("a5 'close' 81 a9 'sessionID' a2 's1'");
    assert_eq!(
        ClientMessage::Close {
            session_id: "s1".into()
        }
        .encode(),
        close
    );
    let reconnect = hx("a9 'reconnect' 81 a9 'sessionID' a2 's1'");
    assert_eq!(
        ClientMessage::decode(&reconnect).unwrap(),
        ClientMessage::Reconnect {
            session_id: "s1".into()
        }
    );
}

#[test]
fn rtc_sdp_vector() {
    let sdp = br#"{"type":"offer","sdp":"v=0..."}"#;
    assert_eq!(sdp.len(), 0x1f);
    let bytes = hx(
        "a3 'rtc' 86 a8 'group_id' a0 a7 'user_id' a0 aa 'session_id' a5 'sess1' a7 'call_id' a0 \
                    a4 'type' 02 a4 'data' c4 1f",
    );
    let bytes = [bytes, sdp.to_vec()].concat();
    let m = ClientMessage::Rtc(rtc("sess1", RtcMessageType::Sdp, sdp));
    assert_eq!(m.encode(), bytes);
    assert_eq!(ClientMessage::decode(&bytes).unwrap(), m);
}

#[test]
fn mute_vector_omits_data() {
    let bytes = hx(
        "a3 'rtc' 85 a8 'group_id' a0 a7 'user_id' a0 aa 'session_id' a5 'sess1' a7 'call_id' a0 a4 'type' 03",
    );
    let m = ClientMessage::Rtc(rtc("sess1", RtcMessageType::Mute, b""));
    assert_eq!(m.encode(), bytes);
    assert_eq!(ClientMessage::decode(&bytes).unwrap(), m);
}

#[test]
fn vad_vector() {
    let bytes = hx(
        "a3 'vad' 85 a8 'group_id' a7 'clientA' a7 'user_id' a2 'u1' aa 'session_id' a2 's1' \
                    a7 'call_id' a2 'c1' a4 'type' 07",
    );
    let m = ClientMessage::Vad(RtcMessage {
        group_id: "clientA".into(),
        user_id: "u1".into(),
        session_id: "s1".into(),
        call_id: "c1".into(),
        msg_type: RtcMessageType::VoiceOn as i64,
        data: vec![],
    });
    assert_eq!(m.encode(), bytes);
    assert_eq!(ClientMessage::decode(&bytes).unwrap(), m);
}

#[test]
fn decoders_accept_any_int_width_str_or_bin_and_any_key_order() {
    // type as uint8 (cc), int16 (d1) and uint32 (ce); session_id as bin; keys shuffled; unknown key.
    for ty in ["cc 04", "d1 0004", "ce 00000004"] {
        let bytes = hx(&format!(
            "a3 'rtc' 83 a4 'type' {ty} a5 'extra' 93 01 02 03 aa 'session_id' c4 02 's9'"
        ));
        assert_eq!(
            ClientMessage::decode(&bytes).unwrap(),
            ClientMessage::Rtc(rtc("s9", RtcMessageType::Unmute, b""))
        );
    }
    // Message type itself as bin (Go's DecodeString accepts it), and data as str.
    let bytes = hx("c4 03 'rtc' 82 aa 'session_id' a1 'x' a4 'data' a2 '{}'");
    let ClientMessage::Rtc(m) = ClientMessage::decode(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(m.data, b"{}");
    // join keys in another order, with a groupID that rtcd ignores and nil props.
    let bytes = hx(
        "a4 'join' 85 a7 'groupID' a1 'g' a9 'sessionID' a1 's' a6 'callID' a1 'c' a6 'userID' a1 'u' a9 'channelID' c0",
    );
    let ClientMessage::Join(j) = ClientMessage::decode(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!((j.session_id.as_str(), j.call_id.as_str()), ("s", "c"));
    assert!(j.channel_id.is_null() && j.av1_support.is_null());
    // Trailing bytes after the data value are ignored, as by vmihailenco's Unmarshal.
    let mut leave = hx("a5 'leave' 81 a9 'sessionID' a2 's1'");
    leave.extend_from_slice(&[0xc0, 0xc0]);
    assert_eq!(
        ClientMessage::decode(&leave).unwrap(),
        ClientMessage::Leave {
            session_id: "s1".into()
        }
    );
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cases: &[&str] = &[
        "",                                        // nothing
        "a5 'hel'",                                // truncated type
        "a5 'leave'",                              // missing data
        "92 a5 'leave' 81 a9 'sessionID' a2 's1'", // an array, not two values
        "01 02",                                   // type is an int
        "a5 'leave' 81 a9 'sessionID' 01",         // non-string value in leave
        "a9 'reconnect' 80",                       // empty map
        "a9 'reconnect' c0",                       // nil
        "a4 'join' 93 01 02 03",                   // join data not a map
        "a3 'rtc' 81 a4 'type' a1 'x'",            // rtc type not an int
        "a3 'rtc' 81 a4 'data' 01",                // rtc data not bytes
        "a3 'rtc' 81 aa 'session_id' db ffffffff", // str32 claiming 4 GiB
        "a5 'leave' dd ffffffff",                  // array32 claiming 4G entries
    ];
    for c in cases {
        assert!(ClientMessage::decode(&hx(c)).is_err(), "accepted {c}");
    }
    // Deep nesting is refused instead of recursing without bound.
    let mut deep = hx("a3 'foo'");
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert!(matches!(
        ClientMessage::decode(&deep),
        Err(DecodeError::Data { .. })
    ));
    // Unknown types decode (and are rejected later by the server, which logs them).
    assert_eq!(
        ClientMessage::decode(&hx("a3 'foo' 81 a1 'a' 01")).unwrap(),
        ClientMessage::Unknown {
            msg_type: "foo".into()
        }
    );
}

#[test]
fn data_channel_vectors() {
    assert_eq!(DcMessage::Pong.encode(), hx("cc 02"));
    assert_eq!(DcMessage::Lock(Some(true)).encode(), hx("cc 07 c3"));
    assert_eq!(DcMessage::Lock(Some(false)).encode(), hx("cc 07 c2"));
    assert_eq!(DcMessage::decode(&hx("07")).unwrap(), DcMessage::Lock(None));
    assert_eq!(
        DcMessage::decode(&hx("cc 07")).unwrap(),
        DcMessage::Lock(None)
    );
    assert_eq!(DcMessage::decode(&hx("01")).unwrap(), DcMessage::Ping);
    assert_eq!(DcMessage::decode(&hx("cc 01")).unwrap(), DcMessage::Ping);
    assert_eq!(DcMessage::decode(&hx("08")).unwrap(), DcMessage::Unlock);
    assert_eq!(
        DcMessage::decode(&hx("04 cb 3f947ae147ae147b")).unwrap(),
        DcMessage::LossRate(0.02)
    );
    assert_eq!(
        DcMessage::LossRate(0.02).encode(),
        hx("cc 04 cb 3f947ae147ae147b")
    );
    // JS sends an integral float as an int.
    assert_eq!(
        DcMessage::decode(&hx("04 00")).unwrap(),
        DcMessage::LossRate(0.0)
    );
    assert_eq!(
        DcMessage::decode(&hx("05 ca 3f000000")).unwrap(),
        DcMessage::RoundTripTime(0.5)
    );
    assert_eq!(
        DcMessage::decode(&hx("06 cd 0001")).unwrap(),
        DcMessage::Jitter(1.0)
    );
    let z = [0x78u8, 0x9c, 1, 2, 3];
    let mut sdp = hx("cc 03 c4 05");
    sdp.extend_from_slice(&z);
    assert_eq!(DcMessage::Sdp(z.to_vec()).encode(), sdp);
    assert_eq!(DcMessage::decode(&sdp).unwrap(), DcMessage::Sdp(z.to_vec()));
    let mm = DcMessage::MediaMap(vec![(
        "1".into(),
        TrackInfo {
            track_type: "voice".into(),
            sender_id: "sess1".into(),
        },
    )]);
    let bytes = hx("cc 09 81 a1 '1' 82 a4 'type' a5 'voice' a9 'sender_id' a5 'sess1'");
    assert_eq!(mm.encode(), bytes);
    assert_eq!(DcMessage::decode(&bytes).unwrap(), mm);
}

#[test]
fn data_channel_rejects_garbage() {
    for c in [
        "",
        "cc",
        "0a",
        "ff",
        "cc 03 01",
        "04 a1 'x'",
        "07 01",
        "09 01",
        "09 81 a1 '1' 01",
        "c3",
    ] {
        assert!(DcMessage::decode(&hx(c)).is_err(), "accepted {c}");
    }
}

#[test]
fn go_json_encoding() {
    use calls_proto::json;
    assert_eq!(
        json::to_vec(&serde_json::json!({"e":"<a&b>"})),
        b"{\"e\":\"\\u003ca\\u0026b\\u003e\"}\n"
    );
    assert_eq!(json::go_float(1.0), "1");
    assert_eq!(json::go_float(0.5123), "0.5123");
    assert_eq!(json::go_float(1e-7), "1e-7");
    assert_eq!(json::go_float(1e21), "1e+21");
    assert_eq!(json::go_float(0.0), "0");
    assert_eq!(
        json::status_body(400, Some("registration failed: key not long enough"), &[]),
        b"{\"code\":\"400\",\"error\":\"registration failed: key not long enough\"}\n"
    );
    assert_eq!(
        json::status_body(201, None, &[("clientID", "a")]),
        b"{\"clientID\":\"a\",\"code\":\"201\"}\n"
    );
}
