//! How the Mles listener gets its TLS configuration: one fixed configuration, or one chosen per
//! ClientHello (ACME's TLS-ALPN-01 challenges need their own).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ClientHello;

type Chooser = dyn Fn(&ClientHello<'_>) -> Arc<ServerConfig> + Send + Sync;

/// The TLS side of the Mles listener. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls(Arc<Chooser>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Every connection uses `config`.
    pub fn fixed(config: Arc<ServerConfig>) -> Self {
        Self(Arc::new(move |_| Arc::clone(&config)))
    }

    /// Each connection uses the configuration `choose` returns for its ClientHello.
    pub fn per_hello(
        choose: impl Fn(&ClientHello<'_>) -> Arc<ServerConfig> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(choose))
    }

    pub(crate) fn choose(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        (self.0)(hello)
    }
}
