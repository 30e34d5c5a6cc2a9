//! Opening debug-me connections over plain `ws://`: the WebSocket upgrade, the version
//! exchange, the mode (a user's `InitMode` or a watcher's `ConnectMode`) and the session id
//! the server answers with.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kanava_debugme::frame::{Frame, FrameError, Mode, decode_frame, encode_frame, negotiate};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::BenchError;

/// An open debug-me connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// The protocol versions the benchmark speaks.
const VERSIONS: [&str; 1] = ["1"];

/// Longest time one connection may take from TCP connect to the session id.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why one connection could not be opened or went wrong; counted, fatal only for the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("tcp: {0}")]
    Tcp(io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    #[error("refused by the server: {0}")]
    Refused(String),
    #[error("the server offers no common protocol version: {0:?}")]
    Version(Vec<String>),
    #[error("unexpected frame from the server: {0}")]
    Unexpected(&'static str),
    #[error("the server closed the connection")]
    Closed,
    #[error("timed out after {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// The server to connect to, resolved once.
pub(crate) struct Target {
    /// `host:port` as the URL spells it.
    authority: String,
    addr: SocketAddr,
    /// The local address connections come from, if not the system's choice.
    source: Option<std::net::IpAddr>,
}

impl Target {
    /// Checks that `url` is a `ws://` URL and resolves its host.
    pub(crate) async fn new(url: &str) -> Result<Self, BenchError> {
        let bad_url = |reason: &str| BenchError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let request = url
            .into_client_request()
            .map_err(|e| bad_url(&e.to_string()))?;
        let uri = request.uri();
        if uri.scheme_str() != Some("ws") {
            return Err(bad_url("the scheme must be ws (debug-me has no TLS)"));
        }
        let host = uri.host().ok_or_else(|| bad_url("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((bare_host, port))
            .await
            .map_err(|source| BenchError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| bad_url("the host has no address"))?;
        Ok(Self {
            authority: format!("{host}:{port}"),
            addr,
            source: None,
        })
    }

    /// The same server, connected to from `source` (e.g. 127.0.0.2, to act as another host).
    pub(crate) fn with_source(&self, source: std::net::IpAddr) -> Self {
        Self {
            authority: self.authority.clone(),
            addr: self.addr,
            source: Some(source),
        }
    }

    /// The URL a developer or watcher is given for session `id`, as debug-me prints it.
    pub(crate) fn session_url(&self, id: &str) -> String {
        format!("http://{}/{id}", self.authority)
    }

    /// Opens a connection at `path` in `mode`; returns it with the session id.
    pub(crate) async fn open(&self, path: &str, mode: Mode) -> Result<(Ws, String), ConnectError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.open_now(path, mode))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn open_now(&self, path: &str, mode: Mode) -> Result<(Ws, String), ConnectError> {
        let tcp = crate::mles::connect::tcp_from(self.source, self.addr)
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let request = format!("ws://{}/{path}", self.authority).into_client_request()?;
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (mut ws, _response) = client_async_with_config(request, tcp, Some(config)).await?;
        let ours: Vec<String> = VERSIONS.iter().map(|v| (*v).to_owned()).collect();
        send(&mut ws, &Frame::Version(ours)).await?;
        match next_frame(&mut ws).await? {
            Frame::Version(theirs) if negotiate(&VERSIONS, &theirs).is_some() => {}
            Frame::Version(theirs) => return Err(ConnectError::Version(theirs)),
            _ => return Err(ConnectError::Unexpected("expected V")),
        }
        send(&mut ws, &Frame::Mode(mode)).await?;
        match next_frame(&mut ws).await? {
            Frame::SessionId(id) => Ok((ws, id)),
            _ => Err(ConnectError::Unexpected("expected R")),
        }
    }
}

/// Sends one frame.
pub(crate) async fn send(ws: &mut Ws, frame: &Frame) -> Result<(), ConnectError> {
    ws.send(Message::binary(encode_frame(frame))).await?;
    Ok(())
}

/// The next frame from the server, pings and pongs skipped; an `E` frame is an error.
pub(crate) async fn next_frame(ws: &mut Ws) -> Result<Frame, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                return match decode_frame(&bytes)? {
                    Frame::Error(text) => Err(ConnectError::Refused(text)),
                    frame => Ok(frame),
                };
            }
            Some(Ok(Message::Close(_))) | None => return Err(ConnectError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
