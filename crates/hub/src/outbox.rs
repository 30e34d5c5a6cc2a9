//! A member's outbound queue: bounded in frames and bytes, filled without waiting, charged to the
//! server's memory budget, and able to tell its connection that the member has been kicked.
//!
//! The queue is a `VecDeque` under the lock that already holds its byte count, rather than a
//! channel: most members are idle, and an idle member's queue then holds no memory at all (a
//! tokio channel keeps about 1 KiB per member, its shared state and a block of slots).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use kanava_core::{Entry, MemoryBudget, Reservation};
use tokio::sync::Notify;

/// Bounds on what may wait in one member's outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most frames queued.
    pub max_frames: usize,
    /// Most payload bytes queued (also bounds each member's frames awaiting commit).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_frames: 4096,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Bytes a member may have queued before its queue is charged to the memory budget: a member
/// keeping up holds a frame or two, and is not closed because other connections hold the
/// budget; only a backlog is charged.
pub const UNCHARGED_QUEUE_BYTES: usize = 64 * 1024;

/// Frames' room an empty queue may keep; a queue that held more after a burst gives its memory
/// back once it is empty.
const IDLE_QUEUE_FRAMES: usize = 16;

/// Why the hub removed a member from its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The member did not read fast enough and its outbound queue overflowed.
    QueueOverflow,
    /// The store failed to make one of the member's frames durable.
    StoreFailed,
    /// The store did not confirm one of the member's frames in time (a cluster without a
    /// leader or quorum): that frame may still be stored, none the member sent after it will be.
    StoreUnavailable,
    /// The member's backlog did not fit in the server's memory budget.
    MemoryBudget,
    /// The server is shutting down.
    Shutdown,
}

/// State shared by the hub's sending half and the connection's receiving half.
#[derive(Debug)]
pub(crate) struct Shared {
    queued: Mutex<Queued>,
    kicked: Mutex<Option<KickReason>>,
    kick: Notify,
}

/// The frames queued, their payload bytes, what of them is charged to the memory budget, and
/// who is waiting on either side.
#[derive(Debug)]
struct Queued {
    frames: VecDeque<Arc<Entry>>,
    bytes: usize,
    charged: Reservation,
    /// The connection, waiting for a frame.
    waiting: Option<Waker>,
    /// The hub's half has gone: the member has left its channel.
    sender_gone: bool,
    /// The connection's half has gone.
    receiver_gone: bool,
}

impl Queued {
    /// The oldest frame, if any, no longer counted.
    fn pop(&mut self) -> Option<Arc<Entry>> {
        let entry = self.frames.pop_front()?;
        self.remove(entry.payload.len());
        if self.frames.is_empty() && self.frames.capacity() > IDLE_QUEUE_FRAMES {
            self.frames = VecDeque::new();
        }
        Some(entry)
    }

    /// Queues `bytes` more, holding their charge; refuses (changing nothing) past the budget.
    fn add(&mut self, bytes: usize) -> Result<(), QueueFull> {
        let total = self.bytes + bytes;
        self.charged
            .resize(total.saturating_sub(UNCHARGED_QUEUE_BYTES))
            .map_err(|_| QueueFull::OverBudget)?;
        self.bytes = total;
        Ok(())
    }

    /// Dequeues `bytes`, giving back what no longer needs charging.
    fn remove(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
        let charge = self.bytes.saturating_sub(UNCHARGED_QUEUE_BYTES);
        self.charged
            .shrink(self.charged.bytes().saturating_sub(charge));
    }
}

/// The hub's half of an outbox; dropping it tells the connection that the member has left.
#[derive(Debug)]
pub(crate) struct OutboxSender {
    shared: Arc<Shared>,
    max_frames: usize,
    max_bytes: usize,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueFull {
    /// The member is over its queue limits.
    Overflow,
    /// The server's memory budget cannot hold the member's backlog.
    OverBudget,
    /// The member's connection has gone.
    Gone,
}

impl OutboxSender {
    /// Queues `entry` without waiting.
    pub(crate) fn try_push(&self, entry: &Arc<Entry>) -> Result<(), QueueFull> {
        let size = entry.payload.len();
        let waiting = {
            let mut queued = lock(&self.shared.queued);
            if queued.receiver_gone {
                return Err(QueueFull::Gone);
            }
            if queued.bytes + size > self.max_bytes || queued.frames.len() >= self.max_frames {
                return Err(QueueFull::Overflow);
            }
            queued.add(size)?;
            queued.frames.push_back(Arc::clone(entry));
            queued.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }

    /// Marks the member kicked (the first reason wins) and wakes its connection.
    pub(crate) fn kick(&self, reason: KickReason) {
        kick(&self.shared, reason);
    }
}

impl Drop for OutboxSender {
    fn drop(&mut self) {
        let waiting = {
            let mut queued = lock(&self.shared.queued);
            queued.sender_gone = true;
            queued.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn kick(shared: &Shared, reason: KickReason) {
    let mut kicked = lock(&shared.kicked);
    if kicked.is_none() {
        *kicked = Some(reason);
        shared.kick.notify_one();
    }
}

/// The connection's half: live frames for the member, in channel order, and the kick signal.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    pub(crate) fn new(limits: QueueLimits, memory: &Arc<MemoryBudget>) -> (OutboxSender, Outbox) {
        let shared = Arc::new(Shared {
            queued: Mutex::new(Queued {
                frames: VecDeque::new(),
                bytes: 0,
                charged: memory.empty(),
                waiting: None,
                sender_gone: false,
                receiver_gone: false,
            }),
            kicked: Mutex::new(None),
            kick: Notify::new(),
        });
        let sender = OutboxSender {
            shared: Arc::clone(&shared),
            max_frames: limits.max_frames.max(1),
            max_bytes: limits.max_bytes,
        };
        (sender, Outbox { shared })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next frame, waiting for one; `None` once the member has left its channel (and every
    /// frame queued before has been taken). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Arc<Entry>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next frame, as [`Outbox::recv`] does, for a reader of several outboxes.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Entry>>> {
        let mut queued = lock(&self.shared.queued);
        if let Some(entry) = queued.pop() {
            return Poll::Ready(Some(entry));
        }
        if queued.sender_gone {
            return Poll::Ready(None);
        }
        match &mut queued.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waiting => *waiting = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Arc<Entry>> {
        lock(&self.shared.queued).pop()
    }

    /// A handle that waits for this member's kick while the outbox itself is being read.
    pub fn kick_signal(&self) -> KickSignal {
        KickSignal(Arc::clone(&self.shared))
    }
}

impl Drop for Outbox {
    /// The queued frames go with the receiver, and so does their charge.
    fn drop(&mut self) {
        let frames = {
            let mut queued = lock(&self.shared.queued);
            queued.receiver_gone = true;
            queued.remove(usize::MAX);
            std::mem::take(&mut queued.frames)
        };
        drop(frames);
    }
}

/// Resolves when the hub kicks a member; see [`Outbox::kick_signal`].
#[derive(Debug, Clone)]
pub struct KickSignal(Arc<Shared>);

impl KickSignal {
    /// Resolves once the hub has kicked this member, with the reason.
    pub async fn kicked(&self) -> KickReason {
        loop {
            let notified = self.0.kick.notified();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// The reason this member was kicked, if it was.
    pub fn reason(&self) -> Option<KickReason> {
        *lock(&self.0.kicked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kanava_core::{FrameKind, Uid};

    fn entry(len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            seq: 1,
            kind: FrameKind::Binary,
            sender: Uid::new("u").unwrap(),
            verified: false,
            payload: Bytes::from(vec![0; len]),
            time_ms: 0,
        })
    }

    #[tokio::test]
    async fn byte_and_frame_limits_overflow_and_recover_as_read() {
        let (tx, mut outbox) = Outbox::new(
            QueueLimits {
                max_frames: 3,
                max_bytes: 100,
            },
            &MemoryBudget::new(usize::MAX),
        );
        tx.try_push(&entry(60)).unwrap();
        assert_eq!(tx.try_push(&entry(60)), Err(QueueFull::Overflow));
        tx.try_push(&entry(40)).unwrap();
        tx.try_push(&entry(0)).unwrap();
        assert_eq!(tx.try_push(&entry(0)), Err(QueueFull::Overflow));
        assert_eq!(outbox.recv().await.unwrap().payload.len(), 60);
        tx.try_push(&entry(60)).unwrap();

        let (tx, outbox) = Outbox::new(QueueLimits::default(), &MemoryBudget::new(usize::MAX));
        drop(outbox);
        assert_eq!(tx.try_push(&entry(1)), Err(QueueFull::Gone));
    }

    #[tokio::test]
    async fn a_backlog_is_charged_to_the_memory_budget_and_given_back() {
        let budget = MemoryBudget::new(100);
        let (tx, mut outbox) = Outbox::new(
            QueueLimits {
                max_frames: 10,
                max_bytes: usize::MAX,
            },
            &budget,
        );
        tx.try_push(&entry(UNCHARGED_QUEUE_BYTES)).unwrap();
        assert_eq!(budget.used(), 0, "a member keeping up is not charged");
        tx.try_push(&entry(60)).unwrap();
        assert_eq!(budget.used(), 60);
        assert_eq!(tx.try_push(&entry(41)), Err(QueueFull::OverBudget));
        assert_eq!(budget.used(), 60, "a refused frame holds nothing");
        outbox.recv().await.unwrap();
        assert_eq!(budget.used(), 0);
        tx.try_push(&entry(UNCHARGED_QUEUE_BYTES)).unwrap();
        assert_eq!(budget.used(), 60);
        drop(outbox);
        assert_eq!(budget.used(), 0, "a dropped outbox gives its charge back");
    }

    #[tokio::test]
    async fn recv_wakes_on_a_push_and_ends_once_the_member_has_left() {
        let (tx, mut outbox) = Outbox::new(QueueLimits::default(), &MemoryBudget::new(usize::MAX));
        let shared = Arc::clone(outbox.shared());
        let waiter = tokio::spawn(async move {
            let first = outbox.recv().await.map(|e| e.payload.len());
            (first, outbox)
        });
        while lock(&shared.queued).waiting.is_none() {
            tokio::task::yield_now().await;
        }
        tx.try_push(&entry(5)).unwrap();
        let (first, mut outbox) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("a push wakes the waiting connection")
            .unwrap();
        assert_eq!(first, Some(5));
        tx.try_push(&entry(7)).unwrap();
        drop(tx);
        assert_eq!(
            outbox.recv().await.map(|e| e.payload.len()),
            Some(7),
            "frames queued before the member left still arrive"
        );
        assert!(outbox.recv().await.is_none());
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let (tx, mut outbox) = Outbox::new(QueueLimits::default(), &MemoryBudget::new(usize::MAX));
        for _ in 0..100 {
            tx.try_push(&entry(1)).unwrap();
        }
        assert!(lock(&outbox.shared.queued).frames.capacity() >= 100);
        while outbox.try_recv().is_some() {}
        assert_eq!(lock(&outbox.shared.queued).frames.capacity(), 0);
    }

    #[tokio::test]
    async fn kick_wakes_and_the_first_reason_wins() {
        let (tx, outbox) = Outbox::new(QueueLimits::default(), &MemoryBudget::new(usize::MAX));
        let signal = outbox.kick_signal();
        let waiter = tokio::spawn(async move { signal.kicked().await });
        tx.kick(KickReason::QueueOverflow);
        tx.kick(KickReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), KickReason::QueueOverflow);
    }
}
