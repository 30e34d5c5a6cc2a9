//! `kanava bench ssh` against the real server: real SSH sessions with terminals, whose
//! emulated screens must show every message.

use crate::support::*;

#[tokio::test]
async fn bench_ssh_sees_every_message_on_every_screen_of_a_real_server() {
    let _heavy = heavy().await;
    let server = Start::new()
        .args(&["--ssh-max-connections-per-source", "100"])
        .start();
    let addr = format!("127.0.0.1:{}", server.ssh_port);
    let pid = server.pid().to_string();
    let report = bench_report(
        [
            "ssh",
            "--addr",
            &addr,
            "--sessions",
            "5",
            "--rate",
            "5",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
            "--room",
            "#bench-e2e",
            "--server-pid",
            &pid,
        ]
        .map(Into::into)
        .to_vec(),
    )
    .await;
    assert_eq!(report["sessions"], 5, "{report}");
    assert_eq!(report["connected"], 5, "{report}");
    assert_eq!(report["connect_failures"], 0, "{report}");
    assert_eq!(report["room"], "bench-e2e", "{report}");
    // 5 messages a second for 3 s, each owed to the 4 screens other than its sender's.
    assert_eq!(report["sent"], 15, "{report}");
    assert_eq!(report["send_errors"], 0, "{report}");
    assert_eq!(report["expected_screens"], 15 * 4, "{report}");
    assert_eq!(report["seen_screens"], 15 * 4, "{report}");
    assert_eq!(report["lost_screens"], 0, "{report}");
    assert_eq!(report["lost_messages"], 0, "{report}");
    assert_eq!(report["disconnects"], 0, "{report}");
    assert!(
        report["last_screen_us"]["samples"].as_u64().unwrap() > 0,
        "{report}"
    );
    // The host key the bench saw is the one the server announced.
    let host_key = report["host_key"].as_str().unwrap();
    assert!(host_key.starts_with("SHA256:"), "{report}");
    assert!(
        server.stdout_lines.iter().any(|l| l.contains(host_key)),
        "{host_key} not in {:?}",
        server.stdout_lines
    );
    assert_eq!(report["server_rss"]["pid"], server.pid(), "{report}");
    assert!(
        report["server_rss"]["before_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
}
