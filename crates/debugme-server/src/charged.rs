//! What a connection has read but not yet received as a whole message (a large frame arriving
//! slowly), charged to the memory budget, so that many clients each holding a frame just under
//! the limit cannot take the server's memory: past the budget, the read fails and the client is
//! told why.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kanava_core::{MemoryBudget, Reservation};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One connection's charge for what it has read since its last whole message; none for
/// streams read elsewhere.
#[derive(Clone, Default)]
pub(crate) struct ReadCharge(Option<Arc<Mutex<Charge>>>);

struct Charge {
    held: Reservation,
    refused: bool,
    /// Whether reads are no longer charged: the connection is being drained before it closes.
    draining: bool,
}

impl ReadCharge {
    /// A charge against `memory`.
    pub(crate) fn new(memory: &Arc<MemoryBudget>) -> Self {
        Self(Some(Arc::new(Mutex::new(Charge {
            held: memory.empty(),
            refused: false,
            draining: false,
        }))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Charge) -> T) -> Option<T> {
        self.0
            .as_ref()
            .map(|charge| f(&mut charge.lock().unwrap_or_else(|p| p.into_inner())))
    }

    /// Charges `bytes` more read; false (and remembered) when they do not fit.
    fn grow(&self, bytes: usize) -> bool {
        self.with(|charge| {
            if charge.draining {
                return true;
            }
            let fits = charge.held.grow(bytes).is_ok();
            charge.refused |= !fits;
            fits
        })
        .unwrap_or(true)
    }

    /// A whole message was received: what was read for it is no longer held.
    pub(crate) fn message_done(&self) {
        self.with(|charge| charge.held.shrink(charge.held.bytes()));
    }

    /// Gives back what is held and charges no more reads: what is read from now on is thrown
    /// away as it comes (see [`drain`]), never kept.
    pub(crate) fn stop(&self) {
        self.with(|charge| {
            charge.held.shrink(charge.held.bytes());
            charge.draining = true;
        });
    }

    /// Whether a read was refused because the budget was exhausted.
    pub(crate) fn refused(&self) -> bool {
        self.with(|charge| charge.refused).unwrap_or(false)
    }
}

/// A stream whose reads are charged to a [`ReadCharge`].
pub(crate) struct Charged<S> {
    inner: S,
    charge: ReadCharge,
}

impl<S> Charged<S> {
    /// `inner`, its reads charged to `charge`.
    pub(crate) fn new(inner: S, charge: ReadCharge) -> Self {
        Self { inner, charge }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Charged<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.charge.grow(buf.filled().len() - before) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::other("server memory budget exhausted")))
                }
            }
            other => other,
        }
    }
}

/// Reads and throws away what the client still sends, at most `limit` bytes and until
/// `deadline`, in a small buffer: a client refused while it was sending then reads the refusal
/// before the connection closes, instead of losing it to the reset that closing a socket with
/// unread data sends.
pub(crate) async fn drain<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
    deadline: std::time::Duration,
) {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 8 * 1024];
    let mut read = 0;
    let _ = tokio::time::timeout(deadline, async {
        while read < limit {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Charged<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_are_charged_until_the_message_is_done_and_refused_past_the_budget() {
        let memory = MemoryBudget::new(10);
        let charge = ReadCharge::new(&memory);
        let mut stream = Charged::new(&b"0123456789abc"[..], charge.clone());
        let mut buf = [0u8; 6];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(memory.used(), 6);
        charge.message_done();
        assert_eq!(memory.used(), 0);
        let _other = memory.reserve(6).unwrap();
        assert!(stream.read_exact(&mut buf).await.is_err());
        assert!(charge.refused());
        assert!(!ReadCharge::default().refused());
    }
}
