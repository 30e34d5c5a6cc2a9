//! Channel names and member ids, validated once at the edge so that the rest of the server can
//! rely on them.

use std::fmt;
use std::sync::Arc;

/// Why a channel name or uid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name has no bytes.
    #[error("{what} is empty")]
    Empty {
        /// Which kind of name ("uid", "channel").
        what: &'static str,
    },
    /// The name holds a byte at or above 0x80; Mles v2 accepts only ASCII.
    #[error("{what} is not ASCII")]
    NotAscii {
        /// Which kind of name ("uid", "channel").
        what: &'static str,
    },
}

fn check(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        Err(NameError::Empty { what })
    } else if !s.is_ascii() {
        Err(NameError::NotAscii { what })
    } else {
        Ok(())
    }
}

/// A channel name: non-empty ASCII (control characters allowed, as in Mles v2). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates `s` as a channel name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check("channel", s)?;
        Ok(Self(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names may hold control characters; never print them raw into a log or terminal.
        write!(f, "{}", self.0.escape_debug())
    }
}

/// A member's id within a channel (the Mles `uid`): non-empty ASCII. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(Arc<str>);

impl Uid {
    /// Validates `s` as a uid.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check("uid", s)?;
        Ok(Self(s.into()))
    }

    /// The uid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_non_empty_ascii() {
        assert_eq!(
            ChannelName::new(""),
            Err(NameError::Empty { what: "channel" })
        );
        assert_eq!(Uid::new("ä"), Err(NameError::NotAscii { what: "uid" }));
        assert_eq!(ChannelName::new("a\x01b").unwrap().as_str(), "a\x01b");
        assert_eq!(Uid::new("alice").unwrap().as_str(), "alice");
    }

    #[test]
    fn display_escapes_control_characters() {
        let name = ChannelName::new("x\x1b[2J").unwrap();
        assert_eq!(name.to_string(), "x\\u{1b}[2J");
    }
}
