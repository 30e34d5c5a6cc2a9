//! SSH chat names and the trust-on-first-use binding of a name to a public key.

use std::fmt;
use std::sync::Arc;

/// Longest name accepted.
pub const MAX_NICK_LEN: usize = 16;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("names are 1 to {MAX_NICK_LEN} characters of A-Z, a-z, 0-9, '_', '.' and '-'")]
pub struct NickError;

/// A chat name: 1 to 16 of `[A-Za-z0-9_.-]`, compared case-insensitively (as ssh-chat does), so
/// `Alice` and `alice` are one name. ASCII only, which also rules out look-alike characters.
#[derive(Clone)]
pub struct Nick(Arc<str>);

impl Nick {
    /// Validates `s` as a name.
    pub fn new(s: &str) -> Result<Self, NickError> {
        let valid = (1..=MAX_NICK_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(s.into()))
        } else {
            Err(NickError)
        }
    }

    /// The name as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form names are compared and stored under.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for Nick {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Nick {}

impl fmt::Debug for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One public key that may log in under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityKey {
    /// The key's OpenSSH fingerprint (`SHA256:` and unpadded base64), as `ssh-keygen -l` prints.
    pub fingerprint: String,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// When the key was bound to the name, in Unix milliseconds.
    pub added_ms: u64,
    /// Whether the key was added with `/key add` and has yet to log in once under the name to
    /// prove that its holder wants it there: until then it does not log in as the name, does
    /// not count as holding it, and expires after [`PENDING_KEY_TTL_MS`].
    pub pending: bool,
}

/// How long a key added with `/key add` waits for its first login before it is dropped.
pub const PENDING_KEY_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Most keys (active and pending) one name may have, so that `/key add` cannot grow a record
/// without bound.
pub const MAX_KEYS_PER_NAME: usize = 16;

impl IdentityKey {
    /// Whether a pending key has waited longer than [`PENDING_KEY_TTL_MS`] at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.pending && self.added_ms.saturating_add(PENDING_KEY_TTL_MS) <= now_ms
    }
}

/// A name and the keys that may log in under it: the key that claimed it first, then any its
/// owner added (`/key add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name.
    pub nick: Nick,
    /// The keys, oldest first; never empty for a bound name, and at least one is active.
    pub keys: Vec<IdentityKey>,
    /// When the name last logged in (or was bound), in Unix milliseconds: a name unused for
    /// longer than the operator's expiry is freed.
    pub last_seen_ms: u64,
    /// When the name was last renamed (`/nick`) into its current spelling, in Unix
    /// milliseconds; 0 if never. A rename carries it along, so renames stay rate-limited.
    pub renamed_ms: u64,
}

impl Identity {
    /// Whether the key with this fingerprint may log in under the name (an active key).
    pub fn holds(&self, fingerprint: &str) -> bool {
        self.keys
            .iter()
            .any(|k| !k.pending && k.fingerprint == fingerprint)
    }

    /// Whether the key with this fingerprint waits, pending, for its first login under the
    /// name, and has not expired at `now_ms`.
    pub fn awaits(&self, fingerprint: &str, now_ms: u64) -> bool {
        self.keys
            .iter()
            .any(|k| k.pending && k.fingerprint == fingerprint && !k.expired_at(now_ms))
    }

    /// When the name was first bound, in Unix milliseconds.
    pub fn bound_ms(&self) -> u64 {
        self.keys.first().map_or(0, |k| k.added_ms)
    }
}

/// Whether one key may hold several names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySharing {
    /// A key holds at most one name (the default): its second name is refused.
    #[default]
    OneNamePerKey,
    /// A key may hold any number of names.
    ManyNamesPerKey,
}

/// The outcome of binding a key to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now bound to the name.
    Bound,
    /// The key was already bound to the name.
    Yours,
    /// The name is bound to other keys; this is the fingerprint of its first.
    Taken(String),
    /// The key already holds this other name, and keys may hold one name only.
    KeyHoldsName(Nick),
    /// The key was pending on the name (`/key add`) and, by this first login, is now active.
    Confirmed,
}

/// The outcome of adding a key to a name (`/key add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAdded {
    /// The key is stored as pending: it becomes active when it first logs in under the name.
    Pending,
    /// The key was pending already (its wait starts again).
    StillPending,
    /// The key is already an active key of the name.
    Active,
    /// The key holds another name, and keys may hold one name only; which name is not said.
    KeyHoldsName,
    /// The name has [`MAX_KEYS_PER_NAME`] keys already.
    TooManyKeys,
    /// The name is not bound (it was released meanwhile).
    NameFree,
}

/// The outcome of renaming a name (`/nick`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// The keys now hold the new name, and the old one is free.
    Renamed,
    /// The new name is bound already.
    Taken,
    /// The old name is not bound.
    NotBound,
    /// The name was renamed too recently; it may be renamed again from this time (Unix ms).
    TooSoon(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Nick::new("alice").is_ok());
        assert!(Nick::new("a.b-c_9").is_ok());
        assert!(Nick::new("sixteen_chars_ok").is_ok());
        for bad in ["", "seventeen_chars__", "al ice", "älice", "a/b", "a\x1b"] {
            assert_eq!(Nick::new(bad), Err(NickError), "{bad:?}");
        }
        assert_eq!(Nick::new("Alice").unwrap(), Nick::new("alice").unwrap());
        assert_eq!(Nick::new("Alice").unwrap().key(), "alice");
        assert_eq!(Nick::new("Alice").unwrap().as_str(), "Alice");
    }
}
