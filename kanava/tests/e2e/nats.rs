//! A real NATS JetStream cluster for the cluster tests: three `nats-server` processes on
//! loopback, started as the stack spec (§4.9) starts them in CI, each with its own store
//! directory and its own client, route and monitor ports, killed by PID on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Debian's nats-server (2.9.10), which is not on a normal user's `PATH`.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// How long a fresh cluster may take until every node reports healthy.
const STARTUP: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 for a server that needs a fixed one.
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768 and up) where the
/// servers under test bind their port-0 listeners and where outgoing connections get theirs.
/// Each test process takes a slice of that range chosen by its PID, so that test binaries run
/// at the same time by different people rarely meet; within the process an atomic counter hands
/// out each port once (until the slice wraps), so tests running in parallel never share one.
/// Each port is checked by binding it. Another process can still take it before the server
/// binds it; [`NatsCluster`] retries on a clash.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SLICE: u32 = 400;
    const SLICES: u32 = 30;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = LOW + (std::process::id() % SLICES) * SLICE;
    for _ in 0..SLICE {
        let port = u16::try_from(base + NEXT.fetch_add(1, Ordering::Relaxed) % SLICE).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{base}..{}", base + SLICE);
}

/// One `nats-server` process of a [`NatsCluster`].
struct Node {
    name: String,
    child: Option<Child>,
    client: u16,
    route: u16,
    monitor: u16,
    log: PathBuf,
}

impl Node {
    /// The last `n` lines of the node's log.
    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL to this PID, then reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Real `nats-server` processes on loopback: a 3-node JetStream cluster, or one plain node.
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// Why a start attempt failed.
enum Failure {
    /// A port was taken before the server bound it: worth another try with other ports.
    PortClash,
    Other(String),
}

impl NatsCluster {
    /// Three JetStream nodes forming one cluster, returned once every node's `/healthz` is 200
    /// (which 2.9.10 answers only once JetStream has a meta leader).
    pub async fn start() -> NatsCluster {
        Self::launch(3, true).await
    }

    /// A single node without JetStream (`-js` left out).
    pub async fn without_jetstream() -> NatsCluster {
        Self::launch(1, false).await
    }

    async fn launch(size: usize, jetstream: bool) -> NatsCluster {
        assert!(
            Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is missing: the cluster tests need a real NATS server \
             (Debian package nats-server, 2.9.10)"
        );
        let mut last = String::new();
        for _ in 0..3 {
            let mut cluster = Self::spawn(size, jetstream);
            match cluster.wait_healthy().await {
                Ok(()) => return cluster,
                Err(Failure::PortClash) => {
                    last = cluster.logs();
                    continue; // dropped: killed; try again on other ports
                }
                Err(Failure::Other(why)) => panic!("{why}\n{}", cluster.logs()),
            }
        }
        panic!("nats-server could not bind its ports in 3 tries\n{last}");
    }

    fn spawn(size: usize, jetstream: bool) -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=size)
            .map(|i| Node {
                name: format!("kanava-n{i}"),
                child: None,
                client: free_port(),
                route: free_port(),
                monitor: free_port(),
                log: dir.path().join(format!("n{i}.log")),
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        let routes = routes.join(",");
        for (i, node) in nodes.iter_mut().enumerate() {
            let log = std::fs::File::create(&node.log).unwrap();
            let mut command = Command::new(NATS_SERVER);
            command
                .args(["-n", &node.name, "-a", "127.0.0.1"])
                .args(["-p", &node.client.to_string()])
                .args(["-m", &node.monitor.to_string()]);
            if jetstream {
                command
                    .arg("-js")
                    .arg("-sd")
                    .arg(dir.path().join(format!("n{}", i + 1)));
            }
            if size > 1 {
                command
                    .args(["--cluster_name", "kanava-test"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", node.route)])
                    .args(["--routes", &routes]);
            }
            command
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            node.child = Some(command.spawn().expect("spawn nats-server"));
        }
        NatsCluster { nodes, dir }
    }

    /// Polls every node's `/healthz` until all answer 200.
    async fn wait_healthy(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + STARTUP;
        for i in 0..self.nodes.len() {
            loop {
                if let Some(status) = self.nodes[i].child.as_mut().unwrap().try_wait().unwrap() {
                    let log = self.nodes[i].log_tail(usize::MAX);
                    return Err(if log.contains("address already in use") {
                        Failure::PortClash
                    } else {
                        Failure::Other(format!("{} exited with {status}", self.nodes[i].name))
                    });
                }
                if let Ok((200, _)) = self.get(i, "/healthz").await {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Failure::Other(format!(
                        "{} not healthy after {STARTUP:?}",
                        self.nodes[i].name
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The client URLs of every node, running or not, comma-separated, as `--cluster` takes
    /// them: `nats://127.0.0.1:P1,nats://127.0.0.1:P2,…`.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.url(i)).collect();
        urls.join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client)
    }

    /// Node `i`'s monitoring listener (`/healthz`, `/varz`, `/jsz`, …).
    pub fn monitor(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[i].monitor))
    }

    /// How many nodes it was started with.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Whether node `i` has not been stopped.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to node `i` with kill(1).
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("nats node {i} was stopped"))
            .id();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Kills node `i` (SIGKILL to its PID) and waits until it has exited.
    pub fn stop(&mut self, i: usize) {
        assert!(self.running(i), "nats node {i} was already stopped");
        self.nodes[i].kill();
    }

    /// A GET on node `i`'s monitoring port: (status code, body).
    pub async fn get(&self, i: usize, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.monitor(i), path).await
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!(
                "--- {} (client {}, route {}, monitor {}) {}, last lines of its log:\n{}\n",
                node.name,
                node.client,
                node.route,
                node.monitor,
                if node.child.is_some() {
                    "running"
                } else {
                    "stopped"
                },
                node.log_tail(30)
            ));
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "NATS cluster in {}:\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// A plain HTTP/1.0 GET (so that the answer is neither chunked nor kept alive): (status code,
/// body). Fails if nothing listens or the answer takes over 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 5 s"))??;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, response.clone());
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// The harness itself: three healthy nodes that form one JetStream cluster; stopping one
/// leaves the other two serving.
#[tokio::test]
async fn a_three_node_cluster_starts_healthy_and_survives_a_stopped_node() {
    let mut nats = NatsCluster::start().await;
    assert_eq!(nats.size(), 3);
    let urls = nats.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");
    let mut ports = std::collections::HashSet::new();
    for i in 0..3 {
        assert_eq!(nats.get(i, "/healthz").await.unwrap().0, 200);
        // Every node sees the other two as routes of one cluster with JetStream on.
        let (status, varz) = nats.get(i, "/varz").await.unwrap();
        assert_eq!(status, 200);
        let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
        assert_eq!(varz["cluster"]["name"], "kanava-test", "{varz}");
        assert!(
            varz["jetstream"]["config"]["store_dir"].is_string(),
            "JetStream is off: {varz}"
        );
        // /healthz answers once JetStream has a leader, which one route is enough for; the
        // third node's route may still be on its way.
        crate::support::wait_until_async(&format!("node {i} routes to both others"), || async {
            let (_, routez) = nats.get(i, "/routez").await.unwrap();
            let routez: serde_json::Value = serde_json::from_str(&routez).unwrap();
            routez["num_routes"] == 2
        })
        .await;
        for port in [
            nats.nodes[i].client,
            nats.nodes[i].route,
            nats.nodes[i].monitor,
        ] {
            assert!(ports.insert(port), "port {port} used twice");
        }
    }
    let pid = nats.nodes[1].child.as_ref().unwrap().id();
    nats.stop(1);
    assert!(!nats.running(1));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "nats node 1 (pid {pid}) still exists"
    );
    assert!(
        nats.get(1, "/healthz").await.is_err(),
        "node 1 still answers"
    );
    for i in [0, 2] {
        let (status, body) = nats.get(i, "/healthz").await.unwrap();
        assert_eq!(status, 200, "node {i}: {body}");
    }
    // The client ports of the stopped node are closed, the others accept connections.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", nats.nodes[1].client))
            .await
            .is_err()
    );
    for i in [0, 2] {
        tokio::net::TcpStream::connect(("127.0.0.1", nats.nodes[i].client))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_node_without_jetstream_is_healthy_but_has_no_jetstream() {
    let nats = NatsCluster::without_jetstream().await;
    assert_eq!(nats.size(), 1);
    assert!(nats.urls().starts_with("nats://127.0.0.1:"));
    let (status, varz) = nats.get(0, "/varz").await.unwrap();
    assert_eq!(status, 200);
    let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
    assert!(varz["jetstream"]["config"].is_null(), "{varz}");
}
