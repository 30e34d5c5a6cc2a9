//! The /verify page in a real headless Chromium against the real server: debug-me logs chosen in
//! its "Log files" input or dropped on it get, from the browser's own verifier in a Web Worker,
//! the verdict, keys and warnings `kanava verify` prints for them, tampered ones failing at the
//! line `kanava verify` and the real `debug-me --verify` name; the chain drawing has a mark per
//! line and marks the failing one; no request carries a file; the page works offline once
//! loaded, GnuPG-signed logs included.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kanava_debugme::model::ControlAction;
use kanava_debugme::recover::Side;
use kanava_debugme::synthetic::{self, Flavour, SyntheticLog, typing_session};
use serde_json::{Value, json};

use crate::debugme::tampered;
use crate::debugme_server::real_session;
use crate::playwright::{Browser, PAGE_WAIT, web_dir};
use crate::support::*;

/// Real logs written by debug-me 1.20220324: a user's log, one with a GnuPG-signed developer
/// key and its acceptance, and a lone developer line (which cannot verify: its key is missing).
const REAL_LOGS: [(&str, &str); 3] = [
    (
        "user.log",
        include_str!("../../../crates/debugme/testdata/appendix-a.log"),
    ),
    (
        "gpg-controls.log",
        include_str!("../../../crates/debugme/testdata/appendix-b-controls.log"),
    ),
    (
        "developer-entered.log",
        include_str!("../../../crates/debugme/testdata/developer-entered.log"),
    ),
];

/// Each result section of the page, newest first: name, verdict, keys, warnings, and its chain
/// drawing's marks (their count, the failing ones' lines, the count of each kind).
const RESULTS: &str = "() => [...document.querySelectorAll('#results article')].map((a) => ({
    name: a.querySelector('h2').textContent,
    pending: a.classList.contains('pending'),
    status: a.querySelector('[role=status]').textContent,
    keys: [...a.querySelectorAll('.keys li')].map((li) => li.textContent),
    warnings: [...a.querySelectorAll('.warnings li')].map((li) => li.textContent),
    drawing: a.querySelector('svg.chain-drawing')?.getAttribute('aria-label') ?? null,
    marks: a.querySelectorAll('svg.chain-drawing .mark').length,
    failing: [...a.querySelectorAll('svg.chain-drawing .mark.failing')]
        .map((m) => Number(m.getAttribute('data-line'))),
    kinds: Object.fromEntries(['seen', 'entered', 'rejected', 'control'].map((kind) =>
        [kind, a.querySelectorAll(`svg.chain-drawing .mark.${kind}`).length])),
}))";

/// Waits until the page shows `n` results, all with their verdict; returns them.
const SETTLED: &str = "(n) => {
    const articles = [...document.querySelectorAll('#results article')];
    return articles.length === n && articles.every((a) => !a.classList.contains('pending'));
}";

/// How long the page may take to give every verdict: a log of thousands of lines is verified
/// in a second or two, but the machine is shared with the rest of the suite.
const VERDICT_WAIT: Duration = Duration::from_secs(60);

/// What `kanava verify` prints about one log, split as the page shows it.
#[derive(Debug, PartialEq)]
struct Printed {
    verdict: String,
    keys: Vec<String>,
    warnings: Vec<String>,
    /// The failing line, from `--json`.
    line: Option<u64>,
    /// `--json`'s line count, when it verified.
    lines: Option<u64>,
}

/// Runs `kanava verify` (text, then `--json`) on `path`.
fn kanava_verify(path: &Path) -> Printed {
    let run = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kanava"));
        command.arg("verify");
        if json {
            command.arg("--json");
        }
        command.arg(path).output().unwrap()
    };
    let text = run(false);
    let report: Value = serde_json::from_slice(&run(true).stdout).unwrap();
    let prefix = format!("{}: ", path.display());
    let stdout = String::from_utf8(text.stdout).unwrap();
    if report["verified"] == true {
        let mut lines = stdout.lines();
        let verdict = lines
            .next()
            .unwrap()
            .strip_prefix(&prefix)
            .unwrap()
            .to_owned();
        let (mut keys, mut warnings) = (Vec::new(), Vec::new());
        for line in lines {
            let line = line.trim_start().to_owned();
            if line.starts_with("warning: ") {
                warnings.push(line);
            } else {
                keys.push(line);
            }
        }
        Printed {
            verdict,
            keys,
            warnings,
            line: None,
            lines: report["lines"].as_u64(),
        }
    } else {
        let stderr = String::from_utf8(text.stderr).unwrap();
        let verdict = stderr
            .trim_end()
            .strip_prefix(&format!("kanava: {prefix}"))
            .unwrap_or_else(|| panic!("kanava verify's failure: {stderr}"))
            .to_owned();
        assert_eq!(report["error"], verdict.as_str());
        Printed {
            verdict,
            keys: Vec::new(),
            warnings: Vec::new(),
            line: report["line"].as_u64(),
            lines: None,
        }
    }
}

/// The line `debug-me --verify` names in `Line N: …` on `path`, or None when it verifies.
fn debug_me_line(path: &Path, scratch: &Path) -> Option<u64> {
    let home = private_dir(&scratch.join("gnupg"));
    let out = Command::new("debug-me")
        .arg("--verify")
        .arg(path)
        .env("GNUPGHOME", &home)
        .current_dir(scratch)
        .output()
        .expect("debug-me is installed (apt-get install debug-me)");
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "gpg-agent"])
        .output();
    let text = String::from_utf8_lossy(&out.stderr);
    let at = text.find("Line ")? + 5;
    text[at..].split(':').next()?.parse().ok()
}

/// A user's log of a developer typing, ending with an Entered the user rejected.
fn session_with_a_rejection() -> SyntheticLog {
    let mut log = typing_session(40, Flavour::User);
    let accepted = log.honest_pointers().1;
    let rejected = log.entered(&synthetic::key(2), b"rm -rf ~", log.honest_pointers(), 0.2);
    log.control(
        Side::User,
        &synthetic::key(1),
        ControlAction::EnteredRejected {
            entered_rejected: rejected,
            entered_last_accepted: accepted,
        },
    );
    log
}

/// `log` with the data of line `line` changed by one letter's case: its signature no longer holds.
fn with_a_letter_changed(log: &str, line: usize) -> String {
    let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
    let key = "Data\":{\"v\":\"";
    let at = lines[line - 1].find(key).expect("an activity line") + key.len();
    let mut bytes = lines[line - 1].clone().into_bytes();
    bytes[at] ^= 0x20;
    lines[line - 1] = String::from_utf8(bytes).unwrap();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn verify_url(server: &Kanava) -> String {
    format!("https://127.0.0.1:{}/verify", server.mles.port())
}

/// A file for the driver's setFiles / dropFiles.
fn file(path: &Path) -> Value {
    json!({"path": path, "mimeType": "text/plain"})
}

impl Browser {
    /// Opens /verify as `page` and waits until its script and style are there.
    async fn open_verify(&mut self, page: &str, server: &Kanava, viewport: [u32; 2], scheme: &str) {
        let response = self
            .open_page(page, &verify_url(server), viewport, scheme)
            .await;
        assert_eq!(response["status"], 200, "{response}");
        self.wait_loaded(page).await;
    }

    async fn wait_loaded(&mut self, page: &str) {
        let loaded =
            "() => [...document.styleSheets].some((s) => s.href?.endsWith('/dist/verify.css')
            && s.cssRules.length > 0) && document.getElementById('files')";
        if self
            .try_wait(page, PAGE_WAIT, loaded, Value::Null)
            .await
            .is_err()
        {
            let reports = self.reports(page).await;
            panic!("{page} did not load: {reports}");
        }
    }

    /// Waits until `n` results have their verdicts; returns them, newest first.
    async fn results(&mut self, page: &str, n: usize) -> Vec<Value> {
        if let Err(error) = self.try_wait(page, VERDICT_WAIT, SETTLED, json!(n)).await {
            let shown = self.eval(page, RESULTS, Value::Null).await;
            panic!("{page}: {error}; shown: {shown:#}");
        }
        self.eval(page, RESULTS, Value::Null)
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Asserts that the page's result for a file is what `kanava verify` printed for it.
fn assert_same(shown: &Value, printed: &Printed, name: &str) {
    assert_eq!(shown["name"], name, "{shown:#}");
    assert_eq!(
        shown["status"],
        printed.verdict.as_str(),
        "{name}: {shown:#}"
    );
    assert_eq!(shown["keys"], json!(printed.keys), "{name}: {shown:#}");
    assert_eq!(
        shown["warnings"],
        json!(printed.warnings),
        "{name}: {shown:#}"
    );
    if let Some(lines) = printed.lines {
        assert_eq!(
            shown["marks"], lines,
            "{name}: one mark per line: {shown:#}"
        );
    }
    let failing: Vec<u64> = printed.line.into_iter().collect();
    assert_eq!(shown["failing"], json!(failing), "{name}: {shown:#}");
}

/// Asserts that since recordRequests the page only fetched its own files: no request has a
/// body, none but GET, none outside the page and its bundles.
async fn assert_nothing_uploaded(browser: &mut Browser, page: &str) {
    let requests = browser.call(json!({"cmd": "requests", "page": page})).await;
    for request in requests.as_array().unwrap() {
        let url = request["url"].as_str().unwrap();
        let path = url.split_once("127.0.0.1:").map_or(url, |(_, rest)| {
            rest.find('/').map_or(rest, |at| &rest[at..])
        });
        assert!(
            request["method"] == "GET"
                && request["bodyBytes"] == 0
                && (path == "/verify" || path.starts_with("/dist/")),
            "the page sent {request}"
        );
    }
}

#[tokio::test]
async fn logs_chosen_in_the_page_get_the_verdicts_keys_and_warnings_kanava_verify_prints() {
    let server = Start::new().start();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, text) in REAL_LOGS {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let rejection = dir.path().join("rejection.log");
    std::fs::write(&rejection, session_with_a_rejection().text()).unwrap();
    files.push(rejection);
    // The long kind of log whose chain breaks at its end: thousands of marks, a quick verdict.
    let long = dir.path().join("misordered-tail.log");
    std::fs::write(&long, synthetic::misordered_tail(3_021).text()).unwrap();
    files.push(long);
    let printed: Vec<Printed> = files.iter().map(|p| kanava_verify(p)).collect();
    assert!(printed[0].line.is_none() && printed[1].keys.len() == 2 && printed[2].line == Some(1));

    let mut browser = Browser::launch().await;
    browser
        .open_verify("verify", &server, [1280, 900], "light")
        .await;
    browser
        .call(json!({"cmd": "recordRequests", "page": "verify"}))
        .await;
    let chosen: Vec<Value> = files.iter().map(|p| file(p)).collect();
    browser
        .call(
            json!({"cmd": "setFiles", "page": "verify", "target": {"label": "Log files"},
            "files": chosen}),
        )
        .await;
    let shown = browser.results("verify", files.len()).await;
    for ((path, printed), shown) in files.iter().zip(&printed).zip(&shown) {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_same(shown, printed, name);
    }
    // The GnuPG signer the page found in the browser is the one kanava verify found with gpg.
    assert!(
        shown[1]["keys"][1]
            .as_str()
            .unwrap()
            .contains("GnuPG: Dev <dev@example.org>"),
        "{:#}",
        shown[1]
    );
    // The drawing: one mark per line by kind, the rejected Entered among them.
    let drawn = &shown[3];
    assert_eq!(drawn["kinds"]["rejected"], 1, "{drawn:#}");
    assert_eq!(drawn["kinds"]["control"], 4, "{drawn:#}");
    let kinds = &drawn["kinds"];
    let total: u64 = ["seen", "entered", "rejected", "control"]
        .iter()
        .map(|k| kinds[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, printed[3].lines.unwrap(), "{drawn:#}");
    assert!(
        drawn["drawing"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Chain of {total} lines")),
        "{drawn:#}"
    );
    let long = &shown[4];
    assert_eq!(long["marks"], 3_021, "{long:#}");
    assert_nothing_uploaded(&mut browser, "verify").await;
    browser.assert_clean("verify").await;
}

#[tokio::test]
async fn a_tampered_log_dropped_on_the_page_fails_at_the_line_kanava_and_debug_me_name() {
    let server = Start::new().start();
    let dir = tempfile::tempdir().unwrap();
    let honest = typing_session(30, Flavour::User).text();
    let tampered_path = dir.path().join("tampered.log");
    std::fs::write(&tampered_path, with_a_letter_changed(&honest, 17)).unwrap();
    let honest_path = dir.path().join("honest.log");
    std::fs::write(&honest_path, &honest).unwrap();
    let printed = kanava_verify(&tampered_path);
    let reference = debug_me_line(&tampered_path, dir.path());
    assert_eq!(
        reference,
        Some(17),
        "debug-me --verify on the tampered copy"
    );
    assert_eq!(printed.line, reference, "{printed:?}");
    assert_eq!(debug_me_line(&honest_path, dir.path()), None);
    // A name with a terminal escape, markup and a right-to-left override: shown as text.
    let hostile_name = "\u{1b}[31mred<img src=x>\u{202e}gol.log";

    let mut browser = Browser::launch().await;
    browser
        .open_verify("drop", &server, [1280, 900], "light")
        .await;
    browser
        .call(json!({"cmd": "recordRequests", "page": "drop"}))
        .await;
    let dropped = json!([
        {"path": tampered_path, "mimeType": "text/plain"},
        {"path": honest_path, "name": hostile_name, "mimeType": "text/plain"},
    ]);
    browser
        .call(
            json!({"cmd": "dropFiles", "page": "drop", "target": {"css": "#drop-zone"},
            "files": dropped}),
        )
        .await;
    let shown = browser.results("drop", 2).await;
    assert_same(&shown[0], &printed, "tampered.log");
    assert_eq!(shown[0]["marks"], honest.lines().count(), "{:#}", shown[0]);
    assert_same(
        &shown[1],
        &kanava_verify(&honest_path),
        "^[[31mred<img src=x>\u{fffd}gol.log",
    );
    let injected = browser
        .eval(
            "drop",
            "() => document.querySelectorAll('#results img').length",
            Value::Null,
        )
        .await;
    assert_eq!(injected, 0);
    let screenshot = web_dir().join("../docs/screenshots/debug-me-verify.png");
    browser
        .call(json!({"cmd": "screenshot", "page": "drop", "path": screenshot, "fullPage": true}))
        .await;

    // A file over the page's limit is refused at once, without being read.
    let refused = browser
        .eval(
            "drop",
            "() => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(65 * 1024 * 1024)], 'huge.log'));
                document.getElementById('drop-zone')
                    .dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true }));
                return true;
            }",
            Value::Null,
        )
        .await;
    assert_eq!(refused, true);
    let shown = browser.results("drop", 3).await;
    assert_eq!(
        shown[0]["status"],
        "refused: the file is 65 MiB, more than the 64 MiB this page verifies (run `kanava verify` on it)",
        "{:#}",
        shown[0]
    );
    assert_nothing_uploaded(&mut browser, "drop").await;
    browser.assert_clean("drop").await;
}

#[tokio::test]
async fn once_loaded_the_page_verifies_with_the_server_gone_gnupg_logs_included() {
    let server = Start::new().start();
    let dir = tempfile::tempdir().unwrap();
    let gpg_log: PathBuf = dir.path().join("gpg-controls.log");
    std::fs::write(&gpg_log, REAL_LOGS[1].1).unwrap();
    let tampered_path = dir.path().join("tampered.log");
    std::fs::write(
        &tampered_path,
        with_a_letter_changed(&typing_session(12, Flavour::User).text(), 9),
    )
    .unwrap();
    let printed = [kanava_verify(&gpg_log), kanava_verify(&tampered_path)];
    assert!(printed[0].keys[1].contains("GnuPG: "), "{printed:?}");

    let mut browser = Browser::launch().await;
    // A phone's width, in the dark.
    browser
        .open_verify("offline", &server, [360, 740], "dark")
        .await;
    let note = browser
        .try_wait(
            "offline",
            PAGE_WAIT,
            "() => { const note = document.getElementById('offline');
                return !note.hidden && note.textContent; }",
            Value::Null,
        )
        .await
        .unwrap();
    assert!(
        note.as_str().unwrap().starts_with("Ready to work offline"),
        "{note}"
    );
    // The network goes down and the server with it: the page still loads and verifies.
    browser
        .call(json!({"cmd": "offline", "page": "offline", "offline": true}))
        .await;
    assert!(server.terminate());
    let reloaded = browser
        .call(json!({"cmd": "reload", "page": "offline"}))
        .await;
    assert_eq!(reloaded["status"], 200, "{reloaded}");
    browser.wait_loaded("offline").await;
    // The keyboard reaches the file input first.
    browser.press("offline", "Tab").await;
    let focused = browser
        .eval(
            "offline",
            "() => document.activeElement?.labels?.[0]?.textContent",
            Value::Null,
        )
        .await;
    assert_eq!(focused, "Log files");
    let chosen = json!([file(&gpg_log), file(&tampered_path)]);
    browser
        .call(
            json!({"cmd": "setFiles", "page": "offline", "target": {"label": "Log files"},
            "files": chosen}),
        )
        .await;
    let shown = browser.results("offline", 2).await;
    assert_same(&shown[0], &printed[0], "gpg-controls.log");
    assert_same(&shown[1], &printed[1], "tampered.log");
    let fits = browser
        .eval(
            "offline",
            "() => document.scrollingElement.scrollWidth <= innerWidth",
            Value::Null,
        )
        .await;
    assert_eq!(fits, true, "the page is wider than a 360 px screen");
    browser.assert_clean("offline").await;
}

#[tokio::test]
async fn real_debug_me_logs_of_every_flavour_verify_in_the_page_and_a_tampered_one_fails_there() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let (roles, id, server_log) = real_session(&server, scratch.path(), "typed-by-dev", 3).await;

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (flavour, log) in [
        ("server", server_log),
        ("user", roles.log("user", false, &id)),
        ("developer", roles.log("dev", true, &id)),
    ] {
        let path = dir.path().join(format!("{flavour}.log"));
        std::fs::copy(&log, &path)
            .unwrap_or_else(|e| panic!("{flavour} log {}: {e}", log.display()));
        files.push(path);
    }
    let printed: Vec<Printed> = files.iter().map(|p| kanava_verify(p)).collect();
    assert!(
        printed[0].line.is_none() && printed[0].keys[1].contains("GnuPG: Dev <dev@example.org>"),
        "{printed:?}"
    );
    // The user's log with a letter of its last data changed: debug-me names the line too.
    let user_text = std::fs::read_to_string(&files[1]).unwrap();
    let (_, changed) = tampered(&user_text)
        .into_iter()
        .find(|(how, _)| how == "changed-byte")
        .unwrap();
    let tampered_path = dir.path().join("user-tampered.log");
    std::fs::write(&tampered_path, changed).unwrap();
    let tampered_printed = kanava_verify(&tampered_path);
    let reference = debug_me_line(&tampered_path, dir.path());
    assert!(
        reference.is_some(),
        "debug-me --verify accepts the tampered copy"
    );
    assert_eq!(tampered_printed.line, reference, "{tampered_printed:?}");

    let mut browser = Browser::launch().await;
    browser
        .open_verify("real", &server, [1280, 900], "light")
        .await;
    browser
        .call(json!({"cmd": "recordRequests", "page": "real"}))
        .await;
    let chosen: Vec<Value> = files.iter().map(|p| file(p)).collect();
    browser
        .call(
            json!({"cmd": "setFiles", "page": "real", "target": {"label": "Log files"},
            "files": chosen}),
        )
        .await;
    let shown = browser.results("real", files.len()).await;
    for ((path, printed), shown) in files.iter().zip(&printed).zip(&shown) {
        assert_same(shown, printed, path.file_name().unwrap().to_str().unwrap());
    }
    browser
        .call(
            json!({"cmd": "dropFiles", "page": "real", "target": {"css": "#drop-zone"},
            "files": [file(&tampered_path)]}),
        )
        .await;
    let shown = browser.results("real", files.len() + 1).await;
    assert_same(&shown[0], &tampered_printed, "user-tampered.log");
    assert_nothing_uploaded(&mut browser, "real").await;
    browser.assert_clean("real").await;
}
