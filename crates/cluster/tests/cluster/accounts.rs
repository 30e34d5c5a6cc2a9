//! Names and keys, private messages, bans and topics: the Store trait's contract
//! ([`kanava_store::contract`]), in the cluster's buckets, with names and private messages read
//! through a second node.

use kanava_cluster::ClusterStore;
use kanava_store::contract;

use crate::harness::{Options, Server, store};

/// A JetStream server and a node on it.
async fn one_node() -> (Server, ClusterStore) {
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await;
    (server, a)
}

/// A JetStream server and two nodes on it.
async fn two_nodes() -> (Server, ClusterStore, ClusterStore) {
    let (server, a) = one_node().await;
    let b = store(&server, "node-b").await;
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_bind_on_first_use_are_listed_and_released() {
    let (_server, a, b) = two_nodes().await;
    contract::names_bind_on_first_use_are_listed_and_released(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys() {
    let (_server, store) = one_node().await;
    contract::a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys(&store)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_are_unread_until_taken_once() {
    let (_server, a, b) = two_nodes().await;
    contract::private_messages_are_unread_until_taken_once(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_hold_until_they_end_or_are_lifted() {
    let (_server, store) = one_node().await;
    contract::bans_hold_until_they_end_or_are_lifted(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_kept_per_room_and_purged_with_it() {
    let (_server, store) = one_node().await;
    contract::topics_are_kept_per_room_and_purged_with_it(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_key_never_locks_its_holder_out() {
    let (_server, a, b) = two_nodes().await;
    contract::a_pending_key_never_locks_its_holder_out(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_unused_expire() {
    let (_server, a, b) = two_nodes().await;
    contract::names_unused_expire(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_renamed_with_a_cooldown() {
    let (_server, a, b) = two_nodes().await;
    contract::a_name_is_renamed_with_a_cooldown(&a, &b).await;
}
