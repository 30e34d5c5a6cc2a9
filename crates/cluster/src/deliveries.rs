//! Following a stream with consumers: every private message other nodes store, for the chat
//! sessions here; a debug-me session followed from another node uses the same [`Follower`]
//! (see `sessions.rs`). (Channel frames reach a node through `live.rs`, for the channels it
//! hosts only.)
//!
//! An ordered consumer lives on one server and recreates itself when that server goes away, but
//! async-nats gives up on some failures and, after one, restarts from the stream's first
//! message when nothing had been delivered yet. So a [`Follower`] keeps its own position (the
//! next sequence it owes) and, whenever the consumer fails, ends, hands back something older or
//! goes silent while the stream holds messages it owes (an ordered consumer whose server died
//! can stay silent for a long time), creates a new one starting at that position: no sequence
//! is delivered twice, and none is skipped. A new consumer that reports nothing pending while
//! the leader holds messages from that position on is served by a lagging replica: the
//! follower then fetches them from the leader (see [`crate::read`]) rather than skip them.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use kanava_core::PrivateMessage;
use tokio::sync::mpsc;

use crate::ClusterError;
use crate::read::{
    MAX_PULL, STALL, Stored, deliver_from, last_sequence, last_stored, next_from_leader,
};
use crate::wire::{self, PRIVATE_PREFIX};

/// Frames decoded ahead of the hub.
pub(crate) const BUFFER: usize = 1024;

/// Why one consumer stopped.
enum Stop {
    /// The receiver was dropped, or the last item was delivered: stop for good.
    Done,
    /// What a lagging consumer lacked was fetched from the leader: start a new one at once.
    CaughtUp,
    /// The consumer failed; start a new one.
    Failed(ClusterError),
}

/// What a follower makes of one stored message.
pub(crate) enum Decoded<T> {
    /// Nothing to pass on.
    Skip,
    /// An item to pass on.
    Item(T),
    /// The last item: pass it on and stop following.
    Last(T),
}

/// Where a follower learns the last sequence stored under its filter, to tell a consumer
/// that is merely idle from one that went silent while it owes messages.
pub(crate) enum Scope {
    /// The filter covers the whole stream: the stream's state says (one cheap request).
    Stream,
    /// The filter is one subject of a shared stream: its last message says.
    Subject,
}

/// How a follower turns a stored message into an item: `Err` drops it with a warning.
pub(crate) type Decode<T> = Box<dyn Fn(&Stored) -> Result<Decoded<T>, String> + Send + Sync>;

/// What a follower reads and how it turns messages into items.
pub(crate) struct Follower<T> {
    /// What it follows, for logs.
    pub(crate) what: &'static str,
    /// The subjects it reads.
    pub(crate) filter: String,
    /// How much of the stream `filter` covers.
    pub(crate) scope: Scope,
    /// Turns a stored message into an item.
    pub(crate) decode: Decode<T>,
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
        scope: Scope::Stream,
        decode: Box::new(|stored: &Stored| {
            let pairs = stored.header_pairs();
            if pairs.contains(&(wire::UNREAD_HEADER, "1")) {
                return Ok(Decoded::Skip);
            }
            let origin = pairs
                .iter()
                .find(|(name, _)| *name == wire::ORIGIN_HEADER)
                .map(|(_, value)| (*value).to_owned());
            wire::decode_private(&stored.payload, stored.seq)
                .map(|pm| Decoded::Item((origin, pm)))
                .map_err(|error| error.to_string())
        }),
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
    /// Follows `stream` from sequence `next` on with one ordered consumer after another, each
    /// starting where the last one stopped, sending every item to `items` until the receiver
    /// is dropped or the last item is sent.
    pub(crate) async fn run(&self, stream: Stream, mut next: u64, items: mpsc::Sender<T>) {
        let mut delay = Duration::from_millis(100);
        loop {
            let from = next;
            match self.follow(&stream, &mut next, &items).await {
                Stop::Done => break,
                Stop::CaughtUp => delay = Duration::from_millis(100),
                Stop::Failed(error) => {
                    if next > from {
                        delay = Duration::from_millis(100);
                    }
                    tracing::warn!(what = self.what, filter = %self.filter, %error, next, "cluster consumer failed; starting a new one");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = items.closed() => break,
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::debug!(what = self.what, filter = %self.filter, "cluster consumer stopped");
    }

    /// The last sequence stored under the filter; 0 if none.
    async fn stored(&self, stream: &Stream) -> Result<u64, ClusterError> {
        match self.scope {
            Scope::Stream => last_stored(stream, "read the stream's state").await,
            Scope::Subject => Ok(last_sequence(stream, &self.filter).await?.unwrap_or(0)),
        }
    }

    /// Follows with one ordered consumer from `next` on, then deletes it.
    async fn follow(&self, stream: &Stream, next: &mut u64, items: &mpsc::Sender<T>) -> Stop {
        // A receiver taken only to learn that there is something to follow may be gone already.
        if items.is_closed() {
            return Stop::Done;
        }
        let stored = match self.stored(stream).await {
            Ok(stored) => stored,
            Err(error) => return Stop::Failed(error),
        };
        let consumer = match stream
            .create_consumer(OrderedConfig {
                filter_subject: self.filter.clone(),
                deliver_policy: deliver_from(*next),
                max_expires: MAX_PULL,
                ..Default::default()
            })
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => return Stop::Failed(ClusterError::nats("create the delivery consumer", e)),
        };
        let info = consumer.cached_info();
        let name = info.name.clone();
        let stop = if info.num_pending == 0 && stored >= *next {
            // The leader holds messages from `next` on, or they were purged or evicted: the
            // leader says which.
            self.fetch_from_leader(stream, next, stored, items).await
        } else {
            match consumer.messages().await {
                Ok(mut messages) => self.deliver(stream, &mut messages, next, items).await,
                Err(e) => Stop::Failed(ClusterError::nats("pull from the delivery consumer", e)),
            }
        };
        let stream = stream.clone();
        tokio::spawn(async move {
            if let Err(error) = stream.delete_consumer(&name).await {
                tracing::debug!(%error, "could not delete a delivery consumer; it expires");
            }
        });
        stop
    }

    /// Fetches from the leader, and passes on, what is stored under the filter from `next` up
    /// to `stored`.
    async fn fetch_from_leader(
        &self,
        stream: &Stream,
        next: &mut u64,
        stored: u64,
        items: &mpsc::Sender<T>,
    ) -> Stop {
        let from = *next;
        while *next <= stored {
            let message = match next_from_leader(stream, &self.filter, *next).await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    *next = stored + 1;
                    break;
                }
                Err(error) => return Stop::Failed(error),
            };
            *next = message.seq + 1;
            if let Some(stop) = self.pass_on(&message, items).await {
                return stop;
            }
        }
        if *next > from + 1 {
            tracing::info!(what = self.what, filter = %self.filter, from, next = *next, "fetched from the stream leader what a lagging consumer lacked");
        }
        Stop::CaughtUp
    }

    /// Decodes a message and passes its item on; `Some` when following should stop.
    async fn pass_on(&self, message: &Stored, items: &mpsc::Sender<T>) -> Option<Stop> {
        let (item, last) = match (self.decode)(message) {
            Ok(Decoded::Skip) => return None,
            Ok(Decoded::Item(item)) => (item, false),
            Ok(Decoded::Last(item)) => (item, true),
            Err(error) => {
                tracing::warn!(what = self.what, seq = message.seq, subject = %message.subject, %error, "dropped a stored message");
                return None;
            }
        };
        (items.send(item).await.is_err() || last).then_some(Stop::Done)
    }

    /// Passes the consumer's messages on until the receiver is dropped, the last item is sent
    /// or the consumer fails (or goes silent while messages it owes are stored).
    async fn deliver(
        &self,
        stream: &Stream,
        messages: &mut Ordered,
        next: &mut u64,
        items: &mpsc::Sender<T>,
    ) -> Stop {
        loop {
            let message = tokio::select! {
                _ = items.closed() => return Stop::Done,
                message = tokio::time::timeout(STALL, messages.next()) => message,
            };
            let message = match message {
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
                Err(_) => match self.stored(stream).await {
                    Ok(stored) if stored < *next => continue,
                    Ok(stored) => {
                        return Stop::Failed(ClusterError::nats(
                            "delivery consumer",
                            format!("silent while messages up to {stored} are stored"),
                        ));
                    }
                    Err(error) => return Stop::Failed(error),
                },
            };
            let (message, _pending) = match Stored::delivered(message) {
                Ok(delivered) => delivered,
                Err(error) => return Stop::Failed(error),
            };
            let seq = message.seq;
            if seq < *next {
                return Stop::Failed(ClusterError::nats(
                    "delivery consumer",
                    format!("restarted at sequence {seq}, before {next}"),
                ));
            }
            *next = seq + 1;
            if let Some(stop) = self.pass_on(&message, items).await {
                return stop;
            }
        }
    }
}
