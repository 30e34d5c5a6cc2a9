//! The cluster store's error type: what went wrong at start-up, said so that an operator can fix
//! it, and what a running operation ran into.

use std::path::PathBuf;

use crate::wire::RecordError;

/// A boxed error from the NATS client, kept as the source of a [`ClusterError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why connecting to the cluster, or an operation on it, failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration cannot work (no servers, a bad node name, zero replicas, ...).
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// The credentials file could not be read.
    #[error("cannot read the cluster credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No server in the list accepted a connection.
    #[error("no NATS server reachable at {servers}: {source}")]
    Unreachable {
        /// The configured server URLs.
        servers: String,
        /// The last connection error.
        source: async_nats::ConnectError,
    },
    /// A server refused the credentials.
    #[error(
        "the NATS server at {servers} refused kanava's credentials ({source}); check --cluster-credentials"
    )]
    Auth {
        /// The configured server URLs.
        servers: String,
        /// The server's refusal.
        source: async_nats::ConnectError,
    },
    /// The server answers, but JetStream does not.
    #[error(
        "JetStream is not enabled on the NATS server: start nats-server with -js (or a jetstream {{}} block in its config)"
    )]
    NoJetStream,
    /// The cluster has fewer JetStream servers than the replicas asked for.
    #[error(
        "stream {stream} needs {replicas} JetStream servers for --cluster-replicas {replicas}, and the cluster cannot place it ({reason})"
    )]
    NotEnoughPeers {
        /// The stream that could not be placed.
        stream: String,
        /// The replicas asked for.
        replicas: usize,
        /// The server's words.
        reason: String,
    },
    /// The server's `max_payload` cannot carry a frame of `--max-frame` bytes with its headers.
    #[error(
        "the NATS server's max_payload is {max_payload} bytes, too small for --max-frame {max_frame} plus {header_room} bytes of headers: raise max_payload in the nats-server config (e.g. `max_payload: 8MB`) or use a smaller --max-frame"
    )]
    PayloadTooSmall {
        /// The server's limit.
        max_payload: usize,
        /// kanava's largest frame (0: the server leaves no room for any).
        max_frame: usize,
        /// The room kept for headers.
        header_room: usize,
    },
    /// A stream or bucket exists with settings kanava cannot change to its own.
    #[error(
        "the existing stream {stream} has settings kanava cannot use ({reason}); delete it or fix its configuration (nats stream edit {stream})"
    )]
    IncompatibleStream {
        /// The stream.
        stream: String,
        /// The server's words.
        reason: String,
    },
    /// The cluster was created with another count of channel streams than this node's.
    #[error(
        "the cluster was created with {recorded} channel stream(s) and this node is configured for {configured}: start it with --cluster-shards {recorded} (the count is fixed when a cluster is created; see the cluster section of docs/operations.md)"
    )]
    ShardCount {
        /// The count the cluster recorded when it was created.
        recorded: u32,
        /// This node's `--cluster-shards`.
        configured: u32,
    },
    /// Creating or opening a stream or bucket failed otherwise.
    #[error("cannot set up {what}: {source}")]
    Setup {
        /// The stream or bucket.
        what: String,
        /// Why.
        source: BoxError,
    },
    /// A NATS or JetStream request failed.
    #[error("{op}: {source}")]
    Nats {
        /// What kanava was doing.
        op: &'static str,
        /// Why it failed.
        source: BoxError,
    },
    /// A stored record could not be read.
    #[error("stored {what} is invalid: {source}")]
    Record {
        /// Which record.
        what: &'static str,
        /// Why.
        source: RecordError,
    },
    /// A debug-me session could not be reached, or did not log a message sent into it.
    #[error("debug-me session {id:?}: {reason}")]
    Session {
        /// The session id, as given.
        id: String,
        /// What happened.
        reason: String,
    },
    /// A compare-and-set kept losing to concurrent writers.
    #[error("{0} kept changing under concurrent updates; gave up")]
    Contention(&'static str),
    /// JetStream did not answer within the cluster timeout (no stream leader while one is
    /// elected, no quorum, a partition); trying again later may succeed.
    #[error("the cluster did not {what} within {waited:?}: {source}")]
    Unavailable {
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: std::time::Duration,
        /// The last error.
        source: BoxError,
    },
    /// A message was not sent at all: an earlier one with the same key (the same sender, the
    /// same session) was not confirmed in time, and the messages queued behind it are dropped
    /// so that none is stored out of order.
    #[error("not stored: an earlier message of the same sender was not confirmed in time")]
    Cancelled,
}

impl ClusterError {
    /// Wraps a NATS error with what kanava was doing.
    pub(crate) fn nats(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Nats {
            op,
            source: source.into(),
        }
    }
}

impl ClusterError {
    /// A debug-me session error.
    pub(crate) fn session(id: &str, reason: impl Into<String>) -> Self {
        Self::Session {
            id: id.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<ClusterError> for kanava_store::StoreError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::Unavailable { .. } | ClusterError::Cancelled => {
                kanava_store::StoreError::Unavailable(error.to_string())
            }
            error => kanava_store::StoreError::Cluster(Box::new(error)),
        }
    }
}
