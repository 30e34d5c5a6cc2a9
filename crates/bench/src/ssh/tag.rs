//! The random tag of a run, in its user names and message texts, so that names bound by earlier
//! runs (names belong to the first key that uses them) and messages replayed from earlier runs'
//! history are never taken for this run's.

use std::fmt;

/// Six random hex digits naming one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunTag(u32);

impl RunTag {
    /// A fresh random tag.
    pub(crate) fn random() -> Self {
        Self(rand::random::<u32>() & 0xff_ffff)
    }

    /// The user name of session `index`: `b`, the tag, `x`, the index (at most 16 characters
    /// for fewer than 10 million sessions).
    pub(crate) fn user(self, index: usize) -> String {
        format!("b{self}x{index}")
    }

    /// The text of message `seq`: the tag and the zero-padded sequence number, so that no
    /// message's text contains another's.
    pub(crate) fn message(self, seq: usize) -> String {
        format!("{self}-{seq:08}")
    }
}

impl fmt::Display for RunTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_distinct_and_fit() {
        let tag = RunTag(0xab);
        assert_eq!(tag.to_string(), "0000ab");
        assert_eq!(tag.user(7), "b0000abx7");
        assert!(tag.user(9_999_999).len() <= 16);
        assert_eq!(tag.message(12), "0000ab-00000012");
        assert!(!tag.message(123).contains(&tag.message(12)));
        assert!(RunTag::random().to_string().len() == 6);
    }
}
