//! The full-screen chat for a client with a terminal: messages above, a status line, and an
//! input line that incoming messages never disturb. Input is parsed from the raw bytes of the
//! client's terminal; output is drawn by ratatui into the channel.

mod screen;
pub mod view;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kanava_core::{ChannelName, Nick};
use ratatui::layout::Rect;
use terminput::Event;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::chat::Input;
use crate::chat::directory::Mode;
use crate::chat::session::{ChatContext, ChatSession, Flow, Kind, Next, Shown, label};
use crate::clock::Zone;
use crate::exec::Output;
pub use crate::output::Outgoing;
use crate::output::Stopped;
pub use screen::{FrameSink, MAX_COLS, MAX_ROWS, Palette, Screen, clamp};
use unicode_width::UnicodeWidthStr;
use view::{Action, ChatView, LineKind, PaneLine};

/// The sequence a terminal in bracketed-paste mode sends before a paste.
const PASTE_START: &[u8] = b"\x1b[200~";
/// The sequence that ends a bracketed paste.
const PASTE_END: &[u8] = b"\x1b[201~";

/// What the client's terminal sent: a key, a paste, a resize…, or a paste too long to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// An event as the terminal reported it.
    Event(Event),
    /// A bracketed paste longer than the limit, of this many bytes; none of it was kept.
    PasteTooLong(usize),
}

/// A bracketed paste being received.
#[derive(Debug, Default)]
struct Paste {
    /// The bytes so far (the end marker's first bytes included), while within the limit.
    bytes: Vec<u8>,
    /// Bytes received in all, kept or not.
    total: usize,
    /// Whether the paste outgrew the limit: its bytes are dropped as they come.
    overflowed: bool,
    /// How many bytes of [`PASTE_END`] were just seen.
    matched: usize,
}

/// Turns the raw bytes of a client's terminal into events.
#[derive(Debug, Default)]
pub struct InputParser {
    pending: Vec<u8>,
    paste: Option<Paste>,
}

impl InputParser {
    /// Parses `data`, one byte at a time; an incomplete sequence waits for the next packet,
    /// up to `limit` bytes. A lone ESC with more bytes behind it in the same packet starts a
    /// sequence instead of being the Esc key. A bracketed paste of up to `limit` bytes is one
    /// [`Event::Paste`], however many packets it spans; a longer one is dropped as it comes
    /// (never held) and reported as [`Typed::PasteTooLong`].
    pub fn feed(&mut self, data: &[u8], limit: usize) -> Vec<Typed> {
        let mut events = Vec::new();
        for (i, byte) in data.iter().enumerate() {
            if let Some(paste) = &mut self.paste {
                if let Some(done) = paste.take(*byte, limit) {
                    events.push(done);
                    self.paste = None;
                }
                continue;
            }
            self.pending.push(*byte);
            if self.pending == PASTE_START {
                self.pending.clear();
                self.paste = Some(Paste::default());
                continue;
            }
            if self.pending == [0x1b] && i + 1 < data.len() {
                continue;
            }
            match Event::parse_from(&self.pending) {
                Ok(Some(event)) => {
                    events.push(Typed::Event(event));
                    self.pending.clear();
                }
                Ok(None) if self.pending.len() <= limit.min(MAX_SEQUENCE) => {}
                Ok(None) | Err(_) => self.pending.clear(),
            }
        }
        events
    }
}

/// Longest escape sequence waited for outside a paste: real ones are a few dozen bytes.
const MAX_SEQUENCE: usize = 256;

impl Paste {
    /// Takes the next byte of the paste; returns what the paste was once its end marker came.
    fn take(&mut self, byte: u8, limit: usize) -> Option<Typed> {
        self.total += 1;
        if !self.overflowed {
            self.bytes.push(byte);
            if self.bytes.len() > limit + PASTE_END.len() {
                self.overflowed = true;
                self.bytes = Vec::new();
            }
        }
        self.matched = if byte == PASTE_END[self.matched] {
            self.matched + 1
        } else {
            usize::from(byte == PASTE_END[0])
        };
        if self.matched < PASTE_END.len() {
            return None;
        }
        let length = self.total - PASTE_END.len();
        if self.overflowed {
            return Some(Typed::PasteTooLong(length));
        }
        self.bytes.truncate(length);
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        Some(Typed::Event(Event::Paste(text)))
    }
}

/// When the screen must be redrawn: after the user's own input at once; after traffic at once
/// when nothing was drawn for an interval, else at the end of the interval (so only bursts are
/// paced); and only when the connection has room for a frame.
#[derive(Debug)]
struct Pacing {
    interval: Duration,
    dirty: bool,
    urgent: bool,
    last: Instant,
}

impl Pacing {
    /// Pacing that draws the first frame at once, then traffic at most once per `interval`.
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            dirty: true,
            urgent: true,
            last: Instant::now(),
        }
    }

    /// Something others did changed the view.
    fn changed(&mut self) {
        self.dirty = true;
    }

    /// The user did something: show it now.
    fn urgent(&mut self) {
        self.dirty = true;
        self.urgent = true;
    }

    fn due(&self, screen: &Screen) -> bool {
        self.dirty && (self.urgent || self.last.elapsed() >= self.interval) && screen.ready()
    }

    fn drawn(&mut self) {
        self.dirty = false;
        self.urgent = false;
        self.last = Instant::now();
    }

    /// Resolves when a pending redraw becomes due; never while nothing waits to be drawn.
    async fn wait(&self, screen: &Screen) {
        if !self.dirty {
            return std::future::pending().await;
        }
        if !self.urgent {
            tokio::time::sleep_until((self.last + self.interval).into()).await;
        }
        screen.wait_ready().await;
    }
}

/// Lines loaded from the store each time the user scrolls past the oldest one.
const OLDER_PAGE: usize = 100;

/// Commands offered by Tab completion.
const COMMANDS: [&str; 24] = [
    "/away",
    "/back",
    "/ban",
    "/banned",
    "/bell",
    "/help",
    "/ignore",
    "/join",
    "/key",
    "/kick",
    "/me",
    "/msg",
    "/mute",
    "/names",
    "/part",
    "/quit",
    "/reply",
    "/rooms",
    "/switch",
    "/topic",
    "/unban",
    "/unignore",
    "/who",
    "/whois",
];

/// Longest text of one pane line, in bytes: a message from another transport may be far longer
/// than a screen (a Mles frame of megabytes), and the pane keeps thousands of lines.
pub const MAX_PANE_LINE: usize = 64 * 1024;

/// `text` cut to at most [`MAX_PANE_LINE`] bytes (on a character boundary), saying how much was
/// left out.
fn shortened(text: &str) -> String {
    if text.len() <= MAX_PANE_LINE {
        return text.to_owned();
    }
    let mut end = MAX_PANE_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes more]", &text[..end], text.len() - end)
}

/// A line for the message pane: the time in the user's zone (with the date unless today),
/// then the text, the sender's name coloured, a multi-line message's further lines (and rows
/// wrapped from a long one) indented under its text; a line that calls for `me` (a mention, a
/// private message to them) highlighted.
fn pane_line(shown: &Shown, me: &Nick, zone: &Zone) -> PaneLine {
    let time = format!("{} ", zone.pane_time(shown.time_ms, crate::now_ms()));
    let body = if shown.lines.is_empty() {
        shortened(&shown.text)
    } else {
        shortened(&shown.lines.join("\n"))
    };
    let kind = match shown.kind {
        _ if shown.calls(me) => LineKind::Highlight,
        Kind::Room => LineKind::Message,
        Kind::Own => LineKind::Own,
        Kind::Private => LineKind::Private,
        Kind::Notice | Kind::Reply => LineKind::Notice,
    };
    // The name is looked for in the text only: a date such as `Dec 04` is never coloured.
    let mut line = match &shown.nick {
        Some(nick) => PaneLine::with_nick(body, nick, kind),
        None => PaneLine::plain(body, kind),
    };
    line.indent = UnicodeWidthStr::width(time.as_str()) + text_column(&line);
    line.nick = line
        .nick
        .map(|name| name.start + time.len()..name.end + time.len());
    line.text.insert_str(0, &time);
    line
}

/// The column where the message text starts in a pane line's text (before the time is put in
/// front): after `<name> ` or `[PM … name] `, else at once.
fn text_column(line: &PaneLine) -> usize {
    let start = match &line.nick {
        Some(nick) => line.text[nick.end..]
            .find(' ')
            .map_or(0, |gap| nick.end + gap + 1),
        None => 0,
    };
    UnicodeWidthStr::width(&line.text[..start])
}

/// A note from the chat itself (not the session), timed now.
fn note(text: String, zone: &Zone) -> PaneLine {
    let now = crate::now_ms();
    PaneLine::plain(
        format!("{} {text}", zone.pane_time(now, now)),
        LineKind::Notice,
    )
}

/// Shows session output in the pane of the room shown; says whether a line calls for the user.
fn show(view: &mut ChatView, session: &ChatSession, shown: Vec<Shown>) -> bool {
    let mut calls = false;
    for line in &shown {
        let line = pane_line(line, session.nick(), session.zone());
        calls |= line.kind == LineKind::Highlight;
        view.push(line);
    }
    calls
}

/// Shows the session's current room, which the last action may have changed (a new room's
/// pane starts empty), then `shown` in it. A room whose pane was dropped shows its history
/// again, as on entering it, and says why.
async fn switched(
    view: &mut ChatView,
    panes: &mut Panes,
    session: &mut ChatSession,
    shown: Vec<Shown>,
) {
    if panes.follow(view, session) {
        let history = session.reload().await;
        show(view, session, history);
        view.push(note(
            format!(
                "* the lines #{} got while not shown took too much memory: above is its history",
                label(session.room())
            ),
            session.zone(),
        ));
    }
    show(view, session, shown);
}

/// Text all the hidden panes hold together, in bytes: past it, the largest is dropped.
const HIDDEN_BYTES: usize = 2 * 1024 * 1024;

/// The message panes of the open rooms not shown, each with its lines (private messages and
/// command output included) and scroll, so that switching back shows what was there. Each is
/// bounded as the shown one is, all of them together by [`HIDDEN_BYTES`], and a pane is
/// forgotten when its room is left.
struct Panes {
    /// The room whose pane the view shows.
    shown: ChannelName,
    hidden: HashMap<ChannelName, ChatView>,
    /// Open rooms whose panes were dropped to stay within [`HIDDEN_BYTES`].
    dropped: HashSet<ChannelName>,
}

impl Panes {
    fn new(session: &ChatSession) -> Self {
        Self {
            shown: session.room().clone(),
            hidden: HashMap::new(),
            dropped: HashSet::new(),
        }
    }

    /// Shows the pane of the session's current room (a new room's starts empty), keeping the
    /// one shown before while its room is open. Says whether the room shown now had its pane
    /// dropped.
    fn follow(&mut self, view: &mut ChatView, session: &ChatSession) -> bool {
        let current = session.room();
        let mut lost = false;
        if &self.shown != current {
            let mut pane = self.hidden.remove(current).unwrap_or_default();
            view.swap_pane(&mut pane);
            if session.is_open(&self.shown) {
                self.hidden.insert(self.shown.clone(), pane);
            }
            self.shown = current.clone();
            lost = self.dropped.remove(current);
            // Rooms close only by being left, and only the current one: a switch is the time
            // to forget their panes.
            self.hidden.retain(|room, _| session.is_open(room));
            self.dropped.retain(|room| session.is_open(room));
            self.bound();
        }
        view.room = label(current);
        lost
    }

    /// Adds `line` to the pane of `room`, not shown, unless that pane was dropped.
    fn add_hidden(&mut self, room: ChannelName, line: PaneLine) {
        if room != self.shown && !self.dropped.contains(&room) {
            self.hidden.entry(room).or_default().push(line);
        }
    }

    /// Drops the largest hidden panes until all of them hold at most [`HIDDEN_BYTES`].
    fn bound(&mut self) {
        let mut total: usize = self.hidden.values().map(ChatView::pane_bytes).sum();
        while total > HIDDEN_BYTES {
            let Some(largest) = self
                .hidden
                .iter()
                .max_by_key(|(_, pane)| pane.pane_bytes())
                .map(|(room, _)| room.clone())
            else {
                break;
            };
            if let Some(pane) = self.hidden.remove(&largest) {
                total -= pane.pane_bytes();
            }
            self.dropped.insert(largest);
        }
    }

    /// Adds the lines that came to rooms not shown to their panes (not to a dropped one: its
    /// stored history shows them when it is shown); says whether one calls for the user.
    fn take_elsewhere(&mut self, session: &mut ChatSession) -> bool {
        let mut calls = false;
        for (room, shown) in session.take_elsewhere() {
            let line = pane_line(&shown, session.nick(), session.zone());
            calls |= line.kind == LineKind::Highlight;
            if session.is_open(&room) {
                self.add_hidden(room, line);
            }
        }
        self.bound();
        calls
    }
}

/// Settings of one chat session.
pub(crate) struct Options {
    /// The client's terminal size, clamped: from its pty-req, then the latest window-change.
    /// Only the latest size is applied, at the next redraw, however many changes came.
    pub(crate) size: watch::Receiver<Rect>,
    /// The colours the terminal shows, from its `TERM`.
    pub(crate) palette: Palette,
    /// The time zone the client sent as `TZ` (UTC if none), until `/tz` changes it.
    pub(crate) zone: Zone,
}

/// Runs the chat for a terminal until `/quit`, Ctrl-D, EOF or the client going.
pub(crate) async fn run(
    ctx: ChatContext,
    nick: Nick,
    fingerprint: String,
    Options {
        mut size,
        palette,
        zone,
    }: Options,
    out: &Output,
    mut input: mpsc::Receiver<Input>,
    cancel: &CancellationToken,
) -> u32 {
    let max_message_bytes = ctx.max_message_bytes;
    let frame_interval = ctx.frame_interval;
    let shutdown = ctx.shutdown.clone();
    let (sink, mut outgoing) = FrameSink::new(Arc::clone(out.flow.memory()));
    let (handle, channel, flow) = (out.handle.clone(), out.channel, out.flow.clone());
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let sent = flow.send(frame, |piece| handle.data(channel, piece)).await;
            if let Err(stopped) = sent {
                return Some(stopped);
            }
        }
        None
    });
    let Ok(mut screen) = Screen::new(*size.borrow_and_update(), sink) else {
        return 1;
    };
    screen.set_palette(palette);
    let mut view = ChatView::default();
    view.max_input = max_message_bytes;
    view.charge_to(out.flow.memory());
    let started = ChatSession::start(ctx, nick, fingerprint, Mode::Terminal, cancel.clone(), true);
    let (mut session, shown) = match started.await {
        Ok(started) => started,
        Err(error) => {
            // The first frame sets the terminal up; the restore then undoes exactly that.
            let _ = screen.draw(&view);
            let _ = screen.restore(&farewell(&format!("* {error}"))).await;
            drop(screen);
            let _ = writer.await;
            return 1;
        }
    };
    session.set_zone(zone);
    session.keep_panes();
    let mut panes = Panes::new(&session);
    view.room = label(session.room());
    show(&mut view, &session, shown);
    view.push(PaneLine::plain(
        format!("* welcome, {}. /help lists the commands.", session.nick()),
        LineKind::Notice,
    ));
    // Whether something that calls for the user came since the last frame: one bell a frame.
    let mut ring = false;
    let mut parser = InputParser::default();
    // Redraws follow the user's keys at once; other people's traffic is drawn at most once per
    // frame interval, and never while the previous frame still waits for the connection, so a
    // busy room costs a few draws a second per session, not one per message.
    let mut pacing = Pacing::new(frame_interval);
    // Why the chat ended, when the user did not end it: shown on the normal screen after the
    // terminal is restored, so that it is still there once the connection closes.
    let mut ended_by = None;
    let status = 'session: loop {
        if pacing.due(&screen) {
            let wanted = *size.borrow_and_update();
            if screen.area() != wanted && screen.resize(wanted).is_err() {
                break 0;
            }
            view.members = session.member_count();
            (view.rooms, view.current) = session.open_rooms();
            if screen.draw(&view).is_err() {
                break 0;
            }
            if std::mem::take(&mut ring) && session.bell() {
                screen.ring();
            }
            metrics::counter!("kanava_ssh_frames_total").increment(1);
            pacing.drawn();
        }
        let event = tokio::select! {
            () = cancel.cancelled() => {
                if shutdown.is_cancelled() {
                    ended_by = Some(SHUTTING_DOWN.to_owned());
                    break 1;
                }
                break 0;
            }
            () = pacing.wait(&screen) => continue,
            // A window-change is drawn with the next paced frame: a flood of them costs one
            // redraw per frame interval, not one each.
            Ok(()) = size.changed() => {
                pacing.changed();
                continue;
            }
            next = session.next() => match next {
                Next::Show(shown) => {
                    ring |= show(&mut view, &session, shown);
                    pacing.changed();
                    continue;
                }
                Next::Unread => {
                    ring |= panes.take_elsewhere(&mut session);
                    pacing.changed();
                    continue;
                }
                Next::Members => {
                    pacing.changed();
                    continue;
                }
                Next::End(status, last) => {
                    // A server going down also ends the rooms: say the real reason.
                    ended_by = Some(if shutdown.is_cancelled() {
                        SHUTTING_DOWN.to_owned()
                    } else {
                        last.text
                    });
                    break status;
                }
            },
            event = input.recv() => event,
        };
        let data = match event {
            Some(Input::Data(data)) => data,
            Some(Input::Eof) | None => break 0,
        };
        pacing.urgent();
        let (width, height) = screen.pane();
        view.pane_width = width;
        for typed in parser.feed(&data, max_message_bytes) {
            let event = match typed {
                Typed::Event(event) => event,
                Typed::PasteTooLong(bytes) => {
                    view.push(note(
                        view::too_long_paste(bytes, max_message_bytes),
                        session.zone(),
                    ));
                    continue;
                }
            };
            let action = view.handle(&event, screen.page());
            match action {
                Action::Redraw => {}
                Action::Note(text) => view.push(note(text, session.zone())),
                Action::Repaint => screen.repaint(),
                Action::ShowRoom(index) => {
                    let shown = session.show_room(index).await;
                    switched(&mut view, &mut panes, &mut session, shown).await;
                }
                Action::NextRoom | Action::PreviousRoom => {
                    let (rooms, current) = session.open_rooms();
                    let step = if action == Action::NextRoom {
                        1
                    } else {
                        rooms.len() - 1
                    };
                    let shown = session.show_room((current + step) % rooms.len()).await;
                    switched(&mut view, &mut panes, &mut session, shown).await;
                }
                Action::Quit => break 'session 0,
                Action::Complete => {
                    let mut candidates: Vec<String> =
                        COMMANDS.iter().map(|c| (*c).to_owned()).collect();
                    candidates.extend(session.names_here());
                    view.complete(&candidates);
                }
                Action::Submit(line) => {
                    let (shown, flow) = session.submit(&line).await;
                    switched(&mut view, &mut panes, &mut session, shown).await;
                    match flow {
                        Flow::Quit => break 'session 0,
                        Flow::Refused => view.keep_input(line),
                        Flow::Continue => {}
                    }
                }
            }
        }
        if view.at_top(width, height) {
            let older = session.older(OLDER_PAGE).await;
            let (me, zone) = (session.nick(), session.zone());
            view.prepend(older.iter().map(|line| pane_line(line, me, zone)).collect());
        }
        view.clamp_scroll(width, height);
    };
    let _ = screen
        .restore(&ended_by.as_deref().map(farewell).unwrap_or_default())
        .await;
    let over_budget = screen.over_budget();
    drop(screen);
    let stopped = writer.await.ok().flatten();
    session.close().await;
    if over_budget {
        out.over_budget().await;
        return 1;
    }
    if let Some(stuck @ Stopped::NotReading(_)) = stopped {
        crate::output::count_closed("stuck");
        out.err(stuck.to_string()).await;
        return 1;
    }
    status
}

/// What a full-screen chat ended by a server shutdown tells its user.
const SHUTTING_DOWN: &str = "* the server is shutting down";

/// `reason` as the last line the user sees on their normal screen: `kanava: ` and the reason,
/// without control characters.
fn farewell(reason: &str) -> String {
    format!(
        "kanava: {}",
        kanava_core::sanitize(reason.trim_start_matches("* ").as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_panes_together_stay_within_their_bytes_the_largest_dropped_first() {
        let room = |name: &str| ChannelName::new(name).unwrap();
        let filled = |bytes: usize| {
            let mut pane = ChatView::default();
            for _ in 0..bytes / 1024 {
                pane.push(PaneLine::plain("x".repeat(1024), LineKind::Message));
            }
            pane
        };
        let mut panes = Panes {
            shown: room("lobby"),
            hidden: HashMap::from([
                // Each within a pane's own cap, together over HIDDEN_BYTES.
                (room("busy"), filled(HIDDEN_BYTES * 7 / 16)),
                (room("quiet"), filled(HIDDEN_BYTES / 4)),
                (room("dev"), filled(HIDDEN_BYTES * 3 / 8)),
            ]),
            dropped: HashSet::new(),
        };
        panes.bound();
        assert_eq!(panes.dropped, HashSet::from([room("busy")]));
        assert_eq!(panes.hidden.len(), 2);
        let total: usize = panes.hidden.values().map(ChatView::pane_bytes).sum();
        assert!(total <= HIDDEN_BYTES);
        // Later lines of the dropped room wait in the store, not in a new pane.
        let line = || PaneLine::plain("later".into(), LineKind::Message);
        panes.add_hidden(room("busy"), line());
        panes.add_hidden(room("lobby"), line());
        panes.add_hidden(room("quiet"), line());
        assert!(!panes.hidden.contains_key(&room("busy")));
        assert!(!panes.hidden.contains_key(&room("lobby")), "the room shown");
        assert_eq!(
            panes.hidden[&room("quiet")].pane_bytes(),
            HIDDEN_BYTES / 4 + 5
        );
    }

    #[test]
    fn a_paste_is_one_event_across_packets_and_a_long_one_is_dropped_as_it_comes() {
        let mut parser = InputParser::default();
        let text = "a\r\nb\x1b[201".repeat(1000);
        let sent = [PASTE_START, text.as_bytes(), PASTE_END, b"x"].concat();
        let mut events = Vec::new();
        for packet in sent.chunks(7) {
            events.extend(parser.feed(packet, text.len()));
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], Typed::Event(Event::Paste(text.clone())));
        assert!(matches!(&events[1], Typed::Event(Event::Key(_))));

        let mut events = Vec::new();
        for packet in sent.chunks(4096) {
            events.extend(parser.feed(packet, text.len() - 1));
            assert!(
                parser
                    .paste
                    .as_ref()
                    .is_none_or(|p| p.bytes.len() <= text.len() + 6)
            );
        }
        assert_eq!(events[0], Typed::PasteTooLong(text.len()));
        assert_eq!(events.len(), 2, "the key after the paste still counts");
    }
}
