//! Start-up: connecting to NATS, checking what the server offers, and creating (or bringing up
//! to date) the streams and buckets of the layout in the crate docs. Every way this commonly
//! fails on a fresh deployment ends in a [`ClusterError`] that says what to change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectErrorKind, ConnectOptions, Event};

use crate::health::{self, Mover, Writes};
use crate::wire::{ChannelShards, MAX_CHANNEL_SHARDS, PRIVATE_PREFIX, SESSION_PREFIX};
use crate::{ClusterConfig, ClusterError, HEADER_ROOM};

/// The bucket of the cluster's own settings.
const CLUSTER_BUCKET: &str = "kanava_cluster";
/// The key in [`CLUSTER_BUCKET`] holding the count of channel streams.
const SHARDS_KEY: &str = "channel_shards";
/// How long start-up keeps asking a server that is not ready, or busy with other nodes
/// starting at the same time (a fresh nats-server 2.9.10 creating some forty streams for four
/// nodes at once on a loaded machine was seen answering nothing for over 30 s).
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stream update JetStream refuses is asked again, in case other nodes starting at
/// the same time are setting the stream up: past this the refusal stands.
const SETTLE: Duration = Duration::from_secs(5);
/// The private-message stream.
pub(crate) const PRIVATE_STREAM: &str = "KANAVA_PM";
/// The debug-me session stream.
pub(crate) const SESSION_STREAM: &str = "KANAVA_DM";
/// How long private messages are kept: the SSH chat's retention for idle data.
pub(crate) const PRIVATE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The window in which JetStream drops a publish whose `Nats-Msg-Id` it has already stored.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The wait for a JetStream API reply or a publish acknowledgement.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// The longest pause between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(3);

/// The buckets, opened.
#[derive(Clone)]
pub(crate) struct Buckets {
    /// `kanava_ident`: `nick.<hex name>` → identity, `fp.<hex fingerprint>` → names.
    pub(crate) ident: kv::Store,
    /// `kanava_bans`: `<hex fingerprint>` → ban.
    pub(crate) bans: kv::Store,
    /// `kanava_topics`: `<channel token>` → topic.
    pub(crate) topics: kv::Store,
    /// `kanava_pm_seen`: `<hex name>` → the last private message seen.
    pub(crate) pm_seen: kv::Store,
    /// `kanava_presence`: `p.<channel token>.<hex node>` → members.
    pub(crate) presence: kv::Store,
}

/// The link's state, for [`kanava_store::Bus::health`]: what its event callback learnt, what
/// the canaries learnt (see [`health`]), and how it picks another server.
pub(crate) struct Link {
    last_error: Mutex<Option<String>>,
    /// The canaries' outcomes.
    pub(crate) writes: Writes,
    /// Picks the server to move to.
    pub(crate) mover: Arc<Mover>,
}

impl Link {
    fn new(mover: Mover) -> Link {
        Link {
            last_error: Mutex::new(None),
            writes: Writes::default(),
            mover: Arc::new(mover),
        }
    }

    /// The link's state now: connected to which server and whether writes through it are
    /// acknowledged, or why not.
    pub(crate) fn health(&self, client: &async_nats::Client) -> kanava_store::BusHealth {
        if client.connection_state() == State::Connected {
            let info = client.server_info();
            let server = format!(
                "NATS server {} at {}:{}",
                info.server_name, info.host, info.port
            );
            let writes = self.writes.report();
            let since = writes.since_ack.as_secs_f64();
            let writable = writes.writable();
            let detail = match (writable, writes.failure) {
                (true, _) => {
                    format!("connected to {server}; last write acknowledged {since:.1} s ago")
                }
                (false, Some((reason, failures))) => format!(
                    "no acknowledged write for {since:.0} s via {server}: {reason} \
                     ({failures} in a row)"
                ),
                (false, None) => format!("no acknowledged write for {since:.0} s via {server}"),
            };
            kanava_store::BusHealth {
                connected: true,
                writable,
                detail,
            }
        } else {
            let last = self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            kanava_store::BusHealth {
                connected: false,
                writable: false,
                detail: match last {
                    Some(error) => format!("disconnected from NATS, reconnecting: {error}"),
                    None => "disconnected from NATS, reconnecting".into(),
                },
            }
        }
    }

    fn record(&self, event: Event) {
        match event {
            Event::Connected => {
                metrics::gauge!("kanava_cluster_connected").set(1.0);
                tracing::info!("connected to NATS");
            }
            Event::Disconnected => {
                metrics::gauge!("kanava_cluster_connected").set(0.0);
                tracing::warn!("disconnected from NATS; reconnecting");
            }
            Event::ClientError(error) => self.error(error.to_string()),
            Event::ServerError(error) => self.error(error.to_string()),
            Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer"),
            Event::LameDuckMode => tracing::info!("NATS server entered lame duck mode"),
            Event::Draining | Event::Closed => tracing::info!(%event, "NATS connection"),
        }
    }

    fn error(&self, error: String) {
        tracing::warn!(%error, "NATS link error");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// A connected, set-up cluster.
pub(crate) struct Connected {
    /// The largest frame payload this node publishes.
    pub(crate) max_frame: usize,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// How channels are spread over the channel streams.
    pub(crate) shards: ChannelShards,
    /// The channel streams, by shard.
    pub(crate) channels: Vec<stream::Stream>,
    pub(crate) private: stream::Stream,
    pub(crate) sessions: stream::Stream,
    pub(crate) buckets: Buckets,
    pub(crate) link: Arc<Link>,
}

/// Checks `config` before anything touches the network.
fn check(config: &ClusterConfig) -> Result<(), ClusterError> {
    let node_ok = (1..=64).contains(&config.node.len())
        && config
            .node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !node_ok {
        return Err(ClusterError::Config(format!(
            "node name {:?} must be 1 to 64 of A-Z, a-z, 0-9, '_', '.' and '-'",
            config.node
        )));
    }
    if config.servers.is_empty() {
        return Err(ClusterError::Config("no NATS server given".into()));
    }
    if config.replicas == 0 || config.replicas > 5 {
        return Err(ClusterError::Config(format!(
            "replicas must be 1 to 5, not {}",
            config.replicas
        )));
    }
    if ChannelShards::new(config.shards).is_none() {
        return Err(ClusterError::Config(format!(
            "the count of channel streams must be 1 to {MAX_CHANNEL_SHARDS}, not {}",
            config.shards
        )));
    }
    if config.history.max_entries == 0 {
        return Err(ClusterError::Config(
            "the history must keep at least one entry".into(),
        ));
    }
    if config.debug_me_retention.is_zero() {
        return Err(ClusterError::Config(
            "the debug-me retention must not be zero".into(),
        ));
    }
    if config.presence_heartbeat < Duration::from_millis(100) {
        return Err(ClusterError::Config(
            "the presence heartbeat must be at least 100 ms".into(),
        ));
    }
    Ok(())
}

/// Exponential back-off between reconnection attempts: at once after the first failure, then
/// 50 ms doubling up to [`MAX_RECONNECT_DELAY`].
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    (Duration::from_millis(50) * 2u32.pow(exponent)).min(MAX_RECONNECT_DELAY)
}

/// Connects, checks the server, and sets up every stream and bucket.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<Connected, ClusterError> {
    check(config)?;
    let mut base = ConnectOptions::new()
        .name(format!("kanava {}", config.node))
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &config.credentials {
        base = crate::auth::apply(base, path).await?;
    }
    let link = Arc::new(Link::new(Mover::new(
        base.clone(),
        health::canary_subject(&config.node),
    )));
    let events = Arc::clone(&link);
    let mover = Arc::clone(&link.mover);
    let options = base
        .ping_interval(health::PING_INTERVAL)
        .event_callback(move |event| {
            events.record(event);
            async {}
        })
        .reconnect_to_server_callback(move |servers, info| {
            // Spawned: the callback's future must be `Sync`, the probes' are not.
            let choice = tokio::spawn(Arc::clone(&mover).choose(servers, info));
            async move { choice.await.ok().flatten() }
        });
    let servers = config.servers.join(",");
    let client = options
        .connect(config.servers.as_slice())
        .await
        .map_err(|source| match source.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                ClusterError::Auth {
                    servers: servers.clone(),
                    source,
                }
            }
            ConnectErrorKind::ServerParse => {
                ClusterError::Config(format!("bad NATS server URL in {servers}: {source}"))
            }
            _ => ClusterError::Unreachable {
                servers: servers.clone(),
                source,
            },
        })?;
    metrics::gauge!("kanava_cluster_connected").set(1.0);
    let max_payload = client.server_info().max_payload;
    let max_frame = config
        .max_frame
        .unwrap_or(max_payload.saturating_sub(HEADER_ROOM));
    if max_frame == 0 || max_frame.saturating_add(HEADER_ROOM) > max_payload {
        return Err(ClusterError::PayloadTooSmall {
            max_payload,
            max_frame,
            header_room: HEADER_ROOM,
        });
    }
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone());
    // The server's limit rather than this node's `max_frame`: every node sets the same, so nodes
    // with different `--max-frame` do not take turns shrinking the stream under each other.
    let max_msg_size = i32::try_from(max_payload).unwrap_or(i32::MAX);
    let per_channel = i64::try_from(config.history.max_entries).unwrap_or(i64::MAX);
    // What every stream shares: one prefix's subjects, on file, replicated, read directly from
    // any replica, the oldest message discarded at a limit.
    let stream_of = |name: &str, prefix: &str| stream::Config {
        name: name.into(),
        subjects: vec![format!("{prefix}>")],
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        ..Default::default()
    };
    let configured = ChannelShards::new(config.shards)
        .ok_or_else(|| ClusterError::Config("the count of channel streams".into()))?;
    let settings = ensure_bucket(
        &js,
        CLUSTER_BUCKET,
        StorageType::File,
        Duration::ZERO,
        config.replicas,
    )
    .await?;
    let shards = record_shards(&js, &settings, configured).await?;
    let mut channels = Vec::new();
    for shard in 0..shards.count() {
        let stream = ensure_stream(
            &js,
            stream::Config {
                max_messages_per_subject: per_channel,
                max_message_size: max_msg_size,
                // Each stored frame also goes out on a core NATS subject of its channel, for the
                // nodes that host the channel (see `live.rs`).
                republish: Some(stream::Republish {
                    source: format!("{}>", shards.prefix(shard)),
                    destination: shards.live_filter(shard),
                    headers_only: false,
                }),
                ..stream_of(&shards.stream(shard), &shards.prefix(shard))
            },
        )
        .await?;
        channels.push(stream);
    }
    let private = ensure_stream(
        &js,
        stream::Config {
            max_age: PRIVATE_MAX_AGE,
            ..stream_of(PRIVATE_STREAM, PRIVATE_PREFIX)
        },
    )
    .await?;
    // Each session's subject is its complete log: no cap per subject, only the retention.
    let sessions = ensure_stream(
        &js,
        stream::Config {
            duplicate_window: DUPLICATE_WINDOW.min(config.debug_me_retention),
            max_age: config.debug_me_retention,
            max_message_size: max_msg_size,
            ..stream_of(SESSION_STREAM, SESSION_PREFIX)
        },
    )
    .await?;
    // Each node's canary (see `health`): on file like the frames, one per node, small.
    ensure_stream(
        &js,
        stream::Config {
            name: health::HEALTH_STREAM.into(),
            subjects: vec![format!("{}>", health::HEALTH_PREFIX)],
            max_messages_per_subject: 1,
            max_message_size: 256,
            max_age: health::CANARY_MAX_AGE,
            duplicate_window: Duration::from_secs(1),
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        },
    )
    .await?;
    let file = |bucket| (bucket, StorageType::File, Duration::ZERO);
    let presence_age = config.presence_heartbeat * 3;
    let mut opened = Vec::new();
    for (bucket, storage, max_age) in [
        file("kanava_ident"),
        file("kanava_bans"),
        file("kanava_topics"),
        file("kanava_pm_seen"),
        ("kanava_presence", StorageType::Memory, presence_age),
    ] {
        opened.push(ensure_bucket(&js, bucket, storage, max_age, config.replicas).await?);
    }
    let [ident, bans, topics, pm_seen, presence]: [kv::Store; 5] = opened
        .try_into()
        .map_err(|_| ClusterError::Config("bucket list".into()))?;
    tracing::info!(
        servers = %servers,
        node = %config.node,
        replicas = config.replicas,
        channel_streams = shards.count(),
        max_payload,
        "cluster store ready"
    );
    Ok(Connected {
        max_frame,
        client,
        js,
        shards,
        channels,
        private,
        sessions,
        buckets: Buckets {
            ident,
            bans,
            topics,
            pm_seen,
            presence,
        },
        link,
    })
}

/// Records `configured` as the cluster's count of channel streams if none is recorded yet (a
/// cluster that already has stream `KANAVA_CH` was created before the count existed: one), and
/// refuses to go on if the recorded count differs. Nodes starting together agree through the
/// key's compare-and-set: the first to create it wins, and every node compares with that.
async fn record_shards(
    js: &jetstream::Context,
    settings: &kv::Store,
    configured: ChannelShards,
) -> Result<ChannelShards, ClusterError> {
    let deadline = Instant::now() + SETUP_DEADLINE;
    loop {
        let attempt = async {
            if let Some(value) = settings
                .get(SHARDS_KEY)
                .await
                .map_err(|e| ClusterError::nats("read the count of channel streams", e))?
            {
                let recorded = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
                    .and_then(ChannelShards::new)
                    .ok_or_else(|| {
                        ClusterError::Config(format!(
                            "bucket {CLUSTER_BUCKET} key {SHARDS_KEY} holds {:?}, not a count of channel streams",
                            String::from_utf8_lossy(&value)
                        ))
                    })?;
                return Ok(Some(recorded));
            }
            let first = if stream_exists(js, &ChannelShards::ONE.stream(0)).await? {
                ChannelShards::ONE
            } else {
                configured
            };
            match settings
                .create(SHARDS_KEY, first.count().to_string().into())
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        channel_streams = first.count(),
                        "recorded the cluster's count of channel streams"
                    );
                    Ok(Some(first))
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(ClusterError::nats("record the count of channel streams", e)),
            }
        };
        match attempt.await {
            Ok(Some(recorded)) if recorded == configured => return Ok(recorded),
            Ok(Some(recorded)) => {
                return Err(ClusterError::ShardCount {
                    recorded: recorded.count(),
                    configured: configured.count(),
                });
            }
            // Another node recorded it first: read what it recorded.
            Ok(None) => {}
            Err(error @ ClusterError::Config(_)) => return Err(error),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "JetStream not ready; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether stream `name` exists; an answer other than "found" or "not found" is an error.
async fn stream_exists(js: &jetstream::Context, name: &str) -> Result<bool, ClusterError> {
    match js.get_stream(name).await {
        Ok(_) => Ok(true),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(error)
                if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(false)
            }
            _ => Err(ClusterError::nats("look up a stream", e)),
        },
    }
}

/// Creates a bucket's stream as async-nats would (which it cannot do against 2.9.10), then
/// opens it as a bucket.
async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    storage: StorageType,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    let duplicate_window = if max_age.is_zero() {
        DUPLICATE_WINDOW
    } else {
        DUPLICATE_WINDOW.min(max_age)
    };
    ensure_stream(
        js,
        stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            discard: DiscardPolicy::New,
            storage,
            num_replicas: replicas,
            max_age,
            duplicate_window,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        },
    )
    .await?;
    let deadline = Instant::now() + SETUP_DEADLINE;
    loop {
        match js.get_key_value(bucket).await {
            Ok(store) => return Ok(store),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%bucket, %error, "bucket not readable yet; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(source) => {
                return Err(ClusterError::Setup {
                    what: format!("bucket {bucket}"),
                    source: source.into(),
                });
            }
        }
    }
}

/// Brings stream `config.name` to `config`, creating it if needed. A server whose JetStream
/// meta leader is still being elected, or that is busy creating or updating the same stream for
/// another node starting at the same time, is asked again for up to a minute. An update
/// the server refuses is no failure when the stream already has the settings kanava needs
/// (another node just made it so, and the server filled in its defaults); a refusal that
/// persists for [`SETTLE`] while the stream's settings differ is.
async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, ClusterError> {
    let name = config.name.clone();
    let started = Instant::now();
    let deadline = started + SETUP_DEADLINE;
    loop {
        let attempt = match js.update_stream(&config).await {
            Err(error) if error.kind() == CreateStreamErrorKind::NotFound => js
                .create_stream(config.clone())
                .await
                .map(|_| ())
                .map_err(|e| (e, false)),
            other => other.map(|_| ()).map_err(|e| (e, true)),
        };
        match attempt {
            Ok(()) => break,
            Err((error, _)) if retryable(&error) && Instant::now() < deadline => {
                tracing::debug!(stream = %name, %error, "JetStream not ready; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err((error, true))
                if config.republish.is_some() && error.to_string().contains("RePublish") =>
            {
                return Err(ClusterError::IncompatibleStream {
                    stream: name.clone(),
                    reason: format!(
                        "{error}: it was created by a kanava that did not republish frames, and this nats-server cannot add that to an existing stream; upgrade the NATS servers to 2.10 or newer, or delete the stream, which deletes the channels' history"
                    ),
                });
            }
            Err((error, true)) if refused(&error) && has_settings(js, &config).await => {
                tracing::debug!(stream = %name, %error, "update refused, but the stream has kanava's settings");
                break;
            }
            Err((error, true)) if refused(&error) && started.elapsed() < SETTLE => {
                tracing::debug!(stream = %name, %error, "update refused; asking again while other nodes may be setting the stream up");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err((error, existing)) => {
                return Err(stream_error(&name, config.num_replicas, error, existing));
            }
        }
    }
    loop {
        match js.get_stream(&name).await {
            Ok(stream) => return Ok(stream),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(stream = %name, %error, "stream not readable yet; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(source) => {
                return Err(ClusterError::Setup {
                    what: format!("stream {name}"),
                    source: source.into(),
                });
            }
        }
    }
}

/// Whether a failed stream update was JetStream's refusal (rather than the lack of JetStream or
/// of an answer).
fn refused(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(_))
}

/// Whether stream `wanted.name` exists with every setting kanava asks for in `wanted`.
async fn has_settings(js: &jetstream::Context, wanted: &stream::Config) -> bool {
    let mut stream = match js.get_stream(&wanted.name).await {
        Ok(stream) => stream,
        Err(_) => return false,
    };
    match stream.info().await {
        Ok(info) => same_settings(&info.config, wanted),
        Err(_) => false,
    }
}

/// Whether `existing` has every setting kanava sets in `wanted` (the server fills in others).
fn same_settings(existing: &stream::Config, wanted: &stream::Config) -> bool {
    existing.name == wanted.name
        && existing.subjects == wanted.subjects
        && existing.max_messages_per_subject == wanted.max_messages_per_subject
        && existing.max_message_size == wanted.max_message_size
        && existing.max_age == wanted.max_age
        && existing.discard == wanted.discard
        && existing.storage == wanted.storage
        && existing.num_replicas.max(1) == wanted.num_replicas.max(1)
        && existing.duplicate_window == wanted.duplicate_window
        && existing.allow_direct == wanted.allow_direct
        && existing.allow_rollup == wanted.allow_rollup
        && existing.deny_delete == wanted.deny_delete
        && existing.republish == wanted.republish
}

/// Whether asking again may succeed: JetStream has no meta leader yet, the request timed out or
/// got no usable answer (the meta leader is busy, as when several nodes start at once), or
/// another node created the stream between our update and create — which a clustered server
/// may report as the name taken or as its subjects overlapping the new stream's. (A stream of
/// another name on the same subjects keeps refusing, and fails at the deadline with the reason.)
/// Only JetStream's own refusals and its absence are final.
fn retryable(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    match error.kind() {
        CreateStreamErrorKind::JetStream(e) => {
            e.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE
                || e.error_code() == ErrorCode::STREAM_NAME_EXIST
                || e.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP
        }
        CreateStreamErrorKind::JetStreamUnavailable
        | CreateStreamErrorKind::EmptyStreamName
        | CreateStreamErrorKind::InvalidStreamName
        | CreateStreamErrorKind::DomainAndExternalSet => false,
        _ => true,
    }
}

/// Turns a failed stream creation or update into the error an operator can act on.
fn stream_error(
    stream: &str,
    replicas: usize,
    error: async_nats::jetstream::context::CreateStreamError,
    existing: bool,
) -> ClusterError {
    match error.kind() {
        CreateStreamErrorKind::JetStreamUnavailable => ClusterError::NoJetStream,
        CreateStreamErrorKind::JetStream(e) => {
            let reason = e.to_string();
            match e.error_code() {
                ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
                    ClusterError::NoJetStream
                }
                ErrorCode::CLUSTER_NO_PEERS
                | ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
                | ErrorCode::INSUFFICIENT_RESOURCES => ClusterError::NotEnoughPeers {
                    stream: stream.into(),
                    replicas,
                    reason,
                },
                _ if existing => ClusterError::IncompatibleStream {
                    stream: stream.into(),
                    reason,
                },
                _ => ClusterError::Setup {
                    what: format!("stream {stream}"),
                    source: reason.into(),
                },
            }
        }
        _ => ClusterError::Setup {
            what: format!("stream {stream}"),
            source: error.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_backs_off_exponentially_up_to_a_cap() {
        let delays: Vec<u128> = (1..=9).map(|a| reconnect_delay(a).as_millis()).collect();
        assert_eq!(delays, [0, 50, 100, 200, 400, 800, 1600, 3000, 3000]);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    fn config(node: &str) -> ClusterConfig {
        ClusterConfig {
            servers: vec!["nats://127.0.0.1:1".into()],
            credentials: None,
            node: node.into(),
            replicas: 1,
            shards: 1,
            history: Default::default(),
            max_frame: Some(1024),
            presence_heartbeat: Duration::from_secs(5),
            debug_me_retention: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_stream_with_the_servers_defaults_filled_in_has_kanavas_settings() {
        let wanted = stream::Config {
            name: "KANAVA_CH".into(),
            subjects: vec!["kanava.ch.>".into()],
            max_messages_per_subject: 5,
            num_replicas: 3,
            allow_direct: true,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let existing = stream::Config {
            max_bytes: -1,
            max_messages: -1,
            max_consumers: -1,
            ..wanted.clone()
        };
        assert!(same_settings(&existing, &wanted));
        let fewer = stream::Config {
            max_messages_per_subject: 10,
            ..existing.clone()
        };
        assert!(!same_settings(&fewer, &wanted));
        let single = stream::Config {
            num_replicas: 1,
            ..existing
        };
        assert!(!same_settings(&single, &wanted));
    }

    #[test]
    fn node_names_are_checked() {
        assert!(check(&config("node-1.eu")).is_ok());
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(check(&config(bad)).is_err(), "{bad:?}");
        }
        let mut none = config("n");
        none.servers.clear();
        assert!(check(&none).is_err());
        let mut forever = config("n");
        forever.debug_me_retention = Duration::ZERO;
        assert!(check(&forever).is_err(), "zero would keep logs forever");
    }
}
