//! Every behaviour of the Mles v2 spec (§1-§9), with the Rust tokio-tungstenite client.

use std::time::Duration;

use futures_util::SinkExt;
use kanava_mles::auth::token_hex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

#[tokio::test]
async fn subprotocol_is_echoed_exactly_and_any_path_works() {
    let server = Kanava::start();
    let client = server.client();
    let (_, echoed) = client.upgrade().await;
    assert_eq!(echoed.as_deref(), Some("mles-websocket"));
    let (_, echoed) = client
        .upgrade_with(Some("chat, mles-websocket"))
        .await
        .unwrap();
    assert_eq!(echoed.as_deref(), Some("mles-websocket"));
}

#[tokio::test]
async fn upgrade_without_the_subprotocol_gets_an_http_error() {
    let server = Kanava::start();
    let error = server.client().upgrade_with(None).await.unwrap_err();
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("mles-websocket"), "{body}");
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_are_relayed_to_others_only_with_type_and_bytes_kept() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("relay");
    let mut alice = client.join("alice", &ch).await;
    let mut bob = client.join("bob", &ch).await;
    let mut carol = client.join("carol", &channel("other")).await;
    // Bob's replay is alice's header; wait for it so that both are members.
    assert_eq!(json(&recv(&mut bob).await)["uid"], "alice");

    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let sent = vec![
        text("hello"),
        binary(&[0, 1, 2, 255]),
        text(""),
        binary(&[]),
        Message::Binary(big.into()),
        text("ünïcödé ✓"),
    ];
    for m in &sent {
        alice.send(m.clone()).await.unwrap();
    }
    assert_eq!(recv_n(&mut bob, sent.len()).await, sent);
    assert!(
        drain_for(&mut alice, Duration::from_millis(300))
            .await
            .is_empty(),
        "no echo"
    );
    assert!(
        drain_for(&mut carol, Duration::from_millis(100))
            .await
            .is_empty(),
        "other channel"
    );
}

#[tokio::test]
async fn client_pings_are_relayed_as_pings_and_stored_and_pongs_are_dropped() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("ping");
    let mut alice = client.join("alice", &ch).await;
    let mut bob = client.join("bob", &ch).await;
    recv(&mut bob).await; // alice's header
    alice.send(Message::Ping("p-1".into())).await.unwrap();
    alice.send(Message::Pong("dropped".into())).await.unwrap();
    alice.send(text("after")).await.unwrap();
    assert_eq!(
        recv_n(&mut bob, 2).await,
        [Message::Ping("p-1".into()), text("after")]
    );
    // The ping was answered to its sender with a pong.
    let pong = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut alice)).await {
            Ok(Some(Ok(Message::Pong(p)))) => break p,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"p-1");
    let mut carol = client.join("carol", &ch).await;
    let replay = recv_n(&mut carol, 4).await;
    assert_eq!(replay[2..], [Message::Ping("p-1".into()), text("after")]);
}

#[tokio::test]
async fn history_replay_follows_the_spec_transcript() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("test");
    let mut alice = client.join("alice", &ch).await;
    alice.send(text("msg-1 (alone)")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    let bob_header = format!(r#"{{"uid":"bob","channel":"{ch}","extra":123}}"#);
    let mut bob = client.join_with(&bob_header).await;
    let replay = recv_n(&mut bob, 2).await;
    assert_eq!(
        json(&replay[0]),
        serde_json::json!({"uid": "alice", "channel": ch})
    );
    assert_eq!(replay[1], text("msg-1 (alone)"));
    alice.send(text("Hello Bob!")).await.unwrap();
    alice.send(binary(&[0, 1, 2, 3])).await.unwrap();
    assert_eq!(
        recv_n(&mut bob, 2).await,
        [text("Hello Bob!"), binary(&[0, 1, 2, 3])]
    );
    bob.send(text("Hi Alice!")).await.unwrap();
    assert_eq!(recv(&mut alice).await, text("Hi Alice!"));

    let mut carol = client.join("carol", &ch).await;
    let replay = recv_n(&mut carol, 6).await;
    assert_eq!(json(&replay[0])["uid"], "alice");
    assert_eq!(replay[1], text("msg-1 (alone)"));
    // Bob's header verbatim, with its extra field.
    assert_eq!(replay[2], text(&bob_header));
    assert_eq!(
        replay[3..],
        [text("Hello Bob!"), binary(&[0, 1, 2, 3]), text("Hi Alice!")]
    );
    assert!(
        drain_for(&mut carol, Duration::from_millis(300))
            .await
            .is_empty(),
        "not its own current header"
    );
    // Nobody was told of carol's join.
    assert!(
        drain_for(&mut alice, Duration::from_millis(100))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_rejoining_member_gets_its_own_earlier_header_and_messages() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("own");
    let mut alice = client.join("alice", &ch).await;
    alice.send(text("mine")).await.unwrap();
    alice.close(None).await.unwrap();
    drop(alice);
    // The same uid may join again once the first connection has gone.
    let mut again = loop {
        let header = serde_json::json!({"uid": "alice", "channel": ch}).to_string();
        let mut ws = client.send_header(&header).await;
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Text(t)))) => break (ws, t),
            _ => continue, // still a duplicate while the old one is closing: retry
        }
    };
    assert_eq!(json(&Message::Text(again.1.clone()))["uid"], "alice");
    assert_eq!(recv(&mut again.0).await, text("mine"));
}

#[tokio::test]
async fn history_is_capped_by_count() {
    let server = Start::new().args(&["--history-limit", "3"]).start();
    let client = server.client();
    let ch = channel("count");
    let mut w = client.join("writer", &ch).await;
    for i in 0..5 {
        w.send(text(&format!("m{i}"))).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 5.0).await;
    let mut probe = client.join("probe", &ch).await;
    // The writer's own header was evicted too.
    let got: Vec<String> = recv_n(&mut probe, 3).await.iter().map(describe).collect();
    assert_eq!(got, ["text \"m2\"", "text \"m3\"", "text \"m4\""]);
    assert!(
        drain_for(&mut probe, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn history_is_capped_by_bytes() {
    let mib = (1024 * 1024).to_string();
    let server = Start::new()
        .args(&["--history-bytes", &mib, "--max-frame", &mib])
        .start();
    let client = server.client();
    let ch = channel("bytes");
    let mut w = client.join("writer", &ch).await;
    for i in 0..10u8 {
        w.send(binary(&vec![i; 200 * 1024])).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 10.0).await;
    let mut probe = client.join("probe", &ch).await;
    let replay = recv_n(&mut probe, 5).await;
    for (i, m) in (5..10u8).zip(&replay) {
        assert!(
            *m == binary(&vec![i; 200 * 1024]),
            "expected frame {i}, got {}",
            describe(m)
        );
    }
    assert!(
        drain_for(&mut probe, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_duplicate_uid_is_closed_at_once_and_the_first_is_unaffected() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("dup");
    let mut first = client.join("alice", &ch).await;
    let duplicate = serde_json::json!({"uid": "alice", "channel": ch}).to_string();
    let mut second = client.send_header(&duplicate).await;
    let (code, took) = closed(&mut second).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let mut bob = client.join("bob", &ch).await;
    let replay = recv_n(&mut bob, 1).await;
    assert_eq!(
        json(&replay[0])["uid"],
        "alice",
        "the duplicate's header was not stored"
    );
    first.send(text("still here")).await.unwrap();
    assert_eq!(recv(&mut bob).await, text("still here"));
    // The same uid in another channel is fine.
    let mut elsewhere = client.join("alice", &channel("dup-other")).await;
    elsewhere.send(text("x")).await.unwrap();
    assert!(
        drain_for(&mut elsewhere, Duration::from_millis(200))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn auth_tokens_follow_the_rule_without_a_key() {
    let server = Kanava::start();
    let client = server.client();
    for (auth, ok) in [
        ("827d5db8dcd8bcef", true),
        ("827D5DB8DCD8BCEF", true),
        ("0000000000000001", false),
        ("", false),
        ("0x827d5db8dcd8bcef", false),
    ] {
        let header = format!(r#"{{"uid":"authuser","channel":"authch","auth":"{auth}"}}"#);
        let mut ws = client.send_header(&header).await;
        let outcome = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::StreamExt::next(&mut ws),
        )
        .await;
        match (ok, outcome) {
            // Accepted: the replay arrives or nothing happens within a second.
            (true, Ok(Some(Ok(Message::Text(_)))) | Err(_)) => {}
            (false, Ok(Some(Ok(Message::Close(Some(frame)))))) => {
                assert_eq!(frame.code, CloseCode::Policy, "auth {auth:?}");
            }
            (ok, outcome) => panic!("auth {auth:?}: expected accepted={ok}, got {outcome:?}"),
        }
        drop(ws);
    }
}

#[tokio::test]
async fn auth_tokens_follow_the_rule_with_a_key() {
    let server = Start::new().env("MLES_KEY", "secretkey").start();
    let client = server.client();
    for (auth, ok) in [
        (None, false),
        (Some("827d5db8dcd8bcef"), false),
        (Some("476c18c50edcef7a"), true),
        (Some("476C18C50EDCEF7A"), true),
    ] {
        let mut header = serde_json::json!({"uid": "authuser", "channel": "authch"});
        if let Some(a) = auth {
            header["auth"] = a.into();
        }
        let mut ws = client.send_header(&header.to_string()).await;
        let outcome = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::StreamExt::next(&mut ws),
        )
        .await;
        let refused = matches!(outcome, Ok(Some(Ok(Message::Close(_)))) | Ok(None));
        assert_eq!(!refused, ok, "auth {auth:?}: {outcome:?}");
    }
    // A computed keyed token relays.
    let ch = channel("keyed");
    let header = |uid: &str| {
        serde_json::json!({"uid": uid, "channel": ch, "auth": token_hex(uid, &ch, Some("secretkey"))})
            .to_string()
    };
    let mut a = client.join_with(&header("a")).await;
    let mut b = client.join_with(&header("b")).await;
    recv(&mut b).await;
    a.send(text("keyed hello")).await.unwrap();
    assert_eq!(recv(&mut b).await, text("keyed hello"));
}

#[tokio::test]
async fn the_server_pings_and_closes_a_silent_peer_after_four_intervals() {
    let server = Start::new().args(&["--ping-interval", "300ms"]).start();
    let client = server.client();
    let ch = channel("keepalive");
    // A responsive client (tungstenite answers pings as it reads) keeps reading throughout.
    let mut live = client.join("live", &ch).await;
    let reading = tokio::spawn(async move {
        let mut pings = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            if let Ok(Some(Ok(Message::Ping(p)))) = tokio::time::timeout(
                Duration::from_millis(100),
                futures_util::StreamExt::next(&mut live),
            )
            .await
            {
                assert!(p.is_empty(), "server pings are empty");
                pings += 1;
            }
        }
        (live, pings)
    });
    // A silent client sends its header and then neither reads nor answers pings.
    let mut silent = client.join("silent", &ch).await;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _) = closed(&mut silent).await;
    let silent_for = started.elapsed();
    assert_eq!(code, Some(CloseCode::Policy));
    // Pings at 1, 2 and 3 intervals, the close at 4: about 1.2 s.
    assert!(
        silent_for < Duration::from_secs(3),
        "closed after {silent_for:?}"
    );
    let (mut live, pings) = reading.await.unwrap();
    assert!(pings >= 6, "pings seen in 2.5 s at 300 ms: {pings}");
    // The responsive one is still a member.
    live.send(text("alive")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    let mut probe = client.join("probe", &ch).await;
    let replay = drain_for(&mut probe, Duration::from_millis(500)).await;
    assert!(replay.contains(&text("alive")));
}

#[tokio::test]
async fn oversize_frames_close_the_sender_with_1009_and_are_not_stored() {
    let server = Start::new().args(&["--max-frame", "1000"]).start();
    let client = server.client();
    let ch = channel("big");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    a.send(binary(&[1; 1000])).await.unwrap();
    assert_eq!(recv(&mut b).await, binary(&[1; 1000]));
    a.send(binary(&[2; 1001])).await.unwrap();
    let (code, _) = closed(&mut a).await;
    assert_eq!(code, Some(CloseCode::Size));
    assert!(
        drain_for(&mut b, Duration::from_millis(300))
            .await
            .is_empty()
    );
    let mut c = client.join("c", &ch).await;
    let replay = drain_for(&mut c, Duration::from_millis(500)).await;
    assert!(
        !replay.contains(&binary(&[2; 1001])),
        "the oversize frame was stored"
    );
    assert!(
        replay.contains(&binary(&[1; 1000])),
        "the frame within the limit was not stored"
    );
}

#[tokio::test]
async fn a_header_with_a_trailing_newline_is_accepted_and_newlines_are_relayed_as_sent() {
    // What websocat sends by default: every line, header included, keeps its "\n".
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("websocat");
    let header = format!("{{ \"uid\":\"alice\", \"channel\":\"{ch}\" }}\n");
    let mut alice = client.join_with(&header).await;
    let mut bob = client.join("bob", &ch).await;
    assert_eq!(
        recv(&mut bob).await,
        text(&header),
        "header stored verbatim"
    );
    alice.send(text("Hello Bob!\n")).await.unwrap();
    assert_eq!(recv(&mut bob).await, text("Hello Bob!\n"));
}
