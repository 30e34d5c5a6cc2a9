//! The SSH chat's records in JetStream: names and their keys, bans, topics and private messages,
//! with the same meaning as the SQLite store gives them.
//!
//! A name is bound by a compare-and-set on its key in `kanava_ident` (`kv.create` for a free
//! name, `kv.update` at the read revision for a change, never a blind `put`), so of racing
//! claims for one name exactly one wins on any number of nodes. The rule that a key holds one
//! name only ([`KeySharing::OneNamePerKey`]) goes through an index, `fp.<hex fingerprint>` →
//! the names the key was given, written before the name itself; an index entry counts only
//! while that name's record really holds the key, so one left behind by a claim that lost (or
//! a node that died half-way) is ignored and dropped by the next write. Two keys cannot bind one
//! name, but two racing claims *by one key* for two different names can both succeed: only the
//! key's own holder can race itself so, and it gains nothing another login would not.

use std::ops::ControlFlow;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures_util::StreamExt;
use kanava_core::{
    Ban, ChannelName, Claim, Identity, IdentityKey, KeyAdded, KeySharing, MAX_KEYS_PER_NAME, Nick,
    PrivateMessage, Rename, Topic,
};

use crate::ClusterError;
use crate::publish::{Message, MessageIds, publish_stored};
use crate::read::{last_sequence, last_stored, scan};
use crate::setup::Buckets;
use crate::wire::{self, PRIVATE_PREFIX, RecordError, UNREAD_HEADER, hex};

/// Compare-and-set rounds before an update gives up.
const MAX_ATTEMPTS: usize = 32;

/// A key's live value and the revision it was read at.
struct Current {
    value: Bytes,
    revision: u64,
}

fn record(what: &'static str) -> impl FnOnce(RecordError) -> ClusterError {
    move |source| ClusterError::Record { what, source }
}

/// The live value of `key`; `None` if it was never set or was deleted.
async fn current(bucket: &kv::Store, key: &str) -> Result<Option<Current>, ClusterError> {
    let entry = bucket
        .entry(key)
        .await
        .map_err(|e| ClusterError::nats("read a key", e))?;
    Ok(entry
        .filter(|e| e.operation == Operation::Put)
        .map(|e| Current {
            value: e.value,
            revision: e.revision,
        }))
}

/// Writes `value` at `key` only if its last revision is still `expected` (`None`: the key is
/// free); says whether it did.
async fn compare_and_set(
    bucket: &kv::Store,
    key: &str,
    value: Vec<u8>,
    expected: Option<u64>,
) -> Result<bool, ClusterError> {
    match expected {
        Some(revision) => match bucket.update(key, value.into(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(ClusterError::nats("update a key", e)),
        },
        None => match bucket.create(key, value.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(ClusterError::nats("create a key", e)),
        },
    }
}

/// Deletes `key` only if its last revision is still `revision`; says whether it did.
async fn delete_at(bucket: &kv::Store, key: &str, revision: u64) -> Result<bool, ClusterError> {
    match bucket.delete_expect_revision(key, Some(revision)).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(ClusterError::nats("delete a key", e)),
    }
}

/// Every live key of `bucket`.
async fn keys(bucket: &kv::Store) -> Result<Vec<String>, ClusterError> {
    let mut listing = bucket
        .keys()
        .await
        .map_err(|e| ClusterError::nats("list keys", e))?;
    let mut keys = Vec::new();
    while let Some(key) = listing.next().await {
        keys.push(key.map_err(|e| ClusterError::nats("list keys", e))?);
    }
    Ok(keys)
}

fn identity_key(nick: &Nick) -> String {
    format!("nick.{}", hex(nick.key().as_bytes()))
}

fn index_key(fingerprint: &str) -> String {
    format!("fp.{}", hex(fingerprint.as_bytes()))
}

async fn read_identity(
    buckets: &Buckets,
    key: &str,
) -> Result<Option<(Identity, u64)>, ClusterError> {
    match current(&buckets.ident, key).await? {
        Some(c) => {
            let identity = wire::decode_identity(&c.value).map_err(record("identity"))?;
            Ok(Some((identity, c.revision)))
        }
        None => Ok(None),
    }
}

/// The names a key's index entry lists, and its revision (`None`: no entry).
async fn read_index(
    buckets: &Buckets,
    key: &str,
) -> Result<(Vec<Nick>, Option<u64>), ClusterError> {
    match current(&buckets.ident, key).await? {
        Some(c) => {
            let names = wire::decode_key_names(&c.value).map_err(record("key index"))?;
            Ok((names, Some(c.revision)))
        }
        None => Ok((Vec::new(), None)),
    }
}

/// The identity bound to `nick`.
pub(crate) async fn identity(
    buckets: &Buckets,
    nick: &Nick,
) -> Result<Option<Identity>, ClusterError> {
    Ok(read_identity(buckets, &identity_key(nick))
        .await?
        .map(|(identity, _)| identity))
}

/// The names other than `nick` in a key's index entry whose records hold the key (active) or
/// wait for it (pending, at `now_ms`), as (holders, waiting).
async fn key_names(
    buckets: &Buckets,
    names: &[Nick],
    nick: &Nick,
    fingerprint: &str,
    now_ms: u64,
) -> Result<(Vec<Nick>, Vec<Nick>), ClusterError> {
    let (mut holders, mut waiting) = (Vec::new(), Vec::new());
    for other in names.iter().filter(|n| *n != nick) {
        match identity(buckets, other).await? {
            Some(i) if i.holds(fingerprint) => holders.push(i.nick),
            Some(i) if i.awaits(fingerprint, now_ms) => waiting.push(i.nick),
            _ => {}
        }
    }
    Ok((holders, waiting))
}

/// Makes the index entry at `fp_key` list exactly `listed` and `nick`, unless it does already;
/// says whether it now does (false: it changed meanwhile).
async fn index_as(
    buckets: &Buckets,
    fp_key: &str,
    names: &[Nick],
    revision: Option<u64>,
    mut listed: Vec<Nick>,
    nick: &Nick,
) -> Result<bool, ClusterError> {
    if names.contains(nick) && names.len() == listed.len() + 1 {
        return Ok(true);
    }
    listed.push(nick.clone());
    compare_and_set(
        &buckets.ident,
        fp_key,
        wire::encode_key_names(&listed),
        revision,
    )
    .await
}

/// Adds `nick` to the index entry at `fp_key`.
async fn index_add(buckets: &Buckets, fp_key: &str, nick: &Nick) -> Result<(), ClusterError> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut names, revision) = read_index(buckets, fp_key).await?;
        if names.contains(nick) {
            return Ok(());
        }
        names.push(nick.clone());
        let value = wire::encode_key_names(&names);
        if compare_and_set(&buckets.ident, fp_key, value, revision).await? {
            return Ok(());
        }
    }
    Err(ClusterError::Contention("a key's index entry"))
}

/// Records a login of `identity` (read at `revision`) at `now_ms`; a concurrent write wins.
async fn seen(
    buckets: &Buckets,
    name_key: &str,
    mut identity: Identity,
    revision: u64,
    now_ms: u64,
) -> Result<(), ClusterError> {
    if identity.last_seen_ms < now_ms {
        identity.last_seen_ms = now_ms;
        let value = wire::encode_identity(&identity);
        compare_and_set(&buckets.ident, name_key, value, Some(revision)).await?;
    }
    Ok(())
}

/// Trust on first use: binds a free name to `key`, confirms a key pending on the name, and
/// records the login; `key.added_ms` is now.
pub(crate) async fn claim(
    buckets: &Buckets,
    nick: &Nick,
    key: &IdentityKey,
    sharing: KeySharing,
) -> Result<Claim, ClusterError> {
    let now_ms = key.added_ms;
    let name_key = identity_key(nick);
    let fp_key = index_key(&key.fingerprint);
    let mut indexed = false;
    for _ in 0..MAX_ATTEMPTS {
        let bound = read_identity(buckets, &name_key).await?;
        if let Some((identity, revision)) = &bound {
            if identity.holds(&key.fingerprint) {
                seen(buckets, &name_key, identity.clone(), *revision, now_ms).await?;
                return Ok(Claim::Yours);
            }
            if !identity.awaits(&key.fingerprint, now_ms) {
                if indexed {
                    unindex(buckets, &fp_key, nick).await?;
                }
                let first = identity.keys.iter().find(|k| !k.pending);
                return Ok(Claim::Taken(
                    first.map(|k| k.fingerprint.clone()).unwrap_or_default(),
                ));
            }
        }
        let (names, index_revision) = read_index(buckets, &fp_key).await?;
        let (holders, waiting) = key_names(buckets, &names, nick, &key.fingerprint, now_ms).await?;
        if sharing == KeySharing::OneNamePerKey
            && let Some(holder) = holders.first()
        {
            if indexed {
                unindex(buckets, &fp_key, nick).await?;
            }
            return Ok(Claim::KeyHoldsName(holder.clone()));
        }
        let spelling = bound.as_ref().map_or(nick, |(i, _)| &i.nick).clone();
        let listed = [holders, waiting.clone()].concat();
        if !index_as(buckets, &fp_key, &names, index_revision, listed, &spelling).await? {
            continue;
        }
        indexed = true;
        let (identity, revision, outcome) = match bound {
            Some((mut identity, revision)) => {
                for k in identity
                    .keys
                    .iter_mut()
                    .filter(|k| k.fingerprint == key.fingerprint)
                {
                    k.pending = false;
                }
                identity.last_seen_ms = now_ms;
                (identity, Some(revision), Claim::Confirmed)
            }
            None => (
                Identity {
                    nick: nick.clone(),
                    keys: vec![IdentityKey {
                        pending: false,
                        ..key.clone()
                    }],
                    last_seen_ms: now_ms,
                    renamed_ms: 0,
                },
                None,
                Claim::Bound,
            ),
        };
        let value = wire::encode_identity(&identity);
        if compare_and_set(&buckets.ident, &name_key, value, revision).await? {
            if outcome == Claim::Bound {
                // The key's holder wins over whoever added it, pending, to their own name.
                for other in &waiting {
                    drop_pending(buckets, other, &key.fingerprint).await?;
                }
            }
            return Ok(outcome);
        }
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// Removes the pending key `fingerprint` from `nick`, and `nick` from the key's index entry.
async fn drop_pending(
    buckets: &Buckets,
    nick: &Nick,
    fingerprint: &str,
) -> Result<(), ClusterError> {
    let name_key = identity_key(nick);
    for _ in 0..MAX_ATTEMPTS {
        let Some((mut identity, revision)) = read_identity(buckets, &name_key).await? else {
            return Ok(());
        };
        let before = identity.keys.len();
        identity
            .keys
            .retain(|k| !(k.pending && k.fingerprint == fingerprint));
        if identity.keys.len() == before {
            return Ok(());
        }
        let value = wire::encode_identity(&identity);
        if compare_and_set(&buckets.ident, &name_key, value, Some(revision)).await? {
            return unindex(buckets, &index_key(fingerprint), nick).await;
        }
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// `/key add`: stores `key` as pending on the bound name `nick`; `key.added_ms` is now.
pub(crate) async fn add_key(
    buckets: &Buckets,
    nick: &Nick,
    key: &IdentityKey,
    sharing: KeySharing,
) -> Result<KeyAdded, ClusterError> {
    let now_ms = key.added_ms;
    let name_key = identity_key(nick);
    let fp_key = index_key(&key.fingerprint);
    for _ in 0..MAX_ATTEMPTS {
        let Some((mut identity, revision)) = read_identity(buckets, &name_key).await? else {
            return Ok(KeyAdded::NameFree);
        };
        if identity.holds(&key.fingerprint) {
            return Ok(KeyAdded::Active);
        }
        let (names, _) = read_index(buckets, &fp_key).await?;
        let (holders, _) = key_names(buckets, &names, nick, &key.fingerprint, now_ms).await?;
        if sharing == KeySharing::OneNamePerKey && !holders.is_empty() {
            return Ok(KeyAdded::KeyHoldsName);
        }
        identity.keys.retain(|k| !k.expired_at(now_ms));
        let outcome = if let Some(waiting) = identity
            .keys
            .iter_mut()
            .find(|k| k.fingerprint == key.fingerprint)
        {
            waiting.added_ms = now_ms;
            KeyAdded::StillPending
        } else if identity.keys.len() >= MAX_KEYS_PER_NAME {
            return Ok(KeyAdded::TooManyKeys);
        } else {
            identity.keys.push(IdentityKey {
                pending: true,
                ..key.clone()
            });
            KeyAdded::Pending
        };
        index_add(buckets, &fp_key, &identity.nick).await?;
        let value = wire::encode_identity(&identity);
        if compare_and_set(&buckets.ident, &name_key, value, Some(revision)).await? {
            return Ok(outcome);
        }
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// `/nick`: moves every key of `from` to the free name `to`, unless `from` was renamed less
/// than `cooldown_ms` before `now_ms`. The new record is created first, then the old one
/// deleted at the revision read; if the old one changed meanwhile, the new one is taken back
/// and the rename tried again.
pub(crate) async fn rename(
    buckets: &Buckets,
    from: &Nick,
    to: &Nick,
    now_ms: u64,
    cooldown_ms: u64,
) -> Result<Rename, ClusterError> {
    let (from_key, to_key) = (identity_key(from), identity_key(to));
    let same = from_key == to_key;
    for _ in 0..MAX_ATTEMPTS {
        let Some((identity, revision)) = read_identity(buckets, &from_key).await? else {
            return Ok(Rename::NotBound);
        };
        let next_ms = identity.renamed_ms.saturating_add(cooldown_ms);
        if identity.renamed_ms != 0 && now_ms < next_ms {
            return Ok(Rename::TooSoon(next_ms));
        }
        let renamed = Identity {
            nick: to.clone(),
            last_seen_ms: now_ms,
            renamed_ms: now_ms,
            ..identity.clone()
        };
        let value = wire::encode_identity(&renamed);
        if same {
            if compare_and_set(&buckets.ident, &from_key, value, Some(revision)).await? {
                return Ok(Rename::Renamed);
            }
            continue;
        }
        for key in &identity.keys {
            index_add(buckets, &index_key(&key.fingerprint), to).await?;
        }
        if !compare_and_set(&buckets.ident, &to_key, value, None).await? {
            return Ok(Rename::Taken);
        }
        if delete_at(&buckets.ident, &from_key, revision).await? {
            for key in &identity.keys {
                unindex(buckets, &index_key(&key.fingerprint), from).await?;
            }
            return Ok(Rename::Renamed);
        }
        release(buckets, to).await?;
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// Frees every name last seen before `unused_before_ms`. A record without a last-seen time
/// (written before there were any) gets `now_ms` instead: its unused time counts from now.
pub(crate) async fn expire(
    buckets: &Buckets,
    unused_before_ms: u64,
    now_ms: u64,
) -> Result<Vec<Nick>, ClusterError> {
    let mut expired = Vec::new();
    for key in keys(&buckets.ident).await? {
        if !key.starts_with("nick.") {
            continue;
        }
        let Some((mut identity, revision)) = read_identity(buckets, &key).await? else {
            continue;
        };
        if identity.last_seen_ms == 0 {
            identity.last_seen_ms = now_ms;
            let value = wire::encode_identity(&identity);
            compare_and_set(&buckets.ident, &key, value, Some(revision)).await?;
        } else if identity.last_seen_ms < unused_before_ms
            && delete_at(&buckets.ident, &key, revision).await?
        {
            for held in &identity.keys {
                unindex(buckets, &index_key(&held.fingerprint), &identity.nick).await?;
            }
            expired.push(identity.nick);
        }
    }
    Ok(expired)
}

/// Drops `nick` from the index entry at `fp_key`.
async fn unindex(buckets: &Buckets, fp_key: &str, nick: &Nick) -> Result<(), ClusterError> {
    for _ in 0..MAX_ATTEMPTS {
        let (names, revision) = read_index(buckets, fp_key).await?;
        let Some(revision) = revision.filter(|_| names.contains(nick)) else {
            return Ok(());
        };
        let rest: Vec<Nick> = names.into_iter().filter(|n| n != nick).collect();
        let done = if rest.is_empty() {
            delete_at(&buckets.ident, fp_key, revision).await?
        } else {
            let value = wire::encode_key_names(&rest);
            compare_and_set(&buckets.ident, fp_key, value, Some(revision)).await?
        };
        if done {
            return Ok(());
        }
    }
    Err(ClusterError::Contention("a key's index entry"))
}

/// Removes one key of `nick`, unless it is the last.
pub(crate) async fn remove_key(
    buckets: &Buckets,
    nick: &Nick,
    fingerprint: &str,
) -> Result<bool, ClusterError> {
    let name_key = identity_key(nick);
    for _ in 0..MAX_ATTEMPTS {
        let Some((mut identity, revision)) = read_identity(buckets, &name_key).await? else {
            return Ok(false);
        };
        let active = identity.keys.iter().filter(|k| !k.pending).count();
        let Some(removed) = identity.keys.iter().find(|k| k.fingerprint == fingerprint) else {
            return Ok(false);
        };
        if !removed.pending && active <= 1 {
            return Ok(false);
        }
        identity.keys.retain(|k| k.fingerprint != fingerprint);
        let value = wire::encode_identity(&identity);
        if compare_and_set(&buckets.ident, &name_key, value, Some(revision)).await? {
            unindex(buckets, &index_key(fingerprint), nick).await?;
            return Ok(true);
        }
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// Frees `nick` and all its keys.
pub(crate) async fn release(buckets: &Buckets, nick: &Nick) -> Result<bool, ClusterError> {
    let name_key = identity_key(nick);
    for _ in 0..MAX_ATTEMPTS {
        let Some((identity, revision)) = read_identity(buckets, &name_key).await? else {
            return Ok(false);
        };
        if delete_at(&buckets.ident, &name_key, revision).await? {
            for key in &identity.keys {
                unindex(buckets, &index_key(&key.fingerprint), nick).await?;
            }
            return Ok(true);
        }
    }
    Err(ClusterError::Contention("a name's binding"))
}

/// Every bound identity, sorted by name.
pub(crate) async fn identities(buckets: &Buckets) -> Result<Vec<Identity>, ClusterError> {
    let mut identities = Vec::new();
    for key in keys(&buckets.ident).await? {
        if key.starts_with("nick.")
            && let Some((identity, _)) = read_identity(buckets, &key).await?
        {
            identities.push(identity);
        }
    }
    identities.sort_by_key(|i| i.nick.key());
    Ok(identities)
}

fn ban_key(fingerprint: &str) -> String {
    hex(fingerprint.as_bytes())
}

/// Bans keys, replacing earlier bans of the same keys.
pub(crate) async fn ban(buckets: &Buckets, bans: &[Ban]) -> Result<(), ClusterError> {
    for ban in bans {
        buckets
            .bans
            .put(ban_key(&ban.fingerprint), wire::encode_ban(ban).into())
            .await
            .map_err(|e| ClusterError::nats("store a ban", e))?;
    }
    Ok(())
}

/// Every stored ban, oldest first.
async fn all_bans(buckets: &Buckets) -> Result<Vec<Ban>, ClusterError> {
    let mut bans = Vec::new();
    for key in keys(&buckets.bans).await? {
        if let Some(c) = current(&buckets.bans, &key).await? {
            bans.push(wire::decode_ban(&c.value).map_err(record("ban"))?);
        }
    }
    bans.sort_by(|a, b| (a.since_ms, &a.fingerprint).cmp(&(b.since_ms, &b.fingerprint)));
    Ok(bans)
}

async fn delete_ban(buckets: &Buckets, fingerprint: &str) -> Result<(), ClusterError> {
    buckets
        .bans
        .delete(ban_key(fingerprint))
        .await
        .map_err(|e| ClusterError::nats("delete a ban", e))
}

/// The bans in force at `now_ms`, oldest first.
pub(crate) async fn bans(buckets: &Buckets, now_ms: u64) -> Result<Vec<Ban>, ClusterError> {
    let mut bans = all_bans(buckets).await?;
    bans.retain(|b| b.active_at(now_ms));
    Ok(bans)
}

/// The ban of one key in force at `now_ms`.
pub(crate) async fn ban_of(
    buckets: &Buckets,
    fingerprint: &str,
    now_ms: u64,
) -> Result<Option<Ban>, ClusterError> {
    let Some(c) = current(&buckets.bans, &ban_key(fingerprint)).await? else {
        return Ok(None);
    };
    let ban = wire::decode_ban(&c.value).map_err(record("ban"))?;
    Ok(Some(ban).filter(|b| b.active_at(now_ms)))
}

/// Lifts the bans of a fingerprint, or of every key banned under a name.
pub(crate) async fn unban(buckets: &Buckets, who: &str) -> Result<Vec<Ban>, ClusterError> {
    let mut lifted = bans(buckets, 0).await?;
    lifted.retain(|b| b.fingerprint == who || b.nick.as_str().eq_ignore_ascii_case(who));
    for ban in &lifted {
        delete_ban(buckets, &ban.fingerprint).await?;
    }
    Ok(lifted)
}

/// Deletes the bans that ended before `before_ms`.
pub(crate) async fn purge_bans(buckets: &Buckets, before_ms: u64) -> Result<(), ClusterError> {
    for ban in all_bans(buckets).await? {
        if ban.until_ms.is_some_and(|until| until < before_ms) {
            delete_ban(buckets, &ban.fingerprint).await?;
        }
    }
    Ok(())
}

/// Sets a room's topic.
pub(crate) async fn set_topic(buckets: &Buckets, topic: &Topic) -> Result<(), ClusterError> {
    buckets
        .topics
        .put(
            wire::channel_token(&topic.room),
            wire::encode_topic(topic).into(),
        )
        .await
        .map(drop)
        .map_err(|e| ClusterError::nats("store a topic", e))
}

/// A room's topic.
pub(crate) async fn topic(
    buckets: &Buckets,
    room: &ChannelName,
) -> Result<Option<Topic>, ClusterError> {
    let Some(c) = current(&buckets.topics, &wire::channel_token(room)).await? else {
        return Ok(None);
    };
    let topic = wire::decode_topic(&c.value).map_err(record("topic"))?;
    Ok(Some(topic).filter(|t| &t.room == room))
}

/// Deletes a room's topic, if it has one.
pub(crate) async fn delete_topic(
    buckets: &Buckets,
    room: &ChannelName,
) -> Result<(), ClusterError> {
    let key = wire::channel_token(room);
    if current(&buckets.topics, &key).await?.is_some() {
        buckets
            .topics
            .delete(&key)
            .await
            .map_err(|e| ClusterError::nats("delete a topic", e))?;
    }
    Ok(())
}

/// Stores a private message from a session on node `node`; its id is its stream sequence.
pub(crate) async fn send_private(
    js: &jetstream::Context,
    ids: &MessageIds,
    node: &str,
    message: PrivateMessage,
    unread: bool,
) -> Result<PrivateMessage, ClusterError> {
    let flag = if unread { "1" } else { "0" };
    let stored = Message::new(
        wire::private_subject(&message.to),
        [
            (UNREAD_HEADER, flag.to_owned()),
            (wire::ORIGIN_HEADER, node.to_owned()),
        ],
        wire::encode_private(&message).into(),
        ids,
    );
    let ack = publish_stored(js, &stored).await?;
    Ok(PrivateMessage {
        id: ack.sequence,
        ..message
    })
}

/// The private messages `nick` has not seen, oldest first, marking them seen: the pointer in
/// `kanava_pm_seen` moves past them by compare-and-set, so two sessions taking at once never
/// both get one.
pub(crate) async fn take_unread(
    stream: &Stream,
    buckets: &Buckets,
    nick: &Nick,
) -> Result<Vec<PrivateMessage>, ClusterError> {
    let key = hex(nick.key().as_bytes());
    let subject = wire::private_subject(nick);
    for _ in 0..MAX_ATTEMPTS {
        let (seen, revision) = match current(&buckets.pm_seen, &key).await? {
            Some(c) => (
                wire::decode_seen(&c.value).map_err(record("read pointer"))?,
                Some(c.revision),
            ),
            None => (0, None),
        };
        let until = match last_sequence(stream, &subject).await? {
            Some(last) if last > seen => last,
            _ => return Ok(Vec::new()),
        };
        let (mut newest, mut unread) = (seen, Vec::new());
        scan(stream, subject.clone(), seen + 1, until, |stored| {
            let seq = stored.seq;
            newest = seq;
            if stored.header_pairs().contains(&(UNREAD_HEADER, "1")) {
                match wire::decode_private(&stored.payload, seq) {
                    Ok(pm) => unread.push(pm),
                    Err(error) => tracing::warn!(seq, %error, "dropped a stored private message"),
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        if newest == seen {
            return Ok(Vec::new());
        }
        let value = wire::encode_seen(newest);
        if compare_and_set(&buckets.pm_seen, &key, value, revision).await? {
            return Ok(unread);
        }
    }
    Err(ClusterError::Contention("a read pointer"))
}

/// Deletes the private messages sent before `before_ms` (oldest first, up to the first one
/// that is not older).
pub(crate) async fn purge_private(stream: &Stream, before_ms: u64) -> Result<(), ClusterError> {
    let mut last_old = 0;
    let until = last_stored(stream, "read the private-message stream's state").await?;
    scan(stream, format!("{PRIVATE_PREFIX}>"), 1, until, |stored| {
        let time_ms = wire::decode_private(&stored.payload, stored.seq)
            .map_or(stored.time_ms, |pm| pm.time_ms);
        if time_ms >= before_ms {
            return ControlFlow::Break(());
        }
        last_old = stored.seq;
        ControlFlow::Continue(())
    })
    .await?;
    if last_old > 0 {
        stream
            .purge()
            .sequence(last_old + 1)
            .await
            .map_err(|e| ClusterError::nats("purge old private messages", e))?;
    }
    Ok(())
}
