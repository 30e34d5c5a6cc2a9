//! Reading stored messages so that a read never goes back in time.
//!
//! A consumer is served by one server, which may hold a replica that lags behind the stream
//! leader (one frozen after a partition was seen 94 s behind on nats-server 2.15.1), and a
//! lagging consumer reports "nothing pending" for messages the leader acknowledged long ago.
//! So a read never takes a consumer's word for where the stream ends: it learns the end from
//! the leader (the stream's state, or a subject's last message, both answered by the leader),
//! and whatever a consumer does not deliver up to there is fetched from the leader one message
//! at a time ([`next_from_leader`]) — slow, but only while a replica lags.

use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, RawMessageErrorKind, Stream};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::ClusterError;

/// The longest pull an ordered consumer waits, which also sets its idle heartbeat (half of it).
pub(crate) const MAX_PULL: Duration = Duration::from_secs(4);

/// The longest a [`scan`] may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence after which a consumer is taken to have nothing more to give: the rest is fetched
/// from the leader (reads), or the stream is asked whether messages are waiting (deliveries;
/// an ordered consumer whose server died was seen silent for over 30 s before async-nats
/// noticed).
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// One stored message, delivered by a consumer or fetched from the stream leader.
pub(crate) struct Stored {
    /// The subject it was stored under.
    pub(crate) subject: Subject,
    /// Its headers.
    pub(crate) headers: Option<HeaderMap>,
    /// Its payload.
    pub(crate) payload: Bytes,
    /// Its stream sequence.
    pub(crate) seq: u64,
    /// When the server stored it, in Unix milliseconds.
    pub(crate) time_ms: u64,
}

impl Stored {
    /// A message a consumer delivered, and how many more the consumer says are pending.
    pub(crate) fn delivered(
        message: async_nats::jetstream::Message,
    ) -> Result<(Stored, u64), ClusterError> {
        let info = message
            .info()
            .map_err(|e| ClusterError::nats("read a delivery's metadata", e))?;
        let (seq, pending, time_ms) =
            (info.stream_sequence, info.pending, unix_ms(&info.published));
        let async_nats::Message {
            subject,
            headers,
            payload,
            ..
        } = message.message;
        Ok((
            Stored {
                subject,
                headers,
                payload,
                seq,
                time_ms,
            },
            pending,
        ))
    }

    /// Its headers as (name, value) pairs, for the pure decoders.
    pub(crate) fn header_pairs(&self) -> Vec<(&str, &str)> {
        header_pairs(self.headers.as_ref())
    }
}

/// The first message at or after sequence `from` under `filter` (a subject or a wildcard), as
/// the stream leader has it; `None` if there is none.
pub(crate) async fn next_from_leader(
    stream: &Stream,
    filter: &str,
    from: u64,
) -> Result<Option<Stored>, ClusterError> {
    match stream
        .raw_message_builder()
        .sequence(from.max(1))
        .next_by_subject(filter.to_owned())
        .send()
        .await
    {
        Ok(message) => Ok(Some(Stored {
            time_ms: unix_ms(&message.time),
            subject: message.subject,
            headers: Some(message.headers),
            payload: message.payload,
            seq: message.sequence,
        })),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ClusterError::nats(
            "get a message from the stream leader",
            e,
        )),
    }
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

/// The sequence of the last message `stream` holds (0 when it never held any), from its state
/// as the leader reports it; `op` says what for, in an error.
pub(crate) async fn last_stored(stream: &Stream, op: &'static str) -> Result<u64, ClusterError> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| ClusterError::nats(op, e))?;
    Ok(info.state.last_sequence)
}

/// Messages fetched by one batched direct get.
const DIRECT_BATCH: usize = 256;
/// The longest wait for the next message of a batched direct get.
const DIRECT_WAIT: Duration = Duration::from_secs(2);

/// Up to [`DIRECT_BATCH`] messages of `subject` from sequence `from` on, by one batched direct
/// get (nats-server 2.11 and newer), which any replica of the stream may answer: no consumer is
/// created. `Ok(None)` when the server does not batch (2.9 and 2.10 answer with one message and
/// no `Nats-Num-Pending`) or the batch did not come whole; the caller reads otherwise then.
pub(crate) async fn direct_batch(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    from: u64,
) -> Result<Option<Vec<Stored>>, ClusterError> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| ClusterError::nats("read a channel directly", e))?;
    let request = serde_json::json!({
        "seq": from.max(1),
        "next_by_subj": subject,
        "batch": DIRECT_BATCH,
    });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(|e| ClusterError::nats("read a channel directly", e))?;
    let mut batch = Vec::new();
    loop {
        let Ok(Some(message)) = tokio::time::timeout(DIRECT_WAIT, replies.next()).await else {
            return Ok(None);
        };
        let pairs = header_pairs(message.headers.as_ref());
        let number = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
        };
        match message.status.map(|s| s.as_u16()) {
            // The end of the batch.
            Some(204) => return Ok(Some(batch)),
            // Nothing at or after `from`.
            Some(404) => return Ok(Some(batch)),
            Some(_) => return Ok(None),
            None => {}
        }
        if number("Nats-Num-Pending").is_none() {
            return Ok(None);
        }
        let Some(seq) = number("Nats-Sequence") else {
            return Ok(None);
        };
        let stored_subject = pairs
            .iter()
            .find(|(n, _)| *n == "Nats-Subject")
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_else(|| subject.to_owned());
        batch.push(Stored {
            subject: stored_subject.into(),
            headers: message.headers,
            payload: message.payload,
            seq,
            time_ms: 0,
        });
        if batch.len() > DIRECT_BATCH {
            return Ok(None);
        }
    }
}

/// Visits the messages of `subject` from sequence 1 up to `until` (a sequence the leader
/// reported) like [`scan`], by batched direct gets where the server has them, so that no
/// consumer is created; whatever the replica answering lacks (one that lags) is fetched from
/// the leader. Falls back to [`scan`] on servers without batched direct gets.
pub(crate) async fn read_subject(
    client: &async_nats::Client,
    stream: &Stream,
    subject: &str,
    until: u64,
    mut visit: impl FnMut(&Stored) -> ControlFlow<()>,
) -> Result<(), ClusterError> {
    let name = stream.cached_info().config.name.clone();
    let mut next = 1;
    let read = async {
        while next <= until {
            let Some(batch) = direct_batch(client, &name, subject, next).await? else {
                return Ok(false);
            };
            let Some(last) = batch.last().map(|stored| stored.seq) else {
                break;
            };
            for stored in batch.iter().filter(|s| s.seq >= next && s.seq <= until) {
                if visit(stored).is_break() {
                    return Ok(true);
                }
            }
            next = last + 1;
        }
        // What a lagging replica did not have, from the leader.
        while next <= until {
            let Some(stored) = next_from_leader(stream, subject, next).await? else {
                break;
            };
            next = stored.seq + 1;
            if stored.seq > until || visit(&stored).is_break() {
                break;
            }
        }
        Ok::<bool, ClusterError>(true)
    };
    let done = tokio::time::timeout(SCAN_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(ClusterError::nats("read a subject", "timed out")))?;
    if done {
        return Ok(());
    }
    scan(stream, subject.to_owned(), next, until, visit).await
}

/// Visits the messages under `filter` from sequence `start` up to `until` (a sequence the
/// leader reported, so that everything up to it is acknowledged), oldest first, until `visit`
/// breaks off. Reads through one ordered consumer, and fetches from the leader whatever the
/// consumer's server does not have. Messages after `until` that the consumer delivers are
/// visited too.
pub(crate) async fn scan(
    stream: &Stream,
    filter: String,
    start: u64,
    until: u64,
    mut visit: impl FnMut(&Stored) -> ControlFlow<()>,
) -> Result<(), ClusterError> {
    if until < start {
        return Ok(());
    }
    let mut next = start;
    let read = async {
        // The consumer is only the fast path: whatever it fails to deliver is fetched from the
        // leader below.
        if let Err(error) = through_consumer(stream, &filter, &mut next, &mut visit).await {
            match error {
                ControlFlow::Break(()) => return Ok(()),
                ControlFlow::Continue(error) => {
                    tracing::debug!(%filter, %error, next, "reading consumer failed; reading from the stream leader");
                }
            }
        }
        while next <= until {
            let Some(stored) = next_from_leader(stream, &filter, next).await? else {
                break;
            };
            next = stored.seq + 1;
            if stored.seq > until || visit(&stored).is_break() {
                break;
            }
        }
        Ok(())
    };
    tokio::time::timeout(SCAN_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(ClusterError::nats("read a subject", "timed out")))
}

/// Visits what one ordered consumer from `next` on delivers, until it says nothing is pending
/// or goes silent for [`STALL`], advancing `next`; then deletes the consumer. `Err(Break)`:
/// `visit` broke off; `Err(Continue)`: the consumer failed.
async fn through_consumer(
    stream: &Stream,
    filter: &str,
    next: &mut u64,
    visit: &mut impl FnMut(&Stored) -> ControlFlow<()>,
) -> Result<(), ControlFlow<(), ClusterError>> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: deliver_from(*next),
            max_expires: MAX_PULL,
            ..Default::default()
        })
        .await
        .map_err(|e| ControlFlow::Continue(ClusterError::nats("create a reading consumer", e)))?;
    let info = consumer.cached_info();
    let (name, empty) = (info.name.clone(), info.num_pending == 0);
    let read = async {
        if empty {
            return Ok(());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ControlFlow::Continue(ClusterError::nats("read a subject", e)))?;
        loop {
            let message = match tokio::time::timeout(STALL, messages.next()).await {
                Ok(Some(message)) => message
                    .map_err(|e| ControlFlow::Continue(ClusterError::nats("read a subject", e)))?,
                Ok(None) | Err(_) => return Ok(()),
            };
            let (stored, pending) = Stored::delivered(message).map_err(ControlFlow::Continue)?;
            // A consumer that recreated itself before its first message starts over.
            if stored.seq >= *next {
                *next = stored.seq + 1;
                if visit(&stored).is_break() {
                    return Err(ControlFlow::Break(()));
                }
            }
            if pending == 0 {
                return Ok(());
            }
        }
    };
    let outcome = read.await;
    let stream = stream.clone();
    tokio::spawn(async move {
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "could not delete a reading consumer; it expires");
        }
    });
    outcome
}

/// Where a consumer reading from sequence `next` on starts.
pub(crate) fn deliver_from(next: u64) -> DeliverPolicy {
    if next <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: next,
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

/// Unix milliseconds of a JetStream timestamp.
pub(crate) fn unix_ms(time: &async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
