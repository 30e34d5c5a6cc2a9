//! Load generator for debug-me (protocol 1) servers: kanava's or the real `debug-me --server`.
//!
//! One user opens a session over plain `ws://` as a real debug-me user does: the version
//! exchange, `InitMode`, its unsigned session key, the start line, then Seen messages (chunks
//! of terminal output) signed and hash-chained with kanava's debug-me crate. Watchers join the
//! session by its URL (`ConnectMode`) and take the backlog first. Then the user sends Seen
//! messages at a fixed rate, each carrying its sequence number, and every watcher records when
//! each arrives. The run reports deliveries per second, the latency from the user's send to
//! each watcher's receipt, and loss. All connections live in this process and share one
//! monotonic clock.

mod args;
pub(crate) mod connect;
mod ledger;
mod report;
mod user;
mod watcher;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

pub use args::DebugMeArgs;
pub use report::{Report, ServerUsage};

use crate::mles::Latency;
use crate::process;
use crate::progress::{PROGRESS_INTERVAL, Progress, await_connections, join_all};
use connect::Target;
use ledger::Ledger;
use user::{User, UserOutcome};
use watcher::WatcherOutcome;

/// How long messages may take to reach every watcher after sending stopped.
const SETTLE_GRACE: Duration = Duration::from_secs(10);

/// Highest latency the histogram tells apart (an hour); higher ones are counted as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a run could not be made; failures of single watchers are counted in the report instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments cannot make a meaningful run.
    #[error("{0}")]
    InvalidArgs(String),
    /// The URL is not a usable `ws://` URL.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host of the URL could not be resolved.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The user could not open a session.
    #[error("the user could not open a session: {0}")]
    User(String),
    /// No watcher could join the session.
    #[error("no watcher could join the session: {0}")]
    NoWatchers(String),
    /// The server's CPU time or memory could not be read.
    #[error("cannot read the CPU time or memory of process {pid}: {source}")]
    Process {
        /// The `--server-pid`.
        pid: u32,
        /// The error reading `/proc/PID`.
        source: io::Error,
    },
    /// The latency histogram could not be created.
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// A connection task panicked.
    #[error("a connection task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the benchmark described by `args` against a debug-me server and reports what the
/// watchers received. The caller prints the report (or [`Report::to_json_line`] with
/// `--json`).
pub async fn run(args: DebugMeArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let target = Arc::new(Target::new(&args.url).await?);
    let progress = Progress::new(!args.json);
    progress.say("opening the user's session".into());
    let (user, session) = User::open(&target, rand::random())
        .await
        .map_err(|e| BenchError::User(e.to_string()))?;
    let ledger = Arc::new(Ledger::new(args.messages, args.warmup_messages()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let permits = Arc::new(Semaphore::new(args.connect_concurrency));
    let (ready, ready_rx) = mpsc::unbounded_channel();
    let mut watchers = JoinSet::new();
    for _ in 0..args.watchers {
        watchers.spawn(watcher::watch(
            target.clone(),
            session.clone(),
            permits.clone(),
            ledger.clone(),
            ready.clone(),
            stop_rx.clone(),
        ));
    }
    drop(ready);
    let mut connect_errors = BTreeMap::new();
    await_connections(
        ready_rx,
        "watchers",
        args.watchers,
        &progress,
        &mut connect_errors,
    )
    .await;
    let connected = args.watchers - connect_errors.values().sum::<u64>() as usize;
    if connected == 0 {
        progress.finish();
        return Err(BenchError::NoWatchers(format!("{connect_errors:?}")));
    }

    let server_cpu = || -> Result<Option<f64>, BenchError> {
        args.server_pid
            .map(|pid| process::cpu_secs(pid).map_err(|source| BenchError::Process { pid, source }))
            .transpose()
    };
    let cpu_before = server_cpu()?;
    let start = Instant::now();
    let (sent_tx, mut sent_rx) = oneshot::channel();
    let user = tokio::spawn(user.run(
        ledger.clone(),
        args.rate,
        args.size,
        sent_tx,
        stop_rx.clone(),
    ));
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    let sent = loop {
        tokio::select! {
            sent = &mut sent_rx => break sent.unwrap_or(0),
            _ = ticker.tick() => progress.timed(
                start.elapsed(),
                args.sending(),
                &format!("sent {}  delivered {}", ledger.sent(), ledger.delivered()),
            ),
        }
    };
    let sending_secs = start.elapsed().as_secs_f64();

    let mut received = Vec::new();
    let refresh = || {
        progress.say(format!(
            "settling: sent {sent}  delivered {}",
            ledger.delivered()
        ));
    };
    let settling = join_all(&mut watchers, &mut received, refresh);
    let settled = tokio::time::timeout(SETTLE_GRACE, settling).await;
    let server = match (args.server_pid, cpu_before, server_cpu()?) {
        (Some(pid), Some(before), Some(after)) => Some(ServerUsage {
            pid,
            cpu_secs: after - before,
            rss_kib: process::rss_kib(pid).map_err(|source| BenchError::Process { pid, source })?,
        }),
        _ => None,
    };
    stop_tx.send_replace(true);
    match settled {
        Ok(result) => result?,
        Err(_) => join_all(&mut watchers, &mut received, refresh).await?,
    }
    let user = user.await?;
    progress.finish();

    let run = Run {
        session,
        connected,
        connect_errors,
        sending_secs,
        user,
        watchers: received,
        server,
    };
    summarize(&args, &ledger, run)
}

/// What the run gathered besides the ledger.
struct Run {
    session: String,
    connected: usize,
    connect_errors: BTreeMap<String, u64>,
    sending_secs: f64,
    user: UserOutcome,
    watchers: Vec<WatcherOutcome>,
    server: Option<ServerUsage>,
}

/// Adds up what the user sent and the watchers received.
fn summarize(args: &DebugMeArgs, ledger: &Ledger, run: Run) -> Result<Report, BenchError> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let (mut delivered, mut duplicated, mut reordered) = (0, 0, 0);
    let (mut measured, mut last_ns) = (0, None);
    let mut disconnect_reasons = BTreeMap::new();
    for watcher in &run.watchers {
        let receipts = &watcher.receipts;
        delivered += receipts.unique;
        duplicated += receipts.duplicated;
        reordered += receipts.reordered;
        measured += receipts.latency_us.len() as u64;
        last_ns = last_ns.max(receipts.last_measured_ns);
        for &us in &receipts.latency_us {
            latency.saturating_record(us);
        }
        if let Some(reason) = &watcher.ended
            && !receipts.complete()
        {
            *disconnect_reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    let first_ns = ledger.sent_at(ledger.measured_from());
    let deliveries_per_sec = match (first_ns, last_ns) {
        (Some(first), Some(last)) if last > first => measured as f64 * 1e9 / (last - first) as f64,
        _ => 0.0,
    };
    let expected = run.user.sent * run.connected as u64;
    Ok(Report {
        url: args.url.clone(),
        session: run.session,
        watchers: args.watchers,
        connected: run.connected,
        connect_failures: run.connect_errors.values().sum(),
        connect_errors: run.connect_errors,
        rate: args.rate,
        size: args.size,
        messages: args.messages,
        warmup_messages: ledger.measured_from(),
        sent: run.user.sent,
        sending_secs: run.sending_secs,
        user_ended: run.user.ended,
        expected_deliveries: expected,
        delivered,
        deliveries_per_sec,
        lost: expected.saturating_sub(delivered),
        duplicated,
        reordered,
        disconnects: disconnect_reasons.values().sum(),
        disconnect_reasons,
        latency_us: Latency::of(&latency),
        server: run.server,
    })
}
