//! The exec commands (`ssh host CMD …`) for scripts and bots, parsed without I/O.
//!
//! OpenSSH joins the remote command's words with spaces, so the text of `say` is everything after
//! the room, as typed.

use kanava_core::{ChannelName, NameError};

/// Lines `tail` prints when not told otherwise.
pub const DEFAULT_TAIL: usize = 10;

/// An exec command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `say ROOM TEXT…`: post one message.
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
}

/// The commands, one per line.
pub const USAGE: &str =
    "commands:\n  say ROOM TEXT...\n  tail ROOM [-n N] [-f]\n  who ROOM\n  rooms\n";

/// A room as users write it: `#x` and `x` are both channel `x`.
pub fn room(word: &str) -> Result<ChannelName, NameError> {
    ChannelName::new(word.strip_prefix('#').unwrap_or(word))
}

/// Parses an exec command line.
pub fn parse(line: &str) -> Result<Command, UsageError> {
    let line = line.trim();
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    match name {
        "say" => {
            const USE: &str = "say ROOM TEXT...";
            let room_word = words.next().ok_or(UsageError::Usage(USE))?;
            let after_room = line[name.len()..].trim_start()[room_word.len()..].trim();
            if after_room.is_empty() {
                return Err(UsageError::Usage(USE));
            }
            Ok(Command::Say {
                room: room(room_word)?,
                text: after_room.to_owned(),
            })
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

    #[test]
    fn commands() {
        assert_eq!(
            parse("say #dev hello   there "),
            Ok(Command::Say {
                room: ch("dev"),
                text: "hello   there".into()
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
    fn refusals() {
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
