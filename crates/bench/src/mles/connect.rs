//! Opening Mles v2 connections: TLS verified against a CA file (or not at all with
//! `--insecure`), the WebSocket upgrade with the `mles-websocket` subprotocol, and the header.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::{BenchError, MlesArgs};

/// An open Mles connection.
pub(crate) type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Longest time one connection may take from TCP connect to a sent header.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Read buffer of each connection; the default 128 KiB, allocated up front, would dominate the
/// memory of a run with thousands of subscribers.
const READ_BUFFER: usize = 16 * 1024;

/// Why one connection could not be opened; counted, never fatal to the run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("tcp: {0}")]
    Tcp(io::Error),
    #[error("tls: {0}")]
    Tls(io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("timed out after {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// One server URL to connect to, resolved, with the TLS settings shared by every connection.
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    /// The local address connections come from, if not the system's choice.
    source: Option<IpAddr>,
}

/// A Mles server to measure, as the benchmarks that need only one name it on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct MlesServerArgs {
    /// Server URL, e.g. wss://127.0.0.1:8443/.
    #[arg(long)]
    pub url: String,
    /// Accept any server certificate (for test servers with self-signed certificates).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// PEM file of CA certificates that the server certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
}

impl MlesServerArgs {
    /// The server, resolved, with the TLS settings asked for.
    pub(crate) async fn target(&self) -> Result<Target, BenchError> {
        Target::new(&self.url, trusting(self.insecure, &self.ca)?).await
    }
}

/// The TLS settings of every connection of a run: trust the `--ca` files, or anything with
/// `--insecure`.
pub(crate) fn connector(args: &MlesArgs) -> Result<TlsConnector, BenchError> {
    trusting(args.insecure, &args.ca)
}

/// The TLS settings of connections that trust the `ca` files, or anything if `insecure`.
pub(crate) fn trusting(insecure: bool, ca: &[PathBuf]) -> Result<TlsConnector, BenchError> {
    Ok(TlsConnector::from(Arc::new(client_config(insecure, ca)?)))
}

impl Target {
    /// Checks `url` and resolves its host once.
    pub(crate) async fn new(url: &str, connector: TlsConnector) -> Result<Self, BenchError> {
        let bad_url = |reason: &str| BenchError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let request = url
            .into_client_request()
            .map_err(|e| bad_url(&e.to_string()))?;
        let uri = request.uri();
        if uri.scheme_str() != Some("wss") {
            return Err(bad_url("the scheme must be wss"));
        }
        let host = uri.host().ok_or_else(|| bad_url("no host"))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addr = tokio::net::lookup_host((bare_host, port))
            .await
            .map_err(|source| BenchError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| bad_url("the host has no address"))?;
        let server_name = ServerName::try_from(bare_host)
            .map_err(|_| bad_url("the host is not a valid server name"))?
            .to_owned();
        Ok(Self {
            url: url.to_owned(),
            addr,
            server_name,
            connector,
            source: None,
        })
    }

    /// The same target, connected to from `source` (e.g. 127.0.0.2, to act as another client
    /// address on loopback).
    pub(crate) fn with_source(&self, source: IpAddr) -> Self {
        Self {
            url: self.url.clone(),
            addr: self.addr,
            server_name: self.server_name.clone(),
            connector: self.connector.clone(),
            source: Some(source),
        }
    }

    /// Opens one connection and joins `channel` as `uid`.
    pub(crate) async fn connect(&self, uid: &str, channel: &str) -> Result<Ws, ConnectError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now(uid, channel))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn connect_now(&self, uid: &str, channel: &str) -> Result<Ws, ConnectError> {
        let tcp = tcp_from(self.source, self.addr)
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(ConnectError::Tls)?;
        let mut request = self.url.as_str().into_client_request()?;
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mles-websocket"),
        );
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(None)
            .max_frame_size(None);
        let (mut ws, _response) = client_async_with_config(request, tls, Some(config)).await?;
        let header = serde_json::json!({ "uid": uid, "channel": channel }).to_string();
        ws.send(Message::Text(header.into())).await?;
        Ok(ws)
    }
}

/// A TCP connection to `addr`, from the local address `source` when given.
pub(crate) async fn tcp_from(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// The TLS client configuration: trust the certificates of the `ca` files, or anything if
/// `insecure`.
fn client_config(insecure: bool, ca: &[PathBuf]) -> Result<ClientConfig, BenchError> {
    let _ = aws_lc_rs::default_provider().install_default();
    let builder = ClientConfig::builder();
    let mut config = match (insecure, ca) {
        (true, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                aws_lc_rs::default_provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        (false, []) => return Err(BenchError::NoTrust),
        (false, files) => builder
            .with_root_certificates(read_roots(files)?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of PEM files, all as trust anchors; each file must hold at least one.
fn read_roots(files: &[PathBuf]) -> Result<RootCertStore, BenchError> {
    let mut roots = RootCertStore::empty();
    for path in files {
        let ca_error = |source| BenchError::Ca {
            path: path.clone(),
            source,
        };
        let before = roots.len();
        for cert in CertificateDer::pem_file_iter(path).map_err(ca_error)? {
            roots.add(cert.map_err(ca_error)?)?;
        }
        if roots.len() == before {
            return Err(BenchError::NoCertificates(path.clone()));
        }
    }
    Ok(roots)
}

/// Accepts any server certificate, while still checking that the server holds its key; what
/// `--insecure` asks for when benchmarking a server with a self-signed certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
