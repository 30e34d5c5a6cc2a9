//! The task behind each benchmark connection: subscribers that measure what arrives, and
//! publishers that send stamped frames on a schedule that keeps their average rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::connect::{ConnectError, Target, Ws};
use super::stamp::{RunId, Stamp};
use super::tally::SequenceTally;
use crate::schedule::{due_at, due_by};

/// How long closing one connection may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Latency samples a subscriber gathers before adding them to the shared histogram; batching
/// keeps the lock off the per-frame path and the memory per subscriber small.
const LATENCY_BATCH: usize = 256;

/// How long a publisher may overrun its publishing period (a server that stopped reading)
/// before it gives up.
const PUBLISH_OVERRUN: Duration = Duration::from_secs(5);

/// Nanoseconds since one instant taken at the start of the run; every connection lives in this
/// process, so a send time stamped by a publisher is comparable with a subscriber's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    /// `at` in nanoseconds since the start.
    pub(crate) fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Now, in nanoseconds since the start.
    pub(crate) fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

/// What every connection task of a run shares.
pub(crate) struct Shared {
    /// Where the publishers connect.
    pub(crate) publishers_to: Target,
    /// Where the subscribers connect, each to one of these.
    pub(crate) subscribers_to: Vec<Target>,
    pub(crate) run: RunId,
    pub(crate) clock: Clock,
    pub(crate) size: usize,
    pub(crate) rate: f64,
    pub(crate) publishers_per_channel: usize,
    /// Bounds how many connections are being set up at once.
    pub(crate) connect_permits: Semaphore,
    /// Frames sent so far, for the progress bar.
    pub(crate) sent: AtomicU64,
    /// Distinct frames delivered so far, for the progress bar.
    pub(crate) delivered: AtomicU64,
    /// Latency of the distinct deliveries after the warmup.
    pub(crate) latency: Mutex<Latencies>,
}

/// Latency in microseconds of the distinct deliveries after the warmup, of all subscribers
/// and of those of each subscriber URL.
pub(crate) struct Latencies {
    /// Of all subscribers.
    pub(crate) total: Histogram<u64>,
    /// Of the subscribers of each URL of [`Shared::subscribers_to`], in that order.
    pub(crate) by_url: Vec<Histogram<u64>>,
}

/// The publishing period, as the publishers and subscribers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) duration: Duration,
    /// Deliveries from here on (the end of the warmup) count in the statistics.
    pub(crate) measure_from_ns: u64,
    /// Deliveries up to here count in the delivery rate.
    pub(crate) measure_until_ns: u64,
}

/// Where the run is, broadcast by the coordinator to every connection task.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Connections are being opened.
    Connecting,
    /// Publishers send.
    Publishing(Window),
    /// Publishing is over; `sent` holds how many frames each publisher sent, so that a
    /// subscriber knows when it has seen the last of them.
    Settling { window: Window, sent: Arc<[u64]> },
    /// Stop waiting and close.
    Stopping,
}

/// Tells the coordinator whether a connection opened.
pub(crate) type Ready = mpsc::UnboundedSender<Result<(), ConnectError>>;

/// What one subscriber saw.
pub(crate) struct SubscriberOutcome {
    /// Index in [`Shared::subscribers_to`] of the URL it connected to.
    pub(crate) url: usize,
    /// Index of the first publisher of the subscriber's channel.
    pub(crate) first_publisher: usize,
    /// One tally per publisher of the channel.
    pub(crate) tallies: Vec<SequenceTally>,
    /// Latency samples not yet added to the shared histogram.
    latency: Vec<u64>,
    /// Distinct deliveries between the end of the warmup and the end of publishing.
    pub(crate) in_window: u64,
    /// How the server ended the connection, if it did.
    pub(crate) ended: Option<String>,
}

impl SubscriberOutcome {
    /// Counts a binary frame received at `now_ns`.
    fn receive(&mut self, shared: &Shared, payload: &[u8], now_ns: u64, window: Option<Window>) {
        let Some(stamp) = Stamp::parse(payload, shared.run) else {
            return;
        };
        let tally = usize::try_from(stamp.publisher)
            .ok()
            .and_then(|p| p.checked_sub(self.first_publisher))
            .and_then(|i| self.tallies.get_mut(i));
        let Some(tally) = tally else {
            return;
        };
        if !tally.record(stamp.seq) {
            return;
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(window) = window
            && now_ns >= window.measure_from_ns
        {
            self.latency
                .push(now_ns.saturating_sub(stamp.sent_ns) / 1000);
            if self.latency.len() >= LATENCY_BATCH {
                self.flush_latency(shared);
            }
            if now_ns <= window.measure_until_ns {
                self.in_window += 1;
            }
        }
    }

    /// Adds the gathered latency samples to the shared histogram.
    fn flush_latency(&mut self, shared: &Shared) {
        let mut latencies = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Latencies { total, by_url } = &mut *latencies;
        let of_url = &mut by_url[self.url];
        for us in self.latency.drain(..) {
            total.saturating_record(us);
            of_url.saturating_record(us);
        }
    }

    /// Whether the last frame of every publisher of the channel has arrived.
    pub(crate) fn has_seen_all(&self, sent: &[u64]) -> bool {
        self.tallies.iter().enumerate().all(|(i, tally)| {
            tally.has_seen_last_of(sent.get(self.first_publisher + i).copied().unwrap_or(0))
        })
    }
}

/// What one publisher did.
pub(crate) struct PublisherOutcome {
    /// Index of the publisher across all channels.
    pub(crate) index: usize,
    /// Frames sent.
    pub(crate) sent: u64,
    /// How the server ended the connection, if it did.
    pub(crate) ended: Option<String>,
}

/// Joins `channel` as `uid` at subscriber URL number `url`, and counts what arrives, until the
/// last frame of every publisher has arrived or the coordinator says to stop; `None` if the
/// connection could not be opened.
pub(crate) async fn subscriber(
    shared: Arc<Shared>,
    url: usize,
    first_publisher: usize,
    uid: String,
    channel: String,
    ready: Ready,
    mut phase: watch::Receiver<Phase>,
) -> Option<SubscriberOutcome> {
    let mut ws = open(&shared, &shared.subscribers_to[url], &uid, &channel, ready).await?;
    let mut out = SubscriberOutcome {
        url,
        first_publisher,
        tallies: (0..shared.publishers_per_channel)
            .map(|_| SequenceTally::default())
            .collect(),
        latency: Vec::with_capacity(LATENCY_BATCH),
        in_window: 0,
        ended: None,
    };
    let mut window = None;
    let mut last: Option<Arc<[u64]>> = None;
    loop {
        tokio::select! {
            biased;
            changed = phase.changed() => {
                let current = match changed {
                    Ok(()) => phase.borrow_and_update().clone(),
                    Err(_) => Phase::Stopping,
                };
                match current {
                    Phase::Connecting => {}
                    Phase::Publishing(w) => window = Some(w),
                    Phase::Settling { window: w, sent } => {
                        window = Some(w);
                        last = Some(sent);
                    }
                    Phase::Stopping => break,
                }
            }
            next = ws.next() => {
                let now_ns = shared.clock.now_ns();
                match classify(next) {
                    Event::Frame(data) => out.receive(&shared, &data, now_ns, window),
                    Event::Other => {}
                    Event::Ended(reason) => {
                        out.ended = Some(reason);
                        break;
                    }
                }
            }
        }
        if last.as_deref().is_some_and(|sent| out.has_seen_all(sent)) {
            break;
        }
    }
    out.flush_latency(&shared);
    close(ws).await;
    Some(out)
}

/// Joins `channel` as `uid`, waits for the start, and sends frames as publisher `index` for
/// the publishing period; `None` if the connection could not be opened.
pub(crate) async fn publisher(
    shared: Arc<Shared>,
    index: usize,
    uid: String,
    channel: String,
    ready: Ready,
    mut phase: watch::Receiver<Phase>,
) -> Option<PublisherOutcome> {
    let mut ws = open(&shared, &shared.publishers_to, &uid, &channel, ready).await?;
    let mut out = PublisherOutcome {
        index,
        sent: 0,
        ended: None,
    };
    let window = loop {
        tokio::select! {
            biased;
            changed = phase.changed() => {
                let current = match changed {
                    Ok(()) => phase.borrow_and_update().clone(),
                    Err(_) => Phase::Stopping,
                };
                match current {
                    Phase::Connecting => {}
                    Phase::Publishing(w) => break Some(w),
                    Phase::Settling { .. } | Phase::Stopping => break None,
                }
            }
            next = ws.next() => {
                if let Event::Ended(reason) = classify(next) {
                    out.ended = Some(reason);
                    break None;
                }
            }
        }
    };
    if let Some(window) = window {
        let deadline = window.start + window.duration + PUBLISH_OVERRUN;
        let publishing = publish(&shared, &mut ws, index, window, &mut out.sent);
        out.ended = tokio::time::timeout_at(deadline.into(), publishing)
            .await
            .unwrap_or_else(|_| Some("stalled: the server stopped reading".into()));
    }
    close(ws).await;
    Some(out)
}

/// Sends this publisher's frames, each when due; returns how the server ended the
/// connection if it did.
async fn publish(
    shared: &Shared,
    ws: &mut Ws,
    index: usize,
    window: Window,
    sent: &mut u64,
) -> Option<String> {
    let publisher = u32::try_from(index).unwrap_or(u32::MAX);
    let total = total_frames(window.duration, shared.rate);
    while *sent < total {
        let due = due_by(window.start.elapsed(), shared.rate).min(total);
        while *sent < due {
            let stamp = Stamp {
                publisher,
                seq: *sent,
                sent_ns: shared.clock.now_ns(),
            };
            let frame = Message::Binary(stamp.payload(shared.run, shared.size));
            if let Err(e) = ws.feed(frame).await {
                return Some(format!("send: {e}"));
            }
            *sent += 1;
            shared.sent.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = ws.flush().await {
            return Some(format!("send: {e}"));
        }
        if *sent >= total {
            break;
        }
        let next_due = window.start + due_at(*sent, shared.rate);
        tokio::select! {
            biased;
            next = ws.next() => {
                if let Event::Ended(reason) = classify(next) {
                    return Some(reason);
                }
            }
            () = tokio::time::sleep_until(next_due.into()) => {}
        }
    }
    None
}

/// Frames in a publishing period of `duration`: those due before its end.
fn total_frames(duration: Duration, rate: f64) -> u64 {
    (duration.as_secs_f64() * rate).ceil() as u64
}

/// Opens a connection to `target` within the connection-setup limit and tells the coordinator
/// how it went.
async fn open(
    shared: &Shared,
    target: &Target,
    uid: &str,
    channel: &str,
    ready: Ready,
) -> Option<Ws> {
    // Holding the permit (or the error of a closed semaphore, which never happens) for the
    // duration of the connect is what limits concurrent setups.
    let permit = shared.connect_permits.acquire().await;
    let result = target.connect(uid, channel).await;
    drop(permit);
    match result {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            Some(ws)
        }
        Err(e) => {
            tracing::debug!(uid, error = %e, "connect failed");
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// Closes a connection with a Close frame and waits briefly for the server's answer.
async fn close(mut ws: Ws) {
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if ws.close(Some(normal)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// What a read from a connection amounts to for the benchmark.
enum Event {
    /// A binary frame, maybe one of this run's.
    Frame(Bytes),
    /// A header, ping or pong: nothing to count.
    Other,
    /// The server ended the connection, for this reason.
    Ended(String),
}

fn classify(next: Option<Result<Message, tungstenite::Error>>) -> Event {
    match next {
        Some(Ok(Message::Binary(data))) => Event::Frame(data),
        Some(Ok(Message::Close(Some(frame)))) => Event::Ended(u16::from(frame.code).to_string()),
        Some(Ok(Message::Close(None))) => Event::Ended("close without code".into()),
        Some(Ok(_)) => Event::Other,
        Some(Err(e)) => Event::Ended(format!("error: {e}")),
        None => Event::Ended("closed without close frame".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_holds_the_frames_due_before_its_end() {
        assert_eq!(total_frames(Duration::from_secs(10), 100.0), 1000);
        assert_eq!(total_frames(Duration::from_millis(2500), 0.5), 2);
    }
}
