//! [`ClusterStore`]: the [`Store`], [`Bus`] and [`SessionBus`] of a node in a cluster, and the
//! lifetime of its background tasks.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Claim, Entry, HistoryLimits, Identity, IdentityKey, KeyAdded, KeySharing,
    NewEntry, Nick, PrivateMessage, Rename, Topic, Uid,
};
use kanava_store::{
    Bus, BusHealth, Delivered, InboundMessage, Outgoing, Pending, Present, RemotePresence,
    SessionBus, SessionEvent, SessionMessage, Store, StoreError, StoredChannel,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::publish::{Job, Message, MessageIds};
use crate::setup::{Buckets, Link};
use crate::wire::SessionRecord;
use crate::{
    ClusterConfig, ClusterError, accounts, deliveries, health, history, live, presence, publish,
    sessions, wire,
};

/// How long [`Store::sync`] waits for the presence writer.
const PRESENCE_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A node's handle on the cluster: the shared [`Store`], its [`Bus`] and its [`SessionBus`].
/// Cheap to clone; the background tasks (publishing, presence, deliveries, the inboxes of open
/// debug-me sessions) and the NATS connection end when the last clone, and the last [`Bus`] or
/// [`SessionBus`] it handed out, is dropped. (A session follower ends when its receiver is
/// dropped.)
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<str>,
    max_frame: usize,
    limits: HistoryLimits,
    /// How long frames and joins wait for JetStream.
    timeout: std::time::Duration,
    client: async_nats::Client,
    js: jetstream::Context,
    /// How channels are spread over the channel streams.
    shards: wire::ChannelShards,
    /// The channel streams, by shard.
    channels: Vec<Stream>,
    private: Stream,
    /// `KANAVA_DM`: the debug-me sessions.
    sessions: Stream,
    /// The debug-me sessions open on this node.
    inboxes: sessions::Inboxes,
    buckets: Buckets,
    link: Arc<Link>,
    ids: Arc<MessageIds>,
    publisher: mpsc::UnboundedSender<Job>,
    /// The channels this node hosts, whose frames [`Bus::deliveries`] delivers.
    hosting: live::Hosting,
    /// What [`Bus::deliveries`] hands out, once.
    deliveries: Mutex<Option<mpsc::Receiver<Delivered>>>,
    /// Where the feed of other nodes' private messages starts, and whether it was taken.
    private_from: u64,
    private_feed_taken: AtomicBool,
    local_presence: presence::Local,
    presence_changes: mpsc::UnboundedSender<presence::Change>,
    remote_presence: watch::Receiver<Arc<RemotePresence>>,
    /// Joins asking the presence watch to check that a uid's holders are alive.
    presence_rechecks: mpsc::Sender<presence::Recheck>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        tracing::debug!(node = %self.node, "cluster store closed");
    }
}

impl ClusterStore {
    /// Connects to the cluster, checks that JetStream is there and that the server's
    /// `max_payload` holds `max_frame` with its headers, creates or updates the streams and
    /// buckets, and starts the background tasks. Every common misconfiguration ends in a
    /// [`ClusterError`] saying what to change.
    pub async fn connect(config: ClusterConfig) -> Result<ClusterStore, ClusterError> {
        if config.timeout.is_zero() || config.timeout > publish::RETRY_FOR {
            return Err(ClusterError::Config(format!(
                "the cluster timeout must be more than 0 and at most {:?}, not {:?}",
                publish::RETRY_FOR,
                config.timeout
            )));
        }
        let connected = crate::setup::connect(&config).await?;
        let (delivered, deliveries) = mpsc::channel(deliveries::BUFFER);
        let hosting = live::Hosting::new(
            connected.client.clone(),
            connected.shards,
            connected.channels.clone(),
            delivered,
            config.timeout,
        );
        let private_from = crate::read::last_stored(
            &connected.private,
            "read the private-message stream's state",
        )
        .await?
            + 1;
        let node: Arc<str> = Arc::from(config.node.as_str());
        let publishing = jetstream::ContextBuilder::new()
            .timeout(publish::ACK_WAIT)
            .build(connected.client.clone());
        let (publisher, publish_task) =
            publish::spawn(publishing, config.timeout, Arc::clone(&connected.link));
        let local_presence = presence::Local::default();
        let (presence_changes, changes) = mpsc::unbounded_channel();
        let writer = tokio::spawn(presence::write(
            connected.buckets.presence.clone(),
            Arc::clone(&node),
            Arc::clone(&local_presence),
            changes,
            config.presence_heartbeat,
        ));
        let (view, remote_presence) = watch::channel(Arc::new(RemotePresence::new()));
        let (presence_rechecks, rechecks) = mpsc::channel(presence::RECHECKS);
        let watcher = tokio::spawn(presence::watch(
            connected.buckets.presence.clone(),
            connected.client.clone(),
            Arc::clone(&node),
            config.presence_heartbeat,
            view,
            rechecks,
        ));
        let beat = tokio::spawn(presence::beat(
            connected.client.clone(),
            Arc::clone(&node),
            Arc::clone(&local_presence),
        ));
        let canaries = tokio::spawn(health::canaries(
            connected.js.clone(),
            connected.client.clone(),
            Arc::clone(&connected.link),
            Arc::clone(&node),
        ));
        let tasks = vec![publish_task, writer, watcher, beat, canaries];
        Ok(ClusterStore {
            inner: Arc::new(Inner {
                max_frame: connected.max_frame,
                ids: Arc::new(MessageIds::new(&node)),
                node,
                limits: config.history,
                timeout: config.timeout,
                client: connected.client,
                js: connected.js,
                shards: connected.shards,
                channels: connected.channels,
                private: connected.private,
                sessions: connected.sessions,
                inboxes: sessions::Inboxes::default(),
                buckets: connected.buckets,
                link: connected.link,
                publisher,
                hosting,
                deliveries: Mutex::new(Some(deliveries)),
                private_from,
                private_feed_taken: AtomicBool::new(false),
                local_presence,
                presence_changes,
                remote_presence,
                presence_rechecks,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// The largest message (payload and headers) the connected server accepts: its
    /// `max_payload`.
    pub fn max_payload(&self) -> usize {
        self.inner.client.server_info().max_payload
    }

    /// The largest frame payload this node publishes: the configured `max_frame` (which
    /// [`connect`](Self::connect) checked against the server), or else the server's
    /// `max_payload` less [`HEADER_ROOM`](crate::HEADER_ROOM).
    pub fn max_frame(&self) -> usize {
        self.inner.max_frame
    }

    /// Runs `work` on the runtime and completes the returned [`Pending`] with its outcome.
    fn run<T, F>(&self, work: impl FnOnce(Arc<Inner>) -> F) -> Pending<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ClusterError>> + Send + 'static,
    {
        let (reply, pending) = Pending::channel();
        let work = work(Arc::clone(&self.inner));
        tokio::spawn(async move {
            let _ = reply.send(work.await.map_err(StoreError::from));
        });
        pending
    }

    /// Queues a frame on the publisher; the receiver gets its sequence once it is stored.
    fn enqueue(&self, frame: Outgoing) -> oneshot::Receiver<Result<u64, ClusterError>> {
        let origin = kanava_store::Origin {
            node: Arc::clone(&self.inner.node),
            member: frame.member,
        };
        let headers = wire::frame_headers(
            &frame.channel,
            frame.kind,
            &frame.sender,
            frame.verified,
            frame.time_ms,
            &origin,
        );
        let subject = self.inner.shards.subject(&frame.channel);
        // A sender's frames are stored in the order it sent them, also across its connections
        // to this node: a reconnected member's frames wait for the last one it sent before.
        let key = format!("{subject} {}", frame.sender.as_str());
        let message = Message::new(subject, headers, frame.payload, &self.inner.ids);
        self.inner.queue(message, key, frame.member)
    }
}

impl Inner {
    /// The stream holding `channel`'s frames.
    fn channel_stream(&self, channel: &ChannelName) -> &Stream {
        let shard = self.shards.shard_of(channel) as usize;
        // `channels` holds one stream per shard; the first is there in any case.
        self.channels.get(shard).unwrap_or(&self.channels[0])
    }

    /// Queues a message on the publisher, to be stored after everything queued before with the
    /// same `key`; the receiver gets its sequence once it is stored.
    fn queue(
        &self,
        message: Message,
        key: String,
        member: u64,
    ) -> oneshot::Receiver<Result<u64, ClusterError>> {
        let (reply, outcome) = oneshot::channel();
        // If the publisher is gone the reply sender is dropped and the outcome says so.
        let _ = self.publisher.send(Job {
            message,
            key,
            member,
            reply,
        });
        outcome
    }

    /// Queues a record of debug-me session `id` on the publisher.
    fn queue_session(
        &self,
        id: &str,
        record: SessionRecord,
    ) -> Result<oneshot::Receiver<Result<u64, ClusterError>>, ClusterError> {
        let subject = wire::session_subject(id)
            .ok_or_else(|| ClusterError::session(id, "not a session id"))?;
        let headers = sessions::headers(id, &record)?;
        let payload = match record {
            SessionRecord::Message(message) => message.frame,
            SessionRecord::Start | SessionRecord::End => Bytes::new(),
        };
        let key = subject.clone();
        let message = Message::with_headers(subject, headers, payload, &self.ids);
        Ok(self.queue(message, key, 0))
    }
}

/// Completes a [`Pending`] with the sequence of a queued publish.
fn stored(
    queued: Result<oneshot::Receiver<Result<u64, ClusterError>>, ClusterError>,
) -> Pending<u64> {
    let (reply, pending) = Pending::channel();
    match queued {
        Ok(outcome) => {
            tokio::spawn(async move {
                let _ = reply.send(published(outcome).await);
            });
        }
        Err(error) => {
            let _ = reply.send(Err(error.into()));
        }
    }
    pending
}

/// The outcome of a queued publish, as a store result.
async fn published(
    outcome: oneshot::Receiver<Result<u64, ClusterError>>,
) -> Result<u64, StoreError> {
    match outcome.await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_) => Err(StoreError::Closed),
    }
}

impl Store for ClusterStore {
    /// Publishes the entries through the bus, in order; the stream numbers them (their given
    /// sequence numbers are ignored). Resolves once all are stored.
    fn append(&self, entries: Vec<NewEntry>) -> Pending<()> {
        let outcomes: Vec<_> = entries
            .into_iter()
            .map(|new| {
                self.enqueue(Outgoing {
                    channel: new.channel,
                    kind: new.entry.kind,
                    sender: new.entry.sender,
                    verified: new.entry.verified,
                    payload: new.entry.payload,
                    time_ms: new.entry.time_ms,
                    member: 0,
                })
            })
            .collect();
        let (reply, pending) = Pending::channel();
        tokio::spawn(async move {
            let mut result = Ok(());
            for outcome in outcomes {
                if let Err(error) = published(outcome).await {
                    result = Err(error);
                }
            }
            let _ = reply.send(result);
        });
        pending
    }

    fn bus(&self) -> Option<Arc<dyn Bus>> {
        Some(Arc::new(self.clone()))
    }

    fn sessions(&self) -> Option<Arc<dyn SessionBus>> {
        Some(Arc::new(self.clone()))
    }

    /// Reads the channel's history up to the last frame the stream leader holds, trying again
    /// while JetStream cannot answer (an election, a lagging replica) until the cluster timeout.
    fn load(&self, channel: ChannelName) -> Pending<StoredChannel> {
        self.run(|inner| async move {
            let started = std::time::Instant::now();
            let mut delay = std::time::Duration::from_millis(50);
            loop {
                let attempt = history::load(
                    &inner.client,
                    inner.shards,
                    inner.channel_stream(&channel),
                    &channel,
                    inner.limits,
                );
                let left = inner.timeout.saturating_sub(started.elapsed());
                let error = match tokio::time::timeout(left, attempt).await {
                    Ok(Ok(stored)) => return Ok(stored),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                if started.elapsed() + delay >= inner.timeout {
                    return Err(ClusterError::Unavailable {
                        what: "serve a channel's history",
                        waited: started.elapsed(),
                        source: error.into(),
                    });
                }
                tracing::debug!(%channel, %error, "reading a channel's history again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(1));
            }
        })
    }

    fn purge_idle(&self, idle_before_ms: u64, keep: Vec<ChannelName>) -> Pending<Vec<ChannelName>> {
        self.run(|inner| async move {
            let purged = history::purge_idle(
                inner.shards,
                &inner.channels,
                &inner.buckets,
                idle_before_ms,
                &keep,
            )
            .await?;
            accounts::purge_private(&inner.private, idle_before_ms).await?;
            accounts::purge_bans(&inner.buckets, idle_before_ms).await?;
            Ok(purged)
        })
    }

    /// Resolves once the presence changes made before are written (or, if NATS does not answer,
    /// after [`PRESENCE_FLUSH_LIMIT`]: presence also expires by itself): a graceful stop
    /// withdraws its presence through this before its members are closed. Frames need nothing:
    /// whatever JetStream acknowledged is already stored (on a majority of the replicas), and
    /// nothing is acknowledged before.
    fn sync(&self) -> Pending<()> {
        let (done, flushed) = oneshot::channel();
        let _ = self
            .inner
            .presence_changes
            .send(presence::Change::Flush(done));
        self.run(|_| async move {
            if tokio::time::timeout(PRESENCE_FLUSH_LIMIT, flushed)
                .await
                .is_err()
            {
                tracing::warn!("presence changes not written in time; they expire by themselves");
            }
            Ok(())
        })
    }

    fn history_before(
        &self,
        channel: ChannelName,
        before_seq: u64,
        limit: usize,
    ) -> Pending<Vec<Entry>> {
        self.run(|inner| async move {
            let stream = inner.channel_stream(&channel);
            history::before(
                &inner.client,
                inner.shards,
                stream,
                &channel,
                inner.limits,
                before_seq,
                limit,
            )
            .await
        })
    }

    fn identity(&self, nick: Nick) -> Pending<Option<Identity>> {
        self.run(|inner| async move { accounts::identity(&inner.buckets, &nick).await })
    }

    fn claim_identity(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<Claim> {
        self.run(|inner| async move { accounts::claim(&inner.buckets, &nick, &key, sharing).await })
    }

    fn add_key(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<KeyAdded> {
        self.run(
            |inner| async move { accounts::add_key(&inner.buckets, &nick, &key, sharing).await },
        )
    }

    fn rename_identity(
        &self,
        from: Nick,
        to: Nick,
        now_ms: u64,
        cooldown_ms: u64,
    ) -> Pending<Rename> {
        self.run(move |inner| async move {
            accounts::rename(&inner.buckets, &from, &to, now_ms, cooldown_ms).await
        })
    }

    fn expire_identities(&self, unused_before_ms: u64) -> Pending<Vec<Nick>> {
        self.run(move |inner| async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            accounts::expire(&inner.buckets, unused_before_ms, now_ms).await
        })
    }

    fn remove_key(&self, nick: Nick, fingerprint: String) -> Pending<bool> {
        self.run(
            |inner| async move { accounts::remove_key(&inner.buckets, &nick, &fingerprint).await },
        )
    }

    fn identities(&self) -> Pending<Vec<Identity>> {
        self.run(|inner| async move { accounts::identities(&inner.buckets).await })
    }

    fn release_identity(&self, nick: Nick) -> Pending<bool> {
        self.run(|inner| async move { accounts::release(&inner.buckets, &nick).await })
    }

    fn send_private(&self, message: PrivateMessage, unread: bool) -> Pending<PrivateMessage> {
        self.run(|inner| async move {
            accounts::send_private(&inner.js, &inner.ids, &inner.node, message, unread).await
        })
    }

    fn private_feed(&self) -> Option<mpsc::Receiver<PrivateMessage>> {
        let (sender, receiver) = mpsc::channel(deliveries::BUFFER);
        if !self.inner.private_feed_taken.swap(true, Ordering::SeqCst) {
            let task = tokio::spawn(deliveries::run_private(
                self.inner.private.clone(),
                self.inner.private_from,
                Arc::clone(&self.inner.node),
                sender,
            ));
            if let Ok(mut tasks) = self.inner.tasks.lock() {
                tasks.push(task);
            }
        }
        Some(receiver)
    }

    fn take_unread_private(&self, nick: Nick) -> Pending<Vec<PrivateMessage>> {
        self.run(|inner| async move {
            accounts::take_unread(&inner.private, &inner.buckets, &nick).await
        })
    }

    fn ban(&self, bans: Vec<Ban>) -> Pending<()> {
        self.run(|inner| async move { accounts::ban(&inner.buckets, &bans).await })
    }

    fn unban(&self, fingerprint_or_nick: String) -> Pending<Vec<Ban>> {
        self.run(|inner| async move { accounts::unban(&inner.buckets, &fingerprint_or_nick).await })
    }

    fn bans(&self, now_ms: u64) -> Pending<Vec<Ban>> {
        self.run(|inner| async move { accounts::bans(&inner.buckets, now_ms).await })
    }

    fn ban_of(&self, fingerprint: String, now_ms: u64) -> Pending<Option<Ban>> {
        self.run(
            |inner| async move { accounts::ban_of(&inner.buckets, &fingerprint, now_ms).await },
        )
    }

    fn set_topic(&self, topic: Topic) -> Pending<()> {
        self.run(|inner| async move { accounts::set_topic(&inner.buckets, &topic).await })
    }

    fn topic(&self, room: ChannelName) -> Pending<Option<Topic>> {
        self.run(|inner| async move { accounts::topic(&inner.buckets, &room).await })
    }
}

impl Bus for ClusterStore {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn publish(&self, frame: Outgoing) -> Pending<u64> {
        stored(Ok(self.enqueue(frame)))
    }

    /// Every frame stored of the channels this node hosts, each channel's in its order. The
    /// first call takes them; later calls get a receiver that yields nothing.
    fn deliveries(&self) -> mpsc::Receiver<Delivered> {
        let taken = self
            .inner
            .deliveries
            .lock()
            .ok()
            .and_then(|mut deliveries| deliveries.take());
        taken.unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Subscribes to the channel's live frames and learns its last sequence from the stream
    /// leader; resolves once both are done, or fails after the cluster timeout (1013 for the
    /// joiner), the subscription going on trying until released.
    fn host(&self, channel: ChannelName) -> Pending<()> {
        let hosted = self.inner.hosting.host(channel);
        let (reply, pending) = Pending::channel();
        tokio::spawn(async move {
            let _ = reply.send(hosted.await.map_err(StoreError::from));
        });
        pending
    }

    fn release(&self, channel: ChannelName) {
        self.inner.hosting.release(&channel);
    }

    fn set_presence(&self, channel: ChannelName, members: Vec<Present>) {
        if let Ok(mut local) = self.inner.local_presence.lock() {
            if members.is_empty() {
                local.remove(&channel);
            } else {
                local.insert(channel.clone(), members);
            }
        }
        let _ = self
            .inner
            .presence_changes
            .send(presence::Change::Channel(channel));
    }

    fn remote_presence(&self) -> watch::Receiver<Arc<RemotePresence>> {
        self.inner.remote_presence.clone()
    }

    /// Probes the nodes announcing `uid` in `channel` (core NATS requests that NATS answers
    /// "no responders" for a node that is gone); resolves once the view has dropped the gone
    /// ones, with whether some holder did not answer in time. With too many joins waiting
    /// already, resolves at once, checking nothing.
    fn recheck_presence(&self, channel: ChannelName, uid: Uid) -> Pending<bool> {
        let (done, checked) = oneshot::channel();
        let recheck = presence::Recheck { channel, uid, done };
        if self.inner.presence_rechecks.try_send(recheck).is_err() {
            tracing::debug!("too many presence rechecks waiting; this join is not rechecked");
        }
        let (reply, pending) = Pending::channel();
        tokio::spawn(async move {
            let _ = reply.send(Ok(checked.await.unwrap_or(false)));
        });
        pending
    }

    fn health(&self) -> BusHealth {
        self.inner.link.health(&self.inner.client)
    }
}

/// Sessions live on their user's node, in stream `KANAVA_DM`; see the `sessions` module.
impl SessionBus for ClusterStore {
    fn node(&self) -> &str {
        &self.inner.node
    }

    /// Subscribes to the session's inbox subject, then stores the start marker: once another
    /// node can see the session, it can send messages into it.
    fn open(&self, id: &str) -> Pending<mpsc::Receiver<InboundMessage>> {
        let id = id.to_owned();
        let inner = Arc::clone(&self.inner);
        let (reply, pending) = Pending::channel();
        tokio::spawn(async move {
            let opened = async {
                let requests = sessions::subscribe(&inner.client, &id).await?;
                published(inner.queue_session(&id, SessionRecord::Start)?).await?;
                tracing::debug!(session = %id, "debug-me session announced to the cluster");
                Ok(sessions::serve(
                    inner.client.clone(),
                    &inner.inboxes,
                    id,
                    requests,
                ))
            };
            let _ = reply.send(opened.await);
        });
        pending
    }

    fn record(&self, id: &str, message: SessionMessage) -> Pending<u64> {
        stored(
            self.inner
                .queue_session(id, SessionRecord::Message(message)),
        )
    }

    /// Stops taking messages in for the session, then stores the end marker after every
    /// message recorded before.
    fn end(&self, id: &str) -> Pending<u64> {
        sessions::close(&self.inner.inboxes, id);
        stored(self.inner.queue_session(id, SessionRecord::End))
    }

    fn follow(&self, id: &str) -> Pending<Option<mpsc::Receiver<SessionEvent>>> {
        let (reply, pending) = Pending::channel();
        tokio::spawn(sessions::follow(
            self.inner.sessions.clone(),
            id.to_owned(),
            reply,
        ));
        pending
    }

    fn send(&self, id: &str, message: SessionMessage) -> Pending<()> {
        let id = id.to_owned();
        self.run(|inner| async move { sessions::send(&inner.client, &id, message).await })
    }
}
