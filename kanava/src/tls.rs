//! Where the Mles listener's certificate comes from: PEM files, ACME (TLS-ALPN-01, so no second
//! port is needed), or a self-signed certificate generated once into the data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use kanava_mles::ServerTls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, is_tls_alpn_challenge};
use sha2::{Digest, Sha256};

/// The ALPN list of the Mles listener: HTTP/1.1 only (WebSocket over HTTP/2 is not Mles).
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// How to obtain the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A certificate chain and key in PEM files.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// Certificates from an ACME CA.
    Acme(AcmeSettings),
    /// A self-signed certificate kept in the data directory.
    SelfSigned,
}

/// ACME settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Domains to certify.
    pub domains: Vec<String>,
    /// Contact address for the account, if any.
    pub email: Option<String>,
    /// The directory URL (Let's Encrypt production by default).
    pub directory: String,
    /// An extra root to trust for the directory's own HTTPS (a private CA such as pebble).
    pub directory_ca: Option<PathBuf>,
}

/// The listener's TLS, and a line for the startup banner saying where it came from.
pub struct Tls {
    /// What the listener hands each connection.
    pub server: ServerTls,
    /// Human-readable description, including a fingerprint where one is useful.
    pub summary: String,
    /// The certificate and key files being served, when they come from files: a reload reads
    /// them again.
    pub files: Option<CertificateFiles>,
}

/// The configuration built from the certificate and key files, which every new connection
/// uses; a reload replaces it without touching the connections already made.
#[derive(Clone)]
pub struct CertificateFiles(Arc<RwLock<Arc<ServerConfig>>>);

impl CertificateFiles {
    /// Reads `cert` and `key` and serves them to every new connection from now on; says what
    /// is served. On an error the files served before stay.
    pub fn reload(&self, cert: &Path, key: &Path) -> anyhow::Result<String> {
        let (chain, key_der) = read_pem(cert, key)?;
        let summary = certificate_summary(cert, &chain);
        let config = server_config(chain, key_der)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(summary)
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
}

fn certificate_summary(cert: &Path, chain: &[CertificateDer<'_>]) -> String {
    format!(
        "certificate {} (SHA-256 {})",
        cert.display(),
        fingerprint(&chain[0])
    )
}

/// Builds the listener's TLS from `source`; ACME issuance continues in a background task.
pub async fn setup(source: &TlsSource, data_dir: &Path) -> anyhow::Result<Tls> {
    match source {
        TlsSource::Files { cert, key } => {
            let (chain, key) = read_pem(cert, key)?;
            let summary = certificate_summary(cert, &chain);
            let files = CertificateFiles(Arc::new(RwLock::new(server_config(chain, key)?)));
            let serving = files.clone();
            Ok(Tls {
                server: ServerTls::per_hello(move |_| serving.current()),
                summary,
                files: Some(files),
            })
        }
        TlsSource::SelfSigned => self_signed(&data_dir.join("tls")),
        TlsSource::Acme(acme) => acme_tls(acme, &data_dir.join("acme")).await,
    }
}

/// Reads and pairs a certificate chain and key as the listener would; says what was found.
pub fn check_files(cert: &Path, key: &Path) -> anyhow::Result<String> {
    let (chain, key) = read_pem(cert, key)?;
    let summary = format!(
        "tls: {}, {} in the chain",
        certificate_summary(cert, &chain),
        chain.len()
    );
    server_config(chain, key)?;
    Ok(summary)
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    Ok((chain, key))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not form a usable pair")?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let hex = base16ct::upper::encode_string(&Sha256::digest(cert.as_ref()));
    hex.as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap_or("??"))
        .collect::<Vec<_>>()
        .join(":")
}

fn self_signed(dir: &Path) -> anyhow::Result<Tls> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    let generated = !cert_path.exists();
    if generated {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(host) = hostname() {
            names.push(host);
        }
        let certified =
            rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
        write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, certified.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
    }
    let (chain, key) = read_pem(&cert_path, &key_path)?;
    let fingerprint = fingerprint(&chain[0]);
    Ok(Tls {
        server: ServerTls::fixed(server_config(chain, key)?),
        summary: format!(
            "self-signed certificate {} ({}), SHA-256 fingerprint {fingerprint}",
            cert_path.display(),
            if generated {
                "generated now"
            } else {
                "kept from an earlier start"
            },
        ),
        files: None,
    })
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "localhost").then(|| name.to_owned())
}

/// Writes a private key readable only by its owner.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// How long start-up waits for the ACME state's first event: loading a cached certificate is a
/// local read, so a restart serves it at once instead of refusing handshakes until it is loaded.
const ACME_CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn log_acme_event<E: std::fmt::Display>(event: Result<rustls_acme::EventOk, E>) {
    match event {
        Ok(ok) => tracing::info!(event = ?ok, "acme"),
        Err(error) => tracing::error!(%error, "acme"),
    }
}

async fn acme_tls(acme: &AcmeSettings, cache_dir: &Path) -> anyhow::Result<Tls> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let config = match &acme.directory_ca {
        None => AcmeConfig::new(&acme.domains),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading ACME directory CA {}", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing {}", ca.display()))?)
                    .context("adding the ACME directory CA")?;
            }
            let client = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            AcmeConfig::new_with_client_config(&acme.domains, Arc::new(client))
        }
    };
    let config = config
        .contact(acme.email.iter().map(|e| format!("mailto:{e}")))
        .directory(&acme.directory)
        .cache(DirCache::new(cache_dir.to_owned()));
    let mut state = config.state();
    let mut default = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(state.resolver());
    default.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let default = Arc::new(default);
    let challenge = state.challenge_rustls_config();
    match tokio::time::timeout(ACME_CACHE_WAIT, state.next()).await {
        Ok(Some(event)) => log_acme_event(event),
        Ok(None) => {}
        Err(_) => tracing::info!("acme: no cached certificate yet; ordering one"),
    }
    tokio::spawn(async move {
        while let Some(event) = state.next().await {
            log_acme_event(event);
        }
    });
    Ok(Tls {
        server: ServerTls::per_hello(move |hello| {
            if is_tls_alpn_challenge(hello) {
                Arc::clone(&challenge)
            } else {
                Arc::clone(&default)
            }
        }),
        summary: format!(
            "ACME certificate for {} from {} (cached in {})",
            acme.domains.join(", "),
            acme.directory,
            cache_dir.display()
        ),
        files: None,
    })
}
