//! kanava's browser chat, server side.
//!
//! The front end (`web/` in the repository) is embedded in the binary and served by
//! [`FrontEnd`] for every plain GET on the Mles TLS listener, so that opening
//! `https://HOST:8443/` in a browser shows the chat. The chat itself talks the kanava web
//! protocol (docs/web-protocol.md) over a WebSocket at `/kanava` on the same listener.

mod pages;

pub use pages::{CONTENT_SECURITY_POLICY, FrontEnd};
