//! The `kanava` command line: parses flags, environment and config file into settings, sets up
//! logging and metrics, and runs the chosen subcommand.

mod client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kanava::{AcmeSettings, ClusterSettings, Settings, TlsSource};
use kanava_core::{HistoryLimits, parse_duration, parse_size};
use kanava_hub::{QueueLimits, UserRates};
use kanava_mles::MlesConfig;
use serde::Deserialize;

/// kanava: a self-hosted server for secure, lightweight, real-time channels.
#[derive(Debug, Parser)]
#[command(version = kanava::LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Measure a running server from the outside with real client connections.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Manage SSH chat names (works while the server runs).
    Users(UsersArgs),
    /// Verify debug-me session logs: every signature, every chain pointer, and the GnuPG-signed
    /// developer keys (with the system's gpg, in a throwaway keyring). Exit 1 if any fails.
    Verify(VerifyArgs),
    /// Play back the user's terminal output of a debug-me log with the session's pauses (those
    /// of 1 s or more). When stdin is a terminal, Space skips a pause and Ctrl-C stops.
    Replay(ReplayArgs),
    /// Draw the hash chain of a debug-me log as Graphviz DOT (render it with `dot -Tsvg`).
    Graphviz(GraphvizArgs),
    /// Convert a debug-me log to another format.
    Export(ExportArgs),
    /// Share this terminal in a debug-me session: your shell (or --run CMD) runs as usual, and
    /// a developer you let in can type into it. Both sides keep a signed log.
    Share(client::ShareArgs),
    /// Connect to a debug-me session as a developer: see the user's terminal, and type into it
    /// once they accept your GnuPG-signed session key. Ctrl-] then a line chats.
    Connect(client::ConnectArgs),
    /// The control and chat window of a session started here with `kanava share` (or, with
    /// --developer, `kanava connect`): chat, answer who may type, /quit.
    Control(client::ControlArgs),
    /// Watch a debug-me session, read-only: the user's terminal as it goes (and a log of it).
    Watch(client::WatchArgs),
    /// Save a debug-me session's log, checking it as it comes. A live session is followed
    /// until it ends; a finished one is saved whole.
    Download(client::DownloadArgs),
    /// Back up a data directory into one file while the server runs: a snapshot of the store,
    /// the debug-me logs and the keys and certificates.
    Backup(BackupArgs),
    /// Restore a backup into a new data directory (start the server on it afterwards).
    Restore(RestoreArgs),
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print kanava's manual page (roff; read it with `kanava man | man -l -`), or write one
    /// page per command to a directory.
    Man {
        /// Write kanava.1, kanava-serve.1, … here instead of printing kanava.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// The server's data directory.
    #[arg(long, env = "KANAVA_DATA", default_value = "./kanava-data")]
    data: PathBuf,
    /// The backup file to write (a tar archive; replaced atomically).
    file: PathBuf,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The data directory to make (it must not exist, or be empty).
    #[arg(long, env = "KANAVA_DATA", default_value = "./kanava-data")]
    data: PathBuf,
    /// The backup file `kanava backup` wrote.
    file: PathBuf,
}

fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let summary = kanava::backup::backup(&args.data, &args.file)?;
    println!(
        "kanava: backed up {} ({} files, {} bytes) to {}",
        args.data.display(),
        summary.files,
        summary.bytes,
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let summary = kanava::backup::restore(&args.file, &args.data)?;
    println!(
        "kanava: restored {} files ({} bytes) from {} into {}",
        summary.files,
        summary.bytes,
        args.file.display(),
        args.data.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "kanava", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Prints the manual page, or writes every command's page to `dir`.
fn manual(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let command = Cli::command().name("kanava");
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing the pages to {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the page")?;
            write_output(None, &page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Print one JSON report per log, one per line.
    #[arg(long)]
    json: bool,
    /// The logs (debug-me's JSON log format, any flavour: user, developer, server, download).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
}

fn verify(args: VerifyArgs) -> ExitCode {
    let mut gpg = kanava_debugme_tools::gpg::SystemGpg;
    let mut failed = false;
    for log in &args.logs {
        let verdict = kanava_debugme_tools::report::verify_path(log, &mut gpg);
        failed |= verdict.outcome.is_err();
        if args.json {
            println!("{}", verdict.json());
        } else if verdict.outcome.is_ok() {
            print!("{}", verdict.text());
        } else {
            eprint!("kanava: {}", verdict.text());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Play this many times faster (0.5 is half speed).
    #[arg(long, default_value_t = 1.0, value_parser = positive_speed)]
    speed: f64,
    /// The log (any flavour).
    log: PathBuf,
}

fn positive_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err("expected a positive number".to_owned()),
    }
}

#[derive(Debug, Args)]
struct GraphvizArgs {
    /// Write the DOT text to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The log (any flavour; a server's log has its pointers recovered from the signatures).
    log: PathBuf,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Write an asciicast v2 recording (for `asciinema play`) of the user's terminal output.
    #[arg(long, value_name = "LOG", required = true)]
    asciicast: PathBuf,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The terminal width to record: debug-me logs have no terminal size.
    #[arg(long, default_value_t = kanava_debugme_tools::asciicast::DEFAULT_WIDTH, value_parser = clap::value_parser!(u16).range(1..))]
    width: u16,
    /// The terminal height to record: debug-me logs have no terminal size.
    #[arg(long, default_value_t = kanava_debugme_tools::asciicast::DEFAULT_HEIGHT, value_parser = clap::value_parser!(u16).range(1..))]
    height: u16,
}

/// Reads a log; a parse error names the file and the line (a read error names the file).
fn read_log(path: &Path) -> anyhow::Result<Vec<kanava_debugme_tools::log::Line>> {
    use kanava_debugme_tools::log::{LogError, read};
    read(path).map_err(|error| match error {
        LogError::Read { .. } => anyhow::Error::new(error),
        _ => anyhow::Error::new(error).context(path.display().to_string()),
    })
}

/// Writes `bytes` to `output`, or to stdout without one.
fn write_output(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .context("writing to stdout")
        }
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use kanava_debugme_tools::replay;
    let lines = read_log(&args.log)?;
    let schedule = replay::schedule(&lines, args.speed)?;
    match replay::play_to_stdout(&schedule).context("replaying")? {
        replay::Outcome::Finished => Ok(ExitCode::SUCCESS),
        replay::Outcome::Interrupted => Ok(ExitCode::from(130)),
    }
}

fn graphviz(args: GraphvizArgs) -> anyhow::Result<ExitCode> {
    let lines = read_log(&args.log)?;
    let dot = kanava_debugme_tools::graphviz::dot(&lines);
    write_output(args.output.as_deref(), dot.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    use kanava_debugme_tools::asciicast;
    let lines = read_log(&args.asciicast)?;
    let size = asciicast::Size {
        width: args.width,
        height: args.height,
    };
    let mut recording = Vec::new();
    asciicast::write(&lines, size, &mut recording)?;
    write_output(args.output.as_deref(), &recording)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct UsersArgs {
    /// The server's data directory.
    #[arg(
        long,
        env = "KANAVA_DATA",
        default_value = "./kanava-data",
        global = true
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List bound names: one line per key: name, key fingerprint, when the key was added, when
    /// the name last logged in, and "pending" for a key added with `/key add` not yet used.
    List,
    /// Bind a free name to a public key (a `.pub` file or the key line itself).
    Reserve {
        /// The name.
        name: String,
        /// `~/.ssh/id_ed25519.pub`, or `ssh-ed25519 AAAA…`.
        key: String,
        /// Allow a key that already holds another name (as `serve --ssh-shared-keys`).
        #[arg(long)]
        shared_keys: bool,
    },
    /// Free a name, so that the next key to log in with it owns it.
    Release {
        /// The name.
        name: String,
    },
}

async fn users(args: UsersArgs) -> anyhow::Result<ExitCode> {
    use kanava_core::{Claim, KeySharing, Nick};
    use kanava_store::Store;
    let db = args.data.join("kanava.db");
    if !db.exists() {
        anyhow::bail!("no kanava store at {} (use --data DIR)", db.display());
    }
    let store = kanava_store::SqliteStore::open(&db, HistoryLimits::default())
        .context("opening the store")?;
    let nick = |name: &str| Nick::new(name).with_context(|| format!("{name:?}"));
    match args.command {
        UsersCommand::List => {
            for identity in store.identities().await? {
                let seen = kanava_ssh::line::utc_timestamp(identity.last_seen_ms);
                for key in &identity.keys {
                    let pending = if key.pending { "  pending" } else { "" };
                    println!(
                        "{:<16}  {}  added {}  last-seen {seen}{pending}",
                        identity.nick,
                        key.fingerprint,
                        kanava_ssh::line::utc_timestamp(key.added_ms)
                    );
                }
            }
        }
        UsersCommand::Reserve {
            name,
            key,
            shared_keys,
        } => {
            let line = match std::fs::read_to_string(&key) {
                Ok(text) => text,
                Err(_) if key.contains(' ') => key,
                Err(error) => return Err(error).with_context(|| format!("reading {key}")),
            };
            let key = kanava_ssh::identity_key(&line).context("not an OpenSSH public key")?;
            let fingerprint = key.fingerprint.clone();
            let sharing = if shared_keys {
                KeySharing::ManyNamesPerKey
            } else {
                KeySharing::OneNamePerKey
            };
            match store.claim_identity(nick(&name)?, key, sharing).await? {
                Claim::Bound => println!("{name} now belongs to {fingerprint}"),
                Claim::Yours => println!("{name} already belongs to {fingerprint}"),
                Claim::Confirmed => println!("{name} now belongs to {fingerprint} (was pending)"),
                Claim::Taken(other) => {
                    eprintln!("kanava: {name} belongs to another key ({other}); release it first");
                    return Ok(ExitCode::FAILURE);
                }
                Claim::KeyHoldsName(other) => {
                    eprintln!(
                        "kanava: {fingerprint} already holds the name {other} (see --shared-keys)"
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        UsersCommand::Release { name } => {
            if store.release_identity(nick(&name)?).await? {
                println!("{name} is free");
            } else {
                eprintln!("kanava: {name} is not bound");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    store.sync().await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Mles v2 over WSS: subscribers and publishers per channel; prints deliveries/s,
    /// latency percentiles, loss and duplicates.
    Mles(Box<kanava_bench::mles::MlesArgs>),
    /// SSH chat: sessions with a terminal in one room type messages in turn; prints the time
    /// to the last screen showing each, loss, and the server's memory per session.
    Ssh(Box<kanava_bench::ssh::SshArgs>),
    /// debug-me: a user sends signed Seen messages into a session that watchers follow;
    /// prints deliveries/s, latency percentiles from the user to each watcher, and loss.
    DebugMe(Box<kanava_bench::debugme::DebugMeArgs>),
    /// Attack a running server from many loopback hosts (127.0.0.2 and up) while a legitimate
    /// pair chats: prints the server's peak memory and open files, what the attackers were
    /// told, and the pair's relay latency and loss.
    Attack(Box<kanava_bench::attack::AttackArgs>),
    /// Store fairness: bulk writers from one address fill many channels with big frames while
    /// a pair from another address chats; prints the pair's relay latency percentiles.
    Fairness(Box<kanava_bench::fairness::FairnessArgs>),
}

async fn bench(command: BenchCommand) -> anyhow::Result<()> {
    kanava::raise_fd_limit().context("raising the open-file limit")?;
    match command {
        BenchCommand::Mles(args) => {
            let json = args.json;
            let report = kanava_bench::mles::run(*args).await?;
            print_report(json, report.to_json_line()?, &report);
        }
        BenchCommand::Ssh(args) => {
            let json = args.json;
            let report = kanava_bench::ssh::run(*args).await?;
            print_report(json, report.to_json_line()?, &report);
        }
        BenchCommand::Attack(args) => {
            let json = args.json;
            let report = kanava_bench::attack::run(*args).await?;
            print_report(json, report.to_json_line()?, &report);
        }
        BenchCommand::Fairness(args) => {
            let json = args.json;
            let report = kanava_bench::fairness::run(*args).await?;
            print_report(json, report.to_json_line()?, &report);
        }
        BenchCommand::DebugMe(args) => {
            let json = args.json;
            let report = kanava_bench::debugme::run(*args).await?;
            print_report(json, report.to_json_line()?, &report);
        }
    }
    Ok(())
}

/// Prints a benchmark's report: its JSON line with `--json`, else the text.
fn print_report(json: bool, json_line: String, report: &impl std::fmt::Display) {
    if json {
        println!("{json_line}");
    } else {
        println!("{report}");
    }
}

/// Flags of `kanava serve`. Each can also come from a `KANAVA_*` environment variable or the
/// config file (same name, kebab-case); a flag beats the environment, which beats the file.
#[derive(Debug, Clone, Args)]
struct ServeArgs {
    /// TOML config file with any of the settings below.
    #[arg(long, env = "KANAVA_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (flags, environment, config file, the files it names) and exit:
    /// 0 when it is valid, 1 with the setting or file at fault.
    #[arg(long)]
    check_config: bool,
    /// Data directory: the store and certificates. [default: ./kanava-data]
    #[arg(long, env = "KANAVA_DATA")]
    data: Option<PathBuf>,
    /// Address of the Mles WebSocket/TLS listener. [default: [::]:8443]
    #[arg(long, env = "KANAVA_MLES_LISTEN")]
    mles_listen: Option<SocketAddr>,
    /// Address of the admin listener (/healthz, /metrics). [default: 127.0.0.1:9090]
    #[arg(long, env = "KANAVA_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Most entries kept per channel (1..=1000000). [default: 200]
    #[arg(long, env = "KANAVA_HISTORY_LIMIT", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    history_limit: Option<u32>,
    /// Most payload bytes kept per channel. [default: 16777216]
    #[arg(long, env = "KANAVA_HISTORY_BYTES")]
    history_bytes: Option<u64>,
    /// Largest frame accepted; larger ones close their sender with 1009. [default: 16777216]
    #[arg(long, env = "KANAVA_MAX_FRAME")]
    max_frame: Option<usize>,
    /// Shared key for Mles auth tokens (also read from MLES_KEY, as the reference server does).
    #[arg(long, env = "KANAVA_MLES_KEY", hide_env_values = true)]
    mles_key: Option<String>,
    /// Delete channels idle this long with nobody in them (e.g. 30d, 12h). [default: 30d]
    #[arg(long, env = "KANAVA_CHANNEL_IDLE", value_parser = parse_duration)]
    channel_idle: Option<Duration>,
    /// Close connections that send no header within this time. [default: 10s]
    #[arg(long, env = "KANAVA_HEADER_TIMEOUT", value_parser = parse_duration)]
    header_timeout: Option<Duration>,
    /// Time allowed for the TLS handshake and HTTP upgrade. [default: 10s]
    #[arg(long, env = "KANAVA_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    handshake_timeout: Option<Duration>,
    /// Interval of keepalive pings (Mles pings and SSH keepalives); silent peers are closed
    /// after four. [default: 24s]
    #[arg(long, env = "KANAVA_PING_INTERVAL", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// Time a Mles message may take from its first byte to its last fragment; a slower one
    /// closes its sender with 1008. [default: 60s]
    #[arg(long, env = "KANAVA_MESSAGE_TIMEOUT", value_parser = parse_duration)]
    message_timeout: Option<Duration>,
    /// Most connections open at once over every listener; must fit the open-file limit.
    /// [default: (open-file limit - 320) / 2]
    #[arg(long, env = "KANAVA_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most payload bytes buffered at once over every connection: partial frames, queues,
    /// replays, debug-me sessions and downloads (e.g. 256MiB). [default: 256MiB]
    #[arg(long, env = "KANAVA_MAX_MEMORY", value_parser = parse_size_flag)]
    max_memory: Option<u64>,
    /// Most bytes the data directory may hold: channel history and debug-me logs (e.g. 20GiB).
    /// [default: what it holds at start-up plus half the filesystem's free space]
    #[arg(long, env = "KANAVA_MAX_DISK", value_parser = parse_size_flag)]
    max_disk: Option<u64>,
    /// Most of --max-disk that one IPv4 address or IPv6 /64 may take. [default: an eighth]
    #[arg(long, env = "KANAVA_MAX_DISK_PER_SOURCE", value_parser = parse_size_flag)]
    max_disk_per_source: Option<u64>,
    /// Most connections from one IPv4 address or IPv6 /64. [default: 32]
    #[arg(long, env = "KANAVA_MAX_CONNECTIONS_PER_SOURCE")]
    max_connections_per_source: Option<usize>,
    /// Most frames queued for one member before it is closed as too slow. [default: 4096]
    #[arg(long, env = "KANAVA_QUEUE_FRAMES")]
    queue_frames: Option<usize>,
    /// Most bytes queued for one member before it is closed as too slow. [default: 33554432]
    #[arg(long, env = "KANAVA_QUEUE_BYTES")]
    queue_bytes: Option<usize>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "KANAVA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, env = "KANAVA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Get certificates by ACME (TLS-ALPN-01) for this domain; repeatable.
    #[arg(
        long,
        env = "KANAVA_ACME_DOMAIN",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    acme_domain: Vec<String>,
    /// Contact email for the ACME account.
    #[arg(long, env = "KANAVA_ACME_EMAIL")]
    acme_email: Option<String>,
    /// ACME directory URL. [default: Let's Encrypt production]
    #[arg(long, env = "KANAVA_ACME_DIRECTORY")]
    acme_directory: Option<String>,
    /// Extra CA (PEM) to trust for the ACME directory's HTTPS, for a private CA.
    #[arg(long, env = "KANAVA_ACME_DIRECTORY_CA")]
    acme_directory_ca: Option<PathBuf>,
    /// Address of the SSH chat listener. [default: [::]:2222]
    #[arg(long, env = "KANAVA_SSH_LISTEN")]
    ssh_listen: Option<SocketAddr>,
    /// Address of the debug-me listener (plain ws://, as debug-me clients need).
    /// [default: [::]:8081]
    #[arg(long, env = "KANAVA_DEBUG_ME_LISTEN")]
    debug_me_listen: Option<SocketAddr>,
    /// Time a debug-me connection may stay silent (clients ping every 30 s), or leave what it
    /// is sent unread. [default: 120s]
    #[arg(long, env = "KANAVA_DEBUG_ME_IDLE", value_parser = parse_duration)]
    debug_me_idle: Option<Duration>,
    /// How long a finished debug-me session stays downloadable before its log is deleted.
    /// [default: 30d]
    #[arg(long, env = "KANAVA_DEBUG_ME_RETENTION", value_parser = parse_duration)]
    debug_me_retention: Option<Duration>,
    /// Most debug-me connections from one IPv4 address or IPv6 /64. [default: 16]
    #[arg(long, env = "KANAVA_DEBUG_ME_MAX_CONNECTIONS_PER_SOURCE")]
    debug_me_max_connections_per_source: Option<usize>,
    /// Time a new debug-me connection has to send its request head and protocol version.
    /// [default: 10s]
    #[arg(long, env = "KANAVA_DEBUG_ME_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    debug_me_handshake_timeout: Option<Duration>,
    /// Largest log of one debug-me session; past it the session ends with an error saying why.
    /// [default: 64MiB]
    #[arg(long, env = "KANAVA_DEBUG_ME_MAX_LOG", value_parser = parse_size_flag)]
    debug_me_max_log: Option<u64>,
    /// New debug-me sessions one IPv4 address or IPv6 /64 may open a minute, after a burst of
    /// 5. [default: 10]
    #[arg(long, env = "KANAVA_DEBUG_ME_SESSIONS_PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..))]
    debug_me_sessions_per_minute: Option<u32>,
    /// Mail each finished debug-me session's log to its user (when they gave an address), from
    /// this address. Unset: no mail.
    #[arg(long, visible_alias = "from-email", env = "KANAVA_DEBUG_ME_FROM_EMAIL", value_parser = parse_mail_address)]
    debug_me_from_email: Option<String>,
    /// The sendmail program that mails debug-me logs. [default: /usr/sbin/sendmail]
    #[arg(long, env = "KANAVA_SENDMAIL")]
    sendmail: Option<PathBuf>,
    /// Time an SSH client has to authenticate. [default: 20s]
    #[arg(long, env = "KANAVA_SSH_AUTH_TIMEOUT", value_parser = parse_duration)]
    ssh_auth_timeout: Option<Duration>,
    /// Most SSH connections from one IPv4 address or IPv6 /64. [default: 16]
    #[arg(long, env = "KANAVA_SSH_MAX_CONNECTIONS_PER_SOURCE")]
    ssh_max_connections_per_source: Option<usize>,
    /// Longest chat message over SSH, in bytes. [default: 4096]
    #[arg(long, env = "KANAVA_SSH_MAX_MESSAGE")]
    ssh_max_message: Option<usize>,
    /// Events of a room shown on entering it over SSH. [default: 100]
    #[arg(long, env = "KANAVA_SSH_BACKLOG")]
    ssh_backlog: Option<usize>,
    /// Operators' public keys, in authorized_keys format; read at each use.
    #[arg(long, env = "KANAVA_SSH_OPS")]
    ssh_ops: Option<PathBuf>,
    /// A message of the day for the SSH chat, shown on entering it (read at each login; at most
    /// 8 KiB, control characters shown as placeholders).
    #[arg(long, env = "KANAVA_MOTD")]
    motd: Option<PathBuf>,
    /// Bytes per second an SSH connection may send on average (64 seconds' worth at once);
    /// beyond that it is disconnected. [default: 262144]
    #[arg(long, env = "KANAVA_SSH_INPUT_RATE")]
    ssh_input_rate: Option<u64>,
    /// Most chat sessions (session channels) open at once on one SSH connection. [default: 4]
    #[arg(long, env = "KANAVA_SSH_MAX_SESSIONS")]
    ssh_max_sessions: Option<usize>,
    /// Most chat sessions open at once for one SSH user over all their connections.
    /// [default: 16]
    #[arg(long, env = "KANAVA_SSH_MAX_SESSIONS_PER_USER")]
    ssh_max_sessions_per_user: Option<usize>,
    /// Rooms one SSH user may create in an hour (all of them at once, at most). [default: 30]
    #[arg(long, env = "KANAVA_SSH_ROOMS_PER_HOUR")]
    ssh_rooms_per_hour: Option<u32>,
    /// Announcements (away, back, topic) one SSH user may make a minute, after a burst of at
    /// least three. [default: 1]
    #[arg(long, env = "KANAVA_SSH_ANNOUNCEMENTS_PER_MINUTE")]
    ssh_announcements_per_minute: Option<u32>,
    /// New SSH names (first logins) one source (IPv4 address or IPv6 /64) may bind per hour,
    /// after a burst; 0 for no limit. Logins under a name the key holds are never limited.
    /// [default: 60]
    #[arg(long, env = "KANAVA_SSH_BINDINGS_PER_HOUR")]
    ssh_bindings_per_hour: Option<u32>,
    /// New SSH names one source may bind at once (a classroom behind one NAT). [default: 30]
    #[arg(long, env = "KANAVA_SSH_BINDINGS_BURST")]
    ssh_bindings_burst: Option<u32>,
    /// Free SSH names not logged in for this long (e.g. 180d). [default: never]
    #[arg(long, env = "KANAVA_SSH_NAME_EXPIRY", value_parser = parse_duration)]
    ssh_name_expiry: Option<Duration>,
    /// Shortest time between two redraws of a full-screen chat caused by other people's
    /// traffic; the user's own keys are drawn at once. [default: 75ms]
    #[arg(long, env = "KANAVA_SSH_FRAME_INTERVAL", value_parser = parse_duration)]
    ssh_frame_interval: Option<Duration>,
    /// Let one SSH key hold several names (by default a key's second name is refused).
    #[arg(long, env = "KANAVA_SSH_SHARED_KEYS")]
    ssh_shared_keys: bool,
    /// Serve neither the browser chat's pages nor its WebSocket (`/kanava`) on the Mles
    /// listener: a plain GET gets 426, as with Mles alone.
    #[arg(long, env = "KANAVA_NO_WEB")]
    no_web: bool,
    /// Log format: text or json. [default: text]
    #[arg(long, env = "KANAVA_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Run as one node of a cluster sharing history, names and presence through these NATS
    /// JetStream servers (nats://host:port, comma-separated). Unset: the embedded SQLite store.
    #[arg(long, env = "KANAVA_CLUSTER", value_delimiter = ',')]
    cluster: Vec<String>,
    /// NATS credentials: a .creds file, an nkey seed, `user:password`, or a token.
    #[arg(long, env = "KANAVA_CLUSTER_CREDENTIALS")]
    cluster_credentials: Option<PathBuf>,
    /// Replicas of the cluster's streams and buckets (at most the number of JetStream
    /// servers). [default: 3]
    #[arg(long, env = "KANAVA_CLUSTER_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
    cluster_replicas: Option<u8>,
    /// How many JetStream streams the cluster spreads its channels over (by a hash of the
    /// channel's name), so that several stream leaders share the writes. Fixed when the
    /// cluster is created: every node must give the same, and a node giving another count
    /// refuses to start. [default: 1]
    #[arg(long, env = "KANAVA_CLUSTER_SHARDS", value_parser = clap::value_parser!(u32).range(1..=64))]
    cluster_shards: Option<u32>,
    /// This node's name, unique in the cluster. [default: the host name and a random suffix]
    #[arg(long, env = "KANAVA_NODE_NAME", value_parser = parse_node_name)]
    node_name: Option<String>,
    /// How often a node refreshes its presence announcements, which expire after three
    /// intervals; a node that dies stops counting its members within about a second whatever
    /// this is (nodes beat every 250 ms and probe a holder before refusing). [default: 5s]
    #[arg(long, env = "KANAVA_PRESENCE_INTERVAL", value_parser = parse_duration)]
    presence_interval: Option<Duration>,
    /// How long a frame may wait for the cluster to store it, and a join for the channel's
    /// history (a leader election, a lagging replica), before the member is closed with 1013
    /// (try again later); a frame not confirmed by then may still be stored, none its sender
    /// sent after it will be. At most 60s. [default: 10s]
    #[arg(long, env = "KANAVA_CLUSTER_TIMEOUT", value_parser = parse_duration)]
    cluster_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum LogFormat {
    Text,
    Json,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    mles_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    history_limit: Option<u32>,
    history_bytes: Option<u64>,
    max_frame: Option<usize>,
    mles_key: Option<String>,
    #[serde(default, deserialize_with = "duration_from_text")]
    channel_idle: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    ping_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    message_timeout: Option<Duration>,
    max_connections: Option<usize>,
    #[serde(default, deserialize_with = "size_from_text")]
    max_memory: Option<u64>,
    #[serde(default, deserialize_with = "size_from_text")]
    max_disk: Option<u64>,
    #[serde(default, deserialize_with = "size_from_text")]
    max_disk_per_source: Option<u64>,
    max_connections_per_source: Option<usize>,
    queue_frames: Option<usize>,
    queue_bytes: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    acme_domain: Vec<String>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    acme_directory_ca: Option<PathBuf>,
    ssh_listen: Option<SocketAddr>,
    debug_me_listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "duration_from_text")]
    debug_me_idle: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    debug_me_retention: Option<Duration>,
    debug_me_max_connections_per_source: Option<usize>,
    #[serde(default, deserialize_with = "duration_from_text")]
    debug_me_handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size_from_text")]
    debug_me_max_log: Option<u64>,
    debug_me_sessions_per_minute: Option<u32>,
    debug_me_from_email: Option<String>,
    sendmail: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration_from_text")]
    ssh_auth_timeout: Option<Duration>,
    ssh_max_connections_per_source: Option<usize>,
    ssh_max_message: Option<usize>,
    ssh_backlog: Option<usize>,
    ssh_ops: Option<PathBuf>,
    motd: Option<PathBuf>,
    ssh_shared_keys: Option<bool>,
    no_web: Option<bool>,
    ssh_input_rate: Option<u64>,
    ssh_max_sessions: Option<usize>,
    ssh_max_sessions_per_user: Option<usize>,
    ssh_rooms_per_hour: Option<u32>,
    ssh_announcements_per_minute: Option<u32>,
    ssh_bindings_per_hour: Option<u32>,
    ssh_bindings_burst: Option<u32>,
    #[serde(default, deserialize_with = "duration_from_text")]
    ssh_name_expiry: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    ssh_frame_interval: Option<Duration>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    cluster: Vec<String>,
    cluster_credentials: Option<PathBuf>,
    cluster_replicas: Option<u8>,
    cluster_shards: Option<u32>,
    node_name: Option<String>,
    #[serde(default, deserialize_with = "duration_from_text")]
    presence_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration_from_text")]
    cluster_timeout: Option<Duration>,
}

/// A node name: 1 to 64 letters, digits, `-` or `_`, so that it fits in NATS keys and headers.
fn parse_node_name(text: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: a node name is 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// The default node name: the host name (cut to what a node name allows) and a random suffix,
/// so that two nodes on one host, or a node restarted within the presence expiry, never
/// share a name.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).unwrap_or_default();
    let suffix = base16ct::lower::encode_string(&suffix);
    if host.is_empty() {
        format!("kanava-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// A `From:` address for mailed logs: a plain `local@domain`.
fn parse_mail_address(text: &str) -> Result<String, String> {
    if kanava_debugme_server::mail::valid_address(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a plain mail address (local@domain)"
        ))
    }
}

fn duration_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// A size in a config file: a number of bytes, or text with a unit such as `"64MiB"`.
fn size_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(bytes)) => Ok(Some(bytes)),
        Some(Size::Text(text)) => parse_size(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A size on the command line (clap wants a `String` error).
fn parse_size_flag(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|error| error.to_string())
}

/// The default of `--max-memory`.
const DEFAULT_MAX_MEMORY: u64 = 256 << 20;

const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl ServeArgs {
    /// Merges flags and environment over the config file over the defaults.
    fn settings(self) -> anyhow::Result<(Settings, LogFormat)> {
        let file = match &self.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let cluster = cluster_settings(
            if self.cluster.is_empty() {
                file.cluster
            } else {
                self.cluster
            },
            self.cluster_credentials.or(file.cluster_credentials),
            self.cluster_replicas.or(file.cluster_replicas),
            self.cluster_shards.or(file.cluster_shards),
            self.node_name.or(file.node_name),
            self.presence_interval.or(file.presence_interval),
            self.cluster_timeout.or(file.cluster_timeout),
        )?;
        let max_frame_given = self.max_frame.is_some() || file.max_frame.is_some();
        let mles_key = self
            .mles_key
            .or(file.mles_key)
            .or_else(|| std::env::var("MLES_KEY").ok())
            .filter(|k| !k.is_empty());
        let tls_cert = self.tls_cert.or(file.tls_cert);
        let tls_key = self.tls_key.or(file.tls_key);
        let acme_domain = if self.acme_domain.is_empty() {
            file.acme_domain
        } else {
            self.acme_domain
        };
        let tls = match (tls_cert, tls_key, acme_domain.is_empty()) {
            (Some(cert), Some(key), true) => TlsSource::Files { cert, key },
            (None, None, false) => TlsSource::Acme(AcmeSettings {
                domains: acme_domain,
                email: self.acme_email.or(file.acme_email),
                directory: self
                    .acme_directory
                    .or(file.acme_directory)
                    .unwrap_or_else(|| LETS_ENCRYPT.to_owned()),
                directory_ca: self.acme_directory_ca.or(file.acme_directory_ca),
            }),
            (None, None, true) => TlsSource::SelfSigned,
            (Some(_), Some(_), false) => {
                anyhow::bail!("use either --tls-cert/--tls-key or --acme-domain, not both")
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let defaults = MlesConfig::default();
        let history = HistoryLimits::default();
        let queue = QueueLimits::default();
        let ssh_defaults = kanava_ssh::SshConfig::default();
        let user_rates = UserRates::default();
        let ping_interval = self
            .ping_interval
            .or(file.ping_interval)
            .unwrap_or(defaults.ping_interval);
        let settings = Settings {
            data_dir: self
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("./kanava-data")),
            mles_listen: self
                .mles_listen
                .or(file.mles_listen)
                .unwrap_or_else(|| "[::]:8443".parse().expect("valid default")),
            admin_listen: self
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("valid default")),
            history: HistoryLimits {
                max_entries: self
                    .history_limit
                    .or(file.history_limit)
                    .map_or(history.max_entries, |n| n as usize),
                max_bytes: self
                    .history_bytes
                    .or(file.history_bytes)
                    .unwrap_or(history.max_bytes),
            },
            queue: QueueLimits {
                max_frames: self
                    .queue_frames
                    .or(file.queue_frames)
                    .unwrap_or(queue.max_frames),
                max_bytes: self
                    .queue_bytes
                    .or(file.queue_bytes)
                    .unwrap_or(queue.max_bytes),
            },
            channel_max_idle: self
                .channel_idle
                .or(file.channel_idle)
                .unwrap_or(Duration::from_secs(30 * 86_400)),
            user_rates: UserRates {
                rooms_per_hour: self
                    .ssh_rooms_per_hour
                    .or(file.ssh_rooms_per_hour)
                    .unwrap_or(user_rates.rooms_per_hour),
                announcements_per_minute: self
                    .ssh_announcements_per_minute
                    .or(file.ssh_announcements_per_minute)
                    .unwrap_or(user_rates.announcements_per_minute),
            },
            mles: MlesConfig {
                max_frame: self
                    .max_frame
                    .or(file.max_frame)
                    .unwrap_or(defaults.max_frame),
                handshake_timeout: self
                    .handshake_timeout
                    .or(file.handshake_timeout)
                    .unwrap_or(defaults.handshake_timeout),
                header_timeout: self
                    .header_timeout
                    .or(file.header_timeout)
                    .unwrap_or(defaults.header_timeout),
                ping_interval,
                message_timeout: self
                    .message_timeout
                    .or(file.message_timeout)
                    .unwrap_or(defaults.message_timeout),
                mles_key,
                max_connections_per_source: self
                    .max_connections_per_source
                    .or(file.max_connections_per_source)
                    .unwrap_or(defaults.max_connections_per_source),
            },
            tls,
            ssh_listen: self
                .ssh_listen
                .or(file.ssh_listen)
                .unwrap_or_else(|| "[::]:2222".parse().expect("valid default")),
            debug_me_listen: self
                .debug_me_listen
                .or(file.debug_me_listen)
                .unwrap_or_else(|| "[::]:8081".parse().expect("valid default")),
            debug_me_idle: self
                .debug_me_idle
                .or(file.debug_me_idle)
                .unwrap_or(Duration::from_secs(120)),
            debug_me_retention: self
                .debug_me_retention
                .or(file.debug_me_retention)
                .unwrap_or(Duration::from_secs(30 * 86_400)),
            debug_me_max_connections_per_source: self
                .debug_me_max_connections_per_source
                .or(file.debug_me_max_connections_per_source)
                .unwrap_or(16),
            debug_me_handshake_timeout: self
                .debug_me_handshake_timeout
                .or(file.debug_me_handshake_timeout)
                .unwrap_or(Duration::from_secs(10)),
            debug_me_max_log: self
                .debug_me_max_log
                .or(file.debug_me_max_log)
                .unwrap_or(64 << 20),
            debug_me_sessions_per_minute: self
                .debug_me_sessions_per_minute
                .or(file.debug_me_sessions_per_minute)
                .unwrap_or(10)
                .max(1),
            debug_me_mail: match self.debug_me_from_email.or(file.debug_me_from_email) {
                Some(from) => Some(kanava_debugme_server::MailSettings {
                    from: parse_mail_address(&from)
                        .map_err(|error| anyhow::anyhow!("debug-me-from-email: {error}"))?,
                    sendmail: self
                        .sendmail
                        .or(file.sendmail)
                        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sendmail")),
                }),
                None => None,
            },
            ssh: kanava_ssh::SshConfig {
                auth_timeout: self
                    .ssh_auth_timeout
                    .or(file.ssh_auth_timeout)
                    .unwrap_or(ssh_defaults.auth_timeout),
                max_connections_per_source: self
                    .ssh_max_connections_per_source
                    .or(file.ssh_max_connections_per_source)
                    .unwrap_or(ssh_defaults.max_connections_per_source),
                max_message_bytes: self
                    .ssh_max_message
                    .or(file.ssh_max_message)
                    .unwrap_or(ssh_defaults.max_message_bytes),
                backlog: self
                    .ssh_backlog
                    .or(file.ssh_backlog)
                    .unwrap_or(ssh_defaults.backlog),
                ops_file: self.ssh_ops.or(file.ssh_ops),
                motd_file: self.motd.or(file.motd),
                input_bytes_per_second: self
                    .ssh_input_rate
                    .or(file.ssh_input_rate)
                    .unwrap_or(ssh_defaults.input_bytes_per_second),
                keepalive_interval: ping_interval,
                max_sessions_per_connection: self
                    .ssh_max_sessions
                    .or(file.ssh_max_sessions)
                    .unwrap_or(ssh_defaults.max_sessions_per_connection),
                max_sessions_per_user: self
                    .ssh_max_sessions_per_user
                    .or(file.ssh_max_sessions_per_user)
                    .unwrap_or(ssh_defaults.max_sessions_per_user),
                bindings_per_hour: self
                    .ssh_bindings_per_hour
                    .or(file.ssh_bindings_per_hour)
                    .unwrap_or(ssh_defaults.bindings_per_hour),
                bindings_burst: self
                    .ssh_bindings_burst
                    .or(file.ssh_bindings_burst)
                    .unwrap_or(ssh_defaults.bindings_burst),
                name_expiry: self.ssh_name_expiry.or(file.ssh_name_expiry),
                frame_interval: self
                    .ssh_frame_interval
                    .or(file.ssh_frame_interval)
                    .unwrap_or(ssh_defaults.frame_interval),
                key_sharing: if self.ssh_shared_keys || file.ssh_shared_keys == Some(true) {
                    kanava_core::KeySharing::ManyNamesPerKey
                } else {
                    kanava_core::KeySharing::OneNamePerKey
                },
                ..ssh_defaults
            },
            cluster,
            web: !(self.no_web || file.no_web == Some(true)),
            max_connections: self.max_connections.or(file.max_connections),
            max_memory: usize::try_from(
                self.max_memory
                    .or(file.max_memory)
                    .unwrap_or(DEFAULT_MAX_MEMORY),
            )
            .unwrap_or(usize::MAX),
            max_disk: self.max_disk.or(file.max_disk),
            max_disk_per_source: self.max_disk_per_source.or(file.max_disk_per_source),
            max_frame_given,
        };
        let log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text);
        Ok((settings, log_format))
    }
}

/// The cluster settings, when `--cluster` names servers.
fn cluster_settings(
    servers: Vec<String>,
    credentials: Option<PathBuf>,
    replicas: Option<u8>,
    shards: Option<u32>,
    node: Option<String>,
    presence_interval: Option<Duration>,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<ClusterSettings>> {
    if servers.is_empty() {
        return Ok(None);
    }
    let shards = shards.unwrap_or(1);
    if !(1..=kanava_cluster::wire::MAX_CHANNEL_SHARDS).contains(&shards) {
        anyhow::bail!(
            "cluster-shards: must be 1 to {}",
            kanava_cluster::wire::MAX_CHANNEL_SHARDS
        );
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        anyhow::bail!("cluster-timeout: must be more than 0 and at most 60s");
    }
    let node = match node {
        Some(name) => {
            parse_node_name(&name).map_err(|error| anyhow::anyhow!("node-name: {error}"))?
        }
        None => default_node_name(),
    };
    Ok(Some(ClusterSettings {
        servers,
        credentials,
        replicas: replicas.map_or(3, usize::from),
        shards,
        node,
        presence_interval: presence_interval.unwrap_or(Duration::from_secs(5)),
        timeout,
    }))
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))
}

fn init_logging(format: LogFormat) {
    // russh logs a line (with peer-chosen text) for every unknown channel request or terminal
    // mode a client sends, so that a client could fill the log: only its errors are shown.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(
    args: ServeArgs,
    inherited: kanava::systemd::InheritedListeners,
) -> anyhow::Result<()> {
    let check_only = args.check_config;
    let config_file = args.config.clone();
    let reload_args = args.clone();
    let (settings, log_format) = args.settings()?;
    if check_only {
        for line in settings.check()? {
            println!("  {line}");
        }
        match config_file {
            Some(file) => println!("kanava: the configuration is valid ({})", file.display()),
            None => println!("kanava: the configuration is valid (flags and environment only)"),
        }
        return Ok(());
    }
    init_logging(log_format);
    let fd_limit = kanava::raise_fd_limit().context("raising the open-file limit")?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let data_dir = settings.data_dir.clone();
    let cluster = settings.cluster.clone();
    let web = settings.web;
    let server = kanava::start(settings, metrics, inherited).await?;
    println!("kanava {} serving", env!("CARGO_PKG_VERSION"));
    println!(
        "  mles   wss://{}/  ({})",
        server.mles_addr, server.tls_summary
    );
    let (host_fingerprint, generated) = &server.ssh_host_key;
    println!(
        "  ssh    ssh -p {} NAME@HOST  (host key {host_fingerprint}{})",
        server.ssh_addr.port(),
        if *generated { ", generated now" } else { "" }
    );
    println!(
        "  debug-me  debug-me --use-server http://{}/  (plain ws://; also wss://{}{}; logs in {})",
        server.debug_me_addr,
        server.mles_addr,
        kanava::DEBUG_ME_PATH,
        data_dir.join("debug-me").display()
    );
    if web {
        println!(
            "  watch  https://{}{}/SESSION  (any debug-me session, live or finished, verified in the browser)",
            server.mles_addr,
            kanava::DEBUG_ME_PATH
        );
    }
    println!(
        "  admin  http://{}/healthz  http://{}/metrics",
        server.admin_addr, server.admin_addr
    );
    println!(
        "  data   {}  (open-file limit {fd_limit})",
        data_dir.display()
    );
    println!(
        "  limits {} connections over all listeners, {} MiB of buffered payload, {} MiB of disk ({} MiB per source, {} MiB in use)",
        server.budgets.connections.max(),
        server.budgets.memory.max() >> 20,
        server.budgets.disk.max() >> 20,
        server.budgets.disk.share() >> 20,
        server.budgets.disk.used() >> 20
    );
    if let Some(cluster) = cluster {
        println!(
            "  cluster  node {} on {}",
            cluster.node,
            cluster.servers.join(",")
        );
    }
    println!("ready");
    notify_systemd("READY=1");
    let watchdog = kanava::systemd::watchdog_interval().map(|interval| {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                notify_systemd("WATCHDOG=1");
            }
        })
    });
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let stop = shutdown_signal()?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut stop => break result?,
            _ = hangup.recv() => reload(&server, &reload_args),
        }
    }
    notify_systemd("STOPPING=1");
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("shutting down");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd `state` when it runs kanava as a `Type=notify` service; a failure to tell it
/// is logged, not fatal (systemd then times the start out by itself).
fn notify_systemd(state: &str) {
    if let Err(error) = kanava::systemd::notify(state) {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

/// Re-reads the configuration (the config file again; flags and environment as given at
/// start) and applies it to the running server, telling systemd it is reloading meanwhile. A
/// configuration that does not check out is refused and logged; the running one stays.
fn reload(server: &kanava::Server, args: &ServeArgs) {
    notify_systemd(&kanava::systemd::reloading());
    match args
        .clone()
        .settings()
        .and_then(|(settings, _)| server.reload(settings))
    {
        Ok(report) => {
            for applied in &report.applied {
                tracing::info!("reload applied: {applied}");
            }
            if report.needs_restart.is_empty() {
                tracing::info!("configuration reloaded");
            } else {
                tracing::warn!(
                    "configuration reloaded; these settings change only at the next start: {}",
                    report.needs_restart.join(", ")
                );
            }
        }
        Err(error) => {
            tracing::error!("reload refused, the running configuration is kept: {error:#}");
        }
    }
    notify_systemd("READY=1");
}

/// Resolves on SIGTERM or Ctrl-C (the handlers are installed at once).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The sockets of a socket-activated start are taken before the runtime's threads exist.
    let inherited = match &cli.command {
        // SAFETY: no other thread runs yet.
        Command::Serve(_) => match unsafe { kanava::systemd::take_listeners() } {
            Ok(inherited) => inherited,
            Err(error) => {
                eprintln!("kanava: {error}");
                return ExitCode::FAILURE;
            }
        },
        _ => kanava::systemd::InheritedListeners::default(),
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("kanava-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kanava: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args, inherited).await.map(|()| ExitCode::SUCCESS),
            Command::Bench(command) => bench(command).await.map(|()| ExitCode::SUCCESS),
            Command::Users(args) => users(args).await,
            Command::Verify(args) => Ok(tokio::task::block_in_place(|| verify(args))),
            Command::Replay(args) => tokio::task::block_in_place(|| replay(args)),
            Command::Share(args) => client::share_terminal(args).await,
            Command::Connect(args) => client::connect_developer(args).await,
            Command::Control(args) => client::control_window(args).await,
            Command::Watch(args) => client::watch(args).await,
            Command::Download(args) => client::download(args).await,
            Command::Graphviz(args) => tokio::task::block_in_place(|| graphviz(args)),
            Command::Export(args) => tokio::task::block_in_place(|| export(args)),
            Command::Backup(args) => tokio::task::block_in_place(|| backup(args)),
            Command::Restore(args) => tokio::task::block_in_place(|| restore(args)),
            Command::Completions { shell } => Ok(completions(shell)),
            Command::Man { dir } => manual(dir),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kanava: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented-out settings of the packaged config file, uncommented: `# name = value`
    /// lines whose name is a setting's.
    fn uncommented_settings(example: &str) -> Vec<(&str, &str)> {
        example
            .lines()
            .filter_map(|line| line.strip_prefix("# ")?.split_once(" = "))
            .filter(|(name, _)| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .collect()
    }

    #[test]
    fn the_packaged_config_lists_every_setting_and_each_parses() {
        use clap::CommandFactory;
        let example = include_str!("../../debian/kanava.toml");
        let settings = uncommented_settings(example);
        let listed: Vec<&str> = settings.iter().map(|(name, _)| *name).collect();
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let flags: Vec<&str> = serve
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .filter(|long| !["config", "check-config", "help"].contains(long))
            .collect();
        assert_eq!(
            listed, flags,
            "debian/kanava.toml lists the settings in flag order"
        );
        let text: String = settings
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
            .collect();
        toml::from_str::<FileConfig>(&text).unwrap_or_else(|e| panic!("{e}"));
        for line in example.lines() {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "a setting is on: {line}"
            );
        }
    }

    #[test]
    fn flags_beat_the_config_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kanava.toml");
        std::fs::write(
            &file,
            "history-limit = 7\nmax-frame = 1000\nping-interval = \"5s\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "kanava",
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--max-frame",
            "2000",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("parsed as serve")
        };
        let (settings, _) = args.settings().unwrap();
        assert_eq!(settings.history.max_entries, 7);
        assert_eq!(settings.mles.max_frame, 2000);
        assert_eq!(settings.mles.ping_interval, Duration::from_secs(5));
        assert_eq!(settings.mles.header_timeout, Duration::from_secs(10));
        assert_eq!(settings.tls, TlsSource::SelfSigned);
    }

    #[test]
    fn debug_me_limits_come_from_flags_the_config_file_or_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kanava.toml");
        std::fs::write(
            &file,
            "debug-me-max-log = \"8MiB\"\ndebug-me-handshake-timeout = \"3s\"\n",
        )
        .unwrap();
        let settings = |args: &[&str]| {
            let cli = Cli::parse_from(["kanava", "serve"].iter().chain(args));
            let Command::Serve(args) = cli.command else {
                panic!("parsed as serve")
            };
            args.settings().unwrap().0
        };
        let defaults = settings(&[]);
        assert_eq!(defaults.debug_me_max_log, 64 << 20);
        assert_eq!(defaults.debug_me_handshake_timeout, Duration::from_secs(10));
        assert_eq!(defaults.debug_me_sessions_per_minute, 10);
        let configured = settings(&[
            "--config",
            file.to_str().unwrap(),
            "--debug-me-sessions-per-minute",
            "3",
        ]);
        assert_eq!(configured.debug_me_max_log, 8 << 20);
        assert_eq!(
            configured.debug_me_handshake_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(configured.debug_me_sessions_per_minute, 3);
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kanava.toml");
        std::fs::write(&file, "histroy-limit = 7\n").unwrap();
        let error = read_config(&file).unwrap_err();
        assert!(format!("{error:#}").contains("histroy-limit"), "{error:#}");
    }
}
