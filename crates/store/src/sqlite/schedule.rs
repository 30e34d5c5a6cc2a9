//! The writer's fair scheduler: which queued requests go into the next transaction.
//!
//! All channels share one SQLite writer, so one source sending big frames into many channels
//! would otherwise fill every transaction and delay every other channel's frames behind its
//! backlog. Appends wait in one queue per source (an IPv4 address or IPv6 /64) and each batch
//! takes them round-robin, one request per source per turn, until the batch holds
//! [`BatchLimits::bytes`]; the source whose turn was cut short goes first in the next batch. A
//! frame from a source that has just one request queued is therefore committed in the next batch,
//! however much another source has queued.
//!
//! The order the [`Store`](crate::Store) contract promises is kept where it matters: one
//! source's appends stay in order; a read of a channel waits for the appends to that channel
//! submitted before it; account jobs keep their order; and a barrier (a purge, a sync) is applied
//! only after everything submitted before it, and before anything submitted after it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use kanava_core::{ChannelName, source_of};

/// What the scheduler needs to know about a request to place it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Class {
    /// Frames from `source` (none: the server's own), of `bytes` in all, to `channels`.
    Append {
        source: Option<IpAddr>,
        bytes: u64,
        channels: Vec<ChannelName>,
    },
    /// A read of one channel: it must see the appends to it submitted before it.
    Read(ChannelName),
    /// An account operation: ordered with other jobs and with barriers only.
    Job,
    /// Applied after everything submitted before it and before everything after it.
    Barrier,
}

/// How much one transaction may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchLimits {
    /// Most requests.
    pub requests: usize,
    /// Most appended payload bytes; a batch always takes at least one append when one is ready.
    pub bytes: u64,
}

struct Queued<T> {
    id: u64,
    bytes: u64,
    channels: Vec<ChannelName>,
    request: T,
}

/// Queued requests, and the order to apply them in; see the module docs.
pub(super) struct Scheduler<T> {
    next_id: u64,
    /// Appends by source, each queue in submission order.
    sources: HashMap<Option<IpAddr>, VecDeque<Queued<T>>>,
    /// Sources with appends queued, in the order they get their next turn.
    turns: VecDeque<Option<IpAddr>>,
    /// Ids of the queued appends to each channel.
    pending: HashMap<ChannelName, BTreeSet<u64>>,
    /// Jobs, and reads with their id, in submission order.
    control: VecDeque<(u64, Class, T)>,
    /// The first barrier submitted that has not been applied, if any.
    barrier: Option<T>,
    /// Everything submitted after that barrier, held until it has been applied.
    held: VecDeque<(Class, T)>,
}

impl<T> Default for Scheduler<T> {
    fn default() -> Self {
        Self {
            next_id: 0,
            sources: HashMap::new(),
            turns: VecDeque::new(),
            pending: HashMap::new(),
            control: VecDeque::new(),
            barrier: None,
            held: VecDeque::new(),
        }
    }
}

impl<T> Scheduler<T> {
    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.turns.is_empty()
            && self.control.is_empty()
            && self.barrier.is_none()
            && self.held.is_empty()
    }

    /// Queues a request.
    pub(super) fn push(&mut self, class: Class, request: T) {
        if self.barrier.is_some() {
            self.held.push_back((class, request));
            return;
        }
        self.admit(class, request);
    }

    fn admit(&mut self, class: Class, request: T) {
        let id = self.next_id;
        self.next_id += 1;
        match class {
            Class::Append {
                source,
                bytes,
                channels,
            } => {
                let key = source.map(source_of);
                for channel in &channels {
                    self.pending.entry(channel.clone()).or_default().insert(id);
                }
                let queue = self.sources.entry(key).or_default();
                if queue.is_empty() {
                    self.turns.push_back(key);
                }
                queue.push_back(Queued {
                    id,
                    bytes,
                    channels,
                    request,
                });
            }
            Class::Barrier => self.barrier = Some(request),
            class => self.control.push_back((id, class, request)),
        }
    }

    /// Takes the next batch, in the order to apply it; empty only when nothing is queued.
    pub(super) fn next_batch(&mut self, limits: BatchLimits) -> Vec<T> {
        let mut batch = Vec::new();
        // Jobs and reads first: a read taken here saw every earlier append to its channel
        // committed, and none of the appends below is to a channel a waiting read holds back.
        let mut waiting = VecDeque::new();
        let mut job_waiting = false;
        while let Some((id, class, request)) = self.control.pop_front() {
            let ready = batch.len() < limits.requests
                && match &class {
                    Class::Read(channel) => self
                        .pending
                        .get(channel)
                        .and_then(BTreeSet::first)
                        .is_none_or(|first| *first > id),
                    _ => !job_waiting,
                };
            if ready {
                batch.push(request);
            } else {
                job_waiting |= matches!(class, Class::Job);
                waiting.push_back((id, class, request));
            }
        }
        self.control = waiting;
        let mut bytes = 0u64;
        let mut appends = 0usize;
        while batch.len() < limits.requests {
            let Some(key) = self.turns.pop_front() else {
                break;
            };
            let Some(queue) = self.sources.get_mut(&key) else {
                continue;
            };
            let Some(head) = queue.front() else {
                self.sources.remove(&key);
                continue;
            };
            if appends > 0 && bytes.saturating_add(head.bytes) > limits.bytes {
                // This source goes first next time.
                self.turns.push_front(key);
                break;
            }
            let Some(taken) = queue.pop_front() else {
                break;
            };
            if queue.is_empty() {
                self.sources.remove(&key);
            } else {
                self.turns.push_back(key);
            }
            for channel in &taken.channels {
                if let Some(ids) = self.pending.get_mut(channel) {
                    ids.remove(&taken.id);
                    if ids.is_empty() {
                        self.pending.remove(channel);
                    }
                }
            }
            bytes = bytes.saturating_add(taken.bytes);
            appends += 1;
            batch.push(taken.request);
        }
        if batch.is_empty()
            && self.turns.is_empty()
            && self.control.is_empty()
            && let Some(barrier) = self.barrier.take()
        {
            batch.push(barrier);
            while self.barrier.is_none() {
                let Some((class, request)) = self.held.pop_front() else {
                    break;
                };
                self.admit(class, request);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(source: &str, bytes: u64, channel: &str) -> Class {
        Class::Append {
            source: Some(source.parse().unwrap()),
            bytes,
            channels: vec![ChannelName::new(channel).unwrap()],
        }
    }

    const LIMITS: BatchLimits = BatchLimits {
        requests: 4096,
        bytes: 1 << 20,
    };

    #[test]
    fn a_bulk_source_cannot_hold_another_sources_frame_beyond_one_batch() {
        let mut scheduler = Scheduler::default();
        // 64 MiB queued by one address, into many channels, before the chat line arrives.
        for i in 0..256 {
            scheduler.push(
                append("127.0.0.2", 256 << 10, &format!("bulk{i}")),
                ("bulk", i),
            );
        }
        scheduler.push(append("127.0.0.3", 20, "chat"), ("chat", 0));
        let first = scheduler.next_batch(LIMITS);
        let second = scheduler.next_batch(LIMITS);
        assert!(
            first.contains(&("chat", 0)) || second.contains(&("chat", 0)),
            "the chat line waited longer than one batch: {first:?} then {second:?}"
        );
        let bulk_bytes = |batch: &[(&str, i32)]| {
            batch.iter().filter(|(who, _)| *who == "bulk").count() as u64 * (256 << 10)
        };
        assert!(bulk_bytes(&first) <= LIMITS.bytes, "{first:?}");
        assert!(bulk_bytes(&second) <= LIMITS.bytes, "{second:?}");
    }

    #[test]
    fn sources_take_turns_and_each_keeps_its_order() {
        let mut scheduler = Scheduler::default();
        for i in 0..6 {
            scheduler.push(append("192.0.2.1", 100, "a"), ("a", i));
        }
        for i in 0..2 {
            scheduler.push(append("192.0.2.2", 100, "b"), ("b", i));
        }
        let limits = BatchLimits {
            requests: 4096,
            bytes: 250,
        };
        let batches: Vec<_> = std::iter::from_fn(|| {
            let batch = scheduler.next_batch(limits);
            (!batch.is_empty()).then_some(batch)
        })
        .collect();
        assert_eq!(
            batches,
            [
                vec![("a", 0), ("b", 0)],
                vec![("a", 1), ("b", 1)],
                vec![("a", 2), ("a", 3)],
                vec![("a", 4), ("a", 5)],
            ]
        );
    }

    #[test]
    fn an_oversized_frame_still_goes_alone() {
        let mut scheduler = Scheduler::default();
        scheduler.push(append("192.0.2.1", 10 << 20, "a"), 1);
        scheduler.push(append("192.0.2.2", 10, "b"), 2);
        assert_eq!(scheduler.next_batch(LIMITS), [1]);
        assert_eq!(scheduler.next_batch(LIMITS), [2]);
        assert!(scheduler.is_empty());
    }

    #[test]
    fn a_read_waits_for_earlier_appends_to_its_channel_only() {
        let mut scheduler = Scheduler::default();
        let limits = BatchLimits {
            requests: 4096,
            bytes: 100,
        };
        scheduler.push(append("192.0.2.1", 100, "a"), "append a1");
        scheduler.push(append("192.0.2.1", 100, "a"), "append a2");
        scheduler.push(Class::Read(ChannelName::new("a").unwrap()), "read a");
        scheduler.push(Class::Read(ChannelName::new("b").unwrap()), "read b");
        scheduler.push(Class::Job, "job");
        assert_eq!(scheduler.next_batch(limits), ["read b", "job", "append a1"]);
        assert_eq!(scheduler.next_batch(limits), ["append a2"]);
        assert_eq!(scheduler.next_batch(limits), ["read a"]);
        assert!(scheduler.is_empty());
    }

    #[test]
    fn a_barrier_follows_everything_before_it_and_precedes_everything_after() {
        let mut scheduler = Scheduler::default();
        let limits = BatchLimits {
            requests: 4096,
            bytes: 100,
        };
        scheduler.push(append("192.0.2.1", 100, "a"), "a1");
        scheduler.push(append("192.0.2.1", 100, "a"), "a2");
        scheduler.push(Class::Barrier, "purge");
        scheduler.push(append("192.0.2.2", 10, "b"), "b1");
        scheduler.push(Class::Job, "job");
        scheduler.push(Class::Barrier, "sync");
        scheduler.push(append("192.0.2.2", 10, "b"), "b2");
        assert_eq!(scheduler.next_batch(limits), ["a1"]);
        assert_eq!(scheduler.next_batch(limits), ["a2"]);
        assert_eq!(scheduler.next_batch(limits), ["purge"]);
        assert_eq!(scheduler.next_batch(limits), ["job", "b1"]);
        assert_eq!(scheduler.next_batch(limits), ["sync"]);
        assert_eq!(scheduler.next_batch(limits), ["b2"]);
        assert!(scheduler.next_batch(limits).is_empty());
        assert!(scheduler.is_empty());
    }
}
