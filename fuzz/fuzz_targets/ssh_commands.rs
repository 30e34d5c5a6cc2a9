//! Fuzzes the SSH side's text decoders on the same bytes, lossily decoded as they are in use:
//! the exec command parser (`kanava_ssh::command::parse`, words split with shell-like quoting),
//! the slash command parser of chat sessions (`kanava_ssh::slash::parse`), the operators'
//! `authorized_keys` file parser (`kanava_ssh::ops::parse_authorized_keys`), and the terminal
//! sanitiser on the raw bytes. Checks that none panics, that parsed texts stay within the line
//! (the words of an exec command never outgrow it), that `say` never posts a command's text,
//! that every line of the ops file is either a key or a reported error, and that sanitised text
//! never holds a control character. The same line is also tried as a time zone name (`/tz`,
//! the `TZ` a client sends): a zone found has a short printable name and formats any time.

#![no_main]

use kanava_core::sanitize;
use kanava_ssh::clock::{MAX_ZONE_NAME, Zone};
use kanava_ssh::command::{Command, parse, words};
use kanava_ssh::ops::parse_authorized_keys;
use kanava_ssh::slash::{self, Slash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(words) = words(&line) {
        let joined: usize = words.iter().map(|w| w.len() + 1).sum();
        assert!(joined <= line.len() + 1, "{words:?}");
    }
    if let Ok(Command::Say { text, .. }) = parse(&line) {
        assert!(!text.trim().is_empty() && text.len() <= line.len());
        // A leading slash only as an emote, or from a doubled one.
        let typed = words(&line).expect("a parsed line splits")[2..].join(" ");
        assert!(!text.starts_with('/') || text.starts_with("/me ") || typed.starts_with("//"));
    }
    match slash::parse(&line) {
        Ok(Slash::Msg(_, text) | Slash::Me(text) | Slash::Away(text)) => {
            assert!(!text.is_empty() && line.contains(text.as_str()));
        }
        Ok(
            Slash::KeyAdd(argument) | Slash::Kick(_, Some(argument)) | Slash::Tz(Some(argument)),
        ) => {
            assert!(line.contains(argument.as_str()));
        }
        Ok(Slash::Join(room) | Slash::Switch(room)) => assert!(line.contains(room.as_str())),
        Ok(Slash::Bell(on)) => assert!(line.contains(if on { "on" } else { "off" })),
        Ok(Slash::Nick(name) | Slash::Release(Some(name))) => {
            assert!(line.contains(name.as_str()));
        }
        _ => {}
    }
    let (keys, errors) = parse_authorized_keys(&line);
    let meaningful = line
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .count();
    // Each such line is a key or an error; keys are counted once however often they appear.
    assert!(errors.len() <= meaningful && keys.len() <= meaningful - errors.len());
    assert_eq!(keys.is_empty(), errors.len() == meaningful);
    if let Ok(zone) = Zone::named(&line) {
        assert!(zone.name().len() <= MAX_ZONE_NAME);
        assert!(!zone.name().chars().any(char::is_control));
        let time = data
            .iter()
            .fold(0u64, |t, b| t.rotate_left(8) ^ u64::from(*b));
        let _ = (zone.stamp(time), zone.pane_time(time, time / 2));
    }
    let safe = sanitize(data);
    assert!(!safe.chars().any(char::is_control), "{safe:?}");
});
