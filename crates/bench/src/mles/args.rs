//! Command-line arguments of the Mles benchmark, as a clap fragment that the `kanava` binary
//! mounts under its own subcommand.

use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;
use super::stamp::STAMP_LEN;

/// What load to put on a Mles v2 server, and for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct MlesArgs {
    /// Server URL, e.g. wss://127.0.0.1:8443/
    #[arg(long)]
    pub url: String,
    /// Accept any server certificate (for test servers with self-signed certificates).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// PEM file of the CA certificates that the server certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Number of channels, each with its own subscribers and publishers.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub channels: usize,
    /// Subscribers per channel.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub subscribers: usize,
    /// Publishers per channel.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub publishers: usize,
    /// Frames per second sent by each publisher.
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub rate: f64,
    /// Payload bytes per frame (at least 36, the stamp).
    #[arg(long, value_name = "B", default_value_t = 100)]
    pub size: usize,
    /// How long to publish: seconds, or with a unit (500ms, 10s, 2m, 1h).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = kanava_core::parse_duration)]
    pub duration: Duration,
    /// Start of the publishing period whose deliveries are left out of the statistics.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = kanava_core::parse_duration)]
    pub warmup: Duration,
    /// Most connections being set up at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Print only one JSON line with the summary, and no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Prefix of the uids and channel names of this run [default: bench-<random hex>].
    #[arg(long, value_name = "PREFIX")]
    pub uid_prefix: Option<String>,
}

impl MlesArgs {
    /// Refuses combinations that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let invalid = |why: String| Err(BenchError::InvalidArgs(why));
        if self.channels == 0 || self.publishers == 0 {
            return invalid("--channels and --publishers must be at least 1".into());
        }
        if u32::try_from(self.channels.saturating_mul(self.publishers)).is_err() {
            return invalid("too many publishers in total".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(format!("--rate must be positive, not {}", self.rate));
        }
        if self.size < STAMP_LEN {
            return invalid(format!(
                "--size must be at least {STAMP_LEN} bytes (the stamp)"
            ));
        }
        if self.duration.is_zero() || self.warmup >= self.duration {
            return invalid("--duration must be positive and longer than --warmup".into());
        }
        if self.connect_concurrency == 0 {
            return invalid("--connect-concurrency must be at least 1".into());
        }
        if let Some(prefix) = &self.uid_prefix
            && (prefix.is_empty() || !prefix.is_ascii())
        {
            return invalid("--uid-prefix must be non-empty ASCII".into());
        }
        if !self.insecure && self.ca.is_none() {
            return Err(BenchError::NoTrust);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MlesArgs,
    }

    #[test]
    fn defaults_and_validation() {
        let cli =
            Cli::try_parse_from(["bench", "--url", "wss://localhost/", "--insecure"]).unwrap();
        let args = cli.args;
        assert_eq!(
            (args.channels, args.subscribers, args.publishers),
            (1, 10, 1)
        );
        assert_eq!((args.rate, args.size), (100.0, 100));
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.connect_concurrency, 64);
        assert!(args.validate().is_ok());
        let small = MlesArgs {
            size: STAMP_LEN - 1,
            ..args.clone()
        };
        assert!(matches!(small.validate(), Err(BenchError::InvalidArgs(_))));
        let untrusted = MlesArgs {
            insecure: false,
            ..args
        };
        assert!(matches!(untrusted.validate(), Err(BenchError::NoTrust)));
        assert!(Cli::try_parse_from(["bench", "--url", "u", "--insecure", "--ca", "f"]).is_err());
    }
}
