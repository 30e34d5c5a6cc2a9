//! The cluster store against real nats-server processes (Debian's 2.9.10): one server for most
//! tests, a three-node JetStream cluster for races and failover. One test binary, a module per
//! area.

mod accounts;
mod auth;
mod bus;
mod errors;
mod failover;
mod harness;
mod presence;
mod sessions;
mod shards;
mod startup;

/// Logs from the store while a test runs, when `RUST_LOG` asks for them.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
