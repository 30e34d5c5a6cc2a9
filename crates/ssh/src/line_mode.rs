//! The line interface (`ssh -T host`, or piped stdin): the bot interface. Every line read is a
//! message or a command; every event is one plain line written; nothing is echoed, no escape
//! sequence is ever sent. EOF leaves with status 0.
//!
//! Commands: `/join ROOM`, `/who`, `/rooms`, `/quit`. Replies and errors go to stderr, so that
//! stdout carries only events. The backlog of the room (the last [`BACKLOG`] events) comes first,
//! unless the client sets `KANAVA_BACKLOG=0` (`ssh -o SetEnv=KANAVA_BACKLOG=0`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kanava_core::{ChannelName, FrameKind, Nick};
use kanava_hub::{Hub, Joined};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::command::room;
use crate::exec::{Output, header, uid};
use crate::line::event_line;
use crate::sanitize::sanitize;

/// The answer to `/who`: `2 here: alice, bob`.
pub(crate) fn who_text(hub: &Hub, room: &ChannelName) -> String {
    let names: Vec<String> = hub
        .members(room)
        .iter()
        .map(|u| sanitize(u.as_str().as_bytes()))
        .collect();
    format!("{} here: {}", names.len(), names.join(", "))
}

/// The answer to `/rooms`: `rooms: #dev (2), #lobby (5)`.
pub(crate) fn rooms_text(hub: &Hub) -> String {
    let rooms: Vec<String> = hub
        .rooms()
        .iter()
        .map(|(r, n)| format!("#{} ({n})", sanitize(r.as_str().as_bytes())))
        .collect();
    format!("rooms: {}", rooms.join(", "))
}

/// Events of the room shown on joining.
pub const BACKLOG: usize = 100;

/// The room a line session starts in.
pub const DEFAULT_ROOM: &str = "lobby";

/// Messages a user may send at once: a pasted block of this many lines goes through.
const BURST: f64 = 20.0;

/// Messages per second a user may keep sending after the burst.
const RATE: f64 = 2.0;

/// What the SSH handler feeds a session.
pub(crate) enum Input {
    /// Bytes the client sent.
    Data(Bytes),
    /// The client's window changed to (columns, rows).
    Resize(u32, u32),
    /// The client sent EOF.
    Eof,
}

/// Settings of one line session.
pub(crate) struct Options {
    pub(crate) backlog: bool,
    pub(crate) max_message_bytes: usize,
}

/// The message rate limit of every user, shared by all their connections and sessions.
#[derive(Default)]
pub(crate) struct RateLimits(Mutex<HashMap<String, RateLimit>>);

/// Users tracked before buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

impl RateLimits {
    /// Whether `nick` may send a message now (taking a token if so).
    pub(crate) fn allow(&self, nick: &Nick) -> bool {
        let mut buckets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED_USERS {
            buckets.retain(|_, bucket| !bucket.is_full());
        }
        buckets
            .entry(nick.key())
            .or_insert_with(RateLimit::new)
            .allow()
    }
}

/// A token bucket: `BURST` messages at once, then `RATE` per second.
pub(crate) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    fn is_full(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * RATE >= BURST
    }

    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs a line session until EOF, `/quit`, the client going, or cancellation; returns the exit
/// status.
pub(crate) async fn run(
    hub: &Hub,
    nick: &Nick,
    options: Options,
    out: &Output,
    mut input: mpsc::Receiver<Input>,
    limits: &RateLimits,
    cancel: &CancellationToken,
) -> u32 {
    let start = ChannelName::new(DEFAULT_ROOM).expect("valid default room");
    let Some(mut joined) = enter(hub, nick, start, &options, out).await else {
        return 1;
    };
    let mut pending = BytesMut::new();
    let mut discarding = false;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return 0,
            entry = joined.outbox.recv() => match entry {
                Some(entry) => {
                    if let Some(line) = event_line(&entry)
                        && !out.out(line + "\n").await
                    {
                        return 0;
                    }
                    continue;
                }
                None => return 1,
            },
            event = input.recv() => event,
        };
        let data = match event {
            Some(Input::Data(data)) => data,
            Some(Input::Resize(..)) => continue,
            Some(Input::Eof) | None => {
                let _ = joined.member.flush().await;
                return 0;
            }
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            if std::mem::take(&mut discarding) {
                continue;
            }
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match handle_line(hub, nick, &options, out, &mut joined, limits, line).await {
                Flow::Continue => {}
                Flow::Quit => {
                    let _ = joined.member.flush().await;
                    return 0;
                }
            }
        }
        if pending.len() > options.max_message_bytes {
            out.err(format!(
                "line longer than {} bytes dropped",
                options.max_message_bytes
            ))
            .await;
            pending.clear();
            discarding = true;
        }
    }
}

enum Flow {
    Continue,
    Quit,
}

/// Joins `room`, printing its backlog unless turned off.
async fn enter(
    hub: &Hub,
    nick: &Nick,
    room: ChannelName,
    options: &Options,
    out: &Output,
) -> Option<Joined> {
    match hub
        .join_shared(room.clone(), uid(nick), header(nick, &room))
        .await
    {
        Ok(joined) => {
            if options.backlog {
                let lines: Vec<String> = joined
                    .history
                    .iter()
                    .filter_map(|e| event_line(e))
                    .collect();
                let start = lines.len().saturating_sub(BACKLOG);
                let text: String = lines[start..].iter().map(|l| format!("{l}\n")).collect();
                if !text.is_empty() {
                    out.out(text).await;
                }
            }
            Some(joined)
        }
        Err(error) => {
            out.err(sanitize(error.to_string().as_bytes())).await;
            None
        }
    }
}

async fn handle_line(
    hub: &Hub,
    nick: &Nick,
    options: &Options,
    out: &Output,
    joined: &mut Joined,
    limits: &RateLimits,
    line: &[u8],
) -> Flow {
    if line.is_empty() {
        return Flow::Continue;
    }
    if let Some(command) = line.strip_prefix(b"/") {
        let command = String::from_utf8_lossy(command);
        let mut words = command.split_whitespace();
        match (words.next().unwrap_or_default(), words.next()) {
            ("quit" | "exit", None) => return Flow::Quit,
            ("who" | "names", None) => out.err(who_text(hub, joined.member.channel())).await,
            ("rooms", None) => out.err(rooms_text(hub)).await,
            ("join", Some(word)) => match room(word) {
                Ok(next) => {
                    if let Some(moved) = enter(hub, nick, next, options, out).await {
                        let _ = joined.member.flush().await;
                        *joined = moved;
                    }
                }
                Err(error) => out.err(format!("bad room name: {error}")).await,
            },
            _ => {
                out.err("unknown command; try /join ROOM, /who, /rooms, /quit".to_owned())
                    .await;
            }
        }
        return Flow::Continue;
    }
    if line.len() > options.max_message_bytes {
        out.err(format!(
            "message longer than {} bytes dropped",
            options.max_message_bytes
        ))
        .await;
        return Flow::Continue;
    }
    if !limits.allow(nick) {
        out.err("rate limit: message dropped; slow down".to_owned())
            .await;
        return Flow::Continue;
    }
    let text = Bytes::from(String::from_utf8_lossy(line).into_owned());
    if joined.member.publish(FrameKind::Text, text).await.is_err() {
        return Flow::Quit;
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_paste_through_then_limits() {
        use std::time::Duration;
        let mut limit = RateLimit::new();
        assert!((0..20).all(|_| limit.allow()), "a 20-line paste");
        assert!(!limit.allow());
        limit.last -= Duration::from_secs(1);
        assert!(limit.allow() && limit.allow());
        assert!(!limit.allow());
    }
}
