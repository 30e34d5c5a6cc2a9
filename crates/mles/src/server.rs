//! The Mles listener: accepts TCP connections, enforces the connection caps, and runs one task
//! per connection until shutdown.

use std::sync::Arc;
use std::time::Duration;

use kanava_core::{Budgets, Sources};
use kanava_hub::Hub;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{self, Listener};
use crate::{Routes, ServerTls};

/// Refused connections answered at once (TLS, then 503 with the reason); past this many, a
/// refused connection is closed without a word. Bounds what refusing costs beyond the caps.
const MAX_REFUSALS_ANSWERING: usize = 64;

/// How long answering a refused connection may take.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

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
    let sources = Sources::new(
        Arc::clone(&budgets.connections),
        budgets.connections.max(),
        config.max_connections_per_source,
    );
    let listener_state = Arc::new(Listener {
        tls,
        hub,
        config,
        routes,
        memory: Arc::clone(&budgets.memory),
    });
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_ANSWERING));
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
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    let state = Arc::clone(&listener_state);
                    let deadline = REFUSAL_DEADLINE.min(state.config.handshake_timeout);
                    tracker.spawn(async move {
                        connection::refuse_busy(tcp, &state.tls, full.reason(), deadline).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (state, shutdown) = (Arc::clone(&listener_state), shutdown.clone());
        tracker.spawn(async move {
            metrics::gauge!("kanava_connections").increment(1.0);
            connection::run(tcp, peer, &state, shutdown).await;
            metrics::gauge!("kanava_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
