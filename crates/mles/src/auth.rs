//! The Mles v2 auth token: SipHash-2-4 with the zero key over `uid || channel || key`, written as
//! 16 hex digits. Without a shared key anyone can compute it; with one it is a bearer password
//! for one (uid, channel).

use std::hash::Hasher;

use siphasher::sip::SipHasher;

/// The token for `uid` in `channel`, with the shared key if the server has one.
pub fn token(uid: &str, channel: &str, key: Option<&str>) -> u64 {
    let mut hasher = SipHasher::new();
    hasher.write(uid.as_bytes());
    hasher.write(channel.as_bytes());
    if let Some(key) = key {
        hasher.write(key.as_bytes());
    }
    hasher.finish()
}

/// The token as a client sends it: 16 lowercase hex digits.
pub fn token_hex(uid: &str, channel: &str, key: Option<&str>) -> String {
    format!("{:016x}", token(uid, channel, key))
}

/// Parses a token as the reference does (`u64::from_str_radix(s, 16)`): either case, leading
/// zeros and a leading `+` pass; anything unparsable counts as 0, which never matches in practice.
fn parse(auth: &str) -> u64 {
    u64::from_str_radix(auth, 16).unwrap_or(0)
}

/// Whether a header's `auth` satisfies the rule: with a key it is required and must match the
/// keyed token; without one it may be absent, but if present it must match the unkeyed token.
pub fn verify(uid: &str, channel: &str, auth: Option<&str>, key: Option<&str>) -> bool {
    match (auth, key) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(auth), key) => parse(auth) == token(uid, channel, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        assert_eq!(token_hex("authuser", "authch", None), "827d5db8dcd8bcef");
        assert_eq!(
            token_hex("authuser", "authch", Some("secretkey")),
            "476c18c50edcef7a"
        );
        assert_eq!(token_hex("alice", "example", None), "9b3b95527f7c2d80");
        assert_eq!(
            token_hex("alice", "example", Some("secretkey")),
            "8d84c715250367b0"
        );
    }

    #[test]
    fn siphash_sanity_checks() {
        let mut h = SipHasher::new();
        h.write(b"");
        assert_eq!(h.finish(), 0x1e924b9d737700d7);
        let key: Vec<u8> = (0..16).collect();
        let mut h = SipHasher::new_with_key(&key.try_into().unwrap());
        h.write(&(0..15).collect::<Vec<u8>>());
        assert_eq!(h.finish(), 0xa129ca6149be45e5);
    }

    #[test]
    fn rule_without_key() {
        assert!(verify("authuser", "authch", None, None));
        assert!(verify("authuser", "authch", Some("827d5db8dcd8bcef"), None));
        assert!(verify("authuser", "authch", Some("827D5DB8DCD8BCEF"), None));
        assert!(verify(
            "authuser",
            "authch",
            Some("+827d5db8dcd8bcef"),
            None
        ));
        assert!(!verify(
            "authuser",
            "authch",
            Some("0000000000000001"),
            None
        ));
        assert!(!verify(
            "authuser",
            "authch",
            Some("0x827d5db8dcd8bcef"),
            None
        ));
        assert!(!verify("authuser", "authch", Some(""), None));
    }

    #[test]
    fn rule_with_key() {
        let key = Some("secretkey");
        assert!(!verify("authuser", "authch", None, key));
        assert!(!verify("authuser", "authch", Some("827d5db8dcd8bcef"), key));
        assert!(verify("authuser", "authch", Some("476c18c50edcef7a"), key));
        assert!(verify("authuser", "authch", Some("476C18C50EDCEF7A"), key));
        assert!(verify("authuser", "authch", Some("0476c18c50edcef7a"), key));
    }
}
