//! Entering and leaving rooms in the chat: people joining and leaving are shown as they happen
//! (`* bob joined`, `* ~web left` for an unverified Mles client) until `/quiet`; `/part` goes
//! back to `#lobby`, which is never left; the message of the day greets each login.

use crate::chat::LineSession;
use crate::ssh::Keys;
use crate::support::*;

#[tokio::test]
async fn joins_and_leaves_show_live_until_quiet() {
    let keys = Keys::new();
    let server = Kanava::start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;

    let bob = LineSession::open(&server, &keys.path("ecdsa256"), "bob").await;
    alice
        .out_line("bob's arrival", |l| l.ends_with(" * bob joined"))
        .await;
    let web = server.client().join("web", "lobby").await;
    alice
        .out_line("web's arrival", |l| l.ends_with(" * ~web joined"))
        .await;
    drop(web);
    alice
        .out_line("web's departure", |l| l.ends_with(" * ~web left"))
        .await;

    let answer = alice.ask("/quiet").await;
    assert!(answer.contains("not shown"), "{answer}");
    drop(bob);
    let mut carol = LineSession::open(&server, &keys.path("ecdsa384"), "carol").await;
    carol.send("hello").await;
    alice
        .out_line(
            "carol's message, with no arrival or departure before it",
            |l| {
                assert!(
                    !l.ends_with(" joined") && !l.ends_with(" left"),
                    "shown while quiet: {l}"
                );
                l.ends_with(" <carol> hello")
            },
        )
        .await;
}

#[tokio::test]
async fn part_goes_back_to_the_lobby_which_stays() {
    let keys = Keys::new();
    let server = Kanava::start();
    let mut lobby = server.client().join("watcher", "lobby").await;
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    for room in ["a", "b"] {
        alice.send(&format!("/join #{}", channel(room))).await;
    }
    let left = alice.ask("/part").await;
    assert!(left.contains("you left #b-"), "{left}");
    alice.send("back in the lobby").await;
    loop {
        if recv(&mut lobby).await == text("back in the lobby") {
            break;
        }
    }
    let stay = alice.ask("/part").await;
    assert!(stay.contains("#lobby is where everyone starts"), "{stay}");
}

#[tokio::test]
async fn the_message_of_the_day_greets_each_login() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let motd = dir.path().join("motd");
    std::fs::write(&motd, "Welcome to kanava\n\x1b[31mbe kind\n").unwrap();
    let server = Start::new()
        .args(&["--motd", motd.to_str().unwrap()])
        .start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    alice
        .out_line("the first line", |l| l.ends_with("Welcome to kanava"))
        .await;
    alice
        .out_line("the second, its escape shown", |l| {
            l.ends_with("^[[31mbe kind")
        })
        .await;
    // Edits apply at the next login.
    std::fs::write(&motd, "New rules\n").unwrap();
    let mut bob = LineSession::open(&server, &keys.path("ecdsa256"), "bob").await;
    bob.out_line("the new text", |l| l.ends_with("New rules"))
        .await;
}
