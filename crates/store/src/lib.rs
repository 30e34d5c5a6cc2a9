//! kanava's durable store.
//!
//! The hub writes every frame here before any member receives it, and reads a channel's history
//! from here when the channel is first used after a start. [`Store`] is the boundary: the embedded
//! [`SqliteStore`] is the default, and a clustered backend can replace it without the hub or any
//! transport changing.

mod error;
mod pending;
mod sqlite;

use kanava_core::{ChannelName, Claim, Entry, Identity, NewEntry, Nick};

pub use error::StoreError;
pub use pending::Pending;
pub use sqlite::SqliteStore;

/// A channel's state as the store holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredChannel {
    /// The retained history, oldest first, already within the history limits.
    pub entries: Vec<Entry>,
    /// The sequence number the next entry of this channel must take.
    pub next_seq: u64,
}

/// Durable channel history.
///
/// Operations are submitted without blocking and complete through the returned [`Pending`].
/// **Contract:** an append's `Pending` resolves `Ok` only once its entries are durable, and
/// operations are applied in the order they were submitted, so that a `load` or `purge_idle`
/// sees every append submitted before it. The hub relays an entry only after its own append
/// resolved, and releases entries in sequence order whatever order the appends resolve in.
pub trait Store: Send + Sync + 'static {
    /// Appends entries; each must carry the next sequence number of its channel.
    fn append(&self, entries: Vec<NewEntry>) -> Pending<()>;

    /// Reads a channel's retained history and its next sequence number (an unknown channel is
    /// empty, with `next_seq` 1).
    fn load(&self, channel: ChannelName) -> Pending<StoredChannel>;

    /// Deletes every channel whose last activity is older than `idle_before_ms` (Unix ms), except
    /// those in `keep`; returns the names deleted.
    fn purge_idle(&self, idle_before_ms: u64, keep: Vec<ChannelName>) -> Pending<Vec<ChannelName>>;

    /// Resolves once everything submitted before it is durable.
    fn sync(&self) -> Pending<()>;

    /// The identity bound to `nick`, if any.
    fn identity(&self, nick: Nick) -> Pending<Option<Identity>>;

    /// Binds `identity.nick` to its key if the name is free, atomically: of two claims racing for
    /// one new name, exactly one gets [`Claim::Bound`].
    fn claim_identity(&self, identity: Identity) -> Pending<Claim>;

    /// Every bound identity, sorted by name.
    fn identities(&self) -> Pending<Vec<Identity>>;

    /// Removes the binding of `nick`, freeing the name; says whether there was one.
    fn release_identity(&self, nick: Nick) -> Pending<bool>;
}

/// Describes the store's metrics and registers them, so that `/metrics` lists them from the
/// start.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "kanava_store_commit_seconds",
        metrics::Unit::Seconds,
        "Time of one store transaction (group commit), fsync included"
    );
    metrics::describe_counter!("kanava_store_commits_total", "Store transactions committed");
    metrics::counter!("kanava_store_commits_total").increment(0);
}
