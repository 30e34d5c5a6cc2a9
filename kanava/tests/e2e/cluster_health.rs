//! `/healthz` of a cluster node tells whether the node's writes reach JetStream, not only
//! whether its TCP link to a NATS server is up: a node whose server lost the cluster's quorum
//! says so within seconds, and a node whose server froze moves to another server by itself.
//! Faults are real: `SIGSTOP` of `nats-server` processes, which keep accepting TCP connections
//! (the kernel completes the handshake) but answer nothing.

use std::time::{Duration, Instant};

use crate::cluster::node;
use crate::nats::NatsCluster;
use crate::support::*;

/// How long a fault may take to show on `/healthz`, and a heal to clear it: the canary's
/// staleness limit (3 s) plus its timeout, with room for a loaded machine.
const NOTICE: Duration = Duration::from_secs(10);

/// `/healthz` of `server`: (status code, body).
async fn healthz(server: &Kanava) -> (u16, serde_json::Value) {
    let (status, body) = server.admin_get("/healthz").await;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status:?}"));
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
    (code, json)
}

/// The NATS server (its index in `nats`) that `server` says it is connected to.
async fn server_of(server: &Kanava, nats: &NatsCluster) -> usize {
    let (_, health) = healthz(server).await;
    let detail = health["cluster"]["detail"].as_str().unwrap_or_default();
    (0..nats.size())
        .find(|&i| {
            let addr = nats.url(i).trim_start_matches("nats://").to_owned();
            detail.contains(&format!(" at {addr};")) || detail.contains(&format!(" at {addr}:"))
        })
        .unwrap_or_else(|| panic!("no NATS server of the cluster in {health}"))
}

/// Waits until `/healthz` answers `code`; returns the body and how long it took since `from`.
async fn wait_for_status(
    server: &Kanava,
    code: u16,
    what: &str,
    from: Instant,
) -> (serde_json::Value, Duration) {
    let deadline = Instant::now() + NOTICE;
    loop {
        let (status, body) = healthz(server).await;
        if status == code {
            return (body, from.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {NOTICE:?} waiting until {what}; /healthz: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A healthy node, on the NATS server that `/healthz` names.
async fn healthy_node(nats: &NatsCluster, name: &str) -> (Kanava, usize) {
    let server = node(&nats.urls(), name, &[]);
    let (health, _) = wait_for_status(&server, 200, "the node is healthy", Instant::now()).await;
    assert_eq!(health["cluster"]["writable"], true, "{health}");
    let on = server_of(&server, nats).await;
    (server, on)
}

#[tokio::test]
async fn healthz_is_503_while_the_nats_cluster_has_no_quorum_and_200_after() {
    let nats = NatsCluster::start().await;
    let (server, on) = healthy_node(&nats, "quorum").await;
    let others: Vec<usize> = (0..nats.size()).filter(|&i| i != on).collect();

    // The node's own server keeps answering TCP and pings; the two others freeze.
    let fault = Instant::now();
    for &i in &others {
        nats.signal(i, "-STOP");
    }
    let (health, to_degraded) =
        wait_for_status(&server, 503, "/healthz reports the lost quorum", fault).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["cluster"]["connected"], true, "{health}");
    assert_eq!(health["cluster"]["writable"], false, "{health}");
    let detail = health["cluster"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("no acknowledged write for "),
        "the reason is missing: {health}"
    );
    wait_until_async("kanava_cluster_writable is 0", || async {
        server.metric("kanava_cluster_writable").await == 0.0
    })
    .await;

    let heal = Instant::now();
    for &i in &others {
        nats.signal(i, "-CONT");
    }
    let (health, to_healthy) =
        wait_for_status(&server, 200, "/healthz reports the healed cluster", heal).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["cluster"]["writable"], true, "{health}");
    // No server could take writes while the quorum was lost: the node stayed where it was.
    assert_eq!(server.metric("kanava_cluster_moves_total").await, 0.0);
    assert_eq!(server_of(&server, &nats).await, on, "{health}");
    wait_until_async("kanava_cluster_writable is 1 again", || async {
        server.metric("kanava_cluster_writable").await == 1.0
    })
    .await;
    eprintln!("quorum lost: 503 after {to_degraded:?}; healed: 200 after {to_healthy:?}");
}

#[tokio::test]
async fn a_node_whose_nats_server_froze_moves_to_another_and_is_healthy_again() {
    let nats = NatsCluster::start().await;
    let (server, on) = healthy_node(&nats, "frozen").await;

    let fault = Instant::now();
    nats.signal(on, "-STOP");
    let (health, to_degraded) =
        wait_for_status(&server, 503, "/healthz reports the frozen server", fault).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let detail = health["cluster"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("no acknowledged write for ")
            || detail.starts_with("disconnected from NATS"),
        "the reason is missing: {health}"
    );

    // Healthy again while the server is still frozen: on another one.
    let (health, to_healthy) = wait_for_status(
        &server,
        200,
        "/healthz is 200 again on another NATS server",
        fault,
    )
    .await;
    assert_eq!(health["cluster"]["writable"], true, "{health}");
    let now_on = server_of(&server, &nats).await;
    assert_ne!(now_on, on, "still on the frozen server: {health}");
    eprintln!(
        "own server frozen: 503 after {to_degraded:?} ({detail}); \
         200 on another server after {to_healthy:?}"
    );
    nats.signal(on, "-CONT");
}
