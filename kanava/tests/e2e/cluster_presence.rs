//! Reconnects after a node goes: the uids of a node that was killed (`kill -9`) may join another
//! node within two seconds at the default presence interval, those of a node stopped with
//! SIGTERM at once, and a uid held by a live node is still refused elsewhere (1008), however
//! long it stays; one held by a frozen node is refused with 1013 (try again) until its
//! presence stops counting. Every test runs its own 3-server NATS JetStream cluster and kanava nodes
//! with the default presence settings.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster::node;
use crate::nats::NatsCluster;
use crate::support::*;

/// How soon after its node was killed a uid must be admitted on another node.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// Longer than a node's beats may be late before its presence stops counting (1 s), so that a
/// live holder that is wrongly judged dead shows.
const LONGER_THAN_SILENCE: Duration = Duration::from_millis(2500);

/// How a join ended: admitted (the member and its first frame) or closed (code and reason).
enum Joined {
    Admitted(Box<Ws>, Message),
    Closed(CloseCode, String),
}

/// Sends a join header for `uid` in `ch` and waits for the first thing the node sends back: a
/// close (refused) or, since the channel has history, the first replayed frame (admitted).
async fn try_join(client: &Client, uid: &str, ch: &str) -> Joined {
    let header = serde_json::json!({"uid": uid, "channel": ch}).to_string();
    let mut ws = client.send_header(&header).await;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Joined::Closed(frame.code, frame.reason.to_string());
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(first))) => return Joined::Admitted(Box::new(ws), first),
            Ok(other) => panic!("{uid}'s join ended with {other:?}"),
            Err(_) => panic!("{uid}'s join got neither its replay nor a close"),
        }
    }
}

/// Asserts that `uid` is refused in `ch` as a duplicate: 1008 "uid already in channel".
async fn assert_duplicate(client: &Client, uid: &str, ch: &str, when: &str) {
    match try_join(client, uid, ch).await {
        Joined::Closed(code, reason) => {
            assert_eq!(code, CloseCode::Policy, "{uid} {when}: {reason}");
            assert_eq!(reason, "uid already in channel", "{uid} {when}");
        }
        Joined::Admitted(_, first) => {
            panic!(
                "{uid} {when} was admitted (first frame {})",
                describe(&first)
            )
        }
    }
}

/// Joins `uid` until the node admits it, trying again at once after each refusal, which must
/// be a live holder's (1008 "uid already in channel") or that of a holder that does not answer
/// (1013, try again); gives up `limit` after `since`. Returns the member, when it was admitted
/// and the codes of the refusals before.
async fn join_when_free(
    client: &Client,
    uid: &str,
    ch: &str,
    since: Instant,
    limit: Duration,
) -> (Ws, Instant, Vec<CloseCode>) {
    let mut refusals = Vec::new();
    loop {
        match try_join(client, uid, ch).await {
            Joined::Admitted(ws, _) => return (*ws, Instant::now(), refusals),
            Joined::Closed(code, reason) => {
                let expected = match code {
                    CloseCode::Policy => "uid already in channel",
                    CloseCode::Again => {
                        "uid held by a node that does not answer: try again in a few seconds"
                    }
                    _ => "",
                };
                assert_eq!(reason, expected, "{uid} refused with {code}");
                refusals.push(code);
                assert!(
                    since.elapsed() < limit,
                    "{uid} still refused {:?} later: {refusals:?}",
                    since.elapsed()
                );
            }
        }
    }
}

/// A NATS cluster and two kanava nodes on it, A and B, with the default presence settings;
/// dropped after the nodes.
struct Nodes {
    a: Option<Kanava>,
    b: Kanava,
    _nats: NatsCluster,
}

impl Drop for Nodes {
    /// On a failing test, prints the end of every running node's log.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, node) in [("a", self.a.as_ref()), ("b", Some(&self.b))] {
            if let Some(node) = node {
                let log = node.stderr();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("kanava_mles::connection"))
                    .collect();
                eprintln!(
                    "--- kanava node {name}, last lines of stderr:\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
        }
    }
}

async fn start() -> Nodes {
    let nats = NatsCluster::start().await;
    let urls = nats.urls();
    Nodes {
        a: Some(node(&urls, "a", &[])),
        b: node(&urls, "b", &[]),
        _nats: nats,
    }
}

/// Joins `uids` to `ch` on A, and waits until B refuses the first of them: B has A's presence.
/// Returns A's members.
async fn hold_on_a(nodes: &Nodes, uids: &[&str], ch: &str) -> Vec<Ws> {
    let on_a = nodes.a.as_ref().expect("A runs").client();
    let mut members = Vec::new();
    for uid in uids {
        members.push(on_a.join(uid, ch).await);
    }
    let on_b = nodes.b.client();
    let first = uids[0];
    wait_until_async(&format!("B knows {first} is on A"), || async {
        match try_join(&on_b, first, ch).await {
            Joined::Closed(code, _) => code == CloseCode::Policy,
            Joined::Admitted(_, reply) => {
                panic!("B admitted {first} while A holds it: {}", describe(&reply))
            }
        }
    })
    .await;
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_uids_join_another_node_within_two_seconds() {
    let _heavy = heavy().await;
    let mut nodes = start().await;
    let ch = channel("presence-kill");
    let uids = ["k1", "k2", "k3"];
    let _members = hold_on_a(&nodes, &uids, &ch).await;
    // A bystander on B, there throughout.
    let on_b = nodes.b.client();
    let mut bystander = on_b.join("bystander", &ch).await;

    nodes.a.take().expect("A runs").kill9();
    let killed = Instant::now();
    let mut admitted = Vec::new();
    let mut rejoined = Vec::new();
    for uid in uids {
        let (ws, at, refusals) = join_when_free(&on_b, uid, &ch, killed, AFTER_KILL).await;
        admitted.push((uid, at.duration_since(killed), refusals));
        rejoined.push(ws);
    }
    eprintln!("admitted on B after A was killed (uid, time, refusals before): {admitted:?}");
    for (uid, after, _) in &admitted {
        assert!(
            *after < AFTER_KILL,
            "{uid} admitted {after:?} after the kill"
        );
    }

    // The rejoined members are members: what one sends reaches the bystander.
    let mut first = rejoined.remove(0);
    first.send(text("back on B")).await.unwrap();
    loop {
        let got = recv(&mut bystander).await;
        if got == text("back on B") {
            break;
        }
        assert!(
            matches!(got, Message::Text(_)),
            "the bystander got {}",
            describe(&got)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_nodes_uids_join_another_node_at_once() {
    let _heavy = heavy().await;
    let mut nodes = start().await;
    let ch = channel("presence-stop");
    let uids = ["s1", "s2"];
    let mut members = hold_on_a(&nodes, &uids, &ch).await;
    let on_b = nodes.b.client();

    let a = nodes.a.take().expect("A runs");
    let stopping = tokio::task::spawn_blocking(move || a.terminate());
    // Each member hears A going away (1001) and joins B with its first try.
    for (uid, member) in uids.iter().zip(&mut members) {
        let (code, _) = closed(member).await;
        assert_eq!(code, Some(CloseCode::Away), "{uid} closed by A's stop");
        let told = Instant::now();
        match try_join(&on_b, uid, &ch).await {
            Joined::Admitted(..) => {
                eprintln!("{uid} admitted on B {:?} after A closed it", told.elapsed());
            }
            Joined::Closed(code, reason) => {
                panic!("{uid} refused by B right after A stopped: {code} {reason}")
            }
        }
    }
    assert!(stopping.await.unwrap(), "A exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_held_by_a_live_node_stays_refused_elsewhere() {
    let _heavy = heavy().await;
    let nodes = start().await;
    let ch = channel("presence-live");
    let mut members = hold_on_a(&nodes, &["held"], &ch).await;
    let on_b = nodes.b.client();
    let mut bystander = on_b.join("bystander", &ch).await;
    assert_duplicate(&on_b, "held", &ch, "while A holds it").await;

    // Well past the silence that ends a dead node's presence, the live holder still counts,
    // and it is undisturbed: nothing reaches it but what the bystander sends.
    let quiet = drain_for(&mut members[0], LONGER_THAN_SILENCE).await;
    assert!(
        quiet.is_empty(),
        "the holder got {:?}",
        quiet.iter().map(describe).collect::<Vec<_>>()
    );
    assert_duplicate(&on_b, "held", &ch, "still held by A").await;
    bystander.send(text("hello held")).await.unwrap();
    assert_eq!(recv(&mut members[0]).await, text("hello held"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_nodes_uids_join_another_node_within_two_seconds() {
    let _heavy = heavy().await;
    let mut nodes = start().await;
    let ch = channel("presence-frozen");
    let _members = hold_on_a(&nodes, &["f1"], &ch).await;
    let on_b = nodes.b.client();

    // B judges A by its silence only once it has heard A beat (its log says when).
    wait_until("B hears A's beats", || {
        // "a" in hex, after the log's colour codes.
        let log = nodes.b.stderr();
        log.lines()
            .any(|l| l.contains("hearing a node's beats") && l.ends_with("61"))
    })
    .await;
    // SIGSTOP: A's connections stay open, as those of a host that vanished, so NATS still
    // knows it and only its silence tells.
    let pid = nodes.a.as_ref().expect("A runs").pid() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let frozen = Instant::now();
    let (_f1, at, refusals) = join_when_free(&on_b, "f1", &ch, frozen, AFTER_KILL).await;
    let after = at.duration_since(frozen);
    eprintln!("f1 admitted on B {after:?} after A froze, refused before with {refusals:?}");
    // While A's presence still counts, B cannot tell whether A lives: each refusal is the
    // retryable 1013, never the final-looking 1008 a live holder gets.
    assert!(
        !refusals.is_empty() && refusals.iter().all(|c| *c == CloseCode::Again),
        "refusals while A was frozen: {refusals:?}"
    );
    // Its last beat was at most 250 ms before it froze; 1 s of silence ends its presence.
    assert!(
        after >= Duration::from_millis(700),
        "admitted only {after:?} after A froze: a live-looking holder was dropped"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    nodes.a.take().expect("A runs").kill9();
}
