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

use crate::debugme_client::both_verify;
use crate::debugme_server::{
    Roles, open_session, raw_send, user_messages, user_messages_seeing, versioned,
};
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
        later: li.classList.contains('later'),
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

    /// Types `line` and Enter into the shared shell, as the user.
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
    let _heavy = heavy().await;
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let log_dir = scratch.path().join("user");
    let mut share = Share::start(&server, &log_dir);
    let url = share.watch_url().await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        url,
        format!("https://localhost:{}/debug-me/{id}", server.mles.port())
    );

    let mut browser = Browser::launch().await;
    let response = browser.open_page("watch", &url, [1280, 800], "light").await;
    // The page keeps the site's policy: styles of its own origin only.
    assert!(
        response["headers"]["content-security-policy"]
            .as_str()
            .unwrap()
            .contains("style-src 'self';"),
        "{response}"
    );
    share.type_line("echo first-$((1+1))");
    let rows = wait_row(&mut browser, "watch", "first-2").await;
    assert!(rows.contains("echo first-$((1+1))"), "{rows}");
    // xterm.js's computed styles are in effect without a <style> element: its rows have the
    // cell height it computed, and its screen the width of 80 of its cells at least.
    let styled = browser
        .eval(
            "watch",
            "() => ({ styles: document.querySelectorAll('style').length,
                adopted: document.adoptedStyleSheets.length,
                rowHeight: parseFloat(getComputedStyle(document.querySelector('.xterm-rows > div')).height),
                screen: document.querySelector('.xterm-screen').getBoundingClientRect().width })",
            Value::Null,
        )
        .await;
    assert_eq!(styled["styles"], 0, "{styled}");
    assert!(styled["adopted"].as_u64().unwrap() >= 2, "{styled}");
    assert!(styled["rowHeight"].as_f64().unwrap() >= 8.0, "{styled}");
    assert!(styled["screen"].as_f64().unwrap() >= 80.0 * 5.0, "{styled}");
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

    // A real debug-me developer joins (through the plain listener), the user lets it in from
    // `kanava control`, and chats there.
    let roles = Roles::new();
    new_gpg_key(&roles.gnupg("dev"), "Dev");
    roles.run(
        "control",
        scratch.path(),
        &format!(
            "{} control --log-dir {}",
            env!("CARGO_BIN_EXE_kanava"),
            log_dir.display()
        ),
    );
    roles.run(
        "dev",
        scratch.path(),
        &format!("debug-me http://{}/{id}", server.debug_me),
    );
    roles
        .wait("control", "the consent question", |s| {
            s.contains("run commands? [y/n]")
        })
        .await;
    roles.keys("control", "y");
    roles
        .wait("dev", "write access", |s| {
            s.contains("debug-me session started")
        })
        .await;
    roles.keys("control", "hello from the user");
    // The developer's command comes a moment after the user's in the session's signed time.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    roles.keys("dev", "echo second-$((2+2))");
    wait_row(&mut browser, "watch", "second-4").await;
    let shown = wait_shown(
        &mut browser,
        "watch",
        "the developer's key and the chat",
        "(s) => s.events.some((e) => e.what.endsWith(': hello from the user'))
            && s.status.includes('developer Dev <dev@example.org> (GnuPG ')",
    )
    .await;
    let listed = events(&shown);
    assert!(
        listed
            .iter()
            .any(|e| e.starts_with("developer's session key ")
                && e.ends_with("GnuPG-signed by Dev <dev@example.org>")),
        "{shown:#}"
    );
    assert!(
        listed
            .iter()
            .any(|e| e.starts_with("user accepted developer key ")),
        "{shown:#}"
    );
    roles.keys("dev", "exit");
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
    both_verify(&log);
    let output = asciicast_output(&cast);
    assert!(
        output.contains("first-2") && output.contains("second-4"),
        "{output}"
    );
    same_as_kanava_export(&cast, &log);

    // The replay, seeked by the times in the asciicast (the signed elapsed times).
    let first = cast_time(&cast, "first-2");
    let second = cast_time(&cast, "second-4");
    assert!(second - first > 1.0, "{first} {second}");
    seek(&mut browser, "watch", (first + second) / 2.0).await;
    wait_rows(&mut browser, "watch", &["first-2"], &["second-4"]).await;
    seek(&mut browser, "watch", 0.0).await;
    wait_rows(&mut browser, "watch", &[], &["first-2", "second-4"]).await;
    // At the start, the chat is still to come.
    wait_shown(
        &mut browser,
        "watch",
        "the chat dimmed as still to come",
        "(s) => s.events.some((e) => e.what.endsWith(': hello from the user') && e.later)",
    )
    .await;
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

/// Asserts that the page's asciicast is what `kanava export --asciicast` makes of the page's
/// log at the same size: the same header and the same output at the same times.
fn same_as_kanava_export(cast: &Path, log: &Path) {
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ours = parse(&std::fs::read_to_string(cast).unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(["export", "--asciicast"])
        .arg(log)
        .arg("--width")
        .arg(ours[0]["width"].to_string())
        .arg("--height")
        .arg(ours[0]["height"].to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = parse(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(ours[0], theirs[0], "the headers");
    assert_eq!(ours.len(), theirs.len(), "{ours:?}\n{theirs:?}");
    for (a, b) in ours[1..].iter().zip(&theirs[1..]) {
        assert_eq!(
            (a[0].as_f64(), &a[1], &a[2]),
            (b[0].as_f64(), &b[1], &b[2]),
            "an output event"
        );
    }
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

/// The event list's lines of `shown` (what [`SHOWN`] gives).
fn events(shown: &Value) -> Vec<String> {
    shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_real_debug_me_session_is_watched_live_and_late_and_verified_in_the_page() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let plain = format!("http://{}/", server.debug_me);
    let roles = Roles::new();
    let scratch = tempfile::tempdir().unwrap();
    new_gpg_key(&roles.gnupg("dev"), "Dev");
    let (session_url, id) = roles.start_user(scratch.path(), &plain).await;
    // The watch page's address, as `kanava serve` announces it.
    let page_url = server
        .stdout_lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("watch  "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no watch line in {:?}", server.stdout_lines))
        .replace("SESSION", &id);
    assert_eq!(page_url, format!("https://{}/debug-me/{id}", server.mles));

    // One page watches from the start, before any developer joins.
    let mut browser = Browser::launch().await;
    browser
        .open_page("live", &page_url, [1280, 800], "light")
        .await;
    wait_row(&mut browser, "live", "** debug-me session started").await;
    roles
        .admit_developer_and_watcher(scratch.path(), &session_url, &session_url)
        .await;
    roles
        .developer_echoes("hello-from-dev", &["watch", "user"])
        .await;
    let rows = wait_row(&mut browser, "live", "hello-from-dev").await;
    assert!(
        rows.lines()
            .any(|l| l.ends_with("echo hello-from-dev") && l != "echo hello-from-dev"),
        "the command, after the shell's prompt: {rows}"
    );
    let developer = "developer Dev <dev@example.org>";
    let shown = wait_shown(
        &mut browser,
        "live",
        "the verified status naming the developer",
        &format!("(s) => s.status.startsWith('verified: ') && s.status.includes({developer:?})"),
    )
    .await;
    let status = shown["status"].as_str().unwrap();
    assert!(status.contains("chain intact, user key "), "{shown:#}");
    let listed = events(&shown);
    let key_event = listed
        .iter()
        .find(|e| e.starts_with("developer's session key "))
        .unwrap_or_else(|| panic!("no developer key event: {shown:#}"));
    assert!(
        key_event.ends_with("GnuPG-signed by Dev <dev@example.org>"),
        "{key_event}"
    );
    assert!(
        listed
            .iter()
            .any(|e| e.starts_with("user accepted developer key ")),
        "{shown:#}"
    );
    // Live events also show when they arrived.
    assert!(
        shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["arrived"].is_string()),
        "{shown:#}"
    );
    browser
        .screenshot("live", &docs().join("debug-me-watch.png"))
        .await;

    // A page opened after the command ran sees the whole session, verified the same.
    browser
        .open_page("late", &page_url, [1280, 800], "dark")
        .await;
    let late_rows = wait_row(&mut browser, "late", "hello-from-dev").await;
    assert!(
        late_rows.contains("** debug-me session started"),
        "{late_rows}"
    );
    let late = wait_shown(
        &mut browser,
        "late",
        "the same verified status",
        &format!("(s) => s.status === {status:?}"),
    )
    .await;
    assert_eq!(events(&late), listed);

    roles.developer_exits(7, &["user", "dev", "watch"]).await;
    for page in ["live", "late"] {
        wait_shown(
            &mut browser,
            page,
            "the finished session",
            "(s) => s.state.startsWith('Finished') && s.status.startsWith('verified: ')",
        )
        .await;
        browser.assert_clean(page).await;
    }
}

/// A plain-HTTP front for kanava's TLS listener, standing where a compromised server would:
/// it passes the page and its WebSocket through, and once `forge` is set, it injects one `L`
/// frame before the next one the server sends: a copy of the last user message with the last
/// byte of its signature changed. `forged_at` is then that frame's number among the session's
/// messages.
struct ForgingProxy {
    addr: std::net::SocketAddr,
    forge: Arc<std::sync::atomic::AtomicBool>,
    forged_at: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ForgingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ForgingProxy {
    async fn start(server: &Kanava) -> ForgingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Arc::new(server.client());
        let forge = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forged_at = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (flag, at) = (Arc::clone(&forge), Arc::clone(&forged_at));
        let task = tokio::spawn(async move {
            loop {
                let Ok((browser, _)) = listener.accept().await else {
                    return;
                };
                let (client, flag, at) = (Arc::clone(&client), Arc::clone(&flag), Arc::clone(&at));
                tokio::spawn(async move {
                    let _ = Self::pass(browser, &client, &flag, &at).await;
                });
            }
        });
        ForgingProxy {
            addr,
            forge,
            forged_at,
            task,
        }
    }

    /// One connection: the request head goes to the server; a page's response comes back as
    /// it is, a WebSocket's frames one by one.
    async fn pass(
        mut browser: tokio::net::TcpStream,
        client: &Client,
        forge: &std::sync::atomic::AtomicBool,
        forged_at: &std::sync::atomic::AtomicUsize,
    ) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = read_head(&mut browser).await?;
        let websocket = String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("upgrade: websocket");
        let server = client.tls().await;
        let (mut from_server, mut to_server) = tokio::io::split(server);
        to_server.write_all(&head).await?;
        let (mut from_browser, mut to_browser) = browser.into_split();
        let upstream = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_browser, &mut to_server).await;
            let _ = to_server.shutdown().await;
        });
        if !websocket {
            tokio::io::copy(&mut from_server, &mut to_browser).await?;
            upstream.abort();
            return Ok(());
        }
        let response = read_head(&mut from_server).await?;
        to_browser.write_all(&response).await?;
        let mut messages = 0;
        let mut last_user: Option<Vec<u8>> = None;
        loop {
            // A server frame: FIN/opcode, then a length of 7, 16 or 64 bits, never masked.
            let mut start = [0u8; 2];
            from_server.read_exact(&mut start).await?;
            let mut header = start.to_vec();
            let length = match start[1] & 0x7f {
                126 => {
                    let mut bytes = [0u8; 2];
                    from_server.read_exact(&mut bytes).await?;
                    header.extend(bytes);
                    u64::from(u16::from_be_bytes(bytes))
                }
                127 => {
                    let mut bytes = [0u8; 8];
                    from_server.read_exact(&mut bytes).await?;
                    header.extend(bytes);
                    u64::from_be_bytes(bytes)
                }
                short => u64::from(short),
            };
            let mut payload = vec![0u8; usize::try_from(length).unwrap()];
            from_server.read_exact(&mut payload).await?;
            let binary = start[0] & 0x0f == 2;
            if binary && payload.first() == Some(&b'L') {
                if forge.swap(false, Ordering::SeqCst)
                    && let Some(mut forged) = last_user.take()
                {
                    *forged.last_mut().unwrap() ^= 0x01;
                    messages += 1;
                    forged_at.store(messages, Ordering::SeqCst);
                    to_browser.write_all(&websocket_frame(&forged)).await?;
                }
                messages += 1;
                // AnyMessageP's `user` (field 29, length-delimited): tag bytes EA 01.
                if payload[1..].starts_with(&[0xea, 0x01]) {
                    last_user = Some(payload.clone());
                }
            }
            to_browser.write_all(&header).await?;
            to_browser.write_all(&payload).await?;
        }
    }
}

/// Reads an HTTP head (through its blank line).
async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    Ok(head)
}

/// An unmasked binary WebSocket frame (a server's).
fn websocket_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x82];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    frame.extend(payload);
    frame
}

#[tokio::test]
async fn a_message_forged_on_the_way_turns_the_status_to_failed() {
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut share = Share::start(&server, &scratch.path().join("user"));
    let url = share.watch_url().await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    let proxy = ForgingProxy::start(&server).await;

    let mut browser = Browser::launch().await;
    let page_url = format!("http://{}/debug-me/{id}", proxy.addr);
    browser
        .open_page("watch", &page_url, [1280, 800], "light")
        .await;
    share.type_line("echo before-$((3+3))");
    wait_row(&mut browser, "watch", "before-6").await;
    wait_shown(
        &mut browser,
        "watch",
        "a verified status",
        "(s) => s.status.startsWith('verified: ') && !s.failed",
    )
    .await;

    proxy.forge.store(true, std::sync::atomic::Ordering::SeqCst);
    share.type_line("echo after-$((4+4))");
    // What follows the forgery is still shown, but marked as untrusted.
    wait_row(&mut browser, "watch", "after-8").await;
    let forged_at = proxy.forged_at.load(std::sync::atomic::Ordering::SeqCst);
    assert!(forged_at > 0, "the proxy forged a message");
    let shown = wait_shown(
        &mut browser,
        "watch",
        "the failure",
        &format!("(s) => s.failed && s.status.startsWith('failed at message {forged_at}: ') && s.untrusted"),
    )
    .await;
    assert!(
        shown["untrusted"]
            .as_str()
            .unwrap()
            .contains(&format!("from message {forged_at} on")),
        "{shown:#}"
    );
    share.type_line("exit");
    let finished = wait_shown(
        &mut browser,
        "watch",
        "the finished session, still failed",
        "(s) => s.state.startsWith('Finished')",
    )
    .await;
    assert_eq!(finished["status"], shown["status"], "{finished:#}");
    browser.assert_clean("watch").await;
}

#[tokio::test]
async fn a_long_finished_session_is_verified_and_seeks_in_seconds() {
    let server = Kanava::start();
    let mut user = versioned(&server).await;
    let id = open_session(&mut user, "nobody").await;
    // 1,500 Seen messages of "line i", each 0.01 s after the one before.
    let frames = user_messages(1500);
    for frame in &frames {
        assert!(raw_send(&mut user, frame).await);
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();

    let mut browser = Browser::launch().await;
    let url = format!("https://localhost:{}/debug-me/{id}", server.mles.port());
    let opened = std::time::Instant::now();
    browser
        .open_page("replay", &url, [1280, 800], "light")
        .await;
    let shown = wait_shown(
        &mut browser,
        "replay",
        "the whole session verified, as a replay",
        "(s) => s.state.startsWith('Finished') && s.status.startsWith('verified: 1,501 messages, chain intact')",
    )
    .await;
    let verified_in = opened.elapsed();
    assert_eq!(shown["clock"], "0:15.0 / 0:15.0", "{shown:#}");
    wait_rows(&mut browser, "replay", &["line 1499"], &[]).await;
    // Back to the middle: line i was shown at (i + 1) / 100 s. (xterm.js updates what a screen
    // reader reads at most once a second, which bounds how fast this can be seen.)
    let seeking = std::time::Instant::now();
    seek(&mut browser, "replay", 7.505).await;
    wait_rows(
        &mut browser,
        "replay",
        &["line 749"],
        &["line 750", "line 1499"],
    )
    .await;
    seek(&mut browser, "replay", 0.505).await;
    wait_rows(
        &mut browser,
        "replay",
        &["line 49"],
        &["line 50", "line 749"],
    )
    .await;
    let seeks = seeking.elapsed();
    eprintln!("1,501 messages verified in the page in {verified_in:?}; two seeks in {seeks:?}");
    assert!(
        seeks < std::time::Duration::from_secs(5),
        "seeking a 1,501-message session took {seeks:?}"
    );
    browser.assert_clean("replay").await;

    // A session the server does not know is said so, with nothing verified.
    let unknown = format!(
        "https://localhost:{}/debug-me/00000000-0000-4000-8000-000000000000",
        server.mles.port()
    );
    browser
        .open_page("unknown", &unknown, [800, 600], "light")
        .await;
    let shown = wait_shown(
        &mut browser,
        "unknown",
        "the server's refusal",
        "(s) => s.state.endsWith(': Unknown session ID')",
    )
    .await;
    assert_eq!(
        shown["status"], "nothing to verify: Unknown session ID",
        "{shown:#}"
    );
    browser.assert_clean("unknown").await;
}

#[tokio::test]
async fn hostile_output_is_drawn_as_text_at_a_bounded_size() {
    let server = Kanava::start();
    let mut user = versioned(&server).await;
    let id = open_session(&mut user, "nobody").await;
    let outputs: [&[u8]; 6] = [
        b"\x1b]0;pwned\x07titled\r\n",
        b"\x1b]52;c;aGk=\x07clip\r\n",
        b"\x1b]8;;javascript:alert(1)\x1b\\link\x1b]8;;\x1b\\\r\n",
        b"\x1b[6n\x1b[c\x1b[21t<img src=x onerror=alert(1)>\r\n",
        b"\x1b[99999;99999H\x1b[8;5000;5000t",
        b"\x1b[H\x1b[2Jend of attack\r\n",
    ];
    let frames = user_messages_seeing(outputs.len(), |i| outputs[i].to_vec());
    for frame in &frames {
        assert!(raw_send(&mut user, frame).await);
    }
    futures_util::SinkExt::close(&mut user).await.unwrap();

    let mut browser = Browser::launch().await;
    let url = format!("https://localhost:{}/debug-me/{id}", server.mles.port());
    browser.open_page("watch", &url, [1280, 800], "light").await;
    wait_shown(
        &mut browser,
        "watch",
        "the session verified, as a replay",
        "(s) => s.state.startsWith('Finished') && s.status.startsWith('verified: 7 messages')",
    )
    .await;
    wait_row(&mut browser, "watch", "end of attack").await;
    // Every output before the last, as it was: the markup is text, the string sequences gone.
    seek(&mut browser, "watch", 0.045).await;
    let rows = wait_rows(
        &mut browser,
        "watch",
        &["titled", "clip", "link", "<img src=x onerror=alert(1)>"],
        &["end of attack"],
    )
    .await;
    assert!(!rows.contains("pwned") && !rows.contains("aGk="), "{rows}");
    let page = browser
        .eval(
            "watch",
            "() => ({ title: document.title, size: document.getElementById('terminal-size').textContent,
                images: document.images.length, links: document.querySelectorAll('a[href]').length })",
            Value::Null,
        )
        .await;
    assert_eq!(
        page,
        json!({"title": "debug-me session · kanava", "size": "400×150", "images": 0, "links": 0})
    );
    browser.assert_clean("watch").await;
}
