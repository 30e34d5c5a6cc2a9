//! The summary of a run, as a table for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The outcome of a Mles benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Prefix of the uids and channel names the run used.
    pub uid_prefix: String,
    /// URL the publishers connected to.
    pub url: String,
    /// Channels.
    pub channels: usize,
    /// Subscribers per channel.
    pub subscribers: usize,
    /// Publishers per channel.
    pub publishers: usize,
    /// Frames per second per publisher asked for.
    pub rate: f64,
    /// Payload bytes per frame.
    pub size: usize,
    /// Length of the publishing period.
    pub duration_secs: f64,
    /// Start of the publishing period left out of the statistics.
    pub warmup_secs: f64,
    /// Frames the publishers sent.
    pub sent: u64,
    /// What all the subscribers saw.
    #[serde(flatten)]
    pub deliveries: DeliveryStats,
    /// Whether every subscriber still connected saw the last frame of every publisher before
    /// the grace period after publishing ran out.
    pub settled: bool,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Why connections could not be opened, with counts.
    pub connect_errors: BTreeMap<String, u64>,
    /// Connections the server ended during the run.
    pub disconnects: Disconnects,
    /// What the subscribers of each subscriber URL saw, in the order of `--subscriber-url`
    /// (one entry, `url`, without it); the totals above add these up.
    pub by_subscriber_url: Vec<UrlReport>,
}

/// What the subscribers connected to one URL saw.
#[derive(Debug, Clone, Serialize)]
pub struct UrlReport {
    /// The subscriber URL.
    pub url: String,
    /// Subscribers meant to connect to it.
    pub subscribers: usize,
    /// Those that connected.
    pub connected: usize,
    /// What they saw.
    #[serde(flatten)]
    pub deliveries: DeliveryStats,
}

/// What a set of subscribers (all of them, or those of one URL) saw.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStats {
    /// Deliveries owed: each sent frame times the subscribers of its channel that connected.
    pub expected_deliveries: u64,
    /// Distinct frames that arrived.
    pub delivered: u64,
    /// Deliveries between the end of the warmup and the end of publishing, per second.
    pub deliveries_per_sec: f64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Frames that arrived at a subscriber more than once (extra arrivals).
    pub duplicated: u64,
    /// Frames that arrived after a later frame of the same publisher.
    pub reordered: u64,
    /// Latency from send to delivery, in microseconds, after the warmup.
    pub latency_us: Latency,
}

/// Connections the server ended before the benchmark closed them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Disconnects {
    /// Subscribers ended by the server.
    pub subscribers: u64,
    /// Publishers ended by the server.
    pub publishers: u64,
    /// Close codes (or how the connection ended without one), with counts.
    pub close_codes: BTreeMap<String, u64>,
}

/// Percentiles of the delivery latency, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Deliveries measured.
    pub samples: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Highest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The summary of a histogram of microseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            samples: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

impl Report {
    /// The report as one line of JSON, what `--json` prints.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        writeln!(
            f,
            "{} channel{} × ({} subscriber{} + {} publisher{}), {} frames/s of {} B per publisher, \
             {}s (warmup {}s), prefix {}",
            self.channels,
            plural(self.channels),
            self.subscribers,
            plural(self.subscribers),
            self.publishers,
            plural(self.publishers),
            self.rate,
            self.size,
            self.duration_secs,
            self.warmup_secs,
            self.uid_prefix,
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "  {name:<22}{value:>12}")
        };
        let d = &self.deliveries;
        row(f, "sent", &self.sent)?;
        row(f, "expected deliveries", &d.expected_deliveries)?;
        row(f, "delivered", &d.delivered)?;
        row(f, "deliveries/s", &format!("{:.1}", d.deliveries_per_sec))?;
        row(f, "lost", &d.lost)?;
        row(f, "duplicated", &d.duplicated)?;
        row(f, "reordered", &d.reordered)?;
        row(f, "settled", &self.settled)?;
        row(f, "connect failures", &self.connect_failures)?;
        for (error, count) in &self.connect_errors {
            writeln!(f, "    {count:>8} × {error}")?;
        }
        row(
            f,
            "disconnects",
            &format!(
                "{} sub, {} pub",
                self.disconnects.subscribers, self.disconnects.publishers
            ),
        )?;
        for (code, count) in &self.disconnects.close_codes {
            writeln!(f, "    {count:>8} × {code}")?;
        }
        let l = &d.latency_us;
        writeln!(
            f,
            "  latency µs ({} samples): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            l.samples, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let [only] = self.by_subscriber_url.as_slice()
            && only.url == self.url
        {
            return Ok(());
        }
        writeln!(f, "  publishers on {}; subscribers by URL:", self.url)?;
        writeln!(
            f,
            "    {:<28}{:>11}{:>12}{:>13}{:>8}{:>6}{:>6}{:>10}{:>10}",
            "URL",
            "subscribers",
            "delivered",
            "deliveries/s",
            "lost",
            "dup",
            "reord",
            "p50 µs",
            "p99 µs"
        )?;
        for u in &self.by_subscriber_url {
            let d = &u.deliveries;
            writeln!(
                f,
                "    {:<28}{:>11}{:>12}{:>13.1}{:>8}{:>6}{:>6}{:>10}{:>10}",
                u.url,
                format!("{}/{}", u.connected, u.subscribers),
                d.delivered,
                d.deliveries_per_sec,
                d.lost,
                d.duplicated,
                d.reordered,
                d.latency_us.p50,
                d.latency_us.p99,
            )?;
        }
        Ok(())
    }
}
