//! What of a recorded session's output may reach the viewer's terminal. Replaying a terminal
//! needs its escape sequences (colours, cursor movement), but the recording is another
//! person's output: string sequences — OSC (window title, clipboard writes with OSC 52,
//! hyperlinks), DCS, SOS, PM and APC — can change or query the viewer's terminal and are
//! dropped, whether introduced by ESC or by their C1 code points.

/// Drops string sequences from a byte stream that may split them across chunks.
#[derive(Debug, Default)]
pub struct StringSequenceFilter {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ordinary output.
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After the first byte of a UTF-8 `U+0080..U+00BF` (0xC2): maybe a C1 introducer.
    C2,
    /// Inside a string sequence, dropped until its terminator.
    String,
    /// Inside a string sequence, after ESC (ST is `ESC \`).
    StringEscape,
    /// Inside a string sequence, after 0xC2 (ST is U+009C).
    StringC2,
}

/// Whether `byte`, after ESC, starts a string sequence (OSC `]`, DCS `P`, SOS `X`, PM `^`,
/// APC `_`).
fn string_after_escape(byte: u8) -> bool {
    matches!(byte, b']' | b'P' | b'X' | b'^' | b'_')
}

/// Whether `byte`, after 0xC2, is the C1 code point of a string sequence (U+0090, U+0098,
/// U+009D, U+009E, U+009F).
fn string_after_c2(byte: u8) -> bool {
    matches!(byte, 0x90 | 0x98 | 0x9d | 0x9e | 0x9f)
}

impl StringSequenceFilter {
    /// The bytes of `chunk` that may be shown; an incomplete prefix of a sequence is held
    /// until the next chunk.
    pub fn filter(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for &byte in chunk {
            self.state = match (self.state, byte) {
                (State::Ground, 0x1b) => State::Escape,
                (State::Ground, 0xc2) => State::C2,
                (State::Ground, _) => {
                    out.push(byte);
                    State::Ground
                }
                // ESC and 0xC2 are only ever written together with the byte after them, so
                // that what follows a dropped sequence cannot complete an introducer. One
                // followed by another ESC or 0xC2 means nothing and is dropped.
                (State::Escape, b) if string_after_escape(b) => State::String,
                (State::Escape | State::C2, 0x1b) => State::Escape,
                (State::Escape | State::C2, 0xc2) => State::C2,
                (State::Escape, b) => {
                    out.extend([0x1b, b]);
                    State::Ground
                }
                (State::C2, b) if string_after_c2(b) => State::String,
                (State::C2, b) => {
                    out.extend([0xc2, b]);
                    State::Ground
                }
                (State::String | State::StringEscape | State::StringC2, 0x07) => State::Ground,
                (State::StringEscape, b'\\') | (State::StringC2, 0x9c) => State::Ground,
                (State::String | State::StringEscape | State::StringC2, 0x1b) => {
                    State::StringEscape
                }
                (State::String | State::StringEscape | State::StringC2, 0xc2) => State::StringC2,
                (State::String | State::StringEscape | State::StringC2, _) => State::String,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<u8> {
        let mut filter = StringSequenceFilter::default();
        chunks.iter().flat_map(|c| filter.filter(c)).collect()
    }

    #[test]
    fn string_sequences_go_and_the_rest_stays() {
        let attack = b"\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x1b]52;c;aGk=\x1b\\ok\x1bP+q\x1b\\";
        assert_eq!(all(&[attack]), b"\x1b[31mred\x1b[0mok");
        // C1 introducers as UTF-8, and ordinary Latin-1 letters (é is C3 A9, \u{a0} is C2 A0).
        let c1 = "a\u{9d}0;t\u{9c}b\u{9f}x\u{7}é\u{a0}".as_bytes();
        assert_eq!(all(&[c1]), "abé\u{a0}".as_bytes());
        assert_eq!(all(&[b"plain \x1bc reset\r\n"]), b"plain \x1bc reset\r\n");
    }

    #[test]
    fn sequences_split_across_chunks_are_dropped_whole() {
        assert_eq!(all(&[b"x\x1b", b"]0;ti", b"tle\x1b", b"\\y"]), b"xy");
        assert_eq!(all(&[b"x\x1b", b"[1mz"]), b"x\x1b[1mz");
        assert_eq!(
            all(&[b"\xc2", b"\x9d2;t\x07!", b"\xc2", b"\xa9"]),
            "!©".as_bytes()
        );
    }

    #[test]
    fn what_follows_a_dropped_sequence_cannot_complete_an_introducer() {
        assert_eq!(all(&[b"a\x1b\x1b_x\x07_b"]), b"a_b");
        assert_eq!(all(&[b"a\xc2\xc2\x9dx\x07\x9db"]), b"a\x9db");
        assert_eq!(all(&[b"a\x1b\xc2\x9dx\x07]b"]), b"a]b");
    }
}
