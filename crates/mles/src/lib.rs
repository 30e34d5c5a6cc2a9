//! Mles v2 over WebSocket/TLS.
//!
//! A client upgrades with subprotocol `mles-websocket`, sends one JSON [`Header`] naming its uid
//! and channel, and from then on every frame it sends goes to the other members of the channel,
//! byte for byte, with history replayed at join. The pure rules (header, auth token, upgrade
//! request) are separate from the connection tasks so that they can be tested and fuzzed alone.
//! Membership, durability and fan-out belong to the [`kanava_hub::Hub`]. Other WebSocket services
//! can share the listener under paths of their own ([`Routes`]).

pub mod auth;
mod connection;
pub mod header;
mod meter;
pub mod proof;
mod route;
mod server;
mod tls;
pub mod upgrade;

pub use header::{Header, HeaderError};
pub use route::{Endpoint, Pages, RoutedConnection, Routes};
pub use server::{MlesConfig, serve};
pub use tls::ServerTls;

/// Describes the Mles listener's metrics and registers them at zero, so that `/metrics` lists
/// every series from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!("kanava_connections", "Open Mles connections");
    metrics::describe_counter!(
        "kanava_handshake_failures_total",
        "Connections that failed or timed out in TLS or the upgrade"
    );
    metrics::describe_counter!(
        "kanava_upgrade_refusals_total",
        "HTTP requests refused instead of upgraded, by status"
    );
    metrics::describe_counter!(
        "kanava_header_refusals_total",
        "Connections closed for a bad, duplicate or unauthorised header"
    );
    metrics::describe_counter!(
        "kanava_memory_refusals_total",
        "Mles connections closed (1013) because what they buffered did not fit --max-memory, by consumer (receive, queue, replay, write)"
    );
    for consumer in ["receive", "queue", "replay", "write"] {
        metrics::counter!("kanava_memory_refusals_total", "consumer" => consumer).increment(0);
    }
    metrics::gauge!("kanava_connections").increment(0.0);
    metrics::counter!("kanava_handshake_failures_total").increment(0);
    metrics::counter!("kanava_header_refusals_total").increment(0);
}
