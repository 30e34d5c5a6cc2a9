//! The stamp at the start of every benchmark payload: which run and publisher sent the frame,
//! its sequence number and when it was sent, so that a subscriber can measure latency and loss.

use bytes::{BufMut, Bytes, BytesMut};

/// Length of a stamp, and so the smallest payload `--size` allows.
pub(crate) const STAMP_LEN: usize = 16 + 4 + 8 + 8;

/// Identifies one benchmark run, so that frames replayed from the history of earlier runs are
/// told apart from this run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunId(pub(crate) [u8; 16]);

impl RunId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }

    /// The first bytes of the id in hex, to name this run's members and channels.
    pub(crate) fn short_hex(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What one benchmark frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Index of the publisher across all channels.
    pub(crate) publisher: u32,
    /// Position of the frame among its publisher's frames, from 0.
    pub(crate) seq: u64,
    /// Send time in nanoseconds since the run's clock started.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// The payload carrying this stamp for `run`, padded with zeros to `size` bytes.
    pub(crate) fn payload(&self, run: RunId, size: usize) -> Bytes {
        let mut buf = BytesMut::with_capacity(size.max(STAMP_LEN));
        buf.put_slice(&run.0);
        buf.put_u32_le(self.publisher);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.sent_ns);
        buf.resize(size.max(STAMP_LEN), 0);
        buf.freeze()
    }

    /// The stamp of `payload` if it is a frame of `run`, `None` for anything else.
    pub(crate) fn parse(payload: &[u8], run: RunId) -> Option<Self> {
        let (id, rest) = payload.split_first_chunk::<16>()?;
        if *id != run.0 {
            return None;
        }
        let (publisher, rest) = rest.split_first_chunk::<4>()?;
        let (seq, rest) = rest.split_first_chunk::<8>()?;
        let (sent_ns, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            publisher: u32::from_le_bytes(*publisher),
            seq: u64::from_le_bytes(*seq),
            sent_ns: u64::from_le_bytes(*sent_ns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let run = RunId([7; 16]);
        let stamp = Stamp {
            publisher: 3,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        let payload = stamp.payload(run, 100);
        assert_eq!(payload.len(), 100);
        assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0));
        assert_eq!(Stamp::parse(&payload, run), Some(stamp));
        assert_eq!(stamp.payload(run, 1).len(), STAMP_LEN);
    }

    #[test]
    fn other_runs_and_short_frames_are_ignored() {
        let run = RunId([1; 16]);
        let stamp = Stamp {
            publisher: 0,
            seq: 0,
            sent_ns: 0,
        };
        let payload = stamp.payload(run, STAMP_LEN);
        assert_eq!(Stamp::parse(&payload, RunId([2; 16])), None);
        assert_eq!(Stamp::parse(&payload[..STAMP_LEN - 1], run), None);
        assert_eq!(Stamp::parse(br#"{"uid":"a","channel":"c"}"#, run), None);
        assert_eq!(RunId([0xab; 16]).short_hex(), "abababab");
    }
}
