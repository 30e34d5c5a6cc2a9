//! The join header, the first frame of every Mles connection: `{"uid", "channel", "auth"?}`.
//!
//! Parsing is pure so that it can be fuzzed. The header is later replayed to every joiner, so
//! [`Header::stored`] is the frame with `auth` removed: tokens are deterministic bearer passwords
//! and must never reach another client.

use bytes::Bytes;
use kanava_core::{ChannelName, NameError, Uid};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Largest header accepted; real headers are far below 1 KiB.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Why a header was refused. Each maps to a close with code 1008 and this text as reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header is larger than [`MAX_HEADER_BYTES`].
    #[error("header larger than {MAX_HEADER_BYTES} bytes")]
    TooLarge,
    /// The frame is not a JSON object.
    #[error("header is not a JSON object")]
    NotJson,
    /// `uid` or `channel` is missing or not a string.
    #[error("header field {0} missing or not a string")]
    MissingField(&'static str),
    /// The object names a key twice: clients disagree on which one counts (the reference keeps
    /// the last, others the first), so the header is refused rather than replayed to them.
    #[error("header names key {0:?} twice")]
    DuplicateKey(String),
    /// `auth` is neither a string nor null.
    #[error("header field auth is not a string")]
    BadAuthType,
    /// `uid` or `channel` is empty or not ASCII.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// A validated join header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Who joins.
    pub uid: Uid,
    /// Which channel.
    pub channel: ChannelName,
    /// The auth token as sent (`null` counts as absent).
    pub auth: Option<String>,
    /// The frame to store and replay: verbatim when it had no `auth`, otherwise the same object
    /// without `auth`, other fields in their original order.
    pub stored: Bytes,
}

impl Header {
    /// Parses and validates the text of a first frame. Surrounding whitespace is allowed.
    pub fn parse(text: &[u8]) -> Result<Self, HeaderError> {
        if text.len() > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge);
        }
        let UniqueKeys(mut object) = serde_json::from_slice(text).map_err(|error| {
            duplicate_key(&error).map_or(HeaderError::NotJson, HeaderError::DuplicateKey)
        })?;
        let field = |name: &'static str| match object.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(HeaderError::MissingField(name)),
        };
        let uid = Uid::new(field("uid")?)?;
        let channel = ChannelName::new(field("channel")?)?;
        let (auth, stored) = match object.shift_remove("auth") {
            None => (None, Bytes::copy_from_slice(text)),
            Some(removed) => {
                let auth = match removed {
                    Value::Null => None,
                    Value::String(s) => Some(s),
                    _ => return Err(HeaderError::BadAuthType),
                };
                let stored = serde_json::to_vec(&object).map_err(|_| HeaderError::NotJson)?;
                (auth, Bytes::from(stored))
            }
        };
        Ok(Self {
            uid,
            channel,
            auth,
            stored,
        })
    }
}

/// Marks the error [`UniqueKeys`] raises, so that it can be told from malformed JSON.
const DUPLICATE_KEY: &str = "duplicate key ";

/// A JSON object whose top-level keys are all distinct.
struct UniqueKeys(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format_args!("{DUPLICATE_KEY}{key}")));
            }
            let value: Value = access.next_value()?;
            object.insert(key, value);
        }
        Ok(UniqueKeys(object))
    }
}

/// The key named twice, if `error` is [`UniqueKeys`]'s refusal.
fn duplicate_key(error: &serde_json::Error) -> Option<String> {
    let message = error.to_string();
    let rest = message.strip_prefix(DUPLICATE_KEY)?;
    // serde_json appends " at line L column C".
    let end = rest.rfind(" at line ").unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_is_stored_verbatim() {
        let text = b"{ \"uid\":\"alice\", \"channel\":\"example\" }\n";
        let h = Header::parse(text).unwrap();
        assert_eq!(h.uid.as_str(), "alice");
        assert_eq!(h.channel.as_str(), "example");
        assert_eq!(h.auth, None);
        assert_eq!(&h.stored[..], &text[..]);
    }

    #[test]
    fn auth_is_removed_and_other_fields_kept_in_order() {
        let h = Header::parse(
            br#"{"extra":1,"uid":"a","auth":"827d5db8dcd8bcef","channel":"c","z":[true]}"#,
        )
        .unwrap();
        assert_eq!(h.auth.as_deref(), Some("827d5db8dcd8bcef"));
        assert_eq!(
            &h.stored[..],
            br#"{"extra":1,"uid":"a","channel":"c","z":[true]}"#
        );
        let null = Header::parse(br#"{"uid":"a","channel":"c","auth":null}"#).unwrap();
        assert_eq!(null.auth, None);
        assert_eq!(&null.stored[..], br#"{"uid":"a","channel":"c"}"#);
    }

    #[test]
    fn refusals() {
        use HeaderError::*;
        assert_eq!(Header::parse(b"hello"), Err(NotJson));
        assert_eq!(Header::parse(b"[1]"), Err(NotJson));
        assert_eq!(
            Header::parse(br#"{"channel":"c"}"#),
            Err(MissingField("uid"))
        );
        assert_eq!(
            Header::parse(br#"{"uid":1,"channel":"c"}"#),
            Err(MissingField("uid"))
        );
        assert_eq!(
            Header::parse(br#"{"uid":"a"}"#),
            Err(MissingField("channel"))
        );
        assert!(matches!(
            Header::parse(br#"{"uid":"","channel":"c"}"#),
            Err(Name(_))
        ));
        assert!(matches!(
            Header::parse("{\"uid\":\"ä\",\"channel\":\"c\"}".as_bytes()),
            Err(Name(_))
        ));
        assert!(matches!(
            Header::parse(br#"{"uid":"a","channel":"c","auth":5}"#),
            Err(BadAuthType)
        ));
        let huge = format!(
            r#"{{"uid":"a","channel":"c","pad":"{}"}}"#,
            "x".repeat(5000)
        );
        assert_eq!(Header::parse(huge.as_bytes()), Err(TooLarge));
    }

    #[test]
    fn a_key_named_twice_is_refused_whichever_it_is() {
        for text in [
            r#"{"uid":"alice","channel":"c","uid":"mallory"}"#,
            r#"{"uid":"a","channel":"c","channel":"d"}"#,
            r#"{"uid":"a","channel":"c","x":1,"x":1}"#,
            r#"{"uid":"a","auth":null,"channel":"c","auth":"827d5db8dcd8bcef"}"#,
        ] {
            assert!(
                matches!(
                    Header::parse(text.as_bytes()),
                    Err(HeaderError::DuplicateKey(_))
                ),
                "{text}"
            );
        }
        assert_eq!(
            Header::parse(br#"{"uid":"alice","channel":"c","uid":"mallory"}"#),
            Err(HeaderError::DuplicateKey("uid".into()))
        );
        // Keys repeated inside nested values are the client's business.
        assert!(Header::parse(br#"{"uid":"a","channel":"c","x":{"k":1,"k":2}}"#).is_ok());
        // An escaped spelling of the same key is the same key.
        assert!(matches!(
            Header::parse(br#"{"uid":"a","channel":"c","\u0075id":"b"}"#),
            Err(HeaderError::DuplicateKey(_))
        ));
    }

    #[test]
    fn control_characters_in_names_pass_as_in_the_reference() {
        let h = Header::parse(b"{\"uid\":\"a\\u0001\",\"channel\":\"c\"}").unwrap();
        assert_eq!(h.uid.as_str(), "a\x01");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_stored_never_holds_auth(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(Header { auth: Some(auth), stored, .. }) = Header::parse(&bytes) {
                let stored: Map<String, Value> = serde_json::from_slice(&stored).unwrap();
                proptest::prop_assert!(!stored.contains_key("auth"), "{auth}");
            }
        }
    }
}
