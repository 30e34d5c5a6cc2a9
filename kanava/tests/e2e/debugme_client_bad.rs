//! kanava's debug-me clients (`kanava download`, `watch`, `connect`, `share`) as real processes
//! facing bad input: a server that sends garbage at every step, a user whose signatures do not
//! verify, a session that does not exist, and a developer with an unsigned key. Each must end
//! within a bounded time with a clear message and without a panic; the user goes on sharing.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kanava_debugme::frame::{Frame, decode_frame, encode_frame};
use kanava_debugme::json::decode_line;
use kanava_debugme::model::{
    Activity, AnyMessage, Control, ControlAction, Message, PerhapsSigned, Seen, Signature,
};
use kanava_debugme::sign::SessionKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::debugme_client::text;
use crate::debugme_server::{open_session, raw_recv, raw_send, user_messages, versioned};
use crate::support::*;

/// How long a client may take to give up on bad input.
const BOUND: Duration = Duration::from_secs(20);

fn kanava(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kanava"));
    command.args(args).kill_on_drop(true);
    command
}

/// Runs `command` to its end with stdin open but never written (not a terminal); fails the
/// test (and kills the process) if that takes longer than [`BOUND`].
async fn bounded(what: &str, mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kanava runs");
    // Held open until the end: connect and share end when their input does.
    let _stdin = child.stdin.take();
    match tokio::time::timeout(BOUND, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("{what} still runs after {BOUND:?}"),
    }
}

/// Asserts that the client failed (exit 1) with `expected` on stderr, said once, and did not
/// panic.
fn failed_with(what: &str, out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(out));
    assert!(
        stderr.contains(expected),
        "{what}: wanted {expected:?}: {}",
        text(out)
    );
    assert_eq!(
        stderr.matches(expected).count(),
        1,
        "{what}: said more than once: {}",
        text(out)
    );
    assert!(!stderr.contains("panicked"), "{what}: {}", text(out));
    assert!(
        !stderr.contains('\u{1b}'),
        "{what}: an escape reached the terminal: {}",
        text(out)
    );
}

/// A throwaway GnuPG home with a signing key, for `kanava connect`; its agent is stopped on drop.
struct Gnupg(tempfile::TempDir);

impl Gnupg {
    fn new() -> Gnupg {
        let dir = tempfile::tempdir().unwrap();
        private_dir(dir.path());
        new_gpg_key(dir.path(), "Dev");
        Gnupg(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Gnupg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// The followers of a session URL that need no key: download (to `scratch`/download.log) and
/// watch (logging in `scratch`/watch).
fn download_and_watch(url: &str, scratch: &Path) -> [(&'static str, Command); 2] {
    let mut download = kanava(&["download", url, "-o"]);
    download.arg(scratch.join("download.log"));
    let mut watch = kanava(&["watch", url, "--log-dir"]);
    watch.arg(scratch.join("watch"));
    [("download", download), ("watch", watch)]
}

/// The three followers of a session URL: download, watch and connect, each in `scratch`.
fn followers(url: &str, scratch: &Path, gnupg: &Gnupg) -> [(&'static str, Command); 3] {
    let [download, watch] = download_and_watch(url, scratch);
    let mut connect = kanava(&["connect", url, "--log-dir"]);
    connect
        .arg(scratch.join("connect"))
        .env("GNUPGHOME", gnupg.path());
    [download, watch, ("connect", connect)]
}

/// What a fake server does with each connection.
#[derive(Debug, Clone, Copy)]
enum Bad {
    /// Answers the upgrade request as an SSH server would.
    NotHttp,
    /// After the handshake, one frame instead of the version list.
    FirstFrame(&'static [u8]),
    /// A text frame instead of the version list.
    TextFrame,
    /// The versions, then one frame instead of the session id.
    Answer(&'static [u8]),
    /// The versions, then a close before the session id.
    ClosesBeforeId,
    /// A valid start (the id, the user's key and first output), then this frame.
    AfterStart(&'static [u8]),
    /// A valid start, then a close without `D`.
    ClosesMidSession,
}

/// A fake debug-me server on 127.0.0.1 doing `bad` with every connection; returns its URL.
async fn fake_server(bad: Bad) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/00000000-0000-4000-8000-000000000000",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_badly(tcp, bad));
        }
    });
    (url, task)
}

async fn serve_badly(mut tcp: tokio::net::TcpStream, bad: Bad) {
    let binary = |bytes: &[u8]| WsMessage::binary(bytes.to_vec());
    let versions = || binary(b"V[\"1\"]");
    let start = || {
        let mut frames = vec![
            versions(),
            binary(b"R\"00000000-0000-4000-8000-000000000000\""),
        ];
        frames.extend(user_messages(1).iter().map(|f| binary(f)));
        frames
    };
    let script = match bad {
        Bad::NotHttp => {
            let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
            // Until the client hangs up.
            let _ = tcp.read_to_end(&mut Vec::new()).await;
            return;
        }
        Bad::FirstFrame(frame) => vec![binary(frame)],
        Bad::TextFrame => vec![WsMessage::text("[\"1\"]")],
        Bad::Answer(frame) => vec![versions(), binary(frame)],
        Bad::ClosesBeforeId => vec![versions()],
        Bad::AfterStart(frame) => {
            let mut script = start();
            script.push(binary(frame));
            script
        }
        Bad::ClosesMidSession => start(),
    };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    for message in script {
        if ws.send(message).await.is_err() {
            return;
        }
    }
    if matches!(bad, Bad::ClosesBeforeId | Bad::ClosesMidSession) {
        let _ = ws.close(None).await;
    }
    // Read (and drop) what the client sends until it closes, so that nothing it sends is
    // refused with a reset before it has read everything above.
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test]
async fn a_server_sending_garbage_gets_a_clear_error_and_no_panic() {
    let gnupg = Gnupg::new();
    let garbage = "the server sent something that is not debug-me protocol 1";
    let cases: [(Bad, &str); 13] = [
        (Bad::NotHttp, "cannot open a WebSocket to http://127.0.0.1:"),
        (
            Bad::FirstFrame(b"\x00\x01\x02garbage"),
            "unknown frame tag 0x00",
        ),
        (Bad::FirstFrame(b"Zhello"), "unknown frame tag 0x5a"),
        (
            Bad::FirstFrame(b"V\xff\xfe"),
            "V frame: payload is not JSON",
        ),
        (
            Bad::FirstFrame(b"V[\"2\",\"0\"]"),
            "the server speaks protocol versions [\"2\", \"0\"]",
        ),
        (Bad::FirstFrame(b"E\"go away\""), "the server said: go away"),
        // An error text that would clear the terminal reaches it made printable.
        (
            Bad::FirstFrame(b"E\"\\u001b[2Jgone\""),
            "the server said: ^[[2Jgone",
        ),
        (Bad::TextFrame, "a text frame"),
        (Bad::Answer(b"L\xff\xff\xff"), garbage),
        (Bad::Answer(b"D"), "wanted a session id, got done"),
        (
            Bad::ClosesBeforeId,
            "the connection closed before a session id",
        ),
        (
            Bad::AfterStart(b"L\xff\xff\xff"),
            "L frame: protobuf decode error",
        ),
        (
            Bad::AfterStart(b"R\"again\""),
            "wanted a message, got a session id",
        ),
    ];
    for (bad, expected) in cases {
        let (url, server) = fake_server(bad).await;
        let scratch = tempfile::tempdir().unwrap();
        for (name, command) in followers(&url, scratch.path(), &gnupg) {
            let what = format!("kanava {name} against {bad:?}");
            let out = bounded(&what, command).await;
            failed_with(&what, &out, expected);
        }
        server.abort();
    }
    // No server at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("http://{address}/00000000-0000-4000-8000-000000000000");
    for (name, command) in followers(&url, scratch.path(), &gnupg) {
        let what = format!("kanava {name} without a server");
        let out = bounded(&what, command).await;
        failed_with(
            &what,
            &out,
            &format!("cannot connect to http://{address}/: Connection refused"),
        );
    }
}

#[tokio::test]
async fn a_server_closing_mid_session_is_a_lost_connection() {
    let gnupg = Gnupg::new();
    let (url, server) = fake_server(Bad::ClosesMidSession).await;
    let scratch = tempfile::tempdir().unwrap();
    let [(_, download), (_, watch), (_, connect)] = followers(&url, scratch.path(), &gnupg);
    let out = bounded("kanava download", download).await;
    failed_with(
        "kanava download",
        &out,
        "the connection was lost before the session ended; saved 2 messages",
    );
    let out = bounded("kanava watch", watch).await;
    failed_with("kanava watch", &out, "the connection was lost");
    // connect says so in its session (stdout) and as it exits (stderr).
    let out = bounded("kanava connect", connect).await;
    failed_with("kanava connect", &out, "left before the session ended");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the connection to the server was lost"),
        "{}",
        text(&out)
    );
    server.abort();
}

/// A session key signed by itself and not by GnuPG, as a frame from the user or a developer.
fn key_frame(key: &SessionKey, from_user: bool) -> Vec<u8> {
    let mut control = Control {
        control: ControlAction::SessionKey(PerhapsSigned::UnSigned(key.public()), b"1".to_vec()),
        signature: Signature::Ed25519(Vec::new()),
    };
    key.sign_control(&mut control);
    let message = if from_user {
        AnyMessage::User(Message::Control(control))
    } else {
        AnyMessage::Developer(Message::Control(control))
    };
    encode_frame(&Frame::Message(message))
}

/// A user's Seen of `data` after `previous`, signed by `key`, as a frame.
fn seen_frame(key: &SessionKey, data: &[u8], previous: Option<&[u8]>) -> Vec<u8> {
    let previous = previous.map(|frame| match decode_frame(frame) {
        Ok(Frame::Message(AnyMessage::User(Message::Activity(seen)))) => {
            kanava_debugme::hash::activity(&seen)
        }
        other => panic!("not a Seen: {other:?}"),
    });
    let mut seen = Activity {
        activity: Seen {
            seen_data: data.to_vec(),
        },
        prev_activity: previous,
        prev_entered: None,
        elapsed_time: 0.5,
        signature: Signature::Ed25519(Vec::new()),
    };
    key.sign_activity(&mut seen);
    encode_frame(&Frame::Message(AnyMessage::User(Message::Activity(seen))))
}

/// Starts a session on `server` whose user sends `frames`; returns the user and the session URL.
async fn user_session(
    server: &Kanava,
    frames: &[Vec<u8>],
) -> (crate::debugme_server::RawWs, String) {
    let mut user = versioned(server).await;
    let id = open_session(&mut user, "nobody").await;
    for frame in frames {
        assert!(raw_send(&mut user, frame).await);
    }
    (user, format!("http://{}/{id}", server.debug_me))
}

#[tokio::test]
async fn a_user_signature_that_does_not_verify_is_named() {
    let server = Kanava::start();
    let key = SessionKey::from_secret([9; 32]);
    let other = SessionKey::from_secret([8; 32]);
    let mut flipped = key_frame(&key, true);
    // The last byte is the signature's.
    *flipped.last_mut().unwrap() ^= 1;
    let started = seen_frame(&key, b"** debug-me session started\r\n", None);
    let cases = [
        (
            vec![flipped, started.clone()],
            "the user's session key does not verify",
        ),
        (
            vec![key_frame(&key, true), seen_frame(&other, b"$ ", None)],
            "the user's first output does not verify under the user's key",
        ),
    ];
    for (frames, expected) in cases {
        let (_user, url) = user_session(&server, &frames).await;
        let scratch = tempfile::tempdir().unwrap();
        for (name, command) in download_and_watch(&url, scratch.path()) {
            let what = format!("kanava {name} ({expected})");
            let out = bounded(&what, command).await;
            failed_with(&what, &out, expected);
        }
    }

    // A log that cannot be written is named, with why.
    let (_user, url) = user_session(&server, &[key_frame(&key, true), started.clone()]).await;
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("missing/download.log");
    let mut download = kanava(&["download", &url, "-o"]);
    download.arg(&missing);
    let out = bounded("kanava download", download).await;
    failed_with(
        "kanava download",
        &out,
        &format!(
            "cannot write the log {}: No such file or directory",
            missing.display()
        ),
    );

    // A later output that does not verify is dropped and reported; the download then fails.
    let bad_later = seen_frame(&other, b"injected\r\n", Some(&started));
    let (mut user, url) = user_session(
        &server,
        &[key_frame(&key, true), started.clone(), bad_later],
    )
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let [(_, download), (_, watch)] = download_and_watch(&url, scratch.path());
    let download = tokio::spawn(bounded("kanava download", download));
    let watch = tokio::spawn(bounded("kanava watch", watch));
    let logs = [
        scratch.path().join("download.log"),
        scratch.path().join("watch"),
    ];
    wait_until("both followers logged the start", || {
        logs.iter().all(|log| lines_under(log) == 2)
    })
    .await;
    user.close(None).await.unwrap();
    let out = download.await.unwrap();
    failed_with(
        "kanava download",
        &out,
        "a message from the user does not verify; dropped",
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("saved 3 messages"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of them did not check out"),
        "{}",
        text(&out)
    );
    let out = watch.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a message from the user does not verify; dropped"),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("panicked"), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("injected"),
        "{}",
        text(&out)
    );
}

/// Lines of a log file, or of the one log in a directory.
fn lines_under(path: &Path) -> usize {
    let file = if path.is_dir() {
        match std::fs::read_dir(path).unwrap().flatten().next() {
            Some(entry) => entry.path(),
            None => return 0,
        }
    } else {
        path.to_owned()
    };
    std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

#[tokio::test]
async fn a_session_that_does_not_exist_is_unknown_to_connect_and_watch() {
    let server = Kanava::start();
    let gnupg = Gnupg::new();
    let url = format!(
        "http://{}/00000000-0000-4000-8000-000000000000",
        server.debug_me
    );
    let scratch = tempfile::tempdir().unwrap();
    let [_, (_, watch), (_, connect)] = followers(&url, scratch.path(), &gnupg);
    for (name, command) in [("watch", watch), ("connect", connect)] {
        let what = format!("kanava {name}");
        let out = bounded(&what, command).await;
        failed_with(&what, &out, "Unknown session ID");
    }
}

/// A child's output as it comes.
fn collect(mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

fn shown(output: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&output.lock().unwrap()).into_owned()
}

/// The user's log lines so far.
fn log_messages(log: &Path) -> Vec<AnyMessage> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| decode_line(line).ok())
        .map(|line| line.message)
        .collect()
}

#[tokio::test]
async fn share_refuses_an_unsigned_developer_key_by_itself() {
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let log_dir = scratch.path().join("logs");
    // Without a terminal: stdin and stdout are pipes.
    let mut share = kanava(&["share", "--server", &format!("http://{}/", server.debug_me)])
        .arg("--log-dir")
        .arg(&log_dir)
        .args(["--run", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(share.stdout.take().unwrap());
    let stderr = collect(share.stderr.take().unwrap());
    let mut stdin = share.stdin.take().unwrap();
    wait_until("share prints the session URL", || {
        shown(&stdout).contains("kanava connect ")
    })
    .await;
    let url = shown(&stdout)
        .split_whitespace()
        .skip_while(|w| *w != "connect")
        .nth(1)
        .unwrap()
        .to_owned();
    let id = url.rsplit('/').next().unwrap().to_owned();

    // A developer whose session key is not GnuPG-signed.
    let mut developer = versioned(&server).await;
    let mode = format!("M{{\"tag\":\"ConnectMode\",\"contents\":\"{url}\"}}");
    assert!(raw_send(&mut developer, mode.as_bytes()).await);
    assert_eq!(raw_recv(&mut developer).await.unwrap()[0], b'R');
    let key = SessionKey::from_secret([7; 32]);
    assert!(raw_send(&mut developer, &key_frame(&key, false)).await);
    let rejection = ControlAction::SessionKeyRejected(key.public());
    let is_rejection = |message: &AnyMessage| match message {
        AnyMessage::User(Message::Control(control)) => control.control == rejection,
        _ => false,
    };
    loop {
        let frame = raw_recv(&mut developer)
            .await
            .expect("the session goes on until the rejection");
        match decode_frame(&frame) {
            Ok(Frame::Message(message)) if is_rejection(&message) => break,
            Ok(Frame::Message(_)) => {}
            other => panic!("the developer got {other:?}"),
        }
    }
    let log = log_dir.join(format!("debug-me.{id}.log"));
    wait_until("the user's log has the rejection", || {
        log_messages(&log).iter().any(is_rejection)
    })
    .await;
    // Nobody was asked.
    assert!(!shown(&stdout).contains("[y/n]"), "{}", shown(&stdout));

    // The user ends the session.
    stdin.write_all(b"exit\r").await.unwrap();
    let status = tokio::time::timeout(BOUND, share.wait())
        .await
        .expect("share ends with its shell")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        shown(&stdout),
        shown(&stderr)
    );
    assert!(
        shown(&stdout).contains("the session has ended (0)"),
        "{}",
        shown(&stdout)
    );
    assert!(!shown(&stderr).contains("panicked"), "{}", shown(&stderr));
    let verified = kanava(&["verify"]).arg(&log).output().await.unwrap();
    assert!(verified.status.success(), "{}", text(&verified));
}
