//! A cluster that spreads its channels over several streams: each channel's frames in the
//! stream its name hashes to, delivered and read back in its order, purged where they are; and
//! the count fixed when the cluster is created.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use kanava_cluster::{ClusterError, ClusterStore, wire};
use kanava_core::{ChannelName, Entry, FrameKind, NewEntry, Uid};
use kanava_store::{Outgoing, Store};

use crate::harness::{Options, Server, config};

async fn node(server: &Server, name: &str, shards: u32) -> Result<ClusterStore, ClusterError> {
    let mut config = config(vec![server.url.clone()], name);
    config.shards = shards;
    ClusterStore::connect(config).await
}

async fn jetstream_server() -> Server {
    Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await
}

/// How many messages each stream holds, by name.
async fn stream_counts(server: &Server) -> HashMap<String, u64> {
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut counts = HashMap::new();
    for name in [
        "KANAVA_CH",
        "KANAVA_CH_0",
        "KANAVA_CH_1",
        "KANAVA_CH_2",
        "KANAVA_CH_3",
    ] {
        if let Ok(mut stream) = js.get_stream(name).await {
            let info = stream.info().await.unwrap();
            counts.insert(name.to_owned(), info.state.messages);
        }
    }
    counts
}

fn frame(channel: &ChannelName, i: u64) -> Outgoing {
    Outgoing {
        channel: channel.clone(),
        kind: FrameKind::Text,
        sender: Uid::new("alice").unwrap(),
        verified: false,
        payload: Bytes::from(i.to_be_bytes().to_vec()),
        time_ms: 1000 + i,
        member: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_four_streams_keep_their_order_on_every_node() {
    crate::logs();
    let server = jetstream_server().await;
    let a = node(&server, "node-a", 4).await.expect("node a");
    let b = node(&server, "node-b", 4).await.expect("node b");
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut on_b = bus_b.deliveries();
    let channels: Vec<ChannelName> = (0..12)
        .map(|i| ChannelName::new(&format!("room {i}")).unwrap())
        .collect();
    for channel in &channels {
        bus_b.host(channel.clone()).await.unwrap();
    }
    let mut sent = Vec::new();
    for round in 0..10 {
        for channel in &channels {
            sent.push((channel.clone(), bus_a.publish(frame(channel, round))));
        }
    }
    let mut stored: HashMap<ChannelName, Vec<u64>> = HashMap::new();
    for (channel, pending) in sent {
        stored
            .entry(channel)
            .or_default()
            .push(pending.await.expect("stored"));
    }

    // Every stream took some channels, and nothing went to the one-stream layout.
    let counts = stream_counts(&server).await;
    assert!(!counts.contains_key("KANAVA_CH"), "{counts:?}");
    let used: Vec<_> = (0..4)
        .filter(|i| counts.get(&format!("KANAVA_CH_{i}")).copied().unwrap_or(0) > 0)
        .collect();
    assert!(
        used.len() >= 3,
        "12 channels in at least 3 of 4 streams: {counts:?}"
    );
    assert_eq!(counts.values().sum::<u64>(), 120, "{counts:?}");

    // b receives each channel's frames once, in its order, with the sequences a was told.
    let mut received: HashMap<ChannelName, Vec<(u64, Bytes)>> = HashMap::new();
    for _ in 0..120 {
        let delivered = tokio::time::timeout(std::time::Duration::from_secs(20), on_b.recv())
            .await
            .expect("a frame within 20 s")
            .expect("deliveries go on");
        received
            .entry(delivered.channel)
            .or_default()
            .push((delivered.entry.seq, delivered.entry.payload));
    }
    for channel in &channels {
        let got = &received[channel];
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, stored[channel], "{channel}");
        let payloads: Vec<Bytes> = got.iter().map(|(_, p)| p.clone()).collect();
        let expected: Vec<Bytes> = (0..10u64)
            .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
            .collect();
        assert_eq!(payloads, expected, "{channel}: the sender's order");
        // Its history, read from its stream, is the same, whichever node reads it.
        for store in [&a, &b] {
            let loaded = store.load(channel.clone()).await.unwrap();
            let entries: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
            assert_eq!(entries, stored[channel], "{channel}");
            assert_eq!(loaded.next_seq, stored[channel][9] + 1);
            let before = store
                .history_before(channel.clone(), stored[channel][5], 3)
                .await
                .unwrap();
            let before: Vec<u64> = before.iter().map(|e| e.seq).collect();
            assert_eq!(before, stored[channel][2..5], "{channel}");
        }
    }
}

fn entry(channel: &ChannelName, time_ms: u64) -> NewEntry {
    NewEntry {
        channel: channel.clone(),
        entry: Entry {
            seq: 0,
            kind: FrameKind::Text,
            sender: Uid::new("bob").unwrap(),
            verified: false,
            payload: Bytes::from_static(b"x"),
            time_ms,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_channels_are_purged_from_every_stream() {
    let server = jetstream_server().await;
    let a = node(&server, "node-a", 3).await.expect("node a");
    let shards = wire::ChannelShards::new(3).unwrap();
    // Idle channels in every stream, and one kept and one recent.
    let mut idle = Vec::new();
    let mut streams = HashSet::new();
    for i in 0.. {
        let channel = ChannelName::new(&format!("idle {i}")).unwrap();
        if streams.insert(shards.shard_of(&channel)) || idle.len() < 6 {
            idle.push(channel);
        }
        if streams.len() == 3 && idle.len() >= 6 {
            break;
        }
    }
    let (kept, recent) = (
        ChannelName::new("kept").unwrap(),
        ChannelName::new("recent").unwrap(),
    );
    let mut entries: Vec<NewEntry> = idle.iter().map(|c| entry(c, 100)).collect();
    entries.extend([entry(&kept, 100), entry(&recent, 5000)]);
    a.append(entries).await.unwrap();
    let mut purged = a.purge_idle(1000, vec![kept.clone()]).await.unwrap();
    purged.sort();
    let mut expected = idle.clone();
    expected.sort();
    assert_eq!(purged, expected);
    for channel in &idle {
        assert!(
            a.load(channel.clone()).await.unwrap().entries.is_empty(),
            "{channel}"
        );
    }
    for channel in [kept, recent] {
        assert_eq!(
            a.load(channel.clone()).await.unwrap().entries.len(),
            1,
            "{channel}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_count_of_streams_than_the_cluster_refuses_to_start() {
    crate::logs();
    let server = jetstream_server().await;
    let _first = node(&server, "node-a", 4)
        .await
        .expect("the first node records 4");
    for other in [1, 2, 8] {
        let error = node(&server, "node-b", other)
            .await
            .err()
            .unwrap_or_else(|| panic!("a node with {other} streams started"));
        assert!(
            matches!(error, ClusterError::ShardCount { recorded: 4, configured } if configured == other),
            "{error}"
        );
        assert!(error.to_string().contains("--cluster-shards 4"), "{error}");
    }
    assert!(node(&server, "node-b", 4).await.is_ok());
    let counts = stream_counts(&server).await;
    assert!(
        !counts.contains_key("KANAVA_CH"),
        "a refused node created nothing: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_created_before_shards_existed_is_taken_as_one_stream() {
    crate::logs();
    let server = jetstream_server().await;
    // What a cluster of an earlier kanava holds: the channel stream, and no recorded count.
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KANAVA_CH".into(),
        subjects: vec!["kanava.ch.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let error = node(&server, "node-a", 4).await.err().expect("refused");
    assert!(
        matches!(
            error,
            ClusterError::ShardCount {
                recorded: 1,
                configured: 4
            }
        ),
        "{error}"
    );
    // nats-server 2.9 cannot add the republishing of live frames to an existing stream; later
    // versions can.
    let version = js_version(&server).await;
    match node(&server, "node-a", 1).await {
        Ok(a) => {
            assert!(!version.starts_with("2.9."), "started on {version}");
            let channel = ChannelName::new("old room").unwrap();
            a.append(vec![entry(&channel, 5)]).await.unwrap();
            assert_eq!(stream_counts(&server).await.get("KANAVA_CH"), Some(&1));
        }
        Err(error) => {
            assert!(version.starts_with("2.9."), "refused on {version}: {error}");
            let text = error.to_string();
            assert!(
                matches!(error, ClusterError::IncompatibleStream { .. })
                    && text.contains("upgrade the NATS servers to 2.10"),
                "{text}"
            );
        }
    }
}

/// The version of the server at `server`.
async fn js_version(server: &Server) -> String {
    let client = async_nats::connect(&server.url).await.unwrap();
    client.server_info().version
}
