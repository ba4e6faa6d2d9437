//! The media plane end to end against the built binary: a WebRTC peer (str0m, driven the way a
//! browser is) joins through the plugin protocol and connects over real loopback UDP.

mod common;
use calls_proto::dc::DcMessage;
use calls_proto::{ClientMessage, JoinData, RtcMessage, RtcMessageType};
use common::*;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

#[tokio::test(flavor = "multi_thread")]
async fn webrtc_peer_connects_through_the_plugin_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), &[]);
    assert_eq!(register(&r, "clientA", KEY).await.status(), 201);
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut ws).await;
    send(
        &mut ws,
        &ClientMessage::Join(JoinData::new("call1", "u1", "s1", "ch1", false, true)),
    )
    .await;

    // The end client: a data channel only, as the Calls clients start.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap())
        .unwrap();
    let mut api = rtc.sdp_api();
    api.add_channel("calls-dc".into());
    let (offer, pending) = api.apply().unwrap();
    let data =
        serde_json::to_vec(&serde_json::json!({"type":"offer","sdp": offer.to_sdp_string()}))
            .unwrap();
    send(
        &mut ws,
        &ClientMessage::Rtc(RtcMessage {
            session_id: "s1".into(),
            ..RtcMessage::new(RtcMessageType::Sdp, data)
        }),
    )
    .await;

    // The answer and trickled candidates come back on the plugin channel.
    let mut pending = Some(pending);
    let mut candidates = Vec::new();
    while pending.is_some() || candidates.is_empty() {
        let ClientMessage::Rtc(m) = recv(&mut ws, Duration::from_secs(5)).await else {
            panic!("expected rtc")
        };
        assert_eq!(
            (m.group_id.as_str(), m.user_id.as_str(), m.call_id.as_str()),
            ("clientA", "u1", "call1")
        );
        let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        match m.kind() {
            Some(RtcMessageType::Sdp) => {
                assert_eq!(v["type"], "answer");
                let ans = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                rtc.sdp_api()
                    .accept_answer(pending.take().expect("one answer"), ans)
                    .unwrap();
            }
            Some(RtcMessageType::Ice) => {
                assert_eq!(v["type"], "candidate");
                assert_eq!(v["candidate"]["sdpMid"], "0");
                assert!(v["candidate"]["usernameFragment"].is_null());
                let c = v["candidate"]["candidate"].as_str().unwrap().to_owned();
                assert!(
                    c.starts_with("candidate:") && c.contains("127.0.0.1"),
                    "{c}"
                );
                rtc.add_remote_candidate(Candidate::from_sdp_string(&c).unwrap());
                candidates.push(c);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // ICE (the server is lite), DTLS and SCTP over real UDP, then a DC ping answered with pong.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut dc, mut ponged) = (None, false);
    let mut buf = vec![0u8; 2000];
    while !ponged {
        assert!(
            Instant::now() < deadline,
            "no pong within 10 s (dc open: {})",
            dc.is_some()
        );
        let wait = match rtc.poll_output().unwrap() {
            Output::Transmit(t) => {
                sock.send_to(&t.contents, t.destination).await.unwrap();
                continue;
            }
            Output::Timeout(t) => t
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
            Output::Event(Event::ChannelOpen(id, _)) => {
                dc = Some(id);
                rtc.channel(id)
                    .unwrap()
                    .write(true, &DcMessage::Ping.encode())
                    .unwrap();
                continue;
            }
            Output::Event(Event::ChannelData(d)) => {
                ponged = DcMessage::decode(&d.data).unwrap() == DcMessage::Pong;
                continue;
            }
            Output::Event(_) => continue,
        };
        match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, src))) => {
                let rcv = Receive {
                    proto: Protocol::Udp,
                    source: src,
                    destination: local,
                    contents: buf[..n].try_into().unwrap(),
                };
                rtc.handle_input(Input::Receive(Instant::now(), rcv))
                    .unwrap();
            }
            _ => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }

    // Leaving releases the session and tells the plugin.
    send(
        &mut ws,
        &ClientMessage::Leave {
            session_id: "s1".into(),
        },
    )
    .await;
    recv_close(&mut ws, "s1").await;
    assert_eq!(
        r.metric("rtcd_rtc_sessions_total{groupID=\"clientA\"}")
            .await,
        0.0
    );
}

/// RFC 4571 framing for the test client.
async fn write_framed(s: &mut tokio::net::tcp::OwnedWriteHalf, data: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut buf = (data.len() as u16).to_be_bytes().to_vec();
    buf.extend_from_slice(data);
    s.write_all(&buf).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_tcp_only_client_connects() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), &[]);
    assert_eq!(register(&r, "clientA", KEY).await.status(), 201);
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut ws).await;
    send(
        &mut ws,
        &ClientMessage::Join(JoinData::new("call1", "u1", "t1", "ch1", false, false)),
    )
    .await;

    // Only an active TCP candidate: this client cannot use UDP at all.
    let local: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    let cand = Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(str0m::net::TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(cand).unwrap();
    let mut api = rtc.sdp_api();
    api.add_channel("calls-dc".into());
    let (offer, pending) = api.apply().unwrap();
    let data =
        serde_json::to_vec(&serde_json::json!({"type":"offer","sdp": offer.to_sdp_string()}))
            .unwrap();
    send(
        &mut ws,
        &ClientMessage::Rtc(RtcMessage {
            session_id: "t1".into(),
            ..RtcMessage::new(RtcMessageType::Sdp, data)
        }),
    )
    .await;

    let mut pending = Some(pending);
    let mut server_tcp = None;
    while pending.is_some() || server_tcp.is_none() {
        let ClientMessage::Rtc(m) = recv(&mut ws, Duration::from_secs(5)).await else {
            panic!("expected rtc")
        };
        let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        match m.kind() {
            Some(RtcMessageType::Sdp) => {
                let ans = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                rtc.sdp_api()
                    .accept_answer(pending.take().unwrap(), ans)
                    .unwrap();
            }
            Some(RtcMessageType::Ice) => {
                let c = v["candidate"]["candidate"].as_str().unwrap();
                if c.contains(" tcp ") {
                    assert!(c.contains("tcptype passive"), "{c}");
                    let parsed = Candidate::from_sdp_string(c).unwrap();
                    server_tcp = Some(parsed.addr());
                    rtc.add_remote_candidate(parsed);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let server = server_tcp.unwrap();
    let stream = tokio::net::TcpStream::connect(server)
        .await
        .expect("ICE-TCP listener");
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut frames) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let mut len = [0u8; 2];
        while rd.read_exact(&mut len).await.is_ok() {
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            if rd.read_exact(&mut buf).await.is_err() || tx.send(buf).await.is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ponged = false;
    while !ponged {
        assert!(
            Instant::now() < deadline,
            "no pong over ICE-TCP within 10 s"
        );
        let wait = match rtc.poll_output().unwrap() {
            Output::Transmit(t) => {
                assert_eq!(t.proto, Protocol::Tcp, "a TCP-only client never sends UDP");
                write_framed(&mut wr, &t.contents).await;
                continue;
            }
            Output::Timeout(t) => t
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
            Output::Event(Event::ChannelOpen(id, _)) => {
                rtc.channel(id)
                    .unwrap()
                    .write(true, &DcMessage::Ping.encode())
                    .unwrap();
                continue;
            }
            Output::Event(Event::ChannelData(d)) => {
                ponged = DcMessage::decode(&d.data).unwrap() == DcMessage::Pong;
                continue;
            }
            Output::Event(_) => continue,
        };
        match tokio::time::timeout(wait, frames.recv()).await {
            Ok(Some(f)) => {
                let rcv = Receive {
                    proto: Protocol::Tcp,
                    source: server,
                    destination: local,
                    contents: f.as_slice().try_into().unwrap(),
                };
                rtc.handle_input(Input::Receive(Instant::now(), rcv))
                    .unwrap();
            }
            _ => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
    send(
        &mut ws,
        &ClientMessage::Leave {
            session_id: "t1".into(),
        },
    )
    .await;
    recv_close(&mut ws, "t1").await;
}
