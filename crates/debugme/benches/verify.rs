//! How long verifying a session log takes, by length and flavour, and on logs crafted to be
//! the verifier's worst cases.
//!
//! Honest logs: a synthetic session shaped like a real one (a developer types a key at a time
//! and the user's shell echoes it, so Seen and Entered alternate and `prevEntered` moves
//! along), as the user writes it (pointers in the file) and as the server does (pointers
//! re-derived from the signatures).
//!
//! Worst cases, 3,021 lines each (the length of a real user log whose misordered tail took
//! `debug-me --verify` 51 minutes): the tail misordered (the verdict comes from the last
//! lines), every line needing a search (server flavour), half the lines session keys that all
//! may have signed every other line, and a changed byte near the end of a server log (the
//! search runs out on that line). Each costs at most `MAX_CHECKS_PER_LINE + CHECKS_PER_LINE ×
//! lines` signature checks, which the benchmark asserts before timing it.
//!
//! The generated logs are also written to `target/verify-bench/` so that `debug-me --verify`
//! and `kanava verify` can be timed on the same files. Criterion times the 1,000 and 10,000
//! line honest logs and the worst cases; the other honest lengths are only written (and
//! checked to verify).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kanava_debugme::model::{AnyMessage, Message};
use kanava_debugme::recover::{CHECKS_PER_LINE, MAX_CHECKS_PER_LINE};
use kanava_debugme::synthetic::{
    Flavour, many_keys, misordered_tail, skipping_chain, typing_session,
};
use kanava_debugme::verify::{GpgCheck, verify, verify_log};

/// Lengths of the honest logs written out, in lines.
const WRITTEN: [usize; 5] = [1_000, 2_000, 4_000, 10_000, 100_000];

/// Lengths criterion times.
const TIMED: [usize; 2] = [1_000, 10_000];

/// Length of the worst cases.
const WORST: usize = 3_021;

struct NoGpg;

impl GpgCheck for NoGpg {
    fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
        Err("no GnuPG keys in this log".into())
    }
}

/// A server log of `lines` lines with one byte of output changed on line `lines - 20`.
fn tampered_server_log(lines: usize) -> String {
    let mut log = typing_session(lines, Flavour::Server);
    let at = (lines - 20..lines)
        .find(|&n| {
            matches!(
                log.line_mut(n).message,
                AnyMessage::User(Message::Activity(_))
            )
        })
        .expect("a Seen near the end");
    if let AnyMessage::User(Message::Activity(seen)) = &mut log.line_mut(at).message {
        seen.activity.seen_data = b"K".to_vec();
    }
    log.text()
}

fn bench(c: &mut Criterion) {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/verify-bench");
    let _ = std::fs::create_dir_all(&out);
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    for lines in WRITTEN {
        for (name, flavour) in [("user-log", Flavour::User), ("server-log", Flavour::Server)] {
            let log = typing_session(lines, flavour).text();
            let _ = std::fs::write(out.join(format!("{name}-{lines}.log")), &log);
            assert!(
                verify(&log, &mut NoGpg).is_ok(),
                "the synthetic log verifies"
            );
            if !TIMED.contains(&lines) {
                continue;
            }
            group.throughput(Throughput::Elements(lines as u64));
            group.bench_with_input(BenchmarkId::new(name, lines), &log, |b, log| {
                b.iter(|| verify(log, &mut NoGpg).expect("verifies"));
            });
        }
    }
    let worst = [
        ("misordered-tail", misordered_tail(WORST).text()),
        (
            "skipping-chain",
            skipping_chain(WORST, Flavour::Server).text(),
        ),
        ("many-keys", many_keys(WORST).text()),
        ("tampered-server-log", tampered_server_log(WORST)),
    ];
    for (name, log) in worst {
        let _ = std::fs::write(out.join(format!("{name}-{WORST}.log")), &log);
        let verification = verify_log(&log, &mut NoGpg);
        assert!(verification.outcome.is_err(), "{name} is refused");
        assert!(
            verification.signature_checks <= MAX_CHECKS_PER_LINE + CHECKS_PER_LINE * WORST as u64,
            "{name}: {} checks",
            verification.signature_checks
        );
        group.throughput(Throughput::Elements(WORST as u64));
        group.bench_with_input(BenchmarkId::new(name, WORST), &log, |b, log| {
            b.iter(|| verify_log(log, &mut NoGpg));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
