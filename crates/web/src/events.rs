//! The JSON the server sends (docs/web-protocol.md), built from the hub's entries and records.

use kanava_core::{ChannelName, Entry, FrameKind, PrivateMessage, Topic};
use kanava_hub::Present;
use serde_json::{Value, json};

/// Longest text an event carries: a longer message (a Mles client may send megabytes) is cut
/// here, and its event says how long it was (`truncated`).
pub(crate) const MAX_EVENT_TEXT: usize = 64 * 1024;

/// A room's entry as an `event`; `None` for what a reader does not show (pings).
pub(crate) fn event(room: &ChannelName, entry: &Entry) -> Option<Value> {
    let mut event = json!({
        "type": "event",
        "room": room.as_str(),
        "seq": entry.seq,
        "time": entry.time_ms,
        "from": entry.sender.as_str(),
        "verified": entry.verified,
    });
    let fields = event.as_object_mut().expect("an object");
    match entry.kind {
        FrameKind::Ping => return None,
        FrameKind::Header => {
            fields.insert("kind".into(), "join".into());
        }
        FrameKind::Binary => {
            fields.insert("kind".into(), "binary".into());
            fields.insert("size".into(), entry.payload.len().into());
        }
        FrameKind::Text => {
            let text = String::from_utf8_lossy(&entry.payload);
            let (kind, text) = match text.strip_prefix("/me ") {
                Some(action) => ("emote", action),
                None => ("text", &*text),
            };
            fields.insert("kind".into(), kind.into());
            if text.len() > MAX_EVENT_TEXT {
                let mut end = MAX_EVENT_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                fields.insert("text".into(), text[..end].into());
                fields.insert("truncated".into(), entry.payload.len().into());
            } else {
                fields.insert("text".into(), text.into());
            }
        }
    }
    Some(event)
}

/// The members of a room, as `joined` and `presence` list them: sorted by name.
pub(crate) fn members(present: &[Present]) -> Value {
    let mut members: Vec<&Present> = present.iter().collect();
    members.sort_by(|a, b| a.uid.as_str().cmp(b.uid.as_str()));
    members
        .into_iter()
        .map(|p| json!({"name": p.uid.as_str(), "verified": p.verified}))
        .collect()
}

/// A topic as `joined` and `topic` carry it.
pub(crate) fn topic(topic: &Topic) -> Value {
    json!({"text": topic.text, "by": topic.set_by.as_str(), "time": topic.set_ms})
}

/// A `topic` event for everyone in its room.
pub(crate) fn topic_event(topic_set: &Topic) -> Value {
    let mut event = topic(topic_set);
    let fields = event.as_object_mut().expect("an object");
    fields.insert("type".into(), "topic".into());
    fields.insert("room".into(), topic_set.room.as_str().into());
    event
}

/// A `pm` event.
pub(crate) fn private(message: &PrivateMessage) -> Value {
    json!({
        "type": "pm",
        "id": message.id,
        "from": message.from.as_str(),
        "to": message.to.as_str(),
        "text": message.text,
        "time": message.time_ms,
    })
}

/// A `notice` in a room.
pub(crate) fn notice(room: &ChannelName, text: &str) -> Value {
    json!({"type": "notice", "room": room.as_str(), "text": text})
}

/// An `error` answering request `id`.
pub(crate) fn error(id: Option<u64>, code: &str, reason: &str) -> Value {
    with_id(json!({"type": "error", "code": code, "reason": reason}), id)
}

/// `message` with `id` added when the request had one.
pub(crate) fn with_id(mut message: Value, id: Option<u64>) -> Value {
    if let (Some(id), Some(fields)) = (id, message.as_object_mut()) {
        fields.insert("id".into(), id.into());
    }
    message
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kanava_core::Uid;

    use super::*;

    fn entry(kind: FrameKind, payload: &'static [u8]) -> Entry {
        Entry {
            seq: 42,
            kind,
            sender: Uid::new("alice").unwrap(),
            verified: true,
            payload: Bytes::from_static(payload),
            time_ms: 1000,
        }
    }

    #[test]
    fn entries_become_events_of_their_kind() {
        let room = ChannelName::new("dev").unwrap();
        assert_eq!(
            event(&room, &entry(FrameKind::Text, b"hello")).unwrap(),
            json!({"type":"event","room":"dev","seq":42,"time":1000,"from":"alice","verified":true,"kind":"text","text":"hello"})
        );
        assert_eq!(
            event(&room, &entry(FrameKind::Text, b"/me waves")).unwrap()["kind"],
            "emote"
        );
        assert_eq!(
            event(&room, &entry(FrameKind::Text, b"/me waves")).unwrap()["text"],
            "waves"
        );
        let binary = event(&room, &entry(FrameKind::Binary, b"\x00\x01\x02")).unwrap();
        assert_eq!(
            (&binary["kind"], &binary["size"]),
            (&json!("binary"), &json!(3))
        );
        assert!(binary.get("text").is_none());
        assert_eq!(
            event(&room, &entry(FrameKind::Header, b"{}")).unwrap()["kind"],
            "join"
        );
        assert_eq!(event(&room, &entry(FrameKind::Ping, b"")), None);
        let long = Entry {
            payload: Bytes::from("é".repeat(MAX_EVENT_TEXT)),
            ..entry(FrameKind::Text, b"")
        };
        let cut = event(&room, &long).unwrap();
        assert!(cut["text"].as_str().unwrap().len() <= MAX_EVENT_TEXT);
        assert_eq!(cut["truncated"], 2 * MAX_EVENT_TEXT);
    }

    #[test]
    fn members_are_sorted_by_name() {
        let present = |uid: &str, verified: bool| Present {
            uid: Uid::new(uid).unwrap(),
            exclusive: !verified,
            verified,
        };
        assert_eq!(
            members(&[present("web", false), present("alice", true)]),
            json!([{"name":"alice","verified":true},{"name":"web","verified":false}])
        );
    }
}
