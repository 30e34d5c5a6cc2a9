//! The session's user, as a real debug-me user behaves on the wire (spec 6.1, "Sends"): a
//! fresh unsigned session key, the start line, then one Seen per chunk of terminal output,
//! each signed and chained to the one before. Nobody types, so no Entered is ever accepted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kanava_debugme::frame::{Frame, Mode, encode_frame};
use kanava_debugme::hash;
use kanava_debugme::model::{
    Activity, AnyMessage, Control, ControlAction, Hash, Message, PerhapsSigned, Seen, Signature,
};
use kanava_debugme::sign::SessionKey;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::connect::{ConnectError, Target, Ws, send};
use super::ledger::{Ledger, seen_data};
use crate::schedule::{due_at, due_by};

/// The line a debug-me session starts with.
pub(crate) const STARTED: &[u8] = b"** debug-me session started\r\n";

/// The line it ends with, for a shell that exited with status 0.
const ENDED: &[u8] = b"\r\n** debug-me session ended (0)\r\n";

/// The email address given in `InitMode`: without an `@`, so that no server mails the log.
const EMAIL: &str = "kanava-bench";

/// How long closing the connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The user's signing key and the newest activity of its chain.
pub(crate) struct Chain {
    key: SessionKey,
    newest: Option<Hash>,
}

impl Chain {
    /// A chain signed with the session key of `secret`, with no activity yet.
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self {
            key: SessionKey::from_secret(secret),
            newest: None,
        }
    }

    /// The user's `SessionKey` control: its public key, unsigned by GnuPG, protocol `"1"`.
    pub(crate) fn session_key(&self) -> AnyMessage {
        let mut control = Control {
            control: ControlAction::SessionKey(
                PerhapsSigned::UnSigned(self.key.public()),
                b"1".to_vec(),
            ),
            signature: Signature::Other(Vec::new()),
        };
        self.key.sign_control(&mut control);
        AnyMessage::User(Message::Control(control))
    }

    /// The next Seen: `data`, `elapsed` seconds after the previous one, pointing at the newest
    /// activity (none for the first) and at no Entered.
    pub(crate) fn seen(&mut self, data: Vec<u8>, elapsed: f64) -> AnyMessage {
        let mut seen = Activity {
            activity: Seen { seen_data: data },
            prev_activity: self.newest.clone(),
            prev_entered: None,
            elapsed_time: elapsed,
            signature: Signature::Other(Vec::new()),
        };
        self.key.sign_activity(&mut seen);
        self.newest = Some(hash::activity(&seen));
        AnyMessage::User(Message::Activity(seen))
    }
}

/// What the user did.
pub(crate) struct UserOutcome {
    /// Messages sent (the start and end lines not counted).
    pub(crate) sent: u64,
    /// How the connection failed, if it did.
    pub(crate) ended: Option<String>,
}

/// A user with an open session.
pub(crate) struct User {
    ws: Ws,
    chain: Chain,
    last_seen: Instant,
}

impl User {
    /// Starts a session on `target` with a session key from `secret`: the key and the start
    /// line are sent. Returns the user and the session id.
    pub(crate) async fn open(
        target: &Target,
        secret: [u8; 32],
    ) -> Result<(Self, String), ConnectError> {
        let (mut ws, id) = target.open("", Mode::Init(EMAIL.to_owned())).await?;
        let mut chain = Chain::new(secret);
        send(&mut ws, &Frame::Message(chain.session_key())).await?;
        send(&mut ws, &Frame::Message(chain.seen(STARTED.to_vec(), 0.0))).await?;
        let user = Self {
            ws,
            chain,
            last_seen: Instant::now(),
        };
        Ok((user, id))
    }

    /// Sends every message of `ledger`, `size` bytes each, at `rate` per second, and tells
    /// `sent` how many went out; then, once `stop` turns true, ends the session as debug-me
    /// does (the end line, `D`) and closes.
    pub(crate) async fn run(
        mut self,
        ledger: Arc<Ledger>,
        rate: f64,
        size: usize,
        sent: oneshot::Sender<u64>,
        mut stop: watch::Receiver<bool>,
    ) -> UserOutcome {
        let mut out = UserOutcome {
            sent: 0,
            ended: None,
        };
        out.ended = self.send_all(&ledger, rate, size, &mut out.sent).await;
        let _ = sent.send(out.sent);
        if out.ended.is_none() {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    next = self.ws.next() => if let Some(reason) = ended(next) {
                        out.ended = Some(reason);
                        break;
                    }
                }
            }
        }
        if out.ended.is_none() {
            let end = self.next_seen(ENDED.to_vec());
            let _ = send(&mut self.ws, &Frame::Message(end)).await;
            let _ = send(&mut self.ws, &Frame::Done).await;
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
        out
    }

    /// The next Seen of `data`, timed from the previous one.
    fn next_seen(&mut self, data: Vec<u8>) -> AnyMessage {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_seen).as_secs_f64();
        self.last_seen = now;
        self.chain.seen(data, elapsed)
    }

    /// Sends the messages, each when due; returns how the connection failed, if it did.
    async fn send_all(
        &mut self,
        ledger: &Ledger,
        rate: f64,
        size: usize,
        sent: &mut u64,
    ) -> Option<String> {
        let start = Instant::now();
        let total = ledger.len();
        while *sent < total {
            let due = due_by(start.elapsed(), rate).min(total);
            while *sent < due {
                let seen = self.next_seen(seen_data(*sent, size));
                let frame = WsMessage::binary(encode_frame(&Frame::Message(seen)));
                ledger.record_send(*sent);
                if let Err(e) = self.ws.feed(frame).await {
                    return Some(format!("send: {e}"));
                }
                *sent += 1;
            }
            if let Err(e) = self.ws.flush().await {
                return Some(format!("send: {e}"));
            }
            if *sent >= total {
                break;
            }
            let next_due = start + due_at(*sent, rate);
            tokio::select! {
                biased;
                next = self.ws.next() => if let Some(reason) = ended(next) {
                    return Some(reason);
                },
                () = tokio::time::sleep_until(next_due.into()) => {}
            }
        }
        None
    }
}

/// Why a read shows the connection over, if it does; the server sends a user nothing but
/// pings (answered by the library) and developers' messages, of which there are none.
fn ended(next: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) -> Option<String> {
    match next {
        Some(Ok(WsMessage::Close(_))) | None => Some("closed by the server".into()),
        Some(Err(e)) => Some(format!("error: {e}")),
        Some(Ok(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanava_debugme::frame::decode_frame;
    use kanava_debugme::sign::{activity_verifies, control_verifies};

    fn activity(message: AnyMessage) -> Activity<Seen> {
        match message {
            AnyMessage::User(Message::Activity(seen)) => seen,
            other => panic!("not a user Seen: {other:?}"),
        }
    }

    #[test]
    fn the_chain_is_signed_and_linked_as_a_real_user_s() {
        let mut chain = Chain::new([7; 32]);
        let key = match chain.session_key() {
            AnyMessage::User(Message::Control(control)) => {
                let ControlAction::SessionKey(PerhapsSigned::UnSigned(key), version) =
                    &control.control
                else {
                    panic!("not an unsigned session key");
                };
                assert_eq!(version, b"1");
                assert!(control_verifies(key, &control));
                key.clone()
            }
            other => panic!("not a user control: {other:?}"),
        };
        let first = activity(chain.seen(STARTED.to_vec(), 0.0));
        assert_eq!((&first.prev_activity, &first.prev_entered), (&None, &None));
        assert!(activity_verifies(&key, &first));
        let second = activity(chain.seen(seen_data(0, 40), 0.01));
        assert_eq!(second.prev_activity, Some(hash::activity(&first)));
        assert_eq!(second.prev_entered, None);
        assert!(activity_verifies(&key, &second));
        let third = activity(chain.seen(seen_data(1, 40), 0.01));
        assert_eq!(third.prev_activity, Some(hash::activity(&second)));
        assert!(activity_verifies(&key, &third));
    }

    #[test]
    fn the_wire_drops_the_pointers() {
        let mut chain = Chain::new([7; 32]);
        chain.seen(STARTED.to_vec(), 0.0);
        let seen = chain.seen(seen_data(3, 40), 0.5);
        let Ok(Frame::Message(relayed)) =
            decode_frame(&encode_frame(&Frame::Message(seen.clone())))
        else {
            panic!("an L frame");
        };
        let (sent, relayed) = (activity(seen), activity(relayed));
        assert!(sent.prev_activity.is_some());
        assert_eq!(relayed.prev_activity, None);
        assert_eq!(relayed.activity, sent.activity);
        assert_eq!(relayed.signature, sent.signature);
    }
}
