//! What the SSH chat remembers about people beyond channel history: private messages, bans and
//! room topics. These records live in the same store as the history and the name bindings, so
//! they survive restarts.

use crate::{ChannelName, Nick};

/// A private message between two names (`/msg`), shown only to the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateMessage {
    /// The store's id, increasing with each message.
    pub id: u64,
    /// Who sent it.
    pub from: Nick,
    /// Who it is for.
    pub to: Nick,
    /// The text, as sent (sanitised only when shown).
    pub text: String,
    /// When it was sent, in Unix milliseconds.
    pub time_ms: u64,
}

/// A key that may not log in, until a time or for good (`/ban`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned key's OpenSSH fingerprint.
    pub fingerprint: String,
    /// The name the key held when it was banned.
    pub nick: Nick,
    /// The operator who banned it.
    pub by: Nick,
    /// When, in Unix milliseconds.
    pub since_ms: u64,
    /// Until when, in Unix milliseconds; `None` for good.
    pub until_ms: Option<u64>,
}

impl Ban {
    /// Whether the ban holds at `now_ms`.
    pub fn active_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// A room's topic (`/topic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The room.
    pub room: ChannelName,
    /// The text, as set (sanitised only when shown).
    pub text: String,
    /// Who set it.
    pub set_by: Nick,
    /// When, in Unix milliseconds.
    pub set_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_expire() {
        let nick = Nick::new("x").unwrap();
        let ban = |until_ms| Ban {
            fingerprint: "SHA256:x".into(),
            nick: nick.clone(),
            by: nick.clone(),
            since_ms: 0,
            until_ms,
        };
        assert!(ban(None).active_at(u64::MAX));
        assert!(ban(Some(10)).active_at(9));
        assert!(!ban(Some(10)).active_at(10));
    }
}
