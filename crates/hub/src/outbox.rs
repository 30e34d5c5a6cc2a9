//! A member's outbound queue: bounded in frames and bytes, filled without waiting, charged to the
//! server's memory budget, and able to tell its connection that the member has been kicked.

use std::sync::Arc;
use std::sync::Mutex;

use kanava_core::{Entry, MemoryBudget, Reservation};
use tokio::sync::{Notify, mpsc};

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

/// Why the hub removed a member from its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The member did not read fast enough and its outbound queue overflowed.
    QueueOverflow,
    /// The store failed to make one of the member's frames durable.
    StoreFailed,
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

/// The payload bytes queued, and what of them is charged to the memory budget.
#[derive(Debug)]
struct Queued {
    bytes: usize,
    charged: Reservation,
}

impl Queued {
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

/// The hub's half of an outbox.
#[derive(Debug, Clone)]
pub(crate) struct OutboxSender {
    tx: mpsc::Sender<Arc<Entry>>,
    shared: Arc<Shared>,
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
        let mut queued = lock(&self.shared.queued);
        if queued.bytes + size > self.max_bytes {
            return Err(QueueFull::Overflow);
        }
        queued.add(size)?;
        self.tx.try_send(Arc::clone(entry)).map_err(|e| {
            queued.remove(size);
            match e {
                mpsc::error::TrySendError::Full(_) => QueueFull::Overflow,
                mpsc::error::TrySendError::Closed(_) => QueueFull::Gone,
            }
        })
    }

    /// Marks the member kicked (the first reason wins) and wakes its connection.
    pub(crate) fn kick(&self, reason: KickReason) {
        kick(&self.shared, reason);
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
    rx: mpsc::Receiver<Arc<Entry>>,
    shared: Arc<Shared>,
}

impl Outbox {
    pub(crate) fn new(limits: QueueLimits, memory: &Arc<MemoryBudget>) -> (OutboxSender, Outbox) {
        let (tx, rx) = mpsc::channel(limits.max_frames.max(1));
        let shared = Arc::new(Shared {
            queued: Mutex::new(Queued {
                bytes: 0,
                charged: memory.empty(),
            }),
            kicked: Mutex::new(None),
            kick: Notify::new(),
        });
        let sender = OutboxSender {
            tx,
            shared: Arc::clone(&shared),
            max_bytes: limits.max_bytes,
        };
        (sender, Outbox { rx, shared })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next frame, waiting for one; `None` once the member has left its channel.
    pub async fn recv(&mut self) -> Option<Arc<Entry>> {
        let entry = self.rx.recv().await?;
        self.account(&entry);
        Some(entry)
    }

    /// Polls for the next frame, as [`Outbox::recv`] does, for a reader of several outboxes.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<Entry>>> {
        let polled = self.rx.poll_recv(cx);
        if let std::task::Poll::Ready(Some(entry)) = &polled {
            self.account(entry);
        }
        polled
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Arc<Entry>> {
        let entry = self.rx.try_recv().ok()?;
        self.account(&entry);
        Some(entry)
    }

    fn account(&self, entry: &Entry) {
        lock(&self.shared.queued).remove(entry.payload.len());
    }

    /// A handle that waits for this member's kick while the outbox itself is being read.
    pub fn kick_signal(&self) -> KickSignal {
        KickSignal(Arc::clone(&self.shared))
    }
}

impl Drop for Outbox {
    /// The queued frames go with the receiver, and so does their charge.
    fn drop(&mut self) {
        lock(&self.shared.queued).remove(usize::MAX);
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
    async fn kick_wakes_and_the_first_reason_wins() {
        let (tx, outbox) = Outbox::new(QueueLimits::default(), &MemoryBudget::new(usize::MAX));
        let signal = outbox.kick_signal();
        let waiter = tokio::spawn(async move { signal.kicked().await });
        tx.kick(KickReason::QueueOverflow);
        tx.kick(KickReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), KickReason::QueueOverflow);
    }
}
