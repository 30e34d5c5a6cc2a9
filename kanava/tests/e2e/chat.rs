//! The chat's slash commands through the line interface (`ssh -T`), as a bot or a person at a
//! plain terminal uses them: private messages, emotes, away, topics, whois, ignore, keys, and
//! the operators' kick, ban and mute. Each user is a real OpenSSH client.

use std::path::Path;
use std::process::ExitStatus;

use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::ssh::{Keys, spawn_lines, ssh, stderr};
use crate::support::*;

/// A running `ssh -T` line session: lines in, stdout and stderr lines out.
pub struct LineSession {
    user: String,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far.
    seen: Vec<String>,
}

/// Forwards the lines of `reader` into a channel.
fn lines_of(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl LineSession {
    /// Logs `user` in with `key` and waits until the session answers.
    pub async fn open(server: &Kanava, key: &Path, user: &str) -> LineSession {
        let mut child = spawn_lines(server, key, user, &[]);
        let mut session = LineSession {
            user: user.to_owned(),
            stdin: child.stdin.take(),
            out: lines_of(child.stdout.take().unwrap()),
            err: lines_of(child.stderr.take().unwrap()),
            child,
            seen: Vec::new(),
        };
        session.send("/who").await;
        session
            .err_line("the answer to /who", |l| l.contains(" here: "))
            .await;
        session
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads stdout until a line satisfies `check`; returns it.
    pub async fn out_line(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        loop {
            let line = tokio::time::timeout(WAIT, self.out.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} on stdout; saw {:?}", self.seen))
                .unwrap_or_else(|| panic!("stdout ended before {what}; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if check(&line) {
                return line;
            }
        }
    }

    /// Reads stderr until a line satisfies `check`; returns it.
    pub async fn err_line(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut read = Vec::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.err.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} on stderr; saw {read:?}"))
                .unwrap_or_else(|| panic!("stderr ended before {what}; saw {read:?}"));
            if check(&line) {
                return line;
            }
            read.push(line);
        }
    }

    /// The stderr lines (server notes) received so far and not yet read.
    pub fn notes_so_far(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.err.try_recv().ok()).collect()
    }

    /// Sends `to` the private message `message`, which `to` gets and this session gets its
    /// copy of; `to` answers with `/reply REPLY`, which this session gets.
    pub async fn pm_and_reply(&mut self, to: &mut LineSession, message: &str, reply: &str) {
        let (from_name, to_name) = (self.user.clone(), to.user.clone());
        self.send(&format!("/msg {to_name} {message}")).await;
        to.out_line(&format!("{from_name}'s PM"), |l| {
            l.ends_with(&format!(" [PM from {from_name}] {message}"))
        })
        .await;
        self.out_line("the sender's copy", |l| {
            l.ends_with(&format!(" [PM to {to_name}] {message}"))
        })
        .await;
        to.send(&format!("/reply {reply}")).await;
        self.out_line(&format!("{to_name}'s reply"), |l| {
            l.ends_with(&format!(" [PM from {to_name}] {reply}"))
        })
        .await;
    }

    /// Runs a command and returns its answer, the first stderr line it causes.
    pub async fn ask(&mut self, command: &str) -> String {
        self.send(command).await;
        tokio::time::timeout(WAIT, self.err.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command}"))
            .unwrap()
    }

    /// Waits for ssh to exit (after EOF if `close`), returning its status and the rest of stdout.
    pub async fn exit(mut self, close: bool) -> (ExitStatus, Vec<String>) {
        if close {
            drop(self.stdin.take());
        }
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("ssh exits")
            .unwrap();
        while let Some(line) = self.out.recv().await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

/// The fingerprint `ssh-keygen -l -E sha256` prints for a key file.
pub fn fingerprint(key: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn private_messages_reach_only_the_two_and_wait_durably_for_an_absent_recipient() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Start::new().data(&data).start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(&server, &keys.path("rsa"), "bob").await;
    let mut carol = LineSession::open(&server, &keys.path("ecdsa256"), "carol").await;

    alice.pm_and_reply(&mut bob, "meet at noon", "ok").await;
    // Carol, in the same room, sees public traffic sent after both PMs, and neither PM.
    alice.send("public after").await;
    carol
        .out_line("the public line", |l| l.ends_with(" <alice> public after"))
        .await;
    assert!(
        !carol
            .seen
            .iter()
            .any(|l| l.contains("noon") || l.contains("PM")),
        "{:?}",
        carol.seen
    );

    assert_eq!(
        alice.ask("/msg nobody hello").await,
        "kanava: no user is called nobody"
    );
    // Dave has a name but is away; the message waits for him, across a kill -9.
    let dave = ssh(&server, &[&keys.path("ecdsa384")], "dave", &["rooms"]).await;
    assert!(dave.status.success(), "{}", stderr(&dave));
    assert_eq!(
        alice.ask("/msg dave see you later").await,
        "kanava: dave is not connected; they will see it when they are"
    );
    drop((alice, bob, carol));
    server.kill9();
    let server = Start::new().data(&data).start();
    let mut dave = LineSession::open(&server, &keys.path("ecdsa384"), "dave").await;
    dave.out_line("the waiting PM", |l| {
        l.ends_with(" [PM from alice] see you later")
    })
    .await;
    let (status, _) = dave.exit(true).await;
    assert_eq!(status.code(), Some(0));
    // Shown once: the next login does not repeat it.
    let again = LineSession::open(&server, &keys.path("ecdsa384"), "dave").await;
    let (_, seen) = again.exit(true).await;
    assert!(
        !seen.iter().any(|l| l.contains("see you later")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn emotes_away_topics_and_whois() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut web = client.join("web", "lobby").await;
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(&server, &keys.path("rsa"), "bob").await;

    // An emote shows as such over SSH; Mles clients get the text as typed.
    alice.send("/me waves").await;
    bob.out_line("the emote", |l| l.ends_with(" ** alice waves"))
        .await;
    loop {
        if recv(&mut web).await == text("/me waves") {
            break;
        }
    }

    bob.send("/away at lunch").await;
    alice
        .out_line("the away notice", |l| {
            l.ends_with(" * bob is away: at lunch")
        })
        .await;
    assert_eq!(
        alice.ask("/msg bob are you there").await,
        "kanava: bob is away: at lunch"
    );

    alice.send("/topic release on friday").await;
    bob.out_line("the topic notice", |l| {
        l.ends_with(" * alice set the topic of #lobby: release on friday")
    })
    .await;
    let carol = LineSession::open(&server, &keys.path("ecdsa256"), "carol").await;
    let (_, seen) = carol.exit(true).await;
    assert!(
        seen.iter()
            .any(|l| l.ends_with(" * topic of #lobby: release on friday (set by alice)")),
        "a joiner is shown the topic: {seen:?}"
    );

    alice.send("/whois bob").await;
    let mut whois = Vec::new();
    for _ in 0..4 {
        whois.push(alice.err_line("whois", |_| true).await);
    }
    let whois = whois.join("\n");
    assert!(whois.contains("kanava: bob: name bound "), "{whois}");
    assert!(
        whois.contains(&format!("key {}", fingerprint(&keys.path("rsa")))),
        "{whois}"
    );
    assert!(
        whois.contains("connected since ") && whois.contains("over ssh: line in #lobby"),
        "{whois}"
    );
    assert!(whois.contains("away: at lunch"), "{whois}");
    assert_eq!(
        alice.ask("/whois web").await,
        "kanava: web: no SSH key; over Mles in #lobby"
    );

    bob.send("/back").await;
    alice
        .out_line("the back notice", |l| l.ends_with(" * bob is back"))
        .await;
    web.send(text("still here")).await.unwrap();
    alice
        .out_line("web's line", |l| l.ends_with(" <~web> still here"))
        .await;
}

#[tokio::test]
async fn ignoring_hides_a_users_messages_until_unignored() {
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut web = client.join("web", "lobby").await;
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(&server, &keys.path("rsa"), "bob").await;
    assert_eq!(
        alice.ask("/ignore bob").await,
        "kanava: ignoring bob: their messages are hidden from you"
    );
    assert_eq!(alice.ask("/ignore").await, "kanava: you ignore: bob");
    bob.send("noise").await;
    loop {
        if recv(&mut web).await == text("noise") {
            break;
        }
    }
    web.send(text("signal")).await.unwrap();
    alice
        .out_line("web's line", |l| l.ends_with(" <~web> signal"))
        .await;
    assert!(
        !alice.seen.iter().any(|l| l.contains("noise")),
        "{:?}",
        alice.seen
    );
    assert_eq!(
        alice.ask("/unignore bob").await,
        "kanava: no longer ignoring bob"
    );
    bob.send("heard").await;
    alice
        .out_line("bob's line", |l| l.ends_with(" <bob> heard"))
        .await;
}

#[tokio::test]
async fn a_key_holds_one_name_unless_shared_and_owners_add_keys() {
    let keys = Keys::new();
    let server = Kanava::start();
    let login = |key: &'static str, user: &'static str| {
        let server = &server;
        let keys = &keys;
        async move { ssh(server, &[&keys.path(key)], user, &["rooms"]).await }
    };
    assert!(login("ed25519", "alice").await.status.success());
    assert_eq!(
        login("ed25519", "alias").await.status.code(),
        Some(255),
        "a key's second name is refused"
    );

    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let rsa_pub = std::fs::read_to_string(keys.path("rsa.pub")).unwrap();
    let rsa = fingerprint(&keys.path("rsa"));
    assert!(
        alice
            .ask(&format!("/key add {}", rsa_pub.trim()))
            .await
            .starts_with(&format!(
                "kanava: key {rsa} is pending: it becomes yours when it logs in once as alice"
            )),
    );
    assert!(login("rsa", "alice").await.status.success());
    let ed = fingerprint(&keys.path("ed25519"));
    let listed = alice.ask("/key").await;
    assert!(
        listed.starts_with(&format!("kanava: key {ed} added "))
            && listed.ends_with(" (this session)"),
        "{listed}"
    );
    let second = alice.err_line("the second key", |_| true).await;
    assert!(
        second.starts_with(&format!("kanava: key {rsa} added ")),
        "{second}"
    );
    assert_eq!(
        alice.ask(&format!("/key remove {ed}")).await,
        format!("kanava: key {ed} removed")
    );
    assert_eq!(login("ed25519", "alice").await.status.code(), Some(255));
    assert_eq!(
        alice.ask(&format!("/key remove {rsa}")).await,
        format!("kanava: {rsa} is not one of your keys, or is your only active one")
    );
    let refused = alice.ask("/key add ssh-ed25519 notakey").await;
    assert_eq!(refused.split(':').next(), Some("kanava"));
    assert!(
        refused.starts_with("kanava: not an OpenSSH public key: "),
        "{refused}"
    );

    // With shared keys on, one key may hold several names.
    let shared = Start::new().args(&["--ssh-shared-keys"]).start();
    for user in ["one", "two"] {
        let out = ssh(&shared, &[&keys.path("ecdsa256")], user, &["rooms"]).await;
        assert!(out.status.success(), "{user}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn operators_kick_ban_and_mute() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ops = dir.path().join("ops");
    std::fs::write(
        &ops,
        format!(
            "# operators\nno-pty {}",
            std::fs::read_to_string(keys.path("ed25519.pub")).unwrap()
        ),
    )
    .unwrap();
    let ops_arg = ops.to_str().unwrap().to_owned();
    let start = |data: &Path| {
        Start::new()
            .data(data)
            .args(&["--ssh-ops", &ops_arg])
            .start()
    };
    let server = start(&data);
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let mut bob = LineSession::open(&server, &keys.path("rsa"), "bob").await;
    let mut carol = LineSession::open(&server, &keys.path("ecdsa256"), "carol").await;
    assert_eq!(
        bob.ask("/kick carol").await,
        "kanava: only operators may do that"
    );
    // The help is a list, one command per line; an operator's ends with theirs.
    assert_eq!(alice.ask("/help").await, "kanava: commands:");
    let mut help = Vec::new();
    while help
        .last()
        .is_none_or(|l: &String| !l.contains("/mute NAME"))
    {
        let line = tokio::time::timeout(WAIT, alice.err.recv()).await;
        help.push(line.expect("the whole help").unwrap());
    }
    assert!(help.contains(&"kanava: operators:".to_owned()), "{help:?}");
    assert!(
        help.iter().any(|l| l.starts_with("kanava:   /kick NAME ")),
        "{help:?}"
    );

    // A muted user's messages reach nobody else.
    assert_eq!(
        alice.ask("/mute carol").await,
        "kanava: carol is muted: their messages reach nobody else"
    );
    carol.send("muted words").await;
    carol.ask("/who").await; // carol's session has handled the line
    assert_eq!(
        alice.ask("/mute carol").await,
        "kanava: carol is no longer muted"
    );
    carol.send("free again").await;
    bob.out_line("carol's line", |l| l.ends_with(" <carol> free again"))
        .await;
    assert!(
        !bob.seen.iter().any(|l| l.contains("muted words")),
        "{:?}",
        bob.seen
    );

    // A kick ends the user's session, says why, and tells the room.
    alice.send("/kick bob").await;
    bob.err_line("the kick", |l| l == "kanava: kicked by alice")
        .await;
    let (status, _) = bob.exit(false).await;
    assert_eq!(status.code(), Some(1));
    carol
        .out_line("the kick notice", |l| {
            l.ends_with(" * bob was kicked by alice")
        })
        .await;

    // A ban ends the sessions too, and refuses the keys until lifted, across restarts.
    let mut bob = LineSession::open(&server, &keys.path("rsa"), "bob").await;
    alice.send("/ban bob 1h").await;
    bob.err_line("the ban", |l| {
        l.starts_with("kanava: banned by alice until ")
    })
    .await;
    assert_eq!(bob.exit(false).await.0.code(), Some(1));
    let refused = ssh(&server, &[&keys.path("rsa")], "bob", &["rooms"]).await;
    assert_eq!(refused.status.code(), Some(255));
    drop((alice, carol));
    assert!(server.terminate());
    let server = start(&data);
    let refused = ssh(&server, &[&keys.path("rsa")], "bob", &["rooms"]).await;
    assert_eq!(
        refused.status.code(),
        Some(255),
        "the ban did not survive a restart"
    );
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    let rsa = fingerprint(&keys.path("rsa"));
    let banned = alice.ask("/banned").await;
    assert!(
        banned.starts_with(&format!("kanava: banned: {rsa} (bob) by alice until ")),
        "{banned}"
    );
    assert_eq!(
        alice.ask("/unban bob").await,
        format!("kanava: lifted: {rsa} (bob)")
    );
    let back = ssh(&server, &[&keys.path("rsa")], "bob", &["rooms"]).await;
    assert!(back.status.success(), "{}", stderr(&back));

    // The ops file is read at each use: without alice's key, she is no operator.
    std::fs::write(&ops, "").unwrap();
    assert_eq!(
        alice.ask("/kick bob").await,
        "kanava: only operators may do that"
    );
}

#[tokio::test]
async fn rooms_stay_open_until_parted() {
    let keys = Keys::new();
    let server = Kanava::start();
    let who = |room: &'static str| {
        let (server, keys) = (&server, &keys);
        async move {
            let out = ssh(server, &[&keys.path("rsa")], "bob", &["who", room]).await;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    alice.send("/join #side").await;
    alice.send("in side").await;
    assert_eq!(alice.ask("/who").await, "kanava: 1 here: alice");
    // Both rooms are open: alice is a member of each.
    assert_eq!(who("#side").await, "alice\n");
    assert_eq!(who("#lobby").await, "alice\n");
    assert_eq!(alice.ask("/part").await, "kanava: you left #side");
    assert_eq!(who("#side").await, "");
    assert_eq!(
        alice.ask("/part").await,
        "kanava: #lobby is where everyone starts; /quit to leave"
    );
    assert_eq!(alice.exit(true).await.0.code(), Some(0));
}

#[tokio::test]
async fn a_shutdown_tells_the_line_interface_and_tail_f_why_before_it_closes() {
    let keys = Keys::new();
    let server = Kanava::start();
    let mut alice = LineSession::open(&server, &keys.path("ed25519"), "alice").await;
    // Bob follows the room with `tail -f`.
    let mut follow = crate::ssh::ssh_command(&server, &[&keys.path("rsa")], "bob");
    follow
        .args(["tail", "lobby", "-n", "0", "-f"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let follow = tokio::process::Command::from(follow).spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !alice.ask("/who").await.contains("bob") {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's tail -f never joined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let stopped = tokio::task::spawn_blocking(move || server.terminate());
    alice
        .err_line("the reason", |l| l == "kanava: the server is shutting down")
        .await;
    let (status, _) = alice.exit(false).await;
    assert_eq!(status.code(), Some(1), "ssh's exit status");
    let follow = tokio::time::timeout(WAIT, follow.wait_with_output())
        .await
        .expect("tail -f ends")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&follow.stderr),
        "kanava: the server is shutting down\n"
    );
    assert_eq!(follow.status.code(), Some(1), "tail -f's exit status");
    assert!(
        stopped.await.unwrap(),
        "kanava exited with failure on SIGTERM"
    );
}
