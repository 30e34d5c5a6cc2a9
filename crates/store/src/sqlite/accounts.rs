//! The SSH chat's records in SQLite: names and their keys, private messages, bans and topics.
//! Each function runs inside the writer's transaction, so a check and the write it guards are
//! atomic.

use kanava_core::{
    Ban, ChannelName, Claim, Identity, IdentityKey, KeyAdded, KeySharing, MAX_KEYS_PER_NAME, Nick,
    PENDING_KEY_TTL_MS, PrivateMessage, Rename, Topic,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::StoreError;

/// The tables of this module.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity_key (
    nick_key TEXT NOT NULL,
    nick TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    added_ms INTEGER NOT NULL,
    pending INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (nick_key, fingerprint)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_key_by_fingerprint ON identity_key (fingerprint);
CREATE TABLE IF NOT EXISTS identity_name (
    nick_key TEXT PRIMARY KEY,
    last_seen_ms INTEGER NOT NULL,
    renamed_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_name_by_last_seen ON identity_name (last_seen_ms);
CREATE TABLE IF NOT EXISTS private_message (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    body TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    unread INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS private_message_unread ON private_message (recipient_key) WHERE unread;
CREATE INDEX IF NOT EXISTS private_message_by_time ON private_message (time_ms);
CREATE TABLE IF NOT EXISTS ban (
    fingerprint TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    by_nick TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    until_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topic (
    channel TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Moves the one-key-per-name table of schema 2 into `identity_key`.
pub(super) fn migrate_identities(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let old: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'identity'",
        [],
        |row| row.get(0),
    )?;
    if old {
        tx.execute_batch(
            "INSERT OR IGNORE INTO identity_key (nick_key, nick, fingerprint, public_key, added_ms)
                 SELECT nick_key, nick, fingerprint, public_key, bound_ms FROM identity;
             DROP TABLE identity;",
        )?;
    }
    Ok(())
}

/// Brings the name tables of schema 4 to schema 5: keys get the `pending` flag (existing keys
/// are active), and every bound name a last-seen time, which for names bound before counts from
/// now (when they were last used is unknown).
pub(super) fn migrate_names(tx: &Transaction<'_>, now_ms: u64) -> rusqlite::Result<()> {
    let has_pending: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('identity_key') WHERE name = 'pending'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_pending {
        tx.execute_batch(
            "ALTER TABLE identity_key ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO identity_name (nick_key, last_seen_ms)
         SELECT DISTINCT nick_key, ?1 FROM identity_key",
        [sql_ms(now_ms)],
    )?;
    Ok(())
}

fn nick(name: String) -> Result<Nick, StoreError> {
    Nick::new(&name).map_err(|_| StoreError::InvalidNick(name))
}

fn ms(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn sql_ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One row of a name's key, with the name's last-seen and rename times.
type KeyRow = (String, String, String, i64, bool, Option<i64>, Option<i64>);

/// Identities from rows of `nick, fingerprint, public_key, added_ms, pending, last_seen_ms,
/// renamed_ms`, sorted by name then age.
fn group(rows: Vec<KeyRow>) -> Result<Vec<Identity>, StoreError> {
    let mut identities: Vec<Identity> = Vec::new();
    for (name, fingerprint, public_key, added_ms, pending, last_seen_ms, renamed_ms) in rows {
        let key = IdentityKey {
            fingerprint,
            public_key,
            added_ms: ms(added_ms),
            pending,
        };
        let name = nick(name)?;
        match identities.last_mut() {
            Some(last) if last.nick == name => last.keys.push(key),
            _ => identities.push(Identity {
                nick: name,
                last_seen_ms: last_seen_ms.map_or(key.added_ms, ms),
                renamed_ms: renamed_ms.map_or(0, ms),
                keys: vec![key],
            }),
        }
    }
    // A name whose keys are all pending is not bound (none can log in).
    identities.retain(|i| i.keys.iter().any(|k| !k.pending));
    Ok(identities)
}

fn select_identities(
    tx: &Transaction<'_>,
    nick_key: Option<&str>,
) -> Result<Vec<Identity>, StoreError> {
    let rows = tx
        .prepare_cached(
            "SELECT k.nick, k.fingerprint, k.public_key, k.added_ms, k.pending,
                    n.last_seen_ms, n.renamed_ms
             FROM identity_key k LEFT JOIN identity_name n ON n.nick_key = k.nick_key
             WHERE ?1 IS NULL OR k.nick_key = ?1 ORDER BY k.nick_key, k.added_ms, k.fingerprint",
        )?
        .query_map([nick_key], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    group(rows)
}

pub(super) fn identity(tx: &Transaction<'_>, nick: &Nick) -> Result<Option<Identity>, StoreError> {
    Ok(select_identities(tx, Some(&nick.key()))?.pop())
}

pub(super) fn identities(tx: &Transaction<'_>) -> Result<Vec<Identity>, StoreError> {
    select_identities(tx, None)
}

/// The other name that `fingerprint` holds as an active key, if any.
fn other_holder(
    tx: &Transaction<'_>,
    name: &Nick,
    fingerprint: &str,
) -> Result<Option<Nick>, StoreError> {
    let other: Option<String> = tx
        .prepare_cached(
            "SELECT nick FROM identity_key
             WHERE fingerprint = ?1 AND nick_key != ?2 AND NOT pending LIMIT 1",
        )?
        .query_row(params![fingerprint, name.key()], |row| row.get(0))
        .optional()?;
    other.map(nick).transpose()
}

/// Drops the pending keys that waited too long, of `name` and of `fingerprint`.
fn drop_expired(
    tx: &Transaction<'_>,
    name: &Nick,
    fingerprint: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "DELETE FROM identity_key WHERE pending AND added_ms <= ?3
         AND (nick_key = ?1 OR fingerprint = ?2)",
    )?
    .execute(params![
        name.key(),
        fingerprint,
        sql_ms(now_ms.saturating_sub(PENDING_KEY_TTL_MS))
    ])?;
    Ok(())
}

/// Records that `name` logged in at `now_ms`.
fn seen(tx: &Transaction<'_>, name: &Nick, now_ms: u64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO identity_name (nick_key, last_seen_ms) VALUES (?1, ?2)
         ON CONFLICT (nick_key) DO UPDATE
         SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    )?
    .execute(params![name.key(), sql_ms(now_ms)])?;
    Ok(())
}

/// Trust on first use, on the writer thread so two claims never both win: binds a free name,
/// confirms a key pending on the name, and records the login; `key.added_ms` is now.
pub(super) fn claim(
    tx: &Transaction<'_>,
    name: &Nick,
    key: &IdentityKey,
    sharing: KeySharing,
) -> Result<Claim, StoreError> {
    let now_ms = key.added_ms;
    drop_expired(tx, name, &key.fingerprint, now_ms)?;
    if let Some(bound) = identity(tx, name)? {
        if bound.holds(&key.fingerprint) {
            seen(tx, name, now_ms)?;
            return Ok(Claim::Yours);
        }
        if !bound.awaits(&key.fingerprint, now_ms) {
            let first = bound.keys.iter().find(|k| !k.pending);
            return Ok(Claim::Taken(
                first.map(|k| k.fingerprint.clone()).unwrap_or_default(),
            ));
        }
        if sharing == KeySharing::OneNamePerKey
            && let Some(other) = other_holder(tx, name, &key.fingerprint)?
        {
            return Ok(Claim::KeyHoldsName(other));
        }
        tx.prepare_cached(
            "UPDATE identity_key SET pending = 0 WHERE nick_key = ?1 AND fingerprint = ?2",
        )?
        .execute(params![name.key(), key.fingerprint])?;
        seen(tx, name, now_ms)?;
        return Ok(Claim::Confirmed);
    }
    if sharing == KeySharing::OneNamePerKey
        && let Some(other) = other_holder(tx, name, &key.fingerprint)?
    {
        return Ok(Claim::KeyHoldsName(other));
    }
    // The key's holder wins over anyone who added it, pending, to their own name.
    tx.prepare_cached("DELETE FROM identity_key WHERE fingerprint = ?1 AND pending")?
        .execute([&key.fingerprint])?;
    tx.prepare_cached("DELETE FROM identity_key WHERE nick_key = ?1")?
        .execute([name.key()])?;
    tx.prepare_cached(
        "INSERT INTO identity_key (nick_key, nick, fingerprint, public_key, added_ms, pending)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    )?
    .execute(params![
        name.key(),
        name.as_str(),
        key.fingerprint,
        key.public_key,
        sql_ms(key.added_ms),
    ])?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO identity_name (nick_key, last_seen_ms, renamed_ms)
         VALUES (?1, ?2, 0)",
    )?
    .execute(params![name.key(), sql_ms(now_ms)])?;
    Ok(Claim::Bound)
}

/// `/key add`: stores `key` as pending on a bound name; `key.added_ms` is now.
pub(super) fn add_key(
    tx: &Transaction<'_>,
    name: &Nick,
    key: &IdentityKey,
    sharing: KeySharing,
) -> Result<KeyAdded, StoreError> {
    let now_ms = key.added_ms;
    drop_expired(tx, name, &key.fingerprint, now_ms)?;
    let Some(bound) = identity(tx, name)? else {
        return Ok(KeyAdded::NameFree);
    };
    if bound.holds(&key.fingerprint) {
        return Ok(KeyAdded::Active);
    }
    if sharing == KeySharing::OneNamePerKey && other_holder(tx, name, &key.fingerprint)?.is_some() {
        return Ok(KeyAdded::KeyHoldsName);
    }
    if bound.awaits(&key.fingerprint, now_ms) {
        tx.prepare_cached(
            "UPDATE identity_key SET added_ms = ?3 WHERE nick_key = ?1 AND fingerprint = ?2",
        )?
        .execute(params![name.key(), key.fingerprint, sql_ms(now_ms)])?;
        return Ok(KeyAdded::StillPending);
    }
    if bound.keys.len() >= MAX_KEYS_PER_NAME {
        return Ok(KeyAdded::TooManyKeys);
    }
    tx.prepare_cached(
        "INSERT INTO identity_key (nick_key, nick, fingerprint, public_key, added_ms, pending)
         VALUES (?1, ?2, ?3, ?4, ?5, 1)",
    )?
    .execute(params![
        name.key(),
        bound.nick.as_str(),
        key.fingerprint,
        key.public_key,
        sql_ms(now_ms),
    ])?;
    Ok(KeyAdded::Pending)
}

pub(super) fn remove_key(
    tx: &Transaction<'_>,
    name: &Nick,
    fingerprint: &str,
) -> Result<bool, StoreError> {
    let removed = tx
        .prepare_cached(
            "DELETE FROM identity_key WHERE nick_key = ?1 AND fingerprint = ?2
             AND (pending OR (SELECT count(*) FROM identity_key
                              WHERE nick_key = ?1 AND NOT pending) > 1)",
        )?
        .execute(params![name.key(), fingerprint])?;
    Ok(removed == 1)
}

pub(super) fn release(tx: &Transaction<'_>, name: &Nick) -> Result<bool, StoreError> {
    let bound = identity(tx, name)?.is_some();
    tx.prepare_cached("DELETE FROM identity_key WHERE nick_key = ?1")?
        .execute([name.key()])?;
    tx.prepare_cached("DELETE FROM identity_name WHERE nick_key = ?1")?
        .execute([name.key()])?;
    Ok(bound)
}

/// `/nick`: moves the keys of `from` to the free name `to`, unless `from` was renamed less
/// than `cooldown_ms` before `now_ms`.
pub(super) fn rename(
    tx: &Transaction<'_>,
    from: &Nick,
    to: &Nick,
    now_ms: u64,
    cooldown_ms: u64,
) -> Result<Rename, StoreError> {
    let Some(bound) = identity(tx, from)? else {
        return Ok(Rename::NotBound);
    };
    if from.key() != to.key() && identity(tx, to)?.is_some() {
        return Ok(Rename::Taken);
    }
    let next_ms = bound.renamed_ms.saturating_add(cooldown_ms);
    if bound.renamed_ms != 0 && now_ms < next_ms {
        return Ok(Rename::TooSoon(next_ms));
    }
    // Leftovers under the new name (keys pending there, a stale record) go.
    if from.key() != to.key() {
        release(tx, to)?;
    }
    tx.prepare_cached("UPDATE identity_key SET nick_key = ?2, nick = ?3 WHERE nick_key = ?1")?
        .execute(params![from.key(), to.key(), to.as_str()])?;
    tx.prepare_cached("DELETE FROM identity_name WHERE nick_key = ?1")?
        .execute([from.key()])?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO identity_name (nick_key, last_seen_ms, renamed_ms)
         VALUES (?1, ?2, ?2)",
    )?
    .execute(params![to.key(), sql_ms(now_ms)])?;
    Ok(Rename::Renamed)
}

/// Frees every name last seen before `unused_before_ms`; returns them.
pub(super) fn expire(tx: &Transaction<'_>, unused_before_ms: u64) -> Result<Vec<Nick>, StoreError> {
    let expired: Vec<Nick> = identities(tx)?
        .into_iter()
        .filter(|i| i.last_seen_ms < unused_before_ms)
        .map(|i| i.nick)
        .collect();
    for name in &expired {
        release(tx, name)?;
    }
    Ok(expired)
}

pub(super) fn send_private(
    tx: &Transaction<'_>,
    message: PrivateMessage,
    unread: bool,
) -> Result<PrivateMessage, StoreError> {
    tx.prepare_cached(
        "INSERT INTO private_message (sender, recipient, recipient_key, body, time_ms, unread)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        message.from.as_str(),
        message.to.as_str(),
        message.to.key(),
        message.text,
        sql_ms(message.time_ms),
        unread,
    ])?;
    Ok(PrivateMessage {
        id: ms(tx.last_insert_rowid()),
        ..message
    })
}

pub(super) fn take_unread_private(
    tx: &Transaction<'_>,
    name: &Nick,
) -> Result<Vec<PrivateMessage>, StoreError> {
    let rows = tx
        .prepare_cached(
            "SELECT id, sender, recipient, body, time_ms FROM private_message
             WHERE recipient_key = ?1 AND unread ORDER BY id",
        )?
        .query_map([name.key()], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    tx.prepare_cached("UPDATE private_message SET unread = 0 WHERE recipient_key = ?1 AND unread")?
        .execute([name.key()])?;
    rows.into_iter()
        .map(|(id, from, to, text, time_ms)| {
            Ok(PrivateMessage {
                id: ms(id),
                from: nick(from)?,
                to: nick(to)?,
                text,
                time_ms: ms(time_ms),
            })
        })
        .collect()
}

pub(super) fn ban(tx: &Transaction<'_>, bans: &[Ban]) -> Result<(), StoreError> {
    for ban in bans {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO ban (fingerprint, nick, by_nick, since_ms, until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            ban.fingerprint,
            ban.nick.as_str(),
            ban.by.as_str(),
            sql_ms(ban.since_ms),
            ban.until_ms.map(sql_ms),
        ])?;
    }
    Ok(())
}

/// The bans of one fingerprint, or all, that hold at `now_ms`, oldest first.
pub(super) fn bans(
    tx: &Transaction<'_>,
    fingerprint: Option<&str>,
    now_ms: u64,
) -> Result<Vec<Ban>, StoreError> {
    let rows = tx
        .prepare_cached(
            "SELECT fingerprint, nick, by_nick, since_ms, until_ms FROM ban
             WHERE (?1 IS NULL OR fingerprint = ?1) AND (until_ms IS NULL OR until_ms > ?2)
             ORDER BY since_ms, fingerprint",
        )?
        .query_map(params![fingerprint, sql_ms(now_ms)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(fingerprint, name, by, since_ms, until_ms)| {
            Ok(Ban {
                fingerprint,
                nick: nick(name)?,
                by: nick(by)?,
                since_ms: ms(since_ms),
                until_ms: until_ms.map(ms),
            })
        })
        .collect()
}

pub(super) fn unban(tx: &Transaction<'_>, who: &str) -> Result<Vec<Ban>, StoreError> {
    let lifted: Vec<Ban> = bans(tx, None, 0)?
        .into_iter()
        .filter(|ban| ban.fingerprint == who || ban.nick.as_str().eq_ignore_ascii_case(who))
        .collect();
    for ban in &lifted {
        tx.prepare_cached("DELETE FROM ban WHERE fingerprint = ?1")?
            .execute([&ban.fingerprint])?;
    }
    Ok(lifted)
}

pub(super) fn set_topic(tx: &Transaction<'_>, topic: &Topic) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO topic (channel, body, set_by, set_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        topic.room.as_str(),
        topic.text,
        topic.set_by.as_str(),
        sql_ms(topic.set_ms),
    ])?;
    Ok(())
}

pub(super) fn topic(tx: &Transaction<'_>, room: &ChannelName) -> Result<Option<Topic>, StoreError> {
    let row = tx
        .prepare_cached("SELECT body, set_by, set_ms FROM topic WHERE channel = ?1")?
        .query_row([room.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    row.map(|(text, set_by, set_ms)| {
        Ok(Topic {
            room: room.clone(),
            text,
            set_by: nick(set_by)?,
            set_ms: ms(set_ms),
        })
    })
    .transpose()
}

/// Deletes private messages sent before `before_ms` and bans that ended before it.
pub(super) fn purge(tx: &Transaction<'_>, before_ms: u64) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM private_message WHERE time_ms < ?1")?
        .execute([sql_ms(before_ms)])?;
    tx.prepare_cached("DELETE FROM ban WHERE until_ms IS NOT NULL AND until_ms < ?1")?
        .execute([sql_ms(before_ms)])?;
    Ok(())
}
