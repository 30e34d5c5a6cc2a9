//! Opening SSH chat sessions with the russh client: a fresh Ed25519 key and name per session,
//! public-key authentication, a terminal (pty-req) and a shell, which is the full-screen chat.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use russh::client::{self, Handle, Msg};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelReadHalf, ChannelWriteHalf};

use super::BenchError;
use super::screen::{COLS, ROWS, TERM};

/// Why one session could not be set up; counted, never fatal to the run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error("key generation: {0}")]
    Key(#[from] russh::keys::ssh_key::Error),
    #[error("public key refused")]
    Refused,
    #[error("the server ended the session before showing the chat")]
    Ended,
    #[error("timed out")]
    Timeout,
}

/// An open session: the connection, and the two halves of its terminal channel.
pub(crate) struct Opened {
    /// The connection; dropping it ends the session.
    pub(crate) handle: Handle<AcceptAnyHostKey>,
    /// What the server draws.
    pub(crate) output: ChannelReadHalf,
    /// Where keys are typed.
    pub(crate) keys: ChannelWriteHalf<Msg>,
}

/// The server to connect to, resolved once and shared by every session.
pub(crate) struct Target {
    addr: SocketAddr,
    config: Arc<client::Config>,
    host_key: Arc<OnceLock<String>>,
}

impl Target {
    /// Resolves `addr` (HOST:PORT).
    pub(crate) async fn new(addr: &str) -> Result<Self, BenchError> {
        let resolved = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| BenchError::Resolve {
                addr: addr.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| BenchError::InvalidArgs(format!("{addr} has no address")))?;
        let config = client::Config {
            nodelay: true,
            ..Default::default()
        };
        Ok(Self {
            addr: resolved,
            config: Arc::new(config),
            host_key: Arc::default(),
        })
    }

    /// The fingerprint of the server's host key (`SHA256:…`), once a session has connected.
    pub(crate) fn host_key(&self) -> Option<String> {
        self.host_key.get().cloned()
    }

    /// Logs in as `user` with a fresh key, and opens a terminal showing the chat.
    pub(crate) async fn open(&self, user: &str) -> Result<Opened, ConnectError> {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        let handler = AcceptAnyHostKey(Arc::clone(&self.host_key));
        let mut handle = client::connect(Arc::clone(&self.config), self.addr, handler).await?;
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await?;
        if !auth.success() {
            return Err(ConnectError::Refused);
        }
        let channel = handle.channel_open_session().await?;
        channel
            .request_pty(true, TERM, COLS.into(), ROWS.into(), 0, 0, &[])
            .await?;
        channel.request_shell(true).await?;
        let (output, keys) = channel.split();
        Ok(Opened {
            handle,
            output,
            keys,
        })
    }
}

/// Accepts whatever host key the server offers (this is a benchmark), remembering the first
/// fingerprint for the report.
pub(crate) struct AcceptAnyHostKey(Arc<OnceLock<String>>);

impl client::Handler for AcceptAnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.0
            .get_or_init(|| key.public_key().fingerprint(HashAlg::Sha256).to_string());
        Ok(true)
    }
}
