//! One identity across transports: a name bound to an SSH key cannot be taken by a Mles client in
//! any spelling, unverified Mles uids are shown as such (`~uid`) in every SSH view and across a
//! restart, and a Mles client holding a proof signed by one of the name's keys (the real
//! `ssh-keygen -Y sign`) speaks as the name.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::bots::tail;
use crate::ssh::{Keys, ssh, stderr};
use crate::support::*;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `auth` value proving `uid` in `channel` at `time`: `ssh-keygen -Y sign -n kanava-mles`
/// over `UID \n CHANNEL \n TIME` with `key`, as the README tells bots to make it.
fn proof(key: &Path, uid: &str, channel: &str, time: u64) -> String {
    let armoured = ssh_keygen_sign(key, "kanava-mles", &format!("{uid}\n{channel}\n{time}"));
    assert!(
        armoured.starts_with("-----BEGIN SSH SIGNATURE-----"),
        "{armoured}"
    );
    format!("sshsig:{time}:{armoured}")
}

fn header(uid: &str, channel: &str, auth: Option<&str>) -> String {
    let mut header = serde_json::json!({"uid": uid, "channel": channel});
    if let Some(auth) = auth {
        header["auth"] = auth.into();
    }
    header.to_string()
}

/// Sends `header` and returns the server's close code and reason.
async fn refusal(client: &Client, header: &str) -> (CloseCode, String) {
    let mut ws = client.send_header(header).await;
    close_frame(&mut ws).await
}

#[tokio::test]
async fn a_mles_client_cannot_pass_for_a_bound_name_and_is_shown_unverified() {
    let keys = Keys::new();
    let data = tempfile::tempdir().unwrap();
    let server = Start::new().data(data.path()).start();
    let room = channel("dev");
    let alice_key = keys.path("ed25519");
    let said = ssh(&server, &[&alice_key], "alice", &["say", &room, "hello"]).await;
    assert!(said.status.success(), "{}", stderr(&said));

    let client = server.client();
    for uid in [
        "alice",
        "Alice",
        "ALICE",
        "alice ",
        "alice> fake",
        "* alice",
        "<b>alice</b>",
        "~alice",
    ] {
        let (code, reason) = refusal(&client, &header(uid, &room, None)).await;
        assert_eq!(code, CloseCode::Policy, "{uid:?}");
        assert!(
            reason.contains("name bound to an SSH key"),
            "{uid:?}: {reason}"
        );
    }

    // Unbound uids still join, unverified; and alice is not locked out of her room.
    let mut carol = client.join("carol", &room).await;
    carol.send(text("hi from carol")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 2.0).await;
    let again = ssh(&server, &[&alice_key], "alice", &["say", &room, "still me"]).await;
    assert!(again.status.success(), "{}", stderr(&again));

    let shown = tail(&server, &keys.path("ecdsa384"), &room).await;
    for line in [
        "<alice> hello",
        "* ~carol joined",
        "<~carol> hi from carol",
        "<alice> still me",
    ] {
        assert!(
            shown.iter().any(|l| l == line),
            "{line:?} missing from {shown:#?}"
        );
    }
    assert!(!shown.iter().any(|l| l.contains("<carol>")), "{shown:#?}");
    let who = ssh(&server, &[&alice_key], "alice", &["who", &room]).await;
    assert_eq!(String::from_utf8_lossy(&who.stdout), "~carol\n");

    // Whether a sender was verified survives a restart.
    drop(carol);
    assert!(server.terminate(), "kanava exits cleanly");
    let server = Start::new().data(data.path()).start();
    let after = tail(&server, &keys.path("ecdsa384"), &room).await;
    assert_eq!(
        after, shown,
        "the same events, marked the same, after a restart"
    );
}

#[tokio::test]
async fn a_mles_client_with_a_proof_speaks_as_the_bound_name() {
    let keys = Keys::new();
    let server = Kanava::start();
    let room = channel("bots");
    let alice_key = keys.path("ed25519");
    let bound = ssh(&server, &[&alice_key], "alice", &["who", &room]).await;
    assert!(bound.status.success(), "{}", stderr(&bound));

    let client = server.client();
    let auth = proof(&alice_key, "alice", &room, now_secs());
    let mut bot = client.join_with(&header("alice", &room, Some(&auth))).await;
    bot.send(text("from the bot")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;

    // Readers see the name itself, and the proof never reaches them.
    let mut late = client.join("late", &room).await;
    let replay = recv_n(&mut late, 2).await;
    assert_eq!(
        json(&replay[0]),
        serde_json::json!({"uid": "alice", "channel": room})
    );
    assert_eq!(replay[1], text("from the bot"));
    drop(late);
    let shown = tail(&server, &keys.path("ecdsa384"), &room).await;
    assert!(shown.iter().any(|l| l == "* alice joined"), "{shown:#?}");
    assert!(
        shown.iter().any(|l| l == "<alice> from the bot"),
        "{shown:#?}"
    );
    assert!(!shown.iter().any(|l| l.contains("~alice")), "{shown:#?}");
    drop(bot);

    let now = now_secs();
    for (what, header, reason) in [
        (
            "another key",
            header(
                "alice",
                &room,
                Some(&proof(&keys.path("rsa"), "alice", &room, now)),
            ),
            "not one of this name's",
        ),
        (
            "an old proof",
            header(
                "alice",
                &room,
                Some(&proof(&alice_key, "alice", &room, now - 600)),
            ),
            "too old",
        ),
        (
            "another channel's proof",
            header(
                "alice",
                &room,
                Some(&proof(&alice_key, "alice", "elsewhere", now)),
            ),
            "does not match",
        ),
        (
            "a name nobody bound",
            header("zed", &room, Some(&proof(&alice_key, "zed", &room, now))),
            "not a bound name",
        ),
        (
            "a look-alike with a valid proof for it",
            header(
                "alice> x",
                &room,
                Some(&proof(&alice_key, "alice> x", &room, now)),
            ),
            "not a bound name",
        ),
        (
            "garbage",
            header("alice", &room, Some("sshsig:1:bm90IGEgc2lnbmF0dXJl")),
            "proof malformed",
        ),
    ] {
        let (code, got) = refusal(&client, &header).await;
        assert_eq!(code, CloseCode::Policy, "{what}");
        assert!(got.contains(reason), "{what}: {got}");
    }
}
