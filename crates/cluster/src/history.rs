//! Reading channel history back from the channel stream, and purging idle channels.
//!
//! The stream keeps at most `max_entries` messages per channel; the byte limit of the history
//! is applied here, on reading, with the same rule as the hub's in-memory window, so that what
//! a joiner is replayed is the same whichever node it joins.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};
use futures_util::StreamExt;
use kanava_core::{ChannelName, Entry, HistoryLimits, HistoryWindow};
use kanava_store::StoredChannel;

use crate::deliveries::{MAX_PULL, deliver_from, header_pairs};
use crate::wire::{self, CHANNEL_PREFIX};
use crate::{ClusterError, setup::Buckets};

/// The longest a read of one subject may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Visits the messages of the subjects matching `filter` from sequence `start` on, oldest
/// first, until none is left or `visit` breaks off.
pub(crate) async fn scan(
    stream: &Stream,
    filter: String,
    start: u64,
    mut visit: impl FnMut(&jetstream::Message, u64) -> ControlFlow<()>,
) -> Result<(), ClusterError> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: deliver_from(start),
            max_expires: MAX_PULL,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::nats("create a reading consumer", e))?;
    let info = consumer.cached_info();
    let (name, empty) = (info.name.clone(), info.num_pending == 0);
    let read = async {
        if empty {
            return Ok(());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ClusterError::nats("read a subject", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| ClusterError::nats("read a subject", e))?;
            let info = message
                .info()
                .map_err(|e| ClusterError::nats("read a subject", e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            // A consumer that recreated itself before its first message starts over.
            if seq >= start && visit(&message, seq).is_break() {
                return Ok(());
            }
            if pending == 0 {
                return Ok(());
            }
        }
        Err(ClusterError::nats("read a subject", "the consumer ended"))
    };
    let outcome = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(ClusterError::nats("read a subject", "timed out")));
    let stream = stream.clone();
    tokio::spawn(async move {
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "could not delete a reading consumer; it expires");
        }
    });
    outcome
}

/// The sequence of the last message of `subject`, from the stream leader; `None` if the
/// subject holds none.
pub(crate) async fn last_sequence(
    stream: &Stream,
    subject: &str,
) -> Result<Option<u64>, ClusterError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ClusterError::nats("get the last message of a subject", e)),
    }
}

/// A channel's retained history (both limits applied) and the sequence after its last message.
async fn retained(
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
) -> Result<(HistoryWindow, u64), ClusterError> {
    let subject = wire::channel_subject(channel);
    let mut window = HistoryWindow::new(limits);
    if last_sequence(stream, &subject).await?.is_none() {
        return Ok((window, 0));
    }
    let mut last = 0;
    scan(stream, subject.clone(), 1, |message, seq| {
        last = seq;
        let pairs = header_pairs(message.headers.as_ref());
        match wire::decode_frame(&subject, &pairs, message.payload.clone(), seq) {
            Ok(frame) => window.push(Arc::new(frame.entry)),
            Err(error) => tracing::warn!(seq, %subject, %error, "dropped a stored frame"),
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok((window, last))
}

/// A channel's history and next sequence (`last + 1`; 1 for an empty channel).
pub(crate) async fn load(
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
) -> Result<StoredChannel, ClusterError> {
    let (window, last) = retained(stream, channel, limits).await?;
    Ok(StoredChannel {
        entries: window.entries().map(|e| (**e).clone()).collect(),
        next_seq: last + 1,
    })
}

/// Up to `limit` retained entries older than `before_seq`, oldest first.
pub(crate) async fn before(
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
    before_seq: u64,
    limit: usize,
) -> Result<Vec<Entry>, ClusterError> {
    let (window, _) = retained(stream, channel, limits).await?;
    let older: Vec<Entry> = window
        .entries()
        .filter(|e| e.seq < before_seq)
        .map(|e| (**e).clone())
        .collect();
    let skip = older.len().saturating_sub(limit);
    Ok(older.into_iter().skip(skip).collect())
}

/// Unix milliseconds of a JetStream timestamp.
pub(crate) fn unix_ms(time: &async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Purges every channel whose last frame is older than `idle_before_ms`, except those in
/// `keep`, with its topic; returns their names.
pub(crate) async fn purge_idle(
    stream: &Stream,
    buckets: &Buckets,
    idle_before_ms: u64,
    keep: &[ChannelName],
) -> Result<Vec<ChannelName>, ClusterError> {
    let keep: HashSet<&ChannelName> = keep.iter().collect();
    let mut subjects = Vec::new();
    let mut listing = stream
        .info_with_subjects(format!("{CHANNEL_PREFIX}>"))
        .await
        .map_err(|e| ClusterError::nats("list channel subjects", e))?;
    while let Some(subject) = listing.next().await {
        let (subject, _count) =
            subject.map_err(|e| ClusterError::nats("list channel subjects", e))?;
        subjects.push(subject);
    }
    let mut purged = Vec::new();
    for subject in subjects {
        let last = match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(last) => last,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
            Err(e) => return Err(ClusterError::nats("get a channel's last frame", e)),
        };
        let pairs = header_pairs(Some(&last.headers));
        let (channel, time_ms) =
            match wire::decode_frame(&subject, &pairs, last.payload.clone(), last.sequence) {
                Ok(frame) => (Some(frame.channel), frame.entry.time_ms),
                Err(error) => {
                    tracing::warn!(%subject, %error, "purging a subject of undecodable frames");
                    (None, unix_ms(&last.time))
                }
            };
        if time_ms >= idle_before_ms || channel.as_ref().is_some_and(|c| keep.contains(c)) {
            continue;
        }
        // Only what was checked: a frame that arrived since keeps the channel.
        stream
            .purge()
            .filter(subject.as_str())
            .sequence(last.sequence + 1)
            .await
            .map_err(|e| ClusterError::nats("purge an idle channel", e))?;
        if let Some(channel) = channel {
            crate::accounts::delete_topic(buckets, &channel).await?;
            tracing::info!(%channel, "purged an idle channel");
            purged.push(channel);
        }
    }
    Ok(purged)
}
