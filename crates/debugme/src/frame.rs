//! The WebSocket frames of spec 7.1: each binary message is one ASCII tag byte and a payload,
//! JSON for the handshake and errors and protobuf ([`crate::wire`]) for messages. Also the
//! version negotiation and the session id a developer's target names (spec 8).

use serde_json::Value;

use crate::model::AnyMessage;
use crate::wire::{self, WireError};

/// The largest frame [`decode_frame`] reads, tag included: 1 MiB, far above a real message
/// (a GnuPG key export is the largest), so that a peer cannot make the receiver buffer more.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// What a client tells the server it wants, in its `M` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A user starting a session; the email address the log is mailed to.
    Init(String),
    /// A developer, watcher or downloader joining; the full session URL.
    Connect(String),
}

/// One WebSocket message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `V`: the protocol versions the sender speaks.
    Version(Vec<String>),
    /// `M`: the client's mode.
    Mode(Mode),
    /// `R`: the session id, from the server.
    SessionId(String),
    /// `L`: a message, without its pointers.
    Message(AnyMessage),
    /// `D`: done (the session ended, or the client leaves).
    Done,
    /// `E`: an error text; the sender closes after it.
    Error(String),
}

/// Why a WebSocket message is not a frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_BYTES`]; nothing was decoded.
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// No tag byte.
    #[error("empty frame")]
    Empty,
    /// A tag byte that is none of `V`, `M`, `R`, `L`, `D`, `E`.
    #[error("unknown frame tag {0:#04x}")]
    UnknownTag(u8),
    /// A JSON payload that does not parse (invalid UTF-8 included).
    #[error("{tag} frame: payload is not JSON: {reason}")]
    Json {
        /// The frame's tag.
        tag: char,
        /// serde_json's description.
        reason: String,
    },
    /// A JSON payload of the wrong shape.
    #[error("{tag} frame: expected {expected}")]
    Shape {
        /// The frame's tag.
        tag: char,
        /// What the payload should have been.
        expected: &'static str,
    },
    /// A `D` frame with a payload.
    #[error("D frame with a {0}-byte payload, expected none")]
    DonePayload(usize),
    /// An `L` frame whose protobuf is not a message.
    #[error("L frame: {0}")]
    Message(#[from] WireError),
}

/// The bytes of a frame: its tag, then its payload.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let (tag, payload) = match frame {
        Frame::Version(versions) => (b'V', Value::from(versions.clone()).to_string().into_bytes()),
        Frame::Mode(mode) => {
            let (name, contents) = match mode {
                Mode::Init(email) => ("InitMode", email),
                Mode::Connect(url) => ("ConnectMode", url),
            };
            // Written by hand to keep the key order the real client uses.
            let json = format!(
                "{{\"tag\":\"{name}\",\"contents\":{}}}",
                Value::from(contents.as_str())
            );
            (b'M', json.into_bytes())
        }
        Frame::SessionId(id) => (b'R', Value::from(id.as_str()).to_string().into_bytes()),
        Frame::Message(message) => (b'L', wire::encode_message(message)),
        Frame::Done => (b'D', Vec::new()),
        Frame::Error(text) => (b'E', Value::from(text.as_str()).to_string().into_bytes()),
    };
    let mut bytes = Vec::with_capacity(1 + payload.len());
    bytes.push(tag);
    bytes.extend(payload);
    bytes
}

/// Reads a frame, refusing one over [`MAX_FRAME_BYTES`] before looking at it.
///
/// JSON objects may hold keys besides the ones read; they are ignored.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let (&tag, payload) = bytes.split_first().ok_or(FrameError::Empty)?;
    match tag {
        b'V' => {
            let shape = FrameError::Shape {
                tag: 'V',
                expected: "a list of version strings",
            };
            match json('V', payload)? {
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(version) => Ok(version),
                        _ => Err(shape.clone()),
                    })
                    .collect::<Result<_, _>>()
                    .map(Frame::Version),
                _ => Err(shape),
            }
        }
        b'M' => {
            let shape = FrameError::Shape {
                tag: 'M',
                expected: "{\"tag\": \"InitMode\" or \"ConnectMode\", \"contents\": a string}",
            };
            let value = json('M', payload)?;
            let contents = match value.get("contents") {
                Some(Value::String(contents)) => contents.clone(),
                _ => return Err(shape),
            };
            match value.get("tag").and_then(Value::as_str) {
                Some("InitMode") => Ok(Frame::Mode(Mode::Init(contents))),
                Some("ConnectMode") => Ok(Frame::Mode(Mode::Connect(contents))),
                _ => Err(shape),
            }
        }
        b'R' => json_string('R', payload).map(Frame::SessionId),
        b'L' => Ok(Frame::Message(wire::decode_message(payload)?)),
        b'D' if payload.is_empty() => Ok(Frame::Done),
        b'D' => Err(FrameError::DonePayload(payload.len())),
        b'E' => json_string('E', payload).map(Frame::Error),
        other => Err(FrameError::UnknownTag(other)),
    }
}

fn json(tag: char, payload: &[u8]) -> Result<Value, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Json {
        tag,
        reason: e.to_string(),
    })
}

fn json_string(tag: char, payload: &[u8]) -> Result<String, FrameError> {
    match json(tag, payload)? {
        Value::String(text) => Ok(text),
        _ => Err(FrameError::Shape {
            tag,
            expected: "a JSON string",
        }),
    }
}

/// The version both sides speak: the highest common one after a string sort (so `"10"` sorts
/// below `"9"`, as in the real program), or `None` when there is none and the session must end
/// with an `E` frame.
pub fn negotiate(ours: &[&str], theirs: &[String]) -> Option<String> {
    ours.iter()
        .filter(|version| theirs.iter().any(|t| t == *version))
        .max()
        .map(|version| (*version).to_owned())
}

/// The session id a developer's target names (spec 8): the last path component of a string
/// starting with `http`, or a bare name without `/`. `None` when that is empty or the target
/// is a path that does not start with `http`.
pub fn session_id_of(target: &str) -> Option<String> {
    let id = if target.starts_with("http") {
        target.rsplit('/').next().unwrap_or_default()
    } else if target.contains('/') {
        return None;
    } else {
        target
    };
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activity, Message, Seen, Signature};

    fn message() -> AnyMessage {
        AnyMessage::User(Message::Activity(Activity {
            activity: Seen {
                seen_data: b"** debug-me session started\r\n".to_vec(),
            },
            prev_activity: None,
            prev_entered: None,
            elapsed_time: 0.0,
            signature: Signature::Ed25519(vec![1; 64]),
        }))
    }

    #[test]
    fn frames_are_encoded_as_the_spec_shows() {
        let cases: [(Frame, &[u8]); 9] = [
            (Frame::Version(vec!["1".into()]), b"V[\"1\"]"),
            (Frame::Version(Vec::new()), b"V[]"),
            (
                Frame::Mode(Mode::Init("user@example.org".into())),
                b"M{\"tag\":\"InitMode\",\"contents\":\"user@example.org\"}",
            ),
            (
                Frame::Mode(Mode::Connect("http://localhost:8081/abc".into())),
                b"M{\"tag\":\"ConnectMode\",\"contents\":\"http://localhost:8081/abc\"}",
            ),
            (
                Frame::SessionId("93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50".into()),
                b"R\"93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50\"",
            ),
            (Frame::Done, b"D"),
            (
                Frame::Error("Unknown session ID".into()),
                b"E\"Unknown session ID\"",
            ),
            (
                Frame::Error(
                    "Protocol buffers decode error: Failed reading: empty\nEmpty call stack\n"
                        .into(),
                ),
                b"E\"Protocol buffers decode error: Failed reading: empty\\nEmpty call stack\\n\"",
            ),
            (
                Frame::Mode(Mode::Init("\"quoted\" \u{e4}".into())),
                "M{\"tag\":\"InitMode\",\"contents\":\"\\\"quoted\\\" \u{e4}\"}".as_bytes(),
            ),
        ];
        for (frame, bytes) in cases {
            assert_eq!(encode_frame(&frame), bytes, "{frame:?}");
            assert_eq!(decode_frame(bytes), Ok(frame));
        }
    }

    #[test]
    fn message_frames_carry_the_protobuf() {
        let frame = Frame::Message(message());
        let bytes = encode_frame(&frame);
        assert_eq!(bytes[0], b'L');
        assert_eq!(bytes[1..], wire::encode_message(&message()));
        assert_eq!(decode_frame(&bytes), Ok(frame));
    }

    #[test]
    fn json_is_read_in_any_key_order_and_spacing() {
        assert_eq!(
            decode_frame(b"M { \"contents\" : \"a@b\", \"tag\" : \"InitMode\", \"x\": 1 }"),
            Ok(Frame::Mode(Mode::Init("a@b".into())))
        );
        assert_eq!(
            decode_frame(b"V [ \"2\" , \"1\" ]\n"),
            Ok(Frame::Version(vec!["2".into(), "1".into()]))
        );
        assert_eq!(
            decode_frame(b"R\"\\u0061\""),
            Ok(Frame::SessionId("a".into()))
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(decode_frame(b""), Err(FrameError::Empty));
        assert_eq!(decode_frame(b"X"), Err(FrameError::UnknownTag(b'X')));
        assert_eq!(decode_frame(b"v[\"1\"]"), Err(FrameError::UnknownTag(b'v')));
        assert_eq!(
            decode_frame(&[0xff, b'"', b'"']),
            Err(FrameError::UnknownTag(0xff))
        );
        assert_eq!(decode_frame(b"Dx"), Err(FrameError::DonePayload(1)));
        for bytes in [
            &b"V"[..],
            b"V[\"1\"",
            b"R",
            b"Rabc",
            b"E\"unterminated",
            b"R\"\xff\"",
            b"E\"\xc3\"",
            b"M{\"tag\":\"InitMode\",\"contents\":\"a\"} trailing",
        ] {
            assert!(
                matches!(decode_frame(bytes), Err(FrameError::Json { .. })),
                "{bytes:?}"
            );
        }
        for (bytes, tag) in [
            (&b"V[1]"[..], 'V'),
            (b"V{}", 'V'),
            (b"V\"1\"", 'V'),
            (b"R1", 'R'),
            (b"Rnull", 'R'),
            (b"E[\"x\"]", 'E'),
            (b"M\"InitMode\"", 'M'),
            (b"M{\"tag\":\"InitMode\"}", 'M'),
            (b"M{\"tag\":\"SelectMode\",\"contents\":\"a\"}", 'M'),
            (b"M{\"tag\":\"InitMode\",\"contents\":1}", 'M'),
            (b"M{\"contents\":\"a\"}", 'M'),
        ] {
            assert!(
                matches!(decode_frame(bytes), Err(FrameError::Shape { tag: t, .. }) if t == tag),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn truncated_and_empty_messages_are_refused() {
        let bytes = encode_frame(&Frame::Message(message()));
        for end in 1..bytes.len() {
            assert!(
                matches!(decode_frame(&bytes[..end]), Err(FrameError::Message(_))),
                "prefix of {end}"
            );
        }
        assert_eq!(
            decode_frame(b"L"),
            Err(FrameError::Message(WireError::NoConstructor("AnyMessageP")))
        );
        assert!(matches!(
            decode_frame(b"L\xf2\x01\x7f"),
            Err(FrameError::Message(WireError::Decode(_)))
        ));
    }

    #[test]
    fn frames_over_the_limit_are_refused_before_decoding() {
        let mut big = vec![b'X'; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode_frame(&big),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
        big.truncate(MAX_FRAME_BYTES);
        assert_eq!(decode_frame(&big), Err(FrameError::UnknownTag(b'X')));

        let text = "e".repeat(MAX_FRAME_BYTES - 3);
        let at_limit = encode_frame(&Frame::Error(text.clone()));
        assert_eq!(at_limit.len(), MAX_FRAME_BYTES);
        assert_eq!(decode_frame(&at_limit), Ok(Frame::Error(text)));
        let over = encode_frame(&Frame::Error("e".repeat(MAX_FRAME_BYTES - 2)));
        assert_eq!(
            decode_frame(&over),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }

    #[test]
    fn negotiation_picks_the_highest_common_version_as_strings() {
        let theirs = |versions: &[&str]| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(negotiate(&["1"], &theirs(&["1"])), Some("1".into()));
        assert_eq!(
            negotiate(&["1", "2"], &theirs(&["2", "1"])),
            Some("2".into())
        );
        assert_eq!(
            negotiate(&["1", "2", "3"], &theirs(&["1", "3", "4"])),
            Some("3".into())
        );
        assert_eq!(
            negotiate(&["9", "10"], &theirs(&["10", "9"])),
            Some("9".into())
        );
        assert_eq!(negotiate(&["1"], &theirs(&["2"])), None);
        assert_eq!(negotiate(&["1"], &[]), None);
        assert_eq!(negotiate(&[], &theirs(&["1"])), None);
    }

    #[test]
    fn session_ids_come_from_urls_or_bare_names() {
        let sid = "93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50";
        assert_eq!(
            session_id_of(&format!("http://localhost:8081/{sid}")).as_deref(),
            Some(sid)
        );
        assert_eq!(
            session_id_of(&format!("https://debug-me.example.org/a/{sid}")).as_deref(),
            Some(sid)
        );
        assert_eq!(session_id_of(sid).as_deref(), Some(sid));
        assert_eq!(session_id_of("http://localhost:8081/"), None);
        assert_eq!(session_id_of("localhost:8081/x"), None);
        assert_eq!(session_id_of("/x"), None);
        assert_eq!(session_id_of(""), None);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            FrameError::UnknownTag(b'X').to_string(),
            "unknown frame tag 0x58"
        );
        assert_eq!(
            FrameError::TooLarge(MAX_FRAME_BYTES + 1).to_string(),
            "frame of 1048577 bytes is over the limit of 1048576"
        );
    }
}
