//! kanava's browser chat, server side.
//!
//! The front end (`web/` in the repository) is embedded in the binary and served by
//! [`FrontEnd`] for every plain GET on the Mles TLS listener, so that opening
//! `https://HOST:8443/` in a browser shows the chat. The chat itself talks the kanava web
//! protocol (docs/web-protocol.md) over a WebSocket at `/kanava` on the same listener ([`Web`]):
//! a web user logs in with a key like an SSH user, and is an ordinary member of the rooms it
//! opens.

mod events;
mod outgoing;
mod pages;
pub mod proof;
pub mod protocol;
mod session;
mod web;

pub use pages::{CONTENT_SECURITY_POLICY, FrontEnd};
pub use session::FRAME_OVERHEAD;
pub use web::{PATH, Web, WebConfig};

/// Describes the web endpoint's metrics and registers them at zero, so that `/metrics` lists
/// every series from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "kanava_web_sessions",
        "Open connections of the browser chat (/kanava)"
    );
    metrics::describe_counter!(
        "kanava_web_requests_total",
        "Requests of the browser chat, by type (page: a page of the front end)"
    );
    metrics::describe_counter!(
        "kanava_web_refusals_total",
        "Requests, logins and connections of the browser chat refused, by code"
    );
    metrics::gauge!("kanava_web_sessions").increment(0.0);
    for kind in protocol::Request::LABELS.iter().chain(&["page"]) {
        metrics::counter!("kanava_web_requests_total", "type" => *kind).increment(0);
    }
    for code in ["bad_request", "rate", "too_large", "slow_reader", "bound"] {
        metrics::counter!("kanava_web_refusals_total", "code" => code).increment(0);
    }
}
