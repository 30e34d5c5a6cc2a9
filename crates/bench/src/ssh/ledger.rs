//! What was sent and who has seen it: one entry per message, with its send time and how many
//! screens have yet to show it, shared by the sender and every session of the run. All times
//! come from one monotonic clock in this process.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use super::tag::RunTag;
use crate::mles::Latency;

/// Most messages one run may send.
pub(crate) const MAX_MESSAGES: usize = 1_000_000;

/// Highest latency the histograms tell apart (an hour); higher ones are counted as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Latency samples a session gathers before adding them to the shared histogram; batching
/// keeps the lock off the per-screen path.
pub(crate) const LATENCY_BATCH: usize = 256;

/// One message of the run.
struct Message {
    /// The text typed, which the screens are searched for.
    text: String,
    /// Send time, in nanoseconds since the start of sending.
    sent_ns: AtomicU64,
    /// Screens that have not shown it yet.
    remaining: AtomicUsize,
    /// The latest time a screen first showed it.
    last_seen_ns: AtomicU64,
}

/// The messages of a run and what the sessions saw of them.
pub(crate) struct Ledger {
    /// Start of sending; times are nanoseconds since then.
    start: Instant,
    /// Messages sent before this are left out of the latency statistics.
    warmup_ns: u64,
    messages: Box<[Message]>,
    /// Indices of the sessions that type the messages, in turn.
    senders: Box<[usize]>,
    /// Screens that should show each message: every ready session but its sender.
    recipients: usize,
    /// Messages sent so far, in order: the first `sent` have their send time.
    sent: AtomicUsize,
    /// Times a message first appeared on a session's screen.
    seen: AtomicU64,
    /// Messages that have appeared on every screen.
    complete: AtomicUsize,
    /// Latency in microseconds from sending to each screen showing the message.
    per_screen: Mutex<Histogram<u64>>,
    /// Latency in microseconds from sending to the last screen showing the message.
    last_screen: Mutex<Histogram<u64>>,
}

/// What the ledger says once the run is over.
pub(crate) struct Tally {
    /// Messages sent.
    pub(crate) sent: u64,
    /// Screen updates owed: each sent message on each session's screen but its sender's.
    pub(crate) expected_screens: u64,
    /// Screen updates seen.
    pub(crate) seen_screens: u64,
    /// Sent messages that did not reach every screen.
    pub(crate) lost_messages: u64,
    /// Latency to each screen.
    pub(crate) per_screen: Latency,
    /// Latency to the last screen.
    pub(crate) last_screen: Latency,
}

impl Ledger {
    /// The `count` messages of run `tag`, sent in turn by `senders` (session indices), each
    /// to be seen by every other one of them; sending starts now.
    pub(crate) fn new(
        tag: RunTag,
        senders: &[usize],
        count: usize,
        warmup: Duration,
    ) -> Result<Self, hdrhistogram::CreationError> {
        let recipients = senders.len().saturating_sub(1);
        let messages = (0..count)
            .map(|seq| Message {
                text: tag.message(seq),
                sent_ns: AtomicU64::new(0),
                remaining: AtomicUsize::new(recipients),
                last_seen_ns: AtomicU64::new(0),
            })
            .collect();
        Ok(Self {
            start: Instant::now(),
            warmup_ns: u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX),
            messages,
            senders: senders.into(),
            recipients,
            sent: AtomicUsize::new(0),
            seen: AtomicU64::new(0),
            complete: AtomicUsize::new(0),
            per_screen: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
            last_screen: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
        })
    }

    /// When message `seq` is due, from the start of sending.
    pub(crate) fn due(&self, seq: usize, rate: f64) -> Instant {
        self.start + Duration::from_secs_f64(seq as f64 / rate)
    }

    /// Messages of the run.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Position in the senders given to [`Ledger::new`] of the one that types message `seq`.
    pub(crate) fn turn(&self, seq: usize) -> usize {
        seq % self.senders.len()
    }

    /// Index of the session that types message `seq`.
    fn sender(&self, seq: usize) -> usize {
        self.senders[self.turn(seq)]
    }

    /// Now, in nanoseconds since the start of sending.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Stamps message `seq` as sent now and returns the keys that type it (its text and
    /// Enter). Messages must be sent in order, each once.
    pub(crate) fn send(&self, seq: usize) -> Bytes {
        let message = &self.messages[seq];
        message.sent_ns.store(self.now_ns(), Ordering::Relaxed);
        self.sent.store(seq + 1, Ordering::Release);
        Bytes::from(format!("{}\r", message.text))
    }

    /// Messages sent so far.
    pub(crate) fn sent(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    /// Times a message first appeared on a screen so far.
    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Messages that have appeared on every screen so far.
    pub(crate) fn complete(&self) -> usize {
        self.complete.load(Ordering::Relaxed)
    }

    /// Counts message `seq` appearing on one more screen at `at_ns`; returns the latency in
    /// microseconds if the message counts in the statistics.
    fn sighted(&self, seq: usize, at_ns: u64) -> Option<u64> {
        let message = &self.messages[seq];
        message.last_seen_ns.fetch_max(at_ns, Ordering::AcqRel);
        self.seen.fetch_add(1, Ordering::Relaxed);
        let sent_ns = message.sent_ns.load(Ordering::Relaxed);
        let measured = sent_ns >= self.warmup_ns;
        if message.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.complete.fetch_add(1, Ordering::Relaxed);
            if measured {
                let last_ns = message.last_seen_ns.load(Ordering::Acquire);
                lock(&self.last_screen).saturating_record(last_ns.saturating_sub(sent_ns) / 1000);
            }
        }
        measured.then(|| at_ns.saturating_sub(sent_ns) / 1000)
    }

    /// Adds a session's latency samples to the shared histogram, emptying `samples`.
    pub(crate) fn record_per_screen(&self, samples: &mut Vec<u64>) {
        let mut histogram = lock(&self.per_screen);
        for us in samples.drain(..) {
            histogram.saturating_record(us);
        }
    }

    /// Adds up what was sent and seen.
    pub(crate) fn tally(&self) -> Tally {
        let sent = &self.messages[..self.sent()];
        let owed: u64 = sent
            .iter()
            .map(|m| m.remaining.load(Ordering::Acquire) as u64)
            .sum();
        let expected_screens = (sent.len() * self.recipients) as u64;
        Tally {
            sent: sent.len() as u64,
            expected_screens,
            seen_screens: expected_screens - owed,
            lost_messages: sent
                .iter()
                .filter(|m| m.remaining.load(Ordering::Acquire) > 0)
                .count() as u64,
            per_screen: Latency::of(&lock(&self.per_screen)),
            last_screen: Latency::of(&lock(&self.last_screen)),
        }
    }
}

/// Locks a histogram; a panic elsewhere does not make its counts wrong.
fn lock(histogram: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    histogram.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One session's watch for the messages of others: which it has yet to see on its screen.
#[derive(Debug, Default)]
pub(crate) struct Lookout {
    /// Messages up to here have been taken into `awaited` (or were the session's own).
    taken: usize,
    /// Messages sent by others that the screen has not shown yet.
    awaited: Vec<usize>,
    /// Latency samples not yet added to the shared histogram.
    samples: Vec<u64>,
}

impl Lookout {
    /// Looks for the awaited messages in `screen` (the text of session `me`'s screen as it is
    /// after output received at `at_ns`), first awaiting any message sent since the last look.
    /// `screen` is only called if some message is awaited.
    pub(crate) fn look(
        &mut self,
        ledger: &Ledger,
        me: usize,
        at_ns: u64,
        screen: impl FnOnce() -> String,
    ) {
        let sent = ledger.sent();
        self.awaited
            .extend((self.taken..sent).filter(|&seq| ledger.sender(seq) != me));
        self.taken = self.taken.max(sent);
        if self.awaited.is_empty() {
            return;
        }
        let text = screen();
        self.awaited.retain(|&seq| {
            if !text.contains(ledger.messages[seq].text.as_str()) {
                return true;
            }
            if let Some(us) = ledger.sighted(seq, at_ns) {
                self.samples.push(us);
            }
            false
        });
        if self.samples.len() >= LATENCY_BATCH {
            ledger.record_per_screen(&mut self.samples);
        }
    }

    /// Adds the remaining latency samples to the shared histogram.
    pub(crate) fn flush(&mut self, ledger: &Ledger) {
        ledger.record_per_screen(&mut self.samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(senders: &[usize], count: usize, warmup: Duration) -> (RunTag, Ledger) {
        let tag = RunTag::random();
        (tag, Ledger::new(tag, senders, count, warmup).unwrap())
    }

    #[test]
    fn a_message_is_complete_when_every_other_screen_shows_it() {
        let created = std::time::Instant::now();
        let (tag, ledger) = ledger(&[0, 1, 2], 3, Duration::ZERO);
        let mut lookouts: Vec<Lookout> = (0..3).map(|_| Lookout::default()).collect();
        assert_eq!(ledger.send(0), Bytes::from(format!("{}\r", tag.message(0))));
        let sent_by = created.elapsed();
        assert_eq!(ledger.sender(0), 0);
        let shown = || format!("12:00 <b> {}\n", tag.message(0));
        lookouts[1].look(&ledger, 1, 5_000_000, shown);
        assert_eq!((ledger.seen(), ledger.complete()), (1, 0));
        // The sender does not wait for its own message, even when its screen shows it.
        lookouts[0].look(&ledger, 0, 6_000_000, shown);
        assert_eq!((ledger.seen(), ledger.complete()), (1, 0));
        lookouts[2].look(&ledger, 2, 9_000_000, shown);
        assert_eq!((ledger.seen(), ledger.complete()), (2, 1));
        // Seen again later: counted once.
        lookouts[2].look(&ledger, 2, 10_000_000, shown);
        assert_eq!(ledger.seen(), 2);
        for lookout in &mut lookouts {
            lookout.flush(&ledger);
        }
        let tally = ledger.tally();
        assert_eq!((tally.sent, tally.expected_screens), (1, 2));
        assert_eq!((tally.seen_screens, tally.lost_messages), (2, 0));
        assert_eq!(tally.per_screen.samples, 2);
        assert_eq!(tally.last_screen.samples, 1);
        // Sent within `sent_by` of the start (about 0 ns, later on a loaded machine), last
        // shown at 9 ms.
        let earliest = 9_000u64.saturating_sub(sent_by.as_micros() as u64 + 100);
        assert!(
            (earliest..=9_100).contains(&tally.last_screen.max),
            "{} µs, sent within {sent_by:?}",
            tally.last_screen.max
        );
    }

    #[test]
    fn what_never_shows_is_lost_and_the_warmup_is_not_measured() {
        let (tag, ledger) = ledger(&[4, 7], 2, Duration::from_secs(3600));
        let mut lookout = Lookout::default();
        ledger.send(0);
        ledger.send(1);
        assert_eq!((ledger.sender(0), ledger.sender(1)), (4, 7));
        // Session 4 waits only for message 1, typed by session 7; its screen shows neither.
        lookout.look(&ledger, 4, 1, || format!("{}\n", tag.message(0)));
        assert_eq!(lookout.awaited, [1]);
        lookout.look(&ledger, 4, 2, || format!("{}\n", tag.message(1)));
        assert!(lookout.awaited.is_empty());
        lookout.flush(&ledger);
        let tally = ledger.tally();
        assert_eq!(
            (tally.sent, tally.expected_screens, tally.seen_screens),
            (2, 2, 1)
        );
        assert_eq!(tally.lost_messages, 1);
        assert_eq!(
            (tally.per_screen.samples, tally.last_screen.samples),
            (0, 0)
        );
    }

    #[test]
    fn messages_are_due_at_the_rate() {
        let (_, ledger) = ledger(&[0, 1], 4, Duration::ZERO);
        assert_eq!(ledger.len(), 4);
        assert_eq!(
            ledger.due(3, 2.0) - ledger.due(0, 2.0),
            Duration::from_millis(1500)
        );
    }
}
