//! Message text with its line breaks: the full-screen chat draws a multi-line message as
//! indented rows, the line interface and `tail` as indented continuation lines, and a tab as
//! spaces (where a one-line text shows `^J` and a space). Every line is still sanitised: no
//! control character reaches a terminal.

use kanava_core::sanitize;
use unicode_width::UnicodeWidthChar;

/// Columns between tab stops.
const TAB: usize = 4;

/// `body`'s lines, each sanitised with its tabs expanded, the first after `prefix`; empty when
/// the body holds neither a line break nor a tab (the one-line text shows it as it is). A CR
/// before a line break is part of the break.
pub(crate) fn lines(prefix: &str, body: &[u8]) -> Vec<String> {
    if !has_breaks(body) {
        return Vec::new();
    }
    let body = String::from_utf8_lossy(body);
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let line = expand_tabs(line.strip_suffix('\r').unwrap_or(line));
            let line = sanitize(line.as_bytes());
            if i == 0 {
                format!("{prefix}{line}")
            } else {
                line
            }
        })
        .collect()
}

/// Whether `body` holds a line break or a tab, and so looks different on a screen that shows
/// them.
pub(crate) fn has_breaks(body: &[u8]) -> bool {
    body.iter().any(|b| matches!(b, b'\n' | b'\t'))
}

/// `line` with each tab replaced by spaces up to the next tab stop.
pub(crate) fn expand_tabs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut column = 0;
    for c in line.chars() {
        if c == '\t' {
            let spaces = TAB - column % TAB;
            out.extend(std::iter::repeat_n(' ', spaces));
            column += spaces;
        } else {
            out.push(c);
            column += c.width().unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_split_and_tabs_expand_and_nothing_else_gets_through() {
        assert!(lines("<a> ", b"one line").is_empty());
        assert_eq!(lines("<a> ", b"l1\r\nl2\n\nl3"), ["<a> l1", "l2", "", "l3"]);
        assert_eq!(
            lines("", b"a\tb\n\tc\n\xe6\x97\xa5\td"),
            ["a   b", "    c", "\u{65e5}  d"]
        );
        assert_eq!(lines("", b"x\n\x1b[2J\ry"), ["x", "^[[2J^My"]);
    }
}
