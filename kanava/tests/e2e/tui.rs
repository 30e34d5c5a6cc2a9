//! The full-screen chat, driven through the real `ssh` client inside tmux; assertions are on
//! the screen as tmux emulates it.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;

use crate::ssh::{Keys, ssh_command, ssh_command_with};
use crate::support::*;

/// A private tmux server, and a directory where each login records `ssh`'s exit status; the
/// server is killed on drop.
pub(crate) struct Tmux(String, tempfile::TempDir);

impl Tmux {
    pub(crate) fn new() -> Tmux {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kanava-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Tmux(name, tempfile::tempdir().unwrap())
    }

    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens a window running `ssh` (with a terminal) as `user`.
    fn login(&self, server: &Kanava, keys: &Keys, key: &str, user: &str) {
        let command = ssh_command(server, &[&keys.path(key)], user);
        self.open(user, &command_line(&command));
    }

    /// A scratch directory that lives as long as the tmux server.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.1.path()
    }

    /// Opens a window named `user` running the shell command `line` (an `ssh` command line,
    /// maybe wrapped).
    pub(crate) fn open(&self, user: &str, line: &str) {
        // The pane's shell records the command's exit status itself: tmux reports none for a
        // process it did not see exit normally.
        let status = self.1.path().join(format!("{user}.status"));
        let shell = format!("{line}; echo $? > {}", status.display());
        let size = ["-x", "80", "-y", "24"];
        self.run(
            &[
                &["new-session", "-d", "-s", user][..],
                &size,
                &[shell.as_str()],
            ]
            .concat(),
        );
        // Dead panes stay, so that the screen after exit can be read. Set once the session (and
        // so the server) exists; the chat runs until the test ends it.
        self.run(&["set-option", "-g", "remain-on-exit", "on"]);
    }

    /// Logs in as [`login`](Self::login) does and waits until the chat has started (the user
    /// is in the room), so that logins made one after the other join in that order.
    async fn login_ready(&self, server: &Kanava, keys: &Keys, key: &str, user: &str) {
        self.login(server, keys, key, user);
        self.welcomed(user).await;
    }

    /// Waits until `user`'s chat has started: the welcome is on the screen.
    async fn welcomed(&self, user: &str) {
        let welcome = format!("* welcome, {user}.");
        self.wait(user, "the welcome", |s| s.contains(&welcome))
            .await;
    }

    pub(crate) fn screen(&self, user: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", user])
    }

    /// The screen with tmux's escape sequences for colours and attributes.
    fn screen_styled(&self, user: &str) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", user])
    }

    /// Presses keys by tmux name (`Tab`, `PPage`, `NPage`, `C-u`).
    fn keys(&self, user: &str, keys: &[&str]) {
        self.run(&[&["send-keys", "-t", user][..], keys].concat());
    }

    /// Resizes `user`'s window to `cols`x`rows`, as a terminal window dragged bigger or smaller.
    fn resize(&self, user: &str, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(&["resize-window", "-t", user, "-x", &cols, "-y", &rows]);
    }

    /// Pastes `text` into `user`'s window as a terminal does (bracketed, when the program asked
    /// for it), from a file so that a paste of any size fits.
    fn paste(&self, user: &str, text: &str) {
        let file = self.1.path().join("paste");
        std::fs::write(&file, text).unwrap();
        self.run(&["load-buffer", "-b", "p", &file.to_string_lossy()]);
        self.run(&["paste-buffer", "-p", "-b", "p", "-t", user]);
    }

    /// Types `text` without pressing Enter.
    fn type_text(&self, user: &str, text: &str) {
        self.run(&["send-keys", "-t", user, "-l", text]);
    }

    pub(crate) fn type_line(&self, user: &str, text: &str) {
        self.run(&["send-keys", "-t", user, "-l", text]);
        self.run(&["send-keys", "-t", user, "Enter"]);
    }

    /// Waits until `user`'s screen satisfies `check`; returns the screen.
    pub(crate) async fn wait(
        &self,
        user: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(user);
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{user}'s screen never showed {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `command` as one shell line (its arguments hold no spaces).
pub(crate) fn command_line(command: &Command) -> String {
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    words.join(" ")
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

#[tokio::test]
async fn two_users_chat_and_the_input_line_survives_incoming_messages_and_resize() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login(&server, &keys, "ed25519", "alice");
    tmux.login(&server, &keys, "rsa", "bob");
    tmux.wait("alice", "the status line", |s| s.contains("#lobby"))
        .await;
    tmux.wait("bob", "two people here", |s| s.contains("2 here"))
        .await;

    // Bob has half a line typed when Alice's message arrives.
    tmux.run(&["send-keys", "-t", "bob", "-l", "half a line"]);
    tmux.type_line("alice", "hello 日本");
    let screen = tmux
        .wait("bob", "alice's message", |s| {
            s.contains("<alice> hello 日本")
        })
        .await;
    let last = screen.lines().last().unwrap_or_default();
    assert_eq!(
        last.trim_end(),
        "> half a line",
        "input disturbed:\n{screen}"
    );
    // Alice sees her own message once.
    let mine = tmux
        .wait("alice", "her message", |s| s.contains("<alice> hello 日本"))
        .await;
    assert_eq!(mine.matches("<alice> hello 日本").count(), 1);

    // A resize redraws at the new size at once, input intact.
    tmux.run(&["resize-window", "-t", "bob", "-x", "100", "-y", "30"]);
    let screen = tmux
        .wait("bob", "a 30-row layout", |s| {
            let lines: Vec<&str> = s.lines().collect();
            lines.len() == 30
                && lines[28].contains("#lobby")
                && lines[29].starts_with("> half a line")
        })
        .await;
    assert!(screen.contains("<alice> hello 日本"), "{screen}");

    // Input wider than the window scrolls and is sent whole.
    let long = "x".repeat(150);
    tmux.run(&["send-keys", "-t", "bob", "C-u"]);
    tmux.type_line("bob", &long);
    // Its rows after the first are indented under the text.
    tmux.wait("alice", "bob's long line", |s| {
        s.split_whitespace()
            .collect::<String>()
            .contains(&"x".repeat(140))
    })
    .await;

    // /quit restores the terminal and exits 0.
    tmux.type_line("alice", "/quit");
    let status_file = tmux.1.path().join("alice.status");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && status.ends_with('\n')
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ssh did not exit:\n{}",
            tmux.screen("alice")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.trim(), "0", "ssh's exit status");
    let after = tmux.screen("alice");
    assert!(
        !after.contains("#lobby"),
        "alternate screen not left:\n{after}"
    );
}

#[tokio::test]
async fn escape_sequences_from_others_never_reach_the_terminal_and_a_paste_is_one_message() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut web = client.join("web", "lobby").await;
    let tmux = Tmux::new();
    tmux.login(&server, &keys, "ed25519", "alice");
    tmux.wait("alice", "two people here", |s| s.contains("2 here"))
        .await;
    let title = tmux.run(&["display", "-p", "-t", "alice", "#{pane_title}"]);
    web.send(text("before")).await.unwrap();
    web.send(text(
        "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u{9b}31m\x1b]52;c;aGk=\x07",
    ))
    .await
    .unwrap();
    let screen = tmux
        .wait("alice", "the attack, neutralised", |s| s.contains("pwned"))
        .await;
    assert!(
        screen.contains("<~web> ^[]0;pwned^G^[[2J^[[31mred\u{fffd}31m^[]52;c;aGk=^G"),
        "{screen}"
    );
    assert!(
        screen.contains("<~web> before"),
        "the screen was cleared:\n{screen}"
    );
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "alice", "#{pane_title}"]),
        title
    );

    // A bracketed paste of three lines is one multi-line message.
    tmux.run(&["set-buffer", "-b", "p", "l1\nl2\nl3"]);
    tmux.run(&["paste-buffer", "-p", "-b", "p", "-t", "alice"]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    assert_eq!(recv(&mut web).await, text("l1\nl2\nl3"));
}

/// The status line: the second-last row, without the padding of its reversed background.
fn status_line(screen: &str) -> &str {
    let lines: Vec<&str> = screen.lines().collect();
    lines[lines.len().saturating_sub(2)].trim_end()
}

/// The input line: the last row.
fn input_line(screen: &str) -> &str {
    screen.lines().last().unwrap_or_default().trim_end()
}

#[tokio::test]
async fn other_open_rooms_show_unread_counts_until_switched_to() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut web = client.join("web", "a").await;
    let mut lobby = client.join("lounger", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.wait("alice", "the lobby", |s| {
        status_line(s) == " #lobby  2 here"
    })
    .await;

    tmux.type_line("alice", "/join #a");
    tmux.wait("alice", "#a current, #lobby open", |s| {
        status_line(s) == " #a  2 here  1:#lobby [2:#a]"
    })
    .await;
    tmux.type_line("alice", "/join #b");
    tmux.wait("alice", "#b current, #lobby and #a open", |s| {
        status_line(s) == " #b  1 here  1:#lobby 2:#a [3:#b]"
    })
    .await;

    // Traffic of the rooms not shown counts; none of it reaches the pane.
    web.send(text("first in a")).await.unwrap();
    web.send(text("second in a")).await.unwrap();
    lobby.send(text("hello lobby")).await.unwrap();
    let screen = tmux
        .wait("alice", "unread counts", |s| {
            status_line(s) == " #b  1 here  1:#lobby (1) 2:#a (2) [3:#b]"
        })
        .await;
    assert!(
        !screen.contains("in a") && !screen.contains("hello lobby"),
        "another room's traffic in #b's pane:\n{screen}"
    );

    // Switching back shows the room's messages and clears its count; the others keep theirs.
    tmux.type_line("alice", "/join #a");
    let screen = tmux
        .wait("alice", "#a current again", |s| {
            status_line(s) == " #a  2 here  1:#lobby (1) [2:#a] 3:#b"
        })
        .await;
    let screen = if screen.contains("<~web> second in a") {
        screen
    } else {
        tmux.wait("alice", "#a's messages", |s| {
            s.contains("<~web> second in a")
        })
        .await
    };
    assert!(screen.contains("<~web> first in a"), "{screen}");
    assert!(!screen.contains("hello lobby"), "{screen}");

    // Live traffic of the current room is shown, not counted.
    web.send(text("third in a")).await.unwrap();
    let screen = tmux
        .wait("alice", "#a's live message", |s| {
            s.contains("<~web> third in a")
        })
        .await;
    assert_eq!(
        status_line(&screen),
        " #a  2 here  1:#lobby (1) [2:#a] 3:#b"
    );

    tmux.type_line("alice", "/join #lobby");
    let screen = tmux
        .wait("alice", "#lobby current, no counts left", |s| {
            status_line(s) == " #lobby  2 here  [1:#lobby] 2:#a 3:#b"
        })
        .await;
    let screen = if screen.contains("<~lounger> hello lobby") {
        screen
    } else {
        tmux.wait("alice", "#lobby's message", |s| {
            s.contains("<~lounger> hello lobby")
        })
        .await
    };
    assert!(!screen.contains("in a"), "{screen}");
}

/// The palette of `crates/ssh/src/tui/screen.rs` (`NICK_COLOURS`).
const NICK_COLOURS: [u8; 12] = [31, 32, 33, 35, 36, 37, 70, 94, 130, 133, 166, 172];

/// The 256-colour foreground (`ESC[38;5;Nm`) that `name` is drawn in on each row of a styled
/// screen where `before name after` appears, e.g. `<` `alice` `> hi`. Rows where the name is
/// not coloured give `None`.
fn colours_of(styled: &str, before: &str, name: &str, after: &str) -> Vec<Option<u8>> {
    let mut found = Vec::new();
    for row in styled.lines() {
        let plain = strip_sgr(row);
        if !plain.contains(&format!("{before}{name}{after}")) {
            continue;
        }
        // The SGR sequences between `before` and the name, as tmux writes them.
        let colour = row.find(&format!("{name}\x1b[")).and_then(|end| {
            let start = row[..end].rfind(before)? + before.len();
            let sgr = &row[start..end];
            let at = sgr.rfind("38;5;")? + 5;
            let digits: String = sgr[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        });
        found.push(colour);
    }
    found
}

/// `row` without its SGR escape sequences.
fn strip_sgr(row: &str) -> String {
    let mut plain = String::new();
    let mut chars = row.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test]
async fn names_are_drawn_in_a_colour_of_their_own() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.wait("bob", "two people here", |s| s.contains("2 here"))
        .await;
    tmux.type_line("alice", "first");
    tmux.type_line("alice", "second");
    tmux.wait("bob", "alice's messages", |s| s.contains("<alice> second"))
        .await;
    tmux.type_line("bob", "reply");
    tmux.wait("alice", "bob's message", |s| s.contains("<bob> reply"))
        .await;

    // On bob's screen, every row of alice's has her name in one palette colour.
    let on_bob = tmux.screen_styled("bob");
    let alice = colours_of(&on_bob, "<", "alice", "> ");
    assert_eq!(alice.len(), 2, "alice's two messages:\n{on_bob}");
    let colour = alice[0].unwrap_or_else(|| panic!("alice's name not coloured:\n{on_bob:?}"));
    assert!(
        NICK_COLOURS.contains(&colour),
        "colour {colour} not in the palette"
    );
    assert_eq!(alice, [Some(colour); 2], "{on_bob:?}");
    // Her join notice, too.
    assert_eq!(
        colours_of(&on_bob, "* ", "alice", " joined"),
        [Some(colour)],
        "{on_bob:?}"
    );
    // Her own screen draws her name in the same colour, and bob's in one of the palette.
    let on_alice = tmux.screen_styled("alice");
    assert_eq!(
        colours_of(&on_alice, "<", "alice", "> "),
        [Some(colour); 2],
        "{on_alice:?}"
    );
    let bob = colours_of(&on_alice, "<", "bob", "> reply");
    assert!(
        matches!(bob[..], [Some(c)] if NICK_COLOURS.contains(&c)),
        "bob's name: {bob:?} in {on_alice:?}"
    );
    // The text after the name is not coloured.
    let row = on_alice
        .lines()
        .find(|r| r.ends_with("> first"))
        .unwrap_or_else(|| panic!("{on_alice:?}"));
    assert!(row.contains("\x1b[39m> first"), "{row:?}");
}

#[tokio::test]
async fn tab_completes_commands_and_the_names_present() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let _webby = server.client().join("webby", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.wait("bob", "three here", |s| status_line(s).contains("3 here"))
        .await;

    // `/who` and `/whois` share `/who`: Tab goes as far as they agree, adding no space.
    tmux.type_text("alice", "/wh");
    tmux.keys("alice", &["Tab"]);
    tmux.wait("alice", "/wh completed to /who", |s| {
        input_line(s) == "> /who"
    })
    .await;
    // One match completes with a space; names (here a Mles client's) complete after the start.
    tmux.type_text("alice", "i");
    tmux.keys("alice", &["Tab"]);
    tmux.type_text("alice", "we");
    tmux.keys("alice", &["Tab"]);
    tmux.wait("alice", "/whois webby", |s| {
        input_line(s) == "> /whois webby"
    })
    .await;
    tmux.keys("alice", &["Enter"]);
    tmux.wait("alice", "the /whois answer", |s| {
        s.contains("* webby: no SSH key; over Mles in #lobby")
    })
    .await;

    // A name at the start of the line gets `: `, whatever the case typed.
    tmux.type_text("alice", "BO");
    tmux.keys("alice", &["Tab"]);
    tmux.type_text("alice", "hi");
    tmux.wait("alice", "the addressed line", |s| {
        input_line(s) == "> bob: hi"
    })
    .await;
    tmux.keys("alice", &["Enter"]);
    tmux.wait("bob", "alice's line to him", |s| {
        s.contains("<alice> bob: hi")
    })
    .await;

    // Nothing matches: the word stays as typed.
    tmux.type_text("alice", "zz");
    tmux.keys("alice", &["Tab"]);
    tmux.type_text("alice", "!");
    tmux.wait("alice", "zz unchanged", |s| input_line(s) == "> zz!")
        .await;
}

#[tokio::test]
async fn scrolling_back_loads_older_history_from_the_store() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-backlog", "5"]).start();
    let mut web = server.client().join("web", "lobby").await;
    for i in 1..=40 {
        web.send(text(&format!("msg {i:02}"))).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 40.0).await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    let screen = tmux
        .wait("alice", "the welcome", |s| s.contains("* welcome, alice."))
        .await;
    // Only the last 5 messages are shown on entering.
    assert_eq!(
        web_messages(&screen),
        ["msg 36", "msg 37", "msg 38", "msg 39", "msg 40"],
        "{screen}"
    );

    // PgUp past the oldest line shown loads older ones, up to the very first.
    let deadline = Instant::now() + WAIT;
    let top = loop {
        tmux.keys("alice", &["PPage"]);
        let pressed = Instant::now();
        let screen = loop {
            let screen = tmux.screen("alice");
            if screen.contains("msg 01") || pressed.elapsed() > Duration::from_secs(1) {
                break screen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if screen.contains("msg 01") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "the first message never came into view:\n{screen}"
        );
    };
    assert!(
        status_line(&top).ends_with("[scrolled: PgDn]"),
        "status line: {top}"
    );
    // The room from its start: its first event, then the messages in order, each once.
    assert!(
        top.lines().next().unwrap().ends_with("* ~web joined"),
        "{top}"
    );
    let older = web_messages(&top);
    let expected: Vec<String> = (1..=older.len()).map(|i| format!("msg {i:02}")).collect();
    assert_eq!(older, expected, "{top}");
    assert_eq!(older.len(), 21, "a full pane of older lines:\n{top}");

    // PgDn returns to the newest: the last pane of messages, with no gap or repeat where the
    // backlog began.
    tmux.keys("alice", &["NPage"]);
    let bottom = tmux
        .wait("alice", "the bottom again", |s| {
            !status_line(s).contains("[scrolled") && s.contains("msg 40")
        })
        .await;
    assert!(
        input_line(&bottom) == ">"
            && bottom
                .lines()
                .nth(21)
                .unwrap()
                .starts_with("* welcome, alice."),
        "{bottom}"
    );
    let newest = web_messages(&bottom);
    let expected: Vec<String> = (41 - newest.len()..=40)
        .map(|i| format!("msg {i:02}"))
        .collect();
    assert_eq!(newest, expected, "{bottom}");
    assert_eq!(newest.len(), 21, "{bottom}");
}

#[tokio::test]
async fn private_messages_reach_only_the_two_people() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.login_ready(&server, &keys, "ecdsa256", "carol").await;
    tmux.wait("carol", "three here", |s| status_line(s).contains("3 here"))
        .await;

    tmux.type_line("alice", "/msg bob hi there");
    tmux.wait("bob", "the private message", |s| {
        s.contains("[PM from alice] hi there")
    })
    .await;
    let sent = tmux
        .wait("alice", "her copy", |s| s.contains("[PM to bob] hi there"))
        .await;
    assert_eq!(sent.matches("hi there").count(), 1, "{sent}");

    // /reply answers whoever wrote last.
    tmux.type_line("bob", "/reply hello alice");
    tmux.wait("alice", "bob's reply", |s| {
        s.contains("[PM from bob] hello alice")
    })
    .await;
    tmux.wait("bob", "his copy", |s| {
        s.contains("[PM to alice] hello alice")
    })
    .await;

    // Carol, in the same room, sees a later room message but neither private one.
    tmux.type_line("alice", "after the secrets");
    let screen = tmux
        .wait("carol", "alice's room message", |s| {
            s.contains("<alice> after the secrets")
        })
        .await;
    assert!(
        !screen.contains("hi there") && !screen.contains("hello alice") && !screen.contains("PM"),
        "carol saw a private message:\n{screen}"
    );
    // Nor did the private messages go to the room's pane of the others as room messages.
    let screen = tmux
        .wait("bob", "alice's room message", |s| {
            s.contains("<alice> after the secrets")
        })
        .await;
    assert_eq!(screen.matches("hi there").count(), 1, "{screen}");
}

#[tokio::test]
async fn me_is_an_action_for_ssh_and_a_plain_text_frame_for_mles() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let mut web = server.client().join("web", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.wait("bob", "three here", |s| status_line(s).contains("3 here"))
        .await;

    tmux.type_line("alice", "/me waves");
    tmux.wait("bob", "alice's action", |s| s.contains("** alice waves"))
        .await;
    let own = tmux
        .wait("alice", "her action", |s| s.contains("** alice waves"))
        .await;
    assert_eq!(own.matches("waves").count(), 1, "{own}");
    // The Mles client gets the frame as sent (joins after its own are not sent to it live).
    let frame = recv(&mut web).await;
    assert_eq!(frame, text("/me waves"), "{}", describe(&frame));

    // A Mles client's own `/me` is shown as an action over SSH too.
    web.send(text("/me nods")).await.unwrap();
    tmux.wait("alice", "web's action", |s| s.contains("** ~web nods"))
        .await;
}

#[tokio::test]
async fn the_people_count_follows_later_joins_and_leaves() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.wait("alice", "one here", |s| status_line(s) == " #lobby  1 here")
        .await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.wait("bob", "two here", |s| status_line(s) == " #lobby  2 here")
        .await;
    // The count follows a join at once, though the room is quiet.
    tmux.wait("alice", "bob counted", |s| {
        status_line(s) == " #lobby  2 here"
    })
    .await;
    tmux.type_line("bob", "/quit");
    tmux.wait("alice", "bob gone", |s| status_line(s) == " #lobby  1 here")
        .await;
}

/// The `<~web> ` messages on a screen, top to bottom.
fn web_messages(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter_map(|l| l.split_once("<~web> ").map(|(_, m)| m.trim_end()))
        .collect()
}

#[tokio::test]
async fn the_first_page_up_shows_the_lines_just_above_the_backlog() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-backlog", "5"]).start();
    let mut web = server.client().join("web", "lobby").await;
    for i in 1..=200 {
        web.send(text(&format!("msg {i:03}"))).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 200.0).await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    let screen = tmux.screen("alice");
    assert_eq!(
        web_messages(&screen),
        ["msg 196", "msg 197", "msg 198", "msg 199", "msg 200"],
        "{screen}"
    );
    // One PgUp from a pane holding only the backlog: the page above it, ending with the
    // message just older than the oldest one shown.
    tmux.keys("alice", &["PPage"]);
    let screen = tmux
        .wait("alice", "older messages", |s| {
            web_messages(s).first().is_some_and(|m| *m < "msg 196")
        })
        .await;
    let shown = web_messages(&screen);
    // The page above the backlog ends with the line just above it: nothing is skipped.
    assert_eq!(
        shown.last(),
        Some(&"msg 195"),
        "a gap between the backlog and the first page above it:\n{screen}"
    );
}

#[tokio::test]
async fn joining_the_current_room_again_does_not_repeat_its_messages() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let mut web = server.client().join("web", "lobby").await;
    web.send(text("only once")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.wait("alice", "the backlog", |s| s.contains("<~web> only once"))
        .await;
    tmux.type_line("alice", "/join #lobby");
    tmux.type_line("alice", "/who");
    let screen = tmux
        .wait("alice", "the /who answer", |s| s.contains("* 2 here:"))
        .await;
    // The room's backlog is not appended a second time.
    assert_eq!(
        screen.matches("<~web> only once").count(),
        1,
        "the backlog was shown again:\n{screen}"
    );
}

#[tokio::test]
async fn a_private_message_to_someone_away_waits_for_their_next_login() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // dave's name is bound by a first login; then he leaves.
    tmux.login_ready(&server, &keys, "ecdsa384", "dave").await;
    tmux.type_line("dave", "/quit");
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    wait_until("dave has left", || {
        tmux.1.path().join("dave.status").exists()
    })
    .await;
    tmux.type_line("alice", "/whois dave");
    tmux.wait("alice", "dave not connected", |s| {
        s.contains("*   not connected over ssh")
    })
    .await;

    tmux.type_line("alice", "/msg dave see you later");
    tmux.wait("alice", "the message, and that dave is away", |s| {
        s.contains("[PM to dave] see you later")
            && s.contains("* dave is not connected; they will see it when they are")
    })
    .await;

    tmux.run(&["kill-session", "-t", "dave"]);
    tmux.login_ready(&server, &keys, "ecdsa384", "dave").await;
    let screen = tmux
        .wait("dave", "the message kept for him", |s| {
            s.contains("[PM from alice] see you later")
        })
        .await;
    let note = screen
        .lines()
        .position(|l| l.contains("* 1 private message") && l.ends_with("while you were away:"))
        .unwrap_or_else(|| panic!("no note of the waiting message:\n{screen}"));
    assert!(
        screen
            .lines()
            .nth(note + 1)
            .is_some_and(|l| l.ends_with("[PM from alice] see you later")),
        "the message under the note:\n{screen}"
    );
    // Delivered once: the next login does not show it again.
    tmux.type_line("dave", "/quit");
    wait_until("dave has left again", || {
        std::fs::read_to_string(tmux.1.path().join("dave.status")).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    tmux.run(&["kill-session", "-t", "dave"]);
    let _ = std::fs::remove_file(tmux.1.path().join("dave.status"));
    tmux.login_ready(&server, &keys, "ecdsa384", "dave").await;
    let screen = tmux.screen("dave");
    assert!(!screen.contains("see you later"), "shown again:\n{screen}");
}

#[tokio::test]
async fn a_paste_of_any_size_is_one_message_and_shows_as_indented_lines() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-max-message", "32768"]).start();
    let mut web = server.client().join("web", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    // Alice at 80x24, bob at an unusual 50x15.
    tmux.resize("bob", 50, 15);
    tmux.wait("bob", "a 15-row layout", |s| s.lines().count() == 15)
        .await;

    // 20,000 bytes in 400 lines: one message, every byte of it.
    let big: String = (0..400)
        .map(|i| format!("line {i:03} {}\n", "x".repeat(40)))
        .collect();
    assert_eq!(big.len(), 20_000);
    tmux.paste("alice", big.trim_end());
    tmux.keys("alice", &["Enter"]);
    assert_eq!(recv(&mut web).await, text(big.trim_end()));
    tmux.wait("bob", "the end of the big paste", |s| {
        s.contains("line 399")
    })
    .await;

    // A short multi-line paste with a tab: indented continuation rows for sender and viewer,
    // the tab as spaces, no ^J and no replacement character.
    tmux.paste("alice", "first line\n\tsecond\nthird");
    let input = tmux
        .wait("alice", "the paste in the input line", |s| {
            input_line(s).starts_with("> first line")
        })
        .await;
    assert_eq!(input_line(&input), "> first line↵    second↵third");
    tmux.keys("alice", &["Enter"]);
    assert_eq!(recv(&mut web).await, text("first line\n\tsecond\nthird"));
    for (user, width) in [("alice", 80), ("bob", 50)] {
        let screen = tmux
            .wait(user, "the multi-line message", |s| {
                s.lines().any(|r| r.ends_with("<alice> first line"))
            })
            .await;
        let rows: Vec<&str> = screen.lines().collect();
        let at = rows
            .iter()
            .rposition(|r| r.ends_with("<alice> first line"))
            .unwrap_or_else(|| panic!("{user} at {width} columns:\n{screen}"));
        let indent = " ".repeat("12:00 <alice> ".len());
        assert_eq!(
            rows[at + 1..at + 3],
            [format!("{indent}    second"), format!("{indent}third")],
            "{user} at {width} columns:\n{screen}"
        );
        assert!(
            !screen.contains("^J") && !screen.contains('\u{fffd}'),
            "{screen}"
        );
    }

    // A paste longer than a message is refused with a note, the input kept, nothing sent.
    tmux.type_text("alice", "keep me ");
    tmux.paste("alice", &"y".repeat(40_000));
    let screen = tmux
        .wait("alice", "the refusal", |s| {
            s.contains("paste of 40000 bytes not taken")
        })
        .await;
    assert_eq!(input_line(&screen), "> keep me", "{screen}");
    tmux.type_text("alice", "after");
    tmux.keys("alice", &["Enter"]);
    assert_eq!(recv(&mut web).await, text("keep me after"));
}

#[tokio::test]
async fn a_message_refused_by_the_rate_limit_stays_in_the_input_line() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let mut web = server.client().join("web", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;

    // Alice's bot, on the line interface with her key, spends her message budget (shared by all
    // her sessions) 100 times a second, fifty times what it refills.
    let bot = ssh_command_with(&server, &[&keys.path("ed25519")], "alice", &["-T"]);
    let mut bot = tokio::process::Command::from(bot)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = bot.stdin.take().unwrap();
    let spam = tokio::spawn(async move {
        while stdin.write_all(b"spam\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The budget is spent once the bot is refused.
    let mut refusals = tokio::io::BufReader::new(bot.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(WAIT, refusals.next_line()).await;
        let line = line
            .expect("the bot refused in time")
            .unwrap()
            .expect("bot alive");
        if line.contains("rate limit") {
            break;
        }
    }

    // The bot takes each token as soon as it is back, so alice's line is refused; should it
    // slip through in the moment a token is there, she tries another.
    let mut refused = None;
    for attempt in 0..5 {
        let line = format!("over the limit {attempt}");
        tmux.type_line("alice", &line);
        let screen = tmux
            .wait("alice", "her line sent or refused", |s| {
                s.matches("rate limit: message not sent").count() > 0
                    && input_line(s) == format!("> {line}")
                    || s.contains(&format!("<alice> {line}"))
            })
            .await;
        if input_line(&screen) == format!("> {line}") {
            refused = Some(line);
            break;
        }
    }
    let line = refused.expect("one of five lines refused");
    let screen = tmux.screen("alice");
    assert!(screen.contains("rate limit: message not sent"), "{screen}");
    // At 133x41 the kept input is still there.
    tmux.resize("alice", 133, 41);
    let screen = tmux
        .wait("alice", "a 41-row layout, the input kept", |s| {
            s.lines().count() == 41 && input_line(s) == format!("> {line}")
        })
        .await;
    assert!(screen.contains("rate limit: message not sent"), "{screen}");

    // Once the bot stops, Enter sends the kept line as it was, and the input empties.
    spam.abort();
    let _ = spam.await;
    bot.kill().await.unwrap();
    let deadline = Instant::now() + WAIT;
    'sent: loop {
        assert!(
            Instant::now() < deadline,
            "never sent:\n{}",
            tmux.screen("alice")
        );
        tmux.keys("alice", &["Enter"]);
        for frame in drain_for(&mut web, Duration::from_millis(600)).await {
            if frame == text(&line) {
                break 'sent;
            }
        }
    }
    tmux.wait("alice", "an empty input line", |s| input_line(s) == ">")
        .await;
}

#[tokio::test]
async fn ctrl_l_repaints_a_screen_something_else_wrote_over() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.type_line("alice", "before the mess");
    tmux.type_text("alice", "half typed");
    let tty = tmux.run(&["display", "-p", "-t", "alice", "#{pane_tty}"]);
    for (cols, rows) in [(80, 24), (50, 15)] {
        tmux.resize("alice", cols, rows);
        tmux.wait("alice", "the chat at its size", |s| {
            s.lines().count() == usize::from(rows)
                && status_line(s).starts_with(" #lobby")
                && input_line(s) == "> half typed"
                && s.starts_with("* welcome")
                && s.contains("<alice> before the mess")
        })
        .await;
        // Colours and attributes too.
        let drawn = tmux.screen_styled("alice");
        // Another program (a `wall`, a background job) writes over the terminal.
        std::fs::write(tty.trim(), "\x1b[2J\x1b[HGARBAGE\r\n\x1b[7mMORE").unwrap();
        tmux.wait("alice", "the garbage", |s| s.starts_with("GARBAGE"))
            .await;
        tmux.keys("alice", &["C-l"]);
        let screen = tmux
            .wait("alice", "the chat repainted", |s| {
                !s.contains("GARBAGE") && !s.contains("MORE") && input_line(s) == "> half typed"
            })
            .await;
        assert!(screen.contains("<alice> before the mess"), "{screen}");
        let deadline = Instant::now() + WAIT;
        while tmux.screen_styled("alice") != drawn {
            assert!(
                Instant::now() < deadline,
                "at {cols}x{rows}, not as before:\n{drawn:?}\n{:?}",
                tmux.screen_styled("alice")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn arrows_and_backspace_move_and_delete_whole_emoji_flags_and_accented_letters() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let mut web = server.client().join("web", "lobby").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    for (cols, rows) in [(80, 24), (133, 41)] {
        tmux.resize("alice", cols, rows);
        tmux.wait("alice", "the chat at its size", |s| {
            s.lines().count() == usize::from(rows) && status_line(s).starts_with(" #lobby")
        })
        .await;
        // On the screen: an accented e (e and a combining accent) goes with one Backspace.
        tmux.type_text("alice", "xe\u{301}");
        tmux.wait("alice", "the accented e", |s| {
            input_line(s) == "> xe\u{301}"
        })
        .await;
        tmux.keys("alice", &["BSpace"]);
        tmux.wait("alice", "the accented e gone whole", |s| {
            input_line(s) == "> x"
        })
        .await;
        tmux.keys("alice", &["BSpace"]);
        tmux.wait("alice", "an empty input line", |s| input_line(s) == ">")
            .await;
        // What is sent: a thumbs-up with a skin tone and a flag go whole too (terminals differ
        // in how wide they draw them, so the message tells, not the screen).
        tmux.type_text("alice", "ae\u{301}👍🏽🇫🇮z");
        tmux.keys("alice", &["Left", "BSpace", "Left", "BSpace", "Right"]);
        tmux.type_text("alice", "!");
        tmux.keys("alice", &["Enter"]);
        assert_eq!(recv(&mut web).await, text("a👍🏽!z"), "at {cols}x{rows}");
    }
}

#[tokio::test]
async fn a_terminal_too_small_says_so_and_the_chat_comes_back_when_it_grows() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.type_line("alice", "still here");
    tmux.type_text("alice", "half typed");
    for (cols, rows) in [(15, 4), (80, 4), (19, 24)] {
        tmux.resize("alice", cols, rows);
        let screen = tmux
            .wait("alice", "the notice", |s| {
                s.lines().count() == usize::from(rows)
                    && s.split_whitespace().collect::<Vec<_>>().join(" ")
                        == "terminal too small: the chat needs 20x5"
            })
            .await;
        assert!(
            !screen.contains("#lobby") && !screen.contains('>'),
            "{screen}"
        );
    }
    for (cols, rows) in [(80, 24), (20, 5)] {
        tmux.resize("alice", cols, rows);
        let screen = tmux
            .wait("alice", "the chat again", |s| {
                s.lines().count() == usize::from(rows)
                    && status_line(s).starts_with(" #lobby")
                    && input_line(s) == "> half typed"
                    // Wrapped at 20 columns, so compared by words.
                    && s.split_whitespace().collect::<Vec<_>>().join(" ").contains("<alice> still here")
            })
            .await;
        assert!(!screen.contains("too small"), "{screen}");
    }
}

#[tokio::test]
async fn help_is_a_list_and_long_messages_wrap_at_spaces_under_their_text() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    let words: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    for (cols, rows) in [(80, 24), (50, 15)] {
        tmux.resize("alice", cols, rows);
        tmux.wait("alice", "the chat at its size", |s| {
            s.lines().count() == usize::from(rows) && status_line(s).starts_with(" #lobby")
        })
        .await;
        tmux.type_line("bob", &long);
        let wanted = format!("<bob> {long}");
        let screen = tmux
            .wait("alice", "bob's long message", |s| {
                s.lines().count() == usize::from(rows)
                    && s.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .contains(&wanted)
            })
            .await;
        let lines: Vec<&str> = screen.lines().collect();
        let first = lines
            .iter()
            .rposition(|l| l.contains("<bob> word0 "))
            .unwrap_or_else(|| panic!("{screen}"));
        let indent = " ".repeat("12:00 <bob> ".len());
        let mut seen = Vec::new();
        for (i, row) in lines[first..].iter().enumerate() {
            if seen.len() == words.len() {
                break;
            }
            let text = if i == 0 {
                &row[row.find("word0").unwrap()..]
            } else {
                assert!(
                    row.starts_with(&indent) && !row[indent.len()..].starts_with(' '),
                    "row {i} not under the text at {cols}x{rows}:\n{screen}"
                );
                row
            };
            assert!(row.len() <= usize::from(cols), "{screen}");
            seen.extend(text.split_whitespace().map(str::to_owned));
        }
        assert_eq!(seen, words, "every word whole, in order, at {cols}x{rows}");

        // /help: a heading, then one command per row.
        tmux.type_line("alice", "/help");
        let screen = tmux
            .wait("alice", "the help", |s| {
                // The newest help, at the bottom of the pane.
                let lines: Vec<&str> = s.lines().collect();
                lines.len() > 3 && lines[lines.len() - 3].contains("*   /quit")
            })
            .await;
        // A small screen shows the rest a page or two up.
        tmux.keys("alice", &["PPage"]);
        let above = tmux
            .wait("alice", "a page up", |s| {
                status_line(s).contains("scrolled")
            })
            .await;
        let above = if (screen.clone() + &above).contains("*   /join") {
            above
        } else {
            tmux.keys("alice", &["PPage"]);
            let further = tmux
                .wait("alice", "the help's first command", |s| {
                    s.contains("*   /join")
                })
                .await;
            format!("{further}\n{above}")
        };
        let mut commands = std::collections::BTreeSet::new();
        for row in screen.lines().chain(above.lines()) {
            let Some((_, rest)) = row.split_once("*   /") else {
                continue;
            };
            assert!(
                !rest.contains(" /"),
                "two commands in a row at {cols}x{rows}: {row}"
            );
            commands.insert(rest.split(' ').next().unwrap().to_owned());
        }
        assert_eq!(
            commands.len(),
            22,
            "one row each at {cols}x{rows}: {commands:?}\n{above}"
        );
        assert!(commands.contains("join") && commands.contains("msg"));
        assert!(
            screen
                .lines()
                .chain(above.lines())
                .any(|l| l.ends_with("* commands:")),
            "the heading"
        );
        tmux.keys("alice", &["C-End"]);
    }
}

/// The SGR parameters tmux writes between `before` and `name` on the first row of a styled
/// screen where `before name after` appears: how the name is coloured.
fn name_sgr(styled: &str, before: &str, name: &str, after: &str) -> Vec<u16> {
    let row = styled
        .lines()
        .find(|row| strip_sgr(row).contains(&format!("{before}{name}{after}")))
        .unwrap_or_else(|| panic!("no row with {before}{name}{after}:\n{styled}"));
    let end = row.find(&format!("{name}{after}")).unwrap_or(row.len());
    let start = row[..end].rfind(before).map_or(0, |at| at + before.len());
    row[start..end]
        .split("\x1b[")
        .filter_map(|sgr| sgr.strip_suffix('m').or_else(|| sgr.split('m').next()))
        .flat_map(|params| params.split(';'))
        .filter_map(|param| param.parse().ok())
        .collect()
}

#[tokio::test]
async fn terminals_without_colours_get_none() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    let terminals = [
        ("vera", "ed25519", "vt100"),
        ("dora", "rsa", "dumb"),
        ("lina", "ecdsa256", "xterm-256color"),
    ];
    for (user, key, term) in terminals {
        let command = ssh_command(&server, &[&keys.path(key)], user);
        tmux.open(user, &format!("env TERM={term} {}", command_line(&command)));
        tmux.welcomed(user).await;
    }
    tmux.type_line("lina", "hello all");
    for (user, _, term) in terminals {
        tmux.wait(user, "lina's line", |s| s.contains("<lina> hello all"))
            .await;
        let params = name_sgr(&tmux.screen_styled(user), "<", "lina", "> hello all");
        let coloured = params
            .iter()
            .any(|p| *p == 38 || (30..=37).contains(p) || (90..=97).contains(p));
        assert_eq!(
            coloured,
            term == "xterm-256color",
            "{term}: the name's SGR {params:?}"
        );
    }
}

#[tokio::test]
async fn back_without_away_pm_to_yourself_and_a_name_in_capitals() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // Alice binds her name, then logs in again as ALICE with the same key, at 50x15.
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.login(&server, &keys, "ed25519", "ALICE");
    tmux.wait("ALICE", "the welcome under the bound spelling", |s| {
        s.contains("* welcome, alice.")
    })
    .await;
    tmux.resize("ALICE", 50, 15);
    tmux.type_line("ALICE", "shouting?");
    tmux.wait("bob", "her message under her name", |s| {
        s.contains("<alice> shouting?")
    })
    .await;

    for user in ["alice", "ALICE"] {
        // /back when not away: a note for her, nothing for the room.
        tmux.type_line(user, "/back");
        tmux.wait(user, "the note", |s| {
            s.lines()
                .filter(|l| l.ends_with("* you are not away"))
                .count()
                == 1
        })
        .await;
        // A PM to herself, in any spelling, is refused.
        tmux.type_line(user, "/msg ALICE note to self");
        let screen = tmux
            .wait(user, "the refusal", |s| {
                s.contains("* that is you: /msg someone else")
            })
            .await;
        assert!(!screen.contains("[PM"), "{screen}");
        tmux.type_line(user, "/msg ALICE note to self");
        tmux.type_line(user, "/back");
        tmux.wait(user, "the second answers", |s| {
            s.matches("* that is you").count() == 2 && s.matches("* you are not away").count() == 2
        })
        .await;
    }
    // Away and back: announced once each; the /back without /away never was.
    tmux.type_line("alice", "/away lunch");
    tmux.type_line("alice", "/back");
    let screen = tmux
        .wait("bob", "away and back", |s| s.contains("* alice is back"))
        .await;
    assert_eq!(screen.matches("is back").count(), 1, "{screen}");
    assert!(screen.contains("* alice is away: lunch"), "{screen}");
    assert!(!screen.contains("ALICE"), "{screen}");
}

impl Tmux {
    /// Logs in as [`login_ready`](Self::login_ready) does, but the window's shell lives on
    /// after `ssh` exits (recording its status), so that the terminal is read as the user's
    /// shell finds it.
    async fn login_then_shell(&self, server: &Kanava, keys: &Keys, key: &str, user: &str) {
        let command = ssh_command(server, &[&keys.path(key)], user);
        let exit = self.dir().join(format!("{user}.exit"));
        let line = format!(
            "{}; echo $? > {}; exec sleep 600",
            command_line(&command),
            exit.display()
        );
        self.open(user, &line);
        self.welcomed(user).await;
    }

    /// Whether `user`'s terminal is in the alternate screen and whether its cursor shows, as
    /// tmux tracks them: `"0 1"` for a terminal left as a shell expects it.
    fn terminal_state(&self, user: &str) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            user,
            "#{alternate_on} #{cursor_flag}",
        ])
        .trim()
        .to_owned()
    }

    /// Waits until the `ssh` of a [`login_then_shell`](Self::login_then_shell) has exited;
    /// returns its status.
    async fn exited(&self, user: &str) -> String {
        let file = self.dir().join(format!("{user}.exit"));
        let mut status = String::new();
        wait_until(&format!("{user}'s ssh exiting"), || {
            status = std::fs::read_to_string(&file).unwrap_or_default();
            status.ends_with('\n')
        })
        .await;
        status.trim().to_owned()
    }
}

/// Checks that `user`'s chat ended with `reason` on the normal screen, the terminal restored
/// (out of the alternate screen, cursor showing) and nothing of the chat left on it.
async fn ended_on_the_normal_screen(tmux: &Tmux, user: &str, reason: &str) {
    let status = tmux.exited(user).await;
    let screen = tmux.screen(user);
    assert_eq!(tmux.terminal_state(user), "0 1", "{user}:\n{screen}");
    let first = screen
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(first.starts_with(reason), "{user}: {reason:?}\n{screen}");
    assert!(
        !screen.contains("#lobby") && !screen.contains("welcome"),
        "{user}: the chat is still on the screen:\n{screen}"
    );
    assert_eq!(status, "1", "{user}'s ssh exit status");
}

#[tokio::test]
async fn kick_ban_and_shutdown_say_why_on_the_normal_screen_and_restore_the_terminal() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops");
    std::fs::copy(keys.path("ed25519.pub"), &ops).unwrap();
    let server = Start::new()
        .args(&["--ssh-ops", ops.to_str().unwrap()])
        .start();
    let tmux = Tmux::new();
    let users = [
        ("ed25519", "alice"),
        ("rsa", "bob"),
        ("ecdsa256", "carol"),
        ("ecdsa384", "dave"),
    ];
    for (key, user) in users {
        tmux.login_then_shell(&server, &keys, key, user).await;
    }
    // Bob and Dave at an unusual size, Carol and Alice at 80x24.
    for user in ["bob", "dave"] {
        tmux.resize(user, 133, 41);
        tmux.wait(user, "the 41-row layout", |s| s.lines().count() == 41)
            .await;
    }
    tmux.wait("alice", "four here", |s| status_line(s).ends_with("4 here"))
        .await;

    // A kick with a reason: Bob reads it on his own screen once ssh has exited, and the room
    // hears of it.
    tmux.type_line("alice", "/kick bob spamming again");
    ended_on_the_normal_screen(&tmux, "bob", "kanava: kicked by alice: spamming again").await;
    tmux.wait("carol", "the kick notice", |s| {
        s.contains("* bob was kicked by alice: spamming again")
    })
    .await;

    // A ban, at 80x24.
    tmux.type_line("alice", "/ban carol 1h");
    ended_on_the_normal_screen(&tmux, "carol", "kanava: banned by alice until ").await;
    tmux.wait("alice", "the ban notice", |s| {
        s.contains("* carol was banned by alice until ")
    })
    .await;

    // A server shutdown (SIGTERM): every chat says so on the normal screen before the
    // connection closes, at either size.
    assert!(server.terminate(), "kanava exited with failure on SIGTERM");
    for user in ["alice", "dave"] {
        ended_on_the_normal_screen(&tmux, user, "kanava: the server is shutting down").await;
    }
}

/// `HH:MM` now, `offset_minutes` east of UTC.
fn clock_at(offset_minutes: u64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + offset_minutes * 60;
    format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60)
}

/// The time before the first line of `screen` that contains `text`.
fn time_of<'s>(screen: &'s str, text: &str) -> &'s str {
    let line = screen
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_default();
    line.split(" <").next().unwrap_or_default()
}

#[tokio::test]
async fn times_are_shown_in_the_zone_the_client_sent_or_tz_set() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // Alice's client sends TZ (no summer time in Kolkata: always UTC+05:30); she is at 80x24.
    let alice = ssh_command_with(
        &server,
        &[&keys.path("ed25519")],
        "alice",
        &["-o", "SetEnv=TZ=Asia/Kolkata"],
    );
    tmux.open("alice", &command_line(&alice));
    tmux.welcomed("alice").await;
    // Bob sets his with /tz, at 133x41.
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    tmux.resize("bob", 133, 41);
    tmux.wait("bob", "the 41-row layout", |s| s.lines().count() == 41)
        .await;
    tmux.type_line("bob", "/tz");
    tmux.wait("bob", "the zone", |s| {
        s.contains("* times are shown in UTC; /tz ZONE changes it")
    })
    .await;
    tmux.type_line("alice", "/tz");
    tmux.wait("alice", "the zone her client sent", |s| {
        s.contains("* times are shown in Asia/Kolkata (UTC+05:30 now);")
    })
    .await;
    // A name that is no zone is refused, and stays in the input line to be corrected.
    tmux.type_line("bob", "/tz Mars/Olympus");
    let screen = tmux
        .wait("bob", "the refusal", |s| s.contains("* unknown time zone"))
        .await;
    assert_eq!(input_line(&screen), "> /tz Mars/Olympus", "{screen}");
    tmux.keys("bob", &["C-u"]);
    tmux.type_line("bob", "/tz Asia/Kathmandu");
    tmux.wait("bob", "the new zone", |s| {
        s.contains("* times are shown in Asia/Kathmandu (UTC+05:45 now) from now on")
    })
    .await;

    // One message, read in three zones: each reader sees their own clock.
    let before = [clock_at(330), clock_at(345), clock_at(0)];
    tmux.type_line("alice", "what time is it");
    let seen_by_alice = tmux
        .wait("alice", "her message", |s| {
            s.contains("<alice> what time is it")
        })
        .await;
    let seen_by_bob = tmux
        .wait("bob", "her message", |s| {
            s.contains("<alice> what time is it")
        })
        .await;
    let after = [clock_at(330), clock_at(345), clock_at(0)];
    let alice_time = time_of(&seen_by_alice, "<alice> what time is it");
    assert!(
        [&before[0], &after[0]].contains(&&alice_time.to_owned()),
        "alice (Kolkata) saw {alice_time:?}, the time was {before:?}..{after:?}"
    );
    let bob_time = time_of(&seen_by_bob, "<alice> what time is it");
    assert!(
        [&before[1], &after[1]].contains(&&bob_time.to_owned()),
        "bob (Kathmandu) saw {bob_time:?}, the time was {before:?}..{after:?}"
    );
    // Back to UTC: the next line is in UTC.
    tmux.type_line("bob", "/tz UTC");
    tmux.type_line("bob", "and now");
    let screen = tmux
        .wait("bob", "his message", |s| s.contains("<bob> and now"))
        .await;
    let utc = time_of(&screen, "<bob> and now");
    let now = clock_at(0);
    assert!(
        [&after[2], &now].contains(&&utc.to_owned()),
        "bob (UTC) saw {utc:?}, the time was {:?}..{now:?}",
        after[2]
    );

    // `tail` gives RFC 3339 times, with the offset of the zone the client sent.
    let mut tail = ssh_command_with(
        &server,
        &[&keys.path("ecdsa256")],
        "carol",
        &["-o", "SetEnv=TZ=Asia/Kolkata"],
    );
    tail.args(["tail", "lobby"])
        .stdin(std::process::Stdio::null());
    let out = tail.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with(" <alice> what time is it"))
        .unwrap_or_else(|| panic!("no message in the tail:\n{text}"));
    assert_eq!(&line[19..25], "+05:30", "{line}");
    assert_eq!(&line[11..16], alice_time, "{line}");
}

/// Whether `screen` has the row `HH:MM text`, as the chat shows an event of today.
fn has_event(screen: &str, text: &str) -> bool {
    screen.lines().any(|row| {
        let row = row.trim_end();
        row.len() == 6 + text.len()
            && row.ends_with(text)
            && row.as_bytes()[2] == b':'
            && row[..5].bytes().filter(u8::is_ascii_digit).count() == 4
    })
}

#[tokio::test]
async fn joins_and_leaves_show_live_on_the_screen_until_quiet() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // Alice at 80x24, Carol at an unusual size.
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    tmux.login_ready(&server, &keys, "rsa", "carol").await;
    tmux.resize("carol", 133, 41);
    tmux.wait("carol", "the 41-row layout", |s| s.lines().count() == 41)
        .await;

    // An SSH user and a Mles client come and go: both screens show it as it happens.
    tmux.login_ready(&server, &keys, "ecdsa256", "bob").await;
    let web = server.client().join("web", "lobby").await;
    for user in ["alice", "carol"] {
        tmux.wait(user, "bob's and web's arrivals", |s| {
            has_event(s, "* bob joined") && has_event(s, "* ~web joined")
        })
        .await;
    }
    drop(web);
    tmux.type_line("bob", "/quit");
    for user in ["alice", "carol"] {
        tmux.wait(user, "web's and bob's departures", |s| {
            has_event(s, "* ~web left") && has_event(s, "* bob left")
        })
        .await;
    }

    // /quiet hides them, for Carol only.
    tmux.type_line("carol", "/quiet");
    tmux.wait("carol", "the quiet note", |s| {
        s.contains("* quiet: people joining and leaving are not shown")
    })
    .await;
    // Carol's chat sees Dave come and go (the count follows), and shows no line for either.
    tmux.login_ready(&server, &keys, "ecdsa384", "dave").await;
    tmux.wait("carol", "three here", |s| {
        status_line(s).ends_with("3 here")
    })
    .await;
    tmux.type_line("dave", "/quit");
    tmux.wait("carol", "two here", |s| status_line(s).ends_with("2 here"))
        .await;
    tmux.wait("alice", "dave coming and going", |s| {
        has_event(s, "* dave joined") && has_event(s, "* dave left")
    })
    .await;
    tmux.type_line("alice", "after dave");
    let screen = tmux
        .wait("carol", "the message after dave left", |s| {
            s.contains("<alice> after dave")
        })
        .await;
    assert!(
        !screen.contains("dave joined") && !screen.contains("dave left"),
        "shown while quiet:\n{screen}"
    );

    // Again: shown again.
    tmux.type_line("carol", "/quiet");
    tmux.wait("carol", "the note", |s| {
        s.contains("* people joining and leaving are shown again")
    })
    .await;
    let _web = server.client().join("web2", "lobby").await;
    tmux.wait("carol", "web2's arrival", |s| {
        has_event(s, "* ~web2 joined")
    })
    .await;
}

#[tokio::test]
async fn a_chat_that_cannot_start_says_why_on_the_normal_screen() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    // A Mles client holds the name `newbie` in #lobby, where the chat starts.
    let _web = server.client().join("newbie", "lobby").await;
    let command = ssh_command(&server, &[&keys.path("ed25519")], "newbie");
    let exit = tmux.dir().join("newbie.exit");
    tmux.open(
        "newbie",
        &format!(
            "{}; echo $? > {}; exec sleep 600",
            command_line(&command),
            exit.display()
        ),
    );
    ended_on_the_normal_screen(
        &tmux,
        "newbie",
        "kanava: uid newbie is already a member of channel lobby",
    )
    .await;
}

#[tokio::test]
async fn each_room_keeps_its_own_scrollback_with_private_messages_and_command_output() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let mut web = server.client().join("web", "a").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    for (user, key, cols, rows) in [("alice", "ed25519", 80, 24), ("carol", "ecdsa256", 133, 41)] {
        tmux.login_ready(&server, &keys, key, user).await;
        tmux.resize(user, cols, rows);
        tmux.type_line(user, "/join #a");
        tmux.wait(user, "#a shown", |s| status_line(s).starts_with(" #a "))
            .await;
        // Command output, a private message and room traffic, all while #a is shown.
        let whois = format!("* {user}: name bound");
        tmux.type_line(user, &format!("/whois {user}"));
        tmux.wait(user, "the whois answer", |s| s.contains(&whois))
            .await;
        let private = format!("[PM from bob] psst {user}");
        tmux.type_line("bob", &format!("/msg {user} psst {user}"));
        tmux.wait(user, "bob's private message", |s| s.contains(&private))
            .await;
        let first = format!("<~web> first for {user}");
        web.send(text(&format!("first for {user}"))).await.unwrap();
        tmux.wait(user, "web's message", |s| s.contains(&first))
            .await;

        // #lobby's pane is as it was: the welcome, none of #a's lines.
        let welcome = format!("* welcome, {user}.");
        tmux.type_line(user, "/join #lobby");
        let lobby = tmux
            .wait(user, "#lobby with its own lines", |s| {
                status_line(s).starts_with(" #lobby ") && s.contains(&welcome)
            })
            .await;
        assert_eq!(lobby.lines().count(), usize::from(rows), "{lobby}");
        for line in [&whois, &private, &first] {
            assert!(!lobby.contains(line.as_str()), "{line} in #lobby:\n{lobby}");
        }

        // What comes to #a meanwhile is counted, and waits in #a's pane.
        let second = format!("<~web> second for {user}");
        web.send(text(&format!("second for {user}"))).await.unwrap();
        tmux.wait(user, "the unread count", |s| {
            status_line(s).contains(" 2:#a (1)")
        })
        .await;
        tmux.type_line(user, "/switch #a");
        let back = tmux
            .wait(user, "#a's pane and what came meanwhile", |s| {
                status_line(s).starts_with(" #a ") && s.contains(&second)
            })
            .await;
        for line in [&whois, &private, &first, &second] {
            assert_eq!(back.matches(line.as_str()).count(), 1, "{line}:\n{back}");
        }
        assert!(!back.contains(&welcome), "{back}");
        assert!(status_line(&back).contains("[2:#a]"), "{back}");

        // A room left is forgotten: opened again, it starts from its stored history.
        tmux.type_line(user, "/part");
        let parted = tmux
            .wait(user, "#lobby again", |s| {
                status_line(s).starts_with(" #lobby ") && s.contains("* you left #a")
            })
            .await;
        assert!(parted.contains(&welcome), "{parted}");
        assert!(!status_line(&parted).contains("#a"), "{parted}");
        tmux.type_line(user, "/join #a");
        let again = tmux
            .wait(user, "#a from its history", |s| {
                status_line(s).starts_with(" #a ") && s.contains(&second)
            })
            .await;
        assert!(
            !again.contains(&whois) && !again.contains(&private),
            "{again}"
        );
    }
}

/// Whether a status line counts `unread` lines, for one room or in its summary.
fn counts_unread(status: &str, unread: usize) -> bool {
    status.contains(&format!(" ({unread})")) || status.contains(&format!("({unread} unread)"))
}

#[tokio::test]
async fn alt_digits_and_ctrl_n_p_switch_rooms_and_the_status_line_fits_thirty_of_them() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Start::new().args(&["--ssh-rooms-per-hour", "100"]).start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    // Thirty rooms: #lobby is 1, #project-room-NN is NN.
    for n in 2..=30 {
        tmux.type_line("alice", &format!("/join #project-room-{n:02}"));
    }
    tmux.wait("alice", "the thirtieth room", |s| {
        status_line(s).starts_with(" 30:#project… ")
    })
    .await;

    let shown = |n: usize| {
        move |s: &str| {
            let status = status_line(s);
            let head = if n == 1 {
                " 1:#lobby ".to_owned()
            } else {
                format!(" {n}:#project… ")
            };
            status.starts_with(&head)
        }
    };
    tmux.keys("alice", &["M-1"]);
    let screen = tmux.wait("alice", "room 1", shown(1)).await;
    assert!(
        screen.contains("* welcome, alice."),
        "#lobby's pane:\n{screen}"
    );
    tmux.keys("alice", &["M-3"]);
    tmux.wait("alice", "room 3", shown(3)).await;
    tmux.keys("alice", &["C-n"]);
    tmux.wait("alice", "room 4", shown(4)).await;
    tmux.keys("alice", &["C-p", "C-p"]);
    tmux.wait("alice", "room 2", shown(2)).await;
    tmux.keys("alice", &["C-p", "C-p"]);
    tmux.wait("alice", "round to room 30", shown(30)).await;
    tmux.keys("alice", &["C-n"]);
    tmux.wait("alice", "round to room 1", shown(1)).await;
    assert_eq!(input_line(&tmux.screen("alice")), ">", "keys typed nothing");
    // Bare /join of an open room, and /switch, switch to it; /switch opens nothing.
    tmux.type_line("alice", "/join #project-room-07");
    tmux.wait("alice", "room 7", shown(7)).await;
    tmux.type_line("alice", "/switch #nowhere");
    tmux.wait("alice", "the refusal", |s| {
        s.contains("* #nowhere is not open; /join #nowhere opens it")
    })
    .await;
    tmux.type_line("alice", "/switch #project-room-05");
    tmux.wait("alice", "room 5", shown(5)).await;

    // Traffic elsewhere counts; a pane scrolled up says so; both show at any width.
    let mut web = server.client().join("web", "project-room-20").await;
    for i in 0..3 {
        web.send(text(&format!("unread {i}"))).await.unwrap();
    }
    // Twice: more than the tallest pane holds; then an answer that shows both were drawn.
    tmux.type_line("alice", "/help");
    tmux.type_line("alice", "/help");
    tmux.type_line("alice", "/whois alice");
    tmux.wait("alice", "the help twice, then the whois answer", |s| {
        s.contains("* alice: name bound")
    })
    .await;
    tmux.keys("alice", &["PPage"]);
    for (cols, rows) in [(80, 24), (50, 15), (133, 41)] {
        tmux.resize("alice", cols, rows);
        let screen = tmux
            .wait("alice", "room 5, 3 unread, scrolled", |s| {
                let status = status_line(s);
                s.lines().count() == usize::from(rows)
                    && shown(5)(s)
                    && counts_unread(status, 3)
                    && status.contains("[scrolled")
            })
            .await;
        let status = status_line(&screen);
        assert!(
            status.chars().count() <= usize::from(cols),
            "{cols}: {status:?}"
        );
    }
    // Room 20 shows its three lines and no count once switched to (Alt reaches 1..9 only).
    tmux.type_line("alice", "/switch #project-room-20");
    let screen = tmux
        .wait("alice", "room 20's lines", |s| {
            shown(20)(s) && s.contains("<~web> unread 2")
        })
        .await;
    assert!(screen.contains("<~web> unread 0"), "{screen}");
    assert!(!counts_unread(status_line(&screen), 3), "{screen}");
}

/// Everything a pane received, as tmux's `pipe-pane` records it.
struct Recording(std::path::PathBuf);

impl Recording {
    /// Starts recording everything `user`'s pane receives, into a file.
    fn start(tmux: &Tmux, user: &str) -> Recording {
        let file = tmux.dir().join(format!("{user}.raw"));
        std::fs::write(&file, b"").unwrap();
        let command = format!("cat >> {}", file.display());
        tmux.run(&["pipe-pane", "-o", "-t", user, &command]);
        Recording(file)
    }

    /// The bells (BEL bytes) received so far.
    fn bells(&self) -> usize {
        let raw = std::fs::read(&self.0).unwrap_or_default();
        raw.iter().filter(|b| **b == 0x07).count()
    }

    /// The bells received before `marker` (a word drawn later) was: waits for the marker.
    async fn bells_before(&self, marker: &str) -> usize {
        let mut bells = None;
        wait_until(&format!("{marker} drawn"), || {
            let raw = std::fs::read(&self.0).unwrap_or_default();
            bells = raw
                .windows(marker.len())
                .position(|w| w == marker.as_bytes())
                .map(|at| raw[..at].iter().filter(|b| **b == 0x07).count());
            bells.is_some()
        })
        .await;
        bells.unwrap_or_default()
    }

    /// Waits until more than `count` bells were received.
    async fn wait_bells(&self, count: usize, what: &str) {
        wait_until(&format!("a bell for {what}"), || self.bells() > count).await;
    }
}

/// The styled row of a screen whose text contains `text`.
fn styled_row<'a>(styled: &'a str, text: &str) -> &'a str {
    styled
        .lines()
        .find(|row| strip_sgr(row).contains(text))
        .unwrap_or_else(|| panic!("no row with {text:?}:\n{styled}"))
}

/// Whether a styled screen is drawn reversed (SGR 7) where `text` first starts: the SGR
/// sequences before it, followed in order (colour arguments skipped), as tmux writes only
/// changes, even from one row to the next.
fn reversed_at(styled: &str, text: &str) -> bool {
    let Some(at) = styled.find(text) else {
        return false;
    };
    let mut reversed = false;
    for sgr in styled[..at].split("\x1b[").skip(1) {
        let Some(end) = sgr.find('m') else {
            continue;
        };
        let params: Vec<&str> = sgr[..end].split(';').collect();
        let mut i = 0;
        while i < params.len() {
            match params[i] {
                "" | "0" | "27" => reversed = false,
                "7" => reversed = true,
                "38" | "48" if params.get(i + 1) == Some(&"5") => i += 2,
                "38" | "48" if params.get(i + 1) == Some(&"2") => i += 4,
                _ => {}
            }
            i += 1;
        }
    }
    reversed
}

#[tokio::test]
async fn a_mention_or_a_private_message_rings_the_bell_and_is_highlighted() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "rsa", "bob").await;
    // Alice's terminal shows colours; vera's (a vt100, at an odd size) none.
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    let command = ssh_command(&server, &[&keys.path("ecdsa256")], "vera");
    tmux.open(
        "vera",
        &format!("env TERM=vt100 {}", command_line(&command)),
    );
    tmux.welcomed("vera").await;
    tmux.resize("vera", 50, 15);
    let mut web = server.client().join("web", "lobby").await;
    let bell_flag = |user: &str| {
        tmux.run(&["display", "-p", "-t", user, "#{window_bell_flag}"])
            .trim()
            .to_owned()
    };
    let alice_bells = Recording::start(&tmux, "alice");
    let vera_bells = Recording::start(&tmux, "vera");
    for (user, rows, bells) in [("alice", 24, &alice_bells), ("vera", 15, &vera_bells)] {
        tmux.wait(user, "the size", |s| s.lines().count() == rows)
            .await;
        // Markers are this user's own: the other one's screen shows them too.
        let upper = user.to_uppercase();
        // Nothing rings for traffic that does not name the user, nor for their own message.
        tmux.type_line("bob", &format!("mal{user} and {user}2 and {user}-bot"));
        tmux.type_line(user, &format!("{user} here"));
        tmux.type_line("bob", &format!("QQQFIRST{upper}"));
        assert_eq!(
            bells.bells_before(&format!("QQQFIRST{upper}")).await,
            0,
            "rang for nothing"
        );
        let screen = tmux
            .wait(user, "the traffic", |s| {
                s.contains(&format!("QQQFIRST{upper}"))
            })
            .await;
        assert!(
            screen.contains(&format!("<{user}> {user} here")),
            "{screen}"
        );
        assert_eq!(bell_flag(user), "0");
        let styled = tmux.screen_styled(user);
        for text in [
            &format!("mal{user}"),
            &format!("{user} here"),
            &format!("QQQFIRST{upper}"),
        ] {
            assert!(!reversed_at(&styled, text), "{text}: {styled:?}");
        }

        // A mention in any case, as a whole word: one bell, the line reversed.
        tmux.type_line("bob", &format!("hey {upper}, look"));
        tmux.wait(user, "the mention", |s| s.contains(", look"))
            .await;
        bells.wait_bells(0, "the mention").await;
        assert_eq!(bell_flag(user), "1", "tmux saw no bell");
        let styled = tmux.screen_styled(user);
        assert!(
            reversed_at(&styled, ", look"),
            "not highlighted: {styled:?}"
        );
        let coloured = styled_row(&styled, ", look").contains("38;5;");
        assert_eq!(coloured, user == "alice", "colours: {styled:?}");

        // A private message: another bell, highlighted.
        tmux.type_line("bob", &format!("/msg {user} a word"));
        tmux.wait(user, "the private message", |s| {
            s.contains("[PM from bob] a word")
        })
        .await;
        bells.wait_bells(1, "the private message").await;
        let styled = tmux.screen_styled(user);
        assert!(reversed_at(&styled, "a word"), "{styled:?}");

        // A burst of mentions rings at most once a frame.
        for i in 0..20 {
            web.send(text(&format!("{user}: burst {i}"))).await.unwrap();
        }
        tmux.wait(user, "the burst", |s| {
            s.contains(&format!("{user}: burst 19"))
        })
        .await;
        tmux.type_line("bob", &format!("QQQBURST{upper}"));
        let burst = bells.bells_before(&format!("QQQBURST{upper}")).await;
        assert!(
            (3..22).contains(&burst),
            "{user}: {burst} bells, 2 of them before 20 mentions"
        );

        // /bell off: highlighted, silent; /bell on rings again.
        tmux.type_line(user, "/bell off");
        tmux.wait(user, "the answer", |s| s.contains("* bell off"))
            .await;
        let before = bells.bells();
        tmux.type_line("bob", &format!("{user}: silent?"));
        tmux.type_line("bob", &format!("/msg {user} silent too"));
        tmux.type_line("bob", &format!("QQQSILENT{upper}"));
        assert_eq!(
            bells.bells_before(&format!("QQQSILENT{upper}")).await,
            before,
            "rang with the bell off"
        );
        tmux.wait(user, "bob's lines", |s| {
            s.contains(&format!("QQQSILENT{upper}"))
        })
        .await;
        let styled = tmux.screen_styled(user);
        assert!(reversed_at(&styled, "silent?"), "{styled:?}");
        assert!(reversed_at(&styled, "silent too"), "{styled:?}");
        assert!(
            !reversed_at(&styled, &format!("QQQSILENT{upper}")),
            "{styled:?}"
        );
        tmux.type_line(user, "/bell on");
        tmux.wait(user, "the answer", |s| s.contains("* bell on"))
            .await;
        tmux.type_line("bob", &format!("{user}: loud"));
        bells.wait_bells(before, "a mention after /bell on").await;
    }
    // The BEL character sent over Mles by someone else rings nothing: it shows as ^G.
    let before = alice_bells.bells();
    web.send(text("ding\x07dong")).await.unwrap();
    tmux.wait("alice", "the escaped bell", |s| s.contains("ding^Gdong"))
        .await;
    tmux.type_line("bob", "QQQLAST");
    assert_eq!(alice_bells.bells_before("QQQLAST").await, before);
}

#[tokio::test]
async fn panes_of_rooms_not_shown_are_bounded_and_a_dropped_one_shows_its_history_again() {
    let _heavy = heavy().await;
    let keys = Keys::new();
    let server = Kanava::start();
    let client = server.client();
    let mut in_a = client.join("web", "a").await;
    let mut in_c = client.join("web", "c").await;
    let mut in_d = client.join("web", "d").await;
    let tmux = Tmux::new();
    tmux.login_ready(&server, &keys, "ed25519", "alice").await;
    for room in ["#a", "#c", "#d", "#b"] {
        tmux.type_line("alice", &format!("/join {room}"));
    }
    tmux.wait("alice", "#b shown", |s| {
        status_line(s) == " #b  1 here  1:#lobby 2:#a 3:#c 4:#d [5:#b]"
    })
    .await;
    // 1.5 MiB to #a (a pane keeps 1 MiB of it), then 0.75 MiB to #c and 0.5 MiB to #d, while
    // #b is shown: more than all hidden panes may hold together (2 MiB), so the largest, #a's,
    // is dropped.
    let big = "x".repeat(64 * 1024 - 8);
    for (room, count, last, unread) in [
        (&mut in_a, 24, "last in a", "2:#a (25)"),
        (&mut in_c, 12, "last in c", "3:#c (13)"),
        (&mut in_d, 8, "last in d", "4:#d (9)"),
    ] {
        for i in 0..count {
            room.send(text(&format!("{i:02} {big}"))).await.unwrap();
        }
        room.send(text(last)).await.unwrap();
        tmux.wait("alice", unread, |s| status_line(s).contains(unread))
            .await;
    }

    // A line to #a after its pane was dropped waits in the store, not in a new pane.
    in_a.send(text("after the drop")).await.unwrap();
    tmux.wait("alice", "26 unread in #a", |s| {
        status_line(s).contains("2:#a (26)")
    })
    .await;
    // #a shows the room's stored history, and says why.
    let dropped = "* the lines #a got while not shown took too much memory";
    tmux.type_line("alice", "/switch #a");
    let screen = tmux
        .wait("alice", "#a from its history", |s| s.contains(dropped))
        .await;
    assert!(screen.contains("<~web> last in a"), "{screen}");
    assert_eq!(
        screen.matches("<~web> after the drop").count(),
        1,
        "{screen}"
    );
    // #c and #lobby kept their panes.
    tmux.keys("alice", &["M-3"]);
    let screen = tmux
        .wait("alice", "#c", |s| status_line(s).starts_with(" #c "))
        .await;
    assert!(screen.contains("<~web> last in c"), "{screen}");
    assert!(!screen.contains("took too much memory"), "{screen}");
    tmux.keys("alice", &["M-1"]);
    let lobby = tmux
        .wait("alice", "#lobby", |s| {
            status_line(s).starts_with(" #lobby ")
        })
        .await;
    assert!(lobby.contains("* welcome, alice."), "{lobby}");
    assert!(!lobby.contains("took too much memory"), "{lobby}");
}
