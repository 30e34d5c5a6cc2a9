//! The store's limits against the real binary: the disk budget per source and in total, purged
//! space going back to the filesystem, and a really full disk (a small tmpfs as the data
//! directory) degrading `/healthz` until space comes back, without losing anything acknowledged;
//! and `kanava bench fairness`, which measures a chat pair beside one address's bulk writes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::ssh::{Keys, stderr as ssh_stderr};
use crate::support::{
    Client, Kanava, Start, Ws, admin_get, bench_report, binary, channel, close_frame, heavy, recv,
    text, wait_until, wait_until_async,
};

/// Frames the fillers send.
const FRAME: usize = 256 * 1024;

/// How a filler's run in one channel ended.
#[derive(Debug)]
enum Fill {
    /// Every frame was stored (its observer received it).
    Stored,
    /// The server closed the writer with this code and reason after `stored` frames.
    Refused {
        stored: usize,
        code: CloseCode,
        reason: String,
    },
}

/// Bytes in the files under `dir`.
fn directory_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                directory_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// The next binary frame `observer` gets, skipping join headers.
async fn next_binary(observer: &mut Ws) -> usize {
    loop {
        match recv(observer).await {
            Message::Binary(frame) => return frame.len(),
            Message::Text(_) => continue,
            other => panic!("the observer got {other:?}"),
        }
    }
}

/// Writes `frames` frames of [`FRAME`] bytes into a new channel from `writer`'s address, one at
/// a time, each confirmed by an observer in the channel (from `observer`'s address) receiving
/// it.
async fn fill(writer: &Client, observer: &Client, tag: &str, frames: usize) -> Fill {
    fill_with(writer, observer, tag, frames, FRAME).await
}

/// Like [`fill`], with frames of `size` bytes.
async fn fill_with(
    writer: &Client,
    observer: &Client,
    tag: &str,
    frames: usize,
    size: usize,
) -> Fill {
    let ch = channel(tag);
    let mut writer = writer.join("writer", &ch).await;
    let mut observer = observer.join("observer", &ch).await;
    for stored in 0..frames {
        let sent = writer.send(binary(&vec![stored as u8; size])).await;
        tokio::select! {
            len = next_binary(&mut observer), if sent.is_ok() => assert_eq!(len, size),
            (code, reason) = close_frame(&mut writer) => {
                return Fill::Refused { stored, code, reason };
            }
        }
    }
    Fill::Stored
}

/// Fills channels from `writer`'s address until the server refuses; returns the frames stored
/// and the refusal.
async fn fill_until_refused(
    writer: &Client,
    observer: &Client,
    tag: &str,
) -> (usize, CloseCode, String) {
    let mut total = 0;
    for i in 0..64 {
        match fill(writer, observer, &format!("{tag}-{i}"), 8).await {
            Fill::Stored => total += 8,
            Fill::Refused {
                stored,
                code,
                reason,
            } => return (total + stored, code, reason),
        }
    }
    panic!("{tag}: {total} frames of {FRAME} bytes stored and never refused");
}

/// A pair chatting in a channel of their own from `client`'s address: bob receives alice's line.
async fn chat(client: &Client, tag: &str, line: &str) {
    let ch = channel(tag);
    let mut alice = client.join("alice", &ch).await;
    let mut bob = client.join("bob", &ch).await;
    alice.send(text(line)).await.unwrap();
    assert_eq!(next_line(&mut bob).await, line);
}

/// The next text frame that is not a join header.
async fn next_line(ws: &mut Ws) -> String {
    loop {
        match recv(ws).await {
            Message::Text(line) if !line.starts_with('{') => return line.to_string(),
            Message::Text(_) => continue,
            other => panic!("expected a line, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_refused_past_its_disk_share_and_the_total_is_never_exceeded() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&[
            "--max-disk",
            "20MiB",
            "--max-disk-per-source",
            "8MiB",
            // Each channel keeps 2 MiB, so filling 8 MiB takes several channels.
            "--history-bytes",
            "2097152",
            "--max-frame",
            "1048576",
        ])
        .start();
    let attacker = server.client().with_source("127.0.0.2");
    let observer = server.client().with_source("127.0.0.9");
    let (stored, code, reason) = fill_until_refused(&attacker, &observer, "fill-a").await;
    assert_eq!(code, CloseCode::Again, "{reason}");
    assert!(
        reason.contains("disk budget used up") && reason.contains("share"),
        "{reason}"
    );
    let stored_bytes = (stored * FRAME) as u64;
    assert!(
        (6 << 20..=8 << 20).contains(&stored_bytes),
        "{stored} frames stored before the refusal"
    );
    // The attacker stays refused; another address is served.
    assert!(matches!(
        fill(&attacker, &observer, "fill-a-again", 1).await,
        Fill::Refused {
            code: CloseCode::Again,
            ..
        }
    ));
    chat(
        &server.client().with_source("127.0.0.3"),
        "chat",
        "still here",
    )
    .await;
    // Smaller and smaller frames use up what is left of the share, down to less than any
    // frame with a header costs.
    for size in [4096, 64, 1] {
        let topped = fill_with(&attacker, &observer, &format!("top-{size}"), 1000, size).await;
        assert!(matches!(topped, Fill::Refused { .. }), "{topped:?}");
    }
    // Over SSH the refused address gets the reason as an error; another address posts.
    let keys = Keys::new();
    let key = keys.path("ed25519");
    let room = channel("ssh-room");
    let refused = ssh_say_from(&server, &key, "127.0.0.2", "mallory", &room).await;
    assert!(!refused.status.success());
    assert!(
        ssh_stderr(&refused).contains("your address has used its share of the server's disk"),
        "{}",
        ssh_stderr(&refused)
    );
    let posted = ssh_say_from(&server, &keys.path("ecdsa256"), "127.0.0.3", "alice", &room).await;
    assert!(posted.status.success(), "{}", ssh_stderr(&posted));
    assert!(
        server
            .metric("kanava_disk_refusals_total{reason=\"source\"}")
            .await
            >= 2.0
    );

    // More addresses use up the total (what is left once the store's log has its room): the
    // last is refused for the total, and the data directory stays within it.
    let (_, code, _) = fill_until_refused(
        &server.client().with_source("127.0.0.4"),
        &observer,
        "fill-b",
    )
    .await;
    assert_eq!(code, CloseCode::Again);
    let (_, code, reason) = fill_until_refused(
        &server.client().with_source("127.0.0.5"),
        &observer,
        "fill-c",
    )
    .await;
    assert_eq!(code, CloseCode::Again);
    assert!(reason.contains("total"), "{reason}");
    let used = directory_size(&server.data);
    assert!(used <= 20 << 20, "the data directory holds {used} bytes");
    assert!(
        server
            .metric("kanava_disk_refusals_total{reason=\"total\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_share_is_remembered_across_a_restart() {
    let _heavy = heavy().await;
    let data = tempfile::tempdir().unwrap();
    let start = || {
        Start::new()
            .data(data.path())
            .args(&[
                "--max-disk",
                "40MiB",
                "--max-disk-per-source",
                "4MiB",
                "--history-bytes",
                "2097152",
                "--max-frame",
                "1048576",
            ])
            .start()
    };
    let server = start();
    let attacker = server.client().with_source("127.0.0.2");
    let observer = server.client().with_source("127.0.0.9");
    let (_, code, _) = fill_until_refused(&attacker, &observer, "before").await;
    assert_eq!(code, CloseCode::Again);
    assert!(server.terminate(), "kanava exits cleanly");

    // Restarted, the address has no new share: its first frame is refused.
    let server = start();
    let attacker = server.client().with_source("127.0.0.2");
    let observer = server.client().with_source("127.0.0.9");
    match fill(&attacker, &observer, "after", 1).await {
        Fill::Refused { code, reason, .. } => {
            assert_eq!(code, CloseCode::Again, "{reason}");
            assert!(reason.contains("share"), "{reason}");
        }
        Fill::Stored => panic!("the restart gave the address a new share"),
    }
    chat(
        &server.client().with_source("127.0.0.3"),
        "chat",
        "another address is served",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_gives_the_space_back_to_the_filesystem() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let writer = server.client().with_source("127.0.0.2");
    let observer = server.client().with_source("127.0.0.3");
    for i in 0..5 {
        let filled = fill(&writer, &observer, &format!("purge-{i}"), 8).await;
        assert!(matches!(filled, Fill::Stored), "{filled:?}");
    }
    assert!(server.terminate());
    let db = |name: &str| std::fs::metadata(data.join(name)).map_or(0, |m| m.len());
    let database = || db("kanava.db") + db("kanava.db-wal");
    let full = database();
    assert!(full > 10 << 20, "{full} bytes after storing 10 MiB");
    // Restarted once every channel is idle for longer than --channel-idle, the server purges
    // them at start-up, while it serves.
    let idle_since = std::time::Instant::now();
    wait_until("the channels are idle for a second", || {
        idle_since.elapsed() > Duration::from_millis(1100)
    })
    .await;
    let server = Start::new()
        .data(&data)
        .args(&["--channel-idle", "1s"])
        .start();
    wait_until("the database shrinks below 1 MiB after the purge", || {
        database() < 1 << 20
    })
    .await;
    server
        .wait_metric("kanava_store_purged_channels_total", 5.0)
        .await;
    // The emptied store still works.
    chat(
        &server.client().with_source("127.0.0.3"),
        "after-purge",
        "fresh",
    )
    .await;
}

/// `ssh -b SOURCE … USER@127.0.0.1 say ROOM hello`, to completion: the options of
/// [`crate::ssh::ssh_command`], which puts the destination last, plus the local address.
async fn ssh_say_from(
    server: &Kanava,
    key: &Path,
    source: &str,
    user: &str,
    room: &str,
) -> std::process::Output {
    let mut command = Command::new("ssh");
    command
        .args(["-F", "/dev/null", "-p", &server.ssh_port.to_string()])
        .args(["-b", source])
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i"])
        .arg(key)
        .arg(format!("{user}@127.0.0.1"))
        .args(["say", room, "hello"])
        .stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || {
        command.output().expect("ssh (openssh-client) is installed")
    })
    .await
    .unwrap()
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed (the test needs root)"
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // What is left is less than a chunk: take it byte by byte.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
}

async fn healthz(server: &Kanava) -> (String, serde_json::Value) {
    let (status, body) = admin_get(server.admin, "/healthz").await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_health_until_space_returns_and_loses_nothing_acknowledged() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    let args = ["--max-disk", "1GiB", "--max-disk-per-source", "1GiB"];
    let server = Start::new().data(&data).args(&args).start();
    let legit = server.client().with_source("127.0.0.3");
    let ch = channel("full-disk");
    let mut alice = legit.join("alice", &ch).await;
    let mut bob = legit.join("bob", &ch).await;
    assert!(recv(&mut bob).await.is_text()); // alice's header
    alice.send(text("before")).await.unwrap();
    assert_eq!(recv(&mut bob).await, text("before"));
    assert_eq!(healthz(&server).await.0, "HTTP/1.1 200 OK");

    let filler = data.join("filler");
    fill_disk(&filler);
    // A sender writing now is closed with 1011: its frames could not be stored.
    let sender = server.client().with_source("127.0.0.2");
    let mut writer = sender.join("writer", &channel("while-full")).await;
    let mut closed = None;
    for _ in 0..64 {
        if writer.send(binary(&[7; 64 * 1024])).await.is_err() {
            break;
        }
        if let Ok(Some(Ok(Message::Close(frame)))) =
            tokio::time::timeout(Duration::from_millis(200), writer.next()).await
        {
            closed = frame;
            break;
        }
    }
    let closed = match closed {
        Some(frame) => frame,
        None => {
            let (code, reason) = close_frame(&mut writer).await;
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code,
                reason: reason.into(),
            }
        }
    };
    assert_eq!(closed.code, CloseCode::Error, "{}", closed.reason);
    let (status, health) = healthz(&server).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["store"]["writable"], false);
    let error = health["store"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("full") || error.contains("space"),
        "{health}"
    );
    assert_eq!(server.metric("kanava_store_writable").await, 0.0);
    // Another address is still served what is already stored.
    let mut carol = legit.join("carol", &ch).await;
    assert!(recv(&mut carol).await.is_text());

    std::fs::remove_file(&filler).unwrap();
    wait_until_async("/healthz is 200 again", || async {
        healthz(&server).await.0 == "HTTP/1.1 200 OK"
    })
    .await;
    assert_eq!(server.metric("kanava_store_writable").await, 1.0);
    alice.send(text("after")).await.unwrap();
    assert_eq!(recv(&mut bob).await, text("after"));

    server.kill9();
    let server = Start::new().data(&data).args(&args).start();
    let mut probe = server.client().join("probe", &ch).await;
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let frame = recv(&mut probe).await;
        if let Message::Text(line) = &frame
            && !line.starts_with('{')
        {
            lines.push(line.to_string());
        }
    }
    assert_eq!(lines, ["before", "after"]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_fairness_measures_a_chat_pair_beside_bulk_writers() {
    let _heavy = heavy().await;
    let server = Start::new().start();
    let url = format!("wss://{}/", server.mles);
    let ca = server.cert_path();
    let report = bench_report(
        [
            "fairness",
            "--url",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--bulk-writers",
            "2",
            "--bulk-size",
            "65536",
            "--duration",
            "3s",
            "--warmup",
            "1s",
        ]
        .map(Into::into)
        .to_vec(),
    )
    .await;
    // A line every 50 ms for the 2 s after the warmup, every one received.
    let sent = report["chat_sent"].as_u64().unwrap();
    assert!((35..=45).contains(&sent), "{report}");
    assert_eq!(report["chat_received"], sent, "{report}");
    let latency = report["chat_latency_ms"].as_array().unwrap();
    assert!(latency[0].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["bulk_mib_per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // The bulk writers' frames were stored.
    assert!(server.metric("kanava_bytes_in_total").await > 1e6);
}
