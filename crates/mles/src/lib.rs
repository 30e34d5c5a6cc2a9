//! Mles v2 over WebSocket/TLS.
//!
//! A client upgrades with subprotocol `mles-websocket`, sends one JSON [`Header`] naming its uid
//! and channel, and from then on every frame it sends goes to the other members of the channel,
//! byte for byte, with history replayed at join. The pure rules (header, auth token, upgrade
//! request) are separate from the connection tasks so that they can be tested and fuzzed alone.
//! Membership, durability and fan-out belong to the [`kanava_hub::Hub`].

pub mod auth;
mod connection;
pub mod header;
mod server;
mod sources;
mod tls;
pub mod upgrade;

pub use header::{Header, HeaderError};
pub use server::{MlesConfig, serve};
pub use tls::ServerTls;
