//! The chat screen's state and how keys change it, with no terminal: what is shown (already
//! sanitised lines), the input line and its cursor, input history, scrollback and completion.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use kanava_core::{MemoryBudget, Reservation};

use terminput::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Lines kept for scrollback.
const SCROLLBACK: usize = 5000;

/// Bytes of text kept for scrollback: long lines from a busy room keep fewer of them (older
/// ones are paged in from the store again when the user scrolls back to them).
const SCROLLBACK_BYTES: usize = 1024 * 1024;

/// Bytes of scrollback not charged to the memory budget: a quiet room's is below it. Past the
/// budget, a scrollback keeps only this much (its oldest lines are dropped), and the session
/// goes on.
const UNCHARGED_SCROLLBACK_BYTES: usize = 64 * 1024;

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
    /// Complete the word before the cursor (Tab): the session supplies the candidates.
    Complete,
    /// Show the user this note (a refused paste); the input is kept.
    Note(String),
    /// Repaint the whole screen, whatever the terminal shows now (Ctrl-L).
    Repaint,
    /// Show the open room at this index (from 0) in the status line's order (Alt-1..9).
    ShowRoom(usize),
    /// Show the open room after the current one, the first after the last (Ctrl-N).
    NextRoom,
    /// Show the open room before the current one, the last before the first (Ctrl-P).
    PreviousRoom,
}

/// The note for a paste of `bytes` that does not fit the input line of `max` bytes.
pub fn too_long_paste(bytes: usize, max: usize) -> String {
    format!("* paste of {bytes} bytes not taken: a message holds at most {max} bytes")
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineKind {
    /// Room traffic.
    #[default]
    Message,
    /// The user's own message.
    Own,
    /// A private message.
    Private,
    /// Announcements and answers from the server.
    Notice,
    /// Something for the user: a message naming them, or a private message to them.
    Highlight,
}

/// A line of the message pane: sanitised text, and where the sender's name is in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaneLine {
    /// The text, free of control characters but `\n`, which starts a continuation row.
    pub text: String,
    /// Byte range of the sender's name in `text`, drawn in the name's colour.
    pub nick: Option<Range<usize>>,
    /// How to draw it.
    pub kind: LineKind,
    /// Columns that continuation rows (after a line break or a wrap) are indented by, so that
    /// they line up under the message text.
    pub indent: usize,
}

impl PaneLine {
    /// A line with no name to colour.
    pub fn plain(text: String, kind: LineKind) -> Self {
        Self {
            text,
            nick: None,
            kind,
            indent: 0,
        }
    }

    /// A line whose first occurrence of `nick` (after the time) is coloured.
    pub fn with_nick(text: String, nick: &str, kind: LineKind) -> Self {
        let nick = (!nick.is_empty())
            .then(|| text.find(nick).map(|at| at..at + nick.len()))
            .flatten();
        Self {
            text,
            nick,
            kind,
            indent: 0,
        }
    }
}

/// One screen row of the pane: a piece of a wrapped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row's text.
    pub text: String,
    /// Byte range of the sender's name within this row, if it lies wholly in it.
    pub nick: Option<Range<usize>>,
    /// How to draw it.
    pub kind: LineKind,
}

/// The palette index (0–11) of a name's colour: the same name always gets the same colour.
pub fn nick_colour(nick: &str) -> usize {
    let hash = nick
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(2_166_136_261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        });
    (hash % 12) as usize
}

/// Bytes the input line holds unless told otherwise (the default message size).
pub const DEFAULT_MAX_INPUT: usize = 4096;

/// The chat screen's state.
#[derive(Debug)]
pub struct ChatView {
    /// The room shown in the status line.
    pub room: String,
    /// Names present, for the status line.
    pub members: usize,
    /// The user's open rooms and their unread counts, in the order the room keys go through
    /// them, for the status line.
    pub rooms: Vec<(String, usize)>,
    /// Which of `rooms` is shown.
    pub current: usize,
    /// Width of the message pane, for paging.
    pub pane_width: usize,
    /// Most bytes (UTF-8) the input line holds, the longest message: typing past it is dropped
    /// and a longer paste is refused whole, so that a client cannot grow it without bound.
    pub max_input: usize,
    lines: VecDeque<PaneLine>,
    /// Bytes of text in `lines`.
    line_bytes: usize,
    /// What of `line_bytes` is charged to the memory budget, once [`ChatView::charge_to`].
    charge: Option<Reservation>,
    input: Vec<char>,
    cursor: usize,
    /// Rows scrolled up from the bottom of the message pane.
    scroll: usize,
    history: Vec<String>,
    history_pos: Option<usize>,
}

impl Default for ChatView {
    fn default() -> Self {
        Self {
            room: String::new(),
            members: 0,
            rooms: Vec::new(),
            current: 0,
            pane_width: 0,
            max_input: DEFAULT_MAX_INPUT,
            lines: VecDeque::new(),
            line_bytes: 0,
            charge: None,
            input: Vec::new(),
            cursor: 0,
            scroll: 0,
            history: Vec::new(),
            history_pos: None,
        }
    }
}

impl ChatView {
    /// Charges the scrollback to `memory` from now on: past [`UNCHARGED_SCROLLBACK_BYTES`], it
    /// keeps only the newest lines the budget holds.
    pub fn charge_to(&mut self, memory: &Arc<MemoryBudget>) {
        self.charge = Some(memory.empty());
        self.drop_oldest();
    }

    /// Whether the scrollback's charge fits the budget (growing or shrinking it to its size).
    fn charged(&mut self) -> bool {
        let held = self.line_bytes.saturating_sub(UNCHARGED_SCROLLBACK_BYTES);
        self.charge
            .as_mut()
            .is_none_or(|charge| charge.resize(held).is_ok())
    }

    /// Drops the oldest lines until the scrollback is within its lines, its bytes and what the
    /// memory budget holds.
    fn drop_oldest(&mut self) {
        while self.lines.len() > SCROLLBACK || self.line_bytes > SCROLLBACK_BYTES || !self.charged()
        {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            self.line_bytes -= oldest.text.len();
        }
    }

    /// Adds a line to the message pane. A user scrolled up keeps their view.
    pub fn push(&mut self, line: PaneLine) {
        self.line_bytes += line.text.len();
        self.lines.push_back(line);
        self.drop_oldest();
    }

    /// Adds older lines above the others (loaded on scrolling back), as many as fit; the view
    /// does not move.
    pub fn prepend(&mut self, older: Vec<PaneLine>) {
        for line in older.into_iter().rev() {
            if self.lines.len() >= SCROLLBACK
                || self.line_bytes + line.text.len() > SCROLLBACK_BYTES
            {
                break;
            }
            self.line_bytes += line.text.len();
            self.lines.push_front(line);
            if !self.charged() {
                if let Some(line) = self.lines.pop_front() {
                    self.line_bytes -= line.text.len();
                }
                self.charged();
                break;
            }
        }
    }

    /// Whether the view is scrolled up to (or past) the oldest line, for a pane `width` wide and
    /// `height` high: the moment to load older lines.
    pub fn at_top(&self, width: usize, height: usize) -> bool {
        self.scroll > 0
            && self.last_rows(width, self.scroll + height + 1).len() <= self.scroll + height
    }

    /// Keeps the scroll within what there is to show: the oldest row at the pane's top at most.
    pub fn clamp_scroll(&mut self, width: usize, height: usize) {
        let rows = self.last_rows(width, self.scroll + height).len();
        self.scroll = self.scroll.min(rows.saturating_sub(height));
    }

    /// Empties the message pane.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.line_bytes = 0;
        self.charged();
        self.scroll = 0;
    }

    /// Bytes of text in the message pane.
    pub fn pane_bytes(&self) -> usize {
        self.line_bytes
    }

    /// Exchanges the message pane (its lines and how far it is scrolled) with `other`'s: the
    /// chat keeps a pane per open room and shows one.
    pub fn swap_pane(&mut self, other: &mut ChatView) {
        std::mem::swap(&mut self.lines, &mut other.lines);
        std::mem::swap(&mut self.line_bytes, &mut other.line_bytes);
        std::mem::swap(&mut self.scroll, &mut other.scroll);
    }

    /// The status line for a terminal `width` columns wide: the room shown and how many are
    /// in it, then the open rooms numbered in the order of the room keys (the one shown in
    /// brackets, unread counts in parentheses), and a marker while the pane is scrolled up.
    /// What does not fit is abbreviated, then summed up as `+N more (U unread)`, so that the
    /// room shown, the unread counts and the marker always show.
    pub fn status_line(&self, width: usize) -> String {
        let scrolled = if self.scroll > 0 {
            "  [scrolled: PgDn]"
        } else {
            ""
        };
        let every = vec![true; self.rooms.len()];
        for longest in [usize::MAX, 12, 8, 5] {
            let head = format!(
                " #{}  {} here",
                abbreviated(&self.room, longest),
                self.members
            );
            let line = format!("{head}{}{scrolled}", self.room_list(&every, longest));
            if line.width() <= width {
                return line;
            }
        }
        // Too many rooms: the room shown with its number, as many others as fit (those with
        // unread lines first), the rest summed up; then without the people count. Each try
        // costs the number of rooms (and a sort), however many there are.
        let number = self.current + 1;
        let room = abbreviated(&self.room, 8);
        let heads = [
            (
                format!(" {number}:#{room}  {} here", self.members),
                scrolled,
            ),
            (
                format!(" {number}:#{room}  {} here", self.members),
                SCROLLED_SHORT,
            ),
            (format!(" {number}:#{room}"), SCROLLED_SHORT),
        ];
        let others: Vec<usize> = self
            .status_order()
            .into_iter()
            .filter(|&i| i != self.current)
            .collect();
        let all_unread: usize = others.iter().map(|&i| self.rooms[i].1).sum();
        for (head, marker) in heads {
            let marker = if self.scroll > 0 { marker } else { "" };
            let Some(space) = width.checked_sub(head.width() + marker.width()) else {
                continue;
            };
            let mut chosen = vec![false; self.rooms.len()];
            let (mut used, mut rest, mut unread) = (1, others.len(), all_unread);
            for &index in &others {
                let entry = 1 + self.room_entry(index, 5).width();
                let count = self.rooms[index].1;
                if used + entry + summary(rest - 1, unread - count).width() <= space {
                    chosen[index] = true;
                    used += entry;
                    rest -= 1;
                    unread -= count;
                }
            }
            if used + summary(rest, unread).width() <= space {
                return format!("{head}{}{marker}", self.room_list(&chosen, 5));
            }
        }
        // Narrower than a room and the summary: the room, what is unread, the marker.
        let unread = match all_unread {
            0 => String::new(),
            n => format!(" ({n} unread)"),
        };
        let marker = if self.scroll > 0 { SCROLLED_SHORT } else { "" };
        format!(" #{room}{unread}{marker}")
    }

    /// The open rooms in the order the status line keeps them when not all fit: the one shown,
    /// those with unread lines, then the others nearest the one shown first.
    fn status_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rooms.len()).collect();
        order.sort_by_key(|&i| {
            (
                i != self.current,
                self.rooms[i].1 == 0,
                i.abs_diff(self.current),
            )
        });
        order
    }

    /// The open room at `index` in the status line: `3:#dev (2)`, the name cut to `longest`
    /// characters, in brackets when shown.
    fn room_entry(&self, index: usize, longest: usize) -> String {
        let (name, unread) = &self.rooms[index];
        let mut entry = format!("{}:#{}", index + 1, abbreviated(name, longest));
        if *unread > 0 {
            entry.push_str(&format!(" ({unread})"));
        }
        if index == self.current {
            entry = format!("[{entry}]");
        }
        entry
    }

    /// The entries of the `chosen` open rooms, names cut to `longest` characters, then
    /// `+N more (U unread)` for the others but the room shown; nothing while one room is open.
    fn room_list(&self, chosen: &[bool], longest: usize) -> String {
        if self.rooms.len() < 2 {
            return String::new();
        }
        let mut list = String::from(" ");
        let (mut rest, mut unread) = (0, 0);
        for (index, (_, count)) in self.rooms.iter().enumerate() {
            if chosen[index] {
                list.push(' ');
                list.push_str(&self.room_entry(index, longest));
            } else if index != self.current {
                rest += 1;
                unread += count;
            }
        }
        list.push_str(&summary(rest, unread));
        list
    }

    /// The input line and the cursor's position in it (in characters).
    pub fn input(&self) -> (String, usize) {
        (self.input.iter().collect(), self.cursor)
    }

    /// Puts a refused line back in the input line (empty since Enter), cursor at its end, for
    /// the user to send again or edit.
    pub fn keep_input(&mut self, line: String) {
        if self.input.is_empty() {
            self.input = line.chars().collect();
            self.cursor = self.input.len();
        }
    }

    /// Rows scrolled up from the bottom.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// The last `count` rows of the message pane for a pane `width` columns wide, wrapped by
    /// display width, oldest first. Only the lines that reach the screen are wrapped, so a
    /// redraw costs the screen's size, not the scrollback's.
    pub fn last_rows(&self, width: usize, count: usize) -> Vec<Row> {
        let mut rows = Vec::with_capacity(count.min(1024));
        for line in self.lines.iter().rev() {
            if rows.len() >= count {
                break;
            }
            let wrapped = wrap(&line.text, width.max(1), line.indent);
            let first_len = wrapped[0].len();
            let pieces = wrapped.into_iter().enumerate().map(|(i, text)| Row {
                text,
                nick: line.nick.clone().filter(|r| i == 0 && r.end <= first_len),
                kind: line.kind,
            });
            rows.extend(pieces.collect::<Vec<_>>().into_iter().rev());
        }
        rows.truncate(count);
        rows.reverse();
        rows
    }

    /// Applies an input event; `page` is the pane height, for PgUp/PgDn.
    pub fn handle(&mut self, event: &Event, page: usize) -> Action {
        match event {
            Event::Paste(text) => self.paste(text),
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key, page),
            _ => Action::Redraw,
        }
    }

    /// Inserts a paste whole at the cursor (line breaks as `\n`), or refuses it whole when the
    /// input line would outgrow a message; the input is kept either way.
    fn paste(&mut self, text: &str) -> Action {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        if self.input_bytes() + text.len() > self.max_input {
            return Action::Note(too_long_paste(text.len(), self.max_input));
        }
        let count = text.chars().count();
        self.input.splice(self.cursor..self.cursor, text.chars());
        self.cursor += count;
        Action::Redraw
    }

    /// Bytes in the input line, as a message.
    fn input_bytes(&self) -> usize {
        self.input.iter().map(|c| c.len_utf8()).sum()
    }

    fn insert(&mut self, c: char) {
        if self.input_bytes() + c.len_utf8() > self.max_input {
            return;
        }
        self.input.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn key(&mut self, key: &KeyEvent, page: usize) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CTRL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Action::Quit,
            KeyCode::Char('l') if ctrl => return Action::Repaint,
            KeyCode::Char('n') if ctrl => return Action::NextRoom,
            KeyCode::Char('p') if ctrl => return Action::PreviousRoom,
            KeyCode::Char(digit @ '1'..='9') if alt => {
                return Action::ShowRoom(usize::from(digit as u8 - b'1'));
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('b') if ctrl => self.cursor = self.grapheme_before(),
            KeyCode::Char('f') if ctrl => self.cursor = self.grapheme_after(),
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
            KeyCode::Backspace => {
                let start = self.grapheme_before();
                self.input.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Delete => {
                let end = self.grapheme_after();
                self.input.drain(self.cursor..end);
            }
            KeyCode::Left => self.cursor = self.grapheme_before(),
            KeyCode::Right => self.cursor = self.grapheme_after(),
            KeyCode::Home if ctrl => self.scroll = self.rows(usize::MAX).saturating_sub(page),
            KeyCode::End if ctrl => self.scroll = 0,
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Up => self.recall(true),
            KeyCode::Down => self.recall(false),
            // Up a page, but no further than the oldest loaded row, so that the line just above
            // the old top comes into view once older lines are loaded above it.
            KeyCode::PageUp => {
                let wanted = self.scroll + page.max(1);
                self.scroll = wanted.min(self.rows(wanted));
            }
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(page.max(1)),
            KeyCode::Tab => return Action::Complete,
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

    /// Completes the word before the cursor from `candidates`: a single match completes (a
    /// name at the start of the line gets `: `, anything else a space); several complete to
    /// their common prefix.
    pub fn complete(&mut self, candidates: &[String]) {
        let start = self.word_start();
        let word: String = self.input[start..self.cursor].iter().collect();
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        let matches: Vec<&String> = candidates
            .iter()
            .filter(|c| c.to_lowercase().starts_with(&lower))
            .collect();
        let Some(first) = matches.first() else {
            return;
        };
        let mut completion: String = first.to_string();
        for other in &matches[1..] {
            let common = completion
                .chars()
                .zip(other.chars())
                .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                .count();
            completion = completion.chars().take(common).collect();
        }
        if matches.len() == 1 {
            let name_first = start == 0 && !completion.starts_with('/');
            completion.push_str(if name_first { ": " } else { " " });
        }
        if completion.chars().count() < word.chars().count() {
            return;
        }
        let chars: Vec<char> = completion.chars().collect();
        let replaced: usize = self.input[start..self.cursor]
            .iter()
            .map(|c| c.len_utf8())
            .sum();
        if self.input_bytes() - replaced + completion.len() > self.max_input {
            return;
        }
        self.input.splice(start..self.cursor, chars.iter().copied());
        self.cursor = start + chars.len();
    }

    /// How many pane rows the loaded lines fill, counting no further than `limit`.
    fn rows(&self, limit: usize) -> usize {
        self.last_rows(self.pane_width, limit).len()
    }

    /// Where each user-perceived character (grapheme cluster: an emoji with its skin tone, a
    /// flag, a letter with its combining marks) of the input starts, in characters, and its end.
    fn grapheme_starts(&self) -> Vec<usize> {
        let text: String = self.input.iter().collect();
        let mut starts = Vec::new();
        let mut chars = 0;
        for grapheme in text.graphemes(true) {
            starts.push(chars);
            chars += grapheme.chars().count();
        }
        starts.push(chars);
        starts
    }

    /// The start of the grapheme cluster before the cursor (the cursor itself at the start).
    fn grapheme_before(&self) -> usize {
        let starts = self.grapheme_starts();
        starts
            .iter()
            .rev()
            .find(|&&at| at < self.cursor)
            .copied()
            .unwrap_or(0)
    }

    /// The end of the grapheme cluster after the cursor (the cursor itself at the end).
    fn grapheme_after(&self) -> usize {
        let starts = self.grapheme_starts();
        starts
            .iter()
            .find(|&&at| at > self.cursor)
            .copied()
            .unwrap_or(self.input.len())
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

/// `+N more (U unread)` for `rest` rooms left out of the status line, with `unread` lines.
fn summary(rest: usize, unread: usize) -> String {
    match (rest, unread) {
        (0, _) => String::new(),
        (rest, 0) => format!(" +{rest} more"),
        (rest, unread) => format!(" +{rest} more ({unread} unread)"),
    }
}

/// The marker of a scrolled pane when the whole one does not fit.
const SCROLLED_SHORT: &str = " [scrolled]";

/// `name` cut to at most `longest` characters, an ellipsis for the rest.
fn abbreviated(name: &str, longest: usize) -> String {
    if name.chars().count() <= longest {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(longest.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// Splits `line` into rows of at most `width` display columns (wide characters count 2): at
/// each `\n`, and wherever a row is full, after its last space when the word after it fits on
/// the next row (a longer word is cut). Rows after the first are indented by `indent` columns,
/// or less on a narrow pane, so that a character of any width still fits after it.
pub fn wrap(line: &str, width: usize, indent: usize) -> Vec<String> {
    let indent = indent.min(width / 2).min(width.saturating_sub(2));
    let pad = " ".repeat(indent);
    let mut rows = Vec::new();
    for (i, part) in line.split('\n').enumerate() {
        let mut start = if i == 0 { 0 } else { indent };
        let mut row = pad[..start].to_owned();
        let mut used = start;
        // Byte offset in `row` just after its last space, and the columns used up to there.
        let mut last_space: Option<(usize, usize)> = None;
        for c in part.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width && used > start {
                let word = last_space.filter(|&(_, at)| indent + (used - at) + w <= width);
                let mut next = pad.clone();
                match word {
                    Some((cut, at)) => {
                        next.push_str(&row[cut..]);
                        row.truncate(cut);
                        used = indent + (used - at);
                    }
                    None => used = indent,
                }
                rows.push(std::mem::replace(&mut row, next));
                start = indent;
                last_space = None;
            }
            row.push(c);
            used += w;
            if c == ' ' && used > start {
                last_space = Some((row.len(), used));
            }
        }
        rows.push(row);
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

    fn texts(rows: Vec<Row>) -> Vec<String> {
        rows.into_iter().map(|r| r.text).collect()
    }

    #[test]
    fn names_keep_their_colour_on_the_first_row_only() {
        let line = PaneLine::with_nick(
            "12:00 <alice> hello there".into(),
            "alice",
            LineKind::Message,
        );
        assert_eq!(line.nick, Some(7..12));
        let mut view = ChatView::default();
        view.push(line);
        let rows = view.last_rows(14, 10);
        assert_eq!(texts(rows.clone()), ["12:00 <alice> ", "hello there"]);
        assert_eq!(
            (rows[0].nick.clone(), rows[1].nick.clone()),
            (Some(7..12), None)
        );
        let narrow = view.last_rows(9, 10);
        assert_eq!(
            narrow[0].nick, None,
            "a name cut by the wrap is not coloured"
        );
        assert_eq!(nick_colour("Alice"), nick_colour("alice"));
        assert!((0..12).contains(&nick_colour("bob")));
    }

    #[test]
    fn older_lines_go_on_top_and_paging_up_skips_nothing() {
        let mut view = ChatView {
            pane_width: 20,
            ..ChatView::default()
        };
        for i in 0..5 {
            view.push(PaneLine::plain(format!("new {i}"), LineKind::Message));
        }
        assert!(!view.at_top(20, 3));
        view.handle(&key(KeyCode::PageUp), 3);
        assert!(
            view.at_top(20, 3),
            "5 rows, 3 high, scrolled 3: the top is in view"
        );
        let older = (0..10).map(|i| PaneLine::plain(format!("old {i}"), LineKind::Message));
        view.prepend(older.collect());
        view.clamp_scroll(20, 3);
        let shown = |view: &ChatView| {
            let rows = texts(view.last_rows(20, view.scroll() + 3));
            rows[..3].to_vec()
        };
        assert_eq!(shown(&view), ["old 9", "new 0", "new 1"], "no line skipped");
        view.handle(&key(KeyCode::PageUp), 3);
        assert_eq!(shown(&view), ["old 6", "old 7", "old 8"]);
        view.handle(
            &Event::Key(KeyEvent::new(KeyCode::Home).modifiers(KeyModifiers::CTRL)),
            3,
        );
        assert_eq!(shown(&view), ["old 0", "old 1", "old 2"]);
        view.handle(&key(KeyCode::PageUp), 3);
        view.clamp_scroll(20, 3);
        assert_eq!(
            shown(&view),
            ["old 0", "old 1", "old 2"],
            "nothing above the oldest"
        );
        view.handle(
            &Event::Key(KeyEvent::new(KeyCode::End).modifiers(KeyModifiers::CTRL)),
            3,
        );
        assert_eq!(view.scroll(), 0);
    }

    #[test]
    fn tab_completes_names_and_commands() {
        let names = [
            "alice".to_owned(),
            "albert".to_owned(),
            "bob".to_owned(),
            "/msg".to_owned(),
        ];
        let mut view = ChatView::default();
        typed(&mut view, "b");
        assert_eq!(view.handle(&key(KeyCode::Tab), 10), Action::Complete);
        view.complete(&names);
        assert_eq!(view.input(), ("bob: ".into(), 5));
        typed(&mut view, "hi AL");
        view.complete(&names);
        assert_eq!(
            view.input().0,
            "bob: hi al",
            "common prefix of alice and albert"
        );
        typed(&mut view, "i");
        view.complete(&names);
        assert_eq!(view.input().0, "bob: hi alice ");
        let mut view = ChatView::default();
        typed(&mut view, "/m");
        view.complete(&names);
        assert_eq!(view.input().0, "/msg ");
        typed(&mut view, "zz");
        view.complete(&names);
        assert_eq!(view.input().0, "/msg zz");
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
        assert_eq!(view.handle(&ctrl('l'), 10), Action::Repaint);
        assert_eq!(view.input().0, "日本 ", "Ctrl-L keeps the input");
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
    fn the_cursor_moves_and_deletes_by_grapheme_cluster() {
        let mut view = ChatView::default();
        typed(&mut view, "ae\u{301}👍🏽🇫🇮z");
        view.handle(&key(KeyCode::Left), 10);
        view.handle(&key(KeyCode::Backspace), 10);
        assert_eq!(view.input(), ("ae\u{301}👍🏽z".into(), 5), "the whole flag");
        view.handle(&key(KeyCode::Left), 10);
        view.handle(&key(KeyCode::Backspace), 10);
        assert_eq!(view.input(), ("a👍🏽z".into(), 1), "e and its accent");
        view.handle(&key(KeyCode::Delete), 10);
        assert_eq!(
            view.input(),
            ("az".into(), 1),
            "the emoji and its skin tone"
        );
        view.handle(&key(KeyCode::Right), 10);
        view.handle(&key(KeyCode::Right), 10);
        assert_eq!(view.input().1, 2, "no further than the end");
        view.handle(&key(KeyCode::Home), 10);
        view.handle(&key(KeyCode::Backspace), 10);
        assert_eq!(view.input(), ("az".into(), 0), "nothing before the start");
    }

    #[test]
    fn a_refused_line_comes_back_to_the_input() {
        let mut view = ChatView::default();
        typed(&mut view, "again");
        let Action::Submit(line) = view.handle(&key(KeyCode::Enter), 10) else {
            panic!("not submitted");
        };
        assert_eq!(view.input(), (String::new(), 0));
        view.keep_input(line);
        assert_eq!(view.input(), ("again".into(), 5));
    }

    #[test]
    fn a_paste_is_one_multi_line_message() {
        let mut view = ChatView::default();
        view.handle(&Event::Paste("l1\r\nl2\rl3".into()), 10);
        assert_eq!(
            view.handle(&key(KeyCode::Enter), 10),
            Action::Submit("l1\nl2\nl3".into())
        );
    }

    #[test]
    fn scrollback_keeps_the_newest_lines_within_its_bytes() {
        let mut view = ChatView::default();
        let long = "x".repeat(8 * 1024);
        for i in 0..1000 {
            view.push(PaneLine::plain(format!("{i} {long}"), LineKind::Message));
        }
        assert_eq!(view.lines.len(), SCROLLBACK_BYTES / (long.len() + 4));
        assert!(view.line_bytes <= SCROLLBACK_BYTES);
        assert!(view.lines.back().unwrap().text.starts_with("999 "));
        view.prepend(vec![PaneLine::plain(long.clone(), LineKind::Message)]);
        assert!(view.line_bytes <= SCROLLBACK_BYTES, "nothing older fits");
        view.clear();
        assert_eq!(view.line_bytes, 0);
    }

    #[test]
    fn a_charged_scrollback_keeps_what_the_budget_holds_and_gives_it_back() {
        let memory = MemoryBudget::new(256 * 1024);
        let mut view = ChatView::default();
        view.charge_to(&memory);
        let line = "y".repeat(16 * 1024 - 4);
        for i in 0..100 {
            view.push(PaneLine::plain(format!("{i:03} {line}"), LineKind::Message));
        }
        // 64 KiB free of charge and the whole budget: 20 lines of 16 KiB.
        assert_eq!(view.lines.len(), 20);
        assert_eq!(memory.used(), 256 * 1024);
        assert!(view.lines.back().unwrap().text.starts_with("099 "));
        // Others take the budget: the scrollback shrinks to what is free of charge.
        view.charge = Some(memory.empty());
        let others = memory.reserve(256 * 1024).unwrap();
        view.push(PaneLine::plain(format!("100 {line}"), LineKind::Message));
        assert_eq!(view.lines.len(), 4);
        assert!(view.lines.back().unwrap().text.starts_with("100 "));
        view.prepend(vec![PaneLine::plain(line.clone(), LineKind::Message)]);
        assert_eq!(
            view.lines.len(),
            4,
            "older lines are not loaded past the budget"
        );
        drop(others);
        view.prepend(vec![PaneLine::plain(line.clone(), LineKind::Message)]);
        assert_eq!(view.lines.len(), 5);
        view.clear();
        assert_eq!(memory.used(), 0);
        view.push(PaneLine::plain(line.clone(), LineKind::Message));
        drop(view);
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn the_input_line_stops_growing_at_its_limit() {
        let mut view = ChatView {
            max_input: 8,
            ..ChatView::default()
        };
        typed(&mut view, "0123456789");
        assert_eq!(
            view.handle(&Event::Paste("more".into()), 10),
            Action::Note(too_long_paste(4, 8))
        );
        assert_eq!(view.input(), ("01234567".into(), 8), "input kept");
        view.handle(&key(KeyCode::Backspace), 10);
        typed(&mut view, "xy");
        assert_eq!(view.input().0, "0123456x");
    }

    #[test]
    fn wrapping_counts_display_width() {
        assert_eq!(wrap("abcdef", 4, 0), ["abcd", "ef"]);
        assert_eq!(wrap("日本語", 4, 0), ["日本", "語"]);
        assert_eq!(wrap("", 4, 0), [""]);
        assert_eq!(wrap("ab\ncd\n", 8, 2), ["ab", "  cd", "  "]);
        assert_eq!(wrap("abcdefgh", 5, 2), ["abcde", "  fgh"]);
        assert_eq!(wrap("a\n日", 3, 2), ["a", " 日"], "the indent leaves room");
        assert_eq!(
            wrap("12:00 <bob> the quick brown fox", 16, 12),
            [
                "12:00 <bob> the ",
                "        quick ",
                "        brown ",
                "        fox"
            ],
            "words whole, rows after the first under the text (indent halved to fit)"
        );
        assert_eq!(
            wrap("ab incomprehensibilities", 10, 2),
            ["ab ", "  incompre", "  hensibil", "  ities"],
            "a word longer than a row starts a row and is cut"
        );
        let mut view = ChatView::default();
        view.push(PaneLine::plain("abcdefgh".into(), LineKind::Message));
        view.push(PaneLine::plain("ij".into(), LineKind::Message));
        assert_eq!(texts(view.last_rows(4, 10)), ["abcd", "efgh", "ij"]);
        assert_eq!(texts(view.last_rows(4, 2)), ["efgh", "ij"]);
        assert!(view.last_rows(4, 0).is_empty());
    }

    #[test]
    fn the_status_line_always_shows_the_room_the_unread_counts_and_the_marker() {
        let mut view = ChatView {
            room: "lobby".into(),
            members: 3,
            rooms: vec![("lobby".into(), 0), ("dev".into(), 2), ("ops".into(), 0)],
            current: 0,
            ..ChatView::default()
        };
        assert_eq!(
            view.status_line(80),
            " #lobby  3 here  [1:#lobby] 2:#dev (2) 3:#ops"
        );
        view.rooms.truncate(1);
        assert_eq!(view.status_line(80), " #lobby  3 here", "one room: no list");

        // Thirty rooms with long names, at 50 columns, scrolled up.
        view.rooms = (1..=30)
            .map(|i| (format!("project-room-{i}"), usize::from(i % 7 == 0)))
            .collect();
        view.current = 14;
        view.room = view.rooms[14].0.clone();
        for i in 0..40 {
            view.push(PaneLine::plain(format!("line {i}"), LineKind::Message));
        }
        view.pane_width = 50;
        view.handle(&key(KeyCode::PageUp), 5);
        let line = view.status_line(50);
        assert!(line.width() <= 50, "{line:?}");
        assert!(line.starts_with(" 15:#project… "), "{line:?}");
        assert!(line.ends_with(" [scrolled]"), "{line:?}");
        // Every unread line is counted, in an entry or in the summary.
        let shown: usize = [7, 14, 21, 28]
            .iter()
            .filter(|i| line.contains(&format!(" {i}:#proj… (1)")))
            .count();
        let summed = line
            .split("more (")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map_or(0, |n| n.parse::<usize>().unwrap());
        assert_eq!(shown + summed, 4, "{line:?}");
        assert!(line.contains(" more"), "{line:?}");

        let wide = view.status_line(133);
        assert!(wide.width() <= 133 && wide.contains(" 3 here"), "{wide:?}");
        assert!(wide.contains("[scrolled: PgDn]"), "{wide:?}");
    }

    /// The unread lines a status line shows: per room `(N)`, and in the summary.
    fn counted(line: &str) -> usize {
        let mut total = 0;
        for part in line.split('(').skip(1) {
            let number: String = part.chars().take_while(char::is_ascii_digit).collect();
            total += number.parse::<usize>().unwrap_or(0);
        }
        total
    }

    #[test]
    fn at_every_width_and_number_of_rooms_the_status_line_counts_every_unread_line() {
        for rooms in [1usize, 2, 3, 5, 8, 13, 21, 30, 40] {
            for current in [0, rooms / 2, rooms - 1] {
                let mut view = ChatView {
                    rooms: (0..rooms)
                        .map(|i| (format!("room-with-a-long-name-{i}"), (i * 7) % 5))
                        .collect(),
                    current,
                    members: 12,
                    ..ChatView::default()
                };
                view.rooms[current].1 = 0;
                view.room = view.rooms[current].0.clone();
                let unread: usize = view.rooms.iter().map(|(_, n)| n).sum();
                for scrolled in [false, true] {
                    view.scroll = usize::from(scrolled);
                    for width in (60..=200).step_by(7) {
                        let line = view.status_line(width);
                        assert!(line.width() <= width, "{width}: {line:?}");
                        assert!(line.contains("#room"), "{width}: {line:?}");
                        assert_eq!(counted(&line), unread, "{width}: {line:?}");
                        assert_eq!(line.contains("[scrolled"), scrolled, "{line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn ten_thousand_rooms_cost_a_status_line_in_proportion() {
        let view = ChatView {
            rooms: (0..10_000).map(|i| (format!("r{i}"), i % 2)).collect(),
            current: 5_000,
            room: "r5000".into(),
            ..ChatView::default()
        };
        let started = std::time::Instant::now();
        for width in [50, 80, 500] {
            let line = view.status_line(width);
            assert!(line.width() <= width, "{line:?}");
            assert_eq!(counted(&line), 5000, "{line:?}");
        }
        // Quadratic work (10^8 steps and more) would take seconds even in a release build.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn room_keys() {
        let mut view = ChatView::default();
        let alt = |c| Event::Key(KeyEvent::new(KeyCode::Char(c)).modifiers(KeyModifiers::ALT));
        assert_eq!(view.handle(&alt('1'), 10), Action::ShowRoom(0));
        assert_eq!(view.handle(&alt('9'), 10), Action::ShowRoom(8));
        assert_eq!(view.handle(&ctrl('n'), 10), Action::NextRoom);
        assert_eq!(view.handle(&ctrl('p'), 10), Action::PreviousRoom);
        assert_eq!(view.input().0, "", "nothing typed");
    }

    #[test]
    fn scrolling_stays_put_when_messages_arrive() {
        let mut view = ChatView {
            pane_width: 20,
            ..ChatView::default()
        };
        for i in 0..20 {
            view.push(PaneLine::plain(format!("line {i}"), LineKind::Message));
        }
        view.handle(&key(KeyCode::PageUp), 5);
        view.push(PaneLine::plain("new".into(), LineKind::Message));
        assert_eq!(view.scroll(), 5);
        view.handle(&key(KeyCode::PageDown), 5);
        assert_eq!(view.scroll(), 0);
    }
}
