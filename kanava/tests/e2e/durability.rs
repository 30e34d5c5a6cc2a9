//! History survives a clean restart and a `kill -9`; a drain closes members with 1001.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

/// Everything a joiner is replayed, until the replay stops (nothing new for 500 ms).
async fn replay_of(client: &Client, uid: &str, ch: &str) -> Vec<Message> {
    let mut ws = client.join(uid, ch).await;
    let replay = drain_for(&mut ws, Duration::from_millis(800)).await;
    let _ = ws.close(None).await;
    replay
}

#[tokio::test]
async fn sigterm_drains_with_1001_and_a_restart_replays_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let client = server.client();
    let ch = channel("restart");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    let sent = [
        text("text frame"),
        binary(&[0, 159, 146, 150, 255]),
        Message::Ping("ping frame".into()),
        text(""),
    ];
    for m in &sent {
        a.send(m.clone()).await.unwrap();
    }
    assert_eq!(recv_n(&mut b, sent.len()).await, sent);
    let before = replay_of(&client, "probe", &ch).await;
    assert_eq!(
        before.len(),
        2 + sent.len(),
        "a and b headers, then the frames"
    );

    // A clean stop closes every member with 1001.
    let stopping = tokio::spawn(async move { server.terminate() });
    let (code, _) = closed(&mut a).await;
    assert_eq!(code, Some(CloseCode::Away));
    let (code, _) = closed(&mut b).await;
    assert_eq!(code, Some(CloseCode::Away));
    assert!(
        stopping.await.unwrap(),
        "kanava exited with failure on SIGTERM"
    );

    let server = Start::new().data(&data).start();
    let client = server.client();
    let after = replay_of(&client, "probe2", &ch).await;
    // The same replay byte for byte, plus the first probe's header.
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(json(&after[before.len()])["uid"], "probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_frame_a_client_received_is_replayed() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new()
        .data(&data)
        .args(&["--history-limit", "100000", "--history-bytes", "1000000000"])
        .start();
    let client = server.client();
    let ch = channel("kill9");
    let mut writer = client.join("writer", &ch).await;
    let mut reader = client.join("reader", &ch).await;
    recv(&mut reader).await; // writer's header
    // The writer sends without pause; the reader records what it receives.
    let sending = tokio::spawn(async move {
        let mut i = 0u32;
        while writer.send(binary(&i.to_be_bytes())).await.is_ok() {
            i += 1;
        }
    });
    let mut received = Vec::new();
    while received.len() < 3000 {
        match recv(&mut reader).await {
            Message::Binary(b) => received.push(u32::from_be_bytes(b[..].try_into().unwrap())),
            other => panic!("unexpected {}", describe(&other)),
        }
    }
    server.kill9();
    // Whatever else had already arrived counts as received too.
    while let Ok(Some(Ok(Message::Binary(b)))) =
        tokio::time::timeout(Duration::from_secs(2), reader.next()).await
    {
        received.push(u32::from_be_bytes(b[..].try_into().unwrap()));
    }
    sending.await.unwrap();
    assert_eq!(received, (0..received.len() as u32).collect::<Vec<_>>());

    let server = Start::new()
        .data(&data)
        .args(&["--history-limit", "100000", "--history-bytes", "1000000000"])
        .start();
    let replay = replay_of(&server.client(), "probe", &ch).await;
    let stored: Vec<u32> = replay
        .iter()
        .filter_map(|m| match m {
            Message::Binary(b) => Some(u32::from_be_bytes(b[..].try_into().unwrap())),
            _ => None,
        })
        .collect();
    assert!(
        stored.len() >= received.len(),
        "{} received, {} replayed after kill -9",
        received.len(),
        stored.len()
    );
    assert_eq!(
        stored[..received.len()],
        received[..],
        "replay differs from what was received"
    );
    assert_eq!(
        stored,
        (0..stored.len() as u32).collect::<Vec<_>>(),
        "gap in the stored history"
    );
}

#[tokio::test]
async fn channels_idle_longer_than_the_limit_are_purged_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let client = server.client();
    let (idle, fresh) = (channel("idle"), channel("fresh"));
    let mut w = client.join("w", &idle).await;
    w.send(text("old news")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    drop(w);
    assert!(server.terminate());
    // Let the idle channel age past a 3 s limit, then touch the other one.
    std::thread::sleep(Duration::from_millis(3500));
    let server = Start::new()
        .data(&data)
        .args(&["--channel-idle", "3s"])
        .start();
    // The idle channel is purged at start-up, while the server serves.
    server
        .wait_metric("kanava_store_purged_channels_total", 1.0)
        .await;
    let client = server.client();
    let mut w = client.join("w", &fresh).await;
    w.send(text("news")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    drop(w);
    assert!(server.terminate());

    let server = Start::new()
        .data(&data)
        .args(&["--channel-idle", "3s"])
        .start();
    let client = server.client();
    assert!(
        replay_of(&client, "probe", &idle).await.is_empty(),
        "idle channel kept"
    );
    let kept = replay_of(&client, "probe", &fresh).await;
    assert_eq!(kept.get(1), Some(&text("news")), "active channel purged");
}
