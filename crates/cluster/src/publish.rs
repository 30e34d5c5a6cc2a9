//! Publishing to JetStream so that each message is stored at most once, each sender's messages
//! in the order it sent them, and a sender is told the truth about what was not stored.
//!
//! Messages carry a key (a sender in a channel, a debug-me session): messages with one key are
//! published one at a time, the next only once the previous is acknowledged, so that a retry
//! can never be overtaken by a later message (pipelining them, a message lost in a leader
//! change while the next reached the new leader was stored after it, seen 2,100–3,200 times
//! per fault). Messages with different keys are published concurrently, at most
//! [`MAX_UNRESOLVED`] at once (async-nats stops publishing altogether above 5000 unresolved
//! acknowledgements).
//!
//! A lost or failed acknowledgement makes the publisher send the message again with the same
//! `Nats-Msg-Id`, so that JetStream, which drops a message id it stored within its duplicate
//! window, stores it once and answers with the first copy's sequence. A message not
//! acknowledged within the timeout is reported [unconfirmed](ClusterError::Unavailable) to its
//! sender but still sent again until [`RETRY_FOR`] (it may yet be stored: JetStream may hold it
//! until a quorum returns); every message queued behind it with the same key is then
//! [cancelled](ClusterError::Cancelled) without being sent, so that "not stored" is the truth.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::ClusterError;
use crate::setup::Link;

/// Most acknowledgements awaited at once.
pub(crate) const MAX_UNRESOLVED: usize = 1000;
/// How long a message is published again after failures; well within the duplicate window, so
/// that a retry of a message that was stored is recognised as a duplicate. The cluster timeout
/// is at most this.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long the publisher waits for an acknowledgement before sending the message again (same
/// id, so stored once): short, so that a message sent to a leader that froze or lost its
/// quorum reaches the next leader soon after its election.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(1);
/// The first pause before publishing again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_millis(500);

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
    /// Messages with one key are stored in the order they were queued.
    pub(crate) key: String,
    /// Who queued it under its key (a member's connection): when one of its messages is
    /// overdue, its later ones are cancelled, not those another connection queued meanwhile.
    pub(crate) member: u64,
    pub(crate) reply: oneshot::Sender<Result<u64, ClusterError>>,
}

/// A job waiting for its turn, and when it was queued.
struct Queued {
    job: Job,
    since: Instant,
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

/// Publishes a message and waits for its acknowledgement, publishing it again (same message id)
/// after a failure until it is stored or [`RETRY_FOR`] has passed.
pub(crate) async fn publish_stored(
    js: &jetstream::Context,
    message: &Message,
) -> Result<PublishAck, ClusterError> {
    let started = Instant::now();
    let mut outcome = acknowledged(send(js, message).await).await;
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

/// Starts the publisher task; publishing stops when every sender of the returned queue is
/// dropped, after the messages already queued. A message not acknowledged within `timeout` of
/// being queued is reported unavailable.
pub(crate) fn spawn(
    js: jetstream::Context,
    timeout: Duration,
    link: Arc<Link>,
) -> (mpsc::UnboundedSender<Job>, tokio::task::JoinHandle<()>) {
    let (jobs, queue) = mpsc::unbounded_channel();
    let publisher = Publisher {
        js,
        timeout,
        link,
        keys: HashMap::new(),
        ready: VecDeque::new(),
        in_flight: 0,
    };
    (jobs, tokio::spawn(publisher.run(queue)))
}

/// What became of a message in flight, told to the publisher by its task.
enum Event {
    /// Not acknowledged within the timeout: the sender was told; what waits behind it is
    /// cancelled.
    Overdue(String, u64),
    /// Acknowledged, refused for good, or given up on: the next with its key may go.
    Finished(String),
}

/// The state of one key.
#[derive(Default)]
struct Key {
    /// Whether a message with this key is in flight.
    busy: bool,
    /// The member whose message in flight is overdue: what it queued behind is cancelled.
    overdue: Option<u64>,
    waiting: VecDeque<Queued>,
}

/// The publisher: one message in flight per key, [`MAX_UNRESOLVED`] in all.
struct Publisher {
    js: jetstream::Context,
    timeout: Duration,
    /// Told of every acknowledged message: the write path works (`/healthz`).
    link: Arc<Link>,
    keys: HashMap<String, Key>,
    /// Keys with a message waiting and none in flight, in the order they became ready, while
    /// [`MAX_UNRESOLVED`] are in flight.
    ready: VecDeque<String>,
    in_flight: usize,
}

impl Publisher {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let (events, mut told) = mpsc::unbounded_channel();
        let mut open = true;
        while open || self.in_flight > 0 {
            tokio::select! {
                job = queue.recv(), if open => match job {
                    Some(job) => self.queue(job, &events),
                    None => open = false,
                },
                Some(event) = told.recv() => match event {
                    Event::Overdue(key, member) => self.overdue(&key, member),
                    Event::Finished(key) => self.finished(key, &events),
                },
            }
        }
        tracing::debug!("cluster publisher stopped");
    }

    /// Takes a job in: sends it at once if its key is idle, else queues it (or cancels it,
    /// behind an overdue message).
    fn queue(&mut self, job: Job, events: &mpsc::UnboundedSender<Event>) {
        let name = job.key.clone();
        let key = self.keys.entry(name.clone()).or_default();
        if key.overdue == Some(job.member) {
            let _ = job.reply.send(Err(ClusterError::Cancelled));
            return;
        }
        let idle = !key.busy && key.waiting.is_empty();
        key.waiting.push_back(Queued {
            job,
            since: Instant::now(),
        });
        if idle {
            self.start_or_wait(name, events);
        }
    }

    /// Cancels what `member` queued behind its overdue message; the messages other members
    /// queued with the same key (the same sender on a new connection) wait their turn.
    fn overdue(&mut self, name: &str, member: u64) {
        if let Some(key) = self.keys.get_mut(name) {
            key.overdue = Some(member);
            let (cancelled, kept) = key
                .waiting
                .drain(..)
                .partition::<VecDeque<_>, _>(|queued| queued.job.member == member);
            key.waiting = kept;
            for queued in cancelled {
                let _ = queued.job.reply.send(Err(ClusterError::Cancelled));
            }
        }
    }

    /// A message of `name` is done: the next may go.
    fn finished(&mut self, name: String, events: &mpsc::UnboundedSender<Event>) {
        self.in_flight -= 1;
        if let Some(key) = self.keys.get_mut(&name) {
            key.busy = false;
            key.overdue = None;
            if key.waiting.is_empty() {
                self.keys.remove(&name);
            } else {
                self.start_or_wait(name, events);
            }
        }
        while self.in_flight < MAX_UNRESOLVED {
            let Some(name) = self.ready.pop_front() else {
                break;
            };
            self.start(&name, events);
        }
    }

    /// Starts the next message of `name`, or marks the key ready while too many are in flight.
    fn start_or_wait(&mut self, name: String, events: &mpsc::UnboundedSender<Event>) {
        if self.in_flight < MAX_UNRESOLVED {
            self.start(&name, events);
        } else {
            self.ready.push_back(name);
        }
    }

    /// Sends the next message of `name` in a task of its own.
    fn start(&mut self, name: &str, events: &mpsc::UnboundedSender<Event>) {
        let Some(key) = self.keys.get_mut(name) else {
            return;
        };
        let Some(Queued { job, since }) = key.waiting.pop_front() else {
            return;
        };
        key.busy = true;
        self.in_flight += 1;
        let (js, events, deadline) = (self.js.clone(), events.clone(), since + self.timeout);
        let link = Arc::clone(&self.link);
        tokio::spawn(async move {
            let Job {
                message,
                key,
                member,
                reply,
            } = job;
            let mut reply = Some(reply);
            let stored = publish_stored(&js, &message);
            tokio::pin!(stored);
            let outcome = tokio::select! {
                outcome = &mut stored => outcome,
                () = tokio::time::sleep_until(deadline.into()) => {
                    if let Some(reply) = reply.take() {
                        let _ = reply.send(Err(ClusterError::Unavailable {
                            what: "acknowledge a frame",
                            waited: since.elapsed(),
                            source: "no acknowledgement yet; it may still be stored".into(),
                        }));
                    }
                    let _ = events.send(Event::Overdue(key.clone(), member));
                    let outcome = stored.await;
                    match &outcome {
                        Ok(ack) => tracing::info!(subject = %message.subject, seq = ack.sequence, "a frame reported unconfirmed was stored"),
                        Err(error) => tracing::warn!(subject = %message.subject, %error, "a frame reported unconfirmed was not stored"),
                    }
                    outcome
                }
            };
            if outcome.is_ok() {
                link.writes.acknowledged();
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome.map(|ack| ack.sequence));
            }
            let _ = events.send(Event::Finished(key));
        });
    }
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
