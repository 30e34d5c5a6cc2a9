//! The chat itself, apart from how it is shown: slash commands, the directory of who is
//! connected, rate limits, and one user's session.

pub(crate) mod directory;
pub(crate) mod session;
pub mod slash;
pub(crate) mod text;

use bytes::Bytes;

/// What the SSH handler feeds a session.
pub(crate) enum Input {
    /// Bytes the client sent.
    Data(Bytes),
    /// The client sent EOF.
    Eof,
}
