//! The reference server's defects (spec §10, D1-D6), each shown absent from kanava.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kanava_mles::auth::token_hex;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// D1: a member that stops reading is closed; nobody else slows down, in its channel or others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_a_slow_reader_never_slows_anyone_else() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--max-connections-per-source", "1000"])
        .start();
    let client = server.client();
    let slow_ch = channel("slow");
    let fast_ch = channel("fast");

    // S joins and never reads.
    let mut stalled = client.join("S", &slow_ch).await;
    let mut reader = client.join("R", &slow_ch).await;
    let mut publisher = client.join("P", &slow_ch).await;
    let mut a = client.join("A", &fast_ch).await;
    let mut b = client.join("B", &fast_ch).await;
    assert_eq!(json(&recv(&mut b).await)["uid"], "A");
    server.wait_metric("kanava_members", 5.0).await;
    const FRAMES: u32 = 2000;

    let reading = tokio::spawn(async move {
        let mut next = 0u32;
        while next < FRAMES {
            match recv(&mut reader).await {
                Message::Binary(b) => {
                    let n = u32::from_be_bytes(b[..4].try_into().unwrap());
                    assert_eq!(n, next, "R got frames out of order");
                    assert_eq!(b.len(), 64 * 1024, "frame {n} changed size");
                    next += 1;
                }
                Message::Text(_) => {} // P's header
                other => panic!("unexpected {}", describe(&other)),
            }
        }
        reader
    });
    let publishing = tokio::spawn(async move {
        for i in 0..FRAMES {
            let mut frame = vec![0u8; 64 * 1024];
            frame[..4].copy_from_slice(&i.to_be_bytes());
            publisher.send(binary(&frame)).await.unwrap();
        }
        publisher
    });

    // Meanwhile A and B trade a message every 100 ms.
    let mut latencies = Vec::new();
    while !reading.is_finished() || latencies.len() < 10 {
        let rounds = latencies.len();
        let sent = Instant::now();
        a.send(text(&format!("tick {rounds}"))).await.unwrap();
        assert_eq!(recv(&mut b).await, text(&format!("tick {rounds}")));
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _reader = reading.await.unwrap();
    let _publisher = publishing.await.unwrap();
    assert_not_stalled("fast channel", latencies);

    // S was closed: reading what the kernel buffered ends in a close, not 2,000 frames.
    let mut got = 0;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = stalled.next().await {
            if matches!(msg, Message::Binary(_)) {
                got += 1;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "S still open");
    assert!(got < FRAMES, "S received everything: it was never cut off");
    assert!(server.metric("kanava_queue_overflows_total").await >= 1.0);
    let rss_mib = server.rss_kib() / 1024;
    assert!(
        rss_mib < 400,
        "server RSS {rss_mib} MiB after 128 MiB through a stalled member"
    );
    // Joins to the channel still work, with history.
    let mut late = client.join("late", &slow_ch).await;
    assert!(!recv_n(&mut late, 3).await.is_empty());
}

/// D2: connections that end before their header leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_connections_closing_before_their_header_leak_nothing() {
    let _heavy = heavy().await;
    // Loopback load: 16 openers at a time from one address, so the per-source cap (tested on
    // its own) is raised.
    let server = Start::new()
        .args(&["--max-connections-per-source", "1000"])
        .start();
    let client = server.client();
    // Warm up (lazy allocations, thread pools), then take the baseline.
    for _ in 0..3 {
        let (ws, _) = client.upgrade().await;
        drop(ws);
    }
    wait_until("warm-up connections closed", || {
        close_wait(server.mles.port()) == 0
    })
    .await;
    // The server has let go of them too before the baseline is taken.
    wait_until_async("the server's warm-up connections ended", || async {
        server.metric("kanava_connections").await == 0.0
    })
    .await;
    let baseline = server.open_fds();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let (mut ws, _) = client.upgrade().await;
            match i % 3 {
                0 => {
                    let _ = ws.close(None).await; // Close frame
                }
                1 => {
                    let mut tls = ws.into_inner();
                    let _ = tls.shutdown().await; // FIN
                }
                _ => {
                    // RST: zero linger, then drop.
                    let tls = ws.into_inner();
                    let _ = socket_rst(tls.get_ref().0);
                }
            }
        });
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let port = server.mles.port();
    let started = Instant::now();
    wait_until("no CLOSE-WAIT sockets and fds back at baseline", || {
        close_wait(port) == 0 && server.open_fds() <= baseline
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(server.metric("kanava_connections").await, 0.0);
    // Per-source slots were all released: more connections from this address work.
    let ch = channel("after-d2");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    a.send(text("ok")).await.unwrap();
    assert_eq!(recv(&mut b).await, text("ok"));
}

fn socket_rst(tcp: &tokio::net::TcpStream) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sockets in CLOSE-WAIT on the server's port, as `ss` reports them.
fn close_wait(port: u16) -> usize {
    let out = std::process::Command::new("ss")
        .args([
            "-Htan",
            "state",
            "close-wait",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2) is installed");
    assert!(out.status.success(), "ss failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// D3: replayed headers never carry another member's auth token.
#[tokio::test]
async fn d3_replayed_headers_never_reveal_auth() {
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("auth");
    let token = token_hex("A", &ch, None);
    let header = format!(r#"{{"uid":"A","auth":"{token}","channel":"{ch}","x":[1]}}"#);
    let mut a = client.join_with(&header).await;
    a.send(text("from A")).await.unwrap();
    a.close(None).await.unwrap();
    let mut b = client.join("B", &ch).await;
    let replay = recv_n(&mut b, 2).await;
    let mut everything = Vec::new();
    for m in replay
        .iter()
        .chain(&drain_for(&mut b, Duration::from_millis(500)).await)
    {
        everything.extend_from_slice(&m.clone().into_data());
    }
    let a_header = json(&replay[0]);
    assert_eq!(
        a_header,
        serde_json::json!({"uid": "A", "channel": ch, "x": [1]})
    );
    // Field order is kept.
    assert_eq!(
        replay[0],
        text(&format!(r#"{{"uid":"A","channel":"{ch}","x":[1]}}"#))
    );
    let haystack = String::from_utf8_lossy(&everything);
    assert!(!haystack.contains(&token), "token leaked: {haystack}");
}

/// D6: several cores work, and one saturated channel does not delay another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_a_saturated_channel_does_not_delay_another_and_several_cores_work() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--max-connections-per-source", "1000"])
        .start();
    let client = server.client();
    let busy = channel("busy");
    let quiet = channel("quiet");
    let mut members = Vec::new();
    for i in 0..50 {
        let mut ws = client.join(&format!("m{i}"), &busy).await;
        members.push(tokio::spawn(async move {
            let mut frames = 0u64;
            while let Some(Ok(m)) = ws.next().await {
                frames += u64::from(matches!(m, Message::Binary(_)));
            }
            frames
        }));
    }
    let before = worker_cpu(server.pid());
    let mut publisher = client.join("pub", &busy).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let publishing = tokio::spawn(async move {
        let frame = binary(&[7u8; 16 * 1024]);
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            publisher.send(frame.clone()).await.unwrap();
            sent += 1;
        }
        (publisher, sent)
    });
    // The quiet pair runs on its own thread and runtime, so that what is measured is the
    // server, not this process's own readers of the busy channel.
    let quiet_client = client.clone();
    let latencies = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut a = quiet_client.join("a", &quiet).await;
            let mut b = quiet_client.join("b", &quiet).await;
            recv(&mut b).await;
            tokio::time::sleep(Duration::from_millis(500)).await; // let the load build up
            let mut latencies = Vec::new();
            for i in 0..30 {
                let sent = Instant::now();
                a.send(text(&format!("ping {i}"))).await.unwrap();
                assert_eq!(recv(&mut b).await, text(&format!("ping {i}")));
                b.send(text(&format!("pong {i}"))).await.unwrap();
                assert_eq!(recv(&mut a).await, text(&format!("pong {i}")));
                latencies.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            latencies
        })
    });
    let latencies = tokio::task::spawn_blocking(move || latencies.join().unwrap())
        .await
        .unwrap();
    let after = worker_cpu(server.pid());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_publisher, sent) = publishing.await.unwrap();
    eprintln!(
        "d6: {sent} busy frames; round trips {latencies:?}; commit p99 {}",
        server
            .metric("kanava_store_commit_seconds{quantile=\"0.99\"}")
            .await
    );
    assert!(sent > 100, "the busy channel was not busy: {sent} frames");
    assert_not_stalled("quiet channel", latencies);
    let busy_workers = after
        .iter()
        .filter(|(tid, ticks)| **ticks > before.get(*tid).copied().unwrap_or(0) + 5)
        .count();
    assert!(
        busy_workers >= 2,
        "worker threads that ran: {busy_workers} ({before:?} -> {after:?})"
    );
}

/// Asserts that a channel kept moving while another was loaded: the typical round trip stays
/// interactive and none waits on the load. The reference server fails both ways, by seconds
/// (one thread) or for good (a blocked writer); the bounds leave room for a shared 2-core CI box
/// running other tests at the same time (a median of 50 ms was seen there).
fn assert_not_stalled(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    assert!(
        median < Duration::from_millis(200) && worst < Duration::from_secs(1),
        "{what}: median {median:?}, worst {worst:?}, all {latencies:?}"
    );
}

/// CPU ticks of each runtime worker thread (named `kanava-worker`) of `pid`, by thread id.
fn worker_cpu(pid: u32) -> HashMap<String, u64> {
    let mut cpu = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "kanava-worker" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised comm: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        cpu.insert(task.file_name().to_string_lossy().into_owned(), ticks);
    }
    cpu
}
