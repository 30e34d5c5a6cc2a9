//! debug-me sessions across nodes, for [`kanava_store::SessionBus`].
//!
//! A session lives on its user's node. That node stores the session's log in stream `KANAVA_DM`,
//! one subject per session (`kanava.dm.<id>`): a start marker when the session opens, each
//! logged message in log order (through the store's one publisher, in call order), and an end
//! marker. Any other node follows a session with an ordered consumer on its subject, from its
//! first message on, until the end marker.
//!
//! Developers on other nodes send their messages into a session by a core NATS request to
//! `kanava.dm-in.<id>`, which the session's node subscribes to while the session is open: it
//! hands each request to the session and replies once the session has logged the message (an
//! empty reply) or refused it (a reply whose [`ERROR_HEADER`] says why). A request nobody
//! subscribes to fails at once: the session's node is gone or the session ended. Once a session
//! ends, its node refuses requests for a moment before it unsubscribes, so that one sent just
//! before is answered rather than lost with the subscription.
//!
//! A follower is the node's delivery [`Follower`], filtered on the session's subject: it keeps
//! its own position in the session and starts a new consumer from there whenever one fails or
//! goes silent while the session holds messages it owes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use async_nats::{Client, HeaderMap, HeaderValue, Request, RequestErrorKind, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use kanava_store::{InboundMessage, SessionEvent, SessionMessage, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::deliveries::{Decoded, Follower, Scope};
use crate::read::{Stored, header_pairs, last_sequence};
use crate::wire::{self, ERROR_HEADER, SessionRecord};
use crate::{BoxError, ClusterError};

/// How long a message sent into a session on another node may take to be logged there.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session's node goes on refusing messages sent into the session once it ended,
/// before it unsubscribes; see [`Served::run`].
const LINGER: Duration = Duration::from_millis(500);
/// Messages from other nodes waiting for their session.
const INBOX: usize = 64;
/// Events decoded ahead of a follower.
const EVENTS: usize = 256;

/// The sessions open on this node, each with the means to stop taking messages in for it.
pub(crate) type Inboxes = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// The headers of `record` of session `id`, refusing an origin a header cannot carry (a node
/// name with a line break).
pub(crate) fn headers(id: &str, record: &SessionRecord) -> Result<HeaderMap, ClusterError> {
    let mut map = HeaderMap::new();
    for (name, value) in wire::session_headers(record) {
        let value: HeaderValue = value
            .parse()
            .map_err(|_| ClusterError::session(id, "the origin cannot go into a header"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Subscribes to session `id`'s inbox subject; an id that is not a session id is refused.
pub(crate) async fn subscribe(client: &Client, id: &str) -> Result<Subscriber, ClusterError> {
    let subject =
        wire::session_inbox(id).ok_or_else(|| ClusterError::session(id, "not a session id"))?;
    client
        .subscribe(subject)
        .await
        .map_err(|e| ClusterError::nats("take a debug-me session's messages in", e))
}

/// Starts taking session `id`'s messages in from `requests`: the returned receiver yields them
/// until it is dropped or [`close`] is called for `id` (and then closes, shortly after).
pub(crate) fn serve(
    client: Client,
    inboxes: &Inboxes,
    id: String,
    requests: Subscriber,
) -> mpsc::Receiver<InboundMessage> {
    let (inbox, receiver) = mpsc::channel(INBOX);
    let (stop, stopped) = oneshot::channel();
    inboxes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), stop);
    let served = Served {
        client,
        id,
        requests,
        inbox,
        stopped,
    };
    tokio::spawn(served.run(Arc::downgrade(inboxes)));
    receiver
}

/// Stops taking session `id`'s messages in.
pub(crate) fn close(inboxes: &Inboxes, id: &str) {
    let stop = inboxes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id);
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
}

/// One open session's inbox: the subscription and where its requests go.
struct Served {
    client: Client,
    id: String,
    requests: Subscriber,
    inbox: mpsc::Sender<InboundMessage>,
    /// Resolves when [`close`] is called, or when the store (and its [`Inboxes`]) is gone.
    stopped: oneshot::Receiver<()>,
}

impl Served {
    /// Hands requests to the session until it ends, then refuses them for [`LINGER`] and
    /// unsubscribes, so that requests sent from then on fail at once; the inbox receiver closes
    /// once the server has the unsubscription.
    async fn run(mut self, inboxes: Weak<Mutex<HashMap<String, oneshot::Sender<()>>>>) {
        tracing::debug!(session = %self.id, "taking messages in from other nodes");
        loop {
            let request = tokio::select! {
                _ = self.inbox.closed() => break,
                _ = &mut self.stopped => break,
                request = self.requests.next() => match request {
                    Some(request) => request,
                    None => break,
                },
            };
            let Some(reply) = request.reply else {
                tracing::debug!(session = %self.id, "ignored a message without a reply subject");
                continue;
            };
            let pairs = header_pairs(request.headers.as_ref());
            let message = match wire::decode_session_message(&pairs, request.payload) {
                Ok(SessionRecord::Message(message)) => message,
                Ok(_) => {
                    answer(&self.client, reply, Err("not a message".into())).await;
                    continue;
                }
                Err(error) => {
                    answer(&self.client, reply, Err(error.to_string())).await;
                    continue;
                }
            };
            let (logged, outcome) = oneshot::channel();
            let handed = tokio::select! {
                sent = self.inbox.send(InboundMessage { message, logged }) => sent.is_ok(),
                _ = &mut self.stopped => false,
            };
            if !handed {
                answer(&self.client, reply, Err("the session has ended".into())).await;
                break;
            }
            let client = self.client.clone();
            // Ends once the session answers, or drops the message unanswered.
            tokio::spawn(async move {
                let outcome = outcome
                    .await
                    .unwrap_or_else(|_| Err("the session has ended".into()));
                answer(&client, reply, outcome).await;
            });
        }
        // Requests sent just before the session ended may still be on their way, and one that
        // reaches the client after it dropped the subscription (which it does before the server
        // has the unsubscription) would be left to time out: refuse them for a while first.
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        loop {
            tokio::select! {
                _ = &mut linger => break,
                request = self.requests.next() => match request {
                    Some(request) => self.refuse(request).await,
                    None => break,
                },
            }
        }
        let unsubscribed = async {
            self.requests.unsubscribe().await?;
            // What the client had taken in before is still read.
            while let Some(request) = self.requests.next().await {
                self.refuse(request).await;
            }
            // Requests from then on fail at once once the server has the unsubscription, which
            // it has once it answers a request sent after it: async-nats's `flush` only writes
            // to the socket, so a request to the inbox subject, which nobody here takes any
            // more, makes the round trip.
            let subject = self.requests_subject();
            match self.client.request(subject, Bytes::new()).await {
                Err(e) if e.kind() != RequestErrorKind::NoResponders => Err(BoxError::from(e)),
                _ => Ok(()),
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, unsubscribed).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(session = %self.id, %error, "could not unsubscribe a session's inbox");
            }
            Err(_) => {
                tracing::debug!(session = %self.id, "gave up unsubscribing a session's inbox")
            }
        }
        drop(self.stopped);
        if let Some(inboxes) = inboxes.upgrade() {
            let mut open = inboxes.lock().unwrap_or_else(PoisonError::into_inner);
            if open.get(&self.id).is_some_and(oneshot::Sender::is_closed) {
                open.remove(&self.id);
            }
        }
        tracing::debug!(session = %self.id, "stopped taking messages in");
    }

    /// The session's inbox subject.
    fn requests_subject(&self) -> String {
        format!("{}{}", wire::SESSION_INBOX_PREFIX, self.id)
    }

    /// Answers a request that came too late for the session.
    async fn refuse(&self, request: async_nats::Message) {
        if let Some(reply) = request.reply {
            answer(&self.client, reply, Err("the session has ended".into())).await;
        }
    }
}

/// Replies to a request sent into a session: empty when it was logged, else with the reason.
async fn answer(client: &Client, reply: Subject, outcome: Result<(), String>) {
    let sent = match outcome {
        Ok(()) => client.publish(reply, Bytes::new()).await,
        Err(reason) => {
            let mut headers = HeaderMap::new();
            headers.insert(ERROR_HEADER, wire::error_reason(&reason));
            client
                .publish_with_headers(reply, headers, Bytes::new())
                .await
        }
    };
    if let Err(error) = sent {
        tracing::debug!(%error, "could not answer a message sent into a session");
    }
}

/// Sends `message` into session `id` on its node; resolves once the session logged it.
pub(crate) async fn send(
    client: &Client,
    id: &str,
    message: SessionMessage,
) -> Result<(), ClusterError> {
    let subject =
        wire::session_inbox(id).ok_or_else(|| ClusterError::session(id, "not a session id"))?;
    let frame = message.frame.clone();
    let request = Request::new()
        .headers(headers(id, &SessionRecord::Message(message))?)
        .payload(frame)
        .timeout(Some(SEND_TIMEOUT));
    match client.send_request(subject, request).await {
        Ok(reply) => {
            let pairs = header_pairs(reply.headers.as_ref());
            wire::decode_session_reply(&pairs, &reply.payload).map_err(|reason| {
                ClusterError::session(id, format!("the session did not log the message: {reason}"))
            })
        }
        Err(error) => Err(match error.kind() {
            RequestErrorKind::NoResponders => ClusterError::session(
                id,
                "no node holds the session (it ended, or its node is gone)",
            ),
            RequestErrorKind::TimedOut => ClusterError::session(
                id,
                format!(
                    "the session's node did not answer within {} s",
                    SEND_TIMEOUT.as_secs()
                ),
            ),
            _ => ClusterError::nats("send into a debug-me session", error),
        }),
    }
}

/// Checks that session `id` has been announced; if so, completes `reply` with a receiver of its
/// events and follows the session into it until its end, or until the receiver is dropped.
pub(crate) async fn follow(
    stream: Stream,
    id: String,
    reply: oneshot::Sender<Result<Option<mpsc::Receiver<SessionEvent>>, StoreError>>,
) {
    let Some(subject) = wire::session_subject(&id) else {
        let _ = reply.send(Ok(None));
        return;
    };
    match last_sequence(&stream, &subject).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let _ = reply.send(Ok(None));
            return;
        }
        Err(error) => {
            let _ = reply.send(Err(error.into()));
            return;
        }
    }
    let (events, receiver) = mpsc::channel(EVENTS);
    if reply.send(Ok(Some(receiver))).is_err() {
        return;
    }
    let follower = Follower {
        what: "debug-me session",
        filter: subject,
        scope: Scope::Subject,
        decode: Box::new(|stored: &Stored| {
            match wire::decode_session_message(&stored.header_pairs(), stored.payload.clone()) {
                Ok(SessionRecord::Start) => Ok(Decoded::Skip),
                Ok(SessionRecord::Message(message)) => {
                    Ok(Decoded::Item(SessionEvent::Message(message)))
                }
                Ok(SessionRecord::End) => Ok(Decoded::Last(SessionEvent::Ended)),
                Err(error) => Err(error.to_string()),
            }
        }),
    };
    follower.run(stream, 1, events).await;
    tracing::debug!(session = %id, "stopped following a session");
}
