//! The SSH chat's records — names and their keys, private messages, bans, topics — reached
//! through the hub, so that transports never hold the store.

use std::sync::Arc;

use kanava_core::{
    Ban, ChannelName, Claim, Identity, IdentityKey, KeyAdded, KeySharing, Nick, PrivateMessage,
    Rename, Topic,
};
use kanava_store::Store;

use crate::HubError;

/// Handle on the account records; cheap to clone. Each call is one store operation, durable
/// when it returns `Ok`.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The identity bound to `nick`, with all its keys.
    pub async fn identity(&self, nick: Nick) -> Result<Option<Identity>, HubError> {
        Ok(self.store.identity(nick).await?)
    }

    /// Claims a free name for a key (trust on first use); see [`Claim`].
    pub async fn claim_identity(
        &self,
        nick: Nick,
        key: IdentityKey,
        sharing: KeySharing,
    ) -> Result<Claim, HubError> {
        Ok(self.store.claim_identity(nick, key, sharing).await?)
    }

    /// Adds a key to a name as pending (`/key add`); it becomes active at its first login.
    pub async fn add_key(
        &self,
        nick: Nick,
        key: IdentityKey,
        sharing: KeySharing,
    ) -> Result<KeyAdded, HubError> {
        Ok(self.store.add_key(nick, key, sharing).await?)
    }

    /// Moves a name's keys to a free name (`/nick`), at most once per `cooldown_ms`.
    pub async fn rename(
        &self,
        from: Nick,
        to: Nick,
        now_ms: u64,
        cooldown_ms: u64,
    ) -> Result<Rename, HubError> {
        Ok(self
            .store
            .rename_identity(from, to, now_ms, cooldown_ms)
            .await?)
    }

    /// Frees a name and all its keys (`/release`); says whether it was bound.
    pub async fn release(&self, nick: Nick) -> Result<bool, HubError> {
        Ok(self.store.release_identity(nick).await?)
    }

    /// Frees the names not logged in since `unused_before_ms`; returns them.
    pub async fn expire(&self, unused_before_ms: u64) -> Result<Vec<Nick>, HubError> {
        Ok(self.store.expire_identities(unused_before_ms).await?)
    }

    /// Removes a key of a name (pending, or active but never its last); says whether it was
    /// removed.
    pub async fn remove_key(&self, nick: Nick, fingerprint: String) -> Result<bool, HubError> {
        Ok(self.store.remove_key(nick, fingerprint).await?)
    }

    /// Stores a private message; `unread` when no session of the recipient showed it.
    pub async fn send_private(
        &self,
        message: PrivateMessage,
        unread: bool,
    ) -> Result<PrivateMessage, HubError> {
        Ok(self.store.send_private(message, unread).await?)
    }

    /// The private messages `nick` has not seen, marking them seen.
    pub async fn take_unread_private(&self, nick: Nick) -> Result<Vec<PrivateMessage>, HubError> {
        Ok(self.store.take_unread_private(nick).await?)
    }

    /// Bans keys.
    pub async fn ban(&self, bans: Vec<Ban>) -> Result<(), HubError> {
        Ok(self.store.ban(bans).await?)
    }

    /// Lifts the bans of a fingerprint or of a name's keys; returns them.
    pub async fn unban(&self, fingerprint_or_nick: String) -> Result<Vec<Ban>, HubError> {
        Ok(self.store.unban(fingerprint_or_nick).await?)
    }

    /// The bans in force at `now_ms`.
    pub async fn bans(&self, now_ms: u64) -> Result<Vec<Ban>, HubError> {
        Ok(self.store.bans(now_ms).await?)
    }

    /// The ban of one key in force at `now_ms`.
    pub async fn ban_of(&self, fingerprint: String, now_ms: u64) -> Result<Option<Ban>, HubError> {
        Ok(self.store.ban_of(fingerprint, now_ms).await?)
    }

    /// Sets a room's topic.
    pub async fn set_topic(&self, topic: Topic) -> Result<(), HubError> {
        Ok(self.store.set_topic(topic).await?)
    }

    /// A room's topic.
    pub async fn topic(&self, room: ChannelName) -> Result<Option<Topic>, HubError> {
        Ok(self.store.topic(room).await?)
    }
}
