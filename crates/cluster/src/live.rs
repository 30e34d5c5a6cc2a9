//! Live frames of the channels this node hosts, and only those.
//!
//! Each channel stream republishes every frame it stores on a core NATS subject of its channel
//! (`kanava.live.…`, see [`wire::LIVE_PREFIX`]), with its sequence and that of the channel's
//! previous frame (`Nats-Sequence`, `Nats-Last-Sequence`). A node subscribes to the channels
//! its hub hosts ([`Hosting::host`], before the hub reads the channel's history), so that a
//! node without members in a channel receives none of its frames. Core NATS may lose a
//! message (a reconnect, a slow consumer, a leader that died between storing and republishing),
//! so each channel's follower keeps the last sequence it passed on: a frame whose previous is
//! past it shows a gap, which is fetched from the stream leader first (`read::next_from_leader`);
//! a frame at or before it is a duplicate and dropped; and after [`QUIET`] without frames, and
//! every [`IDLE_CHECK`] after that, the leader is asked for the channel's last sequence, so that
//! a lost last frame is fetched too. Each channel's frames therefore reach the hub once, in
//! stream order, with no gap.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use kanava_core::ChannelName;
use kanava_store::Delivered;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ClusterError;
use crate::read::{Stored, header_pairs, last_sequence, next_from_leader};
use crate::wire::{self, ChannelShards};

/// Silence after the last frame of a channel after which the leader is asked whether a frame
/// was lost.
const QUIET: Duration = Duration::from_secs(2);
/// How often a quiet channel's last sequence is checked with the leader.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// The pause before asking NATS again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// One hosted channel: how many times it is hosted, whether its subscription is in place, and
/// its follower.
struct Hosted {
    count: usize,
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// The channels this node hosts and their followers.
pub(crate) struct Hosting {
    client: async_nats::Client,
    shards: ChannelShards,
    /// The channel streams, by shard.
    streams: Vec<Stream>,
    deliveries: mpsc::Sender<Delivered>,
    /// How long [`Hosting::host`] waits for the subscription.
    timeout: Duration,
    hosted: Mutex<HashMap<ChannelName, Hosted>>,
}

impl Drop for Hosting {
    fn drop(&mut self) {
        let hosted = self
            .hosted
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, hosted) in hosted.drain() {
            hosted.task.abort();
        }
    }
}

impl Hosting {
    /// No channel hosted yet; frames of channels hosted later go to `deliveries`.
    pub(crate) fn new(
        client: async_nats::Client,
        shards: ChannelShards,
        streams: Vec<Stream>,
        deliveries: mpsc::Sender<Delivered>,
        timeout: Duration,
    ) -> Hosting {
        Hosting {
            client,
            shards,
            streams,
            deliveries,
            timeout,
            hosted: Mutex::new(HashMap::new()),
        }
    }

    /// Hosts `channel` once more, starting its follower if it had none; resolves once its
    /// subscription is in place and its last sequence known (or fails after the timeout, the
    /// follower going on trying).
    pub(crate) fn host(
        &self,
        channel: ChannelName,
    ) -> impl Future<Output = Result<(), ClusterError>> + use<> {
        let mut ready = {
            let mut hosted = self.hosted.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = hosted.entry(channel.clone()).or_insert_with(|| {
                let (ready, ready_rx) = watch::channel(false);
                let shard = self.shards.shard_of(&channel) as usize;
                let stream = self.streams.get(shard).unwrap_or(&self.streams[0]).clone();
                let follower = Follower {
                    client: self.client.clone(),
                    stream,
                    shards: self.shards,
                    subject: self.shards.subject(&channel),
                    channel,
                    deliveries: self.deliveries.clone(),
                };
                Hosted {
                    count: 0,
                    ready: ready_rx,
                    task: tokio::spawn(follower.run(ready)),
                }
            });
            entry.count += 1;
            let ready = entry.ready.clone();
            metrics::gauge!("kanava_cluster_hosted_channels").set(hosted.len() as f64);
            ready
        };
        let timeout = self.timeout;
        async move {
            let started = std::time::Instant::now();
            match tokio::time::timeout(timeout, ready.wait_for(|ready| *ready)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(ClusterError::nats(
                    "follow a channel",
                    "the follower stopped",
                )),
                Err(_) => Err(ClusterError::Unavailable {
                    what: "subscribe to a channel's frames",
                    waited: started.elapsed(),
                    source: "no answer from the stream leader".into(),
                }),
            }
        }
    }

    /// Hosts `channel` once less; stops its follower when nothing hosts it any more.
    pub(crate) fn release(&self, channel: &ChannelName) {
        let mut hosted = self.hosted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = hosted.get_mut(channel) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0
                && let Some(entry) = hosted.remove(channel)
            {
                entry.task.abort();
            }
        }
        metrics::gauge!("kanava_cluster_hosted_channels").set(hosted.len() as f64);
    }
}

/// Follows one channel's live subject.
struct Follower {
    client: async_nats::Client,
    /// The channel's stream.
    stream: Stream,
    shards: ChannelShards,
    /// The channel's stored subject.
    subject: String,
    channel: ChannelName,
    deliveries: mpsc::Sender<Delivered>,
}

impl Follower {
    /// Subscribes, learns the channel's last sequence from the leader, says it is `ready`, then
    /// passes on every frame after that one until the hub stops taking them.
    async fn run(self, ready: watch::Sender<bool>) {
        let live = self.shards.live_subject(&self.channel);
        let mut frames = loop {
            match self.client.subscribe(live.clone()).await {
                Ok(subscriber) => break subscriber,
                Err(error) => {
                    tracing::debug!(channel = %self.channel, %error, "subscribing again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        // The server has the subscription once a flush returns: anything stored from then on
        // comes through it (or shows as a gap).
        while let Err(error) = self.client.flush().await {
            tracing::debug!(channel = %self.channel, %error, "flushing again");
            tokio::time::sleep(RETRY).await;
        }
        let mut last = self.leader_last().await;
        let _ = ready.send(true);
        // The subscription may take a moment to reach the server of the stream leader (routes
        // learn interest asynchronously): what is stored meanwhile is checked for soon.
        let mut check = Instant::now() + QUIET;
        loop {
            tokio::select! {
                message = frames.next() => {
                    let Some(message) = message else { return };
                    let pairs = header_pairs(message.headers.as_ref());
                    let Some((seq, previous)) = wire::live_sequences(&pairs) else {
                        tracing::warn!(channel = %self.channel, "dropped a live frame without its sequences");
                        continue;
                    };
                    if seq <= last {
                        continue;
                    }
                    if previous > last && !self.backfill(&mut last, seq).await {
                        return;
                    }
                    let stored = Stored {
                        subject: self.subject.clone().into(),
                        headers: message.headers,
                        payload: message.payload,
                        seq,
                        time_ms: 0,
                    };
                    last = seq;
                    if !self.pass_on(&stored).await {
                        return;
                    }
                    metrics::counter!("kanava_cluster_frames_received_total").increment(1);
                    check = Instant::now() + QUIET;
                }
                _ = tokio::time::sleep_until(check) => {
                    let stored = self.leader_last().await;
                    if stored > last && !self.backfill(&mut last, stored + 1).await {
                        return;
                    }
                    check = Instant::now() + IDLE_CHECK;
                }
                _ = self.deliveries.closed() => return,
            }
        }
    }

    /// The channel's last sequence as the stream leader has it (0 if none), asking until it
    /// answers.
    async fn leader_last(&self) -> u64 {
        loop {
            match last_sequence(&self.stream, &self.subject).await {
                Ok(last) => return last.unwrap_or(0),
                Err(error) => {
                    tracing::debug!(channel = %self.channel, %error, "asking the leader again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Fetches from the leader, and passes on, the channel's frames after `last` and before
    /// `until`, advancing `last`; false once the hub stops taking frames.
    async fn backfill(&self, last: &mut u64, until: u64) -> bool {
        let (from, mut fetched) = (*last + 1, 0u64);
        while *last + 1 < until {
            let stored = match next_from_leader(&self.stream, &self.subject, *last + 1).await {
                Ok(Some(stored)) if stored.seq < until => stored,
                // Nothing more before `until`: evicted or purged meanwhile.
                Ok(_) => break,
                Err(error) => {
                    tracing::debug!(channel = %self.channel, %error, "fetching a missed frame again");
                    if self.deliveries.is_closed() {
                        return false;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            *last = stored.seq;
            if !self.pass_on(&stored).await {
                return false;
            }
            metrics::counter!("kanava_cluster_frames_received_total").increment(1);
            metrics::counter!("kanava_cluster_frames_backfilled_total").increment(1);
            fetched += 1;
        }
        if fetched > 0 {
            tracing::info!(channel = %self.channel, from, until, fetched, "fetched from the stream leader frames the live feed missed");
        }
        true
    }

    /// Decodes a frame and hands it to the hub; false once the hub stops taking frames.
    async fn pass_on(&self, stored: &Stored) -> bool {
        match wire::decode_frame(
            self.shards,
            &self.subject,
            &stored.header_pairs(),
            stored.payload.clone(),
            stored.seq,
        ) {
            Ok(frame) if frame.channel == self.channel => self.deliveries.send(frame).await.is_ok(),
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(channel = %self.channel, seq = stored.seq, %error, "dropped a stored frame");
                true
            }
        }
    }
}
