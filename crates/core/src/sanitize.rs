//! Text from other users (other transports, other debug-me developers: arbitrary bytes) made safe
//! for a terminal: it can never clear the screen, move the cursor, set the title, write the
//! clipboard or reorder text.

/// Makes `bytes` printable on one terminal line: decodes UTF-8 lossily; shows C0 controls, ESC
/// and DEL in caret notation (`^[`, `^?`; a line break as `^J`), C1 controls as U+FFFD, a tab as
/// a space; drops bidirectional overrides and isolates.
pub fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            '\u{0}'..='\u{1f}' => {
                out.push('^');
                out.push(char::from(c as u8 + b'@'));
            }
            '\u{7f}' => out.push_str("^?"),
            '\u{80}'..='\u{9f}' => out.push('\u{fffd}'),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_neutralised() {
        let attack = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u{9b}31m\x1b]52;c;aGk=\x07\r";
        let safe = sanitize(attack.as_bytes());
        assert_eq!(
            safe,
            "^[]0;pwned^G^[[2J^[[31mred\u{fffd}31m^[]52;c;aGk=^G^M"
        );
        assert_eq!(sanitize("a\u{202e}b\u{2066}c".as_bytes()), "abc");
        assert_eq!(
            sanitize(safe.as_bytes()),
            safe,
            "sanitising twice changes nothing"
        );
        assert_eq!(sanitize(b"tab\there\nnext"), "tab here^Jnext");
        assert_eq!(sanitize(b"\xff\xfebad"), "\u{fffd}\u{fffd}bad");
        assert_eq!(sanitize("日本 ✓".as_bytes()), "日本 ✓");
    }

    proptest::proptest! {
        #[test]
        fn output_never_holds_a_control_character(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let safe = sanitize(&bytes);
            proptest::prop_assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        }
    }
}
