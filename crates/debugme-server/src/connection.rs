//! The listener and one task per connection: the version exchange, the mode, then a user's
//! session or a developer's view of one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use kanava_core::Sources;
use kanava_debugme::frame::{
    Frame, FrameError, Mode, decode_frame, encode_frame, negotiate, session_id_of,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handshake::{self, Ws};
use crate::session::{CLIENT_QUEUE, Lookup, Origin, Out, Registry, SessionHandle};

/// The protocol versions this server speaks.
const VERSIONS: [&str; 1] = ["1"];

/// Settings of the debug-me listener.
#[derive(Debug, Clone)]
pub struct DebugMeConfig {
    /// Where session logs are written (`debug-me.<id>.log`).
    pub log_dir: PathBuf,
    /// How long a connection may stay silent before it is closed (clients ping every 30 s);
    /// also the time it has to complete its request.
    pub idle_timeout: Duration,
    /// Finished sessions' logs are deleted this long after their last write.
    pub retention: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IPv4 address or IPv6 /64.
    pub max_connections_per_source: usize,
}

/// How often a client in a session is pinged (at most; more often for short idle timeouts).
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// How often logs past their retention are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Serves debug-me on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    config: DebugMeConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry = Registry::new(config.log_dir.clone())?;
    let sources = Sources::new(config.max_connections, config.max_connections_per_source);
    let tracker = TaskTracker::new();
    let purge_old = || {
        let deleted = registry.purge(config.retention);
        if deleted > 0 {
            tracing::info!(deleted, "deleted debug-me logs past their retention");
        }
    };
    // Before serving anyone, then hourly.
    purge_old();
    let mut purge =
        tokio::time::interval_at(tokio::time::Instant::now() + PURGE_INTERVAL, PURGE_INTERVAL);
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = purge.tick() => {
                purge_old();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "debug-me accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = sources.admit(peer.ip()) else {
            tracing::debug!(%peer, "debug-me connection refused at a connection cap");
            continue;
        };
        let (registry, config, shutdown) =
            (Arc::clone(&registry), config.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _slot = slot;
            let accepted = tokio::time::timeout(config.idle_timeout, handshake::accept(tcp));
            let Ok(Some(mut ws)) = accepted.await else {
                return;
            };
            tokio::select! {
                () = connection(&mut ws, &registry, &config) => {}
                () = shutdown.cancelled() => {}
            }
            let _ = ws.close(None).await;
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn send(ws: &mut Ws, frame: &Frame) -> bool {
    ws.send(WsMessage::binary(encode_frame(frame)))
        .await
        .is_ok()
}

/// Sends an `E` frame.
async fn refuse(ws: &mut Ws, error: impl Into<String>) {
    let error = error.into();
    tracing::debug!(%error, "debug-me client refused");
    let _ = send(ws, &Frame::Error(error)).await;
}

/// What the client sent.
enum Incoming {
    /// A frame of the protocol.
    Frame(Frame),
    /// Something that only shows the client is there (a ping, a pong).
    Alive,
    /// The client closed or went away.
    Gone,
}

/// The next message from the client; cancel-safe.
async fn incoming(ws: &mut Ws) -> Result<Incoming, FrameError> {
    match ws.next().await {
        None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => Ok(Incoming::Gone),
        Some(Ok(WsMessage::Binary(bytes))) => decode_frame(&bytes).map(Incoming::Frame),
        // Pings are answered by the library; text frames are not part of the protocol.
        Some(Ok(_)) => Ok(Incoming::Alive),
    }
}

/// The next frame, or `Ok(None)` when the peer is gone or sends none within `idle`.
async fn next_frame(ws: &mut Ws, idle: Duration) -> Result<Option<Frame>, FrameError> {
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match tokio::time::timeout_at(deadline, incoming(ws)).await {
            Err(_) | Ok(Ok(Incoming::Gone)) => return Ok(None),
            Ok(Ok(Incoming::Frame(frame))) => return Ok(Some(frame)),
            Ok(Ok(Incoming::Alive)) => continue,
            Ok(Err(error)) => return Err(error),
        }
    }
}

/// The protocol's words for a frame that does not decode.
fn decode_error(error: &FrameError) -> String {
    match error {
        FrameError::Message(error) => format!("Protocol buffers decode error: {error}"),
        other => other.to_string(),
    }
}

async fn connection(ws: &mut Ws, registry: &Arc<Registry>, config: &DebugMeConfig) {
    let versions: Vec<String> = VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    if !send(ws, &Frame::Version(versions)).await {
        return;
    }
    match next_frame(ws, config.idle_timeout).await {
        Ok(Some(Frame::Version(theirs))) if negotiate(&VERSIONS, &theirs).is_some() => {}
        Ok(Some(Frame::Version(_))) => return refuse(ws, "No common protocol version").await,
        Ok(None) => return,
        Ok(Some(_)) => return refuse(ws, "Expected protocol version").await,
        Err(error) => return refuse(ws, decode_error(&error)).await,
    }
    match next_frame(ws, config.idle_timeout).await {
        Ok(Some(Frame::Mode(Mode::Init(_email)))) => user(ws, registry, config).await,
        Ok(Some(Frame::Mode(Mode::Connect(target)))) => match session_id_of(&target) {
            Some(id) => developer(ws, registry, config, &id).await,
            None => refuse(ws, "Invalid session id!").await,
        },
        Ok(None) => {}
        Ok(Some(_)) => refuse(ws, "Expected SelectMode").await,
        Err(error) => refuse(ws, decode_error(&error)).await,
    }
}

/// A user's session: it lasts as long as their connection.
async fn user(ws: &mut Ws, registry: &Arc<Registry>, config: &DebugMeConfig) {
    let (queue, mut outbox) = mpsc::channel(CLIENT_QUEUE);
    let (id, session) = match registry.create(queue) {
        Ok(created) => created,
        Err(error) => {
            tracing::error!(%error, "cannot create a debug-me session log");
            return refuse(ws, "The server cannot store the session").await;
        }
    };
    if send(ws, &Frame::SessionId(id.clone())).await {
        relay(ws, &session, Origin::User, &mut outbox, config).await;
    }
    session.end().await;
}

/// A developer, watcher or downloader joining session `id`.
async fn developer(ws: &mut Ws, registry: &Arc<Registry>, config: &DebugMeConfig, id: &str) {
    match registry.find(id) {
        Lookup::Unknown => refuse(ws, "Unknown session ID").await,
        Lookup::Finished(frames) => {
            if !send(ws, &Frame::SessionId(id.to_owned())).await {
                return;
            }
            for frame in frames {
                if ws.send(WsMessage::binary(frame)).await.is_err() {
                    return;
                }
            }
            let _ = send(ws, &Frame::Done).await;
        }
        Lookup::Live(session) => {
            let client = registry.client_id();
            let (queue, mut outbox) = mpsc::channel(CLIENT_QUEUE);
            if !send(ws, &Frame::SessionId(id.to_owned())).await {
                return;
            }
            let Some(backlog) = session.join(client, queue).await else {
                // It ended meanwhile: what it wrote is a finished session now.
                return Box::pin(developer(ws, registry, config, id)).await;
            };
            for frame in backlog {
                if ws.send(WsMessage::binary(frame)).await.is_err() {
                    session.leave(client).await;
                    return;
                }
            }
            relay(ws, &session, Origin::Developer(client), &mut outbox, config).await;
            session.leave(client).await;
        }
    }
}

/// Messages from the client go into the session; what the session sends goes to the client.
async fn relay(
    ws: &mut Ws,
    session: &SessionHandle,
    origin: Origin,
    outbox: &mut mpsc::Receiver<Out>,
    config: &DebugMeConfig,
) {
    // A quiet session is not an idle client: the server pings, and anything the client sends
    // (a pong included) shows it is there.
    let period = (config.idle_timeout / 2).min(PING_INTERVAL);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > config.idle_timeout {
                    tracing::debug!("debug-me client silent too long");
                    return;
                }
                if ws.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
            out = outbox.recv() => match out {
                Some(Out::Frame(frame)) => {
                    if ws.send(WsMessage::binary(Bytes::clone(&frame))).await.is_err() {
                        return;
                    }
                }
                Some(Out::Done) => {
                    let _ = send(ws, &Frame::Done).await;
                    return;
                }
                // Dropped by the session: too slow.
                None => return refuse(ws, "Too slow: the session went on without you").await,
            },
            got = incoming(ws) => {
                heard = tokio::time::Instant::now();
                match got {
                    Ok(Incoming::Frame(Frame::Message(message))) => {
                        if let Err(error) = session.append(message, origin).await {
                            tracing::error!(%error, "cannot write the debug-me log");
                            return refuse(ws, "The server cannot store the session").await;
                        }
                    }
                    Ok(Incoming::Alive) => {}
                    Ok(Incoming::Frame(Frame::Done) | Incoming::Gone) => return,
                    Ok(Incoming::Frame(_)) => return refuse(ws, "Unexpected frame").await,
                    Err(error) => return refuse(ws, decode_error(&error)).await,
                }
            }
        }
    }
}
