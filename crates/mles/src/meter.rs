//! What a Mles connection is in the middle of receiving, charged to the server's memory budget
//! as the bytes arrive, and timed.
//!
//! tungstenite buffers a frame until it is complete and a fragmented message until its last
//! fragment, and says nothing until then; a peer can hold a message just under `--max-frame` open
//! for as long as it likes. [`Metered`] sits under the WebSocket and counts the bytes read since
//! the last complete message: past [`UNCHARGED_RECEIVE_BYTES`] they are charged to the budget (a
//! read that does not fit fails with [`OverBudget`]), and the [`Meter`] knows since when the
//! message has been arriving, so that the connection can close a message that takes too long.
//!
//! [`Metered`] also collects what the WebSocket writes into batches of up to
//! [`WRITE_BATCH_BYTES`], handed to TLS as one write (one record), and gives the batch's memory
//! back once it is written, so that an idle connection holds no write buffer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use kanava_core::{MemoryBudget, OverBudget, Reservation};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes of a message in progress not charged to the budget: chat messages and join headers
/// are far below it, so a peer sending them is never refused because others hold the budget.
/// Bounded over the server by the connection budget.
pub(crate) const UNCHARGED_RECEIVE_BYTES: usize = 4096;

/// Bytes a client's control frame takes on the wire beyond its payload: two header bytes and
/// the four of the mask (control payloads are at most 125 bytes, so no extended length).
const CONTROL_FRAME_OVERHEAD: usize = 6;

/// Bytes of the WebSocket's writes collected before they go to TLS: the largest TLS record's
/// payload, so that a batch of small frames costs one record and one system call.
pub(crate) const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// The receiving state of one connection, shared by its [`Metered`] stream and its reader.
#[derive(Debug)]
pub(crate) struct Meter {
    state: Mutex<Receiving>,
}

#[derive(Debug)]
struct Receiving {
    /// Bytes read since the last complete data message.
    bytes: usize,
    /// When the first of them arrived.
    since: Option<Instant>,
    charged: Reservation,
}

impl Meter {
    /// A meter charging `memory`.
    pub(crate) fn new(memory: &Arc<MemoryBudget>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Receiving {
                bytes: 0,
                since: None,
                charged: memory.empty(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Receiving> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` just read; refuses them if their charge does not fit the budget.
    pub(crate) fn arrived(&self, bytes: usize) -> Result<(), OverBudget> {
        let mut state = self.lock();
        let total = state.bytes.saturating_add(bytes);
        state
            .charged
            .resize(total.saturating_sub(UNCHARGED_RECEIVE_BYTES))?;
        state.bytes = total;
        state.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// A data message is complete: what was buffered for it now belongs to the hub.
    pub(crate) fn message_done(&self) {
        let mut state = self.lock();
        state.bytes = 0;
        state.since = None;
        let held = state.charged.bytes();
        state.charged.shrink(held);
    }

    /// A control frame with `payload` bytes is complete; a data message it interrupted is still
    /// in progress.
    pub(crate) fn control_done(&self, payload: usize) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(payload + CONTROL_FRAME_OVERHEAD);
        if state.bytes == 0 {
            state.since = None;
        }
        let charge = state.bytes.saturating_sub(UNCHARGED_RECEIVE_BYTES);
        let over = state.charged.bytes().saturating_sub(charge);
        state.charged.shrink(over);
    }

    /// Since when the message in progress has been arriving, if one is.
    pub(crate) fn receiving_since(&self) -> Option<Instant> {
        self.lock().since
    }
}

/// A stream whose reads are counted by a [`Meter`]; a read past the budget fails with an
/// [`io::Error`] wrapping [`OverBudget`]. Writes are collected into batches (see the module).
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
    /// Written bytes not yet handed to `inner`; without capacity between batches.
    batch: Vec<u8>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, meter: Arc<Meter>) -> Self {
        Self {
            inner,
            meter,
            batch: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Metered<S> {
    /// Hands the whole batch to `inner`, then frees it.
    fn poll_write_batch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        let result = loop {
            if written == self.batch.len() {
                break Ok(());
            }
            match Pin::new(&mut self.inner).poll_write(cx, &self.batch[written..]) {
                Poll::Ready(Ok(0)) => break Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(error)) => break Err(error),
                Poll::Pending => {
                    self.batch.drain(..written);
                    return Poll::Pending;
                }
            }
        };
        // Given back rather than kept: most connections are idle between batches.
        self.batch = Vec::new();
        Poll::Ready(result)
    }
}

/// Whether `error` is a [`Metered`] read refused by the budget.
pub(crate) fn is_over_budget(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<OverBudget>().is_some())
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if read > 0 {
            self.meter.arrived(read).map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.batch.len() + buf.len() > WRITE_BATCH_BYTES {
            ready!(self.poll_write_batch(cx))?;
        }
        if buf.len() >= WRITE_BATCH_BYTES {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(WRITE_BATCH_BYTES);
        }
        self.batch.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_batch(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_batch(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stream that records each write it is handed.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_go_out_as_one_batch_whose_memory_is_given_back() {
        let meter = Meter::new(&MemoryBudget::new(0));
        let mut stream = Metered::new(Recorder::default(), meter);
        for frame in [&b"one"[..], b"two", b"three"] {
            stream.write_all(frame).await.unwrap();
        }
        assert!(stream.inner.0.is_empty(), "nothing goes out before a flush");
        stream.flush().await.unwrap();
        assert_eq!(stream.inner.0, [b"onetwothree".to_vec()]);
        assert_eq!(stream.batch.capacity(), 0, "an idle stream holds no batch");

        let big = vec![7u8; WRITE_BATCH_BYTES];
        stream.write_all(b"small").await.unwrap();
        stream.write_all(&big).await.unwrap();
        assert_eq!(
            stream.inner.0.len(),
            3,
            "a full batch goes out before more is taken"
        );
        assert_eq!(stream.inner.0[1], b"small");
        assert_eq!(
            stream.inner.0[2], big,
            "a write of a whole batch goes straight through"
        );
        assert_eq!(stream.batch.capacity(), 0);
    }

    #[tokio::test]
    async fn reads_are_charged_past_the_allowance_and_refused_past_the_budget() {
        let budget = MemoryBudget::new(1000);
        let meter = Meter::new(&budget);
        let data = vec![0u8; UNCHARGED_RECEIVE_BYTES + 2000];
        let mut stream = Metered::new(&data[..], Arc::clone(&meter));
        let mut buf = vec![0u8; UNCHARGED_RECEIVE_BYTES + 600];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(budget.used(), 600);
        assert!(meter.receiving_since().is_some());
        meter.control_done(100);
        assert_eq!(budget.used(), 600 - 106);
        let error = stream.read_exact(&mut buf[..1400]).await.unwrap_err();
        assert!(is_over_budget(&error), "{error}");
        meter.message_done();
        assert_eq!(budget.used(), 0);
        assert_eq!(meter.receiving_since(), None);
    }
}
