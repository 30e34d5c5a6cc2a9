//! A member's outbound queue: bounded in frames and bytes, filled without waiting, and able to
//! tell its connection that the member has been kicked.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kanava_core::Entry;
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

/// Why the hub removed a member from its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The member did not read fast enough and its outbound queue overflowed.
    QueueOverflow,
    /// The store failed to make one of the member's frames durable.
    StoreFailed,
    /// The server is shutting down.
    Shutdown,
}

/// State shared by the hub's sending half and the connection's receiving half.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    queued_bytes: AtomicUsize,
    kicked: Mutex<Option<KickReason>>,
    kick: Notify,
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
    /// The member's connection has gone.
    Gone,
}

impl OutboxSender {
    /// Queues `entry` without waiting.
    pub(crate) fn try_push(&self, entry: &Arc<Entry>) -> Result<(), QueueFull> {
        let size = entry.payload.len();
        let before = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > self.max_bytes {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(QueueFull::Overflow);
        }
        self.tx.try_send(Arc::clone(entry)).map_err(|e| {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
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

pub(crate) fn kick(shared: &Shared, reason: KickReason) {
    let mut kicked = shared.kicked.lock().unwrap_or_else(|p| p.into_inner());
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
    pub(crate) fn new(limits: QueueLimits) -> (OutboxSender, Outbox) {
        let (tx, rx) = mpsc::channel(limits.max_frames.max(1));
        let shared = Arc::new(Shared::default());
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
        self.shared
            .queued_bytes
            .fetch_sub(entry.payload.len(), Ordering::AcqRel);
    }

    /// A handle that waits for this member's kick while the outbox itself is being read.
    pub fn kick_signal(&self) -> KickSignal {
        KickSignal(Arc::clone(&self.shared))
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
        *self.0.kicked.lock().unwrap_or_else(|p| p.into_inner())
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
            payload: Bytes::from(vec![0; len]),
            time_ms: 0,
        })
    }

    #[tokio::test]
    async fn byte_and_frame_limits_overflow_and_recover_as_read() {
        let (tx, mut outbox) = Outbox::new(QueueLimits {
            max_frames: 3,
            max_bytes: 100,
        });
        tx.try_push(&entry(60)).unwrap();
        assert_eq!(tx.try_push(&entry(60)), Err(QueueFull::Overflow));
        tx.try_push(&entry(40)).unwrap();
        tx.try_push(&entry(0)).unwrap();
        assert_eq!(tx.try_push(&entry(0)), Err(QueueFull::Overflow));
        assert_eq!(outbox.recv().await.unwrap().payload.len(), 60);
        tx.try_push(&entry(60)).unwrap();

        let (tx, outbox) = Outbox::new(QueueLimits::default());
        drop(outbox);
        assert_eq!(tx.try_push(&entry(1)), Err(QueueFull::Gone));
    }

    #[tokio::test]
    async fn kick_wakes_and_the_first_reason_wins() {
        let (tx, outbox) = Outbox::new(QueueLimits::default());
        let signal = outbox.kick_signal();
        let waiter = tokio::spawn(async move { signal.kicked().await });
        tx.kick(KickReason::QueueOverflow);
        tx.kick(KickReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), KickReason::QueueOverflow);
    }
}
