//! A room's history cannot be flushed by presence noise: joining again stores nothing new (over
//! SSH and Mles), away, back and topic announcements are rate-limited per user, and so are the
//! rooms a user creates.

use crate::bots::tail;
use crate::chat::LineSession;
use crate::ssh::{Keys, ssh, ssh_lines, stderr};
use crate::support::*;

/// The messages (`<…>` lines) and joins (`* … joined`) `tail` shows for `room`.
async fn events(server: &Kanava, keys: &Keys, room: &str) -> (Vec<String>, Vec<String>) {
    let shown = tail(server, &keys.path("ecdsa256"), room).await;
    let messages = shown
        .iter()
        .filter(|e| e.starts_with('<'))
        .cloned()
        .collect();
    let joins = shown
        .iter()
        .filter(|e| e.ends_with(" joined"))
        .cloned()
        .collect();
    (messages, joins)
}

#[tokio::test]
async fn join_and_part_cycles_leave_the_rooms_messages_in_place() {
    let keys = Keys::new();
    let server = Start::new().args(&["--history-limit", "50"]).start();
    let room = channel("dev");
    for i in 0..10 {
        let said = ssh(
            &server,
            &[&keys.path("ed25519")],
            "bob",
            &["say", &room, &format!("message {i}")],
        )
        .await;
        assert!(said.status.success(), "{}", stderr(&said));
    }
    let (before, _) = events(&server, &keys, &room).await;
    assert_eq!(before.len(), 10);

    // 250 /join + /part cycles over the line interface, then 100 Mles reconnects (twice what
    // the history keeps).
    let cycles = format!("/join #{room}\n/part\n").repeat(250);
    let out = ssh_lines(
        &server,
        &keys.path("rsa"),
        "mallory",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        cycles.into_bytes(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let client = server.client();
    for _ in 0..100 {
        let mut ws = client.join("noisy", &room).await;
        ws.close(None).await.unwrap();
    }

    let (after, joins) = events(&server, &keys, &room).await;
    assert_eq!(after, before, "every message is still in the history");
    assert_eq!(
        joins,
        ["* mallory joined", "* ~noisy joined"],
        "one join each is kept"
    );
}

#[tokio::test]
async fn away_back_and_topic_announcements_are_rate_limited() {
    let keys = Keys::new();
    let server = Kanava::start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(&server, &keys.path("ecdsa256"), "bob").await;
    for (i, command) in ["/away lunch", "/back", "/away again"].iter().enumerate() {
        alice.send(command).await;
        let expected = ["is away: lunch", "is back", "is away: again"][i];
        bob.out_line(expected, |l| l.ends_with(&format!(" * alice {expected}")))
            .await;
    }
    let held = alice.ask("/back").await;
    assert!(
        held.contains("done, not announced: too many announcements"),
        "{held}"
    );
    assert!(
        alice
            .ask("/topic flood")
            .await
            .contains("topic not changed"),
        "the topic shares the limit"
    );
    // Only the first three reached bob: the message after them is the next thing he sees.
    alice.send("after the noise").await;
    bob.out_line("alice's message", |l| {
        assert!(
            !l.contains("alice is back") && !l.contains("flood"),
            "announced past the limit: {l}"
        );
        l.ends_with("<alice> after the noise")
    })
    .await;
}

#[tokio::test]
async fn rooms_created_per_user_are_limited() {
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-rooms-per-hour", "3"]).start();
    let say = |user: &'static str, key: &'static str, room: String| {
        let keys = &keys;
        let server = &server;
        async move { ssh(server, &[&keys.path(key)], user, &["say", &room, "hi"]).await }
    };
    let rooms: Vec<String> = (0..4).map(|i| channel(&format!("new{i}"))).collect();
    for room in &rooms[..3] {
        let out = say("alice", "ed25519", room.clone()).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let refused = say("alice", "ed25519", rooms[3].clone()).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("created too many rooms"),
        "{}",
        stderr(&refused)
    );
    // Rooms that exist stay open to her, and others still create rooms.
    let existing = say("alice", "ed25519", rooms[0].clone()).await;
    assert!(existing.status.success(), "{}", stderr(&existing));
    let other = say("bob", "ecdsa256", rooms[3].clone()).await;
    assert!(other.status.success(), "{}", stderr(&other));
    // The full-screen and line interfaces refuse /join the same way.
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let answer = alice.ask(&format!("/join #{}", channel("new4"))).await;
    assert!(answer.contains("created too many rooms"), "{answer}");
}

#[tokio::test]
async fn a_session_holds_at_most_fifty_rooms_open() {
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-rooms-per-hour", "100"]).start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    // The lobby and 49 more: joins answer nothing on stderr.
    let rooms: Vec<String> = (1..=50).map(|i| channel(&format!("r{i}"))).collect();
    for room in &rooms[..49] {
        alice.send(&format!("/join #{room}")).await;
    }
    let refused = alice.ask(&format!("/join #{}", rooms[49])).await;
    assert!(
        refused.contains("50 rooms are open") && refused.contains("/part one first"),
        "{refused}"
    );
    // Parting one makes room; an open room can still be switched to.
    let left = alice.ask("/part").await;
    assert!(left.contains(&format!("you left #{}", rooms[48])), "{left}");
    alice.send(&format!("/join #{}", rooms[49])).await;
    assert_eq!(alice.ask("/who").await, "kanava: 1 here: alice");
    alice.send(&format!("/join #{}", rooms[0])).await;
    assert_eq!(alice.ask("/who").await, "kanava: 1 here: alice");
}
