//! Names that cannot be abused, with the real OpenSSH client: new bindings are rate-limited per
//! source address while another address still binds, a key added by someone else with
//! `/key add` never locks its holder out, every refused login says why on ssh's stderr (the
//! SSH banner), `/nick` moves a name with a cooldown, unused names expire, and
//! `kanava users list` shows when each name was last seen.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::chat::{LineSession, fingerprint};
use crate::ssh::{ssh_command_with, stderr, stdout, users};
use crate::support::*;

/// Runs `ssh … user@127.0.0.1 rooms` from the loopback address `source`, with the log level at
/// which OpenSSH prints banners (INFO, its default).
async fn login_from(server: &Kanava, key: &Path, user: &str, source: &str) -> Output {
    let mut command =
        ssh_command_with(server, &[key], user, &["-o", "LogLevel=INFO", "-b", source]);
    command.arg("rooms").stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        command.output().expect("ssh (openssh-client) is installed")
    })
    .await
    .unwrap()
}

/// [`login_from`] 127.0.0.1.
async fn login(server: &Kanava, key: &Path, user: &str) -> Output {
    login_from(server, key, user, "127.0.0.1").await
}

/// Asserts that the login was refused and that ssh printed `reason` on stderr.
fn assert_refused_saying(out: &Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    assert!(err.contains(reason), "expected {reason:?} on stderr: {err}");
}

/// Asserts that the login succeeded.
fn assert_logged_in(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", stderr(out));
}

/// The public key line of a key file.
fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn squatting_from_one_source_stops_at_the_limit_while_a_second_source_still_binds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Start::new()
        .args(&["--ssh-bindings-burst", "4", "--ssh-bindings-per-hour", "1"])
        .start();
    let mut bound = Vec::new();
    let mut refused = None;
    for i in 0..10 {
        let key = fresh_key(dir.path(), &format!("squat{i}"));
        let out = login_from(&server, &key, &format!("squat{i}"), "127.0.0.2").await;
        if out.status.success() {
            bound.push(key);
        } else {
            refused = Some(out);
            break;
        }
    }
    assert_eq!(bound.len(), 4, "the burst binds, then the limit");
    let refused = refused.expect("the fifth new name is refused");
    assert_refused_saying(&refused, "too many new names from your address");
    assert!(
        server
            .metric("kanava_ssh_logins_refused_total{reason=\"binding_rate\"}")
            .await
            >= 1.0
    );

    // Names already bound still log in from the limited address.
    assert_logged_in(
        &login_from(&server, &bound[0], "squat0", "127.0.0.2").await,
        "a bound name from the limited source",
    );
    // A classroom behind another address still binds.
    let student = fresh_key(dir.path(), "student");
    assert_logged_in(
        &login_from(&server, &student, "student", "127.0.0.3").await,
        "a new name from another source",
    );
    assert_eq!(server.metric("kanava_ssh_bindings_total").await, 5.0);
}

#[tokio::test]
async fn key_add_of_a_foreign_key_does_not_lock_its_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let (mallory_key, victim_key) = (
        fresh_key(dir.path(), "mallory"),
        fresh_key(dir.path(), "victim"),
    );
    assert_logged_in(&login(&server, &mallory_key, "mallory").await, "mallory");
    let mut mallory = LineSession::open(&server, &mallory_key, "mallory").await;
    let victim = fingerprint(&victim_key);
    let added = mallory
        .ask(&format!("/key add {}", public(&victim_key)))
        .await;
    assert!(
        added.starts_with(&format!("kanava: key {victim} is pending")),
        "{added}"
    );
    let listed = keys_listed(&mut mallory).await;
    assert!(
        listed.len() == 2
            && listed[1].contains(&victim)
            && listed[1].contains("(pending until it logs in as mallory"),
        "{listed:?}"
    );
    let list = stdout(&users(&server.data, &["list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("mallory ") && l.contains(&victim) && l.ends_with(" pending")),
        "{list}"
    );
    mallory.send("/whois mallory").await;
    mallory.send("/whois nobody").await;
    let mut whois = Vec::new();
    loop {
        let line = mallory.err_line("/whois's answer", |_| true).await;
        if line.contains("no user is called nobody") {
            break;
        }
        whois.push(line);
    }
    assert!(
        whois.iter().any(|l| l.contains(&fingerprint(&mallory_key)))
            && !whois.iter().any(|l| l.contains(&victim)),
        "/whois lists active keys only: {whois:?}"
    );

    // The pending key does not hold mallory's name against its holder, who binds their own
    // name with it; the pending entry is then dropped.
    assert_logged_in(
        &login(&server, &victim_key, "victim").await,
        "the key's holder binds their own name",
    );
    assert_eq!(
        keys_listed(&mut mallory).await,
        [format!(
            "kanava: key {} added {} (this session)",
            fingerprint(&mallory_key),
            mallory_added(&server.data)
        )]
    );
    assert_refused_saying(
        &login(&server, &victim_key, "mallory").await,
        "mallory is bound to another key",
    );

    // A key its holder adds becomes active at its first login, which is told so.
    let second = fresh_key(dir.path(), "second");
    mallory.ask(&format!("/key add {}", public(&second))).await;
    let confirmed = login(&server, &second, "mallory").await;
    assert_logged_in(&confirmed, "a pending key's first login");
    assert!(
        stderr(&confirmed).contains(&format!(
            "key {} is confirmed: it may now log in as mallory",
            fingerprint(&second)
        )),
        "{}",
        stderr(&confirmed)
    );
}

/// The lines `/key` answers, read up to the answer of a `/whois` sent after it.
async fn keys_listed(session: &mut LineSession) -> Vec<String> {
    session.send("/key").await;
    session.send("/whois nobody").await;
    let mut lines = Vec::new();
    loop {
        let line = session.err_line("/key's answer", |_| true).await;
        if line.contains("no user is called nobody") {
            return lines;
        }
        lines.push(line);
    }
}

/// When mallory's first key was added, as `users list` prints it.
fn mallory_added(data: &Path) -> String {
    let list = stdout(&users(data, &["list"]));
    let line = list
        .lines()
        .find(|l| l.starts_with("mallory "))
        .unwrap_or_else(|| panic!("{list}"))
        .to_owned();
    line.split_whitespace().nth(3).unwrap().to_owned()
}

#[tokio::test]
async fn every_refused_login_says_why_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, other_key, banned_key) = (
        fresh_key(dir.path(), "alice"),
        fresh_key(dir.path(), "other"),
        fresh_key(dir.path(), "banned"),
    );
    let ops = dir.path().join("ops");
    std::fs::write(&ops, public(&alice_key) + "\n").unwrap();
    let server = Start::new()
        .args(&["--ssh-ops", ops.to_str().unwrap()])
        .start();
    assert_logged_in(&login(&server, &alice_key, "alice").await, "alice");

    assert_refused_saying(
        &login(&server, &other_key, "alice").await,
        "kanava: alice is bound to another key; use -i KEY or another name",
    );
    let second_name = login(&server, &alice_key, "alias").await;
    assert_refused_saying(&second_name, "kanava: this key already holds another name");
    assert!(
        !stderr(&second_name).contains("alice"),
        "the holder is not named: {}",
        stderr(&second_name)
    );
    assert_refused_saying(
        &login(&server, &other_key, "far_too_long_a_name").await,
        "kanava: names are 1 to 16 characters of A-Z, a-z, 0-9",
    );

    assert_logged_in(&login(&server, &banned_key, "troll").await, "troll");
    // troll adds a key that is not theirs: banning troll must not ban that key's holder.
    let mut troll = LineSession::open(&server, &banned_key, "troll").await;
    let innocent = fresh_key(dir.path(), "innocent");
    let added = troll.ask(&format!("/key add {}", public(&innocent))).await;
    assert!(added.contains("is pending"), "{added}");
    let mut alice = LineSession::open(&server, &alice_key, "alice").await;
    alice.send("/whois troll").await;
    alice
        .err_line("troll's active key in /whois", |l| {
            l.contains(&fingerprint(&banned_key))
        })
        .await;
    alice.ask("/ban troll").await;
    assert_refused_saying(
        &login(&server, &banned_key, "troll").await,
        "kanava: this key is banned",
    );
    assert_logged_in(
        &login(&server, &innocent, "innocent").await,
        "a key pending on a banned name is not banned",
    );
    for reason in ["bound", "key_holds_name", "bad_name", "banned"] {
        let series = format!("kanava_ssh_logins_refused_total{{reason=\"{reason}\"}}");
        assert!(server.metric(&series).await >= 1.0, "{series}");
    }
    // The rightful key still logs in; several keys offered, the wrong one first, still work.
    let mut both = ssh_command_with(&server, &[&other_key, &alice_key], "alice", &[]);
    both.arg("rooms").stdin(Stdio::null());
    let both = tokio::task::spawn_blocking(move || both.output().unwrap())
        .await
        .unwrap();
    assert_logged_in(&both, "the right key after a wrong one");
}

#[tokio::test]
async fn nick_moves_the_name_frees_the_old_one_and_waits_before_another_rename() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let (alice_key, bob_key, newcomer_key) = (
        fresh_key(dir.path(), "alice"),
        fresh_key(dir.path(), "bob"),
        fresh_key(dir.path(), "newcomer"),
    );
    let mut bob = LineSession::open(&server, &bob_key, "bob").await;
    let mut alice = LineSession::open(&server, &alice_key, "alice").await;
    assert_eq!(alice.ask("/nick bob").await, "kanava: bob is taken");
    alice.send("/nick alicia").await;
    alice
        .err_line("the end of the old name's session", |l| {
            l.contains("you are now alicia: log in again as ssh alicia@")
        })
        .await;
    let (status, _) = alice.exit(true).await;
    assert!(!status.success());
    bob.out_line("the rename's announcement", |l| {
        l.ends_with(" * alice is now alicia")
    })
    .await;

    assert_logged_in(
        &login(&server, &alice_key, "alicia").await,
        "the new name with the same key",
    );
    assert_logged_in(
        &login(&server, &newcomer_key, "alice").await,
        "the old name is free",
    );
    let mut alicia = LineSession::open(&server, &alice_key, "alicia").await;
    let again = alicia.ask("/nick alicia2").await;
    assert!(
        again.starts_with("kanava: one rename per hour: you may rename again from "),
        "{again}"
    );
    assert_refused_saying(
        &login(&server, &alice_key, "alicia2").await,
        "this key already holds another name",
    );

    // /release asks for the name as confirmation, then frees it.
    assert!(
        alicia
            .ask("/release")
            .await
            .contains("/release alicia frees your name")
    );
    alicia.send("/release alicia").await;
    alicia
        .err_line("the release", |l| l.contains("alicia is released"))
        .await;
    let later = fresh_key(dir.path(), "later");
    assert_logged_in(
        &login(&server, &later, "alicia").await,
        "a released name is free",
    );
    assert_logged_in(
        &login(&server, &alice_key, "alicia2").await,
        "its key is free to bind another name",
    );
}

#[tokio::test]
async fn an_unused_name_expires_and_users_list_shows_last_seen() {
    let dir = tempfile::tempdir().unwrap();
    let server = Start::new().args(&["--ssh-name-expiry", "3s"]).start();
    let (ghost_key, kept_key, taker_key) = (
        fresh_key(dir.path(), "ghost"),
        fresh_key(dir.path(), "kept"),
        fresh_key(dir.path(), "taker"),
    );
    assert_logged_in(&login(&server, &ghost_key, "ghost").await, "ghost");
    assert_logged_in(&login(&server, &kept_key, "kept").await, "kept");
    let last_seen = |name: &'static str| {
        let list = stdout(&users(&server.data, &["list"]));
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split("last-seen ").nth(1))
            .map(|s| s.split_whitespace().next().unwrap().to_owned())
    };
    let first_seen = last_seen("kept").expect("kept listed with last-seen");
    assert!(
        first_seen.ends_with('Z') && first_seen.len() == 20,
        "{first_seen}"
    );
    assert_refused_saying(
        &login(&server, &taker_key, "ghost").await,
        "ghost is bound to another key",
    );

    // kept logs in again and again, so its last-seen time moves and it never expires; ghost
    // is not used and is freed after 3 seconds.
    wait_until_async("ghost's name is freed", || async {
        assert_logged_in(&login(&server, &kept_key, "kept").await, "kept again");
        last_seen("ghost").is_none()
    })
    .await;
    assert_ne!(
        last_seen("kept"),
        Some(first_seen),
        "kept's last-seen moved"
    );
    assert!(server.metric("kanava_ssh_names_expired_total").await >= 1.0);
    assert_logged_in(
        &login(&server, &taker_key, "ghost").await,
        "an expired name is free",
    );
    assert_logged_in(&login(&server, &kept_key, "kept").await, "kept is kept");
}
