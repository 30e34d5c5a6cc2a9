//! The SSH chat's records in SQLite: names and their keys, private messages, bans and topics.
//! Each function runs inside the writer's transaction, so a check and the write it guards are
//! atomic.

use kanava_core::{
    Ban, ChannelName, Claim, Identity, IdentityKey, KeySharing, Nick, PrivateMessage, Topic,
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
    PRIMARY KEY (nick_key, fingerprint)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_key_by_fingerprint ON identity_key (fingerprint);
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

/// Whether a key binding must find the name free or already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Binding {
    /// Trust on first use: bind only a free name.
    FirstUse,
    /// `/key add`: add the key to the name whatever keys it has.
    AddKey,
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

/// Identities from rows of `nick, fingerprint, public_key, added_ms`, sorted by name then age.
fn group(rows: Vec<(String, String, String, i64)>) -> Result<Vec<Identity>, StoreError> {
    let mut identities: Vec<Identity> = Vec::new();
    for (name, fingerprint, public_key, added_ms) in rows {
        let key = IdentityKey {
            fingerprint,
            public_key,
            added_ms: ms(added_ms),
        };
        let name = nick(name)?;
        match identities.last_mut() {
            Some(last) if last.nick == name => last.keys.push(key),
            _ => identities.push(Identity {
                nick: name,
                keys: vec![key],
            }),
        }
    }
    Ok(identities)
}

fn select_identities(
    tx: &Transaction<'_>,
    nick_key: Option<&str>,
) -> Result<Vec<Identity>, StoreError> {
    let rows = tx
        .prepare_cached(
            "SELECT nick, fingerprint, public_key, added_ms FROM identity_key
             WHERE ?1 IS NULL OR nick_key = ?1 ORDER BY nick_key, added_ms, fingerprint",
        )?
        .query_map([nick_key], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
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

/// Binds `key` to `nick` under `binding`, on the writer thread, so two claims never both win.
pub(super) fn bind_key(
    tx: &Transaction<'_>,
    name: &Nick,
    key: &IdentityKey,
    sharing: KeySharing,
    binding: Binding,
) -> Result<Claim, StoreError> {
    if let Some(bound) = identity(tx, name)? {
        if bound.holds(&key.fingerprint) {
            return Ok(Claim::Yours);
        }
        if binding == Binding::FirstUse {
            return Ok(Claim::Taken(bound.keys[0].fingerprint.clone()));
        }
    }
    if sharing == KeySharing::OneNamePerKey {
        let other: Option<String> = tx
            .prepare_cached(
                "SELECT nick FROM identity_key WHERE fingerprint = ?1 AND nick_key != ?2",
            )?
            .query_row(params![key.fingerprint, name.key()], |row| row.get(0))
            .optional()?;
        if let Some(other) = other {
            return Ok(Claim::KeyHoldsName(nick(other)?));
        }
    }
    // A name keeps the spelling of its first binding.
    let spelling: Option<String> = tx
        .prepare_cached("SELECT nick FROM identity_key WHERE nick_key = ?1 LIMIT 1")?
        .query_row([name.key()], |row| row.get(0))
        .optional()?;
    tx.prepare_cached(
        "INSERT INTO identity_key (nick_key, nick, fingerprint, public_key, added_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        name.key(),
        spelling.as_deref().unwrap_or(name.as_str()),
        key.fingerprint,
        key.public_key,
        sql_ms(key.added_ms),
    ])?;
    Ok(Claim::Bound)
}

pub(super) fn remove_key(
    tx: &Transaction<'_>,
    name: &Nick,
    fingerprint: &str,
) -> Result<bool, StoreError> {
    let removed = tx
        .prepare_cached(
            "DELETE FROM identity_key WHERE nick_key = ?1 AND fingerprint = ?2
             AND (SELECT count(*) FROM identity_key WHERE nick_key = ?1) > 1",
        )?
        .execute(params![name.key(), fingerprint])?;
    Ok(removed == 1)
}

pub(super) fn release(tx: &Transaction<'_>, name: &Nick) -> Result<bool, StoreError> {
    let removed = tx
        .prepare_cached("DELETE FROM identity_key WHERE nick_key = ?1")?
        .execute([name.key()])?;
    Ok(removed > 0)
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
