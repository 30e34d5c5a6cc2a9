//! kanava's cluster store: several kanava nodes sharing history, identities, presence and the
//! order of channel frames through NATS JetStream.
//!
//! [`ClusterStore`] implements [`kanava_store::Store`] and, through [`Store::bus`], the
//! [`kanava_store::Bus`] that orders and relays frames between nodes, and through
//! [`Store::sessions`] the [`kanava_store::SessionBus`] that carries debug-me sessions across
//! nodes. The layout on the server:
//!
//! - stream `KANAVA_CH` (`kanava.ch.<token>` per channel, see [`wire`]): every channel's frames,
//!   each channel capped at the history's `max_entries`; the stream sequence is the frame's
//!   place in its channel's order. A cluster created with several channel streams
//!   ([`ClusterConfig::shards`]) has `KANAVA_CH_<i>` (`kanava.chs.<i>.<token>`) instead, each
//!   channel in the one its name hashes to ([`wire::ChannelShards`]), so that several stream
//!   leaders share the writes. Each stream republishes what it stores on core NATS subjects
//!   `kanava.live.<subject less "kanava.">`, which a node subscribes to for the channels it
//!   hosts only (`live.rs`);
//! - key-value bucket `kanava_cluster`: the count of channel streams, recorded by the first
//!   node, which every later node must match;
//! - stream `KANAVA_PM` (`kanava.pm.<hex of the name>`): private messages, kept 30 days;
//! - stream `KANAVA_DM` (`kanava.dm.<session id>`): the logs of debug-me sessions, each
//!   complete (no cap per session), kept for the debug-me retention; the session's node takes
//!   messages from other nodes in on `kanava.dm-in.<session id>` (core NATS requests);
//! - key-value buckets `kanava_ident` (names and their keys), `kanava_bans`, `kanava_topics`,
//!   `kanava_pm_seen` (what each name has read) and `kanava_presence` (who is where, in memory,
//!   expiring after three heartbeats).
//!
//! nats-server 2.9.10 (Debian 12) cannot create key-value buckets through async-nats 0.51, so
//! their streams are created here as plain streams and then opened as buckets.
//!
//! [`Store::bus`]: kanava_store::Store::bus
//! [`Store::sessions`]: kanava_store::Store::sessions

mod accounts;
mod auth;
mod deliveries;
mod error;
mod health;
mod history;
mod live;
mod presence;
mod publish;
mod read;
mod sessions;
mod setup;
mod store;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use kanava_core::HistoryLimits;

pub use error::{BoxError, ClusterError};
pub use store::ClusterStore;

/// Bytes a frame's headers may take on top of its payload: the channel name and uid in hex
/// (both come from one Mles header of at most 4 KiB), the kind, time, origin and message id.
pub const HEADER_ROOM: usize = 12 * 1024;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS servers, as `nats://host:port` URLs; any one reachable is enough.
    pub servers: Vec<String>,
    /// A credentials file: a NATS `.creds` file, an nkey seed, `user:password` or a token.
    pub credentials: Option<PathBuf>,
    /// This node's name, unique in the cluster: 1 to 64 of `A-Z a-z 0-9 _ . -`.
    pub node: String,
    /// Copies JetStream keeps of every stream and bucket: 3 on a 3-node cluster, 1 on one
    /// server.
    pub replicas: usize,
    /// How many channel streams the cluster spreads its channels over (1 to
    /// [`wire::MAX_CHANNEL_SHARDS`]); fixed when the cluster is created, and a node configured
    /// otherwise refuses to start.
    pub shards: u32,
    /// The history limits; `max_entries` caps each channel's subject in the stream.
    pub history: HistoryLimits,
    /// The largest frame payload kanava publishes (`--max-frame`); the server's `max_payload`
    /// must hold it plus [`HEADER_ROOM`]. `None`: as large as the server carries (see
    /// [`ClusterStore::max_frame`]).
    pub max_frame: Option<usize>,
    /// How often this node refreshes its presence announcements; announcements not refreshed
    /// for three heartbeats are dropped.
    pub presence_heartbeat: Duration,
    /// How long the logs of debug-me sessions are kept (`--debug-me-retention`); not zero.
    pub debug_me_retention: Duration,
    /// How long connecting to a server may take.
    pub connect_timeout: Duration,
    /// How long a frame may wait for JetStream's acknowledgement, and a join for its history
    /// (an election, a lagging replica), before its member is told to try again later; at most
    /// a minute, within which a frame reported unconfirmed may still be stored.
    pub timeout: Duration,
}

/// Describes the cluster store's metrics and registers them, so that `/metrics` lists them from
/// the start.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "kanava_cluster_publish_seconds",
        metrics::Unit::Seconds,
        "Time from sending a frame to JetStream to its acknowledgement, retries included"
    );
    metrics::describe_counter!(
        "kanava_cluster_publish_retries_total",
        "Frames published again (same message id) after a lost or failed acknowledgement"
    );
    metrics::describe_counter!(
        "kanava_cluster_publish_failures_total",
        "Frames that could not be stored in the cluster"
    );
    metrics::describe_counter!(
        "kanava_cluster_frames_received_total",
        "Channel frames this node received from the cluster (live or fetched from a stream leader), for the channels it hosts only"
    );
    metrics::describe_counter!(
        "kanava_cluster_frames_backfilled_total",
        "Channel frames the live feed missed (a reconnect, a slow consumer, a leader change) and that were fetched from the stream leader"
    );
    metrics::describe_gauge!(
        "kanava_cluster_hosted_channels",
        "Channels whose frames this node receives: those its members are in"
    );
    metrics::describe_gauge!(
        "kanava_cluster_connected",
        "1 while this node is connected to a NATS server, else 0"
    );
    metrics::describe_gauge!(
        "kanava_cluster_writable",
        "1 while this node's writes are acknowledged (a canary within the last 3 s), else 0"
    );
    metrics::describe_counter!(
        "kanava_cluster_moves_total",
        "Moves to another NATS server after writes through this one failed"
    );
    metrics::counter!("kanava_cluster_moves_total").increment(0);
    metrics::gauge!("kanava_cluster_writable").set(0.0);
    metrics::counter!("kanava_cluster_publish_retries_total").increment(0);
    metrics::counter!("kanava_cluster_publish_failures_total").increment(0);
    metrics::counter!("kanava_cluster_frames_received_total").increment(0);
    metrics::counter!("kanava_cluster_frames_backfilled_total").increment(0);
    metrics::gauge!("kanava_cluster_hosted_channels").set(0.0);
    metrics::gauge!("kanava_cluster_connected").set(0.0);
}
