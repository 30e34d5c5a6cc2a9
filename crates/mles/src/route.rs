//! Other WebSocket services on the Mles TLS listener, each under a path of its own, so that one
//! TLS port serves them all (kanava serves its debug-me sessions at `/debug-me`). A request for
//! any other path is a Mles connection, as the reference server accepts any path.
//!
//! A plain GET or HEAD (not an upgrade) is answered by the listener's [`Pages`], when the binary
//! gives it some (kanava serves its browser chat that way); without pages it gets 426.
//!
//! The listener answers the upgrade and hands the endpoint the stream itself, not a WebSocket
//! built on it, so that the endpoint can wrap the stream first (debug-me charges what it reads
//! to the memory budget) and choose its own WebSocket limits.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::upgrade::PageRequest;

/// A connection upgraded to a WebSocket under a routed path, before its first frame.
#[derive(Debug)]
pub struct RoutedConnection {
    /// The listener's TLS stream, the `101` already written.
    pub stream: TlsStream<TcpStream>,
    /// What the client sent after its request head: the start of its first frame (less than
    /// [`crate::upgrade::MAX_REQUEST_HEAD`] bytes).
    pub read_ahead: Vec<u8>,
}

/// A WebSocket service reached under a path of the Mles listener.
pub trait Endpoint: Send + Sync + 'static {
    /// Serves one upgraded connection (building its WebSocket) until it ends or `shutdown` is
    /// cancelled.
    fn serve(
        &self,
        connection: RoutedConnection,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// What answers plain HTTP requests (GET or HEAD without an upgrade) on the listener.
pub trait Pages: Send + Sync + 'static {
    /// The complete HTTP/1.1 response to `request` (head and, unless HEAD, body), sent before
    /// the connection is closed.
    fn respond(&self, request: &PageRequest) -> Vec<u8>;
}

/// The endpoints of the listener, by path, and its pages.
#[derive(Clone, Default)]
pub struct Routes {
    routes: Vec<(String, Arc<dyn Endpoint>)>,
    pages: Option<Arc<dyn Pages>>,
}

impl Routes {
    /// No endpoint besides Mles.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `endpoint` at `path` (e.g. `/debug-me`) and every path under it.
    pub fn route(mut self, path: &str, endpoint: Arc<dyn Endpoint>) -> Self {
        self.routes
            .push((path.trim_end_matches('/').to_owned(), endpoint));
        self
    }

    /// Answers plain GET and HEAD requests with `pages` instead of 426.
    pub fn pages(mut self, pages: Arc<dyn Pages>) -> Self {
        self.pages = Some(pages);
        self
    }

    /// The pages, if any.
    pub fn page_server(&self) -> Option<&Arc<dyn Pages>> {
        self.pages.as_ref()
    }

    /// The endpoint for a request target, if one is routed there.
    pub fn find(&self, target: &str) -> Option<&Arc<dyn Endpoint>> {
        self.routes
            .iter()
            .find(|(path, _)| under(path, target))
            .map(|(_, endpoint)| endpoint)
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field(
                "paths",
                &self.routes.iter().map(|(path, _)| path).collect::<Vec<_>>(),
            )
            .field("pages", &self.pages.is_some())
            .finish()
    }
}

/// Whether request target `target` (path and query) is `path` or under it.
fn under(path: &str, target: &str) -> bool {
    let target = target.split(['?', '#']).next().unwrap_or_default();
    target
        .strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_covers_its_path_and_below_only() {
        assert!(under("/debug-me", "/debug-me"));
        assert!(under("/debug-me", "/debug-me/"));
        assert!(under("/debug-me", "/debug-me/1b3c?x=1"));
        assert!(under("/debug-me", "/debug-me?x=1"));
        assert!(!under("/debug-me", "/debug-mex"));
        assert!(!under("/debug-me", "/"));
        assert!(!under("/debug-me", "/other/debug-me"));
        assert!(!under("/debug-me", ""));
    }
}
