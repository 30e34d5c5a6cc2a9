//! The full-screen chat for a client with a terminal: messages above, a status line, and an
//! input line that incoming messages never disturb. Input is parsed from the raw bytes of the
//! client's terminal; output is drawn by ratatui into the channel.

mod screen;
pub mod view;

use bytes::Bytes;
use kanava_core::{ChannelName, FrameKind, Nick};
use kanava_hub::{Hub, Joined};
use terminput::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::command::room;
use crate::exec::{Output, header, uid};
use crate::line::{event_text, utc_timestamp};
use crate::line_mode::{BACKLOG, DEFAULT_ROOM, Input, RateLimits, rooms_text, who_text};
use crate::sanitize::sanitize;
use screen::{FRAME_QUEUE, Screen, clamp};
use view::{Action, ChatView};

/// Turns the raw bytes of a client's terminal into events.
#[derive(Debug, Default)]
pub struct InputParser {
    pending: Vec<u8>,
}

impl InputParser {
    /// Parses `data`, one byte at a time; an incomplete sequence waits for the next packet,
    /// up to `limit` bytes. A lone ESC with more bytes behind it in the same packet starts a
    /// sequence instead of being the Esc key.
    pub fn feed(&mut self, data: &[u8], limit: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, byte) in data.iter().enumerate() {
            self.pending.push(*byte);
            if self.pending == [0x1b] && i + 1 < data.len() {
                continue;
            }
            match Event::parse_from(&self.pending) {
                Ok(Some(event)) => {
                    events.push(event);
                    self.pending.clear();
                }
                Ok(None) if self.pending.len() <= limit => {}
                Ok(None) | Err(_) => self.pending.clear(),
            }
        }
        events
    }
}

/// A line for the message pane.
fn pane_line(entry: &kanava_core::Entry) -> Option<String> {
    let time = utc_timestamp(entry.time_ms);
    Some(format!("{} {}", &time[11..16], event_text(entry)?))
}

/// Joins `room` and fills the pane with its backlog.
async fn enter(hub: &Hub, nick: &Nick, room: ChannelName, view: &mut ChatView) -> Option<Joined> {
    match hub
        .join_shared(room.clone(), uid(nick), header(nick, &room))
        .await
    {
        Ok(joined) => {
            view.clear();
            view.room = sanitize(room.as_str().as_bytes());
            let lines: Vec<String> = joined.history.iter().filter_map(|e| pane_line(e)).collect();
            for line in &lines[lines.len().saturating_sub(BACKLOG)..] {
                view.push(line.clone());
            }
            Some(joined)
        }
        Err(error) => {
            view.push(format!("* {}", sanitize(error.to_string().as_bytes())));
            None
        }
    }
}

/// Settings of one chat session.
pub(crate) struct Options {
    /// The client's terminal size (columns, rows) from its pty-req.
    pub(crate) size: (u32, u32),
    /// Longest message sent.
    pub(crate) max_message_bytes: usize,
}

/// Runs the chat for a terminal until `/quit`, Ctrl-D, EOF or the client going.
pub(crate) async fn run(
    hub: &Hub,
    nick: &Nick,
    Options {
        size,
        max_message_bytes,
    }: Options,
    out: &Output,
    mut input: mpsc::Receiver<Input>,
    limits: &RateLimits,
    cancel: &CancellationToken,
) -> u32 {
    let (frames, mut outgoing) = mpsc::channel::<Bytes>(FRAME_QUEUE);
    let (handle, channel) = (out.handle.clone(), out.channel);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if handle.data(channel, frame).await.is_err() {
                break;
            }
        }
    });
    let Ok(mut screen) = Screen::new(clamp(size.0, size.1), frames) else {
        return 1;
    };
    let mut view = ChatView::default();
    let lobby = ChannelName::new(DEFAULT_ROOM).expect("valid default room");
    let Some(mut joined) = enter(hub, nick, lobby, &mut view).await else {
        return 1;
    };
    view.push(format!("* welcome, {nick}. /help lists the commands."));
    let mut parser = InputParser::default();
    let status = loop {
        view.members = hub.member_count(joined.member.channel());
        if screen.draw(&view).is_err() {
            break 0;
        }
        let event = tokio::select! {
            () = cancel.cancelled() => break 0,
            entry = joined.outbox.recv() => match entry {
                Some(entry) => {
                    if let Some(line) = pane_line(&entry) {
                        view.push(line);
                    }
                    continue;
                }
                None => break 1,
            },
            event = input.recv() => event,
        };
        let data = match event {
            Some(Input::Data(data)) => data,
            Some(Input::Resize(cols, rows)) => {
                if screen.resize(clamp(cols, rows)).is_err() {
                    break 0;
                }
                continue;
            }
            Some(Input::Eof) | None => break 0,
        };
        let mut quit = false;
        for event in parser.feed(&data, max_message_bytes) {
            match view.handle(&event, screen.page()) {
                Action::Redraw => {}
                Action::Quit => quit = true,
                Action::Submit(line) => {
                    quit |= submit(
                        hub,
                        nick,
                        &mut view,
                        &mut joined,
                        limits,
                        line,
                        max_message_bytes,
                    )
                    .await;
                }
            }
        }
        if quit {
            break 0;
        }
    };
    let _ = screen.restore();
    drop(screen);
    let _ = writer.await;
    let _ = joined.member.flush().await;
    status
}

/// Sends a message or runs a command; returns whether to quit.
async fn submit(
    hub: &Hub,
    nick: &Nick,
    view: &mut ChatView,
    joined: &mut Joined,
    limits: &RateLimits,
    line: String,
    max_message_bytes: usize,
) -> bool {
    if let Some(command) = line.strip_prefix('/') {
        let mut words = command.split_whitespace();
        match (words.next().unwrap_or_default(), words.next()) {
            ("quit" | "exit", None) => return true,
            ("help", None) => view
                .push("* /join ROOM  /who  /rooms  /quit (or Ctrl-D); PgUp/PgDn scroll".to_owned()),
            ("who" | "names", None) => {
                view.push(format!("* {}", who_text(hub, joined.member.channel())));
            }
            ("rooms", None) => view.push(format!("* {}", rooms_text(hub))),
            ("join", Some(word)) => match room(word) {
                Ok(next) => {
                    if let Some(moved) = enter(hub, nick, next, view).await {
                        let _ = joined.member.flush().await;
                        *joined = moved;
                    }
                }
                Err(error) => view.push(format!("* bad room name: {error}")),
            },
            _ => view.push("* unknown command; /help lists them".to_owned()),
        }
        return false;
    }
    if line.len() > max_message_bytes {
        view.push(format!(
            "* message longer than {max_message_bytes} bytes not sent"
        ));
    } else if !limits.allow(nick) {
        view.push("* rate limit: message not sent; slow down".to_owned());
    } else if joined
        .member
        .publish(FrameKind::Text, Bytes::from(line.clone()))
        .await
        .is_ok()
    {
        // Nothing is echoed by the server; show one's own message here.
        let time = utc_timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        );
        view.push(format!(
            "{} <{nick}> {}",
            &time[11..16],
            sanitize(line.as_bytes())
        ));
    }
    false
}
