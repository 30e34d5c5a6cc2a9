//! The summary of a run, as a table for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::mles::Latency;

/// The outcome of a debug-me benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's URL.
    pub url: String,
    /// The session's id, as the server gave it.
    pub session: String,
    /// Watchers asked for.
    pub watchers: usize,
    /// Watchers that joined the session.
    pub connected: usize,
    /// Watchers that could not join.
    pub connect_failures: u64,
    /// Why watchers could not join, with counts.
    pub connect_errors: BTreeMap<String, u64>,
    /// Messages per second asked for.
    pub rate: f64,
    /// Bytes of terminal output per message.
    pub size: usize,
    /// Messages of the run.
    pub messages: usize,
    /// Messages at the start left out of the latency statistics.
    pub warmup_messages: u64,
    /// Messages the user sent.
    pub sent: u64,
    /// Time the user took to send them.
    pub sending_secs: f64,
    /// How the user's connection failed, if it did.
    pub user_ended: Option<String>,
    /// Deliveries owed: each sent message to each watcher that joined.
    pub expected_deliveries: u64,
    /// Distinct messages that reached watchers.
    pub delivered: u64,
    /// Measured deliveries (after the warmup) per second, from the first measured send to the
    /// last measured receipt.
    pub deliveries_per_sec: f64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Messages that reached a watcher more than once (extra arrivals).
    pub duplicated: u64,
    /// Messages that reached a watcher after a later one.
    pub reordered: u64,
    /// Watchers whose connection ended before every message reached them.
    pub disconnects: u64,
    /// How they ended, with counts.
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Latency from the user's send to each watcher's receipt, in microseconds, after the
    /// warmup.
    pub latency_us: Latency,
    /// The server's CPU time and memory, with `--server-pid`.
    pub server: Option<ServerUsage>,
}

/// What the server process used.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// Its process id.
    pub pid: u32,
    /// User and system CPU time from the start of sending until the watchers had everything
    /// (or gave up waiting).
    pub cpu_secs: f64,
    /// Resident memory then, in KiB.
    pub rss_kib: u64,
}

impl Report {
    /// The report as one line of JSON, what `--json` prints.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "session {} on {}: 1 user → {} watchers, {} messages of {} B at {}/s (warmup {})",
            self.session,
            self.url,
            self.watchers,
            self.messages,
            self.size,
            self.rate,
            self.warmup_messages,
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "  {name:<22}{value:>12}")
        };
        row(f, "watchers joined", &self.connected)?;
        for (error, count) in &self.connect_errors {
            writeln!(f, "    {count:>8} × {error}")?;
        }
        row(f, "sent", &self.sent)?;
        row(f, "sending s", &format!("{:.2}", self.sending_secs))?;
        if let Some(reason) = &self.user_ended {
            writeln!(f, "  user ended: {reason}")?;
        }
        row(f, "expected deliveries", &self.expected_deliveries)?;
        row(f, "delivered", &self.delivered)?;
        row(
            f,
            "deliveries/s",
            &format!("{:.1}", self.deliveries_per_sec),
        )?;
        row(f, "lost", &self.lost)?;
        row(f, "duplicated", &self.duplicated)?;
        row(f, "reordered", &self.reordered)?;
        row(f, "disconnects", &self.disconnects)?;
        for (reason, count) in &self.disconnect_reasons {
            writeln!(f, "    {count:>8} × {reason}")?;
        }
        if let Some(server) = &self.server {
            writeln!(
                f,
                "  server {}: {:.2} s CPU, {} KiB RSS",
                server.pid, server.cpu_secs, server.rss_kib
            )?;
        }
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency µs ({} samples): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            l.samples, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )
    }
}
