//! The command line, config file, environment, TLS from files, and the admin endpoints.

use std::process::Command;
use std::time::Duration;

use futures_util::SinkExt;
use sha2::{Digest, Sha256};

use crate::support::*;

#[tokio::test]
async fn environment_beats_the_config_file_and_the_banner_says_what_listens_where() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kanava.toml");
    std::fs::write(&config, "history-limit = 5\nping-interval = \"30s\"\n").unwrap();
    let server = Start::new()
        .args(&["--config", config.to_str().unwrap()])
        .env("KANAVA_HISTORY_LIMIT", "2")
        .start();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("mles") && l.contains("wss://"))
    );
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("admin") && l.contains("/metrics"))
    );
    let client = server.client();
    let ch = channel("env");
    let mut w = client.join("w", &ch).await;
    for i in 0..4 {
        w.send(text(&format!("m{i}"))).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 4.0).await;
    let mut probe = client.join("probe", &ch).await;
    let replay = drain_for(&mut probe, Duration::from_millis(500)).await;
    assert_eq!(
        replay,
        [text("m2"), text("m3")],
        "history limit 2 from the environment"
    );
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kanava.toml");
    std::fs::write(&config, "histroy-limit = 5\n").unwrap();
    for (args, expected) in [
        (vec!["--config", config.to_str().unwrap()], "histroy-limit"),
        (
            vec!["--max-frame", "2000", "--history-bytes", "1000"],
            "--max-frame",
        ),
        (vec!["--ping-interval", "ten"], "not a duration"),
        (
            vec!["--debug-me-from-email", "root@x\nBcc: y@z"],
            "not a plain mail address",
        ),
        (
            vec![
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ],
            "/nonexistent.pem",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .args([
                "--mles-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--ssh-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn tls_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = Start::new()
        .args(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .start();
    let client = Client::new(server.mles, &cert).with_admin(server.admin);
    let ch = channel("pem");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    a.send(text("over pem tls")).await.unwrap();
    assert_eq!(recv(&mut b).await, text("over pem tls"));
    assert!(
        !server.data.join("tls").exists(),
        "no self-signed certificate was made"
    );
}

#[tokio::test]
async fn the_self_signed_certificate_is_made_once_and_its_fingerprint_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Start::new().data(&data).start();
    let banner = first.stdout_lines.join("\n");
    let cert_pem = std::fs::read_to_string(first.cert_path()).unwrap();
    let der =
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_slice(
            cert_pem.as_bytes(),
        )
        .unwrap();
    let hex: Vec<String> = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let fingerprint = hex.join(":");
    assert!(
        banner.contains(&fingerprint),
        "{banner} lacks {fingerprint}"
    );
    assert!(banner.contains("generated now"));
    drop(first);
    let second = Start::new().data(&data).start();
    assert!(second.stdout_lines.join("\n").contains(&fingerprint));
    assert_eq!(
        std::fs::read_to_string(second.cert_path()).unwrap(),
        cert_pem
    );
    // The key is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("tls/self-signed.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
    // A client that verifies against it connects (ALPN http/1.1 only).
    let tls = second.client().tls().await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = Kanava::start();
    let (status, body) = server.admin_get("/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );
    let client = server.client();
    let ch = channel("metrics");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    let a_header = recv(&mut b).await.into_data().len() as f64;
    a.send(text("12345")).await.unwrap();
    recv(&mut b).await;
    server.wait_metric("kanava_frames_out_total", 1.0).await;
    assert_eq!(server.metric("kanava_connections").await, 2.0);
    assert_eq!(server.metric("kanava_members").await, 2.0);
    assert_eq!(server.metric("kanava_channels").await, 1.0);
    assert_eq!(server.metric("kanava_frames_in_total").await, 1.0);
    assert_eq!(server.metric("kanava_bytes_in_total").await, 5.0);
    // a's header counts as sent out only if it was still awaiting commit when b joined, so
    // that b got it live rather than in its replay.
    let out = server.metric("kanava_bytes_out_total").await;
    assert!(out == 5.0 || out == 5.0 + a_header, "bytes out {out}");
    let (_, metrics) = server.admin_get("/metrics").await;
    for name in [
        "kanava_queue_overflows_total",
        "kanava_store_commit_seconds",
        "kanava_connections_refused_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    let (status, _) = server.admin_get("/nope").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn bench_mles_reports_every_delivery_against_a_real_server() {
    let server = Start::new()
        .args(&["--max-connections-per-source", "1000"])
        .start();
    // Started only for its certificate: trusting it as well as the server's, and before it,
    // shows that every --ca file is trusted, not just the first.
    let other = Start::new().start();
    let url = format!("wss://127.0.0.1:{}/", server.mles.port());
    // The server twice, under two spellings, as if it were two nodes.
    let also = format!("wss://localhost:{}/", server.mles.port());
    let (cert, other_cert) = (server.cert_path(), other.cert_path());
    let report = bench_report(vec![
        "mles".into(),
        "--url".into(),
        (&url).into(),
        "--subscriber-url".into(),
        (&url).into(),
        "--subscriber-url".into(),
        (&also).into(),
        "--ca".into(),
        other_cert.into(),
        "--ca".into(),
        cert.into(),
        "--channels".into(),
        "2".into(),
        "--subscribers".into(),
        "5".into(),
        "--publishers".into(),
        "2".into(),
        "--rate".into(),
        "50".into(),
        "--duration".into(),
        "2s".into(),
        "--warmup".into(),
        "500ms".into(),
    ])
    .await;
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 300, "{report}"); // 2 channels x 2 publishers x 50/s x 2 s, about 400
    assert_eq!(report["expected_deliveries"], sent * 5, "{report}");
    assert_eq!(
        report["delivered"], report["expected_deliveries"],
        "{report}"
    );
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert_eq!(report["reordered"], 0, "{report}");
    assert!(
        report["latency_us"]["p99"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["url"], url, "{report}");
    // 2 channels of 5 subscribers, taken in turn by the two URLs: 5 on each, each owed half.
    let by_url = report["by_subscriber_url"].as_array().unwrap();
    assert_eq!(by_url.len(), 2, "{report}");
    for (entry, expected_url) in by_url.iter().zip([&url, &also]) {
        assert_eq!(entry["url"], *expected_url, "{report}");
        assert_eq!(entry["subscribers"], 5, "{report}");
        assert_eq!(entry["connected"], 5, "{report}");
        assert_eq!(entry["expected_deliveries"], sent * 5 / 2, "{report}");
        assert_eq!(entry["delivered"], entry["expected_deliveries"], "{report}");
        assert_eq!(entry["lost"], 0, "{report}");
        assert!(entry["latency_us"]["p99"].as_u64().unwrap() > 0, "{report}");
        assert!(
            entry["deliveries_per_sec"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    let samples = |v: &serde_json::Value| v["latency_us"]["samples"].as_u64().unwrap();
    assert_eq!(
        samples(&by_url[0]) + samples(&by_url[1]),
        samples(&report),
        "{report}"
    );
}
