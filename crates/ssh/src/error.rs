//! The SSH transport's error type.

use std::path::PathBuf;

/// Why the SSH transport failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The SSH protocol layer failed.
    #[error("ssh: {0}")]
    Russh(#[from] russh::Error),
    /// A key could not be generated, read or written.
    #[error("ssh key: {0}")]
    Key(#[from] russh::keys::ssh_key::Error),
    /// A key file could not be loaded.
    #[error("ssh key: {0}")]
    KeyFile(#[from] russh::keys::Error),
    /// The host key's directory could not be made.
    #[error("host key {0}: {1}")]
    HostKeyIo(PathBuf, std::io::Error),
    /// The hub refused or failed.
    #[error(transparent)]
    Hub(#[from] kanava_hub::HubError),
}
