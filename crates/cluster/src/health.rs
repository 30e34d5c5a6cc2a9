//! Whether this node's writes reach the cluster, and moving to another NATS server when they
//! stop doing so through the one it is on.
//!
//! A TCP link that is up says little: the server at its end may be cut off from the others, or
//! its streams may have lost their leaders. So each node publishes a canary, a few bytes on its
//! own subject of stream [`HEALTH_STREAM`] (one message kept per subject), every
//! [`CANARY_INTERVAL`], and waits [`CANARY_TIMEOUT`] for JetStream's acknowledgement. The node is
//! writable while a canary was acknowledged within [`WRITE_STALE`] (see
//! [`Link::health`](crate::setup::Link::health)).
//!
//! After [`FAILURES_BEFORE_PROBE`] canaries in a row fail while the link says it is connected,
//! the node probes every server it knows: a fresh connection to each and a canary through it,
//! all at once, each step within [`PROBE_TIMEOUT`]. If the server it is on passes, the failure
//! was passing and nothing moves; if only others pass, the node reconnects to the first that
//! did; if none passes and the one it is on does not even answer a handshake (it froze), to the
//! first that answers; if none passes and the one it is on answers (the cluster lost its
//! quorum), nothing moves: moving would only add a reconnection to the outage.
//!
//! When the link itself drops (the client pings every [`PING_INTERVAL`] while the server is
//! silent, and ends the link when a third ping would be outstanding), the same probe picks the
//! server to reconnect to: the NATS client's own choice is random, and could wait on a frozen
//! server (which accepts TCP connections and never answers) for the whole connect timeout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::{ConnectOptions, ReconnectToServer, Server, ServerAddr, ServerInfo};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::setup::Link;

/// The stream of canaries: one subject per node, one message kept per subject.
pub(crate) const HEALTH_STREAM: &str = "KANAVA_HEALTH";
/// The canary subjects' prefix: `kanava.health.<node>`.
pub(crate) const HEALTH_PREFIX: &str = "kanava.health.";
/// How long a node's canary is kept once the node stops publishing.
pub(crate) const CANARY_MAX_AGE: Duration = Duration::from_secs(60);
/// How often a node publishes its canary.
const CANARY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a canary may wait for its acknowledgement: an unloaded cluster answers in
/// milliseconds, a loaded one in tens.
const CANARY_TIMEOUT: Duration = Duration::from_secs(1);
/// How old the last acknowledged write may be while the node still calls itself writable.
pub(crate) const WRITE_STALE: Duration = Duration::from_secs(3);
/// Canaries failed in a row, the link up, before the node looks for a better server.
const FAILURES_BEFORE_PROBE: u32 = 3;
/// How long each step of a probe of a server (the handshake; the canary's acknowledgement)
/// may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often NATS pings the server when nothing else arrives from it.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(2);

/// The canary subject of `node`.
pub(crate) fn canary_subject(node: &str) -> String {
    format!("{HEALTH_PREFIX}{node}")
}

/// What the canaries learnt.
pub(crate) struct Writes {
    state: Mutex<WriteState>,
}

struct WriteState {
    /// When the last canary was acknowledged (or the node connected).
    last_ack: Instant,
    /// Why the last canary failed, if it did.
    last_failure: Option<String>,
    /// Canaries failed in a row.
    failures: u32,
}

impl Default for Writes {
    fn default() -> Self {
        Writes {
            state: Mutex::new(WriteState {
                last_ack: Instant::now(),
                last_failure: None,
                failures: 0,
            }),
        }
    }
}

/// How the writes fare now, for `/healthz`.
pub(crate) struct WriteReport {
    /// Time since the last acknowledged write.
    pub(crate) since_ack: Duration,
    /// Why the last canary failed, and how many failed in a row.
    pub(crate) failure: Option<(String, u32)>,
}

impl WriteReport {
    /// Whether a write was acknowledged recently enough.
    pub(crate) fn writable(&self) -> bool {
        self.since_ack <= WRITE_STALE
    }
}

impl Writes {
    /// The writes' state now.
    pub(crate) fn report(&self) -> WriteReport {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        WriteReport {
            since_ack: state.last_ack.elapsed(),
            failure: state
                .last_failure
                .clone()
                .map(|reason| (reason, state.failures)),
        }
    }

    /// Records an acknowledged write: a canary's, or any frame's the publisher stored.
    pub(crate) fn acknowledged(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.failures > 0 {
            tracing::info!(
                after = state.failures,
                "cluster writes acknowledged again after failed canaries"
            );
        }
        state.last_ack = Instant::now();
        state.last_failure = None;
        state.failures = 0;
    }

    /// Records a failed canary; returns how many failed in a row.
    fn failed(&self, reason: String) -> u32 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.failures = state.failures.saturating_add(1);
        state.last_failure = Some(reason);
        state.failures
    }

    /// Starts counting failures afresh (after a probe, or while the link is down).
    fn restart_count(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.failures = 0;
    }
}

/// Chooses the server to (re)connect to by probing them, and remembers a choice made before
/// a forced reconnection.
pub(crate) struct Mover {
    /// How probes connect: the node's own options (credentials, TLS) without its callbacks.
    options: ConnectOptions,
    /// The node's canary subject.
    subject: String,
    /// The server a forced reconnection goes to.
    chosen: Mutex<Option<ServerAddr>>,
}

/// What a probe of one server found.
enum Probe {
    /// It took a canary; its `server_name`.
    Writes(String),
    /// It completed the handshake but did not acknowledge the canary.
    Reachable {
        /// Its `server_name`.
        name: String,
        /// Why the canary failed.
        reason: String,
    },
    /// No handshake.
    Unreachable(String),
}

impl Mover {
    /// A mover probing with `options` (no callbacks set) and publishing on `subject`.
    pub(crate) fn new(options: ConnectOptions, subject: String) -> Mover {
        Mover {
            options: options
                .connection_timeout(PROBE_TIMEOUT)
                .max_reconnects(1)
                .request_timeout(Some(PROBE_TIMEOUT)),
            subject,
            chosen: Mutex::new(None),
        }
    }

    /// The reconnection callback: the server chosen before a forced reconnection; or else, on
    /// a reconnection after a lost link, the first server to take a canary, failing that the
    /// first that completed a handshake (a stopped server accepts TCP connections and never
    /// answers; the client's own choice could wait on it for the whole connect timeout);
    /// `None` (the client's own choice) on the first connection and when none answers.
    pub(crate) async fn choose(
        self: Arc<Self>,
        servers: Vec<Server>,
        info: ServerInfo,
    ) -> Option<ReconnectToServer> {
        if let Some(addr) = self.chosen.lock().ok()?.take() {
            return Some(ReconnectToServer {
                addr,
                delay: Some(Duration::ZERO),
            });
        }
        if info.server_id.is_empty() {
            return None;
        }
        let mut probes = self.probes(servers.into_iter().map(|s| s.addr).collect());
        let mut reachable = None;
        while let Some(Ok((addr, found))) = probes.join_next().await {
            match found {
                Probe::Writes(name) => {
                    tracing::info!(server = %name, "reconnecting to a NATS server that takes writes");
                    return Some(ReconnectToServer { addr, delay: None });
                }
                Probe::Reachable { .. } => {
                    reachable.get_or_insert(addr);
                }
                Probe::Unreachable(_) => {}
            }
        }
        tracing::debug!("no NATS server takes writes now; reconnecting to one that answers");
        reachable.map(|addr| ReconnectToServer { addr, delay: None })
    }

    /// Probes `addrs` at once, each in a task of the set returned.
    fn probes(&self, mut addrs: Vec<ServerAddr>) -> JoinSet<(ServerAddr, Probe)> {
        addrs.sort_by(|a, b| a.as_url_str().cmp(b.as_url_str()));
        addrs.dedup();
        let mut probes = JoinSet::new();
        for addr in addrs {
            let options = self.options.clone();
            let subject = self.subject.clone();
            probes.spawn(async move {
                let found = probe(options, &addr, subject).await;
                (addr, found)
            });
        }
        probes
    }

    /// After failed canaries: moves the link to another server that takes writes, unless the
    /// one it is on takes them now; with none taking writes, to one that answers if the one it
    /// is on does not (it froze: the pings would drop it within seconds anyway), else nowhere.
    /// Returns the server moved to.
    async fn move_if_better(&self, client: &async_nats::Client) -> Option<String> {
        let current = client.server_info().server_name;
        // Both go through the client's command queue, which a stuck connection may not drain.
        let servers = tokio::time::timeout(PROBE_TIMEOUT, client.server_pool())
            .await
            .ok()?
            .ok()?;
        let mut probes = self.probes(servers.into_iter().map(|s| s.addr).collect());
        let mut writes = Vec::new();
        let mut answers = Vec::new();
        while let Some(Ok((addr, found))) = probes.join_next().await {
            match found {
                Probe::Writes(name) => writes.push((addr, name)),
                Probe::Reachable { name, reason } => {
                    tracing::debug!(server = %name, %reason, "NATS server takes no writes");
                    answers.push((addr, name));
                }
                Probe::Unreachable(reason) => {
                    tracing::debug!(server = %addr.as_url_str(), %reason, "NATS server does not answer");
                }
            }
        }
        let is_current = |(_, name): &(ServerAddr, String)| *name == current;
        if writes.iter().any(is_current) {
            tracing::info!(server = %current, "the NATS server takes writes again; staying");
            return None;
        }
        let current_answers = answers.iter().any(is_current);
        let (addr, name) = match (writes.into_iter().next(), current_answers) {
            (Some(best), _) => best,
            (None, false) if !answers.is_empty() => {
                tracing::warn!(
                    server = %current,
                    "no NATS server takes writes and this one does not answer; moving to one that does"
                );
                answers.swap_remove(0)
            }
            (None, _) => {
                tracing::warn!(
                    server = %current,
                    "no NATS server takes writes; staying on this one"
                );
                return None;
            }
        };
        self.set_chosen(Some(addr));
        let reconnect = tokio::time::timeout(PROBE_TIMEOUT, client.force_reconnect()).await;
        if let Err(error) = reconnect
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(%error, "could not reconnect to another NATS server");
            self.set_chosen(None);
            return None;
        }
        Some(name)
    }

    fn set_chosen(&self, addr: Option<ServerAddr>) {
        if let Ok(mut chosen) = self.chosen.lock() {
            *chosen = addr;
        }
    }
}

/// Connects to `addr` alone and publishes one canary, each step within [`PROBE_TIMEOUT`].
async fn probe(options: ConnectOptions, addr: &ServerAddr, subject: String) -> Probe {
    let connect = tokio::time::timeout(PROBE_TIMEOUT, options.connect(addr.clone())).await;
    let client = match connect {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return Probe::Unreachable(error.to_string()),
        Err(_) => return Probe::Unreachable("handshake timed out".into()),
    };
    let name = client.server_info().server_name;
    let js = jetstream::ContextBuilder::new()
        .timeout(PROBE_TIMEOUT)
        .build(client);
    let canary = tokio::time::timeout(PROBE_TIMEOUT, async {
        js.publish(subject, Bytes::from_static(b"probe"))
            .await?
            .await
    })
    .await;
    match canary {
        Ok(Ok(_)) => Probe::Writes(name),
        Ok(Err(error)) => Probe::Reachable {
            name,
            reason: error.to_string(),
        },
        Err(_) => Probe::Reachable {
            name,
            reason: "canary timed out".into(),
        },
    }
}

/// Publishes this node's canary every [`CANARY_INTERVAL`] and records the outcome in
/// `link`; after [`FAILURES_BEFORE_PROBE`] failures in a row, looks for a better server. Runs
/// until the store is dropped.
pub(crate) async fn canaries(
    js: jetstream::Context,
    client: async_nats::Client,
    link: Arc<Link>,
    node: Arc<str>,
) {
    let subject = canary_subject(&node);
    let mut sent: u64 = 0;
    loop {
        let next = tokio::time::Instant::now() + CANARY_INTERVAL;
        if client.connection_state() == State::Connected {
            sent = sent.wrapping_add(1);
            let outcome = tokio::time::timeout(CANARY_TIMEOUT, async {
                js.publish(subject.clone(), Bytes::from(sent.to_string()))
                    .await?
                    .await
            })
            .await;
            match outcome {
                Ok(Ok(_)) => link.writes.acknowledged(),
                Ok(Err(error)) => {
                    canary_failed(&link, &client, format!("canary refused: {error}")).await;
                }
                Err(_) => {
                    let reason = format!(
                        "canary not acknowledged within {} ms",
                        CANARY_TIMEOUT.as_millis()
                    );
                    canary_failed(&link, &client, reason).await;
                }
            }
        } else {
            link.writes.restart_count();
        }
        let writable =
            client.connection_state() == State::Connected && link.writes.report().writable();
        metrics::gauge!("kanava_cluster_writable").set(if writable { 1.0 } else { 0.0 });
        tokio::time::sleep_until(next).await;
    }
}

/// Records a failed canary; after enough in a row, probes the servers and moves if another
/// takes writes.
async fn canary_failed(link: &Link, client: &async_nats::Client, reason: String) {
    let server = client.server_info().server_name;
    tracing::debug!(%server, %reason, "cluster write canary failed");
    if link.writes.failed(reason.clone()) < FAILURES_BEFORE_PROBE {
        return;
    }
    tracing::warn!(
        %server,
        %reason,
        failures = FAILURES_BEFORE_PROBE,
        "cluster writes fail through this NATS server; probing the others"
    );
    if let Some(to) = link.mover.move_if_better(client).await {
        metrics::counter!("kanava_cluster_moves_total").increment(1);
        tracing::warn!(from = %server, %to, "moved to another NATS server, which takes writes");
    }
    link.writes.restart_count();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_stale_without_an_acknowledgement_for_a_while() {
        let writes = Writes::default();
        assert!(writes.report().writable(), "fresh after connecting");
        assert_eq!(writes.failed("timed out".into()), 1);
        assert_eq!(writes.failed("timed out".into()), 2);
        let report = writes.report();
        assert!(report.writable(), "two failures within the limit");
        assert_eq!(report.failure, Some(("timed out".into(), 2)));

        writes.state.lock().unwrap().last_ack = Instant::now() - WRITE_STALE * 2;
        let report = writes.report();
        assert!(!report.writable());
        assert!(report.since_ack >= WRITE_STALE * 2);

        writes.acknowledged();
        let report = writes.report();
        assert!(report.writable());
        assert_eq!(report.failure, None);
        assert_eq!(writes.failed("refused".into()), 1, "counted afresh");
        writes.restart_count();
        assert_eq!(writes.failed("refused".into()), 1);
    }

    #[test]
    fn each_node_has_its_own_canary_subject() {
        assert_eq!(canary_subject("node-1.eu"), "kanava.health.node-1.eu");
        assert!(canary_subject("a").starts_with(HEALTH_PREFIX));
    }
}
