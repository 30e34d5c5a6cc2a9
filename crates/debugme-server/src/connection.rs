//! The listener and one task per connection: the version exchange, the mode, then a user's
//! session or a developer's view of one.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use kanava_core::{Budgets, Sources};
use kanava_debugme::frame::{
    Frame, FrameError, MAX_FRAME_BYTES, Mode, decode_frame, encode_frame, negotiate, session_id_of,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use kanava_hub::SessionBus;

use crate::handshake;
use crate::mail::{MailSettings, Mailer};
use crate::session::{
    CLIENT_QUEUE, Lookup, Origin, Out, Registry, SessionHandle, session_log_path,
};

/// The protocol versions this server speaks.
const VERSIONS: [&str; 1] = ["1"];

/// Settings of the debug-me server.
#[derive(Debug, Clone)]
pub struct DebugMeConfig {
    /// Where session logs are written (`debug-me.<id>.log`).
    pub log_dir: PathBuf,
    /// How long a connection may stay silent before it is closed (clients ping every 30 s);
    /// also the time it has to complete its request.
    pub idle_timeout: Duration,
    /// Finished sessions' logs are deleted this long after their last write.
    pub retention: Duration,
    /// Most connections open at once from one IPv4 address or IPv6 /64.
    pub max_connections_per_source: usize,
    /// Mail each finished session's log to its user (when they gave an address).
    pub mail: Option<MailSettings>,
    /// The process-wide budgets the sessions and connections draw from.
    pub budgets: Budgets,
}

/// How often a client in a session is pinged (at most; more often for short idle timeouts).
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// How often logs past their retention are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// A user's session that has ended, with the address they gave.
struct Finished {
    id: String,
    email: String,
}

/// A debug-me server: the sessions, their logs and the limits. It serves its own plain `ws://`
/// listener ([`serve`](Self::serve)) and WebSockets upgraded elsewhere, such as on the TLS
/// listener ([`serve_websocket`](Self::serve_websocket)); both reach the same sessions.
#[derive(Clone)]
pub struct DebugMeServer(Arc<Inner>);

struct Inner {
    registry: Arc<Registry>,
    sources: Arc<Sources>,
    mailer: Option<Mailer>,
    config: DebugMeConfig,
}

impl DebugMeServer {
    /// Opens the log directory (created if missing) and deletes the logs past their retention.
    /// In a cluster, `cluster` carries sessions to and from the other nodes.
    pub fn open(
        config: DebugMeConfig,
        cluster: Option<Arc<dyn SessionBus>>,
    ) -> std::io::Result<Self> {
        let server = Self(Arc::new(Inner {
            registry: Registry::new(config.log_dir.clone(), cluster)?,
            sources: Sources::new(
                Arc::clone(&config.budgets.connections),
                config.budgets.connections.max(),
                config.max_connections_per_source,
            ),
            mailer: config.mail.clone().map(Mailer::new),
            config,
        }));
        server.purge_old();
        Ok(server)
    }

    /// The WebSocket limits of a debug-me connection. The read buffer starts small (it grows
    /// for large frames): every read attempt zero-fills it first, and a relay polls its
    /// client's socket each time it sends (11 % of the server's time with the 128 KiB default,
    /// in the relay benchmark).
    pub fn websocket_config() -> WebSocketConfig {
        WebSocketConfig::default()
            .max_frame_size(Some(MAX_FRAME_BYTES))
            .max_message_size(Some(MAX_FRAME_BYTES))
            .read_buffer_size(4096)
    }

    fn purge_old(&self) {
        let deleted = self.0.registry.purge(self.0.config.retention);
        if deleted > 0 {
            tracing::info!(deleted, "deleted debug-me logs past their retention");
        }
    }

    /// Serves debug-me on `listener` until `shutdown` is cancelled, deleting logs past their
    /// retention hourly.
    pub async fn serve(&self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let mut purge =
            tokio::time::interval_at(tokio::time::Instant::now() + PURGE_INTERVAL, PURGE_INTERVAL);
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = purge.tick() => {
                    self.purge_old();
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
            let (server, shutdown) = (self.clone(), shutdown.clone());
            tracker.spawn(async move {
                let accepted = tokio::time::timeout(
                    server.0.config.idle_timeout,
                    handshake::accept(tcp, Self::websocket_config()),
                );
                if let Ok(Some(ws)) = accepted.await {
                    server.serve_websocket(ws, peer, shutdown).await;
                }
            });
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Serves one upgraded debug-me connection from `peer` until it ends or `shutdown` is
    /// cancelled; refused at once when a connection cap is reached.
    pub async fn serve_websocket<S>(
        &self,
        mut ws: WebSocketStream<S>,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(_slot) = self.admit(peer.ip()) else {
            refuse(&mut ws, "Too many connections").await;
            let _ = ws.close(None).await;
            return;
        };
        let finished = tokio::select! {
            finished = self.connection(&mut ws) => finished,
            () = shutdown.cancelled() => None,
        };
        let _ = ws.close(None).await;
        if let (Some(mailer), Some(finished)) = (&self.0.mailer, finished) {
            let log = session_log_path(&self.0.config.log_dir, &finished.id);
            mailer.mail(&finished.email, &finished.id, &log).await;
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<kanava_core::Slot> {
        match self.0.sources.admit(ip) {
            Ok(slot) => Some(slot),
            Err(full) => {
                tracing::debug!(%ip, cap = full.label(), "debug-me connection refused at a connection cap");
                None
            }
        }
    }

    async fn connection<S>(&self, ws: &mut WebSocketStream<S>) -> Option<Finished>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.0.config.idle_timeout;
        let versions: Vec<String> = VERSIONS.iter().map(|v| (*v).to_owned()).collect();
        if !send(ws, &Frame::Version(versions)).await {
            return None;
        }
        match next_frame(ws, idle).await {
            Ok(Some(Frame::Version(theirs))) if negotiate(&VERSIONS, &theirs).is_some() => {}
            Ok(Some(Frame::Version(_))) => {
                refuse(ws, "No common protocol version").await;
                return None;
            }
            Ok(None) => return None,
            Ok(Some(_)) => {
                refuse(ws, "Expected protocol version").await;
                return None;
            }
            Err(error) => {
                refuse(ws, decode_error(&error)).await;
                return None;
            }
        }
        match next_frame(ws, idle).await {
            Ok(Some(Frame::Mode(Mode::Init(email)))) => {
                let id = self.user(ws).await?;
                return Some(Finished { id, email });
            }
            Ok(Some(Frame::Mode(Mode::Connect(target)))) => match session_id_of(&target) {
                Some(id) => self.developer(ws, &id).await,
                None => refuse(ws, "Invalid session id!").await,
            },
            Ok(None) => {}
            Ok(Some(_)) => refuse(ws, "Expected SelectMode").await,
            Err(error) => refuse(ws, decode_error(&error)).await,
        }
        None
    }

    /// A user's session: it lasts as long as their connection. Returns the session's id once
    /// it has ended.
    async fn user<S>(&self, ws: &mut WebSocketStream<S>) -> Option<String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (queue, mut outbox) = mpsc::channel(CLIENT_QUEUE);
        let (id, session) = match self.0.registry.create(queue).await {
            Ok(created) => created,
            Err(error) => {
                tracing::error!(%error, "cannot create a debug-me session log");
                refuse(ws, "The server cannot store the session").await;
                return None;
            }
        };
        if send(ws, &Frame::SessionId(id.clone())).await {
            relay(ws, &session, Origin::User, &mut outbox, &self.0.config).await;
        }
        session.end().await;
        Some(id)
    }

    /// A developer, watcher or downloader joining session `id`.
    async fn developer<S>(&self, ws: &mut WebSocketStream<S>, id: &str)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let registry = &self.0.registry;
        match registry.find(id).await {
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
                    return Box::pin(self.developer(ws, id)).await;
                };
                for frame in backlog {
                    if ws.send(WsMessage::binary(frame)).await.is_err() {
                        session.leave(client).await;
                        return;
                    }
                }
                let origin = Origin::Developer(client);
                relay(ws, &session, origin, &mut outbox, &self.0.config).await;
                session.leave(client).await;
            }
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: &Frame,
) -> bool {
    ws.send(WsMessage::binary(encode_frame(frame)))
        .await
        .is_ok()
}

/// Sends an `E` frame.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    error: impl Into<String>,
) {
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
async fn incoming<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Result<Incoming, FrameError> {
    match ws.next().await {
        None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => Ok(Incoming::Gone),
        Some(Ok(WsMessage::Binary(bytes))) => decode_frame(&bytes).map(Incoming::Frame),
        // Pings are answered by the library; text frames are not part of the protocol.
        Some(Ok(_)) => Ok(Incoming::Alive),
    }
}

/// The next frame, or `Ok(None)` when the peer is gone or sends none within `idle`.
async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    idle: Duration,
) -> Result<Option<Frame>, FrameError> {
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

/// Messages from the client go into the session; what the session sends goes to the client.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
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
                        if let Err(error) = session.append(message, origin.clone()).await {
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
