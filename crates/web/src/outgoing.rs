//! What a web connection has to send, queued for its writer: bounded in bytes per connection
//! and charged to the server's memory budget, so that a client that stops reading is closed
//! rather than buffered for without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kanava_core::{MemoryBudget, Reservation};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// What a queued frame costs beyond its text (its place in the queue, its reservation), so
/// that many small frames count too.
const QUEUED_OVERHEAD: usize = 64;

/// One queued frame.
#[derive(Debug)]
pub(crate) enum Out {
    /// A JSON text frame, and what it holds of the memory budget.
    Text(String, Reservation),
    /// A keepalive ping.
    Ping,
}

/// Why a connection ends, once decided; the first reason given wins.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    stop: CancellationToken,
    why: Mutex<Option<(CloseCode, String)>>,
}

impl Ending {
    /// Ends the connection with `code` and `reason` (unless it is ending already).
    pub(crate) fn end(&self, code: CloseCode, reason: impl Into<String>) {
        let mut why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if why.is_none() {
            *why = Some((code, reason.into()));
        }
        self.stop.cancel();
    }

    /// Resolves once the connection is to end.
    pub(crate) async fn ended(&self) {
        self.stop.cancelled().await;
    }

    /// Whether the connection is to end.
    pub(crate) fn is_ended(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The close code and reason, once ended.
    pub(crate) fn why(&self) -> Option<(CloseCode, String)> {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The sending side of a connection's queue; cheap to clone (room tasks and the chat hold it).
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    tx: mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    memory: Arc<MemoryBudget>,
    ending: Arc<Ending>,
}

/// The writer's side of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// The next frame to write; `None` once every sender is gone.
    pub(crate) async fn next(&mut self) -> Option<Out> {
        self.rx.recv().await
    }

    /// The next frame if one is queued now.
    pub(crate) fn try_next(&mut self) -> Option<Out> {
        self.rx.try_recv().ok()
    }

    /// Marks a text frame as written, given what it held of the budget.
    pub(crate) fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A queue holding at most `max_bytes` for a connection ending through `ending`.
pub(crate) fn queue(
    max_bytes: usize,
    memory: Arc<MemoryBudget>,
    ending: Arc<Ending>,
) -> (Outgoing, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outgoing {
            tx,
            queued: Arc::clone(&queued),
            max_bytes,
            memory,
            ending,
        },
        Queue { rx, queued },
    )
}

impl Outgoing {
    /// Queues `message`; a client that has left more than the queue's bytes unread, or whose
    /// frame does not fit the memory budget, is closed instead. Returns whether it was queued.
    pub(crate) fn send(&self, message: &serde_json::Value) -> bool {
        if self.ending.is_ended() {
            return false;
        }
        let text = message.to_string();
        let bytes = text.len() + QUEUED_OVERHEAD;
        let before = self.queued.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.max_bytes {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            metrics::counter!("kanava_web_refusals_total", "code" => "slow_reader").increment(1);
            self.ending.end(
                CloseCode::Policy,
                "too slow: the server's queue for this connection is full",
            );
            return false;
        }
        let Ok(charge) = self.memory.reserve(bytes) else {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            metrics::counter!("kanava_web_refusals_total", "code" => "memory").increment(1);
            self.ending
                .end(CloseCode::Again, "server memory budget exhausted");
            return false;
        };
        if self.tx.send(Out::Text(text, charge)).is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues a keepalive ping.
    pub(crate) fn ping(&self) {
        let _ = self.tx.send(Out::Ping);
    }

    /// How the connection ends.
    pub(crate) fn ending(&self) -> &Arc<Ending> {
        &self.ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_does_not_read_is_closed_past_the_queue_bytes() {
        let memory = MemoryBudget::new(1 << 20);
        let ending = Arc::new(Ending::default());
        let (out, mut queue) = queue(250, Arc::clone(&memory), Arc::clone(&ending));
        let message = serde_json::json!({"text": "x".repeat(30)});
        assert!(out.send(&message));
        assert!(out.send(&message));
        assert!(!ending.is_ended());
        assert!(memory.used() > 0);
        assert!(!out.send(&message));
        assert!(ending.is_ended());
        assert_eq!(ending.why().unwrap().0, CloseCode::Policy);
        let Some(Out::Text(text, charge)) = queue.next().await else {
            panic!("a frame was queued")
        };
        assert_eq!(charge.bytes(), text.len() + QUEUED_OVERHEAD);
        queue.written(charge.bytes());
        drop(charge);
        assert!(memory.used() < 250);
    }

    #[tokio::test]
    async fn a_frame_beyond_the_memory_budget_closes_with_1013() {
        let memory = MemoryBudget::new(10);
        let ending = Arc::new(Ending::default());
        let (out, _queue) = queue(1000, memory, Arc::clone(&ending));
        assert!(!out.send(&serde_json::json!({"text": "too long for ten bytes"})));
        assert_eq!(ending.why().unwrap().0, CloseCode::Again);
    }
}
