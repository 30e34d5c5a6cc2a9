//! SSH under attack, with the real OpenSSH client: terminal sizes a peer claims, window-change
//! floods, session and connection caps, refused features, silent peers. Each test runs the
//! server with small limits, attacks from one loopback address and checks that a user from
//! another is served meanwhile, and that the attacker is told why.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::ssh::{Keys, ssh_command, ssh_command_with, stderr};
use crate::support::*;
use crate::tui::{Tmux, command_line};

/// Runs `command` to completion with stdin closed.
async fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        command.output().expect("ssh (openssh-client) is installed")
    })
    .await
    .unwrap()
}

/// `ssh … user@127.0.0.1 ARGS` from the loopback address `source`.
fn ssh_from(server: &Kanava, key: &Path, user: &str, source: &str, args: &[&str]) -> Command {
    let mut command = ssh_command_with(server, &[key], user, &["-b", source]);
    command.args(args);
    command
}

/// `user` (with `key`) says `line` in the lobby from the loopback address `source`; asserts it
/// is stored.
async fn say_from(server: &Kanava, key: &Path, user: &str, source: &str, line: &str) {
    let said = run(ssh_from(server, key, user, source, &["say", "lobby", line])).await;
    assert!(said.status.success(), "{}", stderr(&said));
}

/// Asserts that every cursor move in `drawn` stays within 500x200 and that the server's memory
/// stayed bounded.
fn assert_clamped(server: &Kanava, drawn: &[u8]) {
    let moves = cursor_moves(drawn);
    assert!(
        moves.iter().all(|(row, col)| *row <= 200 && *col <= 500),
        "{moves:?}"
    );
    assert!(server.rss_kib() < RSS_BOUND_KIB, "{} KiB", server.rss_kib());
}

/// Asserts that `user` (with `key`) is served from 127.0.0.2: `rooms` succeeds there.
async fn served_from_another_address(server: &Kanava, key: &Path, user: &str) {
    let out = run(ssh_from(server, key, user, "127.0.0.2", &["rooms"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A TCP connection to the SSH listener from the loopback address `source`.
async fn tcp_from(server: &Kanava, source: &str) -> TcpStream {
    let ssh = SocketAddr::from(([127, 0, 0, 1], server.ssh_port));
    connect_from(source, ssh).await.unwrap()
}

/// Every cursor position (row, column; 1-based) that `CSI row ; col H` moves to in `output`.
fn cursor_moves(output: &[u8]) -> Vec<(u32, u32)> {
    let mut moves = Vec::new();
    let mut rest = output;
    while let Some(at) = rest.windows(2).position(|w| w == b"\x1b[") {
        rest = &rest[at + 2..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b';'))
            .unwrap_or(rest.len());
        if rest.get(end) == Some(&b'H') {
            let numbers: Vec<u32> = std::str::from_utf8(&rest[..end])
                .unwrap()
                .split(';')
                .filter_map(|n| n.parse().ok())
                .collect();
            if let [row, col] = numbers[..] {
                moves.push((row, col));
            }
        }
    }
    moves
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime field 14 and stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The pid of the only child of `parent` (the `ssh` a tmux pane's shell runs).
fn child_of(parent: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{parent} has no child"))
        .parse()
        .unwrap()
}

/// Waits until `file` has grown past `from` bytes with something that satisfies `check`;
/// returns the new bytes.
async fn wait_output(
    file: &Path,
    from: usize,
    what: &str,
    check: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let output = std::fs::read(file).unwrap_or_default();
        let new = output.get(from..).unwrap_or_default();
        if check(new) {
            return new.to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "the output never showed {what}: {:?}",
            String::from_utf8_lossy(new)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const RSS_BOUND_KIB: u64 = 200 * 1024;

#[tokio::test]
async fn a_terminal_of_65535_by_65535_is_clamped_and_others_keep_chatting() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // stock OpenSSH in a terminal that claims 65535x65535; its raw output is kept.
    let output = tmux.dir().join("alice.out");
    let ssh = command_line(&ssh_command(&server, &[&keys.path("ed25519")], "alice"));
    tmux.open(
        "alice",
        &format!(
            "stty rows 65535 cols 65535; {ssh} | tee {}",
            output.display()
        ),
    );
    wait_output(&output, 0, "the welcome", |o| {
        contains(o, b"welcome, alice.")
    })
    .await;
    // The chat drew at most 500x200: its input line is on row 200, nothing beyond.
    let drawn = std::fs::read(&output).unwrap();
    assert!(cursor_moves(&drawn).iter().any(|(row, _)| *row == 200));
    assert_clamped(&server, &drawn);

    // Another user, from another address, chats with alice.
    say_from(
        &server,
        &keys.path("rsa"),
        "bob",
        "127.0.0.2",
        "hello-from-bob",
    )
    .await;
    wait_output(&output, 0, "bob's message", |o| {
        contains(o, b"hello-from-bob")
    })
    .await;

    // A window-change to a normal size, then to 60000x60000: clamped again.
    let tty = tmux.run(&["display", "-p", "-t", "alice", "#{pane_tty}"]);
    let tty = tty.trim();
    let before = std::fs::read(&output).unwrap().len();
    let stty = |rows: &str, cols: &str| {
        let status = Command::new("stty")
            .args(["-F", tty, "rows", rows, "cols", cols])
            .status()
            .expect("stty");
        assert!(status.success());
    };
    stty("10", "30");
    wait_output(&output, before, "a 10-row layout", |o| {
        cursor_moves(o).iter().any(|(row, _)| *row == 10)
    })
    .await;
    let before = std::fs::read(&output).unwrap().len();
    stty("60000", "60000");
    let redrawn = wait_output(&output, before, "a 200-row layout", |o| {
        cursor_moves(o).iter().any(|(row, _)| *row == 200)
    })
    .await;
    assert_clamped(&server, &redrawn);
    say_from(&server, &keys.path("rsa"), "bob", "127.0.0.2", "still-here").await;
    wait_output(&output, before, "bob's second message", |o| {
        contains(o, b"still-here")
    })
    .await;
}

#[tokio::test]
async fn a_window_change_flood_is_cut_at_the_input_rate_while_others_chat() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    // 64 KiB/s: 4 MiB at once, so about 1,000 window-changes (4 KiB each), then 16 a second.
    let server = Start::new().args(&["--ssh-input-rate", "65536"]).start();
    let tmux = Tmux::new();
    let alice = ssh_command(&server, &[&keys.path("ed25519")], "alice");
    tmux.open("alice", &command_line(&alice));
    let bob = ssh_command_with(&server, &[&keys.path("rsa")], "bob", &["-b", "127.0.0.2"]);
    tmux.open("bob", &command_line(&bob));
    tmux.wait("alice", "the welcome", |s| s.contains("* welcome, alice."))
        .await;
    tmux.wait("bob", "the welcome", |s| s.contains("* welcome, bob."))
        .await;

    let shell: u32 = tmux
        .run(&["display", "-p", "-t", "alice", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let ssh = child_of(shell);
    let cpu_before = cpu_ticks(server.pid());
    // Every SIGWINCH makes OpenSSH send a window-change; the loop ends when ssh has gone.
    let _flood = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("while kill -WINCH {ssh} 2>/dev/null; do :; done"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status_file = tmux.dir().join("alice.status");
    wait_until("alice's ssh has been disconnected", || {
        std::fs::read_to_string(&status_file).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    assert_eq!(std::fs::read_to_string(&status_file).unwrap().trim(), "255");
    assert_eq!(server.metric("kanava_ssh_input_limited_total").await, 1.0);
    let cpu = cpu_ticks(server.pid()) - cpu_before;
    assert!(cpu < 300, "the flood cost the server {cpu} ticks of CPU");
    assert!(server.rss_kib() < RSS_BOUND_KIB, "{} KiB", server.rss_kib());

    // Bob, from another address, was not affected.
    say_from(
        &server,
        &keys.path("ecdsa256"),
        "carol",
        "127.0.0.3",
        "after-the-flood",
    )
    .await;
    tmux.wait("bob", "carol's message", |s| s.contains("after-the-flood"))
        .await;
}

#[tokio::test]
async fn sftp_and_port_forwarding_are_refused_at_once() {
    let keys = Keys::new();
    let server = Kanava::start();
    let key = keys.path("ed25519");
    let started = Instant::now();
    let mut sftp = Command::new("sftp");
    sftp.args(["-F", "/dev/null", "-P", &server.ssh_port.to_string()])
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-i"])
        .arg(&key)
        .arg("alice@127.0.0.1");
    let out = run(sftp).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("subsystem request failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Remote forwarding: refused, and OpenSSH says so.
    let started = Instant::now();
    let mut remote = ssh_command_with(
        &server,
        &[&key],
        "alice",
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:9",
        ],
    );
    remote.stderr(Stdio::piped());
    let out = run(remote).await;
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("remote port forwarding failed"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Local forwarding: a connection to the forwarded port is closed at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forward = format!("127.0.0.1:{port}:127.0.0.1:{}", server.ssh_port);
    let local = ssh_command_with(&server, &[&key], "alice", &["-N", "-L", &forward]);
    let mut local = tokio::process::Command::from(local)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let tried = std::sync::Mutex::new(None);
    let slot = &tried;
    wait_until_async("ssh listens on the forwarded port", move || async move {
        let connected = TcpStream::connect(("127.0.0.1", port)).await.ok();
        let ok = connected.is_some();
        *slot.lock().unwrap() = connected;
        ok
    })
    .await;
    let mut forwarded = tried.into_inner().unwrap().unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), forwarded.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the forwarded connection stayed open");
    assert!(got.is_empty(), "{got:?}");
    assert!(
        local.try_wait().unwrap().is_none(),
        "only the channel is refused"
    );
    let _ = local.kill().await;

    // Meanwhile the server serves others.
    served_from_another_address(&server, &keys.path("rsa"), "bob").await;
}

#[tokio::test]
async fn a_fifth_session_on_one_connection_is_refused_with_the_reason() {
    let keys = Keys::new();
    let server = Kanava::start();
    let key = keys.path("ed25519");
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control");
    let path = format!("ControlPath={}", control.display());
    // The master logs at INFO, where OpenSSH shows why a channel was refused.
    let master = ssh_command_with(
        &server,
        &[&key],
        "alice",
        &[
            "-o",
            "LogLevel=INFO",
            "-o",
            "ControlMaster=yes",
            "-o",
            &path,
            "-N",
        ],
    );
    let mut master = tokio::process::Command::from(master)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until("the control socket is up", || control.exists()).await;
    let shared = |args: &[&str]| {
        let mut command = ssh_command_with(
            &server,
            &[&key],
            "alice",
            &["-o", "ControlMaster=no", "-o", &path],
        );
        command.args(args);
        command
    };
    assert!(
        run(shared(&["say", "many", "opened"]))
            .await
            .status
            .success()
    );
    wait_until_async("the first session has closed", || async {
        server.metric("kanava_ssh_sessions").await == 0.0
    })
    .await;
    // Four sessions that stay open.
    let mut tails = Vec::new();
    for _ in 0..4 {
        let mut tail = tokio::process::Command::from(shared(&["tail", "many", "-f"]))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tail.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !contains(&seen, b"<alice> opened") {
            let n = tokio::time::timeout(WAIT, stdout.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "tail ended: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        tails.push((tail, stdout));
    }
    assert_eq!(server.metric("kanava_ssh_sessions").await, 4.0);
    assert_eq!(
        server.metric("kanava_ssh_connections").await,
        1.0,
        "all over one connection"
    );
    // The fifth is refused over the shared connection (OpenSSH then opens a connection of its
    // own for it), and the master says why.
    let fifth = run(shared(&["rooms"])).await;
    assert!(
        stderr(&fifth).contains("Session open refused by peer"),
        "{}",
        stderr(&fifth)
    );
    assert_eq!(
        server
            .metric("kanava_ssh_sessions_refused_total{cap=\"connection\"}")
            .await,
        1.0
    );
    // The four still work: a message from another address reaches each.
    let say = ssh_from(
        &server,
        &keys.path("rsa"),
        "bob",
        "127.0.0.2",
        &["say", "many", "still-open"],
    );
    assert!(run(say).await.status.success());
    for (_, stdout) in &mut tails {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !contains(&seen, b"<bob> still-open") {
            let n = tokio::time::timeout(WAIT, stdout.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "tail ended: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    }
    // One ends, and a new session has room on the shared connection.
    let (mut first, _) = tails.remove(0);
    first.kill().await.unwrap();
    let shared = &shared;
    wait_until_async("a session has room again", move || async move {
        let out = run(shared(&["who", "many"])).await;
        out.status.success() && !stderr(&out).contains("refused")
    })
    .await;
    assert_eq!(
        server
            .metric("kanava_ssh_sessions_refused_total{cap=\"connection\"}")
            .await,
        1.0
    );
    master.start_kill().unwrap();
    let logged = master.wait_with_output().await.unwrap();
    let logged = String::from_utf8_lossy(&logged.stderr);
    assert!(
        logged.contains(
            "open failed: resource shortage: too many sessions on this connection (at most 4)"
        ),
        "{logged}"
    );
}

#[tokio::test]
async fn connections_over_the_per_source_cap_are_told_why_while_others_are_served() {
    let keys = Keys::new();
    let server = Start::new()
        .args(&["--ssh-max-connections-per-source", "2"])
        .start();
    let _held = [
        tcp_from(&server, "127.0.0.3").await,
        tcp_from(&server, "127.0.0.3").await,
    ];
    server.wait_metric("kanava_ssh_connections", 2.0).await;
    let refused = run(ssh_from(
        &server,
        &keys.path("ed25519"),
        "alice",
        "127.0.0.3",
        &["rooms"],
    ))
    .await;
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("too many connections from your address"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        server
            .metric("kanava_connections_refused_total{listener=\"ssh\",reason=\"source\"}")
            .await,
        1.0
    );
    served_from_another_address(&server, &keys.path("rsa"), "bob").await;
}

#[tokio::test]
async fn a_client_that_stops_answering_keepalives_is_closed_after_four_intervals() {
    let keys = Keys::new();
    let server = Start::new().args(&["--ping-interval", "1s"]).start();
    // Bob answers keepalives (OpenSSH does) and stays.
    let bob = ssh_command_with(
        &server,
        &[&keys.path("rsa")],
        "bob",
        &["-b", "127.0.0.2", "-T"],
    );
    let mut bob = tokio::process::Command::from(bob)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let alice = ssh_command_with(&server, &[&keys.path("ed25519")], "alice", &["-T"]);
    let mut alice = tokio::process::Command::from(alice)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_async("both are in the lobby", || async {
        let who = run({
            let mut c = ssh_command(&server, &[&keys.path("ecdsa256")], "carol");
            c.args(["who", "lobby"]);
            c
        })
        .await;
        let who = String::from_utf8_lossy(&who.stdout).into_owned();
        who.contains("alice") && who.contains("bob")
    })
    .await;
    // Alice's client freezes: it neither reads nor answers.
    let pid = alice.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    wait_until_async("alice's connection is closed", || async {
        server.metric("kanava_ssh_connections").await == 1.0
    })
    .await;
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "closed after only {waited:?}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = alice.wait().await;
    assert!(bob.try_wait().unwrap().is_none(), "bob was disconnected");
    let who = run({
        let mut c = ssh_command(&server, &[&keys.path("ecdsa256")], "carol");
        c.args(["who", "lobby"]);
        c
    })
    .await;
    let who = String::from_utf8_lossy(&who.stdout).into_owned();
    assert!(who.contains("bob") && !who.contains("alice"), "{who}");
}

#[tokio::test]
async fn a_connection_that_never_sends_its_identification_is_closed_at_the_deadline() {
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-auth-timeout", "1s"]).start();
    let mut silent = tcp_from(&server, "127.0.0.4").await;
    let opened = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, silent.read_to_end(&mut got))
        .await
        .expect("closed")
        .unwrap();
    let waited = opened.elapsed();
    assert!(
        got.starts_with(b"SSH-2.0-kanava"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    served_from_another_address(&server, &keys.path("ed25519"), "alice").await;
}

#[tokio::test]
async fn sessions_over_the_per_user_cap_are_refused_with_the_reason() {
    let keys = Keys::new();
    let server = Start::new()
        .args(&["--ssh-max-sessions-per-user", "2"])
        .start();
    let key = keys.path("ed25519");
    // Two sessions that stay open, on two connections.
    let mut tails = Vec::new();
    for _ in 0..2 {
        let mut tail = ssh_command(&server, &[&key], "alice");
        tail.args(["tail", "lobby", "-f"]);
        tails.push(
            tokio::process::Command::from(tail)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    server.wait_metric("kanava_ssh_sessions", 2.0).await;
    // OpenSSH shows why at its default log level.
    let mut third = ssh_command_with(&server, &[&key], "alice", &["-o", "LogLevel=INFO"]);
    third.arg("rooms");
    let refused = run(third).await;
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("too many sessions for alice (at most 2 in all)"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        server
            .metric("kanava_ssh_sessions_refused_total{cap=\"user\"}")
            .await,
        1.0
    );
    // Another user is served meanwhile.
    served_from_another_address(&server, &keys.path("rsa"), "bob").await;
    // Once one ends, alice has room again.
    tails[0].kill().await.unwrap();
    let _ = tails[0].wait().await;
    wait_until_async("alice has room again", || async {
        let mut rooms = ssh_command(&server, &[&key], "alice");
        rooms.arg("rooms");
        run(rooms).await.status.success()
    })
    .await;
}

/// The name-lists of the server's `SSH_MSG_KEXINIT` (RFC 4253 §7.1), read after sending an
/// identification over raw TCP.
async fn server_kexinit(server: &Kanava) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tcp_from(server, "127.0.0.5").await;
    tcp.write_all(b"SSH-2.0-probe\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let packet = loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        let rest = &got[end + 2..];
        if rest.len() >= 4 {
            let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            if rest.len() >= 4 + length {
                break rest[4..4 + length].to_vec();
            }
        }
    };
    let padding = usize::from(packet[0]);
    let payload = &packet[1..packet.len() - padding];
    assert_eq!(payload[0], 20, "SSH_MSG_KEXINIT");
    let mut at = 1 + 16;
    (0..10)
        .map(|_| {
            let len = u32::from_be_bytes(payload[at..at + 4].try_into().unwrap()) as usize;
            let list = String::from_utf8(payload[at + 4..at + 4 + len].to_vec()).unwrap();
            at += 4 + len;
            list
        })
        .collect()
}

#[tokio::test]
async fn no_compression_is_offered_before_authentication() {
    let server = Kanava::start();
    let lists = server_kexinit(&server).await;
    // Compression client to server, then server to client: never plain `zlib`, which starts
    // before authentication.
    assert_eq!(lists[6], "none,zlib@openssh.com", "{lists:?}");
    assert_eq!(lists[7], "none,zlib@openssh.com", "{lists:?}");
}

#[tokio::test]
async fn full_screen_sessions_that_stop_reading_a_flood_are_charged_then_closed_while_others_chat()
{
    /// Sessions on terminals nobody reads.
    const STUCK: usize = 3;
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new()
        .args(&["--ping-interval", "2s", "--max-memory", "32MiB"])
        .args(&["--max-frame", "1048576"])
        .start();
    say_from(
        &server,
        &keys.path("rsa"),
        "bob",
        "127.0.0.2",
        "bob is here",
    )
    .await;
    // Full-screen sessions of 500x200 from 127.0.0.3 whose terminals nobody reads.
    // debug-me's PTY, never read: what `ssh -tt` writes to it soon blocks, and the client
    // stops taking what the server sends.
    let mut terminals = Vec::new();
    for (i, key) in ["ed25519", "ecdsa256", "ecdsa384"].iter().enumerate() {
        let command = ssh_from(
            &server,
            &keys.path(key),
            &format!("stuck{i}"),
            "127.0.0.3",
            &["-tt"],
        );
        let args: Vec<std::ffi::OsString> =
            ["TERM=xterm-256color".into(), command.get_program().into()]
                .into_iter()
                .chain(command.get_args().map(Into::into))
                .collect();
        let size = kanava_debugme_client::pty::Size {
            cols: 500,
            rows: 200,
        };
        terminals.push(kanava_debugme_client::pty::Pty::spawn(&"env".into(), &args, size).unwrap());
    }
    server
        .wait_metric("kanava_ssh_sessions", STUCK as f64)
        .await;
    let mut pair = crate::mles_limits::Pair::join(&server, "127.0.0.6").await;
    // A Mles client from 127.0.0.4 floods the lobby with 256 KiB messages.
    let mut flooder = server
        .client()
        .with_source("127.0.0.4")
        .join("flooder", "lobby")
        .await;
    let flood = tokio::spawn(async move {
        let line = "x".repeat(256 * 1024);
        while futures_util::SinkExt::send(&mut flooder, text(&line))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    // Each scrollback keeps a megabyte of the flood (64 KiB a line), charged past 64 KiB.
    let flooded = Instant::now();
    let charged = pair
        .chat_while(async {
            let mut most = 0.0f64;
            while flooded.elapsed() < WAIT && most < STUCK as f64 * 768.0 * 1024.0 {
                most = most.max(server.metric("kanava_memory_payload_bytes").await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            most
        })
        .await;
    assert!(
        charged >= STUCK as f64 * 768.0 * 1024.0,
        "the sessions' scrollbacks are not charged: {charged}"
    );
    // None of the terminals is read: OpenSSH, its output full, stops answering keepalives, and
    // every session is closed after four silent intervals (a client that answers them but
    // takes nothing is closed once its output has waited as long: see crates/ssh/src/output.rs),
    // while bob and the Mles pair go on.
    pair.chat_while(wait_until_async_within(
        "the stuck sessions are closed",
        Duration::from_secs(20),
        || async { server.metric("kanava_ssh_sessions").await == 0.0 },
    ))
    .await;
    assert!(
        flooded.elapsed() >= Duration::from_secs(6),
        "closed after only {:?}",
        flooded.elapsed()
    );
    assert!(server.rss_kib() < RSS_BOUND_KIB, "{} KiB", server.rss_kib());
    flood.abort();
    let seen = pair
        .chat_while(async {
            say_from(
                &server,
                &keys.path("rsa"),
                "bob",
                "127.0.0.2",
                "bob still chats",
            )
            .await;
            run(ssh_from(
                &server,
                &keys.path("rsa"),
                "bob",
                "127.0.0.2",
                &["tail", "lobby", "-n", "3"],
            ))
            .await
        })
        .await;
    assert!(
        String::from_utf8_lossy(&seen.stdout).contains("bob still chats"),
        "{}",
        stderr(&seen)
    );
    pair.chat_while(wait_until_async(
        "the closed sessions' charges are given back",
        || async { server.metric("kanava_memory_payload_bytes").await < 1024.0 * 1024.0 },
    ))
    .await;
    drop(terminals);
}

#[tokio::test]
async fn output_that_does_not_fit_the_memory_budget_ends_the_session_with_the_reason() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new().args(&["--max-memory", "1MiB"]).start();
    // A Mles client from 127.0.0.4 leaves five messages of 60 KiB in the lobby.
    let mut writer = server
        .client()
        .with_source("127.0.0.4")
        .join("writer", "lobby")
        .await;
    for i in 0..5 {
        let line = format!("big{i} {}", "y".repeat(60 * 1024));
        futures_util::SinkExt::send(&mut writer, text(&line))
            .await
            .unwrap();
    }
    let tail = || {
        run(ssh_from(
            &server,
            &keys.path("rsa"),
            "bob",
            "127.0.0.2",
            &["tail", "lobby", "-n", "10"],
        ))
    };
    wait_until_async("the five are stored", || async {
        let out = tail().await;
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("big4 ")
    })
    .await;
    // A debug-me user from 127.0.0.5 holds 900 KiB of a frame: little of the budget is left.
    let mut attacker = crate::debugme_limits::versioned_from("127.0.0.5", &server).await;
    crate::debugme_server::open_session(&mut attacker, "nobody").await;
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&1_000_000u64.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend(std::iter::repeat_n(b'L', 900 * 1024));
    tokio::io::AsyncWriteExt::write_all(attacker.get_mut(), &frame)
        .await
        .unwrap();
    wait_until_async("the partial frame is charged", || async {
        server.metric("kanava_memory_payload_bytes").await >= 900.0 * 1024.0
    })
    .await;
    // Bob's 300 KiB of output does not fit: his session ends, and he is told why.
    let refused = tail().await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("memory budget is exhausted"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        server
            .metric(r#"kanava_ssh_sessions_closed_total{reason="memory"}"#)
            .await,
        1.0
    );
    // Short answers still fit.
    served_from_another_address(&server, &keys.path("rsa"), "bob").await;
    // Once the budget is free again, the same output is served whole.
    drop(attacker);
    wait_until_async("the partial frame is given back", || async {
        server.metric("kanava_memory_payload_bytes").await == 0.0
    })
    .await;
    let served = tail().await;
    assert!(served.status.success(), "{}", stderr(&served));
    assert_eq!(
        String::from_utf8_lossy(&served.stdout)
            .matches(" <~writer> big")
            .count(),
        5
    );
}
