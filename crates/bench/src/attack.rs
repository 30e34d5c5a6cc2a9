//! Attacks on a running server, to check that its limits hold: many hosts (the loopback
//! addresses 127.0.0.2, 127.0.0.3, …) each open connections up to a per-source count and do one
//! hostile thing with them, while a legitimate pair on 127.0.0.1 chats in a channel of its own.
//! The run reports the server's peak memory and open files, what the attackers were told, and
//! how the pair was served meanwhile: its relay latency and the frames it lost.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use kanava_debugme::frame::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::mles::connect::{MlesServerArgs, Target, Ws, tcp_from};
use crate::process;

/// How often the pair sends a probe frame and the server's usage is sampled.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How long the pair waits for a probe frame before counting it lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the fragments an unfinished message is sent in.
const FRAGMENT: usize = 64 * 1024;

/// Frame size used to fill a channel's history before the stalled joiners come.
const FILL_FRAME: usize = 1024 * 1024;

/// The hostile thing each attacking connection does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    /// Open TCP connections to --target, send --send, and hold them (a slow-loris on the
    /// debug-me or SSH port, or the Mles TLS port).
    Connections,
    /// Join a Mles channel and send a message of just under --size in fragments that never
    /// finish, answering pings.
    PartialFrames,
    /// Fill a Mles channel's history with --size bytes, then join it and never read (nor answer
    /// pings).
    StalledReplay,
    /// Download a finished debug-me session (--debug-me-url) and never read it.
    Downloads,
}

/// What attack to make, from how many hosts, and for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct AttackArgs {
    /// The attack.
    #[arg(value_enum)]
    pub kind: AttackKind,
    /// The server's Mles listener: the legitimate pair chats there, and the Mles attacks go
    /// there.
    #[command(flatten)]
    pub server: MlesServerArgs,
    /// The address the `connections` attack opens connections to (e.g. the debug-me listener).
    #[arg(long, value_name = "ADDR")]
    pub target: Option<SocketAddr>,
    /// What each `connections` connection sends first (e.g. `G`, a request head never finished).
    #[arg(long, default_value = "G")]
    pub send: String,
    /// A finished debug-me session to download, for `downloads`: the server's `ws://` URL and
    /// the session id, e.g. ws://127.0.0.1:8081/SESSION.
    #[arg(long, value_name = "URL")]
    pub debug_me_url: Option<String>,
    /// Number of attacking hosts: 127.0.0.2 and up.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub sources: usize,
    /// Connections each host opens.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub per_source: usize,
    /// Size of the unfinished message (`partial-frames`) or of the history (`stalled-replay`),
    /// e.g. 16MiB.
    #[arg(long, value_name = "B", default_value = "16MiB", value_parser = parse_size_flag)]
    pub size: u64,
    /// How long the attack lasts.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = kanava_core::parse_duration)]
    pub duration: Duration,
    /// The server's process id, to sample its memory and open files.
    #[arg(long, value_name = "PID")]
    pub server_pid: u32,
    /// Most connections being set up at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Print only one JSON line with the summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_size_flag(text: &str) -> Result<u64, String> {
    kanava_core::parse_size(text).map_err(|error| error.to_string())
}

/// Why a run could not be made; what happens to single connections is counted instead.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The arguments cannot make this attack.
    #[error("{0}")]
    InvalidArgs(String),
    /// The Mles URL or TLS settings are unusable.
    #[error("{0}")]
    Mles(#[from] crate::mles::BenchError),
    /// The debug-me URL is unusable.
    #[error("{0}")]
    DebugMe(#[from] crate::debugme::BenchError),
    /// The legitimate pair could not join before the attack.
    #[error("the legitimate pair could not join: {0}")]
    Pair(String),
    /// The server's memory or open files could not be read.
    #[error("cannot read process {pid}: {source}")]
    Process {
        /// The `--server-pid`.
        pid: u32,
        /// The error reading `/proc/PID`.
        source: io::Error,
    },
}

/// What the attackers saw.
#[derive(Debug, Default)]
struct Outcomes {
    opened: AtomicU64,
    refused: AtomicU64,
    closed_by_server: AtomicU64,
    held_to_the_end: AtomicU64,
    reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Outcomes {
    /// Counts what the server said; it is shown on the operator's terminal, so its control
    /// characters are made visible first.
    fn record_reason(&self, reason: String) {
        let reason = kanava_core::sanitize(reason.as_bytes());
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        *reasons.entry(reason).or_insert(0) += 1;
    }
}

/// A run's summary.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The attack made.
    pub kind: String,
    /// Attacking hosts and connections per host.
    pub sources: usize,
    /// Connections per host.
    pub per_source: usize,
    /// Seconds the attack lasted.
    pub duration_secs: f64,
    /// Attacking connections the server accepted (TCP, and for Mles the upgrade).
    pub opened: u64,
    /// Attacking connections refused at connect or upgrade.
    pub refused: u64,
    /// Attacking connections the server closed during the attack.
    pub closed_by_server: u64,
    /// Attacking connections still open when the attack ended.
    pub held_to_the_end: u64,
    /// What the server told the attackers (close reasons, HTTP status lines), with counts.
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// The server's largest resident set during the attack, MiB.
    pub peak_rss_mib: f64,
    /// The server's resident set when the attack ended, MiB.
    pub final_rss_mib: f64,
    /// The server's most open files during the attack.
    pub peak_fds: usize,
    /// Probe frames the pair sent.
    pub probes_sent: u64,
    /// Probe frames that did not arrive within 5 s.
    pub probes_lost: u64,
    /// Relay latency of the probes, ms: median, 99th percentile, maximum.
    pub probe_ms_p50: f64,
    /// 99th percentile.
    pub probe_ms_p99: f64,
    /// Maximum.
    pub probe_ms_max: f64,
}

impl Report {
    /// The summary as one JSON line.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "attack {} from {} hosts x {} connections for {:.0} s",
            self.kind, self.sources, self.per_source, self.duration_secs
        )?;
        writeln!(
            f,
            "  attackers: {} opened, {} refused, {} closed by the server, {} held to the end",
            self.opened, self.refused, self.closed_by_server, self.held_to_the_end
        )?;
        for (reason, count) in &self.reasons {
            writeln!(f, "    {count} x {reason}")?;
        }
        writeln!(
            f,
            "  server: peak RSS {:.1} MiB, RSS at the end {:.1} MiB, peak open files {}",
            self.peak_rss_mib, self.final_rss_mib, self.peak_fds
        )?;
        write!(
            f,
            "  legitimate pair: {} probes, {} lost, relay latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.probes_sent,
            self.probes_lost,
            self.probe_ms_p50,
            self.probe_ms_p99,
            self.probe_ms_max
        )
    }
}

/// The `i`th attacking host: 127.0.0.2 and up, over the whole 127/8.
fn source(i: usize) -> IpAddr {
    let n = u32::try_from(i + 2).unwrap_or(u32::MAX) & 0x00ff_ffff;
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
}

/// Runs the attack and reports.
pub async fn run(args: AttackArgs) -> Result<Report, AttackError> {
    validate(&args)?;
    let target = Arc::new(args.server.target().await?);
    let tag = format!("attack-{:08x}", rand::random::<u32>());
    if args.kind == AttackKind::StalledReplay {
        fill_history(&target, &tag, args.size).await?;
    }
    let pair = Pair::join(&target, &tag).await?;
    let outcomes = Arc::new(Outcomes::default());
    let started = Instant::now();
    let attack_until = started + args.duration;
    let attackers = launch(&args, &target, &tag, &outcomes, attack_until).await?;
    let watched = watch(args.server_pid, pair, attack_until).await?;
    let held = attackers
        .join_all()
        .await
        .into_iter()
        .filter(|&held| held)
        .count();
    outcomes
        .held_to_the_end
        .store(held as u64, Ordering::Relaxed);
    let final_rss_mib = rss_mib(args.server_pid)?;
    let reasons = std::mem::take(&mut *outcomes.reasons.lock().unwrap_or_else(|p| p.into_inner()));
    let ms = |q: f64| watched.latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        kind: format!("{:?}", args.kind),
        sources: args.sources,
        per_source: args.per_source,
        duration_secs: args.duration.as_secs_f64(),
        opened: outcomes.opened.load(Ordering::Relaxed),
        refused: outcomes.refused.load(Ordering::Relaxed),
        closed_by_server: outcomes.closed_by_server.load(Ordering::Relaxed),
        held_to_the_end: held as u64,
        reasons,
        peak_rss_mib: watched.peak_rss_mib,
        final_rss_mib,
        peak_fds: watched.peak_fds,
        probes_sent: watched.sent,
        probes_lost: watched.lost,
        probe_ms_p50: ms(0.5),
        probe_ms_p99: ms(0.99),
        probe_ms_max: watched.latency.max() as f64 / 1000.0,
    })
}

fn validate(args: &AttackArgs) -> Result<(), AttackError> {
    let invalid = |text: &str| Err(AttackError::InvalidArgs(text.to_owned()));
    if args.sources == 0 || args.per_source == 0 || args.connect_concurrency == 0 {
        return invalid("--sources, --per-source and --connect-concurrency must be at least 1");
    }
    if args.sources > 0x00ff_fff0 {
        return invalid("--sources: the loopback network has room for 16 million hosts at most");
    }
    match args.kind {
        AttackKind::Connections if args.target.is_none() => {
            invalid("the connections attack needs --target")
        }
        AttackKind::Downloads if args.debug_me_url.is_none() => {
            invalid("the downloads attack needs --debug-me-url")
        }
        AttackKind::PartialFrames if args.size < 2 => invalid("--size must be at least 2"),
        _ => Ok(()),
    }
}

/// Starts every attacking connection; each task says whether its connection was still open
/// when the attack ended.
async fn launch(
    args: &AttackArgs,
    target: &Arc<Target>,
    tag: &str,
    outcomes: &Arc<Outcomes>,
    until: Instant,
) -> Result<JoinSet<bool>, AttackError> {
    let permits = Arc::new(Semaphore::new(args.connect_concurrency));
    let downloads = match &args.debug_me_url {
        Some(url) if args.kind == AttackKind::Downloads => {
            let (server, session) = url.rsplit_once('/').unwrap_or((url, ""));
            let target = crate::debugme::connect::Target::new(&format!("{server}/")).await?;
            Some((Arc::new(target), session.to_owned()))
        }
        _ => None,
    };
    let mut tasks = JoinSet::new();
    for host in 0..args.sources {
        for n in 0..args.per_source {
            let from = source(host);
            let (permits, outcomes) = (Arc::clone(&permits), Arc::clone(outcomes));
            let uid = format!("{tag}-{host}-{n}");
            let until = tokio::time::Instant::from_std(until);
            match args.kind {
                AttackKind::Connections => {
                    let (addr, send) = (args.target.expect("validated"), args.send.clone());
                    tasks.spawn(async move {
                        let tcp = {
                            let _permit = permits.acquire().await;
                            tcp_from(Some(from), addr).await
                        };
                        hold_raw(tcp, send.into_bytes(), &outcomes, until).await
                    });
                }
                AttackKind::PartialFrames | AttackKind::StalledReplay => {
                    let (target, kind, size) = (Arc::clone(target), args.kind, args.size);
                    let channel = format!(
                        "{tag}-{}",
                        if kind == AttackKind::StalledReplay {
                            "history".to_owned()
                        } else {
                            uid.clone()
                        }
                    );
                    tasks.spawn(async move {
                        let ws = {
                            let _permit = permits.acquire().await;
                            target.with_source(from).connect(&uid, &channel).await
                        };
                        let ws = match ws {
                            Ok(ws) => ws,
                            Err(error) => {
                                outcomes.refused.fetch_add(1, Ordering::Relaxed);
                                outcomes.record_reason(format!("refused: {error}"));
                                return false;
                            }
                        };
                        outcomes.opened.fetch_add(1, Ordering::Relaxed);
                        if kind == AttackKind::PartialFrames {
                            never_finish(ws, size, &outcomes, until).await
                        } else {
                            never_read(ws, &outcomes, until).await
                        }
                    });
                }
                AttackKind::Downloads => {
                    let (debug_me, session) = downloads.clone().expect("validated");
                    tasks.spawn(async move {
                        let url = debug_me.session_url(&session);
                        let opened = {
                            let _permit = permits.acquire().await;
                            debug_me
                                .with_source(from)
                                .open(&session, Mode::Connect(url))
                                .await
                        };
                        match opened {
                            Ok((ws, _)) => {
                                outcomes.opened.fetch_add(1, Ordering::Relaxed);
                                never_read(ws, &outcomes, until).await
                            }
                            Err(error) => {
                                outcomes.refused.fetch_add(1, Ordering::Relaxed);
                                outcomes.record_reason(format!("refused: {error}"));
                                false
                            }
                        }
                    });
                }
            }
        }
    }
    Ok(tasks)
}

/// Sends `first` on a raw connection and holds it; the server's answer, if any, is recorded.
async fn hold_raw(
    tcp: io::Result<tokio::net::TcpStream>,
    first: Vec<u8>,
    outcomes: &Outcomes,
    until: tokio::time::Instant,
) -> bool {
    let mut tcp = match tcp {
        Ok(tcp) => tcp,
        Err(error) => {
            outcomes.refused.fetch_add(1, Ordering::Relaxed);
            outcomes.record_reason(format!("connect: {}", error.kind()));
            return false;
        }
    };
    outcomes.opened.fetch_add(1, Ordering::Relaxed);
    let _ = tcp.write_all(&first).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(until, tcp.read(&mut chunk)).await {
            Err(_) => return true,
            Ok(Ok(n)) if n > 0 && answer.len() < 4096 => answer.extend_from_slice(&chunk[..n]),
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                outcomes.closed_by_server.fetch_add(1, Ordering::Relaxed);
                let text = String::from_utf8_lossy(&answer);
                let first_line = text.lines().next().unwrap_or("(nothing)").to_owned();
                let body = text
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                outcomes.record_reason(format!("closed: {first_line} {body}").trim().to_owned());
                return false;
            }
        }
    }
}

/// Sends an unfinished binary message of just under `size` bytes in fragments, then keeps
/// reading (so pings are answered) until the server closes or the attack ends.
async fn never_finish(
    mut ws: Ws,
    size: u64,
    outcomes: &Outcomes,
    until: tokio::time::Instant,
) -> bool {
    let total = usize::try_from(size - 1).unwrap_or(usize::MAX);
    let mut sent = 0;
    let mut opcode = OpCode::Data(Data::Binary);
    let send_all = async {
        while sent < total {
            let len = FRAGMENT.min(total - sent);
            let header = FrameHeader {
                is_final: false,
                opcode,
                ..FrameHeader::default()
            };
            ws.send(Message::Frame(Frame::from_payload(
                header,
                vec![0x55; len].into(),
            )))
            .await?;
            opcode = OpCode::Data(Data::Continue);
            sent += len;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    };
    if let Ok(Err(error)) = tokio::time::timeout_at(until, send_all).await {
        outcomes.closed_by_server.fetch_add(1, Ordering::Relaxed);
        outcomes.record_reason(format!("send failed: {error}"));
        return false;
    }
    read_until_closed(&mut ws, outcomes, until).await
}

/// Holds a joined connection without reading until the attack ends, then finds out whether
/// the server had closed it (its close frame waits behind the unread replay).
async fn never_read<S>(mut ws: S, outcomes: &Outcomes, until: tokio::time::Instant) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::sleep_until(until).await;
    let moment = tokio::time::Instant::now() + Duration::from_secs(2);
    read_until_closed(&mut ws, outcomes, moment).await
}

/// Reads (answering pings) until the server closes, recording what it said, or until `until`;
/// whether the connection was still open then.
async fn read_until_closed<S>(ws: &mut S, outcomes: &Outcomes, until: tokio::time::Instant) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let reason = loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                break format!("close {}: {}", u16::from(frame.code), frame.reason);
            }
            Ok(Some(Ok(Message::Close(None)))) => break "close without a code".to_owned(),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => break format!("error: {error}"),
            Ok(None) => break "closed without a close frame".to_owned(),
        }
    };
    outcomes.closed_by_server.fetch_add(1, Ordering::Relaxed);
    outcomes.record_reason(reason);
    false
}

/// Stores `size` bytes of history in the stalled joiners' channel.
async fn fill_history(target: &Target, tag: &str, size: u64) -> Result<(), AttackError> {
    let channel = format!("{tag}-history");
    let mut filler = target
        .connect(&format!("{tag}-filler"), &channel)
        .await
        .map_err(|error| AttackError::Pair(error.to_string()))?;
    let frames = size.div_ceil(FILL_FRAME as u64);
    for _ in 0..frames {
        filler
            .send(Message::binary(vec![0xaa; FILL_FRAME]))
            .await
            .map_err(|error| AttackError::Pair(format!("filling the history: {error}")))?;
    }
    // A second member's join proves every frame before it was stored.
    let mut witness = target
        .connect(&format!("{tag}-witness"), &channel)
        .await
        .map_err(|error| AttackError::Pair(error.to_string()))?;
    let mut replayed = 0;
    while replayed < frames {
        match witness.next().await {
            Some(Ok(Message::Binary(_))) => replayed += 1,
            Some(Ok(_)) => {}
            other => {
                return Err(AttackError::Pair(format!(
                    "the history was not replayed: {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The legitimate pair: `alice` sends stamped probes, `bob` receives them.
struct Pair {
    alice: Ws,
    bob: Ws,
}

impl Pair {
    async fn join(target: &Target, tag: &str) -> Result<Self, AttackError> {
        let channel = format!("{tag}-pair");
        let pair_error =
            |error: crate::mles::connect::ConnectError| AttackError::Pair(error.to_string());
        let alice = target
            .connect(&format!("{tag}-alice"), &channel)
            .await
            .map_err(pair_error)?;
        let mut bob = target
            .connect(&format!("{tag}-bob"), &channel)
            .await
            .map_err(pair_error)?;
        // Bob's replay holds alice's join header: once it is here, both are members.
        match tokio::time::timeout(PROBE_TIMEOUT, bob.next()).await {
            Ok(Some(Ok(_))) => Ok(Self { alice, bob }),
            other => Err(AttackError::Pair(format!("no replay for bob: {other:?}"))),
        }
    }
}

/// What the watcher saw while the attack ran.
struct Watched {
    peak_rss_mib: f64,
    peak_fds: usize,
    sent: u64,
    lost: u64,
    latency: Histogram<u64>,
}

/// Sends a probe and samples the server every interval until `until`.
async fn watch(pid: u32, mut pair: Pair, until: Instant) -> Result<Watched, AttackError> {
    let mut watched = Watched {
        peak_rss_mib: 0.0,
        peak_fds: 0,
        sent: 0,
        lost: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    };
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    let mut probe = 0u64;
    while Instant::now() < until {
        ticker.tick().await;
        watched.peak_rss_mib = watched.peak_rss_mib.max(rss_mib(pid)?);
        watched.peak_fds = watched.peak_fds.max(open_fds(pid)?);
        probe += 1;
        let sent_at = Instant::now();
        watched.sent += 1;
        if pair
            .alice
            .send(Message::text(probe.to_string()))
            .await
            .is_err()
        {
            watched.lost += 1;
            continue;
        }
        if probe_arrived(&mut pair.bob, probe).await {
            let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
            watched.latency.saturating_record(micros.max(1));
        } else {
            watched.lost += 1;
        }
    }
    Ok(watched)
}

/// Whether probe `n` reaches bob within the probe timeout (older probes are skipped).
async fn probe_arrived(bob: &mut Ws, n: u64) -> bool {
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, bob.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.as_str() == n.to_string() => return true,
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
}

fn rss_mib(pid: u32) -> Result<f64, AttackError> {
    process::rss_kib(pid)
        .map(|kib| kib as f64 / 1024.0)
        .map_err(|source| AttackError::Process { pid, source })
}

fn open_fds(pid: u32) -> Result<usize, AttackError> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .map_err(|source| AttackError::Process { pid, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_numbered_from_127_0_0_2_across_the_loopback_network() {
        assert_eq!(source(0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(source(254), "127.0.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(source(70_000), "127.1.17.114".parse::<IpAddr>().unwrap());
    }
}
