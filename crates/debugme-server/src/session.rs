//! Sessions: one task per live session owns its log file and its developers' queues, so that
//! the log order is the relay order and a joiner's snapshot is taken between two messages.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kanava_debugme::frame::{Frame, encode_frame};
use kanava_debugme::json::{decode_line, encode_line};
use kanava_debugme::model::{AnyMessage, LogLine, Message};
use tokio::sync::{mpsc, oneshot};

/// Messages a client's queue holds before the client is dropped as too slow.
pub(crate) const CLIENT_QUEUE: usize = 1024;

/// Who sent a message into a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The session's user.
    User,
    /// A developer (or watcher, or downloader), by connection id.
    Developer(u64),
}

/// What a client's connection is told to send.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// An `L` frame, already encoded.
    Frame(Bytes),
    /// The session ended: send `D`.
    Done,
}

enum Command {
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

/// A handle on a live session.
#[derive(Clone)]
pub(crate) struct SessionHandle(mpsc::Sender<Command>);

impl SessionHandle {
    /// Logs `message` durably, then relays it; resolves once it is in the log.
    pub(crate) async fn append(&self, message: AnyMessage, origin: Origin) -> std::io::Result<()> {
        let (done, written) = oneshot::channel();
        let command = Command::Append {
            message,
            origin,
            done,
        };
        if self.0.send(command).await.is_err() {
            return Err(std::io::Error::other("the session has ended"));
        }
        written
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the session has ended")))
    }

    /// Joins as developer `id`: the log so far, then live messages through `queue`.
    pub(crate) async fn join(&self, id: u64, queue: mpsc::Sender<Out>) -> Option<Vec<Bytes>> {
        let (reply, snapshot) = oneshot::channel();
        self.0.send(Command::Join { id, queue, reply }).await.ok()?;
        snapshot.await.ok()
    }

    /// Stops relaying to developer `id`.
    pub(crate) async fn leave(&self, id: u64) {
        let _ = self.0.send(Command::Leave(id)).await;
    }

    /// Ends the session (the user left): developers get `D`.
    pub(crate) async fn end(&self) {
        let _ = self.0.send(Command::End).await;
    }
}

/// What a session id names.
pub(crate) enum Lookup {
    /// A session in progress.
    Live(SessionHandle),
    /// A finished session whose log is still kept: its frames.
    Finished(Vec<Bytes>),
    /// Nothing (or a log that cannot be read).
    Unknown,
}

/// The log file of session `id` in `dir`, named as debug-me names it.
pub fn session_log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("debug-me.{id}.log"))
}

/// The live sessions, and where logs go.
pub(crate) struct Registry {
    dir: PathBuf,
    live: Mutex<HashMap<String, SessionHandle>>,
    next_client: AtomicU64,
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
    pub(crate) fn new(dir: PathBuf) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Self {
            dir,
            live: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
        }))
    }

    /// An id for a new client connection.
    pub(crate) fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts a session for a user whose connection sends what `user` receives.
    pub(crate) fn create(
        self: &Arc<Self>,
        user: mpsc::Sender<Out>,
    ) -> std::io::Result<(String, SessionHandle)> {
        let id = uuid_v4();
        let path = session_log_path(&self.dir, &id);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        let (tx, rx) = mpsc::channel(64);
        let handle = SessionHandle(tx);
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
        };
        tokio::spawn(task.run(rx));
        Ok((id, handle))
    }

    /// What `id` names.
    pub(crate) fn find(&self, id: &str) -> Lookup {
        if let Some(handle) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
        {
            return Lookup::Live(handle);
        }
        let valid = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !valid {
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
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        tracing::info!(session = %self.id, "debug-me session started");
        while let Some(command) = commands.recv().await {
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
        tracing::info!(session = %self.id, messages = self.entries.len(), "debug-me session ended");
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
        if let Origin::Developer(_) = origin
            && self.user.try_send(Out::Frame(frame.clone())).is_err()
        {
            tracing::debug!(session = %self.id, "the user does not keep up");
        }
        self.developers.retain(|id, queue| {
            Origin::Developer(*id) == origin || queue.try_send(Out::Frame(frame.clone())).is_ok()
        });
        Ok(())
    }
}
