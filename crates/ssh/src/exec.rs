//! Running an exec command for an authenticated user: plain output on stdout, errors on stderr,
//! then an exit status (0 success, 1 failure, 2 usage), EOF and close. Never hangs: only
//! `tail -f` runs until the client goes.

use bytes::Bytes;
use kanava_core::{ChannelName, FrameKind, Nick, Uid};
use kanava_hub::HubError;
use russh::ChannelId;
use russh::server::Handle;
use tokio_util::sync::CancellationToken;

use crate::chat::session::ChatContext;
use crate::clock::Zone;
use crate::command::{Command, USAGE, UsageError};
use crate::line::{event_line, shown_name};
use crate::output::{Flow, OVER_BUDGET, Outgoing, Stopped};
use kanava_core::sanitize;

/// Exit statuses.
const OK: u32 = 0;
const FAILED: u32 = 1;
pub(crate) const USAGE_ERROR: u32 = 2;

/// One session channel's output.
pub(crate) struct Output {
    pub(crate) handle: Handle,
    pub(crate) channel: ChannelId,
    /// Charges and paces what goes to the client (see [`crate::output`]).
    pub(crate) flow: Flow,
}

impl Output {
    /// Sends `text` to stdout; false once the session must end: the client has gone, reads
    /// nothing, or the text does not fit the memory budget (the client is told why on stderr).
    pub(crate) async fn out(&self, text: String) -> bool {
        match Outgoing::charge(self.flow.memory(), Bytes::from(text)) {
            Ok(message) => self.send(message).await,
            Err(_) => {
                self.over_budget().await;
                false
            }
        }
    }

    /// Sends a charged `message` to stdout; false (telling a stuck client why) once the session
    /// must end.
    pub(crate) async fn send(&self, message: Outgoing) -> bool {
        let handle = &self.handle;
        let sent = self
            .flow
            .send(message, |piece| handle.data(self.channel, piece))
            .await;
        match sent {
            Ok(()) => true,
            Err(Stopped::Gone) => false,
            Err(stuck @ Stopped::NotReading(_)) => {
                crate::output::count_closed("stuck");
                tracing::debug!(channel = %self.channel, "ssh session closed: client not reading");
                self.err(stuck.to_string()).await;
                false
            }
        }
    }

    /// Tells the client its session ends because its output does not fit the memory budget.
    pub(crate) async fn over_budget(&self) {
        crate::output::count_closed("memory");
        tracing::debug!(channel = %self.channel, "ssh session closed: memory budget exhausted");
        self.err(OVER_BUDGET.to_owned()).await;
    }

    /// Sends `text` to stderr, unless the connection cannot take it within the write deadline
    /// (a client that stopped reading).
    pub(crate) async fn err(&self, text: String) {
        let sent =
            self.handle
                .extended_data(self.channel, 1, Bytes::from(format!("kanava: {text}\n")));
        let _ = tokio::time::timeout(self.flow.deadline(), sent).await;
    }

    /// Sends the exit status, then EOF, then closes (OpenSSH exits 255 without a status).
    /// Gives up after the write deadline, when the connection takes nothing more.
    pub(crate) async fn finish(self, status: u32) {
        let finished = async {
            let _ = self.handle.exit_status_request(self.channel, status).await;
            let _ = self.handle.eof(self.channel).await;
            let _ = self.handle.close(self.channel).await;
        };
        let _ = tokio::time::timeout(self.flow.deadline(), finished).await;
    }
}

/// The join header an SSH user sends into a room, as a Mles client's would look.
pub(crate) fn header(nick: &Nick, room: &ChannelName) -> Bytes {
    Bytes::from(serde_json::json!({"uid": nick.as_str(), "channel": room.as_str()}).to_string())
}

/// The uid an SSH user has in a room: the name.
pub(crate) fn uid(nick: &Nick) -> Uid {
    Uid::new(nick.as_str()).expect("chat names are valid uids")
}

/// Runs an exec command line for `nick`; returns the exit status.
pub(crate) async fn run(
    ctx: &ChatContext,
    nick: &Nick,
    line: &str,
    zone: &Zone,
    out: &Output,
    cancel: &CancellationToken,
) -> u32 {
    let hub = &ctx.hub;
    let command = match crate::command::parse(line) {
        Ok(command) => command,
        Err(error) => {
            let extra = if matches!(error, UsageError::Unknown(_)) {
                USAGE
            } else {
                ""
            };
            out.err(
                format!("{}\n{extra}", sanitize(error.to_string().as_bytes()))
                    .trim_end()
                    .to_owned(),
            )
            .await;
            return USAGE_ERROR;
        }
    };
    match command {
        Command::Say { room, text } => {
            if let Err(refusal) = ctx.admit(nick, &text) {
                out.err(refusal).await;
                return FAILED;
            }
            if let Err(refusal) = ctx.may_enter(nick, &room).await {
                out.err(refusal).await;
                return FAILED;
            }
            if ctx.directory.muted(nick) {
                // A muted user's messages reach nobody else, and nothing tells them so.
                return OK;
            }
            // A post is no visit: the membership stores no join entry, only the message.
            let joined = match hub.join_shared_without_header(room, uid(nick)).await {
                Ok(joined) => joined,
                Err(error) => return failed(out, error).await,
            };
            let sent = joined
                .member
                .publish(FrameKind::Text, Bytes::from(text))
                .await;
            match sent.and(joined.member.flush().await) {
                Ok(()) => OK,
                Err(error) => failed(out, error).await,
            }
        }
        Command::Tail {
            room,
            lines,
            follow,
        } => {
            let (history, mut live) = if follow {
                match hub
                    .join_shared(room.clone(), uid(nick), header(nick, &room))
                    .await
                {
                    Ok(joined) => (joined.history, Some((joined.member, joined.outbox))),
                    Err(error) => return failed(out, error).await,
                }
            } else {
                match hub.history(room).await {
                    Ok(history) => (history, None),
                    Err(error) => return failed(out, error).await,
                }
            };
            let shown: Vec<String> = history.iter().filter_map(|e| event_line(e, zone)).collect();
            let start = shown.len().saturating_sub(lines);
            let mut text = String::new();
            for line in &shown[start..] {
                text.push_str(line);
                text.push('\n');
            }
            if !text.is_empty() && !out.out(text).await {
                return FAILED;
            }
            if let Some((_member, outbox)) = live.as_mut() {
                loop {
                    let entry = tokio::select! {
                        () = cancel.cancelled() => {
                            if ctx.shutdown.is_cancelled() {
                                out.err("the server is shutting down".to_owned()).await;
                                return FAILED;
                            }
                            return OK;
                        }
                        entry = outbox.recv() => entry,
                    };
                    let Some(entry) = entry else { return FAILED };
                    if let Some(line) = event_line(&entry, zone)
                        && !out.out(line + "\n").await
                    {
                        return OK;
                    }
                }
            }
            OK
        }
        Command::Who { room } => {
            let mut text = String::new();
            for present in hub.members(&room) {
                text.push_str(&shown_name(&present.uid, present.verified));
                text.push('\n');
            }
            if text.is_empty() || out.out(text).await {
                OK
            } else {
                FAILED
            }
        }
        Command::Rooms => {
            let mut text = String::new();
            for (room, people) in hub.rooms() {
                text.push_str(&format!(
                    "#{} {people}\n",
                    sanitize(room.as_str().as_bytes())
                ));
            }
            if text.is_empty() || out.out(text).await {
                OK
            } else {
                FAILED
            }
        }
    }
}

async fn failed(out: &Output, error: HubError) -> u32 {
    let text = match &error {
        HubError::Duplicate { uid, channel } => format!(
            "{} is in #{} as a Mles client; try another room or name",
            sanitize(uid.as_str().as_bytes()),
            sanitize(channel.as_str().as_bytes())
        ),
        HubError::HeldByUnresponsiveNode { uid, channel } => format!(
            "{} is in #{} on a node that does not answer; try again in a few seconds",
            sanitize(uid.as_str().as_bytes()),
            sanitize(channel.as_str().as_bytes())
        ),
        other => other.to_string(),
    };
    out.err(text).await;
    FAILED
}
