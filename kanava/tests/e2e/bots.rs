//! Bots: the line interface (`ssh -T`, no command) and exec commands as a script drives them,
//! with the real OpenSSH client. A scripted input gives the same answers every time, however
//! soon its stdin ends; `KANAVA_BACKLOG=0` holds for every room; answers go to stderr and
//! events to stdout; the one string OpenSSH sends for a command is split as a shell would; `say`
//! never posts a command and stores one entry per message.

use std::path::Path;
use std::process::Output;

use crate::ssh::{Keys, ssh, ssh_lines, stderr};
use crate::support::*;

/// How many times each scripted input runs.
const RUNS: usize = 20;

/// `line` without its leading `2026-11-21T12:00:00Z ` timestamp, if it has one.
fn without_time(line: &str) -> &str {
    match line.as_bytes().get(19..21) {
        Some(b"Z ") => &line[21..],
        _ => line,
    }
}

/// The stdout lines of `out`, each without its timestamp.
fn events(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| without_time(l).to_owned())
        .collect()
}

/// Runs `script` through `ssh -T` (with `options`) [`RUNS`] times, one run after the other,
/// stdin ending right after the script; asserts that every run exits 0 with byte-identical
/// stderr and the same events on stdout (timestamps aside), and returns the first run.
async fn same_every_run(
    server: &Kanava,
    key: &Path,
    user: &str,
    options: &[&str],
    script: &str,
) -> Output {
    let first = ssh_lines(server, key, user, options, script.as_bytes().to_vec()).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    for run in 2..=RUNS {
        let again = ssh_lines(server, key, user, options, script.as_bytes().to_vec()).await;
        assert_eq!(
            again.status.code(),
            Some(0),
            "run {run}: {}",
            stderr(&again)
        );
        assert_eq!(
            stderr(&again),
            stderr(&first),
            "run {run}: the answers differ from run 1"
        );
        assert_eq!(
            events(&again),
            events(&first),
            "run {run}: the events differ from run 1"
        );
    }
    first
}

/// `ssh … user@host ONE-STRING`: the command as one argument, sent as is (quotes included),
/// as `ssh host "say '#dev' hi"` sends it.
async fn exec(server: &Kanava, key: &Path, user: &str, command: &str) -> Output {
    ssh(server, &[key], user, &[command]).await
}

/// The event lines of `tail ROOM -n 1000`, without timestamps; `room` is one shell word.
pub(crate) async fn tail(server: &Kanava, key: &Path, room: &str) -> Vec<String> {
    let out = exec(server, key, "reader", &format!("tail {room} -n 1000")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    events(&out)
}

#[tokio::test]
async fn a_script_gets_every_answer_on_stderr_and_every_event_on_stdout_in_all_20_runs() {
    let keys = Keys::new();
    // Each run announces away and back: room for all of them in the announcement limit.
    let server = Start::new()
        .args(&["--ssh-announcements-per-minute", "600"])
        .start();
    let alice = keys.path("ed25519");
    // bob has a name (his first login binds it) and is not connected; carol sets the topic.
    let bound = exec(&server, &keys.path("rsa"), "bob", "rooms").await;
    assert!(bound.status.success(), "{}", stderr(&bound));
    let topic = ssh_lines(
        &server,
        &keys.path("ecdsa256"),
        "carol",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        b"/topic bots welcome\n".to_vec(),
    )
    .await;
    assert!(topic.status.success(), "{}", stderr(&topic));

    // The last lines are answered by notices, which a session ending at EOF used to drop. One
    // message a run keeps the 20 runs within the rate limit (a burst of 20).
    let script = "/who\n/topic\n/whois bob\nhello\n/away testing\n/back\n";
    let out = same_every_run(
        &server,
        &alice,
        "alice",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        script,
    )
    .await;
    let answers = stderr(&out);
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), 5, "{answers:#?}");
    assert_eq!(answers[0], "kanava: 1 here: alice");
    // The topic is an answer: on stderr, and not on stdout.
    assert_eq!(
        answers[1],
        "kanava: topic of #lobby: bots welcome (set by carol)"
    );
    assert!(
        answers[2].starts_with("kanava: bob: name bound 20"),
        "{answers:#?}"
    );
    assert!(
        answers[3].starts_with("kanava:   key SHA256:"),
        "{answers:#?}"
    );
    assert_eq!(answers[4], "kanava:   not connected over ssh");
    // stdout: the room's events, nothing else (no echo of "hello").
    assert_eq!(
        events(&out),
        ["* alice is away: testing", "* alice is back"]
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .all(|l| l.len() > 21 && l.as_bytes()[19..21] == *b"Z "),
        "every event line is timestamped: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Every run's message was posted.
    let lobby = tail(&server, &keys.path("ecdsa384"), "lobby").await;
    let posted = lobby.iter().filter(|l| *l == "<alice> hello").count();
    assert_eq!(posted, RUNS, "{lobby:#?}");

    // A last line without a newline is a line too, and /quit answers what came before it.
    let out = same_every_run(
        &server,
        &alice,
        "alice",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        "/away brb\n/quit\n/who\n",
    )
    .await;
    assert_eq!(events(&out), ["* alice is away: brb"]);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = same_every_run(
        &server,
        &alice,
        "alice",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        "/who",
    )
    .await;
    assert_eq!(stderr(&out), "kanava: 1 here: alice\n");
}

#[tokio::test]
async fn backlog_off_holds_for_every_room_joined() {
    let keys = Keys::new();
    let server = Kanava::start();
    let alice = keys.path("ed25519");
    let room = channel("history");
    for text in ["earlier", "and more"] {
        let said = exec(
            &server,
            &keys.path("rsa"),
            "bob",
            &format!("say {room} {text}"),
        )
        .await;
        assert!(said.status.success(), "{}", stderr(&said));
    }
    let script = format!("/join #{room}\n/who\n");
    // With the backlog on, joining shows the room's history (so this test can see it).
    let shown = ssh_lines(&server, &alice, "alice", &[], script.clone().into_bytes()).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        events(&shown).contains(&"<bob> and more".to_owned()),
        "{:?}",
        events(&shown)
    );
    // With KANAVA_BACKLOG=0, neither the first room's nor the joined room's history shows.
    let out = same_every_run(
        &server,
        &alice,
        "alice",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        &script,
    )
    .await;
    assert!(out.stdout.is_empty(), "{:?}", events(&out));
    assert_eq!(stderr(&out), "kanava: 1 here: alice\n");
}

#[tokio::test]
async fn exec_commands_are_split_as_a_shell_would_split_them() {
    let keys = Keys::new();
    let server = Kanava::start();
    let alice = keys.path("ed25519");
    let reader = keys.path("rsa");
    let room = channel("dev");

    // OpenSSH sends `say '#room' hi` as one string; the quotes only group words.
    let said = exec(&server, &alice, "alice", &format!("say '#{room}' hi")).await;
    assert_eq!(said.status.code(), Some(0), "{}", stderr(&said));
    let said = exec(
        &server,
        &alice,
        "alice",
        &format!(r##"say "#{room}" 'two  spaces' "it's" \#1"##),
    )
    .await;
    assert_eq!(said.status.code(), Some(0), "{}", stderr(&said));
    // Words given apart (as `ssh host say '#room' hi there` sends them after the local shell
    // took the quotes off) are one message; a `#` never starts a comment.
    let said = ssh(
        &server,
        &[&alice],
        "alice",
        &["say", &format!("#{room}"), "hi", "there"],
    )
    .await;
    assert_eq!(said.status.code(), Some(0), "{}", stderr(&said));
    assert_eq!(
        tail(&server, &reader, &format!("'#{room}'")).await,
        [
            "<alice> hi",
            "<alice> two  spaces it's #1",
            "<alice> hi there"
        ]
    );
    // No room is named with the quotes.
    assert_eq!(
        tail(&server, &reader, &format!(r#""'#{room}'""#)).await,
        Vec::<String>::new()
    );

    // An unbalanced quote is a usage error, and nothing is posted.
    let unbalanced = exec(&server, &alice, "alice", &format!("say '#{room} oops")).await;
    assert_eq!(unbalanced.status.code(), Some(2), "{}", stderr(&unbalanced));
    assert!(
        stderr(&unbalanced).contains("unbalanced quotes"),
        "{}",
        stderr(&unbalanced)
    );
    assert_eq!(tail(&server, &reader, &room).await.len(), 3);
}

#[tokio::test]
async fn say_never_posts_a_command_and_stores_one_entry_per_message() {
    let keys = Keys::new();
    let server = Kanava::start();
    let alice = keys.path("ed25519");
    let bob = keys.path("rsa");
    let room = channel("x");
    let mut watcher = server.client().join("watcher", &room).await;

    // A slash command's text is refused with a note, and neither posted nor sent privately.
    let refused = exec(
        &server,
        &alice,
        "alice",
        &format!("say '#{room}' /msg bob secret"),
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("say posts text, not commands")
            && stderr(&refused).contains("//TEXT"),
        "{}",
        stderr(&refused)
    );
    assert!(refused.stdout.is_empty());
    let inbox = ssh_lines(
        &server,
        &bob,
        "bob",
        &["-o", "SetEnv=KANAVA_BACKLOG=0"],
        Vec::new(),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&inbox.stdout).contains("secret"),
        "the refused text reached bob: {}",
        String::from_utf8_lossy(&inbox.stdout)
    );
    // `/me ACTION` is an emote and `//TEXT` posts `/TEXT`.
    for command in [
        format!("say {room} /me waves"),
        format!("say {room} //etc/motd is a file"),
    ] {
        let said = exec(&server, &alice, "alice", &command).await;
        assert_eq!(said.status.code(), Some(0), "{command}: {}", stderr(&said));
    }
    // What the Mles watcher gets first is the emote: the refused text never went out.
    assert_eq!(recv(&mut watcher).await, text("/me waves"));
    assert_eq!(recv(&mut watcher).await, text("/etc/motd is a file"));

    // 24 says by two users store 24 entries: no join line from any of them.
    for i in 0..24 {
        let (key, user) = if i % 2 == 0 {
            (&alice, "alice")
        } else {
            (&bob, "bob")
        };
        let said = exec(&server, key, user, &format!("say {room} message {i}")).await;
        assert_eq!(said.status.code(), Some(0), "{}", stderr(&said));
    }
    let mut expected = vec![
        "** alice waves".to_owned(),
        "<alice> /etc/motd is a file".to_owned(),
    ];
    expected.extend((0..24).map(|i| {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        format!("<{user}> message {i}")
    }));
    // The watcher's own join is the room's first entry; it came before any say.
    let mut stored = tail(&server, &keys.path("ecdsa256"), &room).await;
    assert_eq!(stored.remove(0), "* ~watcher joined");
    assert_eq!(stored, expected);
}
