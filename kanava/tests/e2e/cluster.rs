//! Cluster mode: several `kanava serve --cluster` nodes sharing one real 3-node NATS JetStream
//! cluster on loopback. Mles members and SSH users on different nodes see one channel (frames
//! each once, in one order, with its history), names and uids are claimed cluster-wide, and the
//! service survives a killed kanava node and a stopped NATS node. Every test starts its own
//! NATS cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::chat::LineSession;
use crate::nats::{NatsCluster, free_port, http_get};
use crate::ssh::{Keys, assert_key_refused, ssh, stderr};
use crate::support::*;

/// How long the cluster may take to recover from losing a NATS node (reconnect, and a new
/// stream leader when the lost node led).
const RECOVERY: Duration = Duration::from_secs(30);

/// The presence refresh interval where a test waits for a crashed node's presence to expire
/// (3 intervals), short to keep the test short, not so short that a loaded machine misses one.
const PRESENCE_INTERVAL: &str = "2s";

/// How long a crashed node's presence may outlive it: 3 intervals of [`PRESENCE_INTERVAL`],
/// with room for a loaded machine.
const PRESENCE_EXPIRY: Duration = Duration::from_secs(20);

/// A fresh NATS cluster and kanava nodes connected to all of its servers. On a failing test,
/// prints the end of every node's log.
struct Cluster {
    /// Dropped after the nodes (fields drop in order).
    nodes: Vec<Option<Kanava>>,
    names: Vec<String>,
    nats: NatsCluster,
}

impl Cluster {
    /// Starts a NATS cluster and one kanava node per name, one after the other
    /// ([`nodes_started_together_all_join`] starts them at once).
    async fn start(names: &[&str]) -> Cluster {
        Self::start_with(names, &[]).await
    }

    /// Like [`start`](Self::start), with more `kanava serve` arguments for every node.
    async fn start_with(names: &[&str], args: &[&str]) -> Cluster {
        let nats = NatsCluster::start().await;
        let urls = nats.urls();
        Cluster {
            nodes: names
                .iter()
                .map(|name| Some(node(&urls, name, args)))
                .collect(),
            names: names.iter().map(|n| n.to_string()).collect(),
            nats,
        }
    }

    fn node(&self, i: usize) -> &Kanava {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {} was killed", self.names[i]))
    }

    /// `kill -9` of kanava node `i`.
    fn kill9(&mut self, i: usize) {
        self.nodes[i].take().expect("a running node").kill9();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, node) in self.names.iter().zip(&self.nodes) {
            match node {
                Some(node) => {
                    let log = node.stderr();
                    let lines: Vec<&str> = log.lines().collect();
                    eprintln!(
                        "--- kanava node {name} (pid {}), last lines of stderr:\n{}",
                        node.pid(),
                        lines[lines.len().saturating_sub(40)..].join("\n")
                    );
                }
                None => eprintln!("--- kanava node {name}: killed by the test"),
            }
        }
    }
}

/// `kanava serve ARGS` as cluster node `name` on the NATS servers `urls`.
pub(crate) fn node(urls: &str, name: &str, args: &[&str]) -> Kanava {
    Start::new()
        .args(&["--cluster", urls, "--node-name", name])
        .args(args)
        .start()
}

/// The uid of a Mles join header (a JSON object with `uid` and `channel`), or None for any
/// other frame.
fn header_uid(msg: &Message) -> Option<String> {
    let Message::Text(t) = msg else { return None };
    let value: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
    value.get("channel")?;
    Some(value.get("uid")?.as_str()?.to_owned())
}

/// Splits what a member received into the uids of the join headers (sorted) and the other
/// frames (in order).
fn split(received: &[Message]) -> (Vec<String>, Vec<Message>) {
    let mut uids = Vec::new();
    let mut frames = Vec::new();
    for msg in received {
        match header_uid(msg) {
            Some(uid) => uids.push(uid),
            None => frames.push(msg.clone()),
        }
    }
    uids.sort();
    (uids, frames)
}

fn sorted(uids: &[&str]) -> Vec<String> {
    let mut uids: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
    uids.sort();
    uids
}

/// Receives until `marker`, allowing before it only `peer`'s join header, once.
async fn recv_marker(ws: &mut Ws, peer: &str, marker: &Message) {
    let mut seen = Vec::new();
    loop {
        let msg = recv(ws).await;
        if msg == *marker {
            return;
        }
        let peer_header = header_uid(&msg).as_deref() == Some(peer);
        seen.push(describe(&msg));
        assert!(
            peer_header && seen.len() == 1,
            "before {} only {peer}'s header may come, once; got {seen:?}",
            describe(marker)
        );
    }
}

/// Makes two members of one channel on different nodes sure of each other: each sends a
/// marker and waits for the other's. A join header is published before anything its member
/// sends, but whether the peer gets it replayed or live depends on timing; afterwards both
/// headers are behind them, and only frames follow.
async fn meet(x: &mut Ws, x_uid: &str, y: &mut Ws, y_uid: &str) -> [Message; 2] {
    let x_marker = text(&format!("{x_uid} is here"));
    x.send(x_marker.clone()).await.unwrap();
    recv_marker(y, x_uid, &x_marker).await;
    let y_marker = text(&format!("{y_uid} is here"));
    y.send(y_marker.clone()).await.unwrap();
    recv_marker(x, y_uid, &y_marker).await;
    [x_marker, y_marker]
}

/// Joins `x_uid` to `ch` on node `x` and `y_uid` on node `y`, and lets them [`meet`]; returns
/// both members and their markers.
async fn join_and_meet(
    x: &Kanava,
    x_uid: &str,
    y: &Kanava,
    y_uid: &str,
    ch: &str,
) -> (Ws, Ws, [Message; 2]) {
    let mut x_ws = x.client().join(x_uid, ch).await;
    let mut y_ws = y.client().join(y_uid, ch).await;
    let markers = meet(&mut x_ws, x_uid, &mut y_ws, y_uid).await;
    (x_ws, y_ws, markers)
}

/// Fails if `ws` (member `who`) receives any data frame within `window`.
async fn assert_no_more(who: &str, ws: &mut Ws, window: Duration) {
    let extra = drain_for(ws, window).await;
    assert!(
        extra.is_empty(),
        "{who} got more: {:?}",
        extra.iter().map(describe).collect::<Vec<_>>()
    );
}

/// What a joiner is replayed (and sent live): receives until it has `frames` frames besides
/// join headers, then whatever else comes within 500 ms; returns them [`split`].
async fn replayed(ws: &mut Ws, frames: usize) -> (Vec<String>, Vec<Message>) {
    let mut got = Vec::new();
    let mut data = 0;
    while data < frames {
        let msg = recv(ws).await;
        if header_uid(&msg).is_none() {
            data += 1;
        }
        got.push(msg);
    }
    got.extend(drain_for(ws, Duration::from_millis(500)).await);
    split(&got)
}

/// Joins `uid` to `ch` until the node admits it (a refused join is closed before any frame),
/// retrying for up to `limit`; returns the member and its first frame. The channel must have
/// history, so that an admitted join is replayed at least one frame.
async fn join_when_admitted(
    client: &Client,
    uid: &str,
    ch: &str,
    limit: Duration,
) -> (Ws, Message) {
    let header = serde_json::json!({"uid": uid, "channel": ch}).to_string();
    let admitted = Mutex::new(None);
    wait_until_async_within(&format!("{uid} is admitted"), limit, || async {
        let mut ws = client.send_header(&header).await;
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| f.code);
                assert_eq!(code, Some(CloseCode::Policy), "{uid}'s join closed so");
                false
            }
            Ok(Some(Ok(first))) => {
                *admitted.lock().unwrap() = Some((ws, first));
                true
            }
            Ok(other) => panic!("{uid}'s join ended with {other:?}"),
            Err(_) => panic!("{uid}'s join got neither its replay nor a close"),
        }
    })
    .await;
    admitted.into_inner().unwrap().expect("admitted")
}

/// The names `who ROOM` lists on `server`, asked as SSH user `asker`.
async fn who(server: &Kanava, key: &Path, asker: &str, room: &str) -> Vec<String> {
    let out = ssh(server, &[key], asker, &["who", &format!("#{room}")]).await;
    assert!(out.status.success(), "who: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `who ROOM` on `server` lists `uid` (as `who` shows it: `~uid` for an unverified
/// Mles member): the node knows of a member elsewhere.
async fn wait_listed(server: &Kanava, key: &Path, room: &str, uid: &str) {
    wait_until_async(&format!("{uid} is listed in #{room}"), || async {
        who(server, key, "watcher", room)
            .await
            .iter()
            .any(|n| n == uid)
    })
    .await;
}

/// `/healthz` as JSON, with its status code.
async fn healthz(server: &Kanava) -> (u16, serde_json::Value) {
    let (status, body) = http_get(server.admin, "/healthz")
        .await
        .expect("the admin listener answers");
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
    (status, json)
}

/// The node reports a working cluster link on `/healthz` and `/metrics`.
async fn assert_connected(server: &Kanava) {
    let (status, health) = healthz(server).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["cluster"]["connected"], true, "{health}");
    assert!(health["cluster"]["detail"].is_string(), "{health}");
    let (_, metrics) = server.admin_get("/metrics").await;
    assert_eq!(sum_of(&metrics, "kanava_cluster_connected"), 1.0);
}

/// The sum of a metric's series in a `/metrics` text, whatever their labels (0 if absent).
fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|labels| labels.is_empty() || labels.starts_with('{'))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// Nodes of a new cluster are often started together (a deployment, a restart of every node);
/// each must come up, whichever of them sets up the streams and buckets.
#[tokio::test]
async fn nodes_started_together_all_join() {
    let _heavy = heavy().await;
    let nats = NatsCluster::start().await;
    let urls = nats.urls();
    let nodes: Vec<Kanava> = std::thread::scope(|scope| {
        let starting: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|name| scope.spawn(|| node(&urls, name, &[])))
            .collect();
        starting
            .into_iter()
            .map(|s| s.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for node in &nodes {
        assert_connected(node).await;
    }
    // And they form one cluster.
    join_and_meet(&nodes[0], "first", &nodes[2], "third", &channel("together")).await;
}

#[tokio::test]
async fn mles_frames_cross_nodes() {
    let _heavy = heavy().await;
    // c hosts no member of the channel: it must receive none of its frames. The channels are
    // spread over three streams.
    let cluster = Cluster::start_with(&["a", "b", "c"], &["--cluster-shards", "3"]).await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let (mut alice, mut bob, _) = join_and_meet(a, "alice", b, "bob", &channel("cross")).await;

    let from_alice = [
        text("hello from a"),
        binary(&[0, 1, 2, 255]),
        text(""),
        Message::Ping("ping from a".into()),
        binary(&(0..65_536).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        text("ünïcödé ✓"),
    ];
    let from_bob = [
        binary(&[]),
        text("hello from b"),
        binary(&[9; 1000]),
        text("{\"not\":\"a header\"}"),
        text("b's last"),
        binary(&[42]),
    ];
    // Both send at once, interleaved.
    for (x, y) in from_alice.iter().zip(&from_bob) {
        alice.send(x.clone()).await.unwrap();
        bob.send(y.clone()).await.unwrap();
    }
    let got_bob = recv_n(&mut bob, from_alice.len()).await;
    assert_eq!(got_bob, from_alice, "bob's frames from alice");
    let got_alice = recv_n(&mut alice, from_bob.len()).await;
    assert_eq!(got_alice, from_bob, "alice's frames from bob");
    // Nothing twice, and nobody gets their own.
    assert_no_more("bob", &mut bob, Duration::from_millis(500)).await;
    assert_no_more("alice", &mut alice, Duration::from_millis(100)).await;

    for node in [a, b] {
        assert_connected(node).await;
        let (_, metrics) = node.admin_get("/metrics").await;
        for name in [
            "kanava_cluster_publish_seconds",
            "kanava_cluster_frames_received_total",
            "kanava_cluster_connected",
        ] {
            assert!(metrics.contains(name), "/metrics lacks {name}");
        }
        // Each node published its member's join and frames, and received both members' (its
        // own member's too: the bus delivers every stored frame of a hosted channel).
        let published = sum_of(&metrics, "kanava_cluster_publish_seconds_count");
        assert!(published >= 8.0, "{published} publishes timed");
        let received = sum_of(&metrics, "kanava_cluster_frames_received_total");
        assert!(received >= 12.0, "{received} frames received");
        assert_eq!(sum_of(&metrics, "kanava_cluster_hosted_channels"), 1.0);
    }
    assert_connected(c).await;
    let (_, metrics) = c.admin_get("/metrics").await;
    assert!(
        metrics.contains("kanava_cluster_frames_received_total"),
        "{metrics}"
    );
    assert_eq!(
        sum_of(&metrics, "kanava_cluster_frames_received_total"),
        0.0,
        "a node hosting no member of the channel receives none of its frames"
    );
    assert_eq!(sum_of(&metrics, "kanava_cluster_hosted_channels"), 0.0);
}

#[tokio::test]
async fn late_joiner_gets_history_written_through_another_node() {
    let _heavy = heavy().await;
    let cluster = Cluster::start(&["a", "b"]).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let ch = channel("late");
    let mut alice = a.client().join("alice", &ch).await;
    // Bob, on the same node, witnesses what is stored: a node relays only stored frames. He
    // joined after alice, so her header comes first, once: replayed if it was back from NATS
    // when he joined, live otherwise.
    let mut bob = a.client().join("bob", &ch).await;
    let earlier = [text("one"), binary(&[2, 2]), text("three")];
    for m in &earlier {
        alice.send(m.clone()).await.unwrap();
    }
    let first = recv(&mut bob).await;
    assert_eq!(
        header_uid(&first).as_deref(),
        Some("alice"),
        "{}",
        describe(&first)
    );
    assert_eq!(recv(&mut bob).await, earlier[0]);
    assert_eq!(recv_n(&mut bob, earlier.len() - 1).await, earlier[1..]);

    // Carol, on the other node, is replayed all of it in order, then gets live frames.
    let mut carol = b.client().join("carol", &ch).await;
    let replay = recv_n(&mut carol, 2 + earlier.len()).await;
    assert_eq!(header_uid(&replay[0]).as_deref(), Some("alice"));
    assert_eq!(header_uid(&replay[1]).as_deref(), Some("bob"));
    assert_eq!(replay[2..], earlier);
    // Bob answers once he has alice's frame: two senders' frames are ordered only by cause.
    let live = [text("live from alice"), binary(&[7; 7])];
    alice.send(live[0].clone()).await.unwrap();
    assert_eq!(recv(&mut bob).await, live[0]);
    bob.send(live[1].clone()).await.unwrap();
    assert_eq!(recv_n(&mut carol, 2).await, live);
    assert_no_more("carol", &mut carol, Duration::from_millis(500)).await;
    // Once bob has carol's line, her header (published before it) is stored too.
    let carols = text("carol's line");
    carol.send(carols.clone()).await.unwrap();
    assert_eq!(recv(&mut bob).await, carols);

    // Dave joins on B while alice is sending: each frame reaches him once, in order, some in
    // his replay and the rest live. He joins once carol, on his node, has some of them, so that
    // his node has seen everything before them.
    const STREAMED: u32 = 80;
    let streaming = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        for i in 0..STREAMED {
            pace.tick().await;
            alice.send(binary(&i.to_be_bytes())).await.unwrap();
        }
        alice
    });
    for i in 0..STREAMED / 4 {
        assert_eq!(recv(&mut carol).await, binary(&i.to_be_bytes()));
    }
    let mut dave = b.client().join("dave", &ch).await;
    let _alice = streaming.await.unwrap();
    let total = earlier.len() + live.len() + 1 + STREAMED as usize;
    let (uids, frames) = replayed(&mut dave, total).await;
    assert_eq!(uids, sorted(&["alice", "bob", "carol"]), "headers dave got");
    let mut expected: Vec<Message> = earlier.iter().chain(&live).cloned().collect();
    expected.push(carols);
    expected.extend((0..STREAMED).map(|i| binary(&i.to_be_bytes())));
    assert_eq!(
        frames.iter().map(describe).collect::<Vec<_>>(),
        expected.iter().map(describe).collect::<Vec<_>>(),
        "dave's frames"
    );
}

#[tokio::test]
async fn ssh_chat_across_nodes() {
    let _heavy = heavy().await;
    let cluster = Cluster::start(&["a", "b"]).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let keys = Keys::new();
    // Both start in #lobby; this cluster is theirs alone.
    let mut alice = LineSession::open(a, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(b, &keys.path("ecdsa256"), "bob").await;

    alice.send("hello from node a").await;
    bob.out_line("alice's line", |l| {
        l.ends_with(" <alice> hello from node a")
    })
    .await;
    bob.send("hi from node b").await;
    alice
        .out_line("bob's line", |l| l.ends_with(" <bob> hi from node b"))
        .await;

    // Each node lists the user connected to the other.
    for (session, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        // The session is used by one poll at a time; the lock only lends it to each.
        let session = tokio::sync::Mutex::new(session);
        let answer = Mutex::new(String::new());
        wait_until_async(&format!("/who lists {other}"), || async {
            let mut session = session.lock().await;
            session.send("/who").await;
            let line = session
                .err_line("the answer to /who", |l| l.contains(" here: "))
                .await;
            let listed = line
                .split_once(" here: ")
                .unwrap()
                .1
                .split(", ")
                .any(|name| name == other);
            *answer.lock().unwrap() = line;
            listed
        })
        .await;
        let answer = answer.into_inner().unwrap();
        assert_eq!(answer.trim_start_matches("kanava: "), "2 here: alice, bob");
    }

    // A private message reaches its recipient on the other node at once, and the reply comes
    // back; the sender is not told the recipient is away.
    let _ = alice.notes_so_far();
    alice
        .pm_and_reply(&mut bob, "meet across nodes", "got it")
        .await;
    let notes = alice.notes_so_far();
    assert!(
        !notes.iter().any(|n| n.contains("not connected")),
        "{notes:?}"
    );

    // A Mles client on one node is shown unverified on the other, and cannot take a name bound
    // through either.
    let mut web = a.client().join("web", "lobby").await;
    web.send(text("from the web")).await.unwrap();
    bob.out_line("web's line", |l| l.ends_with(" <~web> from the web"))
        .await;
    let mut impostor = a
        .client()
        .send_header(r#"{"uid":"Bob","channel":"lobby"}"#)
        .await;
    let (code, reason) = close_frame(&mut impostor).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
}

#[tokio::test]
async fn racing_first_logins_exactly_one_wins() {
    let _heavy = heavy().await;
    let cluster = Cluster::start(&["a", "b"]).await;
    let nodes = [cluster.node(0), cluster.node(1)];
    let keys = Keys::new();
    // Two new names, each claimed at once through both nodes with different keys.
    let races = [
        ("racer1", [(0, "ed25519"), (1, "ecdsa256")]),
        ("racer2", [(1, "ecdsa384"), (0, "ecdsa521")]),
    ];
    let logins: Vec<_> = races
        .iter()
        .flat_map(|(name, claims)| claims.map(|(node, key)| (nodes[node], *name, keys.path(key))))
        .collect();
    let outcomes = futures_util::future::join_all(
        logins
            .iter()
            .map(|(node, name, key)| async move { ssh(node, &[key], name, &["rooms"]).await }),
    )
    .await;
    for ((name, claims), outcomes) in races.iter().zip(outcomes.chunks(2)) {
        let admitted: Vec<bool> = outcomes.iter().map(|o| o.status.success()).collect();
        assert_eq!(
            admitted.iter().filter(|a| **a).count(),
            1,
            "{name}: exactly one first login wins; exit statuses {:?}, stderr {:?}",
            outcomes.iter().map(|o| o.status).collect::<Vec<_>>(),
            outcomes.iter().map(stderr).collect::<Vec<_>>()
        );
        let loser = outcomes.iter().find(|o| !o.status.success()).unwrap();
        assert_key_refused(loser, &format!("{name}'s losing first login"));
        let winner_key = keys.path(claims[admitted.iter().position(|a| *a).unwrap()].1);
        let loser_key = keys.path(claims[admitted.iter().position(|a| !*a).unwrap()].1);
        // The claim holds on both nodes.
        for (i, node) in nodes.iter().enumerate() {
            let out = ssh(node, &[&winner_key], name, &["rooms"]).await;
            assert!(
                out.status.success(),
                "{name}'s winning key refused by node {i}: {}",
                stderr(&out)
            );
            let out = ssh(node, &[&loser_key], name, &["rooms"]).await;
            assert_key_refused(&out, &format!("{name}'s losing key on node {i}"));
        }
    }
}

#[tokio::test]
async fn mles_duplicate_uid_refused_across_nodes() {
    let _heavy = heavy().await;
    let mut cluster =
        Cluster::start_with(&["a", "b"], &["--presence-interval", PRESENCE_INTERVAL]).await;
    let keys = Keys::new();
    let watcher_key = keys.path("ed25519");
    let ch = channel("dup");
    let (a, b) = (cluster.node(0), cluster.node(1));
    let (client_a, client_b) = (a.client(), b.client());
    let (mut x, mut w, markers) = join_and_meet(a, "x", b, "w", &ch).await;
    wait_listed(b, &watcher_key, &ch, "~x").await;

    // B refuses x as a single node refuses a duplicate: closed at once with 1008.
    let header = serde_json::json!({"uid": "x", "channel": ch}).to_string();
    let mut duplicate = client_b.send_header(&header).await;
    let (code, took) = closed(&mut duplicate).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The first x is unaffected, and the duplicate's header was not stored.
    x.send(text("still here")).await.unwrap();
    assert_eq!(recv(&mut w).await, text("still here"));
    let mut probe = client_b.join("probe", &ch).await;
    let (uids, frames) = replayed(&mut probe, 3).await;
    assert_eq!(uids, sorted(&["x", "w"]), "headers replayed");
    assert_eq!(
        frames,
        [markers[0].clone(), markers[1].clone(), text("still here")]
    );
    drop(probe);

    // Once x has left A, x may join on B.
    x.close(None).await.unwrap();
    drop(x);
    let (_x_on_b, first) = join_when_admitted(&client_b, "x", &ch, WAIT).await;
    assert!(
        header_uid(&first).is_some(),
        "x's replay starts with a header, not {}",
        describe(&first)
    );

    // A node that dies holding y: within the presence expiry y may join on B.
    let _y = client_a.join("y", &ch).await;
    wait_listed(b, &watcher_key, &ch, "~y").await;
    cluster.kill9(0);
    let killed = Instant::now();
    let (_y_on_b, _) = join_when_admitted(&client_b, "y", &ch, PRESENCE_EXPIRY).await;
    eprintln!(
        "y was admitted on B {:?} after A was killed",
        killed.elapsed()
    );
}

/// Records the numbered binary frames a member receives (4-byte big-endian numbers) and
/// anything else that is not a join header.
struct Recorder {
    numbers: Arc<Mutex<Vec<u32>>>,
    unexpected: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn new(mut ws: Ws) -> Recorder {
        let numbers = Arc::new(Mutex::new(Vec::new()));
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let (n, u) = (Arc::clone(&numbers), Arc::clone(&unexpected));
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                match &msg {
                    Message::Binary(b) if b.len() == 4 => n
                        .lock()
                        .unwrap()
                        .push(u32::from_be_bytes(b[..].try_into().unwrap())),
                    Message::Pong(_) => {}
                    Message::Ping(p) if p.is_empty() => {}
                    _ if header_uid(&msg).is_some() => {}
                    _ => u.lock().unwrap().push(describe(&msg)),
                }
            }
        });
        Recorder {
            numbers,
            unexpected,
            task,
        }
    }

    fn numbers(&self) -> Vec<u32> {
        self.numbers.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Numbered frames `from..to` as binary frames.
fn numbered(from: u32, to: u32) -> Vec<Message> {
    (from..to).map(|i| binary(&i.to_be_bytes())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_node_loses_and_duplicates_nothing() {
    let _heavy = heavy().await;
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let ch = channel("kill9");
    let client_b = cluster.node(1).client();
    let client_c = cluster.node(2).client();
    let mut publisher = cluster.node(0).client().join("pub", &ch).await;
    let on_b = Recorder::new(client_b.join("sub-b", &ch).await);
    let on_c = Recorder::new(client_c.join("sub-c", &ch).await);

    // The publisher sends numbered frames through A, every 2 ms, until A dies (or it has sent
    // LIMIT, which keeps the channel's whole history within the default 200 entries), so that
    // some are on their way when it dies.
    const LIMIT: u32 = 150;
    let sending = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        let mut attempted = 0u32;
        while attempted < LIMIT {
            tokio::select! {
                _ = pace.tick() => {
                    attempted += 1;
                    if publisher.send(binary(&(attempted - 1).to_be_bytes())).await.is_err() {
                        break;
                    }
                }
                incoming = publisher.next() => match incoming {
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        attempted
    });
    wait_until("both subscribers have frames from A", || {
        on_b.numbers().len() >= 20 && on_c.numbers().len() >= 20
    })
    .await;
    cluster.kill9(0);
    let through_a = tokio::time::timeout(WAIT, sending)
        .await
        .expect("the publisher notices A's death")
        .unwrap();

    // The publisher comes back through B and goes on numbering after what it sent to A.
    const AFTER: u32 = 30;
    let mut again = client_b.join("pub-again", &ch).await;
    for m in numbered(through_a, through_a + AFTER) {
        again.send(m).await.unwrap();
    }
    let last = through_a + AFTER - 1;
    wait_until(
        "both subscribers have the last frame sent through B",
        || on_b.numbers().last() == Some(&last) && on_c.numbers().last() == Some(&last),
    )
    .await;

    let got = on_b.numbers();
    assert_eq!(on_c.numbers(), got, "B and C saw different frames");
    let received_from_a = got.iter().filter(|n| **n < through_a).count() as u32;
    // What A stored is a prefix of what it was sent; the rest was in flight when it died.
    let expected: Vec<u32> = (0..received_from_a)
        .chain(through_a..through_a + AFTER)
        .collect();
    assert_eq!(got, expected, "frames seen by the subscribers");
    for recorder in [&on_b, &on_c] {
        let unexpected = recorder.unexpected.lock().unwrap().clone();
        assert!(unexpected.is_empty(), "unexpected frames: {unexpected:?}");
    }
    eprintln!(
        "{through_a} frames sent through A, {received_from_a} stored before it died, \
         {AFTER} through B"
    );

    // A fresh joiner on C is replayed exactly what the subscribers saw.
    let mut probe = client_c.join("probe", &ch).await;
    let (uids, frames) = replayed(&mut probe, got.len()).await;
    assert_eq!(
        uids,
        sorted(&["pub", "sub-b", "sub-c", "pub-again"]),
        "headers replayed"
    );
    let replayed: Vec<u32> = frames
        .iter()
        .map(|m| match m {
            Message::Binary(b) if b.len() == 4 => u32::from_be_bytes(b[..].try_into().unwrap()),
            other => panic!("unexpected in the history: {}", describe(other)),
        })
        .collect();
    assert_eq!(replayed, got, "the history differs from what was delivered");
}

/// The NATS node with the most client connections (the one whose loss the kanava nodes are
/// likeliest to notice).
async fn busiest(nats: &NatsCluster) -> usize {
    let mut connections = BTreeMap::new();
    for i in 0..nats.size() {
        let (_, varz) = nats.get(i, "/varz").await.unwrap();
        let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
        connections.insert(i, varz["connections"].as_u64().unwrap());
    }
    let most = connections.values().max().copied().unwrap();
    *connections.iter().find(|(_, c)| **c == most).unwrap().0
}

#[tokio::test]
async fn service_continues_when_one_nats_node_stops() {
    let _heavy = heavy().await;
    let mut cluster = Cluster::start(&["a", "b"]).await;
    let ch = channel("nats-stop");
    let (mut alice, mut bob, markers) =
        join_and_meet(cluster.node(0), "alice", cluster.node(1), "bob", &ch).await;
    let mut history: Vec<Message> = markers.into();

    let victim = busiest(&cluster.nats).await;
    cluster.nats.stop(victim);
    // Frames keep flowing both ways on the same connections, once the cluster has recovered.
    for round in 0..3 {
        let limit = if round == 0 { RECOVERY } else { WAIT };
        let m = text(&format!("alice, after the stop, {round}"));
        alice.send(m.clone()).await.unwrap();
        assert_eq!(recv_within(&mut bob, limit).await, m);
        history.push(m);
        let m = binary(&[round; 3]);
        bob.send(m.clone()).await.unwrap();
        assert_eq!(recv_within(&mut alice, limit).await, m);
        history.push(m);
    }
    for node in [cluster.node(0), cluster.node(1)] {
        wait_until_async_within("/healthz is 200 again", RECOVERY, || async {
            healthz(node).await.0 == 200
        })
        .await;
        assert_connected(node).await;
    }
    // Nothing was delivered twice.
    assert_no_more("bob", &mut bob, Duration::from_millis(300)).await;
    assert_no_more("alice", &mut alice, Duration::from_millis(100)).await;
    // A late joiner gets the whole history.
    let mut carol = cluster.node(0).client().join("carol", &ch).await;
    let (uids, frames) = replayed(&mut carol, history.len()).await;
    assert_eq!(uids, sorted(&["alice", "bob"]));
    assert_eq!(frames, history);

    // With every NATS node gone, the nodes say so.
    for i in 0..cluster.nats.size() {
        if cluster.nats.running(i) {
            cluster.nats.stop(i);
        }
    }
    let a = cluster.node(0);
    wait_until_async_within("/healthz reports the lost link", RECOVERY, || async {
        healthz(a).await.0 == 503
    })
    .await;
    let (_, health) = healthz(a).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["cluster"]["connected"], false, "{health}");
    let (_, metrics) = a.admin_get("/metrics").await;
    assert_eq!(sum_of(&metrics, "kanava_cluster_connected"), 0.0);
}

/// Runs `kanava serve ARGS` (listeners on port 0, a fresh data directory), which must exit
/// within 30 s; returns whether it succeeded and its stderr.
async fn serve_until_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kanava"));
    command
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--mles-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--ssh-listen", "127.0.0.1:0"])
        .args(["--debug-me-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("KANAVA_CLUSTER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("spawn kanava");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kanava serve {args:?} still runs after 30 s"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn startup_errors_are_clear() {
    // Nothing listens on a port that was free a moment ago.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (status, stderr) = serve_until_exit(&["--cluster", &url]).await;
    assert!(!status.success(), "started without NATS: {stderr}");
    let address = url.trim_start_matches("nats://");
    assert!(stderr.contains(address), "does not name {url}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let nats = NatsCluster::without_jetstream().await;
    let (status, stderr) = serve_until_exit(&["--cluster", &nats.urls()]).await;
    assert!(!status.success(), "started without JetStream: {stderr}");
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("jetstream") && lower.contains("not enabled"),
        "does not say JetStream is not enabled: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
