//! Command-line arguments of the debug-me benchmark, as a clap fragment that the `kanava`
//! binary mounts under its own subcommand.

use std::time::Duration;

use super::BenchError;
use super::ledger::{MAX_MESSAGES, MIN_SIZE};

/// What load to put on a debug-me server.
#[derive(clap::Args, Debug, Clone)]
pub struct DebugMeArgs {
    /// The server, as debug-me's --use-server names it but with ws://, e.g. ws://127.0.0.1:8081/
    #[arg(long, default_value = "ws://127.0.0.1:8081/")]
    pub url: String,
    /// Watchers of the session, each a connection joining it by its URL.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub watchers: usize,
    /// Seen messages (chunks of terminal output) the user sends per second.
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub rate: f64,
    /// Seen messages the user sends.
    #[arg(long, value_name = "M", default_value_t = 2000)]
    pub messages: usize,
    /// Bytes of terminal output per message (at least 12: a sequence number and CR LF).
    #[arg(long, value_name = "B", default_value_t = 100)]
    pub size: usize,
    /// Start of the sending period whose messages are left out of the latency statistics.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = kanava_core::parse_duration)]
    pub warmup: Duration,
    /// Most watchers joining at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub connect_concurrency: usize,
    /// Process id of the server, on this machine, whose CPU time and memory to report.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print only one JSON line with the summary, and no progress bar.
    #[arg(long)]
    pub json: bool,
}

impl DebugMeArgs {
    /// Refuses combinations that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let invalid = |why: String| Err(BenchError::InvalidArgs(why));
        if self.watchers == 0 {
            return invalid("--watchers must be at least 1".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(format!("--rate must be positive, not {}", self.rate));
        }
        if !(1..=MAX_MESSAGES).contains(&self.messages) {
            return invalid(format!("--messages must be from 1 to {MAX_MESSAGES}"));
        }
        if self.size < MIN_SIZE {
            return invalid(format!("--size must be at least {MIN_SIZE} bytes"));
        }
        if self.warmup_messages() >= self.messages as u64 {
            return invalid(format!(
                "--warmup {:?} at --rate {} leaves none of the {} messages to measure",
                self.warmup, self.rate, self.messages
            ));
        }
        if self.connect_concurrency == 0 {
            return invalid("--connect-concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Messages sent during the warmup, left out of the latency statistics.
    pub(crate) fn warmup_messages(&self) -> u64 {
        (self.warmup.as_secs_f64() * self.rate).ceil() as u64
    }

    /// How long sending takes at the asked rate.
    pub(crate) fn sending(&self) -> Duration {
        Duration::from_secs_f64(self.messages as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DebugMeArgs,
    }

    fn parse(args: &[&str]) -> DebugMeArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults() {
        let args = parse(&[]);
        assert_eq!(args.url, "ws://127.0.0.1:8081/");
        assert_eq!((args.watchers, args.rate, args.messages), (10, 100.0, 2000));
        assert_eq!(args.size, 100);
        assert_eq!(args.warmup_messages(), 200);
        assert_eq!(args.sending(), Duration::from_secs(20));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn refuses_runs_that_measure_nothing() {
        let invalid = |args: &[&str]| {
            matches!(
                parse(args).validate(),
                Err(BenchError::InvalidArgs(why)) if !why.is_empty()
            )
        };
        assert!(invalid(&["--watchers", "0"]));
        assert!(invalid(&["--rate", "0"]));
        assert!(invalid(&["--messages", "0"]));
        assert!(invalid(&["--size", "11"]));
        assert!(!invalid(&["--size", "12"]));
        assert!(invalid(&["--messages", "200"]));
        assert!(!invalid(&["--messages", "201"]));
        assert!(!invalid(&["--messages", "1", "--warmup", "0s"]));
        assert!(invalid(&["--connect-concurrency", "0"]));
    }
}
