//! What an operator and a service manager see of the binary: the version and commit it was
//! built from, shell completions and manual pages, `serve --check-config`, and systemd's
//! notify protocol (ready, watchdog, stopping) spoken to a `NOTIFY_SOCKET` listener of the
//! test's own, as systemd would listen.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures_util::SinkExt;

use crate::support::*;

fn kanava(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(args)
        .output()
        .expect("run kanava")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The commit of the checkout the tests run in (the binary was just built from it).
fn head_commit() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git rev-parse: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[tokio::test]
async fn the_version_and_the_build_info_metric_name_the_commit() {
    let commit = head_commit();
    let version = kanava(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        stdout(&version).trim(),
        format!("kanava {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
    let server = Kanava::start();
    let series = format!(
        "kanava_build_info{{version=\"{}\",commit=\"{commit}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(server.metric(&series).await, 1.0, "{series}");
}

#[test]
fn completions_complete_commands_and_flags_and_the_manual_documents_them() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kanava.bash");
    let bash = kanava(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    std::fs::write(&script, &bash.stdout).unwrap();
    // What bash offers after `kanava se<Tab>` and `kanava serve --check<Tab>` (bash calls the
    // function with the command, the word being completed and the one before it).
    let complete = |words: &str, index: usize| {
        let split: Vec<&str> = words.split(' ').collect();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={index}; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; _kanava kanava {} {}; echo \"${{COMPREPLY[@]}}\"",
                script.display(),
                split[index],
                split[index - 1],
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(complete("kanava se", 1).trim(), "serve");
    assert_eq!(complete("kanava serve --check", 2).trim(), "--check-config");
    for shell in ["zsh", "fish"] {
        let out = kanava(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("check-config") && text.contains("serve"),
            "{shell}: {text}"
        );
    }
    let refused = kanava(&["completions", "tcsh"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("invalid value 'tcsh'"));

    let page = stdout(&kanava(&["man"]));
    assert!(
        page.starts_with(".ie") || page.contains(".TH kanava 1"),
        "{page}"
    );
    assert!(page.contains(".TH kanava 1") && page.contains(&head_commit()));
    let pages = dir.path().join("man");
    let out = kanava(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let serve = std::fs::read_to_string(pages.join("kanava-serve.1")).unwrap();
    assert!(serve.contains("check\\-config"), "{serve}");
    for command in ["verify", "share", "users", "completions"] {
        assert!(
            pages.join(format!("kanava-{command}.1")).is_file(),
            "no page for {command}"
        );
    }
}

/// Runs `kanava serve --check-config` with `args`.
fn check_config(args: &[&str]) -> Output {
    let mut all = vec!["serve", "--check-config"];
    all.extend_from_slice(args);
    kanava(&all)
}

#[tokio::test]
async fn check_config_accepts_a_valid_configuration_and_names_what_is_wrong() {
    // A certificate and key as an operator has them: made by a first start.
    let first = Kanava::start();
    let tls = first.data.join("tls");
    let (cert, key) = (tls.join("self-signed.crt"), tls.join("self-signed.key"));
    assert!(cert.is_file() && key.is_file());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("kanava.toml");
    let write = |text: &str| std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    let data_arg = data.to_str().unwrap();

    write(&format!(
        "tls-cert = {cert:?}\ntls-key = {key:?}\nhistory-limit = 500\n"
    ));
    let valid = check_config(&["--config", config_arg, "--data", data_arg]);
    assert!(valid.status.success(), "{}", stderr(&valid));
    let text = stdout(&valid);
    assert!(
        text.contains(&format!("the configuration is valid ({config_arg})")),
        "{text}"
    );
    assert!(
        text.contains(&format!("certificate {}", cert.display())),
        "{text}"
    );
    assert!(!data.exists(), "checking made the data directory");

    // Each mistake is refused, naming the setting or the file at fault.
    let cases: [(String, &[&str], &str); 4] = [
        (
            "tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n".into(),
            &[],
            "tls-cert /nonexistent/cert.pem and tls-key /nonexistent/key.pem: reading certificate /nonexistent/cert.pem",
        ),
        ("history-limit = \"many\"\n".into(), &[], "history-limit"),
        ("no-such-setting = 1\n".into(), &[], "no-such-setting"),
        (
            "history-limit = 0\n".into(),
            &[],
            "--history-limit must be at least 1",
        ),
    ];
    for (text, extra, expected) in cases {
        write(&text);
        let mut args = vec!["--config", config_arg, "--data", data_arg];
        args.extend_from_slice(extra);
        let out = check_config(&args);
        assert!(!out.status.success(), "{text} was accepted");
        let said = stderr(&out);
        assert!(said.contains(expected), "{text}: said {said}");
        if !expected.starts_with("--") && !expected.starts_with("tls-") {
            assert!(said.contains(config_arg), "{text}: said {said}");
        }
    }
    // The files the SSH chat reads: an operators file must hold only keys, a MOTD be readable.
    let ops = dir.path().join("ops");
    std::fs::write(&ops, "# operators\nssh-ed25519 not-base64 alice\n").unwrap();
    let out = check_config(&["--ssh-ops", ops.to_str().unwrap(), "--data", data_arg]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("ssh-ops {}: line 2: ", ops.display())),
        "{}",
        stderr(&out)
    );
    let out = check_config(&["--motd", "/nonexistent/motd", "--data", data_arg]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("motd /nonexistent/motd: cannot read it"),
        "{}",
        stderr(&out)
    );
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let out = check_config(&["--data", not_a_dir.join("data").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{} is not a directory", not_a_dir.display())),
        "{}",
        stderr(&out)
    );
}

/// Receives the next notification within `limit`.
fn next_notification(socket: &UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {limit:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn systemd_hears_ready_once_listening_then_the_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    // Start returns once kanava printed "ready"; READY=1 follows it.
    let server = Start::new()
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .env("WATCHDOG_USEC", "300000")
        .start();
    assert_eq!(next_notification(&socket, WAIT), "READY=1");
    for listener in [server.mles, server.admin, server.debug_me] {
        std::net::TcpStream::connect(listener)
            .unwrap_or_else(|e| panic!("ready, but {listener} refuses: {e}"));
    }
    std::net::TcpStream::connect(("127.0.0.1", server.ssh_port)).unwrap();
    // The watchdog is fed at half the interval systemd asked for.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next_notification(&socket, WAIT), "WATCHDOG=1");
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    let pid = server.pid();
    let stopped = std::thread::spawn(move || server.terminate());
    loop {
        let note = next_notification(&socket, WAIT);
        if note == "STOPPING=1" {
            break;
        }
        assert_eq!(note, "WATCHDOG=1", "pid {pid}");
    }
    assert!(stopped.join().unwrap(), "kanava did not exit cleanly");
}

/// Copies the self-signed certificate and key a first start of kanava made into `dir`, named
/// `NAME.crt` and `NAME.key`.
fn certificate_made_by_a_start(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
    let server = Kanava::start();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::copy(server.data.join("tls/self-signed.crt"), &cert).unwrap();
    std::fs::copy(server.data.join("tls/self-signed.key"), &key).unwrap();
    (cert, key)
}

/// Sends SIGHUP to `server` and waits until it tells systemd it is reloading, then ready.
fn reload(server: &Kanava, notifications: &UnixDatagram) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let reloading = next_notification(notifications, WAIT);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next_notification(notifications, WAIT), "READY=1");
}

#[tokio::test]
async fn a_reload_serves_new_certificates_to_new_clients_keeps_connections_and_refuses_bad_configs()
{
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = certificate_made_by_a_start(dir.path(), "a");
    let (cert_b, key_b) = certificate_made_by_a_start(dir.path(), "b");
    let config = dir.path().join("kanava.toml");
    let configure = |cert: &PathBuf, key: &PathBuf, extra: &str| {
        std::fs::write(
            &config,
            format!("tls-cert = {cert:?}\ntls-key = {key:?}\n{extra}"),
        )
        .unwrap()
    };
    configure(&cert_a, &key_a, "history-limit = 100\n");
    let notify = dir.path().join("notify");
    let notifications = UnixDatagram::bind(&notify).unwrap();
    let server = Start::new()
        .args(&["--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", notify.to_str().unwrap())
        .start();
    assert_eq!(next_notification(&notifications, WAIT), "READY=1");
    let trusting_a = Client::new(server.mles, &cert_a).with_admin(server.admin);
    let trusting_b = Client::new(server.mles, &cert_b).with_admin(server.admin);
    let room = channel("reload");
    let mut alice = trusting_a.join("alice", &room).await;

    // A renewed certificate, new rates and a setting that needs a restart.
    configure(
        &cert_b,
        &key_b,
        "history-limit = 200\nssh-rooms-per-hour = 7\n",
    );
    reload(&server, &notifications);
    assert!(
        trusting_b.try_tls().await.is_ok(),
        "new clients get the new certificate"
    );
    assert!(
        trusting_a.try_tls().await.is_err(),
        "new clients still get the old certificate"
    );
    // The connection made before the reload is still served.
    let mut bob = trusting_b.join("bob", &room).await;
    let replay = json(&recv(&mut bob).await);
    assert_eq!(
        replay["uid"], "alice",
        "bob's replay starts with alice's join"
    );
    alice.send(text("made before the reload")).await.unwrap();
    let heard = recv(&mut bob).await;
    assert_eq!(describe(&heard), describe(&text("made before the reload")));
    let log = server.stderr();
    assert!(
        log.contains(&format!("reload applied: certificate {}", cert_b.display())),
        "{log}"
    );
    assert!(
        log.contains("reload applied: user rates: 7 rooms an hour"),
        "{log}"
    );
    assert!(
        log.contains("these settings change only at the next start: history.max_entries"),
        "{log}"
    );

    // A configuration that does not check out changes nothing.
    configure(
        &dir.path().join("missing.crt"),
        &key_b,
        "history-limit = 300\n",
    );
    reload(&server, &notifications);
    let log = server.stderr();
    assert!(
        log.contains(&format!(
            "reload refused, the running configuration is kept: tls-cert {}",
            dir.path().join("missing.crt").display()
        )),
        "{log}"
    );
    std::fs::write(&config, "history-limit = \"lots\"\n").unwrap();
    reload(&server, &notifications);
    let log = server.stderr();
    assert!(
        log.contains(&format!(
            "reload refused, the running configuration is kept: in config file {}",
            config.display()
        )),
        "{log}"
    );
    assert!(trusting_b.try_tls().await.is_ok());
    alice.send(text("still here")).await.unwrap();
    assert_eq!(
        describe(&recv(&mut bob).await),
        describe(&text("still here"))
    );
}

/// Connects to `address` once systemd-socket-activate listens there (within `WAIT`).
fn connect_once_listening(address: &str) -> std::net::TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match std::net::TcpStream::connect(address) {
            Ok(stream) => return stream,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "nothing listens on {address}: {error}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[tokio::test]
async fn socket_activation_serves_a_connection_that_arrived_before_kanava_started() {
    use std::io::{BufRead, BufReader, Read, Write};
    let ports: Vec<u16> = (0..4).map(|_| crate::nats::free_port()).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stderr_file = std::fs::File::create(dir.path().join("stderr")).unwrap();
    // systemd-socket-activate listens as a socket unit would, and starts kanava, passing it
    // the sockets named as kanava.socket names them, when the first connection arrives.
    let mut command = Command::new("systemd-socket-activate");
    for port in &ports {
        command.arg("--listen").arg(format!("127.0.0.1:{port}"));
    }
    // Three sockets are named after their listeners (the configured addresses are then not
    // used); the admin socket has the unit's name and is matched by its address.
    let mut activated = command
        .arg("--fdname=mles:ssh:debug-me:kanava.socket")
        .args(["-E", "RUST_LOG=info"])
        .arg(env!("CARGO_BIN_EXE_kanava"))
        .args(["serve", "--data", data.to_str().unwrap()])
        .args([
            "--mles-listen",
            "127.0.0.1:1",
            "--ssh-listen",
            "127.0.0.1:1",
        ])
        .args(["--debug-me-listen", "127.0.0.1:1"])
        .args(["--admin-listen", &format!("127.0.0.1:{}", ports[3])])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd) is installed");
    let mut early = connect_once_listening(&format!("127.0.0.1:{}", ports[3]));
    early
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: kanava\r\n\r\n")
        .unwrap();
    early.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    early.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut lines = BufReader::new(activated.stdout.take().unwrap()).lines();
    let banner: Vec<String> = lines
        .by_ref()
        .map(Result::unwrap)
        .take_while(|line| line != "ready")
        .collect();
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("wss://127.0.0.1:{}/", ports[0])),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("ssh -p {} ", ports[1])),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("--use-server http://127.0.0.1:{}/", ports[2])),
        "{banner}"
    );
    let mles = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let client = Client::new(mles, &data.join("tls/self-signed.crt"));
    let mut member = client.join("alice", &channel("activated")).await;
    member.send(text("hello")).await.unwrap();
    let mut ssh = std::net::TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    ssh.set_read_timeout(Some(WAIT)).unwrap();
    let mut greeting = [0u8; 8];
    ssh.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"SSH-2.0-");
    drop((member, ssh));
    // SAFETY: kill(2) on our own child (systemd-socket-activate became kanava by exec).
    unsafe { libc::kill(activated.id() as i32, libc::SIGTERM) };
    assert!(activated.wait().unwrap().success());
}

#[test]
fn a_passed_socket_that_no_listener_takes_is_refused_with_how_to_fix_it() {
    let port = crate::nats::free_port();
    let dir = tempfile::tempdir().unwrap();
    let activated = Command::new("systemd-socket-activate")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--fdname=web")
        .arg(env!("CARGO_BIN_EXE_kanava"))
        .args(["serve", "--data", dir.path().join("data").to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd) is installed");
    // The first connection starts kanava.
    connect_once_listening(&format!("127.0.0.1:{port}"));
    let output = activated.wait_with_output().unwrap();
    assert!(!output.status.success());
    // systemd-socket-activate's own lines come first.
    assert_eq!(
        stderr(&output).lines().last().unwrap_or_default(),
        format!(
            "kanava: socket activation: no listener takes the socket 127.0.0.1:{port} (named \"web\"): name a socket mles, ssh, debug-me or admin (FileDescriptorName=), or listen on the address the configuration gives that listener"
        )
    );
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_frame_relayed_before_it() {
    let server = Start::new().args(&["--history-limit", "100000"]).start();
    // A debug-me log being written: its torn last line is left out of the backup.
    let log = server
        .data
        .join("debug-me/debug-me.0b5e1c8e-4f3a-4c1e-9d2a-6f1e2d3c4b5a.log");
    std::fs::write(&log, "{\"line\":1}\n{\"line\":2}\n{\"torn").unwrap();
    let client = server.client();
    let room = channel("backup");
    let mut writer = client.join("writer", &room).await;
    let mut reader = client.join("reader", &room).await;
    assert_eq!(json(&recv(&mut reader).await)["uid"], "writer");
    let sending = tokio::spawn(async move {
        for n in 0u64.. {
            if writer.send(text(&format!("frame-{n}"))).await.is_err() {
                break;
            }
        }
    });
    // Frames relayed to the reader before the backup starts were stored before they were
    // relayed: every one of them must be in the backup.
    let mut relayed = 0;
    while relayed < 300 {
        assert_eq!(
            describe(&recv(&mut reader).await),
            describe(&text(&format!("frame-{relayed}")))
        );
        relayed += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kanava.backup");
    let data = server.data.clone();
    let file_arg = file.clone();
    let backed_up = tokio::task::spawn_blocking(move || {
        kanava(&[
            "backup",
            "--data",
            data.to_str().unwrap(),
            file_arg.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    assert!(
        stdout(&backed_up).contains("kanava: backed up"),
        "{}",
        stdout(&backed_up)
    );
    // The writer went on during the backup.
    let during = recv(&mut reader).await;
    assert_eq!(
        describe(&during),
        describe(&text(&format!("frame-{relayed}")))
    );
    sending.abort();

    let restored = dir.path().join("restored");
    let out = kanava(&[
        "restore",
        "--data",
        restored.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = kanava(&[
        "restore",
        "--data",
        restored.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("is not empty: restore into a new directory"),
        "{}",
        stderr(&again)
    );
    for key in [
        "ssh/host_ed25519",
        "tls/self-signed.crt",
        "tls/self-signed.key",
    ] {
        assert_eq!(
            std::fs::read(server.data.join(key)).unwrap(),
            std::fs::read(restored.join(key)).unwrap(),
            "{key}"
        );
    }
    let restored_log = restored.join(log.strip_prefix(&server.data).unwrap());
    assert_eq!(
        std::fs::read_to_string(restored_log).unwrap(),
        "{\"line\":1}\n{\"line\":2}\n"
    );
    drop(server);

    // A server on the restored data replays every frame relayed before the backup, in order.
    let revived = Start::new()
        .data(&restored)
        .args(&["--history-limit", "100000"])
        .start();
    let mut checker = revived.client().join("checker", &room).await;
    let mut replayed = Vec::new();
    while replayed.len() < relayed as usize {
        let message = recv(&mut checker).await;
        if let tokio_tungstenite::tungstenite::Message::Text(frame) = &message
            && frame.starts_with("frame-")
        {
            replayed.push(frame.to_string());
        }
    }
    let expected: Vec<String> = (0..relayed).map(|n| format!("frame-{n}")).collect();
    assert_eq!(replayed, expected);
}

#[tokio::test]
async fn the_metrics_pass_promtool_and_name_the_build() {
    let server = Kanava::start();
    // Some traffic, so that labelled series exist beyond their zeros.
    let mut member = server.client().join("alice", &channel("metrics")).await;
    member.send(text("hello")).await.unwrap();
    let (_, body) = server.admin_get("/metrics").await;
    assert!(body.contains("# TYPE kanava_build_info gauge"), "{body}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        stdout(&checked),
        stderr(&checked)
    );
}

/// The metric families a server exports, by name, once it has stored a frame (so that the
/// store's latency summary, `stored`, has a sample).
async fn exported_metrics(server: &Kanava, stored: &str) -> std::collections::BTreeSet<String> {
    let mut member = server.client().join("alice", &channel("dashboard")).await;
    member.send(text("hello")).await.unwrap();
    server.wait_metric(&format!("{stored}_count"), 1.0).await;
    let (_, body) = server.admin_get("/metrics").await;
    body.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_charts_every_metric_and_only_metrics_kanava_exports() {
    // What a single server and a cluster node export together.
    let mut exported = exported_metrics(&Kanava::start(), "kanava_store_commit_seconds").await;
    let nats = crate::nats::NatsCluster::start().await;
    let node = crate::cluster::node(&nats.urls(), "dashboard", &[]);
    node.wait_metric("kanava_cluster_connected", 1.0).await;
    exported.extend(exported_metrics(&node, "kanava_cluster_publish_seconds").await);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .expect("docs/grafana-dashboard.json is JSON");
    let mut charted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("kanava_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    exported.contains(&name),
                    "panel {:?} charts {name}, which kanava does not export",
                    panel["title"]
                );
                charted.insert(name);
            }
        }
    }
    let missing: Vec<&String> = exported
        .iter()
        .filter(|name| !charted.contains(*name))
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}
