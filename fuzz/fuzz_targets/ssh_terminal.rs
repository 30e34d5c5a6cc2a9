//! Fuzzes what a client's terminal sends in the full-screen chat: raw bytes, split into packets
//! at arbitrary points, through `kanava_ssh::tui::InputParser` into the chat view. Checks that
//! nothing panics, that the cursor stays within the input line, and that wrapped rows never
//! exceed the pane's width (except a single character wider than the pane, with any
//! zero-width marks around it).

#![no_main]

use kanava_ssh::tui::InputParser;
use kanava_ssh::tui::view::{Action, ChatView, LineKind, PaneLine};
use libfuzzer_sys::fuzz_target;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let width = usize::from(split % 40) + 1;
    let mut parser = InputParser::default();
    let mut view = ChatView::default();
    for packet in bytes.chunks(usize::from(split % 16) + 1) {
        for event in parser.feed(packet, 4096) {
            let action = view.handle(&event, 10);
            if action == Action::Complete {
                view.complete(&["/msg".to_owned(), "alice".to_owned(), "albert".to_owned()]);
            }
            if let Action::Submit(line) = action {
                // As the session shows a sent message: sanitised, line breaks as ^J.
                let text = kanava_core::sanitize(line.as_bytes());
                view.push(PaneLine::with_nick(text, "me", LineKind::Own));
            }
            let (input, cursor) = view.input();
            assert!(cursor <= input.chars().count());
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
        assert!(row.width() <= width || visible == 1, "{row:?} wider than {width}");
    }
});
