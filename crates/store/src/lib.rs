//! kanava's durable store.
//!
//! The hub writes every frame here before any member receives it, and reads a channel's history
//! from here when the channel is first used after a start. [`Store`] is the boundary: the embedded
//! [`SqliteStore`] is the default, and a clustered backend can replace it without the hub or any
//! transport changing.

pub mod backup;
mod bus;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod error;
mod pending;
mod sqlite;

use std::net::IpAddr;
use std::sync::Arc;

use kanava_core::{
    Ban, ChannelName, Claim, DiskRefusal, Entry, Identity, IdentityKey, KeyAdded, KeySharing,
    NewEntry, Nick, PrivateMessage, Rename, Topic, Uid,
};

pub use bus::{
    Bus, BusHealth, Delivered, InboundMessage, Origin, Outgoing, Present, RemotePresence,
    SessionBus, SessionEvent, SessionMessage,
};
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

/// Whether the store takes writes now, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// The last write succeeded.
    Writable,
    /// Writes fail (disk full, I/O error), for this reason; the store probes by itself and
    /// becomes writable again once a write succeeds.
    Unwritable(String),
}

/// Durable channel history.
///
/// Operations are submitted without blocking and complete through the returned [`Pending`].
/// **Contract:** an append's `Pending` resolves `Ok` only once its entries are durable, and
/// operations are applied in the order they were submitted, so that a `load` or `purge_idle`
/// sees every append submitted before it. The hub relays an entry only after its own append
/// resolved, and releases entries in sequence order whatever order the appends resolve in.
pub trait Store: Send + Sync + 'static {
    /// Appends entries; each must carry the next sequence number of its channel. A store with a
    /// [`bus`](Self::bus) numbers frames itself and ignores the given sequence numbers.
    fn append(&self, entries: Vec<NewEntry>) -> Pending<()>;

    /// Charges a frame of `payload_len` bytes from `sender`, about to be appended for `source`
    /// with [`append_from`](Self::append_from), to the disk budget; refuses it when `source`'s
    /// share or the total is used up. A store without a disk budget takes everything.
    fn charge_frame(
        &self,
        source: Option<IpAddr>,
        sender: &Uid,
        payload_len: usize,
    ) -> Result<(), DiskRefusal> {
        let _ = (source, sender, payload_len);
        Ok(())
    }

    /// Appends entries that `source` sent, each charged first with
    /// [`charge_frame`](Self::charge_frame): the store gives the charge back when the append
    /// fails or when retention or a purge deletes them, and shares its writer fairly between
    /// sources. Otherwise as [`append`](Self::append).
    fn append_from(&self, source: Option<IpAddr>, entries: Vec<NewEntry>) -> Pending<()> {
        let _ = source;
        self.append(entries)
    }

    /// Whether writes succeed now.
    fn health(&self) -> StoreHealth {
        StoreHealth::Writable
    }

    /// The bus, when this store is shared between nodes: the hub then publishes channel frames
    /// through it and relays what it delivers, instead of numbering and appending them itself.
    fn bus(&self) -> Option<Arc<dyn Bus>> {
        None
    }

    /// How debug-me sessions reach the other nodes, when this store is shared between nodes.
    fn sessions(&self) -> Option<Arc<dyn SessionBus>> {
        None
    }

    /// When this store is shared between nodes: the private messages that sessions on other
    /// nodes store from now on, so that the chat sessions here can show them at once. Taken
    /// once; a second call gets a receiver that yields nothing.
    fn private_feed(&self) -> Option<tokio::sync::mpsc::Receiver<PrivateMessage>> {
        None
    }

    /// Reads a channel's retained history and its next sequence number (an unknown channel is
    /// empty, with `next_seq` 1).
    fn load(&self, channel: ChannelName) -> Pending<StoredChannel>;

    /// Deletes every channel whose last activity is older than `idle_before_ms` (Unix ms), except
    /// those in `keep`, with its topic; returns the names deleted. Private messages older than
    /// `idle_before_ms` and bans that ended before it go too.
    fn purge_idle(&self, idle_before_ms: u64, keep: Vec<ChannelName>) -> Pending<Vec<ChannelName>>;

    /// Resolves once everything submitted before it is durable.
    fn sync(&self) -> Pending<()>;

    /// Up to `limit` retained entries of `channel` older than `before_seq`, oldest first: what a
    /// reader scrolling back past what it holds loads next.
    fn history_before(
        &self,
        channel: ChannelName,
        before_seq: u64,
        limit: usize,
    ) -> Pending<Vec<Entry>>;

    /// The identity bound to `nick` with all its keys, if any.
    fn identity(&self, nick: Nick) -> Pending<Option<Identity>>;

    /// Logs `key` in under `nick` (trust on first use), atomically; `key.added_ms` is now.
    /// A free name is bound to the key: of two claims racing for one new name, exactly one gets
    /// [`Claim::Bound`], and the key's pending entries under other names are dropped (its
    /// holder wins over whoever added it). A key pending on the name is confirmed
    /// ([`Claim::Confirmed`]). With [`KeySharing::OneNamePerKey`] a key that is active under
    /// another name gets [`Claim::KeyHoldsName`]. A successful login records the name's
    /// last-seen time.
    fn claim_identity(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<Claim>;

    /// `/key add`: stores `key` as a pending key of the bound name `nick` (`key.added_ms` is
    /// now), under the same rule for keys active under another name; a name has at most
    /// [`kanava_core::MAX_KEYS_PER_NAME`] keys.
    fn add_key(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<KeyAdded>;

    /// Removes one key of `nick`: a pending one, or an active one unless it is the name's only
    /// active key; says whether it was removed.
    fn remove_key(&self, nick: Nick, fingerprint: String) -> Pending<bool>;

    /// `/nick`: moves every key of `from` to the free name `to` (or to another spelling of
    /// `from`), freeing `from`, unless `from` was renamed less than `cooldown_ms` before
    /// `now_ms`.
    fn rename_identity(
        &self,
        from: Nick,
        to: Nick,
        now_ms: u64,
        cooldown_ms: u64,
    ) -> Pending<Rename>;

    /// Frees every name whose last login was before `unused_before_ms`; returns them.
    fn expire_identities(&self, unused_before_ms: u64) -> Pending<Vec<Nick>>;

    /// Every bound identity, sorted by name.
    fn identities(&self) -> Pending<Vec<Identity>>;

    /// Removes the binding of `nick` and all its keys, freeing the name; says whether there was
    /// one.
    fn release_identity(&self, nick: Nick) -> Pending<bool>;

    /// Stores a private message; `unread` says whether its recipient has yet to see it. Resolves
    /// with the message and its id once durable.
    fn send_private(&self, message: PrivateMessage, unread: bool) -> Pending<PrivateMessage>;

    /// The private messages `nick` has not seen yet, oldest first, marking them seen.
    fn take_unread_private(&self, nick: Nick) -> Pending<Vec<PrivateMessage>>;

    /// Bans keys (replacing earlier bans of the same keys).
    fn ban(&self, bans: Vec<Ban>) -> Pending<()>;

    /// Lifts the bans of a fingerprint, or of every key banned under a name; returns them.
    fn unban(&self, fingerprint_or_nick: String) -> Pending<Vec<Ban>>;

    /// The bans in force at `now_ms`, oldest first.
    fn bans(&self, now_ms: u64) -> Pending<Vec<Ban>>;

    /// The ban of a key in force at `now_ms`, if any.
    fn ban_of(&self, fingerprint: String, now_ms: u64) -> Pending<Option<Ban>>;

    /// Sets a room's topic.
    fn set_topic(&self, topic: Topic) -> Pending<()>;

    /// A room's topic, if one was set.
    fn topic(&self, room: ChannelName) -> Pending<Option<Topic>>;
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
    metrics::describe_counter!(
        "kanava_store_purged_channels_total",
        "Idle channels purged (with their history and topic)"
    );
    metrics::describe_counter!(
        "kanava_store_failed_commits_total",
        "Store transactions that failed and were rolled back (disk full, I/O error, bad request)"
    );
    metrics::describe_gauge!(
        "kanava_store_writable",
        "1 while store writes succeed, 0 while they fail (disk full, I/O error); see /healthz"
    );
    metrics::gauge!("kanava_store_writable").set(1.0);
    metrics::counter!("kanava_store_commits_total").increment(0);
    metrics::counter!("kanava_store_purged_channels_total").increment(0);
    metrics::counter!("kanava_store_failed_commits_total").increment(0);
}
