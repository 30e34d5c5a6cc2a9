//! One Mles connection from TCP accept to close: TLS, upgrade, header, join, then a reader that
//! publishes the peer's frames and a writer that sends history, live frames and keepalive pings.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use kanava_core::{Entry, FrameKind};
use kanava_hub::{Hub, HubError, KickReason, Member, Outbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::header::Header;
use crate::upgrade::{self, Parsed, Refusal};
use crate::{Endpoint, MlesConfig, Routes, ServerTls, auth};

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Keepalive intervals a peer may stay silent before it is closed: pings go out at 1, 2 and 3
/// intervals, and the close at 4 (96 s with the default 24 s).
const MAX_MISSED_PINGS: u32 = 3;

/// Live frames written before one flush, to batch small frames into few TLS records.
const MAX_BATCH_FRAMES: usize = 256;

/// Payload bytes written before one flush: bounds how long one member's writer runs before
/// yielding, so that a busy channel's fan-out cannot hold a worker thread for long.
const MAX_BATCH_BYTES: usize = 128 * 1024;

/// How long a closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ends, and what close frame (if any) the peer gets.
#[derive(Debug)]
enum End {
    /// The peer closed or vanished; tungstenite has queued any Close reply.
    PeerGone,
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
}

/// What the upgrade led to.
enum Upgraded {
    /// A Mles connection.
    Mles(Ws),
    /// A connection for an endpoint routed by path.
    Routed(Arc<dyn Endpoint>, Ws),
}

pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: ServerTls,
    hub: Hub,
    config: &MlesConfig,
    routes: &Routes,
    shutdown: CancellationToken,
) {
    let span = tracing::debug_span!("mles", %peer);
    let hub = hub.for_source(peer.ip());
    async move {
        let upgraded = tokio::select! {
            () = shutdown.cancelled() => return,
            upgraded = tokio::time::timeout(
                config.handshake_timeout,
                handshake(tcp, &tls, config, routes),
            ) => upgraded,
        };
        let mut ws = match upgraded {
            Ok(Ok(Upgraded::Mles(ws))) => ws,
            Ok(Ok(Upgraded::Routed(endpoint, ws))) => {
                return endpoint.serve(ws, peer, shutdown).await;
            }
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
            end = session(&mut ws, &hub, config) => end,
        };
        finish(ws, end).await;
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
        let ws = WebSocketStream::from_partially_read(
            stream,
            rest,
            Role::Server,
            Some(endpoint.websocket_config()),
        )
        .await;
        return Ok(Upgraded::Routed(Arc::clone(endpoint), ws));
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
    let ws_config = WebSocketConfig::default()
        .max_frame_size(Some(config.max_frame))
        .max_message_size(Some(config.max_frame))
        // Small initial read buffer: most connections idle, and it grows for big frames.
        .read_buffer_size(2048)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(config.max_frame.saturating_mul(2).max(1 << 20));
    Ok(Upgraded::Mles(
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config)).await,
    ))
}

async fn refuse(stream: &mut TlsStream<TcpStream>, refusal: Refusal) {
    metrics::counter!("kanava_upgrade_refusals_total", "status" => refusal.status().0.to_string())
        .increment(1);
    tracing::debug!(%refusal, "upgrade refused");
    let _ = stream.write_all(&refusal.response()).await;
    let _ = stream.shutdown().await;
}

/// From the upgraded socket to the end of the membership.
async fn session(ws: &mut Ws, hub: &Hub, config: &MlesConfig) -> End {
    let first = match tokio::time::timeout(config.header_timeout, ws.next()).await {
        Err(_) => return reject("header timeout"),
        Ok(None) => return End::PeerGone,
        Ok(Some(Err(WsError::Capacity(_)))) => {
            return End::Close(CloseCode::Size, "frame too large");
        }
        Ok(Some(Err(_))) => return End::PeerGone,
        Ok(Some(Ok(first))) => first,
    };
    let text = match first {
        Message::Text(text) => text,
        Message::Close(_) => return End::PeerGone,
        _ => return reject("first frame must be a text header"),
    };
    let header = match Header::parse(text.as_bytes()) {
        Ok(header) => header,
        Err(error) => {
            tracing::debug!(%error, "header refused");
            return reject(header_reason(&error));
        }
    };
    let key = config.mles_key.as_deref();
    if !auth::verify(
        header.uid.as_str(),
        header.channel.as_str(),
        header.auth.as_deref(),
        key,
    ) {
        tracing::debug!(uid = %header.uid, channel = %header.channel, "auth refused");
        return reject("auth failed");
    }
    let joined = match hub
        .join(header.channel.clone(), header.uid.clone(), header.stored)
        .await
    {
        Ok(joined) => joined,
        Err(HubError::Duplicate { .. }) => return reject("uid already in channel"),
        Err(HubError::ShuttingDown) => return End::Close(CloseCode::Away, "server shutting down"),
        Err(HubError::Disk(refusal)) => return disk_refused(refusal),
        Err(error) => {
            tracing::error!(%error, "join failed");
            return End::Close(CloseCode::Error, "server error");
        }
    };
    tracing::debug!(uid = %header.uid, channel = %header.channel, "joined");
    member(ws, joined.member, joined.history, joined.outbox, config).await
}

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
        Name(kanava_core::NameError::Empty { .. }) => "empty uid or channel",
        Name(kanava_core::NameError::NotAscii { .. }) => "uid or channel not ASCII",
    }
}

/// A joined member: read and publish until the peer leaves, while the writer sends history and
/// live frames; a kick from the hub ends both at once.
async fn member(
    ws: &mut Ws,
    member: Member,
    history: Vec<Arc<Entry>>,
    mut outbox: Outbox,
    config: &MlesConfig,
) -> End {
    let (mut sink, mut stream) = ws.split();
    let missed = AtomicU32::new(0);
    let kick = outbox.kick_signal();
    let end = {
        let writer = pin!(write(
            &mut sink,
            &history,
            &mut outbox,
            &missed,
            config.ping_interval
        ));
        let reader = pin!(read(&mut stream, &member, &missed));
        tokio::select! {
            biased;
            reason = kick.kicked() => match reason {
                KickReason::QueueOverflow => End::Close(CloseCode::Again, "too slow: outbound queue overflow"),
                KickReason::StoreFailed => End::Close(CloseCode::Error, "server error: frame not stored"),
                KickReason::Shutdown => End::Close(CloseCode::Away, "server shutting down"),
            },
            end = writer => end,
            end = reader => end,
        }
    };
    // Leave the channel before the closing handshake.
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

async fn write(
    sink: &mut SplitSink<&mut Ws, Message>,
    history: &[Arc<Entry>],
    outbox: &mut Outbox,
    missed: &AtomicU32,
    ping_interval: Duration,
) -> End {
    for entry in history {
        if sink.feed(message(entry)).await.is_err() {
            return End::PeerGone;
        }
    }
    if sink.flush().await.is_err() {
        return End::PeerGone;
    }
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        tokio::select! {
            biased;
            _ = ticker.tick() => {
                if missed.fetch_add(1, Ordering::AcqRel) >= MAX_MISSED_PINGS {
                    return End::Close(CloseCode::Policy, "keepalive timeout");
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return End::PeerGone;
                }
            }
            entry = outbox.recv() => {
                let Some(entry) = entry else { return End::PeerGone };
                let mut sent = 1;
                let mut bytes = entry.payload.len();
                let mut result = sink.feed(message(&entry)).await;
                while result.is_ok() && sent < MAX_BATCH_FRAMES && bytes < MAX_BATCH_BYTES {
                    let Some(entry) = outbox.try_recv() else { break };
                    result = sink.feed(message(&entry)).await;
                    sent += 1;
                    bytes += entry.payload.len();
                }
                if result.is_err() || sink.flush().await.is_err() {
                    return End::PeerGone;
                }
            }
        }
    }
}

async fn read(stream: &mut SplitStream<&mut Ws>, member: &Member, missed: &AtomicU32) -> End {
    loop {
        let frame = match stream.next().await {
            None => return End::PeerGone,
            Some(Err(WsError::Capacity(_))) => {
                return End::Close(CloseCode::Size, "frame too large");
            }
            Some(Err(_)) => return End::PeerGone,
            Some(Ok(frame)) => frame,
        };
        missed.store(0, Ordering::Release);
        let (kind, payload) = match frame {
            Message::Text(text) => (FrameKind::Text, Bytes::from(text)),
            Message::Binary(bytes) => (FrameKind::Binary, bytes),
            Message::Ping(bytes) => (FrameKind::Ping, bytes),
            Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => return End::PeerGone,
        };
        match member.publish(kind, payload).await {
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
async fn finish(mut ws: Ws, end: End) {
    if let End::Close(code, reason) = end {
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
}
