//! The plugin WebSocket channel against the built binary: hello, join/leave/close, reconnect
//! re-routing, the 10 s first-offer timeout, ping deadlines, a stalled peer, bad frames.

mod common;
use calls_proto::{ClientMessage, JoinData, RtcMessage, RtcMessageType};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

fn join(call: &str, sid: &str) -> ClientMessage {
    ClientMessage::Join(JoinData::new(call, "user1", sid, "chan1", false, true))
}

fn leave(sid: &str) -> ClientMessage {
    ClientMessage::Leave {
        session_id: sid.into(),
    }
}

fn close(sid: &str) -> ClientMessage {
    ClientMessage::Close {
        session_id: sid.into(),
    }
}

fn offer(sid: &str) -> ClientMessage {
    let sdp = br#"{"type":"offer","sdp":"v=0\r\n"}"#.to_vec();
    ClientMessage::Rtc(RtcMessage {
        session_id: sid.into(),
        ..RtcMessage::new(RtcMessageType::Sdp, sdp)
    })
}

async fn setup(env: &[(&str, &str)]) -> (tempfile::TempDir, Rtcd) {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), env);
    assert_eq!(register(&r, "clientA", KEY).await.status(), 201);
    (dir, r)
}

/// rtcd with one plugin connection and these sessions joined to `call1`, each with its offer in
/// and the last one's media session up: a call in progress, for the shutdown tests.
async fn call_in_progress(sids: &[&str]) -> (tempfile::TempDir, Rtcd, Ws) {
    let (d, r) = setup(&[]).await;
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut ws).await;
    for sid in sids {
        send(&mut ws, &join("call1", sid)).await;
        send(&mut ws, &offer(sid)).await;
    }
    let last = sids.last().expect("a session");
    r.wait_log(&format!("\"session_id\":\"{last}\""), T).await;
    (d, r, ws)
}

#[tokio::test]
async fn hello_join_sessions_leave_close() {
    let (_d, r) = setup(&[]).await;
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    let (client_id, conn_id) = hello(&mut ws).await;
    assert_eq!(client_id, "clientA");
    assert_eq!(conn_id.len(), 26);
    assert_eq!(
        r.metric("rtcd_ws_connections_total{clientID=\"clientA\"}")
            .await,
        1.0
    );

    send(&mut ws, &join("call1", "s1")).await;
    send(&mut ws, &offer("s1")).await; // keeps the session past the first-offer deadline
    send(&mut ws, &join("call1", "s2")).await;
    send(&mut ws, &offer("s2")).await;
    let auth = basic("clientA", KEY);
    let c = reqwest::Client::new();
    let body = c
        .get(r.url("/calls/call1/sessions/s1"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        "{\"GroupID\":\"clientA\",\"CallID\":\"call1\",\"UserID\":\"user1\",\"SessionID\":\"s1\",\
         \"Props\":{\"av1Support\":false,\"channelID\":\"chan1\",\"dcSignaling\":true}}\n"
    );
    let list: serde_json::Value = c
        .get(r.url("/calls/call1/sessions"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        r.metric("rtcd_rtc_sessions_total{groupID=\"clientA\"}")
            .await,
        2.0
    );

    send(&mut ws, &leave("s1")).await;
    assert_eq!(recv(&mut ws, T).await, close("s1"));
    send(&mut ws, &leave("s1")).await; // idempotent: no second close
    send(&mut ws, &leave("s2")).await;
    assert_eq!(recv(&mut ws, T).await, close("s2"));
    let st = c
        .get(r.url("/calls/call1/sessions"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(st.status(), 404, "an ended call answers 404");
    assert_eq!(
        r.metric("rtcd_rtc_sessions_total{groupID=\"clientA\"}")
            .await,
        0.0
    );
    assert!(
        r.metric("rtcd_ws_messages_total{clientID=\"clientA\",type=\"join\",direction=\"in\"}")
            .await
            >= 2.0
    );
    expect_silence(&mut ws, Duration::from_millis(300)).await;
    drop(ws);
    r.wait_log("mattermost client disconnected", T).await;
    assert_eq!(
        r.metric("rtcd_ws_connections_total{clientID=\"clientA\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn session_without_offer_is_closed_after_ten_seconds() {
    let (_d, r) = setup(&[]).await;
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut ws).await;
    let t0 = Instant::now();
    send(&mut ws, &join("call1", "quiet")).await;
    assert_eq!(recv(&mut ws, Duration::from_secs(15)).await, close("quiet"));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(9900) && waited < Duration::from_secs(12),
        "closed after {waited:?}"
    );
    assert!(
        r.metric("rtcd_rtc_errors_total{groupID=\"clientA\",type=\"signaling\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn sessions_survive_disconnect_and_reconnect_reroutes() {
    let (_d, r) = setup(&[]).await;
    let mut a = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut a).await;
    send(&mut a, &join("call1", "s1")).await;
    send(&mut a, &offer("s1")).await;
    send(&mut a, &join("call1", "s2")).await;
    send(&mut a, &offer("s2")).await;
    drop(a); // the plugin node's connection drops; the sessions stay
    r.wait_log("mattermost client disconnected", T).await;
    let st = reqwest::Client::new()
        .get(r.url("/calls/call1/sessions/s1"))
        .header("Authorization", basic("clientA", KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(st.status(), 200, "session survives the disconnect");

    let mut b = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut b).await;
    let mut c = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut c).await;
    send(
        &mut b,
        &ClientMessage::Reconnect {
            session_id: "s1".into(),
        },
    )
    .await;
    send(
        &mut c,
        &ClientMessage::Reconnect {
            session_id: "s2".into(),
        },
    )
    .await;
    // The session's output now goes to the reconnected connection: its `close` included, since
    // the joining connection is gone.
    send(&mut c, &leave("s1")).await;
    assert_eq!(recv(&mut b, T).await, close("s1"));
    send(&mut b, &leave("s2")).await;
    assert_eq!(recv(&mut c, T).await, close("s2"));
    expect_silence(&mut b, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn bad_frames_are_dropped_and_the_connection_lives_on() {
    let (_d, r) = setup(&[]).await;
    let mut ws = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut ws).await;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc1],
        vec![0xa5, b'l', b'e'],
        b"\x92\xa5leave\x81\xa9sessionID\xa2s1".to_vec(),
        b"\xa5leave\x81\xa9sessionID\x01".to_vec(),
        b"\xa9reconnect\x81\xa9sessionID\xa4none".to_vec(),
        b"\xa4join\x93\x01\x02\x03".to_vec(),
        b"\xa4join\x81\xa6callID\xa1c".to_vec(),
        b"\xa3rtc\x81\xa4type\xa1x".to_vec(),
        b"\xa7unknown\xc0".to_vec(),
        ClientMessage::Rtc(RtcMessage {
            session_id: "ghost".into(),
            ..RtcMessage::new(RtcMessageType::Mute, vec![])
        })
        .encode(),
    ];
    for g in garbage {
        ws.send(Message::Binary(g.into())).await.unwrap();
    }
    ws.send(Message::Text("hello?".into())).await.unwrap();
    // Duplicate session IDs are refused without side effects.
    send(&mut ws, &join("call1", "dup")).await;
    send(&mut ws, &offer("dup")).await;
    send(&mut ws, &join("call2", "dup")).await;
    r.wait_log("already exists", T).await;
    r.wait_log("unexpected text message", T).await;
    assert_eq!(
        r.metric("rtcd_rtc_sessions_total{groupID=\"clientA\"}")
            .await,
        1.0
    );
    assert_eq!(
        r.metric("rtcd_ws_messages_total{clientID=\"clientA\",type=\"unknown\",direction=\"in\"}")
            .await,
        1.0
    );
    // Still alive and serving.
    send(&mut ws, &leave("dup")).await;
    assert_eq!(recv(&mut ws, T).await, close("dup"));

    // An oversized frame ends only that connection.
    let mut other = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut other).await;
    let _ = ws
        .send(Message::Binary(
            vec![0u8; calls_proto::MAX_WS_MESSAGE_BYTES + 1].into(),
        ))
        .await;
    let end = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "oversized frame should close the connection");
    send(&mut other, &join("call1", "after")).await;
    send(&mut other, &leave("after")).await;
    assert_eq!(recv(&mut other, T).await, close("after"));
}

#[tokio::test]
async fn silent_peer_is_dropped_by_the_read_deadline() {
    let (_d, r) = setup(&[]).await;
    // Never polled after hello, so it never answers pings.
    let mut mute = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut mute).await;
    // Keeps reading (tungstenite answers pings), so it must stay.
    let mut live = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut live).await;
    let t0 = Instant::now();
    let reader = tokio::spawn(async move {
        expect_silence(&mut live, Duration::from_secs(23)).await;
        live
    });
    r.wait_log("read deadline exceeded (no pong)", Duration::from_secs(30))
        .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(19) && waited < Duration::from_secs(23),
        "dropped after {waited:?}"
    );
    let mut live = reader.await.unwrap();
    assert_eq!(
        r.metric("rtcd_ws_connections_total{clientID=\"clientA\"}")
            .await,
        1.0,
        "the ponging peer stays"
    );
    send(&mut live, &join("call1", "x")).await;
    send(&mut live, &leave("x")).await;
    assert_eq!(recv(&mut live, T).await, close("x"));
    // The dropped peer sees its connection end.
    let ended = tokio::time::timeout(T, async {
        loop {
            match mute.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn a_stalled_connection_does_not_delay_others() {
    let (_d, r) = setup(&[]).await;
    // The staller writes but never reads; rtcd answers each of its joins+leaves with a large
    // `close`, so its socket buffers fill and its writer blocks.
    let mut staller = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut staller).await;
    let (mut st_tx, st_rx) = staller.split();
    let big = "x".repeat(60_000);
    let mark = r.log_mark();
    for i in 0..400 {
        let sid = format!("{big}{i}");
        st_tx
            .send(Message::Binary(join("stall", &sid).encode().into()))
            .await
            .unwrap();
        st_tx
            .send(Message::Binary(leave(&sid).encode().into()))
            .await
            .unwrap();
    }
    // Meanwhile another plugin connection gets prompt service.
    let mut other = ws_connect(&r, &basic("clientA", KEY)).await.unwrap();
    hello(&mut other).await;
    for i in 0..20 {
        let sid = format!("quick{i}");
        let t0 = Instant::now();
        send(&mut other, &join("call1", &sid)).await;
        send(&mut other, &leave(&sid)).await;
        assert_eq!(recv(&mut other, T).await, close(&sid));
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "round trip took {:?}",
            t0.elapsed()
        );
    }
    // The staller is cut off by the 10 s write deadline, and nothing else is affected. `other`
    // keeps reading meanwhile, as a plugin connection does: unread, its pings would go
    // unanswered and rtcd would drop it after its own 20 s read deadline.
    let cut = r.wait_log_from(mark, "write deadline exceeded", Duration::from_secs(30));
    tokio::pin!(cut);
    loop {
        tokio::select! {
            _ = &mut cut => break,
            m = other.next() => match m {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                m => panic!("unexpected on the other connection: {m:?}"),
            },
        }
    }
    drop(st_rx);
    send(&mut other, &join("call1", "final")).await;
    send(&mut other, &leave("final")).await;
    assert_eq!(recv(&mut other, T).await, close("final"));
}

#[tokio::test]
async fn sigterm_drains_and_a_second_signal_closes_everything() {
    let (_d, r, mut ws) = call_in_progress(&["t1", "t2"]).await;
    let mark = r.log_mark();
    r.terminate();
    r.wait_log_from(mark, "draining", T).await;
    // Calls go on while draining, and new joins are still served.
    send(&mut ws, &join("call2", "t3")).await;
    send(&mut ws, &leave("t3")).await;
    assert_eq!(recv(&mut ws, T).await, close("t3"));
    // A second signal closes what is left, telling the plugin, and exits cleanly.
    r.terminate();
    let mut closed = vec![recv(&mut ws, T).await, recv(&mut ws, T).await];
    closed.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(closed, vec![close("t1"), close("t2")]);
    assert_eq!(r.wait_exit(), Some(0));
}

/// Two signals sent back to back (an impatient admin, `systemctl stop` after `kill`): the second
/// must not be lost while the first is being handled, or the daemon would drain for minutes.
/// The second goes as soon as the kernel has delivered the first: sent while the first is still
/// pending, the kernel itself merges them into one, which no daemon can tell apart.
#[tokio::test]
async fn two_signals_back_to_back_stop_at_once() {
    let (_d, r, mut ws) = call_in_progress(&["q1"]).await;
    r.terminate_delivered();
    r.terminate();
    assert_eq!(recv(&mut ws, T).await, close("q1"));
    assert_eq!(r.wait_exit(), Some(0));
}

#[tokio::test]
async fn draining_ends_by_itself_when_the_last_call_ends() {
    let (_d, r, mut ws) = call_in_progress(&["d1"]).await;
    let mark = r.log_mark();
    r.terminate();
    r.wait_log_from(mark, "draining", T).await;
    send(&mut ws, &leave("d1")).await;
    assert_eq!(recv(&mut ws, T).await, close("d1"));
    r.wait_log_from(mark, "drained", T).await;
    assert_eq!(
        r.wait_exit(),
        Some(0),
        "exits once the last session has ended"
    );
}

#[tokio::test]
async fn foreign_origin_is_refused_like_gorilla() {
    let (_d, r) = setup(&[]).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", r.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", basic("clientA", KEY).parse().unwrap());
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut req = format!("ws://{}/ws", r.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", basic("clientA", KEY).parse().unwrap());
    req.headers_mut()
        .insert("Origin", format!("http://{}", r.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("same-origin upgrade");
    hello(&mut ws).await;
}
