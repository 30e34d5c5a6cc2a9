//! `kanava export --asciicast`: a session log as an asciicast v2 recording, so that
//! `asciinema play` (and the asciinema web player) can show it.
//!
//! The header gives the terminal size, which protocol 1 never records: the caller chooses it
//! ([`DEFAULT_WIDTH`] x [`DEFAULT_HEIGHT`] unless told otherwise). Then each User Seen becomes
//! an output event at the session's cumulative `elapsedTime`. asciicast text is UTF-8 while
//! Seen data is raw PTY output, which may split a character across chunks: the incomplete tail
//! of a chunk is carried over to the next event, and only bytes that can never be valid UTF-8
//! become U+FFFD. String sequences that could change or query the viewer's terminal are
//! dropped, as in a replay ([`StringSequenceFilter`]).

use std::io::Write;

use serde_json::{Value, json};

use crate::log::{Line, seconds, user_seen};
use crate::terminal::StringSequenceFilter;

/// The terminal width written when none is given.
pub const DEFAULT_WIDTH: u16 = 80;
/// The terminal height written when none is given.
pub const DEFAULT_HEIGHT: u16 = 24;

/// The terminal size to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }
}

/// Decodes a byte stream arriving in chunks into UTF-8 text, keeping an incomplete character
/// at the end of a chunk for the next one.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text of `chunk`, after whatever the previous chunk left incomplete; invalid bytes
    /// become U+FFFD, and an incomplete character at the end waits for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let mut text = String::new();
        let mut rest = self.pending.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }

    /// Whatever is still pending at the end of the stream: an incomplete character, as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// A time in seconds, rounded to the microsecond so that sums print without noise.
fn microseconds(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// The asciicast v2 lines (header first) of a log, each a JSON value.
pub fn events(lines: &[Line], size: Size) -> Vec<Value> {
    let mut header = json!({"version": 2, "width": size.width, "height": size.height});
    if let Some(first) = lines.first()
        && first.line.timestamp.is_finite()
        && first.line.timestamp >= 0.0
    {
        header["timestamp"] = json!(first.line.timestamp.trunc() as u64);
    }
    let mut out = vec![header];
    let mut time = 0.0;
    let mut stream = Utf8Stream::default();
    let mut filter = StringSequenceFilter::default();
    for (elapsed, data) in user_seen(lines) {
        time += seconds(elapsed);
        let text = stream.push(&filter.filter(data));
        if !text.is_empty() {
            out.push(json!([microseconds(time), "o", text]));
        }
    }
    let rest = stream.finish();
    if !rest.is_empty() {
        out.push(json!([microseconds(time), "o", rest]));
    }
    out
}

/// Writes the asciicast v2 recording of a log, one JSON value per line.
pub fn write(lines: &[Line], size: Size, out: &mut dyn Write) -> std::io::Result<()> {
    for event in events(lines, size) {
        writeln!(out, "{event}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::parse;
    use crate::testlog;

    #[test]
    fn split_characters_are_joined_and_invalid_bytes_replaced() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(b"caf\xc3"), "caf");
        assert_eq!(stream.push(b"\xa9 \xe2\x82"), "é ");
        assert_eq!(stream.push(b"\xac!"), "€!");
        assert_eq!(stream.push(b"a\xffb\xc3(\xf0\x9f"), "a\u{fffd}b\u{fffd}(");
        assert_eq!(stream.push(b"\x98"), "");
        assert_eq!(stream.finish(), "\u{fffd}");
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(b"\xf0\x9f\x98\x80"), "😀");
        assert_eq!(stream.finish(), "");
    }

    #[test]
    fn a_session_becomes_a_header_and_timed_output() {
        let lines = parse(testlog::session(false).as_bytes()).unwrap();
        let events = events(&lines, Size::default());
        assert_eq!(
            events[0].to_string(),
            r#"{"version":2,"width":80,"height":24,"timestamp":1700000000}"#
        );
        let times: Vec<f64> = events[1..].iter().map(|e| e[0].as_f64().unwrap()).collect();
        assert_eq!(times, [0.0, 1.5, 1.7, 2.0, 3.0, 3.1, 5.6]);
        let text: String = events[1..].iter().map(|e| e[2].as_str().unwrap()).collect();
        assert_eq!(text.as_bytes(), testlog::OUTPUT);
        assert_eq!(events[4], json!([2.0, "o", "caf"]));
        assert_eq!(events[5], json!([3.0, "o", "é "]));
        assert!(events[1..].iter().all(|e| e[1] == "o"));
    }

    #[test]
    fn the_output_is_json_lines_with_the_size_asked_for() {
        let real = include_str!("../../debugme/testdata/appendix-a.log");
        let lines = parse(real.as_bytes()).unwrap();
        let mut out = Vec::new();
        let size = Size {
            width: 132,
            height: 50,
        };
        write(&lines, size, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            (parsed[0]["width"].as_u64(), parsed[0]["height"].as_u64()),
            (Some(132), Some(50))
        );
        assert_eq!(parsed[0]["timestamp"], 1795254586);
        assert_eq!(
            parsed[1],
            json!([0.0, "o", "** debug-me session started\r\n"])
        );
        assert_eq!(
            parsed[2],
            json!([0.000721, "o", "\r\n** debug-me session ended (1)\r\n"])
        );
    }

    #[test]
    fn a_log_without_output_has_only_the_header() {
        assert_eq!(events(&[], Size::default()).len(), 1);
    }
}
