//! The kanava web protocol's requests (docs/web-protocol.md), decoded from the text frames a
//! browser or bot sends. Decoding is pure, so that it can be fuzzed: any input gives a request
//! or a [`BadRequest`] saying why, never a panic.

use kanava_core::ChannelName;
use serde::Deserialize;

/// The protocol version served at `/kanava`.
pub const VERSION: u32 = 1;

/// Largest request id: ids are JSON numbers, exact in JavaScript below 2^53.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A request, with the `id` the client gave it (echoed in the reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The client's id for the request, if any.
    pub id: Option<u64>,
    /// What is asked.
    pub request: Request,
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Logs in as `name` with `key`, proving it with `signature` over the hello's nonce.
    Login {
        /// The chat name.
        name: String,
        /// The public key, in OpenSSH format.
        key: String,
        /// The SSHSIG signature (base64 or armoured).
        signature: String,
    },
    /// Opens a room, resuming after a sequence number if given.
    Join {
        /// The room (`dev` or `#dev`).
        room: String,
        /// The last sequence number the client showed.
        after: Option<u64>,
    },
    /// Leaves a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Sends a message (an emote when it starts with `/me `).
    Send {
        /// The room.
        room: String,
        /// The text.
        text: String,
    },
    /// Asks for events older than `before`.
    History {
        /// The room.
        room: String,
        /// Events below this sequence number.
        before: u64,
        /// How many, at most.
        limit: Option<u64>,
    },
    /// Sets a room's topic.
    Topic {
        /// The room.
        room: String,
        /// The new topic.
        text: String,
    },
    /// Sends a private message.
    Pm {
        /// The recipient's name.
        to: String,
        /// The text.
        text: String,
    },
    /// Lists the name's keys.
    Keys {},
    /// Adds a key to the name (pending until it logs in).
    KeyAdd {
        /// The public key, in OpenSSH format.
        key: String,
    },
    /// Removes a key from the name.
    KeyRemove {
        /// The key's fingerprint (`SHA256:…`).
        fingerprint: String,
    },
    /// Lists the rooms with people in them.
    Rooms {},
}

impl Request {
    /// The request's `type`, as counted in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Send { .. } => "send",
            Request::History { .. } => "history",
            Request::Topic { .. } => "topic",
            Request::Pm { .. } => "pm",
            Request::Keys {} => "keys",
            Request::KeyAdd { .. } => "key_add",
            Request::KeyRemove { .. } => "key_remove",
            Request::Rooms {} => "rooms",
        }
    }

    /// Every label, for registering the metrics at zero.
    pub const LABELS: [&'static str; 11] = [
        "login",
        "join",
        "leave",
        "send",
        "history",
        "topic",
        "pm",
        "keys",
        "key_add",
        "key_remove",
        "rooms",
    ];
}

/// A frame that is not a request; the client gets an `error` with code `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BadRequest {
    /// The frame's `id`, when it had a valid one, to echo.
    pub id: Option<u64>,
    /// Why, in one line.
    pub reason: String,
}

/// Longest reason of a [`BadRequest`]: serde's messages quote what they could not take, which
/// may be most of a frame.
pub const MAX_REASON: usize = 200;

impl BadRequest {
    fn new(id: Option<u64>, reason: impl Into<String>) -> Self {
        let mut reason: String = reason.into();
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON - 3;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        Self { id, reason }
    }
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Envelope, BadRequest> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| BadRequest::new(None, format!("invalid JSON: {error}")))?;
    let serde_json::Value::Object(object) = &value else {
        return Err(BadRequest::new(None, "a request is a JSON object"));
    };
    let id = match object.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(id) => match id.as_u64() {
            Some(id) if id <= MAX_ID => Some(id),
            _ => {
                return Err(BadRequest::new(
                    None,
                    "id must be an integer from 0 to 2^53-1",
                ));
            }
        },
    };
    let kind = match object.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(_) => return Err(BadRequest::new(id, "type must be a string")),
        None => return Err(BadRequest::new(id, "a request needs a type")),
    };
    if !Request::LABELS.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(32).flat_map(char::escape_debug).collect();
        return Err(BadRequest::new(
            id,
            format!("unknown request type \"{shown}\""),
        ));
    }
    let request = Request::deserialize(value)
        .map_err(|error| BadRequest::new(id, format!("bad {kind} request: {error}")))?;
    Ok(Envelope { id, request })
}

/// A room as a request names it: `dev` or `#dev`.
pub fn room(text: &str) -> Result<ChannelName, String> {
    let name = text.strip_prefix('#').unwrap_or(text);
    ChannelName::new(name).map_err(|error| format!("bad room name: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_with_their_ids_and_ignore_unknown_fields() {
        assert_eq!(
            decode(r##"{"type":"join","room":"#dev","after":41,"id":7,"extra":[1]}"##),
            Ok(Envelope {
                id: Some(7),
                request: Request::Join {
                    room: "#dev".into(),
                    after: Some(41)
                }
            })
        );
        assert_eq!(
            decode(r#"{"type":"keys"}"#),
            Ok(Envelope {
                id: None,
                request: Request::Keys {}
            })
        );
        assert_eq!(
            decode(r#"{"type":"send","room":"dev","text":"hi","id":null}"#)
                .unwrap()
                .request,
            Request::Send {
                room: "dev".into(),
                text: "hi".into()
            }
        );
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason_and_the_id_when_valid() {
        let refused = |text: &str| decode(text).unwrap_err();
        assert!(refused("{").reason.starts_with("invalid JSON"));
        assert!(refused("[1]").reason.contains("JSON object"));
        assert_eq!(refused(r#"{"type":"nope","id":3}"#).id, Some(3));
        assert!(
            refused(r#"{"type":"nope","id":3}"#)
                .reason
                .contains("unknown request type \"nope\"")
        );
        assert!(refused(r#"{"id":3}"#).reason.contains("needs a type"));
        assert!(refused(r#"{"type":1}"#).reason.contains("must be a string"));
        let wrong = refused(r#"{"type":"send","room":"dev","text":5,"id":9}"#);
        assert_eq!(wrong.id, Some(9));
        assert!(
            wrong.reason.starts_with("bad send request"),
            "{}",
            wrong.reason
        );
        assert!(refused(r#"{"type":"join"}"#).reason.contains("room"));
        for id in ["-1", "1.5", "9007199254740992", "\"7\""] {
            let frame = format!(r#"{{"type":"keys","id":{id}}}"#);
            assert_eq!(refused(&frame).id, None, "{id}");
        }
        let long = format!(r#"{{"type":"{}"}}"#, "\\u0000".repeat(100));
        assert!(refused(&long).reason.len() < 120);
        let quoted = format!(
            r#"{{"type":"history","room":"x","before":"{}"}}"#,
            "é".repeat(1000)
        );
        let reason = refused(&quoted).reason;
        assert!(
            reason.len() <= MAX_REASON && reason.ends_with("..."),
            "{reason}"
        );
    }

    #[test]
    fn rooms_take_an_optional_hash() {
        assert_eq!(room("#dev").unwrap().as_str(), "dev");
        assert_eq!(room("dev").unwrap().as_str(), "dev");
        assert!(room("").is_err());
        assert!(room("#").is_err());
    }
}
