//! The admin listener: `/healthz` for probes and `/metrics` for Prometheus, on a separate
//! (by default loopback-only) address so that it is never exposed with the Mles port.

use std::time::Duration;

use kanava_core::{Budgets, ConnectionBudget, Sources};
use kanava_hub::{Hub, StoreHealth};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest request head read.
const MAX_REQUEST: usize = 8192;

/// Admin connections open at once: probes and scrapers need few. They have descriptors of their
/// own, outside the listeners' shared budget, so that `/healthz` answers while an attack holds
/// every other connection.
pub const MAX_CONNECTIONS: usize = 64;

/// Admin connections open at once from one source.
const MAX_CONNECTIONS_PER_SOURCE: usize = 16;

/// Time a request has to arrive and be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What an admin request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// Any other path.
    NotFound,
    /// A method other than GET.
    BadMethod,
    /// Not an HTTP request, or too large.
    Malformed,
}

/// Parses an admin request head: `None` while incomplete. Pure, so that it can be fuzzed.
pub fn route(buf: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => None,
        Ok(httparse::Status::Partial) | Err(_) => Some(Route::Malformed),
        Ok(httparse::Status::Complete(_)) => Some(match (request.method, request.path) {
            (Some("GET"), Some(path)) => match path.split('?').next().unwrap_or_default() {
                "/healthz" => Route::Health,
                "/metrics" => Route::Metrics,
                _ => Route::NotFound,
            },
            _ => Route::BadMethod,
        }),
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    metrics: PrometheusHandle,
    budgets: Budgets,
    shutdown: CancellationToken,
) {
    let sources = Sources::new(
        ConnectionBudget::new(MAX_CONNECTIONS),
        MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_SOURCE,
    );
    loop {
        let (mut tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match sources.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                metrics::counter!("kanava_connections_refused_total", "listener" => "admin", "reason" => full.label()).increment(1);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, refuse(&mut tcp, full.reason()))
                        .await;
                });
                continue;
            }
        };
        let (hub, metrics, budgets) = (hub.clone(), metrics.clone(), budgets.clone());
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(REQUEST_TIMEOUT, answer(tcp, &hub, &metrics, &budgets)).await;
            drop(slot);
        });
    }
}

/// Answers a connection refused at a cap with 503 and the reason, without reading it.
async fn refuse(tcp: &mut TcpStream, reason: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}

async fn answer(
    mut tcp: TcpStream,
    hub: &Hub,
    metrics: &PrometheusHandle,
    budgets: &Budgets,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let route = loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(route) = route(&buf) {
            break route;
        }
    };
    let (status, content_type, body) = match route {
        Route::Health => health(hub),
        Route::Metrics => {
            record_budgets(budgets);
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "try /healthz or /metrics\n".into(),
        ),
        Route::BadMethod => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        Route::Malformed => (
            "400 Bad Request",
            "text/plain",
            "malformed request\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}

/// Describes the build, connection and memory budget metrics and registers them (the budget
/// series at zero), so that `/metrics` lists every series from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "kanava_build_info",
        "Always 1; its labels name the running version and the git commit it was built from"
    );
    metrics::gauge!("kanava_build_info", "version" => crate::VERSION, "commit" => crate::COMMIT)
        .set(1.0);
    metrics::describe_counter!(
        "kanava_connections_refused_total",
        "Connections refused at accept time, by listener and by the cap that was full (budget, total, source)"
    );
    metrics::describe_gauge!(
        "kanava_connections_open",
        "Connections open over every listener"
    );
    metrics::describe_gauge!(
        "kanava_connections_budget",
        "Most connections open at once over every listener (from the open-file limit or --max-connections)"
    );
    metrics::describe_gauge!(
        "kanava_memory_payload_bytes",
        "Payload bytes buffered now (partial frames, queues, replays, debug-me sessions, downloads)"
    );
    metrics::describe_gauge!(
        "kanava_memory_budget_bytes",
        "Most payload bytes buffered at once (--max-memory)"
    );
    metrics::describe_gauge!(
        "kanava_disk_used_bytes",
        "Bytes of history and debug-me logs charged to the disk budget"
    );
    metrics::describe_gauge!(
        "kanava_disk_budget_bytes",
        "Most bytes the data directory may hold (--max-disk)"
    );
    for listener in ["mles", "ssh", "debug-me", "admin"] {
        for reason in ["budget", "total", "source"] {
            metrics::counter!("kanava_connections_refused_total", "listener" => listener, "reason" => reason)
                .increment(0);
        }
    }
}

/// Sets the budget gauges to what is in use now, just before a scrape reads them.
fn record_budgets(budgets: &Budgets) {
    metrics::gauge!("kanava_connections_open").set(budgets.connections.open() as f64);
    metrics::gauge!("kanava_connections_budget").set(budgets.connections.max() as f64);
    metrics::gauge!("kanava_memory_payload_bytes").set(budgets.memory.used() as f64);
    metrics::gauge!("kanava_memory_budget_bytes").set(budgets.memory.max() as f64);
    metrics::gauge!("kanava_disk_used_bytes").set(budgets.disk.used() as f64);
    metrics::gauge!("kanava_disk_budget_bytes").set(budgets.disk.max() as f64);
}

/// `/healthz`: 200 and `"status":"ok"` while the node can serve; 503 and `"status":"degraded"`
/// while store writes fail (disk full, I/O error: `"store"` says why, until a write succeeds
/// again) or, in a cluster, while its link to NATS is down or no write of this node was
/// acknowledged for a few seconds (`"cluster"` gives the link's state either way, with the
/// reason in `"detail"`).
fn health(hub: &Hub) -> (&'static str, &'static str, String) {
    let mut body = serde_json::json!({"status": "ok", "channels": hub.active_channels()});
    let mut healthy = true;
    match hub.store_health() {
        StoreHealth::Writable => body["store"] = serde_json::json!({"writable": true}),
        StoreHealth::Unwritable(error) => {
            healthy = false;
            body["store"] = serde_json::json!({"writable": false, "error": error});
        }
    }
    if let Some(link) = hub.cluster_health() {
        healthy &= link.healthy();
        body["cluster"] = serde_json::json!({
            "connected": link.connected,
            "writable": link.writable,
            "detail": link.detail,
        });
    }
    let status = if healthy {
        "200 OK"
    } else {
        body["status"] = "degraded".into();
        "503 Service Unavailable"
    };
    (status, "application/json", format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n\r\n"), Some(Route::Health));
        assert_eq!(
            route(b"GET /metrics?x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Route::Metrics)
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::BadMethod)
        );
        assert_eq!(route(b"GET /heal"), None);
        assert_eq!(route(b"\x00\x01\r\n\r\n"), Some(Route::Malformed));
        assert_eq!(route(&[b'a'; MAX_REQUEST]), Some(Route::Malformed));
    }
}
