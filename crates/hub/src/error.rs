//! The hub's error type, which transports map to their own protocol outcomes.

use kanava_core::{ChannelName, Uid};

/// Why the hub refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A member with this uid is already in the channel.
    #[error("uid {uid} is already a member of channel {channel}")]
    Duplicate {
        /// The refused uid.
        uid: Uid,
        /// The channel it tried to join.
        channel: ChannelName,
    },
    /// The uid is held only on another node of the cluster, which did not answer when asked
    /// whether it is alive: frozen or cut off, it may be dead, and its presence stops counting
    /// within a second or two. Trying again soon may succeed.
    #[error("uid {uid} is held in channel {channel} by a node that does not answer")]
    HeldByUnresponsiveNode {
        /// The refused uid.
        uid: Uid,
        /// The channel it tried to join.
        channel: ChannelName,
    },
    /// The hub is shutting down and takes no new members or frames.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The disk budget refused the frame: the sender's address has used its share, or the
    /// server's total is used up. Nothing was stored.
    #[error("not stored: {0}")]
    Disk(#[from] kanava_core::DiskRefusal),
    /// The store did not answer in time (a cluster electing a leader, or without quorum);
    /// trying again later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(kanava_store::StoreError),
}

impl From<kanava_store::StoreError> for HubError {
    fn from(error: kanava_store::StoreError) -> Self {
        match error {
            kanava_store::StoreError::Unavailable(reason) => HubError::Unavailable(reason),
            error => HubError::Store(error),
        }
    }
}
