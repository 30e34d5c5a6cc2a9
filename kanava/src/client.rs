//! The debug-me client commands: parse their arguments and run them with
//! [`kanava_debugme_client`], printing what a person at a terminal needs.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kanava_debugme_client::connect::{ConnectConfig, connect, fresh_developer, statement};
use kanava_debugme_client::console::chat_line;
use kanava_debugme_client::control::{Notice, Request, Window, developer_socket_path, socket_path};
use kanava_debugme_client::follow::{Event, LogTarget, follow};
use kanava_debugme_client::session_log::default_log_dir;
use kanava_debugme_client::share::{DEBUG_ME_KEYRINGS, ShareConfig, share};
use kanava_debugme_client::{ServerUrl, SessionUrl, Trust};
use kanava_debugme_tools::gpg::SystemGpg;
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
            Event::Chat { sender, text } => {
                format!("\r\n{}\r\n", chat_line(&sender, &text)).into_bytes()
            }
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

/// `kanava share`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The debug-me server: `http://HOST:8081/` (any debug-me server), or
    /// `wss://HOST:8443/debug-me` (a kanava server's TLS listener).
    #[arg(
        long,
        env = "KANAVA_DEBUG_ME_SERVER",
        default_value = "http://localhost:8081/"
    )]
    server: ServerUrl,
    /// Also trust the certificates in this PEM file for wss:// (a kanava server's self-signed
    /// certificate, `DATA/tls/self-signed.crt`).
    #[arg(long, env = "KANAVA_CA")]
    ca: Option<PathBuf>,
    /// Where the log goes. [default: ~/.local/share/kanava/debug-me]
    #[arg(long, env = "KANAVA_DEBUG_ME_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// Ask the server to mail you the log when the session ends (if it mails logs).
    #[arg(long, default_value = "")]
    email: String,
    /// The name your chat lines carry. [default: $USER]
    #[arg(long)]
    name: Option<String>,
    /// Fingerprints of developers' GnuPG keys you trust, one per line.
    /// [default: ~/.config/kanava/debug-me-trusted-keys]
    #[arg(long, env = "KANAVA_DEBUG_ME_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
    /// The program to share, with its arguments (the rest of the command line).
    /// [default: $SHELL, else /bin/sh]
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "CMD")]
    run: Vec<OsString>,
}

/// The fingerprints in a trust file: one per line, `#` starts a comment, spaces ignored.
fn trusted_fingerprints(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .map(|line| line.split_whitespace().collect::<String>())
        .filter(|fingerprint| !fingerprint.is_empty())
        .collect())
}

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// Shares a program (the login shell by default) until it exits; exits with its status.
pub async fn share_terminal(args: ShareArgs) -> anyhow::Result<ExitCode> {
    let trust = Trust::new(args.ca.as_deref())?;
    let mut run = args.run.into_iter();
    let program = run
        .next()
        .or_else(|| std::env::var_os("SHELL").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "/bin/sh".into());
    let trusted = match args
        .trusted_keys
        .or_else(|| config_dir().map(|d| d.join("kanava/debug-me-trusted-keys")))
    {
        Some(path) => trusted_fingerprints(&path)?,
        None => Vec::new(),
    };
    let config = ShareConfig {
        server: args.server,
        trust,
        program,
        args: run.collect(),
        log_dir: log_dir(args.log_dir)?,
        email: args.email,
        name: args
            .name
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "user".into()),
        keyring_dir: PathBuf::from(DEBUG_ME_KEYRINGS),
        trusted,
    };
    let plain = !config.server.tls;
    let shared = share(config, |url| {
        println!(
            "kanava share: this terminal is shared in debug-me session {}",
            url.id
        );
        println!("Give the developer this command:");
        println!();
        println!("    kanava connect {url}");
        if plain {
            println!("    (or, with debug-me:  debug-me {url})");
        }
        if let Some(page) = url.watch_page() {
            println!("    (or, to watch in a browser:  {page})");
        }
        println!();
        println!("Chat: Ctrl-] then a line and Enter. /quit there ends the session.");
    })
    .await?;
    println!(
        "kanava share: the session has ended ({}); your log: {}",
        shared.status,
        shared.log.display()
    );
    // A shell's convention: 128 + N for a program killed by signal N.
    let code = if shared.status < 0 {
        128 - shared.status
    } else {
        shared.status
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `kanava connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// The GnuPG key to sign your session key with. [default: gpg's default key]
    #[arg(long, env = "KANAVA_GPG_KEY")]
    gpg_key: Option<String>,
    /// Where your log goes. [default: ~/.local/share/kanava/debug-me]
    #[arg(long, env = "KANAVA_DEBUG_ME_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// The name your chat lines carry. [default: $USER]
    #[arg(long)]
    name: Option<String>,
}

/// Connects to a session as a developer: watch, and type once the user lets you.
pub async fn connect_developer(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let trust = args.session.trust()?;
    let developer = fresh_developer();
    let statement = statement(&developer);
    let gpg_key = args.gpg_key;
    let signed = tokio::task::spawn_blocking(move || {
        SystemGpg.sign_session_key(&statement, gpg_key.as_deref())
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    let config = ConnectConfig {
        url: args.session.url,
        trust,
        log_dir: log_dir(args.log_dir)?,
        name: args
            .name
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "developer".into()),
    };
    let connected = connect(config, developer, signed).await?;
    if connected.ended {
        println!(
            "kanava connect: the session has ended; your log: {}",
            connected.log.display()
        );
    } else {
        eprintln!(
            "kanava connect: left before the session ended; your log: {}",
            connected.log.display()
        );
    }
    Ok(if connected.ended {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `kanava control`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The log directory the session was started with. [default: ~/.local/share/kanava/debug-me]
    #[arg(long, env = "KANAVA_DEBUG_ME_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// The window of `kanava connect` (the developer's), not of `kanava share`.
    #[arg(long)]
    developer: bool,
}

/// Lines typed on stdin, read on their own thread (so that a blocked read never keeps the
/// process from exiting).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if sender.blocking_send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The control window of a running session: its chat and questions; typed lines are chat,
/// answers (y/n) while a question waits, and `/quit` ends the session.
pub async fn control_window(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let dir = log_dir(args.log_dir)?;
    let path = if args.developer {
        developer_socket_path(&dir)
    } else {
        socket_path(&dir)
    };
    let mut window = Window::connect(&path).await.with_context(|| {
        format!(
            "no debug-me session to control at {} (start it with kanava {})",
            path.display(),
            if args.developer { "connect" } else { "share" }
        )
    })?;
    println!("** kanava session control and chat window");
    println!("(Enter /quit here at any time to end the session.)");
    let mut lines = stdin_lines();
    let mut asking = None;
    loop {
        tokio::select! {
            notice = window.next() => match notice {
                Some(Notice::Line(line)) => println!("{line}"),
                Some(Notice::Ask(question)) => {
                    println!("{question}");
                    asking = Some(question);
                }
                Some(Notice::Answered) => asking = None,
                Some(Notice::End) | None => break,
            },
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                // An answer settles the question at once: a line typed before the session
                // confirms it is chat, not a wrong answer.
                let request = match (line, &asking) {
                    ("/quit", _) => Request::Quit,
                    ("y" | "yes", Some(_)) => {
                        asking = None;
                        Request::Answer(true)
                    }
                    ("n" | "no", Some(_)) => {
                        asking = None;
                        Request::Answer(false)
                    }
                    ("", _) => continue,
                    (_, Some(question)) => {
                        println!("{question}");
                        continue;
                    }
                    (text, None) => Request::Say(text.to_owned()),
                };
                window.send(&request).await.context("the session is gone")?;
            }
        }
    }
    println!("** kanava session control and chat window closing; the session is done");
    Ok(ExitCode::SUCCESS)
}
