//! Channel frames: publish, delivery on every node, history reads, duplicates, idle purges.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use kanava_cluster::wire;
use kanava_core::{ChannelName, Entry, FrameKind, NewEntry, Uid};
use kanava_store::{Origin, Outgoing, Store};

use crate::harness::{Options, Server, store};

/// The member every frame here comes from: one member's frames are stored in the order it
/// sent them (those of different members may be stored in any order).
const MEMBER: u64 = 7;

fn frame(channel: &ChannelName, i: u64, time_ms: u64) -> Outgoing {
    Outgoing {
        channel: channel.clone(),
        kind: FrameKind::Binary,
        sender: Uid::new("alice\x01").unwrap(),
        verified: i.is_multiple_of(2),
        payload: Bytes::from(i.to_be_bytes().to_vec()),
        time_ms,
        member: MEMBER,
    }
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_delivered_on_every_node_in_order_and_the_history_keeps_the_last() {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    let b = store(&server, "node-b").await;
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    assert_eq!(bus_b.node(), "node-b");
    assert!(bus_a.health().connected, "{}", bus_a.health().detail);
    let mut on_b = bus_b.deliveries();
    let mut second = bus_b.deliveries();
    let channel = ChannelName::new("room *> .\x1b").unwrap();
    bus_b.host(channel.clone()).await.unwrap();

    // The first frame tells that b's consumer is running.
    let first = bus_a.publish(frame(&channel, 0, 10)).await.unwrap();
    assert_eq!(on_b.recv().await.unwrap().entry.seq, first);
    assert!(second.recv().await.is_none(), "deliveries are taken once");

    // Fewer than the history keeps, so that none can be evicted before b reads it.
    let sent: Vec<_> = (1..150)
        .map(|i| bus_a.publish(frame(&channel, i, 10)))
        .collect();
    let mut stored = vec![first];
    for pending in sent {
        stored.push(pending.await.unwrap());
    }
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "one member's frames are stored in the order sent"
    );
    for (i, seq) in stored.iter().enumerate().skip(1) {
        let delivered = on_b.recv().await.unwrap();
        assert_eq!(delivered.channel, channel);
        assert_eq!(delivered.entry.seq, *seq);
        assert_eq!(&delivered.entry.payload[..], &(i as u64).to_be_bytes());
        assert_eq!(delivered.entry.sender.as_str(), "alice\x01");
        assert_eq!(
            delivered.entry.verified,
            (i as u64).is_multiple_of(2),
            "verified travels"
        );
        assert_eq!(
            delivered.origin,
            Origin {
                node: "node-a".into(),
                member: MEMBER
            }
        );
    }

    let more: Vec<_> = (150..300)
        .map(|i| bus_a.publish(frame(&channel, i, 10)))
        .collect();
    for pending in more {
        stored.push(pending.await.unwrap());
    }
    let loaded = b.load(channel.clone()).await.unwrap();
    assert_eq!(seqs(&loaded.entries), stored[100..], "the last 200 of 300");
    assert_eq!(loaded.next_seq, stored[299] + 1);
    let page = b
        .history_before(channel.clone(), stored[150], 10)
        .await
        .unwrap();
    assert_eq!(seqs(&page), stored[140..150]);
    let early = b
        .history_before(channel.clone(), stored[105], 50)
        .await
        .unwrap();
    assert_eq!(
        seqs(&early),
        stored[100..105],
        "only what the history keeps"
    );

    let late = bus_a.publish(frame(&channel, 300, 11)).await.unwrap();
    assert!(late >= loaded.next_seq);
    let mut last = stored[149];
    loop {
        let seq = on_b.recv().await.unwrap().entry.seq;
        assert!(seq > last, "in order, once");
        last = seq;
        if seq == late {
            break;
        }
    }

    let empty = b.load(ChannelName::new("nobody").unwrap()).await.unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(empty.next_seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_with_the_same_message_id_is_stored_once() {
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    let channel = ChannelName::new("dup").unwrap();
    let origin = Origin {
        node: "node-x".into(),
        member: 1,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in wire::frame_headers(
        &channel,
        FrameKind::Text,
        &Uid::new("u").unwrap(),
        false,
        5,
        &origin,
    ) {
        headers.insert(name, value);
    }
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "node-x-boot-1");
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let subject = wire::channel_subject(wire::ChannelShards::ONE, &channel);
    let publish = || async {
        js.publish_with_headers(subject.clone(), headers.clone(), Bytes::from_static(b"hi"))
            .await
            .unwrap()
            .await
            .unwrap()
    };
    let first = publish().await;
    let again = publish().await;
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let loaded = a.load(channel).await.unwrap();
    assert_eq!(seqs(&loaded.entries), [first.sequence]);
    assert_eq!(loaded.entries[0].kind, FrameKind::Text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_the_frames_of_the_channels_it_hosts_only() {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    let b = store(&server, "node-b").await;
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut on_b = bus_b.deliveries();
    let (hosted, other) = (
        ChannelName::new("hosted").unwrap(),
        ChannelName::new("other").unwrap(),
    );
    bus_b.host(hosted.clone()).await.unwrap();
    let sent: Vec<_> = (0..40)
        .map(|i| {
            let channel = if i % 2 == 0 { &hosted } else { &other };
            (channel.clone(), bus_a.publish(frame(channel, i, 10)))
        })
        .collect();
    let mut stored = Vec::new();
    for (channel, pending) in sent {
        let seq = pending.await.unwrap();
        if channel == hosted {
            stored.push(seq);
        }
    }
    let mut received = Vec::new();
    for _ in 0..20 {
        let delivered = tokio::time::timeout(Duration::from_secs(10), on_b.recv())
            .await
            .expect("a frame within 10 s")
            .unwrap();
        assert_eq!(
            delivered.channel, hosted,
            "only the hosted channel's frames"
        );
        received.push(delivered.entry.seq);
    }
    assert_eq!(received, stored, "each once, in order");
    assert!(quiet(&mut on_b).await, "nothing of the other channel");

    // Hosted twice and released once, it is still delivered; released again, it is not.
    bus_b.host(hosted.clone()).await.unwrap();
    bus_b.release(hosted.clone());
    let seq = bus_a.publish(frame(&hosted, 40, 10)).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(10), on_b.recv())
        .await
        .expect("still hosted")
        .unwrap();
    assert_eq!(delivered.entry.seq, seq);
    bus_b.release(hosted.clone());
    bus_a.publish(frame(&hosted, 41, 10)).await.unwrap();
    assert!(quiet(&mut on_b).await, "released: nothing more");

    // Hosted again, it picks up from the frames stored from then on.
    bus_b.host(hosted.clone()).await.unwrap();
    let seq = bus_a.publish(frame(&hosted, 42, 10)).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(10), on_b.recv())
        .await
        .expect("hosted again")
        .unwrap();
    assert_eq!(delivered.entry.seq, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_without_a_consumer_where_the_server_batches_direct_gets() {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    let bus_a = a.bus().unwrap();
    let channel = ChannelName::new("direct").unwrap();
    // More than one batch of 256, fewer than the history keeps (200 in these tests): the last
    // 200 of 300.
    let sent: Vec<_> = (0..300)
        .map(|i| bus_a.publish(frame(&channel, i, 10)))
        .collect();
    let mut stored = Vec::new();
    for pending in sent {
        stored.push(pending.await.unwrap());
    }
    let watcher = async_nats::connect(&server.url).await.unwrap();
    let version = watcher.server_info().version.clone();
    let mut consumers = watcher.subscribe("$JS.API.CONSUMER.>").await.unwrap();
    watcher.flush().await.unwrap();
    let loaded = a.load(channel.clone()).await.unwrap();
    assert_eq!(seqs(&loaded.entries), stored[100..]);
    let page = a.history_before(channel, stored[150], 10).await.unwrap();
    assert_eq!(seqs(&page), stored[140..150]);
    let created = tokio::time::timeout(Duration::from_millis(500), consumers.next()).await;
    let (major, minor) = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0))
        .fold((None, None), |(major, minor), n| match (major, minor) {
            (None, _) => (Some(n), None),
            (Some(m), None) => (Some(m), Some(n)),
            done => done,
        });
    if (major.unwrap(), minor.unwrap()) >= (2, 11) {
        assert!(created.is_err(), "a consumer on {version}: {created:?}");
    } else {
        assert!(
            created.is_ok(),
            "{version} has no batched direct get: a consumer reads"
        );
    }
}

/// Whether nothing arrives on `on_b` for 700 ms.
async fn quiet(on_b: &mut tokio::sync::mpsc::Receiver<kanava_store::Delivered>) -> bool {
    tokio::time::timeout(Duration::from_millis(700), on_b.recv())
        .await
        .is_err()
}

fn entry(channel: &str, time_ms: u64) -> NewEntry {
    NewEntry {
        channel: ChannelName::new(channel).unwrap(),
        entry: Entry {
            seq: 0,
            kind: FrameKind::Text,
            sender: Uid::new("bob").unwrap(),
            verified: true,
            payload: Bytes::from_static(b"x"),
            time_ms,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_entries_are_numbered_by_the_stream_and_idle_channels_are_purged() {
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    a.append(vec![
        entry("old", 100),
        entry("kept", 100),
        entry("new", 5000),
    ])
    .await
    .unwrap();
    a.append(vec![entry("old", 200)]).await.unwrap();
    a.sync().await.unwrap();
    let old = a.load(ChannelName::new("old").unwrap()).await.unwrap();
    assert_eq!(old.entries.len(), 2);
    assert!(old.entries[0].seq < old.entries[1].seq);
    assert_eq!(old.entries[1].time_ms, 200);

    let purged = a
        .purge_idle(1000, vec![ChannelName::new("kept").unwrap()])
        .await
        .unwrap();
    assert_eq!(purged, [ChannelName::new("old").unwrap()]);
    for (name, left) in [("old", 0), ("kept", 1), ("new", 1)] {
        let loaded = a.load(ChannelName::new(name).unwrap()).await.unwrap();
        assert_eq!(loaded.entries.len(), left, "{name}");
    }
    a.append(vec![entry("old", 6000)]).await.unwrap();
    let again = a.load(ChannelName::new("old").unwrap()).await.unwrap();
    assert_eq!(again.entries.len(), 1, "a purged channel is used again");
}
