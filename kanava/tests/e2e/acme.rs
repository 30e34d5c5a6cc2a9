//! ACME (TLS-ALPN-01) against a real `pebble` started by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pebble ACME server with its own test CA. Killed on drop.
struct Pebble {
    child: Child,
    directory: String,
    /// The CA of pebble's own HTTPS API.
    api_ca: PathBuf,
    management_port: u16,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble; TLS-ALPN-01 validation connects to `localhost:tls_port`.
    async fn start(tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kanava test pebble API CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let api_key = KeyPair::generate().unwrap();
        let api_cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&api_key, &ca)
            .unwrap();
        let api_ca = dir.path().join("ca.pem");
        std::fs::write(&api_ca, ca.pem()).unwrap();
        std::fs::write(dir.path().join("api.pem"), api_cert.pem()).unwrap();
        std::fs::write(dir.path().join("api.key"), api_key.serialize_pem()).unwrap();
        let (listen, management, http) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("api.pem"),
            "privateKey": dir.path().join("api.key"),
            "httpPort": http,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble is installed (Debian package pebble)");
        let pebble = Pebble {
            child,
            directory: format!("https://localhost:{listen}/dir"),
            api_ca,
            management_port: management,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        while https_get(listen, "/dir", &pebble.api_ca).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                pebble.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pebble
    }

    /// The root that signs the certificates pebble issues (new at every pebble start).
    async fn issuing_root(&self) -> PathBuf {
        let pem = https_get(self.management_port, "/roots/0", &self.api_ca)
            .await
            .expect("pebble management API");
        let path = self.dir.path().join("issuer-root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over HTTPS trusting only `ca`; the body, or None if anything failed.
async fn https_get(port: u16, path: &str, ca: &Path) -> Option<String> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).ok()? {
        roots.add(cert.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").ok()?, tcp)
        .await
        .ok()?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[tokio::test]
async fn a_certificate_is_issued_by_acme_cached_and_reused() {
    let tls_port = free_port();
    let pebble = Pebble::start(tls_port).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The configured CA file must outlive pebble's own directory for the restart.
    let api_ca = dir.path().join("pebble-api-ca.pem");
    std::fs::copy(&pebble.api_ca, &api_ca).unwrap();
    let directory = pebble.directory.clone();
    let start = || {
        Start::new()
            .data(&data)
            .mles_listen(&format!("127.0.0.1:{tls_port}"))
            .args(&[
                "--acme-domain",
                "localhost",
                "--acme-email",
                "ops@example.org",
            ])
            .args(&["--acme-directory", &directory])
            .args(&["--acme-directory-ca", api_ca.to_str().unwrap()])
            .start()
    };
    let server = start();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("ACME certificate for localhost"))
    );
    let root = dir.path().join("issuer-root.pem");
    std::fs::copy(pebble.issuing_root().await, &root).unwrap();
    let client = Client::new(server.mles, &root).with_admin(server.admin);
    // Until issuance completes, the handshake fails verification; then it succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.try_tls().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no certificate issued; pebble log:\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ch = channel("acme");
    let mut a = client.join("a", &ch).await;
    let mut b = client.join("b", &ch).await;
    recv(&mut b).await;
    a.send(text("over an ACME certificate")).await.unwrap();
    assert_eq!(recv(&mut b).await, text("over an ACME certificate"));
    drop((a, b));

    // Restarted without pebble, the server serves the cached certificate at once.
    drop(server);
    drop(pebble);
    let server = start();
    let client = Client::new(server.mles, &root).with_admin(server.admin);
    client
        .try_tls()
        .await
        .expect("cached certificate served after restart");
}
