//! Names and keys, private messages, bans and topics: the SQLite store's semantics, in the
//! cluster's buckets.

use bytes::Bytes;
use kanava_cluster::ClusterStore;
use kanava_core::{
    Ban, ChannelName, Claim, Entry, FrameKind, IdentityKey, KeySharing, NewEntry, Nick,
    PrivateMessage, Topic, Uid,
};
use kanava_store::{Pending, Store};

use crate::harness::{Options, Server, store};

fn key(fingerprint: &str) -> IdentityKey {
    IdentityKey {
        fingerprint: fingerprint.into(),
        public_key: format!("ssh-ed25519 AAAA{fingerprint}"),
        added_ms: 7,
    }
}

fn nick(name: &str) -> Nick {
    Nick::new(name).unwrap()
}

fn claim(store: &ClusterStore, name: &str, fingerprint: &str) -> Pending<Claim> {
    store.claim_identity(nick(name), key(fingerprint), KeySharing::OneNamePerKey)
}

async fn server() -> Server {
    Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_bind_on_first_use_are_listed_and_released() {
    let server = server().await;
    let a = store(&server, "node-a").await;
    assert_eq!(a.identity(nick("alice")).await.unwrap(), None);
    assert_eq!(claim(&a, "Alice", "SHA256:a").await.unwrap(), Claim::Bound);
    assert_eq!(claim(&a, "alice", "SHA256:a").await.unwrap(), Claim::Yours);
    drop(a);
    let b = store(&server, "node-b").await;
    assert_eq!(
        claim(&b, "ALICE", "SHA256:b").await.unwrap(),
        Claim::Taken("SHA256:a".into())
    );
    let bound = b.identity(nick("alice")).await.unwrap().unwrap();
    assert_eq!((bound.nick.as_str(), bound.bound_ms()), ("Alice", 7));

    claim(&b, "carol", "SHA256:c").await.unwrap();
    claim(&b, "Bob", "SHA256:bob").await.unwrap();
    let names: Vec<String> = b
        .identities()
        .await
        .unwrap()
        .iter()
        .map(|i| i.nick.to_string())
        .collect();
    assert_eq!(names, ["Alice", "Bob", "carol"]);
    assert!(b.release_identity(nick("bob")).await.unwrap());
    assert!(!b.release_identity(nick("bob")).await.unwrap());
    assert_eq!(
        claim(&b, "bob", "SHA256:new").await.unwrap(),
        Claim::Bound,
        "a released name is free again"
    );
    assert_eq!(
        claim(&b, "robert", "SHA256:bob").await.unwrap(),
        Claim::Bound,
        "a released name's key is free again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys() {
    let server = server().await;
    let store = store(&server, "node-a").await;
    assert_eq!(
        claim(&store, "alice", "SHA256:a").await.unwrap(),
        Claim::Bound
    );
    assert_eq!(
        claim(&store, "alias", "SHA256:a").await.unwrap(),
        Claim::KeyHoldsName(nick("alice"))
    );
    let shared = store
        .claim_identity(nick("alias"), key("SHA256:a"), KeySharing::ManyNamesPerKey)
        .await
        .unwrap();
    assert_eq!(shared, Claim::Bound);
    assert_eq!(
        claim(&store, "third", "SHA256:a").await.unwrap(),
        Claim::KeyHoldsName(nick("alice")),
        "names bound with sharing on still count"
    );
    let add = |fp: &str| store.add_key(nick("ALICE"), key(fp), KeySharing::OneNamePerKey);
    assert_eq!(add("SHA256:a2").await.unwrap(), Claim::Bound);
    assert_eq!(add("SHA256:a2").await.unwrap(), Claim::Yours);
    claim(&store, "bob", "SHA256:b").await.unwrap();
    assert_eq!(
        add("SHA256:b").await.unwrap(),
        Claim::KeyHoldsName(nick("bob"))
    );
    let alice = store.identity(nick("alice")).await.unwrap().unwrap();
    assert_eq!(alice.nick.as_str(), "alice", "the first spelling is kept");
    assert!(alice.holds("SHA256:a") && alice.holds("SHA256:a2"));
    assert_eq!(
        claim(&store, "alice", "SHA256:a2").await.unwrap(),
        Claim::Yours
    );
    let remove = |fp: &str| store.remove_key(nick("alice"), fp.to_owned());
    assert!(remove("SHA256:a").await.unwrap());
    assert!(!remove("SHA256:a").await.unwrap(), "already gone");
    assert!(!remove("SHA256:a2").await.unwrap(), "the last key stays");
    assert_eq!(
        claim(&store, "alice", "SHA256:a").await.unwrap(),
        Claim::Taken("SHA256:a2".into())
    );
    assert!(store.release_identity(nick("alias")).await.unwrap());
    assert_eq!(
        claim(&store, "other", "SHA256:a").await.unwrap(),
        Claim::Bound,
        "a key that lost all its names may take another"
    );
    let added = store
        .add_key(nick("fresh"), key("SHA256:f"), KeySharing::OneNamePerKey)
        .await
        .unwrap();
    assert_eq!(added, Claim::Bound, "adding a key binds a free name");
}

fn pm(from: &str, to: &str, text: &str, time_ms: u64) -> PrivateMessage {
    PrivateMessage {
        id: 0,
        from: nick(from),
        to: nick(to),
        text: text.into(),
        time_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_are_unread_until_taken_once() {
    let server = server().await;
    let a = store(&server, "node-a").await;
    let b = store(&server, "node-b").await;
    assert!(a.take_unread_private(nick("bob")).await.unwrap().is_empty());
    let first = a
        .send_private(pm("a", "Bob", "one", 1_000), true)
        .await
        .unwrap();
    let seen = a
        .send_private(pm("a", "bob", "seen", 1_000), false)
        .await
        .unwrap();
    assert!(seen.id > first.id);
    a.send_private(pm("c", "BOB", "two", 1_000), true)
        .await
        .unwrap();
    a.send_private(pm("c", "carol", "other", 1_000), true)
        .await
        .unwrap();
    let unread = b.take_unread_private(nick("bob")).await.unwrap();
    let texts: Vec<&str> = unread.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!((unread[0].id, &unread[0].from), (first.id, &nick("a")));
    assert!(a.take_unread_private(nick("bob")).await.unwrap().is_empty());
    a.send_private(pm("a", "bob", "old", 1_000), true)
        .await
        .unwrap();
    a.send_private(pm("a", "bob", "new", 2_000), true)
        .await
        .unwrap();
    a.purge_idle(1_001, vec![]).await.unwrap();
    let left = a.take_unread_private(nick("bob")).await.unwrap();
    let texts: Vec<&str> = left.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["new"], "older messages were purged");
    assert!(
        a.take_unread_private(nick("carol"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_hold_until_they_end_or_are_lifted() {
    let server = server().await;
    let store = store(&server, "node-a").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_kept_per_room_and_purged_with_it() {
    let server = server().await;
    let store = store(&server, "node-a").await;
    let room = ChannelName::new("dev\x01").unwrap();
    assert_eq!(store.topic(room.clone()).await.unwrap(), None);
    store
        .append(vec![NewEntry {
            channel: room.clone(),
            entry: Entry {
                seq: 1,
                kind: FrameKind::Text,
                sender: Uid::new("alice").unwrap(),
                payload: Bytes::from_static(b"x"),
                time_ms: 5,
            },
        }])
        .await
        .unwrap();
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
