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

/// A name bound to a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name.
    pub nick: Nick,
    /// The key's OpenSSH fingerprint (`SHA256:` and unpadded base64), as `ssh-keygen -l` prints.
    pub fingerprint: String,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// When the name was bound, in Unix milliseconds.
    pub bound_ms: u64,
}

/// The outcome of claiming a name for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name was free and is now bound to the key.
    Bound,
    /// The name was already bound to this key.
    Yours,
    /// The name is bound to another key, whose fingerprint this is.
    Taken(String),
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
