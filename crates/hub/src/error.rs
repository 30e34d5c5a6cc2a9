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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kanava_store::StoreError),
}
