//! Store fairness under bulk load: does one address writing big frames into many channels delay
//! an unrelated channel of another address?
//!
//! Bulk writers connect from one loopback address and fill channel after channel with big
//! binary frames as fast as the server takes them, moving to a new channel once one holds
//! `--bulk-channel-bytes` (the history cap), so that the store keeps inserting and evicting. A
//! pair from another address chats in a channel of its own: one member sends a short line every
//! `--chat-interval`, the other receives it, and the run reports the relay latency of those
//! lines, which every frame of the pair waits for the store to commit. The server should be
//! started with a disk share large enough for the bulk writers (`--max-disk-per-source`), or
//! they are refused part-way, which the report counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::mles::BenchError;
use crate::mles::connect::MlesServerArgs;

/// What load to put on the server, and for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct FairnessArgs {
    /// The server.
    #[command(flatten)]
    pub server: MlesServerArgs,
    /// Local address the bulk writers connect from.
    #[arg(long, value_name = "IP", default_value = "127.0.0.2")]
    pub bulk_source: IpAddr,
    /// Local address the chatting pair connects from.
    #[arg(long, value_name = "IP", default_value = "127.0.0.3")]
    pub chat_source: IpAddr,
    /// Bulk writers, each filling its own channels one after the other.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub bulk_writers: usize,
    /// Bytes of each bulk frame.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    pub bulk_size: usize,
    /// Bytes a bulk writer puts into one channel before it moves to a new one.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub bulk_channel_bytes: u64,
    /// Time between two lines of the chatting pair.
    #[arg(long, value_name = "D", default_value = "50ms", value_parser = kanava_core::parse_duration)]
    pub chat_interval: Duration,
    /// How long to run.
    #[arg(long, value_name = "D", default_value = "20s", value_parser = kanava_core::parse_duration)]
    pub duration: Duration,
    /// Start of the run left out of the statistics.
    #[arg(long, value_name = "D", default_value = "3s", value_parser = kanava_core::parse_duration)]
    pub warmup: Duration,
    /// Print only one JSON line with the summary.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FairnessReport {
    /// Chat lines sent after the warmup.
    pub chat_sent: u64,
    /// Of those, lines the other member received.
    pub chat_received: u64,
    /// Relay latency of the chat lines, in milliseconds: median, 90th and 99th percentile, max.
    pub chat_latency_ms: [f64; 4],
    /// Payload the bulk writers got accepted, in MiB per second, after the warmup.
    pub bulk_mib_per_second: f64,
    /// Bulk connections the server closed (e.g. the disk budget refusing them), with the reason.
    pub bulk_closed: HashMap<String, u64>,
}

impl FairnessReport {
    /// The report as one JSON line.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl std::fmt::Display for FairnessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p50, p90, p99, max] = self.chat_latency_ms;
        writeln!(
            f,
            "chat relay latency: median {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({} of {} lines received)",
            self.chat_received, self.chat_sent
        )?;
        write!(
            f,
            "bulk load: {:.1} MiB/s accepted",
            self.bulk_mib_per_second
        )?;
        for (reason, count) in &self.bulk_closed {
            write!(
                f,
                "\nbulk connections closed by the server: {count} ({reason})"
            )?;
        }
        Ok(())
    }
}

/// Runs the benchmark.
pub async fn run(args: FairnessArgs) -> Result<FairnessReport, BenchError> {
    if args.warmup >= args.duration || args.bulk_writers == 0 || args.bulk_size == 0 {
        return Err(BenchError::InvalidArgs(
            "--duration must exceed --warmup; --bulk-writers and --bulk-size must be positive"
                .into(),
        ));
    }
    let target = args.server.target().await?;
    let run_id = format!("fair-{:08x}", rand::random::<u32>());
    let started = Instant::now();
    let measuring_from = started + args.warmup;
    let stop = Arc::new(AtomicBool::new(false));
    let bulk_bytes = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(Mutex::new(HashMap::<String, u64>::new()));

    let chat = target.with_source(args.chat_source);
    let channel = format!("{run_id}-chat");
    let connect = |uid: &'static str| {
        let (chat, channel) = (&chat, channel.clone());
        async move {
            chat.connect(uid, &channel)
                .await
                .map_err(|e| BenchError::InvalidArgs(format!("the chat pair cannot join: {e}")))
        }
    };
    let mut alice = connect("alice").await?;
    let mut bob = connect("bob").await?;

    let mut writers = Vec::new();
    for writer in 0..args.bulk_writers {
        let (bulk, args, run_id) = (
            target.with_source(args.bulk_source),
            args.clone(),
            run_id.clone(),
        );
        let (stop, bulk_bytes, closed) = (
            Arc::clone(&stop),
            Arc::clone(&bulk_bytes),
            Arc::clone(&closed),
        );
        writers.push(tokio::spawn(async move {
            let frame = bytes::Bytes::from(vec![0x5a; args.bulk_size]);
            for round in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let channel = format!("{run_id}-bulk-{writer}-{round}");
                let Ok(mut ws) = bulk.connect("bulk", &channel).await else {
                    *closed
                        .lock()
                        .await
                        .entry("connect failed".into())
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut written = 0u64;
                while written < args.bulk_channel_bytes && !stop.load(Ordering::Relaxed) {
                    if ws.send(Message::Binary(frame.clone())).await.is_err() {
                        break;
                    }
                    written += args.bulk_size as u64;
                    if Instant::now() >= measuring_from {
                        bulk_bytes.fetch_add(args.bulk_size as u64, Ordering::Relaxed);
                    }
                    // A close from the server (e.g. the disk budget) ends this channel.
                    if let Some(Some(Ok(Message::Close(frame)))) =
                        futures_util::FutureExt::now_or_never(ws.next())
                    {
                        let reason = frame.map_or("closed".into(), |f| f.reason.to_string());
                        *closed.lock().await.entry(reason).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                }
                let _ = ws.close(None).await;
            }
        }));
    }

    // Bob records how long each of alice's lines took; alice sends one per interval.
    let sent_at = Arc::new(Mutex::new(HashMap::<u64, Instant>::new()));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        3_600_000_000,
        3,
    )?));
    let receiver = {
        let (sent_at, histogram) = (Arc::clone(&sent_at), Arc::clone(&histogram));
        tokio::spawn(async move {
            while let Some(Ok(message)) = bob.next().await {
                let Message::Text(line) = message else {
                    continue;
                };
                let Some(n) = line
                    .strip_prefix("line ")
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(at) = sent_at.lock().await.remove(&n) {
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    histogram.lock().await.saturating_record(micros.max(1));
                }
            }
        })
    };
    let mut ticker = tokio::time::interval(args.chat_interval);
    let mut chat_sent = 0u64;
    let end = started + args.duration;
    let mut n = 0u64;
    while Instant::now() < end {
        ticker.tick().await;
        n += 1;
        let now = Instant::now();
        if now >= measuring_from {
            sent_at.lock().await.insert(n, now);
            chat_sent += 1;
        }
        if alice
            .send(Message::text(format!("line {n}")))
            .await
            .is_err()
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = bulk_bytes.load(Ordering::Relaxed);
    // Lines still in flight get a moment to arrive.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle && !sent_at.lock().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.abort();
    for writer in writers {
        writer.abort();
    }
    let _ = alice.close(None).await;
    let histogram = histogram.lock().await;
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(FairnessReport {
        chat_sent,
        chat_received: histogram.len(),
        chat_latency_ms: [
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.9)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max()),
        ],
        bulk_mib_per_second: accepted as f64
            / (args.duration - args.warmup).as_secs_f64()
            / (1024.0 * 1024.0),
        bulk_closed: closed.lock().await.clone(),
    })
}
