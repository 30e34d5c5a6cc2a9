//! The exec commands (`ssh host CMD …`) for scripts and bots, parsed without I/O.
//!
//! OpenSSH sends the remote command as one string, its words joined with spaces, so the line is
//! split into words with shell-like quoting, as a remote shell would split it: `say '#dev' hi`
//! and `say #dev hi` both post `hi` to `#dev`, and `say dev 'a  b'` keeps both spaces. Unlike a
//! shell, `#` never starts a comment (rooms are written `#dev`) and nothing is expanded. The
//! text of `say` is its words joined by one space; it is never a command (see [`Command::Say`]).

use kanava_core::{ChannelName, NameError};

/// Lines `tail` prints when not told otherwise.
pub const DEFAULT_TAIL: usize = 10;

/// An exec command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `say ROOM TEXT…`: post one message. A text starting with `/` is refused
    /// ([`UsageError::Slash`]), except `/me ACTION` (an emote, posted as typed) and `//TEXT`
    /// (posted as `/TEXT`).
    Say {
        /// Where.
        room: ChannelName,
        /// What.
        text: String,
    },
    /// `tail ROOM [-n N] [-f]`: the last lines of a room, optionally following it.
    Tail {
        /// Which room.
        room: ChannelName,
        /// How many lines of history.
        lines: usize,
        /// Keep printing new events until the client goes.
        follow: bool,
    },
    /// `who ROOM`: the names in a room.
    Who {
        /// Which room.
        room: ChannelName,
    },
    /// `rooms`: the rooms that have people in them.
    Rooms,
}

/// Why a command line was refused; the text is shown to the user with [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Not one of the commands.
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A command with missing or extra arguments.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A room name that is not a valid channel name.
    #[error("bad room name: {0}")]
    Room(#[from] NameError),
    /// A quote opened and never closed.
    #[error(
        "unbalanced quotes: quote the command line as for a shell, e.g. say '#dev' \"it's me\""
    )]
    Quotes,
    /// `say` with a text that starts like a slash command (its first word here): not sent.
    #[error(
        "say posts text, not commands: a text starting {0:?} was not sent; use /me ACTION for an emote, or //TEXT to send /TEXT"
    )]
    Slash(String),
}

/// The commands, one per line.
pub const USAGE: &str =
    "commands:\n  say ROOM TEXT...\n  tail ROOM [-n N] [-f]\n  who ROOM\n  rooms\n";

/// A room as users write it: `#x` and `x` are both channel `x`.
pub fn room(word: &str) -> Result<ChannelName, NameError> {
    ChannelName::new(word.strip_prefix('#').unwrap_or(word))
}

/// Splits a command line into words with shell-like quoting, a `#` at the start of a word
/// included in it rather than starting a comment.
pub fn words(line: &str) -> Result<Vec<String>, UsageError> {
    shell_words::split(&literal_hashes(line)).map_err(|_| UsageError::Quotes)
}

/// `line` with a backslash before every `#` that a shell would read as the start of a comment
/// (unquoted, unescaped, at the start of a word), so that the splitter keeps it.
fn literal_hashes(line: &str) -> String {
    let mut escaped_line = String::with_capacity(line.len() + 4);
    let (mut single, mut double, mut escaped, mut word_start) = (false, false, false, true);
    for c in line.chars() {
        if escaped {
            // A backslash-newline outside quotes joins lines and leaves the word state alone.
            escaped = false;
            word_start &= c == '\n' && !double;
            escaped_line.push(c);
            continue;
        }
        match c {
            '\\' if !single => {
                escaped = true;
                escaped_line.push(c);
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if word_start && !single && !double => escaped_line.push('\\'),
            _ => {}
        }
        word_start = !single && !double && matches!(c, ' ' | '\t' | '\n');
        escaped_line.push(c);
    }
    escaped_line
}

/// The message `say` posts for its `words`, or why there is none.
fn say_text(words: &[&str]) -> Result<String, UsageError> {
    let text = words.join(" ");
    if text.trim().is_empty() {
        return Err(UsageError::Usage(SAY_USAGE));
    }
    if let Some(literal) = text.strip_prefix("//") {
        return Ok(format!("/{literal}"));
    }
    let emote = text
        .strip_prefix("/me ")
        .is_some_and(|action| !action.trim().is_empty());
    if text.starts_with('/') && !emote {
        let first = text.split(' ').next().unwrap_or_default().to_owned();
        return Err(UsageError::Slash(first));
    }
    Ok(text)
}

const SAY_USAGE: &str = "say ROOM TEXT...";

/// Parses an exec command line.
pub fn parse(line: &str) -> Result<Command, UsageError> {
    let words = words(line)?;
    let mut words = words.iter().map(String::as_str);
    let name = words.next().unwrap_or_default();
    match name {
        "say" => {
            let room_word = words.next().ok_or(UsageError::Usage(SAY_USAGE))?;
            let room = room(room_word)?;
            let text = say_text(&words.collect::<Vec<_>>())?;
            Ok(Command::Say { room, text })
        }
        "tail" => {
            const USE: &str = "tail ROOM [-n N] [-f]";
            let room = room(words.next().ok_or(UsageError::Usage(USE))?)?;
            let (mut lines, mut follow) = (DEFAULT_TAIL, false);
            while let Some(word) = words.next() {
                match word {
                    "-f" => follow = true,
                    "-n" => {
                        lines = words
                            .next()
                            .and_then(|n| n.parse().ok())
                            .ok_or(UsageError::Usage(USE))?;
                    }
                    _ => return Err(UsageError::Usage(USE)),
                }
            }
            Ok(Command::Tail {
                room,
                lines,
                follow,
            })
        }
        "who" => {
            let room = room(words.next().ok_or(UsageError::Usage("who ROOM"))?)?;
            match words.next() {
                None => Ok(Command::Who { room }),
                Some(_) => Err(UsageError::Usage("who ROOM")),
            }
        }
        "rooms" if words.next().is_none() => Ok(Command::Rooms),
        "rooms" => Err(UsageError::Usage("rooms")),
        other => Err(UsageError::Unknown(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }

    fn say(room: &str, text: &str) -> Result<Command, UsageError> {
        Ok(Command::Say {
            room: ch(room),
            text: text.into(),
        })
    }

    #[test]
    fn commands() {
        assert_eq!(parse("say #dev hello   there "), say("dev", "hello there"));
        assert_eq!(
            parse("tail dev -n 3 -f"),
            Ok(Command::Tail {
                room: ch("dev"),
                lines: 3,
                follow: true
            })
        );
        assert_eq!(
            parse("tail dev -n 3 -f"),
            Ok(Command::Tail {
                room: ch("dev"),
                lines: 3,
                follow: true
            })
        );
        assert_eq!(
            parse("tail #dev"),
            Ok(Command::Tail {
                room: ch("dev"),
                lines: DEFAULT_TAIL,
                follow: false
            })
        );
        assert_eq!(parse("who #dev"), Ok(Command::Who { room: ch("dev") }));
        assert_eq!(parse("rooms"), Ok(Command::Rooms));
    }

    #[test]
    fn words_are_split_as_a_shell_would_but_hashes_are_kept() {
        // `ssh host "say '#dev' hi"` arrives as one string, quotes and all.
        assert_eq!(parse("say '#dev' hi"), say("dev", "hi"));
        assert_eq!(
            parse(r##"say "#dev" 'a  b' "it's""##),
            say("dev", "a  b it's")
        );
        assert_eq!(parse(r"say #dev it\'s \#1"), say("dev", "it's #1"));
        assert_eq!(
            parse("say dev #not-a-comment #2"),
            say("dev", "#not-a-comment #2")
        );
        assert_eq!(parse("say dev a#b '#c' \"#d\""), say("dev", "a#b #c #d"));
        assert_eq!(parse("say\tdev\nx"), say("dev", "x"));
        assert_eq!(
            parse("tail '#dev' -n '3'"),
            Ok(Command::Tail {
                room: ch("dev"),
                lines: 3,
                follow: false
            })
        );
        assert_eq!(words("a \\\n#b"), Ok(vec!["a".to_owned(), "#b".to_owned()]));
        assert_eq!(
            literal_hashes("#a '#b' \"#c\" \\#d x#e"),
            "\\#a '#b' \"#c\" \\#d x#e"
        );
    }

    proptest::proptest! {
        /// Words quoted for a shell come back as they were, whatever they hold; plain words
        /// (as OpenSSH joins separate arguments) too, `#` included.
        #[test]
        fn quoted_and_plain_words_come_back_whole(
            any_words in proptest::collection::vec(".{0,12}", 0..6),
            plain in proptest::collection::vec("[a-z#/.-]{1,8}", 0..6),
        ) {
            proptest::prop_assert_eq!(words(&shell_words::join(&any_words)), Ok(any_words));
            proptest::prop_assert_eq!(words(&plain.join(" ")), Ok(plain));
        }

        /// Whatever the line, `say` posts a non-empty text no longer than the line, and a
        /// leading slash only as an emote or from a doubled one.
        #[test]
        fn say_text_stays_within_the_line_and_is_never_a_command(
            text in "[ a#/'\"\\\\me]{0,24}",
        ) {
            let line = format!("say x {text}");
            if let Ok(Command::Say { text: said, .. }) = parse(&line) {
                proptest::prop_assert!(!said.trim().is_empty() && said.len() <= line.len());
                let typed = words(&line).unwrap()[2..].join(" ");
                proptest::prop_assert!(
                    !said.starts_with('/') || said.starts_with("/me ") || typed.starts_with("//")
                );
            }
        }
    }

    #[test]
    fn say_posts_no_command_text() {
        assert_eq!(
            parse("say '#x' /msg alice secret"),
            Err(UsageError::Slash("/msg".into()))
        );
        assert_eq!(parse("say x /me"), Err(UsageError::Slash("/me".into())));
        assert_eq!(parse("say x '/me '"), Err(UsageError::Slash("/me".into())));
        assert_eq!(parse("say x /quit"), Err(UsageError::Slash("/quit".into())));
        assert_eq!(parse("say x /me waves"), say("x", "/me waves"));
        assert_eq!(
            parse("say x //etc/passwd is a file"),
            say("x", "/etc/passwd is a file")
        );
        assert_eq!(parse("say x ' /msg' spaced"), say("x", " /msg spaced"));
        assert_eq!(
            parse("say x '' ''"),
            Err(UsageError::Usage("say ROOM TEXT..."))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("say '#dev hi"), Err(UsageError::Quotes));
        assert_eq!(parse("say dev \"hi"), Err(UsageError::Quotes));
        assert!(matches!(parse("say ä /x"), Err(UsageError::Room(_))));
        assert_eq!(
            parse("say #dev"),
            Err(UsageError::Usage("say ROOM TEXT..."))
        );
        assert_eq!(
            parse("tail"),
            Err(UsageError::Usage("tail ROOM [-n N] [-f]"))
        );
        assert_eq!(
            parse("tail x -n many"),
            Err(UsageError::Usage("tail ROOM [-n N] [-f]"))
        );
        assert_eq!(parse("rooms x"), Err(UsageError::Usage("rooms")));
        assert_eq!(parse("rm -rf /"), Err(UsageError::Unknown("rm".into())));
        assert_eq!(parse(""), Err(UsageError::Unknown(String::new())));
        assert!(matches!(parse("who #"), Err(UsageError::Room(_))));
        assert!(matches!(parse("who ä"), Err(UsageError::Room(_))));
    }
}
