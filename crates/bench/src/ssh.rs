//! Load generator for SSH chat with terminals.
//!
//! Every session is a real SSH connection (russh client) with its own fresh Ed25519 key and
//! name, a terminal (pty-req, 80x24, xterm) and a shell: the server's full-screen chat. All
//! server output goes through a VT100 emulator per session. Once every session shows the run's
//! room, the sessions type messages in turn at a fixed total rate; each session records when
//! each other session's message first appears on its emulated screen. The run reports the
//! latency from typing to the last screen showing a message, to each screen, the loss, and the
//! server's memory per session. All sessions live in this process and share one monotonic clock.

mod args;
mod connect;
mod ledger;
mod report;
mod screen;
mod session;
mod tag;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

pub use args::SshArgs;
pub use report::{Report, ServerRss};

use crate::process;
use crate::progress::Progress;
use connect::{ConnectError, Target};
use ledger::Ledger;
use session::{Keyboard, Phase, SessionOutcome, Shared};
use tag::RunTag;

/// How long messages may take to reach every screen after sending stopped.
const SETTLE_GRACE: Duration = Duration::from_secs(10);

/// How often the progress bar is updated, and settling checked.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Why a run could not be made; failures of single sessions are counted in the report instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments cannot make a meaningful run.
    #[error("{0}")]
    InvalidArgs(String),
    /// The server's address could not be resolved.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address given.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Fewer than two sessions showed the chat, so no message could be seen by anyone.
    #[error("only {connected} of {sessions} sessions showed the chat: {errors}")]
    TooFewSessions {
        /// Sessions set up.
        connected: usize,
        /// Sessions asked for.
        sessions: usize,
        /// Why the others failed, with counts.
        errors: String,
    },
    /// The server's memory could not be read.
    #[error("cannot read the memory of process {pid}: {source}")]
    Rss {
        /// The `--server-pid`.
        pid: u32,
        /// The error reading `/proc/PID/status`.
        source: io::Error,
    },
    /// A latency histogram could not be created.
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// A session task panicked.
    #[error("a session task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the benchmark described by `args` against a server's SSH chat and reports what the
/// sessions' screens showed. The caller prints the report (or [`Report::to_json_line`] with
/// `--json`).
pub async fn run(args: SshArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let target = Target::new(&args.addr).await?;
    let server_rss = || -> Result<Option<u64>, BenchError> {
        args.server_pid
            .map(|pid| process::rss_kib(pid).map_err(|source| BenchError::Rss { pid, source }))
            .transpose()
    };
    let rss_before = server_rss()?;
    let tag = RunTag::random();
    let progress = Progress::new(!args.json);
    let shared = Arc::new(Shared {
        target,
        tag,
        room: args.room_name().to_owned(),
        setup_permits: Semaphore::new(args.connect_concurrency),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);

    let connect_start = Instant::now();
    let (ready, ready_rx) = mpsc::unbounded_channel();
    let mut sessions = JoinSet::new();
    for index in 0..args.sessions {
        sessions.spawn(session::session(
            shared.clone(),
            index,
            ready.clone(),
            phase_rx.clone(),
        ));
    }
    drop(ready);
    let (mut keyboards, connect_errors) = await_sessions(ready_rx, args.sessions, &progress).await;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    if keyboards.len() < 2 {
        progress.finish();
        return Err(BenchError::TooFewSessions {
            connected: keyboards.len(),
            sessions: args.sessions,
            errors: format!("{connect_errors:?}"),
        });
    }
    keyboards.sort_unstable_by_key(|keyboard| keyboard.session);
    let rss_connected = server_rss()?;

    let senders: Vec<usize> = keyboards.iter().map(|keyboard| keyboard.session).collect();
    let ledger = Arc::new(Ledger::new(tag, &senders, args.messages(), args.warmup)?);
    phase_tx.send_replace(Phase::Sending(ledger.clone()));
    let send_errors = send_all(&ledger, &keyboards, &args, &progress).await;
    settle(&ledger, &progress).await;
    let rss_end = server_rss()?;
    phase_tx.send_replace(Phase::Stopping);
    drop(keyboards);
    let mut outcomes = Vec::new();
    while let Some(joined) = sessions.join_next().await {
        outcomes.extend(joined?);
    }
    progress.finish();

    let connected = senders.len();
    let server_rss = match (args.server_pid, rss_before, rss_connected, rss_end) {
        (Some(pid), Some(before), Some(after), Some(end)) => {
            Some(ServerRss::new(pid, [before, after, end], connected))
        }
        _ => None,
    };
    Ok(summarize(
        &args,
        &shared,
        &ledger,
        Summary {
            connected,
            connect_errors,
            connect_secs,
            send_errors,
            outcomes,
            server_rss,
        },
    ))
}

/// Waits until each of `total` sessions is ready or has failed; returns the keyboards of the
/// ready ones and why the others failed, with counts.
async fn await_sessions(
    mut ready: mpsc::UnboundedReceiver<Result<Keyboard, ConnectError>>,
    total: usize,
    progress: &Progress,
) -> (Vec<Keyboard>, BTreeMap<String, u64>) {
    let (mut keyboards, mut errors) = (Vec::with_capacity(total), BTreeMap::new());
    let (mut done, mut failed) = (0, 0);
    let show = |done: usize, failed: usize| {
        let message = format!(
            "sessions in the chat: {}/{total} ({failed} failed)",
            done - failed
        );
        progress.steps(done, total, message);
    };
    show(done, failed);
    while let Some(result) = ready.recv().await {
        done += 1;
        match result {
            Ok(keyboard) => keyboards.push(keyboard),
            Err(e) => {
                failed += 1;
                *errors.entry(e.to_string()).or_default() += 1;
            }
        }
        show(done, failed);
    }
    (keyboards, errors)
}

/// Types every message of `ledger` into its sender's session when it is due (`keyboards` are
/// the ledger's senders, in the same order); returns how many could not be written.
async fn send_all(
    ledger: &Ledger,
    keyboards: &[Keyboard],
    args: &SshArgs,
    progress: &Progress,
) -> u64 {
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    let mut errors = 0;
    for seq in 0..ledger.len() {
        let due = ledger.due(seq, args.rate);
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(due.into()) => break,
                _ = ticker.tick() => progress.timed(
                    Duration::from_nanos(ledger.now_ns()),
                    args.duration,
                    &format!("sent {}  screen updates {}", ledger.sent(), ledger.seen()),
                ),
            }
        }
        let keyboard = &keyboards[ledger.turn(seq)];
        let keys = ledger.send(seq);
        if keyboard.keys.data_bytes(keys).await.is_err() {
            errors += 1;
        }
    }
    errors
}

/// Waits until every sent message is on every screen, or the grace period runs out.
async fn settle(ledger: &Ledger, progress: &Progress) {
    let deadline = tokio::time::Instant::now() + SETTLE_GRACE;
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    while ledger.complete() < ledger.sent() {
        progress.say(format!(
            "settling: {}/{} messages on every screen",
            ledger.complete(),
            ledger.sent()
        ));
        if tokio::time::timeout_at(deadline, ticker.tick())
            .await
            .is_err()
        {
            break;
        }
    }
}

/// What the run gathered besides the ledger.
struct Summary {
    connected: usize,
    connect_errors: BTreeMap<String, u64>,
    connect_secs: f64,
    send_errors: u64,
    outcomes: Vec<SessionOutcome>,
    server_rss: Option<ServerRss>,
}

/// Adds up what was sent and what the screens showed.
fn summarize(args: &SshArgs, shared: &Shared, ledger: &Ledger, summary: Summary) -> Report {
    let tally = ledger.tally();
    let mut disconnect_reasons = BTreeMap::new();
    for reason in summary.outcomes.iter().filter_map(|o| o.ended.as_ref()) {
        *disconnect_reasons.entry(reason.clone()).or_default() += 1;
    }
    Report {
        addr: args.addr.clone(),
        host_key: shared.target.host_key(),
        tag: shared.tag.to_string(),
        room: shared.room.clone(),
        sessions: args.sessions,
        connected: summary.connected,
        connect_failures: summary.connect_errors.values().sum(),
        connect_errors: summary.connect_errors,
        connect_secs: summary.connect_secs,
        rate: args.rate,
        duration_secs: args.duration.as_secs_f64(),
        warmup_secs: args.warmup.as_secs_f64(),
        sent: tally.sent,
        send_errors: summary.send_errors,
        expected_screens: tally.expected_screens,
        seen_screens: tally.seen_screens,
        lost_screens: tally.expected_screens - tally.seen_screens,
        lost_messages: tally.lost_messages,
        disconnects: disconnect_reasons.values().sum(),
        disconnect_reasons,
        last_screen_us: tally.last_screen,
        per_screen_us: tally.per_screen,
        server_rss: summary.server_rss,
    }
}
