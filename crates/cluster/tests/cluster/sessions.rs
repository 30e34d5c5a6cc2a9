//! debug-me sessions across nodes: the user's node records a session, another node follows it
//! (replay, then live, then its end) and sends messages into it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kanava_store::{Origin, SessionBus, SessionEvent, SessionMessage, Store};
use tokio::sync::mpsc;

use crate::harness::{Options, Server, store};

/// A fresh session id, as the session's node makes them.
fn session_id() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn message(node: &str, member: u64, text: &str) -> SessionMessage {
    SessionMessage {
        frame: Bytes::from(format!("L{text}")),
        origin: Origin {
            node: node.into(),
            member,
        },
    }
}

/// The next event, within a bound (the test fails instead of hanging).
async fn next(events: &mut mpsc::Receiver<SessionEvent>) -> Option<SessionEvent> {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
}

async fn started() -> (Server, Arc<dyn SessionBus>, Arc<dyn SessionBus>) {
    crate::logs();
    let server = Server::start(Options {
        jetstream: true,
        ..Default::default()
    })
    .await;
    let a = store(&server, "node-a").await.sessions().unwrap();
    let b = store(&server, "node-b").await.sessions().unwrap();
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_followed_live_from_another_node_and_takes_its_messages_in() {
    let (_server, a, b) = started().await;
    assert_eq!((a.node(), b.node()), ("node-a", "node-b"));
    let id = session_id();
    assert!(b.follow(&id).await.unwrap().is_none(), "not announced yet");
    assert!(
        b.follow("../x").await.unwrap().is_none(),
        "not a session id"
    );
    assert!(b.follow(&id.to_uppercase()).await.unwrap().is_none());

    let mut inbox = a.open(&id).await.unwrap();
    let logged = [
        message("node-a", 0, "user 1"),
        message("node-a", 3, "developer"),
        message("node-a", 0, "user 2"),
    ];
    let recorded: Vec<_> = logged.iter().map(|m| a.record(&id, m.clone())).collect();
    let mut seqs = Vec::new();
    for pending in recorded {
        seqs.push(pending.await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in call order");

    let mut events = b.follow(&id).await.unwrap().expect("announced");
    for expected in &logged {
        assert_eq!(
            next(&mut events).await,
            Some(SessionEvent::Message(expected.clone()))
        );
    }
    let live = message("node-a", 0, "user 3");
    a.record(&id, live.clone()).await.unwrap();
    assert_eq!(next(&mut events).await, Some(SessionEvent::Message(live)));

    // A developer on b types: a's session logs it, then records it.
    let typed = message("node-b", 7, "typed on b");
    let sent = b.send(&id, typed.clone());
    let inbound = inbox.recv().await.unwrap();
    assert_eq!(inbound.message, typed);
    a.record(&id, inbound.message).await.unwrap();
    inbound.logged.send(Ok(())).unwrap();
    sent.await.unwrap();
    assert_eq!(next(&mut events).await, Some(SessionEvent::Message(typed)));

    let refused = b.send(&id, message("node-b", 7, "refused"));
    inbox
        .recv()
        .await
        .unwrap()
        .logged
        .send(Err("x".into()))
        .unwrap();
    let error = refused.await.unwrap_err().to_string();
    assert!(error.contains("did not log the message: x"), "{error}");
    let dropped = b.send(&id, message("node-b", 7, "dropped"));
    drop(inbox.recv().await.unwrap());
    let error = dropped.await.unwrap_err().to_string();
    assert!(error.contains("the session has ended"), "{error}");

    let end = a.end(&id).await.unwrap();
    assert!(end > seqs[2]);
    assert_eq!(next(&mut events).await, Some(SessionEvent::Ended));
    assert_eq!(next(&mut events).await, None, "nothing follows the end");
    // It closes once the server has the unsubscription.
    assert!(inbox.recv().await.is_none(), "the inbox closes at the end");
    let started = Instant::now();
    let error = b.send(&id, message("node-b", 7, "late")).await.unwrap_err();
    assert!(error.to_string().contains("no node holds"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1), "no responders");

    // A finished session is replayed from the start, up to its end.
    let mut replay = b.follow(&id).await.unwrap().expect("still kept");
    let mut frames = Vec::new();
    while let Some(event) = next(&mut replay).await {
        match event {
            SessionEvent::Message(m) => frames.push(m.frame),
            SessionEvent::Ended => {
                assert_eq!(next(&mut replay).await, None);
                break;
            }
        }
    }
    let texts: Vec<_> = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
    assert_eq!(
        texts,
        ["Luser 1", "Ldeveloper", "Luser 2", "Luser 3", "Ltyped on b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_unknown_or_closed_sessions_fail_at_once() {
    let (server, a, b) = started().await;
    let started = Instant::now();
    let error = b
        .send(&session_id(), message("node-b", 1, "hi"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no node holds"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1), "no responders");
    for bad in ["", "kanava.>", "0f1e2d3c-4b5a-4697-8877-66554433aa b"] {
        let error = b.send(bad, message("node-b", 1, "hi")).await.unwrap_err();
        assert!(error.to_string().contains("not a session id"), "{error}");
        assert!(a.open(bad).await.is_err());
        assert!(a.record(bad, message("node-a", 0, "x")).await.is_err());
        assert!(a.end(bad).await.is_err());
    }

    // A session whose inbox receiver is dropped stops taking messages in (shortly after: it
    // refuses them for a while first).
    let id = session_id();
    let inbox = a.open(&id).await.unwrap();
    let inbox_subject = format!("kanava.dm-in.{id}");
    assert!(
        server
            .monitoring("/connz?subs=1")
            .await
            .contains(&inbox_subject)
    );
    drop(inbox);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .monitoring("/connz?subs=1")
        .await
        .contains(&inbox_subject)
    {
        assert!(Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = b.send(&id, message("node-b", 1, "hi")).await.unwrap_err();
    assert!(error.to_string().contains("no node holds"), "{error}");

    // A follower whose receiver is dropped deletes its consumer.
    let logged = message("node-a", 0, "logged");
    a.record(&id, logged.clone()).await.unwrap();
    let mut followed = b.follow(&id).await.unwrap().expect("announced");
    assert_eq!(
        next(&mut followed).await,
        Some(SessionEvent::Message(logged))
    );
    drop(followed);
    let client = async_nats::connect(&server.url).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("KANAVA_DM")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stream.info().await.unwrap().state.consumer_count > 0 {
        assert!(Instant::now() < deadline, "the follower's consumer is left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
