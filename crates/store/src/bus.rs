//! The channel bus: how several kanava nodes that share one store order and relay channel frames.
//!
//! On a single node the hub numbers a channel's frames itself and relays each once the store has
//! it. Nodes in a cluster cannot number frames independently, so a store shared between nodes
//! also offers a [`Bus`]: the hub publishes a frame to it, the bus stores it and gives it its
//! place in one order, and every node (the sender's included) receives it back through
//! [`Bus::deliveries`] once it is stored, and hands it to its own members only. Presence — who is
//! in which channel on the other nodes — travels the same way.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kanava_core::{ChannelName, Entry, FrameKind, Uid};
use tokio::sync::{mpsc, watch};

use crate::Pending;

/// Which node and which member on it published a frame, so that its sender is not sent it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The publishing node's name (unique in the cluster).
    pub node: Arc<str>,
    /// The member on that node (the hub's member id).
    pub member: u64,
}

/// A frame for the bus to store and relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The channel.
    pub channel: ChannelName,
    /// Text, binary, ping or join header.
    pub kind: FrameKind,
    /// The member's uid.
    pub sender: Uid,
    /// Whether the member proved it holds the uid as a bound name.
    pub verified: bool,
    /// The frame, byte for byte.
    pub payload: Bytes,
    /// When the hub received it (Unix ms).
    pub time_ms: u64,
    /// The publishing member's id on this node.
    pub member: u64,
}

/// A stored frame as every node hosting its channel receives it: `entry.seq` is its place in
/// its channel's order, increasing within the channel (with gaps, since channels share the
/// streams that number them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The channel.
    pub channel: ChannelName,
    /// The frame, numbered.
    pub entry: Entry,
    /// Who published it.
    pub origin: Origin,
}

/// One uid present in a channel on some node, and whether it holds the uid exclusively (a Mles
/// connection) or shares it with other sessions of the same user (SSH).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Present {
    /// The uid.
    pub uid: Uid,
    /// Held by one connection, which refuses duplicates.
    pub exclusive: bool,
    /// Its holders proved the uid is their bound name.
    pub verified: bool,
}

/// Who is in each channel on the *other* live nodes.
pub type RemotePresence = HashMap<ChannelName, Vec<Present>>;

/// The state of a node's link to the cluster, for `/healthz`: the node serves only while it is
/// connected *and* its writes are acknowledged, since a link that is up can still lead nowhere
/// (a server cut off from the others, a stream without a leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusHealth {
    /// Whether the node is connected to the cluster now.
    pub connected: bool,
    /// Whether a write was acknowledged recently: the cluster stores what this node publishes.
    pub writable: bool,
    /// A short description: the server connected to and the last acknowledged write, or why
    /// the node is degraded.
    pub detail: String,
}

impl BusHealth {
    /// Whether the node can publish and receive now.
    pub fn healthy(&self) -> bool {
        self.connected && self.writable
    }
}

/// The ordering and relaying half of a store shared between nodes; see the module docs.
pub trait Bus: Send + Sync + 'static {
    /// This node's name, unique in the cluster.
    fn node(&self) -> &str;

    /// Publishes a frame. Frames are published in call order; the outcome resolves with the
    /// frame's sequence once the cluster has stored it. A publish retried after a lost
    /// acknowledgement is stored once.
    fn publish(&self, frame: Outgoing) -> Pending<u64>;

    /// Every frame stored from now on of every channel this node hosts (see
    /// [`host`](Self::host); a bus that does not track hosting delivers every channel's), from
    /// every node (this one included), each once and in its channel's order. Taken once, by the
    /// hub; a second call gets a receiver that yields nothing.
    fn deliveries(&self) -> mpsc::Receiver<Delivered>;

    /// Tells the bus that this node hosts `channel` (it has members or state for it), before
    /// the hub reads the channel's history: resolves once every frame stored from then on will
    /// come through [`deliveries`](Self::deliveries). Each call is matched by one
    /// [`release`](Self::release), made even if this fails; the bus delivers the channel while
    /// any is unmatched.
    fn host(&self, channel: ChannelName) -> Pending<()> {
        let _ = channel;
        let (reply, pending) = Pending::channel();
        let _ = reply.send(Ok(()));
        pending
    }

    /// This node stopped hosting `channel` (matches one [`host`](Self::host)).
    fn release(&self, channel: ChannelName) {
        let _ = channel;
    }

    /// Announces this node's members of `channel` (none: the channel is left), replacing what
    /// was announced before; the bus keeps the announcement fresh until it changes.
    fn set_presence(&self, channel: ChannelName, members: Vec<Present>);

    /// The members of every channel on the other nodes, updated as they come and go; a node
    /// that stops refreshing its announcements drops out within a bounded time.
    fn remote_presence(&self) -> watch::Receiver<Arc<RemotePresence>>;

    /// Checks now that the nodes announcing `uid` in `channel` are alive, and drops a dead
    /// one's announcements from [`remote_presence`](Self::remote_presence) before resolving:
    /// a join refused only because of a node that just died need not wait for its presence to
    /// expire. Resolves with whether some holder did not answer in time (frozen or cut off: it
    /// may be dead, and stops counting soon), at once where there is nothing to check.
    fn recheck_presence(&self, channel: ChannelName, uid: Uid) -> Pending<bool> {
        let _ = (channel, uid);
        let (reply, pending) = Pending::channel();
        let _ = reply.send(Ok(false));
        pending
    }

    /// The link's state now.
    fn health(&self) -> BusHealth;
}

/// One message of a debug-me session as it travels between nodes: the encoded protocol frame,
/// and who sent it (member 0 is the session's user; any other is a developer's connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMessage {
    /// The `L` frame, encoded as on the wire.
    pub frame: Bytes,
    /// The sender's node and connection.
    pub origin: Origin,
}

/// What a node following a debug-me session of another node receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A message, in the order of the session's log.
    Message(SessionMessage),
    /// The session ended; nothing follows.
    Ended,
}

/// A developer's message sent from another node into a session held here, with the means to
/// tell that node whether the session logged it.
#[derive(Debug)]
pub struct InboundMessage {
    /// The message.
    pub message: SessionMessage,
    /// Answered `Ok` once the message is in the log, `Err` with the reason otherwise.
    pub logged: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// debug-me sessions across nodes. A session lives on the node its user connected to, which
/// writes its log; that node records each logged message here, so that developers, watchers and
/// downloads on any other node follow the same log, and it takes their messages in through
/// [`open`](Self::open)'s inbox.
pub trait SessionBus: Send + Sync + 'static {
    /// This node's name, unique in the cluster (as in [`Origin::node`]).
    fn node(&self) -> &str;

    /// The user's node: announces session `id` and returns the inbox of messages sent into it
    /// from other nodes.
    fn open(&self, id: &str) -> Pending<mpsc::Receiver<InboundMessage>>;

    /// The user's node: records a logged message of session `id`, in call order.
    fn record(&self, id: &str, message: SessionMessage) -> Pending<u64>;

    /// The user's node: records that session `id` ended.
    fn end(&self, id: &str) -> Pending<u64>;

    /// Any other node: session `id` from its first message, then live, until
    /// [`SessionEvent::Ended`]; `None` when no node has announced it (or it is past retention).
    fn follow(&self, id: &str) -> Pending<Option<mpsc::Receiver<SessionEvent>>>;

    /// Any other node: sends a developer's message to the session's node; resolves once it is
    /// in the session's log.
    fn send(&self, id: &str, message: SessionMessage) -> Pending<()>;
}
