//! One plugin WebSocket connection: a reader and a writer task per connection.
//!
//! - The writer owns the socket's send half: queued frames and a ping every 10 s, each write
//!   bounded by a 10 s deadline. A peer that stops reading is dropped after that deadline,
//!   without holding up any other connection.
//! - The reader enforces the 20 s read deadline, extended only by pongs (as rtcd), hands binary
//!   frames to the control task and ignores text frames.

use crate::service::{CONN_QUEUE, ControlHandle};
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

pub const PING_INTERVAL: Duration = Duration::from_secs(10);
pub const READ_DEADLINE: Duration = Duration::from_secs(20);
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

pub async fn serve(socket: WebSocket, conn_id: String, client_id: String, control: ControlHandle) {
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    let (mut sink, mut stream) = socket.split();
    control.conn_opened(&conn_id, &client_id, out_tx).await;
    tracing::info!(conn_id, client_id, "mattermost client connected");

    let writer_conn = conn_id.clone();
    let mut writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let msg = tokio::select! {
                frame = out_rx.recv() => match frame {
                    Some(f) => Message::Binary(f.into()),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            let len = match &msg {
                Message::Binary(b) => b.len(),
                _ => 0,
            };
            match timeout(WRITE_DEADLINE, sink.send(msg)).await {
                Ok(Ok(())) => tracing::trace!(conn_id = %writer_conn, len, "frame written"),
                Ok(Err(e)) => {
                    tracing::info!(conn_id = %writer_conn, error = %e, "write failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!(conn_id = %writer_conn, "write deadline exceeded: dropping connection");
                    break;
                }
            }
        }
        let _ = timeout(Duration::from_secs(1), sink.close()).await;
    });

    let mut deadline = Instant::now() + READ_DEADLINE;
    loop {
        let next = tokio::select! {
            _ = &mut writer => break,
            r = tokio::time::timeout_at(deadline, stream.next()) => r,
        };
        match next {
            Err(_) => {
                tracing::warn!(
                    conn_id,
                    client_id,
                    "read deadline exceeded (no pong): dropping connection"
                );
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::info!(conn_id, client_id, error = %e, "read failed");
                break;
            }
            Ok(Some(Ok(msg))) => match msg {
                Message::Binary(data) => control.frame(&conn_id, &client_id, data.to_vec()).await,
                Message::Text(_) => tracing::warn!(conn_id, client_id, "unexpected text message"),
                Message::Pong(_) => deadline = Instant::now() + READ_DEADLINE,
                Message::Ping(_) => {} // answered by the WebSocket layer
                Message::Close(_) => break,
            },
        }
    }
    writer.abort();
    control.conn_closed(&conn_id).await;
    tracing::info!(conn_id, client_id, "mattermost client disconnected");
}
