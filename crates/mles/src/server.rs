//! The Mles listener: accepts TCP connections, enforces the connection caps, and runs one task
//! per connection until shutdown.

use std::sync::Arc;
use std::time::Duration;

use kanava_core::{Budgets, Sources};
use kanava_hub::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::{Routes, ServerTls};

/// Settings of the Mles listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlesConfig {
    /// Largest frame (and message) accepted; a larger one closes its sender with 1009.
    pub max_frame: usize,
    /// How long a connection may take for its TLS handshake and HTTP upgrade.
    pub handshake_timeout: Duration,
    /// How long an upgraded connection may take to send its header.
    pub header_timeout: Duration,
    /// Interval of the server's keepalive pings; a peer silent for three intervals is closed at
    /// the fourth, and one write may take at most four intervals.
    pub ping_interval: Duration,
    /// How long a message may take to arrive, from its first byte to its last fragment.
    pub message_timeout: Duration,
    /// The shared key of the auth token (`MLES_KEY`), if any.
    pub mles_key: Option<String>,
    /// Most connections open at once from one IPv4 address or IPv6 /64.
    pub max_connections_per_source: usize,
}

impl Default for MlesConfig {
    fn default() -> Self {
        Self {
            max_frame: 16 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(24),
            message_timeout: Duration::from_secs(60),
            mles_key: None,
            max_connections_per_source: 32,
        }
    }
}

/// Serves Mles, and the endpoints of `routes` at their paths, on `listener` until `shutdown` is
/// cancelled, then stops accepting and returns once every connection has ended. Members are
/// closed by [`Hub::shutdown`]; connections that have not joined yet close on `shutdown`
/// themselves.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    hub: Hub,
    config: MlesConfig,
    routes: Routes,
    budgets: Budgets,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    let routes = Arc::new(routes);
    let sources = Sources::new(
        Arc::clone(&budgets.connections),
        budgets.connections.max(),
        config.max_connections_per_source,
    );
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match sources.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                metrics::counter!("kanava_connections_refused_total", "listener" => "mles", "reason" => full.label())
                    .increment(1);
                tracing::debug!(%peer, ?full, "connection refused: cap reached");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tls, hub, config, routes, memory, shutdown) = (
            tls.clone(),
            hub.clone(),
            Arc::clone(&config),
            Arc::clone(&routes),
            Arc::clone(&budgets.memory),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            metrics::gauge!("kanava_connections").increment(1.0);
            connection::run(tcp, peer, tls, hub, &config, &routes, &memory, shutdown).await;
            metrics::gauge!("kanava_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
