//! Bad input gets a clear close or HTTP error, promptly, and nothing else breaks.

use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

/// The server still relays in a fresh channel.
async fn still_works(client: &Client) {
    let ch = channel("after-bad-input");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    a.send(text("fine")).await.unwrap();
    assert_eq!(recv(&mut b).await, text("fine"));
}

#[tokio::test]
async fn bad_headers_are_closed_within_a_second_with_1008() {
    let server = Kanava::start();
    let client = server.client();
    let huge = format!(
        r#"{{"uid":"a","channel":"c","pad":"{}"}}"#,
        "x".repeat(100_000)
    );
    let cases: Vec<(&str, Message)> = vec![
        ("non-JSON", text("hello")),
        ("JSON array", text("[1,2]")),
        (
            "binary first frame",
            binary(br#"{"uid":"a","channel":"c"}"#),
        ),
        ("ping first", Message::Ping("x".into())),
        ("missing uid", text(r#"{"channel":"c"}"#)),
        ("missing channel", text(r#"{"uid":"a"}"#)),
        ("uid not a string", text(r#"{"uid":5,"channel":"c"}"#)),
        ("empty uid", text(r#"{"uid":"","channel":"c"}"#)),
        ("empty channel", text(r#"{"uid":"a","channel":""}"#)),
        ("non-ASCII uid", text(r#"{"uid":"ä","channel":"c"}"#)),
        (
            "non-ASCII channel",
            text(r#"{"uid":"a","channel":"kanava✓"}"#),
        ),
        (
            "auth not a string",
            text(r#"{"uid":"a","channel":"c","auth":1}"#),
        ),
        ("huge header", text(&huge)),
    ];
    for (what, first) in cases {
        let (mut ws, _) = client.upgrade().await;
        ws.send(first).await.unwrap();
        let (code, took) = closed(&mut ws).await;
        assert_eq!(code, Some(CloseCode::Policy), "{what}");
        assert!(
            took < Duration::from_secs(1),
            "{what}: closed after {took:?}"
        );
    }
    still_works(&client).await;
}

#[tokio::test]
async fn garbage_before_the_upgrade_gets_400_and_plain_get_gets_the_page_or_426() {
    let server = Kanava::start();
    let client = server.client();
    let without_web = Start::new().args(&["--no-web"]).start();
    for (client, request, status) in [
        (
            &client,
            &b"\x00\x01\x02garbage\xff\r\n\r\n"[..],
            "HTTP/1.1 400",
        ),
        (
            &client,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 200",
        ),
        (
            &without_web.client(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 426",
        ),
        (
            &client,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405",
        ),
    ] {
        let mut tls = client.tls().await;
        tls.write_all(request).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap_or_default();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with(status), "{request:?} got {response:?}");
    }
    // Not even TLS: the connection is dropped and the server carries on.
    let mut tcp = tokio::net::TcpStream::connect(server.mles).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink))
        .await
        .unwrap();
    still_works(&client).await;
}

#[tokio::test]
async fn an_idle_connection_without_header_is_closed_after_the_header_timeout() {
    let server = Start::new().args(&["--header-timeout", "1s"]).start();
    let client = server.client();
    let (mut ws, _) = client.upgrade().await;
    let (code, took) = closed(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
        "closed after {took:?}"
    );
    // A TLS connection that never upgrades is dropped by the handshake timeout too.
    let server = Start::new().args(&["--handshake-timeout", "1s"]).start();
    let mut tls = server.client().tls().await;
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connections_over_the_per_source_cap_are_refused_until_one_closes() {
    let server = Start::new()
        .args(&["--max-connections-per-source", "3"])
        .start();
    let client = server.client();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(client.upgrade().await.0);
    }
    // The fourth is told why, with 503, and not upgraded.
    let mut fourth = client.tls().await;
    fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, fourth.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 503 ")
            && response.ends_with("too many connections from your address\n"),
        "{response:?}"
    );
    server
        .wait_metric(
            "kanava_connections_refused_total{listener=\"mles\",reason=\"source\"}",
            1.0,
        )
        .await;
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    wait_until_async("a slot is free again", || async {
        client.upgrade_with(Some("mles-websocket")).await.is_ok()
    })
    .await;
}
