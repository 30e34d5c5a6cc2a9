//! A session's emulated terminal: every byte the server sends goes through a VT100 parser, so
//! that the benchmark sees what a person at that terminal would see.

use std::num::NonZeroU16;

/// Columns of every session's terminal.
pub(crate) const COLS: u16 = 80;

/// Rows of every session's terminal.
pub(crate) const ROWS: u16 = 24;

/// The terminal type every session announces.
pub(crate) const TERM: &str = "xterm";

/// The chat's status line is the next-to-last row: message pane, status, input.
const STATUS_ROW: u16 = ROWS - 2;

/// One session's terminal screen.
pub(crate) struct Screen(vt100::Parser);

impl Screen {
    /// A blank screen of [`ROWS`] × [`COLS`] without scrollback.
    pub(crate) fn new() -> Self {
        let size = |n| NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN);
        Self(vt100::Parser::new(size(ROWS), size(COLS), 0))
    }

    /// Applies output of the server to the screen.
    pub(crate) fn feed(&mut self, output: &[u8]) {
        self.0.process(output);
    }

    /// The text of the whole screen, one line per row.
    pub(crate) fn text(&self) -> String {
        self.0.screen().contents()
    }

    /// Whether the status line says that the session is in `room` (without its `#`).
    pub(crate) fn is_in(&self, room: &str) -> bool {
        let status = self
            .0
            .screen()
            .contents_between(STATUS_ROW, 0, STATUS_ROW, COLS);
        status
            .strip_prefix(" #")
            .and_then(|rest| rest.strip_prefix(room))
            .is_some_and(|rest| rest.starts_with(' '))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_chat_layout() {
        let mut screen = Screen::new();
        assert!(!screen.is_in("lobby"));
        // The alternate screen, a message on the first row, the status line on row 23 of 24
        // (1-based), in reverse video as the server draws it.
        screen.feed(b"\x1b[?1049h\x1b[2J\x1b[H12:00 <alice> hi");
        screen.feed(b"\x1b[23;1H\x1b[7m #lobby2  3 here\x1b[0m");
        assert!(!screen.is_in("lobby"));
        assert!(screen.is_in("lobby2"));
        screen.feed(b"\x1b[23;1H\x1b[7m #lobby  3 here \x1b[0m");
        assert!(screen.is_in("lobby"));
        assert!(screen.text().starts_with("12:00 <alice> hi\n"));
    }
}
