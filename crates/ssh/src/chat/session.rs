//! One user's chat session, whatever shows it: the rooms they have open, the lines they see,
//! and what their messages and slash commands do. The full-screen chat and the line interface
//! are two front ends over this.
//!
//! A user may have several rooms open; one is current. Messages go to the current room;
//! traffic of the others counts as unread until the user switches to them (`/join`, `/switch`,
//! or the full-screen chat's room keys).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Entry, FrameKind, KeyAdded, KeySharing, Nick, PrivateMessage, Rename, Topic,
};
use kanava_hub::{Accounts, Hub, Joined, Present, RoomNotice};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::directory::{Directory, Mode, Notice, Registration};
use super::slash::{self, Slash};
use super::text;
use crate::clock::Zone;
use crate::exec::{header, uid};
use crate::files::ChatFiles;
use crate::line::{event_text, shown_name};
use crate::now_ms;
use kanava_core::sanitize;

/// The room every session starts in, and `/part` returns to.
pub const DEFAULT_ROOM: &str = "lobby";

/// How long a name must wait after a rename (`/nick`) before the next.
pub const RENAME_COOLDOWN: Duration = Duration::from_secs(3600);

/// Events of a room shown on entering it, unless configured otherwise.
pub const DEFAULT_BACKLOG: usize = 100;

/// Rooms one session may hold open at once, the lobby included: each is a membership in the
/// hub and, in the full-screen chat, a pane.
pub const MAX_OPEN_ROOMS: usize = 50;

/// Everything sessions share: the server's services and settings.
#[derive(Clone)]
pub(crate) struct ChatContext {
    pub(crate) hub: Hub,
    pub(crate) accounts: Accounts,
    pub(crate) directory: Directory,
    /// The operators file and the message of the day (read at each check and login).
    pub(crate) files: Arc<ChatFiles>,
    pub(crate) limits: Arc<kanava_hub::UserLimits>,
    pub(crate) max_message_bytes: usize,
    pub(crate) backlog: usize,
    pub(crate) key_sharing: KeySharing,
    /// The shortest time between two full-screen redraws caused by other people's traffic.
    pub(crate) frame_interval: Duration,
    /// Cancelled when the server shuts down: every command's stop signal derives from it, and
    /// a full-screen chat tells its user why it ends.
    pub(crate) shutdown: CancellationToken,
}

impl ChatContext {
    /// Whether `nick` may send `text` now: within the size limit, and the rate limit (taking
    /// a token). The refusal says why, for the sender only.
    pub(crate) fn admit(&self, nick: &Nick, text: &str) -> Result<(), String> {
        if text.len() > self.max_message_bytes {
            return Err(format!(
                "message longer than {} bytes not sent",
                self.max_message_bytes
            ));
        }
        if !self.limits.allow(nick) {
            return Err("rate limit: message not sent; slow down".to_owned());
        }
        Ok(())
    }

    /// Whether `nick` may enter `room`: a room that exists (someone is in it, or it has
    /// history) and the lobby always; a new one within the user's rooms-per-hour limit.
    pub(crate) async fn may_enter(&self, nick: &Nick, room: &ChannelName) -> Result<(), String> {
        if room == &lobby() || self.hub.member_count(room) > 0 {
            return Ok(());
        }
        // One entry says whether the room has history; its whole history may be megabytes.
        match self.hub.history_before(room.clone(), u64::MAX, 1).await {
            Ok(newest) if !newest.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
        if self.limits.allow_new_room(nick) {
            Ok(())
        } else {
            Err("room not created: you have created too many rooms in the last hour; join one that exists".to_owned())
        }
    }
}

/// What kind of line the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Traffic of the current room.
    Room,
    /// The user's own message, as the user's terminal shows it (the server echoes nothing).
    Own,
    /// A private message, either way.
    Private,
    /// An announcement (kicks, topics, away).
    Notice,
    /// An answer to the user's own command, or an error.
    Reply,
}

/// One line for the user: sanitised text, its time, and the name to colour if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) kind: Kind,
    pub(crate) time_ms: u64,
    pub(crate) text: String,
    /// The sender's name as it appears in `text`, for colouring.
    pub(crate) nick: Option<String>,
    /// `text` as separate lines with tabs expanded, for a screen that shows line breaks; empty
    /// when `text` is a single line as it is.
    pub(crate) lines: Vec<String>,
}

impl Shown {
    /// Whether this line calls for `me`: someone else's message in a room naming `me` as a
    /// whole word (in any case), or a private message to `me`. The full-screen chat highlights
    /// it and rings the bell.
    pub(crate) fn calls(&self, me: &Nick) -> bool {
        match self.kind {
            Kind::Private => self.text.starts_with(PM_FROM),
            Kind::Room => {
                let Some(sender) = &self.nick else {
                    return false;
                };
                if sender.eq_ignore_ascii_case(me.as_str()) {
                    return false;
                }
                let body = match self.text.find(sender.as_str()) {
                    Some(at) => &self.text[at + sender.len()..],
                    None => self.text.as_str(),
                };
                names(body, me)
            }
            Kind::Own | Kind::Notice | Kind::Reply => false,
        }
    }

    /// An answer to the user. It may quote what they typed (an unknown command, a pasted
    /// argument), so it is sanitised whole; sanitising twice changes nothing.
    fn reply(text: impl Into<String>) -> Self {
        Self {
            kind: Kind::Reply,
            time_ms: now_ms(),
            text: sanitize(text.into().as_bytes()),
            nick: None,
            lines: Vec::new(),
        }
    }

    fn of_entry(entry: &Entry) -> Option<Self> {
        let text = event_text(entry)?;
        let body = match entry.payload.strip_prefix(b"/me ") {
            Some(action) => action,
            None => &entry.payload,
        };
        // The text ends with the sanitised body; what comes before it starts the first line.
        // Most messages are one line without tabs and need nothing more.
        let lines = match entry.kind {
            FrameKind::Text if text::has_breaks(body) => text
                .strip_suffix(sanitize(body).as_str())
                .map(|prefix| text::lines(prefix, body))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Some(Self {
            kind: Kind::Room,
            time_ms: entry.time_ms,
            text,
            nick: Some(shown_name(&entry.sender, entry.verified)),
            lines,
        })
    }

    fn private(message: &PrivateMessage, me: &Nick) -> Self {
        let (start, other) = if &message.to == me {
            (PM_FROM, &message.from)
        } else {
            ("[PM to ", &message.to)
        };
        let prefix = format!("{start}{other}] ");
        Self {
            kind: Kind::Private,
            time_ms: message.time_ms,
            text: format!("{prefix}{}", sanitize(message.text.as_bytes())),
            nick: Some(other.to_string()),
            lines: text::lines(&prefix, message.text.as_bytes()),
        }
    }
}

/// How a private message to the user starts.
const PM_FROM: &str = "[PM from ";

/// Whether `text` holds `name` as a whole word, in any case: not inside a longer name
/// (`alice2`, `malice`, `alice-bot`), but before punctuation (`alice:`, `alice.`).
fn names(text: &str, name: &Nick) -> bool {
    let name = name.as_str().as_bytes();
    let text = text.as_bytes();
    let in_word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
    text.windows(name.len()).enumerate().any(|(at, window)| {
        let end = at + name.len();
        let before = at.checked_sub(1).map(|i| text[i]);
        let after = text.get(end).copied();
        let dotted = after == Some(b'.') && text.get(end + 1).is_some_and(|b| in_word(*b));
        window.eq_ignore_ascii_case(name)
            && !before.is_some_and(|b| in_word(b) || b == b'.')
            && !after.is_some_and(in_word)
            && !dotted
    })
}

/// What the session's next event was.
pub(crate) enum Next {
    /// Lines to show.
    Show(Vec<Shown>),
    /// The unread counts of other rooms changed.
    Unread,
    /// The number of people in the current room changed.
    Members,
    /// The session is over, with this exit status and a last line.
    End(u32, Shown),
}

/// Whether the session goes on after a submitted line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The line was not sent (too long, too fast, or the room refused it): a front end keeps
    /// it for the user to send again.
    Refused,
    Quit,
}

struct OpenRoom {
    joined: Joined,
    unread: usize,
    /// The oldest entry of the room shown so far, while another room is current.
    oldest_seq: Option<u64>,
}

/// Lines of rooms not shown kept for a front end that keeps a pane per room, until it takes
/// them: it takes them at each [`Next::Unread`], so this is only a bound.
const ELSEWHERE: usize = 1024;

/// A user's session.
pub(crate) struct ChatSession {
    ctx: ChatContext,
    nick: Nick,
    fingerprint: String,
    rooms: Vec<OpenRoom>,
    current: usize,
    /// The oldest entry of the current room shown so far, for loading older ones.
    oldest_seq: Option<u64>,
    registration: Registration,
    notices: mpsc::Receiver<Notice>,
    /// The number of people in the current room.
    presence: watch::Receiver<usize>,
    /// Who was in the current room when last looked, to tell arrivals and departures.
    here: Vec<Present>,
    /// Whether arrivals and departures are hidden (`/quiet`).
    quiet: bool,
    /// Whether entering a room shows its recent history and topic (bots may turn it off).
    backlog: bool,
    /// Whether a limit refused what the line being submitted would have sent.
    refused: bool,
    /// The time zone the user reads times in (`/tz`, or the client's `TZ`); for this session
    /// only.
    zone: Zone,
    /// Whether the front end keeps each room's lines itself (the full-screen chat): switching
    /// to an open room then shows no backlog, and other rooms' traffic is kept for it.
    keeps_panes: bool,
    /// Traffic of rooms not shown, for a front end that keeps panes, with its room.
    elsewhere: Vec<(ChannelName, Shown)>,
    /// Whether a mention or a private message rings the terminal's bell (`/bell`).
    bell: bool,
}

fn lobby() -> ChannelName {
    ChannelName::new(DEFAULT_ROOM).expect("valid default room")
}

impl ChatSession {
    /// Starts a session in the default room. Returns it with what to show first: unless
    /// `backlog` is off, the room's recent history and topic; then private messages that
    /// arrived while the user was away. `backlog` applies to every room the session enters.
    pub(crate) async fn start(
        ctx: ChatContext,
        nick: Nick,
        fingerprint: String,
        mode: Mode,
        cancel: CancellationToken,
        backlog: bool,
    ) -> Result<(Self, Vec<Shown>), String> {
        // A name bound to a key is shown as it was bound (`ALICE` logs in as `alice`).
        let nick = match ctx.accounts.identity(nick.clone()).await {
            Ok(Some(identity)) => identity.nick,
            _ => nick,
        };
        let (registration, notices) =
            ctx.directory
                .register(&nick, &fingerprint, mode, cancel, now_ms());
        let joined = join(&ctx.hub, &nick, lobby()).await?;
        registration.moved_to(joined.member.channel());
        let presence = joined.member.presence();
        let here = ctx.hub.members(joined.member.channel());
        let mut session = Self {
            here,
            quiet: false,
            ctx,
            nick,
            fingerprint,
            rooms: vec![OpenRoom {
                joined,
                unread: 0,
                oldest_seq: None,
            }],
            current: 0,
            oldest_seq: None,
            registration,
            notices,
            presence,
            backlog,
            refused: false,
            zone: Zone::utc(),
            keeps_panes: false,
            elsewhere: Vec::new(),
            bell: true,
        };
        let history = std::mem::take(&mut session.rooms[0].joined.history);
        let mut shown = session.motd().await;
        shown.extend(session.backlog(&history).await);
        let unread = session
            .ctx
            .accounts
            .take_unread_private(session.nick.clone())
            .await
            .map_err(|e| e.to_string())?;
        if !unread.is_empty() {
            let plural = if unread.len() == 1 { "" } else { "s" };
            shown.push(Shown::reply(format!(
                "* {} private message{plural} while you were away:",
                unread.len()
            )));
            shown.extend(unread.iter().map(|m| Shown::private(m, &session.nick)));
        }
        Ok((session, shown))
    }

    /// The message of the day, one notice a line (sanitised, at most [`MOTD_BYTES`] of it),
    /// when the session shows what it enters (bots that skip the backlog skip it too).
    async fn motd(&self) -> Vec<Shown> {
        let Some(path) = self.ctx.files.motd().filter(|_| self.backlog) else {
            return Vec::new();
        };
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut text = Vec::new();
            std::fs::File::open(&path)?
                .take(MOTD_BYTES)
                .read_to_end(&mut text)
                .map(|_| text)
        })
        .await;
        match read {
            Ok(Ok(text)) => String::from_utf8_lossy(&text)
                .lines()
                .map(|line| Shown {
                    kind: Kind::Notice,
                    time_ms: now_ms(),
                    text: sanitize(line.as_bytes()),
                    nick: None,
                    lines: Vec::new(),
                })
                .collect(),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the message of the day cannot be read");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// The user's name.
    pub(crate) fn nick(&self) -> &Nick {
        &self.nick
    }

    /// The time zone the user reads times in.
    pub(crate) fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Shows times in `zone` from now on (the zone the client sent as `TZ`).
    pub(crate) fn set_zone(&mut self, zone: Zone) {
        self.zone = zone;
    }

    /// The current room.
    pub(crate) fn room(&self) -> &ChannelName {
        self.rooms[self.current].joined.member.channel()
    }

    /// Names in the current room.
    pub(crate) fn member_count(&self) -> usize {
        self.ctx.hub.member_count(self.room())
    }

    /// The open rooms with their unread counts, in the order they were opened (the lobby
    /// first), and which of them is current.
    pub(crate) fn open_rooms(&self) -> (Vec<(String, usize)>, usize) {
        let rooms = self
            .rooms
            .iter()
            .map(|r| (label(r.joined.member.channel()), r.unread))
            .collect();
        (rooms, self.current)
    }

    /// Whether `room` is open.
    pub(crate) fn is_open(&self, room: &ChannelName) -> bool {
        self.rooms.iter().any(|r| r.joined.member.channel() == room)
    }

    /// Tells the session that its front end keeps each room's lines (the full-screen chat):
    /// switching to an open room shows no backlog again, and the traffic of rooms not shown
    /// waits in [`take_elsewhere`](Self::take_elsewhere) after each [`Next::Unread`].
    pub(crate) fn keep_panes(&mut self) {
        self.keeps_panes = true;
    }

    /// The lines of rooms not shown that came since last asked, each with its room.
    pub(crate) fn take_elsewhere(&mut self) -> Vec<(ChannelName, Shown)> {
        std::mem::take(&mut self.elsewhere)
    }

    /// Whether mentions and private messages ring the bell (`/bell on`, the default).
    pub(crate) fn bell(&self) -> bool {
        self.bell
    }

    /// Makes the open room at `index` (in [`open_rooms`](Self::open_rooms)' order) current;
    /// what to show, as `/join` of an open room.
    pub(crate) async fn show_room(&mut self, index: usize) -> Vec<Shown> {
        if index >= self.rooms.len() || index == self.current {
            return Vec::new();
        }
        self.keep_oldest();
        self.make_current(index).await
    }

    /// Names present in the current room, for completion.
    pub(crate) fn names_here(&self) -> Vec<String> {
        self.ctx
            .hub
            .members(self.room())
            .iter()
            .map(|p| p.uid.as_str().to_owned())
            .collect()
    }

    /// The last lines of `history`, with the room's topic, as shown on entering a room; none
    /// when the session shows no backlog.
    async fn backlog(&mut self, history: &[Arc<Entry>]) -> Vec<Shown> {
        if !self.backlog {
            self.oldest_seq = None;
            return Vec::new();
        }
        let mut shown: Vec<(u64, Shown)> = history
            .iter()
            .filter(|e| !self.ignored(e))
            .filter_map(|e| Some((e.seq, Shown::of_entry(e)?)))
            .collect();
        shown.drain(..shown.len().saturating_sub(self.ctx.backlog));
        self.oldest_seq = shown.first().map(|(seq, _)| *seq);
        let mut lines: Vec<Shown> = shown.into_iter().map(|(_, s)| s).collect();
        if let Ok(Some(topic)) = self.ctx.accounts.topic(self.room().clone()).await {
            lines.push(topic_line(&topic));
        }
        lines
    }

    /// Up to `limit` lines older than the oldest shown, from the store, oldest first; none once
    /// the store has no older ones.
    pub(crate) async fn older(&mut self, limit: usize) -> Vec<Shown> {
        let Some(before) = self.oldest_seq else {
            return Vec::new();
        };
        let Ok(entries) = self
            .ctx
            .hub
            .history_before(self.room().clone(), before, limit)
            .await
        else {
            return Vec::new();
        };
        // Once the store has nothing older, stop asking.
        self.oldest_seq = entries.first().map(|e| e.seq);
        entries
            .iter()
            .filter(|e| !self.ignored(e))
            .filter_map(Shown::of_entry)
            .collect()
    }

    fn ignored(&self, entry: &Entry) -> bool {
        self.ctx
            .directory
            .ignores(&self.nick, entry.sender.as_str())
    }

    /// Waits for the next thing to show: traffic of the current room, unread traffic of the
    /// others, or a notice.
    pub(crate) async fn next(&mut self) -> Next {
        let Self {
            notices,
            rooms,
            presence,
            ..
        } = self;
        let traffic = poll_fn(|cx| {
            if let Poll::Ready(notice) = notices.poll_recv(cx) {
                return Poll::Ready(Err(notice));
            }
            for (i, room) in rooms.iter_mut().enumerate() {
                if let Poll::Ready(entry) = room.joined.outbox.poll_recv(cx) {
                    return Poll::Ready(Ok((i, entry)));
                }
            }
            Poll::Pending
        });
        let polled = tokio::select! {
            polled = traffic => polled,
            Ok(()) = presence.changed() => return self.arrivals(),
        };
        match polled {
            Ok((i, Some(entry))) => {
                let Some(shown) = Shown::of_entry(&entry).filter(|_| !self.ignored(&entry)) else {
                    return Next::Show(Vec::new());
                };
                if i == self.current {
                    Next::Show(vec![shown])
                } else {
                    self.rooms[i].unread += 1;
                    if self.keeps_panes && self.elsewhere.len() < ELSEWHERE {
                        let room = self.rooms[i].joined.member.channel().clone();
                        self.elsewhere.push((room, shown));
                    }
                    Next::Unread
                }
            }
            Ok((i, None)) => {
                let room = label(self.rooms[i].joined.member.channel());
                Next::End(1, Shown::reply(format!("* dropped from #{room}: too slow")))
            }
            Err(Some(Notice::Info(text))) => Next::Show(vec![Shown {
                kind: Kind::Notice,
                time_ms: now_ms(),
                text,
                nick: None,
                lines: Vec::new(),
            }]),
            Err(Some(Notice::Private(message))) => {
                if message.to == self.nick && message.from != self.nick {
                    self.ctx
                        .directory
                        .set_last_sender(&self.nick, &message.from);
                }
                Next::Show(vec![Shown::private(&message, &self.nick)])
            }
            Err(Some(Notice::Kicked(reason))) => Next::End(1, Shown::reply(format!("* {reason}"))),
            Err(None) => Next::End(1, Shown::reply("* the server is closing")),
        }
    }

    /// Who came to and left the current room since it was last looked at: a line each, unless
    /// the user asked for quiet.
    fn arrivals(&mut self) -> Next {
        // Both lists are sorted by uid (`Hub::members`), so each lookup is a binary search:
        // a room that hundreds enter at once costs each session n log n, not n².
        let now = self.ctx.hub.members(self.room());
        let absent = |list: &[Present], p: &Present| {
            list.binary_search_by(|other| other.uid.cmp(&p.uid))
                .is_err()
        };
        let came = now
            .iter()
            .filter(|p| absent(&self.here, p))
            .map(|p| (p, "joined"));
        let went = self
            .here
            .iter()
            .filter(|h| absent(&now, h))
            .map(|p| (p, "left"));
        let shown: Vec<Shown> = came
            .chain(went)
            .filter(|_| !self.quiet)
            .map(|(p, what)| {
                let name = shown_name(&p.uid, p.verified);
                Shown {
                    kind: Kind::Notice,
                    time_ms: now_ms(),
                    text: format!("* {name} {what}"),
                    nick: Some(name),
                    lines: Vec::new(),
                }
            })
            .collect();
        self.here = now;
        if shown.is_empty() {
            Next::Members
        } else {
            Next::Show(shown)
        }
    }

    /// Sends a message, or runs a `/command`; returns what to show and whether to go on.
    pub(crate) async fn submit(&mut self, line: &str) -> (Vec<Shown>, Flow) {
        self.refused = false;
        let (shown, flow) = match line.strip_prefix('/') {
            Some(command) => match slash::parse(command) {
                Ok(slash) => self.command(slash).await,
                Err(error) => (vec![Shown::reply(format!("* {error}"))], Flow::Continue),
            },
            None => (self.say(line).await.into_iter().collect(), Flow::Continue),
        };
        match flow {
            Flow::Continue if self.refused => (shown, Flow::Refused),
            flow => (shown, flow),
        }
    }

    /// Checks a message against the size and rate limits.
    fn admit(&mut self, text: &str) -> Result<(), Shown> {
        self.ctx.admit(&self.nick, text).map_err(|refusal| {
            self.refused = true;
            Shown::reply(format!("* {refusal}"))
        })
    }

    /// Posts `text` to the current room; returns the user's own copy to show, or an error.
    async fn say(&mut self, text: &str) -> Option<Shown> {
        if text.is_empty() {
            return None;
        }
        if let Err(refused) = self.admit(text) {
            return Some(refused);
        }
        let own = Entry {
            seq: 0,
            kind: FrameKind::Text,
            sender: uid(&self.nick),
            verified: true,
            payload: Bytes::from(text.to_owned()),
            time_ms: now_ms(),
        };
        // A muted user's messages are shown to that user only.
        if !self.ctx.directory.muted(&self.nick) {
            let member = &self.rooms[self.current].joined.member;
            if let Err(error) = member.publish(FrameKind::Text, own.payload.clone()).await {
                self.refused = true;
                return Some(Shown::reply(format!("* not sent: {error}")));
            }
        }
        Shown::of_entry(&own).map(|shown| Shown {
            kind: Kind::Own,
            ..shown
        })
    }

    fn is_op(&self) -> bool {
        self.ctx.files.ops().contains(&self.fingerprint)
    }

    async fn command(&mut self, slash: Slash) -> (Vec<Shown>, Flow) {
        let op_only = matches!(
            slash,
            Slash::Kick(..) | Slash::Ban(..) | Slash::Unban(_) | Slash::Banned | Slash::Mute(_)
        );
        if op_only && !self.is_op() {
            return (
                vec![Shown::reply("* only operators may do that")],
                Flow::Continue,
            );
        }
        let reply = |text: String| vec![Shown::reply(text)];
        let shown = match slash {
            Slash::Quit => return (Vec::new(), Flow::Quit),
            Slash::Help => slash::help(self.is_op())
                .into_iter()
                .map(|line| Shown::reply(format!("* {line}")))
                .collect(),
            Slash::Who => reply(format!("* {}", who_text(&self.ctx.hub, self.room()))),
            Slash::Rooms => reply(format!("* {}", rooms_text(&self.ctx.hub))),
            Slash::Join(room) => self.switch(room).await,
            Slash::Switch(room) if self.is_open(&room) => self.switch(room).await,
            Slash::Switch(room) => reply(format!(
                "* #{0} is not open; /join #{0} opens it",
                label(&room)
            )),
            Slash::Bell(on) => {
                self.bell = on;
                reply(
                    if on {
                        "* bell on: in the full-screen chat, a mention of your name or a private message rings the bell"
                    } else {
                        "* bell off: the full-screen chat still highlights mentions and private messages, without the bell"
                    }
                    .into(),
                )
            }
            Slash::Part => self.part().await,
            Slash::Whois(name) => self.whois(&name).await,
            Slash::Me(action) => self
                .say(&format!("/me {action}"))
                .await
                .into_iter()
                .collect(),
            Slash::Msg(to, text) => self.private(to, &text).await,
            Slash::Reply(text) => match self.ctx.directory.last_sender(&self.nick) {
                Some(to) => self.private(to, &text).await,
                None => reply("* nobody has sent you a private message yet".into()),
            },
            Slash::Away(reason) => {
                let shown = sanitize(reason.as_bytes());
                self.ctx.directory.set_away(&self.nick, Some(reason));
                self.announce_change(format!("* {} is away: {shown}", self.nick))
            }
            Slash::Tz(None) => reply(format!(
                "* times are shown in {}; /tz ZONE changes it",
                self.zone.describe(now_ms())
            )),
            Slash::Tz(Some(name)) => match Zone::named(&name) {
                Ok(zone) => {
                    self.zone = zone;
                    reply(format!(
                        "* times are shown in {} from now on",
                        self.zone.describe(now_ms())
                    ))
                }
                Err(error) => {
                    self.refused = true;
                    reply(format!("* {error}"))
                }
            },
            Slash::Quiet => {
                self.quiet = !self.quiet;
                reply(
                    if self.quiet {
                        "* quiet: people joining and leaving are not shown; /quiet shows them again"
                    } else {
                        "* people joining and leaving are shown again"
                    }
                    .into(),
                )
            }
            Slash::Back if self.ctx.directory.away(&self.nick).is_none() => {
                reply("* you are not away".into())
            }
            Slash::Back => {
                self.ctx.directory.set_away(&self.nick, None);
                self.announce_change(format!("* {} is back", self.nick))
            }
            Slash::Ignore(None) => match self.ctx.directory.ignored(&self.nick) {
                list if list.is_empty() => reply("* you ignore nobody".into()),
                list => reply(format!("* you ignore: {}", list.join(", "))),
            },
            Slash::Ignore(Some(name)) if name == self.nick => {
                reply("* you cannot ignore yourself".into())
            }
            Slash::Ignore(Some(name)) => {
                self.ctx.directory.set_ignore(&self.nick, &name, true);
                reply(format!(
                    "* ignoring {name}: their messages are hidden from you"
                ))
            }
            Slash::Unignore(name) => {
                if self.ctx.directory.set_ignore(&self.nick, &name, false) {
                    reply(format!("* no longer ignoring {name}"))
                } else {
                    reply(format!("* you were not ignoring {name}"))
                }
            }
            Slash::Topic(None) => match self.ctx.accounts.topic(self.room().clone()).await {
                // An answer, not an event: the line interface writes it to stderr.
                Ok(Some(topic)) => vec![Shown {
                    kind: Kind::Reply,
                    ..topic_line(&topic)
                }],
                Ok(None) => reply(format!("* #{} has no topic", label(self.room()))),
                Err(error) => reply(format!("* {error}")),
            },
            Slash::Topic(Some(text)) => self.set_topic(text).await,
            Slash::Keys => self.keys().await,
            Slash::KeyAdd(line) => self.add_key(&line).await,
            Slash::Nick(new) => self.rename(new).await,
            Slash::Release(confirm) => self.release(confirm).await,
            Slash::KeyRemove(fingerprint) => {
                match self
                    .ctx
                    .accounts
                    .remove_key(self.nick.clone(), fingerprint.clone())
                    .await
                {
                    Ok(true) => reply(format!("* key {fingerprint} removed")),
                    Ok(false) => reply(format!(
                        "* {fingerprint} is not one of your keys, or is your only active one"
                    )),
                    Err(error) => reply(format!("* {error}")),
                }
            }
            Slash::Kick(name, reason) => {
                // The reason reaches the kicked user's terminal and the room: no control
                // characters.
                let why = reason
                    .map(|r| format!(": {}", sanitize(r.as_bytes())))
                    .unwrap_or_default();
                let count = self
                    .ctx
                    .hub
                    .chat()
                    .end_sessions(&name, &format!("kicked by {}{why}", self.nick));
                if count == 0 {
                    reply(format!("* {name} is not connected"))
                } else {
                    self.announce(format!("* {name} was kicked by {}{why}", self.nick));
                    Vec::new()
                }
            }
            Slash::Ban(name, duration) => self.ban(name, duration).await,
            Slash::Unban(who) => match self.ctx.accounts.unban(who.clone()).await {
                Ok(lifted) if lifted.is_empty() => reply(format!("* no ban matches {who}")),
                Ok(lifted) => reply(format!(
                    "* lifted: {}",
                    lifted
                        .iter()
                        .map(|b| format!("{} ({})", b.fingerprint, b.nick))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(error) => reply(format!("* {error}")),
            },
            Slash::Banned => match self.ctx.accounts.bans(now_ms()).await {
                Ok(bans) if bans.is_empty() => reply("* no bans".into()),
                Ok(bans) => bans.iter().map(|b| Shown::reply(ban_line(b))).collect(),
                Err(error) => reply(format!("* {error}")),
            },
            Slash::Mute(name) => {
                if self.ctx.directory.toggle_mute(&name) {
                    reply(format!(
                        "* {name} is muted: their messages reach nobody else"
                    ))
                } else {
                    reply(format!("* {name} is no longer muted"))
                }
            }
        };
        (shown, Flow::Continue)
    }

    /// Tells everyone in the current room (over every transport) something.
    fn announce(&self, text: String) {
        self.ctx
            .hub
            .chat()
            .announce(self.room(), RoomNotice::Info(text));
    }

    /// Announces a change the user made to themselves (away, back) within the announcement
    /// rate limit; past it the change holds unannounced, and the user is told so.
    fn announce_change(&self, text: String) -> Vec<Shown> {
        if self.ctx.limits.allow_announcement(&self.nick) {
            self.announce(text);
            Vec::new()
        } else {
            vec![Shown::reply(format!(
                "* done, not announced: {ANNOUNCEMENTS}"
            ))]
        }
    }

    /// Makes `room` current, opening it if needed.
    async fn switch(&mut self, room: ChannelName) -> Vec<Shown> {
        if self.room() == &room {
            return vec![Shown::reply(format!(
                "* you are in #{} already",
                label(&room)
            ))];
        }
        match self
            .rooms
            .iter()
            .position(|r| r.joined.member.channel() == &room)
        {
            Some(i) => {
                self.keep_oldest();
                self.make_current(i).await
            }
            None => self.open(room).await,
        }
    }

    /// Remembers how far back the current room's lines go, before another room becomes
    /// current, for a front end that keeps them.
    fn keep_oldest(&mut self) {
        if self.keeps_panes {
            self.rooms[self.current].oldest_seq = self.oldest_seq;
        }
    }

    /// Makes the open room `i` current; returns its backlog, unless the front end kept the
    /// room's lines.
    async fn make_current(&mut self, i: usize) -> Vec<Shown> {
        self.current = i;
        self.rooms[i].unread = 0;
        let member = &self.rooms[i].joined.member;
        self.presence = member.presence();
        self.here = self.ctx.hub.members(member.channel());
        self.registration.moved_to(member.channel());
        if self.keeps_panes {
            self.oldest_seq = self.rooms[i].oldest_seq;
            return Vec::new();
        }
        self.reload().await
    }

    /// The current room's recent history, as shown on entering it (for a front end that
    /// keeps panes: when it had to drop the room's).
    pub(crate) async fn reload(&mut self) -> Vec<Shown> {
        match self.ctx.hub.history(self.room().clone()).await {
            Ok(history) => self.backlog(&history).await,
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    /// Joins `room` and makes it current; returns its backlog.
    async fn open(&mut self, room: ChannelName) -> Vec<Shown> {
        if self.rooms.len() >= MAX_OPEN_ROOMS {
            return vec![Shown::reply(format!(
                "* not joined: {MAX_OPEN_ROOMS} rooms are open, the most one session may hold; /part one first"
            ))];
        }
        if let Err(refused) = self.ctx.may_enter(&self.nick, &room).await {
            return vec![Shown::reply(format!("* {refused}"))];
        }
        match join(&self.ctx.hub, &self.nick, room).await {
            Ok(mut joined) => {
                let history = std::mem::take(&mut joined.history);
                self.registration.moved_to(joined.member.channel());
                self.presence = joined.member.presence();
                self.here = self.ctx.hub.members(joined.member.channel());
                self.keep_oldest();
                self.rooms.push(OpenRoom {
                    joined,
                    unread: 0,
                    oldest_seq: None,
                });
                self.current = self.rooms.len() - 1;
                self.backlog(&history).await
            }
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    /// Leaves the current room for the default room; the default room itself is never left.
    async fn part(&mut self) -> Vec<Shown> {
        if self.room() == &lobby() {
            return vec![Shown::reply(format!(
                "* #{DEFAULT_ROOM} is where everyone starts; /quit to leave"
            ))];
        }
        let left = self.rooms.remove(self.current);
        let _ = left.joined.member.flush().await;
        let mut shown = vec![Shown::reply(format!(
            "* you left #{}",
            label(left.joined.member.channel())
        ))];
        drop(left);
        let lobby_at = self
            .rooms
            .iter()
            .position(|r| r.joined.member.channel() == &lobby());
        shown.extend(match lobby_at {
            Some(i) => self.make_current(i).await,
            None => self.open(lobby()).await,
        });
        shown
    }

    async fn private(&mut self, to: Nick, text: &str) -> Vec<Shown> {
        if to == self.nick {
            return vec![Shown::reply("* that is you: /msg someone else")];
        }
        if let Err(refused) = self.admit(text) {
            return vec![refused];
        }
        match self.ctx.accounts.identity(to.clone()).await {
            Ok(Some(identity)) => {
                let message = PrivateMessage {
                    id: 0,
                    from: self.nick.clone(),
                    to: identity.nick,
                    text: text.to_owned(),
                    time_ms: now_ms(),
                };
                let ignored = self.ctx.directory.ignores(&message.to, self.nick.as_str());
                let chat = self.ctx.hub.chat();
                let online = chat.online(&message.to);
                let stored = match self
                    .ctx
                    .accounts
                    .send_private(message, !online && !ignored)
                    .await
                {
                    Ok(stored) => stored,
                    Err(error) => return vec![Shown::reply(format!("* not sent: {error}"))],
                };
                // The recipient's sessions on every transport show it, and every session of
                // the sender, this one included.
                chat.deliver_private(&stored);
                match self.ctx.directory.away(&stored.to) {
                    Some(reason) => vec![Shown::reply(format!(
                        "* {} is away: {}",
                        stored.to,
                        sanitize(reason.as_bytes())
                    ))],
                    None if !online => vec![Shown::reply(format!(
                        "* {} is not connected; they will see it when they are",
                        stored.to
                    ))],
                    None => Vec::new(),
                }
            }
            Ok(None) => vec![Shown::reply(format!("* no user is called {to}"))],
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    async fn set_topic(&mut self, text: String) -> Vec<Shown> {
        if let Err(refused) = self.admit(&text) {
            return vec![refused];
        }
        if !self.ctx.limits.allow_announcement(&self.nick) {
            return vec![Shown::reply(format!(
                "* topic not changed: {ANNOUNCEMENTS}"
            ))];
        }
        let topic = Topic {
            room: self.room().clone(),
            text,
            set_by: self.nick.clone(),
            set_ms: now_ms(),
        };
        match self.ctx.accounts.set_topic(topic.clone()).await {
            Ok(()) => {
                let room = topic.room.clone();
                self.ctx
                    .hub
                    .chat()
                    .announce(&room, RoomNotice::Topic(topic));
                Vec::new()
            }
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    async fn whois(&self, name: &Nick) -> Vec<Shown> {
        let identity = match self.ctx.accounts.identity(name.clone()).await {
            Ok(identity) => identity,
            Err(error) => return vec![Shown::reply(format!("* {error}"))],
        };
        let presence = self.ctx.directory.presence(name);
        let mles_rooms: Vec<String> = self
            .ctx
            .hub
            .rooms()
            .into_iter()
            .filter(|(room, _)| {
                self.ctx
                    .hub
                    .members(room)
                    .iter()
                    .any(|p| p.uid.as_str().eq_ignore_ascii_case(name.as_str()))
                    && !presence.as_ref().is_some_and(|p| {
                        p.sessions
                            .iter()
                            .any(|s| s.ends_with(&format!(" in #{}", label(room))))
                    })
            })
            .map(|(room, _)| format!("#{}", label(&room)))
            .collect();
        let Some(identity) = identity else {
            if mles_rooms.is_empty() {
                return vec![Shown::reply(format!("* no user is called {name}"))];
            }
            return vec![Shown::reply(format!(
                "* {name}: no SSH key; over Mles in {}",
                mles_rooms.join(", ")
            ))];
        };
        let mut lines = vec![format!(
            "* {}: name bound {}",
            identity.nick,
            crate::line::utc_timestamp(identity.bound_ms())
        )];
        for key in identity.keys.iter().filter(|k| !k.pending) {
            let op = if self.ctx.files.ops().contains(&key.fingerprint) {
                " (operator)"
            } else {
                ""
            };
            lines.push(format!("*   key {}{op}", key.fingerprint));
        }
        match &presence {
            Some(presence) => lines.push(format!(
                "*   connected since {} over ssh: {}",
                crate::line::utc_timestamp(presence.since_ms),
                presence.sessions.join(", ")
            )),
            None => lines.push("*   not connected over ssh".to_owned()),
        }
        if !mles_rooms.is_empty() {
            lines.push(format!("*   over Mles in {}", mles_rooms.join(", ")));
        }
        if let Some(reason) = self.ctx.directory.away(name) {
            lines.push(format!("*   away: {}", sanitize(reason.as_bytes())));
        }
        lines.into_iter().map(Shown::reply).collect()
    }

    async fn keys(&self) -> Vec<Shown> {
        let now = now_ms();
        match self.ctx.accounts.identity(self.nick.clone()).await {
            Ok(Some(identity)) => identity
                .keys
                .iter()
                .map(|k| {
                    let state = if k.fingerprint == self.fingerprint {
                        " (this session)".to_owned()
                    } else if k.expired_at(now) {
                        " (pending, expired)".to_owned()
                    } else if k.pending {
                        format!(
                            " (pending until it logs in as {}; expires {})",
                            self.nick,
                            crate::line::utc_timestamp(
                                k.added_ms.saturating_add(kanava_core::PENDING_KEY_TTL_MS)
                            )
                        )
                    } else {
                        String::new()
                    };
                    Shown::reply(format!(
                        "* key {} added {}{state}",
                        k.fingerprint,
                        crate::line::utc_timestamp(k.added_ms)
                    ))
                })
                .collect(),
            Ok(None) => vec![Shown::reply("* your name has no keys")],
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    async fn add_key(&self, line: &str) -> Vec<Shown> {
        let key = match crate::identity_key(line) {
            Ok(key) => key,
            Err(error) => {
                return vec![Shown::reply(format!(
                    "* not an OpenSSH public key: {error}"
                ))];
            }
        };
        let fingerprint = key.fingerprint.clone();
        let added = self
            .ctx
            .accounts
            .add_key(self.nick.clone(), key, self.ctx.key_sharing)
            .await;
        let nick = &self.nick;
        vec![Shown::reply(match added {
            Ok(KeyAdded::Pending | KeyAdded::StillPending) => format!(
                "* key {fingerprint} is pending: it becomes yours when it logs in once as \
                 {nick} (ssh -i KEY {nick}@…) within 7 days"
            ),
            Ok(KeyAdded::Active) => format!("* key {fingerprint} is already yours"),
            Ok(KeyAdded::KeyHoldsName) => {
                format!("* key {fingerprint} already holds another name")
            }
            Ok(KeyAdded::TooManyKeys) => format!(
                "* your name has {} keys already; /key remove one first",
                kanava_core::MAX_KEYS_PER_NAME
            ),
            Ok(KeyAdded::NameFree) => "* the name is not yours".to_owned(),
            Err(error) => format!("* {error}"),
        })]
    }

    /// `/nick NEW`: moves this name's keys to NEW, tells the user's rooms, and ends the
    /// name's sessions on this node, which log in again under NEW.
    async fn rename(&mut self, new: Nick) -> Vec<Shown> {
        let old = self.nick.clone();
        let cooldown = RENAME_COOLDOWN.as_millis() as u64;
        let renamed = self
            .ctx
            .accounts
            .rename(old.clone(), new.clone(), now_ms(), cooldown)
            .await;
        let reply = |text: String| vec![Shown::reply(text)];
        match renamed {
            Ok(Rename::Renamed) => {
                let told = RoomNotice::Info(format!("* {old} is now {new}"));
                let chat = self.ctx.hub.chat();
                for room in &self.rooms {
                    chat.announce(room.joined.member.channel(), told.clone());
                }
                chat.end_sessions(
                    &old,
                    &format!("you are now {new}: log in again as ssh {new}@… with the same key"),
                );
                Vec::new()
            }
            Ok(Rename::Taken) => reply(format!("* {new} is taken")),
            Ok(Rename::NotBound) => reply("* your name is not bound".into()),
            Ok(Rename::TooSoon(next_ms)) => reply(format!(
                "* one rename per hour: you may rename again from {}",
                crate::line::utc_timestamp(next_ms)
            )),
            Err(error) => reply(format!("* {error}")),
        }
    }

    /// `/release NAME`: frees this name and its keys, after the user confirms by naming it.
    async fn release(&mut self, confirm: Option<Nick>) -> Vec<Shown> {
        let nick = self.nick.clone();
        if confirm.as_ref() != Some(&nick) {
            return vec![Shown::reply(format!(
                "* /release {nick} frees your name and all its keys and ends your sessions; \
                 anyone may then take it"
            ))];
        }
        match self.ctx.accounts.release(nick.clone()).await {
            Ok(_) => {
                self.ctx.hub.chat().end_sessions(
                    &nick,
                    &format!("{nick} is released: your key holds no name now"),
                );
                Vec::new()
            }
            Err(error) => vec![Shown::reply(format!("* {error}"))],
        }
    }

    async fn ban(&mut self, name: Nick, duration: Option<Duration>) -> Vec<Shown> {
        let identity = match self.ctx.accounts.identity(name.clone()).await {
            Ok(Some(identity)) => identity,
            Ok(None) => return vec![Shown::reply(format!("* no user is called {name}"))],
            Err(error) => return vec![Shown::reply(format!("* {error}"))],
        };
        if identity
            .keys
            .iter()
            .any(|k| k.fingerprint == self.fingerprint)
        {
            return vec![Shown::reply("* you cannot ban yourself")];
        }
        let since_ms = now_ms();
        let until_ms = duration.map(|d| since_ms.saturating_add(d.as_millis() as u64));
        // Only the name's active keys: a pending key may be someone else's, added to this name
        // without their knowledge.
        let bans: Vec<Ban> = identity
            .keys
            .iter()
            .filter(|k| !k.pending)
            .map(|k| Ban {
                fingerprint: k.fingerprint.clone(),
                nick: identity.nick.clone(),
                by: self.nick.clone(),
                since_ms,
                until_ms,
            })
            .collect();
        if let Err(error) = self.ctx.accounts.ban(bans.clone()).await {
            return vec![Shown::reply(format!("* {error}"))];
        }
        let span = match until_ms {
            Some(until) => format!("until {}", crate::line::utc_timestamp(until)),
            None => "for good".to_owned(),
        };
        self.ctx
            .hub
            .chat()
            .end_sessions(&identity.nick, &format!("banned by {} {span}", self.nick));
        self.announce(format!(
            "* {} was banned by {} {span}",
            identity.nick, self.nick
        ));
        bans.iter().map(|b| Shown::reply(ban_line(b))).collect()
    }

    /// Leaves every room, letting what was sent reach the store first.
    pub(crate) async fn close(self) {
        for room in self.rooms {
            let _ = room.joined.member.flush().await;
        }
    }
}

/// The most of the message of the day's file shown.
const MOTD_BYTES: u64 = 8 * 1024;

/// Why an announcement was held back.
const ANNOUNCEMENTS: &str =
    "too many announcements (away, back, topic) from you just now; wait a minute";

/// A room's name as shown to a terminal: rooms made over Mles may hold control characters.
pub(crate) fn label(room: &ChannelName) -> String {
    sanitize(room.as_str().as_bytes())
}

/// The announcement of a topic change, as the people in the room see it.
pub(crate) fn topic_changed(topic: &Topic) -> String {
    format!(
        "* {} set the topic of #{}: {}",
        topic.set_by,
        label(&topic.room),
        sanitize(topic.text.as_bytes())
    )
}

fn topic_line(topic: &Topic) -> Shown {
    Shown {
        kind: Kind::Notice,
        time_ms: topic.set_ms,
        text: format!(
            "* topic of #{}: {} (set by {})",
            label(&topic.room),
            sanitize(topic.text.as_bytes()),
            topic.set_by
        ),
        nick: None,
        lines: Vec::new(),
    }
}

fn ban_line(ban: &Ban) -> String {
    let until = ban.until_ms.map_or("for good".to_owned(), |u| {
        format!("until {}", crate::line::utc_timestamp(u))
    });
    format!(
        "* banned: {} ({}) by {} {until}",
        ban.fingerprint, ban.nick, ban.by
    )
}

/// Joins `room` as `nick`, sharing the membership with the user's other sessions.
async fn join(hub: &Hub, nick: &Nick, room: ChannelName) -> Result<Joined, String> {
    hub.join_shared(room.clone(), uid(nick), header(nick, &room))
        .await
        .map_err(|e| sanitize(e.to_string().as_bytes()))
}

/// The answer to `/who`: `2 here: alice, bob`.
pub(crate) fn who_text(hub: &Hub, room: &ChannelName) -> String {
    let names: Vec<String> = hub
        .members(room)
        .iter()
        .map(|p| shown_name(&p.uid, p.verified))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_as_a_whole_word_in_any_case() {
        let alice = Nick::new("alice").unwrap();
        for text in [
            "alice",
            "hi Alice!",
            "ALICE: look",
            "ping alice.",
            "(alice)",
            "@alice",
        ] {
            assert!(names(text, &alice), "{text:?}");
        }
        for text in [
            "malice",
            "alice2",
            "alice-bot",
            "alice_",
            "bob.alice",
            "alice.b",
            "al ice",
        ] {
            assert!(!names(text, &alice), "{text:?}");
        }
        let shown = |kind, text: &str, nick: &str| Shown {
            kind,
            time_ms: 0,
            text: text.to_owned(),
            nick: Some(nick.to_owned()),
            lines: Vec::new(),
        };
        assert!(shown(Kind::Room, "<bob> hey alice", "bob").calls(&alice));
        assert!(!shown(Kind::Room, "<Alice> alice here", "Alice").calls(&alice));
        assert!(!shown(Kind::Own, "<alice> alice here", "alice").calls(&alice));
        assert!(!shown(Kind::Room, "<alice2> hi", "alice2").calls(&alice));
        assert!(!shown(Kind::Notice, "* alice joined", "alice").calls(&alice));
        let message = |from: &str, to: &str| PrivateMessage {
            id: 0,
            from: Nick::new(from).unwrap(),
            to: Nick::new(to).unwrap(),
            text: "psst".into(),
            time_ms: 0,
        };
        assert!(Shown::private(&message("bob", "alice"), &alice).calls(&alice));
        assert!(!Shown::private(&message("alice", "bob"), &alice).calls(&alice));
    }
}
