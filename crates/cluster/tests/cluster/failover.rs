//! A three-node JetStream cluster at three replicas: racing claims from two kanava nodes, one
//! NATS node killed while frames are published, and what a sender is told when a quorum is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kanava_cluster::ClusterStore;
use kanava_core::{ChannelName, Claim, FrameKind, IdentityKey, KeySharing, Nick, Uid};
use kanava_store::{Outgoing, Store, StoreError};

use crate::harness::{Cluster, config};

async fn node(cluster: &Cluster, name: &str) -> ClusterStore {
    let mut config = config(cluster.urls(), name);
    config.replicas = 3;
    ClusterStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_from_two_nodes_have_exactly_one_winner() {
    crate::logs();
    let cluster = Cluster::start().await;
    let (a, b) = (
        node(&cluster, "node-a").await,
        node(&cluster, "node-b").await,
    );
    let claims: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { &a } else { &b };
            let key = IdentityKey {
                fingerprint: format!("SHA256:{i}"),
                public_key: format!("ssh-ed25519 AAAA{i}"),
                added_ms: i,
                pending: false,
            };
            store.claim_identity(Nick::new("bob").unwrap(), key, KeySharing::OneNamePerKey)
        })
        .collect();
    let mut outcomes = Vec::new();
    for claim in claims {
        outcomes.push(claim.await.unwrap());
    }
    let winners: Vec<usize> = (0..20).filter(|i| outcomes[*i] == Claim::Bound).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = format!("SHA256:{}", winners[0]);
    for outcome in &outcomes {
        assert!(
            *outcome == Claim::Bound || *outcome == Claim::Taken(winner.clone()),
            "{outcomes:?}"
        );
    }
    let bound = b
        .identity(Nick::new("BOB").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bound.keys.len(), 1);
    assert_eq!(bound.keys[0].fingerprint, winner);
}

/// Frame `i`, in one of three channels: each gets fewer frames than the history keeps, so none
/// is evicted before every node has read it.
fn frame(i: u64) -> Outgoing {
    Outgoing {
        channel: ChannelName::new(&format!("failover-{}", i % 3)).unwrap(),
        kind: FrameKind::Binary,
        sender: Uid::new("u").unwrap(),
        verified: false,
        payload: Bytes::from(i.to_be_bytes().to_vec()),
        time_ms: i,
        member: i,
    }
}

/// Which node's NATS server a failover test kills.
#[derive(Clone, Copy)]
enum Victim {
    /// The publishing node's.
    Publisher,
    /// The receiving node's: what it misses live while it reconnects is fetched from the
    /// stream leader.
    Receiver,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_deliveries_survive_the_loss_of_one_node_of_three() {
    survive_the_loss_of(Victim::Publisher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_server_dies_receives_every_frame_of_its_channels_once_in_order() {
    survive_the_loss_of(Victim::Receiver).await;
}

async fn survive_the_loss_of(victim: Victim) {
    crate::logs();
    let mut cluster = Cluster::start().await;
    let (a, b) = (
        node(&cluster, "node-a").await,
        node(&cluster, "node-b").await,
    );
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut on_b = bus_b.deliveries();
    for i in 0..3 {
        bus_b.host(frame(i).channel).await.unwrap();
    }
    let detail = match victim {
        Victim::Publisher => bus_a.health().detail,
        Victim::Receiver => bus_b.health().detail,
    };
    let victim = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| detail.contains(&format!("server {n} at")))
        .unwrap_or_else(|| panic!("which server? {detail}"));

    let mut sent: Vec<_> = (0..150).map(|i| bus_a.publish(frame(i))).collect();
    cluster.kill(victim);
    for i in 150..300 {
        sent.push(bus_a.publish(frame(i)));
        // Spread over a second and a half, so that publishing goes on through the failover.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stored: BTreeMap<ChannelName, Vec<u64>> = BTreeMap::new();
    for (i, pending) in sent.into_iter().enumerate() {
        let seq = pending
            .await
            .unwrap_or_else(|e| panic!("publish {i} after losing {victim}: {e}"));
        stored.entry(frame(i as u64).channel).or_default().push(seq);
    }
    for seqs in stored.values_mut() {
        seqs.sort_unstable();
        seqs.dedup();
    }
    let total: usize = stored.values().map(Vec::len).sum();
    assert_eq!(total, 300, "each frame stored once");

    let mut delivered: BTreeMap<ChannelName, Vec<u64>> = BTreeMap::new();
    for count in 0..total {
        let next = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
            .await
            .unwrap_or_else(|_| panic!("deliveries stopped after {count}"))
            .expect("deliveries go on");
        delivered
            .entry(next.channel)
            .or_default()
            .push(next.entry.seq);
    }
    assert_eq!(
        delivered, stored,
        "every frame once, in its channel's order"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), on_b.recv()).await;
    assert!(extra.is_err(), "nothing delivered twice: {extra:?}");
    assert!(bus_a.health().connected, "{}", bus_a.health().detail);

    for name in ["n1", "n2", "n3"] {
        cluster.kill(name);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bus_a.health().connected {
        assert!(tokio::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detail = bus_a.health().detail;
    assert!(detail.contains("disconnected"), "{detail}");
}

/// Frame `i` of `member` in `channel`.
fn member_frame(channel: &ChannelName, member: u64, i: u64) -> Outgoing {
    Outgoing {
        channel: channel.clone(),
        kind: FrameKind::Text,
        sender: Uid::new(&format!("m{member}")).unwrap(),
        verified: false,
        payload: Bytes::from(format!("{member}:{i}")),
        time_ms: i,
        member,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_a_sender_is_told_in_time_and_what_it_is_told_was_not_stored_never_is() {
    crate::logs();
    let cluster = Cluster::start().await;
    let mut config = config(cluster.urls(), "node-a");
    config.replicas = 3;
    config.timeout = Duration::from_secs(2);
    let a = ClusterStore::connect(config).await.expect("connect");
    let bus = a.bus().unwrap();
    let channel = ChannelName::new("quorum").unwrap();
    bus.publish(member_frame(&channel, 1, 0))
        .await
        .expect("stored with a quorum");

    // Pause the two servers node-a is not connected to: its own still answers, but JetStream
    // cannot store anything without a second replica.
    let detail = bus.health().detail;
    let others: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| !detail.contains(&format!("server {n} at")))
        .collect();
    assert_eq!(others.len(), 2, "{detail}");
    for name in &others {
        cluster.signal(name, "STOP");
    }
    let paused = std::time::Instant::now();
    let sent: Vec<_> = (1..4)
        .map(|i| bus.publish(member_frame(&channel, 1, i)))
        .collect();
    let mut outcomes = Vec::new();
    for pending in sent {
        outcomes.push(pending.await);
    }
    let told = paused.elapsed();
    for name in &others {
        cluster.signal(name, "CONT");
    }
    match &outcomes[0] {
        Err(StoreError::Unavailable(reason)) => {
            assert!(reason.contains("may still be stored"), "{reason}");
        }
        other => panic!("the first unconfirmed frame: {other:?}"),
    }
    for outcome in &outcomes[1..] {
        match outcome {
            Err(StoreError::Unavailable(reason)) => {
                assert!(reason.contains("not stored"), "{reason}");
            }
            other => panic!("a frame queued behind it: {other:?}"),
        }
    }
    assert!(
        told >= Duration::from_secs(2) && told < Duration::from_secs(4),
        "told after {told:?} with a 2 s timeout"
    );

    // With the quorum back, the member's later frames are stored again, and the history never
    // holds a frame the member was told was not stored; the unconfirmed one may be there, before
    // the later ones.
    let later = bus
        .publish(member_frame(&channel, 2, 0))
        .await
        .expect("stored once the quorum is back");
    let history = a.load(channel.clone()).await.unwrap();
    let payloads: Vec<String> = history
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
        .collect();
    assert!(
        !payloads.iter().any(|p| p == "1:2" || p == "1:3"),
        "frames reported not stored were stored: {payloads:?}"
    );
    assert_eq!(
        payloads.first().map(String::as_str),
        Some("1:0"),
        "{payloads:?}"
    );
    assert!(
        history.entries.iter().any(|e| e.seq == later),
        "{payloads:?}"
    );
}
