//! The bookkeeping behind the figures: what each Seen carries to identify it, when the user
//! sent each one, and what each watcher received (latency, duplicates, reordering).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Decimal digits of the sequence number at the start of each Seen's data.
const STAMP_DIGITS: usize = 10;

/// The smallest Seen: the sequence number and the CR LF that ends it.
pub(crate) const MIN_SIZE: usize = STAMP_DIGITS + 2;

/// Most messages a run may send (the sequence number must fit its digits, and each watcher
/// keeps one flag per message).
pub(crate) const MAX_MESSAGES: usize = 10_000_000;

/// A send time not taken yet.
const UNSENT: u64 = u64::MAX;

/// The terminal output of message `seq`: its sequence number in ten digits, dots up to
/// `size` bytes, and CR LF. `size` is at least [`MIN_SIZE`].
pub(crate) fn seen_data(seq: u64, size: usize) -> Vec<u8> {
    let mut data = format!("{seq:0>STAMP_DIGITS$}").into_bytes();
    data.resize(size.max(MIN_SIZE) - 2, b'.');
    data.extend_from_slice(b"\r\n");
    data
}

/// The sequence number of a Seen's data made by [`seen_data`]; `None` for other output, such
/// as the session's start line.
pub(crate) fn seq_of(data: &[u8]) -> Option<u64> {
    let digits = data.get(..STAMP_DIGITS)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// When the user sent each message, in nanoseconds on one clock for the whole process.
pub(crate) struct Ledger {
    start: Instant,
    sent_ns: Box<[AtomicU64]>,
    measured_from: u64,
    sent: AtomicU64,
    delivered: AtomicU64,
}

impl Ledger {
    /// A ledger of `messages`, of which those from `measured_from` on count in the latency.
    pub(crate) fn new(messages: usize, measured_from: u64) -> Self {
        Self {
            start: Instant::now(),
            sent_ns: (0..messages).map(|_| AtomicU64::new(UNSENT)).collect(),
            measured_from,
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// Messages of the run.
    pub(crate) fn len(&self) -> u64 {
        self.sent_ns.len() as u64
    }

    /// The first message past the warmup.
    pub(crate) fn measured_from(&self) -> u64 {
        self.measured_from
    }

    /// Now, in nanoseconds since the ledger was made.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(UNSENT - 1)
    }

    /// Notes that message `seq` is being sent now.
    pub(crate) fn record_send(&self, seq: u64) {
        if let Some(at) = self.slot(seq) {
            at.store(self.now_ns(), Ordering::Release);
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When message `seq` was sent, if it was.
    pub(crate) fn sent_at(&self, seq: u64) -> Option<u64> {
        let at = self.slot(seq)?.load(Ordering::Acquire);
        (at != UNSENT).then_some(at)
    }

    fn slot(&self, seq: u64) -> Option<&AtomicU64> {
        self.sent_ns.get(usize::try_from(seq).ok()?)
    }

    /// Messages sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// First deliveries so far, over all watchers, for the progress bar.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Counts one watcher's receipt of message `seq` at `now_ns` into `receipts`.
    pub(crate) fn receive(&self, receipts: &mut Receipts, seq: u64, now_ns: u64) {
        let Some(sent_ns) = self.sent_at(seq) else {
            receipts.unknown += 1;
            return;
        };
        if receipts.record(seq, sent_ns, now_ns, seq >= self.measured_from) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one watcher received of the run's messages.
#[derive(Debug)]
pub(crate) struct Receipts {
    seen: Vec<bool>,
    highest: Option<u64>,
    /// Distinct messages received.
    pub(crate) unique: u64,
    /// Receipts of a message already received.
    pub(crate) duplicated: u64,
    /// Messages received after a later one.
    pub(crate) reordered: u64,
    /// Messages with a sequence number the user never sent.
    pub(crate) unknown: u64,
    /// Microseconds from send to receipt of each distinct measured message.
    pub(crate) latency_us: Vec<u64>,
    /// When the last distinct measured message arrived, in ledger nanoseconds.
    pub(crate) last_measured_ns: Option<u64>,
}

impl Receipts {
    /// Nothing received yet, of `messages`.
    pub(crate) fn new(messages: u64) -> Self {
        Self {
            seen: vec![false; usize::try_from(messages).unwrap_or(0)],
            highest: None,
            unique: 0,
            duplicated: 0,
            reordered: 0,
            unknown: 0,
            latency_us: Vec::new(),
            last_measured_ns: None,
        }
    }

    /// Whether every message has arrived.
    pub(crate) fn complete(&self) -> bool {
        self.unique == self.seen.len() as u64
    }

    /// Counts message `seq`, sent at `sent_ns`, arriving at `now_ns`; its latency counts if it
    /// is `measured`. True if it had not arrived before.
    fn record(&mut self, seq: u64, sent_ns: u64, now_ns: u64, measured: bool) -> bool {
        let Some(seen) = usize::try_from(seq).ok().and_then(|i| self.seen.get_mut(i)) else {
            self.unknown += 1;
            return false;
        };
        if *seen {
            self.duplicated += 1;
            return false;
        }
        *seen = true;
        self.unique += 1;
        if self.highest.is_some_and(|highest| seq < highest) {
            self.reordered += 1;
        } else {
            self.highest = Some(seq);
        }
        if measured {
            self.latency_us.push(now_ns.saturating_sub(sent_ns) / 1000);
            self.last_measured_ns = self.last_measured_ns.max(Some(now_ns));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_data_carries_its_sequence_number() {
        let data = seen_data(42, 20);
        assert_eq!(data, b"0000000042........\r\n");
        assert_eq!(seq_of(&data), Some(42));
        assert_eq!(seen_data(7, MIN_SIZE), b"0000000007\r\n");
        assert_eq!(seen_data(7, 1).len(), MIN_SIZE);
        assert_eq!(seq_of(&seen_data(9_999_999_999, 100)), Some(9_999_999_999));
        assert_eq!(seq_of(b"** debug-me session started\r\n"), None);
        assert_eq!(seq_of(b"12345"), None);
    }

    #[test]
    fn latency_is_from_send_to_receipt_after_the_warmup() {
        let ledger = Ledger::new(4, 1);
        let mut receipts = Receipts::new(4);
        ledger.receive(&mut receipts, 0, 10);
        assert_eq!(receipts.unknown, 1, "a message not sent yet is not counted");
        for seq in 0..3 {
            ledger.record_send(seq);
        }
        let sent_1 = ledger.sent_at(1).unwrap();
        ledger.receive(&mut receipts, 0, sent_1);
        ledger.receive(&mut receipts, 1, sent_1 + 2_500_000);
        assert_eq!(receipts.latency_us, [2_500], "message 0 is the warmup");
        assert_eq!(receipts.last_measured_ns, Some(sent_1 + 2_500_000));
        assert_eq!((ledger.sent(), ledger.delivered()), (3, 2));
        assert_eq!(ledger.sent_at(3), None);
        assert!(!receipts.complete());
    }

    #[test]
    fn duplicates_reordering_and_loss() {
        let mut r = Receipts::new(6);
        for seq in [0, 2, 2, 1, 4, 3, 9] {
            r.record(seq, 0, 1000, true);
        }
        assert_eq!(
            (r.unique, r.duplicated, r.reordered, r.unknown),
            (5, 1, 2, 1)
        );
        assert_eq!(r.latency_us.len(), 5);
        assert!(!r.complete(), "5 is lost");
        assert!(r.record(5, 0, 1000, false));
        assert!(r.complete());
        assert_eq!(
            r.latency_us.len(),
            5,
            "an unmeasured message adds no latency"
        );
    }
}
