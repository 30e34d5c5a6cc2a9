//! Chat delivery across transports: private messages, and notices to a room's people (topic
//! changes, announcements such as renames), reach the local sessions of every transport (SSH,
//! the browser), and private messages stored on other nodes of a cluster reach them too.
//!
//! Each transport registers one [`ChatSink`] that shows things to its own sessions; the
//! [`Chat`] fans out to every sink. Sinks are called without any lock held and must not
//! wait: they queue what they show.

use std::sync::{Arc, Mutex, Weak};

use kanava_core::{ChannelName, Nick, PrivateMessage, Topic};
use kanava_store::RemotePresence;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What a transport shows its local sessions when the chat tells them something.
pub trait ChatSink: Send + Sync + 'static {
    /// Shows a private message to the local sessions of its recipient (unless the recipient
    /// ignores the sender) and of its sender; returns whether a session of the recipient
    /// showed it.
    fn private(&self, message: &PrivateMessage) -> bool;
    /// Whether `nick` has a session on this transport on this node.
    fn online(&self, nick: &Nick) -> bool;
    /// Shows a room notice to the local sessions in `room`.
    fn room_notice(&self, room: &ChannelName, notice: &RoomNotice);
}

/// A notice to the people in a room, beyond its traffic.
#[derive(Debug, Clone)]
pub enum RoomNotice {
    /// The room's topic was set to this (each transport renders it its own way).
    Topic(Topic),
    /// Already-sanitised one-line text, such as `* alice is now bob`.
    Info(String),
}

/// Cross-transport delivery; [`Hub::chat`](crate::Hub::chat) returns a handle (cheap clone) on
/// the hub's one instance.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Shared>,
}

struct Shared {
    /// The sinks, replaced whole when one is added, so that delivery holds no lock while it
    /// calls them.
    sinks: Mutex<Arc<[Arc<dyn ChatSink>]>>,
    /// In a cluster, who is present on the other nodes.
    remote: Option<watch::Receiver<Arc<RemotePresence>>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("sinks", &self.sinks().len())
            .finish_non_exhaustive()
    }
}

impl Chat {
    /// A chat without sinks, following the other nodes' presence through `remote` in a cluster.
    pub(crate) fn new(remote: Option<watch::Receiver<Arc<RemotePresence>>>) -> Self {
        Self {
            inner: Arc::new(Shared {
                sinks: Mutex::new(Arc::from(Vec::new())),
                remote,
            }),
        }
    }

    fn sinks(&self) -> Arc<[Arc<dyn ChatSink>]> {
        Arc::clone(&self.inner.sinks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds a transport's sink; it stays for the hub's lifetime (one per transport).
    pub fn add_sink(&self, sink: Arc<dyn ChatSink>) {
        let mut sinks = self.inner.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = sinks.to_vec();
        all.push(sink);
        *sinks = Arc::from(all);
    }

    /// Delivers a stored private message to every local sink (in a cluster, messages stored
    /// on other nodes arrive through the store's private feed, which the hub pumps in here);
    /// returns whether the recipient saw it.
    pub fn deliver_private(&self, message: &PrivateMessage) -> bool {
        // Every sink shows it, whether or not an earlier one did.
        self.sinks()
            .iter()
            .fold(false, |seen, sink| sink.private(message) | seen)
    }

    /// Whether `nick` is online on any transport here or present on another node.
    pub fn online(&self, nick: &Nick) -> bool {
        self.sinks().iter().any(|sink| sink.online(nick)) || self.present_elsewhere(nick.as_str())
    }

    /// Whether `uid` is in some channel on another node of the cluster.
    pub(crate) fn present_elsewhere(&self, uid: &str) -> bool {
        self.inner.remote.as_ref().is_some_and(|remote| {
            remote
                .borrow()
                .values()
                .any(|members| members.iter().any(|p| p.uid.as_str() == uid))
        })
    }

    /// Tells every local session in `room`, on every transport.
    pub fn announce(&self, room: &ChannelName, notice: RoomNotice) {
        for sink in self.sinks().iter() {
            sink.room_notice(room, &notice);
        }
    }

    /// Delivers the private messages of `feed` (stored on other nodes), in a task that ends
    /// when the feed closes or the chat is gone.
    pub(crate) fn pump(&self, feed: mpsc::Receiver<PrivateMessage>) -> JoinHandle<()> {
        tokio::spawn(pump_private(Arc::downgrade(&self.inner), feed))
    }
}

async fn pump_private(chat: Weak<Shared>, mut feed: mpsc::Receiver<PrivateMessage>) {
    while let Some(message) = feed.recv().await {
        let Some(inner) = chat.upgrade() else { return };
        Chat { inner }.deliver_private(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport whose sessions are the names in `online`; it records what it showed.
    #[derive(Default)]
    struct Recording {
        online: Vec<Nick>,
        privates: Mutex<Vec<(Nick, String)>>,
        notices: Mutex<Vec<(ChannelName, String)>>,
    }

    impl Recording {
        fn with(names: &[&str]) -> Arc<Self> {
            Arc::new(Self {
                online: names.iter().map(|n| nick(n)).collect(),
                ..Self::default()
            })
        }

        fn privates(&self) -> Vec<(Nick, String)> {
            self.privates.lock().unwrap().clone()
        }

        fn notices(&self) -> Vec<(ChannelName, String)> {
            self.notices.lock().unwrap().clone()
        }
    }

    impl ChatSink for Recording {
        fn private(&self, message: &PrivateMessage) -> bool {
            let mut shown = self.privates.lock().unwrap();
            let mut seen = false;
            for to in [&message.to, &message.from] {
                if self.online.contains(to) {
                    shown.push((to.clone(), message.text.clone()));
                    seen |= to == &message.to;
                }
            }
            seen
        }

        fn online(&self, nick: &Nick) -> bool {
            self.online.contains(nick)
        }

        fn room_notice(&self, room: &ChannelName, notice: &RoomNotice) {
            let text = match notice {
                RoomNotice::Topic(topic) => format!("topic: {}", topic.text),
                RoomNotice::Info(text) => text.clone(),
            };
            self.notices.lock().unwrap().push((room.clone(), text));
        }
    }

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    fn pm(from: &str, to: &str, text: &str) -> PrivateMessage {
        PrivateMessage {
            id: 1,
            from: nick(from),
            to: nick(to),
            text: text.to_owned(),
            time_ms: 0,
        }
    }

    #[test]
    fn a_private_message_reaches_both_transports_and_says_whether_its_recipient_saw_it() {
        let chat = Chat::new(None);
        let (ssh, web) = (Recording::with(&["alice"]), Recording::with(&["bob"]));
        chat.add_sink(ssh.clone());
        chat.add_sink(web.clone());
        assert!(
            chat.deliver_private(&pm("alice", "bob", "hi")),
            "bob is on the second transport"
        );
        assert_eq!(web.privates(), [(nick("bob"), "hi".into())]);
        assert_eq!(
            ssh.privates(),
            [(nick("alice"), "hi".into())],
            "the sender's sessions show it too"
        );
        assert!(
            chat.deliver_private(&pm("bob", "alice", "yo")),
            "alice is on the first transport, which a later sink does not hide"
        );
        assert_eq!(
            web.privates().len(),
            2,
            "the sender bob saw his own message"
        );
        assert!(!chat.deliver_private(&pm("alice", "carol", "there?")));
        assert!(chat.online(&nick("Alice")) && chat.online(&nick("bob")));
        assert!(!chat.online(&nick("carol")));
    }

    #[test]
    fn an_announcement_reaches_every_transport() {
        let chat = Chat::new(None);
        let (ssh, web) = (Recording::with(&[]), Recording::with(&[]));
        chat.add_sink(ssh.clone());
        chat.add_sink(web.clone());
        let dev = ChannelName::new("dev").unwrap();
        chat.announce(
            &dev,
            RoomNotice::Topic(Topic {
                room: dev.clone(),
                text: "release day".into(),
                set_by: nick("alice"),
                set_ms: 0,
            }),
        );
        chat.announce(&dev, RoomNotice::Info("* alice is now bob".into()));
        for sink in [&ssh, &web] {
            assert_eq!(
                sink.notices(),
                [
                    (dev.clone(), "topic: release day".into()),
                    (dev.clone(), "* alice is now bob".into())
                ]
            );
        }
    }

    #[tokio::test]
    async fn messages_from_other_nodes_are_pumped_to_the_sinks() {
        let chat = Chat::new(None);
        let web = Recording::with(&["bob"]);
        chat.add_sink(web.clone());
        let (feed, received) = mpsc::channel(4);
        let pump = chat.pump(received);
        feed.send(pm("alice", "bob", "from afar")).await.unwrap();
        drop(feed);
        pump.await.unwrap();
        assert_eq!(web.privates(), [(nick("bob"), "from afar".into())]);
    }
}
