//! The debug-me server under attack: request heads that never finish, a user streaming
//! megabytes, downloaders that do not read, sessions opened and dropped, a flood of new sessions
//! and a torn log. Attackers come from their own loopback addresses (127.0.0.2, …); each test
//! checks what they are told, that the server's memory and file descriptors stay bounded, and
//! that a legitimate client from another address is served meanwhile.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::debugme_server::{
    RawWs, debug_me, exchange_versions, open_session, raw_recv, raw_send, user_messages,
    user_messages_seeing,
};
use crate::mles_limits::Pair;
use crate::support::*;

/// A debug-me connection from `source`, versions exchanged.
pub(crate) async fn versioned_from(source: &str, server: &Kanava) -> RawWs {
    let tcp = connect_from(source, server.debug_me).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", server.debug_me), tcp)
        .await
        .unwrap();
    exchange_versions(&mut ws).await;
    ws
}

/// Asks for session `id` as a developer; returns the first answer (`R…` or `E…`).
async fn connect(ws: &mut RawWs, id: &str) -> Vec<u8> {
    let mode = format!("M{{\"tag\":\"ConnectMode\",\"contents\":\"http://x/{id}\"}}");
    assert!(raw_send(ws, mode.as_bytes()).await);
    raw_recv(ws).await.expect("an answer to ConnectMode")
}

/// Everything `ws` receives up to `D`; panics at an `E` frame or a close.
async fn until_done(ws: &mut RawWs) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(frame) = next_logged(ws).await {
        frames.push(frame);
    }
    frames
}

/// The text of the next `E` frame `ws` receives, skipping the rest; panics at a close first.
async fn error_frame(ws: &mut RawWs) -> String {
    loop {
        let frame = raw_recv(ws).await.expect("an E frame before the close");
        if frame[0] == b'E' {
            return String::from_utf8_lossy(&frame).into_owned();
        }
    }
}

/// The next logged message `ws` receives, or `None` at `D`; panics at an `E` frame or a close.
async fn next_logged(ws: &mut RawWs) -> Option<Vec<u8>> {
    let frame = raw_recv(ws).await.expect("frames, then D");
    match frame.first() {
        Some(b'D') => None,
        Some(b'E') => panic!("refused: {}", String::from_utf8_lossy(&frame)),
        _ => Some(frame),
    }
}

/// Runs `kanava verify` on `log`; asserts it accepts it.
fn verifies(log: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .arg("verify")
        .arg(log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A legitimate user from 127.0.0.1 opens a session and says five things; the real `debug-me
/// --download` saves it whole once it ended.
async fn a_real_download_works(server: &Kanava) {
    let mut user = versioned_from("127.0.0.1", server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages(5);
    for frame in &messages {
        assert!(raw_send(&mut user, frame).await);
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();
    let log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    wait_until("the session's log is complete", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == messages.len())
    })
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let gnupg = private_dir(&scratch.path().join("gnupg"));
    let url = format!("http://{}/{id}", server.debug_me);
    let cwd = scratch.path().to_owned();
    let out = tokio::task::spawn_blocking(move || debug_me(&["--download", &url], &cwd, &gnupg))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let downloaded = scratch.path().join(format!("debug-me.{id}.log"));
    let lines = std::fs::read_to_string(&downloaded).unwrap();
    assert_eq!(lines.lines().count(), messages.len());
}

/// What one flooding connection saw: the server's whole answer, and when it closed.
struct Seen {
    answer: String,
    after: Duration,
}

#[tokio::test]
async fn heads_that_never_finish_are_refused_at_accept_or_cut_at_the_deadline() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&[
            "--debug-me-max-connections-per-source",
            "16",
            "--debug-me-handshake-timeout",
            "3s",
        ])
        .start();
    let baseline = server.open_fds();
    // 300 connections from 127.0.0.2, each sending `G` and nothing more; each is read to its
    // end on its own task, as an attacker that reads would.
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut tcp = connect_from("127.0.0.2", server.debug_me).await.unwrap();
        tcp.write_all(b"G").await.unwrap();
        let opened = Instant::now();
        flood.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
            Seen {
                answer: String::from_utf8_lossy(&answer).into_owned(),
                after: opened.elapsed(),
            }
        }));
    }
    let refused = r#"kanava_connections_refused_total{listener="debug-me",reason="source"}"#;
    wait_until_async(
        "the server refused the connections past the cap",
        || async { server.metric(refused).await >= 284.0 },
    )
    .await;
    // The 16 held, and at most 64 refusals being answered.
    let held = server.open_fds() - baseline;
    assert!(
        held <= 16 + 64 + 4,
        "{held} descriptors more than before the flood"
    );
    // Meanwhile a real session from another address, downloaded by the real debug-me.
    a_real_download_works(&server).await;

    let mut seen = Vec::new();
    for connection in flood {
        seen.push(connection.await.unwrap());
    }
    let (answered, cut): (Vec<&Seen>, Vec<&Seen>) = seen.iter().partition(|s| !s.answer.is_empty());
    assert_eq!(answered.len(), 284, "one answer to each refused connection");
    for refusal in &answered {
        assert!(
            refusal
                .answer
                .starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && refusal
                    .answer
                    .ends_with("\r\n\r\ntoo many connections from your address\n"),
            "{}",
            refusal.answer
        );
    }
    assert_eq!(cut.len(), 16);
    for held in &cut {
        assert!(
            (Duration::from_millis(2900)..Duration::from_secs(8)).contains(&held.after),
            "a held connection closed after {:?}",
            held.after
        );
    }
    assert_eq!(server.metric(refused).await, 284.0);
    wait_until("the held connections are closed", || {
        server.open_fds() <= baseline + 2
    })
    .await;
    let warnings = server
        .stderr()
        .matches("debug-me connection refused")
        .count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} log lines for 284 refusals"
    );
}

/// Seen output of about `size` bytes of printable text, different for each `i`.
fn screenful(i: usize, size: usize) -> Vec<u8> {
    let line = format!("{i:08} the quick brown fox jumps over the lazy dog\r\n");
    line.as_bytes().iter().copied().cycle().take(size).collect()
}

#[tokio::test]
async fn a_user_streaming_megabytes_ends_at_the_log_limit_with_a_verifiable_log() {
    let _heavy = heavy().await;
    let server = Start::new().args(&["--debug-me-max-log", "40MiB"]).start();
    let rss_before = server.rss_kib();
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    // A developer from 127.0.0.3 follows along, reading.
    let mut developer = versioned_from("127.0.0.3", &server).await;
    assert_eq!(connect(&mut developer, &id).await[0], b'R');
    let following = tokio::spawn(async move {
        let mut frames = 0;
        while let Some(frame) = raw_recv(&mut developer).await {
            if frame[0] == b'E' {
                return (frames, String::from_utf8_lossy(&frame).into_owned());
            }
            frames += 1;
        }
        (frames, String::new())
    });
    let messages = user_messages_seeing(100, |i| screenful(i, 900 * 1024));
    let mut peak = 0;
    let mut sent = 0;
    for frame in &messages {
        if !raw_send(&mut user, frame).await {
            break;
        }
        sent += 1;
        peak = peak.max(server.rss_kib());
    }
    let ended = error_frame(&mut user).await;
    assert!(
        ended.contains("limit of 41943040 bytes"),
        "the user is told why: {ended}"
    );
    assert!(
        sent < messages.len(),
        "the session ended before all was sent"
    );
    let (followed, told) = following.await.unwrap();
    assert!(told.contains("limit of 41943040 bytes"), "{told}");
    let log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    let size = std::fs::metadata(&log).unwrap().len();
    assert!((35 << 20..=40 << 20).contains(&size), "log of {size} bytes");
    let logged = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(followed, logged, "the developer got every logged message");
    verifies(&log);
    assert_eq!(
        server
            .metric(r#"kanava_debugme_sessions_ended_total{reason="max-log"}"#)
            .await,
        1.0
    );
    let grown = peak.saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB while 40 MiB were logged"
    );
    // A legitimate session from another address still works.
    a_real_download_works(&server).await;
}

#[tokio::test]
async fn downloaders_that_do_not_read_do_not_pin_the_log() {
    let _heavy = heavy().await;
    let server = Start::new().args(&["--debug-me-idle", "2s"]).start();
    // A finished session of about 48 MiB.
    let messages = user_messages_seeing(56, |i| screenful(i, 900 * 1024));
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    for frame in &messages {
        assert!(raw_send(&mut user, frame).await);
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();
    let log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    wait_until("the session's log is complete", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == messages.len())
    })
    .await;
    let rss_before = server.rss_kib();
    // Six downloaders from 127.0.0.3 ask for it and read nothing more.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut ws = versioned_from("127.0.0.3", &server).await;
        assert_eq!(connect(&mut ws, &id).await[0], b'R');
        stalled.push(ws);
    }
    // Meanwhile a downloader from 127.0.0.1 gets all of it, and a Mles pair in an unrelated
    // channel chats throughout (the log is read off the runtime: whole-file reads on it used
    // to delay relay by seconds).
    let mut reader = versioned_from("127.0.0.1", &server).await;
    assert_eq!(connect(&mut reader, &id).await[0], b'R');
    let mut pair = Pair::join(&server, "127.0.0.4")
        .await
        .answering_within(Duration::from_millis(1500));
    let replayed = pair.chat_while(until_done(&mut reader)).await;
    assert_eq!(replayed, messages);
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 96 * 1024,
        "six stalled downloads of a 48 MiB log grew RSS by {grown} KiB"
    );
    // The stalled ones are closed once they have not read for the idle timeout, and what was
    // buffered for them is given back.
    let started = Instant::now();
    wait_until_async("the stalled downloads' buffers are given back", || async {
        server.metric("kanava_memory_payload_bytes").await == 0.0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(8));
    for mut ws in stalled {
        let mut frames = 0;
        while let Some(frame) = raw_recv(&mut ws).await {
            assert_ne!(frame, b"D", "a stalled download was not closed");
            frames += 1;
        }
        assert!(frames < messages.len(), "{frames} frames");
    }
}

#[tokio::test]
async fn a_session_in_which_nothing_was_said_leaves_no_file() {
    let server = Kanava::start();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut ws = versioned_from("127.0.0.2", &server).await;
        ids.push(open_session(&mut ws, "nobody").await);
        futures_util::SinkExt::close(&mut ws).await.unwrap();
        assert_eq!(raw_recv(&mut ws).await, None);
    }
    let mut said = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut said, "nobody").await;
    assert!(raw_send(&mut said, &user_messages(0)[0]).await);
    let dir = server.data.join("debug-me");
    wait_until("the session that said something has a log", || {
        dir.join(format!("debug-me.{id}.log")).exists()
    })
    .await;
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, [format!("debug-me.{id}.log")]);
    // An empty session is unknown once it has ended.
    let mut ws = versioned_from("127.0.0.1", &server).await;
    let answer = connect(&mut ws, &ids[0]).await;
    assert!(
        String::from_utf8_lossy(&answer).contains("Unknown session ID"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_flood_of_new_sessions_from_one_address_is_refused_with_the_reason() {
    let server = Kanava::start();
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut ws = versioned_from("127.0.0.2", &server).await;
        open_session(&mut ws, "nobody").await;
        open.push(ws);
    }
    let mut refused = versioned_from("127.0.0.2", &server).await;
    assert!(
        raw_send(
            &mut refused,
            b"M{\"tag\":\"InitMode\",\"contents\":\"nobody\"}"
        )
        .await
    );
    let answer = raw_recv(&mut refused).await.expect("an E frame");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("E") && answer.contains("Too many new sessions from your address"),
        "{answer}"
    );
    assert_eq!(raw_recv(&mut refused).await, None);
    assert_eq!(
        server
            .metric(r#"kanava_debugme_sessions_refused_total{reason="rate"}"#)
            .await,
        1.0
    );
    // Another address opens one, and a real download of it works.
    a_real_download_works(&server).await;
}

#[tokio::test]
async fn a_log_with_a_torn_last_line_is_cut_back_downloadable_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages(5);
    for frame in &messages {
        assert!(raw_send(&mut user, frame).await);
    }
    let log = data.join(format!("debug-me/debug-me.{id}.log"));
    wait_until("the session's log is complete", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == messages.len())
    })
    .await;
    server.kill9();
    // The write of a sixth line was cut short.
    let complete = std::fs::read(&log).unwrap();
    let last_line = complete[..complete.len() - 1]
        .rsplit(|b| *b == b'\n')
        .next()
        .unwrap()
        .to_vec();
    let mut torn = complete.clone();
    torn.extend_from_slice(&last_line[..last_line.len() / 2]);
    std::fs::write(&log, &torn).unwrap();

    let server = Start::new().data(&data).start();
    let mut download = versioned_from("127.0.0.1", &server).await;
    assert_eq!(connect(&mut download, &id).await[0], b'R');
    assert_eq!(until_done(&mut download).await, messages);
    assert_eq!(std::fs::read(&log).unwrap(), complete);
    assert!(
        server.stderr().contains("torn line"),
        "the cut is logged: {}",
        server.stderr()
    );
    verifies(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_the_followers_furthest_behind_are_closed_and_the_session_goes_on() {
    let _heavy = heavy().await;
    let server = Start::new().args(&["--max-memory", "6MiB"]).start();
    let messages = user_messages_seeing(300, |i| screenful(i, 100 * 1024));
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    // Three developers from 127.0.0.3 stop reading while the user goes on.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut ws = versioned_from("127.0.0.3", &server).await;
        assert_eq!(connect(&mut ws, &id).await[0], b'R');
        stalled.push(ws);
    }
    for frame in &messages[..240] {
        assert!(
            raw_send(&mut user, frame).await,
            "the user is never refused"
        );
    }
    wait_until("the stalled developers are closed", || {
        server
            .stderr()
            .matches("closing the debug-me client furthest behind")
            .count()
            == 3
    })
    .await;
    assert_eq!(
        server
            .metric(r#"kanava_debugme_clients_closed_total{reason="memory"}"#)
            .await,
        3.0
    );
    // A developer from 127.0.0.4 joins, reads the backlog, then the rest live, each message
    // as it comes (however loaded the machine, it never falls behind).
    let mut reader = versioned_from("127.0.0.4", &server).await;
    assert_eq!(connect(&mut reader, &id).await[0], b'R');
    let mut read = Vec::new();
    while read.len() < 240 {
        read.push(next_logged(&mut reader).await.expect("the backlog"));
    }
    for frame in &messages[240..] {
        assert!(
            raw_send(&mut user, frame).await,
            "the user is never refused"
        );
        read.push(next_logged(&mut reader).await.expect("the live message"));
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();
    assert_eq!(next_logged(&mut reader).await, None, "D once the user left");
    assert_eq!(read, messages, "the reader got everything");
    for mut ws in stalled {
        let mut frames = 0;
        while let Some(frame) = raw_recv(&mut ws).await {
            assert_ne!(frame, b"D", "a stalled developer was not closed");
            if frame[0] == b'E' {
                let told = String::from_utf8_lossy(&frame);
                assert!(told.contains("furthest behind"), "{told}");
                break;
            }
            frames += 1;
        }
        assert!(frames < 240, "{frames} frames");
    }
    wait_until_async("the queues are given back", || async {
        server.metric("kanava_memory_payload_bytes").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_user_past_its_disk_share_ends_with_the_reason_and_a_verifiable_log() {
    let server = Start::new()
        .args(&["--max-disk-per-source", "3MiB"])
        .start();
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages_seeing(10, |i| screenful(i, 900 * 1024));
    let mut sent = 0;
    for frame in &messages {
        if !raw_send(&mut user, frame).await {
            break;
        }
        sent += 1;
    }
    let ended = error_frame(&mut user).await;
    assert!(
        ended.contains("your address has used its share of the server's disk"),
        "{ended}"
    );
    assert!(sent < messages.len());
    let log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    assert!(std::fs::metadata(&log).unwrap().len() <= 3 << 20);
    verifies(&log);
    assert_eq!(
        server
            .metric(r#"kanava_debugme_sessions_ended_total{reason="disk"}"#)
            .await,
        1.0
    );
    // Another address has its own share.
    a_real_download_works(&server).await;
}

/// A small tmpfs mounted over a directory (the test runs as root); unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mounting a tmpfs needs root");
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_write_that_fails_on_a_full_disk_is_cut_back_and_the_session_ends_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _disk = SmallDisk::mount(&data.join("debug-me"), "1500k");
    let server = Start::new()
        .data(&data)
        .args(&["--max-disk", "1GiB"])
        .start();
    let mut user = versioned_from("127.0.0.2", &server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages_seeing(4, |i| screenful(i, 700 * 1024));
    for frame in &messages {
        if !raw_send(&mut user, frame).await {
            break;
        }
    }
    let ended = error_frame(&mut user).await;
    assert!(
        ended.contains("The server cannot store the session"),
        "{ended}"
    );
    let log = data.join(format!("debug-me/debug-me.{id}.log"));
    let written = std::fs::read(&log).unwrap();
    assert_eq!(
        written.last(),
        Some(&b'\n'),
        "the log ends with a complete line"
    );
    let lines = written.iter().filter(|b| **b == b'\n').count();
    assert!((2..messages.len()).contains(&lines), "{lines} lines");
    verifies(&log);
    assert_eq!(
        server
            .metric(r#"kanava_debugme_sessions_ended_total{reason="write"}"#)
            .await,
        1.0
    );
    let mut download = versioned_from("127.0.0.1", &server).await;
    assert_eq!(connect(&mut download, &id).await[0], b'R');
    assert_eq!(until_done(&mut download).await, messages[..lines]);
}

#[tokio::test]
async fn frames_arriving_slowly_are_charged_and_refused_past_the_memory_budget() {
    let _heavy = heavy().await;
    let server = Start::new().args(&["--max-memory", "3MiB"]).start();
    slow_frames_are_charged(&server, || versioned_from("127.0.0.2", &server)).await;
}

#[tokio::test]
async fn frames_arriving_slowly_on_the_tls_listener_are_charged_and_refused_past_the_memory_budget()
{
    let _heavy = heavy().await;
    let server = Start::new().args(&["--max-memory", "3MiB"]).start();
    slow_frames_are_charged(&server, || async {
        let tls = server.client().with_source("127.0.0.2").tls().await;
        let url = format!("wss://localhost:{}/debug-me", server.mles.port());
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        exchange_versions(&mut ws).await;
        ws
    })
    .await;
}

/// Users, each connected with `connect` (from 127.0.0.2), start a frame of 1,000,000 bytes,
/// send 900 KiB of it and stop: with `--max-memory 3MiB`, three are charged, the fourth is told
/// why and closed, a session from another address works meanwhile, and the charges are given
/// back once they leave.
async fn slow_frames_are_charged<S, F, C>(server: &Kanava, connect: C)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = tokio_tungstenite::WebSocketStream<S>>,
    C: Fn() -> F,
{
    let mut attackers = Vec::new();
    for i in 0..4 {
        let mut ws = connect().await;
        open_session(&mut ws, "nobody").await;
        let mut frame = vec![0x82, 0xff];
        frame.extend_from_slice(&1_000_000u64.to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame.extend(std::iter::repeat_n(b'L', 900 * 1024));
        ws.get_mut().write_all(&frame).await.unwrap();
        ws.get_mut().flush().await.unwrap();
        attackers.push(ws);
        if i < 3 {
            let charged = (i + 1) as f64 * 900.0 * 1024.0;
            wait_until_async("the server has read the partial frame", || async {
                server.metric("kanava_memory_payload_bytes").await >= charged
            })
            .await;
        }
    }
    // Three fit in the budget; the fourth is told why and closed.
    let last = attackers.last_mut().unwrap();
    let told = raw_recv(last).await.expect("an E frame");
    let told = String::from_utf8_lossy(&told);
    assert!(
        told.starts_with('E') && told.contains("memory budget is exhausted"),
        "{told}"
    );
    assert_eq!(raw_recv(last).await, None);
    let held = server.metric("kanava_memory_payload_bytes").await;
    assert!(
        (3.0 * 900.0 * 1024.0..=3.0 * 1024.0 * 1024.0).contains(&held),
        "{held} bytes charged"
    );
    assert_eq!(
        server
            .metric(r#"kanava_debugme_clients_closed_total{reason="memory"}"#)
            .await,
        1.0
    );
    // Meanwhile a session from another address works.
    a_real_download_works(server).await;
    drop(attackers);
    wait_until_async("the held frames are given back", || async {
        server.metric("kanava_memory_payload_bytes").await == 0.0
    })
    .await;
}
