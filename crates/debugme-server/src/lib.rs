//! A debug-me protocol 1 server, so that the real `debug-me` program works against kanava: a
//! user opens a session, developers, watchers and downloaders join it by URL, everything is
//! relayed as the protocol says and written, before it is relayed, to a log in debug-me's own
//! format (one file per session, the server flavour). Plain `ws://`, because real clients
//! cannot use TLS.
//!
//! Each session is one task that owns its log: messages from the user and developers reach it
//! through a queue, so the log order is the relay order; a developer joining gets the log so
//! far and then the live messages, atomically, without pausing anyone.

mod connection;
pub mod handshake;
mod session;

pub use connection::{DebugMeConfig, serve};
pub use session::session_log_path;
