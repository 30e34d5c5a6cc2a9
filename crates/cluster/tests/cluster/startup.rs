//! Nodes starting together on a fresh server: each creates or updates every stream and bucket
//! at the same time as the others, and every one of them must come up.

use std::time::Duration;

use kanava_cluster::ClusterStore;

use crate::harness::{Cluster, Options, Server, config};

/// Connects `count` nodes to `servers` at once, with `replicas`; panics with every error if one
/// fails.
async fn start_together(servers: Vec<String>, count: usize, replicas: usize, round: usize) {
    let starts: Vec<_> = (0..count)
        .map(|i| {
            let mut config = config(servers.clone(), &format!("node-{i}"));
            config.replicas = replicas;
            tokio::spawn(ClusterStore::connect(config))
        })
        .collect();
    let mut errors = Vec::new();
    let mut stores = Vec::new();
    for start in starts {
        match start.await.expect("the start task") {
            Ok(store) => stores.push(store),
            Err(error) => errors.push(error.to_string()),
        }
    }
    assert!(
        errors.is_empty(),
        "round {round}: {} of {count} nodes failed to start: {errors:#?}",
        errors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_starting_together_on_a_fresh_server_all_start() {
    crate::logs();
    for round in 0..6 {
        let server = Server::start(Options {
            jetstream: true,
            config: None,
        })
        .await;
        tokio::time::timeout(
            Duration::from_secs(120),
            start_together(vec![server.url.clone()], 4, 1, round),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the nodes did not start within 120 s"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_together_on_a_fresh_cluster_all_start() {
    crate::logs();
    for round in 0..3 {
        let cluster = Cluster::start().await;
        tokio::time::timeout(
            Duration::from_secs(90),
            start_together(cluster.urls(), 4, 3, round),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the nodes did not start within 90 s"));
    }
}
