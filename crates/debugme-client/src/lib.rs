//! debug-me protocol 1 clients, the I/O around the protocol crate's role machines: the user
//! sharing a terminal (`kanava share`), the developer typing into it (`kanava connect`), and
//! those who only watch or download. They talk to a real `debug-me --server` as well as to
//! kanava's, over plain `ws://` or over TLS.

pub mod address;
pub mod connect;
pub mod console;
pub mod control;
pub mod follow;
pub mod keys;
pub mod pty;
pub mod session_log;
pub mod share;
pub mod terminal;
pub mod transport;

pub use address::{AddressError, ServerUrl, SessionUrl};
pub use transport::{ClientError, Connection, Incoming, Trust};
