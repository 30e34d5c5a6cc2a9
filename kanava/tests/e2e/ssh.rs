//! SSH chat with the real OpenSSH client: trust on first use, every key type, exec commands,
//! rooms shared with Mles, sanitising, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::AsyncReadExt;

use crate::support::*;

/// Client keys of every type, made by `ssh-keygen`.
pub struct Keys(tempfile::TempDir);

impl Keys {
    pub fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            ("ed25519", &["-t", "ed25519"][..]),
            ("ecdsa256", &["-t", "ecdsa", "-b", "256"]),
            ("ecdsa384", &["-t", "ecdsa", "-b", "384"]),
            ("ecdsa521", &["-t", "ecdsa", "-b", "521"]),
            ("rsa", &["-t", "rsa", "-b", "3072"]),
        ] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-N", ""])
                .args(args)
                .arg("-f")
                .arg(dir.path().join(name))
                .status()
                .expect("ssh-keygen (openssh-client) is installed");
            assert!(status.success());
        }
        Keys(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// `ssh` with a deterministic configuration: no user config, no agent, only the given keys.
pub fn ssh_command(server: &Kanava, keys: &[&Path], user: &str) -> Command {
    ssh_command_with(server, keys, user, &[])
}

/// [`ssh_command`] with more options (`-b 127.0.0.2`, `-o ControlPath=…`), which must come
/// before the destination.
pub fn ssh_command_with(server: &Kanava, keys: &[&Path], user: &str, options: &[&str]) -> Command {
    let mut command = Command::new("ssh");
    command
        .args(options)
        .args(["-F", "/dev/null", "-p", &server.ssh_port.to_string()])
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]);
    for key in keys {
        command.arg("-i").arg(key);
    }
    command.arg(format!("{user}@127.0.0.1"));
    command
}

/// Runs `ssh … user@host ARGS` to completion.
pub async fn ssh(server: &Kanava, keys: &[&Path], user: &str, args: &[&str]) -> Output {
    let mut command = ssh_command(server, keys, user);
    command.args(args).stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        command.output().expect("ssh (openssh-client) is installed")
    })
    .await
    .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the server refused `ssh`'s keys (`what` names the attempt): OpenSSH says
/// `Permission denied (publickey)` and exits 255.
pub fn assert_key_refused(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(255), "{what}: {}", stderr(out));
    assert!(
        stderr(out).contains("Permission denied (publickey)"),
        "{what}: {}",
        stderr(out)
    );
}

#[tokio::test]
async fn the_first_key_owns_a_name_across_restarts_for_every_key_type() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    for (user, key) in [
        ("ed", "ed25519"),
        ("ec256", "ecdsa256"),
        ("ec384", "ecdsa384"),
        ("ec521", "ecdsa521"),
        ("rsa", "rsa"),
    ] {
        let out = ssh(&server, &[&keys.path(key)], user, &["rooms"]).await;
        assert!(out.status.success(), "{key}: {}", stderr(&out));
    }
    // Another key for a bound name is refused; OpenSSH exits 255.
    let impostor = ssh(&server, &[&keys.path("rsa")], "ed", &["rooms"]).await;
    assert_key_refused(&impostor, "another key for ed");
    // Offered first, the wrong key is refused at the offer and the right one then logs in.
    let both = ssh(
        &server,
        &[&keys.path("rsa"), &keys.path("ed25519")],
        "ed",
        &["rooms"],
    )
    .await;
    assert!(both.status.success(), "{}", stderr(&both));
    // Names compare case-insensitively.
    let upper = ssh(&server, &[&keys.path("rsa")], "ED", &["rooms"]).await;
    assert_eq!(upper.status.code(), Some(255));

    assert!(server.terminate());
    let server = Start::new().data(&data).start();
    let impostor = ssh(&server, &[&keys.path("ecdsa256")], "ec521", &["rooms"]).await;
    assert_eq!(
        impostor.status.code(),
        Some(255),
        "binding lost in the restart"
    );
    let owner = ssh(&server, &[&keys.path("ecdsa521")], "ec521", &["rooms"]).await;
    assert!(owner.status.success(), "{}", stderr(&owner));
    // An invalid name is refused too.
    let bad = ssh(&server, &[&keys.path("ed25519")], "no/slashes", &["rooms"]).await;
    assert_eq!(bad.status.code(), Some(255));
}

#[tokio::test]
async fn the_host_key_is_kept_across_restarts() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("host key SHA256:"))
    );
    let public = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(data.join("ssh/host_ed25519"))
        .output()
        .unwrap();
    assert!(public.status.success());
    let host_key = String::from_utf8(public.stdout).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let trust = |server: &Kanava| {
        let line = format!("[127.0.0.1]:{} {host_key}", server.ssh_port);
        std::fs::write(&known_hosts, line).unwrap();
    };
    let strict = |server: &Kanava| {
        let mut command = ssh_command(server, &[&keys.path("ed25519")], "alice");
        command
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("rooms");
        command.output().unwrap()
    };
    trust(&server);
    assert!(strict(&server).status.success());
    assert!(server.terminate());
    // The restart listens on a new port; the key the client trusts is the same.
    let server = Start::new().data(&data).start();
    trust(&server);
    let out = strict(&server);
    assert!(out.status.success(), "host key changed: {}", stderr(&out));
}

#[tokio::test]
async fn exec_commands_print_plain_lines_and_exit_with_meaningful_statuses() {
    let keys = Keys::new();
    let server = Kanava::start();
    let ed = keys.path("ed25519");
    let room = channel("exec");
    let say = ssh(
        &server,
        &[&ed],
        "alice",
        &["say", &format!("#{room}"), "hello", "there"],
    )
    .await;
    assert!(say.status.success(), "{}", stderr(&say));
    assert!(say.stdout.is_empty());
    let bob_say = ssh(
        &server,
        &[&keys.path("rsa")],
        "bob",
        &["say", &room, "second"],
    )
    .await;
    assert!(bob_say.status.success());

    let tail = ssh(&server, &[&ed], "alice", &["tail", &room]).await;
    assert!(tail.status.success());
    // A say stores its message and no join.
    let lines: Vec<String> = stdout(&tail).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with(" <alice> hello there"), "{lines:?}");
    assert!(lines[1].ends_with(" <bob> second"), "{lines:?}");
    assert!(
        lines[0].starts_with("20") && lines[0].as_bytes()[19] == b'Z',
        "{lines:?}"
    );
    let tail1 = ssh(&server, &[&ed], "alice", &["tail", &room, "-n", "1"]).await;
    assert_eq!(stdout(&tail1).lines().count(), 1);

    // who and rooms list members present; a tail -f is present while it runs.
    let mut follow = ssh_command(&server, &[&ed], "alice");
    follow
        .args(["tail", &room, "-n", "0", "-f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut follower = tokio::process::Command::from(follow)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    server.wait_metric("kanava_members", 1.0).await;
    let who = ssh(&server, &[&keys.path("rsa")], "bob", &["who", &room]).await;
    assert_eq!(stdout(&who), "alice\n");
    let rooms = ssh(&server, &[&keys.path("rsa")], "bob", &["rooms"]).await;
    assert!(
        stdout(&rooms).contains(&format!("#{room} 1\n")),
        "{}",
        stdout(&rooms)
    );
    let live = ssh(
        &server,
        &[&keys.path("rsa")],
        "bob",
        &["say", &room, "live", "line"],
    )
    .await;
    assert!(live.status.success());
    let mut followed = follower.stdout.take().unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("<bob> live line\n") {
            let n = followed.read(&mut buf).await.unwrap();
            assert!(n > 0, "tail -f ended early");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("tail -f shows the new line");
    follower.kill().await.unwrap();

    // Errors: unknown command and usage (2), too long (1), all on stderr.
    let unknown = ssh(&server, &[&ed], "alice", &["frobnicate"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown command") && stderr(&unknown).contains("say ROOM"));
    let usage = ssh(&server, &[&ed], "alice", &["say", &room]).await;
    assert_eq!(usage.status.code(), Some(2));
    let long = "x".repeat(5000);
    let too_long = ssh(&server, &[&ed], "alice", &["say", &room, &long]).await;
    assert_eq!(too_long.status.code(), Some(1));
    assert!(stderr(&too_long).contains("longer than 4096 bytes"));
    // Without a command or a terminal, a login is the line interface: EOF ends it with 0.
    let lines = ssh(&server, &[&ed], "alice", &[]).await;
    assert_eq!(lines.status.code(), Some(0), "{}", stderr(&lines));
    // A terminal with a 0x0 size (`ssh -tt` with no tty) gets the chat at 80x24; EOF on its
    // input ends it with 0, the alternate screen left behind it.
    let terminal = ssh(&server, &[&ed], "alice", &["-tt"]).await;
    assert_eq!(terminal.status.code(), Some(0), "{}", stderr(&terminal));
    let screen = stdout(&terminal);
    assert!(screen.starts_with("\x1b[?1049h"), "{screen:?}");
    assert!(screen.contains("#lobby"), "{screen:?}");
    assert!(screen.ends_with("\x1b[?1049l"), "{screen:?}");
}

#[tokio::test]
async fn one_room_two_transports() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let room = channel("shared");
    let mut mles = client.join("mlesuser", &room).await;
    server.wait_metric("kanava_members", 1.0).await;

    // SSH to Mles: the line arrives as a text frame, bytes unchanged.
    let say = ssh(
        &server,
        &[&keys.path("ed25519")],
        "alice",
        &["say", &format!("#{room}"), "hi", "mles ✓"],
    )
    .await;
    assert!(say.status.success(), "{}", stderr(&say));
    assert_eq!(recv(&mut mles).await, text("hi mles ✓"));
    // A say stores its message and no join: a later joiner is replayed the Mles client's join
    // header, then the message.
    let mut late = client.join("late", &room).await;
    let replay = recv_n(&mut late, 2).await;
    assert_eq!(
        json(&replay[0]),
        serde_json::json!({"uid": "mlesuser", "channel": room})
    );
    assert_eq!(replay[1], text("hi mles ✓"));

    // Mles to SSH: text as "<uid> text", binary as a placeholder, escapes neutralised.
    mles.send(text("from the web")).await.unwrap();
    mles.send(binary(&[0u8; 24])).await.unwrap();
    mles.send(text(
        "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u{9b}31m\x1b]52;c;aGk=\x07\r\u{202e}x",
    ))
    .await
    .unwrap();
    server.wait_metric("kanava_frames_in_total", 4.0).await;
    drop(late);
    let tail = ssh(&server, &[&keys.path("ed25519")], "alice", &["tail", &room]).await;
    let out = stdout(&tail);
    assert!(out.contains("<~mlesuser> from the web\n"), "{out}");
    assert!(out.contains("<~mlesuser> [binary, 24 bytes]\n"), "{out}");
    assert!(
        out.contains("<~mlesuser> ^[]0;pwned^G^[[2J^[[31mred\u{fffd}31m^[]52;c;aGk=^G^Mx\n"),
        "{out}"
    );
    assert!(
        !tail.stdout.contains(&0x1b),
        "an ESC byte reached the terminal"
    );
    assert!(
        !tail.stdout.iter().any(|b| *b < 0x20 && *b != b'\n'),
        "a control byte reached the terminal"
    );

    // A Mles client holding a name keeps it in its room: SSH cannot post as it there.
    let clash = ssh(
        &server,
        &[&keys.path("rsa")],
        "mlesuser",
        &["say", &room, "x"],
    )
    .await;
    assert_eq!(clash.status.code(), Some(1));
    assert!(
        stderr(&clash).contains("as a Mles client"),
        "{}",
        stderr(&clash)
    );
}

#[tokio::test]
async fn clients_that_never_finish_the_handshake_are_dropped() {
    let server = Start::new().args(&["--ssh-auth-timeout", "1s"]).start();
    let started = std::time::Instant::now();
    // Sends nothing at all.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", server.ssh_port))
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, silent.read_to_end(&mut sink))
        .await
        .expect("closed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(sink.starts_with(b"SSH-2.0-"), "the server greets first");
    // Garbage instead of an SSH greeting.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", server.ssh_port))
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    garbage.write_all(&[0xff; 4096]).await.unwrap();
    let _ = tokio::time::timeout(WAIT, garbage.read_to_end(&mut sink))
        .await
        .expect("closed");
    // The server still serves.
    let keys = Keys::new();
    let out = ssh(&server, &[&keys.path("ed25519")], "alice", &["rooms"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.metric("kanava_ssh_connections").await, 0.0);
}

/// Starts `ssh -T … user@host EXTRA` (a line session) with stdin, stdout and stderr piped;
/// killed on drop.
pub fn spawn_lines(
    server: &Kanava,
    key: &Path,
    user: &str,
    extra: &[&str],
) -> tokio::process::Child {
    let mut command = ssh_command(server, &[key], user);
    command
        .arg("-T")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("ssh (openssh-client) is installed")
}

/// Runs `ssh -T … user@host` with `input` on stdin until it exits.
pub async fn ssh_lines(
    server: &Kanava,
    key: &Path,
    user: &str,
    extra: &[&str],
    input: Vec<u8>,
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = spawn_lines(server, key, user, extra);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("ssh -T exits after EOF")
        .unwrap()
}

#[tokio::test]
async fn line_mode_posts_lines_answers_commands_and_never_echoes() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut lobby = client.join("web", "lobby").await;
    server.wait_metric("kanava_members", 1.0).await;
    let out = ssh_lines(
        &server,
        &keys.path("ed25519"),
        "alice",
        &[],
        b"hi\r\n/who\nsecond\n".to_vec(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!out.stdout.contains(&0x1b), "an escape sequence was sent");
    assert!(
        !stdout(&out).contains("hi"),
        "own message echoed: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("2 here: alice, ~web"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recv(&mut lobby).await, text("hi"));
    assert_eq!(recv(&mut lobby).await, text("second"));

    // /join moves to another room; its backlog is printed first.
    let room = channel("joined");
    let say = ssh(
        &server,
        &[&keys.path("rsa")],
        "bob",
        &["say", &room, "earlier"],
    )
    .await;
    assert!(say.status.success());
    let out = ssh_lines(
        &server,
        &keys.path("ed25519"),
        "alice",
        &[],
        format!("/join #{room}\nin the room\n/bogus\x1b[2J\n").into_bytes(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("<bob> earlier\n"), "{}", stdout(&out));
    assert!(stderr(&out).contains("unknown command"), "{}", stderr(&out));
    // The answer quotes the command as typed, escape sequence neutralised.
    assert!(stderr(&out).contains("/bogus^[[2J"), "{}", stderr(&out));
    assert!(
        !out.stderr.contains(&0x1b),
        "an escape sequence was sent back"
    );
    let tail = ssh(&server, &[&keys.path("rsa")], "bob", &["tail", &room]).await;
    assert!(
        stdout(&tail).contains("<alice> in the room\n"),
        "{}",
        stdout(&tail)
    );
}

#[tokio::test]
async fn a_bot_can_skip_the_backlog_and_gets_live_events() {
    use tokio::io::AsyncBufReadExt;
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut web = client.join("web", "lobby").await;
    web.send(text("old news")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    let mut bot = spawn_lines(
        &server,
        &keys.path("ed25519"),
        "bot",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
    );
    server.wait_metric("kanava_members", 2.0).await;
    web.send(text("live news")).await.unwrap();
    let mut lines = tokio::io::BufReader::new(bot.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.ends_with(" <~web> live news"),
        "the backlog was not skipped: {first}"
    );
    drop(bot.stdin.take());
    let status = tokio::time::timeout(WAIT, bot.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_pasted_block_passes_the_rate_limit_and_a_flood_does_not() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut lobby = client.join("web", "lobby").await;
    server.wait_metric("kanava_members", 1.0).await;
    let input: String = (0..25).map(|i| format!("line {i}\n")).collect();
    let out = ssh_lines(
        &server,
        &keys.path("ed25519"),
        "alice",
        &[],
        input.into_bytes(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    for i in 0..20 {
        assert_eq!(recv(&mut lobby).await, text(&format!("line {i}")));
    }
    assert_eq!(
        stderr(&out).matches("rate limit").count(),
        5,
        "{}",
        stderr(&out)
    );
    // The limit is per user: a second connection as alice right away gets only what the
    // bucket refilled meanwhile (2 a second).
    let spent = std::time::Instant::now();
    let input: String = (0..5).map(|i| format!("again {i}\n")).collect();
    let again = ssh_lines(
        &server,
        &keys.path("ed25519"),
        "alice",
        &[],
        input.into_bytes(),
    )
    .await;
    let refilled = (spent.elapsed().as_secs_f64() * 2.0).floor() as usize;
    let passed = 5 - stderr(&again).matches("rate limit").count();
    assert!(
        passed <= refilled,
        "{passed} passed with {refilled} refilled"
    );
    for i in 0..passed {
        assert_eq!(recv(&mut lobby).await, text(&format!("again {i}")));
    }
    assert!(
        drain_for(&mut lobby, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_10_mb_line_and_invalid_utf8_are_handled() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut lobby = client.join("web", "lobby").await;
    server.wait_metric("kanava_members", 1.0).await;
    let mut input = vec![b'a'; 10 * 1024 * 1024];
    input.extend_from_slice(b"\nafter\n\xff\xfeok\n");
    let out = ssh_lines(&server, &keys.path("ed25519"), "alice", &[], input).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("longer than 4096 bytes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recv(&mut lobby).await, text("after"));
    assert_eq!(recv(&mut lobby).await, text("\u{fffd}\u{fffd}ok"));
    let rooms = ssh(&server, &[&keys.path("ed25519")], "alice", &["rooms"]).await;
    assert!(rooms.status.success());
}

#[tokio::test]
async fn a_connection_that_floods_past_the_input_rate_is_disconnected() {
    let keys = Keys::new();
    // 1 KiB/s, so 64 KiB at once.
    let server = Start::new().args(&["--ssh-input-rate", "1024"]).start();
    use tokio::io::AsyncWriteExt;
    let mut flood = spawn_lines(&server, &keys.path("ed25519"), "alice", &[]);
    let mut stdin = flood.stdin.take().unwrap();
    // The write fails once ssh has exited: the server ended the connection.
    let _ = stdin.write_all(&vec![b'a'; 1024 * 1024]).await;
    let status = tokio::time::timeout(WAIT, flood.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(255));
    assert_eq!(server.metric("kanava_ssh_input_limited_total").await, 1.0);
    // Others, and the same user on a new connection, are not affected.
    let rooms = ssh(&server, &[&keys.path("ed25519")], "alice", &["rooms"]).await;
    assert!(rooms.status.success(), "{}", stderr(&rooms));
}

#[tokio::test]
async fn one_connection_with_100_channels_is_served() {
    let keys = Keys::new();
    // The session caps (4 per connection, 16 per user by default) raised for the occasion.
    let server = Start::new()
        .args(&[
            "--ssh-max-sessions",
            "100",
            "--ssh-max-sessions-per-user",
            "100",
        ])
        .start();
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control");
    let master_args = |command: &mut Command| {
        command
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=30"])
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()));
    };
    // The first command starts the shared connection; then 100 sessions run over it at once.
    // They read (posting would meet the rate limit, which covers scripts too).
    let mut first = ssh_command(&server, &[&keys.path("ed25519")], "alice");
    master_args(&mut first);
    first.args(["say", "many", "opened"]);
    assert!(first.status().unwrap().success());
    let mut children = Vec::new();
    for i in 0..100 {
        let mut command = ssh_command(&server, &[&keys.path("ed25519")], "alice");
        master_args(&mut command);
        command
            .args(["tail", "many", "-n", &format!("{}", i + 1)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(
            tokio::process::Command::from(command)
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    for child in children {
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success() && stdout(&out).contains("<alice> opened"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        server.metric("kanava_ssh_connections").await,
        1.0,
        "all over one connection"
    );
    let mut stop = ssh_command(&server, &[&keys.path("ed25519")], "alice");
    master_args(&mut stop);
    stop.args(["-O", "exit"]).stderr(Stdio::null());
    let _ = stop.status();
}

/// `kanava users ARGS --data DIR`.
pub fn users(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kanava"))
        .arg("users")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

#[tokio::test]
async fn operators_list_reserve_and_release_names_while_the_server_runs() {
    let keys = Keys::new();
    let server = Kanava::start();
    let login = ssh(&server, &[&keys.path("ed25519")], "alice", &["rooms"]).await;
    assert!(login.status.success());

    // The listed fingerprint is the one ssh-keygen prints.
    let keygen = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(keys.path("ed25519.pub"))
        .output()
        .unwrap();
    let expected = String::from_utf8(keygen.stdout).unwrap();
    let expected = expected.split_whitespace().nth(1).unwrap().to_owned();
    let list = users(&server.data, &["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed = stdout(&list);
    let alice = listed
        .lines()
        .find(|l| l.starts_with("alice "))
        .expect("alice listed");
    assert_eq!(
        alice.split_whitespace().nth(1),
        Some(expected.as_str()),
        "{listed}"
    );

    // Reserve a name for a key: only that key logs in as it.
    let reserve = users(
        &server.data,
        &[
            "reserve",
            "carol",
            keys.path("ecdsa256.pub").to_str().unwrap(),
        ],
    );
    assert!(reserve.status.success(), "{}", stderr(&reserve));
    let wrong = ssh(&server, &[&keys.path("ed25519")], "carol", &["rooms"]).await;
    assert_eq!(wrong.status.code(), Some(255));
    let right = ssh(&server, &[&keys.path("ecdsa256")], "carol", &["rooms"]).await;
    assert!(right.status.success());
    let taken = users(
        &server.data,
        &["reserve", "alice", keys.path("rsa.pub").to_str().unwrap()],
    );
    assert_eq!(taken.status.code(), Some(1));
    assert!(stderr(&taken).contains("belongs to another key"));

    // Release a name: the next key to log in owns it.
    assert!(users(&server.data, &["release", "alice"]).status.success());
    let new_owner = ssh(&server, &[&keys.path("rsa")], "alice", &["rooms"]).await;
    assert!(new_owner.status.success(), "{}", stderr(&new_owner));
    let old_owner = ssh(&server, &[&keys.path("ed25519")], "alice", &["rooms"]).await;
    assert_eq!(old_owner.status.code(), Some(255));
    assert_eq!(
        users(&server.data, &["release", "nobody"]).status.code(),
        Some(1)
    );
    let bad_key = users(&server.data, &["reserve", "dave", "ssh-ed25519 not-base64"]);
    assert_eq!(bad_key.status.code(), Some(1));
    assert!(
        stderr(&bad_key).contains("not an OpenSSH public key"),
        "{}",
        stderr(&bad_key)
    );
}

#[tokio::test]
async fn a_killed_client_reconnects_at_once_with_its_name() {
    let keys = Keys::new();
    let server = Kanava::start();
    let mut first = spawn_lines(&server, &keys.path("ed25519"), "alice", &[]);
    server.wait_metric("kanava_members", 1.0).await;
    // SIGKILL: the server learns nothing until TCP or keepalive tells it.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let again = ssh(
        &server,
        &[&keys.path("ed25519")],
        "alice",
        &["say", "lobby", "back"],
    )
    .await;
    assert!(
        again.status.success(),
        "reconnect refused: {}",
        stderr(&again)
    );
    let tail = ssh(
        &server,
        &[&keys.path("ed25519")],
        "alice",
        &["tail", "lobby"],
    )
    .await;
    assert!(
        stdout(&tail).contains("<alice> back\n"),
        "{}",
        stdout(&tail)
    );
}

#[tokio::test]
async fn a_multi_line_message_shows_as_indented_continuation_lines_in_tail_and_line_mode() {
    let keys = Keys::new();
    let server = Kanava::start();
    let room = channel("lines");
    let mut alice = crate::chat::LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    alice.send(&format!("/join #{room}")).await;
    let mut web = server.client().join("web", &room).await;
    alice
        .out_line("web's arrival", |l| l.ends_with(" * ~web joined"))
        .await;
    // A Mles client sends three lines (a CRLF among the breaks, a tab and an escape in them).
    web.send(text("first\nsecond\r\n\tthird\x1b[2J"))
        .await
        .unwrap();

    // The line interface: the first line as usual, then one line each, indented under the
    // text, the tab expanded and the escape shown as a placeholder.
    let first = alice
        .out_line("the first line", |l| l.ends_with(" <~web> first"))
        .await;
    let indent = " ".repeat(first.len() - "first".len());
    let expected = [format!("{indent}second"), format!("{indent}    third^[[2J")];
    for want in &expected {
        alice
            .out_line("a continuation line", |l| {
                assert_eq!(l, want, "the line after {first:?}");
                true
            })
            .await;
    }

    // tail: the same lines.
    let tail = ssh(&server, &[&keys.path("rsa")], "bob", &["tail", &room]).await;
    assert!(tail.status.success(), "{}", stderr(&tail));
    let out = stdout(&tail);
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with(" <~web> first"))
        .unwrap_or_else(|| panic!("no message in the tail:\n{out}"));
    let indent = " ".repeat(lines[at].len() - "first".len());
    assert_eq!(
        lines[at + 1..],
        [
            format!("{indent}second").as_str(),
            &format!("{indent}    third^[[2J")
        ],
        "{out}"
    );
    assert!(
        !tail.stdout.iter().any(|b| *b < 0x20 && *b != b'\n'),
        "a control byte reached the terminal:\n{out}"
    );
}
