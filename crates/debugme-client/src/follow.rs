//! Following a session without typing: `kanava watch` shows the user's terminal as it goes and
//! `kanava download` saves the log. Both check every message as a developer does (the user's
//! signatures, the chain), keep their own log with the pointers restored, and carry on past a
//! message that does not check out, reporting it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kanava_debugme::developer::{Developer, DeveloperAction, StartError, Warning};
use kanava_debugme::frame::Mode;
use kanava_debugme::model::Val;

use crate::SessionUrl;
use crate::session_log::SessionLog;
use crate::transport::{self, ClientError, Incoming, Trust};

/// How often the client pings the server, as debug-me's clients do.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Where a follower's log goes.
#[derive(Debug, Clone)]
pub enum LogTarget {
    /// `debug-me.<session>.log` in this directory.
    Dir(PathBuf),
    /// Exactly this file.
    File(PathBuf),
}

/// What happens in the session, for the caller to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The user's terminal output.
    Output(Val),
    /// A chat line.
    Chat {
        /// Who sent it, as they named themselves.
        sender: Val,
        /// The line.
        text: Val,
    },
    /// A message that did not check out.
    Warning(Warning),
}

/// How following ended.
#[derive(Debug)]
pub struct Followed {
    /// Where the log is.
    pub log: PathBuf,
    /// Messages received.
    pub messages: usize,
    /// Messages that did not check out.
    pub warnings: usize,
    /// Whether the session ended (rather than the connection being lost).
    pub ended: bool,
}

/// Why a session could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The session's first messages are not a user's session start (the reason in the message
    /// only, not also as a source, which error chains would print twice).
    #[error("this is not a debug-me session that can be checked: {0}")]
    Start(StartError),
    /// The local terminal failed.
    #[error("the terminal: {0}")]
    Terminal(std::io::Error),
    /// The log cannot be written.
    #[error("cannot write the log {path}")]
    Log {
        /// The log.
        path: PathBuf,
        /// Why (the error's source, shown after the message in a chain).
        source: std::io::Error,
    },
}

impl From<StartError> for FollowError {
    fn from(error: StartError) -> Self {
        Self::Start(error)
    }
}

/// Follows session `url` until it ends, logging to `target` and passing what happens to `on`.
pub async fn follow(
    url: &SessionUrl,
    trust: &Trust,
    target: &LogTarget,
    on: &mut dyn FnMut(Event),
) -> Result<Followed, FollowError> {
    let mut connection = transport::open(
        &url.server,
        &url.websocket(),
        Mode::Connect(url.connect_mode()),
        trust,
    )
    .await?;
    let log_error = |path: PathBuf| move |source| FollowError::Log { path, source };
    let mut log = match target {
        LogTarget::Dir(dir) => SessionLog::create_in(dir, &url.id),
        LogTarget::File(path) => SessionLog::create(path),
    }
    .map_err(log_error(match target {
        LogTarget::Dir(dir) => dir.clone(),
        LogTarget::File(path) => path.clone(),
    }))?;
    let mut developer = Developer::watcher();
    let start = Instant::now();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let (mut messages, mut warnings) = (0, 0);
    let ended = loop {
        let incoming = tokio::select! {
            _ = ping.tick() => {
                connection.ping().await?;
                continue;
            }
            incoming = connection.receive() => incoming?,
        };
        let message = match incoming {
            None => break false,
            Some(Incoming::Done) => break true,
            Some(Incoming::Message(message)) => message,
        };
        messages += 1;
        for action in developer.receive(message, start.elapsed())? {
            match action {
                DeveloperAction::Log(entry) => log
                    .append(entry)
                    .map_err(log_error(log.path().to_owned()))?,
                DeveloperAction::Show(output) => on(Event::Output(output)),
                DeveloperAction::Chat { sender, text } => on(Event::Chat { sender, text }),
                DeveloperAction::Warn(warning) => {
                    warnings += 1;
                    on(Event::Warning(warning));
                }
                // A follower sends nothing and has no access to change.
                DeveloperAction::Send(_) | DeveloperAction::Bell | DeveloperAction::Access(_) => {}
            }
        }
    };
    connection.close().await;
    let path = log.path().to_owned();
    let log = log.finish().map_err(log_error(path))?;
    Ok(Followed {
        log,
        messages,
        warnings,
        ended,
    })
}
