//! The spec's behaviours from an outside client nobody here wrote: Python `websockets`, driven
//! by `tests/python/mles_spec.py`. The interpreter is `$KANAVA_TEST_PYTHON` (the test command
//! sets up a virtualenv with `websockets`), else `python3`; a missing module fails the test.

use std::process::Command;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_conforms() {
    let _heavy = heavy().await;
    let open = ["--max-connections-per-source", "1000"];
    let plain = Start::new().args(&open).start();
    let keyed = Start::new()
        .args(&open)
        .env("MLES_KEY", "secretkey")
        .start();
    let python = std::env::var("KANAVA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mles_spec.py");
    let (plain_url, keyed_url) = (
        format!("wss://127.0.0.1:{}", plain.mles.port()),
        format!("wss://127.0.0.1:{}", keyed.mles.port()),
    );
    let (plain_ca, keyed_ca) = (plain.cert_path(), keyed.cert_path());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .args(["--url", &plain_url, "--keyed-url", &keyed_url])
            .arg("--cafile")
            .arg(plain_ca)
            .arg("--keyed-cafile")
            .arg(keyed_ca)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python conformance failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 10,
        "{stdout}"
    );
}
