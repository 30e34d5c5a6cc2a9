//! Load generator for Mles v2 servers.
//!
//! Subscribers join first, then publishers send stamped binary frames at a fixed rate for a
//! while; every subscriber counts what arrives from the publishers of its channel, so that the
//! run reports delivery latency, throughput, loss, duplication and reordering as seen by real
//! WebSocket/TLS clients. All clients live in this process and share one monotonic clock.
//! Subscribers may be spread over several URLs (the nodes of a cluster) while the publishers
//! stay on one, and the report then gives what the subscribers of each URL saw as well.

mod args;
mod client;
pub(crate) mod connect;
mod report;
mod stamp;
mod tally;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

pub use args::MlesArgs;
pub use connect::MlesServerArgs;
pub use report::{DeliveryStats, Disconnects, Latency, Report, UrlReport};

use crate::progress::{Progress, await_connections, join_all};
use client::{Clock, Latencies, Phase, PublisherOutcome, Shared, SubscriberOutcome, Window};
use connect::Target;
use stamp::RunId;

/// How long deliveries may take to arrive after publishing stopped.
const SETTLE_GRACE: Duration = Duration::from_secs(5);

/// Highest latency the histogram tells apart (an hour); higher ones are counted as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a run could not be made; failures of single connections are counted in the report
/// instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments cannot make a meaningful run.
    #[error("{0}")]
    InvalidArgs(String),
    /// Neither `--ca` nor `--insecure` says how to trust the server.
    #[error("either --ca FILE or --insecure is required")]
    NoTrust,
    /// The URL is not a usable `wss://` URL.
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
    /// The CA file could not be read or parsed.
    #[error("cannot read CA file {}: {source}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// The read or PEM error.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate.
    #[error("no certificates in CA file {}", .0.display())]
    NoCertificates(PathBuf),
    /// rustls refused the TLS configuration (such as a CA certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The latency histogram could not be created.
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// A connection task panicked.
    #[error("a connection task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the benchmark described by `args` against a Mles v2 server and reports what the
/// subscribers saw. The caller prints the report (or [`Report::to_json_line`] with `--json`).
pub async fn run(args: MlesArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let connector = connect::connector(&args)?;
    let publishers_to = Target::new(&args.url, connector.clone()).await?;
    let mut subscribers_to = Vec::new();
    for url in args.subscriber_urls() {
        subscribers_to.push(Target::new(url, connector.clone()).await?);
    }
    let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY_US, 3);
    let latency = Latencies {
        total: histogram()?,
        by_url: subscribers_to
            .iter()
            .map(|_| histogram())
            .collect::<Result<_, _>>()?,
    };
    let run = RunId::random();
    let prefix = args
        .uid_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", run.short_hex()));
    let progress = Progress::new(!args.json);
    let shared = Arc::new(Shared {
        publishers_to,
        subscribers_to,
        run,
        clock: Clock::start(),
        size: args.size,
        rate: args.rate,
        publishers_per_channel: args.publishers,
        connect_permits: Semaphore::new(args.connect_concurrency),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        latency: Mutex::new(latency),
    });
    let counter = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let mut connect_errors = BTreeMap::new();

    let (ready, ready_rx) = mpsc::unbounded_channel();
    let mut subscribers = JoinSet::new();
    for c in 0..args.channels {
        for i in 0..args.subscribers {
            subscribers.spawn(client::subscriber(
                shared.clone(),
                args.subscriber_url_of(c, i),
                c * args.publishers,
                format!("{prefix}-s{c}-{i}"),
                format!("{prefix}-ch{c}"),
                ready.clone(),
                phase_rx.clone(),
            ));
        }
    }
    drop(ready);
    let total = args.channels * args.subscribers;
    await_connections(
        ready_rx,
        "subscribers",
        total,
        &progress,
        &mut connect_errors,
    )
    .await;

    let (ready, ready_rx) = mpsc::unbounded_channel();
    let mut publishers = JoinSet::new();
    for c in 0..args.channels {
        for p in 0..args.publishers {
            publishers.spawn(client::publisher(
                shared.clone(),
                c * args.publishers + p,
                format!("{prefix}-p{c}-{p}"),
                format!("{prefix}-ch{c}"),
                ready.clone(),
                phase_rx.clone(),
            ));
        }
    }
    drop(ready);
    let total = args.channels * args.publishers;
    await_connections(
        ready_rx,
        "publishers",
        total,
        &progress,
        &mut connect_errors,
    )
    .await;

    let start = Instant::now();
    let window = Window {
        start,
        duration: args.duration,
        measure_from_ns: shared.clock.ns(start + args.warmup),
        measure_until_ns: shared.clock.ns(start + args.duration),
    };
    phase_tx.send_replace(Phase::Publishing(window));
    let mut published = Vec::new();
    join_all(&mut publishers, &mut published, || {
        let (sent, delivered) = (counter(&shared.sent), counter(&shared.delivered));
        progress.timed(
            start.elapsed(),
            args.duration,
            &format!("sent {sent}  delivered {delivered}"),
        );
    })
    .await?;

    let mut sent = vec![0; total];
    for outcome in &published {
        sent[outcome.index] = outcome.sent;
    }
    let sent: Arc<[u64]> = sent.into();
    phase_tx.send_replace(Phase::Settling {
        window,
        sent: sent.clone(),
    });
    let mut received = Vec::new();
    let refresh = || {
        let (sent, delivered) = (counter(&shared.sent), counter(&shared.delivered));
        progress.say(format!("settling: sent {sent}  delivered {delivered}"));
    };
    let settling = join_all(&mut subscribers, &mut received, refresh);
    if let Ok(result) = tokio::time::timeout(SETTLE_GRACE, settling).await {
        result?;
    } else {
        phase_tx.send_replace(Phase::Stopping);
        join_all(&mut subscribers, &mut received, refresh).await?;
    }
    progress.finish();

    let latency = shared
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(summarize(
        &args,
        prefix,
        &sent,
        &published,
        &received,
        connect_errors,
        &latency,
    ))
}

/// Deliveries owed to and seen by a set of subscribers.
#[derive(Debug, Default)]
struct Deliveries {
    connected: usize,
    expected: u64,
    delivered: u64,
    duplicated: u64,
    reordered: u64,
    in_window: u64,
}

impl Deliveries {
    /// The statistics of these deliveries, over a measuring window of `window_secs`, with their
    /// latencies.
    fn stats(&self, window_secs: f64, latencies: &Histogram<u64>) -> DeliveryStats {
        DeliveryStats {
            expected_deliveries: self.expected,
            delivered: self.delivered,
            deliveries_per_sec: self.in_window as f64 / window_secs,
            lost: self.expected.saturating_sub(self.delivered),
            duplicated: self.duplicated,
            reordered: self.reordered,
            latency_us: Latency::of(latencies),
        }
    }

    /// Counts what one subscriber saw, given how many frames each publisher sent.
    fn add(&mut self, outcome: &SubscriberOutcome, sent: &[u64]) {
        self.connected += 1;
        self.in_window += outcome.in_window;
        for (i, tally) in outcome.tallies.iter().enumerate() {
            self.expected += sent[outcome.first_publisher + i];
            self.delivered += tally.unique();
            self.duplicated += tally.duplicated();
            self.reordered += tally.reordered();
        }
    }
}

/// Adds up what the publishers sent and the subscribers saw.
fn summarize(
    args: &MlesArgs,
    uid_prefix: String,
    sent: &[u64],
    published: &[PublisherOutcome],
    received: &[SubscriberOutcome],
    connect_errors: BTreeMap<String, u64>,
    latency: &Latencies,
) -> Report {
    let mut disconnects = Disconnects::default();
    let mut count_ending = |ended: &Option<String>, of_subscriber: bool| {
        if let Some(reason) = ended {
            if of_subscriber {
                disconnects.subscribers += 1;
            } else {
                disconnects.publishers += 1;
            }
            *disconnects.close_codes.entry(reason.clone()).or_default() += 1;
        }
    };
    for outcome in published {
        count_ending(&outcome.ended, false);
    }
    let urls = args.subscriber_urls();
    let mut total = Deliveries::default();
    let mut by_url: Vec<Deliveries> = urls.iter().map(|_| Deliveries::default()).collect();
    let mut settled = true;
    for outcome in received {
        count_ending(&outcome.ended, true);
        settled &= outcome.ended.is_some() || outcome.has_seen_all(sent);
        total.add(outcome, sent);
        by_url[outcome.url].add(outcome, sent);
    }
    let mut assigned = vec![0; urls.len()];
    for c in 0..args.channels {
        for i in 0..args.subscribers {
            assigned[args.subscriber_url_of(c, i)] += 1;
        }
    }
    let window_secs = (args.duration - args.warmup).as_secs_f64();
    let by_subscriber_url = urls
        .iter()
        .zip(by_url)
        .zip(assigned)
        .zip(&latency.by_url)
        .map(|(((url, d), subscribers), histogram)| UrlReport {
            url: url.clone(),
            subscribers,
            connected: d.connected,
            deliveries: d.stats(window_secs, histogram),
        })
        .collect();
    Report {
        uid_prefix,
        url: args.url.clone(),
        channels: args.channels,
        subscribers: args.subscribers,
        publishers: args.publishers,
        rate: args.rate,
        size: args.size,
        duration_secs: args.duration.as_secs_f64(),
        warmup_secs: args.warmup.as_secs_f64(),
        sent: sent.iter().sum(),
        deliveries: total.stats(window_secs, &latency.total),
        settled,
        connect_failures: connect_errors.values().sum(),
        connect_errors,
        disconnects,
        by_subscriber_url,
    }
}
