//! kanava's hub: where transports meet.
//!
//! A transport turns a connection into a [`Member`] of a channel with [`Hub::join`], hands it the
//! frames its peer sends with [`Member::publish`], and writes out what arrives in the member's
//! [`Outbox`]. The hub owns everything in between: the channel registry, membership and duplicate
//! refusal, writing each frame to the [`Store`](kanava_store::Store) before anyone receives it,
//! the per-channel total order, fan-out into bounded per-member queues, and history replay.
//!
//! No lock is held across an `.await`, and fan-out never waits on a member: a member whose queue
//! is full is kicked instead, so one slow reader cannot slow anyone else.

mod channel;
mod error;
mod hub;
mod outbox;

pub use error::HubError;
pub use hub::{Hub, HubConfig, Joined, Member};
pub use outbox::{KickReason, KickSignal, Outbox, QueueLimits};
