//! Command-line arguments of the Mles benchmark, as a clap fragment that the `kanava` binary
//! mounts under its own subcommand.

use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;
use super::stamp::STAMP_LEN;

/// What load to put on a Mles v2 server, and for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct MlesArgs {
    /// Server URL, e.g. wss://127.0.0.1:8443/; the publishers connect here, and so do the
    /// subscribers unless --subscriber-url is given.
    #[arg(long)]
    pub url: String,
    /// URL the subscribers connect to instead of --url (repeatable, or comma-separated): the
    /// subscribers, channel by channel, take these URLs in turn, so that with as many
    /// subscribers per channel as URLs every channel has subscribers on every URL; e.g. the
    /// nodes of a cluster, while the publishers stay on --url.
    #[arg(long = "subscriber-url", value_name = "URL", value_delimiter = ',')]
    pub subscriber_urls: Vec<String>,
    /// Accept any server certificate (for test servers with self-signed certificates).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// PEM file of CA certificates that the server certificates must chain to (repeatable:
    /// all of them are trusted, e.g. the self-signed certificate of each node of a cluster).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
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
    /// The URLs the subscribers connect to: those of `--subscriber-url`, or else `--url`.
    pub(crate) fn subscriber_urls(&self) -> &[String] {
        if self.subscriber_urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.subscriber_urls
        }
    }

    /// Index in [`Self::subscriber_urls`] of the URL that subscriber `i` of channel `channel`
    /// connects to: the subscribers of all channels, channel by channel, take the URLs in
    /// turn.
    pub(crate) fn subscriber_url_of(&self, channel: usize, i: usize) -> usize {
        (channel * self.subscribers + i) % self.subscriber_urls().len()
    }

    /// Refuses combinations that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let invalid = |why: String| Err(BenchError::InvalidArgs(why));
        if self.channels == 0 || self.publishers == 0 {
            return invalid("--channels and --publishers must be at least 1".into());
        }
        if u32::try_from(self.channels.saturating_mul(self.publishers)).is_err() {
            return invalid("too many publishers in total".into());
        }
        if u32::try_from(self.channels.saturating_mul(self.subscribers)).is_err() {
            return invalid("too many subscribers in total".into());
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
        if self.subscriber_urls.iter().any(String::is_empty) {
            return invalid("--subscriber-url must not be empty".into());
        }
        if !self.insecure && self.ca.is_empty() {
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

    #[test]
    fn subscribers_go_to_url_unless_subscriber_urls_are_given() {
        let args = Cli::try_parse_from(["bench", "--url", "wss://a/", "--ca", "a.pem"])
            .unwrap()
            .args;
        assert!(args.subscriber_urls.is_empty());
        assert_eq!(args.subscriber_urls(), ["wss://a/"]);
        assert_eq!(args.ca, [PathBuf::from("a.pem")]);
        assert!(args.validate().is_ok());
        assert!((0..3).all(|c| (0..10).all(|i| args.subscriber_url_of(c, i) == 0)));
    }

    #[test]
    fn subscriber_urls_and_cas_repeat_or_are_comma_separated() {
        let cli = Cli::try_parse_from([
            "bench",
            "--url",
            "wss://a/",
            "--subscriber-url",
            "wss://a/,wss://b/",
            "--subscriber-url",
            "wss://c/",
            "--ca",
            "a.pem",
            "--ca",
            "b.pem",
        ])
        .unwrap();
        let args = cli.args;
        assert_eq!(args.url, "wss://a/");
        assert_eq!(args.subscriber_urls(), ["wss://a/", "wss://b/", "wss://c/"]);
        assert_eq!(args.ca, [PathBuf::from("a.pem"), PathBuf::from("b.pem")]);
        assert!(args.validate().is_ok());
        assert!(Cli::try_parse_from(["bench", "--url", "u", "--subscriber-url"]).is_err());
        let empty = MlesArgs {
            subscriber_urls: vec!["wss://a/".into(), String::new()],
            ..args
        };
        assert!(matches!(empty.validate(), Err(BenchError::InvalidArgs(_))));
    }

    fn spread(urls: usize, channels: usize, subscribers: usize) -> Vec<Vec<usize>> {
        let args = MlesArgs {
            subscriber_urls: (0..urls).map(|u| format!("wss://n{u}/")).collect(),
            channels,
            subscribers,
            ..Cli::try_parse_from(["bench", "--url", "wss://a/", "--insecure"])
                .unwrap()
                .args
        };
        (0..channels)
            .map(|c| {
                (0..subscribers)
                    .map(|i| args.subscriber_url_of(c, i))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn subscribers_are_spread_channel_by_channel() {
        // Every channel has subscribers on both URLs, half each.
        assert_eq!(spread(2, 2, 4), [vec![0, 1, 0, 1], vec![0, 1, 0, 1]],);
        // An odd count carries over to the next channel, which keeps the totals even.
        assert_eq!(spread(2, 2, 3), [vec![0, 1, 0], vec![1, 0, 1]]);
        // Fewer subscribers than URLs: the channels take turns.
        assert_eq!(spread(3, 3, 1), [vec![0], vec![1], vec![2]]);
        let many = spread(3, 10, 10);
        for channel in &many {
            assert!((0..3).all(|u| channel.contains(&u)), "{channel:?}");
        }
        let on = |u| many.iter().flatten().filter(|&&v| v == u).count();
        assert_eq!([on(0), on(1), on(2)], [34, 33, 33]);
    }
}
