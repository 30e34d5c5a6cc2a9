//! kanava's wiring: the binary parses its command line into [`Settings`], and [`start`] opens the
//! store, the hub and the listeners and returns a running [`Server`].
//!
//! Everything protocol-specific lives in the library crates; this crate only connects them and
//! owns process concerns (TLS material, the admin endpoint, retention timers, shutdown order).

pub mod admin;
pub mod backup;
mod reload;
pub mod systemd;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kanava_core::{Budgets, ConnectionBudget, DiskBudget, HistoryLimits, MemoryBudget};
use kanava_debugme_server::DebugMeServer;
use kanava_hub::{Hub, HubConfig, Logins, QueueLimits, UserRates};
use kanava_mles::{Endpoint, MlesConfig, RoutedConnection, Routes};
use kanava_store::{SqliteStore, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use reload::ReloadReport;
pub use tls::{AcmeSettings, TlsSource};

/// The version of this build (Cargo's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this build was made from (see build.rs), or "unknown".
pub const COMMIT: &str = env!("KANAVA_COMMIT");

/// `VERSION (commit COMMIT)`, as `kanava --version` prints it.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KANAVA_COMMIT"),
    ")"
);

/// Where the debug-me sessions are served on the Mles TLS listener.
pub const DEBUG_ME_PATH: &str = "/debug-me";

/// How often idle channels are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long shutdown waits for connections to finish their closing handshakes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `kanava serve` needs, resolved from flags, environment and config file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data directory (store, certificates).
    pub data_dir: PathBuf,
    /// Where the Mles WebSocket/TLS listener binds.
    pub mles_listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served.
    pub admin_listen: SocketAddr,
    /// Per-channel history caps.
    pub history: HistoryLimits,
    /// Per-connection outbound queue bounds.
    pub queue: QueueLimits,
    /// Channels with no activity for this long (and nobody in them) are deleted.
    pub channel_max_idle: Duration,
    /// What each user may do, over all their connections on every transport.
    pub user_rates: UserRates,
    /// The Mles listener's settings.
    pub mles: MlesConfig,
    /// Where the certificate comes from.
    pub tls: TlsSource,
    /// Where the SSH chat listener binds.
    pub ssh_listen: SocketAddr,
    /// The SSH listener's settings.
    pub ssh: kanava_ssh::SshConfig,
    /// Where the debug-me listener (plain `ws://`, as real debug-me clients need) binds.
    pub debug_me_listen: SocketAddr,
    /// How long a debug-me connection may stay silent.
    pub debug_me_idle: Duration,
    /// How long finished debug-me sessions stay downloadable.
    pub debug_me_retention: Duration,
    /// Most debug-me connections from one IPv4 address or IPv6 /64.
    pub debug_me_max_connections_per_source: usize,
    /// How long a new debug-me connection has to send its request head and protocol version.
    pub debug_me_handshake_timeout: Duration,
    /// The largest log of one debug-me session.
    pub debug_me_max_log: u64,
    /// New debug-me sessions one source may open a minute (after a burst).
    pub debug_me_sessions_per_minute: u32,
    /// Mail finished debug-me sessions' logs to their users, from this address through this
    /// `sendmail`.
    pub debug_me_mail: Option<kanava_debugme_server::MailSettings>,
    /// Run as a node of a cluster instead of on the embedded store.
    pub cluster: Option<ClusterSettings>,
    /// Serve the browser chat (its pages and `/kanava`) on the Mles listener.
    pub web: bool,
    /// Most connections open at once over every listener, if the operator set it; otherwise
    /// [`connection_budget`] derives it from the open-file limit.
    pub max_connections: Option<usize>,
    /// Most payload bytes buffered at once over every connection (partial frames, queues,
    /// replays, debug-me sessions and downloads).
    pub max_memory: usize,
    /// Most bytes the data directory may hold (history and debug-me logs), if the operator set
    /// it; otherwise what it holds at start-up plus half the filesystem's free space.
    pub max_disk: Option<u64>,
    /// Most of that one source may take, if set; otherwise an eighth.
    pub max_disk_per_source: Option<u64>,
    /// Whether `mles.max_frame` was set by the operator (rather than defaulted): in a cluster a
    /// defaulted limit shrinks to what the NATS servers carry, a set one must fit.
    pub max_frame_given: bool,
}

/// How a node joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// NATS server URLs.
    pub servers: Vec<String>,
    /// NATS credentials file.
    pub credentials: Option<PathBuf>,
    /// Replicas of the cluster's streams and buckets.
    pub replicas: usize,
    /// How many streams the cluster spreads its channels over (fixed at its creation).
    pub shards: u32,
    /// This node's unique name.
    pub node: String,
    /// How often the node refreshes its presence.
    pub presence_interval: Duration,
    /// How long frames and joins wait for the cluster before the member is told to try again.
    pub timeout: Duration,
}

impl Settings {
    /// Refuses settings that cannot work together.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.history.max_entries == 0 {
            bail!("--history-limit must be at least 1");
        }
        if self.mles.max_frame as u64 > self.history.max_bytes {
            bail!(
                "--max-frame ({}) must not exceed --history-bytes ({}): a frame the history cannot hold could not be replayed",
                self.mles.max_frame,
                self.history.max_bytes
            );
        }
        if self.mles.max_frame > self.queue.max_bytes {
            bail!(
                "--max-frame ({}) must not exceed --queue-bytes ({}): a frame must fit in a member's queue",
                self.mles.max_frame,
                self.queue.max_bytes
            );
        }
        Ok(())
    }

    /// What `kanava serve --check-config` checks without starting anything: the settings
    /// together, the certificate and key files, the operators file and the message of the day,
    /// the data directory and the `sendmail` program. Returns one line per thing checked; an error names the setting or file at
    /// fault.
    pub fn check(&self) -> anyhow::Result<Vec<String>> {
        self.validate()?;
        let mut checked = Vec::new();
        match &self.tls {
            TlsSource::Files { cert, key } => {
                checked.push(tls::check_files(cert, key).with_context(|| {
                    format!("tls-cert {} and tls-key {}", cert.display(), key.display())
                })?)
            }
            TlsSource::SelfSigned => checked.push(
                "tls: a self-signed certificate in the data directory (made on first start)"
                    .to_owned(),
            ),
            TlsSource::Acme(acme) => {
                checked.push(format!("tls: ACME for {}", acme.domains.join(", ")))
            }
        }
        if let Some(file) = &self.ssh.ops_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("ssh-ops {}: cannot read it", file.display()))?;
            let (keys, errors) = kanava_ssh::ops::parse_authorized_keys(&text);
            if let Some((line, error)) = errors.first() {
                bail!("ssh-ops {}: line {line}: {error}", file.display());
            }
            checked.push(format!("ops: {} keys in {}", keys.len(), file.display()));
        }
        if let Some(file) = &self.ssh.motd_file {
            std::fs::File::open(file)
                .with_context(|| format!("motd {}: cannot read it", file.display()))?;
            checked.push(format!("motd: {}", file.display()));
        }
        checked.push(
            check_writable_dir(&self.data_dir)
                .with_context(|| format!("data directory (--data) {}", self.data_dir.display()))?,
        );
        if let Some(mail) = &self.debug_me_mail {
            let program = &mail.sendmail;
            let runnable = std::fs::metadata(program).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            });
            if !runnable {
                bail!("sendmail {}: not an executable file", program.display());
            }
            checked.push(format!(
                "mail: from {} through {}",
                mail.from,
                program.display()
            ));
        }
        Ok(checked)
    }
}

/// Checks that `dir` is a directory this process may write, or that it can be made (its
/// nearest existing ancestor is such a directory).
fn check_writable_dir(dir: &std::path::Path) -> anyhow::Result<String> {
    let existing = dir
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .map(|a| {
            if a.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                a
            }
        })
        .unwrap_or(dir);
    let metadata =
        std::fs::metadata(existing).with_context(|| format!("reading {}", existing.display()))?;
    if !metadata.is_dir() {
        bail!("{} is not a directory", existing.display());
    }
    let path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .context("a path with a NUL byte")?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        bail!(
            "{} is not writable: {}",
            existing.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(if existing == dir {
        format!("data: {} (writable)", dir.display())
    } else {
        format!(
            "data: {} (to be made in {})",
            dir.display(),
            existing.display()
        )
    })
}

/// A running server.
pub struct Server {
    /// The bound Mles address.
    pub mles_addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// Where the certificate came from.
    pub tls_summary: String,
    /// The bound SSH address.
    pub ssh_addr: SocketAddr,
    /// The SSH host key's fingerprint, and whether the key was generated at this start.
    pub ssh_host_key: (String, bool),
    /// The bound debug-me address.
    pub debug_me_addr: SocketAddr,
    /// The process-wide budgets the listeners draw from.
    pub budgets: Budgets,
    hub: Hub,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    mles: JoinHandle<()>,
    ssh: JoinHandle<()>,
    debug_me: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    reloadable: reload::Reloadable,
}

/// Opens the store, binds the listeners (or takes those systemd passed, by name) and starts
/// serving.
pub async fn start(
    mut settings: Settings,
    metrics: PrometheusHandle,
    inherited: systemd::InheritedListeners,
) -> anyhow::Result<Server> {
    settings.validate()?;
    kanava_store::describe_metrics();
    kanava_hub::describe_metrics();
    kanava_mles::describe_metrics();
    kanava_ssh::describe_metrics();
    kanava_debugme_server::describe_metrics();
    kanava_web::describe_metrics();
    admin::describe_metrics();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let budgets = Budgets {
        connections: ConnectionBudget::new(connection_budget(
            open_file_limit()?,
            settings.max_connections,
        )?),
        memory: MemoryBudget::new(settings.max_memory),
        disk: Arc::new(disk_budget(&settings)?),
    };
    let store = open_store(&mut settings, Arc::clone(&budgets.disk)).await?;
    let hub = Hub::new(
        Arc::clone(&store),
        HubConfig {
            history: settings.history,
            queue: settings.queue,
            memory: Arc::clone(&budgets.memory),
            user_rates: settings.user_rates,
            ..HubConfig::default()
        },
    );
    // One set of binding rules and per-source limits for every transport that logs in by key.
    let logins = Logins::new(
        hub.accounts(),
        settings.ssh.key_sharing,
        settings.ssh.bindings_burst,
        settings.ssh.bindings_per_hour,
    );
    let tls = tls::setup(&settings.tls, &settings.data_dir).await?;
    let mles_listener = listen(&inherited, "mles", settings.mles_listen).await?;
    let host_key =
        kanava_ssh::host_key::load_or_generate(&settings.data_dir.join("ssh/host_ed25519"))
            .context("preparing the SSH host key")?;
    let ssh_listener = listen(&inherited, "ssh", settings.ssh_listen).await?;
    let debug_me_listener = listen(&inherited, "debug-me", settings.debug_me_listen).await?;
    let log_dir = settings.data_dir.join("debug-me");
    let debug_me = DebugMeServer::open(
        kanava_debugme_server::DebugMeConfig {
            log_dir: log_dir.clone(),
            idle_timeout: settings.debug_me_idle,
            handshake_timeout: settings.debug_me_handshake_timeout,
            max_log: settings.debug_me_max_log,
            sessions_per_minute: settings.debug_me_sessions_per_minute,
            retention: settings.debug_me_retention,
            budgets: budgets.clone(),
            max_connections_per_source: settings.debug_me_max_connections_per_source,
            mail: settings.debug_me_mail.clone(),
        },
        hub.sessions(),
    )
    .with_context(|| format!("opening the debug-me log directory {}", log_dir.display()))?;
    let mut routes = Routes::new().route(DEBUG_ME_PATH, Arc::new(DebugMeRoute(debug_me.clone())));
    if settings.web {
        let web = kanava_web::Web::new(
            hub.clone(),
            logins.clone(),
            web_config(&settings),
            Arc::clone(&budgets.memory),
        );
        routes = routes
            .route(kanava_web::PATH, Arc::new(web))
            .pages(Arc::new(kanava_web::FrontEnd));
    }
    let admin_listener = listen(&inherited, "admin", settings.admin_listen).await?;
    inherited.all_taken()?;
    let ssh_files = Arc::new(kanava_ssh::ChatFiles::new(&settings.ssh));
    let reloadable = reload::Reloadable {
        running: std::sync::Mutex::new(settings.clone()),
        certificate: tls.files,
        ssh_files: Arc::clone(&ssh_files),
        user_limits: hub.user_limits(),
    };
    let shutdown = CancellationToken::new();
    let server = Server {
        mles_addr: mles_listener.local_addr()?,
        admin_addr: admin_listener.local_addr()?,
        tls_summary: tls.summary,
        ssh_addr: ssh_listener.local_addr()?,
        ssh_host_key: (host_key.fingerprint, host_key.generated),
        debug_me_addr: debug_me_listener.local_addr()?,
        budgets: budgets.clone(),
        hub: hub.clone(),
        store,
        shutdown: shutdown.clone(),
        mles: tokio::spawn(kanava_mles::serve(
            mles_listener,
            tls.server,
            hub.clone(),
            settings.mles.clone(),
            routes,
            budgets.clone(),
            shutdown.clone(),
        )),
        ssh: tokio::spawn(kanava_ssh::serve(
            ssh_listener,
            settings.ssh.clone(),
            host_key.key,
            kanava_ssh::SshServices {
                hub: hub.clone(),
                budgets: budgets.clone(),
                logins: logins.clone(),
                files: ssh_files,
            },
            shutdown.clone(),
        )),
        debug_me: tokio::spawn({
            let shutdown = shutdown.clone();
            async move { debug_me.serve(debug_me_listener, shutdown).await }
        }),
        background: vec![
            tokio::spawn(admin::serve(
                admin_listener,
                hub.clone(),
                metrics.clone(),
                budgets.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(purge_idle_channels(hub, settings.channel_max_idle)),
            tokio::spawn(metrics_upkeep(metrics)),
        ],
        reloadable,
    };
    Ok(server)
}

/// The listener named `name` (one of [`systemd::LISTENER_NAMES`]): the socket systemd passed
/// under that name or listening on `address`, or else one bound to `address`.
async fn listen(
    inherited: &systemd::InheritedListeners,
    name: &str,
    address: SocketAddr,
) -> anyhow::Result<TcpListener> {
    match inherited.take(name, address) {
        Some(socket) => socket
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(socket))
            .with_context(|| format!("using the {name} socket systemd passed")),
        None => TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the {name} listener to {address}")),
    }
}

/// Opens the embedded store, which charges history to the disk budget, or joins the cluster
/// when one is configured. In a cluster a defaulted frame limit shrinks to what the NATS
/// servers carry.
async fn open_store(
    settings: &mut Settings,
    disk: Arc<DiskBudget>,
) -> anyhow::Result<Arc<dyn Store>> {
    let Some(cluster) = &settings.cluster else {
        let path = settings.data_dir.join("kanava.db");
        let store = SqliteStore::open_with_budget(&path, settings.history, Some(disk))
            .context("opening the store")?;
        return Ok(Arc::new(store));
    };
    kanava_cluster::describe_metrics();
    let store = kanava_cluster::ClusterStore::connect(kanava_cluster::ClusterConfig {
        servers: cluster.servers.clone(),
        credentials: cluster.credentials.clone(),
        node: cluster.node.clone(),
        replicas: cluster.replicas,
        shards: cluster.shards,
        history: settings.history,
        max_frame: settings.max_frame_given.then_some(settings.mles.max_frame),
        presence_heartbeat: cluster.presence_interval,
        debug_me_retention: settings.debug_me_retention,
        connect_timeout: Duration::from_secs(10),
        timeout: cluster.timeout,
    })
    .await
    .with_context(|| format!("joining the cluster at {}", cluster.servers.join(",")))?;
    if settings.mles.max_frame > store.max_frame() {
        tracing::info!(
            max_frame = store.max_frame(),
            "frames limited to what the NATS servers carry (their max_payload)"
        );
        settings.mles.max_frame = store.max_frame();
    }
    tracing::info!(node = %cluster.node, servers = %cluster.servers.join(","), "joined the cluster");
    Ok(Arc::new(store))
}

/// The browser chat's settings: its messages are the SSH chat's (at most `--ssh-max-message`,
/// and never beyond `--max-frame`), and its deadlines the Mles listener's.
fn web_config(settings: &Settings) -> kanava_web::WebConfig {
    kanava_web::WebConfig {
        max_text: settings.ssh.max_message_bytes.min(settings.mles.max_frame),
        handshake_timeout: settings.mles.handshake_timeout,
        ping_interval: settings.mles.ping_interval,
        ..kanava_web::WebConfig::default()
    }
}

/// The debug-me sessions on the Mles TLS listener, for kanava's own clients.
struct DebugMeRoute(DebugMeServer);

impl Endpoint for DebugMeRoute {
    fn serve(
        &self,
        connection: RoutedConnection,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let server = self.0.clone();
        let RoutedConnection { stream, read_ahead } = connection;
        Box::pin(async move {
            server
                .serve_upgraded(stream, read_ahead, peer, shutdown)
                .await;
        })
    }
}

/// Purges idle channels at start-up, then daily, while serving: the store runs a purge in steps
/// between other requests, so even a million idle channels delay neither the start nor anyone's
/// frames.
async fn purge_idle_channels(hub: Hub, max_idle: Duration) {
    let mut ticker = tokio::time::interval(PURGE_INTERVAL);
    loop {
        ticker.tick().await;
        purge_once(&hub, max_idle).await;
    }
}

async fn purge_once(hub: &Hub, max_idle: Duration) {
    match hub.purge_idle(max_idle).await {
        Ok(purged) if purged.is_empty() => {}
        Ok(purged) => tracing::info!(channels = purged.len(), "purged idle channels"),
        Err(error) => tracing::error!(%error, "purging idle channels failed"),
    }
}

async fn metrics_upkeep(metrics: PrometheusHandle) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticker.tick().await;
        metrics.run_upkeep();
    }
}

impl Server {
    /// Applies a new configuration (a reload): checks it whole, applies what can change while
    /// serving, and says what waits for a restart. On an error nothing changes.
    pub fn reload(&self, settings: Settings) -> anyhow::Result<ReloadReport> {
        self.reloadable.apply(settings)
    }

    /// Drains: stops accepting, closes every member with 1001, waits (bounded) for the
    /// connections to end, and makes sure everything stored is durable.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let kicked = self.hub.shutdown().await;
        let listeners = async {
            let _ = self.mles.await;
            let _ = self.ssh.await;
            let _ = self.debug_me.await;
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, listeners)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing anyway");
        }
        for task in self.background {
            task.abort();
        }
        kicked.context("flushing the store")?;
        self.store.sync().await.context("flushing the store")?;
        Ok(())
    }
}

/// File descriptors kept out of the connection budget: the store, its WAL, the listeners,
/// logs, certificates, the mailer's pipes.
const RESERVED_FDS: u64 = 256;

/// The process-wide connection budget: what the open-file limit leaves after the reserved
/// descriptors and the admin listener's own, halved: a connection may hold a second descriptor
/// (a debug-me user's session log), and the budget holds even if every one does.
/// An operator's `--max-connections` must fit in it.
pub fn connection_budget(open_file_limit: u64, given: Option<usize>) -> anyhow::Result<usize> {
    let fits = usize::try_from(
        open_file_limit.saturating_sub(RESERVED_FDS + admin::MAX_CONNECTIONS as u64) / 2,
    )
    .unwrap_or(usize::MAX);
    match given {
        Some(0) => bail!("--max-connections must be at least 1"),
        Some(given) if given > fits => bail!(
            "--max-connections {given} does not fit the open-file limit {open_file_limit}: at most {fits} connections fit (each may also hold a debug-me log file open, and {} descriptors are kept for the store, logs and the admin listener); raise the limit (ulimit -n, LimitNOFILE=) or lower --max-connections",
            RESERVED_FDS + admin::MAX_CONNECTIONS as u64
        ),
        Some(given) => Ok(given),
        None if fits == 0 => bail!(
            "the open-file limit {open_file_limit} leaves no room for connections; raise it (ulimit -n, LimitNOFILE=)"
        ),
        None => Ok(fits),
    }
}

/// The disk budget: `--max-disk` (default: what the data directory holds now plus half the
/// filesystem's free space) and the share of one source (default: an eighth of it).
fn disk_budget(settings: &Settings) -> anyhow::Result<DiskBudget> {
    let held = directory_size(&settings.data_dir);
    let max = match settings.max_disk {
        Some(max) => max,
        None => held + free_space(&settings.data_dir)? / 2,
    };
    if held > max {
        tracing::warn!(
            held,
            max,
            "the data directory already holds more than --max-disk: new history and debug-me logs are refused until space is freed"
        );
    }
    let share = settings.max_disk_per_source.unwrap_or(max / 8);
    Ok(DiskBudget::new(max, share, held))
}

/// Bytes in the files under `dir` (what is unreadable counts as nothing).
fn directory_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
fn free_space(dir: &std::path::Path) -> anyhow::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", dir.display()))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is ours to write.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the free space of {}", dir.display()));
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The soft open-file limit now.
pub fn open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Raises the soft open-file limit to the hard limit, so that many connections fit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_fits_the_open_file_limit() {
        assert_eq!(connection_budget(20_320, None).unwrap(), 10_000);
        assert_eq!(connection_budget(20_320, Some(500)).unwrap(), 500);
        let refused = connection_budget(20_320, Some(10_001)).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("at most 10000 connections fit"),
            "{refused}"
        );
        assert!(connection_budget(100, None).is_err());
        assert!(connection_budget(20_320, Some(0)).is_err());
    }
}
