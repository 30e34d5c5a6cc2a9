//! Fuzzes the debug-me JSON log line decoder, which reads logs written by real debug-me
//! programs and by servers: `kanava_debugme::json::decode_line`.
//!
//! Beyond "no panic", a line that decodes must re-encode with `encode_line` to a line that
//! decodes to the same value, and that second encoding must be identical to the first (the
//! writer's output is a fixed point).
//!
//! The same bytes, as a log's terminal output split anywhere into two chunks, go through the
//! replay's `StringSequenceFilter`: what it lets through holds no string-sequence introducer
//! (ESC `]`, `P`, `X`, `^`, `_`, or their C1 code points). The asciicast export's
//! `Utf8Stream` decodes the two chunks to exactly what a lossy decoding of the whole gives.
//!
//! The same bytes, as a whole log file, go through the debug-me server's reader
//! (`kanava_debugme_server::read_log_frames`, which replays logs to joiners and downloaders)
//! and its torn-tail rule (`complete_length`): every frame it yields decodes as an `L` frame
//! and is charged to the memory budget until dropped, and the complete part of a log ends with
//! its last newline.

#![no_main]

use std::sync::Arc;

use kanava_core::MemoryBudget;
use kanava_debugme::frame::{Frame, decode_frame};
use kanava_debugme::json::{decode_line, encode_line};
use kanava_debugme_server::{complete_length, read_log_frames};
use kanava_debugme_tools::asciicast::Utf8Stream;
use kanava_debugme_tools::terminal::StringSequenceFilter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut filter = StringSequenceFilter::default();
    let mut shown = filter.filter(&data[..split]);
    shown.extend(filter.filter(&data[split..]));
    for pair in shown.windows(2) {
        let introducer = matches!(pair, [0x1b, b']' | b'P' | b'X' | b'^' | b'_'])
            || matches!(pair, [0xc2, 0x90 | 0x98 | 0x9d | 0x9e | 0x9f]);
        assert!(!introducer, "a string sequence got through: {shown:02x?}");
    }
    let complete = complete_length(data);
    assert!(complete == 0 || data[complete - 1] == b'\n');
    assert!(!data[complete..].contains(&b'\n'));
    let memory: Arc<MemoryBudget> = MemoryBudget::new(1 << 24);
    let _ = read_log_frames(data, &memory, |frame, charge| {
        assert_eq!(charge.bytes(), frame.len());
        assert!(
            matches!(decode_frame(&frame), Ok(Frame::Message(_))),
            "a replayed frame does not decode"
        );
        true
    });
    assert_eq!(memory.used(), 0, "a frame's charge outlived it");
    let mut stream = Utf8Stream::default();
    let mut text = stream.push(&data[..split]);
    text.push_str(&stream.push(&data[split..]));
    text.push_str(&stream.finish());
    assert_eq!(text, String::from_utf8_lossy(data), "split at {split}");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(line) = decode_line(text) else {
        return;
    };
    let encoded = encode_line(&line);
    let again = decode_line(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded line does not decode ({e}): {encoded}"));
    assert_eq!(
        again, line,
        "re-encoded line decodes differently: {encoded}"
    );
    assert_eq!(
        encode_line(&again),
        encoded,
        "encoding is not a fixed point"
    );
});
