//! kanava's own debug-me clients (`kanava watch`, `kanava download`) as real processes, against
//! kanava's server and the real `debug-me --server`, with a user session that signs and chains
//! its output as a real user's does; every log they write must pass both `debug-me --verify`
//! and `kanava verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::debugme_server::{Roles, SCREEN_WAIT, open_session, raw_send, user_messages, versioned};
use crate::support::*;

fn kanava(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kanava"));
    command.args(args);
    command
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `debug-me --verify` and `kanava verify` on `log`.
fn verdicts(log: &Path) -> (Output, Output) {
    let scratch = tempfile::tempdir().unwrap();
    let reference = Command::new("debug-me")
        .arg("--verify")
        .arg(log)
        .env("GNUPGHOME", private_dir(&scratch.path().join("gnupg")))
        .current_dir(scratch.path())
        .output()
        .expect("debug-me is installed (apt-get install debug-me)");
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", scratch.path().join("gnupg"))
        .args(["--kill", "gpg-agent"])
        .output();
    let ours = kanava(&["verify"]).arg(log).output().unwrap();
    (reference, ours)
}

/// Asserts that both `debug-me --verify` and `kanava verify` accept `log`.
pub(crate) fn both_verify(log: &Path) {
    let (reference, ours) = verdicts(log);
    assert!(
        reference.status.success(),
        "debug-me --verify {}: {}",
        log.display(),
        text(&reference)
    );
    assert!(
        ours.status.success(),
        "kanava verify {}: {}",
        log.display(),
        text(&ours)
    );
}

/// Asserts that both verifiers reach the same verdict on `log`, a log the real debug-me wrote:
/// the real user's own log sometimes ends misordered, and then debug-me rejects it (spec 3.2).
fn verifiers_agree(log: &Path) {
    let (reference, ours) = verdicts(log);
    assert_eq!(
        ours.status.success(),
        reference.status.success(),
        "{}: debug-me: {}\nkanava: {}",
        log.display(),
        text(&reference),
        text(&ours)
    );
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn download_follows_a_live_session_then_saves_the_finished_one() {
    let server = Kanava::start();
    let dir = tempfile::tempdir().unwrap();
    let mut user = versioned(&server).await;
    let id = open_session(&mut user, "nobody").await;
    let messages = user_messages(40);
    for frame in &messages[..20] {
        assert!(raw_send(&mut user, frame).await);
    }
    let url = format!("http://{}/{id}", server.debug_me);
    let live = dir.path().join("live.log");
    let download = kanava(&["download", &url, "-o"])
        .arg(&live)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the backlog is saved", || lines(&live) == 20).await;
    for frame in &messages[20..] {
        assert!(raw_send(&mut user, frame).await);
    }
    wait_until("the live messages are saved", || {
        lines(&live) == messages.len()
    })
    .await;
    futures_util::SinkExt::close(&mut user).await.unwrap();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&live), messages.len());
    both_verify(&live);

    // The finished session is saved whole, over plain ws:// and over TLS.
    let finished = dir.path().join("finished.log");
    let out = kanava(&["download", &url, "-o"])
        .arg(&finished)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&finished), messages.len());
    both_verify(&finished);
    let tls_url = format!("wss://localhost:{}/debug-me/{id}", server.mles.port());
    let over_tls = dir.path().join("tls.log");
    let out = kanava(&["download", &tls_url, "--ca"])
        .arg(server.cert_path())
        .arg("-o")
        .arg(&over_tls)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&over_tls), messages.len());

    // The default name is debug-me's.
    let out = kanava(&["download", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lines(&dir.path().join(format!("debug-me.{id}.log"))),
        messages.len()
    );
}

#[tokio::test]
async fn a_bad_session_or_server_gets_a_clear_message() {
    let server = Kanava::start();
    // A session that does not exist.
    let url = format!(
        "http://{}/00000000-0000-4000-8000-000000000000",
        server.debug_me
    );
    let out = kanava(&["download", &url, "-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unknown session ID"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Not a URL, or not a debug-me server at all (the Mles listener without TLS).
    let out = kanava(&["download", "ftp://x/1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = kanava(&[
        "download",
        &format!("http://{}/x", server.mles),
        "-o",
        "/dev/null",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// Who plays a role: kanava's client or the real debug-me.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Kanava,
    DebugMe,
}

/// The real `debug-me --server`, on a free port, with its logs in a scratch directory.
struct Reference {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Reference {
    async fn start() -> Reference {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("debug-me")
            .arg("--server")
            .arg(dir.path().join("logs"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("debug-me is installed (apt-get install debug-me)");
        let reference = Reference { child, dir, port };
        wait_until_async("debug-me --server listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        reference
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server of a pairing: kanava's or the reference.
enum Server {
    Kanava(Kanava),
    Reference(Reference),
}

impl Server {
    async fn start(program: Program) -> Server {
        match program {
            Program::Kanava => Server::Kanava(Kanava::start()),
            Program::DebugMe => Server::Reference(Reference::start().await),
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Kanava(kanava) => format!("http://{}/", kanava.debug_me),
            Server::Reference(reference) => format!("http://127.0.0.1:{}/", reference.port),
        }
    }

    fn log(&self, id: &str) -> PathBuf {
        match self {
            Server::Kanava(kanava) => kanava.data.join(format!("debug-me/debug-me.{id}.log")),
            Server::Reference(reference) => {
                reference.dir.path().join(format!("logs/debug-me.{id}.log"))
            }
        }
    }
}

/// One pairing, run as real processes in terminals: a user (sharing /bin/sh), a developer who
/// is let in and types (a typeahead burst included), a second developer who is refused and
/// cannot type, and kanava watch and kanava download following along. At the end every log
/// written by anyone must pass both verifiers.
async fn pairing(server_program: Program, user: Program, developer: Program) {
    let _heavy = heavy().await;
    let server = Server::start(server_program).await;
    let url = server.url();
    let roles = Roles::new();
    let scratch = tempfile::tempdir().unwrap();
    let logs = scratch.path().join("logs");
    let kanava_bin = env!("CARGO_BIN_EXE_kanava");
    let fingerprint = new_gpg_key(&roles.gnupg("dev"), "dev");
    new_gpg_key(&roles.gnupg("dev2"), "dev2");

    // The user of kanava share trusts the first developer's key (not the second's).
    let trust_file = scratch.path().join("trusted-keys");
    std::fs::write(
        &trust_file,
        format!("# the first developer\n{fingerprint}\n"),
    )
    .unwrap();

    // The user starts sharing.
    let (session_url, id) = match user {
        Program::DebugMe => roles.start_user(scratch.path(), &url).await,
        Program::Kanava => {
            roles.run(
                "user",
                scratch.path(),
                &format!(
                    "{kanava_bin} share --server {url} --log-dir {} --trusted-keys {} --run /bin/sh",
                    logs.join("user").display(),
                    trust_file.display()
                ),
            );
            let screen = roles
                .wait("user", "the session URL", |s| s.contains("kanava connect "))
                .await;
            let session_url = screen
                .split_whitespace()
                .skip_while(|w| *w != "connect")
                .nth(1)
                .unwrap()
                .to_owned();
            let id = session_url.rsplit('/').next().unwrap().to_owned();
            (session_url, id)
        }
    };
    // The control side for consent and chat: the real user's control window; for kanava,
    // `kanava control` through kanava's server, and kanava share's own terminal through the
    // reference server.
    let consent = match (user, server_program) {
        (Program::DebugMe, _) => {
            roles.run_in("control", "user", scratch.path(), "debug-me --control");
            "control"
        }
        (Program::Kanava, Program::Kanava) => {
            roles.run(
                "control",
                scratch.path(),
                &format!(
                    "{kanava_bin} control --log-dir {}",
                    logs.join("user").display()
                ),
            );
            "control"
        }
        (Program::Kanava, Program::DebugMe) => "user",
    };
    let developer_command = |role: &str| match developer {
        Program::DebugMe => format!("debug-me {session_url}"),
        Program::Kanava => format!(
            "{kanava_bin} connect {session_url} --log-dir {}",
            logs.join(role).display()
        ),
    };
    let questions = |s: &str| s.matches("run commands? [y/n]").count();

    // The first developer is let in.
    roles.run("dev", scratch.path(), &developer_command("dev"));
    roles
        .wait(consent, "the consent question", |s| questions(s) == 1)
        .await;
    if user == Program::Kanava {
        let screen = roles.screen(consent);
        assert!(screen.contains("in your trusted keys"), "{screen}");
    }
    roles.keys(consent, "y");
    let granted = match developer {
        Program::Kanava => "the user let you type",
        Program::DebugMe => "debug-me session started",
    };
    roles
        .wait("dev", "write access", |s| s.contains(granted))
        .await;
    // The second is refused.
    roles.run("dev2", scratch.path(), &developer_command("dev2"));
    roles
        .wait(consent, "the second consent question", |s| {
            questions(s) == 2
        })
        .await;
    if user == Program::Kanava {
        let screen = roles.screen(consent);
        assert!(
            screen.contains("their identity cannot be verified"),
            "{screen}"
        );
    }
    roles.keys(consent, "n");
    // The real developer tells it in its control window.
    let refused_at = match developer {
        Program::Kanava => "dev2",
        Program::DebugMe => {
            roles.run_in("dev2-control", "dev2", scratch.path(), "debug-me --control");
            "dev2-control"
        }
    };
    roles
        .wait(refused_at, "the refusal", |s| {
            s.contains("did not grant write access")
        })
        .await;
    // kanava watch and kanava download follow along.
    roles.run(
        "watch",
        scratch.path(),
        &format!(
            "{kanava_bin} watch {session_url} --log-dir {}",
            logs.join("watch").display()
        ),
    );
    roles
        .wait("watch", "the session", |s| {
            s.contains("debug-me session started")
        })
        .await;
    let download = logs.join("download.log");
    let downloading = Command::new(kanava_bin)
        .args(["download", &session_url, "-o"])
        .arg(&download)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The developer's command runs in the user's shell, and everyone sees its output.
    roles.keys("dev", "echo from-the-$((6*7))-developer");
    let output = |s: &str| s.lines().any(|l| l.trim_end() == "from-the-42-developer");
    for role in ["user", "dev", "dev2", "watch"] {
        roles
            .wait(role, "the developer's command output", output)
            .await;
    }
    // Chat from the user's side is signed, logged and relayed; a kanava developer shows it,
    // and its own chat reaches the user's side.
    if consent == "user" {
        roles.tmux(&["send-keys", "-t", "user", "C-]"]);
    }
    roles.keys(consent, "hello from the user");
    let server_log = server.log(&id);
    // As long as the screens are given: the chat goes through the user's debug-me, which may
    // be slow to sign under load, before the server writes it.
    wait_until_async_within(
        "the user's chat is in the server's log",
        SCREEN_WAIT,
        || async {
            std::fs::read_to_string(&server_log).is_ok_and(|l| l.contains("hello from the user"))
        },
    )
    .await;
    if developer == Program::Kanava {
        roles
            .wait("dev", "the user's chat", |s| {
                s.contains("hello from the user")
            })
            .await;
        roles.tmux(&["send-keys", "-t", "dev", "C-]"]);
        roles.keys("dev", "hello from the developer");
        roles
            .wait(consent, "the developer's chat", |s| {
                s.contains("> hello from the developer")
            })
            .await;
    }
    // The refused developer cannot type: its command never runs, though a later one of the
    // accepted developer does.
    roles.keys("dev2", "echo refused-$((1+1))");
    roles.keys("dev", "echo marker-$((2+3))");
    // (Each command is typed once the developer has seen the output of the one before, as a
    // person would: a real debug-me developer that types while output it has not seen is on
    // its way exits with "Bad signature on message from user", spec 6.2.)
    for role in ["user", "dev"] {
        roles
            .wait(role, "the marker", |s| {
                s.lines().any(|l| l.trim_end() == "marker-5")
            })
            .await;
    }
    assert!(
        !roles.screen("user").contains("refused-2"),
        "the refused developer typed:\n{}",
        roles.screen("user")
    );
    // Typeahead: a command longer than one read (1024 bytes) typed in one burst, so that the
    // second part is sent before the echo of the first returns. The real debug-me on both
    // sides cannot do that (its developer guesses the echo of the first part, and the user
    // refuses the second part whenever it reads that echo in pieces); there the burst is one
    // read long.
    let long = if user == Program::DebugMe && developer == Program::DebugMe {
        "t".repeat(300)
    } else {
        "t".repeat(1500)
    };
    roles.keys("dev", &format!("echo {long}_end"));
    for role in ["user", "dev"] {
        roles
            .wait(role, "the typeahead command's output", |s| {
                s.lines().any(|l| l.trim_end() == format!("{long}_end"))
            })
            .await;
    }

    // The developer ends the shell; everyone sees the end.
    roles
        .developer_exits(7, &["dev", "user", "dev2", "watch"])
        .await;
    let downloaded = downloading.wait_with_output().unwrap();
    assert!(
        downloaded.status.success(),
        "kanava download: {}",
        text(&downloaded)
    );

    // Every log kanava wrote passes both verifiers; on those the real debug-me wrote, the two
    // verifiers agree.
    let kanava_log = |role: &str| logs.join(role).join(format!("debug-me.{id}.log"));
    let mut ours = vec![download, kanava_log("watch")];
    let mut theirs = Vec::new();
    match &server {
        Server::Kanava(_) => ours.push(server.log(&id)),
        Server::Reference(_) => theirs.push(server.log(&id)),
    }
    match user {
        Program::DebugMe => theirs.push(roles.log("user", false, &id)),
        Program::Kanava => ours.push(kanava_log("user")),
    }
    for dev in ["dev", "dev2"] {
        match developer {
            Program::DebugMe => theirs.push(roles.log(dev, true, &id)),
            Program::Kanava => ours.push(kanava_log(dev)),
        }
    }
    for log in &ours {
        both_verify(log);
    }
    for log in &theirs {
        verifiers_agree(log);
    }
}

#[tokio::test]
async fn a_kanava_user_with_a_real_developer_through_kanava() {
    pairing(Program::Kanava, Program::Kanava, Program::DebugMe).await;
}

#[tokio::test]
async fn a_kanava_user_with_a_real_developer_through_debug_me() {
    pairing(Program::DebugMe, Program::Kanava, Program::DebugMe).await;
}

#[tokio::test]
async fn a_real_user_with_a_kanava_developer_through_kanava() {
    pairing(Program::Kanava, Program::DebugMe, Program::Kanava).await;
}

#[tokio::test]
async fn a_real_user_with_a_kanava_developer_through_debug_me() {
    pairing(Program::DebugMe, Program::DebugMe, Program::Kanava).await;
}

#[tokio::test]
async fn kanava_on_every_side_through_kanava() {
    pairing(Program::Kanava, Program::Kanava, Program::Kanava).await;
}

#[tokio::test]
async fn kanava_on_every_side_through_debug_me() {
    pairing(Program::DebugMe, Program::Kanava, Program::Kanava).await;
}

#[tokio::test]
async fn real_user_and_developer_with_kanava_watching_through_kanava() {
    pairing(Program::Kanava, Program::DebugMe, Program::DebugMe).await;
}

#[tokio::test]
async fn real_user_and_developer_with_kanava_watching_through_debug_me() {
    pairing(Program::DebugMe, Program::DebugMe, Program::DebugMe).await;
}

#[tokio::test]
async fn the_shared_terminal_follows_resizes_and_is_restored_on_sigterm() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let roles = Roles::new();
    let scratch = tempfile::tempdir().unwrap();
    let logs = scratch.path().join("user-logs");
    // The shared program hides the cursor, as full-screen programs do; after kanava share, the
    // pane shows the terminal modes it was left in.
    roles.run(
        "user",
        scratch.path(),
        &format!(
            "{} share --server http://{}/ --log-dir {} --run /bin/sh -c 'printf \"\\033[?25l\"; exec /bin/sh'; echo SHARE=$?; stty -a",
            env!("CARGO_BIN_EXE_kanava"),
            server.debug_me,
            logs.display()
        ),
    );
    roles
        .wait("user", "the session", |s| s.contains("kanava connect "))
        .await;
    roles.tmux(&["resize-window", "-t", "user", "-x", "101", "-y", "31"]);
    roles.keys("user", "stty size");
    roles
        .wait("user", "the new size inside the shared shell", |s| {
            s.lines().any(|l| l.trim_end() == "31 101")
        })
        .await;
    let cursor = || roles.tmux(&["display", "-p", "-t", "user", "#{cursor_flag}"]);
    assert_eq!(cursor().trim(), "0", "the shared program hid the cursor");

    let pids = Command::new("pgrep")
        .arg("-f")
        .arg(format!("^{} share ", env!("CARGO_BIN_EXE_kanava")))
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pids.stdout)
        .lines()
        .next()
        .expect("kanava share runs")
        .to_owned();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let screen = roles
        // `stty -a` prints its modes on lines after `speed`: wait for them (as `icanon` or
        // `-icanon`), not for its first line.
        .wait(
            "user",
            "kanava share's exit and the terminal's modes",
            |s| s.contains("SHARE=") && s.contains("icanon") && s.contains("echo"),
        )
        .await;
    let modes: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "{screen}"
    );
    assert_eq!(cursor().trim(), "1", "the cursor is visible again");
    // The session ended with the shell hung up, and the log says so and verifies.
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("the user's log");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("debug-me session ended (-1)")
    );
    both_verify(&log);
}

#[tokio::test]
async fn a_session_shared_over_tls_is_the_same_on_the_plain_listener() {
    use std::io::{BufRead, BufReader, Write};
    let server = Kanava::start();
    let dir = tempfile::tempdir().unwrap();
    let mut share = kanava(&["share", "--server"])
        .arg(format!("wss://localhost:{}/debug-me", server.mles.port()))
        .arg("--ca")
        .arg(server.cert_path())
        .arg("--log-dir")
        .arg(dir.path().join("user"))
        .args(["--run", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(share.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no session URL");
        if let Some(url) = line.trim().strip_prefix("kanava connect ") {
            break url.to_owned();
        }
    };
    assert!(url.starts_with("wss://"), "{url}");
    let id = url.rsplit('/').next().unwrap().to_owned();
    // Beside it, the session's watch page on the same listener.
    let watch = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no watch URL");
        if let Some((_, page)) = line.trim().split_once("to watch in a browser:") {
            break page.trim().trim_end_matches(')').to_owned();
        }
    };
    assert_eq!(
        watch,
        format!("https://localhost:{}/debug-me/{id}", server.mles.port())
    );
    std::thread::spawn(move || for _ in stdout.lines() {});
    // Followed from the plain listener.
    let plain = format!("http://{}/{id}", server.debug_me);
    let download = dir.path().join("download.log");
    let downloading = kanava(&["download", &plain, "-o"])
        .arg(&download)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = share.stdin.take().unwrap();
    stdin.write_all(b"echo over-$((40+2))-tls\n").unwrap();
    wait_until("the command ran in the shared shell", || {
        std::fs::read_to_string(&download).is_ok_and(|l| l.contains("over-42-tls"))
    })
    .await;
    stdin.write_all(b"exit\n").unwrap();
    let shared = share.wait_with_output().unwrap();
    assert!(shared.status.success(), "{}", text(&shared));
    let downloaded = downloading.wait_with_output().unwrap();
    assert!(downloaded.status.success(), "{}", text(&downloaded));
    both_verify(&download);
    both_verify(&dir.path().join(format!("user/debug-me.{id}.log")));
}
