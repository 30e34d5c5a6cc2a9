//! How long verifying a session log takes, by length and flavour: a user's log (pointers
//! written) and the server's (pointers re-derived from the signatures). The session is
//! synthetic but shaped like a real one: a developer types a key at a time and the user's
//! shell echoes it, so Seen and Entered alternate and `prevEntered` moves along.
//!
//! The generated logs are also written to `target/verify-bench/` so that `debug-me --verify`
//! and `kanava verify` can be timed on the same files. Criterion times the 1,000 and 10,000
//! line logs; the others are only written (and checked to verify): the 2,000 and 4,000 line
//! ones give debug-me's growth with the length, and one verification of 100,000 lines takes
//! about 11 s, too long to sample in a routine benchmark run.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kanava_debugme::hash;
use kanava_debugme::json::encode_line;
use kanava_debugme::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, LogLine, Message, PerhapsSigned, Seen,
    Signature,
};
use kanava_debugme::sign::SessionKey;
use kanava_debugme::verify::{GpgCheck, verify};

/// Lengths of the logs written out, in lines.
const WRITTEN: [usize; 5] = [1_000, 2_000, 4_000, 10_000, 100_000];

/// Lengths criterion times.
const TIMED: [usize; 2] = [1_000, 10_000];

struct NoGpg;

impl GpgCheck for NoGpg {
    fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
        Err("no GnuPG keys in this log".into())
    }
}

fn control(key: &SessionKey, action: ControlAction) -> Control {
    let mut control = Control {
        control: action,
        signature: Signature::Other(Vec::new()),
    };
    key.sign_control(&mut control);
    control
}

/// A session of `lines` log lines; with `server`, pointers are left out as on the wire.
fn session(lines: usize, server: bool) -> String {
    let user = SessionKey::from_secret([1; 32]);
    let developer = SessionKey::from_secret([2; 32]);
    let mut log = vec![
        AnyMessage::User(Message::Control(control(
            &user,
            ControlAction::SessionKey(PerhapsSigned::UnSigned(user.public()), b"1".to_vec()),
        ))),
        AnyMessage::Developer(Message::Control(control(
            &developer,
            ControlAction::SessionKey(PerhapsSigned::UnSigned(developer.public()), b"1".to_vec()),
        ))),
        AnyMessage::User(Message::Control(control(
            &user,
            ControlAction::SessionKeyAccepted(developer.public()),
        ))),
    ];
    let (mut last, mut last_entered) = (None, None);
    while log.len() < lines {
        let typing = log.len() % 2 == 1 && last.is_some();
        let message = if typing {
            let mut entered = Activity {
                activity: Entered {
                    entered_data: b"k".to_vec(),
                    echo_data: Vec::new(),
                },
                prev_activity: last.clone(),
                prev_entered: last_entered.clone(),
                elapsed_time: 0.15,
                signature: Signature::Other(Vec::new()),
            };
            developer.sign_activity(&mut entered);
            let chain = hash::activity(&entered);
            last_entered = Some(chain.clone());
            last = Some(chain);
            AnyMessage::Developer(Message::Activity(entered))
        } else {
            let mut seen = Activity {
                activity: Seen {
                    seen_data: b"k".to_vec(),
                },
                prev_activity: last.clone(),
                prev_entered: last_entered.clone(),
                elapsed_time: 0.002,
                signature: Signature::Other(Vec::new()),
            };
            user.sign_activity(&mut seen);
            last = Some(hash::activity(&seen));
            AnyMessage::User(Message::Activity(seen))
        };
        log.push(message);
    }
    log.into_iter()
        .map(|mut message| {
            let chain = match &mut message {
                AnyMessage::User(Message::Activity(a)) => {
                    let chain = hash::activity(a);
                    if server {
                        a.prev_activity = None;
                        a.prev_entered = None;
                    }
                    Some(chain)
                }
                AnyMessage::Developer(Message::Activity(a)) => {
                    let chain = hash::activity(a);
                    if server {
                        a.prev_activity = None;
                        a.prev_entered = None;
                    }
                    Some(chain)
                }
                _ => None,
            };
            encode_line(&LogLine {
                message,
                hash: chain,
                timestamp: 1.795e9,
            }) + "\n"
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/verify-bench");
    let _ = std::fs::create_dir_all(&out);
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    for lines in WRITTEN {
        for (flavour, server) in [("user-log", false), ("server-log", true)] {
            let log = session(lines, server);
            let _ = std::fs::write(out.join(format!("{flavour}-{lines}.log")), &log);
            assert!(
                verify(&log, &mut NoGpg).is_ok(),
                "the synthetic log verifies"
            );
            if !TIMED.contains(&lines) {
                continue;
            }
            group.throughput(Throughput::Elements(lines as u64));
            group.bench_with_input(BenchmarkId::new(flavour, lines), &log, |b, log| {
                b.iter(|| verify(log, &mut NoGpg).expect("verifies"));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
