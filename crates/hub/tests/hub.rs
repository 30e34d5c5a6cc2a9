//! The hub over a real SQLite store: replay, relay order, join atomicity, duplicates, overflow.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kanava_core::{ChannelName, Entry, FrameKind, HistoryLimits, Uid};
use kanava_hub::{Hub, HubConfig, Joined, KickReason, Present, QueueLimits};
use kanava_store::SqliteStore;

fn hub_at(dir: &std::path::Path, config: HubConfig) -> Hub {
    let store = SqliteStore::open(&dir.join("kanava.db"), config.history).unwrap();
    Hub::new(Arc::new(store), config)
}

async fn join(hub: &Hub, channel: &str, uid: &str) -> Joined {
    hub.join(
        ChannelName::new(channel).unwrap(),
        Uid::new(uid).unwrap(),
        false,
        Bytes::from(format!(r#"{{"uid":"{uid}","channel":"{channel}"}}"#)),
    )
    .await
    .unwrap()
}

/// The next live frame that is not a join header.
async fn next_data(joined: &mut Joined) -> Arc<Entry> {
    loop {
        let e = next(joined).await;
        if e.kind != FrameKind::Header {
            return e;
        }
    }
}

async fn next(joined: &mut Joined) -> Arc<Entry> {
    tokio::time::timeout(Duration::from_secs(5), joined.outbox.recv())
        .await
        .expect("a frame within 5 s")
        .expect("outbox open")
}

/// What a joiner has been sent once `n` frames arrived: its history, then live frames.
async fn first(joined: &mut Joined, n: usize) -> Vec<Arc<Entry>> {
    let mut got = joined.history.clone();
    while got.len() < n {
        got.push(next(joined).await);
    }
    got
}

fn payloads(entries: &[Arc<Entry>]) -> Vec<(FrameKind, Vec<u8>)> {
    entries
        .iter()
        .map(|e| (e.kind, e.payload.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_includes_headers_and_own_messages_and_relay_has_no_echo() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let mut alice = join(&hub, "test", "alice").await;
    assert!(alice.history.is_empty());
    alice
        .member
        .publish(FrameKind::Text, Bytes::from_static(b"msg-1 (alone)"))
        .await
        .unwrap();

    let mut bob = join(&hub, "test", "bob").await;
    assert_eq!(
        payloads(&first(&mut bob, 2).await),
        [
            (
                FrameKind::Header,
                br#"{"uid":"alice","channel":"test"}"#.to_vec()
            ),
            (FrameKind::Text, b"msg-1 (alone)".to_vec()),
        ]
    );
    bob.member
        .publish(FrameKind::Binary, Bytes::from_static(&[0, 1, 2]))
        .await
        .unwrap();
    let got = next(&mut alice).await;
    assert_eq!(
        (got.kind, &got.payload[..]),
        (FrameKind::Binary, &[0u8, 1, 2][..])
    );
    // No echo: bob's outbox stays empty.
    assert!(bob.outbox.try_recv().is_none());

    // Alice rejoins: she is replayed her own earlier header and message.
    drop(alice);
    let mut alice = join(&hub, "test", "alice").await;
    let kinds: Vec<_> = payloads(&first(&mut alice, 4).await);
    assert_eq!(kinds[0].1, br#"{"uid":"alice","channel":"test"}"#.to_vec());
    assert_eq!(kinds[1].1, b"msg-1 (alone)".to_vec());
    assert_eq!(kinds[2].0, FrameKind::Header);
    assert_eq!(kinds[3], (FrameKind::Binary, vec![0, 1, 2]));
    assert!(
        alice.outbox.try_recv().is_none(),
        "nothing else, no own header"
    );
    drop(bob);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_uid_is_refused_only_while_the_first_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let first = join(&hub, "c", "alice").await;
    let err = hub
        .join(
            ChannelName::new("c").unwrap(),
            Uid::new("alice").unwrap(),
            false,
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kanava_hub::HubError::Duplicate { .. }),
        "{err}"
    );
    // Same uid in another channel is fine.
    let _other = join(&hub, "d", "alice").await;
    drop(first);
    let _again = join(&hub, "c", "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_during_traffic_see_every_frame_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        history: HistoryLimits {
            max_entries: 100_000,
            max_bytes: u64::MAX,
        },
        ..HubConfig::default()
    };
    let hub = hub_at(dir.path(), config);
    let publisher = join(&hub, "busy", "pub").await;
    const FRAMES: u32 = 2000;
    let sender = tokio::spawn(async move {
        for i in 0..FRAMES {
            publisher
                .member
                .publish(FrameKind::Binary, Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publisher
    });
    let mut joiners = Vec::new();
    for j in 0..20 {
        joiners.push(join(&hub, "busy", &format!("j{j}")).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _publisher = sender.await.unwrap();
    for mut joined in joiners {
        let mut seen: Vec<u32> = joined
            .history
            .iter()
            .filter(|e| e.kind == FrameKind::Binary)
            .map(|e| u32::from_be_bytes(e.payload[..].try_into().unwrap()))
            .collect();
        while seen.last() != Some(&(FRAMES - 1)) {
            let e = next_data(&mut joined).await;
            seen.push(u32::from_be_bytes(e.payload[..].try_into().unwrap()));
        }
        let expected: Vec<u32> = (0..FRAMES).collect();
        assert_eq!(
            seen,
            expected,
            "{} saw a gap or duplicate",
            joined.member.uid()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_does_not_read_is_kicked_and_others_keep_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        queue: QueueLimits {
            max_frames: 16,
            max_bytes: 1 << 20,
        },
        ..HubConfig::default()
    };
    let hub = hub_at(dir.path(), config);
    let slow = join(&hub, "c", "slow").await;
    let mut reader = join(&hub, "c", "reader").await;
    let publisher = join(&hub, "c", "pub").await;
    for i in 0..100u32 {
        publisher
            .member
            .publish(FrameKind::Binary, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
        let e = next_data(&mut reader).await;
        assert_eq!(&e.payload[..], &i.to_be_bytes());
    }
    let reason = tokio::time::timeout(Duration::from_secs(5), slow.outbox.kick_signal().kicked())
        .await
        .unwrap();
    assert_eq!(reason, KickReason::QueueOverflow);
    // The kicked uid may rejoin at once and resync from history.
    drop(slow);
    let mut again = join(&hub, "c", "slow").await;
    let replay = first(&mut again, 103).await;
    assert_eq!(
        replay
            .iter()
            .filter(|e| e.kind == FrameKind::Binary)
            .count(),
        100
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_survives_a_new_hub_on_the_same_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let hub = hub_at(dir.path(), HubConfig::default());
        let a = join(&hub, "c", "a").await;
        for i in 0..10u8 {
            a.member
                .publish(FrameKind::Binary, Bytes::from(vec![i]))
                .await
                .unwrap();
        }
        a.member
            .publish(FrameKind::Ping, Bytes::from_static(b"p"))
            .await
            .unwrap();
        drop(a);
        hub.shutdown().await.unwrap();
        let b = hub_at(dir.path(), HubConfig::default());
        let j = join(&b, "c", "reader").await;
        let replay = payloads(&j.history);
        drop(j);
        b.shutdown().await.unwrap();
        replay
    };
    let hub = hub_at(dir.path(), HubConfig::default());
    let j = join(&hub, "c", "reader2").await;
    let after = payloads(&j.history);
    assert_eq!(after.len(), before.len() + 1, "one more header: reader's");
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(before.len(), 12);
    assert_eq!(before[11], (FrameKind::Ping, b"p".to_vec()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_gets_the_window_as_of_its_join_even_with_frames_awaiting_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        history: HistoryLimits {
            max_entries: 3,
            max_bytes: u64::MAX,
        },
        ..HubConfig::default()
    };
    let hub = hub_at(dir.path(), config);
    for round in 0..20u8 {
        let ch = format!("c{round}");
        let writer = join(&hub, &ch, "writer").await;
        for i in 0..5u8 {
            writer
                .member
                .publish(FrameKind::Binary, Bytes::from(vec![i]))
                .await
                .unwrap();
        }
        // Joins at once: some of m0..m4 are still awaiting commit.
        let mut probe = join(&hub, &ch, "probe").await;
        let got = first(&mut probe, 3).await;
        assert_eq!(
            payloads(&got),
            [2u8, 3, 4].map(|i| (FrameKind::Binary, vec![i])),
            "round {round}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            probe.outbox.try_recv().is_none(),
            "round {round}: more than the window"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_members_coexist_but_never_with_an_exclusive_one() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let ch = || ChannelName::new("room").unwrap();
    let uid = |u: &str| Uid::new(u).unwrap();
    let a1 = hub
        .join_shared(ch(), uid("alice"), Bytes::new())
        .await
        .unwrap();
    let a2 = hub
        .join_shared(ch(), uid("alice"), Bytes::new())
        .await
        .unwrap();
    assert!(
        hub.join(ch(), uid("alice"), true, Bytes::new())
            .await
            .is_err()
    );
    let bob = hub
        .join(ch(), uid("bob"), false, Bytes::new())
        .await
        .unwrap();
    let present = |u: &str, exclusive: bool, verified: bool| Present {
        uid: uid(u),
        exclusive,
        verified,
    };
    assert!(
        hub.join_shared(ch(), uid("bob"), Bytes::new())
            .await
            .is_err()
    );
    assert_eq!(
        hub.members(&ch()),
        [present("alice", false, true), present("bob", true, false)],
        "SSH sessions share a verified uid; a Mles client holds its own, unverified"
    );
    assert_eq!(hub.rooms(), [(ch(), 2)]);
    // A frame from one of alice's sessions reaches her other session and bob.
    a1.member
        .publish(FrameKind::Text, Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let mut a2 = a2;
    let mut bob = bob;
    let from_alice = next_data(&mut a2).await;
    assert_eq!(&from_alice.payload[..], b"hi");
    assert!(
        from_alice.verified,
        "a shared (SSH) member's frames are verified"
    );
    assert_eq!(&next_data(&mut bob).await.payload[..], b"hi");
    bob.member
        .publish(FrameKind::Text, Bytes::from_static(b"yo"))
        .await
        .unwrap();
    assert!(!next_data(&mut a2).await.verified);
    drop(a1);
    assert_eq!(
        hub.members(&ch()),
        [present("alice", false, true), present("bob", true, false)]
    );
    drop(a2);
    assert_eq!(hub.members(&ch()), [present("bob", true, false)]);
    let _alice = hub
        .join(ch(), uid("alice"), false, Bytes::new())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn flush_waits_for_durability_and_history_reads_without_joining() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let writer = join(&hub, "c", "w").await;
    for i in 0..50u8 {
        writer
            .member
            .publish(FrameKind::Binary, Bytes::from(vec![i]))
            .await
            .unwrap();
    }
    writer.member.flush().await.unwrap();
    let history = hub.history(ChannelName::new("c").unwrap()).await.unwrap();
    assert_eq!(history.len(), 51, "header and every flushed frame");
    drop(writer);
    // Not in memory any more: read from the store, still without joining.
    let history = hub.history(ChannelName::new("c").unwrap()).await.unwrap();
    assert_eq!(history.len(), 51);
    assert!(hub.members(&ChannelName::new("c").unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_joined_without_a_header_stores_only_what_it_posts() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let room = || ChannelName::new("room").unwrap();
    let mut bob = join(&hub, "room", "bob").await;
    for text in ["one", "two"] {
        let poster = hub
            .join_shared_without_header(room(), Uid::new("alice").unwrap())
            .await
            .unwrap();
        assert_eq!(
            hub.members(&room())
                .into_iter()
                .map(|p| p.uid)
                .collect::<Vec<_>>(),
            ["alice", "bob"].map(|u| Uid::new(u).unwrap())
        );
        poster
            .member
            .publish(FrameKind::Text, Bytes::from(text))
            .await
            .unwrap();
        poster.member.flush().await.unwrap();
    }
    // Bob sees the two messages live, and no join of alice.
    assert_eq!(next(&mut bob).await.payload, "one");
    assert_eq!(next(&mut bob).await.payload, "two");
    // Shared like join_shared: it coexists with alice's other sessions, never with an
    // exclusive (Mles) holder of the uid.
    assert!(
        hub.join_shared_without_header(room(), Uid::new("bob").unwrap())
            .await
            .is_err()
    );
    let history = hub.history(room()).await.unwrap();
    assert_eq!(
        payloads(&history),
        [
            (
                FrameKind::Header,
                br#"{"uid":"bob","channel":"room"}"#.to_vec()
            ),
            (FrameKind::Text, b"one".to_vec()),
            (FrameKind::Text, b"two".to_vec()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_that_waits_for_its_frame_learns_the_seq_the_others_receive() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path(), HubConfig::default());
    let alice = join(&hub, "seq", "alice").await;
    let mut bob = join(&hub, "seq", "bob").await;
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        let own = alice
            .member
            .publish_stored(FrameKind::Text, Bytes::from(text))
            .await
            .unwrap();
        assert_eq!(
            (own.sender.as_str(), &own.payload[..]),
            ("alice", text.as_bytes())
        );
        sent.push(own);
    }
    for own in &sent {
        let received = next_data(&mut bob).await;
        assert_eq!(*received, *own);
    }
    // And the store holds each at that seq.
    let stored = hub
        .history_before(ChannelName::new("seq").unwrap(), u64::MAX, 10)
        .await
        .unwrap();
    let stored: Vec<_> = stored
        .into_iter()
        .filter(|e| e.kind == FrameKind::Text)
        .map(|e| (e.seq, e.payload))
        .collect();
    let sent: Vec<_> = sent.into_iter().map(|e| (e.seq, e.payload)).collect();
    assert_eq!(stored, sent);
}
