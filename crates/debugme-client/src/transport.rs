//! The client's end of the wire: a WebSocket to the server (plain or over TLS), the version
//! exchange and the mode, then protocol messages both ways. Everything the server sends is
//! decoded here, so that a server sending garbage becomes a clear [`ClientError`], never a
//! panic.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kanava_debugme::frame::{
    Frame, FrameError, MAX_FRAME_BYTES, Mode, decode_frame, encode_frame, negotiate,
};
use kanava_debugme::model::AnyMessage;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::address::ServerUrl;

/// The protocol versions this client speaks.
const VERSIONS: [&str; 1] = ["1"];

/// How long connecting, the TLS handshake and the version exchange may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection failed or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP or TLS could not connect.
    #[error("cannot connect to {server}: {error}")]
    Connect {
        /// The server.
        server: String,
        /// Why (in the message, not a source: a chain of sources would say it twice).
        error: std::io::Error,
    },
    /// The server did not open a WebSocket: it is no WebSocket server, or refused.
    #[error("cannot open a WebSocket to {server}: {error}")]
    Handshake {
        /// The server.
        server: String,
        /// Why (in the message only, as for `Connect`).
        error: tokio_tungstenite::tungstenite::Error,
    },
    /// The extra certificate file could not be read.
    #[error("cannot read the CA certificates in {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The WebSocket failed (the error in the message only: tungstenite's errors repeat their
    /// sources in their own messages).
    #[error("WebSocket: {0}")]
    WebSocket(tokio_tungstenite::tungstenite::Error),
    /// The server sent something that is not protocol 1.
    #[error("the server sent something that is not debug-me protocol 1: {0}")]
    Garbage(String),
    /// The server refused with an `E` frame (its text, made printable).
    #[error("the server said: {0}")]
    Refused(String),
    /// The server speaks no version we do.
    #[error("the server speaks protocol versions {0:?}, and this client only 1")]
    Version(Vec<String>),
    /// The server took too long.
    #[error("the server did not answer within {CONNECT_TIMEOUT:?}")]
    Timeout,
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(error)
    }
}

/// Which certificates a TLS server may present.
#[derive(Debug, Clone)]
pub struct Trust(Arc<rustls::ClientConfig>);

impl Trust {
    /// The web's root authorities, plus the certificates in `extra_ca` (PEM), such as a kanava
    /// server's self-signed one.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let error = |reason: String| ClientError::Ca {
                path: path.display().to_string(),
                reason,
            };
            let mut any = false;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| error(e.to_string()))?)
                    .map_err(|e| error(e.to_string()))?;
                any = true;
            }
            if !any {
                return Err(error("no certificate in it".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Garbage(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}

/// Any byte stream a WebSocket can run over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the server sent.
#[derive(Debug)]
pub enum Incoming {
    /// A protocol message.
    Message(AnyMessage),
    /// The session is over (`D`).
    Done,
}

/// A connection in a session.
pub struct Connection {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The session id the server gave.
    pub session_id: String,
}

/// Connects to `websocket` on `server`, exchanges versions and sends `mode`; returns once the
/// server has answered with the session id.
pub async fn open(
    server: &ServerUrl,
    websocket: &str,
    mode: Mode,
    trust: &Trust,
) -> Result<Connection, ClientError> {
    tokio::time::timeout(CONNECT_TIMEOUT, open_now(server, websocket, mode, trust))
        .await
        .map_err(|_| ClientError::Timeout)?
}

async fn open_now(
    server: &ServerUrl,
    websocket: &str,
    mode: Mode,
    trust: &Trust,
) -> Result<Connection, ClientError> {
    let connect_error = |error| ClientError::Connect {
        server: server.to_string(),
        error,
    };
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if server.tls {
        let name = ServerName::try_from(server.host.clone())
            .map_err(|e| connect_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&trust.0))
            .connect(name, tcp)
            .await
            .map_err(connect_error)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let config = WebSocketConfig::default()
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_message_size(Some(MAX_FRAME_BYTES));
    let (ws, _) = tokio_tungstenite::client_async_with_config(websocket, stream, Some(config))
        .await
        .map_err(|error| ClientError::Handshake {
            server: server.to_string(),
            error,
        })?;
    let mut connection = Connection {
        ws,
        session_id: String::new(),
    };
    match connection.frame().await? {
        Some(Frame::Version(theirs)) if negotiate(&VERSIONS, &theirs).is_some() => {}
        Some(Frame::Version(theirs)) => return Err(ClientError::Version(theirs)),
        other => return Err(unexpected("the server's versions", other)),
    }
    let ours = VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    connection.send_frame(&Frame::Version(ours)).await?;
    connection.send_frame(&Frame::Mode(mode)).await?;
    match connection.frame().await? {
        Some(Frame::SessionId(id)) => connection.session_id = id,
        other => return Err(unexpected("a session id", other)),
    }
    Ok(connection)
}

fn unexpected(wanted: &str, got: Option<Frame>) -> ClientError {
    match got {
        // The server's words reach a terminal: made printable.
        Some(Frame::Error(text)) => ClientError::Refused(kanava_core::sanitize(text.as_bytes())),
        None => ClientError::Garbage(format!("the connection closed before {wanted}")),
        Some(other) => ClientError::Garbage(format!("wanted {wanted}, got {}", describe(&other))),
    }
}

fn describe(frame: &Frame) -> &'static str {
    match frame {
        Frame::Version(_) => "a version list",
        Frame::Mode(_) => "a mode",
        Frame::SessionId(_) => "a session id",
        Frame::Message(_) => "a message",
        Frame::Done => "done",
        Frame::Error(_) => "an error",
    }
}

impl Connection {
    async fn send_frame(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.ws
            .send(WsMessage::binary(encode_frame(frame)))
            .await
            .map_err(ClientError::from)
    }

    /// The next frame; `None` when the connection closed. Pings are answered on the way.
    async fn frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(WsMessage::Close(_))) => return Ok(None),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(WsMessage::Binary(bytes))) => {
                    return decode_frame(&bytes).map(Some).map_err(garbage);
                }
                Some(Ok(WsMessage::Text(_))) => {
                    return Err(ClientError::Garbage("a text frame".into()));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a protocol message.
    pub async fn send(&mut self, message: AnyMessage) -> Result<(), ClientError> {
        self.send_frame(&Frame::Message(message)).await
    }

    /// Says we are done and closes.
    pub async fn close(mut self) {
        let _ = self.send_frame(&Frame::Done).await;
        let _ = self.ws.close(None).await;
    }

    /// The next message from the server; `Ok(None)` when the connection closed without `D`.
    /// Cancel-safe.
    pub async fn receive(&mut self) -> Result<Option<Incoming>, ClientError> {
        match self.frame().await? {
            None => Ok(None),
            Some(Frame::Message(message)) => Ok(Some(Incoming::Message(message))),
            Some(Frame::Done) => Ok(Some(Incoming::Done)),
            other => Err(unexpected("a message", other)),
        }
    }

    /// Sends a WebSocket ping, to keep the connection alive through idle periods.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.ws
            .send(WsMessage::Ping(Default::default()))
            .await
            .map_err(ClientError::from)
    }
}

fn garbage(error: FrameError) -> ClientError {
    ClientError::Garbage(error.to_string())
}
