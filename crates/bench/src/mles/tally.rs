//! Sequence accounting of one publisher's frames at one subscriber: how many distinct frames
//! arrived, and how many came twice or after a later one.

use std::collections::BTreeMap;

/// What a subscriber has seen of one publisher's sequence numbers.
#[derive(Debug, Default)]
pub(crate) struct SequenceTally {
    /// One past the highest sequence number seen.
    next: u64,
    /// Gaps below `next` not filled yet, as start → end (exclusive).
    gaps: BTreeMap<u64, u64>,
    unique: u64,
    duplicated: u64,
    reordered: u64,
}

impl SequenceTally {
    /// Counts the arrival of `seq`; true if it had not arrived before.
    pub(crate) fn record(&mut self, seq: u64) -> bool {
        if seq >= self.next {
            if seq > self.next {
                self.gaps.insert(self.next, seq);
            }
            self.next = seq.saturating_add(1);
            self.unique += 1;
            return true;
        }
        let gap = self.gaps.range(..=seq).next_back().map(|(&s, &e)| (s, e));
        match gap {
            Some((start, end)) if seq < end => {
                self.gaps.remove(&start);
                if start < seq {
                    self.gaps.insert(start, seq);
                }
                if seq + 1 < end {
                    self.gaps.insert(seq + 1, end);
                }
                self.unique += 1;
                self.reordered += 1;
                true
            }
            _ => {
                self.duplicated += 1;
                false
            }
        }
    }

    /// Whether the last of `count` frames (sequence `count - 1`) has arrived.
    pub(crate) fn has_seen_last_of(&self, count: u64) -> bool {
        self.next >= count
    }

    /// Distinct frames that arrived.
    pub(crate) fn unique(&self) -> u64 {
        self.unique
    }

    /// Arrivals of a frame that had already arrived.
    pub(crate) fn duplicated(&self) -> u64 {
        self.duplicated
    }

    /// Frames that arrived after a frame with a higher sequence number.
    pub(crate) fn reordered(&self) -> u64 {
        self.reordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut t = SequenceTally::default();
        assert!((0..5).all(|s| t.record(s)));
        assert_eq!((t.unique(), t.duplicated(), t.reordered()), (5, 0, 0));
        assert!(t.has_seen_last_of(5));
        assert!(!t.has_seen_last_of(6));
    }

    #[test]
    fn gaps_duplicates_and_late_frames() {
        let mut t = SequenceTally::default();
        for s in [0, 1, 5, 1, 3, 3, 7, 2, 4, 6] {
            t.record(s);
        }
        // Every one of 0..=7 arrived; 1 and 3 twice, and 3, 2, 4, 6 after a higher one.
        assert_eq!(t.unique(), 8);
        assert_eq!(t.duplicated(), 2);
        assert_eq!(t.reordered(), 4);
        assert!(t.gaps.is_empty());
        assert!(t.has_seen_last_of(8));
    }

    #[test]
    fn loss_is_what_never_arrives() {
        let mut t = SequenceTally::default();
        for s in [0, 2, 4, 9] {
            assert!(t.record(s));
        }
        let sent = 10;
        assert!(t.has_seen_last_of(sent));
        assert_eq!(sent - t.unique(), 6);
        assert!(!t.record(4));
        assert!(t.record(5));
        assert_eq!(sent - t.unique(), 5);
    }

    #[test]
    fn nothing_sent_is_seen_at_once() {
        assert!(SequenceTally::default().has_seen_last_of(0));
    }
}
