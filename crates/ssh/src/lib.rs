//! SSH chat over russh: `ssh alice@host CMD` with trust on first use, in the same rooms as the
//! Mles channels (room `#x` is channel `x`).
//!
//! The first public key that logs in as a name owns it; another key offered for that name is
//! refused before any signature, so OpenSSH moves on to its next key. Exec commands (`say`,
//! `tail`, `who`, `rooms`) print plain sanitised lines and exit with a meaningful status; without
//! a command and without a terminal (`ssh -T`), a line session reads messages and writes events.
//! Membership and history go through the [`kanava_hub::Hub`], identities too.

mod binding;
mod chat;
pub mod clock;
pub mod command;
mod deadline;
mod error;
mod exec;
mod files;
pub mod host_key;
pub mod line;
mod line_mode;
pub mod ops;
mod output;
mod refusal;
mod server;
mod sessions;
pub mod tui;

pub use chat::slash;
pub use error::SshError;

use kanava_core::IdentityKey;
use russh::keys::{HashAlg, PublicKey};

/// A key's OpenSSH fingerprint (`SHA256:` and unpadded base64), as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `key` as a key of an identity, added now.
pub fn identity_key_of(key: &PublicKey) -> Result<IdentityKey, SshError> {
    Ok(IdentityKey {
        fingerprint: fingerprint(key),
        public_key: key.to_openssh()?,
        added_ms: now_ms(),
        pending: false,
    })
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A public key in OpenSSH format (`ssh-ed25519 AAAA… comment`) as a key of an identity.
pub fn identity_key(line: &str) -> Result<IdentityKey, SshError> {
    identity_key_of(&PublicKey::from_openssh(line.trim())?)
}
pub use files::ChatFiles;
pub use server::{SshConfig, SshServices, serve};

/// Describes the SSH listener's metrics and registers them at zero.
pub fn describe_metrics() {
    metrics::describe_gauge!("kanava_ssh_connections", "Open SSH connections");
    metrics::describe_gauge!(
        "kanava_ssh_sessions",
        "Open SSH session channels (exec commands, line sessions and full-screen chats)"
    );
    metrics::describe_counter!(
        "kanava_ssh_sessions_refused_total",
        "SSH session channels refused at a cap (per connection, or per user over all connections)"
    );
    metrics::describe_counter!(
        "kanava_ssh_input_limited_total",
        "SSH connections disconnected for sending faster than the input rate limit"
    );
    metrics::describe_counter!(
        "kanava_ssh_bindings_total",
        "SSH names bound on first use (new bindings, rate-limited per source)"
    );
    metrics::describe_counter!(
        "kanava_ssh_logins_refused_total",
        "SSH logins refused, by reason (bound, key_holds_name, bad_name, binding_rate, banned, \
         unavailable: the store failed); the client is told why in a banner"
    );
    metrics::describe_counter!(
        "kanava_ssh_names_expired_total",
        "SSH names freed for being unused longer than --ssh-name-expiry"
    );
    metrics::describe_counter!(
        "kanava_ssh_sessions_closed_total",
        "SSH sessions closed for their output, by reason: memory (a message or frame did not \
         fit --max-memory), stuck (the client read nothing for four keepalive intervals)"
    );
    metrics::describe_counter!(
        "kanava_ssh_frames_total",
        "Frames drawn for full-screen chats (each sends what changed on one screen)"
    );
    metrics::counter!("kanava_ssh_frames_total").increment(0);
    for reason in ["memory", "stuck"] {
        metrics::counter!("kanava_ssh_sessions_closed_total", "reason" => reason).increment(0);
    }
    metrics::counter!("kanava_ssh_bindings_total").increment(0);
    metrics::counter!("kanava_ssh_names_expired_total").increment(0);
    for reason in kanava_hub::LoginRefusal::LABELS {
        metrics::counter!("kanava_ssh_logins_refused_total", "reason" => reason).increment(0);
    }
    metrics::gauge!("kanava_ssh_connections").increment(0.0);
    metrics::gauge!("kanava_ssh_sessions").increment(0.0);
    metrics::counter!("kanava_ssh_input_limited_total").increment(0);
    for cap in ["connection", "user"] {
        metrics::counter!("kanava_ssh_sessions_refused_total", "cap" => cap).increment(0);
    }
}
