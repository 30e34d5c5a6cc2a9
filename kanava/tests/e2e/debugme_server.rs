//! The debug-me server with the real `debug-me` program: a real user session (in a terminal,
//! through tmux) on kanava, a real `--download` of it live and after it ended, and both
//! `debug-me --verify` and `kanava verify` accepting what kanava's server wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

/// How long a terminal of the real debug-me is given to show what a step awaits: its programs
/// sign every message and are slow on a loaded machine.
pub(crate) const SCREEN_WAIT: Duration = Duration::from_secs(30);

/// A private tmux server running each role with its own `~/.debug-me` (debug-me takes it from
/// the passwd entry, so a scratch directory is bind-mounted over it in a private mount
/// namespace), and its own GnuPG home. Killed on drop.
pub(crate) struct Roles {
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Roles {
    pub(crate) fn new() -> Roles {
        let dir = tempfile::tempdir().unwrap();
        let inhome = dir.path().join("inhome");
        std::fs::write(
            &inhome,
            "#!/bin/sh\nd=$1; shift; mkdir -p \"$d\"\nexec unshare -m --propagation private sh -c '\n  h=$(getent passwd \"$(id -u)\" | cut -d: -f6)\n  mkdir -p \"$h/.debug-me\" && mount --bind \"$0\" \"$h/.debug-me\" && exec \"$@\"' \"$d\" \"$@\"\n",
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&inhome).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&inhome, permissions).unwrap();
        Roles {
            socket: dir.path().join("tmux.sock"),
            dir,
        }
    }

    pub(crate) fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `command` for `role` in a terminal, in `cwd`, with its own ~/.debug-me and GnuPG
    /// home; the pane shows `EXIT=N` when it ends.
    pub(crate) fn run(&self, role: &str, cwd: &Path, command: &str) {
        self.run_in(role, role, cwd, command);
    }

    /// Runs `command` as `role` in the ~/.debug-me and GnuPG home of `home` (the control
    /// window shares the user's).
    pub(crate) fn run_in(&self, role: &str, home: &str, cwd: &Path, command: &str) {
        let gnupg = self.gnupg(home);
        let home = self.dir.path().join(format!("dot-{home}"));
        let line = format!(
            "{} {} env -u DISPLAY GNUPGHOME={} {command}; echo EXIT=$?; sleep 3600",
            self.dir.path().join("inhome").display(),
            home.display(),
            gnupg.display()
        );
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            role,
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            cwd.to_str().unwrap(),
            &line,
        ]);
    }

    /// The GnuPG home of `role` (created, private).
    pub(crate) fn gnupg(&self, role: &str) -> PathBuf {
        private_dir(&self.dir.path().join(format!("gnupg-{role}")))
    }

    /// Starts a real debug-me user session on the server at `url` (an `http://` URL ending in
    /// `/`), running /bin/sh; returns the session's URL and id once it has started.
    pub(crate) async fn start_user(&self, cwd: &Path, url: &str) -> (String, String) {
        self.run(
            "user",
            cwd,
            &format!("debug-me --use-server {url} --run /bin/sh"),
        );
        self.wait("user", "the email prompt", |s| {
            s.contains("Enter your email address")
        })
        .await;
        // Without an @, the server mails nothing.
        self.keys("user", "nobody");
        let screen = self
            .wait("user", "the session URL", |s| {
                s.contains(&format!("debug-me {url}"))
            })
            .await;
        let session_url = screen
            .split_whitespace()
            .find(|w| w.starts_with(url) && w.len() == url.len() + 36)
            .unwrap_or_else(|| panic!("no session URL in:\n{screen}"))
            .to_owned();
        self.wait("user", "the session start", |s| {
            s.contains("debug-me session started")
        })
        .await;
        let id = session_url[url.len()..].to_owned();
        (session_url, id)
    }

    /// With a user session running: opens the user's real control window, starts a real
    /// developer at `developer_url` (with the "dev" GnuPG home), gives consent in the control
    /// window, then starts a real watcher at `watcher_url`; returns once it shows the session.
    pub(crate) async fn admit_developer_and_watcher(
        &self,
        cwd: &Path,
        developer_url: &str,
        watcher_url: &str,
    ) {
        self.run_in("control", "user", cwd, "debug-me --control");
        self.run("dev", cwd, &format!("debug-me {developer_url}"));
        self.wait("control", "the consent prompt", |s| {
            s.contains("run commands? [y/n]")
        })
        .await;
        self.keys("control", "y");
        self.wait("control", "the acceptance", |s| {
            s.contains("Connection accepted")
        })
        .await;
        self.run("watch", cwd, &format!("debug-me --watch {watcher_url}"));
        self.wait("watch", "the session", |s| {
            s.contains("debug-me session started")
        })
        .await;
    }

    /// A role's log of session `id`, as debug-me names it in its ~/.debug-me.
    pub(crate) fn log(&self, home: &str, remote: bool, id: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("dot-{home}/log"));
        let dir = if remote { dir.join("remote") } else { dir };
        dir.join(format!("debug-me.{id}.log"))
    }

    pub(crate) fn screen(&self, role: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", role])
    }

    /// Types `text` and Enter in one write, so that debug-me reads them as one chunk: a real
    /// watcher can crash when a developer's keys arrive as several quick Entered messages
    /// (spec 6.2; it happens against the reference server too).
    pub(crate) fn keys(&self, role: &str, text: &str) {
        self.tmux(&["send-keys", "-t", role, text, "Enter"]);
    }

    /// Waits until `role`'s screen satisfies `check`.
    pub(crate) async fn wait(
        &self,
        role: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen(role);
            if check(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                let others: String = self
                    .tmux(&["list-sessions", "-F", "#S"])
                    .lines()
                    .filter(|other| *other != role)
                    .map(|other| format!("\n--- {other}:\n{}", self.screen(other).trim_end()))
                    .collect();
                panic!("{role}'s terminal never showed {what}:\n{screen}\nthe others:{others}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The developer runs `echo WORD` in the shared shell; waits until each of `roles` shows
    /// `WORD` as a line of its own (the command's output).
    pub(crate) async fn developer_echoes(&self, word: &str, roles: &[&str]) {
        self.keys("dev", &format!("echo {word}"));
        for role in roles {
            self.wait(role, "the developer's command output", |s| {
                s.lines().any(|l| l.trim_end() == word)
            })
            .await;
        }
    }

    /// The developer ends the shared shell with `exit CODE`; waits until each of `roles` shows
    /// debug-me's end, and asserts that the user's shell ended with `code`.
    pub(crate) async fn developer_exits(&self, code: u8, roles: &[&str]) {
        self.keys("dev", &format!("exit {code}"));
        for role in roles {
            self.wait(role, "debug-me's exit", |s| s.contains("EXIT="))
                .await;
        }
        let user = self.screen("user");
        assert!(user.contains(&format!("EXIT={code}")), "{user}");
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with("gnupg-") {
                let _ = Command::new("gpgconf")
                    .env("GNUPGHOME", entry.path())
                    .args(["--kill", "gpg-agent"])
                    .output();
            }
        }
    }
}

pub(crate) fn debug_me(args: &[&str], cwd: &Path, gnupg: &Path) -> Output {
    Command::new("debug-me")
        .args(args)
        .current_dir(cwd)
        .env("GNUPGHOME", gnupg)
        .stdin(Stdio::null())
        .output()
        .expect("debug-me is installed (apt-get install debug-me)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_real_user_session_is_relayed_logged_downloaded_and_verified() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let url = format!("http://{}/", server.debug_me);
    let roles = Roles::new();
    let scratch = tempfile::tempdir().unwrap();
    let gnupg = roles.gnupg("verify");

    // A plain HTTP request gets debug-me's answer.
    let page = tokio::task::spawn_blocking({
        let addr = server.debug_me;
        move || {
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            let _ = tcp.read_to_string(&mut response);
            response
        }
    })
    .await
    .unwrap();
    assert!(page.starts_with("HTTP/1.1 400"), "{page}");
    assert!(page.ends_with("This is a debug-me server, it does not serve any html pages."));

    let (session_url, id) = roles.start_user(scratch.path(), &url).await;

    // A live download follows the session until it ends.
    let live_dir = scratch.path().join("live");
    std::fs::create_dir(&live_dir).unwrap();
    let live = tokio::process::Command::new("debug-me")
        .args(["--download", &session_url])
        .current_dir(&live_dir)
        .env("GNUPGHOME", &gnupg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let live_log = live_dir.join(format!("debug-me.{id}.log"));
    wait_until("the live download gets the backlog", || {
        std::fs::read_to_string(&live_log).is_ok_and(|l| l.lines().count() >= 2)
    })
    .await;
    roles.keys("user", "echo hello-from-the-user");
    roles
        .wait("user", "the echo", |s| s.contains("\nhello-from-the-user"))
        .await;
    roles.keys("user", "exit 3");
    roles
        .wait("user", "debug-me's exit", |s| s.contains("EXIT=3"))
        .await;
    let live = tokio::time::timeout(Duration::from_secs(30), live.wait_with_output())
        .await
        .expect("the live download ends with the session")
        .unwrap();
    assert!(live.status.success(), "{}", text(&live));

    // After the end, the finished session can still be downloaded.
    let after_dir = scratch.path().join("after");
    std::fs::create_dir(&after_dir).unwrap();
    let after = debug_me(&["--download", &session_url], &after_dir, &gnupg);
    assert!(after.status.success(), "{}", text(&after));
    let after_log = after_dir.join(format!("debug-me.{id}.log"));

    let server_log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    for log in [&server_log, &live_log, &after_log] {
        let contents = std::fs::read_to_string(log).unwrap();
        assert!(
            contents.contains("hello-from-the-user"),
            "{}",
            log.display()
        );
        assert!(
            contents.contains("debug-me session ended (3)"),
            "{}",
            log.display()
        );
        let reference = debug_me(&["--verify", log.to_str().unwrap()], scratch.path(), &gnupg);
        assert!(
            text(&reference).contains("Log file verified."),
            "debug-me --verify {}: {}",
            log.display(),
            text(&reference)
        );
        let ours = Command::new(env!("CARGO_BIN_EXE_kanava"))
            .arg("verify")
            .arg(log)
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "kanava verify {}: {}",
            log.display(),
            text(&ours)
        );
    }

    // An unknown session is refused as the reference refuses it.
    let unknown = debug_me(
        &[
            "--download",
            &format!("{url}00000000-0000-4000-8000-000000000000"),
        ],
        scratch.path(),
        &gnupg,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).contains("Unknown session ID"),
        "{}",
        text(&unknown)
    );
}

/// A whole real session on `server`, every role the real debug-me: a user, a developer with a
/// throwaway GnuPG key who runs `echo WORD`, a watcher, the user's chat "hello from the user"
/// (awaited in the server's log), then the developer exits with `code`. Returns the roles
/// (their logs), the session id and the server's log of it.
pub(crate) async fn real_session(
    server: &Kanava,
    scratch: &Path,
    word: &str,
    code: u8,
) -> (Roles, String, PathBuf) {
    let url = format!("http://{}/", server.debug_me);
    let roles = Roles::new();
    new_gpg_key(&roles.gnupg("dev"), "Dev");
    let (session_url, id) = roles.start_user(scratch, &url).await;
    roles
        .admit_developer_and_watcher(scratch, &session_url, &session_url)
        .await;
    roles.developer_echoes(word, &["watch", "user"]).await;
    // Chat from the user's control window is a signed control message, logged and relayed
    // (a developer shows it in its own control window).
    roles.keys("control", "hello from the user");
    let server_log = server.data.join(format!("debug-me/debug-me.{id}.log"));
    wait_until("the chat reaches the server's log", || {
        std::fs::read_to_string(&server_log).is_ok_and(|l| l.contains("hello from the user"))
    })
    .await;
    roles.developer_exits(code, &["user", "dev", "watch"]).await;
    (roles, id, server_log)
}

#[tokio::test]
async fn a_real_developer_types_into_a_real_users_shell_and_a_watcher_sees_it() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let (roles, id, _) = real_session(&server, scratch.path(), "hello-from-dev", 7).await;

    let gnupg = roles.gnupg("verify");
    let logs = [
        server.data.join(format!("debug-me/debug-me.{id}.log")),
        roles.log("user", false, &id),
        roles.log("dev", true, &id),
        roles.log("watch", true, &id),
    ];
    for log in &logs {
        let contents =
            std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert!(
            contents.contains("echo hello-from-dev"),
            "{}",
            log.display()
        );
        let reference = debug_me(&["--verify", log.to_str().unwrap()], scratch.path(), &gnupg);
        let ours = Command::new(env!("CARGO_BIN_EXE_kanava"))
            .args(["verify", "--json"])
            .arg(log)
            .output()
            .unwrap();
        // The user's own log may end misordered (spec 3.2), and then debug-me rejects it: the
        // verdicts must agree either way.
        assert_eq!(
            ours.status.success(),
            text(&reference).contains("Log file verified."),
            "{}: debug-me: {}; kanava: {}",
            log.display(),
            text(&reference),
            text(&ours)
        );
        if log == &logs[0] {
            assert!(ours.status.success(), "kanava's own log: {}", text(&ours));
            let report: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
            assert_eq!(report["keys"][1]["gpg_signer"], "Dev <dev@example.org>");
            assert!(
                !report["keys"][1]["accepted_at"]
                    .as_array()
                    .unwrap()
                    .is_empty()
            );
        }
    }
}

/// A raw debug-me client: a WebSocket over plain TCP.
pub(crate) type RawWs = WebSocketStream<tokio::net::TcpStream>;

pub(crate) async fn raw_client(server: &Kanava) -> RawWs {
    let tcp = tokio::net::TcpStream::connect(server.debug_me)
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", server.debug_me), tcp)
        .await
        .unwrap();
    ws
}

/// The next binary message, or `None` once the server closed.
pub(crate) async fn raw_recv<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Binary(bytes))) => return Some(bytes.to_vec()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

pub(crate) async fn raw_send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    bytes: &[u8],
) -> bool {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::binary(
        bytes.to_vec(),
    ))
    .await
    .is_ok()
}

/// Connects and exchanges versions.
pub(crate) async fn versioned(server: &Kanava) -> RawWs {
    let mut ws = raw_client(server).await;
    exchange_versions(&mut ws).await;
    ws
}

/// The version exchange a client makes first, on any stream.
pub(crate) async fn exchange_versions<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) {
    assert_eq!(raw_recv(ws).await.unwrap(), b"V[\"1\"]");
    assert!(raw_send(ws, b"V[\"1\"]").await);
}

/// Opens a session as a user who gave `email`; returns the session id.
pub(crate) async fn open_session<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    email: &str,
) -> String {
    let mode = format!("M{{\"tag\":\"InitMode\",\"contents\":\"{email}\"}}");
    assert!(raw_send(ws, mode.as_bytes()).await);
    let id = raw_recv(ws).await.expect("the session id");
    assert_eq!(id[0], b'R', "{}", String::from_utf8_lossy(&id));
    serde_json::from_slice(&id[1..]).unwrap()
}

/// Asserts that the server answers with an `E` frame containing `text`, then closes.
async fn refused<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, text: &str) {
    let answer = raw_recv(ws).await.expect("an E frame");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with('E') && answer.contains(text), "{answer}");
    assert_eq!(raw_recv(ws).await, None, "the connection stays open");
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_the_server_carries_on() {
    let server = Kanava::start();
    // No common version.
    let mut ws = raw_client(&server).await;
    raw_recv(&mut ws).await.unwrap();
    raw_send(&mut ws, b"V[\"2\"]").await;
    refused(&mut ws, "version").await;
    // Invalid UTF-8 JSON, an unknown tag, an empty frame, a JSON mode that is not one.
    for bad in [
        &b"V\xff\xfe"[..],
        b"Zhello",
        b"",
        b"M{\"tag\":\"Nonsense\"}",
    ] {
        let mut ws = raw_client(&server).await;
        raw_recv(&mut ws).await.unwrap();
        raw_send(&mut ws, bad).await;
        let answer = raw_recv(&mut ws).await.expect("an E frame");
        assert_eq!(
            answer[0],
            b'E',
            "{bad:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A session whose user sends protobuf garbage, then a truncated message.
    for garbage in [
        &[b'L', 0xff, 0xff, 0xff][..],
        &[b'L', 0xea, 0x01, 0x05, 0x22][..],
    ] {
        let mut ws = versioned(&server).await;
        open_session(&mut ws, "nobody").await;
        raw_send(&mut ws, garbage).await;
        refused(&mut ws, "Protocol buffers decode error").await;
    }
    // Unknown session.
    let mut ws = versioned(&server).await;
    raw_send(
        &mut ws,
        b"M{\"tag\":\"ConnectMode\",\"contents\":\"http://x/00000000-0000-4000-8000-000000000000\"}",
    )
    .await;
    refused(&mut ws, "Unknown session ID").await;
    // A 100 MB frame is cut off at the frame limit.
    let mut ws = versioned(&server).await;
    let huge = vec![b'L'; 100 * 1024 * 1024];
    let _ = raw_send(&mut ws, &huge).await;
    assert_eq!(raw_recv(&mut ws).await, None);
    // And the server still works.
    let mut ws = versioned(&server).await;
    open_session(&mut ws, "nobody").await;
}

#[tokio::test]
async fn finished_sessions_are_kept_for_the_retention_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let mut ws = versioned(&server).await;
    let id = open_session(&mut ws, "nobody").await;
    let said = user_messages(0);
    assert!(raw_send(&mut ws, &said[0]).await);
    let log = data.join(format!("debug-me/debug-me.{id}.log"));
    wait_until("the message is logged", || log.exists()).await;
    drop(ws);
    // Kept across a restart with the default retention, and still downloadable.
    assert!(server.terminate());
    let server = Start::new().data(&data).start();
    let mut ws = versioned(&server).await;
    let connect = format!("M{{\"tag\":\"ConnectMode\",\"contents\":\"http://x/{id}\"}}");
    raw_send(&mut ws, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut ws).await.unwrap()[0], b'R');
    assert_eq!(raw_recv(&mut ws).await.unwrap(), said[0]);
    assert_eq!(raw_recv(&mut ws).await.unwrap(), b"D");
    // Deleted once past a (short) retention.
    assert!(server.terminate());
    let server = Start::new()
        .data(&data)
        .args(&["--debug-me-retention", "1ms"])
        .start();
    let mut ws = versioned(&server).await;
    raw_send(&mut ws, connect.as_bytes()).await;
    refused(&mut ws, "Unknown session ID").await;
    assert!(!log.exists());
}

/// A user's signed messages, as the real client would send them: its session key, then Seen
/// output chained one after the other.
pub(crate) fn user_messages(count: usize) -> Vec<Vec<u8>> {
    user_messages_seeing(count, |i| format!("line {i}\r\n").into_bytes())
}

/// A user's signed messages: its session key, then `count` Seen messages chained one after the
/// other, the `i`th showing `output(i)`.
pub(crate) fn user_messages_seeing(
    count: usize,
    output: impl Fn(usize) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    use kanava_debugme::frame::{Frame, encode_frame};
    use kanava_debugme::model::{
        Activity, AnyMessage, Control, ControlAction, Message, PerhapsSigned, Seen, Signature,
    };
    use kanava_debugme::sign::SessionKey;
    let key = SessionKey::from_secret([9; 32]);
    let mut session_key = Control {
        control: ControlAction::SessionKey(PerhapsSigned::UnSigned(key.public()), b"1".to_vec()),
        signature: Signature::Other(Vec::new()),
    };
    key.sign_control(&mut session_key);
    let mut frames = vec![encode_frame(&Frame::Message(AnyMessage::User(
        Message::Control(session_key),
    )))];
    let mut previous = None;
    for i in 0..count {
        let mut seen = Activity {
            activity: Seen {
                seen_data: output(i),
            },
            prev_activity: previous.clone(),
            prev_entered: None,
            elapsed_time: 0.01,
            signature: Signature::Other(Vec::new()),
        };
        key.sign_activity(&mut seen);
        previous = Some(kanava_debugme::hash::activity(&seen));
        frames.push(encode_frame(&Frame::Message(AnyMessage::User(
            Message::Activity(seen),
        ))));
    }
    frames
}

#[tokio::test]
async fn everything_a_developer_received_survives_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let mut user = versioned(&server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages(200);
    // The developer joins after the first half and gets it as backlog, then the rest live.
    for frame in &messages[..100] {
        assert!(raw_send(&mut user, frame).await);
    }
    let mut developer = versioned(&server).await;
    let connect = format!("M{{\"tag\":\"ConnectMode\",\"contents\":\"http://x/{id}\"}}");
    raw_send(&mut developer, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut developer).await.unwrap()[0], b'R');
    for frame in &messages[100..] {
        assert!(raw_send(&mut user, frame).await);
    }
    let mut received = Vec::new();
    while received.len() < messages.len() {
        received.push(raw_recv(&mut developer).await.expect("every message"));
    }
    assert_eq!(received, messages, "in order, each once");
    server.kill9();

    let server = Start::new().data(&data).start();
    let mut download = versioned(&server).await;
    raw_send(&mut download, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut download).await.unwrap()[0], b'R');
    let mut replayed = Vec::new();
    loop {
        let frame = raw_recv(&mut download)
            .await
            .expect("the replay ends with D");
        if frame == b"D" {
            break;
        }
        replayed.push(frame);
    }
    assert_eq!(
        replayed, received,
        "what was relayed before the kill is all there"
    );
    let log = data.join(format!("debug-me/debug-me.{id}.log"));
    let verified = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .arg("verify")
        .arg(&log)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", text(&verified));
}

#[tokio::test]
async fn a_quiet_session_keeps_a_responsive_client_and_drops_a_dead_one() {
    use futures_util::StreamExt;
    let server = Start::new().args(&["--debug-me-idle", "1s"]).start();
    let mut alive = versioned(&server).await;
    open_session(&mut alive, "nobody").await;
    let mut dead = versioned(&server).await;
    open_session(&mut dead, "nobody").await;
    // For three idle timeouts nothing is said in either session. The live client keeps
    // reading, so its WebSocket answers the server's pings; the other reads nothing.
    let quiet = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match alive.next().await {
                Some(Ok(message)) if message.is_ping() => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "the responsive client was dropped: {quiet:?}"
    );
    assert_eq!(
        raw_recv(&mut dead).await,
        None,
        "the silent client is still connected"
    );
}

/// A debug-me client on the Mles listener's TLS, upgraded at `path`, versions exchanged.
async fn tls_client(
    server: &Kanava,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let url = format!("wss://localhost:{}{path}", server.mles.port());
    let (ws, _) = tokio_tungstenite::client_async(url, server.client().tls().await)
        .await
        .expect("the TLS listener upgrades debug-me at its path");
    let mut ws = ws;
    exchange_versions(&mut ws).await;
    ws
}

#[tokio::test]
async fn the_same_sessions_are_served_over_tls_at_debug_me() {
    let server = Kanava::start();
    // A user over TLS.
    let mut user = tls_client(&server, "/debug-me").await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages(20);
    for frame in &messages[..10] {
        assert!(raw_send(&mut user, frame).await);
    }
    // A developer on the plain listener and a watcher over TLS (at a path naming the session)
    // join the same session and get the backlog, then the live messages.
    let connect =
        format!("M{{\"tag\":\"ConnectMode\",\"contents\":\"https://localhost/debug-me/{id}\"}}");
    let mut developer = versioned(&server).await;
    raw_send(&mut developer, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut developer).await.unwrap()[0], b'R');
    let mut watcher = tls_client(&server, &format!("/debug-me/{id}")).await;
    raw_send(&mut watcher, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut watcher).await.unwrap()[0], b'R');
    for frame in &messages[10..] {
        assert!(raw_send(&mut user, frame).await);
    }
    for (i, expected) in messages.iter().enumerate() {
        let got = raw_recv(&mut developer).await.expect("every message");
        assert_eq!(&got, expected, "developer: message {i}");
        let got = raw_recv(&mut watcher).await.expect("every message");
        assert_eq!(&got, expected, "watcher over TLS: message {i}");
    }
    // A developer's chat over the plain listener reaches the user over TLS.
    let chat = developer_chat();
    assert!(raw_send(&mut developer, &chat).await);
    assert_eq!(raw_recv(&mut user).await.unwrap(), chat);
    // The user leaves: both get D, and the finished session downloads over TLS.
    futures_util::SinkExt::close(&mut user).await.unwrap();
    assert_eq!(raw_recv(&mut developer).await.unwrap(), b"D");
    assert_eq!(raw_recv(&mut watcher).await.unwrap(), chat);
    assert_eq!(raw_recv(&mut watcher).await.unwrap(), b"D");
    let mut download = tls_client(&server, "/debug-me").await;
    raw_send(&mut download, connect.as_bytes()).await;
    assert_eq!(raw_recv(&mut download).await.unwrap()[0], b'R');
    let mut replayed = Vec::new();
    while let Some(frame) = raw_recv(&mut download).await {
        if frame == b"D" {
            break;
        }
        replayed.push(frame);
    }
    let mut expected = messages.clone();
    expected.push(chat);
    assert_eq!(replayed, expected);
    // Every other path is still Mles, which wants its subprotocol.
    let refused = server.client().upgrade_with(None).await;
    assert!(refused.is_err(), "Mles upgraded without its subprotocol");
}

/// An `L` frame holding a developer's chat message, signed by a key the user never accepted
/// (the server verifies nothing and relays it).
fn developer_chat() -> Vec<u8> {
    use kanava_debugme::frame::{Frame, encode_frame};
    use kanava_debugme::model::{AnyMessage, Control, ControlAction, Message, Signature};
    use kanava_debugme::sign::SessionKey;
    let key = SessionKey::from_secret([7; 32]);
    let mut chat = Control {
        control: ControlAction::ChatMessage(b"dev".to_vec(), b"hello over TLS".to_vec()),
        signature: Signature::Other(Vec::new()),
    };
    key.sign_control(&mut chat);
    encode_frame(&Frame::Message(AnyMessage::Developer(Message::Control(
        chat,
    ))))
}

/// The mailbox under /var/mail holding a mail that mentions `text`.
fn mailbox_with(text: &str) -> Option<PathBuf> {
    std::fs::read_dir("/var/mail")
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| std::fs::read_to_string(path).is_ok_and(|mail| mail.contains(text)))
}

#[tokio::test]
async fn a_finished_session_is_mailed_to_its_user_through_the_real_sendmail() {
    assert!(
        Path::new("/usr/sbin/sendmail").exists(),
        "no /usr/sbin/sendmail: the test command installs exim4-daemon-light"
    );
    let server = Start::new()
        .args(&["--debug-me-from-email", "kanava-test@localhost"])
        .start();
    let mut user = versioned(&server).await;
    let id = open_session(&mut user, "root@localhost").await;
    for frame in user_messages(5) {
        assert!(raw_send(&mut user, &frame).await);
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();
    let name = format!("debug-me.{id}.log");
    wait_until("the mail is delivered to a mailbox", || {
        mailbox_with(&name).is_some()
    })
    .await;
    // Python's email package reads the mailbox and takes the attachment out.
    let dir = tempfile::tempdir().unwrap();
    let attachment = dir.path().join("attachment");
    let script = r#"
import json, mailbox, sys
box, name, out = sys.argv[1:]
for mail in mailbox.mbox(box):
    for part in mail.walk():
        if part.get_filename() == name:
            open(out, "wb").write(part.get_payload(decode=True))
            print(json.dumps({"subject": mail["Subject"], "from": mail["From"], "to": mail["To"],
                              "type": part.get_content_type()}))
"#;
    let parsed = Command::new("python3")
        .args(["-c", script])
        .arg(mailbox_with(&name).unwrap())
        .arg(&name)
        .arg(&attachment)
        .output()
        .expect("python3 runs");
    assert!(parsed.status.success(), "{}", text(&parsed));
    let headers: serde_json::Value = serde_json::from_slice(&parsed.stdout)
        .unwrap_or_else(|_| panic!("one mail with the log attached: {}", text(&parsed)));
    assert_eq!(headers["subject"], "Your recent debug-me session");
    assert_eq!(headers["from"], "kanava-test@localhost");
    assert_eq!(headers["to"], "root@localhost");
    assert_eq!(headers["type"], "text/plain");
    let log = std::fs::read(server.data.join("debug-me").join(&name)).unwrap();
    assert_eq!(std::fs::read(&attachment).unwrap(), log);
    assert_eq!(log.iter().filter(|b| **b == b'\n').count(), 6);
}
