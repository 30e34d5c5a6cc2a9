//! The debug-me client commands: parse their arguments and run them with
//! [`kanava_debugme_client`], printing what a person at a terminal needs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kanava_debugme_client::follow::{Event, LogTarget, follow};
use kanava_debugme_client::session_log::default_log_dir;
use kanava_debugme_client::{SessionUrl, Trust};
use kanava_debugme_tools::terminal::StringSequenceFilter;

/// How to reach a session.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The session's URL, as the user's side printed it (`http://HOST:8081/ID`, or
    /// `wss://HOST:8443/debug-me/ID` for a kanava server's TLS listener).
    url: SessionUrl,
    /// Also trust the certificates in this PEM file for wss:// (a kanava server's self-signed
    /// certificate, `DATA/tls/self-signed.crt`).
    #[arg(long, env = "KANAVA_CA")]
    ca: Option<PathBuf>,
}

impl SessionArgs {
    fn trust(&self) -> anyhow::Result<Trust> {
        Ok(Trust::new(self.ca.as_deref())?)
    }
}

/// `kanava watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Where the log goes. [default: ~/.local/share/kanava/debug-me]
    #[arg(long, env = "KANAVA_DEBUG_ME_LOG_DIR")]
    log_dir: Option<PathBuf>,
}

/// `kanava download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Where to save the log. [default: ./debug-me.ID.log]
    #[arg(long, short)]
    output: Option<PathBuf>,
}

fn log_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    given
        .or_else(default_log_dir)
        .context("no log directory: set --log-dir, or HOME")
}

/// Shows the session as it goes: the user's terminal on stdout (without the string sequences
/// that could change or query this terminal), chat lines made printable, warnings on stderr.
pub async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let trust = args.session.trust()?;
    let target = LogTarget::Dir(log_dir(args.log_dir)?);
    let mut filter = StringSequenceFilter::default();
    let mut stdout = std::io::stdout();
    let mut on = |event: Event| {
        let shown = match event {
            Event::Output(bytes) => filter.filter(&bytes),
            Event::Chat { sender, text } => format!(
                "\r\n<{}> {}\r\n",
                kanava_core::sanitize(&sender),
                kanava_core::sanitize(&text)
            )
            .into_bytes(),
            Event::Warning(warning) => {
                eprint!("\r\nkanava: {warning}\r\n");
                return;
            }
        };
        let _ = stdout.write_all(&shown);
        let _ = stdout.flush();
    };
    let followed = follow(&args.session.url, &trust, &target, &mut on).await?;
    eprintln!(
        "\r\nkanava: {}; log in {}",
        if followed.ended {
            "the session ended"
        } else {
            "the connection was lost"
        },
        followed.log.display()
    );
    Ok(if followed.ended {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Saves the session's log, checking it as it comes; for a finished session, the whole log.
pub async fn download(args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let trust = args.session.trust()?;
    let url = &args.session.url;
    let target = LogTarget::File(
        args.output
            .unwrap_or_else(|| PathBuf::from(format!("debug-me.{}.log", url.id))),
    );
    let mut on = |event: Event| {
        if let Event::Warning(warning) = event {
            eprintln!("kanava: {warning}");
        }
    };
    let followed = follow(url, &trust, &target, &mut on).await?;
    let saved = format!(
        "{} messages in {}",
        followed.messages,
        followed.log.display()
    );
    if !followed.ended {
        eprintln!("kanava: the connection was lost before the session ended; saved {saved}");
        return Ok(ExitCode::FAILURE);
    }
    if followed.warnings > 0 {
        eprintln!(
            "kanava: saved {saved}, but {} of them did not check out",
            followed.warnings
        );
        return Ok(ExitCode::FAILURE);
    }
    eprintln!("kanava: saved {saved}");
    Ok(ExitCode::SUCCESS)
}
