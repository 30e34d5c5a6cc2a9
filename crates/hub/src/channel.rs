//! One channel's state: members, retained history and the frames awaiting commit.
//!
//! Frames take their sequence number under the channel lock and wait in `in_flight` until the
//! store confirms them. Confirmations may arrive in any order; only the committed prefix is
//! released, so every member and the history see one order, and nothing is relayed before it is
//! durable.
//!
//! In a cluster the bus numbers frames instead: a channel's frames arrive already stored and in
//! order through [`ChannelState::deliver`], and the uids present on other nodes are merged into
//! what the channel reports and refuses.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kanava_core::{ChannelName, Entry, FrameKind, HistoryLimits, HistoryWindow, Uid};
use kanava_store::Present;
use tokio::sync::{OnceCell, watch};

use crate::outbox::{KickReason, OutboxSender, QueueFull};

/// Identifies one membership; a uid that rejoins gets a new id.
pub(crate) type MemberId = u64;

/// A channel known to the hub.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: ChannelName,
    /// Set once the channel's history has been read from the store.
    pub(crate) loaded: OnceCell<()>,
    /// In a cluster: set once this channel asked the bus for its frames (`Bus::host`), so that
    /// retiring it releases them once.
    pub(crate) hosted: std::sync::atomic::AtomicBool,
    state: Mutex<ChannelState>,
}

#[derive(Debug)]
pub(crate) struct MemberSlot {
    pub(crate) uid: Uid,
    /// The member proved the uid is its bound name.
    pub(crate) verified: bool,
    /// The channel's next sequence number when this member joined: entries below it were
    /// either in its history snapshot or still awaiting commit.
    pub(crate) joined_at: u64,
    /// The oldest entry this member gets: entries that the history limits had already pushed
    /// out of the window when it joined are not sent to it live either.
    pub(crate) live_from: u64,
    pub(crate) outbox: OutboxSender,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    Waiting,
    Done,
    Failed,
}

#[derive(Debug)]
struct InFlight {
    entry: Arc<Entry>,
    origin: MemberId,
    commit: Commit,
    numbered: Numbered,
    /// Who waits to learn the frame's seq once it is released (see `Member::publish_stored`).
    stored_to: Option<StoredTo>,
}

/// Where a publisher that waits for its frame learns the frame's seq and time once it is
/// stored and released to the channel (after every earlier frame), or why it was not stored.
pub(crate) type StoredTo =
    tokio::sync::oneshot::Sender<Result<(u64, u64), kanava_store::StoreError>>;

/// Who numbered a frame, which decides who missed a join header in their snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbered {
    /// This node, when the frame was sent: members that joined while it awaited commit missed
    /// it.
    Here,
    /// The cluster, when the frame was stored. Members that joined this node after the frame's
    /// sender here, but before the frame came back, missed it; members on other nodes are
    /// concurrent with a remote sender and are not owed its header.
    Cluster,
}

#[derive(Debug)]
pub(crate) struct ChannelState {
    /// Removed from the registry: joiners must look the channel up again.
    pub(crate) retired: bool,
    pub(crate) history: HistoryWindow,
    pub(crate) next_seq: u64,
    members: HashMap<MemberId, MemberSlot>,
    /// How each present uid is held: by one exclusive member, or by shared members.
    uids: HashMap<Uid, UidHolders>,
    in_flight: VecDeque<InFlight>,
    /// In a cluster: the sequence of the last delivered frame applied (`None` until the history
    /// is loaded), and the frames delivered while it loaded.
    applied: Option<u64>,
    early: Vec<(Arc<Entry>, Option<MemberId>)>,
    /// In a cluster: publishers of this node waiting for their stored frame (by seq) to come
    /// back from the bus and take its place, after every earlier frame.
    awaiting: HashMap<u64, StoredTo>,
    /// The uids present on other nodes, and how each is held there.
    remote: HashMap<Uid, Present>,
    /// The number of distinct uids present, for members that show it.
    pub(crate) presence: watch::Sender<usize>,
}

/// The members holding one uid in a channel.
#[derive(Debug)]
struct UidHolders {
    exclusive: bool,
    verified: bool,
    count: usize,
}

/// What releasing committed frames did, for metrics.
#[derive(Debug, Default)]
pub(crate) struct Released {
    pub(crate) deliveries: u64,
    pub(crate) delivered_bytes: u64,
    pub(crate) overflows: u64,
}

impl Channel {
    pub(crate) fn new(name: ChannelName, limits: HistoryLimits) -> Self {
        Self {
            name,
            loaded: OnceCell::new(),
            hosted: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(ChannelState {
                presence: watch::Sender::new(0),
                retired: false,
                history: HistoryWindow::new(limits),
                next_seq: 1,
                members: HashMap::new(),
                uids: HashMap::new(),
                in_flight: VecDeque::new(),
                applied: None,
                early: Vec::new(),
                awaiting: HashMap::new(),
                remote: HashMap::new(),
            }),
        }
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves consistent data (every
    /// mutation is a single step), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ChannelState {
    /// Gives `entry` the next sequence number and holds it until its commit is confirmed.
    pub(crate) fn sequence(
        &mut self,
        kind: FrameKind,
        sender: Uid,
        verified: bool,
        payload: bytes::Bytes,
        time_ms: u64,
        origin: MemberId,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            seq: self.next_seq,
            kind,
            sender,
            verified,
            payload,
            time_ms,
        });
        self.next_seq += 1;
        self.in_flight.push_back(InFlight {
            entry: Arc::clone(&entry),
            origin,
            commit: Commit::Waiting,
            numbered: Numbered::Here,
            stored_to: None,
        });
        entry
    }

    /// Records the store's verdict on frame `seq`, then releases the confirmed prefix: committed
    /// frames go into history and (except join headers) to every member but their sender; failed
    /// frames are dropped. A committed frame's `stored_to` learns its seq when it is released.
    pub(crate) fn confirm(
        &mut self,
        seq: u64,
        committed: bool,
        stored_to: Option<StoredTo>,
        released: &mut Released,
    ) {
        let Some(front) = self.in_flight.front() else {
            return;
        };
        let Some(slot) = seq
            .checked_sub(front.entry.seq)
            .and_then(|i| self.in_flight.get_mut(i as usize))
        else {
            return;
        };
        slot.commit = if committed {
            Commit::Done
        } else {
            Commit::Failed
        };
        slot.stored_to = stored_to;
        if !committed && let Some(member) = self.members.get(&slot.origin) {
            member.outbox.kick(KickReason::StoreFailed);
        }
        while self
            .in_flight
            .front()
            .is_some_and(|f| f.commit != Commit::Waiting)
        {
            let Some(frame) = self.in_flight.pop_front() else {
                break;
            };
            if frame.commit == Commit::Done {
                self.release(frame, released);
            }
        }
    }

    /// Puts a committed frame into history and sends it to the members that must get it live:
    /// everyone but its sender, except that a join header (which the reference only replays) goes
    /// only to members whose snapshot missed it (see [`Numbered`]).
    fn release(&mut self, frame: InFlight, released: &mut Released) {
        let header = frame.entry.kind == FrameKind::Header;
        let seq = frame.entry.seq;
        let missed_header = |id: MemberId, member: &MemberSlot| match frame.numbered {
            Numbered::Here => seq < member.joined_at,
            Numbered::Cluster => id > frame.origin && seq >= member.joined_at,
        };
        let mut overflowed = Vec::new();
        for (id, member) in &self.members {
            if *id == frame.origin
                || seq < member.live_from
                || (header && !missed_header(*id, member))
            {
                continue;
            }
            match member.outbox.try_push(&frame.entry) {
                Ok(()) => {
                    released.deliveries += 1;
                    released.delivered_bytes += frame.entry.payload.len() as u64;
                }
                Err(QueueFull::Overflow) => {
                    member.outbox.kick(KickReason::QueueOverflow);
                    overflowed.push(*id);
                }
                Err(QueueFull::OverBudget) => {
                    member.outbox.kick(KickReason::MemoryBudget);
                    overflowed.push(*id);
                }
                // Its connection is tearing down and will leave on its own.
                Err(QueueFull::Gone) => {}
            }
        }
        released.overflows += overflowed.len() as u64;
        for id in overflowed {
            self.remove_member(id);
        }
        if let Some(stored_to) = frame.stored_to {
            let _ = stored_to.send(Ok((seq, frame.entry.time_ms)));
        }
        self.history.push(frame.entry);
    }

    /// Whether the history, or what awaits commit, holds this exact join header of `uid`.
    pub(crate) fn holds_header(&self, uid: &Uid, verified: bool, header: &[u8]) -> bool {
        let same = |e: &Entry| {
            e.kind == FrameKind::Header
                && e.sender == *uid
                && e.verified == verified
                && e.payload[..] == *header
        };
        self.history.entries().any(|e| same(e)) || self.in_flight.iter().any(|f| same(&f.entry))
    }

    /// Whether only the other nodes' presence keeps `uid` out (it would be admitted here).
    pub(crate) fn refused_only_elsewhere(&self, uid: &Uid, exclusive: bool) -> bool {
        let here = match self.uids.get(uid) {
            None => true,
            Some(holders) => !exclusive && !holders.exclusive,
        };
        here && !self.admits(uid, exclusive)
    }

    /// Whether `uid` may join: an exclusive member needs the uid free; a shared one needs it free
    /// or held by other shared members only.
    pub(crate) fn admits(&self, uid: &Uid, exclusive: bool) -> bool {
        let here = match self.uids.get(uid) {
            None => true,
            Some(holders) => !exclusive && !holders.exclusive,
        };
        let elsewhere = match self.remote.get(uid) {
            None => true,
            Some(remote) => !exclusive && !remote.exclusive,
        };
        here && elsewhere
    }

    /// The uids present on this node, as the bus announces them.
    pub(crate) fn local_presence(&self) -> Vec<Present> {
        let mut present: Vec<Present> = self
            .uids
            .iter()
            .map(|(uid, holders)| Present {
                uid: uid.clone(),
                exclusive: holders.exclusive,
                verified: holders.verified,
            })
            .collect();
        present.sort();
        present
    }

    /// Replaces the uids present on other nodes.
    pub(crate) fn set_remote(&mut self, remote: &[Present]) {
        self.remote = remote.iter().map(|p| (p.uid.clone(), p.clone())).collect();
        self.publish_presence();
    }

    /// Adds a member that [`admits`](Self::admits) allowed.
    pub(crate) fn insert_member(&mut self, id: MemberId, slot: MemberSlot, exclusive: bool) {
        let holders = self.uids.entry(slot.uid.clone()).or_insert(UidHolders {
            exclusive,
            verified: slot.verified,
            count: 0,
        });
        holders.count += 1;
        self.members.insert(id, slot);
        self.publish_presence();
    }

    /// Tells watchers the number of uids present, if it changed.
    fn publish_presence(&mut self) {
        let count = self.uid_count();
        self.presence.send_if_modified(|shown| {
            let changed = *shown != count;
            *shown = count;
            changed
        });
    }

    /// Removes a member; returns whether it was still there.
    pub(crate) fn remove_member(&mut self, id: MemberId) -> bool {
        let Some(slot) = self.members.remove(&id) else {
            return false;
        };
        if let Some(holders) = self.uids.get_mut(&slot.uid) {
            holders.count -= 1;
            if holders.count == 0 {
                self.uids.remove(&slot.uid);
                self.publish_presence();
            }
        }
        true
    }

    /// The uids present here or on other nodes, sorted, each once, with how each is held.
    pub(crate) fn present(&self) -> Vec<Present> {
        let mut present = self.local_presence();
        present.extend(
            self.remote
                .values()
                .filter(|p| !self.uids.contains_key(&p.uid))
                .cloned(),
        );
        present.sort();
        present
    }

    /// How many distinct uids are present.
    pub(crate) fn uid_count(&self) -> usize {
        self.uids.len()
            + self
                .remote
                .keys()
                .filter(|uid| !self.uids.contains_key(*uid))
                .count()
    }

    /// What a member joining now must be replayed: the history window as it will be once every
    /// frame awaiting commit is in it, minus those frames, which it gets live. Returns the
    /// replay and the oldest sequence number the member gets at all.
    pub(crate) fn replay_at_join(&self) -> (Vec<Arc<Entry>>, u64) {
        let live_from = self
            .history
            .first_kept_after(self.in_flight.iter().map(|f| &*f.entry), self.next_seq);
        let replay = self
            .history
            .entries()
            .filter(|e| e.seq >= live_from)
            .cloned()
            .collect();
        (replay, live_from)
    }

    /// In a cluster: takes the history loaded from the store, then applies the frames delivered
    /// while it loaded that it does not already hold.
    pub(crate) fn loaded_from_bus(&mut self, entries: Vec<Entry>, released: &mut Released) {
        let mut applied = 0;
        for entry in entries {
            applied = entry.seq;
            if let Some(stored_to) = self.awaiting.remove(&entry.seq) {
                let _ = stored_to.send(Ok((entry.seq, entry.time_ms)));
            }
            self.history.push(Arc::new(entry));
        }
        self.applied = Some(applied);
        self.next_seq = applied + 1;
        for (entry, origin) in std::mem::take(&mut self.early) {
            self.deliver(entry, origin, released);
        }
    }

    /// In a cluster: tells `stored_to` that frame `seq` (given at `time_ms`) is stored, once the
    /// bus has delivered it here after every earlier frame, or at once if it has.
    pub(crate) fn when_delivered(&mut self, seq: u64, time_ms: u64, stored_to: StoredTo) {
        if self.applied.is_some_and(|applied| applied >= seq) {
            let _ = stored_to.send(Ok((seq, time_ms)));
        } else {
            self.awaiting.insert(seq, stored_to);
        }
    }

    /// In a cluster: a stored frame from the bus, in the cluster's order. Before the history is
    /// loaded it waits; one the loaded history already holds is skipped; any other goes into
    /// history and to the members (but not back to `origin`, its sender on this node).
    pub(crate) fn deliver(
        &mut self,
        entry: Arc<Entry>,
        origin: Option<MemberId>,
        released: &mut Released,
    ) {
        let Some(applied) = self.applied else {
            self.early.push((entry, origin));
            return;
        };
        if entry.seq <= applied {
            return;
        }
        self.applied = Some(entry.seq);
        self.next_seq = entry.seq + 1;
        let stored_to = self.awaiting.remove(&entry.seq);
        self.release(
            InFlight {
                entry,
                origin: origin.unwrap_or(MemberId::MAX),
                commit: Commit::Done,
                numbered: Numbered::Cluster,
                stored_to,
            },
            released,
        );
    }

    /// Closes a member whose frame could not be stored.
    pub(crate) fn kick_member(&self, id: MemberId, reason: KickReason) {
        if let Some(member) = self.members.get(&id) {
            member.outbox.kick(reason);
        }
    }

    /// Whether nothing holds this channel in memory any more.
    pub(crate) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.in_flight.is_empty()
    }
}
