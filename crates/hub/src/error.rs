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
    /// The hub is shutting down and takes no new members or frames.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The disk budget refused the frame: the sender's address has used its share, or the
    /// server's total is used up. Nothing was stored.
    #[error("not stored: {0}")]
    Disk(#[from] kanava_core::DiskRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kanava_store::StoreError),
}
