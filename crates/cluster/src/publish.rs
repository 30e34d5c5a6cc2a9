//! Publishing to JetStream so that each message is stored exactly once and in call order.
//!
//! One publisher task sends the bus's frames in the order they were handed over (the send is
//! the first `await` of async-nats's publish) and passes each acknowledgement future to an
//! acker task, which waits for many acknowledgements at once. A lost or failed acknowledgement
//! makes the acker publish the message again with the same `Nats-Msg-Id`, so that JetStream,
//! which drops a message id it stored within its duplicate window, stores it once and answers
//! with the first copy's sequence. A message that was lost (not merely its acknowledgement) is
//! stored by the retry after frames published later.
//!
//! At most [`MAX_UNRESOLVED`] acknowledgements are awaited at once: async-nats stops
//! publishing altogether above 5000.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::ClusterError;

/// Most acknowledgements awaited at once.
pub(crate) const MAX_UNRESOLVED: usize = 1000;
/// How long a message is published again after failures; well within the duplicate window, so
/// that a retry of a message that was stored is recognised as a duplicate.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// The first pause before publishing again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Unique message ids: `<node>-<boot id>-<counter>`. The random boot id keeps a restarted node
/// from reusing the ids of its previous run within the duplicate window.
pub(crate) struct MessageIds {
    prefix: String,
    counter: AtomicU64,
}

impl MessageIds {
    /// Ids for `node`, with a fresh boot id.
    pub(crate) fn new(node: &str) -> Self {
        Self {
            prefix: format!("{node}-{:016x}", rand::random::<u64>()),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

/// A message to store, with its `Nats-Msg-Id` among its headers.
#[derive(Clone)]
pub(crate) struct Message {
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

impl Message {
    /// A message to `subject` with `headers`, given the next id of `ids`.
    pub(crate) fn new(
        subject: String,
        headers: impl IntoIterator<Item = (&'static str, String)>,
        payload: Bytes,
        ids: &MessageIds,
    ) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(name, value);
        }
        Self::with_headers(subject, map, payload, ids)
    }

    /// A message to `subject` with the headers of `headers` and the next id of `ids`.
    pub(crate) fn with_headers(
        subject: String,
        mut headers: HeaderMap,
        payload: Bytes,
        ids: &MessageIds,
    ) -> Self {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, ids.next());
        Self {
            subject,
            headers,
            payload,
        }
    }
}

/// A message handed to the publisher, and where its outcome goes.
pub(crate) struct Job {
    pub(crate) message: Message,
    pub(crate) reply: oneshot::Sender<Result<u64, ClusterError>>,
}

/// A sent message waiting for its acknowledgement.
struct InFlight {
    job: Job,
    started: Instant,
    sent: Result<PublishAckFuture, PublishError>,
}

async fn send(
    js: &jetstream::Context,
    message: &Message,
) -> Result<PublishAckFuture, PublishError> {
    js.publish_with_headers(
        message.subject.clone(),
        message.headers.clone(),
        message.payload.clone(),
    )
    .await
}

async fn acknowledged(
    sent: Result<PublishAckFuture, PublishError>,
) -> Result<PublishAck, PublishError> {
    sent?.into_future().await
}

/// Whether publishing again cannot help: the message is too large for the server or stream.
fn permanent(error: &PublishError) -> bool {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|e| e.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM),
        _ => false,
    }
}

/// Waits for the acknowledgement of a message sent at `started`, publishing it again (same
/// message id) after a failure until it is stored or [`RETRY_FOR`] has passed.
async fn until_stored(
    js: &jetstream::Context,
    message: &Message,
    started: Instant,
    sent: Result<PublishAckFuture, PublishError>,
) -> Result<PublishAck, ClusterError> {
    let mut outcome = acknowledged(sent).await;
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match outcome {
            Ok(ack) => {
                metrics::histogram!("kanava_cluster_publish_seconds")
                    .record(started.elapsed().as_secs_f64());
                return Ok(ack);
            }
            Err(error) if permanent(&error) || started.elapsed() >= RETRY_FOR => {
                metrics::counter!("kanava_cluster_publish_failures_total").increment(1);
                tracing::warn!(subject = %message.subject, %error, "publish to the cluster failed");
                return Err(ClusterError::nats("publish", error));
            }
            Err(error) => {
                metrics::counter!("kanava_cluster_publish_retries_total").increment(1);
                tracing::debug!(subject = %message.subject, %error, ?delay, "publishing again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                outcome = acknowledged(send(js, message).await).await;
            }
        }
    }
}

/// Publishes one message and waits until it is stored, retrying as the bus does.
pub(crate) async fn publish_stored(
    js: &jetstream::Context,
    message: &Message,
) -> Result<PublishAck, ClusterError> {
    let started = Instant::now();
    let sent = send(js, message).await;
    until_stored(js, message, started, sent).await
}

/// Starts the publisher and acker tasks; publishing stops when every sender of the returned
/// queue is dropped, after the messages already queued.
pub(crate) fn spawn(
    js: jetstream::Context,
) -> (mpsc::UnboundedSender<Job>, [tokio::task::JoinHandle<()>; 2]) {
    let (jobs, queue) = mpsc::unbounded_channel();
    let (to_acker, acks) = mpsc::channel(64);
    let publisher = tokio::spawn(publisher(js.clone(), queue, to_acker));
    let acker = tokio::spawn(acker(Arc::new(js), acks));
    (jobs, [publisher, acker])
}

async fn publisher(
    js: jetstream::Context,
    mut queue: mpsc::UnboundedReceiver<Job>,
    acks: mpsc::Sender<InFlight>,
) {
    while let Some(job) = queue.recv().await {
        let started = Instant::now();
        let sent = send(&js, &job.message).await;
        let in_flight = InFlight { job, started, sent };
        if acks.send(in_flight).await.is_err() {
            break;
        }
    }
    tracing::debug!("cluster publisher stopped");
}

async fn acker(js: Arc<jetstream::Context>, mut acks: mpsc::Receiver<InFlight>) {
    let mut waiting = FuturesUnordered::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        tokio::select! {
            Some(()) = waiting.next(), if !waiting.is_empty() => {}
            next = acks.recv(), if open && waiting.len() < MAX_UNRESOLVED => match next {
                Some(InFlight { job, started, sent }) => {
                    let js = Arc::clone(&js);
                    waiting.push(async move {
                        let outcome = until_stored(&js, &job.message, started, sent).await;
                        let _ = job.reply.send(outcome.map(|ack| ack.sequence));
                    });
                }
                None => open = false,
            },
        }
    }
    tracing::debug!("cluster acker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_per_boot() {
        let ids = MessageIds::new("n1");
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.starts_with("n1-") && a.ends_with("-0"), "{a}");
        let other = MessageIds::new("n1");
        assert_ne!(other.next(), a, "a restarted node gets a new boot id");
    }
}
