//! A real browser (headless Chromium) as a Mles client: `new WebSocket(url, "mles-websocket")`
//! over TLS, as MlesTalk connects.

use std::process::{Child, Command, Stdio};

use futures_util::SinkExt;

use crate::support::*;

/// A headless Chromium showing one page. Killed on drop.
struct Chromium {
    child: Child,
    /// Its profile directory, removed after it is gone.
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn open(url: &str) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // The server's certificate is self-signed; the test trusts it, the browser is told to.
                "--ignore-certificate-errors",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is installed (Debian package chromium)");
        Chromium {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_websocket_joins_gets_the_replay_and_relays_both_frame_types() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let client = server.client();
    let ch = channel("browser");
    let mut rust = client.join("rust", &ch).await;
    rust.send(text("hello browser")).await.unwrap();
    rust.send(binary(&[0, 1, 2, 255])).await.unwrap();
    server.wait_metric("kanava_frames_in_total", 2.0).await;

    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/mles.html");
    let url = format!(
        "file://{page}#url=wss://127.0.0.1:{}/&channel={ch}&expect=3",
        server.mles.port()
    );
    let _browser = Chromium::open(&url);

    // The browser reports what it was replayed, then sends a binary frame of its own.
    let report = json(&recv(&mut rust).await);
    assert_eq!(report["protocol"], "mles-websocket");
    let rust_header = format!(r#"text:{{"uid":"rust","channel":"{ch}"}}"#);
    assert_eq!(
        report["got"],
        serde_json::json!([rust_header, "text:hello browser", "binary:0,1,2,255"])
    );
    assert_eq!(recv(&mut rust).await, binary(&[0xca, 0xfe, 0x00, 0xff]));
}
