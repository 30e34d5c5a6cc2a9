//! The channel registry and the operations transports call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kanava_core::{
    ChannelName, DiskRefusal, Entry, FrameKind, HistoryLimits, MemoryBudget, NewEntry, Uid,
};
use kanava_store::{Bus, Delivered, Outgoing, Pending, Present, RemotePresence, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::channel::{Channel, ChannelState, MemberId, MemberSlot, Released, StoredTo};
use crate::outbox::{self, KickReason, Outbox, QueueLimits};
use crate::{Accounts, Chat, HubError, UserLimits, UserRates};

/// How the hub retains history and bounds each member.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Per-channel history caps.
    pub history: HistoryLimits,
    /// Per-member outbound queue bounds.
    pub queue: QueueLimits,
    /// Payload bytes one member may have awaiting commit; a larger frame waits until the
    /// member has nothing else in flight. Keeps the store's queue short, so that a busy sender
    /// cannot delay other channels' frames behind its backlog.
    pub max_in_flight_bytes: usize,
    /// The server's budget of buffered payload: members' backlogs are charged to it, and a
    /// member whose backlog does not fit is closed ([`KickReason::MemoryBudget`]).
    pub memory: Arc<MemoryBudget>,
    /// What each user may do over all their connections on every transport.
    pub user_rates: UserRates,
}

impl Default for HubConfig {
    /// No memory budget beyond the queue limits.
    fn default() -> Self {
        Self {
            history: HistoryLimits::default(),
            queue: QueueLimits::default(),
            max_in_flight_bytes: 256 * 1024,
            memory: MemoryBudget::new(usize::MAX),
            user_rates: UserRates::default(),
        }
    }
}

/// The hub. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
    /// The address of the connection this handle serves, if any: what its members store is
    /// charged to it in the disk budget, and the store's writer shares its time by it.
    source: Option<IpAddr>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .finish()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    /// In a cluster, the bus that numbers and relays frames, and the uids on other nodes.
    cluster: Option<Cluster>,
    config: HubConfig,
    channels: Mutex<HashMap<ChannelName, Arc<Channel>>>,
    /// Kick handles of every member, for shutdown.
    members: Mutex<HashMap<MemberId, Arc<outbox::Shared>>>,
    next_member: AtomicU64,
    shutting_down: AtomicBool,
    /// Private messages and room notices across transports.
    chat: Chat,
    /// Per-user rates, shared by every transport.
    user_limits: Arc<UserLimits>,
}

/// What a successful join returns.
#[derive(Debug)]
pub struct Joined {
    /// The membership; dropping it leaves the channel.
    pub member: Member,
    /// The channel's history at the moment of joining, oldest first, to be sent before anything
    /// from `outbox`.
    pub history: Vec<Arc<Entry>>,
    /// Live frames from the other members, and the kick signal.
    pub outbox: Outbox,
}

/// A connection's membership of one channel. Dropping it leaves the channel.
pub struct Member {
    hub: Hub,
    channel: Arc<Channel>,
    uid: Uid,
    verified: bool,
    id: MemberId,
    in_flight: Arc<Semaphore>,
}

/// How a member holds its uid in a channel.
#[derive(Debug, Clone, Copy)]
enum Holding {
    /// Alone (a Mles connection), having proved the uid its bound name or not.
    Exclusive { verified: bool },
    /// Shared with the other sessions of a user logged in with a key of the name (SSH).
    Shared,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("channel", &self.channel.name)
            .field("uid", &self.uid)
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The hub's side of a cluster link.
struct Cluster {
    bus: Arc<dyn Bus>,
    remote: watch::Receiver<Arc<RemotePresence>>,
}

impl Hub {
    /// A hub over `store`. When the store has a [`Bus`] (a cluster), the hub relays what the bus
    /// delivers, follows the other nodes' presence, and hands the private messages stored on
    /// them to its [`Chat`], in tasks on the current Tokio runtime.
    pub fn new(store: Arc<dyn Store>, config: HubConfig) -> Self {
        let bus = store.bus();
        let cluster = bus.as_ref().map(|bus| Cluster {
            bus: Arc::clone(bus),
            remote: bus.remote_presence(),
        });
        let chat = Chat::new(cluster.as_ref().map(|c| c.remote.clone()));
        if let Some(feed) = store.private_feed() {
            chat.pump(feed);
        }
        let hub = Self {
            source: None,
            inner: Arc::new(Inner {
                chat,
                user_limits: Arc::new(UserLimits::new(config.user_rates)),
                store,
                config,
                cluster,
                channels: Mutex::new(HashMap::new()),
                members: Mutex::new(HashMap::new()),
                next_member: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
            }),
        };
        if let Some(cluster) = &hub.inner.cluster {
            let weak = Arc::downgrade(&hub.inner);
            tokio::spawn(relay_deliveries(weak.clone(), cluster.bus.deliveries()));
            tokio::spawn(follow_presence(weak, cluster.remote.clone()));
        }
        hub
    }

    /// A handle for one connection from `source`: what its members store is charged to that
    /// address (an IPv4 address or IPv6 /64) in the disk budget, and refused past its share.
    pub fn for_source(&self, source: IpAddr) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            source: Some(source),
        }
    }

    /// The uids present in `channel` on other nodes (none without a cluster).
    fn remote_members(&self, channel: &ChannelName) -> Vec<Present> {
        self.inner
            .cluster
            .as_ref()
            .and_then(|c| c.remote.borrow().get(channel).cloned())
            .unwrap_or_default()
    }

    /// Tells the other nodes who is in `channel` here now; nothing once shutting down, when
    /// [`shutdown`](Self::shutdown) has withdrawn this node's presence.
    fn announce(&self, channel: &ChannelName, present: Vec<Present>) {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        if let Some(cluster) = &self.inner.cluster {
            cluster.bus.set_presence(channel.clone(), present);
        }
    }

    /// Tells the other nodes that nobody is here any more, in every channel, and waits (bounded)
    /// until they can know: the members of a node that stops may rejoin on another node at once.
    async fn withdraw_presence(&self) -> Result<(), HubError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(());
        };
        let channels: Vec<Arc<Channel>> = lock(&self.inner.channels).values().cloned().collect();
        for channel in channels {
            // Under the channel's lock, so that no join announces itself after this.
            let _state = channel.lock();
            cluster.bus.set_presence(channel.name.clone(), Vec::new());
        }
        self.inner.store.sync().await?;
        Ok(())
    }

    /// Has the bus check that the nodes announcing `uid` in `channel` are alive; any dead one's
    /// presence is gone from [`remote_members`](Self::remote_members) once this returns.
    async fn recheck_presence(&self, channel: &ChannelName, uid: &Uid) -> bool {
        let Some(cluster) = &self.inner.cluster else {
            return false;
        };
        let checked = cluster
            .bus
            .recheck_presence(channel.clone(), uid.clone())
            .await;
        checked.unwrap_or_else(|error| {
            tracing::debug!(%error, %channel, %uid, "could not recheck presence");
            false
        })
    }

    /// The hub's configuration.
    pub fn config(&self) -> HubConfig {
        self.inner.config.clone()
    }

    /// Joins `uid` to `channel`: registers it, snapshots the history, and appends `header` (a join
    /// header, replayed to later joiners but not relayed live), all atomically with respect to the
    /// channel's traffic, so every frame reaches the new member exactly once. `verified` says
    /// whether the member proved the uid is its bound name; its entries carry it.
    ///
    /// The uid must not be in the channel already (Mles refuses duplicates).
    pub async fn join(
        &self,
        channel: ChannelName,
        uid: Uid,
        verified: bool,
        header: Bytes,
    ) -> Result<Joined, HubError> {
        self.join_as(channel, uid, Some(header), Holding::Exclusive { verified })
            .await
    }

    /// Joins like [`join`](Self::join), but as one of possibly several sessions of one user
    /// logged in with a key of the name (so verified): other shared members with the same uid
    /// may be present, an exclusive one may not.
    pub async fn join_shared(
        &self,
        channel: ChannelName,
        uid: Uid,
        header: Bytes,
    ) -> Result<Joined, HubError> {
        self.join_as(channel, uid, Some(header), Holding::Shared)
            .await
    }

    /// Joins like [`join_shared`](Self::join_shared), but stores no join header: for a
    /// membership that only posts and leaves (an SSH `say`), which would otherwise add a join
    /// entry to the history before every message it posts.
    pub async fn join_shared_without_header(
        &self,
        channel: ChannelName,
        uid: Uid,
    ) -> Result<Joined, HubError> {
        self.join_as(channel, uid, None, Holding::Shared).await
    }

    async fn join_as(
        &self,
        channel: ChannelName,
        uid: Uid,
        header: Option<Bytes>,
        holding: Holding,
    ) -> Result<Joined, HubError> {
        let (exclusive, verified) = match holding {
            Holding::Exclusive { verified } => (true, verified),
            Holding::Shared => (false, true),
        };
        let (mut rechecked, mut holder_unanswered) = (false, false);
        'attempt: loop {
            if self.inner.shutting_down.load(Ordering::Acquire) {
                return Err(HubError::ShuttingDown);
            }
            let entry = {
                let mut channels = lock(&self.inner.channels);
                let entry = channels.entry(channel.clone()).or_insert_with(|| {
                    Arc::new(Channel::new(channel.clone(), self.inner.config.history))
                });
                Arc::clone(entry)
            };
            if let Err(error) = self.load(&entry).await {
                self.retire_if_idle(&entry);
                return Err(error);
            }
            let remote = self.remote_members(&channel);
            let id = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
            let (sender, outbox) = Outbox::new(self.inner.config.queue, &self.inner.config.memory);
            let joined = 'joined: {
                let mut state = entry.lock();
                if state.retired {
                    continue 'attempt;
                }
                state.set_remote(&remote);
                if !state.admits(&uid, exclusive) {
                    let elsewhere = state.refused_only_elsewhere(&uid, exclusive);
                    if elsewhere && holder_unanswered {
                        return Err(HubError::HeldByUnresponsiveNode { uid, channel });
                    }
                    if rechecked || !elsewhere {
                        return Err(HubError::Duplicate { uid, channel });
                    }
                    break 'joined None;
                }
                // A member joining again with the header the history already holds stores
                // nothing: rejoining must not push messages out of the history.
                let header = header
                    .clone()
                    .filter(|h| !state.holds_header(&uid, verified, h));
                if let Some(header) = &header {
                    self.charge(&uid, header.len())?;
                }
                let joined_at = state.next_seq;
                let (history, live_from) = state.replay_at_join();
                state.insert_member(
                    id,
                    MemberSlot {
                        uid: uid.clone(),
                        verified,
                        joined_at,
                        live_from,
                        outbox: sender,
                    },
                    exclusive,
                );
                self.announce(&channel, state.local_presence());
                let submitted = header.map(|header| {
                    self.submit(
                        &entry,
                        &mut state,
                        FrameKind::Header,
                        (uid.clone(), verified),
                        header,
                        id,
                    )
                });
                Some((history, submitted))
            };
            let Some((history, submitted)) = joined else {
                // Held only on other nodes: a node that just died may still be announced.
                rechecked = true;
                holder_unanswered = self.recheck_presence(&channel, &uid).await;
                continue;
            };
            lock(&self.inner.members).insert(id, Arc::clone(outbox.shared()));
            // A shutdown that began while we joined must still reach this member.
            if self.inner.shutting_down.load(Ordering::Acquire) {
                outbox::kick(outbox.shared(), KickReason::Shutdown);
            }
            // The header holds a permit like any frame, so that `flush` waits for it too.
            let in_flight = Arc::new(Semaphore::new(self.inner.config.max_in_flight_bytes.max(1)));
            if let Some(submitted) = submitted {
                let header_permit = Arc::clone(&in_flight).try_acquire_owned().ok();
                self.complete(&entry, submitted, id, header_permit, None);
            }
            metrics::gauge!("kanava_members").increment(1.0);
            metrics::counter!("kanava_joins_total").increment(1);
            let member = Member {
                hub: self.clone(),
                channel: entry,
                uid,
                verified,
                id,
                in_flight,
            };
            return Ok(Joined {
                member,
                history,
                outbox,
            });
        }
    }

    /// Reads the channel's history from the store once, before its first use.
    async fn load(&self, channel: &Arc<Channel>) -> Result<(), HubError> {
        channel
            .loaded
            .get_or_try_init(|| async {
                // The bus delivers the channel's frames from before its history is read on, so
                // that none falls between the two.
                if let Some(cluster) = &self.inner.cluster
                    && !channel.hosted.swap(true, Ordering::AcqRel)
                {
                    cluster.bus.host(channel.name.clone()).await?;
                }
                let stored = self.inner.store.load(channel.name.clone()).await?;
                let mut released = Released::default();
                {
                    let mut state = channel.lock();
                    if self.inner.cluster.is_some() {
                        state.loaded_from_bus(stored.entries, &mut released);
                    } else {
                        state.next_seq = stored.next_seq;
                        for entry in stored.entries {
                            state.history.push(Arc::new(entry));
                        }
                    }
                }
                self.count_released(channel, &released);
                metrics::gauge!("kanava_channels").increment(1.0);
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(())
    }

    /// Hands a frame of `member`, already [charged](Self::charge), to the store: on a single
    /// node it is numbered here and appended under this handle's source; in a cluster it is
    /// published to the bus, which numbers it. Called under the channel lock, so the store
    /// receives each channel's frames in order.
    fn submit(
        &self,
        channel: &Channel,
        state: &mut ChannelState,
        kind: FrameKind,
        (sender, verified): (Uid, bool),
        payload: Bytes,
        member: MemberId,
    ) -> Submitted {
        match &self.inner.cluster {
            Some(cluster) => {
                let time_ms = now_ms();
                let pending = cluster.bus.publish(Outgoing {
                    channel: channel.name.clone(),
                    kind,
                    sender,
                    verified,
                    payload,
                    time_ms,
                    member,
                });
                Submitted::Bus(pending, time_ms)
            }
            None => {
                let entry = state.sequence(kind, sender, verified, payload, now_ms(), member);
                let pending = self.inner.store.append_from(
                    self.source,
                    vec![NewEntry {
                        channel: channel.name.clone(),
                        entry: Entry::clone(&entry),
                    }],
                );
                Submitted::Local(entry, pending)
            }
        }
    }

    /// Charges a frame about to be stored to this handle's source in the disk budget; refuses
    /// it when the source's share or the total is used up. In a cluster, NATS keeps the
    /// history and bounds it.
    fn charge(&self, sender: &Uid, payload_len: usize) -> Result<(), HubError> {
        if self.inner.cluster.is_some() {
            return Ok(());
        }
        self.inner
            .store
            .charge_frame(self.source, sender, payload_len)
            .map_err(|refusal| {
                let reason = match refusal {
                    DiskRefusal::Source => "source",
                    DiskRefusal::Total => "total",
                };
                metrics::counter!("kanava_disk_refusals_total", "reason" => reason).increment(1);
                HubError::Disk(refusal)
            })
    }

    /// Waits for the store's verdict on a frame. On a single node this releases the channel's
    /// confirmed prefix; in a cluster the bus delivers the frame, and only a failure is acted on
    /// here: its sender is closed.
    fn complete(
        &self,
        channel: &Arc<Channel>,
        submitted: Submitted,
        origin: MemberId,
        permit: Option<OwnedSemaphorePermit>,
        stored_to: Option<StoredTo>,
    ) {
        let hub = self.clone();
        let channel = Arc::clone(channel);
        let (entry, pending) = match submitted {
            Submitted::Local(entry, pending) => (entry, pending),
            Submitted::Bus(pending, time_ms) => {
                tokio::spawn(async move {
                    let stored = pending.await;
                    if let Err(error) = &stored {
                        let reason = if matches!(error, StoreError::Unavailable(_)) {
                            tracing::warn!(channel = %channel.name, %error, "frame not confirmed in time; its sender is closed");
                            KickReason::StoreUnavailable
                        } else {
                            tracing::error!(channel = %channel.name, %error, "frame not stored; its sender is closed");
                            KickReason::StoreFailed
                        };
                        channel.lock().kick_member(origin, reason);
                    }
                    drop(permit);
                    match (stored, stored_to) {
                        (Ok(seq), Some(stored_to)) => {
                            channel.lock().when_delivered(seq, time_ms, stored_to);
                        }
                        (Err(error), Some(stored_to)) => {
                            let _ = stored_to.send(Err(error));
                        }
                        (_, None) => {}
                    }
                });
                return;
            }
        };
        tokio::spawn(async move {
            let (committed, stored_to) = match pending.await {
                Ok(()) => (true, stored_to),
                Err(error) => {
                    tracing::error!(channel = %channel.name, %error, "frame not stored; its sender is closed");
                    if let Some(stored_to) = stored_to {
                        let _ = stored_to.send(Err(error));
                    }
                    (false, None)
                }
            };
            let mut released = Released::default();
            let idle = {
                let mut state = channel.lock();
                state.confirm(entry.seq, committed, stored_to, &mut released);
                state.is_idle()
            };
            drop(permit);
            hub.count_released(&channel, &released);
            if idle {
                hub.retire_if_idle(&channel);
            }
        });
    }

    /// Counts what releasing frames did; members closed for overflow leave the presence.
    fn count_released(&self, channel: &Channel, released: &Released) {
        if released.deliveries > 0 {
            metrics::counter!("kanava_frames_out_total").increment(released.deliveries);
            metrics::counter!("kanava_bytes_out_total").increment(released.delivered_bytes);
        }
        if released.overflows > 0 {
            metrics::counter!("kanava_queue_overflows_total").increment(released.overflows);
            metrics::gauge!("kanava_members").decrement(released.overflows as f64);
            let present = channel.lock().local_presence();
            self.announce(&channel.name, present);
        }
    }

    /// Drops a channel from memory once nobody is in it and nothing awaits commit; its history
    /// stays in the store and is read again on the next join.
    fn retire_if_idle(&self, channel: &Arc<Channel>) {
        let mut channels = lock(&self.inner.channels);
        let mut state = channel.lock();
        if state.retired || !state.is_idle() {
            return;
        }
        if channels
            .get(&channel.name)
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            channels.remove(&channel.name);
        }
        state.retired = true;
        if let Some(cluster) = &self.inner.cluster
            && channel.hosted.swap(false, Ordering::AcqRel)
        {
            cluster.bus.release(channel.name.clone());
        }
        if channel.loaded.initialized() {
            metrics::gauge!("kanava_channels").decrement(1.0);
        }
    }

    /// Deletes channels idle for longer than `max_idle` that have nobody in them; returns their
    /// names.
    pub async fn purge_idle(&self, max_idle: Duration) -> Result<Vec<ChannelName>, HubError> {
        let cutoff = now_ms().saturating_sub(max_idle.as_millis() as u64);
        let pending = {
            // Holding the registry lock while submitting orders the purge before any load of a
            // channel created after this point.
            let channels = lock(&self.inner.channels);
            let mut keep: Vec<ChannelName> = channels.keys().cloned().collect();
            if let Some(cluster) = &self.inner.cluster {
                keep.extend(cluster.remote.borrow().keys().cloned());
            }
            self.inner.store.purge_idle(cutoff, keep)
        };
        Ok(pending.await?)
    }

    /// Stops taking members, withdraws this node's presence from the cluster (so that its
    /// members may rejoin elsewhere as soon as they are closed), kicks every member with
    /// [`KickReason::Shutdown`], and waits until everything submitted so far is durable.
    pub async fn shutdown(&self) -> Result<(), HubError> {
        self.inner.shutting_down.store(true, Ordering::Release);
        let withdrawn = self.withdraw_presence().await;
        let members: Vec<_> = lock(&self.inner.members).values().cloned().collect();
        for shared in members {
            outbox::kick(&shared, KickReason::Shutdown);
        }
        self.inner.store.sync().await?;
        withdrawn
    }

    /// The uids present in `channel`, on this node or (in a cluster) another, sorted, each
    /// once, with how it is held (verified or not).
    pub fn members(&self, channel: &ChannelName) -> Vec<Present> {
        let loaded = lock(&self.inner.channels).get(channel).cloned();
        match loaded {
            Some(c) => c.lock().present(),
            None => {
                let mut present = self.remote_members(channel);
                present.sort();
                present.dedup_by(|a, b| a.uid == b.uid);
                present
            }
        }
    }

    /// How many distinct uids are in `channel`, without listing them.
    pub fn member_count(&self, channel: &ChannelName) -> usize {
        let loaded = lock(&self.inner.channels).get(channel).cloned();
        match loaded {
            Some(c) => c.lock().uid_count(),
            None => self.members(channel).len(),
        }
    }

    /// The channels that have members, on this node or (in a cluster) another, sorted, with how
    /// many distinct uids each has.
    pub fn rooms(&self) -> Vec<(ChannelName, usize)> {
        let channels: Vec<Arc<Channel>> = lock(&self.inner.channels).values().cloned().collect();
        let mut rooms: HashMap<ChannelName, usize> = channels
            .iter()
            .map(|c| (c.name.clone(), c.lock().uid_count()))
            .collect();
        if let Some(cluster) = &self.inner.cluster {
            let remote: Vec<ChannelName> = cluster.remote.borrow().keys().cloned().collect();
            for name in remote {
                if let std::collections::hash_map::Entry::Vacant(slot) = rooms.entry(name) {
                    let count = self.members(slot.key()).len();
                    slot.insert(count);
                }
            }
        }
        let mut rooms: Vec<(ChannelName, usize)> =
            rooms.into_iter().filter(|(_, n)| *n > 0).collect();
        rooms.sort();
        rooms
    }

    /// Whether `uid` is in some channel on another node of the cluster.
    pub fn present_elsewhere(&self, uid: &Uid) -> bool {
        self.inner.chat.present_elsewhere(uid.as_str())
    }

    /// Private messages and room notices across every transport: each registers a sink, and
    /// sends through it. In a cluster, the private messages stored on other nodes reach the
    /// sinks here by themselves.
    pub fn chat(&self) -> Chat {
        self.inner.chat.clone()
    }

    /// How debug-me sessions reach the other nodes, when the hub is one node of a cluster.
    pub fn sessions(&self) -> Option<Arc<dyn kanava_store::SessionBus>> {
        self.inner.store.sessions()
    }

    /// Whether the store takes writes now.
    pub fn store_health(&self) -> kanava_store::StoreHealth {
        self.inner.store.health()
    }

    /// The cluster link's state, when the hub is one node of a cluster.
    pub fn cluster_health(&self) -> Option<kanava_store::BusHealth> {
        self.inner.cluster.as_ref().map(|c| c.bus.health())
    }

    /// A channel's history as a joiner would be replayed it now, without joining.
    pub async fn history(&self, channel: ChannelName) -> Result<Vec<Arc<Entry>>, HubError> {
        let loaded = lock(&self.inner.channels).get(&channel).cloned();
        if let Some(channel) = loaded.filter(|c| c.loaded.initialized()) {
            return Ok(channel.lock().replay_at_join().0);
        }
        let stored = self.inner.store.load(channel).await?;
        Ok(stored.entries.into_iter().map(Arc::new).collect())
    }

    /// Up to `limit` stored entries of `channel` older than `before_seq`, oldest first, for a
    /// reader scrolling back past what it holds.
    pub async fn history_before(
        &self,
        channel: ChannelName,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, HubError> {
        Ok(self
            .inner
            .store
            .history_before(channel, before_seq, limit)
            .await?)
    }

    /// What each user may still do now (messages, announcements, new rooms), counted over all
    /// their connections on every transport.
    pub fn user_limits(&self) -> Arc<UserLimits> {
        Arc::clone(&self.inner.user_limits)
    }

    /// The account records: names and keys, private messages, bans, topics.
    pub fn accounts(&self) -> Accounts {
        Accounts::new(Arc::clone(&self.inner.store))
    }

    /// Number of channels held in memory (those with members or frames awaiting commit).
    pub fn active_channels(&self) -> usize {
        lock(&self.inner.channels).len()
    }
}

impl Member {
    /// The member's uid.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// Whether the member proved its uid is its bound name.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// The member's channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel.name
    }

    /// The number of distinct uids in the channel, updated as people come and go.
    pub fn presence(&self) -> tokio::sync::watch::Receiver<usize> {
        self.channel.lock().presence.subscribe()
    }

    /// Sends a frame to the channel. It takes its place in the channel's order now and reaches
    /// the other members once it is durable. Waits only while this member already has
    /// [`HubConfig::max_in_flight_bytes`] awaiting commit.
    pub async fn publish(&self, kind: FrameKind, payload: Bytes) -> Result<(), HubError> {
        self.submit(kind, payload, None).await
    }

    /// Sends a frame like [`publish`](Self::publish), then waits until it is stored and
    /// released to the channel, and returns it as the others receive it, with its seq: for a
    /// sender that shows its own message in the channel's order (its own frames never come
    /// back through its outbox).
    pub async fn publish_stored(&self, kind: FrameKind, payload: Bytes) -> Result<Entry, HubError> {
        let (stored_to, stored) = tokio::sync::oneshot::channel();
        self.submit(kind, payload.clone(), Some(stored_to)).await?;
        let (seq, time_ms) = stored.await.map_err(|_| HubError::ShuttingDown)??;
        Ok(Entry {
            seq,
            kind,
            sender: self.uid.clone(),
            verified: self.verified,
            payload,
            time_ms,
        })
    }

    async fn submit(
        &self,
        kind: FrameKind,
        payload: Bytes,
        stored_to: Option<StoredTo>,
    ) -> Result<(), HubError> {
        let size = payload.len();
        // Every frame holds at least one permit; one larger than the whole budget takes all of it.
        let budget = self.hub.inner.config.max_in_flight_bytes.max(1);
        let permits = u32::try_from(size.clamp(1, budget)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.in_flight)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| HubError::ShuttingDown)?;
        self.hub.charge(&self.uid, size)?;
        let submitted = {
            let mut state = self.channel.lock();
            self.hub.submit(
                &self.channel,
                &mut state,
                kind,
                (self.uid.clone(), self.verified),
                payload,
                self.id,
            )
        };
        metrics::counter!("kanava_frames_in_total").increment(1);
        metrics::counter!("kanava_bytes_in_total").increment(size as u64);
        self.hub
            .complete(&self.channel, submitted, self.id, Some(permit), stored_to);
        Ok(())
    }
}

impl Member {
    /// Waits until every frame this member has published, its join header included, is
    /// durable (or failed) and released to the channel.
    pub async fn flush(&self) -> Result<(), HubError> {
        let budget = self.hub.inner.config.max_in_flight_bytes.max(1);
        let all = u32::try_from(budget).unwrap_or(u32::MAX);
        let permits = self
            .in_flight
            .acquire_many(all)
            .await
            .map_err(|_| HubError::ShuttingDown)?;
        drop(permits);
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        lock(&self.hub.inner.members).remove(&self.id);
        let idle = {
            let mut state = self.channel.lock();
            if state.remove_member(self.id) {
                metrics::gauge!("kanava_members").decrement(1.0);
            }
            self.hub
                .announce(&self.channel.name, state.local_presence());
            state.is_idle()
        };
        if idle {
            self.hub.retire_if_idle(&self.channel);
        }
    }
}

/// A frame handed to the store: numbered here and awaiting its append (one node), or published
/// to the bus, which numbers and delivers it (a cluster).
enum Submitted {
    Local(Arc<Entry>, Pending<()>),
    /// A frame handed to the cluster's bus: its seq once stored, and the time it was given.
    Bus(Pending<u64>, u64),
}

/// Hands each frame the bus delivers to its channel on this node, if the channel is held here.
async fn relay_deliveries(hub: Weak<Inner>, mut deliveries: mpsc::Receiver<Delivered>) {
    while let Some(delivered) = deliveries.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub {
            inner,
            source: None,
        };
        let Some(channel) = lock(&hub.inner.channels).get(&delivered.channel).cloned() else {
            continue;
        };
        let local = hub
            .inner
            .cluster
            .as_ref()
            .is_some_and(|c| *delivered.origin.node == *c.bus.node());
        let origin = local.then_some(delivered.origin.member);
        let mut released = Released::default();
        channel
            .lock()
            .deliver(Arc::new(delivered.entry), origin, &mut released);
        hub.count_released(&channel, &released);
    }
}

/// Merges the other nodes' presence into the channels held here whenever it changes.
async fn follow_presence(hub: Weak<Inner>, mut remote: watch::Receiver<Arc<RemotePresence>>) {
    while remote.changed().await.is_ok() {
        let Some(inner) = hub.upgrade() else { return };
        let presence = Arc::clone(&remote.borrow_and_update());
        let channels: Vec<Arc<Channel>> = lock(&inner.channels).values().cloned().collect();
        for channel in channels {
            let members = presence.get(&channel.name).map_or(&[][..], Vec::as_slice);
            channel.lock().set_remote(members);
        }
    }
}
