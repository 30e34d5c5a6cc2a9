//! The HTTP side of the WebSocket upgrade, read here so that a plain HTTP request (a browser,
//! curl) gets debug-me's 400 text rather than a handshake error, and so that a slow or huge
//! request head is bounded.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::charged::{Charged, ReadCharge};

/// Largest request head read.
pub const MAX_HEAD: usize = 8192;

/// The body debug-me sends to a plain HTTP request.
pub(crate) const NOT_A_WEB_SERVER: &str =
    "This is a debug-me server, it does not serve any html pages.";

/// A WebSocket over plain TCP, its reads charged to the memory budget.
pub(crate) type Ws = WebSocketStream<Charged<TcpStream>>;

/// What a request head is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A WebSocket upgrade with this `Sec-WebSocket-Key`, and the head's length.
    Upgrade(String, usize),
    /// Any other HTTP request: answered with 400.
    Plain,
    /// Not HTTP, or too large.
    Invalid,
}

/// Classifies a request head; `None` while it is incomplete (and under [`MAX_HEAD`]).
pub fn classify(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => None,
        Ok(httparse::Status::Partial) | Err(_) => Some(Head::Invalid),
        Ok(httparse::Status::Complete(len)) => {
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
            };
            let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
            match (upgrade, header("sec-websocket-key")) {
                (true, Some(key)) => Some(Head::Upgrade(key, len)),
                _ => Some(Head::Plain),
            }
        }
    }
}

/// Reads the request head and completes the upgrade with `config`, the WebSocket's reads
/// charged to `charge`; answers anything else and returns `None`.
pub(crate) async fn accept(
    mut stream: TcpStream,
    config: WebSocketConfig,
    charge: ReadCharge,
) -> Option<Ws> {
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = classify(&buf) {
            break head;
        }
    };
    match head {
        Head::Upgrade(key, len) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(response.as_bytes()).await.ok()?;
            let rest = buf.split_off(len);
            Some(
                WebSocketStream::from_partially_read(
                    Charged::new(stream, charge),
                    rest,
                    Role::Server,
                    Some(config),
                )
                .await,
            )
        }
        Head::Plain => {
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{NOT_A_WEB_SERVER}",
                NOT_A_WEB_SERVER.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            None
        }
        Head::Invalid => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Head::Plain)
        );
        let upgrade = b"GET /x HTTP/1.1\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: abc\r\n\r\n";
        assert_eq!(
            classify(upgrade),
            Some(Head::Upgrade("abc".into(), upgrade.len()))
        );
        assert_eq!(classify(b"\x16\x03\x01garbage"), Some(Head::Invalid));
        assert_eq!(classify(&[b'a'; MAX_HEAD]), Some(Head::Invalid));
    }
}
