//! Fuzzes what an SSH client's exec request becomes: the command parser
//! (`kanava_ssh::command::parse`) on the lossily decoded command line, and the terminal
//! sanitiser on the raw bytes. Checks that neither panics, that a parsed `say` keeps its text
//! within the line, and that sanitised text never holds a control character.

#![no_main]

use kanava_ssh::command::{Command, parse};
use kanava_ssh::sanitize::sanitize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(Command::Say { text, .. }) = parse(&line) {
        assert!(!text.is_empty() && line.contains(text.as_str()));
    }
    let safe = sanitize(data);
    assert!(!safe.chars().any(char::is_control), "{safe:?}");
});
