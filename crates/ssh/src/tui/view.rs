//! The chat screen's state and how keys change it, with no terminal: what is shown (already
//! sanitised lines), the input line and its cursor, input history and scrollback.

use std::collections::VecDeque;

use terminput::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use unicode_width::UnicodeWidthChar;

/// Lines kept for scrollback.
const SCROLLBACK: usize = 5000;

/// Entries of input history.
const HISTORY: usize = 100;

/// What a key asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    Redraw,
    /// Send this line (a message or a `/command`).
    Submit(String),
    /// Leave.
    Quit,
}

/// The chat screen's state.
#[derive(Debug, Default)]
pub struct ChatView {
    /// The room shown in the status line.
    pub room: String,
    /// Names present, for the status line.
    pub members: usize,
    lines: VecDeque<String>,
    input: Vec<char>,
    cursor: usize,
    /// Rows scrolled up from the bottom of the message pane.
    scroll: usize,
    history: Vec<String>,
    history_pos: Option<usize>,
}

impl ChatView {
    /// Adds a line to the message pane. A user scrolled up keeps their view.
    pub fn push(&mut self, line: String) {
        if self.lines.len() == SCROLLBACK {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Empties the message pane (on changing rooms).
    pub fn clear(&mut self) {
        self.lines.clear();
        self.scroll = 0;
    }

    /// The input line and the cursor's position in it (in characters).
    pub fn input(&self) -> (String, usize) {
        (self.input.iter().collect(), self.cursor)
    }

    /// Rows scrolled up from the bottom.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// The last `count` rows of the message pane for a pane `width` columns wide, wrapped by
    /// display width, oldest first. Only the lines that reach the screen are wrapped, so a
    /// redraw costs the screen's size, not the scrollback's.
    pub fn last_rows(&self, width: usize, count: usize) -> Vec<String> {
        let mut rows = Vec::with_capacity(count);
        for line in self.lines.iter().rev() {
            if rows.len() >= count {
                break;
            }
            rows.extend(wrap(line, width.max(1)).into_iter().rev());
        }
        rows.truncate(count);
        rows.reverse();
        rows
    }

    /// Applies an input event; `page` is the pane height, for PgUp/PgDn.
    pub fn handle(&mut self, event: &Event, page: usize) -> Action {
        match event {
            Event::Paste(text) => {
                for c in text.chars() {
                    self.insert(if c == '\r' { '\n' } else { c });
                }
                Action::Redraw
            }
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key, page),
            _ => Action::Redraw,
        }
    }

    fn insert(&mut self, c: char) {
        self.input.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn key(&mut self, key: &KeyEvent, page: usize) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CTRL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Action::Quit,
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('b') if ctrl => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Char('f') if ctrl => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Char('u') if ctrl => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('k') if ctrl => self.input.truncate(self.cursor),
            KeyCode::Char('w') if ctrl => {
                let start = self.word_start();
                self.input.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Left if alt || ctrl => self.cursor = self.word_start(),
            KeyCode::Right if alt || ctrl => self.cursor = self.word_end(),
            // Other control chords (Ctrl-C among them, as in ssh-chat) do nothing.
            KeyCode::Char(_) if ctrl || alt => {}
            KeyCode::Char(c) => self.insert(c),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Up => self.recall(true),
            KeyCode::Down => self.recall(false),
            KeyCode::PageUp => self.scroll += page.max(1),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(page.max(1)),
            KeyCode::Enter => {
                let line: String = self.input.drain(..).collect();
                self.cursor = 0;
                self.history_pos = None;
                self.scroll = 0;
                if line.trim().is_empty() {
                    return Action::Redraw;
                }
                if self.history.len() == HISTORY {
                    self.history.remove(0);
                }
                self.history.push(line.clone());
                return Action::Submit(line);
            }
            _ => {}
        }
        Action::Redraw
    }

    fn word_start(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.input[i - 1] == ' ' {
            i -= 1;
        }
        while i > 0 && self.input[i - 1] != ' ' {
            i -= 1;
        }
        i
    }

    fn word_end(&self) -> usize {
        let mut i = self.cursor;
        while i < self.input.len() && self.input[i] == ' ' {
            i += 1;
        }
        while i < self.input.len() && self.input[i] != ' ' {
            i += 1;
        }
        i
    }

    fn recall(&mut self, older: bool) {
        let pos = match (self.history_pos, older) {
            (None, true) if !self.history.is_empty() => Some(self.history.len() - 1),
            (Some(p), true) => Some(p.saturating_sub(1)),
            (Some(p), false) if p + 1 < self.history.len() => Some(p + 1),
            (Some(_), false) => None,
            (None, _) => return,
        };
        self.history_pos = pos;
        self.input = pos.map_or_else(Vec::new, |p| self.history[p].chars().collect());
        self.cursor = self.input.len();
    }
}

/// Splits `line` into rows of at most `width` display columns (wide characters count 2).
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut rows = vec![String::new()];
    let mut used = 0;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width && used > 0 {
            rows.push(String::new());
            used = 0;
        }
        rows.last_mut().expect("one row at least").push(c);
        used += w;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code))
    }

    fn ctrl(c: char) -> Event {
        Event::Key(KeyEvent::new(KeyCode::Char(c)).modifiers(KeyModifiers::CTRL))
    }

    fn typed(view: &mut ChatView, text: &str) {
        for c in text.chars() {
            view.handle(&key(KeyCode::Char(c)), 10);
        }
    }

    #[test]
    fn editing_and_submitting() {
        let mut view = ChatView::default();
        typed(&mut view, "hello world");
        view.handle(&ctrl('w'), 10);
        assert_eq!(view.input(), ("hello ".into(), 6));
        view.handle(&key(KeyCode::Home), 10);
        typed(&mut view, "日本 ");
        assert_eq!(view.input(), ("日本 hello ".into(), 3));
        view.handle(&ctrl('k'), 10);
        assert_eq!(view.input().0, "日本 ");
        view.handle(&ctrl('c'), 10);
        assert_eq!(view.input().0, "日本 ", "Ctrl-C does nothing");
        assert_eq!(
            view.handle(&key(KeyCode::Enter), 10),
            Action::Submit("日本 ".into())
        );
        assert_eq!(view.input(), (String::new(), 0));
        view.handle(&key(KeyCode::Up), 10);
        assert_eq!(view.input().0, "日本 ");
        view.handle(&key(KeyCode::Down), 10);
        assert_eq!(view.input().0, "");
        assert_eq!(view.handle(&ctrl('d'), 10), Action::Quit);
    }

    #[test]
    fn a_paste_is_one_multi_line_message() {
        let mut view = ChatView::default();
        view.handle(&Event::Paste("l1\r\nl2".into()), 10);
        assert_eq!(
            view.handle(&key(KeyCode::Enter), 10),
            Action::Submit("l1\n\nl2".into())
        );
    }

    #[test]
    fn wrapping_counts_display_width() {
        assert_eq!(wrap("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(wrap("日本語", 4), ["日本", "語"]);
        assert_eq!(wrap("", 4), [""]);
        let mut view = ChatView::default();
        view.push("abcdefgh".into());
        view.push("ij".into());
        assert_eq!(view.last_rows(4, 10), ["abcd", "efgh", "ij"]);
        assert_eq!(view.last_rows(4, 2), ["efgh", "ij"]);
        assert_eq!(view.last_rows(4, 0), Vec::<String>::new());
    }

    #[test]
    fn scrolling_stays_put_when_messages_arrive() {
        let mut view = ChatView::default();
        view.handle(&key(KeyCode::PageUp), 5);
        view.push("new".into());
        assert_eq!(view.scroll(), 5);
        view.handle(&key(KeyCode::PageDown), 5);
        assert_eq!(view.scroll(), 0);
    }
}
