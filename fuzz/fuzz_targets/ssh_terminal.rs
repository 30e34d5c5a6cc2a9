//! Fuzzes what a client's terminal sends in the full-screen chat: raw bytes, split into packets
//! at arbitrary points, through `kanava_ssh::tui::InputParser` into the chat view. Checks that
//! nothing panics, that the cursor stays within the input line, that the input line never grows
//! past its limit (in bytes), that wrapped rows (continuation rows indented) never exceed the
//! pane's width (except a single character wider than the pane, with any zero-width marks around
//! it), and that any terminal size a client claims (`pty-req`, `window-change`) is clamped to a
//! real terminal's.

#![no_main]

use kanava_ssh::tui::view::{Action, ChatView, LineKind, PaneLine};
use kanava_ssh::tui::{InputParser, MAX_COLS, MAX_ROWS, Typed, clamp};
use libfuzzer_sys::fuzz_target;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let width = usize::from(split % 40) + 1;
    if let Some(size) = bytes.get(..8) {
        let cols = u32::from_be_bytes(size[..4].try_into().unwrap());
        let rows = u32::from_be_bytes(size[4..].try_into().unwrap());
        let area = clamp(cols, rows);
        assert!(
            (1..=MAX_COLS).contains(&area.width),
            "{cols}x{rows}: {area:?}"
        );
        assert!(
            (1..=MAX_ROWS).contains(&area.height),
            "{cols}x{rows}: {area:?}"
        );
    }
    let mut parser = InputParser::default();
    let mut view = ChatView::default();
    view.max_input = usize::from(split % 64) + 1;
    for packet in bytes.chunks(usize::from(split % 16) + 1) {
        for typed in parser.feed(packet, 4096) {
            let Typed::Event(event) = typed else {
                continue;
            };
            let action = view.handle(&event, 10);
            if action == Action::Complete {
                view.complete(&["/msg".to_owned(), "alice".to_owned(), "albert".to_owned()]);
            }
            if let Action::Submit(line) = action {
                // As the full-screen chat shows a sent message: each line sanitised, later
                // lines indented.
                let text: Vec<String> = line
                    .split('\n')
                    .map(|l| kanava_core::sanitize(l.as_bytes()))
                    .collect();
                let mut pane = PaneLine::with_nick(text.join("\n"), "me", LineKind::Own);
                pane.indent = usize::from(split % 24);
                view.push(pane);
            }
            let (input, cursor) = view.input();
            assert!(cursor <= input.chars().count());
            assert!(input.chars().count() <= view.max_input);
        }
    }
    for row in view.last_rows(width, 50) {
        // The coloured name lies within its row, on character boundaries.
        if let Some(nick) = &row.nick {
            assert!(row.text.get(nick.clone()).is_some(), "{row:?}");
        }
        let row = row.text;
        // Only a single character wider than the pane (with any zero-width marks) may overflow.
        let visible = row.chars().filter(|c| c.width().unwrap_or(0) > 0).count();
        assert!(
            row.width() <= width || visible == 1,
            "{row:?} wider than {width}"
        );
    }
});
