//! The SSH listener: accepts connections within the caps (answering a refused one with the
//! reason), authenticates by public key with trust on first use (refusing banned keys), and
//! starts exec commands, line sessions and the full-screen chat on a few session channels per
//! connection. Everything else SSH offers (subsystems such as sftp, X11, agent and port
//! forwarding) gets a prompt failure reply.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kanava_core::{Budgets, Claim, KeySharing, MemoryBudget, Nick, Sources};
use kanava_hub::{Hub, LoginRefusal, Logins, TokenBucket};
use ratatui::layout::Rect;
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Preferred, SshId,
    compression,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::SshError;
use crate::binding::banner;
use crate::chat::Input;
use crate::chat::directory::{Directory, Mode};
use crate::chat::session::{ChatContext, DEFAULT_BACKLOG};
use crate::clock::Zone;
use crate::deadline::WriteDeadline;
use crate::exec::{self, Output};
use crate::files::ChatFiles;
use crate::line_mode;
use crate::output::Flow;
use crate::refusal::{REFUSALS_AT_ONCE, refuse};
use crate::sessions::{UserSession, UserSessions};

/// The identification the server sends (RFC 4253 §4.2).
const SERVER_ID: &str = "SSH-2.0-kanava";

/// What a channel open or a channel or global request (a window-change among them) costs from
/// the input rate budget, in bytes: a resize by dragging (some tens a second for a few seconds)
/// passes, a flood of requests meets the limit.
const REQUEST_COST: f64 = 4096.0;

/// Keepalives sent without an answer before the connection is closed: the peer is closed after
/// this many intervals and one more of silence.
const KEEPALIVES_UNANSWERED: usize = 3;

/// Silent keepalive intervals after which a connection is closed, and how long a write may
/// stall.
const SILENT_INTERVALS: u32 = KEEPALIVES_UNANSWERED as u32 + 1;

/// How long a shutdown waits for a logged-in client to leave by itself (its commands said
/// goodbye) before it disconnects it.
const SHUTDOWN_GOODBYE: Duration = Duration::from_secs(2);

/// Longest exec command line, beyond the longest message.
const EXEC_OVERHEAD: usize = 1024;

/// What a client asking for anything but a chat session is told.
const NOT_OFFERED: &str = "kanava offers chat sessions only: no port forwarding, X11 or agent";

/// Settings of the SSH listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// Time from TCP accept to a successful authentication.
    pub auth_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IPv4 address or IPv6 /64.
    pub max_connections_per_source: usize,
    /// Longest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Events of a room shown on entering it.
    pub backlog: usize,
    /// The operators' keys, in `authorized_keys` format.
    pub ops_file: Option<PathBuf>,
    /// A message of the day, shown on entering the chat (read at each login).
    pub motd_file: Option<PathBuf>,
    /// Whether one key may hold several names. Read by whoever builds the server's
    /// [`Logins`] (the kanava binary), which [`serve`] follows.
    pub key_sharing: KeySharing,
    /// Bytes per second a connection may send, on average; it may send 64 seconds' worth at
    /// once. Past that it is disconnected. A window-change counts as 4 KiB.
    pub input_bytes_per_second: u64,
    /// Interval of keepalives to a silent client; one silent for four intervals (or not reading
    /// for as long) is closed.
    pub keepalive_interval: Duration,
    /// Most session channels open at once on one connection.
    pub max_sessions_per_connection: usize,
    /// Most session channels open at once for one user, over all their connections.
    pub max_sessions_per_user: usize,
    /// New names (trust-on-first-use bindings) one source (IPv4 address or IPv6 /64) may bind
    /// per hour, after a burst; 0 for no limit. Logging in under a name the key holds is
    /// never limited. Read by whoever builds the server's [`Logins`], which every transport
    /// shares.
    pub bindings_per_hour: u32,
    /// New names one source may bind at once (see [`bindings_per_hour`](Self::bindings_per_hour)).
    pub bindings_burst: u32,
    /// Names not logged in for this long are freed; `None` keeps them for good.
    pub name_expiry: Option<Duration>,
    /// The shortest time between two full-screen redraws caused by other people's traffic
    /// (the user's own keys are drawn at once): a busy room costs a few draws a second per
    /// session, not one per message.
    pub frame_interval: Duration,
}

/// The default [`SshConfig::frame_interval`]: chosen with `kanava bench ssh` (see
/// docs/benchmarks.md) so that 500 sessions at 50 messages a second see each message within
/// 100 ms.
pub const DEFAULT_FRAME_INTERVAL: Duration = Duration::from_millis(75);

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(20),
            max_connections: 5_000,
            max_connections_per_source: 16,
            max_message_bytes: 4096,
            backlog: DEFAULT_BACKLOG,
            ops_file: None,
            motd_file: None,
            key_sharing: KeySharing::OneNamePerKey,
            input_bytes_per_second: 256 * 1024,
            keepalive_interval: Duration::from_secs(24),
            max_sessions_per_connection: 4,
            max_sessions_per_user: 16,
            bindings_per_hour: 60,
            bindings_burst: 30,
            name_expiry: None,
            frame_interval: DEFAULT_FRAME_INTERVAL,
        }
    }
}

/// What the SSH listener shares with the rest of the server.
pub struct SshServices {
    /// The hub its chat runs on.
    pub hub: Hub,
    /// The process-wide budgets its connections draw from.
    pub budgets: Budgets,
    /// The name binding rules, one instance shared with the other transports.
    pub logins: Logins,
    /// The operators file and message of the day, which a reload may change.
    pub files: Arc<ChatFiles>,
}

/// Serves SSH on `listener` until `shutdown` is cancelled; returns once every connection ended.
pub async fn serve(
    listener: TcpListener,
    config: SshConfig,
    host_key: PrivateKey,
    services: SshServices,
    shutdown: CancellationToken,
) {
    let SshServices {
        hub,
        budgets,
        logins,
        files,
    } = services;
    let russh_config = Arc::new(russh::server::Config {
        server_id: SshId::Standard(SERVER_ID.into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(250),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        keepalive_interval: Some(config.keepalive_interval),
        keepalive_max: KEEPALIVES_UNANSWERED,
        inactivity_timeout: None,
        nodelay: true,
        // No compression before authentication: only the delayed zlib@openssh.com, whose
        // output russh bounds per packet.
        preferred: Preferred {
            compression: (&[compression::NONE, compression::ZLIB_LEGACY][..]).into(),
            ..Preferred::default()
        },
        ..Default::default()
    });
    let sources = Sources::new(
        budgets.connections,
        config.max_connections,
        config.max_connections_per_source,
    );
    let chat = ChatContext {
        accounts: hub.accounts(),
        limits: hub.user_limits(),
        hub,
        directory: Directory::default(),
        files,
        max_message_bytes: config.max_message_bytes,
        backlog: config.backlog,
        key_sharing: logins.sharing(),
        frame_interval: config.frame_interval,
        shutdown: shutdown.clone(),
    };
    let user_sessions = UserSessions::default();
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    if let Some(expiry) = config.name_expiry {
        tracker.spawn(expire_names(
            chat.accounts.clone(),
            expiry,
            shutdown.clone(),
        ));
    }
    // Private messages and room notices from every transport (and, in a cluster, the private
    // messages stored on other nodes) reach the SSH sessions through the directory.
    chat.hub.chat().add_sink(Arc::new(chat.directory.clone()));
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match sources.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                metrics::counter!("kanava_connections_refused_total", "listener" => "ssh", "reason" => full.label())
                    .increment(1);
                tracing::debug!(%peer, cap = full.label(), "ssh connection refused");
                // Tell the client why, unless many refusals are being answered already.
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(tcp, full.reason()).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let input_rate = config.input_bytes_per_second as f64;
        let connection = Connection {
            input_budget: TokenBucket::new(input_rate * 64.0, input_rate),
            chat: ChatContext {
                hub: chat.hub.for_source(peer.ip()),
                ..chat.clone()
            },
            config: Arc::clone(&config),
            peer,
            user: None,
            logins: logins.clone(),
            refusal: None,
            last_banner: None,
            confirmed: None,
            authenticated: Arc::new(AtomicBool::new(false)),
            channels: HashMap::new(),
            sessions: HashMap::new(),
            finished: mpsc::unbounded_channel(),
            user_sessions: user_sessions.clone(),
            terminals: HashMap::new(),
            palettes: HashMap::new(),
            sizes: HashMap::new(),
            no_backlog: HashSet::new(),
            zones: HashMap::new(),
            inputs: HashMap::new(),
            memory: Arc::clone(&budgets.memory),
        };
        let (russh_config, shutdown) = (Arc::clone(&russh_config), shutdown.clone());
        tracker.spawn(async move {
            metrics::gauge!("kanava_ssh_connections").increment(1.0);
            run_connection(tcp, connection, russh_config, shutdown).await;
            metrics::gauge!("kanava_ssh_connections").decrement(1.0);
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn run_connection(
    tcp: tokio::net::TcpStream,
    connection: Connection,
    russh_config: Arc<russh::server::Config>,
    shutdown: CancellationToken,
) {
    let peer = connection.peer;
    let authenticated = Arc::clone(&connection.authenticated);
    let auth_timeout = connection.config.auth_timeout;
    let deadline = tokio::time::Instant::now() + auth_timeout;
    // A peer that stops reading stalls russh's writes, keepalives included: bound them.
    let write_deadline = connection.config.keepalive_interval * SILENT_INTERVALS;
    let tcp = WriteDeadline::new(tcp, write_deadline);
    // The identification exchange and key exchange count against the authentication deadline.
    let started = tokio::time::timeout_at(
        deadline,
        russh::server::run_stream(russh_config, tcp, connection),
    )
    .await;
    let Ok(Ok(running)) = started else {
        tracing::debug!(%peer, "ssh connection ended before its handshake");
        return;
    };
    let handle = running.handle();
    let mut running = pin!(running);
    let disconnect = |reason: &str| {
        let handle = handle.clone();
        let reason = reason.to_owned();
        async move {
            let _ = handle
                .disconnect(Disconnect::ByApplication, reason, String::new())
                .await;
        }
    };
    tokio::select! {
        result = &mut running => return log_end(peer, result),
        () = tokio::time::sleep_until(deadline) => {
            if !authenticated.load(Ordering::Acquire) {
                tracing::debug!(%peer, "ssh authentication timed out");
                disconnect("authentication timeout").await;
            }
            tokio::select! {
                result = &mut running => return log_end(peer, result),
                () = shutdown.cancelled() => {}
            }
        }
        () = shutdown.cancelled() => {}
    }
    // The commands were told to stop with the shutdown: let each say goodbye (a full-screen
    // chat restores the terminal and says why) while the connection still runs, and the
    // client leave by itself once its sessions closed (OpenSSH drops output it has not
    // written yet when disconnected), for a moment at most.
    if authenticated.load(Ordering::Acquire) {
        tokio::select! {
            result = &mut running => return log_end(peer, result),
            () = tokio::time::sleep(SHUTDOWN_GOODBYE) => {}
        }
    }
    disconnect("server shutting down").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
}

/// An admitted command or shell: who runs it, where its output goes, its stop signal, and what
/// it holds while it runs.
struct Started {
    nick: Nick,
    fingerprint: String,
    /// Told on stderr before the command or shell starts: a key this login confirmed.
    notice: Option<String>,
    out: Output,
    cancel: CancellationToken,
    running: Running,
}

/// Held by a command's task while it runs: the user's session slot, freed when the command
/// ends. The channel is then reported finished, so that the connection forgets it (russh says
/// nothing of a channel the server closed first).
struct Running {
    _slot: Option<UserSession>,
    channel: ChannelId,
    finished: mpsc::UnboundedSender<ChannelId>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.finished.send(self.channel);
    }
}

impl Connection {
    /// Admits a command or shell on `channel`: the user must be authenticated and the channel
    /// not already running one.
    fn start(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<Option<Started>, SshError> {
        let (nick, fingerprint) = match &self.user {
            Some(user) if !self.channels.contains_key(&channel) => user.clone(),
            _ => {
                session.channel_failure(channel)?;
                return Ok(None);
            }
        };
        session.channel_success(channel)?;
        let cancel = self.chat.shutdown.child_token();
        self.channels.insert(channel, cancel.clone().drop_guard());
        let out = Output {
            handle: session.handle(),
            channel,
            flow: Flow::new(
                Arc::clone(&self.memory),
                self.config.keepalive_interval * SILENT_INTERVALS,
            ),
        };
        let running = Running {
            _slot: self.sessions.get_mut(&channel).and_then(Option::take),
            channel,
            finished: self.finished.0.clone(),
        };
        let notice = self.confirmed.take().map(|fingerprint| {
            format!("kanava: key {fingerprint} is confirmed: it may now log in as {nick}\r\n")
        });
        Ok(Some(Started {
            nick,
            fingerprint,
            notice,
            out,
            cancel,
            running,
        }))
    }

    /// Forgets the channels whose commands have ended.
    fn forget_finished(&mut self) {
        while let Ok(channel) = self.finished.1.try_recv() {
            self.forget(channel);
        }
    }

    /// Forgets everything about `channel`.
    fn forget(&mut self, channel: ChannelId) {
        self.channels.remove(&channel);
        self.sessions.remove(&channel);
        self.inputs.remove(&channel);
        self.terminals.remove(&channel);
        self.palettes.remove(&channel);
        self.sizes.remove(&channel);
        self.no_backlog.remove(&channel);
        self.zones.remove(&channel);
    }
}

fn log_end(peer: SocketAddr, result: Result<(), SshError>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "ssh connection ended");
    }
}

/// One SSH connection's state, driven by russh's callbacks.
struct Connection {
    chat: ChatContext,
    config: Arc<SshConfig>,
    peer: SocketAddr,
    /// The name logged in and the fingerprint of the key it used.
    user: Option<(Nick, String)>,
    /// The binding rules and the new-binding limits of every source, over every transport.
    logins: Logins,
    /// Why the last authentication request was refused, for the banner sent with the refusal.
    refusal: Option<LoginRefusal>,
    /// The last banner sent, so that a client offering key after key sees each reason once.
    last_banner: Option<String>,
    /// The fingerprint of a pending key this login confirmed, told at the first session.
    confirmed: Option<String>,
    authenticated: Arc<AtomicBool>,
    /// Running commands by channel; dropping a guard (channel closed, connection gone) stops it.
    channels: HashMap<ChannelId, DropGuard>,
    /// Open session channels, with the user's slot for each until a command takes it over.
    sessions: HashMap<ChannelId, Option<UserSession>>,
    /// Channels whose commands have ended, reported by their tasks.
    finished: (
        mpsc::UnboundedSender<ChannelId>,
        mpsc::UnboundedReceiver<ChannelId>,
    ),
    /// Session channels open per user, over every connection.
    user_sessions: UserSessions,
    /// Channels that asked for a terminal, with its size (clamped).
    terminals: HashMap<ChannelId, Rect>,
    /// The colours each of those terminals shows, from the `TERM` of its `pty-req`.
    palettes: HashMap<ChannelId, crate::tui::Palette>,
    /// The latest size of each full-screen chat's terminal, which the chat applies when it
    /// next draws.
    sizes: HashMap<ChannelId, watch::Sender<Rect>>,
    /// Channels whose client turned the backlog off (`KANAVA_BACKLOG=0`).
    no_backlog: HashSet<ChannelId>,
    /// The time zone each channel's client sent as `TZ`, for the times it is shown.
    zones: HashMap<ChannelId, Zone>,
    /// Bytes this connection may still send: session data on any channel, and a fixed cost per
    /// channel open and request.
    input_budget: TokenBucket,
    /// Where a line session's input goes.
    inputs: HashMap<ChannelId, tokio::sync::mpsc::Sender<Input>>,
    /// The server's memory budget, which what the sessions send is charged to.
    memory: Arc<MemoryBudget>,
}

use crate::now_ms;

impl Connection {
    /// Refuses a channel kanava does not offer (X11, port forwarding), after charging the
    /// request to the input rate.
    async fn refuse_channel(
        &mut self,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if self.within_input_rate(REQUEST_COST, session)? {
            tracing::debug!(peer = %self.peer, "ssh channel refused: not offered");
            reply.reject(not_offered()).await;
        }
        Ok(())
    }

    /// Takes `cost` from the connection's input budget; past it, disconnects the client and
    /// says so (returns false).
    fn within_input_rate(&mut self, cost: f64, session: &mut Session) -> Result<bool, SshError> {
        if self.input_budget.take(cost) {
            return Ok(true);
        }
        tracing::info!(peer = %self.peer, "ssh input rate limit exceeded; disconnecting");
        metrics::counter!("kanava_ssh_input_limited_total").increment(1);
        self.inputs.clear();
        self.sizes.clear();
        session.disconnect(Disconnect::ByApplication, "input rate limit exceeded", "")?;
        Ok(false)
    }

    /// Refuses a session channel with `reason` (shown by OpenSSH as `open failed`).
    async fn refuse_session(&self, reply: ChannelOpenHandle, cap: &'static str, reason: String) {
        tracing::info!(peer = %self.peer, cap, "ssh session refused");
        metrics::counter!("kanava_ssh_sessions_refused_total", "cap" => cap).increment(1);
        reply
            .reject(ChannelOpenFailure::Other {
                code: ChannelOpenFailure::ResourceShortage.code(),
                reason,
            })
            .await;
    }

    /// Refuses the authentication request for `why`, which the client is told in a banner.
    fn refuse(&mut self, why: LoginRefusal) -> Auth {
        tracing::debug!(peer = %self.peer, reason = why.label(), "ssh login refused");
        metrics::counter!("kanava_ssh_logins_refused_total", "reason" => why.label()).increment(1);
        self.refusal = Some(why);
        Auth::reject()
    }
}

impl russh::server::Handler for Connection {
    type Error = SshError;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, SshError> {
        // Refuse another key for a bound name, a banned key, or a new name past the source's
        // limit, before any signature, so the client tries its next.
        let key = crate::identity_key_of(offer.public_key)?;
        Ok(match self.logins.check(user, &key, self.peer.ip()).await {
            Ok(_) => Auth::Accept,
            Err(why) => self.refuse(why),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, SshError> {
        let key = crate::identity_key_of(key.public_key)?;
        let fingerprint = key.fingerprint.clone();
        let (nick, claim) = match self.logins.login(user, key, self.peer.ip()).await {
            Ok(logged_in) => logged_in,
            Err(why) => return Ok(self.refuse(why)),
        };
        tracing::info!(peer = %self.peer, %nick, %fingerprint, ?claim, "ssh login");
        if claim == Claim::Bound {
            metrics::counter!("kanava_ssh_bindings_total").increment(1);
        }
        if claim == Claim::Confirmed {
            self.confirmed = Some(fingerprint.clone());
        }
        self.user = Some((nick, fingerprint));
        self.authenticated.store(true, Ordering::Release);
        Ok(Auth::Accept)
    }

    async fn auth_rejection_banner(&mut self) -> Result<Option<String>, SshError> {
        let Some(refusal) = self.refusal.take() else {
            return Ok(None);
        };
        let banner = banner(&refusal);
        if self.last_banner.as_ref() == Some(&banner) {
            return Ok(None);
        }
        self.last_banner = Some(banner.clone());
        Ok(Some(banner))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        let id = channel.id();
        // Everything arrives through the callbacks; an unread channel would wedge the session.
        drop(channel);
        self.forget_finished();
        let Some((nick, _)) = &self.user else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let most = self.config.max_sessions_per_connection;
        if self.sessions.len() >= most {
            let reason = format!("too many sessions on this connection (at most {most})");
            self.refuse_session(reply, "connection", reason).await;
            return Ok(());
        }
        let most = self.config.max_sessions_per_user;
        let Some(counted) = self.user_sessions.open(nick.key(), most) else {
            let reason = format!("too many sessions for {nick} (at most {most} in all)");
            self.refuse_session(reply, "user", reason).await;
            return Ok(());
        };
        self.sessions.insert(id, Some(counted));
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        self.refuse_channel(reply, session).await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        self.refuse_channel(reply, session).await
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        self.refuse_channel(reply, session).await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), SshError> {
        self.refuse_channel(reply, session).await
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(false);
        }
        tracing::debug!(peer = %self.peer, "ssh remote port forwarding refused");
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        session: &mut Session,
    ) -> Result<bool, SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(false);
        }
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(false);
        }
        Ok(false)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        tracing::debug!(peer = %self.peer, subsystem = %name.escape_debug(), "ssh subsystem refused");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        // A terminal belongs to a session channel that runs nothing yet.
        if !self.sessions.contains_key(&channel) || self.channels.contains_key(&channel) {
            session.channel_failure(channel)?;
            return Ok(());
        }
        self.terminals
            .insert(channel, crate::tui::clamp(cols, rows));
        self.palettes
            .insert(channel, crate::tui::Palette::for_term(term));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        if name == "KANAVA_BACKLOG" {
            if value == "0" {
                self.no_backlog.insert(channel);
            }
            session.channel_success(channel)?;
        } else if name == "TZ"
            && let Ok(zone) = Zone::named(value)
        {
            self.zones.insert(channel, zone);
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), SshError> {
        let Some(Started {
            nick,
            fingerprint,
            notice,
            out,
            cancel,
            running,
        }) = self.start(channel, session)?
        else {
            return Ok(());
        };
        let longest = self.config.max_message_bytes + EXEC_OVERHEAD;
        if data.len() > longest {
            tokio::spawn(async move {
                let _running = running;
                out.err(format!("command longer than {longest} bytes"))
                    .await;
                out.finish(exec::USAGE_ERROR).await;
            });
            return Ok(());
        }
        let line = String::from_utf8_lossy(data).into_owned();
        let chat = self.chat.clone();
        let zone = self.zones.get(&channel).cloned().unwrap_or_default();
        tokio::spawn(async move {
            let _running = running;
            if let Some(notice) = notice {
                out.err(notice).await;
            }
            let registered =
                chat.directory
                    .register(&nick, &fingerprint, Mode::Exec, cancel.clone(), now_ms());
            let status = exec::run(&chat, &nick, &line, &zone, &out, &cancel).await;
            drop(registered);
            out.finish(status).await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), SshError> {
        let Some(Started {
            nick,
            fingerprint,
            notice,
            out,
            cancel,
            running,
        }) = self.start(channel, session)?
        else {
            return Ok(());
        };
        let (input, inputs) = tokio::sync::mpsc::channel(64);
        self.inputs.insert(channel, input);
        let chat = self.chat.clone();
        let zone = self.zones.get(&channel).cloned().unwrap_or_default();
        if let Some(size) = self.terminals.get(&channel).copied() {
            let palette = self
                .palettes
                .get(&channel)
                .copied()
                .unwrap_or(crate::tui::Palette::Extended);
            let (resizes, size) = watch::channel(size);
            self.sizes.insert(channel, resizes);
            tokio::spawn(async move {
                let _running = running;
                if let Some(notice) = notice {
                    out.err(notice).await;
                }
                let options = crate::tui::Options {
                    size,
                    palette,
                    zone,
                };
                let status =
                    crate::tui::run(chat, nick, fingerprint, options, &out, inputs, &cancel).await;
                out.finish(status).await;
            });
            return Ok(());
        }
        let options = line_mode::Options {
            backlog: !self.no_backlog.contains(&channel),
            zone,
        };
        tokio::spawn(async move {
            let _running = running;
            if let Some(notice) = notice {
                out.err(notice).await;
            }
            let status =
                line_mode::run(chat, nick, fingerprint, options, &out, inputs, &cancel).await;
            out.finish(status).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(data.len() as f64, session)? {
            return Ok(());
        }
        if let Some(input) = self.inputs.get(&channel) {
            // Waiting here holds back this connection only, which is the backpressure wanted.
            let _ = input
                .send(Input::Data(bytes::Bytes::copy_from_slice(data)))
                .await;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), SshError> {
        if !self.within_input_rate(REQUEST_COST, session)? {
            return Ok(());
        }
        let size = crate::tui::clamp(cols, rows);
        if let Some(terminal) = self.terminals.get_mut(&channel) {
            *terminal = size;
        }
        // Only the latest size is kept; the chat applies it when it next draws.
        if let Some(resizes) = self.sizes.get(&channel) {
            resizes.send_replace(size);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), SshError> {
        if let Some(input) = self.inputs.remove(&channel) {
            let _ = input.send(Input::Eof).await;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), SshError> {
        self.forget(channel);
        Ok(())
    }
}

/// The refusal of a channel other than a session.
fn not_offered() -> ChannelOpenFailure {
    ChannelOpenFailure::Other {
        code: ChannelOpenFailure::AdministrativelyProhibited.code(),
        reason: NOT_OFFERED.to_owned(),
    }
}

/// Frees the names not logged in for `expiry`, checking a few times per `expiry` (at most
/// every ten minutes, at least every second).
async fn expire_names(
    accounts: kanava_hub::Accounts,
    expiry: Duration,
    shutdown: CancellationToken,
) {
    let every = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let before = now_ms().saturating_sub(expiry.as_millis() as u64);
        match accounts.expire(before).await {
            Ok(freed) if freed.is_empty() => {}
            Ok(freed) => {
                metrics::counter!("kanava_ssh_names_expired_total").increment(freed.len() as u64);
                tracing::info!(
                    names = freed.len(),
                    "freed names unused for the name expiry"
                );
            }
            Err(error) => tracing::warn!(%error, "expiring unused names failed"),
        }
    }
}
