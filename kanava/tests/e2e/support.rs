//! Test harness: start the real server, connect real clients, wait for conditions.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long any expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Tests that load the machine (or measure latency) hold this lock, so that they do not run at
/// the same time as each other. Each test has its own runtime; tokio's mutex works across them.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Polls `condition` until it holds or `WAIT` passes.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`], for a condition that must be checked asynchronously.
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    condition: impl FnMut() -> F,
) {
    wait_until_async_within(what, WAIT, condition).await;
}

/// Like [`wait_until_async`], allowing `limit` instead of `WAIT` (for what takes a known long
/// time, such as a leader election or an expiry).
pub async fn wait_until_async_within<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `kanava serve` process. Killed on drop.
pub struct Kanava {
    child: Child,
    pub data: PathBuf,
    pub mles: SocketAddr,
    pub admin: SocketAddr,
    pub ssh_port: u16,
    /// The debug-me listener (plain ws://).
    pub debug_me: SocketAddr,
    pub stdout_lines: Vec<String>,
    _tempdir: Option<Arc<tempfile::TempDir>>,
}

/// Builder for a server start.
pub struct Start {
    data: Option<PathBuf>,
    tempdir: Option<Arc<tempfile::TempDir>>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mles_listen: String,
    admin_listen: String,
    ssh_listen: String,
    debug_me_listen: String,
    wrapper: Vec<String>,
    open_file_limit: Option<u64>,
}

impl Start {
    pub fn new() -> Self {
        Self {
            data: None,
            tempdir: None,
            args: Vec::new(),
            env: Vec::new(),
            mles_listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            ssh_listen: "127.0.0.1:0".into(),
            debug_me_listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
            open_file_limit: None,
        }
    }

    /// Runs the server through `wrapper`, a program and its arguments that exec the server in
    /// another context, such as `ip netns exec NS` for another network namespace. The wrapper
    /// must exec (not fork) the server, so that the child's PID is the server's.
    pub fn wrapper(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Runs the server with this open-file limit (soft and hard), as a host's `ulimit -n`.
    pub fn open_file_limit(mut self, limit: u64) -> Self {
        self.open_file_limit = Some(limit);
        self
    }

    /// Uses `dir` as the data directory (to restart on the same data).
    pub fn data(mut self, dir: &Path) -> Self {
        self.data = Some(dir.to_owned());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn mles_listen(mut self, addr: &str) -> Self {
        self.mles_listen = addr.into();
        self
    }

    pub fn admin_listen(mut self, addr: &str) -> Self {
        self.admin_listen = addr.into();
        self
    }

    pub fn ssh_listen(mut self, addr: &str) -> Self {
        self.ssh_listen = addr.into();
        self
    }

    pub fn debug_me_listen(mut self, addr: &str) -> Self {
        self.debug_me_listen = addr.into();
        self
    }

    pub fn start(mut self) -> Kanava {
        let data = match self.data.take() {
            Some(d) => d,
            None => {
                let dir = Arc::new(tempfile::tempdir().unwrap());
                let data = dir.path().join("data");
                self.tempdir = Some(dir);
                data
            }
        };
        let stderr_path = stderr_path(&data);
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_kanava"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_kanava")),
        };
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--mles-listen", &self.mles_listen])
            .args(["--admin-listen", &self.admin_listen])
            .args(["--ssh-listen", &self.ssh_listen])
            .args(["--debug-me-listen", &self.debug_me_listen])
            .args(&self.args)
            .env_remove("MLES_KEY")
            .env("RUST_LOG", "kanava=debug,kanava_mles=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(limit) = self.open_file_limit {
            limit_open_files(&mut command, limit);
        }
        let mut child = command.spawn().expect("spawn kanava");
        let stdout = child.stdout.take().unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!(
                    "kanava exited before ready; stdout: {lines:?}; stderr: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            let line = line.trim_end().to_owned();
            if line == "ready" {
                break;
            }
            lines.push(line);
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        let find = |prefix: &str| -> SocketAddr {
            lines
                .iter()
                .find_map(|l| l.split(prefix).nth(1))
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
                .parse()
                .unwrap()
        };
        let mles = find("wss://");
        let admin = find("admin  http://");
        let debug_me = find("--use-server http://");
        let ssh_port = lines
            .iter()
            .find_map(|l| l.split("ssh -p ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no ssh port in {lines:?}"));
        Kanava {
            child,
            data,
            mles,
            admin,
            ssh_port,
            debug_me,
            stdout_lines: lines,
            _tempdir: self.tempdir,
        }
    }
}

/// Sets `command`'s open-file limit (soft and hard) to `limit` in the child.
pub fn limit_open_files(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
    // is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A TCP connection to `addr` from the loopback address `source` (127.0.0.2, 127.0.0.3, …), so
/// that a test can play several hosts: every listener counts its caps per source address.
pub async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().expect("an IPv4 address"), 0))?;
    socket.connect(addr).await
}

/// Runs `kanava bench ARGS… --json` to its end (off the async runtime) and returns its JSON
/// report; fails the test, with its output, if it fails.
pub async fn bench_report(args: Vec<std::ffi::OsString>) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kanava"))
            .arg("bench")
            .args(args)
            .arg("--json")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Where a server with data directory `data` writes its stderr (its log).
fn stderr_path(data: &Path) -> PathBuf {
    data.with_extension(format!("stderr-{}", std::process::id()))
}

impl Kanava {
    pub fn start() -> Kanava {
        Start::new().start()
    }

    /// What the server has written to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(stderr_path(&self.data)).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The self-signed certificate the server generated.
    pub fn cert_path(&self) -> PathBuf {
        self.data.join("tls/self-signed.crt")
    }

    /// A client that trusts this server's self-signed certificate.
    pub fn client(&self) -> Client {
        Client::new(self.mles, &self.cert_path()).with_admin(self.admin)
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        status.success()
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// GET on the admin listener: (status line, body).
    pub async fn admin_get(&self, path: &str) -> (String, String) {
        admin_get(self.admin, path).await
    }

    /// A series' value from `/metrics`; `series` is the name with any labels, exactly as
    /// exported (`kanava_store_commit_seconds{quantile="0.99"}`). Absent series read as 0.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(self.admin, series).await
    }
}

/// GET on an admin listener: (status line, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// A series' value from an admin listener's `/metrics`; absent series read as 0.
pub async fn metric_at(admin: SocketAddr, series: &str) -> f64 {
    let (_, body) = admin_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(key, _)| *key == series)
        .map_or(0.0, |(_, v)| v.parse().unwrap())
}

impl Kanava {
    /// Waits until a metric reaches `at_least`: the server's own account of what it has done,
    /// used to order a test's steps across connections.
    pub async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(name).await;
            if value >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {value}, wanted {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Kanava {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Connects real TLS clients to one server.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    /// The server's admin address, to wait until a join has been processed.
    admin: Option<SocketAddr>,
    /// The loopback address connections come from (127.0.0.2, …), to act as a distinct source.
    source: Option<std::net::IpAddr>,
}

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl Client {
    pub fn new(addr: SocketAddr, ca: &Path) -> Self {
        install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            addr,
            tls: TlsConnector::from(Arc::new(config)),
            admin: None,
            source: None,
        }
    }

    /// Connects from `source` (e.g. 127.0.0.2), so that the server sees another address.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = Some(source.parse().unwrap());
        self
    }

    /// Lets [`join`](Self::join) wait until the server has processed each join.
    pub fn with_admin(mut self, admin: SocketAddr) -> Self {
        self.admin = Some(admin);
        self
    }

    /// A TLS connection with nothing sent yet.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        self.try_tls().await.expect("TLS handshake")
    }

    /// A TLS connection, or why the handshake failed (e.g. the certificate is not trusted).
    pub async fn try_tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = match &self.source {
            None => TcpStream::connect(self.addr).await?,
            Some(source) => connect_from(&source.to_string(), self.addr).await?,
        };
        self.tls
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// Upgrades with the Mles subprotocol; returns the socket and the echoed subprotocol.
    pub async fn upgrade(&self) -> (Ws, Option<String>) {
        self.upgrade_with(Some("mles-websocket")).await.unwrap()
    }

    pub async fn upgrade_with(
        &self,
        subprotocol: Option<&str>,
    ) -> Result<(Ws, Option<String>), WsError> {
        let mut request = format!("wss://localhost:{}/any/path?q=1", self.addr.port())
            .into_client_request()
            .unwrap();
        if let Some(p) = subprotocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, self.tls().await, Some(config))
                .await?;
        let echoed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok((ws, echoed))
    }

    /// Upgrades and sends a plain header.
    pub async fn join(&self, uid: &str, channel: &str) -> Ws {
        self.join_with(&serde_json::json!({"uid": uid, "channel": channel}).to_string())
            .await
    }

    /// Upgrades and sends `header` as the first text frame, then (when the admin address is
    /// known) waits until the server has counted the join, so that joins made one after the
    /// other are processed in that order. Use [`send_header`](Self::send_header) for a header
    /// that is meant to be refused.
    pub async fn join_with(&self, header: &str) -> Ws {
        let Some(admin) = self.admin else {
            return self.send_header(header).await;
        };
        let before = metric_at(admin, "kanava_joins_total").await;
        let ws = self.send_header(header).await;
        let deadline = Instant::now() + WAIT;
        while metric_at(admin, "kanava_joins_total").await <= before {
            assert!(
                Instant::now() < deadline,
                "the server never processed the join {header}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ws
    }

    /// Upgrades and sends `header` as the first text frame, without waiting for the join.
    pub async fn send_header(&self, header: &str) -> Ws {
        let (mut ws, _) = self.upgrade().await;
        ws.send(Message::text(header)).await.unwrap();
        ws
    }
}

/// The next data frame (text, binary or ping), skipping pongs and server pings with an empty
/// payload; panics after `WAIT`.
pub async fn recv(ws: &mut Ws) -> Message {
    recv_within(ws, WAIT).await
}

/// Like [`recv`], allowing `limit` instead of `WAIT`.
pub async fn recv_within(ws: &mut Ws, limit: Duration) -> Message {
    loop {
        let msg = tokio::time::timeout(limit, ws.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("no error");
        match &msg {
            Message::Pong(_) => continue,
            Message::Ping(p) if p.is_empty() => continue,
            _ => return msg,
        }
    }
}

/// Collects frames for `window`, skipping keepalive traffic; for negative checks only.
pub async fn drain_for(ws: &mut Ws, window: Duration) -> Vec<Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        match &msg {
            Message::Pong(_) => {}
            Message::Ping(p) if p.is_empty() => {}
            _ => got.push(msg),
        }
    }
    got
}

/// Receives `n` data frames.
pub async fn recv_n(ws: &mut Ws, n: usize) -> Vec<Message> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(recv(ws).await);
    }
    got
}

/// Waits for the server to close `ws`; returns the close code (None if no close frame came)
/// and how long it took.
pub async fn closed(ws: &mut Ws) -> (Option<CloseCode>, Duration) {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => {
                return (frame.map(|f| f.code), started.elapsed());
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return (None, started.elapsed()),
        }
    }
}

/// The code and reason the server closes `ws` with, skipping what it sends before; panics if
/// the connection ends without a Close frame.
pub async fn close_frame(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        // Longer than `recv`'s wait, so that a stuck observer is what a test reports.
        let next = tokio::time::timeout(2 * WAIT, ws.next());
        match next.await.expect("closed in time") {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub fn text(s: &str) -> Message {
    Message::text(s)
}

/// A short description of a frame for assertion messages (never a whole payload).
pub fn describe(msg: &Message) -> String {
    match msg {
        Message::Text(t) if t.len() <= 80 => format!("text {:?}", t.as_str()),
        Message::Text(t) => format!("text of {} bytes", t.len()),
        Message::Binary(b) => format!(
            "binary of {} bytes starting {:?}",
            b.len(),
            &b[..b.len().min(8)]
        ),
        other => format!("{other:?}"),
    }
}

pub fn binary(b: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(b))
}

/// A header frame as JSON.
pub fn json(msg: &Message) -> serde_json::Value {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("header is JSON"),
        other => panic!("expected a text header, got {other:?}"),
    }
}

/// A fresh channel name, unique in this test run.
pub fn channel(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `path` (and its parents) as a directory only its owner may use, as GnuPG homes must
/// be; returns it.
pub fn private_dir(path: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_owned()
}

/// Makes a GnuPG key without a passphrase for `Name <name@example.org>` in the GnuPG home
/// `home` (which must exist, private); returns its fingerprint.
pub fn new_gpg_key(home: &Path, name: &str) -> String {
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "-q"])
            .args(args)
            .output()
            .expect("gpg is installed");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let uid = format!("{name} <{}@example.org>", name.to_lowercase());
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        &uid,
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&["--with-colons", "--list-keys", &uid])
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').nth(8))
        .expect("the new key's fingerprint")
        .to_owned()
}

/// A fresh ed25519 key `name` in `dir`, made by `ssh-keygen`.
pub fn fresh_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
    path
}

/// `message` signed by `key` in `namespace` with OpenSSH's `ssh-keygen -Y sign`: the armoured
/// SSHSIG text it prints.
pub fn ssh_keygen_sign(key: &Path, namespace: &str, message: &str) -> String {
    let mut signer = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-q", "-n", namespace, "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh-keygen (openssh-client) is installed");
    signer
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = signer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
