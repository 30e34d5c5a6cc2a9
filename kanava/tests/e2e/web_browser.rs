//! The browser chat in a real headless Chromium (Debian's), driven by Playwright through
//! web/driver/driver.mjs, against the real server, with real SSH users (OpenSSH) and Mles
//! clients in the same rooms: what a person at the page sees, asserted on the DOM the page
//! promises (the contract in the issue: `#messages li[data-seq]`, `#people`, `#status`, …).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};

use crate::chat::{LineSession, fingerprint};
use crate::nats::free_port;
use crate::playwright::{Browser, PAGE_WAIT};
use crate::ssh::{ssh_command_with, stderr};
use crate::support::*;

/// A JavaScript function (source) that finds the element that scrolls the message log: the
/// log itself or its nearest scrollable ancestor.
const SCROLLER: &str = "function scroller() {
    for (let e = document.getElementById('messages'); e; e = e.parentElement) {
        const style = getComputedStyle(e);
        if (/(auto|scroll)/.test(style.overflowY) && e.scrollHeight > e.clientHeight) return e;
    }
    return document.scrollingElement;
}";

/// The rows of the message log now in the DOM, as `{seq, classes, from, fromClasses, text}`.
const ROWS: &str = "() => [...document.querySelectorAll('#messages li[data-seq]')].map((li) => ({
    seq: Number(li.dataset.seq),
    classes: [...li.classList],
    from: li.querySelector('.from')?.textContent ?? null,
    fromClasses: [...(li.querySelector('.from')?.classList ?? [])],
    text: li.querySelector('.text')?.textContent ?? null,
}))";

/// What the page tells its user about its state (for a failing test's message).
const SHOWN: &str = "() => ({
    ...Object.fromEntries(['status', 'login-status', 'login-error', 'topic', 'rooms', 'people']
        .map((id) => [id, document.getElementById(id)?.textContent ?? null])),
    log: ((m) => m && { items: m.children.length, height: m.offsetHeight,
        scroller: [m.parentElement.scrollTop, m.parentElement.scrollHeight, m.parentElement.clientHeight] })(
        document.getElementById('messages')),
    window: [innerWidth, innerHeight, document.visibilityState],
    composer: document.getElementById('message')?.value ?? null,
    chat: ((r) => r && [r.width, r.height])(document.getElementById('chat-view')?.getBoundingClientRect()),
})";

/// One row of the message log.
#[derive(Debug, Clone)]
struct Row {
    seq: u64,
    classes: Vec<String>,
    from: Option<String>,
    from_classes: Vec<String>,
    text: Option<String>,
}

impl Row {
    fn from_json(row: &Value) -> Row {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        Row {
            seq: row["seq"].as_u64().expect("data-seq is a number"),
            classes: strings(&row["classes"]),
            from: row["from"].as_str().map(str::to_owned),
            from_classes: strings(&row["fromClasses"]),
            text: row["text"].as_str().map(str::to_owned),
        }
    }

    fn is(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }
}

impl Browser {
    /// Opens page `page` at `url` in a new browser context; returns the response's status and
    /// headers.
    async fn open(&mut self, page: &str, url: &str, viewport: [u32; 2], scheme: &str) -> Value {
        let response = self.open_page(page, url, viewport, scheme).await;
        self.assert_loaded(page).await;
        response
    }

    /// Asserts that the page loaded its stylesheet and started its script (the key it makes on
    /// first use comes later): a file that failed to load says so here, not as a later timeout.
    async fn assert_loaded(&mut self, page: &str) {
        let loaded = "() => [...document.styleSheets].some((s) => s.href?.endsWith('/src/app.css')
            && s.cssRules.length > 0)";
        if self
            .try_wait(page, PAGE_WAIT, loaded, Value::Null)
            .await
            .is_err()
        {
            let reports = self.reports(page).await;
            panic!("{page} did not load its stylesheet: {reports}");
        }
    }

    /// Opens `page` on a desktop-sized light page at the server's root.
    async fn open_desktop(&mut self, page: &str, server: &Kanava) -> Value {
        self.open(page, &url(server, ""), [1280, 800], "light")
            .await
    }

    /// Waits until the JavaScript function `expression` returns a truthy value for `arg`
    /// (within `limit`); returns that value.
    async fn wait_for_within(
        &mut self,
        page: &str,
        limit: Duration,
        expression: &str,
        arg: Value,
    ) -> Value {
        match self.try_wait(page, limit, expression, arg).await {
            Ok(value) => value,
            Err(error) => {
                let shown = self.eval(page, SHOWN, Value::Null).await;
                let rows = self.rows(page).await;
                let picture = std::env::temp_dir().join(format!(
                    "kanava-web-browser-{}-{page}.png",
                    std::process::id()
                ));
                self.screenshot(page, &picture).await;
                let reports = self.reports(page).await;
                panic!(
                    "{page}: {error}\nthe page shows {shown} (screenshot: {})\nits reports: {reports}\nits rows: {rows:?}",
                    picture.display()
                )
            }
        }
    }

    async fn wait_for(&mut self, page: &str, expression: &str, arg: Value) -> Value {
        self.wait_for_within(page, PAGE_WAIT, expression, arg).await
    }

    /// Waits until the page has its key (made on first use) and shows it under "Your key";
    /// returns it (`ssh-ed25519 AAAA… kanava-web`).
    async fn key(&mut self, page: &str) -> String {
        let key = self
            .wait_for(
                page,
                "() => { const k = document.querySelector('#identity code')?.textContent.trim();
                    return k && k.startsWith('ssh-') && k; }",
                Value::Null,
            )
            .await;
        key.as_str().unwrap().to_owned()
    }

    /// Fills the login form and enters; returns once the chat is shown (fails with the
    /// refusal's text if one is shown instead).
    async fn enter(&mut self, page: &str, name: &str, room: &str) {
        let outcome = self.submit_login(page, name, room).await;
        assert_eq!(
            outcome["entered"], true,
            "{page} did not get in as {name}: {outcome}"
        );
        self.wait_room(page, room.trim_start_matches('#')).await;
    }

    /// Waits until `room`'s tab is there and current: the room is open (what a person sees
    /// before typing into it; the page ignores a line sent before).
    async fn wait_room(&mut self, page: &str, room: &str) {
        self.wait_for(
            page,
            "(room) => [...document.querySelectorAll('nav[aria-label=Rooms] button')]
                .some((b) => b.dataset.room === room && b.getAttribute('aria-current') === 'true')",
            json!(room),
        )
        .await;
    }

    /// Fills the login form and enters, expecting a refusal; returns the refusal's text.
    async fn enter_refused(&mut self, page: &str, name: &str, room: &str) -> String {
        let outcome = self.submit_login(page, name, room).await;
        outcome["refused"]
            .as_str()
            .unwrap_or_else(|| panic!("{page} got in as {name}: {outcome}"))
            .to_owned()
    }

    /// Fills the login form (once the page has its key), enters, and waits for the outcome:
    /// `{"entered": true}` or `{"refused": TEXT}`.
    async fn submit_login(&mut self, page: &str, name: &str, room: &str) -> Value {
        self.key(page).await;
        self.fill(page, "Name", name).await;
        self.fill(page, "Room", room).await;
        self.click_button(page, "Enter").await;
        self.wait_outcome(page).await
    }

    /// Waits until the page shows the chat or a login refusal (see [`Self::submit_login`]).
    async fn wait_outcome(&mut self, page: &str) -> Value {
        let outcome = self
            .try_call(json!({"cmd": "waitFor", "page": page, "timeout": PAGE_WAIT.as_millis() as u64, "expression": "() => {
                const composer = document.getElementById('composer');
                if (composer && composer.checkVisibility()) return { entered: true };
                const error = document.querySelector('#login-error[role=alert]')?.textContent.trim();
                return error ? { refused: error } : null;
            }"}))
            .await;
        match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let shown = self.eval(page, SHOWN, Value::Null).await;
                panic!("{page} shows neither the chat nor a refusal: {shown}; {error}")
            }
        }
    }

    /// Types `text` into the composer and sends it with Enter.
    async fn say(&mut self, page: &str, text: &str) {
        self.fill(page, "Message", text).await;
        self.call(
            json!({"cmd": "press", "page": page, "target": {"label": "Message"},
            "key": "Enter"}),
        )
        .await;
    }

    /// The rows of the message log now in the DOM.
    async fn rows(&mut self, page: &str) -> Vec<Row> {
        let rows = self.eval(page, ROWS, Value::Null).await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(Row::from_json)
            .collect()
    }

    /// Waits until a row of the log has exactly `text` as its text; returns that row.
    async fn wait_row(&mut self, page: &str, text: &str) -> Row {
        self.wait_row_within(page, PAGE_WAIT, text).await
    }

    async fn wait_row_within(&mut self, page: &str, limit: Duration, text: &str) -> Row {
        let expression = format!("(text) => ({ROWS})().find((row) => row.text === text)");
        let row = self
            .wait_for_within(page, limit, &expression, json!(text))
            .await;
        Row::from_json(&row)
    }

    /// Waits until a row of the log from `from` (as shown) has exactly `text` as its text.
    async fn wait_row_from(&mut self, page: &str, from: &str, text: &str) -> Row {
        let expression = format!(
            "([from, text]) => ({ROWS})().find((row) => row.from === from && row.text === text)"
        );
        let row = self.wait_for(page, &expression, json!([from, text])).await;
        Row::from_json(&row)
    }

    /// Waits until the people list holds exactly `names` (in any order).
    async fn wait_people(&mut self, page: &str, names: &[&str]) {
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort_unstable();
        self.wait_for(
            page,
            "(names) => {
                const shown = [...document.querySelectorAll('#people li')]
                    .map((li) => li.textContent.trim()).sort();
                return JSON.stringify(shown) === JSON.stringify(names);
            }",
            json!(sorted),
        )
        .await;
    }

    /// Waits until the status line says the page is connected (not reconnecting).
    async fn wait_connected(&mut self, page: &str, limit: Duration) {
        self.wait_for_within(
            page,
            limit,
            "() => /^connected\\b/.test((document.getElementById('status')?.textContent ?? '').trim())",
            Value::Null,
        )
        .await;
    }
}

/// The page's address on `server`, with `fragment` (a room) after `#` when not empty.
fn url(server: &Kanava, fragment: &str) -> String {
    let base = format!("https://127.0.0.1:{}/", server.mles.port());
    if fragment.is_empty() {
        base
    } else {
        format!("{base}#{fragment}")
    }
}

/// Runs `ssh … user@127.0.0.1 rooms` at OpenSSH's default log level, which prints the server's
/// banner (where a refused login says why).
async fn ssh_login(server: &Kanava, key: &Path, user: &str) -> Output {
    let mut command = ssh_command_with(server, &[key], user, &["-o", "LogLevel=INFO"]);
    command.arg("rooms").stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        command.output().expect("ssh (openssh-client) is installed")
    })
    .await
    .unwrap()
}

/// An SSH line session of `user` (a fresh key) in room `#room`.
async fn ssh_user_in(server: &Kanava, dir: &Path, user: &str, room: &str) -> LineSession {
    let key = fresh_key(dir, user);
    let mut session = LineSession::open(server, &key, user).await;
    session.send(&format!("/join #{room}")).await;
    session
}

/// Asserts that no seq appears twice among `rows`.
fn assert_each_seq_once(page: &str, rows: &[Row]) {
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), before, "{page} shows a seq twice: {rows:?}");
}

/// The texts of the plain messages among `rows`, in order.
fn message_texts(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.is("message"))
        .filter_map(|r| r.text.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_and_an_ssh_user_talk_in_one_room_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    let mut carol = ssh_user_in(&server, dir.path(), "carol", "dev").await;
    for (page, name) in [("alice", "alice"), ("bob", "bob")] {
        browser.open_desktop(page, &server).await;
        browser.enter(page, name, "#dev").await;
    }
    for page in ["alice", "bob"] {
        browser.wait_people(page, &["alice", "bob", "carol"]).await;
    }

    browser.say("alice", "hello from alice's browser").await;
    let seen = browser.wait_row("bob", "hello from alice's browser").await;
    assert_eq!(seen.from.as_deref(), Some("alice"));
    assert!(seen.is("message"), "{seen:?}");
    assert!(
        !seen.from_classes.iter().any(|c| c == "unverified"),
        "a web sender is verified: {seen:?}"
    );
    carol
        .out_line("alice's line over SSH", |l| {
            l.ends_with(" <alice> hello from alice's browser")
        })
        .await;

    carol.send("hello from a terminal").await;
    for page in ["alice", "bob"] {
        let row = browser.wait_row(page, "hello from a terminal").await;
        assert_eq!(row.from.as_deref(), Some("carol"), "{page}: {row:?}");
    }

    browser.say("bob", "and from bob").await;
    let row = browser.wait_row("alice", "and from bob").await;
    assert_eq!(row.from.as_deref(), Some("bob"));
    carol
        .out_line("bob's line over SSH", |l| {
            l.ends_with(" <bob> and from bob")
        })
        .await;

    // Topics and private messages cross too: a topic set over SSH shows in both pages, a PM
    // from a page reaches the terminal, and one from the terminal reaches only its page.
    carol.send("/topic set from a terminal").await;
    for page in ["alice", "bob"] {
        browser
            .wait_for(
                page,
                "() => document.getElementById('topic')?.textContent.includes('set from a terminal')",
                Value::Null,
            )
            .await;
    }
    browser.say("alice", "/msg carol psst, carol").await;
    carol
        .out_line("alice's PM", |l| {
            l.ends_with(" [PM from alice] psst, carol")
        })
        .await;
    carol.send("/msg bob only for bob").await;
    browser
        .wait_for(
            "bob",
            "() => [...document.querySelectorAll('#messages li.pm .text')]
                .some((e) => e.textContent === 'only for bob')",
            Value::Null,
        )
        .await;
    let leaked = browser
        .eval(
            "alice",
            "() => document.getElementById('messages').textContent.includes('only for bob')",
            Value::Null,
        )
        .await;
    assert_eq!(leaked, false, "bob's PM shown to alice");

    // Each page shows each message once, in the same order, with the same seqs.
    browser.wait_row("bob", "and from bob").await;
    let alice_rows = browser.rows("alice").await;
    let bob_rows = browser.rows("bob").await;
    assert_each_seq_once("alice", &alice_rows);
    let expected = [
        "hello from alice's browser",
        "hello from a terminal",
        "and from bob",
    ];
    assert_eq!(message_texts(&alice_rows), expected);
    assert_eq!(message_texts(&bob_rows), expected);
    let seqs = |rows: &[Row]| -> Vec<u64> {
        rows.iter()
            .filter(|r| r.is("message"))
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(seqs(&alice_rows), seqs(&bob_rows));
    // The room's tab is current.
    let tab = browser
        .eval(
            "alice",
            "() => { const b = document.querySelector('nav[aria-label=Rooms] button[data-room=dev]');
                return b && [b.textContent.trim(), b.getAttribute('aria-current')]; }",
            Value::Null,
        )
        .await;
    assert_eq!(tab[1], "true", "{tab}");
    assert!(tab[0].as_str().unwrap().starts_with("#dev"), "{tab}");

    // A second room: while alice looks at #ops, #dev counts what she has not read.
    browser.say("alice", "/join ops").await;
    browser
        .wait_for(
            "alice",
            "() => document.querySelector('nav[aria-label=Rooms] button[data-room=ops]')
                ?.getAttribute('aria-current') === 'true'",
            Value::Null,
        )
        .await;
    browser.say("bob", "unread one").await;
    carol.send("unread two").await;
    let unread = "() => document.querySelector(
        'nav[aria-label=Rooms] button[data-room=dev] .unread')?.textContent ?? ''";
    browser
        .wait_for("alice", &format!("() => ({unread})() === '2'"), Value::Null)
        .await;
    browser
        .call(json!({"cmd": "click", "page": "alice",
            "target": {"css": "nav[aria-label=Rooms] button[data-room=dev]"}}))
        .await;
    browser.wait_row("alice", "unread two").await;
    browser
        .wait_for("alice", &format!("() => ({unread})() === ''"), Value::Null)
        .await;
    browser.assert_clean("alice").await;
    browser.assert_clean("bob").await;
}

/// Presses Tab in `page` until the focused element's accessible name (its label, or
/// aria-label) is `name`; fails if thirty presses never get there.
async fn tab_to(browser: &mut Browser, page: &str, name: &str) {
    let focused = "() => { const e = document.activeElement;
        return ((e.labels && e.labels[0] ? e.labels[0].textContent : e.getAttribute('aria-label')) || '').trim(); }";
    for _ in 0..30 {
        if browser.eval(page, focused, Value::Null).await == name {
            return;
        }
        browser.press(page, "Tab").await;
    }
    panic!("Tab never reached {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_logs_in_and_sends_with_enter_and_new_lines_with_shift_enter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    browser
        .open("kbd", &url(&server, "dev"), [1280, 800], "light")
        .await;
    tab_to(&mut browser, "kbd", "Name").await;
    browser.type_text("kbd", "keys").await;
    tab_to(&mut browser, "kbd", "Room").await;
    // The room was filled in from the address's #dev.
    let room = browser
        .eval("kbd", "() => document.activeElement.value", Value::Null)
        .await;
    assert!(
        room == "dev" || room == "#dev",
        "the room field holds {room}"
    );
    browser.key("kbd").await;
    browser.press("kbd", "Enter").await;
    let outcome = browser.wait_outcome("kbd").await;
    assert_eq!(outcome["entered"], true, "{outcome}");
    browser.wait_room("kbd", "dev").await;
    tab_to(&mut browser, "kbd", "Message").await;
    browser.type_text("kbd", "first line").await;
    browser.press("kbd", "Shift+Enter").await;
    browser.type_text("kbd", "second line").await;
    browser.press("kbd", "Enter").await;
    let row = browser.wait_row("kbd", "first line\nsecond line").await;
    assert_eq!(row.from.as_deref(), Some("keys"));
    let left = browser
        .eval("kbd", "() => document.activeElement.value", Value::Null)
        .await;
    assert_eq!(left, "", "the composer is emptied after sending");
    // The message was stored as one message, with its new line.
    let tail = crate::ssh::ssh(
        &server,
        &[&fresh_key(dir.path(), "reader")],
        "reader",
        &["tail", "dev"],
    )
    .await;
    assert!(
        crate::ssh::stdout(&tail).contains("<keys> first line"),
        "{}",
        crate::ssh::stdout(&tail)
    );
    browser.assert_clean("kbd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_strict_csp_and_reports_no_violation() {
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    let response = browser.open_desktop("csp", &server).await;
    assert_eq!(response["status"], 200, "{response}");
    let headers = &response["headers"];
    let csp = headers["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{directive} missing from the CSP: {headers}"
        );
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{headers}");
    assert!(headers["referrer-policy"].is_string(), "{headers}");
    assert!(
        headers["content-type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/html")),
        "{headers}"
    );
    // The page and everything it loads run under that policy without a violation: log in,
    // talk, open the key.
    browser.enter("csp", "policy", "dev").await;
    browser.say("csp", "a line under the policy").await;
    browser.wait_row("csp", "a line under the policy").await;
    browser
        .call(json!({"cmd": "click", "page": "csp", "target": {"css": "#identity summary"}}))
        .await;
    let key = browser.key("csp").await;
    assert!(key.starts_with("ssh-ed25519 AAAA"), "the key shown: {key}");
    browser.assert_clean("csp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_scrolls_back_through_the_store_page_by_page() {
    const STORED: usize = 450;
    let server = Start::new().args(&["--history-limit", "5000"]).start();
    let mut feeder = server.client().join("feeder", "dev").await;
    for i in 0..STORED {
        feeder.send(text(&format!("old {i}"))).await.unwrap();
    }
    server
        .wait_metric("kanava_frames_in_total", STORED as f64)
        .await;
    drop(feeder);

    let mut browser = Browser::launch().await;
    browser.open_desktop("reader", &server).await;
    browser.enter("reader", "reader", "dev").await;
    browser
        .wait_row("reader", &format!("old {}", STORED - 1))
        .await;
    let first = browser.rows("reader").await;
    assert!(
        !first.iter().any(|r| r.text.as_deref() == Some("old 0")),
        "the whole history came at once: {} rows",
        first.len()
    );

    // Scrolling to the top loads older pages until the first message.
    let scroll_up = format!(
        "(text) => {{ {SCROLLER}; const s = scroller(); s.scrollTop = 0;
            return [...document.querySelectorAll('#messages li .text')]
                .some((e) => e.textContent === text); }}"
    );
    browser
        .wait_for_within(
            "reader",
            Duration::from_secs(30),
            &scroll_up,
            json!("old 0"),
        )
        .await;
    let top = browser.rows("reader").await;
    assert_each_seq_once("reader", &top);
    let olds: Vec<(u64, usize)> = top
        .iter()
        .filter_map(|r| {
            let n = r.text.as_deref()?.strip_prefix("old ")?.parse().ok()?;
            Some((r.seq, n))
        })
        .collect();
    assert_eq!(olds.first().map(|o| o.1), Some(0), "{olds:?}");
    assert!(
        olds.windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 + 1 == w[1].1),
        "the rows at the top are in order, without a gap: {olds:?}"
    );

    // Back at the bottom, the newest message is there again, and a new one arrives live.
    let scroll_down = format!(
        "(text) => {{ {SCROLLER}; const s = scroller(); s.scrollTop = s.scrollHeight;
            return [...document.querySelectorAll('#messages li .text')]
                .some((e) => e.textContent === text); }}"
    );
    browser
        .wait_for("reader", &scroll_down, json!(format!("old {}", STORED - 1)))
        .await;
    browser.say("reader", "read it all").await;
    browser.wait_row("reader", "read it all").await;
    let all = browser.rows("reader").await;
    assert_each_seq_once("reader", &all);
    browser.assert_clean("reader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_nothing_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Start::new().data(&data).mles_listen(&listen).start();
    let mut browser = Browser::launch().await;
    for (page, name) in [("alice", "alice"), ("bob", "bob")] {
        browser.open_desktop(page, &server).await;
        browser.enter(page, name, "dev").await;
    }
    browser.say("alice", "one").await;
    browser.wait_row("bob", "one").await;
    browser.say("bob", "two").await;
    browser.wait_row("alice", "two").await;

    assert!(server.terminate());
    for page in ["alice", "bob"] {
        browser
            .wait_for(
                page,
                "() => /reconnecting/i.test(document.getElementById('status')?.textContent ?? '')",
                Value::Null,
            )
            .await;
    }
    let server = Start::new().data(&data).mles_listen(&listen).start();
    // Said while the pages are still waiting to reconnect.
    let mut mles = server.client().join("mlesuser", "dev").await;
    mles.send(text("while you were away")).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 1.0).await;
    for page in ["alice", "bob"] {
        browser.wait_connected(page, Duration::from_secs(30)).await;
        browser.wait_row(page, "while you were away").await;
    }
    browser.say("alice", "three").await;
    browser.wait_row("bob", "three").await;
    browser.say("bob", "four").await;
    browser.wait_row("alice", "four").await;

    let expected = ["one", "two", "while you were away", "three", "four"];
    for page in ["alice", "bob"] {
        browser.wait_row(page, "four").await;
        let rows = browser.rows(page).await;
        assert_each_seq_once(page, &rows);
        assert_eq!(message_texts(&rows), expected, "{page}: {rows:?}");
        assert!(
            rows.windows(2).all(|w| w[0].seq < w[1].seq),
            "{page}: rows out of order: {rows:?}"
        );
        // The pages were cut off by the restart (a failed WebSocket is logged); nothing else.
        let reports = browser.reports(page).await;
        assert_eq!(reports["violations"], json!([]), "{page}");
        assert_eq!(reports["errors"], json!([]), "{page}");
    }

    // A reload logs in again by itself (the name and key are remembered) and shows the same.
    browser.call(json!({"cmd": "reload", "page": "bob"})).await;
    browser.wait_connected("bob", PAGE_WAIT).await;
    browser.wait_row("bob", "four").await;
    let rows = browser.rows("bob").await;
    assert_each_seq_once("bob", &rows);
    assert_eq!(message_texts(&rows), expected, "after a reload: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_follow_the_ssh_rules_and_an_ssh_user_lets_a_new_browser_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let mut browser = Browser::launch().await;

    // A name bound to an SSH key is refused to a browser, with the reason.
    let sam_key = fresh_key(dir.path(), "sam");
    let mut sam = LineSession::open(&server, &sam_key, "sam").await;
    browser.open_desktop("laptop", &server).await;
    let refusal = browser.enter_refused("laptop", "sam", "dev").await;
    assert!(
        refusal.contains("sam is bound to another key"),
        "the refusal shown: {refusal}"
    );

    // A browser's name is refused to SSH, and to a second browser (another key).
    browser.open_desktop("web", &server).await;
    browser.enter("web", "webby", "dev").await;
    let other_key = fresh_key(dir.path(), "other");
    let out = ssh_login(&server, &other_key, "webby").await;
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied (publickey)")
            && stderr(&out).contains("bound to another key"),
        "{}",
        stderr(&out)
    );
    browser.open_desktop("second", &server).await;
    let refusal = browser.enter_refused("second", "webby", "dev").await;
    assert!(
        refusal.contains("webby is bound to another key"),
        "the refusal shown: {refusal}"
    );

    // sam lets the laptop in: adds the key the laptop shows, after which it enters as sam.
    let laptop_key = browser.key("laptop").await;
    assert!(laptop_key.starts_with("ssh-ed25519 AAAA"), "{laptop_key}");
    std::fs::write(dir.path().join("laptop.pub"), format!("{laptop_key}\n")).unwrap();
    let laptop_fingerprint = fingerprint(&dir.path().join("laptop"));
    let added = sam.ask(&format!("/key add {laptop_key}")).await;
    assert!(
        added.starts_with(&format!("kanava: key {laptop_fingerprint} is pending")),
        "{added}"
    );
    browser.click_button("laptop", "Enter").await;
    let outcome = browser.wait_outcome("laptop").await;
    assert_eq!(
        outcome["entered"], true,
        "the added key did not let the laptop in: {outcome}"
    );
    browser.wait_room("laptop", "dev").await;
    browser.say("laptop", "sam, from the laptop").await;
    let seen = browser
        .wait_row_from("web", "sam", "sam, from the laptop")
        .await;
    assert!(
        !seen.from_classes.iter().any(|c| c == "unverified"),
        "{seen:?}"
    );
    // SSH's /key now lists the browser's key as active on the name.
    let keys = [
        sam.ask("/key").await,
        sam.err_line("the second key", |_| true).await,
    ];
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("kanava: key {laptop_fingerprint} added "))),
        "{keys:?}"
    );
    for page in ["laptop", "web", "second"] {
        let reports = browser.reports(page).await;
        assert_eq!(reports["violations"], json!([]), "{page}");
        assert_eq!(reports["errors"], json!([]), "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_mles_client_is_shown_as_tilde_uid() {
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    browser.open_desktop("page", &server).await;
    browser.enter("page", "viewer", "dev").await;
    // In the room first (its members shown), so that the Mles client's arrival is live.
    browser.wait_people("page", &["viewer"]).await;
    let mut mles = server.client().join("mlesbot", "dev").await;
    browser.wait_people("page", &["viewer", "~mlesbot"]).await;
    mles.send(text("beep from mles")).await.unwrap();
    mles.send(binary(&[1, 2, 3, 4, 5])).await.unwrap();
    let row = browser.wait_row("page", "beep from mles").await;
    assert_eq!(row.from.as_deref(), Some("~mlesbot"), "{row:?}");
    assert!(
        row.from_classes.iter().any(|c| c == "unverified"),
        "{row:?}"
    );
    let binary_row = browser.wait_row("page", "[binary, 5 bytes]").await;
    assert!(binary_row.is("binary"), "{binary_row:?}");
    assert_eq!(binary_row.from.as_deref(), Some("~mlesbot"));
    // The page's own messages are verified.
    browser.say("page", "hello bot").await;
    let own = browser.wait_row("page", "hello bot").await;
    assert_eq!(own.from.as_deref(), Some("viewer"));
    assert!(!own.from_classes.iter().any(|c| c == "unverified"));
    // The Mles client leaving is seen too.
    drop(mles);
    browser.wait_people("page", &["viewer"]).await;
    browser.assert_clean("page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_rendered_inert() {
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    browser.open_desktop("page", &server).await;
    browser.enter("page", "victim", "dev").await;
    // The attacker comes from its own address; the page is served all along (its own message
    // comes back).
    let mut mles = server
        .client()
        .with_source("127.0.0.2")
        .join("mallory", "dev")
        .await;
    let markup = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script><b>bold</b>";
    let long = "W".repeat(4096);
    let hostile = [
        markup.to_owned(),
        "click javascript:window.pwned=3 now".to_owned(),
        "[x](javascript:window.pwned=4) <a href=\"javascript:window.pwned=5\">y</a>".to_owned(),
        "safe https://example.org/path?q=1 link".to_owned(),
        "abc\u{202e}fed\u{2066}gh\u{2069}".to_owned(),
        "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\u{9b}31m\r".to_owned(),
        long.clone(),
        "the end".to_owned(),
    ];
    for line in &hostile {
        mles.send(text(line)).await.unwrap();
    }
    // The page's own composer is no way in either.
    browser.say("page", markup).await;
    browser.wait_row("page", "the end").await;
    let own_markup = browser.wait_row_from("page", "victim", markup).await;
    assert!(own_markup.is("message"), "{own_markup:?}");

    let rows = browser.rows("page").await;
    let by_start = |start: &str| -> Row {
        rows.iter()
            .find(|r| r.text.as_deref().is_some_and(|t| t.starts_with(start)))
            .unwrap_or_else(|| panic!("no row starting {start:?}: {rows:?}"))
            .clone()
    };
    // Markup is text, exactly as sent.
    assert_eq!(by_start("<img").text.as_deref(), Some(markup));
    let dom = browser
        .eval(
            "page",
            "() => ({
                elements: document.querySelectorAll(
                    '#messages img, #messages script, #messages iframe, #messages object, #messages embed, #messages b').length,
                pwned: window.pwned === undefined ? null : window.pwned,
                title: document.title,
                links: [...document.querySelectorAll('#messages a')].map((a) => ({
                    href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent })),
                scroll: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
            })",
            Value::Null,
        )
        .await;
    assert_eq!(dom["elements"], 0, "markup became elements: {dom}");
    assert_eq!(dom["pwned"], Value::Null, "a script ran: {dom}");
    assert!(!dom["title"].as_str().unwrap().contains("pwned"), "{dom}");
    // Only the http(s) link is a link, opened safely.
    let links = dom["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{dom}");
    assert_eq!(links[0]["href"], "https://example.org/path?q=1", "{dom}");
    let rel = links[0]["rel"].as_str().unwrap();
    assert!(
        rel.contains("noopener") && rel.contains("noreferrer"),
        "{dom}"
    );
    assert_eq!(links[0]["target"], "_blank");
    // Bidi controls and terminal escapes are neutralised; the rest of the text is kept.
    let bidi = by_start("abc").text.unwrap();
    assert!(
        !bidi
            .chars()
            .any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
        "{bidi:?}"
    );
    assert!(bidi.contains("fed") && bidi.contains("gh"), "{bidi:?}");
    let escapes = rows
        .iter()
        .find_map(|r| {
            r.text
                .clone()
                .filter(|t| t.contains("red") && t.contains("31m"))
        })
        .unwrap_or_else(|| panic!("no escape row: {rows:?}"));
    assert!(
        !escapes.chars().any(|c| c.is_control() && c != '\n'),
        "a control character is shown raw: {escapes:?}"
    );
    // 4 KiB without a space wraps: shown in full, no horizontal scroll.
    let long_row = by_start("WWWW").text.unwrap();
    assert_eq!(long_row.matches('W').count(), 4096);
    assert!(
        dom["scroll"][0].as_u64() <= dom["scroll"][1].as_u64(),
        "the page scrolls sideways: {dom}"
    );
    browser.assert_clean("page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_fits_a_360_px_phone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    let mut bob = ssh_user_in(&server, dir.path(), "bob", "dev").await;
    browser
        .open("phone", &url(&server, "dev"), [360, 740], "light")
        .await;
    let fits = "() => {
        const d = document.documentElement;
        const c = document.querySelector('#composer textarea');
        const box = c && c.getBoundingClientRect();
        return {
            scrollWidth: d.scrollWidth, clientWidth: d.clientWidth,
            composer: box && [box.left, box.top, box.right, box.bottom],
            viewport: [innerWidth, innerHeight],
        };
    }";
    let login = browser.eval("phone", fits, Value::Null).await;
    assert!(
        login["scrollWidth"].as_u64() <= login["clientWidth"].as_u64(),
        "the login scrolls sideways at 360 px: {login}"
    );
    browser.enter("phone", "phoebe", "dev").await;
    bob.send("a long word: https://example.org/a/very/long/path/that/does/not/fit/on/a/small/phone/screen/at/all")
        .await;
    browser.say("phone", &"typed on a phone ".repeat(20)).await;
    browser
        .wait_row("phone", "a long word: https://example.org/a/very/long/path/that/does/not/fit/on/a/small/phone/screen/at/all")
        .await;
    let chat = browser.eval("phone", fits, Value::Null).await;
    assert!(
        chat["scrollWidth"].as_u64() <= chat["clientWidth"].as_u64(),
        "the chat scrolls sideways at 360 px: {chat}"
    );
    let composer = chat["composer"].as_array().expect("a composer textarea");
    let (left, top, right, bottom) = (
        composer[0].as_f64().unwrap(),
        composer[1].as_f64().unwrap(),
        composer[2].as_f64().unwrap(),
        composer[3].as_f64().unwrap(),
    );
    assert!(
        left >= 0.0 && top >= 0.0 && right <= 360.0 && bottom <= 740.0 && bottom > top,
        "the composer is not fully visible: {chat}"
    );
    browser.assert_clean("phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_in_a_room_stay_virtualised() {
    const MESSAGES: usize = 10_000;
    let _heavy = heavy().await;
    let server = Start::new().args(&["--history-limit", "20000"]).start();
    let mut feeder = server.client().join("feeder", "dev").await;
    for i in 0..MESSAGES {
        feeder.feed(text(&format!("m {i}"))).await.unwrap();
    }
    feeder.flush().await.unwrap();
    server
        .wait_metric("kanava_frames_in_total", MESSAGES as f64)
        .await;
    drop(feeder);
    // The page enters with the latest page of the room and scrolls up through all the others,
    // so that it holds every message.
    let mut browser = Browser::launch().await;
    browser.open_desktop("page", &server).await;
    browser.enter("page", "reader", "dev").await;
    browser
        .wait_row("page", &format!("m {}", MESSAGES - 1))
        .await;
    let to_the_top = format!(
        "(text) => {{ {SCROLLER}; const s = scroller(); s.scrollTop = 0;
            return [...document.querySelectorAll('#messages li .text')]
                .some((e) => e.textContent === text); }}"
    );
    browser
        .wait_for_within("page", Duration::from_secs(120), &to_the_top, json!("m 0"))
        .await;
    let count = "() => document.querySelectorAll('#messages li').length";
    let in_dom = browser
        .eval("page", count, Value::Null)
        .await
        .as_u64()
        .unwrap();
    assert!(in_dom < 500, "{in_dom} rows in the DOM");
    // The log stands for every message (it is as tall as 10,000 rows), not only for the few
    // rows in the DOM.
    let heights = format!(
        "() => {{ {SCROLLER}; const s = scroller(); return [s.scrollHeight, s.clientHeight]; }}"
    );
    let heights = browser.eval("page", &heights, Value::Null).await;
    assert!(
        heights[0].as_f64().unwrap() > 100.0 * heights[1].as_f64().unwrap(),
        "the log is not as tall as 10,000 rows: {heights}"
    );

    // Scrolling half way up shows the messages there, still few rows in the DOM.
    let middle = format!(
        "() => {{ {SCROLLER}; const s = scroller(); s.scrollTop = s.scrollHeight / 2;
            const shown = [...document.querySelectorAll('#messages li .text')]
                .map((e) => Number(e.textContent.replace(/^m /, '')))
                .filter((n) => Number.isInteger(n));
            return shown.length > 0 && Math.min(...shown) > {} && Math.max(...shown) < {} && shown; }}",
        1000,
        MESSAGES - 1000
    );
    let shown = browser.wait_for("page", &middle, Value::Null).await;
    assert!(!shown.as_array().unwrap().is_empty());
    let in_dom = browser
        .eval("page", count, Value::Null)
        .await
        .as_u64()
        .unwrap();
    assert!(in_dom < 500, "{in_dom} rows in the DOM after scrolling");
    let rows = browser.rows("page").await;
    assert_each_seq_once("page", &rows);
    browser.assert_clean("page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_main_views() {
    let dir = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let server = Kanava::start();
    let mut browser = Browser::launch().await;

    browser
        .open("login", &url(&server, "dev"), [1280, 800], "light")
        .await;
    browser
        .call(json!({"cmd": "wait", "page": "login", "target": {"css": "#login"}}))
        .await;
    browser.screenshot("login", &shots.join("login.png")).await;

    let mut bob = ssh_user_in(&server, dir.path(), "bob", "dev").await;
    browser.open_desktop("alice", &server).await;
    browser.enter("alice", "alice", "dev").await;
    browser.open_desktop("carol", &server).await;
    browser.enter("carol", "carol", "dev").await;
    browser
        .wait_people("alice", &["alice", "bob", "carol"])
        .await;
    let mut bot = server.client().join("ci-bot", "dev").await;
    browser
        .wait_people("alice", &["alice", "bob", "carol", "~ci-bot"])
        .await;

    browser
        .say("alice", "/topic Release 0.4: ship on Friday")
        .await;
    browser
        .wait_for(
            "carol",
            "() => document.getElementById('topic')?.textContent.includes('ship on Friday')",
            Value::Null,
        )
        .await;
    bob.send("morning! the 0.4 branch is cut").await;
    browser
        .wait_row("alice", "morning! the 0.4 branch is cut")
        .await;
    browser
        .say("alice", "great, I'll run the browser tests on it")
        .await;
    browser
        .wait_row("carol", "great, I'll run the browser tests on it")
        .await;
    bot.send(text("build #812 passed: https://ci.example.org/812"))
        .await
        .unwrap();
    browser
        .wait_row("alice", "build #812 passed: https://ci.example.org/812")
        .await;
    browser
        .say("carol", "/me is reviewing the TLS change")
        .await;
    browser
        .wait_for(
            "alice",
            "() => [...document.querySelectorAll('#messages li.emote')].length > 0",
            Value::Null,
        )
        .await;
    bob.send("alice: can you look at the reconnect backoff?")
        .await;
    let mention = browser
        .wait_row("alice", "alice: can you look at the reconnect backoff?")
        .await;
    assert!(mention.is("mention"), "{mention:?}");
    browser.say("alice", "sure, after lunch").await;
    browser.wait_row("alice", "sure, after lunch").await;

    let mut backgrounds = Vec::new();
    for scheme in ["light", "dark"] {
        browser
            .call(json!({"cmd": "colorScheme", "page": "alice", "colorScheme": scheme}))
            .await;
        backgrounds.push(
            browser
                .eval(
                    "alice",
                    "() => getComputedStyle(document.body).backgroundColor",
                    Value::Null,
                )
                .await,
        );
        browser
            .call(json!({"cmd": "viewport", "page": "alice", "viewport": [1280, 800]}))
            .await;
        browser
            .screenshot("alice", &shots.join(format!("chat-{scheme}.png")))
            .await;
        browser
            .call(json!({"cmd": "viewport", "page": "alice", "viewport": [360, 740]}))
            .await;
        browser
            .screenshot("alice", &shots.join(format!("phone-{scheme}.png")))
            .await;
    }
    for name in [
        "login",
        "chat-light",
        "chat-dark",
        "phone-light",
        "phone-dark",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}.png is not a PNG");
    }
    // The page follows the system's scheme.
    assert_ne!(
        backgrounds[0], backgrounds[1],
        "the same background in light and dark"
    );
    browser.assert_clean("alice").await;
    browser.assert_clean("carol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_drop_is_survived_without_loss_or_duplicate() {
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    // alice's timers run on a clock the test can move: the page finds out that its connection
    // stopped answering only after its probe's period (tens of seconds).
    browser
        .call(json!({"cmd": "open", "page": "alice", "url": url(&server, ""), "clock": true}))
        .await;
    browser.assert_loaded("alice").await;
    browser.enter("alice", "alice", "dev").await;
    browser.open_desktop("bob", &server).await;
    browser.enter("bob", "bob", "dev").await;
    browser.say("bob", "before the drop").await;
    browser.wait_row("alice", "before the drop").await;
    browser
        .call(json!({"cmd": "offline", "page": "alice", "offline": true}))
        .await;
    browser
        .call(json!({"cmd": "fastForward", "page": "alice", "ms": 60_000}))
        .await;
    browser
        .wait_for(
            "alice",
            "() => /reconnecting/i.test(document.getElementById('status')?.textContent ?? '')",
            Value::Null,
        )
        .await;
    browser.say("bob", "during the drop").await;
    browser.wait_row("bob", "during the drop").await;
    browser
        .call(json!({"cmd": "offline", "page": "alice", "offline": false}))
        .await;
    browser
        .wait_connected("alice", Duration::from_secs(30))
        .await;
    browser.wait_row("alice", "during the drop").await;
    browser.say("alice", "back").await;
    browser.wait_row("bob", "back").await;
    browser.wait_row("alice", "back").await;
    let rows = browser.rows("alice").await;
    assert_each_seq_once("alice", &rows);
    assert_eq!(
        message_texts(&rows),
        ["before the drop", "during the drop", "back"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_paints_within_a_second_and_weighs_under_150_kb() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let mut browser = Browser::launch().await;
    browser.open_desktop("first", &server).await;
    browser.key("first").await;
    let measured = browser
        .wait_for(
            "first",
            "() => {
                const paint = performance.getEntriesByName('first-contentful-paint')[0];
                if (!paint) return null;
                const entries = [...performance.getEntriesByType('navigation'),
                    ...performance.getEntriesByType('resource')];
                return {
                    paint: paint.startTime,
                    bytes: entries.reduce((sum, e) => sum + e.transferSize, 0),
                    files: entries.map((e) => [e.name, e.transferSize, e.decodedBodySize]),
                };
            }",
            Value::Null,
        )
        .await;
    let paint = measured["paint"].as_f64().unwrap();
    assert!(paint < 1000.0, "first paint after {paint} ms: {measured}");
    // What the browser fetched over the wire (compressed, headers included).
    let bytes = measured["bytes"].as_f64().unwrap();
    assert!(
        bytes > 0.0 && bytes < 150.0 * 1024.0,
        "the page weighs {bytes} bytes: {measured}"
    );
    browser.assert_clean("first").await;
}

/// Replaces the page's `Notification` with one that records what it is asked to show, as if the
/// user had allowed notifications, and lets the test say whether the page is hidden.
const RECORD_NOTIFICATIONS: &str = "() => {
    window.__shown = [];
    window.__hidden = false;
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__hidden });
    window.Notification = class {
        static get permission() { return 'granted'; }
        static requestPermission() { return Promise.resolve('granted'); }
        constructor(title, options) { window.__shown.push({ title, body: options?.body }); }
        close() {}
    };
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_and_private_messages_notify_only_while_the_page_is_hidden() {
    let server = Start::new().start();
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().await;
    browser.open_desktop("carol", &server).await;
    browser.enter("carol", "carol", "dev").await;
    // Permission is asked for only when the user presses the button: the page offers it.
    let offered = browser
        .eval(
            "carol",
            "() => [Notification.permission, !document.querySelector('#notify').hidden]",
            Value::Null,
        )
        .await;
    assert_eq!(offered, json!(["default", true]), "{offered}");
    browser
        .eval("carol", RECORD_NOTIFICATIONS, Value::Null)
        .await;
    let mut bob = ssh_user_in(&server, dir.path(), "bob", "dev").await;
    let shown = "() => window.__shown";

    // Seen on screen: a mention is highlighted, nobody is notified.
    bob.send("carol: while you look").await;
    let row = browser.wait_row("carol", "carol: while you look").await;
    assert!(row.is("mention"), "{row:?}");
    // Hidden: a mention and a private message notify; other lines do not.
    browser
        .eval("carol", "() => { window.__hidden = true; }", Value::Null)
        .await;
    bob.send("just chatting").await;
    bob.send("Carol, are you there?").await;
    bob.send("/msg carol psst").await;
    browser
        .wait_for(
            "carol",
            "() => window.__shown.length >= 2 && window.__shown",
            Value::Null,
        )
        .await;
    browser.wait_row("carol", "just chatting").await;
    let notified = browser.eval("carol", shown, Value::Null).await;
    let notified = notified.as_array().unwrap();
    assert_eq!(notified.len(), 2, "{notified:?}");
    assert!(
        notified[0]["title"].as_str().unwrap().contains("bob")
            && notified[0]["body"] == "Carol, are you there?",
        "{notified:?}"
    );
    assert!(
        notified[1]["title"].as_str().unwrap().contains("bob") && notified[1]["body"] == "psst",
        "{notified:?}"
    );
    browser.assert_clean("carol").await;
}
