//! Presence: announced on one node, seen on the others, gone when the node is.

use std::time::{Duration, Instant};

use kanava_core::{ChannelName, Uid};
use kanava_store::{Present, Store};

use crate::harness::{Cluster, Options, Server, config, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_seen_on_other_nodes_refreshed_and_dropped_with_its_node() {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let heartbeat = config(vec![], "x").presence_heartbeat;
    let a = store(&server, "node-a").await;
    let b = store(&server, "node-b").await;
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut on_b = bus_b.remote_presence();
    let mut on_a = bus_a.remote_presence();
    let room = ChannelName::new("room\x01.*").unwrap();
    let present = |uid: &str, exclusive| Present {
        uid: Uid::new(uid).unwrap(),
        exclusive,
        verified: !exclusive,
    };
    let members = vec![present("zed", true), present("amy", false)];
    let sorted = vec![present("amy", false), present("zed", true)];
    let within = Duration::from_secs(5);

    bus_a.set_presence(room.clone(), members.clone());
    let seen = tokio::time::timeout(within, on_b.wait_for(|v| v.get(&room) == Some(&sorted)));
    seen.await.expect("b sees a's members").unwrap();
    assert!(on_a.borrow().is_empty(), "a node does not see itself");

    bus_b.set_presence(room.clone(), vec![present("bo", true)]);
    let both = tokio::time::timeout(within, on_a.wait_for(|v| v.get(&room).is_some()));
    both.await.expect("a sees b").unwrap();
    assert_eq!(
        on_b.borrow().get(&room),
        Some(&sorted),
        "b still sees only a"
    );

    let kept = tokio::time::timeout(heartbeat * 6, on_b.wait_for(|v| v.get(&room).is_none()));
    assert!(kept.await.is_err(), "heartbeats keep the announcement");

    bus_a.set_presence(room.clone(), Vec::new());
    let left = tokio::time::timeout(within, on_b.wait_for(|v| v.get(&room).is_none()));
    left.await
        .expect("an empty announcement removes the channel")
        .unwrap();

    bus_a.set_presence(room.clone(), members);
    let back = tokio::time::timeout(within, on_b.wait_for(|v| v.get(&room) == Some(&sorted)));
    back.await.expect("announced again").unwrap();
    drop(bus_a);
    drop(a);
    let dropped_at = Instant::now();
    let gone = tokio::time::timeout(within, on_b.wait_for(|v| v.get(&room).is_none()));
    gone.await.expect("a's members go with it").unwrap();
    let after = dropped_at.elapsed();
    assert!(
        after <= heartbeat * 3 + heartbeat / 4 + Duration::from_millis(600),
        "dropped {after:?} after the node, heartbeat {heartbeat:?}"
    );
}

/// How many clients `server` has connected.
async fn connections(server: &Server) -> u64 {
    let connz: serde_json::Value =
        serde_json::from_str(&server.monitoring("/connz").await).expect("connz is JSON");
    connz["num_connections"].as_u64().expect("num_connections")
}

/// Connects a store to `server` as `node`, with the default 5 s presence heartbeat (a node's
/// announcements would expire after 15 s).
async fn store_with_default_heartbeat(server: &Server, node: &str) -> kanava_cluster::ClusterStore {
    let mut config = config(vec![server.url.clone()], node);
    config.presence_heartbeat = Duration::from_secs(5);
    kanava_cluster::ClusterStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect {node}: {e}\n{}", server.log_tail()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_presence_stops_counting_within_two_seconds_or_at_once_rechecked() {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store_with_default_heartbeat(&server, "node-a").await;
    let b = store_with_default_heartbeat(&server, "node-b").await;
    let c = store_with_default_heartbeat(&server, "node-c").await;
    let d = store_with_default_heartbeat(&server, "node-d").await;
    let (bus_a, bus_b, bus_c) = (a.bus().unwrap(), b.bus().unwrap(), c.bus().unwrap());
    let bus_d = d.bus().unwrap();
    let mut on_c = bus_c.remote_presence();
    let room = ChannelName::new("lease").unwrap();
    let held_by = |uid: &str| {
        vec![Present {
            uid: Uid::new(uid).unwrap(),
            exclusive: true,
            verified: false,
        }]
    };
    bus_a.set_presence(room.clone(), held_by("on-a"));
    bus_b.set_presence(room.clone(), held_by("on-b"));
    let both = [held_by("on-a"), held_by("on-b")].concat();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        on_c.wait_for(|v| v.get(&room) == Some(&both)),
    );
    seen.await.expect("c sees a's and b's members").unwrap();

    // Longer than the silence that ends a node's presence: live nodes keep counting.
    let kept = tokio::time::timeout(
        Duration::from_secs(3),
        on_c.wait_for(|v| v.get(&room) != Some(&both)),
    );
    assert!(kept.await.is_err(), "live nodes' presence stops counting");
    // A recheck of a live holder keeps it.
    bus_c
        .recheck_presence(room.clone(), Uid::new("on-a").unwrap())
        .await
        .unwrap();
    assert_eq!(
        on_c.borrow().get(&room),
        Some(&both),
        "a recheck kept a live node"
    );

    // A stops without a word (its tasks and connection end, as in a crash): far sooner than
    // the 15 s expiry, only b's member is left.
    drop(bus_a);
    drop(a);
    let dropped_at = Instant::now();
    let only_b = held_by("on-b");
    let gone = tokio::time::timeout(
        Duration::from_secs(15),
        on_c.wait_for(|v| v.get(&room) == Some(&only_b)),
    );
    gone.await.expect("a's members go").unwrap();
    let after = dropped_at.elapsed();
    assert!(
        after < Duration::from_secs(2),
        "a's presence counted {after:?} after it died"
    );

    // B goes the same way, and joins do not wait for its silence: a recheck finds NATS has no
    // responder for it any more, far sooner than its beats would tell.
    bus_b.set_presence(room.clone(), held_by("on-b"));
    let before = connections(&server).await;
    drop(bus_b);
    drop(b);
    // As for a killed process, whose kernel closes its socket: the server has closed b's
    // connection (dropping the store ends it a moment later).
    let limit = Instant::now() + Duration::from_secs(5);
    while connections(&server).await >= before {
        assert!(Instant::now() < limit, "b's connection never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dropped_at = Instant::now();
    loop {
        bus_c
            .recheck_presence(room.clone(), Uid::new("on-b").unwrap())
            .await
            .unwrap();
        if on_c.borrow().get(&room).is_none() {
            break;
        }
        // Well below the 750 ms its silence would take at least.
        assert!(
            dropped_at.elapsed() < Duration::from_millis(300),
            "b still counted {:?} after its connection closed, rechecked",
            dropped_at.elapsed()
        );
    }

    // D withdraws its presence and syncs: once `sync` resolves, c is told at once.
    bus_d.set_presence(room.clone(), held_by("on-d"));
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        on_c.wait_for(|v| v.get(&room) == Some(&held_by("on-d"))),
    );
    seen.await.expect("c sees d's member").unwrap();
    bus_d.set_presence(room.clone(), Vec::new());
    d.sync().await.unwrap();
    let withdrawn_at = Instant::now();
    let left = tokio::time::timeout(
        Duration::from_secs(15),
        on_c.wait_for(|v| v.get(&room).is_none()),
    );
    left.await.expect("d's withdrawal reaches c").unwrap();
    let after = withdrawn_at.elapsed();
    assert!(
        after < Duration::from_millis(500),
        "d's withdrawal reached c {after:?} after its sync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_released_while_jetstream_has_no_quorum_stops_counting_once_rechecked() {
    crate::logs();
    let cluster = Cluster::start().await;
    // Both nodes on the first server, which keeps relaying core NATS (beats, probes) while the
    // other two are frozen and the presence bucket (three replicas) can store nothing.
    let first = cluster.nodes[0].as_ref().expect("n1 runs").url.clone();
    let node = |name: &str| {
        let mut config = config(vec![first.clone()], name);
        config.replicas = 3;
        config.presence_heartbeat = Duration::from_secs(5);
        kanava_cluster::ClusterStore::connect(config)
    };
    let (a, c) = (node("node-a").await.unwrap(), node("node-c").await.unwrap());
    let (bus_a, bus_c) = (a.bus().unwrap(), c.bus().unwrap());
    let mut on_c = bus_c.remote_presence();
    let room = ChannelName::new("no-quorum").unwrap();
    let uid = Uid::new("leaves").unwrap();
    let held = vec![Present {
        uid: uid.clone(),
        exclusive: true,
        verified: false,
    }];
    bus_a.set_presence(room.clone(), held.clone());
    tokio::time::timeout(
        Duration::from_secs(5),
        on_c.wait_for(|v| v.get(&room) == Some(&held)),
    )
    .await
    .expect("c sees a's member")
    .unwrap();

    for name in ["n2", "n3"] {
        cluster.signal(name, "STOP");
    }
    // The member leaves a; a cannot store that.
    bus_a.set_presence(room.clone(), Vec::new());
    let unanswered = bus_c
        .recheck_presence(room.clone(), uid.clone())
        .await
        .unwrap();
    let still = on_c.borrow().get(&room).cloned();
    for name in ["n2", "n3"] {
        cluster.signal(name, "CONT");
    }
    assert!(!unanswered, "a answered its probe");
    assert_eq!(
        still.unwrap_or_default(),
        Vec::new(),
        "c still counts the member a released"
    );
}
