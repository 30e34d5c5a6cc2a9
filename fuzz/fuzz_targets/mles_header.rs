//! Fuzzes the Mles join header, the first frame every client sends: `Header::parse`.
//!
//! Beyond "no panic", an accepted header must satisfy:
//! - `uid` and `channel` are non-empty ASCII and equal the input's fields;
//! - `stored` (replayed to every later joiner) is a JSON object that never holds `auth`: the
//!   auth token is a bearer password and must not leak to other clients;
//! - without an `auth` key the input is stored verbatim; with one, `stored` is the input object
//!   minus `auth`, the other fields in their original order, and `auth` is the token sent
//!   (`null` counting as absent).
//!
//! The auth field's proof part (`proof::AuthParts`, `proof::Proof::parse`) parses or is refused
//! without panicking, and every bound name a uid passes for (`passes_for`) is a lowercase valid
//! name found in the lowercased uid.
//!
//! A header refused for naming a key twice names a key the input really has (when the input is
//! a JSON object at all: the refusal may come before a later syntax error).

#![no_main]

use kanava_core::{Nick, passes_for};
use kanava_mles::header::{Header, HeaderError, MAX_HEADER_BYTES};
use kanava_mles::proof::{AuthParts, Proof};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let header = match Header::parse(data) {
        Ok(header) => header,
        Err(HeaderError::DuplicateKey(key)) => {
            // The parser may meet the second key before a later syntax error, and refuses
            // for the key then; when the whole input is an object, the key is one of its own.
            if let Ok(input) = serde_json::from_slice::<Map<String, Value>>(data) {
                assert!(
                    input.contains_key(&key),
                    "refused for a key it lacks: {key:?}"
                );
            }
            return;
        }
        Err(_) => return,
    };
    assert!(
        data.len() <= MAX_HEADER_BYTES,
        "accepted a {}-byte header",
        data.len()
    );

    let uid = header.uid.as_str();
    let channel = header.channel.as_str();
    assert!(!uid.is_empty() && uid.is_ascii(), "bad uid {uid:?}");
    assert!(
        !channel.is_empty() && channel.is_ascii(),
        "bad channel {channel:?}"
    );

    let lowercase = uid.to_ascii_lowercase();
    for name in passes_for(uid) {
        assert!(Nick::new(name.as_str()).is_ok(), "invalid name {name:?}");
        assert!(lowercase.contains(name.as_str()), "{uid:?} passes for {name:?}");
    }
    if let Some(proof) = AuthParts::split(header.auth.as_deref()).proof {
        let _ = Proof::parse(proof);
    }

    let input: Map<String, Value> =
        serde_json::from_slice(data).expect("an accepted header is a JSON object");
    assert_eq!(input.get("uid").and_then(Value::as_str), Some(uid));
    assert_eq!(input.get("channel").and_then(Value::as_str), Some(channel));

    let stored: Map<String, Value> = serde_json::from_slice(&header.stored)
        .unwrap_or_else(|e| panic!("stored is not a JSON object ({e}): {:?}", header.stored));
    assert!(
        !stored.contains_key("auth"),
        "stored header still holds auth: {:?}",
        header.stored
    );

    match input.get("auth") {
        None => {
            assert_eq!(header.auth, None);
            assert_eq!(
                &header.stored[..],
                data,
                "header without auth not stored verbatim"
            );
        }
        Some(sent) => {
            let expected = match sent {
                Value::Null => None,
                Value::String(s) => Some(s.as_str()),
                other => panic!("accepted a non-string auth {other:?}"),
            };
            assert_eq!(header.auth.as_deref(), expected);
            let mut without = input.clone();
            without.shift_remove("auth");
            assert!(
                stored.iter().eq(without.iter()),
                "stored {stored:?} is not the input without auth {without:?}"
            );
        }
    }
});
