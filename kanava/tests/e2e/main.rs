//! End-to-end tests: the real `kanava` binary on port 0, driven by real clients (a Rust
//! tokio-tungstenite client, raw TLS sockets, Python `websockets`, pebble for ACME).

mod support;

mod acme;
mod arrivals;
mod bad_input;
mod bench_ssh;
mod binding;
mod bots;
mod browser;
mod chat;
mod cli;
mod cluster;
mod cluster_debugme;
mod cluster_faults;
mod cluster_health;
mod cluster_presence;
mod debugme;
mod debugme_client;
mod debugme_client_bad;
mod debugme_limits;
mod debugme_server;
mod debugme_tools;
mod defects;
mod durability;
mod history_noise;
mod identity;
mod limits;
mod mles_limits;
mod nats;
mod netns;
mod operations;
mod package;
mod playwright;
mod protocol;
mod python;
mod ssh;
mod ssh_limits;
mod store_limits;
mod tui;
mod web_browser;
mod web_protocol;
mod web_verify;
mod web_verify_differential;
mod web_watch;
