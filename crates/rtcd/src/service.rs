//! The I/O shell around [`Control`]: one task owns the control core, so no lock guards the
//! registry; WebSocket connections and HTTP handlers talk to it through a channel, and it writes
//! outbound frames into per-connection queues without ever waiting on one, so a stalled plugin
//! connection cannot delay any other (rtcd funnels every connection through one writer).

use crate::control::{Control, MediaCommand, MediaEvent, Output};
use calls_proto::json::SessionConfig;
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Frames queued per connection before further ones are dropped (rtcd's queue size).
pub const CONN_QUEUE: usize = 5000;
/// Commands queued for the control task (rtcd's RTC queue size).
const CONTROL_QUEUE: usize = 2000;

/// Where the control task sends media-plane commands (`crate::media::SfuPlane` in rtcd).
pub trait MediaPlane: Send + 'static {
    fn command(&mut self, cmd: MediaCommand);
}

enum Cmd {
    Opened {
        conn_id: String,
        client_id: String,
        out: mpsc::Sender<Vec<u8>>,
    },
    Closed {
        conn_id: String,
        /// Answered once the core has forgotten the connection (its gauge included).
        done: oneshot::Sender<()>,
    },
    Frame {
        conn_id: String,
        client_id: String,
        data: Vec<u8>,
    },
    Media(MediaEvent),
    Session {
        group: String,
        call: String,
        session: String,
        reply: oneshot::Sender<Result<SessionConfig, &'static str>>,
    },
    Sessions {
        group: String,
        call: String,
        reply: oneshot::Sender<Result<Vec<SessionConfig>, &'static str>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Count {
        reply: oneshot::Sender<usize>,
    },
}

/// A cheap, cloneable way to reach the control task.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Cmd>,
}

const GONE: &str = "service is shutting down";

impl ControlHandle {
    pub async fn conn_opened(&self, conn_id: &str, client_id: &str, out: mpsc::Sender<Vec<u8>>) {
        let _ = self
            .tx
            .send(Cmd::Opened {
                conn_id: conn_id.into(),
                client_id: client_id.into(),
                out,
            })
            .await;
    }
    /// Returns once the control core has processed the close, so that what the caller logs
    /// next ("disconnected") is already true of the metrics and the API.
    pub async fn conn_closed(&self, conn_id: &str) {
        let (done, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Cmd::Closed {
                conn_id: conn_id.into(),
                done,
            })
            .await;
        if sent.is_ok() {
            let _ = rx.await;
        }
    }
    pub async fn frame(&self, conn_id: &str, client_id: &str, data: Vec<u8>) {
        let _ = self
            .tx
            .send(Cmd::Frame {
                conn_id: conn_id.into(),
                client_id: client_id.into(),
                data,
            })
            .await;
    }
    pub async fn media_event(&self, ev: MediaEvent) {
        let _ = self.tx.send(Cmd::Media(ev)).await;
    }
    pub async fn session(
        &self,
        group: &str,
        call: &str,
        session: &str,
    ) -> Result<SessionConfig, &'static str> {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Session {
            group: group.into(),
            call: call.into(),
            session: session.into(),
            reply,
        };
        self.tx.send(cmd).await.map_err(|_| GONE)?;
        rx.await.map_err(|_| GONE)?
    }
    pub async fn sessions(
        &self,
        group: &str,
        call: &str,
    ) -> Result<Vec<SessionConfig>, &'static str> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Sessions {
                group: group.into(),
                call: call.into(),
                reply,
            })
            .await
            .map_err(|_| GONE)?;
        rx.await.map_err(|_| GONE)?
    }
    /// How many sessions are open.
    pub async fn session_count(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Count { reply }).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Closes every session (sending `close` to the plugin) and stops the task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the control task.
pub fn spawn(media: Box<dyn MediaPlane>) -> ControlHandle {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    tokio::spawn(run(rx, media));
    ControlHandle { tx }
}

async fn run(mut rx: mpsc::Receiver<Cmd>, mut media: Box<dyn MediaPlane>) {
    let mut core = Control::new();
    let mut conns: HashMap<String, mpsc::Sender<Vec<u8>>> = HashMap::new();
    loop {
        let deadline = core.poll_timeout();
        let cmd = tokio::select! {
            cmd = rx.recv() => match cmd { Some(c) => c, None => break },
            _ = sleep_until(deadline), if deadline.is_some() => {
                core.handle_timeout(Instant::now());
                flush(&mut core, &conns, media.as_mut());
                continue;
            }
        };
        let mut stop = None;
        match cmd {
            Cmd::Opened {
                conn_id,
                client_id,
                out,
            } => {
                conns.insert(conn_id.clone(), out);
                core.conn_opened(&conn_id, &client_id);
            }
            Cmd::Closed { conn_id, done } => {
                conns.remove(&conn_id);
                core.conn_closed(&conn_id);
                let _ = done.send(());
            }
            Cmd::Frame {
                conn_id,
                client_id,
                data,
            } => {
                if let Err(e) = core.client_frame(&conn_id, &data, Instant::now()) {
                    tracing::warn!(conn_id, client_id, error = %e, "failed to handle client message");
                }
            }
            Cmd::Media(ev) => core.media_event(ev),
            Cmd::Session {
                group,
                call,
                session,
                reply,
            } => {
                let _ = reply.send(core.session_config(&group, &call, &session));
            }
            Cmd::Sessions { group, call, reply } => {
                let _ = reply.send(core.session_configs(&group, &call));
            }
            Cmd::Count { reply } => {
                let _ = reply.send(core.session_count());
            }
            Cmd::Shutdown { reply } => {
                core.close_all();
                stop = Some(reply);
            }
        }
        flush(&mut core, &conns, media.as_mut());
        if let Some(reply) = stop {
            let _ = reply.send(());
            break;
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
    }
}

fn flush(
    core: &mut Control,
    conns: &HashMap<String, mpsc::Sender<Vec<u8>>>,
    media: &mut dyn MediaPlane,
) {
    while let Some(out) = core.poll_output() {
        match out {
            Output::Send {
                conn_id,
                frame,
                kind,
            } => {
                let Some(tx) = conns.get(&conn_id) else {
                    tracing::warn!(conn_id, kind, "failed to get conn for sending");
                    continue;
                };
                match tx.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::error!(
                            conn_id,
                            kind,
                            "connection send queue is full: message dropped"
                        )
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::debug!(conn_id, kind, "connection closed")
                    }
                }
            }
            Output::Media(cmd) => media.command(cmd),
        }
    }
}
