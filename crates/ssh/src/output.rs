//! What a session channel sends, charged to the server's memory budget until russh has written
//! it, and bounded per channel while russh holds it.
//!
//! russh keeps what it is handed in its session queue (a few messages per connection, each as
//! large as it was made) and, once the client's window is full, in the channel's pending data,
//! until the client opens its window again. A client that stops reading (OpenSSH whose stdout is
//! not read) would leave there whatever it was sent: a Mles frame of megabytes per message, on
//! every session in the room. So:
//!
//! - each message (a line session's events, a `tail` line, a full-screen frame) is charged to the
//!   memory budget, past [`UNCHARGED_OUTPUT_BYTES`], from the moment it is made until russh has
//!   written its last byte (the charge travels with the bytes and is given back when russh drops
//!   them); a message whose charge does not fit is not sent, and the session is closed with the
//!   reason;
//! - it is handed to russh in pieces of at most [`PIECE_BYTES`], and at most
//!   [`IN_FLIGHT_BYTES`] per channel are in russh's hands at once: the next piece waits until
//!   russh has written one (to the connection's write buffer, whose stalls the write deadline
//!   bounds);
//! - a channel whose client has not taken a piece for the write deadline is stuck, and its
//!   session is closed.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kanava_core::{MemoryBudget, OverBudget, Reservation};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of a message not charged to the budget: chat lines and the frames of a screen of
/// ordinary size are below it, so that they are never refused because others hold the budget.
/// Bounded per session by [`crate::tui`]'s frame queue and [`IN_FLIGHT_BYTES`].
pub(crate) const UNCHARGED_OUTPUT_BYTES: usize = 16 * 1024;

/// Largest piece handed to russh at once: half of russh's largest packet.
pub(crate) const PIECE_BYTES: usize = 16 * 1024;

/// Bytes of one channel in russh's hands (queued or pending for the client's window) at once.
pub(crate) const IN_FLIGHT_BYTES: usize = 64 * 1024;

/// What a session is told when its output does not fit the memory budget.
pub(crate) const OVER_BUDGET: &str =
    "session closed: the server's memory budget is exhausted (--max-memory)";

/// A message to send, with its charge to the memory budget, held until russh has sent it.
#[derive(Debug)]
pub struct Outgoing {
    data: Bytes,
    charge: Arc<Reservation>,
}

impl Outgoing {
    /// `data`, charged to `memory` past [`UNCHARGED_OUTPUT_BYTES`]; refused if that does not fit.
    pub(crate) fn charge(memory: &Arc<MemoryBudget>, data: Bytes) -> Result<Self, OverBudget> {
        let charge = memory.reserve(data.len().saturating_sub(UNCHARGED_OUTPUT_BYTES))?;
        Ok(Self {
            data,
            charge: Arc::new(charge),
        })
    }

    /// The message's bytes.
    #[cfg(test)]
    pub(crate) fn data(&self) -> &Bytes {
        &self.data
    }
}

/// One piece of a message in russh's hands: it holds the message's charge and its room in the
/// channel's flow until russh drops it.
struct Piece {
    whole: Bytes,
    range: Range<usize>,
    _charge: Arc<Reservation>,
    _room: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.whole[self.range.clone()]
    }
}

/// Why output stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stopped {
    /// The channel or the connection has gone.
    #[error("client gone")]
    Gone,
    /// The client took nothing for this long.
    #[error("session closed: the client read nothing for {} s", .0.as_secs())]
    NotReading(Duration),
}

/// One channel's output: the budget its messages are charged to, and the room it has in russh.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    memory: Arc<MemoryBudget>,
    room: Arc<Semaphore>,
    deadline: Duration,
}

impl Flow {
    /// A channel's flow, charging `memory`; a client that takes nothing for `deadline` is stuck.
    pub(crate) fn new(memory: Arc<MemoryBudget>, deadline: Duration) -> Self {
        Self {
            memory,
            room: Arc::new(Semaphore::new(IN_FLIGHT_BYTES)),
            deadline,
        }
    }

    /// The budget messages are charged to.
    pub(crate) fn memory(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// How long the client may take nothing before its session is stuck.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Hands `message` to `deliver` (russh) piece by piece, each once there is room for it; a
    /// piece that finds no room (or that russh does not take) within the deadline stops it.
    pub(crate) async fn send<F, D>(&self, message: Outgoing, mut deliver: F) -> Result<(), Stopped>
    where
        F: FnMut(Bytes) -> D,
        D: Future<Output = Result<(), Bytes>>,
    {
        let len = message.data.len();
        for start in (0..len).step_by(PIECE_BYTES) {
            let end = (start + PIECE_BYTES).min(len);
            let wanted = u32::try_from(end - start).unwrap_or(u32::MAX);
            let handed = async {
                let room = Arc::clone(&self.room)
                    .acquire_many_owned(wanted)
                    .await
                    .map_err(|_| Stopped::Gone)?;
                let piece = Piece {
                    whole: message.data.clone(),
                    range: start..end,
                    _charge: Arc::clone(&message.charge),
                    _room: room,
                };
                deliver(Bytes::from_owner(piece))
                    .await
                    .map_err(|_| Stopped::Gone)
            };
            match tokio::time::timeout(self.deadline, handed).await {
                Ok(handed) => handed?,
                Err(_) => return Err(Stopped::NotReading(self.deadline)),
            }
        }
        Ok(())
    }
}

/// Counts a session closed for its output (`reason`: memory or stuck).
pub(crate) fn count_closed(reason: &'static str) {
    metrics::counter!("kanava_ssh_sessions_closed_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_message_is_charged_until_its_last_piece_is_dropped_and_refused_past_the_budget() {
        let memory = MemoryBudget::new(200 * 1024);
        let flow = Flow::new(Arc::clone(&memory), Duration::from_secs(5));
        let data = Bytes::from(vec![7u8; 40 * 1024]);
        let message = Outgoing::charge(&memory, data.clone()).unwrap();
        assert_eq!(memory.used(), 40 * 1024 - UNCHARGED_OUTPUT_BYTES);
        let held = Mutex::new(Vec::new());
        let sent = flow.send(message, |piece| {
            held.lock().unwrap().push(piece);
            std::future::ready(Ok(()))
        });
        sent.await.unwrap();
        let pieces = std::mem::take(&mut *held.lock().unwrap());
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.len() <= PIECE_BYTES));
        assert_eq!(pieces.concat(), data);
        assert_eq!(
            memory.used(),
            40 * 1024 - UNCHARGED_OUTPUT_BYTES,
            "russh holds it"
        );
        drop(pieces);
        assert_eq!(memory.used(), 0, "written: the charge is given back");

        let _others = memory.reserve(190 * 1024).unwrap();
        let refused = Outgoing::charge(&memory, Bytes::from(vec![0u8; 64 * 1024]));
        assert!(refused.is_err());
        assert!(Outgoing::charge(&memory, Bytes::from(vec![0u8; 4096])).is_ok());
    }

    #[tokio::test]
    async fn a_channel_holds_at_most_its_room_in_russh_and_a_stuck_one_stops() {
        let memory = MemoryBudget::new(usize::MAX);
        let deadline = Duration::from_millis(200);
        let flow = Flow::new(Arc::clone(&memory), deadline);
        let held = Mutex::new(Vec::new());
        let message = Outgoing::charge(&memory, Bytes::from(vec![1u8; 1024 * 1024])).unwrap();
        // The client takes nothing: russh keeps every piece.
        let stopped = flow.send(message, |piece| {
            held.lock().unwrap().push(piece);
            std::future::ready(Ok(()))
        });
        assert_eq!(stopped.await, Err(Stopped::NotReading(deadline)));
        let in_russh: usize = held.lock().unwrap().iter().map(Bytes::len).sum();
        assert_eq!(in_russh, IN_FLIGHT_BYTES);
        held.lock().unwrap().clear();
        assert_eq!(memory.used(), 0);
        let gone = Outgoing::charge(&memory, Bytes::from_static(b"hi")).unwrap();
        let gone = flow.send(gone, |piece| std::future::ready(Err(piece)));
        assert_eq!(gone.await, Err(Stopped::Gone));
    }
}
