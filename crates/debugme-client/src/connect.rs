//! `kanava connect`: the developer's side of a session. It shows the user's terminal, sends its
//! session key bound to the developer's GnuPG key, and once the user says yes sends every key
//! typed as a signed Entered (the protocol crate's [`Developer`] keeps the pointers and the
//! echo right, so that fast typing is accepted). A rejected key rings the bell and resyncs;
//! a refused developer goes on watching. The developer's log is written as the session goes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kanava_debugme::developer::{Access, Developer, DeveloperAction};
use kanava_debugme::frame::Mode;
use kanava_debugme_tools::gpg::SignedSessionKey;
use kanava_debugme_tools::terminal::StringSequenceFilter;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use crate::SessionUrl;
use crate::console::{Console, chat_line, show};
use crate::control::{Notice, Request, developer_socket_path, next_request};
use crate::follow::{FollowError, PING_INTERVAL};
use crate::keys::{KeyRouter, Submitted};
use crate::session_log::SessionLog;
use crate::terminal::{self, RawTerminal};
use crate::transport::{self, Connection, Incoming, Trust};

/// What to connect to, as whom.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The session.
    pub url: SessionUrl,
    /// Certificates trusted for `wss://`.
    pub trust: Trust,
    /// Where the developer's log goes.
    pub log_dir: PathBuf,
    /// The name chat lines are sent under.
    pub name: String,
}

/// How a developer's session ended.
#[derive(Debug)]
pub struct Connected {
    /// The developer's log.
    pub log: PathBuf,
    /// Whether the session ended (rather than the connection being lost).
    pub ended: bool,
    /// Whether the user let us type.
    pub access: Access,
}

/// Connects to the session as a developer with a fresh session key bound by `signed_key`
/// (the clearsigned [`statement`] of this `developer`), until the session ends or the developer quits.
pub async fn connect(
    config: ConnectConfig,
    developer: Developer,
    signed_key: SignedSessionKey,
) -> Result<Connected, FollowError> {
    let url = &config.url;
    let mut connection = transport::open(
        &url.server,
        &url.websocket(),
        Mode::Connect(url.connect_mode()),
        &config.trust,
    )
    .await?;
    let log_error = |path: PathBuf| move |source| FollowError::Log { path, source };
    let log = SessionLog::create_in(&config.log_dir, &url.id)
        .map_err(log_error(config.log_dir.clone()))?;
    let (console, requests) = Console::open(&developer_socket_path(&config.log_dir));
    let raw = RawTerminal::enter().map_err(FollowError::Terminal)?;
    let mut session = Session {
        developer,
        console,
        held: Vec::new(),
        held_since: None,
        last_output: Instant::now(),
        log,
        filter: StringSequenceFilter::default(),
        start: Instant::now(),
        received: 0,
        key: Some(signed_key),
        name: config.name,
    };
    let outcome = session.run(&mut connection, requests).await;
    session.console.notify(Notice::End);
    drop(raw);
    connection.close().await;
    let ended = outcome?;
    let access = session.developer.access();
    let path = session.log.path().to_owned();
    let log = session.log.finish().map_err(log_error(path))?;
    Ok(Connected { log, ended, access })
}

/// A developer with a fresh random session key.
pub fn fresh_developer() -> Developer {
    Developer::new(rand::random())
}

/// The developer's session key's statement to clearsign: the 128 hex characters of its hash.
pub fn statement(developer: &Developer) -> Vec<u8> {
    developer.session_key_hash().unwrap_or_default()
}

/// Output must have been quiet this long before held keys are sent.
const QUIET: Duration = Duration::from_millis(40);

/// While keys are in flight, held keys wait for output (their echo) this long after the last
/// output or send; a program that echoes nothing (a password prompt) costs this much per burst.
const NO_ECHO: Duration = Duration::from_millis(300);

/// Held keys are sent after this long whatever the output does (typed ahead, then).
const MAX_HOLD: Duration = Duration::from_secs(2);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

struct Session {
    developer: Developer,
    console: Console,
    /// Keys typed while earlier ones wait for their echo, with when the first was held.
    held: Vec<u8>,
    held_since: Option<Instant>,
    /// When the user's output last arrived, or (if later) when we last sent keys.
    last_output: Instant,
    log: SessionLog,
    filter: StringSequenceFilter,
    start: Instant,
    received: usize,
    /// Our signed session key, until it is sent.
    key: Option<SignedSessionKey>,
    name: String,
}

impl Session {
    /// Runs until the session ends (`Ok(true)`) or the connection is lost (`Ok(false)`).
    async fn run(
        &mut self,
        connection: &mut Connection,
        mut requests: Option<mpsc::Receiver<Request>>,
    ) -> Result<bool, FollowError> {
        let mut keys = terminal::keys();
        let mut keys_open = true;
        let mut router = KeyRouter::default();
        let mut terminate = signal(SignalKind::terminate()).map_err(FollowError::Terminal)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(FollowError::Terminal)?;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let release = self.release_at();
            tokio::select! {
                () = sleep_until(release.unwrap_or_else(far_future)), if release.is_some() => {
                    self.release(connection).await?;
                }
                incoming = connection.receive() => match incoming? {
                    None => {
                        self.console.note("the connection to the server was lost");
                        return Ok(false);
                    }
                    Some(Incoming::Done) => {
                        self.console.note("the session has ended");
                        return Ok(true);
                    }
                    Some(Incoming::Message(message)) => {
                        self.received += 1;
                        let actions = self.developer.receive(message, self.start.elapsed())?;
                        self.carry_out(actions, connection).await?;
                        // The session has started (the user's key and first output checked):
                        // ask for write access.
                        if self.received == 2 {
                            self.send_key(connection).await?;
                        }
                    }
                },
                typed = keys.recv(), if keys_open => {
                    // Without input (stdin at its end) the session is still watched.
                    let Some(typed) = typed else {
                        keys_open = false;
                        continue;
                    };
                    let routed = router.route(&typed);
                    show(&routed.echo);
                    if !routed.to_program.is_empty() {
                        self.typed(&routed.to_program, connection).await?;
                    }
                    for submitted in routed.submitted {
                        match submitted {
                            Submitted::Chat(text) => match self.developer.chat(self.name.as_bytes(), &text) {
                                Ok(actions) => self.carry_out(actions, connection).await?,
                                Err(error) => self.console.note(&error.to_string()),
                            },
                            Submitted::Quit => return Ok(false),
                            Submitted::Answer(_) => {}
                        }
                    }
                }
                request = next_request(&mut requests) => match request {
                    Some(Request::Say(text)) => {
                        self.console.said(&text);
                        match self.developer.chat(self.name.as_bytes(), text.as_bytes()) {
                            Ok(actions) => self.carry_out(actions, connection).await?,
                            Err(error) => self.console.note(&error.to_string()),
                        }
                    }
                    Some(Request::Quit) => return Ok(false),
                    Some(Request::Answer(_)) => {}
                    None => requests = None,
                },
                _ = terminate.recv() => return Ok(false),
                _ = hangup.recv() => return Ok(false),
                _ = ping.tick() => connection.ping().await?,
            }
        }
    }

    async fn send_key(&mut self, connection: &mut Connection) -> Result<(), FollowError> {
        let Some(key) = self.key.take() else {
            return Ok(());
        };
        match self.developer.send_session_key(key.statement, key.export) {
            Ok(actions) => {
                self.console.note(&format!(
                    "asked the user to let you type (GnuPG key {}); waiting for their answer",
                    key.fingerprint
                ));
                self.carry_out(actions, connection).await
            }
            Err(error) => {
                self.console.note(&error.to_string());
                Ok(())
            }
        }
    }

    /// Keys typed here. While earlier keys wait for their echo, or output is still arriving,
    /// they are held and sent once the output is quiet: protocol 1 refuses
    /// keys typed ahead of output the developer has not seen, unless that output is exactly
    /// their echo and arrived whole, which a long echo read in pieces is not.
    async fn typed(&mut self, keys: &[u8], connection: &mut Connection) -> Result<(), FollowError> {
        match self.developer.access() {
            Access::ReadWrite => {
                self.held.extend_from_slice(keys);
                self.held_since.get_or_insert_with(Instant::now);
                self.release(connection).await
            }
            Access::Waiting => {
                show(b"\x07");
                Ok(())
            }
            Access::ReadOnly | Access::Watching => Ok(()),
        }
    }

    /// When held keys may go: once nothing is in flight and output has been quiet for
    /// [`QUIET`]; with keys in flight, once neither output nor a send happened for [`NO_ECHO`];
    /// at the latest [`MAX_HOLD`] after the first was held.
    fn release_at(&self) -> Option<tokio::time::Instant> {
        let since = self.held_since?;
        let quiet = if self.developer.keys_in_flight() {
            NO_ECHO
        } else {
            QUIET
        };
        let at = (self.last_output + quiet).min(since + MAX_HOLD);
        Some(tokio::time::Instant::from_std(at))
    }

    /// Sends the held keys if they may go now.
    async fn release(&mut self, connection: &mut Connection) -> Result<(), FollowError> {
        let due = self
            .release_at()
            .is_some_and(|at| at <= tokio::time::Instant::now());
        if self.held.is_empty() || !due {
            return Ok(());
        }
        self.held_since = None;
        self.last_output = Instant::now();
        let keys = std::mem::take(&mut self.held);
        let actions = self
            .developer
            .type_keys(&keys, self.start.elapsed())
            .unwrap_or_default();
        self.carry_out(actions, connection).await
    }

    async fn carry_out(
        &mut self,
        actions: Vec<DeveloperAction>,
        connection: &mut Connection,
    ) -> Result<(), FollowError> {
        for action in actions {
            match action {
                DeveloperAction::Send(message) => connection.send(message).await?,
                DeveloperAction::Log(entry) => {
                    self.log.append(entry).map_err(|source| FollowError::Log {
                        path: self.log.path().to_owned(),
                        source,
                    })?;
                }
                DeveloperAction::Show(output) => {
                    self.last_output = Instant::now();
                    show(&self.filter.filter(&output));
                }
                DeveloperAction::Chat { sender, text } => self.console.say(&chat_line(&sender, &text)),
                DeveloperAction::Bell => show(b"\x07"),
                DeveloperAction::Access(Access::ReadWrite) => {
                    self.console.note("the user let you type into their terminal");
                }
                DeveloperAction::Access(Access::ReadOnly) => self.console.note(
                    "User did not grant write access to their terminal. Watching session in read-only mode.",
                ),
                DeveloperAction::Access(_) => {}
                DeveloperAction::Warn(warning) => self.console.note(&warning.to_string()),
            }
        }
        Ok(())
    }
}
