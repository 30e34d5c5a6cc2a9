//! Where a debug-me server is, and how a session is named. A user gives a server
//! (`http://host:8081/`, as debug-me does, or `ws://`, `wss://`, `https://`); a developer gets a
//! session URL, the server's URL with the session id as its last path component. `http://` and
//! `ws://` are plain WebSockets (all real debug-me clients can use); `https://` and `wss://`
//! are WebSockets over TLS, such as kanava's `/debug-me` path on its TLS listener.

use std::fmt;
use std::str::FromStr;

use tokio_tungstenite::tungstenite::http::Uri;

/// The port of a plain `http://` or `ws://` URL without one (debug-me's rule).
const PLAIN_PORT: u16 = 80;

/// The port of an `https://` or `wss://` URL without one.
const TLS_PORT: u16 = 443;

/// Why a URL cannot name a debug-me server or session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a URL at all.
    #[error("{0:?} is not a URL")]
    NotUrl(String),
    /// A scheme other than http, https, ws and wss.
    #[error("{0:?}: the URL must start with http://, https://, ws:// or wss://")]
    Scheme(String),
    /// No host.
    #[error("{0:?}: the URL has no host")]
    NoHost(String),
    /// A session URL whose last path component is empty.
    #[error("{0:?}: the URL does not end with a session id")]
    NoSession(String),
}

/// A debug-me server: host, port, whether TLS is used, and the path its sessions live under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// WebSocket over TLS (`https://`, `wss://`).
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The path sessions live under, without a trailing slash (`""` for the root).
    pub base: String,
}

impl FromStr for ServerUrl {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let uri: Uri = text
            .parse()
            .map_err(|_| AddressError::NotUrl(text.to_owned()))?;
        let tls = match uri.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            _ => return Err(AddressError::Scheme(text.to_owned())),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| AddressError::NoHost(text.to_owned()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            tls,
            host,
            port: uri
                .port_u16()
                .unwrap_or(if tls { TLS_PORT } else { PLAIN_PORT }),
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

impl ServerUrl {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL a user connects to.
    pub fn websocket(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}/", self.authority(), self.base)
    }

    /// The URL of session `id` on this server, to give to developers: `http://` for a plain
    /// server (what the real debug-me prints and takes), `wss://` over TLS.
    pub fn session(&self, id: &str) -> SessionUrl {
        SessionUrl {
            server: self.clone(),
            id: id.to_owned(),
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "http" };
        write!(f, "{scheme}://{}{}/", self.authority(), self.base)
    }
}

/// A session on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUrl {
    /// The server.
    pub server: ServerUrl,
    /// The session id.
    pub id: String,
}

impl FromStr for SessionUrl {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut server: ServerUrl = text.parse()?;
        let (base, id) = server.base.rsplit_once('/').unwrap_or(("", ""));
        if id.is_empty() {
            return Err(AddressError::NoSession(text.to_owned()));
        }
        let id = id.to_owned();
        server.base = base.to_owned();
        Ok(Self { server, id })
    }
}

impl SessionUrl {
    /// The WebSocket URL a developer connects to.
    pub fn websocket(&self) -> String {
        format!("{}{}", self.server.websocket(), self.id)
    }

    /// What a developer sends in `ConnectMode`: an `http` URL, since a debug-me server takes
    /// the session id from the last path component of a string starting with `http`.
    pub fn connect_mode(&self) -> String {
        let scheme = if self.server.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}{}/{}",
            self.server.authority(),
            self.server.base,
            self.id
        )
    }

    /// The session's watch page, where anyone with the link follows it in a browser (kanava
    /// serves it on its TLS listener, beside the WebSockets): `None` for a plain server, which
    /// serves no pages.
    pub fn watch_page(&self) -> Option<String> {
        self.server.tls.then(|| {
            format!(
                "https://{}{}/{}",
                self.server.authority(),
                self.server.base,
                self.id
            )
        })
    }
}

impl fmt::Display for SessionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.server, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_in_every_scheme() {
        let plain: ServerUrl = "http://127.0.0.1:8081/".parse().unwrap();
        assert_eq!(plain.websocket(), "ws://127.0.0.1:8081/");
        assert_eq!(plain.to_string(), "http://127.0.0.1:8081/");
        let bare: ServerUrl = "http://debug-me.example.org".parse().unwrap();
        assert_eq!(bare.port, 80);
        assert_eq!(bare.websocket(), "ws://debug-me.example.org:80/");
        let tls: ServerUrl = "wss://chat.example.org/debug-me".parse().unwrap();
        assert!(tls.tls);
        assert_eq!(tls.port, 443);
        assert_eq!(tls.websocket(), "wss://chat.example.org:443/debug-me/");
        let v6: ServerUrl = "https://[::1]:8443/debug-me/".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.websocket(), "wss://[::1]:8443/debug-me/");
        for bad in ["ftp://x/", "nonsense", "http:///path", ""] {
            assert!(bad.parse::<ServerUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_session_url_round_trips_and_names_its_session() {
        let id = "93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50";
        let plain: ServerUrl = "http://127.0.0.1:8081/".parse().unwrap();
        let session = plain.session(id);
        assert_eq!(session.to_string(), format!("http://127.0.0.1:8081/{id}"));
        assert_eq!(session.to_string().parse::<SessionUrl>().unwrap(), session);
        assert_eq!(session.websocket(), format!("ws://127.0.0.1:8081/{id}"));
        assert_eq!(
            session.connect_mode(),
            format!("http://127.0.0.1:8081/{id}")
        );
        let tls: ServerUrl = "wss://localhost:8443/debug-me".parse().unwrap();
        let session = tls.session(id);
        assert_eq!(
            session.to_string(),
            format!("wss://localhost:8443/debug-me/{id}")
        );
        assert_eq!(session.to_string().parse::<SessionUrl>().unwrap(), session);
        assert_eq!(
            session.connect_mode(),
            format!("https://localhost:8443/debug-me/{id}")
        );
        assert_eq!(
            session.watch_page(),
            Some(format!("https://localhost:8443/debug-me/{id}"))
        );
        assert_eq!(plain.session(id).watch_page(), None);
        assert_eq!(
            "http://x:1/".parse::<SessionUrl>(),
            Err(AddressError::NoSession("http://x:1/".into()))
        );
    }
}
