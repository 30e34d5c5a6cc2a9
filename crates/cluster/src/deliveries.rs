//! The node-wide consumers of a stream: every stored channel frame, of every channel and from
//! every node, in stream order, for the hub to relay to its own members; and every private
//! message other nodes store, for the chat sessions here.
//!
//! An ordered consumer lives on one server and recreates itself when that server goes away, but
//! async-nats gives up on some failures and, after one, restarts from the stream's first
//! message when nothing had been delivered yet. So this task keeps its own position (the next
//! sequence it owes) and, whenever the consumer fails, ends or hands back something older,
//! creates a new one starting at that position: no sequence is delivered twice, and none is
//! skipped. (A node whose consumer falls more than the history's `max_entries` frames behind in
//! one channel cannot get the ones the stream has evicted meanwhile: they are gone from the
//! history too.)

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use kanava_core::PrivateMessage;
use kanava_store::Delivered;
use tokio::sync::mpsc;

use crate::ClusterError;
use crate::wire::{self, CHANNEL_PREFIX, PRIVATE_PREFIX};

/// Frames decoded ahead of the hub.
pub(crate) const BUFFER: usize = 1024;
/// The longest pull an ordered consumer waits, which also sets its idle heartbeat (half of it).
pub(crate) const MAX_PULL: Duration = Duration::from_secs(4);
/// Silence after which the stream is asked whether frames are waiting: an ordered consumer whose
/// server died can stay silent for a long time before async-nats notices (observed: over 30 s
/// after a node of three was killed).
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// Why following the stream stopped.
enum Stop {
    /// The hub dropped its receiver: stop for good.
    Closed,
    /// The consumer failed; start a new one.
    Failed(ClusterError),
}

/// What a follower reads and how it turns messages into items.
struct Follower<T> {
    /// What it follows, for logs and errors.
    what: &'static str,
    /// The subjects it reads.
    filter: String,
    /// Turns a stored message into an item: `Ok(None)` skips it, `Err` drops it with a warning.
    decode: fn(&async_nats::jetstream::Message, u64) -> Result<Option<T>, String>,
    /// Whether it reports its backlog as `kanava_cluster_consumer_lag`.
    reports_lag: bool,
}

/// Follows the channel stream from sequence `next` on, sending every frame to `deliveries`
/// until the receiver is dropped.
pub(crate) async fn run(stream: Stream, next: u64, deliveries: mpsc::Sender<Delivered>) {
    let follower = Follower {
        what: "channel frames",
        filter: format!("{CHANNEL_PREFIX}>"),
        decode: |message, seq| {
            let pairs = header_pairs(message.headers.as_ref());
            wire::decode_frame(
                message.subject.as_str(),
                &pairs,
                message.payload.clone(),
                seq,
            )
            .map(Some)
            .map_err(|error| error.to_string())
        },
        reports_lag: true,
    };
    follower.run(stream, next, deliveries).await;
}

/// Follows the private-message stream from sequence `next` on, sending every message stored by
/// another node than `node` for a recipient it found connected (not marked unread: those wait
/// for the recipient's next login) to `messages` until the receiver is dropped.
pub(crate) async fn run_private(
    stream: Stream,
    next: u64,
    node: std::sync::Arc<str>,
    messages: mpsc::Sender<PrivateMessage>,
) {
    let follower = Follower {
        what: "private messages",
        filter: format!("{PRIVATE_PREFIX}>"),
        decode: |message, seq| {
            let pairs = header_pairs(message.headers.as_ref());
            if pairs.contains(&(wire::UNREAD_HEADER, "1")) {
                return Ok(None);
            }
            let origin = pairs
                .iter()
                .find(|(name, _)| *name == wire::ORIGIN_HEADER)
                .map(|(_, value)| (*value).to_owned());
            wire::decode_private(&message.payload, seq)
                .map(|pm| Some((origin, pm)))
                .map_err(|error| error.to_string())
        },
        reports_lag: false,
    };
    let (tx, mut rx) = mpsc::channel::<(Option<String>, PrivateMessage)>(BUFFER);
    let forward = async move {
        while let Some((origin, pm)) = rx.recv().await {
            if origin.as_deref() != Some(&*node) && messages.send(pm).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(follower.run(stream, next, tx), forward);
}

impl<T> Follower<T> {
    async fn run(&self, stream: Stream, mut next: u64, items: mpsc::Sender<T>) {
        let mut delay = Duration::from_millis(100);
        loop {
            let from = next;
            match self.follow(&stream, &mut next, &items).await {
                Stop::Closed => break,
                Stop::Failed(error) => {
                    if next > from {
                        delay = Duration::from_millis(100);
                    }
                    tracing::warn!(what = self.what, %error, next, "cluster consumer failed; starting a new one");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::debug!(what = self.what, "cluster consumer stopped");
    }

    async fn follow(&self, stream: &Stream, next: &mut u64, items: &mpsc::Sender<T>) -> Stop {
        let stored = match stream.get_info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => return Stop::Failed(ClusterError::nats("read the stream's state", e)),
        };
        let consumer = match stream
            .create_consumer(OrderedConfig {
                filter_subject: self.filter.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: *next,
                },
                max_expires: MAX_PULL,
                ..Default::default()
            })
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => return Stop::Failed(ClusterError::nats("create the delivery consumer", e)),
        };
        if consumer.cached_info().num_pending == 0 {
            // Nothing from `next` to `stored` is left (purged or evicted): the stall check below
            // must not wait for it.
            *next = (*next).max(stored + 1);
        }
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => {
                return Stop::Failed(ClusterError::nats("pull from the delivery consumer", e));
            }
        };
        loop {
            let message = match tokio::time::timeout(STALL, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => {
                    return Stop::Failed(ClusterError::nats("delivery consumer", e));
                }
                Ok(None) => {
                    return Stop::Failed(ClusterError::nats(
                        "delivery consumer",
                        "the message stream ended",
                    ));
                }
                Err(_) => match stream.get_info().await {
                    Ok(info) if info.state.last_sequence < *next => continue,
                    Ok(info) => {
                        return Stop::Failed(ClusterError::nats(
                            "delivery consumer",
                            format!(
                                "silent while frames up to {} are stored",
                                info.state.last_sequence
                            ),
                        ));
                    }
                    Err(e) => return Stop::Failed(ClusterError::nats("delivery consumer", e)),
                },
            };
            let (seq, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(e) => return Stop::Failed(ClusterError::nats("delivery metadata", e)),
            };
            if seq < *next {
                return Stop::Failed(ClusterError::nats(
                    "delivery consumer",
                    format!("restarted at sequence {seq}, before {next}"),
                ));
            }
            if self.reports_lag {
                metrics::gauge!("kanava_cluster_consumer_lag").set(pending as f64);
            }
            match (self.decode)(&message, seq) {
                Ok(Some(item)) => {
                    if items.send(item).await.is_err() {
                        return Stop::Closed;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(what = self.what, seq, subject = %message.subject, %error, "dropped a stored message")
                }
            }
            *next = seq + 1;
        }
    }
}

/// A message's headers as (name, value) pairs, for the pure decoders.
pub(crate) fn header_pairs(headers: Option<&async_nats::HeaderMap>) -> Vec<(&str, &str)> {
    headers
        .into_iter()
        .flat_map(|map| map.iter())
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_ref(), v.as_str())))
        .collect()
}
