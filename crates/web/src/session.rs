//! One web connection, from its hello to its close: the login, then requests, the live events of
//! the rooms it opened, private messages and notices, and keepalive pings.
//!
//! A reader (this task) decodes and answers requests; one task per open room forwards the
//! room's live entries and presence; a writer task writes what they all queue
//! ([`crate::outgoing`]). Whoever decides that the connection ends says why ([`Ending`]), and
//! the close frame carries it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use kanava_core::{
    ChannelName, Claim, Entry, FrameKind, KeyAdded, Nick, PrivateMessage, Topic, Uid,
};
use kanava_hub::{
    HubError, KickReason, KickSignal, MESSAGE_BURST, MESSAGE_RATE, Member, RoomNotice, TokenBucket,
};
use kanava_mles::RoutedConnection;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::events;
use crate::outgoing::{self, Ending, Out, Outgoing, Queue};
use crate::proof;
use crate::protocol::{self, Envelope, Request};
use crate::web::{SessionId, Shared};

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Keepalive intervals a client may stay silent: pings go out at 1, 2 and 3 intervals, and the
/// close comes at the fourth.
const MAX_MISSED_PINGS: u32 = 3;

/// How long a closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of JSON allowed around a text of the largest size in one client frame.
pub const FRAME_OVERHEAD: usize = 1024;

/// Bytes of events sent at once for a join or a history page (counting each event's text as
/// at most [`events::MAX_EVENT_TEXT`]): within what a connection may have queued, so that a
/// room of large messages never closes a client that reads.
const MAX_BACKLOG_BYTES: usize = 1 << 20;

/// Rooms a `rooms` reply lists at most (the busiest), so that it stays a small frame however
/// many rooms the server holds.
const MAX_ROOMS_LISTED: usize = 500;

/// Pages of missed events a resuming client is sent at once; past that it starts afresh.
const RESUME_PAGES: usize = 4;

/// About what an event costs beyond its text, in bytes.
const EVENT_OVERHEAD: usize = 160;

/// What sending `entries` as events costs, about.
fn backlog_bytes(entries: &[impl Borrow<Entry>]) -> usize {
    entries
        .iter()
        .map(|e| e.borrow().payload.len().min(events::MAX_EVENT_TEXT) + EVENT_OVERHEAD)
        .sum()
}

/// The latest of `entries` (oldest first) that fit one backlog: at most `page`, and at most
/// [`MAX_BACKLOG_BYTES`] (but at least one).
fn latest_fitting<E: Borrow<Entry>>(mut entries: Vec<E>, page: usize) -> Vec<E> {
    let mut bytes = 0;
    let mut keep = 0;
    for entry in entries.iter().rev().take(page) {
        bytes += backlog_bytes(std::slice::from_ref(entry));
        if bytes > MAX_BACKLOG_BYTES && keep > 0 {
            break;
        }
        keep += 1;
    }
    entries.drain(..entries.len() - keep);
    entries
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A refused request: its error code and reason.
#[derive(Debug)]
struct Refused {
    code: &'static str,
    reason: String,
}

impl Refused {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// A hub error as the client sees it, ending the connection when the store cannot take writes.
fn hub_refusal(error: &HubError, ending: &Ending) -> Refused {
    match error {
        HubError::Disk(refusal) => Refused::new("disk", format!("not stored: {refusal}")),
        HubError::Duplicate { uid, channel } => Refused::new(
            "duplicate",
            format!("{uid} is already in {channel} as a Mles client"),
        ),
        HubError::HeldByUnresponsiveNode { uid, channel } => Refused::new(
            "unavailable",
            format!(
                "{uid} is in {channel} on a node that does not answer; try again in a few seconds"
            ),
        ),
        HubError::ShuttingDown => {
            ending.end(CloseCode::Away, "server shutting down");
            Refused::new("unavailable", "the server is shutting down")
        }
        HubError::Store(error) => {
            tracing::warn!(%error, "web request failed in the store");
            Refused::new("unavailable", "the store is unavailable; try again later")
        }
        HubError::Unavailable(reason) => {
            tracing::warn!(%reason, "web request found the store unavailable");
            Refused::new("unavailable", "the store is unavailable; try again later")
        }
    }
}

/// An open room: the membership, the task forwarding its live entries and presence, and the
/// membership's kick signal.
struct Room {
    member: Arc<Member>,
    kick: KickSignal,
    forward: JoinHandle<()>,
    /// The member's own messages, for the forwarder to show in their place.
    own: mpsc::Sender<OwnMessage>,
}

/// What the session tells a room's forwarder about the member's own messages, which do not
/// come back through its outbox: from the moment one is being published until it is shown (or
/// failed), the forwarder holds back the room's other events, so that every event reaches the
/// client in seq order.
enum OwnMessage {
    /// A message is being published.
    Publishing,
    /// It is stored and released to the room: show it in its place, then tell the sender.
    Stored(Entry, oneshot::Sender<()>),
    /// It was not stored.
    Failed,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// A logged-in connection's state.
struct Session {
    shared: Arc<Shared>,
    id: SessionId,
    nick: Nick,
    fingerprint: String,
    peer: SocketAddr,
    out: Outgoing,
    rooms: HashMap<ChannelName, Room>,
    requests: TokenBucket,
}

/// Serves one connection upgraded at `/kanava`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    connection: RoutedConnection,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let config = &shared.config;
    let max_frame = config.max_text + FRAME_OVERHEAD;
    let ws_config = WebSocketConfig::default()
        .max_frame_size(Some(max_frame))
        .max_message_size(Some(max_frame))
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(max_frame.saturating_mul(2).max(1 << 20));
    let RoutedConnection { stream, read_ahead } = connection;
    let ws =
        WebSocketStream::from_partially_read(stream, read_ahead, Role::Server, Some(ws_config))
            .await;
    let (sink, mut stream) = ws.split();
    let ending = Arc::new(Ending::default());
    let (out, queue) = outgoing::queue(
        config.max_queued_bytes,
        Arc::clone(&shared.memory),
        Arc::clone(&ending),
    );
    let writer = tokio::spawn(write(
        sink,
        queue,
        Arc::clone(&ending),
        config.ping_interval,
    ));
    metrics::gauge!("kanava_web_sessions").increment(1.0);
    let nonce = nonce();
    out.send(&json!({
        "type": "hello",
        "version": protocol::VERSION,
        "nonce": nonce,
        "limits": {
            "max_text": config.max_text,
            "history_page": config.history_page,
            "max_rooms": config.max_rooms,
        },
    }));
    let login = tokio::select! {
        () = shutdown.cancelled() => {
            ending.end(CloseCode::Away, "server shutting down");
            None
        }
        () = ending.ended() => None,
        login = tokio::time::timeout(
            config.handshake_timeout,
            login(&shared, &mut stream, &out, &nonce, peer),
        ) => match login {
            Ok(login) => login,
            Err(_) => {
                refuse(&out, "timeout", "no login within the handshake deadline");
                ending.end(CloseCode::Policy, "no login in time");
                None
            }
        },
    };
    if let Some((nick, fingerprint)) = login {
        let id = shared.directory.add(&nick, out.clone());
        let mut session = Session {
            shared: Arc::clone(&shared),
            id,
            nick,
            fingerprint,
            peer,
            out: out.clone(),
            rooms: HashMap::new(),
            requests: TokenBucket::new(
                f64::from(shared.config.requests_per_second),
                f64::from(shared.config.requests_per_second),
            ),
        };
        session.welcome_back().await;
        session.serve(&mut stream, &shutdown).await;
    }
    drop(out);
    if !ending.is_ended() {
        ending.end(CloseCode::Normal, "");
    }
    finish(writer, stream, &ending).await;
    metrics::gauge!("kanava_web_sessions").decrement(1.0);
}

/// A fresh nonce for the hello: 18 random bytes, base64url.
fn nonce() -> String {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).unwrap_or_else(|error| {
        // Without randomness a nonce could repeat; a login would still need the key, and the
        // clock makes repeats unlikely.
        tracing::error!(%error, "no randomness for a web nonce");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sends a login refusal.
fn refuse(out: &Outgoing, code: &'static str, reason: &str) {
    metrics::counter!("kanava_web_refusals_total", "code" => code).increment(1);
    out.send(&json!({"type": "refused", "code": code, "reason": reason}));
}

/// Waits for the login and checks it; returns the name and key fingerprint, or `None` (the
/// connection has been told why and is ending).
async fn login(
    shared: &Shared,
    stream: &mut SplitStream<Ws>,
    out: &Outgoing,
    nonce: &str,
    peer: SocketAddr,
) -> Option<(Nick, String)> {
    loop {
        let text = match next_text(stream, out).await? {
            Incoming::Text(text) => text,
            Incoming::Other => continue,
        };
        let request = match protocol::decode(&text) {
            Ok(Envelope {
                request:
                    Request::Login {
                        name,
                        key,
                        signature,
                    },
                ..
            }) => (name, key, signature),
            Ok(envelope) => {
                metrics::counter!("kanava_web_refusals_total", "code" => "bad_request")
                    .increment(1);
                out.send(&events::error(
                    envelope.id,
                    "bad_request",
                    "log in first: nothing but login is accepted before welcome",
                ));
                continue;
            }
            Err(bad) => {
                metrics::counter!("kanava_web_refusals_total", "code" => "bad_request")
                    .increment(1);
                out.send(&events::error(bad.id, "bad_request", &bad.reason));
                continue;
            }
        };
        metrics::counter!("kanava_web_requests_total", "type" => "login").increment(1);
        let (name, key, signature) = request;
        let refused = |code: &'static str, reason: &str| {
            refuse(out, code, reason);
            if code == "unavailable" {
                // The store could not answer: the same login may pass in a moment.
                out.ending()
                    .end(CloseCode::Again, "names cannot be checked just now");
            } else {
                out.ending().end(CloseCode::Policy, "login refused");
            }
            None
        };
        let identity = match proof::identity_key(&key, now_ms()) {
            Ok(identity) => identity,
            Err(error) => return refused(error.code(), &error.to_string()),
        };
        if let Err(refusal) = shared.logins.check(&name, &identity, peer.ip()).await {
            return refused(refusal.label(), &refusal.reason());
        }
        if let Err(error) = proof::verify(&key, &signature, &name, nonce) {
            return refused(error.code(), &error.to_string());
        }
        let fingerprint = identity.fingerprint.clone();
        let public_key = identity.public_key.clone();
        match shared.logins.login(&name, identity, peer.ip()).await {
            Ok((nick, claim)) => {
                let outcome = match claim {
                    Claim::Bound => "bound",
                    Claim::Confirmed => "confirmed",
                    _ => "yours",
                };
                tracing::info!(%nick, %fingerprint, outcome, "web login");
                out.send(&json!({
                    "type": "welcome",
                    "name": nick.as_str(),
                    "key": public_key,
                    "fingerprint": fingerprint,
                    "outcome": outcome,
                }));
                return Some((nick, fingerprint));
            }
            Err(refusal) => return refused(refusal.label(), &refusal.reason()),
        }
    }
}

/// What the reader got: a text frame, or something already handled.
enum Incoming {
    Text(Utf8Bytes),
    Other,
}

/// Reads the next frame; answers binary frames with a `bad_request`; `None` once the
/// connection ends (the reason given to [`Ending`]).
async fn next_text(stream: &mut SplitStream<Ws>, out: &Outgoing) -> Option<Incoming> {
    let ending = out.ending();
    let message = tokio::select! {
        () = ending.ended() => return None,
        message = stream.next() => message,
    };
    match message {
        Some(Ok(Message::Text(text))) => Some(Incoming::Text(text)),
        Some(Ok(Message::Binary(_))) => {
            metrics::counter!("kanava_web_refusals_total", "code" => "bad_request").increment(1);
            out.send(&events::error(
                None,
                "bad_request",
                "binary frames are not requests: send JSON in text frames",
            ));
            Some(Incoming::Other)
        }
        Some(Ok(Message::Close(_))) | None => {
            ending.end(CloseCode::Normal, "");
            None
        }
        Some(Ok(_)) => Some(Incoming::Other),
        Some(Err(error)) => {
            let (code, reason) = match &error {
                WsError::Capacity(_) => {
                    metrics::counter!("kanava_web_refusals_total", "code" => "too_large")
                        .increment(1);
                    (CloseCode::Size, "frame too large")
                }
                WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in a text frame"),
                WsError::Protocol(_) => (CloseCode::Protocol, "WebSocket protocol error"),
                _ => (CloseCode::Normal, ""),
            };
            ending.end(code, reason);
            None
        }
    }
}

/// Writes what the connection queues, and pings every `ping_interval` while the client is
/// silent; gives the sink back when the connection ends.
async fn write(
    mut sink: SplitSink<Ws, Message>,
    mut queue: Queue,
    ending: Arc<Ending>,
    ping_interval: Duration,
) -> SplitSink<Ws, Message> {
    // One write may take as long as a client may stay silent.
    let deadline = ping_interval.saturating_mul(MAX_MISSED_PINGS + 1);
    loop {
        let next = tokio::select! {
            biased;
            () = ending.ended() => break,
            next = queue.next() => next,
        };
        let (message, written) = match next {
            Some(Out::Text(text, charge)) => (Message::Text(text.into()), Some(charge)),
            Some(Out::Ping) => (Message::Ping(Bytes::new()), None),
            None => break,
        };
        let sent = tokio::select! {
            () = ending.ended() => break,
            sent = tokio::time::timeout(deadline, sink.send(message)) => sent,
        };
        if let Some(charge) = written {
            queue.written(charge.bytes());
        }
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                ending.end(CloseCode::Normal, "");
                return sink;
            }
            Err(_) => {
                ending.end(
                    CloseCode::Policy,
                    "too slow: a write did not complete in time",
                );
                return sink;
            }
        }
    }
    // What was queued before the end (a refusal, the last replies) goes out before the close,
    // if the client takes it in time.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Out::Text(text, charge)) = queue.try_next() {
            let sent = sink.send(Message::Text(text.into())).await;
            queue.written(charge.bytes());
            if sent.is_err() {
                break;
            }
        }
    })
    .await;
    sink
}

/// Closes the connection with the reason it ends for, within [`CLOSE_TIMEOUT`].
async fn finish(
    writer: JoinHandle<SplitSink<Ws, Message>>,
    stream: SplitStream<Ws>,
    ending: &Ending,
) {
    let Ok(mut sink) = writer.await else {
        return;
    };
    let (code, reason) = ending.why().unwrap_or((CloseCode::Normal, String::new()));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if sink.send(Message::Close(Some(frame))).await.is_ok()
            && let Ok(mut ws) = sink.reunite(stream)
        {
            // Wait for the client's Close (or the end of the stream).
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

impl Drop for Session {
    /// The session leaves its rooms and the directory, however the connection ends.
    fn drop(&mut self) {
        self.rooms.clear();
        self.shared.directory.remove(&self.nick, self.id);
    }
}

impl Session {
    /// After the welcome: the private messages sent while the user was away.
    async fn welcome_back(&self) {
        match self
            .shared
            .hub
            .accounts()
            .take_unread_private(self.nick.clone())
            .await
        {
            Ok(messages) => {
                for message in &messages {
                    self.out.send(&events::private(message));
                }
            }
            Err(error) => tracing::warn!(%error, "reading unread private messages failed"),
        }
    }

    /// Answers requests until the connection ends.
    async fn serve(&mut self, stream: &mut SplitStream<Ws>, shutdown: &CancellationToken) {
        let ending = Arc::clone(self.out.ending());
        let interval = self.shared.config.ping_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut missed = 0u32;
        loop {
            let incoming = tokio::select! {
                () = shutdown.cancelled() => {
                    ending.end(CloseCode::Away, "server shutting down");
                    return;
                }
                _ = ticker.tick() => {
                    missed += 1;
                    if missed > MAX_MISSED_PINGS {
                        ending.end(CloseCode::Policy, "no answer to pings");
                        return;
                    }
                    self.out.ping();
                    continue;
                }
                incoming = next_text(stream, &self.out) => incoming,
            };
            missed = 0;
            match incoming {
                None => return,
                Some(Incoming::Other) => {}
                Some(Incoming::Text(text)) => {
                    // The frame is held until its request is answered: charge it meanwhile.
                    let Ok(_held) = self.shared.memory.reserve(text.len()) else {
                        metrics::counter!("kanava_web_refusals_total", "code" => "memory")
                            .increment(1);
                        ending.end(CloseCode::Again, "server memory budget exhausted");
                        return;
                    };
                    self.request(&text).await;
                }
            }
            if ending.is_ended() {
                return;
            }
        }
    }

    /// Decodes and answers one request.
    async fn request(&mut self, text: &str) {
        let envelope = match protocol::decode(text) {
            Ok(envelope) => envelope,
            Err(bad) => {
                self.fail(bad.id, &Refused::new("bad_request", bad.reason));
                return;
            }
        };
        let Envelope { id, request } = envelope;
        metrics::counter!("kanava_web_requests_total", "type" => request.label()).increment(1);
        let limited = match &request {
            Request::Send { .. } | Request::Pm { .. } => !self.shared.limits.allow(&self.nick),
            _ => !self.requests.take(1.0),
        };
        if limited {
            let reason = match &request {
                Request::Send { .. } | Request::Pm { .. } => format!(
                    "too many messages: at most {MESSAGE_BURST} at once, then {MESSAGE_RATE} a second"
                ),
                _ => format!(
                    "too many requests: at most {} a second",
                    self.shared.config.requests_per_second
                ),
            };
            self.fail(id, &Refused::new("rate", reason));
            return;
        }
        let answer = match request {
            Request::Login { .. } => Err(Refused::new("bad_request", "already logged in")),
            Request::Join { room, after } => self.join(&room, after, id).await,
            Request::Leave { room } => self.leave(&room),
            Request::Send { room, text } => self.send(&room, text).await,
            Request::History {
                room,
                before,
                limit,
            } => self.history(&room, before, limit, id).await,
            Request::Topic { room, text } => self.topic(&room, text).await,
            Request::Pm { to, text } => self.private(&to, text).await,
            Request::Keys {} => self.keys(id).await,
            Request::KeyAdd { key } => self.key_add(&key).await,
            Request::KeyRemove { fingerprint } => self.key_remove(fingerprint).await,
            Request::Rooms {} => Ok(Some(self.rooms())),
        };
        match answer {
            // The reply was sent already (joined, history, keys).
            Ok(None) => {}
            Ok(Some(mut ok)) => {
                if ok.get("type").is_none()
                    && let Some(fields) = ok.as_object_mut()
                {
                    fields.insert("type".into(), "ok".into());
                }
                self.out.send(&events::with_id(ok, id));
            }
            Err(refused) => self.fail(id, &refused),
        }
    }

    fn fail(&self, id: Option<u64>, refused: &Refused) {
        metrics::counter!("kanava_web_refusals_total", "code" => refused.code).increment(1);
        self.out
            .send(&events::error(id, refused.code, &refused.reason));
    }

    fn text_fits(&self, text: &str) -> Result<(), Refused> {
        let max = self.shared.config.max_text;
        if text.len() > max {
            return Err(Refused::new(
                "too_large",
                format!("message too large: at most {max} bytes"),
            ));
        }
        if text.is_empty() {
            return Err(Refused::new("bad_request", "empty message"));
        }
        Ok(())
    }

    fn open_room(&self, room: &str) -> Result<(ChannelName, &Room), Refused> {
        let room = protocol::room(room).map_err(|reason| Refused::new("bad_request", reason))?;
        match self.rooms.get(&room) {
            Some(open) => Ok((room, open)),
            None => Err(Refused::new("not_joined", format!("join #{room} first"))),
        }
    }

    async fn join(
        &mut self,
        room: &str,
        after: Option<u64>,
        id: Option<u64>,
    ) -> Result<Option<Value>, Refused> {
        let room = protocol::room(room).map_err(|reason| Refused::new("bad_request", reason))?;
        let hub = self.shared.hub.for_source(self.peer.ip());
        let ending = Arc::clone(self.out.ending());
        if self.rooms.contains_key(&room) {
            // A second join resends the state and the latest events.
            let history = hub
                .history(room.clone())
                .await
                .map_err(|e| hub_refusal(&e, &ending))?;
            self.send_joined(&room, &history, after, id).await;
            return Ok(None);
        }
        let max_rooms = self.shared.config.max_rooms;
        if self.rooms.len() >= max_rooms {
            return Err(Refused::new(
                "too_many_rooms",
                format!("too many rooms open: at most {max_rooms}; leave one first"),
            ));
        }
        self.may_create(&hub, &room).await?;
        let uid = Uid::new(self.nick.as_str()).expect("chat names are valid uids");
        let header =
            Bytes::from(json!({"uid": self.nick.as_str(), "channel": room.as_str()}).to_string());
        let joined = hub
            .join_shared(room.clone(), uid, header)
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        self.send_joined(&room, &joined.history, after, id).await;
        let member = Arc::new(joined.member);
        let kick = joined.outbox.kick_signal();
        let (own, own_messages) = mpsc::channel(1);
        let forward = tokio::spawn(forward(
            self.shared.hub.clone(),
            room.clone(),
            (joined.outbox, own_messages),
            member.presence(),
            self.out.clone(),
        ));
        self.shared.directory.opened(&self.nick, self.id, &room);
        self.rooms.insert(
            room,
            Room {
                member,
                kick,
                forward,
                own,
            },
        );
        Ok(None)
    }

    /// Whether the user may enter `room`, as in the SSH chat: a room that exists (someone is
    /// in it, or it has history) always; a new one within the user's rooms-per-hour limit.
    async fn may_create(&self, hub: &kanava_hub::Hub, room: &ChannelName) -> Result<(), Refused> {
        if hub.member_count(room) > 0 {
            return Ok(());
        }
        // One entry says whether the room has history; its whole history may be megabytes.
        let newest = hub
            .history_before(room.clone(), u64::MAX, 1)
            .await
            .map_err(|e| hub_refusal(&e, self.out.ending()))?;
        if !newest.is_empty() || self.shared.limits.allow_new_room(&self.nick) {
            return Ok(());
        }
        Err(Refused::new(
            "rate",
            format!(
                "room not created: at most {} new rooms an hour; join one that exists",
                self.shared.limits.rates().rooms_per_hour.max(1)
            ),
        ))
    }

    /// Sends `joined` and the events a client joining with `after` is owed.
    async fn send_joined(
        &self,
        room: &ChannelName,
        window: &[Arc<Entry>],
        after: Option<u64>,
        id: Option<u64>,
    ) {
        let page = self.shared.config.history_page;
        let topic = match self.shared.hub.accounts().topic(room.clone()).await {
            Ok(topic) => topic.as_ref().map_or(Value::Null, events::topic),
            Err(error) => {
                tracing::warn!(%error, "reading a topic failed");
                Value::Null
            }
        };
        let (events, resumed) = self.owed(room, window, after, page).await;
        self.out.send(&events::with_id(
            json!({
                "type": "joined",
                "room": room.as_str(),
                "resumed": resumed,
                "topic": topic,
                "members": events::members(&self.shared.hub.members(room)),
            }),
            id,
        ));
        for entry in &events {
            if let Some(event) = events::event(room, entry)
                && !self.out.send(&event)
            {
                return;
            }
        }
    }

    /// The events owed to a client that last showed `after`: all of them when the server still
    /// has them and they fit one backlog (`true`), else the latest that fit (`false`).
    async fn owed(
        &self,
        room: &ChannelName,
        window: &[Arc<Entry>],
        after: Option<u64>,
        page: usize,
    ) -> (Vec<Arc<Entry>>, bool) {
        let shown: Vec<Arc<Entry>> = window
            .iter()
            .filter(|e| e.kind != FrameKind::Ping)
            .cloned()
            .collect();
        let Some(after) = after else {
            return (latest_fitting(shown, page), false);
        };
        // A seq beyond the newest is not this room's (its history was purged, or the server's
        // store replaced): the client starts afresh.
        if after > window.last().map_or(0, |e| e.seq) {
            return (latest_fitting(shown, page), false);
        }
        let newer: Vec<Arc<Entry>> = shown.iter().filter(|e| e.seq > after).cloned().collect();
        let missed = match window.first().map(|e| e.seq) {
            // The window reaches back to what the client has: nothing is missing.
            Some(oldest) if oldest <= after.saturating_add(1) => Some(newer),
            None => Some(newer),
            // The gap below the window may still be in the store, if it is at most a page.
            Some(oldest) => {
                let gap = self
                    .shared
                    .hub
                    .history_before(room.clone(), oldest, page + 1)
                    .await
                    .unwrap_or_default();
                let reaches = gap
                    .first()
                    .is_some_and(|e| e.seq <= after.saturating_add(1));
                reaches.then(|| {
                    gap.into_iter()
                        .filter(|e| e.seq > after && e.kind != FrameKind::Ping)
                        .map(Arc::new)
                        .chain(newer)
                        .collect()
                })
            }
        };
        match missed {
            Some(missed)
                if missed.len() <= page.saturating_mul(RESUME_PAGES)
                    && backlog_bytes(&missed) <= MAX_BACKLOG_BYTES =>
            {
                (missed, true)
            }
            _ => (latest_fitting(shown, page), false),
        }
    }

    fn leave(&mut self, room: &str) -> Result<Option<Value>, Refused> {
        let (room, _) = self.open_room(room)?;
        self.rooms.remove(&room);
        self.shared.directory.closed(&self.nick, self.id, &room);
        Ok(Some(json!({"room": room.as_str()})))
    }

    async fn send(&mut self, room: &str, text: String) -> Result<Option<Value>, Refused> {
        self.text_fits(&text)?;
        let ending = Arc::clone(self.out.ending());
        let (room, open) = self.open_room(room)?;
        let member = Arc::clone(&open.member);
        let kick = open.kick.clone();
        let forwarder = open.own.clone();
        let _ = forwarder.send(OwnMessage::Publishing).await;
        let own = match member
            .publish_stored(FrameKind::Text, Bytes::from(text))
            .await
        {
            Ok(own) => own,
            Err(error) => {
                let _ = forwarder.send(OwnMessage::Failed).await;
                return Err(hub_refusal(&error, &ending));
            }
        };
        if let Some(reason) = kick.reason() {
            self.rooms.remove(&room);
            let refused = kicked(reason, &ending);
            return Err(refused);
        }
        // The sender's own frame does not come back through its outbox: the room's forwarder
        // shows it after what others sent before it, and the ok follows.
        let seq = own.seq;
        let (queued, shown) = oneshot::channel();
        if forwarder
            .send(OwnMessage::Stored(own, queued))
            .await
            .is_ok()
        {
            let _ = shown.await;
        }
        let ok = json!({"room": room.as_str(), "seq": seq});
        Ok(Some(ok))
    }

    async fn history(
        &self,
        room: &str,
        before: u64,
        limit: Option<u64>,
        id: Option<u64>,
    ) -> Result<Option<Value>, Refused> {
        let room = protocol::room(room).map_err(|reason| Refused::new("bad_request", reason))?;
        let page = self.shared.config.history_page;
        let limit = limit.map_or(page, |l| usize::try_from(l).unwrap_or(page).clamp(1, page));
        let ending = Arc::clone(self.out.ending());
        let entries = self
            .shared
            .hub
            .history_before(room.clone(), before, limit + 1)
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        let held = entries.len();
        let entries = latest_fitting(entries, limit);
        let more = held > entries.len();
        let events: Vec<Value> = entries
            .iter()
            .filter_map(|e| events::event(&room, e))
            .collect();
        self.out.send(&events::with_id(
            json!({"type": "history", "room": room.as_str(), "events": events, "more": more}),
            id,
        ));
        Ok(None)
    }

    async fn topic(&mut self, room: &str, text: String) -> Result<Option<Value>, Refused> {
        self.text_fits(&text)?;
        let (room, _) = self.open_room(room)?;
        if !self.shared.limits.allow_announcement(&self.nick) {
            return Err(Refused::new(
                "rate",
                "topic not changed: at most 3 changes at once, then one a minute",
            ));
        }
        let ending = Arc::clone(self.out.ending());
        let topic = Topic {
            room: room.clone(),
            text,
            set_by: self.nick.clone(),
            set_ms: now_ms(),
        };
        self.shared
            .hub
            .accounts()
            .set_topic(topic.clone())
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        self.shared
            .hub
            .chat()
            .announce(&room, RoomNotice::Topic(topic));
        Ok(Some(json!({"room": room.as_str()})))
    }

    async fn private(&mut self, to: &str, text: String) -> Result<Option<Value>, Refused> {
        self.text_fits(&text)?;
        let ending = Arc::clone(self.out.ending());
        let to = Nick::new(to).map_err(|_| Refused::new("bad_request", "bad name"))?;
        if to == self.nick {
            return Err(Refused::new(
                "bad_request",
                "that is you: message someone else",
            ));
        }
        let accounts = self.shared.hub.accounts();
        let identity = accounts
            .identity(to.clone())
            .await
            .map_err(|e| hub_refusal(&e, &ending))?
            .ok_or_else(|| Refused::new("no_such_user", format!("no user is called {to}")))?;
        let chat = self.shared.hub.chat();
        let online = chat.online(&identity.nick);
        let message = PrivateMessage {
            id: 0,
            from: self.nick.clone(),
            to: identity.nick,
            text,
            time_ms: now_ms(),
        };
        let stored = accounts
            .send_private(message, !online)
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        chat.deliver_private(&stored);
        Ok(Some(
            json!({"to": stored.to.as_str(), "online": online, "pm": stored.id}),
        ))
    }

    async fn keys(&self, id: Option<u64>) -> Result<Option<Value>, Refused> {
        let ending = Arc::clone(self.out.ending());
        let identity = self
            .shared
            .hub
            .accounts()
            .identity(self.nick.clone())
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        let keys: Vec<Value> = identity
            .map(|i| i.keys)
            .unwrap_or_default()
            .iter()
            .map(|k| {
                json!({
                    "key": k.public_key,
                    "fingerprint": k.fingerprint,
                    "pending": k.pending,
                    "added": k.added_ms,
                    "current": k.fingerprint == self.fingerprint,
                })
            })
            .collect();
        self.out
            .send(&events::with_id(json!({"type": "keys", "keys": keys}), id));
        Ok(None)
    }

    async fn key_add(&self, key: &str) -> Result<Option<Value>, Refused> {
        let ending = Arc::clone(self.out.ending());
        let key = proof::identity_key(key, now_ms())
            .map_err(|error| Refused::new(error.code(), error.to_string()))?;
        let fingerprint = key.fingerprint.clone();
        let added = self
            .shared
            .hub
            .accounts()
            .add_key(self.nick.clone(), key, self.shared.logins.sharing())
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        let outcome = match added {
            KeyAdded::Pending => "pending",
            KeyAdded::StillPending => "still_pending",
            KeyAdded::Active => "active",
            KeyAdded::KeyHoldsName => {
                return Err(Refused::new(
                    "key_holds_name",
                    "that key already holds another name",
                ));
            }
            KeyAdded::TooManyKeys => {
                return Err(Refused::new(
                    "too_many_keys",
                    "this name has as many keys as it may hold; remove one first",
                ));
            }
            KeyAdded::NameFree => {
                return Err(Refused::new("unavailable", "this name is no longer bound"));
            }
        };
        Ok(Some(
            json!({"outcome": outcome, "fingerprint": fingerprint}),
        ))
    }

    async fn key_remove(&self, fingerprint: String) -> Result<Option<Value>, Refused> {
        let ending = Arc::clone(self.out.ending());
        let removed = self
            .shared
            .hub
            .accounts()
            .remove_key(self.nick.clone(), fingerprint.clone())
            .await
            .map_err(|e| hub_refusal(&e, &ending))?;
        if removed {
            Ok(Some(json!({"fingerprint": fingerprint})))
        } else {
            Err(Refused::new(
                "not_found",
                format!("{fingerprint} is not one of your keys, or is your only active one"),
            ))
        }
    }

    /// The busiest rooms (at most [`MAX_ROOMS_LISTED`]), busiest first.
    fn rooms(&self) -> Value {
        let mut all = self.shared.hub.rooms();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let more = all.len() > MAX_ROOMS_LISTED;
        let rooms: Vec<Value> = all
            .iter()
            .take(MAX_ROOMS_LISTED)
            .map(|(room, members)| json!({"room": room.as_str(), "members": members}))
            .collect();
        json!({"type": "rooms", "rooms": rooms, "more": more})
    }
}

/// What a kicked membership tells the client (and whether the connection ends).
fn kicked(reason: KickReason, ending: &Ending) -> Refused {
    match reason {
        KickReason::StoreFailed => {
            ending.end(
                CloseCode::Again,
                "the store is unavailable; try again later",
            );
            Refused::new("unavailable", "not stored: the store failed")
        }
        KickReason::StoreUnavailable => {
            ending.end(
                CloseCode::Again,
                "the store is unavailable; try again later",
            );
            Refused::new(
                "unavailable",
                "not confirmed in time: your first unconfirmed message may still be stored, none after it will be",
            )
        }
        KickReason::MemoryBudget => {
            ending.end(CloseCode::Again, "server memory budget exhausted");
            Refused::new("unavailable", "server memory budget exhausted")
        }
        KickReason::QueueOverflow => {
            ending.end(CloseCode::Policy, "too slow: the room's queue overflowed");
            Refused::new("unavailable", "too slow")
        }
        KickReason::Shutdown => {
            ending.end(CloseCode::Away, "server shutting down");
            Refused::new("unavailable", "the server is shutting down")
        }
    }
}

/// Forwards a room's live entries and presence changes to the connection until the
/// membership ends.
///
/// The member's own messages come in through `own`: while one is being published the outbox
/// is not read; once it is stored, what others sent before it is in the outbox (a frame is
/// released to the channel only after every earlier one) and is forwarded first, then the own
/// message, then the rest. Seqs reach the client in order, which resuming relies on.
async fn forward(
    hub: kanava_hub::Hub,
    room: ChannelName,
    (mut outbox, mut own): (kanava_hub::Outbox, mpsc::Receiver<OwnMessage>),
    mut presence: tokio::sync::watch::Receiver<usize>,
    out: Outgoing,
) {
    let kick = outbox.kick_signal();
    let mut shown = events::members(&hub.members(&room));
    let mut watching = true;
    // Own messages being published, and an entry read from the outbox past the own message
    // being shown (it waits until no own message is pending).
    let mut publishing = 0usize;
    let mut held: Option<Arc<Entry>> = None;
    let show = |entry: &Entry| events::event(&room, entry).is_none_or(|event| out.send(&event));
    loop {
        tokio::select! {
            Some(message) = own.recv() => {
                match message {
                    OwnMessage::Publishing => publishing += 1,
                    OwnMessage::Failed => publishing = publishing.saturating_sub(1),
                    OwnMessage::Stored(entry, queued) => {
                        publishing = publishing.saturating_sub(1);
                        if held.as_ref().is_some_and(|h| h.seq < entry.seq)
                            && let Some(earlier) = held.take()
                            && !show(&earlier)
                        {
                            return;
                        }
                        while held.is_none() {
                            let Some(earlier) = outbox.try_recv() else { break };
                            if earlier.seq > entry.seq {
                                held = Some(earlier);
                            } else if !show(&earlier) {
                                return;
                            }
                        }
                        if !show(&entry) {
                            return;
                        }
                        let _ = queued.send(());
                    }
                }
                if publishing == 0
                    && let Some(later) = held.take()
                    && !show(&later)
                {
                    return;
                }
            }
            entry = outbox.recv(), if publishing == 0 && held.is_none() => match entry {
                Some(entry) => {
                    if !show(&entry) {
                        return;
                    }
                }
                None => {
                    if let Some(reason) = kick.reason() {
                        kicked(reason, out.ending());
                    }
                    return;
                }
            },
            changed = presence.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let members = events::members(&hub.members(&room));
                if members != shown {
                    shown = members.clone();
                    out.send(&json!({"type": "presence", "room": room.as_str(), "members": members}));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kanava_core::Uid;

    use super::*;

    fn entry(seq: u64, bytes: usize) -> Entry {
        Entry {
            seq,
            kind: FrameKind::Text,
            sender: Uid::new("a").unwrap(),
            verified: false,
            payload: Bytes::from(vec![b'x'; bytes]),
            time_ms: 0,
        }
    }

    #[test]
    fn a_backlog_is_the_latest_that_fit_a_page_and_the_byte_budget() {
        let small: Vec<Entry> = (1..=10).map(|seq| entry(seq, 10)).collect();
        let kept = latest_fitting(small, 4);
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        let large: Vec<Entry> = (1..=40).map(|seq| entry(seq, 1 << 20)).collect();
        let kept = latest_fitting(large, 200);
        // Each counts as MAX_EVENT_TEXT: about 15 fit one backlog.
        assert_eq!(kept.last().unwrap().seq, 40);
        assert!(backlog_bytes(&kept) <= MAX_BACKLOG_BYTES);
        assert!(kept.len() >= 10 && kept.len() < 40, "{}", kept.len());
        let huge = vec![entry(1, 1 << 24)];
        assert_eq!(latest_fitting(huge, 200).len(), 1, "at least one");
        assert!(latest_fitting(Vec::<Entry>::new(), 200).is_empty());
    }
}
