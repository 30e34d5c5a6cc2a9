//! Drawing the chat view with ratatui into an SSH channel: a fixed viewport of the client's size
//! (never the server's tty), and a writer whose flush hands each frame to the connection without
//! waiting, dropping frames for a client that does not keep up (the next frame is a full redraw).
//! Each frame is charged to the memory budget until it is written (see [`crate::output`]); one
//! that does not fit ends the session.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use kanava_core::MemoryBudget;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::buffer::{Buffer, Cell};
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Paragraph, Widget, Wrap};
use tokio::sync::mpsc;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::view::{ChatView, LineKind, Row, nick_colour};
use crate::output::Outgoing;

/// The colours names are drawn in (xterm's 256-colour palette, readable on dark and light).
const NICK_COLOURS: [u8; 12] = [31, 32, 33, 35, 36, 37, 70, 94, 130, 133, 166, 172];

/// Which colours the client's terminal shows, from the `TERM` its `pty-req` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// None: `dumb`, the VT terminals (`vt100`, `vt220`, …), or no name at all.
    Plain,
    /// xterm's 256 colours, which every other terminal in use shows (the Linux console maps
    /// them to its 16).
    Extended,
}

impl Palette {
    /// The palette for the terminal type `term`.
    pub fn for_term(term: &str) -> Palette {
        let term = term.to_ascii_lowercase();
        if term.is_empty() || term == "dumb" || term == "unknown" || term.starts_with("vt") {
            Palette::Plain
        } else {
            Palette::Extended
        }
    }

    /// The colour of the name with palette index `index`, if the terminal shows colours.
    fn nick(self, index: usize) -> Option<Color> {
        match self {
            Palette::Plain => None,
            Palette::Extended => Some(Color::Indexed(NICK_COLOURS[index])),
        }
    }
}

/// The style of a pane row's text: private messages, notices and lines calling for the user set
/// apart.
fn row_style(kind: LineKind) -> Style {
    match kind {
        LineKind::Message | LineKind::Own => Style::default(),
        LineKind::Private => Style::default().add_modifier(Modifier::BOLD),
        LineKind::Notice => Style::default().add_modifier(Modifier::DIM),
        LineKind::Highlight => Style::default().add_modifier(Modifier::REVERSED),
    }
}

/// Draws pane rows (already wrapped to the pane's width) straight into the frame's cells, the
/// sender's name in its colour (in `palette`). ratatui's `Paragraph` would split every row into
/// graphemes again on every frame, the largest cost of a frame in `kanava bench ssh`; ASCII
/// text, most of a chat, needs no splitting.
fn draw_rows(rows: &[Row], palette: Palette, area: Rect, buf: &mut Buffer) {
    for (row, y) in rows.iter().zip(area.top()..area.bottom()) {
        let base = row_style(row.kind);
        let right = area.right();
        match &row.nick {
            Some(range) => {
                let name = match palette.nick(nick_colour(&row.text[range.clone()])) {
                    Some(colour) => base.fg(colour),
                    None => base,
                };
                let x = put(buf, area.left(), y, right, &row.text[..range.start], base);
                let x = put(buf, x, y, right, &row.text[range.clone()], name);
                put(buf, x, y, right, &row.text[range.end..], base);
            }
            None => {
                put(buf, area.left(), y, right, &row.text, base);
            }
        }
    }
}

/// Writes `text` into row `y` from column `x`, up to column `right`; returns the column after
/// it. Control characters are never written (as in ratatui's own `set_stringn`, which draws
/// every other text).
fn put(buf: &mut Buffer, x: u16, y: u16, right: u16, text: &str, style: Style) -> u16 {
    if !text.is_ascii() {
        let width = usize::from(right.saturating_sub(x));
        return buf.set_stringn(x, y, text, width, style).0;
    }
    let mut x = x;
    for byte in text.bytes().filter(|byte| !byte.is_ascii_control()) {
        if x >= right {
            break;
        }
        buf[(x, y)].set_char(char::from(byte)).set_style(style);
        x += 1;
    }
    x
}

/// What each user-perceived character (grapheme cluster) of the input line shows as, and which
/// of them the cursor (counted in characters) stands before. A paste may hold control
/// characters: they are shown (a line break as `↵`, a tab as spaces), never sent raw.
fn input_cells(text: &str, cursor: usize) -> (Vec<Cow<'_, str>>, usize) {
    let mut cells = Vec::new();
    let mut at = None;
    let mut chars = 0;
    for grapheme in text.graphemes(true) {
        if chars >= cursor && at.is_none() {
            at = Some(cells.len());
        }
        chars += grapheme.chars().count();
        if !grapheme.chars().any(char::is_control) {
            cells.push(Cow::Borrowed(grapheme));
            continue;
        }
        let shown = grapheme
            .chars()
            .map(|c| match c {
                '\n' => "↵".to_owned(),
                '\t' => "    ".to_owned(),
                c if c.is_control() => "\u{fffd}".to_owned(),
                c => c.to_string(),
            })
            .collect();
        cells.push(Cow::Owned(shown));
    }
    let at = at.unwrap_or(cells.len());
    (cells, at)
}

/// The terminal's bell, rung after a frame for something that calls for the user.
const BELL: &[u8] = b"\x07";

/// Enter the alternate screen, clear it, turn on bracketed paste.
pub const SETUP: &[u8] = b"\x1b[?1049h\x1b[2J\x1b[H\x1b[?2004h";

/// Undo [`SETUP`], reset colours and attributes, and show the cursor.
pub const TEARDOWN: &[u8] = b"\x1b[0m\x1b[?2004l\x1b[?25h\x1b[?1049l";

/// Below this size the chat does not fit: the screen shows a notice instead, until the
/// terminal grows again.
const MIN_COLS: u16 = 20;
/// See [`MIN_COLS`].
const MIN_ROWS: u16 = 5;

/// What a terminal smaller than [`MIN_COLS`]x[`MIN_ROWS`] shows.
const TOO_SMALL: &str = "terminal too small: the chat needs 20x5";

/// Sizes above this are clamped down before anything is allocated from them: a screen buffer
/// costs its area, and a peer may claim 65535x65535 (about 200 GB of cells). No real terminal
/// is larger.
pub const MAX_COLS: u16 = 500;
/// See [`MAX_COLS`].
pub const MAX_ROWS: u16 = 200;

/// Frames waiting for the connection before further ones are dropped.
pub const FRAME_QUEUE: usize = 8;

/// Where frames go: the connection's queue, and the budget they are charged to.
#[derive(Clone)]
pub struct FrameSink {
    /// Frames for the connection, with their charge.
    pub(crate) frames: mpsc::Sender<Outgoing>,
    /// The memory budget.
    pub(crate) memory: Arc<MemoryBudget>,
    /// Set when a frame did not fit the budget: the session must end.
    pub(crate) over_budget: Arc<AtomicBool>,
}

impl FrameSink {
    /// A sink charging `memory`, and the connection's end of its queue of [`FRAME_QUEUE`]
    /// frames.
    pub fn new(memory: Arc<MemoryBudget>) -> (FrameSink, mpsc::Receiver<Outgoing>) {
        let (frames, out) = mpsc::channel(FRAME_QUEUE);
        let sink = FrameSink {
            frames,
            memory,
            over_budget: Arc::default(),
        };
        (sink, out)
    }
}

/// A `Write` that collects one frame and, on flush, queues it for the connection.
pub struct ChannelWriter {
    frame: Vec<u8>,
    sink: FrameSink,
    /// Set when a frame had to be dropped, or the user asked for it: the next draw must
    /// repaint everything.
    dropped: Arc<AtomicBool>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.frame.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let frame = Bytes::from(std::mem::take(&mut self.frame));
        let Ok(frame) = Outgoing::charge(&self.sink.memory, frame) else {
            self.sink.over_budget.store(true, Ordering::Release);
            return Err(io::Error::other(crate::output::OVER_BUDGET));
        };
        match self.sink.frames.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.store(true, Ordering::Release);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "client gone"))
            }
        }
    }
}

/// The client's screen: what its terminal shows now, and the frame being drawn. A frame is
/// sent as the difference between the two; when the message pane only moved up (new messages
/// at the bottom), the terminal scrolls the pane itself and only the new rows are sent.
pub struct Screen {
    backend: CrosstermBackend<ChannelWriter>,
    /// What the client's terminal shows, as far as the frames sent say.
    shown: Buffer,
    /// The frame being drawn.
    next: Buffer,
    area: Rect,
    sink: FrameSink,
    dropped: Arc<AtomicBool>,
    palette: Palette,
    /// Whether the cursor was hidden (while the terminal was too small for the chat).
    cursor_hidden: bool,
}

/// A usable size from what the client reported (in `pty-req` or `window-change`): 0x0 becomes
/// 80x24 (`ssh -tt` with no tty sends it), and every size is brought within 1x1 and
/// [`MAX_COLS`]x[`MAX_ROWS`]. A size below [`MIN_COLS`]x[`MIN_ROWS`] is kept as it is: the
/// screen says it is too small rather than drawing past the terminal's edges.
pub fn clamp(cols: u32, rows: u32) -> Rect {
    let (cols, rows) = if cols == 0 || rows == 0 {
        (80, 24)
    } else {
        (cols, rows)
    };
    let within = |n: u32, min: u16, max: u16| {
        u16::try_from(n.clamp(u32::from(min), u32::from(max))).unwrap_or(max)
    };
    Rect::new(0, 0, within(cols, 1, MAX_COLS), within(rows, 1, MAX_ROWS))
}

/// The message pane of a screen of `area`: all but the status and input lines.
fn pane_area(area: Rect) -> Rect {
    Rect {
        height: area.height.saturating_sub(2),
        ..area
    }
}

/// By how many rows the content of `pane` moved up from `shown` to `next` (new messages
/// pushed the older ones up), if it did and some rows stayed; 0 otherwise. The search compares
/// at most twice the pane's rows in all, as a plain scroll needs: a pane of near-identical
/// lines (which anyone can send) would otherwise cost a comparison of the whole pane per
/// candidate shift, its height times per frame.
fn scrolled_rows(shown: &Buffer, next: &Buffer, pane: Rect) -> u16 {
    fn row(buffer: &Buffer, pane: Rect, y: u16) -> &[Cell] {
        let start = buffer.index_of(pane.x, y);
        &buffer.content[start..start + usize::from(pane.width)]
    }
    let mut budget = 2 * usize::from(pane.height);
    let mut same = |shift: u16| {
        (pane.top()..pane.bottom() - shift).all(|y| {
            budget = budget.saturating_sub(1);
            budget > 0 && row(shown, pane, y + shift) == row(next, pane, y)
        })
    };
    if pane.is_empty() || same(0) {
        return 0;
    }
    (1..pane.height).find(|&shift| same(shift)).unwrap_or(0)
}

/// The rows of `area` (the full width of `buffer`) as a buffer of their own, at their place.
fn rows_of(buffer: &Buffer, area: Rect) -> Buffer {
    let start = buffer.index_of(area.x, area.y);
    Buffer {
        area,
        content: buffer.content[start..start + usize::from(area.width) * usize::from(area.height)]
            .to_vec(),
    }
}

/// Moves the rows of `pane` in `buffer` up by `rows`, blank rows coming in at the bottom: what
/// the terminal does when its scrolling region is scrolled.
fn scroll_up(buffer: &mut Buffer, pane: Rect, rows: u16) {
    let start = buffer.index_of(pane.x, pane.top());
    let width = usize::from(pane.width);
    let cells = &mut buffer.content[start..start + width * usize::from(pane.height)];
    cells.rotate_left(width * usize::from(rows));
    let kept = width * usize::from(pane.height - rows);
    for cell in &mut cells[kept..] {
        cell.reset();
    }
}

impl Screen {
    /// A screen of `area`, writing frames to `sink`.
    pub fn new(area: Rect, sink: FrameSink) -> io::Result<Screen> {
        let dropped = Arc::new(AtomicBool::new(false));
        let writer = ChannelWriter {
            frame: SETUP.to_vec(),
            sink: sink.clone(),
            dropped: Arc::clone(&dropped),
        };
        Ok(Screen {
            backend: CrosstermBackend::new(writer),
            shown: Buffer::empty(area),
            next: Buffer::empty(area),
            area,
            sink,
            dropped,
            palette: Palette::Extended,
            cursor_hidden: false,
        })
    }

    /// Draws names in `palette` from now on (256 colours until told otherwise).
    pub fn set_palette(&mut self, palette: Palette) {
        self.palette = palette;
    }

    /// Follows a window-change (the client's size, never the server's tty): the next frame
    /// resets the terminal's attributes, clears it and paints every cell.
    pub fn resize(&mut self, area: Rect) -> io::Result<()> {
        self.area = area;
        self.shown = Buffer::empty(area);
        self.next = Buffer::empty(area);
        self.backend.write_all(b"\x1b[0m\x1b[2J")
    }

    /// The screen's size now.
    pub fn area(&self) -> Rect {
        self.area
    }

    /// Rings the terminal's bell, after the frames queued so far; like a frame, it is dropped
    /// when the connection's queue is full.
    pub fn ring(&self) {
        if let Ok(bell) = Outgoing::charge(&self.sink.memory, Bytes::from_static(BELL)) {
            let _ = self.sink.frames.try_send(bell);
        }
    }

    /// Whether the connection has room for another frame now.
    pub fn ready(&self) -> bool {
        self.sink.frames.capacity() > 0
    }

    /// Whether a frame did not fit the memory budget: the session must end.
    pub fn over_budget(&self) -> bool {
        self.sink.over_budget.load(Ordering::Acquire)
    }

    /// Waits until the connection has room for another frame; never, once it is gone.
    pub async fn wait_ready(&self) {
        // The permit is only a probe: the frame itself goes through the writer's `try_send`,
        // and this task is the only sender, so the room stays there.
        if self.sink.frames.reserve().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Makes the next draw clear the terminal and paint every cell, whatever it shows now.
    pub fn repaint(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    /// Width and height of the message pane.
    pub fn pane(&self) -> (usize, usize) {
        (usize::from(self.area.width), self.page())
    }

    /// Height of the message pane, for paging.
    pub fn page(&self) -> usize {
        usize::from(self.area.height.saturating_sub(2))
    }

    /// Draws `view`.
    pub fn draw(&mut self, view: &ChatView) -> io::Result<()> {
        if self.dropped.swap(false, Ordering::AcqRel) {
            self.resize(self.area)?;
        }
        self.next.reset();
        let cursor = self.render(view);
        let frame = &mut self.next;
        // Rows at the top that are known to be the same on the terminal and in the frame.
        let mut same_rows = 0;
        if cursor.is_some() {
            let pane = pane_area(self.area);
            let rows = scrolled_rows(&self.shown, frame, pane);
            if rows > 0 {
                // Rows 1 to the pane's height scroll up: line feeds at the region's bottom.
                let feeds = "\n".repeat(usize::from(rows));
                let bottom = pane.bottom();
                write!(
                    self.backend,
                    "\x1b[1;{bottom}r\x1b[{bottom};1H{feeds}\x1b[r"
                )?;
                scroll_up(&mut self.shown, pane, rows);
                same_rows = pane.height - rows;
            }
        }
        if same_rows == 0 {
            let changes = self.shown.diff(frame);
            self.backend.draw(changes.into_iter())?;
        } else {
            // Only the rows below those the scroll kept need comparing.
            let rest = Rect {
                y: self.area.y + same_rows,
                height: self.area.height - same_rows,
                ..self.area
            };
            let (before, after) = (rows_of(&self.shown, rest), rows_of(frame, rest));
            self.backend.draw(before.diff(&after).into_iter())?;
        }
        match cursor {
            Some(position) => {
                if self.cursor_hidden {
                    self.backend.show_cursor()?;
                    self.cursor_hidden = false;
                }
                self.backend.set_cursor_position(position)?;
            }
            None if !self.cursor_hidden => {
                self.backend.hide_cursor()?;
                self.cursor_hidden = true;
            }
            None => {}
        }
        Backend::flush(&mut self.backend)?;
        std::mem::swap(&mut self.shown, &mut self.next);
        Ok(())
    }

    /// Renders `view` into the next frame; returns where the cursor goes, or `None` when the
    /// terminal is too small for the chat.
    fn render(&mut self, view: &ChatView) -> Option<Position> {
        let area = self.area;
        let frame = &mut self.next;
        {
            if area.width < MIN_COLS || area.height < MIN_ROWS {
                let notice = Paragraph::new(TOO_SMALL).wrap(Wrap { trim: true });
                notice.render(area, frame);
                return None;
            }
            // Pane, status line, input line: fixed rows, no layout solver on every frame.
            let pane = pane_area(area);
            let status = Rect {
                y: area.y + pane.height,
                height: 1,
                ..area
            };
            let input = Rect {
                y: status.y + 1,
                ..status
            };
            let height = usize::from(pane.height);
            let rows = view.last_rows(usize::from(pane.width), height + view.scroll());
            let end = rows.len().saturating_sub(view.scroll());
            let start = end.saturating_sub(height);
            draw_rows(&rows[start..end], self.palette, pane, frame);

            let status_text = view.status_line(usize::from(status.width));
            Paragraph::new(status_text)
                .style(Style::default().add_modifier(Modifier::REVERSED))
                .render(status, frame);

            let (text, cursor) = view.input();
            let prompt = "> ";
            let (cells, cursor) = input_cells(&text, cursor);
            let room = usize::from(input.width)
                .saturating_sub(prompt.len() + 1)
                .max(1);
            // Scroll the input horizontally so that the cursor stays visible: walk back from
            // the cursor while the cells fit (a pasted input may hold thousands).
            let mut first = cursor;
            let mut used = 0;
            while first > 0 && used + cells[first - 1].width() <= room {
                first -= 1;
                used += cells[first].width();
            }
            let shown = usize::from(input.width);
            let visible: String = cells[first..].iter().take(shown).map(|c| &**c).collect();
            Paragraph::new(format!("{prompt}{visible}")).render(input, frame);
            let x = input.x + (prompt.len() + used) as u16;
            Some(Position::new(
                x.min(input.right().saturating_sub(1)),
                input.y,
            ))
        }
    }

    /// Leaves the alternate screen and restores the terminal, then writes `farewell` (one
    /// line, free of control characters) on the normal screen, where the user still sees it
    /// after the connection closes. Waits for room on the connection: unlike a frame, the
    /// goodbye is never dropped.
    pub async fn restore(&mut self, farewell: &str) -> io::Result<()> {
        let mut goodbye = TEARDOWN.to_vec();
        if !farewell.is_empty() {
            goodbye.extend_from_slice(farewell.as_bytes());
            goodbye.extend_from_slice(b"\r\n");
        }
        let goodbye = Outgoing::charge(&self.sink.memory, Bytes::from(goodbye))
            .map_err(|_| io::Error::other(crate::output::OVER_BUDGET))?;
        self.sink
            .frames
            .send(goodbye)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink charging a budget of `memory` bytes, and the connection's end of its queue.
    fn sink(memory: usize) -> (FrameSink, mpsc::Receiver<Outgoing>) {
        FrameSink::new(MemoryBudget::new(memory))
    }

    #[tokio::test]
    async fn frames_are_charged_while_queued_and_one_past_the_budget_ends_the_session() {
        let (frames, mut out) = sink(usize::MAX);
        let memory = Arc::clone(&frames.memory);
        let mut screen = Screen::new(clamp(300, 100), frames).unwrap();
        let mut view = ChatView::default();
        for i in 0..100 {
            view.push(super::super::view::PaneLine::plain(
                format!("{i} {}", "x".repeat(290)),
                LineKind::Message,
            ));
        }
        screen.draw(&view).unwrap();
        let queued = out.try_recv().unwrap();
        let charged = queued.data().len() - crate::output::UNCHARGED_OUTPUT_BYTES;
        assert_eq!(
            memory.used(),
            charged,
            "a full screen is charged while it waits"
        );
        drop(queued);
        assert_eq!(memory.used(), 0);

        let (frames, _out) = sink(1024);
        let mut screen = Screen::new(clamp(300, 100), frames).unwrap();
        assert!(screen.draw(&view).is_err());
        assert!(screen.over_budget());
    }

    #[test]
    fn the_palette_follows_the_terminal_type() {
        for term in ["", "dumb", "vt100", "VT220", "unknown"] {
            assert_eq!(Palette::for_term(term), Palette::Plain, "{term:?}");
        }
        for term in [
            "xterm",
            "xterm-256color",
            "screen",
            "tmux-256color",
            "linux",
        ] {
            assert_eq!(Palette::for_term(term), Palette::Extended, "{term:?}");
        }
        assert_eq!(Palette::Plain.nick(3), None);
        assert_eq!(Palette::Extended.nick(0), Some(Color::Indexed(31)));
    }

    #[test]
    fn sizes_are_clamped_to_a_real_terminal() {
        let size = |cols, rows| {
            let area = clamp(cols, rows);
            (area.width, area.height)
        };
        assert_eq!(size(65535, 65535), (MAX_COLS, MAX_ROWS));
        assert_eq!(size(u32::MAX, 30), (MAX_COLS, 30));
        assert_eq!(size(0, 0), (80, 24));
        assert_eq!(size(1, 1), (1, 1), "too small is shown as such, not faked");
        assert_eq!(size(19, 70_000), (19, MAX_ROWS));
        assert_eq!(size(132, 43), (132, 43));
    }

    #[test]
    fn rows_are_drawn_cell_by_cell_without_control_characters() {
        let area = Rect::new(0, 0, 12, 3);
        let mut buf = Buffer::empty(area);
        let rows = [
            Row {
                text: "10:00 <bob> hello there".into(),
                nick: Some(7..10),
                kind: LineKind::Message,
            },
            Row {
                text: "\x1b[31m\x07red".into(),
                nick: None,
                kind: LineKind::Notice,
            },
            Row {
                text: "日本語 ok".into(),
                nick: None,
                kind: LineKind::Private,
            },
        ];
        draw_rows(&rows, Palette::Extended, area, &mut buf);
        let row = |y: u16| -> String { (0..12).map(|x| buf[(x, y)].symbol()).collect() };
        assert_eq!(row(0), "10:00 <bob> ", "cut at the pane's width");
        assert_eq!(row(1), "[31mred     ", "no ESC or BEL reaches a cell");
        // A wide character takes two cells; the second is blank, hidden behind it.
        assert_eq!(row(2), "日 本 語  ok   ");
        let colour = Palette::Extended.nick(nick_colour("bob"));
        assert_eq!(buf[(7, 0)].fg, colour.unwrap());
        assert_eq!(buf[(6, 0)].fg, Color::Reset);
        assert!(buf[(0, 1)].modifier.contains(Modifier::DIM));
        assert!(buf[(0, 2)].modifier.contains(Modifier::BOLD));
    }

    /// An emulated terminal of 60x12.
    fn terminal_60x12() -> vt100::Parser {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        vt100::Parser::new(size(12), size(60), 0)
    }

    /// What each cell of `terminal` shows: its text (a blank cell as a space) and looks.
    fn seen(terminal: &vt100::Parser) -> Vec<(String, vt100::Color, bool, bool, bool)> {
        let screen = terminal.screen();
        let (rows, cols) = screen.size();
        let mut cells = Vec::new();
        for row in 0..rows.get() {
            for col in 0..cols.get() {
                let cell = screen.cell(row, col).unwrap();
                let text = match cell.contents() {
                    "" => " ",
                    text => text,
                };
                let looks = (cell.fgcolor(), cell.bold(), cell.dim(), cell.inverse());
                cells.push((text.to_owned(), looks.0, looks.1, looks.2, looks.3));
            }
        }
        cells
    }

    /// Feeds the frames `out` holds to `terminal`, in order; returns their bytes.
    fn apply(terminal: &mut vt100::Parser, out: &mut mpsc::Receiver<Outgoing>) -> usize {
        let sent = received(out);
        terminal.process(&sent);
        sent.len()
    }

    /// The bytes of every frame `out` holds, in order.
    fn received(out: &mut mpsc::Receiver<Outgoing>) -> Vec<u8> {
        let mut bytes = Vec::new();
        while let Ok(frame) = out.try_recv() {
            bytes.extend_from_slice(frame.data());
        }
        bytes
    }

    #[test]
    fn the_scroll_search_gives_up_within_twice_the_pane_on_near_identical_lines() {
        let pane = Rect::new(0, 0, 40, 20);
        // The pane after `shift` new lines, its rows made by `line` from their line number.
        let scrolled = |shift: usize, line: &dyn Fn(usize) -> String| -> Buffer {
            let mut buffer = Buffer::empty(pane);
            for y in 0..20 {
                buffer.set_string(0, y as u16, line(y + shift), Style::default());
            }
            buffer
        };
        // A chat's distinct lines, scrolled by 3: found.
        let chat = |n: usize| format!("line {n}");
        assert_eq!(
            scrolled_rows(&scrolled(0, &chat), &scrolled(3, &chat), pane),
            3
        );
        // Lines that are all the same but one: each candidate shift would match up to that
        // one, a whole pane's comparison per shift. The search gives up (a full comparison
        // of the frame follows) instead of finding the shift of 3.
        let flood = |n: usize| {
            if n == 19 {
                "odd".to_owned()
            } else {
                "same".to_owned()
            }
        };
        assert_eq!(
            scrolled_rows(&scrolled(0, &flood), &scrolled(3, &flood), pane),
            0
        );
    }

    #[tokio::test]
    async fn scrolled_frames_leave_the_terminal_as_a_full_repaint_would() {
        let (frames, mut out) = sink(usize::MAX);
        let mut screen = Screen::new(clamp(60, 12), frames).unwrap();
        let mut terminal = terminal_60x12();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        let mut said = 0;
        // One message, a few, a screenful and more at once, a long wrapped one, paging up
        // and back: each frame goes to the same emulated terminal.
        for burst in [1, 1, 3, 10, 25, 1, 2] {
            for _ in 0..burst {
                said += 1;
                let wide = "日本".repeat(said % 3);
                let text = format!(
                    "12:00 <n{said}> message {said} {}{wide}",
                    "é".repeat(said % 7)
                );
                view.push(super::super::view::PaneLine::with_nick(
                    text,
                    &format!("n{said}"),
                    LineKind::Message,
                ));
            }
            screen.draw(&view).unwrap();
            let sent = apply(&mut terminal, &mut out);
            let mut fresh = terminal_60x12();
            let (repaint, mut whole) = sink(usize::MAX);
            Screen::new(clamp(60, 12), repaint)
                .unwrap()
                .draw(&view)
                .unwrap();
            let full = apply(&mut fresh, &mut whole);
            assert_eq!(seen(&terminal), seen(&fresh), "after a burst of {burst}");
            assert_eq!(
                terminal.screen().cursor_position(),
                fresh.screen().cursor_position()
            );
            if burst == 1 && said > 12 {
                assert!(
                    sent * 3 < full,
                    "one new row costs {sent} bytes, a repaint {full}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_largest_screen_draws_in_bounded_memory() {
        let (frames, mut out) = sink(usize::MAX);
        let mut screen = Screen::new(clamp(65535, 65535), frames).unwrap();
        let mut view = ChatView::default();
        // Every row full, names coloured: the costliest frame to draw.
        for i in 0..300 {
            let text = format!("12:00 <n{i}> {}", "日x".repeat(200));
            view.push(super::super::view::PaneLine::with_nick(
                text,
                &format!("n{i}"),
                LineKind::Message,
            ));
        }
        screen.draw(&view).unwrap();
        let frame = out.try_recv().unwrap();
        let frame = frame.data();
        // One full frame of 500x200 cells, with cursor moves and colours: under a megabyte.
        assert!(frame.len() < 1024 * 1024, "{}", frame.len());
        assert_eq!(screen.pane(), (500, 198));
    }

    #[tokio::test]
    async fn resizing_redraws_at_the_new_size() {
        let (frames, mut out) = sink(usize::MAX);
        let mut screen = Screen::new(clamp(80, 24), frames).unwrap();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        screen.draw(&view).unwrap();
        screen.resize(clamp(100, 30)).unwrap();
        screen.draw(&view).unwrap();
        let all = received(&mut out);
        // The status line moved to row 29 (1-based), the input line to row 30.
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("\x1b[29;1H") || text.contains("\x1b[29;"),
            "{text:?}"
        );
    }

    #[tokio::test]
    async fn a_repaint_clears_and_draws_every_line_again() {
        let (frames, mut out) = sink(usize::MAX);
        let mut screen = Screen::new(clamp(50, 15), frames).unwrap();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        view.push(super::super::view::PaneLine::plain(
            "hello there".into(),
            LineKind::Message,
        ));
        screen.draw(&view).unwrap();
        while out.try_recv().is_ok() {}
        screen.repaint();
        screen.draw(&view).unwrap();
        let frames = received(&mut out);
        let text = String::from_utf8_lossy(&frames);
        assert!(text.starts_with("\x1b[0m\x1b[2J"), "{text:?}");
        assert!(text.contains("hello"), "{text:?}");
    }

    #[tokio::test]
    async fn a_terminal_too_small_shows_a_notice_until_it_grows() {
        let (frames, mut out) = sink(usize::MAX);
        let mut screen = Screen::new(clamp(12, 4), frames).unwrap();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        screen.draw(&view).unwrap();
        let all = received(&mut out);
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("terminal") && text.contains("small"),
            "{text:?}"
        );
        assert!(!text.contains("#lobby"), "{text:?}");
        screen.resize(clamp(40, 10)).unwrap();
        screen.draw(&view).unwrap();
        let all = received(&mut out);
        assert!(String::from_utf8_lossy(&all).contains("#lobby"));
    }
}
