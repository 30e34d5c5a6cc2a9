//! People joining and leaving a room are shown as they happen (`* bob joined`, `* ~web left`
//! for an unverified Mles client), and `/quiet` hides them.

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
