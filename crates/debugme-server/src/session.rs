//! Sessions: one task per live session owns its log file and its developers' queues, so that
//! the log order is the relay order and a joiner's place in the log is taken between two
//! messages.
//!
//! A session keeps nothing of what was said in memory: each message goes to the log (created
//! with the first message, so a session in which nothing was said leaves no file), then into
//! the bounded queues of those following it. A joiner replays the log up to its place from the
//! file, in bounded chunks read off the async runtime, then follows live. The log has a size
//! limit and is charged to the disk budget under the user's source; past either, the session
//! ends with an `E` frame saying why, its log intact. What is queued is charged to the memory
//! budget.
//!
//! In a cluster the session stays on its user's node, which records each logged message on the
//! [`SessionBus`]: developers on other nodes follow that record and send their messages in
//! through it, so the session still has one log, written once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kanava_core::{DiskBudget, MemoryBudget, Reservation};
use kanava_debugme::frame::{Frame, MAX_FRAME_BYTES, decode_frame, encode_frame};
use kanava_debugme::json::{decode_line, encode_line};
use kanava_debugme::model::{AnyMessage, LogLine, Message};
use kanava_hub::{InboundMessage, SessionBus, SessionEvent, SessionMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Messages a client's queue holds before the client is dropped as too slow.
pub(crate) const CLIENT_QUEUE: usize = 1024;

/// Bytes a client's queue holds before the client is dropped as too slow.
pub(crate) const CLIENT_QUEUE_BYTES: usize = 8 << 20;

/// The longest log line read back: a message of the largest frame, JSON-escaped.
pub const MAX_LOG_LINE: usize = 8 << 20;

/// Frames read ahead of a joiner or downloader who has not sent them yet.
const READ_AHEAD: usize = 1;

/// Who sent a message into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The session's user.
    User,
    /// A developer (or watcher, or downloader) on this node, by connection id.
    Developer(u64),
    /// A developer on another node of the cluster.
    Remote(kanava_hub::Origin),
}

/// An `L` frame in a client's queue, charged to the memory budget (once for all the queues
/// that hold it) and to its queue's byte count until it is sent.
pub(crate) struct Relayed {
    frame: Bytes,
    _charge: Option<Arc<Reservation>>,
    queued: Option<Arc<AtomicUsize>>,
}

impl Relayed {
    /// The encoded frame.
    pub(crate) fn frame(&self) -> Bytes {
        Bytes::clone(&self.frame)
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some(queued) = &self.queued {
            queued.fetch_sub(self.frame.len(), Ordering::AcqRel);
        }
    }
}

/// What a client's connection is told to send.
pub(crate) enum Out {
    /// An `L` frame, already encoded.
    Frame(Relayed),
    /// The session ended: send `D`.
    Done,
    /// The session was ended by the server, for this reason: send it in an `E` frame.
    Ended(String),
}

/// The sending side of one client's queue, bounded in messages and in bytes.
#[derive(Clone)]
pub(crate) struct Follower {
    queue: mpsc::Sender<Out>,
    queued: Arc<AtomicUsize>,
    kicked: CancellationToken,
}

/// The receiving side of one client's queue, read by its connection.
pub(crate) struct Outbox {
    /// What to send.
    pub(crate) queue: mpsc::Receiver<Out>,
    /// Cancelled when the client is closed at once, because the server's memory budget is
    /// exhausted and its queue is the longest.
    pub(crate) kicked: CancellationToken,
}

/// What a client closed to free memory is told.
pub(crate) const KICKED: &str =
    "Server busy: its memory budget is exhausted and you were the furthest behind";

impl Follower {
    /// A queue: its sending side, and what the client's connection reads.
    pub(crate) fn new() -> (Self, Outbox) {
        let (queue, outbox) = mpsc::channel(CLIENT_QUEUE);
        let kicked = CancellationToken::new();
        let follower = Self {
            queue,
            queued: Arc::new(AtomicUsize::new(0)),
            kicked: kicked.clone(),
        };
        let outbox = Outbox {
            queue: outbox,
            kicked,
        };
        (follower, outbox)
    }

    /// Queues `frame` without waiting; false when the client is too far behind.
    fn offer(&self, frame: &Bytes, charge: &Option<Arc<Reservation>>) -> bool {
        let len = frame.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > CLIENT_QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        let relayed = Relayed {
            frame: Bytes::clone(frame),
            _charge: charge.clone(),
            queued: Some(Arc::clone(&self.queued)),
        };
        self.queue.try_send(Out::Frame(relayed)).is_ok()
    }

    /// Tells the client that the session is over, if its queue has room.
    fn tell(&self, out: Out) {
        let _ = self.queue.try_send(out);
    }
}

pub(crate) enum Command {
    Append {
        message: AnyMessage,
        origin: Origin,
        done: oneshot::Sender<Result<(), String>>,
    },
    Join {
        id: u64,
        follower: Follower,
        reply: oneshot::Sender<u64>,
    },
    Leave(u64),
    End,
}

/// A handle on a live session, on this node or (in a cluster) on another.
#[derive(Clone)]
pub(crate) enum SessionHandle {
    /// The session's task on this node.
    Local(mpsc::Sender<Command>),
    /// A session held by another node, reached through the bus.
    Remote {
        /// The session id.
        id: String,
        /// The bus.
        bus: Arc<dyn SessionBus>,
        /// The session's record from its start, opened when it was looked up; the join takes
        /// it.
        events: Arc<Mutex<Option<mpsc::Receiver<SessionEvent>>>>,
    },
}

/// What a client is told when its session has gone.
const SESSION_ENDED: &str = "The session has ended";

impl SessionHandle {
    /// Logs `message` durably, then relays it; resolves once it is in the log, or with what to
    /// tell the client when it was refused.
    pub(crate) async fn append(&self, message: AnyMessage, origin: Origin) -> Result<(), String> {
        match self {
            Self::Local(commands) => {
                let (done, written) = oneshot::channel();
                let command = Command::Append {
                    message,
                    origin,
                    done,
                };
                if commands.send(command).await.is_err() {
                    return Err(SESSION_ENDED.to_owned());
                }
                written
                    .await
                    .unwrap_or_else(|_| Err(SESSION_ENDED.to_owned()))
            }
            Self::Remote { id, bus, .. } => {
                let Origin::Developer(client) = origin else {
                    return Err("Only developers join remote sessions".to_owned());
                };
                let message = SessionMessage {
                    frame: frame_of(message),
                    origin: kanava_hub::Origin {
                        node: bus.node().into(),
                        member: client,
                    },
                };
                bus.send(id, message).await.map_err(|error| {
                    tracing::error!(%error, "cannot send a debug-me message to its session's node");
                    "The server cannot store the session".to_owned()
                })
            }
        }
    }

    /// Joins as developer `id`: live messages go to `follower`; returns how many bytes of the
    /// log (on this node) come before them, to be replayed from the file first.
    pub(crate) async fn join(&self, id: u64, follower: Follower) -> Option<u64> {
        match self {
            Self::Local(commands) => {
                let (reply, place) = oneshot::channel();
                commands
                    .send(Command::Join {
                        id,
                        follower,
                        reply,
                    })
                    .await
                    .ok()?;
                place.await.ok()
            }
            Self::Remote {
                id: session,
                bus,
                events,
            } => {
                let taken = events.lock().unwrap_or_else(|p| p.into_inner()).take();
                let events = match taken {
                    Some(events) => events,
                    None => bus.follow(session).await.ok()??,
                };
                let me = kanava_hub::Origin {
                    node: bus.node().into(),
                    member: id,
                };
                tokio::spawn(forward_remote(events, me, follower.queue));
                Some(0)
            }
        }
    }

    /// Stops relaying to developer `id`.
    pub(crate) async fn leave(&self, id: u64) {
        if let Self::Local(commands) = self {
            let _ = commands.send(Command::Leave(id)).await;
        }
    }

    /// Ends the session (the user left): developers get `D`.
    pub(crate) async fn end(&self) {
        if let Self::Local(commands) = self {
            let _ = commands.send(Command::End).await;
        }
    }
}

/// Passes a remote session's messages to one developer here, except its own, then `D`. Waits
/// on a full queue: the developer's connection drains it, and only it falls behind.
async fn forward_remote(
    mut events: mpsc::Receiver<SessionEvent>,
    me: kanava_hub::Origin,
    queue: mpsc::Sender<Out>,
) {
    while let Some(event) = events.recv().await {
        let out = match event {
            SessionEvent::Message(message) if message.origin == me => continue,
            SessionEvent::Message(message) => Out::Frame(Relayed {
                frame: message.frame,
                _charge: None,
                queued: None,
            }),
            SessionEvent::Ended => Out::Done,
        };
        let done = matches!(out, Out::Done);
        if queue.send(out).await.is_err() || done {
            return;
        }
    }
}

/// What a session id names.
pub(crate) enum Lookup {
    /// A session in progress (here or on another node), or one finished on another node,
    /// which a join replays up to its end.
    Live(SessionHandle),
    /// A finished session whose log is still kept here, at this path.
    Finished(PathBuf),
    /// Nothing.
    Unknown,
}

/// The log file of session `id` in `dir`, named as debug-me names it.
pub fn session_log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("debug-me.{id}.log"))
}

/// Whether `id` has the shape of a session id (a UUID), before it names a file or a subject.
fn valid_session_id(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// How long the complete part of a log is: up to and including its last newline. What follows
/// it is a torn line (a crash or a full disk in the middle of a write).
pub fn complete_length(log: &[u8]) -> usize {
    log.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1)
}

/// How long the complete part of the log in `file` is (see [`complete_length`]), reading only
/// its tail: what a copy of a log being written may take.
pub fn complete_length_of(file: &mut std::fs::File) -> std::io::Result<u64> {
    const STEP: u64 = 64 * 1024;
    let mut end = file.metadata()?.len();
    let mut chunk = Vec::new();
    loop {
        if end == 0 {
            return Ok(0);
        }
        let start = end.saturating_sub(STEP);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        let complete = complete_length(&chunk);
        if complete > 0 {
            return Ok(start + complete as u64);
        }
        end = start;
    }
}

/// Cuts a torn last line off the log at `path`, so that it ends with its last complete line;
/// returns how many bytes were cut. Reads only the log's tail, and opens it for writing only
/// when there is something to cut.
pub fn truncate_torn_tail(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let keep = complete_length_of(&mut file)?;
    if keep < len {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(len - keep)
}

/// One frame of a log read back, charged to the memory budget until it is sent; or why the log
/// cannot be read on.
pub(crate) type Backlog = Result<(Bytes, Reservation), String>;

/// Reads the log at `path` (its first `upto` bytes, or all of it) as frames, on a blocking
/// thread, a few frames ahead of the receiver; stops when the receiver is dropped.
pub(crate) fn read_backlog(
    path: PathBuf,
    upto: Option<u64>,
    memory: Arc<MemoryBudget>,
) -> mpsc::Receiver<Backlog> {
    let (frames, backlog) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let read = std::fs::File::open(&path)
            .map_err(|error| format!("Cannot read the log: {error}"))
            .and_then(|file| {
                let log = file.take(upto.unwrap_or(u64::MAX));
                read_log_frames(log, &memory, |frame, charge| {
                    frames.blocking_send(Ok((frame, charge))).is_ok()
                })
            });
        if let Err(reason) = read {
            tracing::warn!(log = %path.display(), %reason, "cannot replay a debug-me log");
            let _ = frames.blocking_send(Err(reason));
        }
    });
    backlog
}

/// Reads a log's lines one by one (each at most [`MAX_LOG_LINE`]) as frames, each charged to
/// `memory`, and hands each to `sent` until it says the receiver is gone. A last line without
/// its newline is one being written: the end of what there is. Says why when a line cannot be
/// read.
pub fn read_log_frames(
    log: impl Read,
    memory: &Arc<MemoryBudget>,
    mut sent: impl FnMut(Bytes, Reservation) -> bool,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(64 * 1024, log);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LOG_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("Cannot read the log: {error}"))?;
        match line.pop() {
            None => return Ok(()),
            Some(b'\n') => {}
            // A line being written as the log is read: the end of what there is.
            Some(_) if read <= MAX_LOG_LINE => return Ok(()),
            Some(_) => return Err("The session's log is damaged: a line is too long".to_owned()),
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| "The session's log is damaged: not UTF-8".to_owned())?;
        if text.trim().is_empty() {
            continue;
        }
        let logged =
            decode_line(text).map_err(|error| format!("The session's log is damaged: {error}"))?;
        let frame = frame_of(logged.message);
        let charge = memory
            .reserve(frame.len())
            .map_err(|error| format!("Server busy: {error}"))?;
        if !sent(frame, charge) {
            return Ok(());
        }
        if line.capacity() > 1 << 20 {
            line = Vec::new();
        }
    }
}

/// The live sessions, where logs go, and what they may take.
pub(crate) struct Registry {
    dir: PathBuf,
    live: Mutex<HashMap<String, SessionHandle>>,
    next_client: AtomicU64,
    /// In a cluster, how sessions reach the other nodes.
    cluster: Option<Arc<dyn SessionBus>>,
    limits: LogLimits,
    /// Bytes of the logs written since start-up, by session, and whose source they were charged
    /// to; what a purge gives back.
    charged: Mutex<HashMap<String, (IpAddr, u64)>>,
}

/// What the logs and the queues of sessions may take.
#[derive(Clone)]
pub(crate) struct LogLimits {
    /// The largest log of one session.
    pub(crate) max_log: u64,
    /// The disk budget shared with channel history.
    pub(crate) disk: Arc<DiskBudget>,
    /// The memory budget for what is queued and read back.
    pub(crate) memory: Arc<MemoryBudget>,
}

/// A fresh random (version 4) UUID.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The server flavour of a log line: pointers as on the wire (none), and for an activity the
/// hash of that stripped form.
fn server_line(message: AnyMessage) -> LogLine {
    let hash = match &message {
        AnyMessage::User(Message::Activity(a)) => Some(kanava_debugme::hash::activity(a)),
        AnyMessage::Developer(Message::Activity(a)) => Some(kanava_debugme::hash::activity(a)),
        _ => None,
    };
    LogLine {
        message,
        hash,
        timestamp: now_secs(),
    }
}

fn frame_of(message: AnyMessage) -> Bytes {
    Bytes::from(encode_frame(&Frame::Message(message)))
}

impl Registry {
    /// A registry writing logs into `dir` (created if missing) within `limits`.
    pub(crate) fn new(
        dir: PathBuf,
        cluster: Option<Arc<dyn SessionBus>>,
        limits: LogLimits,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Self {
            dir,
            live: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            cluster,
            limits,
            charged: Mutex::new(HashMap::new()),
        }))
    }

    /// An id for a new client connection.
    pub(crate) fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// The memory budget what is read back is charged to.
    pub(crate) fn memory(&self) -> &Arc<MemoryBudget> {
        &self.limits.memory
    }

    /// Starts a session for a user from `source` whose connection sends what `user` receives;
    /// in a cluster, announces it to the other nodes. Its log is created with its first message.
    pub(crate) async fn create(
        self: &Arc<Self>,
        user: Follower,
        source: IpAddr,
    ) -> std::io::Result<(String, SessionHandle)> {
        let id = uuid_v4();
        let inbox = match &self.cluster {
            Some(bus) => Some(bus.open(&id).await.map_err(std::io::Error::other)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(64);
        let handle = SessionHandle::Local(tx);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), handle.clone());
        let task = SessionTask {
            path: session_log_path(&self.dir, &id),
            id: id.clone(),
            registry: Arc::clone(self),
            file: None,
            written: 0,
            messages: 0,
            source,
            user,
            developers: HashMap::new(),
            cluster: self.cluster.clone(),
            ended: None,
        };
        tokio::spawn(task.run(rx, inbox));
        Ok((id, handle))
    }

    /// What `id` names: a session of this node, or (in a cluster) one another node recorded.
    pub(crate) async fn find(&self, id: &str) -> Lookup {
        match self.find_here(id).await {
            Lookup::Unknown => {}
            found => return found,
        }
        let Some(bus) = self.cluster.as_ref().filter(|_| valid_session_id(id)) else {
            return Lookup::Unknown;
        };
        match bus.follow(id).await {
            Ok(Some(events)) => Lookup::Live(SessionHandle::Remote {
                id: id.to_owned(),
                bus: Arc::clone(bus),
                events: Arc::new(Mutex::new(Some(events))),
            }),
            Ok(_) => Lookup::Unknown,
            Err(error) => {
                tracing::warn!(session = id, %error, "cannot look the session up in the cluster");
                Lookup::Unknown
            }
        }
    }

    /// What `id` names on this node. A finished session's log that ends in a torn line is cut
    /// back to its last complete line first.
    async fn find_here(&self, id: &str) -> Lookup {
        if let Some(handle) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
        {
            return Lookup::Live(handle);
        }
        if !valid_session_id(id) {
            return Lookup::Unknown;
        }
        let path = session_log_path(&self.dir, id);
        let repair = tokio::task::spawn_blocking({
            let path = path.clone();
            move || truncate_torn_tail(&path)
        });
        match repair.await {
            Ok(Ok(0)) => Lookup::Finished(path),
            Ok(Ok(cut)) => {
                tracing::warn!(
                    session = id,
                    cut,
                    "a debug-me log ended in a torn line: cut back to its last complete line"
                );
                self.limits.disk.release(None, cut);
                Lookup::Finished(path)
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => Lookup::Unknown,
            Ok(Err(error)) => {
                tracing::warn!(session = id, %error, "cannot open a debug-me log");
                Lookup::Unknown
            }
            Err(error) => {
                tracing::error!(session = id, %error, "checking a debug-me log failed");
                Lookup::Unknown
            }
        }
    }

    /// Deletes the logs of finished sessions last written more than `retention` ago, giving
    /// their bytes back to the disk budget; returns how many.
    pub(crate) fn purge(&self, retention: std::time::Duration) -> usize {
        let Some(cutoff) = SystemTime::now().checked_sub(retention) else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("debug-me.")
                .and_then(|n| n.strip_suffix(".log"))
            else {
                continue;
            };
            let live = self
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(id);
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let old = metadata.modified().is_ok_and(|modified| modified < cutoff);
            if !live && old && std::fs::remove_file(entry.path()).is_ok() {
                let charged = self
                    .charged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                match charged {
                    Some((source, bytes)) => self.limits.disk.release(Some(source), bytes),
                    None => self.limits.disk.release(None, metadata.len()),
                }
                deleted += 1;
            }
        }
        deleted
    }

    fn finished(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn charged(&self, id: &str, source: IpAddr, bytes: u64) {
        let mut charged = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        charged.entry(id.to_owned()).or_insert((source, 0)).1 += bytes;
    }
}

struct SessionTask {
    id: String,
    registry: Arc<Registry>,
    path: PathBuf,
    /// The log, once something was said.
    file: Option<std::fs::File>,
    /// Bytes in the log, all complete lines.
    written: u64,
    messages: u64,
    /// The user's source, which the log is charged to.
    source: IpAddr,
    user: Follower,
    developers: HashMap<u64, Follower>,
    cluster: Option<Arc<dyn SessionBus>>,
    /// Why the server ended the session, once it has.
    ended: Option<String>,
}

/// The next message sent in from another node; never, without a cluster.
async fn next_inbound(
    inbox: &mut Option<mpsc::Receiver<InboundMessage>>,
) -> Option<InboundMessage> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbox: Option<mpsc::Receiver<InboundMessage>>,
    ) {
        tracing::info!(session = %self.id, "debug-me session started");
        while self.ended.is_none() {
            let command = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                inbound = next_inbound(&mut inbox) => {
                    match inbound {
                        Some(inbound) => self.inbound(inbound),
                        None => inbox = None,
                    }
                    continue;
                }
            };
            match command {
                Command::Append {
                    message,
                    origin,
                    done,
                } => {
                    let written = self.append(message, origin);
                    let _ = done.send(written);
                }
                Command::Join {
                    id,
                    follower,
                    reply,
                } => {
                    if reply.send(self.written).is_ok() {
                        self.developers.insert(id, follower);
                    }
                }
                Command::Leave(id) => {
                    self.developers.remove(&id);
                }
                Command::End => break,
            }
        }
        self.registry.finished(&self.id);
        for developer in self.developers.values() {
            developer.tell(Out::Done);
        }
        if let Some(bus) = &self.cluster
            && let Err(error) = bus.end(&self.id).await
        {
            tracing::error!(session = %self.id, %error, "cannot tell the cluster the session ended");
        }
        tracing::info!(session = %self.id, messages = self.messages, bytes = self.written, reason = self.ended.as_deref().unwrap_or("the user left"), "debug-me session ended");
    }

    /// A developer's message from another node: logged and relayed like a local one.
    fn inbound(&mut self, inbound: InboundMessage) {
        let outcome = match decode_frame(&inbound.message.frame) {
            Ok(Frame::Message(message)) => {
                self.append(message, Origin::Remote(inbound.message.origin))
            }
            Ok(_) => Err("not a message".to_owned()),
            Err(error) => Err(error.to_string()),
        };
        let _ = inbound.logged.send(outcome);
    }

    /// Ends the session for `reason` (counted under `label`): everyone in it is told why.
    /// Returns the reason.
    fn end_with(&mut self, label: &'static str, reason: String) -> String {
        metrics::counter!("kanava_debugme_sessions_ended_total", "reason" => label).increment(1);
        tracing::info!(session = %self.id, %reason, "debug-me session ended by the server");
        self.user.tell(Out::Ended(reason.clone()));
        for developer in self.developers.values() {
            developer.tell(Out::Ended(reason.clone()));
        }
        self.ended = Some(reason.clone());
        reason
    }

    /// Writes the message to the log (durably) and relays it; or says why not. A log that
    /// would pass its size limit or the disk budget, or that cannot be written, ends the
    /// session.
    fn append(&mut self, message: AnyMessage, origin: Origin) -> Result<(), String> {
        let from_user = matches!(message, AnyMessage::User(_));
        // A developer cannot speak for the user.
        if from_user && origin != Origin::User {
            return Ok(());
        }
        let line = encode_line(&server_line(message.clone())) + "\n";
        let len = line.len() as u64;
        let max_log = self.registry.limits.max_log;
        if self.written + len > max_log {
            return Err(self.end_with("max-log", format!(
                "The session's log reached the server's limit of {max_log} bytes: the session has ended"
            )));
        }
        let frame = frame_of(message);
        let charge = match self.registry.limits.memory.reserve(frame.len()) {
            Ok(charge) => Some(Arc::new(charge)),
            Err(_) => {
                self.kick_furthest_behind();
                None
            }
        };
        if let Err(refusal) = self.registry.limits.disk.charge(Some(self.source), len) {
            return Err(self.end_with("disk", format!("{refusal}: the session has ended")));
        }
        if let Err(error) = tokio::task::block_in_place(|| self.write(line.as_bytes())) {
            self.registry.limits.disk.release(Some(self.source), len);
            tracing::error!(session = %self.id, %error, "cannot write the debug-me log");
            return Err(self.end_with(
                "write",
                format!("The server cannot store the session ({error}): the session has ended"),
            ));
        }
        self.written += len;
        self.messages += 1;
        self.registry.charged(&self.id, self.source, len);
        if origin != Origin::User && !self.user.offer(&frame, &charge) {
            tracing::debug!(session = %self.id, "the user does not keep up");
        }
        self.developers.retain(|id, follower| {
            let kept = Origin::Developer(*id) == origin || follower.offer(&frame, &charge);
            if !kept {
                metrics::counter!("kanava_debugme_clients_closed_total", "reason" => "slow")
                    .increment(1);
            }
            kept
        });
        if let Some(bus) = &self.cluster {
            self.record(bus, frame, origin);
        }
        // Keep room for a frame being received, so that queues of clients who do not read
        // cannot leave the ones who send without memory.
        let memory = &self.registry.limits.memory;
        if memory.used().saturating_add(MAX_FRAME_BYTES) > memory.max() {
            self.kick_furthest_behind();
        }
        Ok(())
    }

    /// With the memory budget (nearly) exhausted: closes the developer whose queue holds the
    /// most, so that its queue is freed, rather than refusing the session's messages or the
    /// frames its clients are sending.
    fn kick_furthest_behind(&mut self) {
        let furthest = self
            .developers
            .iter()
            .map(|(id, follower)| (follower.queued.load(Ordering::Acquire), *id))
            .filter(|(queued, _)| *queued > 0)
            .max();
        if let Some((queued, id)) = furthest
            && let Some(follower) = self.developers.remove(&id)
        {
            let memory = &self.registry.limits.memory;
            tracing::info!(session = %self.id, queued, used = memory.used(), max = memory.max(), "closing the debug-me client furthest behind: the memory budget is exhausted");
            metrics::counter!("kanava_debugme_clients_closed_total", "reason" => "memory")
                .increment(1);
            follower.kicked.cancel();
        }
    }

    /// Appends `line` to the log (created with the first line) and syncs it; on failure, cuts
    /// the log back to its last complete line at once.
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&self.path)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("no log file"));
        };
        let written = file.write_all(line).and_then(|()| file.sync_data());
        if written.is_err()
            && let Err(error) = file.set_len(self.written)
        {
            tracing::error!(session = %self.id, %error, "cannot cut the debug-me log back after a failed write");
        }
        written
    }

    /// Records a logged message for the other nodes (in log order, since the bus keeps call
    /// order); a failure is logged, since the log here is complete either way.
    fn record(&self, bus: &Arc<dyn SessionBus>, frame: Bytes, origin: Origin) {
        let member = |member| kanava_hub::Origin {
            node: bus.node().into(),
            member,
        };
        let origin = match origin {
            Origin::User => member(0),
            Origin::Developer(id) => member(id),
            Origin::Remote(origin) => origin,
        };
        let recorded = bus.record(&self.id, SessionMessage { frame, origin });
        let id = self.id.clone();
        tokio::spawn(async move {
            if let Err(error) = recorded.await {
                tracing::error!(session = %id, %error, "cannot record a debug-me message in the cluster");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_complete_part_of_a_log_ends_at_its_last_newline() {
        assert_eq!(complete_length(b""), 0);
        assert_eq!(complete_length(b"{\"a\":1"), 0);
        assert_eq!(complete_length(b"{}\n{}\n"), 6);
        assert_eq!(complete_length(b"{}\n{\"torn"), 3);
    }

    #[test]
    fn a_torn_tail_is_cut_back_and_a_complete_log_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let complete = "{\"x\":1}\n".repeat(20_000);
        std::fs::write(&path, format!("{complete}{{\"torn\":")).unwrap();
        assert_eq!(truncate_torn_tail(&path).unwrap(), 8);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), complete);
        assert_eq!(truncate_torn_tail(&path).unwrap(), 0);
        // A torn line longer than one read step, with nothing complete before it.
        std::fs::write(&path, "x".repeat(200_000)).unwrap();
        assert_eq!(truncate_torn_tail(&path).unwrap(), 200_000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn log_frames_are_charged_and_reading_stops_at_a_damaged_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let message = AnyMessage::User(Message::Activity(kanava_debugme::model::Activity {
            activity: kanava_debugme::model::Seen {
                seen_data: b"hello".to_vec(),
            },
            prev_activity: None,
            prev_entered: None,
            elapsed_time: 0.0,
            signature: kanava_debugme::model::Signature::Other(Vec::new()),
        }));
        let line = encode_line(&server_line(message.clone())) + "\n";
        std::fs::write(&path, format!("{line}{line}not json\n")).unwrap();
        let memory = MemoryBudget::new(1 << 20);
        let log = std::fs::read(&path).unwrap();
        let mut frames = Vec::new();
        let outcome = read_log_frames(&log[..], &memory, |frame, charge| {
            frames.push((frame, charge));
            true
        });
        assert!(outcome.unwrap_err().contains("damaged"));
        assert_eq!(frames.len(), 2);
        assert!(memory.used() > 0);
        assert_eq!(frames[0].0, frame_of(message));
        drop(frames);
        assert_eq!(memory.used(), 0);
        // A torn last line is the end of what there is.
        let mut count = 0;
        read_log_frames(&log[..line.len() + 10], &memory, |_, _| {
            count += 1;
            true
        })
        .unwrap();
        assert_eq!(count, 1);
        // Past the memory budget, the reader is told why.
        let small = MemoryBudget::new(4);
        let refused = read_log_frames(&log[..], &small, |_, _| true).unwrap_err();
        assert!(refused.contains("Server busy"), "{refused}");
    }

    #[test]
    fn a_purge_gives_the_logs_bytes_back_to_the_disk_budget() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(DiskBudget::new(1000, 100, 0));
        let limits = LogLimits {
            max_log: 1000,
            disk: Arc::clone(&disk),
            memory: MemoryBudget::new(1000),
        };
        let registry = Registry::new(dir.path().to_owned(), None, limits).unwrap();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let id = uuid_v4();
        disk.charge(Some(source), 60).unwrap();
        std::fs::write(session_log_path(dir.path(), &id), [b'x'; 60]).unwrap();
        registry.charged(&id, source, 60);
        // A log from before the start, counted under no source.
        disk.charge(None, 7).unwrap();
        std::fs::write(session_log_path(dir.path(), &uuid_v4()), [b'y'; 7]).unwrap();
        assert!(disk.charge(Some(source), 41).is_err());
        assert_eq!(registry.purge(std::time::Duration::ZERO), 2);
        assert_eq!(disk.used(), 0);
        disk.charge(Some(source), 100).unwrap();
    }
}
