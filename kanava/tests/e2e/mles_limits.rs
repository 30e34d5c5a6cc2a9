//! Mles under attack: protocol errors, hostile headers and upgrades, partial messages held open,
//! and joiners that never read. Each attack comes from its own loopback address (127.0.0.2,
//! 127.0.0.3, …) over raw TLS, so that the bytes are exactly the attack; a legitimate pair from
//! another address, on a real WebSocket client, is served throughout, and the attacker gets its
//! reason.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::*;

/// A valid `Sec-WebSocket-Key` (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// How soon a legitimate client hears the other during an attack (generous: the machine is
/// shared with other builds).
const CHAT_WITHIN: Duration = Duration::from_secs(5);

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// A TCP connection to the server's Mles port from `source`, TLS on top.
async fn tls_from(server: &Kanava, source: &str, recv_buffer: Option<u32>) -> TlsStream<TcpStream> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(server.mles).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A real WebSocket client from `source`, joined as `uid` to `channel`.
async fn join_from(server: &Kanava, source: &str, uid: &str, channel: &str) -> Ws {
    let mut request = format!("wss://localhost:{}/", server.mles.port())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("mles-websocket"),
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async(request, tls_from(server, source, None).await)
            .await
            .unwrap();
    ws.send(text(
        &serde_json::json!({"uid": uid, "channel": channel}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// Two real clients from `source` joined to a fresh channel, and a check that they chat.
pub(crate) struct Pair {
    a: Ws,
    b: Ws,
    /// How soon each must hear the other.
    within: Duration,
}

impl Pair {
    pub(crate) async fn join(server: &Kanava, source: &str) -> Pair {
        let ch = channel("legit");
        let mut a = join_from(server, source, "a", &ch).await;
        // a's frames are taken only once a has joined, so b hears this one whichever joined
        // first; b must join after a, or it is never replayed a's header: then it joins again
        // under another uid (the first b may still be in).
        let hello = text("a is here");
        a.send(hello.clone()).await.unwrap();
        let mut b = join_from(server, source, "b", &ch).await;
        let mut first = recv(&mut b).await;
        if first == hello {
            // b came first, so its header leads the history a was replayed and the one the new
            // b is replayed.
            assert_eq!(json(&recv(&mut a).await)["uid"], "b");
            b = join_from(server, source, "b2", &ch).await;
            assert_eq!(json(&recv(&mut b).await)["uid"], "b");
            first = recv(&mut b).await;
        }
        assert_eq!(json(&first)["uid"], "a");
        assert_eq!(recv(&mut b).await, hello);
        Pair {
            a,
            b,
            within: CHAT_WITHIN,
        }
    }

    /// The pair, each required to hear the other within `limit` rather than [`CHAT_WITHIN`].
    pub(crate) fn answering_within(self, limit: Duration) -> Pair {
        Pair {
            within: limit,
            ..self
        }
    }

    /// a says `line` and b hears it in time, then b answers and a hears that: both read, so
    /// both answer the server's pings.
    async fn chat(&mut self, line: &str) {
        self.a.send(text(line)).await.unwrap();
        assert_eq!(recv_within(&mut self.b, self.within).await, text(line));
        let answer = format!("re: {line}");
        self.b.send(text(&answer)).await.unwrap();
        assert_eq!(recv_within(&mut self.a, self.within).await, text(&answer));
    }

    /// Chats every 200 ms until `work` is done: the pair is served throughout.
    pub(crate) async fn chat_while<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = pin!(work);
        for i in 0.. {
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    self.chat(&format!("meanwhile {i}")).await;
                }
            }
        }
        unreachable!("the loop only ends by returning")
    }
}

/// A client frame: masked (with a zero mask unless `masked` is false), the given FIN, RSV bits
/// and opcode.
fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_head(fin, rsv, opcode, masked, payload.len());
    out.extend_from_slice(payload);
    out
}

/// The head of a client frame of `len` payload bytes, as [`frame`] writes it.
fn frame_head(fin: bool, rsv: u8, opcode: u8, masked: bool, len: usize) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match len {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        // A zero mask leaves the payload as it is.
        out.extend_from_slice(&[0; 4]);
    }
    out
}

/// A WebSocket over raw TLS, written and read byte by byte.
struct Raw {
    tls: TlsStream<TcpStream>,
    read: Vec<u8>,
}

impl Raw {
    /// Upgrades from `source` with `request` (a complete head) and returns the response head
    /// and body as read until the server closes or the head ends.
    async fn request(server: &Kanava, source: &str, request: &str) -> String {
        let mut tls = tls_from(server, source, None).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
            .await
            .expect("the server answers and closes");
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Upgrades from `source` (with a receive buffer of `recv_buffer` if given).
    async fn upgrade(server: &Kanava, source: &str, recv_buffer: Option<u32>) -> Raw {
        let mut tls = tls_from(server, source, recv_buffer).await;
        tls.write_all(upgrade_request(&[]).as_bytes())
            .await
            .unwrap();
        let mut read = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed during the upgrade");
            read.extend_from_slice(&chunk[..n]);
        };
        assert!(read.starts_with(b"HTTP/1.1 101 "), "{read:?}");
        read.drain(..head_end);
        Raw { tls, read }
    }

    /// Upgrades from `source` and joins `uid` to `channel`.
    async fn join(server: &Kanava, source: &str, uid: &str, channel: &str) -> Raw {
        Self::join_with(server, source, None, uid, channel).await
    }

    async fn join_with(
        server: &Kanava,
        source: &str,
        recv_buffer: Option<u32>,
        uid: &str,
        channel: &str,
    ) -> Raw {
        let mut raw = Self::upgrade(server, source, recv_buffer).await;
        let header = serde_json::json!({"uid": uid, "channel": channel}).to_string();
        raw.send(&frame(true, 0, OP_TEXT, true, header.as_bytes()))
            .await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// The next server frame: (opcode, payload), or None at EOF.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.read.len() >= 2 {
                let opcode = self.read[0] & 0x0f;
                let (len, at) = match self.read[1] & 0x7f {
                    126 if self.read.len() >= 4 => {
                        (u16::from_be_bytes([self.read[2], self.read[3]]) as usize, 4)
                    }
                    127 if self.read.len() >= 10 => (
                        u64::from_be_bytes(self.read[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.read.len() >= at + len {
                    let payload = self.read[at..at + len].to_vec();
                    self.read.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the server's Close: its code and reason, within `limit`.
    async fn close_within(&mut self, limit: Duration) -> (u16, String) {
        tokio::time::timeout(limit, async {
            loop {
                match self.next_frame().await {
                    None => panic!("connection ended without a Close frame"),
                    Some((OP_CLOSE, payload)) => {
                        assert!(payload.len() >= 2, "a Close without a code");
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
                    }
                    Some(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no Close within {limit:?}"))
    }
}

/// An upgrade request for the Mles subprotocol with `extra` header lines; every standard line
/// can be replaced by passing its name with a different value or dropped with `"Name:"` alone.
fn upgrade_request(extra: &[&str]) -> String {
    let standard = [
        "Host: localhost".to_owned(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".into(),
        "Sec-WebSocket-Protocol: mles-websocket".into(),
    ];
    let name = |line: &str| line.split(':').next().unwrap().to_ascii_lowercase();
    let mut lines: Vec<String> = standard
        .into_iter()
        .filter(|line| !extra.iter().any(|e| name(e) == name(line)))
        .collect();
    lines.extend(
        extra
            .iter()
            .filter(|e| !e.trim_end().ends_with(':'))
            .map(|e| e.to_string()),
    );
    format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"))
}

#[tokio::test]
async fn protocol_errors_get_a_close_with_their_code_and_reason() {
    let server = Kanava::start();
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        (
            "reserved data opcode",
            frame(true, 0, 0x3, true, b"x"),
            1002,
            "reserved opcode",
        ),
        (
            "reserved control opcode",
            frame(true, 0, 0xb, true, b""),
            1002,
            "reserved opcode",
        ),
        (
            "fragmented control frame",
            frame(false, 0, OP_PING, true, b"p"),
            1002,
            "fragmented control frame",
        ),
        (
            "unmasked client frame",
            frame(true, 0, OP_BINARY, false, b"x"),
            1002,
            "client frames must be masked",
        ),
        (
            "RSV1 without an extension",
            frame(true, 4, OP_BINARY, true, b"x"),
            1002,
            "reserved bits set without an extension",
        ),
        (
            "invalid UTF-8 in a text frame",
            frame(true, 0, OP_TEXT, true, b"caf\xc3"),
            1007,
            "invalid UTF-8 in a text frame",
        ),
        (
            "invalid UTF-8 across fragments",
            [
                frame(false, 0, OP_TEXT, true, b"ok "),
                frame(true, 0, 0x0, true, b"\xff\xfe"),
            ]
            .concat(),
            1007,
            "invalid UTF-8 in a text frame",
        ),
    ];
    let ch = channel("protocol-errors");
    for (i, (what, bad, code, reason)) in cases.into_iter().enumerate() {
        // Both before the header (the first frame) and as a member.
        let mut before = Raw::upgrade(&server, "127.0.0.2", None).await;
        before.send(&bad).await;
        assert_eq!(
            before.close_within(Duration::from_secs(2)).await,
            (code, reason.to_owned()),
            "{what}, as the first frame"
        );
        let mut member = Raw::join(&server, "127.0.0.3", &format!("m{i}"), &ch).await;
        member.send(&bad).await;
        assert_eq!(
            member.close_within(Duration::from_secs(2)).await,
            (code, reason.to_owned()),
            "{what}, as a member"
        );
        legit.chat(&format!("still here after {what}")).await;
    }
    // A frame over --max-frame keeps its 1009.
    let mut big = Raw::join(&server, "127.0.0.4", "big", &ch).await;
    big.send(&frame_head(true, 0, OP_BINARY, true, 16 * 1024 * 1024 + 1))
        .await;
    assert_eq!(
        big.close_within(Duration::from_secs(2)).await,
        (1009, "frame too large".to_owned())
    );
}

#[tokio::test]
async fn a_header_naming_a_key_twice_is_refused_with_the_reason() {
    let server = Kanava::start();
    let ch = channel("dup");
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    for header in [
        format!(r#"{{"uid":"alice","channel":"{ch}","uid":"mallory"}}"#),
        format!(r#"{{"uid":"alice","channel":"{ch}","channel":"other"}}"#),
        format!(r#"{{"uid":"alice","channel":"{ch}","\u0075id":"mallory"}}"#),
    ] {
        let mut raw = Raw::upgrade(&server, "127.0.0.2", None).await;
        raw.send(&frame(true, 0, OP_TEXT, true, header.as_bytes()))
            .await;
        assert_eq!(
            raw.close_within(Duration::from_secs(2)).await,
            (1008, "header names a key twice".to_owned()),
            "{header}"
        );
    }
    // Nothing of them was stored: a joiner of the channel is replayed nobody.
    let mut alice = join_from(&server, "127.0.0.6", "alice", &ch).await;
    assert!(
        drain_for(&mut alice, Duration::from_millis(300))
            .await
            .is_empty()
    );
    legit.chat("after the duplicates").await;
}

#[tokio::test]
async fn upgrades_without_host_or_with_a_bad_key_or_version_get_400_with_the_reason() {
    let server = Kanava::start();
    let bad_key = "malformed Sec-WebSocket-Key: it must be the base64 of 16 bytes";
    for (what, extra, reason) in [
        ("no Host", vec!["Host:"], "missing or repeated Host header"),
        (
            "two Hosts",
            vec!["Host: localhost", "Host: elsewhere"],
            "missing or repeated Host header",
        ),
        (
            "no key",
            vec!["Sec-WebSocket-Key:"],
            "missing Sec-WebSocket-Key",
        ),
        (
            "two keys",
            vec![
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",
            ],
            "more than one Sec-WebSocket-Key",
        ),
        (
            "key not base64",
            vec!["Sec-WebSocket-Key: not a key!"],
            bad_key,
        ),
        (
            "key of 15 bytes",
            vec!["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"],
            bad_key,
        ),
        (
            "key of 17 bytes",
            vec!["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="],
            bad_key,
        ),
        (
            "version 8",
            vec!["Sec-WebSocket-Version: 8"],
            "unsupported WebSocket version: send exactly one Sec-WebSocket-Version: 13",
        ),
        (
            "no version",
            vec!["Sec-WebSocket-Version:"],
            "unsupported WebSocket version: send exactly one Sec-WebSocket-Version: 13",
        ),
    ] {
        let response = Raw::request(&server, "127.0.0.2", &upgrade_request(&extra)).await;
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}: {response:?}"
        );
        assert!(
            response.ends_with(&format!("\r\n\r\n{reason}\n")),
            "{what}: {response:?}"
        );
    }
    // The same request with everything in order is upgraded.
    Raw::join(&server, "127.0.0.2", "ok", &channel("upgrade")).await;
    Pair::join(&server, "127.0.0.6").await.chat("fine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_messages_are_charged_to_the_memory_budget_and_attackers_closed_with_the_reason() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&[
            "--max-frame",
            "1048576",
            "--max-memory",
            "8MiB",
            "--message-timeout",
            "60s",
        ])
        .start();
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    legit.chat("before").await;
    let rss_before = server.rss_kib();
    // 4 addresses x 16 connections, each holding a message just under --max-frame open: 64 MiB
    // if nothing bounded it. From 127.0.0.2 and .3 all but the last 100 bytes of one frame;
    // from .4 and .5 fifteen 64 KiB fragments and never the last.
    let whole = frame(true, 0, OP_BINARY, true, &vec![7; 1024 * 1024 - 16]);
    let one_frame = &whole[..whole.len() - 100];
    let mut fragments = frame(false, 0, OP_BINARY, true, &[7; 65536]);
    for _ in 1..15 {
        fragments.extend(frame(false, 0, 0x0, true, &[7; 65536]));
    }
    let ch = channel("hold");
    let mut attackers = Vec::new();
    for source in 2..=5 {
        for i in 0..16 {
            let mut raw = Raw::join(
                &server,
                &format!("127.0.0.{source}"),
                &format!("u{source}-{i}"),
                &ch,
            )
            .await;
            let partial = if source <= 3 {
                one_frame.to_vec()
            } else {
                fragments.clone()
            };
            attackers.push(tokio::spawn(async move {
                // Writing stops at the refusal; the Close is read regardless.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), raw.tls.write_all(&partial)).await;
                let _ = raw.tls.flush().await;
                let close = tokio::time::timeout(Duration::from_secs(3), async {
                    loop {
                        match raw.next_frame().await {
                            None => panic!("an attacker's connection ended without a Close"),
                            Some((OP_CLOSE, payload)) => {
                                let code = u16::from_be_bytes([payload[0], payload[1]]);
                                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
                            }
                            Some(_) => {}
                        }
                    }
                })
                .await;
                close.map_err(|_| raw)
            }));
        }
    }
    // While the attack runs, the legitimate pair keeps chatting.
    for i in 0..10 {
        legit.chat(&format!("during {i}")).await;
    }
    let mut refused = 0;
    let mut holding = Vec::new();
    for attacker in attackers {
        match attacker.await.unwrap() {
            Ok((code, reason)) => {
                assert_eq!(
                    (code, reason.as_str()),
                    (1013, "server memory budget exhausted")
                );
                refused += 1;
            }
            // Still holding its partial message within the budget.
            Err(raw) => holding.push(raw),
        }
    }
    let budget = 8.0 * 1024.0 * 1024.0;
    let used = server.metric("kanava_memory_payload_bytes").await;
    assert!(used <= budget, "{used} bytes held, budget {budget}");
    // At most 8 of the 64 fit the budget at about 1 MiB each.
    assert!(refused >= 56, "only {refused} of 64 attackers refused");
    assert_eq!(
        server
            .metric("kanava_memory_refusals_total{consumer=\"receive\"}")
            .await,
        f64::from(refused)
    );
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    // Measured: about 10 MiB either way.
    assert!(
        grown_kib < 24 * 1024,
        "RSS grew by {grown_kib} KiB under a 64 MiB attack with an 8 MiB budget"
    );
    legit.chat("after").await;
}

#[tokio::test]
async fn a_message_not_completed_within_the_message_timeout_is_closed() {
    let server = Start::new().args(&["--message-timeout", "1s"]).start();
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    let mut slow = Raw::join(&server, "127.0.0.2", "slow", &channel("slow")).await;
    // The first fragment of a message, then only pings: the peer is alive, the message is not.
    let started = Instant::now();
    slow.send(&frame(false, 0, OP_TEXT, true, b"part one"))
        .await;
    for _ in 0..3 {
        slow.send(&frame(true, 0, OP_PING, true, b"")).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (code, reason) = slow.close_within(Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert_eq!(
        (code, reason.as_str()),
        (1008, "message not completed in time")
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_millis(2500)).contains(&took),
        "closed after {took:?}"
    );
    // An idle member (no message in progress) is not affected however long it waits.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    legit.chat("after a quiet while").await;
}

#[tokio::test]
async fn a_joiner_that_reads_nothing_of_a_big_replay_is_closed_and_its_memory_freed() {
    stuck_in_a_big_replay(false).await;
}

#[tokio::test]
async fn a_joiner_that_reads_nothing_but_keeps_sending_is_closed_by_the_write_deadline() {
    stuck_in_a_big_replay(true).await;
}

/// A joiner of a channel holding 16 MiB of history reads none of it, and answers no ping; if
/// `sends_pings`, it sends a ping of its own every 300 ms, so that only the write deadline
/// (four intervals for one write) can tell it is stuck. Either way it is closed within about
/// four intervals and its replay's charge is given back, while a pair elsewhere chats on.
async fn stuck_in_a_big_replay(sends_pings: bool) {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--ping-interval", "1s", "--max-frame", "1048576"])
        .start();
    let ch = channel("big-replay");
    let mut writer = join_from(&server, "127.0.0.6", "writer", &ch).await;
    for i in 0..16u8 {
        writer
            .send(binary(&vec![i; 1024 * 1024 - 64]))
            .await
            .unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 16.0).await;
    writer.close(None).await.unwrap();
    wait_until_async("the writer has left", || async {
        server.metric("kanava_members").await == 0.0
    })
    .await;
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    let members_before = server.metric("kanava_members").await;
    // Joins with a small receive window, then reads nothing and answers no ping.
    let joined = Instant::now();
    let mut stuck = Raw::join_with(&server, "127.0.0.2", Some(4096), "stuck", &ch).await;
    let pinger = tokio::spawn(async move {
        while sends_pings && joined.elapsed() < Duration::from_secs(8) {
            if stuck
                .tls
                .write_all(&frame(true, 0, OP_PING, true, b""))
                .await
                .is_err()
            {
                break;
            }
            let _ = stuck.tls.flush().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stuck
    });
    server
        .wait_metric("kanava_members", members_before + 1.0)
        .await;
    let charged = server.metric("kanava_memory_payload_bytes").await;
    assert!(
        charged >= 8.0 * 1024.0 * 1024.0,
        "the unread replay is not charged: {charged}"
    );
    legit
        .chat_while(wait_until_async_within(
            "the stuck joiner is closed",
            Duration::from_secs(8),
            || async { server.metric("kanava_members").await <= 2.0 },
        ))
        .await;
    let took = joined.elapsed();
    assert!(
        (Duration::from_millis(3500)..Duration::from_millis(6500)).contains(&took),
        "closed after {took:?} at a 1 s ping interval"
    );
    let freed = server.metric("kanava_memory_payload_bytes").await;
    assert!(freed < 1024.0 * 1024.0, "still charged: {freed}");
    legit.chat("after").await;
    drop(pinger.await.unwrap());
}

#[tokio::test]
async fn a_connection_over_the_per_source_cap_gets_503_with_the_reason() {
    let server = Start::new()
        .args(&["--max-connections-per-source", "2"])
        .start();
    let ch = channel("capped");
    let _held = [
        Raw::join(&server, "127.0.0.2", "one", &ch).await,
        Raw::join(&server, "127.0.0.2", "two", &ch).await,
    ];
    let started = Instant::now();
    let response = Raw::request(&server, "127.0.0.2", &upgrade_request(&[])).await;
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response:?}"
    );
    assert!(
        response.ends_with("\r\n\r\ntoo many connections from your address\n"),
        "{response:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        server
            .metric("kanava_connections_refused_total{listener=\"mles\",reason=\"source\"}")
            .await,
        1.0
    );
    // Other addresses are served as usual.
    Pair::join(&server, "127.0.0.6").await.chat("served").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_message_to_many_members_leaves_none_of_them_holding_its_size() {
    let _heavy = heavy().await;
    let server = Start::new().args(&["--max-frame", "4194304"]).start();
    let ch = channel("fan-out");
    let mut receivers = Vec::new();
    for i in 0..16 {
        receivers.push(join_from(&server, "127.0.0.2", &format!("r{i}"), &ch).await);
    }
    let mut sender = join_from(&server, "127.0.0.3", "sender", &ch).await;
    server.wait_metric("kanava_members", 17.0).await;
    let rss_before = server.rss_kib();
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    sender.send(binary(&big)).await.unwrap();
    for receiver in &mut receivers {
        // Headers of those who joined later come first.
        loop {
            let message = recv(receiver).await;
            if message.is_binary() {
                assert!(
                    message.into_data()[..] == big[..],
                    "the message arrived altered"
                );
                break;
            }
        }
    }
    // 16 deliveries of 4 MiB: 64 MiB if each connection kept a write buffer of its size.
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown_kib < 24 * 1024,
        "RSS grew by {grown_kib} KiB after one 4 MiB message to 16 members"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_members_cost_a_few_kib_each_and_are_still_served() {
    /// Members measured, over four channels.
    const MEMBERS: usize = 400;
    /// What one idle member may add to the server's RSS: TLS (about 7.5 KiB in rustls, which
    /// keeps a 4 KiB read buffer), the WebSocket and the connection's task. It was 23 KiB
    /// before idle connections gave their write batches back and the WebSocket was boxed.
    const PER_MEMBER_KIB: u64 = 18;
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--max-connections-per-source", "1000"])
        .start();
    let channels: Vec<String> = (0..4).map(|c| channel(&format!("idle{c}"))).collect();
    // A first round, so that what the allocator sets up once is not counted.
    let mut members = Vec::new();
    for i in 0..40 {
        let ch = &channels[i % channels.len()];
        members.push(join_from(&server, "127.0.0.2", &format!("warm{i}"), ch).await);
    }
    server.wait_metric("kanava_members", 40.0).await;
    let rss_before = server.rss_kib();
    for i in 0..MEMBERS {
        let ch = &channels[i % channels.len()];
        members.push(join_from(&server, "127.0.0.2", &format!("idle{i}"), ch).await);
    }
    let total = (40 + MEMBERS) as f64;
    server.wait_metric("kanava_members", total).await;
    // Every member is sent the join headers of those after it, then one frame: once all have
    // it, every replay and delivery has been written and the members are idle again.
    let mut publishers = Vec::new();
    for (c, ch) in channels.iter().enumerate() {
        let mut publisher = join_from(&server, "127.0.0.3", &format!("pub{c}"), ch).await;
        publisher.send(binary(b"still there?")).await.unwrap();
        publishers.push(publisher);
    }
    for member in &mut members {
        while !recv(member).await.is_binary() {}
    }
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown_kib < PER_MEMBER_KIB * MEMBERS as u64,
        "{MEMBERS} idle members grew the server by {grown_kib} KiB, {} KiB each",
        grown_kib / MEMBERS as u64
    );
}

#[tokio::test]
async fn a_member_that_stops_reading_a_big_live_frame_holds_it_charged_until_closed() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--ping-interval", "1s", "--max-frame", "4194304"])
        .start();
    let ch = channel("stuck-live");
    let mut sender = join_from(&server, "127.0.0.3", "sender", &ch).await;
    server.wait_metric("kanava_members", 1.0).await;
    let mut legit = Pair::join(&server, "127.0.0.6").await;
    // Joins with a small receive window, then reads nothing and answers no ping.
    let stuck = Raw::join_with(&server, "127.0.0.2", Some(4096), "stuck", &ch).await;
    let joined = Instant::now();
    server.wait_metric("kanava_members", 4.0).await;
    let frames_in = server.metric("kanava_frames_in_total").await;
    sender
        .send(binary(&vec![7u8; 4 * 1024 * 1024]))
        .await
        .unwrap();
    sender.close(None).await.unwrap();
    // The frame leaves the stuck member's queue for its writer, which cannot write it: it is
    // charged there until the member is closed.
    let charged = legit
        .chat_while(async {
            server
                .wait_metric("kanava_frames_in_total", frames_in + 1.0)
                .await;
            let mut most = 0.0f64;
            while joined.elapsed() < Duration::from_secs(3) && most < 3.5 * 1024.0 * 1024.0 {
                most = most.max(server.metric("kanava_memory_payload_bytes").await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        })
        .await;
    assert!(
        charged >= 3.5 * 1024.0 * 1024.0,
        "the frame the stuck member holds is not charged: {charged}"
    );
    legit
        .chat_while(wait_until_async_within(
            "the stuck member is closed",
            Duration::from_secs(8),
            || async { server.metric("kanava_members").await <= 2.0 },
        ))
        .await;
    let freed = server.metric("kanava_memory_payload_bytes").await;
    assert!(freed < 1024.0 * 1024.0, "still charged: {freed}");
    legit
        .chat_while(tokio::time::sleep(Duration::from_millis(300)))
        .await;
    drop(stuck);
}
