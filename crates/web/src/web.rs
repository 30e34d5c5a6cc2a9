//! The `/kanava` endpoint: its settings, what its connections share, and the directory of
//! logged-in web sessions through which the chat reaches them (private messages, topics,
//! notices from any transport).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kanava_core::{ChannelName, MemoryBudget, Nick, PrivateMessage};
use kanava_hub::{ChatSink, Hub, Logins, RoomNotice};
use kanava_mles::{Endpoint, RoutedConnection};
use tokio_util::sync::CancellationToken;

use crate::events;
use crate::outgoing::Outgoing;
use crate::session;

/// Where the endpoint is served on the Mles listener.
pub const PATH: &str = "/kanava";

/// Settings of the web endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Longest text of a message, private message or topic, in bytes; a client frame may be
    /// this plus 1 KiB of JSON (else it is closed with 1009).
    pub max_text: usize,
    /// Most events sent on joining a room, and per `history` request.
    pub history_page: usize,
    /// Most rooms open at once on one connection.
    pub max_rooms: usize,
    /// Time from the upgrade to a successful login.
    pub handshake_timeout: Duration,
    /// Interval of pings to a silent client; one silent for four intervals is closed.
    pub ping_interval: Duration,
    /// Requests other than messages one connection may make a second.
    pub requests_per_second: u32,
    /// Bytes queued for one connection before it is closed as not reading.
    pub max_queued_bytes: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            max_text: 4096,
            history_page: 200,
            max_rooms: 50,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(24),
            requests_per_second: 20,
            max_queued_bytes: 4 << 20,
        }
    }
}

/// Identifies one logged-in connection.
pub(crate) type SessionId = u64;

/// What every web connection shares.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) logins: Logins,
    pub(crate) config: WebConfig,
    pub(crate) memory: Arc<MemoryBudget>,
    pub(crate) directory: Directory,
    /// What each user may do, counted with their other connections on every transport.
    pub(crate) limits: Arc<kanava_hub::UserLimits>,
}

/// The browser chat's WebSocket endpoint, to route at [`PATH`]. Cheap to clone.
#[derive(Clone)]
pub struct Web {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Web {
    /// The endpoint over `hub`, logging users in through `logins` (the one the SSH chat uses),
    /// charging what it queues to `memory`. Registers its sessions with the hub's chat, so that
    /// private messages and room notices from any transport reach them.
    pub fn new(hub: Hub, logins: Logins, config: WebConfig, memory: Arc<MemoryBudget>) -> Self {
        let directory = Directory::default();
        hub.chat().add_sink(Arc::new(directory.clone()));
        Self {
            shared: Arc::new(Shared {
                limits: hub.user_limits(),
                hub,
                logins,
                config,
                memory,
                directory,
            }),
        }
    }
}

impl Endpoint for Web {
    fn serve(
        &self,
        connection: RoutedConnection,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(session::run(shared, connection, peer, shutdown))
    }
}

/// One logged-in connection as the directory knows it.
#[derive(Debug)]
struct Entry {
    id: SessionId,
    out: Outgoing,
    rooms: HashSet<ChannelName>,
}

/// The logged-in web sessions by name (lower-cased: names compare without case), with the
/// rooms each has open. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory {
    sessions: Arc<Mutex<HashMap<String, Vec<Entry>>>>,
    next: Arc<AtomicU64>,
}

fn key(nick: &Nick) -> String {
    nick.as_str().to_ascii_lowercase()
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session of `nick`; returns its id.
    pub(crate) fn add(&self, nick: &Nick, out: Outgoing) -> SessionId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(key(nick)).or_default().push(Entry {
            id,
            out,
            rooms: HashSet::new(),
        });
        id
    }

    /// Forgets a session.
    pub(crate) fn remove(&self, nick: &Nick, id: SessionId) {
        let mut sessions = self.lock();
        if let Some(entries) = sessions.get_mut(&key(nick)) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                sessions.remove(&key(nick));
            }
        }
    }

    /// Notes that a session opened `room`.
    pub(crate) fn opened(&self, nick: &Nick, id: SessionId, room: &ChannelName) {
        if let Some(entry) = self
            .lock()
            .get_mut(&key(nick))
            .and_then(|entries| entries.iter_mut().find(|e| e.id == id))
        {
            entry.rooms.insert(room.clone());
        }
    }

    /// Notes that a session left `room`.
    pub(crate) fn closed(&self, nick: &Nick, id: SessionId, room: &ChannelName) {
        if let Some(entry) = self
            .lock()
            .get_mut(&key(nick))
            .and_then(|entries| entries.iter_mut().find(|e| e.id == id))
        {
            entry.rooms.remove(room);
        }
    }

    /// The queues of `nick`'s sessions.
    fn of(&self, nick: &Nick) -> Vec<Outgoing> {
        self.lock()
            .get(&key(nick))
            .map(|entries| entries.iter().map(|e| e.out.clone()).collect())
            .unwrap_or_default()
    }
}

impl ChatSink for Directory {
    fn private(&self, message: &PrivateMessage) -> bool {
        let event = events::private(message);
        let mut shown = false;
        for out in self.of(&message.to) {
            shown |= out.send(&event);
        }
        if message.from != message.to {
            for out in self.of(&message.from) {
                out.send(&event);
            }
        }
        shown
    }

    fn online(&self, nick: &Nick) -> bool {
        self.lock().contains_key(&key(nick))
    }

    fn room_notice(&self, room: &ChannelName, notice: &RoomNotice) {
        let event = match notice {
            RoomNotice::Topic(topic) => events::topic_event(topic),
            RoomNotice::Info(text) => events::notice(room, text),
        };
        let queues: Vec<Outgoing> = self
            .lock()
            .values()
            .flatten()
            .filter(|e| e.rooms.contains(room))
            .map(|e| e.out.clone())
            .collect();
        for out in queues {
            out.send(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outgoing::{self, Ending, Out, Queue};

    fn session(directory: &Directory, name: &str) -> (SessionId, Queue) {
        let memory = MemoryBudget::new(1 << 20);
        let (out, queue) = outgoing::queue(1 << 16, memory, Arc::new(Ending::default()));
        (directory.add(&Nick::new(name).unwrap(), out), queue)
    }

    fn received(queue: &mut Queue) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| queue.try_next())
            .filter_map(|out| match out {
                Out::Text(text, _) => Some(serde_json::from_str(&text).unwrap()),
                Out::Ping => None,
            })
            .collect()
    }

    #[test]
    fn private_messages_reach_both_sides_and_notices_the_open_rooms() {
        let directory = Directory::default();
        let (alice_id, mut alice) = session(&directory, "alice");
        let (_, mut alice_too) = session(&directory, "Alice");
        let (_, mut bob) = session(&directory, "bob");
        let message = PrivateMessage {
            id: 9,
            from: Nick::new("bob").unwrap(),
            to: Nick::new("ALICE").unwrap(),
            text: "hi".into(),
            time_ms: 1,
        };
        assert!(directory.private(&message));
        assert_eq!(received(&mut alice).len(), 1);
        assert_eq!(received(&mut alice_too).len(), 1);
        assert_eq!(received(&mut bob)[0]["text"], "hi");
        let to_carol = PrivateMessage {
            to: Nick::new("carol").unwrap(),
            ..message
        };
        assert!(!directory.private(&to_carol), "carol has no session");
        assert_eq!(received(&mut bob).len(), 1, "the sender's copy");
        assert!(directory.online(&Nick::new("ALICE").unwrap()));
        assert!(!directory.online(&Nick::new("carol").unwrap()));

        let dev = ChannelName::new("dev").unwrap();
        directory.opened(&Nick::new("alice").unwrap(), alice_id, &dev);
        directory.room_notice(&dev, &RoomNotice::Info("* bob is now rob".into()));
        assert_eq!(
            received(&mut alice),
            [serde_json::json!({"type": "notice", "room": "dev", "text": "* bob is now rob"})]
        );
        assert!(received(&mut alice_too).is_empty() && received(&mut bob).is_empty());
        directory.closed(&Nick::new("alice").unwrap(), alice_id, &dev);
        directory.room_notice(&dev, &RoomNotice::Info("x".into()));
        assert!(received(&mut alice).is_empty());

        directory.remove(&Nick::new("alice").unwrap(), alice_id);
        assert!(
            directory.online(&Nick::new("alice").unwrap()),
            "one session left"
        );
    }
}
