//! Reading channel history back from the channel stream (by batched direct gets where the
//! server has them, see [`read_subject`]), and purging idle channels.
//!
//! The stream keeps at most `max_entries` messages per channel; the byte limit of the history
//! is applied here, on reading, with the same rule as the hub's in-memory window, so that what
//! a joiner is replayed is the same whichever node it joins.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use futures_util::StreamExt;
use kanava_core::{ChannelName, Entry, HistoryLimits, HistoryWindow};
use kanava_store::StoredChannel;

use crate::read::{header_pairs, last_sequence, read_subject, unix_ms};
use crate::wire::{self, ChannelShards};
use crate::{ClusterError, setup::Buckets};

/// A channel's retained history (both limits applied) and the sequence after its last message,
/// from `stream`, its shard's stream, up to the last message the stream leader holds.
async fn retained(
    client: &async_nats::Client,
    shards: ChannelShards,
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
) -> Result<(HistoryWindow, u64), ClusterError> {
    let subject = shards.subject(channel);
    let mut window = HistoryWindow::new(limits);
    let Some(until) = last_sequence(stream, &subject).await? else {
        return Ok((window, 0));
    };
    let mut last = 0;
    read_subject(client, stream, &subject, until, |stored| {
        last = stored.seq;
        let pairs = stored.header_pairs();
        match wire::decode_frame(shards, &subject, &pairs, stored.payload.clone(), stored.seq) {
            Ok(frame) => window.push(Arc::new(frame.entry)),
            Err(error) => {
                tracing::warn!(seq = stored.seq, %subject, %error, "dropped a stored frame");
            }
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok((window, last))
}

/// A channel's history and next sequence (`last + 1`; 1 for an empty channel).
pub(crate) async fn load(
    client: &async_nats::Client,
    shards: ChannelShards,
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
) -> Result<StoredChannel, ClusterError> {
    let (window, last) = retained(client, shards, stream, channel, limits).await?;
    Ok(StoredChannel {
        entries: window.entries().map(|e| (**e).clone()).collect(),
        next_seq: last + 1,
    })
}

/// Up to `limit` retained entries older than `before_seq`, oldest first.
pub(crate) async fn before(
    client: &async_nats::Client,
    shards: ChannelShards,
    stream: &Stream,
    channel: &ChannelName,
    limits: HistoryLimits,
    before_seq: u64,
    limit: usize,
) -> Result<Vec<Entry>, ClusterError> {
    let (window, _) = retained(client, shards, stream, channel, limits).await?;
    let older: Vec<Entry> = window
        .entries()
        .filter(|e| e.seq < before_seq)
        .map(|e| (**e).clone())
        .collect();
    let skip = older.len().saturating_sub(limit);
    Ok(older.into_iter().skip(skip).collect())
}

/// Purges every channel whose last frame is older than `idle_before_ms`, except those in
/// `keep`, with its topic, from every channel stream (`streams`, by shard); returns their
/// names.
pub(crate) async fn purge_idle(
    shards: ChannelShards,
    streams: &[Stream],
    buckets: &Buckets,
    idle_before_ms: u64,
    keep: &[ChannelName],
) -> Result<Vec<ChannelName>, ClusterError> {
    let keep: HashSet<&ChannelName> = keep.iter().collect();
    let mut purged = Vec::new();
    for (shard, stream) in (0..).zip(streams) {
        purge_idle_in(
            shards,
            shard,
            stream,
            buckets,
            idle_before_ms,
            &keep,
            &mut purged,
        )
        .await?;
    }
    Ok(purged)
}

/// Purges the idle channels of shard `shard` (see [`purge_idle`]), adding their names to
/// `purged`.
async fn purge_idle_in(
    shards: ChannelShards,
    shard: u32,
    stream: &Stream,
    buckets: &Buckets,
    idle_before_ms: u64,
    keep: &HashSet<&ChannelName>,
    purged: &mut Vec<ChannelName>,
) -> Result<(), ClusterError> {
    let mut subjects = Vec::new();
    let mut listing = stream
        .info_with_subjects(format!("{}>", shards.prefix(shard)))
        .await
        .map_err(|e| ClusterError::nats("list channel subjects", e))?;
    while let Some(subject) = listing.next().await {
        let (subject, _count) =
            subject.map_err(|e| ClusterError::nats("list channel subjects", e))?;
        subjects.push(subject);
    }
    for subject in subjects {
        let last = match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(last) => last,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
            Err(e) => return Err(ClusterError::nats("get a channel's last frame", e)),
        };
        let pairs = header_pairs(Some(&last.headers));
        let (channel, time_ms) = match wire::decode_frame(
            shards,
            &subject,
            &pairs,
            last.payload.clone(),
            last.sequence,
        ) {
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
    Ok(())
}
