//! The [`Store`] trait's contract: names and keys, private messages, bans and topics as every
//! implementation must keep them, run by every implementation's tests.
//!
//! Each function is one behaviour and panics where the store under test breaks it; a test calls
//! it with a fresh, empty store. Functions that take `other` read through a second handle on the
//! same data as well: another node of a cluster, or `store` itself where there is only one. The
//! module is compiled for this crate's tests and, with the `contract` feature, for other crates'.

use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Claim, Entry, FrameKind, IdentityKey, KeyAdded, KeySharing, NewEntry, Nick,
    PENDING_KEY_TTL_MS, PrivateMessage, Rename, Topic, Uid,
};

use crate::{Pending, Store};

/// A key with this fingerprint, added at 7 ms.
pub(crate) fn key(fingerprint: &str) -> IdentityKey {
    IdentityKey {
        fingerprint: fingerprint.into(),
        public_key: format!("ssh-ed25519 AAAA{fingerprint}"),
        added_ms: 7,
        pending: false,
    }
}

/// A key with this fingerprint, presented at `now_ms`.
pub(crate) fn key_at(fingerprint: &str, now_ms: u64) -> IdentityKey {
    IdentityKey {
        added_ms: now_ms,
        ..key(fingerprint)
    }
}

/// The name `name`, which must be valid.
pub(crate) fn nick(name: &str) -> Nick {
    Nick::new(name).unwrap()
}

/// Claims `name` for the key `fingerprint`, one name per key.
pub(crate) fn claim(store: &dyn Store, name: &str, fingerprint: &str) -> Pending<Claim> {
    store.claim_identity(nick(name), key(fingerprint), KeySharing::OneNamePerKey)
}

/// A name is bound by its first claim whatever its case, keeps its first spelling, is listed in
/// name order and, once released, is free again along with its key; `other` sees the claims
/// made through `store`.
pub async fn names_bind_on_first_use_are_listed_and_released(store: &dyn Store, other: &dyn Store) {
    assert_eq!(store.identity(nick("alice")).await.unwrap(), None);
    assert_eq!(
        claim(store, "Alice", "SHA256:a").await.unwrap(),
        Claim::Bound
    );
    assert_eq!(
        claim(store, "alice", "SHA256:a").await.unwrap(),
        Claim::Yours
    );
    assert_eq!(
        claim(other, "ALICE", "SHA256:b").await.unwrap(),
        Claim::Taken("SHA256:a".into())
    );
    let bound = other.identity(nick("alice")).await.unwrap().unwrap();
    assert_eq!((bound.nick.as_str(), bound.bound_ms()), ("Alice", 7));

    claim(other, "carol", "SHA256:c").await.unwrap();
    claim(other, "Bob", "SHA256:bob").await.unwrap();
    let names: Vec<String> = other
        .identities()
        .await
        .unwrap()
        .iter()
        .map(|i| i.nick.to_string())
        .collect();
    assert_eq!(names, ["Alice", "Bob", "carol"]);
    assert!(other.release_identity(nick("bob")).await.unwrap());
    assert!(!other.release_identity(nick("bob")).await.unwrap());
    assert_eq!(
        claim(other, "bob", "SHA256:new").await.unwrap(),
        Claim::Bound,
        "a released name is free again"
    );
    assert_eq!(
        claim(other, "robert", "SHA256:bob").await.unwrap(),
        Claim::Bound,
        "a released name's key is free again"
    );
}

/// A key holds one name unless the claim allows sharing (a key holding several is refused
/// another, naming any one of them), a name may hold several keys, and its last key cannot be
/// removed.
pub async fn a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys(
    store: &dyn Store,
) {
    assert_eq!(
        claim(store, "alice", "SHA256:a").await.unwrap(),
        Claim::Bound
    );
    assert_eq!(
        claim(store, "alias", "SHA256:a").await.unwrap(),
        Claim::KeyHoldsName(nick("alice"))
    );
    let shared = store
        .claim_identity(nick("alias"), key("SHA256:a"), KeySharing::ManyNamesPerKey)
        .await
        .unwrap();
    assert_eq!(shared, Claim::Bound);
    let third = claim(store, "third", "SHA256:a").await.unwrap();
    assert!(
        [nick("alice"), nick("alias")]
            .map(Claim::KeyHoldsName)
            .contains(&third),
        "names bound with sharing on still count: {third:?}"
    );
    let add = |fp: &str| store.add_key(nick("ALICE"), key(fp), KeySharing::OneNamePerKey);
    assert_eq!(add("SHA256:a2").await.unwrap(), KeyAdded::Pending);
    assert_eq!(add("SHA256:a2").await.unwrap(), KeyAdded::StillPending);
    assert_eq!(
        claim(store, "alice", "SHA256:a2").await.unwrap(),
        Claim::Confirmed,
        "a pending key becomes active at its first login"
    );
    assert_eq!(add("SHA256:a2").await.unwrap(), KeyAdded::Active);
    claim(store, "bob", "SHA256:b").await.unwrap();
    assert_eq!(add("SHA256:b").await.unwrap(), KeyAdded::KeyHoldsName);
    let alice = store.identity(nick("alice")).await.unwrap().unwrap();
    assert_eq!(alice.nick.as_str(), "alice", "the first spelling is kept");
    assert!(alice.holds("SHA256:a") && alice.holds("SHA256:a2"));
    assert_eq!(
        claim(store, "alice", "SHA256:a2").await.unwrap(),
        Claim::Yours
    );
    let remove = |fp: &str| store.remove_key(nick("alice"), fp.to_owned());
    assert!(remove("SHA256:a").await.unwrap());
    assert!(!remove("SHA256:a").await.unwrap(), "already gone");
    assert!(!remove("SHA256:a2").await.unwrap(), "the last key stays");
    assert_eq!(
        claim(store, "alice", "SHA256:a").await.unwrap(),
        Claim::Taken("SHA256:a2".into())
    );
    assert!(store.release_identity(nick("alias")).await.unwrap());
    assert_eq!(
        claim(store, "other", "SHA256:a").await.unwrap(),
        Claim::Bound,
        "a key that lost all its names may take another"
    );
    let added = store
        .add_key(nick("fresh"), key("SHA256:f"), KeySharing::OneNamePerKey)
        .await
        .unwrap();
    assert_eq!(
        added,
        KeyAdded::NameFree,
        "adding a key never binds a free name"
    );
    assert_eq!(store.identity(nick("fresh")).await.unwrap(), None);
}

/// A key added by someone else (`/key add` without holding it) stays pending: it cannot log in
/// under the adder's name without its holder, does not count as holding that name, and its
/// holder binding a name of their own drops it. Pending keys can be removed, and expire.
pub async fn a_pending_key_never_locks_its_holder_out(store: &dyn Store, other: &dyn Store) {
    claim(store, "mallory", "SHA256:m").await.unwrap();
    let add = |fp: &str, now_ms| {
        store.add_key(
            nick("mallory"),
            key_at(fp, now_ms),
            KeySharing::OneNamePerKey,
        )
    };
    assert_eq!(add("SHA256:victim", 10).await.unwrap(), KeyAdded::Pending);
    let mallory = other.identity(nick("mallory")).await.unwrap().unwrap();
    assert!(!mallory.holds("SHA256:victim") && mallory.awaits("SHA256:victim", 10));
    assert_eq!(
        claim(other, "victim", "SHA256:victim").await.unwrap(),
        Claim::Bound,
        "the key's holder binds a name of their own"
    );
    let mallory = store.identity(nick("mallory")).await.unwrap().unwrap();
    assert_eq!(
        mallory.keys.len(),
        1,
        "the pending entry was dropped: {mallory:?}"
    );
    assert_eq!(
        claim(store, "mallory", "SHA256:victim").await.unwrap(),
        Claim::Taken("SHA256:m".into())
    );

    assert_eq!(add("SHA256:x", 20).await.unwrap(), KeyAdded::Pending);
    assert!(
        store
            .remove_key(nick("mallory"), "SHA256:x".into())
            .await
            .unwrap()
    );
    assert_eq!(add("SHA256:y", 20).await.unwrap(), KeyAdded::Pending);
    let late = key_at("SHA256:y", 20 + PENDING_KEY_TTL_MS);
    assert_eq!(
        store
            .claim_identity(nick("mallory"), late, KeySharing::OneNamePerKey)
            .await
            .unwrap(),
        Claim::Taken("SHA256:m".into()),
        "a pending key expires"
    );
    let mut too_many = Vec::new();
    for i in 0..kanava_core::MAX_KEYS_PER_NAME {
        too_many.push(add(&format!("SHA256:k{i}"), 30).await.unwrap());
    }
    assert_eq!(
        too_many.last(),
        Some(&KeyAdded::TooManyKeys),
        "{too_many:?}"
    );
}

/// Every login records the name's last-seen time; names unused since a time are freed with
/// their keys, the others kept.
pub async fn names_unused_expire(store: &dyn Store, other: &dyn Store) {
    let login = |name: &str, fp: &str, now_ms| {
        store.claim_identity(nick(name), key_at(fp, now_ms), KeySharing::OneNamePerKey)
    };
    assert_eq!(login("old", "SHA256:o", 100).await.unwrap(), Claim::Bound);
    assert_eq!(login("used", "SHA256:u", 100).await.unwrap(), Claim::Bound);
    assert_eq!(login("used", "SHA256:u", 500).await.unwrap(), Claim::Yours);
    let used = other.identity(nick("used")).await.unwrap().unwrap();
    assert_eq!(used.last_seen_ms, 500);
    assert_eq!(
        other
            .identity(nick("old"))
            .await
            .unwrap()
            .unwrap()
            .last_seen_ms,
        100
    );
    let expired = other.expire_identities(300).await.unwrap();
    assert_eq!(expired, [nick("old")]);
    assert_eq!(store.identity(nick("old")).await.unwrap(), None);
    assert!(store.identity(nick("used")).await.unwrap().is_some());
    assert_eq!(
        login("old2", "SHA256:o", 600).await.unwrap(),
        Claim::Bound,
        "an expired name's key is free again"
    );
}

/// `/nick` moves every key to a free name and frees the old one, refuses a bound name, and
/// allows one rename per cooldown (carried along to the new name).
pub async fn a_name_is_renamed_with_a_cooldown(store: &dyn Store, other: &dyn Store) {
    claim(store, "alice", "SHA256:a").await.unwrap();
    store
        .add_key(nick("alice"), key("SHA256:p"), KeySharing::OneNamePerKey)
        .await
        .unwrap();
    claim(store, "carol", "SHA256:c").await.unwrap();
    let rename =
        |from: &str, to: &str, now_ms| other.rename_identity(nick(from), nick(to), now_ms, 1000);
    assert_eq!(rename("alice", "carol", 10).await.unwrap(), Rename::Taken);
    assert_eq!(rename("nobody", "x", 10).await.unwrap(), Rename::NotBound);
    assert_eq!(rename("alice", "Bob", 10).await.unwrap(), Rename::Renamed);
    assert_eq!(store.identity(nick("alice")).await.unwrap(), None);
    let bob = store.identity(nick("bob")).await.unwrap().unwrap();
    assert_eq!(bob.nick.as_str(), "Bob");
    assert!(
        bob.holds("SHA256:a") && bob.awaits("SHA256:p", 10),
        "{bob:?}"
    );
    assert_eq!(claim(store, "bob", "SHA256:a").await.unwrap(), Claim::Yours);
    assert_eq!(
        rename("bob", "dave", 500).await.unwrap(),
        Rename::TooSoon(1010)
    );
    assert_eq!(
        claim(store, "alice", "SHA256:new").await.unwrap(),
        Claim::Bound,
        "the old name is free"
    );
    assert_eq!(
        claim(store, "other", "SHA256:a").await.unwrap(),
        Claim::KeyHoldsName(nick("Bob")),
        "the keys moved: they hold the new name"
    );
    assert_eq!(rename("bob", "dave", 1010).await.unwrap(), Rename::Renamed);
    assert_eq!(
        claim(store, "dave", "SHA256:a").await.unwrap(),
        Claim::Yours
    );
}

/// Private messages sent unread are taken once, oldest first, by their recipient whatever the
/// case of its name, through either handle; older ones are purged.
pub async fn private_messages_are_unread_until_taken_once(store: &dyn Store, other: &dyn Store) {
    let send = |from: &str, to: &str, text: &str, time_ms, unread| {
        let message = PrivateMessage {
            id: 0,
            from: nick(from),
            to: nick(to),
            text: text.into(),
            time_ms,
        };
        store.send_private(message, unread)
    };
    let take = |store: &dyn Store, name: &str| store.take_unread_private(nick(name));
    assert!(take(store, "bob").await.unwrap().is_empty());
    let first = send("a", "Bob", "one", 1_000, true).await.unwrap();
    let seen = send("a", "bob", "seen", 1_000, false).await.unwrap();
    assert!(seen.id > first.id);
    send("c", "BOB", "two", 1_000, true).await.unwrap();
    send("c", "carol", "other", 1_000, true).await.unwrap();
    let unread = take(other, "bob").await.unwrap();
    let texts: Vec<&str> = unread.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!((unread[0].id, &unread[0].from), (first.id, &nick("a")));
    assert!(take(store, "bob").await.unwrap().is_empty());
    send("a", "bob", "old", 1_000, true).await.unwrap();
    send("a", "bob", "new", 2_000, true).await.unwrap();
    store.purge_idle(1_001, vec![]).await.unwrap();
    let left = take(store, "bob").await.unwrap();
    let texts: Vec<&str> = left.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["new"], "older messages were purged");
    assert!(take(store, "carol").await.unwrap().is_empty());
}

/// Bans hold until they end or are lifted by fingerprint or by name, and those that ended go
/// with a purge.
pub async fn bans_hold_until_they_end_or_are_lifted(store: &dyn Store) {
    let ban = |fp: &str, name: &str, until_ms| Ban {
        fingerprint: fp.into(),
        nick: nick(name),
        by: nick("op"),
        since_ms: 10,
        until_ms,
    };
    store
        .ban(vec![
            ban("SHA256:m1", "mallory", None),
            ban("SHA256:m2", "mallory", None),
            ban("SHA256:t", "trent", Some(100)),
        ])
        .await
        .unwrap();
    assert_eq!(store.bans(50).await.unwrap().len(), 3);
    assert_eq!(store.bans(100).await.unwrap().len(), 2, "trent's ban ended");
    let of = |fp: &str, now| store.ban_of(fp.to_owned(), now);
    assert_eq!(
        of("SHA256:t", 99).await.unwrap(),
        Some(ban("SHA256:t", "trent", Some(100)))
    );
    assert_eq!(of("SHA256:t", 100).await.unwrap(), None);
    let lifted = store.unban("MALLORY".into()).await.unwrap();
    assert_eq!(lifted.len(), 2);
    assert_eq!(of("SHA256:m1", 50).await.unwrap(), None);
    assert_eq!(store.unban("SHA256:t".into()).await.unwrap().len(), 1);
    assert!(store.bans(0).await.unwrap().is_empty());

    store
        .ban(vec![
            ban("SHA256:e", "eve", Some(500)),
            ban("SHA256:f", "frank", None),
        ])
        .await
        .unwrap();
    store.purge_idle(501, vec![]).await.unwrap();
    assert_eq!(
        store.bans(0).await.unwrap(),
        [ban("SHA256:f", "frank", None)],
        "bans that ended before the cutoff are purged"
    );
}

/// A room's topic is kept until the room is purged as idle.
pub async fn topics_are_kept_per_room_and_purged_with_it(store: &dyn Store) {
    let room = ChannelName::new("dev\x01").unwrap();
    assert_eq!(store.topic(room.clone()).await.unwrap(), None);
    store
        .append(vec![NewEntry {
            channel: room.clone(),
            entry: Entry {
                seq: 1,
                kind: FrameKind::Text,
                sender: Uid::new("alice").unwrap(),
                verified: true,
                payload: Bytes::from_static(b"x"),
                time_ms: 5,
            },
        }])
        .await
        .unwrap();
    let stored = store.load(room.clone()).await.unwrap();
    assert!(
        stored.entries.iter().all(|e| e.verified),
        "a verified sender is stored as verified"
    );
    let topic = Topic {
        room: room.clone(),
        text: "release on friday".into(),
        set_by: nick("alice"),
        set_ms: 5,
    };
    store.set_topic(topic.clone()).await.unwrap();
    assert_eq!(store.topic(room.clone()).await.unwrap(), Some(topic));
    store.purge_idle(6, vec![]).await.unwrap();
    assert_eq!(store.topic(room).await.unwrap(), None);
}
