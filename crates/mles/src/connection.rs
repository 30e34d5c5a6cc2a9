//! One Mles connection from TCP accept to close: TLS, upgrade, header, join, then a reader that
//! publishes the peer's frames, a writer that sends history, live frames and keepalive pings,
//! and a keepalive that closes a peer which stops answering, whatever the writer is doing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use kanava_core::{Entry, FrameKind, MemoryBudget, Nick, Reservation, passes_for};
use kanava_hub::{Accounts, Hub, HubError, KickReason, Member, Outbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::header::Header;
use crate::meter::{self, Meter, Metered};
use crate::proof::{AuthParts, Proof, ProofError};
use crate::upgrade::{self, Parsed, Refusal};
use crate::{Endpoint, MlesConfig, RoutedConnection, Routes, ServerTls, auth};

type Ws = WebSocketStream<Metered<TlsStream<TcpStream>>>;

/// Keepalive intervals a peer may stay silent before it is closed: pings go out at 1, 2 and 3
/// intervals, and the close at 4 (96 s with the default 24 s).
const MAX_MISSED_PINGS: u32 = 3;

/// Live frames written before one flush, to batch small frames into few TLS records.
const MAX_BATCH_FRAMES: usize = 256;

/// Payload bytes written before one flush: bounds how long one member's writer runs before
/// yielding, so that a busy channel's fan-out cannot hold a worker thread for long.
const MAX_BATCH_BYTES: usize = 128 * 1024;

/// Largest frame the server writes: a longer message goes out in fragments of this size, each
/// at most one TLS record. tungstenite copies each frame whole into its write buffer and keeps
/// that buffer's capacity, so this is what a connection that was once sent a large message
/// holds for good (one 16 MiB frame would leave every receiver holding 16 MiB).
const MAX_OUTGOING_FRAME: usize = 16 * 1024;

/// Initial read buffer of a Mles WebSocket: enough for a header, a ping or a chat message in
/// one read. Idle connections keep it, so it is small; tungstenite grows it for a larger frame,
/// and the frame's payload takes that memory with it.
const READ_BUFFER_BYTES: usize = 512;

/// How long a closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Replay bytes not charged to the memory budget, so that joining a quiet channel is never
/// refused because other connections hold the budget.
const UNCHARGED_REPLAY_BYTES: usize = 64 * 1024;

/// Bytes of a live frame being written not charged to the memory budget: chat messages are far
/// below it. Past the frame, a connection holds at most one outgoing fragment in tungstenite
/// ([`MAX_OUTGOING_FRAME`], flushed before the next is taken), one batch in [`Metered`]
/// ([`crate::meter::WRITE_BATCH_BYTES`]) and rustls's buffer of encrypted records (64 KiB,
/// rustls's default limit): about 100 KiB, bounded over the server by the connection budget.
const UNCHARGED_WRITE_BYTES: usize = 64 * 1024;

/// Closes a peer whose buffered payload (`consumer`: what it was receiving, its queue or its
/// replay) does not fit the memory budget, and counts it.
fn over_budget(consumer: &'static str) -> End {
    metrics::counter!("kanava_memory_refusals_total", "consumer" => consumer).increment(1);
    End::Close(CloseCode::Again, "server memory budget exhausted")
}

/// Why a connection ends, and what close frame (if any) the peer gets.
#[derive(Debug)]
enum End {
    /// The peer closed or vanished; tungstenite has queued any Close reply.
    PeerGone,
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
}

/// What the upgrade led to. The WebSocket is boxed: it holds the TLS connection (about 2 KiB),
/// and kept inline it would be copied into the connection task's future at every phase that
/// moves it, for as long as the connection lives.
enum Upgraded {
    /// A Mles connection, and what it is receiving.
    Mles(Box<Ws>, Arc<Meter>),
    /// A connection for an endpoint routed by path.
    Routed(Arc<dyn Endpoint>, Box<RoutedConnection>),
    /// A plain request answered by the listener's pages; the connection is done.
    Page,
}

/// What every connection of the listener shares.
pub(crate) struct Listener {
    pub(crate) tls: ServerTls,
    pub(crate) hub: Hub,
    pub(crate) config: MlesConfig,
    pub(crate) routes: Routes,
    pub(crate) memory: Arc<MemoryBudget>,
}

/// Serves one accepted connection, from its TLS handshake to its close.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    shutdown: CancellationToken,
) {
    let span = tracing::debug_span!("mles", %peer);
    let Listener {
        tls,
        hub,
        config,
        routes,
        memory,
    } = listener;
    let hub = hub.for_source(peer.ip());
    async move {
        let upgraded = tokio::select! {
            () = shutdown.cancelled() => return,
            upgraded = tokio::time::timeout(
                config.handshake_timeout,
                // Boxed, here and below: a task's future is as large as its largest phase, and
                // an idle member should not keep the handshake's buffers.
                Box::pin(handshake(tcp, tls, config, routes, memory)),
            ) => upgraded,
        };
        let (mut ws, meter) = match upgraded {
            Ok(Ok(Upgraded::Mles(ws, meter))) => (ws, meter),
            Ok(Ok(Upgraded::Routed(endpoint, connection))) => {
                return endpoint.serve(*connection, peer, shutdown).await;
            }
            Ok(Ok(Upgraded::Page)) => return,
            Ok(Err(reason)) => {
                metrics::counter!("kanava_handshake_failures_total").increment(1);
                tracing::debug!(reason, "handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!("kanava_handshake_failures_total").increment(1);
                tracing::debug!("handshake timed out");
                return;
            }
        };
        let end = tokio::select! {
            () = shutdown.cancelled() => End::Close(CloseCode::Away, "server shutting down"),
            end = Box::pin(session(&mut ws, &hub, config, &meter, memory)) => end,
        };
        Box::pin(finish(ws, end)).await;
    }
    .instrument(span)
    .await
}

/// TLS, then the HTTP upgrade, to Mles or to the endpoint routed at the request's path. A
/// refused upgrade gets its HTTP error here.
async fn handshake(
    tcp: TcpStream,
    tls: &ServerTls,
    config: &MlesConfig,
    routes: &Routes,
    memory: &Arc<MemoryBudget>,
) -> Result<Upgraded, &'static str> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
        .await
        .map_err(|_| "TLS hello")?;
    let server_config = tls.choose(&start.client_hello());
    let mut stream = start
        .into_stream(server_config)
        .await
        .map_err(|_| "TLS handshake")?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let (request, head_len) = loop {
        let n = stream.read(&mut chunk).await.map_err(|_| "read request")?;
        if n == 0 {
            return Err("closed before request");
        }
        buf.extend_from_slice(&chunk[..n]);
        match upgrade::parse_request(&buf) {
            Ok(Parsed::Partial) => continue,
            Ok(Parsed::Complete { request, head_len }) => break (request, head_len),
            Err(refusal @ (Refusal::NotWebSocket | Refusal::NotGet)) => {
                let page = routes.page_server().zip(upgrade::parse_page_request(&buf));
                if let Some((pages, request)) = page {
                    let response = pages.respond(&request);
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                    tracing::debug!(target = %request.target.escape_debug(), "page served");
                    return Ok(Upgraded::Page);
                }
                refuse(&mut stream, refusal).await;
                return Err("upgrade refused");
            }
            Err(refusal) => {
                refuse(&mut stream, refusal).await;
                return Err("upgrade refused");
            }
        }
    };
    let rest = buf.split_off(head_len);
    if let Some(endpoint) = routes.find(&request.path) {
        stream
            .write_all(&upgrade::accept_response(&request, None))
            .await
            .map_err(|_| "write 101")?;
        tracing::debug!(path = %request.path.escape_debug(), "upgraded to a routed endpoint");
        let connection = RoutedConnection {
            stream,
            read_ahead: rest,
        };
        return Ok(Upgraded::Routed(Arc::clone(endpoint), Box::new(connection)));
    }
    if let Err(refusal) = request.require_mles() {
        refuse(&mut stream, refusal).await;
        return Err("upgrade refused");
    }
    stream
        .write_all(&upgrade::accept_response(
            &request,
            Some(upgrade::SUBPROTOCOL),
        ))
        .await
        .map_err(|_| "write 101")?;
    tracing::debug!(path = %request.path.escape_debug(), "upgraded");
    let meter = Meter::new(memory);
    let stream = Metered::new(stream, Arc::clone(&meter));
    let ws_config = WebSocketConfig::default()
        .max_frame_size(Some(config.max_frame))
        .max_message_size(Some(config.max_frame))
        .read_buffer_size(READ_BUFFER_BYTES)
        // Every frame goes straight to the stream, whose batch is given back at each flush
        // ([`Metered`]); tungstenite's own write buffer would keep the capacity of the largest
        // batch (a whole history replay) for as long as the connection lives.
        .write_buffer_size(0)
        .max_write_buffer_size(config.max_frame.saturating_mul(2).max(1 << 20));
    // What was read with the request head is the start of the first message.
    if !rest.is_empty() {
        meter.arrived(rest.len()).map_err(|_| "memory budget")?;
    }
    Ok(Upgraded::Mles(
        Box::new(
            WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config)).await,
        ),
        meter,
    ))
}

/// Answers a connection refused at accept time (a connection cap is full): TLS, the request
/// head (at most [`upgrade::MAX_REQUEST_HEAD`] bytes), then 503 with `reason`, all within
/// `deadline`, so that the client learns why instead of seeing a dropped connection.
pub(crate) async fn refuse_busy(tcp: TcpStream, tls: &ServerTls, reason: &str, deadline: Duration) {
    let answered = tokio::time::timeout(deadline, async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .ok()?;
        let server_config = tls.choose(&start.client_hello());
        let mut stream = start.into_stream(server_config).await.ok()?;
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        while let Ok(Parsed::Partial) = upgrade::parse_request(&head) {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(&upgrade::busy_response(reason))
            .await
            .ok()?;
        stream.shutdown().await.ok()
    })
    .await;
    tracing::debug!(
        reason,
        answered = matches!(answered, Ok(Some(()))),
        "refused connection"
    );
}

async fn refuse(stream: &mut TlsStream<TcpStream>, refusal: Refusal) {
    metrics::counter!("kanava_upgrade_refusals_total", "status" => refusal.status().0.to_string())
        .increment(1);
    tracing::debug!(%refusal, "upgrade refused");
    let _ = stream.write_all(&refusal.response()).await;
    let _ = stream.shutdown().await;
}

/// What ends a connection whose WebSocket reported `error` while reading: RFC 6455 wants
/// protocol errors failed with a Close saying why (§7.1.7, §7.4.1).
fn read_failed(error: &WsError) -> End {
    let reason = match error {
        WsError::Capacity(_) => return End::Close(CloseCode::Size, "frame too large"),
        WsError::Utf8(_) => {
            return End::Close(CloseCode::Invalid, "invalid UTF-8 in a text frame");
        }
        WsError::Io(io) if meter::is_over_budget(io) => return over_budget("receive"),
        WsError::Protocol(protocol) => match protocol {
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::ReceivedAfterClosing => {
                return End::PeerGone;
            }
            ProtocolError::NonZeroReservedBits => "reserved bits set without an extension",
            ProtocolError::UnmaskedFrameFromClient => "client frames must be masked",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::ControlFrameTooBig => "control frame longer than 125 bytes",
            ProtocolError::InvalidOpcode(_)
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_) => "reserved opcode",
            ProtocolError::UnexpectedContinueFrame | ProtocolError::ExpectedFragment(_) => {
                "bad fragmentation"
            }
            ProtocolError::InvalidCloseSequence => "invalid close frame",
            _ => "protocol error",
        },
        _ => return End::PeerGone,
    };
    End::Close(CloseCode::Protocol, reason)
}

/// The meter's view of a frame the WebSocket has handed over.
fn received(meter: &Meter, message: &Message) {
    match message {
        Message::Text(_) | Message::Binary(_) => meter.message_done(),
        Message::Ping(payload) | Message::Pong(payload) => meter.control_done(payload.len()),
        Message::Close(_) | Message::Frame(_) => {}
    }
}

/// From the upgraded socket to the end of the membership: the header and the join, then the
/// membership. Each phase is boxed on its own, so that an idle member does not keep room for
/// the join's state (the store's load, the header) for as long as it stays.
async fn session(
    ws: &mut Ws,
    hub: &Hub,
    config: &MlesConfig,
    meter: &Meter,
    memory: &Arc<MemoryBudget>,
) -> End {
    let admitted = match Box::pin(join(ws, hub, config, meter, memory)).await {
        Ok(admitted) => admitted,
        Err(end) => return end,
    };
    Box::pin(member(ws, admitted, config, meter, memory)).await
}

/// A joined member, what it is owed from history, and its queue of live frames.
struct Admitted {
    member: Member,
    replay: Replay,
    outbox: Outbox,
}

/// Reads and checks the header, then joins its channel.
async fn join(
    ws: &mut Ws,
    hub: &Hub,
    config: &MlesConfig,
    meter: &Meter,
    memory: &Arc<MemoryBudget>,
) -> Result<Admitted, End> {
    let first = match tokio::time::timeout(config.header_timeout, ws.next()).await {
        Err(_) => return Err(reject("header timeout")),
        Ok(None) => return Err(End::PeerGone),
        Ok(Some(Err(error))) => return Err(read_failed(&error)),
        Ok(Some(Ok(first))) => first,
    };
    received(meter, &first);
    let text = match first {
        Message::Text(text) => text,
        Message::Close(_) => return Err(End::PeerGone),
        _ => return Err(reject("first frame must be a text header")),
    };
    let header = match Header::parse(text.as_bytes()) {
        Ok(header) => header,
        Err(error) => {
            tracing::debug!(%error, "header refused");
            return Err(reject(header_reason(&error)));
        }
    };
    let key = config.mles_key.as_deref();
    let auth = AuthParts::split(header.auth.as_deref());
    if !auth::verify(
        header.uid.as_str(),
        header.channel.as_str(),
        auth.token,
        key,
    ) {
        tracing::debug!(uid = %header.uid, channel = %header.channel, "auth refused");
        return Err(reject("auth failed"));
    }
    let verified = match identify(&hub.accounts(), &header, auth.proof).await {
        Ok(verified) => verified,
        Err(Refused::Policy(reason)) => return Err(reject(reason)),
        Err(Refused::Store(error)) => {
            // The store did not answer (a cluster electing a leader, without quorum): nothing
            // is wrong with the join itself.
            tracing::warn!(%error, "name lookup failed");
            return Err(End::Close(CloseCode::Again, STORE_UNAVAILABLE));
        }
    };
    let joined = match hub
        .join(
            header.channel.clone(),
            header.uid.clone(),
            verified,
            header.stored,
        )
        .await
    {
        Ok(joined) => joined,
        Err(HubError::Duplicate { .. }) => return Err(reject("uid already in channel")),
        Err(HubError::HeldByUnresponsiveNode { .. }) => {
            return Err(End::Close(CloseCode::Again, HELD_BY_UNRESPONSIVE_NODE));
        }
        Err(HubError::ShuttingDown) => {
            return Err(End::Close(CloseCode::Away, "server shutting down"));
        }
        Err(HubError::Disk(refusal)) => return Err(disk_refused(refusal)),
        Err(HubError::Unavailable(reason)) => {
            tracing::warn!(%reason, "join refused: the store is unavailable");
            return Err(End::Close(CloseCode::Again, STORE_UNAVAILABLE));
        }
        Err(error) => {
            tracing::error!(%error, "join failed");
            return Err(End::Close(CloseCode::Error, "server error"));
        }
    };
    tracing::debug!(uid = %header.uid, channel = %header.channel, "joined");
    let replay_bytes: usize = joined.history.iter().map(|e| e.payload.len()).sum();
    let Ok(replay) = memory.reserve(replay_bytes.saturating_sub(UNCHARGED_REPLAY_BYTES)) else {
        tracing::debug!(replay_bytes, "replay refused: memory budget exhausted");
        return Err(over_budget("replay"));
    };
    Ok(Admitted {
        member: joined.member,
        replay: Replay {
            entries: joined.history,
            charged: replay,
        },
        outbox: joined.outbox,
    })
}

/// What a uid that is a bound name, or passes for one, is refused with when it brings no proof.
const BOUND_NAME: &str = "uid is (or looks like) a name bound to an SSH key: send a proof in auth (see README) or choose another uid";

/// Why a header's identity was refused.
enum Refused {
    /// Told to the client.
    Policy(&'static str),
    /// The name records could not be read.
    Store(HubError),
}

/// Whether the header's uid is proved to be the bound name it spells (a verified member). A
/// header without a proof is let in unverified unless its uid passes for a bound name in any
/// spelling ([`passes_for`]); one with a proof must carry a valid one.
async fn identify(
    accounts: &Accounts,
    header: &Header,
    proof: Option<&str>,
) -> Result<bool, Refused> {
    let uid = header.uid.as_str();
    let Some(proof) = proof else {
        for nick in passes_for(uid) {
            if accounts
                .identity(nick)
                .await
                .map_err(Refused::Store)?
                .is_some()
            {
                return Err(Refused::Policy(BOUND_NAME));
            }
        }
        return Ok(false);
    };
    let refused = |error: ProofError| Refused::Policy(error.reason());
    let proof = Proof::parse(proof).map_err(refused)?;
    let nick = Nick::new(uid).map_err(|_| refused(ProofError::Unbound))?;
    let identity = accounts
        .identity(nick)
        .await
        .map_err(Refused::Store)?
        .ok_or(refused(ProofError::Unbound))?;
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let fingerprint = proof
        .verify(uid, header.channel.as_str(), now_secs, &identity.keys)
        .map_err(refused)?;
    tracing::debug!(uid, %fingerprint, "bound name proved");
    Ok(true)
}

/// The history a joiner is sent before anything live, and its charge to the memory budget,
/// given back as it is written.
struct Replay {
    entries: Vec<Arc<Entry>>,
    charged: Reservation,
}

/// Why a join is refused while its uid is held only by another node that does not answer
/// (frozen or cut off; its presence stops counting within a second or two): 1013, unlike a
/// live holder's 1008, which many clients take as final.
const HELD_BY_UNRESPONSIVE_NODE: &str =
    "uid held by a node that does not answer: try again in a few seconds";

/// Why a join is refused while the store cannot serve the channel's history (a cluster
/// electing a leader, without quorum): 1013, try again later.
const STORE_UNAVAILABLE: &str = "store unavailable: try again later";

/// Why a member is closed when the store did not confirm one of its frames in time: 1013, with
/// what became of its frames, so that a client that sends again does not duplicate any.
const STORE_UNCONFIRMED: &str =
    "store unavailable: your first unconfirmed frame may still be stored, none after it will be";

/// A frame the disk budget refused: 1013 (try again later) with which part of it is used up.
fn disk_refused(refusal: kanava_core::DiskRefusal) -> End {
    End::Close(
        CloseCode::Again,
        match refusal {
            kanava_core::DiskRefusal::Source => {
                "disk budget used up: your address has used its share"
            }
            kanava_core::DiskRefusal::Total => "disk budget used up: the server's total",
        },
    )
}

fn reject(reason: &'static str) -> End {
    metrics::counter!("kanava_header_refusals_total").increment(1);
    End::Close(CloseCode::Policy, reason)
}

fn header_reason(error: &crate::HeaderError) -> &'static str {
    use crate::HeaderError::*;
    match error {
        TooLarge => "header too large",
        NotJson => "header is not a JSON object",
        MissingField("uid") => "header uid missing or not a string",
        MissingField(_) => "header channel missing or not a string",
        BadAuthType => "header auth is not a string",
        DuplicateKey(_) => "header names a key twice",
        Name(kanava_core::NameError::Empty { .. }) => "empty uid or channel",
        Name(kanava_core::NameError::NotAscii { .. }) => "uid or channel not ASCII",
    }
}

/// A joined member: read and publish until the peer leaves, while the writer sends history and
/// live frames and the keepalive watches for answers; a kick from the hub ends all at once.
async fn member(
    ws: &mut Ws,
    admitted: Admitted,
    config: &MlesConfig,
    meter: &Meter,
    memory: &Arc<MemoryBudget>,
) -> End {
    let Admitted {
        member,
        replay,
        mut outbox,
    } = admitted;
    let (mut sink, mut stream) = ws.split();
    let alive = Keepalive::default();
    let kick = outbox.kick_signal();
    let end = {
        let writer = pin!(write(
            &mut sink,
            replay,
            &mut outbox,
            &alive,
            config,
            memory
        ));
        let reader = pin!(read(&mut stream, &member, &alive, meter, config));
        tokio::select! {
            biased;
            reason = kick.kicked() => match reason {
                KickReason::QueueOverflow => End::Close(CloseCode::Again, "too slow: outbound queue overflow"),
                KickReason::MemoryBudget => over_budget("queue"),
                KickReason::StoreFailed => End::Close(CloseCode::Error, "server error: frame not stored"),
                KickReason::StoreUnavailable => End::Close(CloseCode::Again, STORE_UNCONFIRMED),
                KickReason::Shutdown => End::Close(CloseCode::Away, "server shutting down"),
            },
            end = alive.watch(config.ping_interval) => end,
            end = writer => end,
            end = reader => end,
        }
    };
    // Leave the channel, and free the queue, before the closing handshake.
    drop(member);
    drop(outbox);
    match end {
        End::PeerGone => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
            End::PeerGone
        }
        close => close,
    }
}

/// Whether the peer still answers: the reader marks every frame it receives, and the keepalive
/// closes a peer unheard for [`MAX_MISSED_PINGS`] intervals, even while the writer is stuck on
/// a peer that reads nothing (its pings then never leave, and no answer comes).
#[derive(Debug, Default)]
struct Keepalive {
    /// Intervals since the peer was last heard.
    missed: AtomicU32,
    /// A ping is due; the writer sends it when it can.
    ping_due: Notify,
}

impl Keepalive {
    fn heard(&self) {
        self.missed.store(0, Ordering::Release);
    }

    async fn watch(&self, interval: Duration) -> End {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            ticker.tick().await;
            if self.missed.fetch_add(1, Ordering::AcqRel) >= MAX_MISSED_PINGS {
                return End::Close(CloseCode::Policy, "keepalive timeout");
            }
            self.ping_due.notify_one();
        }
    }

    /// Whether a ping is due now (taking it).
    fn ping_now(&self) -> bool {
        self.ping_due.notified().now_or_never().is_some()
    }
}

fn message(entry: &Entry) -> Message {
    match entry.kind {
        FrameKind::Binary => Message::Binary(entry.payload.clone()),
        FrameKind::Ping => Message::Ping(entry.payload.clone()),
        FrameKind::Text | FrameKind::Header => match Utf8Bytes::try_from(entry.payload.clone()) {
            Ok(text) => Message::Text(text),
            // Only valid UTF-8 is ever stored as text; never send a broken text frame.
            Err(_) => Message::Binary(entry.payload.clone()),
        },
    }
}

/// Feeds `entry` to the peer, in fragments of at most [`MAX_OUTGOING_FRAME`] bytes, each under
/// the write deadline.
async fn feed_entry(
    sink: &mut SplitSink<&mut Ws, Message>,
    entry: &Entry,
    deadline: Duration,
) -> Result<(), End> {
    let first = match message(entry) {
        Message::Text(_) if entry.payload.len() > MAX_OUTGOING_FRAME => Data::Text,
        Message::Binary(_) if entry.payload.len() > MAX_OUTGOING_FRAME => Data::Binary,
        whole => return within(deadline, sink.feed(whole)).await,
    };
    let len = entry.payload.len();
    for start in (0..len).step_by(MAX_OUTGOING_FRAME) {
        let end = (start + MAX_OUTGOING_FRAME).min(len);
        let opcode = OpCode::Data(if start == 0 { first } else { Data::Continue });
        let fragment = Frame::message(entry.payload.slice(start..end), opcode, end == len);
        within(deadline, sink.feed(Message::Frame(fragment))).await?;
    }
    Ok(())
}

/// Feeds a live `entry`, taken from the outbox (whose charge it no longer counts in), charged to
/// `memory` past [`UNCHARGED_WRITE_BYTES`] until it is written: a peer that stops reading holds
/// the frame it was being written, which may be as large as `--max-frame` and no longer
/// shared with anyone once every other member has been sent it.
async fn feed_live(
    sink: &mut SplitSink<&mut Ws, Message>,
    entry: Arc<Entry>,
    deadline: Duration,
    memory: &Arc<MemoryBudget>,
) -> Result<(), End> {
    let _charge = memory
        .reserve(entry.payload.len().saturating_sub(UNCHARGED_WRITE_BYTES))
        .map_err(|_| over_budget("write"))?;
    feed_entry(sink, &entry, deadline).await
}

/// Runs one write to the peer under the write deadline: a peer that takes longer than the
/// keepalive allows to take in one write is stuck, whatever else it sends.
async fn within<F>(deadline: Duration, write: F) -> Result<(), End>
where
    F: Future<Output = Result<(), WsError>>,
{
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::PeerGone),
        Err(_) => Err(End::Close(
            CloseCode::Policy,
            "write timeout: peer not reading",
        )),
    }
}

async fn write(
    sink: &mut SplitSink<&mut Ws, Message>,
    mut replay: Replay,
    outbox: &mut Outbox,
    alive: &Keepalive,
    config: &MlesConfig,
    memory: &Arc<MemoryBudget>,
) -> End {
    let deadline = config.ping_interval.saturating_mul(MAX_MISSED_PINGS + 1);
    let result: Result<(), End> = async {
        for entry in std::mem::take(&mut replay.entries) {
            if alive.ping_now() {
                within(deadline, sink.feed(Message::Ping(Bytes::new()))).await?;
            }
            feed_entry(sink, &entry, deadline).await?;
            replay.charged.shrink(entry.payload.len());
        }
        within(deadline, sink.flush()).await?;
        drop(replay);
        loop {
            tokio::select! {
                biased;
                () = alive.ping_due.notified() => {
                    within(deadline, sink.send(Message::Ping(Bytes::new()))).await?;
                }
                entry = outbox.recv() => {
                    let Some(entry) = entry else { return Err(End::PeerGone) };
                    let mut sent = 1;
                    let mut bytes = entry.payload.len();
                    feed_live(sink, entry, deadline, memory).await?;
                    while sent < MAX_BATCH_FRAMES && bytes < MAX_BATCH_BYTES {
                        let Some(entry) = outbox.try_recv() else { break };
                        bytes += entry.payload.len();
                        feed_live(sink, entry, deadline, memory).await?;
                        sent += 1;
                    }
                    within(deadline, sink.flush()).await?;
                }
            }
        }
    }
    .await;
    result.err().unwrap_or(End::PeerGone)
}

async fn read(
    stream: &mut SplitStream<&mut Ws>,
    member: &Member,
    alive: &Keepalive,
    meter: &Meter,
    config: &MlesConfig,
) -> End {
    loop {
        // A message must be complete within --message-timeout of its first byte; the meter
        // knows when that was, even while this waits.
        let check_at = meter
            .receiving_since()
            .unwrap_or_else(tokio::time::Instant::now)
            + config.message_timeout;
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = tokio::time::sleep_until(check_at) => {
                if meter
                    .receiving_since()
                    .is_some_and(|since| since.elapsed() >= config.message_timeout)
                {
                    return End::Close(CloseCode::Policy, "message not completed in time");
                }
                continue;
            }
        };
        let frame = match frame {
            None => return End::PeerGone,
            Some(Err(error)) => return read_failed(&error),
            Some(Ok(frame)) => frame,
        };
        received(meter, &frame);
        alive.heard();
        let (kind, payload) = match frame {
            Message::Text(text) => (FrameKind::Text, Bytes::from(text)),
            Message::Binary(bytes) => (FrameKind::Binary, bytes),
            Message::Ping(bytes) => (FrameKind::Ping, bytes),
            Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => return End::PeerGone,
        };
        // Boxed: publishing is rare on most connections, and its state would otherwise take
        // room in every member's future.
        match Box::pin(member.publish(kind, payload)).await {
            Ok(()) => {}
            Err(HubError::ShuttingDown) => {
                return End::Close(CloseCode::Away, "server shutting down");
            }
            Err(HubError::Disk(refusal)) => return disk_refused(refusal),
            Err(error) => {
                tracing::error!(%error, "publish failed");
                return End::Close(CloseCode::Error, "server error");
            }
        }
    }
}

/// Sends the close frame (if the server is the one closing) and waits briefly for the peer's.
async fn finish(mut ws: Box<Ws>, end: End) {
    let ws = &mut *ws;
    match end {
        End::Close(code, reason) => {
            tracing::debug!(?code, reason, "closing");
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                if ws.close(Some(frame)).await.is_ok() {
                    // Drain until the peer's Close (or EOF) so that it sees a clean close.
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
        }
        // tungstenite writes its reply to the peer's Close but, the handshake being over, does
        // not flush it: hand the stream's batch to TLS here.
        End::PeerGone => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.get_mut().flush()).await;
        }
    }
}
