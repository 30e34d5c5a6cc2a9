//! kanava's hub: where transports meet.
//!
//! A transport turns a connection into a [`Member`] of a channel with [`Hub::join`], hands it the
//! frames its peer sends with [`Member::publish`], and writes out what arrives in the member's
//! [`Outbox`]. The hub owns everything in between: the channel registry, membership and duplicate
//! refusal, writing each frame to the [`Store`](kanava_store::Store) before anyone receives it,
//! the per-channel total order, fan-out into bounded per-member queues, and history replay.
//!
//! Logging in under a name ([`Logins`]) follows the same rules and per-source limits on every
//! transport, and private messages and room notices reach the sessions of every transport
//! ([`Chat`]).
//!
//! No lock is held across an `.await`, and fan-out never waits on a member: a member whose queue
//! is full is kicked instead, so one slow reader cannot slow anyone else.

mod accounts;
mod channel;
mod chat;
mod error;
mod hub;
mod logins;
mod outbox;
mod rate;
mod user_limits;

pub use accounts::Accounts;
pub use chat::{Chat, ChatSink, RoomNotice};
pub use error::HubError;
pub use hub::{Hub, HubConfig, Joined, Member};
pub use kanava_store::{
    InboundMessage, Origin, Pending, Present, SessionBus, SessionEvent, SessionMessage, StoreError,
    StoreHealth,
};
pub use logins::{LoginRefusal, Logins};
pub use outbox::{KickReason, KickSignal, Outbox, QueueLimits};
pub use rate::{ANNOUNCEMENT_BURST, MESSAGE_BURST, MESSAGE_RATE, TokenBucket};
pub use user_limits::{UserLimits, UserRates};

/// Describes the hub's metrics and registers them at zero, so that `/metrics` lists every series
/// from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!("kanava_members", "Members currently in a channel");
    metrics::describe_counter!(
        "kanava_joins_total",
        "Successful joins, over every transport"
    );
    metrics::describe_gauge!(
        "kanava_channels",
        "Channels held in memory (with members or frames awaiting commit)"
    );
    metrics::describe_counter!("kanava_frames_in_total", "Frames received from members");
    metrics::describe_counter!(
        "kanava_bytes_in_total",
        "Payload bytes received from members"
    );
    metrics::describe_counter!(
        "kanava_frames_out_total",
        "Frames queued to members (deliveries)"
    );
    metrics::describe_counter!("kanava_bytes_out_total", "Payload bytes queued to members");
    metrics::describe_counter!(
        "kanava_queue_overflows_total",
        "Members closed because their outbound queue overflowed"
    );
    metrics::describe_counter!(
        "kanava_disk_refusals_total",
        "Frames refused by the disk budget, by the part used up (source: the sender's share, total)"
    );
    for reason in ["source", "total"] {
        metrics::counter!("kanava_disk_refusals_total", "reason" => reason).increment(0);
    }
    metrics::gauge!("kanava_members").increment(0.0);
    metrics::gauge!("kanava_channels").increment(0.0);
    for name in [
        "kanava_joins_total",
        "kanava_frames_in_total",
        "kanava_bytes_in_total",
        "kanava_frames_out_total",
        "kanava_bytes_out_total",
        "kanava_queue_overflows_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}
