//! The summary of a run, as a table for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::mles::Latency;

/// The outcome of an SSH chat benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's SSH listener.
    pub addr: String,
    /// Fingerprint of the server's host key (`SHA256:…`), if any session connected.
    pub host_key: Option<String>,
    /// The run's tag, in its user names (`b<tag>x<i>`) and message texts.
    pub tag: String,
    /// The room of the run, without its `#`.
    pub room: String,
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions that showed the chat in the run's room.
    pub connected: usize,
    /// Sessions that could not be set up.
    pub connect_failures: u64,
    /// Why sessions could not be set up, with counts.
    pub connect_errors: BTreeMap<String, u64>,
    /// Time from the first connection to every session being set up (or failed).
    pub connect_secs: f64,
    /// Messages per second asked for, in total.
    pub rate: f64,
    /// Length of the sending period.
    pub duration_secs: f64,
    /// Start of the sending period whose messages are left out of the latency statistics.
    pub warmup_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages whose keys could not be written to their session.
    pub send_errors: u64,
    /// Screen updates owed: each sent message on the screen of every connected session but
    /// its sender's.
    pub expected_screens: u64,
    /// Screens that showed a message.
    pub seen_screens: u64,
    /// Expected screen updates that never happened.
    pub lost_screens: u64,
    /// Sent messages that did not reach every screen before the grace period after sending
    /// ran out.
    pub lost_messages: u64,
    /// Sessions the server ended during the run.
    pub disconnects: u64,
    /// How they ended, with counts.
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Latency from typing a message to the last screen showing it, in microseconds, after the
    /// warmup.
    pub last_screen_us: Latency,
    /// Latency from typing a message to each screen showing it, in microseconds, after the
    /// warmup.
    pub per_screen_us: Latency,
    /// The server's memory, with `--server-pid`.
    pub server_rss: Option<ServerRss>,
}

/// The server's resident memory (`VmRSS`) over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRss {
    /// The server's process id.
    pub pid: u32,
    /// Before any session connected.
    pub before_kib: u64,
    /// Once every session was set up.
    pub connected_kib: u64,
    /// After sending and settling, with every session still open.
    pub end_kib: u64,
    /// Growth from before to connected, per connected session.
    pub per_session_connected_kib: f64,
    /// Growth from before to the end, per connected session.
    pub per_session_end_kib: f64,
}

impl ServerRss {
    /// The figures of `pid` from its three samples, for `sessions` connected sessions.
    pub(crate) fn new(pid: u32, [before, connected, end]: [u64; 3], sessions: usize) -> Self {
        let per_session = |after: u64| after.saturating_sub(before) as f64 / sessions.max(1) as f64;
        Self {
            pid,
            before_kib: before,
            connected_kib: connected,
            end_kib: end,
            per_session_connected_kib: per_session(connected),
            per_session_end_kib: per_session(end),
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
        writeln!(
            f,
            "{} SSH sessions (terminal 80x24) in #{} at {}, {} messages/s in total, {}s \
             (warmup {}s), tag {}",
            self.sessions,
            self.room,
            self.addr,
            self.rate,
            self.duration_secs,
            self.warmup_secs,
            self.tag,
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "  {name:<22}{value:>12}")
        };
        if let Some(host_key) = &self.host_key {
            writeln!(f, "  host key {host_key}")?;
        }
        row(f, "connected", &self.connected)?;
        row(f, "connect time s", &format!("{:.1}", self.connect_secs))?;
        row(f, "connect failures", &self.connect_failures)?;
        for (error, count) in &self.connect_errors {
            writeln!(f, "    {count:>8} × {error}")?;
        }
        row(f, "sent", &self.sent)?;
        row(f, "send errors", &self.send_errors)?;
        row(f, "expected screens", &self.expected_screens)?;
        row(f, "seen screens", &self.seen_screens)?;
        row(f, "lost screens", &self.lost_screens)?;
        row(f, "lost messages", &self.lost_messages)?;
        row(f, "disconnects", &self.disconnects)?;
        for (reason, count) in &self.disconnect_reasons {
            writeln!(f, "    {count:>8} × {reason}")?;
        }
        for (name, l) in [
            ("last screen", &self.last_screen_us),
            ("each screen", &self.per_screen_us),
        ] {
            writeln!(
                f,
                "  {name} ms ({} samples): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  \
                 max {:.1}  mean {:.1}",
                l.samples,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                l.mean / 1000.0
            )?;
        }
        if let Some(rss) = &self.server_rss {
            writeln!(
                f,
                "  server RSS (pid {}): {} KiB before, {} KiB connected, {} KiB at the end; \
                 per session {:.1} KiB connected, {:.1} KiB at the end",
                rss.pid,
                rss.before_kib,
                rss.connected_kib,
                rss.end_kib,
                rss.per_session_connected_kib,
                rss.per_session_end_kib
            )?;
        }
        Ok(())
    }
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_session_is_the_growth_shared_out() {
        let rss = ServerRss::new(42, [10_000, 60_000, 110_000], 500);
        assert_eq!(rss.per_session_connected_kib, 100.0);
        assert_eq!(rss.per_session_end_kib, 200.0);
        let shrunk = ServerRss::new(42, [10_000, 9_000, 9_000], 0);
        assert_eq!(shrunk.per_session_end_kib, 0.0);
    }
}
