//! A three-node JetStream cluster at three replicas: racing claims from two kanava nodes, and
//! one NATS node killed while frames are published.

use std::time::Duration;

use bytes::Bytes;
use kanava_cluster::ClusterStore;
use kanava_core::{ChannelName, Claim, FrameKind, IdentityKey, KeySharing, Nick, Uid};
use kanava_store::{Outgoing, Store};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_deliveries_survive_the_loss_of_one_node_of_three() {
    crate::logs();
    let mut cluster = Cluster::start().await;
    let (a, b) = (
        node(&cluster, "node-a").await,
        node(&cluster, "node-b").await,
    );
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut on_b = bus_b.deliveries();
    let detail = bus_a.health().detail;
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
    let mut stored = Vec::new();
    for (i, pending) in sent.into_iter().enumerate() {
        let seq = pending
            .await
            .unwrap_or_else(|e| panic!("publish {i} after losing {victim}: {e}"));
        stored.push(seq);
    }
    stored.sort_unstable();
    stored.dedup();
    assert_eq!(stored.len(), 300, "each frame stored once");

    let mut delivered = Vec::new();
    while delivered.len() < stored.len() {
        let next = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
            .await
            .unwrap_or_else(|_| panic!("deliveries stopped after {}", delivered.len()))
            .expect("deliveries go on");
        delivered.push(next.entry.seq);
    }
    assert_eq!(delivered, stored, "every frame once, in stream order");
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
