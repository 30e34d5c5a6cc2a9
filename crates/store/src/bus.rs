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
    /// The frame, byte for byte.
    pub payload: Bytes,
    /// When the hub received it (Unix ms).
    pub time_ms: u64,
    /// The publishing member's id on this node.
    pub member: u64,
}

/// A stored frame as every node receives it: `entry.seq` is its place in the cluster's order,
/// increasing within each channel (with gaps, since channels share the order).
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
}

/// Who is in each channel on the *other* live nodes.
pub type RemotePresence = HashMap<ChannelName, Vec<Present>>;

/// The state of a node's link to the cluster, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusHealth {
    /// Whether the node can publish and receive now.
    pub connected: bool,
    /// A short description: the server connected to, or why not.
    pub detail: String,
}

/// The ordering and relaying half of a store shared between nodes; see the module docs.
pub trait Bus: Send + Sync + 'static {
    /// This node's name, unique in the cluster.
    fn node(&self) -> &str;

    /// Publishes a frame. Frames are published in call order; the outcome resolves with the
    /// frame's sequence once the cluster has stored it. A publish retried after a lost
    /// acknowledgement is stored once.
    fn publish(&self, frame: Outgoing) -> Pending<u64>;

    /// Every frame stored from now on, of every channel and from every node (this one
    /// included), each once and in the cluster's order. Taken once, by the hub; a second call
    /// gets a receiver that yields nothing.
    fn deliveries(&self) -> mpsc::Receiver<Delivered>;

    /// Announces this node's members of `channel` (none: the channel is left), replacing what
    /// was announced before; the bus keeps the announcement fresh until it changes.
    fn set_presence(&self, channel: ChannelName, members: Vec<Present>);

    /// The members of every channel on the other nodes, updated as they come and go; a node
    /// that stops refreshing its announcements drops out within a bounded time.
    fn remote_presence(&self) -> watch::Receiver<Arc<RemotePresence>>;

    /// The link's state now.
    fn health(&self) -> BusHealth;
}
