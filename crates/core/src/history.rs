//! The retention rule for a channel's history, shared by the store (on disk) and the hub (in
//! memory) so that what a joiner is replayed never depends on whether the channel was cached.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::Entry;

/// Per-channel history caps: both must hold after every append, oldest entries out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most entries kept (Mles default 200).
    pub max_entries: usize,
    /// Most payload bytes kept, summed over the entries.
    pub max_bytes: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_entries: 200,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A channel's retained history in order, evicting from the front as the limits require.
#[derive(Debug, Clone)]
pub struct HistoryWindow {
    limits: HistoryLimits,
    entries: VecDeque<Arc<Entry>>,
    bytes: u64,
}

impl HistoryWindow {
    /// An empty window with the given limits.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Appends `entry` and evicts the oldest entries until both limits hold. An entry larger than
    /// the byte cap on its own evicts everything, itself included.
    pub fn push(&mut self, entry: Arc<Entry>) {
        self.bytes += entry.payload.len() as u64;
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.payload.len() as u64,
                None => break,
            }
        }
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Arc<Entry>> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The limits this window keeps.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// The sequence number of the oldest entry that would remain if `newer` (oldest first,
    /// all newer than the retained entries) were pushed; `next_seq` if none would.
    pub fn first_kept_after<'a>(
        &'a self,
        newer: impl DoubleEndedIterator<Item = &'a Entry>,
        next_seq: u64,
    ) -> u64 {
        let mut first = next_seq;
        let (mut count, mut bytes) = (0usize, 0u64);
        for entry in newer.rev().chain(self.entries.iter().rev().map(|e| &**e)) {
            count += 1;
            bytes += entry.payload.len() as u64;
            if count > self.limits.max_entries || bytes > self.limits.max_bytes {
                break;
            }
            first = entry.seq;
        }
        first
    }

    /// Payload bytes currently retained.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of entries currently retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameKind, Uid};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn entry(seq: u64, len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            seq,
            kind: FrameKind::Binary,
            sender: Uid::new("u").unwrap(),
            payload: Bytes::from(vec![0u8; len]),
            time_ms: 0,
            verified: false,
        })
    }

    #[test]
    fn count_cap_keeps_newest() {
        let mut w = HistoryWindow::new(HistoryLimits {
            max_entries: 3,
            max_bytes: u64::MAX,
        });
        for seq in 0..5 {
            w.push(entry(seq, 1));
        }
        let seqs: Vec<u64> = w.entries().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
    }

    #[test]
    fn byte_cap_keeps_newest_that_fit() {
        // The spec's D4 example: 1 MiB cap, ten 200 KiB frames: the last five remain.
        let mut w = HistoryWindow::new(HistoryLimits {
            max_entries: 200,
            max_bytes: 1024 * 1024,
        });
        for seq in 0..10 {
            w.push(entry(seq, 200 * 1024));
        }
        let seqs: Vec<u64> = w.entries().map(|e| e.seq).collect();
        assert_eq!(seqs, [5, 6, 7, 8, 9]);
        assert_eq!(w.bytes(), 5 * 200 * 1024);
    }

    #[test]
    fn first_kept_after_matches_pushing() {
        let limits = HistoryLimits {
            max_entries: 3,
            max_bytes: 10,
        };
        let mut w = HistoryWindow::new(limits);
        for seq in 1..=3 {
            w.push(entry(seq, 2));
        }
        let newer = [entry(4, 2), entry(5, 5)];
        let first = w.first_kept_after(newer.iter().map(|e| &**e), 6);
        for e in newer {
            w.push(e);
        }
        assert_eq!(first, w.entries().next().unwrap().seq);
        // Pushing 5 made four entries: 2 went, leaving 3, 4, 5 (9 bytes).
        assert_eq!(first, 3);
        assert_eq!(w.first_kept_after(std::iter::empty(), 6), 3);
        // One more large entry would push out 3 and 4 by bytes.
        assert_eq!(w.first_kept_after([&*entry(6, 5)].into_iter(), 7), 5);
        let empty = HistoryWindow::new(limits);
        assert_eq!(empty.first_kept_after(std::iter::empty(), 1), 1);
    }

    proptest! {
        #[test]
        fn limits_always_hold_and_order_is_kept(
            max_entries in 1usize..20,
            max_bytes in 0u64..500,
            lens in proptest::collection::vec(0usize..100, 0..60),
        ) {
            let mut w = HistoryWindow::new(HistoryLimits { max_entries, max_bytes });
            for (seq, len) in lens.iter().enumerate() {
                w.push(entry(seq as u64, *len));
                prop_assert!(w.len() <= max_entries);
                prop_assert!(w.bytes() <= max_bytes);
                let sum: u64 = w.entries().map(|e| e.payload.len() as u64).sum();
                prop_assert_eq!(sum, w.bytes());
            }
            // What remains is a suffix of what was pushed.
            let seqs: Vec<u64> = w.entries().map(|e| e.seq).collect();
            let n = seqs.len() as u64;
            let expected: Vec<u64> = (lens.len() as u64 - n..lens.len() as u64).collect();
            prop_assert_eq!(seqs, expected);
        }
    }
}
