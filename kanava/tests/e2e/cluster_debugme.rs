//! debug-me across cluster nodes, with the real `debug-me` program: a user on node A, a
//! developer and a watcher on node B, a download through node C. The session stays on A, which
//! writes the one log; B and C follow it through NATS.

use std::process::Command;

use crate::cluster::node;
use crate::debugme_server::{Roles, debug_me};
use crate::nats::NatsCluster;
use crate::support::*;

/// The session's URL on another node: the same session id, that node's address.
fn on_node(node: &Kanava, id: &str) -> String {
    format!("http://{}/{id}", node.debug_me)
}

#[tokio::test]
async fn a_real_session_on_one_node_is_joined_watched_and_downloaded_through_others() {
    let _heavy = heavy().await;
    let nats = NatsCluster::start().await;
    let a = node(&nats.urls(), "a", &[]);
    let b = node(&nats.urls(), "b", &[]);
    let c = node(&nats.urls(), "c", &[]);
    let roles = Roles::new();
    let scratch = tempfile::tempdir().unwrap();
    new_gpg_key(&roles.gnupg("dev"), "Dev");

    let (_, id) = roles
        .start_user(scratch.path(), &format!("http://{}/", a.debug_me))
        .await;
    let on_b = on_node(&b, &id);
    roles
        .admit_developer_and_watcher(scratch.path(), &on_b, &on_b)
        .await;

    roles
        .developer_echoes("hello-across-nodes", &["user", "watch"])
        .await;
    roles.developer_exits(5, &["user", "dev", "watch"]).await;

    // One log, written by the user's node; the others hold none.
    let log_on = |node: &Kanava| node.data.join(format!("debug-me/debug-me.{id}.log"));
    let server_log = std::fs::read_to_string(log_on(&a)).expect("node A wrote the session's log");
    assert!(server_log.contains("echo hello-across-nodes"));
    assert!(!log_on(&b).exists() && !log_on(&c).exists());

    // The finished session downloads whole through a third node, and every log verifies.
    let download_dir = tempfile::tempdir().unwrap();
    let gnupg = roles.gnupg("verify");
    let download = debug_me(
        &["--download", &on_node(&c, &id)],
        download_dir.path(),
        &gnupg,
    );
    assert!(
        download.status.success(),
        "{}",
        String::from_utf8_lossy(&download.stderr)
    );
    let downloaded = download_dir.path().join(format!("debug-me.{id}.log"));
    let downloaded_lines = std::fs::read_to_string(&downloaded)
        .unwrap_or_else(|e| panic!("{}: {e}", downloaded.display()))
        .lines()
        .count();
    assert_eq!(
        downloaded_lines,
        server_log.lines().count(),
        "the download through C has every message of A's log"
    );
    for log in [
        log_on(&a),
        downloaded,
        roles.log("dev", true, &id),
        roles.log("watch", true, &id),
    ] {
        let ours = Command::new(env!("CARGO_BIN_EXE_kanava"))
            .arg("verify")
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "{}: {}{}",
            log.display(),
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&ours.stderr)
        );
    }
}

#[tokio::test]
async fn an_unknown_session_is_refused_in_a_cluster() {
    let nats = NatsCluster::start().await;
    let a = node(&nats.urls(), "a", &[]);
    let scratch = tempfile::tempdir().unwrap();
    let gnupg = private_dir(&scratch.path().join("gnupg"));
    let out = debug_me(
        &[
            "--download",
            &on_node(&a, "00000000-0000-4000-8000-000000000000"),
        ],
        scratch.path(),
        &gnupg,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("Unknown session ID"), "{said}");
}
