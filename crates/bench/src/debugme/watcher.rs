//! A watcher: joins the session by its URL (`ConnectMode`), takes the backlog, and counts
//! every Seen of the run it receives, with the time it arrived.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kanava_debugme::frame::{Frame, Mode, decode_frame};
use kanava_debugme::model::{AnyMessage, Message};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::connect::{CONNECT_TIMEOUT, ConnectError, Target, Ws, next_frame};
use super::ledger::{Ledger, Receipts, seq_of};
use super::user::STARTED;

/// How long closing the connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one watcher received.
pub(crate) struct WatcherOutcome {
    /// The run's messages it received.
    pub(crate) receipts: Receipts,
    /// How the connection ended before every message arrived, if it did.
    pub(crate) ended: Option<String>,
}

/// Tells the coordinator whether a watcher joined.
pub(crate) type Ready = mpsc::UnboundedSender<Result<(), ConnectError>>;

/// Joins session `id` once a connection permit is free and counts what arrives, until every
/// message has arrived, the session ends or `stop` turns true; `None` if it could not join.
pub(crate) async fn watch(
    target: Arc<Target>,
    id: String,
    permits: Arc<Semaphore>,
    ledger: Arc<Ledger>,
    ready: Ready,
    mut stop: watch::Receiver<bool>,
) -> Option<WatcherOutcome> {
    let permit = permits.acquire().await;
    let joined = tokio::time::timeout(CONNECT_TIMEOUT, join(&target, &id))
        .await
        .unwrap_or(Err(ConnectError::Timeout));
    drop(permit);
    let mut ws = announce(ready, joined)?;
    let mut out = WatcherOutcome {
        receipts: Receipts::new(ledger.len()),
        ended: None,
    };
    while !out.receipts.complete() {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            next = ws.next() => {
                let now_ns = ledger.now_ns();
                if let Err(reason) = receive(next, &ledger, &mut out.receipts, now_ns) {
                    out.ended = Some(reason);
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
    Some(out)
}

/// Tells the coordinator whether the watcher joined, and lets go of `ready` so that the
/// coordinator sees when every watcher has told.
fn announce(ready: Ready, joined: Result<Ws, ConnectError>) -> Option<Ws> {
    match joined {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            Some(ws)
        }
        Err(e) => {
            tracing::debug!(error = %e, "watcher could not join");
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// Opens the connection and reads the backlog up to the user's start line.
async fn join(target: &Target, id: &str) -> Result<Ws, ConnectError> {
    let (mut ws, _) = target
        .open(id, Mode::Connect(target.session_url(id)))
        .await?;
    loop {
        match next_frame(&mut ws).await? {
            Frame::Message(message) if user_seen(&message) == Some(STARTED) => return Ok(ws),
            Frame::Message(_) => {}
            Frame::Done => return Err(ConnectError::Unexpected("D before the start line")),
            _ => return Err(ConnectError::Unexpected("expected the backlog")),
        }
    }
}

/// The output a message shows, if it is the user's Seen.
fn user_seen(message: &AnyMessage) -> Option<&[u8]> {
    match message {
        AnyMessage::User(Message::Activity(seen)) => Some(&seen.activity.seen_data),
        _ => None,
    }
}

/// Counts what a read brought; `Err` with the reason when the connection is over.
fn receive(
    next: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ledger: &Ledger,
    receipts: &mut Receipts,
    now_ns: u64,
) -> Result<(), String> {
    let bytes = match next {
        Some(Ok(WsMessage::Binary(bytes))) => bytes,
        Some(Ok(WsMessage::Close(_))) | None => return Err("closed by the server".into()),
        Some(Ok(_)) => return Ok(()),
        Some(Err(e)) => return Err(format!("error: {e}")),
    };
    match decode_frame(&bytes) {
        Ok(Frame::Message(message)) => {
            if let Some(seq) = user_seen(&message).and_then(seq_of) {
                ledger.receive(receipts, seq, now_ns);
            }
            Ok(())
        }
        Ok(Frame::Done) => Err("D: the session ended".into()),
        Ok(Frame::Error(text)) => Err(format!("E: {text}")),
        Ok(_) => Err("unexpected frame".into()),
        Err(e) => Err(format!("bad frame: {e}")),
    }
}
