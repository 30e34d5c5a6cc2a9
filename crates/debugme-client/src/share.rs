//! `kanava share`: the user's side of a session. The shared program runs in a PTY; its output
//! is shown here and sent as signed Seen activities; developers' keys reach it only once the
//! user said yes to their GnuPG-signed session key and only when they follow the acceptance
//! rules (the protocol crate's [`User`] decides). The user's log is written as the session
//! goes, and the terminal is restored however the session ends.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use kanava_debugme::frame::Mode;
use kanava_debugme::model::PublicKey;
use kanava_debugme::user::{ConsentRequest, User, UserAction};
use kanava_debugme_tools::gpg::SystemGpg;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::address::{ServerUrl, SessionUrl};
use crate::console::{Console, chat_line, show};
use crate::control::{Notice, Request, next_request, socket_path};
use crate::follow::PING_INTERVAL;
use crate::keys::{KeyRouter, QUESTION, Submitted};
use crate::pty::{Pty, exit_number};
use crate::session_log::SessionLog;
use crate::terminal::{self, RawTerminal};
use crate::transport::{self, ClientError, Connection, Incoming, Trust};

/// Where debug-me keeps the keyrings of developers it knows (Debian developers and
/// maintainers, debug-me's own developers).
pub const DEBUG_ME_KEYRINGS: &str = "/usr/share/debug-me/keyring";

/// What to share, where.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// The server.
    pub server: ServerUrl,
    /// Certificates trusted for `wss://`.
    pub trust: Trust,
    /// The program to share, and its arguments.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Where the user's log goes.
    pub log_dir: PathBuf,
    /// The address the server may mail the log to (empty: none).
    pub email: String,
    /// The name chat lines are sent under.
    pub name: String,
    /// Keyrings of developers vouched for ([`DEBUG_ME_KEYRINGS`]).
    pub keyring_dir: PathBuf,
    /// Fingerprints the user trusts (their kanava trust file).
    pub trusted: Vec<String>,
}

/// How a shared session ended.
#[derive(Debug)]
pub struct Shared {
    /// The session.
    pub url: SessionUrl,
    /// The user's log.
    pub log: PathBuf,
    /// The shared program's exit number (`-N` when killed by signal N).
    pub status: i32,
}

/// Why sharing failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The program or its terminal failed.
    #[error("the shared program: {0}")]
    Program(std::io::Error),
    /// The log cannot be written.
    #[error("cannot write the log {path}")]
    Log {
        /// The log.
        path: PathBuf,
        /// Why (the error's source, shown after the message in a chain).
        source: std::io::Error,
    },
}

/// The session in progress.
struct Session {
    user: User,
    connection: Connection,
    log: SessionLog,
    pty: Pty,
    router: KeyRouter,
    /// Developers waiting for an answer, the one being asked first.
    waiting: Vec<PublicKey>,
    console: Console,
    config: ShareConfig,
    start: Instant,
}

/// Shares `config.program` until it exits (or the user quits, or SIGTERM/SIGHUP arrive).
/// `announce` is called with the session URL before the program starts.
pub async fn share(
    config: ShareConfig,
    announce: impl FnOnce(&SessionUrl),
) -> Result<Shared, ShareError> {
    let start = Instant::now();
    let (user, actions) = User::start(rand_secret(), start.elapsed());
    let connection = transport::open(
        &config.server,
        &config.server.websocket(),
        Mode::Init(config.email.clone()),
        &config.trust,
    )
    .await?;
    let url = config.server.session(&connection.session_id);
    let log =
        SessionLog::create_in(&config.log_dir, &url.id).map_err(|source| ShareError::Log {
            path: config.log_dir.clone(),
            source,
        })?;
    let (console, requests) = Console::open(&socket_path(&config.log_dir));
    announce(&url);
    let pty =
        Pty::spawn(&config.program, &config.args, terminal::size()).map_err(ShareError::Program)?;
    let raw = RawTerminal::enter().map_err(ShareError::Program)?;
    let mut session = Session {
        user,
        connection,
        log,
        pty,
        router: KeyRouter::default(),
        waiting: Vec::new(),
        console,
        config,
        start,
    };
    let outcome = session.run(actions, requests).await;
    session.console.notify(Notice::End);
    drop(raw);
    let status = outcome?;
    let log = session.log.path().to_owned();
    session.connection.close().await;
    session.log.finish().map_err(|source| ShareError::Log {
        path: log.clone(),
        source,
    })?;
    Ok(Shared { url, log, status })
}

fn rand_secret() -> [u8; 32] {
    rand::random()
}

impl Session {
    async fn run(
        &mut self,
        first: Vec<UserAction>,
        mut requests: Option<mpsc::Receiver<Request>>,
    ) -> Result<i32, ShareError> {
        self.carry_out(first).await?;
        let mut keys = terminal::keys();
        let mut resized = signal(SignalKind::window_change()).map_err(ShareError::Program)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(ShareError::Program)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(ShareError::Program)?;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut server_gone = false;
        loop {
            // Developers' messages first: keys that arrive together are judged against the
            // same output, so a burst typed ahead of its echo is not refused for an echo read
            // in between.
            tokio::select! {
                biased;
                incoming = self.connection.receive(), if !server_gone => match incoming {
                    Ok(Some(Incoming::Message(message))) => {
                        let actions = self.user.receive(message);
                        self.carry_out(actions).await?;
                    }
                    Ok(Some(Incoming::Done) | None) | Err(_) => {
                        // Keep the program and the log going: the session is still the user's.
                        self.console.note("the server connection ended; the session is no longer shared");
                        server_gone = true;
                    }
                },
                output = self.pty.read() => match output.map_err(ShareError::Program)? {
                    Some(output) => {
                        show(&output);
                        let actions = self.user.seen(&output, self.start.elapsed());
                        self.carry_out(actions).await?;
                    }
                    None => break,
                },
                typed = keys.recv() => match typed {
                    Some(typed) => self.typed(&typed).await?,
                    None => self.pty.hang_up(),
                },
                request = next_request(&mut requests) => match request {
                    Some(Request::Say(text)) => {
                        self.console.said(&text);
                        let actions = self.user.chat(self.config.name.as_bytes(), text.as_bytes());
                        self.carry_out(actions).await?;
                    }
                    Some(Request::Answer(yes)) => self.answer(yes).await?,
                    Some(Request::Quit) => self.pty.hang_up(),
                    None => requests = None,
                },
                _ = resized.recv() => {
                    let _ = self.pty.resize(terminal::size());
                }
                _ = terminate.recv() => self.pty.hang_up(),
                _ = hangup.recv() => self.pty.hang_up(),
                _ = ping.tick(), if !server_gone => {
                    let _ = self.connection.ping().await;
                }
            }
        }
        let status = exit_number(self.pty.wait().await.map_err(ShareError::Program)?);
        let actions = self.user.end(status, self.start.elapsed());
        if let Some(UserAction::Send(message)) = actions.first() {
            show(&message_seen_data(message));
        }
        self.carry_out(actions).await?;
        Ok(status)
    }

    /// Keys typed here: to the program, or answers and chat lines.
    async fn typed(&mut self, typed: &[u8]) -> Result<(), ShareError> {
        let routed = self.router.route(typed);
        show(&routed.echo);
        if !routed.to_program.is_empty() {
            self.pty
                .write(&routed.to_program)
                .await
                .map_err(ShareError::Program)?;
        }
        for submitted in routed.submitted {
            match submitted {
                Submitted::Answer(yes) => self.answer(yes).await?,
                Submitted::Chat(text) => {
                    let actions = self.user.chat(self.config.name.as_bytes(), &text);
                    self.carry_out(actions).await?;
                }
                Submitted::Quit => self.pty.hang_up(),
            }
        }
        Ok(())
    }

    /// The answer to the developer being asked (typed here or in the control window).
    async fn answer(&mut self, yes: bool) -> Result<(), ShareError> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let key = self.waiting.remove(0);
        self.router.answered();
        self.console.notify(Notice::Answered);
        let actions = self.user.consent(&key, yes).unwrap_or_default();
        self.console.note(if yes {
            "they may type now"
        } else {
            "refused; they can only watch"
        });
        self.carry_out(actions).await?;
        self.ask_next();
        Ok(())
    }

    /// Puts the question about the first waiting developer, here and in the control windows.
    fn ask(&mut self) {
        show(&self.router.ask());
        self.console
            .notify(Notice::Ask(QUESTION.trim_end().to_owned()));
    }

    async fn carry_out(&mut self, actions: Vec<UserAction>) -> Result<(), ShareError> {
        for action in actions {
            match action {
                UserAction::Send(message) => {
                    // A lost server does not end the user's session; its log goes on.
                    let _ = self.connection.send(message).await;
                }
                UserAction::Log(entry) => {
                    self.log.append(entry).map_err(|source| ShareError::Log {
                        path: self.log.path().to_owned(),
                        source,
                    })?;
                }
                UserAction::WritePty(keys) => {
                    self.pty.write(&keys).await.map_err(ShareError::Program)?;
                }
                UserAction::AskConsent(request) => {
                    let more = self.consider(request).await?;
                    self.carry_out_boxed(more).await?;
                }
                UserAction::Chat { sender, text } => self.console.say(&chat_line(&sender, &text)),
            }
        }
        Ok(())
    }

    fn carry_out_boxed(
        &mut self,
        actions: Vec<UserAction>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ShareError>> + '_>> {
        Box::pin(self.carry_out(actions))
    }

    /// A developer's key: checked with gpg, then put to the user; refused at once when the
    /// GnuPG signature does not check out.
    async fn consider(&mut self, request: ConsentRequest) -> Result<Vec<UserAction>, ShareError> {
        let ConsentRequest {
            key,
            statement,
            gpg_signature,
            gpg_key_export,
        } = request;
        let keyring_dir = self.config.keyring_dir.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let gpg = SystemGpg;
            let identity = gpg.identify(&statement, &gpg_signature, &gpg_key_export)?;
            let keyrings = gpg.keyrings_holding(&keyring_dir, &identity.fingerprint);
            Ok::<_, String>((identity, keyrings))
        })
        .await
        .unwrap_or_else(|error| Err(error.to_string()));
        let (identity, keyrings) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                self.console.note(&format!(
                    "a developer's GnuPG signature does not check out ({}); refused",
                    kanava_core::sanitize(reason.as_bytes())
                ));
                return Ok(self.user.consent(&key, false).unwrap_or_default());
            }
        };
        let mut text = String::from("** kanava: a developer asks to type into this terminal:\n");
        for user_id in &identity.user_ids {
            text.push_str(&format!(
                "   {}\n",
                kanava_core::sanitize(user_id.as_bytes())
            ));
        }
        text.push_str(&format!("   key {}\n", identity.fingerprint));
        let trusted = self
            .config
            .trusted
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&identity.fingerprint));
        if trusted {
            text.push_str("   in your trusted keys\n");
        }
        for keyring in &keyrings {
            text.push_str(&format!("   is {keyring} (in {DEBUG_ME_KEYRINGS})\n"));
        }
        if !trusted && keyrings.is_empty() {
            text.push_str(
                "   their identity cannot be verified: the key is in no keyring you trust\n",
            );
        }
        self.console.say(text.trim_end());
        self.waiting.push(key);
        if self.waiting.len() == 1 {
            self.ask();
        }
        Ok(Vec::new())
    }

    fn ask_next(&mut self) {
        if !self.waiting.is_empty() {
            self.ask();
        }
    }
}

/// The output a Seen message carries (for showing the end line as it is sent).
fn message_seen_data(message: &kanava_debugme::model::AnyMessage) -> Vec<u8> {
    use kanava_debugme::model::{AnyMessage, Message};
    match message {
        AnyMessage::User(Message::Activity(seen)) => seen.activity.seen_data.clone(),
        _ => Vec::new(),
    }
}
