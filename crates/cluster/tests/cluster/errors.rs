//! Start-up failures an operator meets first, each with an error that says what to change.

use async_nats::jetstream::stream::{Config, StorageType};
use kanava_cluster::{ClusterError, ClusterStore};

use crate::harness::{Options, Server, config, free_port};

#[tokio::test]
async fn no_server_listening_names_the_urls() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let error = ClusterStore::connect(config(vec![url.clone()], "n"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, ClusterError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&url), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_jetstream_is_refused() {
    let server = Server::start(Options::default()).await;
    let error = ClusterStore::connect(config(vec![server.url.clone()], "n"))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, ClusterError::NoJetStream), "{error:?}");
    assert!(error.to_string().contains("-js"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_replicas_than_servers_and_frames_larger_than_the_payload_are_refused() {
    let server = Server::start(Options {
        jetstream: true,
        config: Some("max_payload: 65536\n".into()),
    })
    .await;
    let mut three = config(vec![server.url.clone()], "n");
    three.replicas = 3;
    three.max_frame = Some(32 * 1024);
    let error = ClusterStore::connect(three).await.err().unwrap();
    assert!(
        matches!(error, ClusterError::NotEnoughPeers { replicas: 3, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("needs 3 JetStream servers for --cluster-replicas 3"),
        "{text}"
    );

    let mut large = config(vec![server.url.clone()], "n");
    large.max_frame = Some(60 * 1024);
    let error = ClusterStore::connect(large).await.err().unwrap();
    assert!(
        matches!(
            error,
            ClusterError::PayloadTooSmall {
                max_payload: 65536,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("max_payload") && text.contains("--max-frame"),
        "{text}"
    );

    let mut fits = config(vec![server.url.clone()], "n");
    fits.max_frame = Some(32 * 1024);
    let store = ClusterStore::connect(fits).await.unwrap();
    assert_eq!((store.max_payload(), store.max_frame()), (65536, 32 * 1024));
    drop(store);
    let mut derived = config(vec![server.url.clone()], "n");
    derived.max_frame = None;
    let store = ClusterStore::connect(derived).await.unwrap();
    assert_eq!(store.max_frame(), 65536 - kanava_cluster::HEADER_ROOM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_with_other_storage_is_refused() {
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(Config {
        name: "KANAVA_CH".into(),
        subjects: vec!["kanava.ch.>".into()],
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = ClusterStore::connect(config(vec![server.url.clone()], "n"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&error, ClusterError::IncompatibleStream { stream, .. } if stream == "KANAVA_CH"),
        "{error:?}"
    );
}
