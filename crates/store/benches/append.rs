//! What one durable append costs on a channel whose history is full, by `--history-limit`.
//!
//! Each timed append stores one 100-byte frame (one transaction, one fsync) on a channel already
//! holding `limit` entries, so that every append also evicts the oldest entry. Retention must
//! cost the same whatever the limit: the 200 and 100,000 entry cases should differ by little
//! more than the noise of the fsync.

use std::cell::Cell;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kanava_core::{ChannelName, Entry, FrameKind, HistoryLimits, NewEntry, Uid};
use kanava_store::{SqliteStore, Store};

/// History limits timed, in entries (`--history-limit`).
const LIMITS: [usize; 3] = [200, 10_000, 100_000];

/// Payload bytes of each frame.
const FRAME_BYTES: usize = 100;

fn frame(seq: u64) -> NewEntry {
    NewEntry {
        channel: ChannelName::new("bench").expect("a valid channel name"),
        entry: Entry {
            seq,
            kind: FrameKind::Binary,
            sender: Uid::new("alice").expect("a valid uid"),
            payload: Bytes::from(vec![seq as u8; FRAME_BYTES]),
            time_ms: seq,
            verified: false,
        },
    }
}

fn append_at_a_full_channel(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("append_at_a_full_channel");
    group.sample_size(20);
    for limit in LIMITS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let limits = HistoryLimits {
            max_entries: limit,
            ..HistoryLimits::default()
        };
        let store = SqliteStore::open(&dir.path().join("kanava.db"), limits).expect("a store");
        runtime
            .block_on(store.append((1..=limit as u64).map(frame).collect()))
            .expect("the channel filled");
        let next = Cell::new(limit as u64 + 1);
        group.bench_function(BenchmarkId::from_parameter(limit), |b| {
            b.iter(|| {
                let seq = next.replace(next.get() + 1);
                runtime
                    .block_on(store.append(vec![frame(seq)]))
                    .expect("appended");
            })
        });
        let kept = runtime
            .block_on(store.load(ChannelName::new("bench").expect("a valid channel name")))
            .expect("loaded");
        assert_eq!(kept.entries.len(), limit, "the channel stays full");
    }
    group.finish();
}

criterion_group!(benches, append_at_a_full_channel);
criterion_main!(benches);
