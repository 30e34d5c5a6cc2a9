//! Command-line arguments of the SSH chat benchmark, as a clap fragment that the `kanava` binary
//! mounts under its own subcommand.

use std::time::Duration;

use super::BenchError;
use super::ledger::MAX_MESSAGES;

/// Most sessions a run may open: their names (`b`, the run tag, `x`, the index) must fit in
/// the 16 characters a name may have.
const MAX_SESSIONS: usize = 10_000_000;

/// Longest `--room`: the status line that shows it must fit in the terminal's 80 columns.
const MAX_ROOM_LEN: usize = 40;

/// What load to put on a server's SSH chat, and for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct SshArgs {
    /// The server's SSH listener, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2222")]
    pub addr: String,
    /// Sessions, each a terminal (80x24, xterm) showing the full-screen chat of one room.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub sessions: usize,
    /// Messages per second in total, typed by the sessions in turn; at most --sessions, so that
    /// no session types more than one a second (the server allows each user 2 a second).
    #[arg(long, value_name = "R", default_value_t = 50.0)]
    pub rate: f64,
    /// Room every session joins (`/join ROOM`) before the run [default: #lobby, where sessions
    /// start].
    #[arg(long, value_name = "ROOM")]
    pub room: Option<String>,
    /// How long to send: seconds, or with a unit (500ms, 10s, 2m, 1h).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = kanava_core::parse_duration)]
    pub duration: Duration,
    /// Start of the sending period whose messages are left out of the latency statistics.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = kanava_core::parse_duration)]
    pub warmup: Duration,
    /// Most sessions being set up at once (connection, authentication, terminal, first screen).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Process id of the server, on this machine, whose memory (VmRSS) to report per session.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print only one JSON line with the summary, and no progress bar.
    #[arg(long)]
    pub json: bool,
}

impl SshArgs {
    /// Refuses combinations that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let invalid = |why: String| Err(BenchError::InvalidArgs(why));
        if !(2..=MAX_SESSIONS).contains(&self.sessions) {
            return invalid(format!(
                "--sessions must be from 2 to {MAX_SESSIONS}, so that someone sees each message"
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(format!("--rate must be positive, not {}", self.rate));
        }
        if self.rate > self.sessions as f64 {
            return invalid(format!(
                "--rate {} is more than one message a second per session; the server limits \
                 each user, so use at least {} sessions",
                self.rate,
                self.rate.ceil()
            ));
        }
        if self.duration.is_zero() || self.warmup >= self.duration {
            return invalid("--duration must be positive and longer than --warmup".into());
        }
        if message_count(self.duration, self.rate) > MAX_MESSAGES {
            return invalid(format!(
                "--duration × --rate must stay under {MAX_MESSAGES} messages"
            ));
        }
        if self.connect_concurrency == 0 {
            return invalid("--connect-concurrency must be at least 1".into());
        }
        let room = self.room_name();
        if room.is_empty()
            || room.len() > MAX_ROOM_LEN
            || !room.bytes().all(|b| b.is_ascii_graphic())
        {
            return invalid(format!(
                "--room must be 1 to {MAX_ROOM_LEN} printable ASCII characters without spaces"
            ));
        }
        Ok(())
    }

    /// The room of the run, without its `#`.
    pub(crate) fn room_name(&self) -> &str {
        match &self.room {
            Some(room) => room.strip_prefix('#').unwrap_or(room),
            None => super::session::LOBBY,
        }
    }

    /// Messages the run sends: those due before the end of the sending period.
    pub(crate) fn messages(&self) -> usize {
        message_count(self.duration, self.rate)
    }
}

/// Messages due in `duration` at `rate` per second: one at the start and one each period after.
fn message_count(duration: Duration, rate: f64) -> usize {
    (duration.as_secs_f64() * rate).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SshArgs,
    }

    fn parse(args: &[&str]) -> SshArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_are_the_issue_s_run() {
        let args = parse(&[]);
        assert_eq!((args.sessions, args.rate), (500, 50.0));
        assert_eq!(args.duration, Duration::from_secs(30));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.connect_concurrency, 32);
        assert_eq!(args.server_pid, None);
        assert!(args.validate().is_ok());
        assert_eq!(args.messages(), 1500);
        assert_eq!(args.room_name(), "lobby");
    }

    #[test]
    fn refuses_runs_that_the_server_would_rate_limit_or_that_measure_nothing() {
        let invalid = |args: &[&str]| {
            matches!(
                parse(args).validate(),
                Err(BenchError::InvalidArgs(why)) if !why.is_empty()
            )
        };
        assert!(invalid(&["--sessions", "10", "--rate", "11"]));
        assert!(!invalid(&["--sessions", "10", "--rate", "10"]));
        assert!(invalid(&["--sessions", "1", "--rate", "1"]));
        assert!(invalid(&["--rate", "0"]));
        assert!(invalid(&["--duration", "2s", "--warmup", "2s"]));
        assert!(invalid(&["--connect-concurrency", "0"]));
        assert!(invalid(&["--room", "#no spaces"]));
        assert!(invalid(&["--room", "#"]));
        assert!(invalid(&["--duration", "100d"]));
    }

    #[test]
    fn the_room_is_named_with_or_without_its_hash() {
        assert_eq!(parse(&["--room", "#bench"]).room_name(), "bench");
        assert_eq!(parse(&["--room", "bench"]).room_name(), "bench");
    }
}
