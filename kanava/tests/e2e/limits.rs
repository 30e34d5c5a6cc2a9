//! The process-wide limits: one connection budget over every listener, taken at accept time and
//! derived from the open-file limit, with the admin listener kept apart so that probes are
//! answered while an attack holds every other slot.

use std::process::{Command, Stdio};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{Start, connect_from, limit_open_files, wait_until_async};

#[test]
fn a_connection_cap_beyond_the_open_file_limit_is_refused_at_start_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kanava"));
    command
        .args(["serve", "--data"])
        .arg(data.path())
        .args([
            "--mles-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--ssh-listen",
            "127.0.0.1:0",
            "--debug-me-listen",
            "127.0.0.1:0",
        ])
        .args(["--max-connections", "5000"])
        .stdin(Stdio::null());
    limit_open_files(&mut command, 1024);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-connections 5000 does not fit the open-file limit 1024")
            && stderr.contains("at most 352 connections fit"),
        "{stderr}"
    );
}

#[test]
fn the_default_budget_follows_the_open_file_limit_and_is_printed() {
    let server = Start::new().open_file_limit(1024).start();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|line| line.contains("limits 352 connections over all listeners")),
        "{:?}",
        server.stdout_lines
    );
}

/// Holds `count` raw connections to `addr` from `source`.
async fn hold(source: &str, addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(connect_from(source, addr).await.unwrap());
    }
    held
}

/// Whether the server closed `tcp` (EOF or reset) without reading anything from us.
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(crate::support::WAIT, tcp.read(&mut buf)).await,
        Ok(Ok(_) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_draws_from_one_budget_and_healthz_answers_while_it_is_full() {
    let server = Start::new()
        .args(&[
            "--max-connections",
            "40",
            "--max-connections-per-source",
            "10",
            "--ssh-max-connections-per-source",
            "10",
            "--debug-me-max-connections-per-source",
            "10",
            // The held connections never finish a handshake: give them time to be counted.
            "--handshake-timeout",
            "60s",
            "--ssh-auth-timeout",
            "60s",
        ])
        .start();
    let ssh = std::net::SocketAddr::from(([127, 0, 0, 1], server.ssh_port));
    // Four hosts, each up to its per-source cap, on three listeners: 39 of the 40 slots.
    let mut attack = hold("127.0.0.2", server.mles, 10).await;
    attack.extend(hold("127.0.0.3", ssh, 10).await);
    attack.extend(hold("127.0.0.4", server.debug_me, 10).await);
    attack.extend(hold("127.0.0.5", server.mles, 9).await);
    server.wait_metric("kanava_connections_open", 39.0).await;

    // The last slot serves a real client.
    let client = server.client();
    let mut alice = client.join("alice", "budget").await;

    // Now every listener refuses, for the budget, whoever asks.
    for addr in [server.mles, ssh, server.debug_me] {
        let mut refused = connect_from("127.0.0.6", addr).await.unwrap();
        assert!(
            closed_by_server(&mut refused).await,
            "{addr} kept a connection past the budget"
        );
    }
    for listener in ["mles", "ssh", "debug-me"] {
        server
            .wait_metric(
                &format!(
                    "kanava_connections_refused_total{{listener=\"{listener}\",reason=\"budget\"}}"
                ),
                1.0,
            )
            .await;
    }
    let (status, body) = server.admin_get("/healthz").await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(
        server.open_fds() < 40 + 64,
        "{} fds open",
        server.open_fds()
    );

    // The attack ends; its slots come back.
    drop(attack);
    wait_until_async("the attackers' slots are given back", || async {
        server.metric("kanava_connections_open").await <= 1.0
    })
    .await;
    let mut bob = client.join("bob", "budget").await;
    futures_util::SinkExt::send(&mut alice, crate::support::text("hello bob"))
        .await
        .unwrap();
    loop {
        let heard = crate::support::describe(&crate::support::recv(&mut bob).await);
        if heard.contains("hello bob") {
            break;
        }
    }
}
