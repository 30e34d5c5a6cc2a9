//! Presence: who is in which channel on which node, through the `kanava_presence` bucket.
//!
//! Each node writes `p.<channel token>.<hex node>` = its members of that channel whenever they
//! change, and rewrites all of its announcements every heartbeat; the bucket forgets a key three
//! heartbeats after its last write. Every node watches the bucket. nats-server 2.9.10 tells no
//! watcher when a key expires, so a node also forgets, by itself, announcements it has not seen
//! refreshed for three heartbeats.
//!
//! That expiry is a fallback. So that the users of a node that died may join another node at
//! once (a uid present elsewhere is refused), every node also says it is alive on core NATS,
//! `kanava.alive.<hex node>`, every [`BEAT`] (an empty message: nothing stored, nothing
//! replicated), and every node listens to all of them. The announcements of a node that has been
//! heard beating and has then been silent for [`SILENCE`] stop counting at once, and count again
//! as soon as it beats again. A node that is not hearing its own beats (its link is down) judges
//! nobody by silence, and a node never heard beating (one that died before this node started)
//! is judged by the expiry alone.
//!
//! A join refused only because another node holds the uid does not even wait for the silence:
//! the hub asks for a recheck ([`Recheck`]), and the nodes announcing the uid are probed with a
//! core NATS request on `kanava.probe.<hex node>`, which each node answers while it beats. NATS
//! answers "no responders" at once for a node whose connection it has closed (a killed process's
//! socket is closed by its kernel), and such a node stops counting before the join is decided.
//! A probe that is not answered in time decides nothing: the beats do.
//!
//! A graceful stop deletes the node's announcements (the hub
//! withdraws them, and [`Change::Flush`] waits until they are written) before its members are
//! closed.
//!
//! Each node also writes `n.<hex node>` every heartbeat, so that its watch always has something
//! to say: a watch silent for three heartbeats has lost its consumer (its server died, and
//! async-nats has not noticed yet) and is recreated.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::{Client, RequestErrorKind, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use kanava_core::{ChannelName, Uid};
use kanava_store::{Present, RemotePresence};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::wire::{self, PresenceRecord, hex};

/// This node's announcements, by channel (never empty).
pub(crate) type Local = Arc<Mutex<HashMap<ChannelName, Vec<Present>>>>;

/// How often a node says it is alive: 4 empty core NATS messages a second from each node, each
/// delivered to every node.
pub(crate) const BEAT: Duration = Duration::from_millis(250);

/// How long a node heard beating may go unheard before its announcements stop counting: four
/// beats, so that one late or lost beat is no death.
const SILENCE: Duration = Duration::from_secs(1);

/// The subjects of the beats, followed by the hex of the node's name.
const ALIVE_PREFIX: &str = "kanava.alive.";

/// The subjects a node answers probes on, followed by the hex of its name: a request there that
/// NATS says has no responders is for a node that is gone.
const PROBE_PREFIX: &str = "kanava.probe.";

/// How the value of a node's `n.<hex node>` key ends when the node answers probes (a node of an
/// earlier version writes its bare name, and is never probed).
const ANSWERS_PROBES: &str = "\nanswers probes";

/// How long a probe waits for its node's answer; a node that does not answer in time (but that
/// NATS still knows) still counts, until its beats say otherwise.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How many nodes' beats are followed at most (a cluster has a handful).
const MAX_NODES: usize = 1024;

/// How many joins may wait for a recheck at once; more are refused without one.
pub(crate) const RECHECKS: usize = 64;

/// What the presence writer is asked to do, in order.
pub(crate) enum Change {
    /// Write (or delete, when it has nobody here) this node's announcement of the channel.
    Channel(ChannelName),
    /// Answer once every change asked before has been written (or has failed).
    Flush(oneshot::Sender<()>),
}

fn key(channel: &ChannelName, node_hex: &str) -> String {
    format!("p.{}.{node_hex}", wire::channel_token(channel))
}

/// Writes this node's announcements: each change (by channel, in the order they came) and all
/// of them every `heartbeat`.
pub(crate) async fn write(
    bucket: kv::Store,
    node: Arc<str>,
    local: Local,
    mut changes: mpsc::UnboundedReceiver<Change>,
    heartbeat: Duration,
) {
    let node_hex = hex(node.as_bytes());
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let channels: Vec<ChannelName> = tokio::select! {
            changed = changes.recv() => match changed {
                Some(Change::Channel(channel)) => vec![channel],
                Some(Change::Flush(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => break,
            },
            _ = ticks.tick() => {
                let alive = bucket.put(format!("n.{node_hex}"), Bytes::from(format!("{node}{ANSWERS_PROBES}")));
                if let Err(error) = alive.await {
                    tracing::warn!(%error, "could not refresh this node's presence");
                }
                match local.lock() {
                    Ok(local) => local.keys().cloned().collect(),
                    Err(_) => break,
                }
            }
        };
        for channel in channels {
            let members = local.lock().ok().and_then(|l| l.get(&channel).cloned());
            let key = key(&channel, &node_hex);
            let outcome = match members {
                Some(members) => {
                    let record = PresenceRecord {
                        channel: channel.clone(),
                        node: node.to_string(),
                        members,
                    };
                    let value = wire::encode_presence(&record).into();
                    bucket
                        .put(&key, value)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                None => bucket.delete(&key).await.map_err(|e| e.to_string()),
            };
            if let Err(error) = outcome {
                tracing::warn!(%channel, %error, "could not announce presence; retrying at the next heartbeat");
            }
        }
    }
    tracing::debug!("presence writer stopped");
}

/// Says this node is alive every [`BEAT`], on its own subject, and answers the other nodes'
/// probes, until aborted. It beats only while it can answer probes: a node that beats is one
/// whose probe subject has a subscriber.
pub(crate) async fn beat(client: Client, node: Arc<str>, local: Local) {
    let node_hex = hex(node.as_bytes());
    let subject = format!("{ALIVE_PREFIX}{node_hex}");
    let mut ticks = tokio::time::interval(BEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes = loop {
        match client.subscribe(format!("{PROBE_PREFIX}{node_hex}")).await {
            Ok(probes) => break probes,
            Err(error) => {
                tracing::warn!(%error, "cannot answer presence probes; trying again");
                ticks.tick().await;
            }
        }
    };
    tracing::debug!(node = %node_hex, "beating and answering presence probes");
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = client.publish(subject.clone(), Bytes::new()).await {
                    tracing::debug!(%error, "could not say this node is alive");
                }
            }
            probe = probes.next() => match probe.and_then(|probe| Some((probe.reply?, probe.payload))) {
                Some((reply, question)) => {
                    let answer = if holds(&local, &question) {
                        Bytes::new()
                    } else {
                        Bytes::from_static(RELEASED)
                    };
                    if let Err(error) = client.publish(reply, answer).await {
                        tracing::debug!(%error, "could not answer a presence probe");
                    }
                }
                None => tracing::debug!("a presence probe without a reply subject"),
            },
        }
    }
}

/// A join's request to check that the nodes announcing `uid` in `channel` are alive; `done` is
/// answered once the view shows the outcome, with whether some holder did not answer its probe
/// in time (alive to NATS, but frozen or cut off: its presence stops counting once its beats
/// have been missing for a second).
pub(crate) struct Recheck {
    pub(crate) channel: ChannelName,
    pub(crate) uid: Uid,
    pub(crate) done: oneshot::Sender<bool>,
}

/// What probing some nodes found: those that nobody answers for (gone from NATS), those that
/// answered that they no longer hold the uid in the channel (their announcement is stale: one
/// not yet rewritten, or not writable while JetStream has no quorum), and whether some other did
/// not answer in time.
struct Verdict {
    gone: Vec<String>,
    released: Vec<String>,
    channel: ChannelName,
    uid: Uid,
    unanswered: bool,
    done: oneshot::Sender<bool>,
}

/// What a node answers a probe for a uid it no longer holds in the channel; any other answer
/// (an empty one from a node that predates it) means alive and holding.
const RELEASED: &[u8] = b"released";

/// A probe's question: the channel and the uid, in hex, space-separated.
fn probe_question(channel: &ChannelName, uid: &Uid) -> Bytes {
    Bytes::from(format!(
        "{} {}",
        hex(channel.as_str().as_bytes()),
        hex(uid.as_str().as_bytes())
    ))
}

/// Whether this node holds the uid the probe `question` asks about, in its channel; a question
/// that cannot be read is answered as held.
fn holds(local: &Local, question: &[u8]) -> bool {
    let Some((channel, uid)) = std::str::from_utf8(question)
        .ok()
        .and_then(|q| q.split_once(' '))
    else {
        return true;
    };
    let local = local.lock().unwrap_or_else(|e| e.into_inner());
    local.iter().any(|(name, members)| {
        hex(name.as_str().as_bytes()) == channel
            && members
                .iter()
                .any(|present| hex(present.uid.as_str().as_bytes()) == uid)
    })
}

/// Probes the nodes in `nodes` (hex names), all at once; sends the verdict to the watch.
async fn probe(
    client: Client,
    nodes: Vec<String>,
    recheck: Recheck,
    verdicts: mpsc::UnboundedSender<Verdict>,
) {
    let question = probe_question(&recheck.channel, &recheck.uid);
    let probes = nodes.into_iter().map(|node_hex| {
        let client = client.clone();
        let question = question.clone();
        async move {
            let request = async_nats::Request::new()
                .payload(question)
                .timeout(Some(PROBE_TIMEOUT));
            let subject = format!("{PROBE_PREFIX}{node_hex}");
            match client.send_request(subject, request).await {
                Err(error) if error.kind() == RequestErrorKind::NoResponders => {
                    tracing::info!(node = %node_hex, "a node holding a uid is gone from NATS; its presence no longer counts");
                    Some(Probed::Gone(node_hex))
                }
                Err(error) => {
                    tracing::debug!(node = %node_hex, %error, "a presence probe got no answer; the node still counts");
                    Some(Probed::Unanswered)
                }
                Ok(answer) if &answer.payload[..] == RELEASED => {
                    tracing::info!(node = %node_hex, "a node announcing a uid no longer holds it");
                    Some(Probed::Released(node_hex))
                }
                Ok(_) => None,
            }
        }
    });
    let (mut gone, mut released, mut unanswered) = (Vec::new(), Vec::new(), false);
    for outcome in futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
    {
        match outcome {
            Probed::Gone(node_hex) => gone.push(node_hex),
            Probed::Released(node_hex) => released.push(node_hex),
            Probed::Unanswered => unanswered = true,
        }
    }
    let _ = verdicts.send(Verdict {
        gone,
        released,
        channel: recheck.channel,
        uid: recheck.uid,
        unanswered,
        done: recheck.done,
    });
}

/// What probing one node found, when it is news.
enum Probed {
    /// NATS has no connection for it.
    Gone(String),
    /// It answered that it no longer holds the uid.
    Released(String),
    /// It did not answer in time.
    Unanswered,
}

/// One other node's announcement, as last seen.
struct Seen {
    /// The hex of the announcing node's name, as in its key and its beats.
    node_hex: String,
    channel: ChannelName,
    members: Vec<Present>,
    at: Instant,
}

/// The other nodes' announcements by key, merged into what [`kanava_store::Bus`] shows.
struct Remote {
    own_hex: String,
    own_suffix: String,
    seen: HashMap<String, Seen>,
    ttl: Duration,
    /// When each node (this one too) was last heard beating, by the hex of its name.
    beats: HashMap<String, Instant>,
    /// The nodes whose announcements do not count now: heard beating, then silent, or gone.
    silent: BTreeSet<String>,
    /// The nodes that say (in their `n.<hex node>` key) they answer probes, and when they last
    /// said so: those probed even if their beats do not reach this node.
    probed: HashMap<String, Instant>,
    /// The nodes NATS said were gone (a probe had no responders), and when; a beat heard from
    /// one later brings it back.
    gone: HashMap<String, Instant>,
}

impl Remote {
    /// Applies one watched entry; says whether the merged view changed.
    fn apply(&mut self, entry: kv::Entry) -> bool {
        if entry.key.ends_with(&self.own_suffix) {
            return false;
        }
        if let Some(node_hex) = entry.key.strip_prefix("n.") {
            if entry.operation == Operation::Put && entry.value.ends_with(ANSWERS_PROBES.as_bytes())
            {
                self.probed.insert(node_hex.to_owned(), Instant::now());
                // A node found gone that writes again has come back (a write well after the
                // verdict: one written before may arrive a little after).
                if self
                    .gone
                    .get(node_hex)
                    .is_some_and(|since| since.elapsed() >= SILENCE)
                {
                    self.gone.remove(node_hex);
                }
            } else {
                self.probed.remove(node_hex);
            }
            return self.judge();
        }
        if !entry.key.starts_with("p.") {
            return false;
        }
        if entry.operation != Operation::Put {
            return self.seen.remove(&entry.key).is_some();
        }
        let record = match wire::decode_presence(&entry.value) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(key = %entry.key, %error, "ignored a presence announcement");
                return false;
            }
        };
        let node_hex = hex(record.node.as_bytes());
        if entry.key != key(&record.channel, &node_hex) {
            tracing::warn!(key = %entry.key, "ignored a presence announcement under a foreign key");
            return false;
        }
        let mut members = record.members;
        members.sort();
        let changed = self
            .seen
            .get(&entry.key)
            .is_none_or(|old| old.members != members || old.channel != record.channel);
        let fresh = Seen {
            node_hex,
            channel: record.channel,
            members,
            at: Instant::now(),
        };
        self.seen.insert(entry.key, fresh);
        changed
    }

    /// Notes a beat on `subject`; says whether the merged view changed (a silent node is back).
    fn heard(&mut self, subject: &str) -> bool {
        let Some(node_hex) = subject.strip_prefix(ALIVE_PREFIX) else {
            return false;
        };
        // Beats sent before a node was found gone are all taken in before the verdict (see
        // `watch`): one heard after it is from a node that is back.
        self.gone.remove(node_hex);
        if let Some(at) = self.beats.get_mut(node_hex) {
            *at = Instant::now();
        } else if self.beats.len() >= MAX_NODES {
            tracing::debug!(node = %node_hex, "too many nodes beating; ignored one");
        } else {
            tracing::debug!(node = %node_hex, "hearing a node's beats");
            self.beats.insert(node_hex.to_owned(), Instant::now());
        }
        self.judge()
    }

    /// Forgets announcements not refreshed within the time to live, and beats older than it;
    /// says whether the merged view changed.
    fn expire(&mut self) -> bool {
        let before = self.seen.len();
        let ttl = self.ttl;
        self.seen.retain(|_, s| s.at.elapsed() < ttl);
        self.beats.retain(|_, at| at.elapsed() < ttl);
        self.gone.retain(|_, since| since.elapsed() < ttl);
        self.probed.retain(|_, at| at.elapsed() < ttl);
        let judged = self.judge();
        judged || self.seen.len() != before
    }

    /// Decides again which nodes are silent; says whether that changed.
    fn judge(&mut self) -> bool {
        let hearing_self = self
            .beats
            .get(&self.own_hex)
            .is_some_and(|at| at.elapsed() < SILENCE);
        let mut silent: BTreeSet<String> = self.gone.keys().cloned().collect();
        if hearing_self {
            let unheard = self.beats.iter().filter(|(_, at)| at.elapsed() >= SILENCE);
            silent.extend(unheard.map(|(node_hex, _)| node_hex.clone()));
        }
        if silent == self.silent {
            return false;
        }
        for node_hex in silent.difference(&self.silent) {
            tracing::info!(node = %node_hex, "a node went silent; its presence no longer counts");
        }
        self.silent = silent;
        true
    }

    /// The nodes worth probing for `uid` in `channel`: those counted as holding it that answer
    /// probes while alive (heard beating, or saying so).
    fn holders(&self, channel: &ChannelName, uid: &Uid) -> Vec<String> {
        let mut holders: Vec<String> = self
            .seen
            .values()
            .filter(|seen| &seen.channel == channel && !self.silent.contains(&seen.node_hex))
            .filter(|seen| {
                self.beats.contains_key(&seen.node_hex) || self.probed.contains_key(&seen.node_hex)
            })
            .filter(|seen| seen.members.iter().any(|present| &present.uid == uid))
            .map(|seen| seen.node_hex.clone())
            .collect();
        holders.sort();
        holders.dedup();
        holders
    }

    /// Takes a probe's verdict; says whether the merged view changed.
    fn take(&mut self, verdict: &Verdict) -> bool {
        for node_hex in &verdict.gone {
            self.gone.insert(node_hex.clone(), Instant::now());
        }
        // Until the releasing node's next announcement of the channel says otherwise.
        let mut changed = false;
        for seen in self.seen.values_mut() {
            if seen.channel == verdict.channel && verdict.released.contains(&seen.node_hex) {
                let before = seen.members.len();
                seen.members.retain(|present| present.uid != verdict.uid);
                changed |= seen.members.len() != before;
            }
        }
        self.judge() || changed
    }

    fn merged(&self) -> RemotePresence {
        let mut merged: RemotePresence = HashMap::new();
        let counted = self
            .seen
            .values()
            .filter(|seen| !self.silent.contains(&seen.node_hex));
        for seen in counted {
            merged
                .entry(seen.channel.clone())
                .or_default()
                .extend(seen.members.iter().cloned());
        }
        for members in merged.values_mut() {
            members.sort();
            members.dedup();
        }
        merged
    }
}

/// Watches the bucket and keeps `view` up to date with the other nodes' announcements, until
/// every receiver of `view` is gone.
pub(crate) async fn watch(
    bucket: kv::Store,
    client: Client,
    node: Arc<str>,
    heartbeat: Duration,
    view: watch::Sender<Arc<RemotePresence>>,
    mut rechecks: mpsc::Receiver<Recheck>,
) {
    let own_hex = hex(node.as_bytes());
    let mut remote = Remote {
        own_suffix: format!(".{own_hex}"),
        own_hex,
        seen: HashMap::new(),
        ttl: heartbeat * 3,
        beats: HashMap::new(),
        silent: BTreeSet::new(),
        probed: HashMap::new(),
        gone: HashMap::new(),
    };
    let (verdicts, mut verdicts_in) = mpsc::unbounded_channel();
    let mut answered: Vec<(oneshot::Sender<bool>, bool)> = Vec::new();
    let mut beats: Option<Subscriber> = None;
    let mut sweeps = tokio::time::interval((heartbeat / 4).min(BEAT));
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching: Option<kv::Watch> = None;
    let mut retry_at = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut last_event = Instant::now();
    while !view.is_closed() {
        if beats.is_none() {
            match client.subscribe(format!("{ALIVE_PREFIX}*")).await {
                Ok(subscriber) => beats = Some(subscriber),
                Err(error) => {
                    tracing::warn!(%error, "cannot hear the nodes' beats; judging presence by its expiry alone");
                }
            }
        }
        if watching.is_none() && Instant::now() >= retry_at {
            // With history: the current announcements first, then every change.
            match bucket.watch_with_history(">").await {
                Ok(watch) => {
                    watching = Some(watch);
                    last_event = Instant::now();
                    delay = Duration::from_millis(100);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot watch presence; trying again");
                    retry_at = Instant::now() + delay;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        let changed = tokio::select! {
            entry = next(&mut watching) => match entry {
                Some(Ok(entry)) => {
                    last_event = Instant::now();
                    remote.apply(entry)
                }
                failed => {
                    if let Some(Err(error)) = failed {
                        tracing::warn!(%error, "presence watch failed; watching again");
                    }
                    watching = None;
                    retry_at = Instant::now() + delay;
                    false
                }
            },
            Some(recheck) = rechecks.recv() => {
                let holders = remote.holders(&recheck.channel, &recheck.uid);
                tracing::debug!(channel = %recheck.channel, uid = %recheck.uid, holders = holders.len(), nodes_heard = remote.beats.len(), "presence recheck");
                if holders.is_empty() {
                    answered.push((recheck.done, false));
                } else {
                    let verdicts = verdicts.clone();
                    tokio::spawn(probe(client.clone(), holders, recheck, verdicts));
                }
                false
            }
            Some(verdict) = verdicts_in.recv() => {
                // NATS sent every beat of a node before it could say the node has no
                // subscription left, and the client queued them before the probe's answer:
                // take them in first, so that only a beat sent after the verdict clears it.
                let mut changed = false;
                while let Some(Some(message)) = beats.as_mut().and_then(|b| b.next().now_or_never()) {
                    changed |= remote.heard(message.subject.as_str());
                }
                changed |= remote.take(&verdict);
                answered.push((verdict.done, verdict.unanswered));
                changed
            }
            beat = next_beat(&mut beats) => match beat {
                Some(message) => remote.heard(message.subject.as_str()),
                None => {
                    beats = None;
                    false
                }
            },
            _ = sweeps.tick() => {
                if watching.is_some() && last_event.elapsed() > remote.ttl {
                    tracing::warn!("presence watch went silent; watching again");
                    watching = None;
                }
                remote.expire()
            }
        };
        if changed {
            view.send_replace(Arc::new(remote.merged()));
        }
        for (done, unanswered) in answered.drain(..) {
            let _ = done.send(unanswered);
        }
    }
    tracing::debug!("presence watch stopped");
}

/// The next beat heard; never, while there is no subscription.
async fn next_beat(beats: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    match beats {
        Some(beats) => beats.next().await,
        None => std::future::pending().await,
    }
}

/// The next watched entry; never, while there is no watch.
async fn next(watching: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watching {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}
