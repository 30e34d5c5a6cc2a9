//! kanava's own debug-me clients (`kanava watch`, `kanava download`) as real processes, against
//! kanava's server and the real `debug-me --server`, with a user session that signs and chains
//! its output as a real user's does; every log they write must pass both `debug-me --verify`
//! and `kanava verify`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::debugme_server::{raw_recv, raw_send, user_messages, versioned};
use crate::support::*;

fn kanava(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kanava"));
    command.args(args);
    command
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that both `debug-me --verify` and `kanava verify` accept `log`.
fn both_verify(log: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let reference = Command::new("debug-me")
        .arg("--verify")
        .arg(log)
        .env("GNUPGHOME", private_dir(&scratch.path().join("gnupg")))
        .current_dir(scratch.path())
        .output()
        .expect("debug-me is installed (apt-get install debug-me)");
    assert!(
        reference.status.success(),
        "debug-me --verify {}: {}",
        log.display(),
        text(&reference)
    );
    let ours = kanava(&["verify"]).arg(log).output().unwrap();
    assert!(
        ours.status.success(),
        "kanava verify {}: {}",
        log.display(),
        text(&ours)
    );
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn download_follows_a_live_session_then_saves_the_finished_one() {
    let server = Kanava::start();
    let dir = tempfile::tempdir().unwrap();
    let mut user = versioned(&server).await;
    raw_send(
        &mut user,
        b"M{\"tag\":\"InitMode\",\"contents\":\"nobody\"}",
    )
    .await;
    let id = raw_recv(&mut user).await.unwrap();
    let id: String = serde_json::from_slice(&id[1..]).unwrap();
    let messages = user_messages(40);
    for frame in &messages[..20] {
        assert!(raw_send(&mut user, frame).await);
    }
    let url = format!("http://{}/{id}", server.debug_me);
    let live = dir.path().join("live.log");
    let download = kanava(&["download", &url, "-o"])
        .arg(&live)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the backlog is saved", || lines(&live) == 20).await;
    for frame in &messages[20..] {
        assert!(raw_send(&mut user, frame).await);
    }
    wait_until("the live messages are saved", || {
        lines(&live) == messages.len()
    })
    .await;
    futures_util::SinkExt::close(&mut user).await.unwrap();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&live), messages.len());
    both_verify(&live);

    // The finished session is saved whole, over plain ws:// and over TLS.
    let finished = dir.path().join("finished.log");
    let out = kanava(&["download", &url, "-o"])
        .arg(&finished)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&finished), messages.len());
    both_verify(&finished);
    let tls_url = format!("wss://localhost:{}/debug-me/{id}", server.mles.port());
    let over_tls = dir.path().join("tls.log");
    let out = kanava(&["download", &tls_url, "--ca"])
        .arg(server.cert_path())
        .arg("-o")
        .arg(&over_tls)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&over_tls), messages.len());

    // The default name is debug-me's.
    let out = kanava(&["download", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lines(&dir.path().join(format!("debug-me.{id}.log"))),
        messages.len()
    );
}

#[tokio::test]
async fn a_bad_session_or_server_gets_a_clear_message() {
    let server = Kanava::start();
    // A session that does not exist.
    let url = format!(
        "http://{}/00000000-0000-4000-8000-000000000000",
        server.debug_me
    );
    let out = kanava(&["download", &url, "-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unknown session ID"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Not a URL, or not a debug-me server at all (the Mles listener without TLS).
    let out = kanava(&["download", "ftp://x/1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = kanava(&[
        "download",
        &format!("http://{}/x", server.mles),
        "-o",
        "/dev/null",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
