//! Presence: who is in which channel on which node, through the `kanava_presence` bucket.
//!
//! Each node writes `p.<channel token>.<hex node>` = its members of that channel whenever they
//! change, and rewrites all of its announcements every heartbeat; the bucket forgets a key three
//! heartbeats after its last write. Every node watches the bucket. nats-server 2.9.10 tells no
//! watcher when a key expires, so a node also forgets, by itself, announcements it has not seen
//! refreshed for three heartbeats: a node that crashed or lost its link drops out within that
//! time (a watch that had to be recreated may see a dead node's last write again, which can
//! delay that by up to three more heartbeats).
//!
//! Each node also writes `n.<hex node>` every heartbeat, so that its watch always has something
//! to say: a watch silent for three heartbeats has lost its consumer (its server died, and
//! async-nats has not noticed yet) and is recreated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use kanava_core::ChannelName;
use kanava_store::{Present, RemotePresence};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::wire::{self, PresenceRecord, hex};

/// This node's announcements, by channel (never empty).
pub(crate) type Local = Arc<Mutex<HashMap<ChannelName, Vec<Present>>>>;

fn key(channel: &ChannelName, node_hex: &str) -> String {
    format!("p.{}.{node_hex}", wire::channel_token(channel))
}

/// Writes this node's announcements: each change (by channel, in the order they came) and all
/// of them every `heartbeat`.
pub(crate) async fn write(
    bucket: kv::Store,
    node: Arc<str>,
    local: Local,
    mut changes: mpsc::UnboundedReceiver<ChannelName>,
    heartbeat: Duration,
) {
    let node_hex = hex(node.as_bytes());
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let channels: Vec<ChannelName> = tokio::select! {
            changed = changes.recv() => match changed {
                Some(channel) => vec![channel],
                None => break,
            },
            _ = ticks.tick() => {
                let alive = bucket.put(format!("n.{node_hex}"), Bytes::from(node.to_string()));
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

/// One other node's announcement, as last seen.
struct Seen {
    channel: ChannelName,
    members: Vec<Present>,
    at: Instant,
}

/// The other nodes' announcements by key, merged into what [`kanava_store::Bus`] shows.
struct Remote {
    own_suffix: String,
    seen: HashMap<String, Seen>,
    ttl: Duration,
}

impl Remote {
    /// Applies one watched entry; says whether the merged view changed.
    fn apply(&mut self, entry: kv::Entry) -> bool {
        if !entry.key.starts_with("p.") || entry.key.ends_with(&self.own_suffix) {
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
            channel: record.channel,
            members,
            at: Instant::now(),
        };
        self.seen.insert(entry.key, fresh);
        changed
    }

    /// Forgets announcements not refreshed within the time to live; says whether any went.
    fn expire(&mut self) -> bool {
        let before = self.seen.len();
        let ttl = self.ttl;
        self.seen.retain(|_, s| s.at.elapsed() < ttl);
        self.seen.len() != before
    }

    fn merged(&self) -> RemotePresence {
        let mut merged: RemotePresence = HashMap::new();
        for seen in self.seen.values() {
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
    node: Arc<str>,
    heartbeat: Duration,
    view: watch::Sender<Arc<RemotePresence>>,
) {
    let mut remote = Remote {
        own_suffix: format!(".{}", hex(node.as_bytes())),
        seen: HashMap::new(),
        ttl: heartbeat * 3,
    };
    let mut sweeps = tokio::time::interval(heartbeat / 4);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching: Option<kv::Watch> = None;
    let mut retry_at = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut last_event = Instant::now();
    while !view.is_closed() {
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
    }
    tracing::debug!("presence watch stopped");
}

/// The next watched entry; never, while there is no watch.
async fn next(watching: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watching {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}
