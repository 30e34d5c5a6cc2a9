//! The listener and one task per connection: the version exchange, the mode, then a user's
//! session or a developer's view of one.
//!
//! A connection takes its slot when it is accepted, before its request head is read; one
//! refused is answered `503` with the reason. Every phase has a deadline: the request head and
//! the version exchange the handshake timeout, everything after it the idle timeout, and every
//! write too, so that a client that does not read is closed and its queue freed.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use kanava_core::{Budgets, Full, Slot, Sources};
use kanava_debugme::frame::{
    Frame, FrameError, MAX_FRAME_BYTES, Mode, decode_frame, encode_frame, negotiate, session_id_of,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use kanava_hub::SessionBus;

use crate::charged::{Charged, ReadCharge, drain};
use crate::handshake;
use crate::mail::{MailSettings, Mailer};
use crate::rate::PerSourceRate;
use crate::session::{
    Backlog, Follower, KICKED, LogLimits, Lookup, Origin, Out, Outbox, Registry, SessionHandle,
    read_backlog, session_log_path,
};

/// The protocol versions this server speaks.
const VERSIONS: [&str; 1] = ["1"];

/// Settings of the debug-me server.
#[derive(Debug, Clone)]
pub struct DebugMeConfig {
    /// Where session logs are written (`debug-me.<id>.log`).
    pub log_dir: PathBuf,
    /// How long a connection may stay silent, or not read what it is sent, before it is closed
    /// (clients ping every 30 s).
    pub idle_timeout: Duration,
    /// How long a new connection has to send its request head and its protocol version.
    pub handshake_timeout: Duration,
    /// Finished sessions' logs are deleted this long after their last write.
    pub retention: Duration,
    /// Most connections open at once from one IPv4 address or IPv6 /64.
    pub max_connections_per_source: usize,
    /// The largest log of one session: past it the session ends.
    pub max_log: u64,
    /// Sessions one IPv4 address or IPv6 /64 may open a minute (in bursts of up to
    /// [`SESSION_BURST`]).
    pub sessions_per_minute: u32,
    /// Mail each finished session's log to its user (when they gave an address).
    pub mail: Option<MailSettings>,
    /// The process-wide budgets the sessions and connections draw from.
    pub budgets: Budgets,
}

/// Sessions one source may open at once before [`DebugMeConfig::sessions_per_minute`] applies.
pub const SESSION_BURST: u32 = 5;

/// How often a client in a session is pinged (at most; more often for short idle timeouts).
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// How often logs past their retention are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a refused connection is given to take its `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Refused connections being answered at once; past it, more are closed unanswered.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// What a client is told when what it sends does not fit the memory budget.
const READ_OVER_BUDGET: &str = "Server busy: its memory budget is exhausted";

/// How long a closing connection has to take its Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes read and thrown away from a client refused mid-frame before its connection
/// closes: the rest of the largest frame.
const DRAIN_BYTES: usize = 2 * 1024 * 1024;

/// How often a repeated warning (accept failures, refusals) is logged at most.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A user's session that has ended, with the address they gave.
struct Finished {
    id: String,
    email: String,
}

/// A debug-me server: the sessions, their logs and the limits. It serves its own plain `ws://`
/// listener ([`serve`](Self::serve)) and WebSockets upgraded elsewhere, such as on the TLS
/// listener ([`serve_upgraded`](Self::serve_upgraded)); both reach the same sessions.
#[derive(Clone)]
pub struct DebugMeServer(Arc<Inner>);

struct Inner {
    registry: Arc<Registry>,
    sources: Arc<Sources>,
    sessions: PerSourceRate,
    mailer: Option<Mailer>,
    refusals_in_flight: AtomicUsize,
    accept_warnings: Throttle,
    refusal_warnings: Throttle,
    config: DebugMeConfig,
}

impl DebugMeServer {
    /// Opens the log directory (created if missing) and deletes the logs past their retention.
    /// In a cluster, `cluster` carries sessions to and from the other nodes.
    pub fn open(
        config: DebugMeConfig,
        cluster: Option<Arc<dyn SessionBus>>,
    ) -> std::io::Result<Self> {
        let limits = LogLimits {
            max_log: config.max_log,
            disk: Arc::clone(&config.budgets.disk),
            memory: Arc::clone(&config.budgets.memory),
        };
        let server = Self(Arc::new(Inner {
            registry: Registry::new(config.log_dir.clone(), cluster, limits)?,
            sources: Sources::new(
                Arc::clone(&config.budgets.connections),
                config.budgets.connections.max(),
                config.max_connections_per_source,
            ),
            sessions: PerSourceRate::new(config.sessions_per_minute, SESSION_BURST),
            mailer: config.mail.clone().map(Mailer::new),
            refusals_in_flight: AtomicUsize::new(0),
            accept_warnings: Throttle::default(),
            refusal_warnings: Throttle::default(),
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
                        if let Some(suppressed) = self.0.accept_warnings.allow() {
                            tracing::warn!(%error, suppressed, "debug-me accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let slot = match self.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(full) => {
                    self.refuse_http(&tracker, tcp, full);
                    continue;
                }
            };
            let (server, shutdown) = (self.clone(), shutdown.clone());
            tracker.spawn(async move {
                let charge = ReadCharge::new(&server.0.config.budgets.memory);
                let accepted = tokio::time::timeout(
                    server.0.config.handshake_timeout,
                    handshake::accept(tcp, Self::websocket_config(), charge.clone()),
                );
                if let Ok(Some(ws)) = accepted.await {
                    server
                        .serve_admitted(ws, peer, slot, charge, shutdown)
                        .await;
                }
            });
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Answers a connection refused at a cap with `503` and the reason. While few refusals are
    /// being answered, each gets a moment to read its answer; past that, the answer is written
    /// without waiting (what the client sent so far is read first, so that closing does not
    /// reset the connection).
    fn refuse_http(&self, tracker: &TaskTracker, mut tcp: TcpStream, full: Full) {
        let response = response_503(full.reason());
        let in_flight = &self.0.refusals_in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let mut sink = [0u8; 1024];
            while matches!(tcp.try_read(&mut sink), Ok(n) if n > 0) {}
            let _ = tcp.try_write(response.as_bytes());
            return;
        }
        let server = self.clone();
        tracker.spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer_503(&mut tcp, &response)).await;
            server.0.refusals_in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Serves one debug-me connection from `peer` upgraded elsewhere (`stream`, after the
    /// `101`, and `read_ahead`, what the client sent after its request head), until it ends or
    /// `shutdown` is cancelled. What it reads is charged to the memory budget as on the plain
    /// listener; it is refused at once, with an `E` frame, when a connection cap is reached.
    pub async fn serve_upgraded<S>(
        &self,
        stream: S,
        read_ahead: Vec<u8>,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let charge = ReadCharge::new(&self.0.config.budgets.memory);
        let mut ws = WebSocketStream::from_partially_read(
            Charged::new(stream, charge.clone()),
            read_ahead,
            Role::Server,
            Some(Self::websocket_config()),
        )
        .await;
        match self.admit(peer.ip()) {
            Ok(slot) => self.serve_admitted(ws, peer, slot, charge, shutdown).await,
            Err(full) => {
                refuse(&mut ws, full.reason(), CLOSE_TIMEOUT).await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
            }
        }
    }

    /// Serves a connection that holds its slot, and whose reads are charged to `charge`.
    async fn serve_admitted<S>(
        &self,
        mut ws: WebSocketStream<S>,
        peer: SocketAddr,
        slot: Slot,
        charge: ReadCharge,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let finished = tokio::select! {
            finished = self.connection(&mut ws, peer.ip(), &charge) => finished,
            () = shutdown.cancelled() => None,
        };
        let refused = charge.refused();
        if refused {
            metrics::counter!("kanava_debugme_clients_closed_total", "reason" => "memory")
                .increment(1);
            refuse(&mut ws, READ_OVER_BUDGET, CLOSE_TIMEOUT).await;
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
        if refused {
            // The client was cut off mid-frame and may still be sending it.
            charge.stop();
            drain(ws.get_mut(), DRAIN_BYTES, CLOSE_TIMEOUT).await;
        }
        drop(ws);
        drop(slot);
        if let (Some(mailer), Some(finished)) = (&self.0.mailer, finished) {
            let log = session_log_path(&self.0.config.log_dir, &finished.id);
            mailer.mail(&finished.email, &finished.id, &log).await;
        }
    }

    /// Takes a slot for a connection from `ip`, or counts and (now and then) logs the refusal.
    fn admit(&self, ip: IpAddr) -> Result<Slot, Full> {
        self.0.sources.admit(ip).inspect_err(|full| {
            metrics::counter!("kanava_connections_refused_total", "listener" => "debug-me", "reason" => full.label())
                .increment(1);
            if let Some(suppressed) = self.0.refusal_warnings.allow() {
                tracing::info!(%ip, cap = full.label(), suppressed, "debug-me connection refused at a connection cap");
            }
        })
    }

    async fn connection<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        ip: IpAddr,
        charge: &ReadCharge,
    ) -> Option<Finished>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.0.config.idle_timeout;
        let versions: Vec<String> = VERSIONS.iter().map(|v| (*v).to_owned()).collect();
        if !send(ws, &Frame::Version(versions), idle).await {
            return None;
        }
        match next_frame(ws, self.0.config.handshake_timeout, charge).await {
            Ok(Some(Frame::Version(theirs))) if negotiate(&VERSIONS, &theirs).is_some() => {}
            Ok(Some(Frame::Version(_))) => {
                refuse(ws, "No common protocol version", idle).await;
                return None;
            }
            Ok(None) => return None,
            Ok(Some(_)) => {
                refuse(ws, "Expected protocol version", idle).await;
                return None;
            }
            Err(error) => {
                refuse(ws, decode_error(&error), idle).await;
                return None;
            }
        }
        match next_frame(ws, idle, charge).await {
            Ok(Some(Frame::Mode(Mode::Init(email)))) => {
                let id = self.user(ws, ip, charge).await?;
                return Some(Finished { id, email });
            }
            Ok(Some(Frame::Mode(Mode::Connect(target)))) => match session_id_of(&target) {
                Some(id) => self.developer(ws, &id, charge).await,
                None => refuse(ws, "Invalid session id!", idle).await,
            },
            Ok(None) => {}
            Ok(Some(_)) => refuse(ws, "Expected SelectMode", idle).await,
            Err(error) => refuse(ws, decode_error(&error), idle).await,
        }
        None
    }

    /// A user's session: it lasts as long as their connection. Returns the session's id once
    /// it has ended.
    async fn user<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        ip: IpAddr,
        charge: &ReadCharge,
    ) -> Option<String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.0.config.idle_timeout;
        if let Err(wait) = self.0.sessions.take(ip, Instant::now()) {
            metrics::counter!("kanava_debugme_sessions_refused_total", "reason" => "rate")
                .increment(1);
            let reason = format!(
                "Too many new sessions from your address: try again in {} s",
                wait.as_secs() + 1
            );
            refuse(ws, reason, idle).await;
            return None;
        }
        let (follower, mut outbox) = Follower::new();
        let (id, session) = match self.0.registry.create(follower, ip).await {
            Ok(created) => created,
            Err(error) => {
                tracing::error!(%error, "cannot start a debug-me session");
                refuse(ws, "The server cannot store the session", idle).await;
                return None;
            }
        };
        if send(ws, &Frame::SessionId(id.clone()), idle).await {
            let origin = Origin::User;
            relay(ws, &session, origin, &mut outbox, charge, &self.0.config).await;
        }
        session.end().await;
        Some(id)
    }

    /// A developer, watcher or downloader joining session `id`.
    async fn developer<S>(&self, ws: &mut WebSocketStream<S>, id: &str, charge: &ReadCharge)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let registry = &self.0.registry;
        let idle = self.0.config.idle_timeout;
        match registry.find(id).await {
            Lookup::Unknown => refuse(ws, "Unknown session ID", idle).await,
            Lookup::Finished(path) => {
                if !send(ws, &Frame::SessionId(id.to_owned()), idle).await {
                    return;
                }
                let backlog = read_backlog(path, None, Arc::clone(registry.memory()));
                if send_backlog(ws, backlog, idle).await {
                    let _ = send(ws, &Frame::Done, idle).await;
                }
            }
            Lookup::Live(session) => {
                let client = registry.client_id();
                let (follower, mut outbox) = Follower::new();
                if !send(ws, &Frame::SessionId(id.to_owned()), idle).await {
                    return;
                }
                let Some(place) = session.join(client, follower).await else {
                    // It ended meanwhile: what it wrote is a finished session now.
                    return Box::pin(self.developer(ws, id, charge)).await;
                };
                if place > 0 {
                    let path = session_log_path(&self.0.config.log_dir, id);
                    let backlog = read_backlog(path, Some(place), Arc::clone(registry.memory()));
                    if !send_backlog(ws, backlog, idle).await {
                        session.leave(client).await;
                        return;
                    }
                }
                let origin = Origin::Developer(client);
                relay(ws, &session, origin, &mut outbox, charge, &self.0.config).await;
                session.leave(client).await;
            }
        }
    }
}

/// A warning logged at most once per [`WARNING_INTERVAL`], with how many were left out.
#[derive(Debug, Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    /// `Some(left out since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// The `503` answer to a refused connection, with the reason.
fn response_503(reason: &str) -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
}

/// Sends `response`, then reads (and drops) what the client sent until it closes, so that
/// closing does not reset the connection before the answer is read.
async fn answer_503(tcp: &mut TcpStream, response: &str) -> std::io::Result<()> {
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await?;
    let mut sink = [0u8; 1024];
    while tcp.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Sends `message` unless the client has not taken it within `limit`.
async fn send_within<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: WsMessage,
    limit: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(limit, ws.send(message)).await,
        Ok(Ok(()))
    )
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: &Frame,
    limit: Duration,
) -> bool {
    send_within(ws, WsMessage::binary(encode_frame(frame)), limit).await
}

/// Sends a log read back; false when the client is gone or the log cannot be read on (then
/// the client is told why).
async fn send_backlog<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    mut backlog: mpsc::Receiver<Backlog>,
    limit: Duration,
) -> bool {
    while let Some(frame) = backlog.recv().await {
        match frame {
            Ok((frame, _charge)) => {
                if !send_within(ws, WsMessage::binary(frame), limit).await {
                    tracing::debug!("debug-me client does not read its backlog");
                    return false;
                }
            }
            Err(reason) => {
                refuse(ws, reason, limit).await;
                return false;
            }
        }
    }
    true
}

/// Sends an `E` frame.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    error: impl Into<String>,
    limit: Duration,
) {
    let error = error.into();
    tracing::debug!(%error, "debug-me client refused");
    let _ = send(ws, &Frame::Error(error), limit).await;
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

/// The next message from the client, after which what was read for it is no longer charged;
/// cancel-safe.
async fn incoming<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    charge: &ReadCharge,
) -> Result<Incoming, FrameError> {
    let next = ws.next().await;
    charge.message_done();
    match next {
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
    charge: &ReadCharge,
) -> Result<Option<Frame>, FrameError> {
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match tokio::time::timeout_at(deadline, incoming(ws, charge)).await {
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

/// Closes a client kicked to free memory: its queue is freed first, since it may not take the
/// `E` frame saying why for a while.
async fn kicked<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    outbox: &mut Outbox,
) {
    outbox.queue.close();
    while outbox.queue.try_recv().is_ok() {}
    refuse(ws, KICKED, CLOSE_TIMEOUT).await;
}

/// Messages from the client go into the session; what the session sends goes to the client.
/// A client that takes nothing it is sent within the idle timeout is closed.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    session: &SessionHandle,
    origin: Origin,
    outbox: &mut Outbox,
    charge: &ReadCharge,
    config: &DebugMeConfig,
) {
    let kicked_now = tokio::select! {
        () = relay_until_done(ws, session, origin, &mut outbox.queue, charge, config) => false,
        () = outbox.kicked.cancelled() => true,
    };
    if kicked_now {
        kicked(ws, outbox).await;
    }
}

/// [`relay`], until the client or the session is done.
async fn relay_until_done<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    session: &SessionHandle,
    origin: Origin,
    outbox: &mut mpsc::Receiver<Out>,
    charge: &ReadCharge,
    config: &DebugMeConfig,
) {
    // A quiet session is not an idle client: the server pings, and anything the client sends
    // (a pong included) shows it is there.
    let idle = config.idle_timeout;
    let period = (idle / 2).min(PING_INTERVAL);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    tracing::debug!("debug-me client silent too long");
                    return;
                }
                if !send_within(ws, WsMessage::Ping(Bytes::new()), idle).await {
                    return;
                }
            }
            out = outbox.recv() => match out {
                Some(Out::Frame(relayed)) => {
                    if !send_within(ws, WsMessage::binary(relayed.frame()), idle).await {
                        tracing::debug!("debug-me client does not read what it is sent");
                        return;
                    }
                }
                Some(Out::Done) => {
                    let _ = send(ws, &Frame::Done, idle).await;
                    return;
                }
                Some(Out::Ended(reason)) => return refuse(ws, reason, idle).await,
                // Dropped by the session: too slow.
                None => return refuse(ws, "Too slow: the session went on without you", idle).await,
            },
            got = incoming(ws, charge) => {
                heard = tokio::time::Instant::now();
                match got {
                    Ok(Incoming::Frame(Frame::Message(message))) => {
                        if let Err(reason) = session.append(message, origin.clone()).await {
                            return refuse(ws, reason, idle).await;
                        }
                    }
                    Ok(Incoming::Alive) => {}
                    Ok(Incoming::Frame(Frame::Done) | Incoming::Gone) => return,
                    Ok(Incoming::Frame(_)) => return refuse(ws, "Unexpected frame", idle).await,
                    Err(error) => return refuse(ws, decode_error(&error), idle).await,
                }
            }
        }
    }
}
