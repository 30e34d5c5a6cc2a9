//! The [`Store`] trait's contract: names and keys, private messages, bans and topics as every
//! implementation must keep them, run by every implementation's tests.
//!
//! Each function is one behaviour and panics where the store under test breaks it; a test calls
//! it with a fresh, empty store. Functions that take `other` read through a second handle on the
//! same data as well: another node of a cluster, or `store` itself where there is only one. The
//! module is compiled for this crate's tests and, with the `contract` feature, for other crates'.

use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Claim, Entry, FrameKind, IdentityKey, KeySharing, NewEntry, Nick,
    PrivateMessage, Topic, Uid,
};

use crate::{Pending, Store};

/// A key with this fingerprint, added at 7 ms.
pub(crate) fn key(fingerprint: &str) -> IdentityKey {
    IdentityKey {
        fingerprint: fingerprint.into(),
        public_key: format!("ssh-ed25519 AAAA{fingerprint}"),
        added_ms: 7,
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
    assert_eq!(add("SHA256:a2").await.unwrap(), Claim::Bound);
    assert_eq!(add("SHA256:a2").await.unwrap(), Claim::Yours);
    claim(store, "bob", "SHA256:b").await.unwrap();
    assert_eq!(
        add("SHA256:b").await.unwrap(),
        Claim::KeyHoldsName(nick("bob"))
    );
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
    assert_eq!(added, Claim::Bound, "adding a key binds a free name");
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
