//! The debug-me watch page (`/debug-me/SESSION`) in a real headless Chromium against the real
//! server: sessions of the real `debug-me` and of `kanava share`, watched live and late,
//! verified by the page itself, replayed and downloaded (the downloads checked by `kanava
//! verify`, `debug-me --verify` and as asciicast v2), and a forged message, injected by a proxy
//! between the browser and the server, turning the page's status to failed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::debugme_server::{Roles, debug_me};
use crate::playwright::{Browser, PAGE_WAIT};
use crate::support::*;

/// The rows the user's terminal shows, from xterm.js's accessibility tree (what a screen
/// reader reads), one line each.
const TERMINAL: &str = "() => [...document.querySelectorAll('.xterm-accessibility-tree > div')]
    .map((row) => row.textContent.replace(/\\u00a0/g, ' ').trimEnd()).join('\\n')";

/// What the page says about the session: its status line, its state, its event list.
const SHOWN: &str = "() => ({
    status: document.getElementById('verification').textContent,
    failed: document.getElementById('verification').classList.contains('failed'),
    state: document.getElementById('session-state').textContent,
    untrusted: document.getElementById('untrusted').hidden ? null : document.getElementById('untrusted').textContent,
    events: [...document.querySelectorAll('#events li')].map((li) => ({
        what: li.querySelector('.what').textContent,
        untrusted: li.classList.contains('untrusted'),
        arrived: li.querySelector('.arrived')?.textContent ?? null,
    })),
    clock: document.getElementById('clock').textContent,
    play: document.getElementById('play').disabled ? null : document.getElementById('play').textContent,
})";

/// Waits until the page's terminal shows a row that is exactly `line`; returns its rows.
async fn wait_row(browser: &mut Browser, page: &str, line: &str) -> String {
    wait_rows(browser, page, &[line], &[]).await
}

/// Waits until the page's terminal shows each of `shown` as a row of its own and none of
/// `hidden`; returns its rows.
async fn wait_rows(browser: &mut Browser, page: &str, shown: &[&str], hidden: &[&str]) -> String {
    let found = browser
        .try_wait(
            page,
            PAGE_WAIT,
            &format!(
                "([shown, hidden]) => {{ const text = ({TERMINAL})(); const rows = text.split('\\n');
                return shown.every((l) => rows.includes(l)) && !hidden.some((l) => rows.includes(l)) && text; }}"
            ),
            json!([shown, hidden]),
        )
        .await;
    match found {
        Ok(rows) => rows.as_str().unwrap().to_owned(),
        Err(error) => {
            let rows = browser.eval(page, TERMINAL, Value::Null).await;
            let state = browser.eval(page, SHOWN, Value::Null).await;
            panic!(
                "{page}: the terminal never showed {shown:?} without {hidden:?}: {error}\nterminal:\n{}\npage: {state:#}",
                rows.as_str().unwrap()
            );
        }
    }
}

/// Waits until `check` (a JavaScript function of what [`SHOWN`] gives) holds; returns that.
async fn wait_shown(browser: &mut Browser, page: &str, what: &str, check: &str) -> Value {
    let found = browser
        .try_wait(
            page,
            PAGE_WAIT,
            &format!("() => {{ const shown = ({SHOWN})(); return ({check})(shown) && shown; }}"),
            Value::Null,
        )
        .await;
    match found {
        Ok(shown) => shown,
        Err(error) => {
            let shown = browser.eval(page, SHOWN, Value::Null).await;
            panic!("{page}: never showed {what}: {error}\npage: {shown:#}");
        }
    }
}

/// `kanava share` of /bin/sh on `server` over TLS, its stdin a pipe (it still runs the shell
/// in a terminal of its own); its stdout collected.
struct Share {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Share {
    fn start(server: &Kanava, log_dir: &Path) -> Share {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kanava"))
            .args(["share", "--server"])
            .arg(format!("wss://localhost:{}/debug-me", server.mles.port()))
            .arg("--ca")
            .arg(server.cert_path())
            .arg("--log-dir")
            .arg(log_dir)
            .args(["--run", "/bin/sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let reader = BufReader::new(child.stdout.take().unwrap());
        let collected = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Share { child, stdout }
    }

    /// The watch page's URL it printed.
    async fn watch_url(&self) -> String {
        wait_until("kanava share prints the watch page", || {
            self.stdout
                .lock()
                .unwrap()
                .contains("to watch in a browser:")
        })
        .await;
        let text = self.stdout.lock().unwrap().clone();
        let (_, rest) = text.split_once("to watch in a browser:").unwrap();
        rest.split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_owned()
    }

    /// Types `line` and Enter into the shared shell.
    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_kanava_share_session_is_watched_verified_replayed_and_downloaded() {
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut share = Share::start(&server, &scratch.path().join("user"));
    let url = share.watch_url().await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        url,
        format!("https://localhost:{}/debug-me/{id}", server.mles.port())
    );

    let mut browser = Browser::launch().await;
    browser.open_page("watch", &url, [1280, 800], "light").await;
    share.type_line("echo first-$((1+1))");
    let rows = wait_row(&mut browser, "watch", "first-2").await;
    assert!(rows.contains("echo first-$((1+1))"), "{rows}");
    let shown = wait_shown(
        &mut browser,
        "watch",
        "a verified status",
        "(s) => s.status.startsWith('verified: ')",
    )
    .await;
    assert!(
        shown["status"]
            .as_str()
            .unwrap()
            .contains("chain intact, user key "),
        "{shown:#}"
    );
    assert!(
        shown["state"].as_str().unwrap().starts_with("Live session"),
        "{shown:#}"
    );
    // The second command comes a moment later in the session's own (signed) time.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    share.type_line("echo second-$((2+2))");
    wait_row(&mut browser, "watch", "second-4").await;
    share.type_line("exit");
    let shown = wait_shown(
        &mut browser,
        "watch",
        "the finished session as a replay",
        "(s) => s.state.startsWith('Finished') && s.play === 'Play'",
    )
    .await;
    assert!(
        shown["status"].as_str().unwrap().starts_with("verified: "),
        "{shown:#}"
    );
    browser.assert_clean("watch").await;
    let (log, cast) = download_both(&mut browser, "watch", scratch.path()).await;
    both_verify(&log, scratch.path());
    let output = asciicast_output(&cast);
    assert!(
        output.contains("first-2") && output.contains("second-4"),
        "{output}"
    );

    // The replay, seeked by the times in the asciicast (the signed elapsed times).
    let first = cast_time(&cast, "first-2");
    let second = cast_time(&cast, "second-4");
    assert!(second - first > 1.0, "{first} {second}");
    seek(&mut browser, "watch", (first + second) / 2.0).await;
    wait_rows(&mut browser, "watch", &["first-2"], &["second-4"]).await;
    seek(&mut browser, "watch", 0.0).await;
    wait_rows(&mut browser, "watch", &[], &["first-2", "second-4"]).await;
    // Played at 16x from just before the second command, it appears.
    seek(&mut browser, "watch", second - 0.5).await;
    browser
        .call(json!({"cmd": "evaluate", "page": "watch", "expression":
            "() => { const s = document.getElementById('speed'); s.value = '16'; s.dispatchEvent(new Event('change')); }"}))
        .await;
    wait_rows(&mut browser, "watch", &["first-2"], &["second-4"]).await;
    browser.click_button("watch", "Play").await;
    wait_row(&mut browser, "watch", "second-4").await;
    wait_shown(
        &mut browser,
        "watch",
        "the replay's end",
        "(s) => s.play === 'Play'",
    )
    .await;
    browser
        .screenshot("watch", &docs().join("debug-me-replay.png"))
        .await;
    browser.assert_clean("watch").await;
}

/// docs/screenshots/ of the repository.
fn docs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

/// Moves the replay's timeline to `seconds`, as dragging it does.
async fn seek(browser: &mut Browser, page: &str, seconds: f64) {
    browser
        .eval(
            page,
            "(ms) => { const t = document.getElementById('timeline'); t.value = String(ms); t.dispatchEvent(new Event('input')); }",
            json!((seconds * 1000.0).round() as u64),
        )
        .await;
}

/// Downloads the session's log and asciicast from the page into `dir`.
async fn download_both(
    browser: &mut Browser,
    page: &str,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut saved = Vec::new();
    for (button, file) in [
        ("Download the log", "page.log"),
        ("Download the asciicast", "page.cast"),
    ] {
        let path = dir.join(file);
        let name = browser
            .call(json!({"cmd": "download", "page": page, "path": path,
                "target": {"role": "button", "name": button}}))
            .await;
        assert!(
            name.as_str().unwrap().starts_with("debug-me."),
            "{button}: {name}"
        );
        saved.push(path);
    }
    let cast = saved.pop().unwrap();
    (saved.pop().unwrap(), cast)
}

/// Asserts that `kanava verify` and the real `debug-me --verify` both accept `log`.
fn both_verify(log: &Path, scratch: &Path) {
    let ours = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .arg("verify")
        .arg(log)
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "kanava verify {}: {}{}",
        log.display(),
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&ours.stderr)
    );
    let gnupg = private_dir(&scratch.join("gnupg-verify"));
    let reference = debug_me(&["--verify", log.to_str().unwrap()], scratch, &gnupg);
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &gnupg)
        .args(["--kill", "gpg-agent"])
        .output();
    assert!(
        String::from_utf8_lossy(&reference.stdout).contains("Log file verified")
            || String::from_utf8_lossy(&reference.stderr).contains("Log file verified"),
        "debug-me --verify {}: {}{}",
        log.display(),
        String::from_utf8_lossy(&reference.stdout),
        String::from_utf8_lossy(&reference.stderr)
    );
}

/// What `asciinema cat` prints of a recording (the real asciinema: it fails on anything but a
/// valid asciicast). It wants a terminal, so it runs under `script`.
fn asciicast_output(cast: &Path) -> String {
    assert!(
        Path::new("/usr/bin/asciinema").is_file(),
        "asciinema is missing: apt-get install asciinema"
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("asciinema cat '{}'", cast.display()))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) is installed");
    assert!(
        out.status.success(),
        "asciinema cat {}: {}",
        cast.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(cast)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(header["width"].as_u64().unwrap() >= 80, "{header}");
    assert!(header["height"].as_u64().unwrap() >= 24, "{header}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The time of the first event of an asciicast whose text contains `text` as a line of its own.
fn cast_time(cast: &Path, text: &str) -> f64 {
    let recording = std::fs::read_to_string(cast).unwrap();
    let mut shown = String::new();
    for line in recording.lines().skip(1) {
        let event: Value = serde_json::from_str(line).unwrap();
        shown.push_str(event[2].as_str().unwrap());
        if shown.lines().any(|l| l.trim_end() == text) {
            return event[0].as_f64().unwrap();
        }
    }
    panic!("{text:?} is not in {recording}");
}
