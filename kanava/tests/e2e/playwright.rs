//! Headless Chromium (Debian's) driven by Playwright through web/driver/driver.mjs, for the
//! tests of the pages the server serves: one driver process per test, its pages by name, each
//! in a browser context of its own. Failing to start fails the test, never skips it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long one driver command may take before the test fails (the driver's own waits time
/// out well before this, with a better message).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// How long a page may take to show what a test waits for: longer than support's `WAIT`, as a
/// page's work (rendering, WebCrypto) competes with the rest of the suite for the machine.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// How many Chromiums the tests of this module run at once: each is a few processes and the
/// machine is shared; more in parallel only makes every wait slower.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The repository's web/ directory (the page, its npm packages and the driver).
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// The Playwright driver running one headless Chromium, with its pages by name (each in its own
/// browser context: its own storage, so its own key). Killed on drop.
pub struct Browser {
    _child: Child,
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    _turn: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    /// Starts the driver; fails the test (never skips it) when Node.js, the npm packages or
    /// Chromium are missing.
    pub async fn launch() -> Browser {
        let turn = BROWSERS.acquire().await.unwrap();
        let web = web_dir();
        assert!(
            web.join("node_modules/playwright-core/package.json")
                .is_file(),
            "{}/node_modules/playwright-core is missing: run `npm ci --prefix web` (scripts/test does)",
            web.display()
        );
        assert!(
            Path::new("/usr/bin/chromium").is_file(),
            "/usr/bin/chromium is missing: install Debian's chromium (scripts/test does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(web.join("driver/driver.mjs"))
            .current_dir(&web)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node (Debian package nodejs) is installed");
        Browser {
            stdin: child.stdin.take().unwrap(),
            answers: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
            _turn: turn,
        }
    }

    /// Sends one command; its answer's value, or the driver's error.
    pub async fn try_call(&mut self, command: Value) -> Result<Value, String> {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(COMMAND_LIMIT, self.answers.next_line())
            .await
            .unwrap_or_else(|_| panic!("the driver did not answer {command}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the driver exited before answering {command}"));
        let answer: Value = serde_json::from_str(&answer).unwrap();
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or_default().to_owned())
        }
    }

    /// Sends one command; fails the test if the driver reports an error.
    pub async fn call(&mut self, command: Value) -> Value {
        let what = command.to_string();
        self.try_call(command)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Opens page `page` at `url` in a new browser context of its own; returns the response's
    /// status and headers.
    pub async fn open_page(
        &mut self,
        page: &str,
        url: &str,
        viewport: [u32; 2],
        scheme: &str,
    ) -> Value {
        self.call(
            json!({"cmd": "open", "page": page, "url": url, "viewport": viewport,
            "colorScheme": scheme}),
        )
        .await
    }

    /// Waits until the JavaScript function `expression` returns a truthy value for `arg`
    /// (within `limit`); that value, or the driver's error.
    pub async fn try_wait(
        &mut self,
        page: &str,
        limit: Duration,
        expression: &str,
        arg: Value,
    ) -> Result<Value, String> {
        self.try_call(
            json!({"cmd": "waitFor", "page": page, "expression": expression, "arg": arg,
            "timeout": limit.as_millis() as u64}),
        )
        .await
    }

    pub async fn fill(&mut self, page: &str, label: &str, value: &str) {
        self.call(json!({"cmd": "fill", "page": page, "target": {"label": label}, "value": value}))
            .await;
    }

    pub async fn press(&mut self, page: &str, key: &str) {
        self.call(json!({"cmd": "press", "page": page, "key": key}))
            .await;
    }

    pub async fn type_text(&mut self, page: &str, text: &str) {
        self.call(json!({"cmd": "type", "page": page, "text": text}))
            .await;
    }

    /// Calls the JavaScript function `expression` with `arg` in the page.
    pub async fn eval(&mut self, page: &str, expression: &str, arg: Value) -> Value {
        self.call(json!({"cmd": "evaluate", "page": page, "expression": expression, "arg": arg}))
            .await
    }

    pub async fn click_button(&mut self, page: &str, name: &str) {
        self.call(
            json!({"cmd": "click", "page": page, "target": {"role": "button", "name": name}}),
        )
        .await;
    }

    /// Console messages, page errors, CSP violations and dialogs since the page opened.
    pub async fn reports(&mut self, page: &str) -> Value {
        self.call(json!({"cmd": "reports", "page": page})).await
    }

    /// Asserts that the page reported no CSP violation, no uncaught error, no console error or
    /// warning, and opened no dialog.
    pub async fn assert_clean(&mut self, page: &str) {
        let reports = self.reports(page).await;
        assert_eq!(reports["violations"], json!([]), "{page}: CSP violations");
        assert_eq!(reports["errors"], json!([]), "{page}: uncaught errors");
        assert_eq!(reports["dialogs"], json!([]), "{page}: dialogs");
        let loud: Vec<&Value> = reports["console"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "error" || m["type"] == "warning")
            .collect();
        assert!(loud.is_empty(), "{page}: console errors: {loud:?}");
    }

    pub async fn screenshot(&mut self, page: &str, path: &Path) {
        self.call(json!({"cmd": "screenshot", "page": page, "path": path}))
            .await;
    }
}
