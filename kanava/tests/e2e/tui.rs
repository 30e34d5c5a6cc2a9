//! The full-screen chat, driven through the real `ssh` client inside tmux; assertions are on
//! the screen as tmux emulates it.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;

use crate::ssh::{Keys, ssh_command};
use crate::support::*;

/// A private tmux server, and a directory where each login records `ssh`'s exit status; the
/// server is killed on drop.
struct Tmux(String, tempfile::TempDir);

impl Tmux {
    fn new() -> Tmux {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kanava-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Tmux(name, tempfile::tempdir().unwrap())
    }

    fn run(&self, args: &[&str]) -> String {
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
        let line: Vec<String> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // The pane's shell records ssh's exit status itself: tmux reports none for a process
        // it did not see exit normally.
        let status = self.1.path().join(format!("{user}.status"));
        let shell = format!("{}; echo $? > {}", line.join(" "), status.display());
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

    fn screen(&self, user: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", user])
    }

    fn type_line(&self, user: &str, text: &str) {
        self.run(&["send-keys", "-t", user, "-l", text]);
        self.run(&["send-keys", "-t", user, "Enter"]);
    }

    /// Waits until `user`'s screen satisfies `check`; returns the screen.
    async fn wait(&self, user: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
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
    tmux.wait("alice", "bob's long line", |s| {
        s.replace('\n', "").contains(&"x".repeat(140))
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
        screen.contains("<web> ^[]0;pwned^G^[[2J^[[31mred\u{fffd}31m^[]52;c;aGk=^G"),
        "{screen}"
    );
    assert!(
        screen.contains("<web> before"),
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
