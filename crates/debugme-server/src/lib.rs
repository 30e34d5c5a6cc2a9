//! A debug-me protocol 1 server, so that the real `debug-me` program works against kanava: a
//! user opens a session, developers, watchers and downloaders join it by URL, everything is
//! relayed as the protocol says and written, before it is relayed, to a log in debug-me's own
//! format (one file per session, the server flavour), and mailed to the user at the end when
//! the operator wants it. Plain `ws://` on a listener of its own, because real clients cannot use
//! TLS; kanava's own clients reach the same sessions over TLS through another listener.
//!
//! Each session is one task that owns its log: messages from the user and developers reach it
//! through a queue, so the log order is the relay order; a developer joining gets the log so
//! far (read back from the file) and then the live messages, atomically, without pausing
//! anyone. Nothing a client sends is kept in memory beyond bounded queues; connections, memory,
//! disk and new sessions are all bounded per source and in total.

mod charged;
mod connection;
pub mod handshake;
pub mod mail;
mod rate;
mod session;

pub use connection::{DebugMeConfig, DebugMeServer, SESSION_BURST};
pub use mail::MailSettings;
pub use session::{
    MAX_LOG_LINE, complete_length, complete_length_of, read_log_frames, session_log_path,
    truncate_torn_tail,
};

/// Describes the debug-me server's metrics and registers them at zero, so that `/metrics` lists
/// every series from the start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "kanava_debugme_sessions_refused_total",
        "New debug-me sessions refused, by reason (rate: too many from one address)"
    );
    metrics::counter!("kanava_debugme_sessions_refused_total", "reason" => "rate").increment(0);
    metrics::describe_counter!(
        "kanava_debugme_sessions_ended_total",
        "debug-me sessions the server ended, by reason (max-log: --debug-me-max-log reached, disk: the disk budget refused the log, write: the log could not be written)"
    );
    for reason in ["max-log", "disk", "write"] {
        metrics::counter!("kanava_debugme_sessions_ended_total", "reason" => reason).increment(0);
    }
    metrics::describe_counter!(
        "kanava_debugme_clients_closed_total",
        "debug-me developers and watchers closed by the server, by reason (memory: furthest behind when the memory budget ran out, slow: their queue was full)"
    );
    for reason in ["memory", "slow"] {
        metrics::counter!("kanava_debugme_clients_closed_total", "reason" => reason).increment(0);
    }
}
