//! The task behind each benchmark session: set up within the limit on concurrent setups, wait
//! until the chat shows the run's room, hand the keyboard to the coordinator, then watch the
//! screen for the other sessions' messages until the coordinator says to stop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use tokio::sync::{Semaphore, mpsc, watch};

use super::connect::{ConnectError, Opened, Target};
use super::ledger::{Ledger, Lookout};
use super::screen::Screen;
use super::tag::RunTag;

/// The room every session starts in.
pub(crate) const LOBBY: &str = "lobby";

/// Longest time one session may take from connecting to showing the run's room.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long ending one session may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What every session task of a run shares.
pub(crate) struct Shared {
    pub(crate) target: Target,
    pub(crate) tag: RunTag,
    /// The run's room, without its `#`.
    pub(crate) room: String,
    /// Bounds how many sessions are being set up at once.
    pub(crate) setup_permits: Semaphore,
}

/// Where the run is, broadcast by the coordinator to every session.
#[derive(Clone)]
pub(crate) enum Phase {
    /// Sessions are being set up.
    Connecting,
    /// Messages are being sent; watch for them.
    Sending(Arc<Ledger>),
    /// Stop watching and leave.
    Stopping,
}

/// The keyboard of a session that is ready, handed to the coordinator, which types the
/// messages.
pub(crate) struct Keyboard {
    /// Index of the session.
    pub(crate) session: usize,
    /// Where keys are typed.
    pub(crate) keys: ChannelWriteHalf<Msg>,
}

/// Tells the coordinator whether a session is ready.
pub(crate) type Ready = mpsc::UnboundedSender<Result<Keyboard, ConnectError>>;

/// How a ready session ended.
pub(crate) struct SessionOutcome {
    /// Why the server ended the session before the coordinator said to stop, if it did.
    pub(crate) ended: Option<String>,
}

/// Runs session `index` of the run; `None` if it could not be set up.
pub(crate) async fn session(
    shared: Arc<Shared>,
    index: usize,
    ready: Ready,
    mut phase: watch::Receiver<Phase>,
) -> Option<SessionOutcome> {
    let mut screen = Screen::new();
    // Holding the permit (or the error of a closed semaphore, which never happens) for the
    // duration of the setup is what limits concurrent setups.
    let permit = shared.setup_permits.acquire().await;
    let user = shared.tag.user(index);
    let setup = enter(&shared, &user, &mut screen);
    let result = tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .unwrap_or(Err(ConnectError::Timeout));
    drop(permit);
    let Opened {
        handle,
        mut output,
        keys,
    } = match result {
        Ok(opened) => opened,
        Err(e) => {
            tracing::debug!(index, error = %e, "session setup failed");
            let _ = ready.send(Err(e));
            return None;
        }
    };
    let _ = ready.send(Ok(Keyboard {
        session: index,
        keys,
    }));
    // The coordinator waits until every session has reported and dropped its sender.
    drop(ready);
    let mut ledger = None;
    let mut lookout = Lookout::default();
    let mut ended = None;
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
                    Phase::Sending(sending) => ledger = Some(sending),
                    Phase::Stopping => break,
                }
            }
            message = output.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    let at_ns = ledger.as_deref().map(Ledger::now_ns);
                    screen.feed(&data);
                    if let (Some(ledger), Some(at_ns)) = (ledger.as_deref(), at_ns) {
                        lookout.look(ledger, index, at_ns, || screen.text());
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    ended = Some(format!("exit status {exit_status}"));
                    break;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) => {
                    ended = Some("channel closed".to_owned());
                    break;
                }
                None => {
                    ended = Some("connection lost".to_owned());
                    break;
                }
                Some(_) => {}
            },
        }
    }
    if let Some(ledger) = &ledger {
        lookout.flush(ledger);
    }
    let leaving = handle.disconnect(Disconnect::ByApplication, "", "en");
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, leaving).await;
    Some(SessionOutcome { ended })
}

/// Opens a session as `user` and waits until its screen shows the run's room, joining it
/// first if it is not the lobby.
async fn enter(shared: &Shared, user: &str, screen: &mut Screen) -> Result<Opened, ConnectError> {
    let mut opened = shared.target.open(user).await?;
    show(&mut opened.output, screen, LOBBY).await?;
    if shared.room != LOBBY {
        let join = Bytes::from(format!("/join #{}\r", shared.room));
        opened.keys.data_bytes(join).await?;
        show(&mut opened.output, screen, &shared.room).await?;
    }
    Ok(opened)
}

/// Feeds the server's output to `screen` until its status line shows `room`.
async fn show(
    output: &mut ChannelReadHalf,
    screen: &mut Screen,
    room: &str,
) -> Result<(), ConnectError> {
    while !screen.is_in(room) {
        match output.wait().await {
            Some(ChannelMsg::Data { data }) => screen.feed(&data),
            Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close) | None => {
                return Err(ConnectError::Ended);
            }
            Some(_) => {}
        }
    }
    Ok(())
}
