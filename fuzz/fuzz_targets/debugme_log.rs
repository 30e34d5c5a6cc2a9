//! Fuzzes the debug-me JSON log line decoder, which reads logs written by real debug-me
//! programs and by servers: `kanava_debugme::json::decode_line`.
//!
//! Beyond "no panic", a line that decodes must re-encode with `encode_line` to a line that
//! decodes to the same value, and that second encoding must be identical to the first (the
//! writer's output is a fixed point).

#![no_main]

use kanava_debugme::json::{decode_line, encode_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
