//! Drawing the chat view with ratatui into an SSH channel: a fixed viewport of the client's size
//! (never the server's tty), and a writer whose flush hands each frame to the connection without
//! waiting, dropping frames for a client that does not keep up (the next frame is a full redraw).

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::{Terminal, TerminalOptions, Viewport};
use tokio::sync::mpsc;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::view::{ChatView, LineKind, Row, nick_colour};

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

/// A pane row as ratatui draws it: the name in its colour (in `palette`), private messages and
/// notices set apart.
fn styled(row: &Row, palette: Palette) -> Line<'static> {
    let base = match row.kind {
        LineKind::Message | LineKind::Own => Style::default(),
        LineKind::Private => Style::default().add_modifier(Modifier::BOLD),
        LineKind::Notice => Style::default().add_modifier(Modifier::DIM),
        LineKind::Highlight => Style::default().add_modifier(Modifier::REVERSED),
    };
    match &row.nick {
        Some(range) => {
            let name = match palette.nick(nick_colour(&row.text[range.clone()])) {
                Some(colour) => base.fg(colour),
                None => base,
            };
            Line::from(vec![
                Span::styled(row.text[..range.start].to_owned(), base),
                Span::styled(row.text[range.clone()].to_owned(), name),
                Span::styled(row.text[range.end..].to_owned(), base),
            ])
        }
        None => Line::styled(row.text.clone(), base),
    }
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

/// Enter the alternate screen, clear it, turn on bracketed paste.
pub const SETUP: &[u8] = b"\x1b[?1049h\x1b[2J\x1b[H\x1b[?2004h";

/// Undo [`SETUP`] and show the cursor.
pub const TEARDOWN: &[u8] = b"\x1b[?2004l\x1b[?25h\x1b[?1049l";

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

/// A `Write` that collects one frame and, on flush, queues it for the connection.
pub struct ChannelWriter {
    frame: Vec<u8>,
    frames: mpsc::Sender<Bytes>,
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
        match self.frames.try_send(frame) {
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

/// The client's screen.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<ChannelWriter>>,
    area: Rect,
    frames: mpsc::Sender<Bytes>,
    dropped: Arc<AtomicBool>,
    palette: Palette,
}

/// A ratatui terminal of `area` whose first frame starts with `preamble`.
fn terminal(
    area: Rect,
    preamble: &[u8],
    frames: mpsc::Sender<Bytes>,
    dropped: Arc<AtomicBool>,
) -> io::Result<Terminal<CrosstermBackend<ChannelWriter>>> {
    let writer = ChannelWriter {
        frame: preamble.to_vec(),
        frames,
        dropped,
    };
    Terminal::with_options(
        CrosstermBackend::new(writer),
        TerminalOptions {
            viewport: Viewport::Fixed(area),
        },
    )
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

impl Screen {
    /// A screen of `area`, writing frames to `frames`.
    pub fn new(area: Rect, frames: mpsc::Sender<Bytes>) -> io::Result<Screen> {
        let dropped = Arc::new(AtomicBool::new(false));
        Ok(Screen {
            terminal: terminal(area, SETUP, frames.clone(), Arc::clone(&dropped))?,
            area,
            frames,
            dropped,
            palette: Palette::Extended,
        })
    }

    /// Draws names in `palette` from now on (256 colours until told otherwise).
    pub fn set_palette(&mut self, palette: Palette) {
        self.palette = palette;
    }

    /// Follows a window-change. ratatui's own `resize` asks the server's tty for its size, so a
    /// new terminal of the client's size replaces the old one; its first frame resets the
    /// terminal's attributes, clears it and repaints all.
    pub fn resize(&mut self, area: Rect) -> io::Result<()> {
        self.area = area;
        let fresh = terminal(
            area,
            b"\x1b[0m\x1b[2J",
            self.frames.clone(),
            Arc::clone(&self.dropped),
        )?;
        self.terminal = fresh;
        Ok(())
    }

    /// The screen's size now.
    pub fn area(&self) -> Rect {
        self.area
    }

    /// Whether the connection has room for another frame now.
    pub fn ready(&self) -> bool {
        self.frames.capacity() > 0
    }

    /// Waits until the connection has room for another frame; never, once it is gone.
    pub async fn wait_ready(&self) {
        // The permit is only a probe: the frame itself goes through the writer's `try_send`,
        // and this task is the only sender, so the room stays there.
        if self.frames.reserve().await.is_err() {
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
        self.terminal.draw(|frame| {
            let area = frame.area();
            if area.width < MIN_COLS || area.height < MIN_ROWS {
                let notice = Paragraph::new(TOO_SMALL).wrap(Wrap { trim: true });
                frame.render_widget(notice, area);
                return;
            }
            // Pane, status line, input line: fixed rows, no layout solver on every frame.
            let pane = Rect {
                height: area.height.saturating_sub(2),
                ..area
            };
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
            let palette = self.palette;
            let shown: Vec<Line> = rows[start..end]
                .iter()
                .map(|row| styled(row, palette))
                .collect();
            frame.render_widget(Paragraph::new(shown), pane);

            let status_text = view.status_line(usize::from(status.width));
            frame.render_widget(
                Paragraph::new(status_text)
                    .style(Style::default().add_modifier(Modifier::REVERSED)),
                status,
            );

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
            frame.render_widget(Paragraph::new(format!("{prompt}{visible}")), input);
            let x = input.x + (prompt.len() + used) as u16;
            frame.set_cursor_position(Position::new(
                x.min(input.right().saturating_sub(1)),
                input.y,
            ));
        })?;
        Ok(())
    }

    /// Leaves the alternate screen.
    pub fn restore(&mut self) -> io::Result<()> {
        let backend = self.terminal.backend_mut();
        backend.write_all(TEARDOWN)?;
        Write::flush(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn the_largest_screen_draws_in_bounded_memory() {
        let (frames, mut out) = mpsc::channel(FRAME_QUEUE);
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
        // One full frame of 500x200 cells, with cursor moves and colours: under a megabyte.
        assert!(frame.len() < 1024 * 1024, "{}", frame.len());
        assert_eq!(screen.pane(), (500, 198));
    }

    #[tokio::test]
    async fn resizing_redraws_at_the_new_size() {
        let (frames, mut out) = mpsc::channel(FRAME_QUEUE);
        let mut screen = Screen::new(clamp(80, 24), frames).unwrap();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        screen.draw(&view).unwrap();
        screen.resize(clamp(100, 30)).unwrap();
        screen.draw(&view).unwrap();
        let mut all = Vec::new();
        while let Ok(frame) = out.try_recv() {
            all.extend_from_slice(&frame);
        }
        // The status line moved to row 29 (1-based), the input line to row 30.
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("\x1b[29;1H") || text.contains("\x1b[29;"),
            "{text:?}"
        );
    }

    #[tokio::test]
    async fn a_repaint_clears_and_draws_every_line_again() {
        let (frames, mut out) = mpsc::channel(FRAME_QUEUE);
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
        let mut frames = Vec::new();
        while let Ok(frame) = out.try_recv() {
            frames.extend_from_slice(&frame);
        }
        let text = String::from_utf8_lossy(&frames);
        assert!(text.starts_with("\x1b[0m\x1b[2J"), "{text:?}");
        assert!(text.contains("hello"), "{text:?}");
    }

    #[tokio::test]
    async fn a_terminal_too_small_shows_a_notice_until_it_grows() {
        let (frames, mut out) = mpsc::channel(FRAME_QUEUE);
        let mut screen = Screen::new(clamp(12, 4), frames).unwrap();
        let mut view = ChatView::default();
        view.room = "lobby".into();
        screen.draw(&view).unwrap();
        let mut all = Vec::new();
        while let Ok(frame) = out.try_recv() {
            all.extend_from_slice(&frame);
        }
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("terminal") && text.contains("small"),
            "{text:?}"
        );
        assert!(!text.contains("#lobby"), "{text:?}");
        screen.resize(clamp(40, 10)).unwrap();
        screen.draw(&view).unwrap();
        let mut all = Vec::new();
        while let Ok(frame) = out.try_recv() {
            all.extend_from_slice(&frame);
        }
        assert!(String::from_utf8_lossy(&all).contains("#lobby"));
    }
}
