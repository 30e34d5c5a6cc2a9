//! Sessions: one task per live session owns its log file and its developers' queues, so that
//! the log order is the relay order and a joiner's snapshot is taken between two messages.
//!
//! In a cluster the session stays on its user's node, which records each logged message on the
//! [`SessionBus`]: developers on other nodes follow that record and send their messages in
//! through it, so the session still has one log, written once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kanava_debugme::frame::{Frame, decode_frame, encode_frame};
use kanava_debugme::json::{decode_line, encode_line};
use kanava_debugme::model::{AnyMessage, LogLine, Message};
use kanava_hub::{InboundMessage, SessionBus, SessionEvent, SessionMessage};
use tokio::sync::{mpsc, oneshot};

/// Messages a client's queue holds before the client is dropped as too slow.
pub(crate) const CLIENT_QUEUE: usize = 1024;

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

/// What a client's connection is told to send.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// An `L` frame, already encoded.
    Frame(Bytes),
    /// The session ended: send `D`.
    Done,
}

pub(crate) enum Command {
    Append {
        message: AnyMessage,
        origin: Origin,
        done: oneshot::Sender<std::io::Result<()>>,
    },
    Join {
        id: u64,
        queue: mpsc::Sender<Out>,
        reply: oneshot::Sender<Vec<Bytes>>,
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

impl SessionHandle {
    /// Logs `message` durably, then relays it; resolves once it is in the log.
    pub(crate) async fn append(&self, message: AnyMessage, origin: Origin) -> std::io::Result<()> {
        match self {
            Self::Local(commands) => {
                let (done, written) = oneshot::channel();
                let command = Command::Append {
                    message,
                    origin,
                    done,
                };
                if commands.send(command).await.is_err() {
                    return Err(std::io::Error::other("the session has ended"));
                }
                written
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("the session has ended")))
            }
            Self::Remote { id, bus, .. } => {
                let Origin::Developer(client) = origin else {
                    return Err(std::io::Error::other(
                        "only developers join remote sessions",
                    ));
                };
                let message = SessionMessage {
                    frame: frame_of(message),
                    origin: kanava_hub::Origin {
                        node: bus.node().into(),
                        member: client,
                    },
                };
                bus.send(id, message).await.map_err(std::io::Error::other)
            }
        }
    }

    /// Joins as developer `id`: the log so far, then live messages through `queue`.
    pub(crate) async fn join(&self, id: u64, queue: mpsc::Sender<Out>) -> Option<Vec<Bytes>> {
        match self {
            Self::Local(commands) => {
                let (reply, snapshot) = oneshot::channel();
                commands
                    .send(Command::Join { id, queue, reply })
                    .await
                    .ok()?;
                snapshot.await.ok()
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
                tokio::spawn(forward_remote(events, me, queue));
                Some(Vec::new())
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
            SessionEvent::Message(message) => Out::Frame(message.frame),
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
    /// A finished session whose log is still kept here: its frames.
    Finished(Vec<Bytes>),
    /// Nothing (or a log that cannot be read).
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

/// The live sessions, and where logs go.
pub(crate) struct Registry {
    dir: PathBuf,
    live: Mutex<HashMap<String, SessionHandle>>,
    next_client: AtomicU64,
    /// In a cluster, how sessions reach the other nodes.
    cluster: Option<Arc<dyn SessionBus>>,
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
    /// A registry writing logs into `dir` (created if missing).
    pub(crate) fn new(
        dir: PathBuf,
        cluster: Option<Arc<dyn SessionBus>>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Self {
            dir,
            live: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            cluster,
        }))
    }

    /// An id for a new client connection.
    pub(crate) fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts a session for a user whose connection sends what `user` receives; in a cluster,
    /// announces it to the other nodes.
    pub(crate) async fn create(
        self: &Arc<Self>,
        user: mpsc::Sender<Out>,
    ) -> std::io::Result<(String, SessionHandle)> {
        let id = uuid_v4();
        let path = session_log_path(&self.dir, &id);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
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
            id: id.clone(),
            registry: Arc::clone(self),
            file,
            entries: Vec::new(),
            user,
            developers: HashMap::new(),
            cluster: self.cluster.clone(),
        };
        tokio::spawn(task.run(rx, inbox));
        Ok((id, handle))
    }

    /// What `id` names: a session of this node, or (in a cluster) one another node recorded.
    pub(crate) async fn find(&self, id: &str) -> Lookup {
        match self.find_here(id) {
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

    /// What `id` names on this node.
    fn find_here(&self, id: &str) -> Lookup {
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
        let Ok(text) = std::fs::read_to_string(session_log_path(&self.dir, id)) else {
            return Lookup::Unknown;
        };
        let frames: Option<Vec<Bytes>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| decode_line(l).ok().map(|line| frame_of(line.message)))
            .collect();
        frames.map_or(Lookup::Unknown, Lookup::Finished)
    }

    /// Deletes the logs of finished sessions last written more than `retention` ago; returns
    /// how many.
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
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff);
            if !live && old && std::fs::remove_file(entry.path()).is_ok() {
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
}

struct SessionTask {
    id: String,
    registry: Arc<Registry>,
    file: std::fs::File,
    entries: Vec<Bytes>,
    user: mpsc::Sender<Out>,
    developers: HashMap<u64, mpsc::Sender<Out>>,
    cluster: Option<Arc<dyn SessionBus>>,
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
        loop {
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
                Command::Join { id, queue, reply } => {
                    if reply.send(self.entries.clone()).is_ok() {
                        self.developers.insert(id, queue);
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
            let _ = developer.try_send(Out::Done);
        }
        if let Some(bus) = &self.cluster
            && let Err(error) = bus.end(&self.id).await
        {
            tracing::error!(session = %self.id, %error, "cannot tell the cluster the session ended");
        }
        tracing::info!(session = %self.id, messages = self.entries.len(), "debug-me session ended");
    }

    /// A developer's message from another node: logged and relayed like a local one.
    fn inbound(&mut self, inbound: InboundMessage) {
        let outcome = match decode_frame(&inbound.message.frame) {
            Ok(Frame::Message(message)) => self
                .append(message, Origin::Remote(inbound.message.origin))
                .map_err(|error| error.to_string()),
            Ok(_) => Err("not a message".to_owned()),
            Err(error) => Err(error.to_string()),
        };
        let _ = inbound.logged.send(outcome);
    }

    /// Writes the message to the log (durably) and relays it.
    fn append(&mut self, message: AnyMessage, origin: Origin) -> std::io::Result<()> {
        let from_user = matches!(message, AnyMessage::User(_));
        // A developer cannot speak for the user.
        if from_user && origin != Origin::User {
            return Ok(());
        }
        let line = encode_line(&server_line(message.clone())) + "\n";
        tokio::task::block_in_place(|| {
            self.file.write_all(line.as_bytes())?;
            self.file.sync_data()
        })?;
        let frame = frame_of(message);
        self.entries.push(frame.clone());
        if origin != Origin::User && self.user.try_send(Out::Frame(frame.clone())).is_err() {
            tracing::debug!(session = %self.id, "the user does not keep up");
        }
        self.developers.retain(|id, queue| {
            Origin::Developer(*id) == origin || queue.try_send(Out::Frame(frame.clone())).is_ok()
        });
        if let Some(bus) = &self.cluster {
            self.record(bus, frame, origin);
        }
        Ok(())
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
