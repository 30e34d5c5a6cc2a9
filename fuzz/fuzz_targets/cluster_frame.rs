//! Fuzzes what kanava reads back from NATS JetStream in a cluster (`kanava_cluster::wire`): a
//! stored channel frame (`decode_frame`, from a subject, headers and payload), a stored debug-me
//! record or a message sent into a session (`decode_session_message`, from the same headers and
//! payload), a session node's reply (`decode_session_reply`) and the JSON records of the key-value buckets and the private-message stream (identities, key indexes,
//! bans, topics, presence announcements, private messages, read pointers).
//!
//! The input is a frame written as text: the subject on the first line, then `Name: value`
//! header lines up to an empty line, then the payload. The whole input is also fed to every
//! record decoder. Beyond "no panic":
//! - an accepted frame's subject is the hash of the channel it carries (in its shard, for a
//!   subject of several channel streams: their count is the input's first byte % 8 + 1), and
//!   re-encoding the frame (`frame_headers`, `channel_subject`) gives a frame that decodes to
//!   the same;
//! - the sequences of a republished frame (`live_sequences`) are read only in order;
//! - an accepted session record re-encodes (`session_headers`) to one that decodes to the same;
//! - a refused reply's reason fits a header (no control characters, at most `MAX_REASON` bytes);
//! - an accepted record re-encodes to one that decodes to the same record.

#![no_main]

use bytes::Bytes;
use kanava_cluster::wire;
use libfuzzer_sys::fuzz_target;

/// Splits `data` into subject, header pairs and payload.
fn frame(data: &[u8]) -> (String, Vec<(String, String)>, Bytes) {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let payload = Bytes::copy_from_slice(data.get(split + 2..).unwrap_or_default());
    let mut lines = head.lines();
    let subject = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    (subject, headers, payload)
}

fuzz_target!(|data: &[u8]| {
    let (subject, headers, payload) = frame(data);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let seq = data.len() as u64;
    // The layout follows from the subject, so both are reached: one stream, or a few.
    let shards = if subject.starts_with(wire::SHARDED_CHANNEL_PREFIX) {
        wire::ChannelShards::new(1 + u32::from(data.first().copied().unwrap_or(0) % 8))
            .expect("1 to 8 shards")
    } else {
        wire::ChannelShards::ONE
    };
    if let Ok(delivered) = wire::decode_frame(shards, &subject, &pairs, payload.clone(), seq) {
        assert_eq!(subject, wire::channel_subject(shards, &delivered.channel));
        let again = wire::frame_headers(
            &delivered.channel,
            delivered.entry.kind,
            &delivered.entry.sender,
            delivered.entry.verified,
            delivered.entry.time_ms,
            &delivered.origin,
        );
        let pairs: Vec<(&str, &str)> = again.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let payload = delivered.entry.payload.clone();
        let decoded =
            wire::decode_frame(shards, &subject, &pairs, payload, seq).expect("re-encoded");
        assert_eq!(decoded, delivered);
    }

    if let Some((seq, previous)) = wire::live_sequences(&pairs) {
        assert!(previous < seq, "{previous} before {seq}");
    }

    if let Ok(record) = wire::decode_session_message(&pairs, payload.clone()) {
        let again = wire::session_headers(&record);
        let again: Vec<(&str, &str)> = again.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let payload = match &record {
            wire::SessionRecord::Message(message) => message.frame.clone(),
            wire::SessionRecord::Start | wire::SessionRecord::End => Bytes::new(),
        };
        let decoded = wire::decode_session_message(&again, payload).expect("re-encoded");
        assert_eq!(decoded, record);
    }
    if let Err(reason) = wire::decode_session_reply(&pairs, &payload) {
        assert!(!reason.is_empty() && reason.len() <= wire::MAX_REASON);
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }

    if let Ok(identity) = wire::decode_identity(data) {
        let again = wire::decode_identity(&wire::encode_identity(&identity)).unwrap();
        assert_eq!(again, identity);
        assert_eq!(again.nick.as_str(), identity.nick.as_str());
        assert!(
            identity.keys.iter().any(|k| !k.pending),
            "a decoded identity has an active key"
        );
    }
    if let Ok(names) = wire::decode_key_names(data) {
        assert_eq!(
            wire::decode_key_names(&wire::encode_key_names(&names)).unwrap(),
            names
        );
    }
    if let Ok(ban) = wire::decode_ban(data) {
        assert_eq!(wire::decode_ban(&wire::encode_ban(&ban)).unwrap(), ban);
    }
    if let Ok(topic) = wire::decode_topic(data) {
        assert_eq!(
            wire::decode_topic(&wire::encode_topic(&topic)).unwrap(),
            topic
        );
    }
    if let Ok(presence) = wire::decode_presence(data) {
        let again = wire::decode_presence(&wire::encode_presence(&presence)).unwrap();
        assert_eq!(again, presence);
    }
    if let Ok(message) = wire::decode_private(data, seq) {
        let again = wire::decode_private(&wire::encode_private(&message), seq).unwrap();
        assert_eq!(again, message);
    }
    if let Ok(last) = wire::decode_seen(data) {
        assert_eq!(wire::decode_seen(&wire::encode_seen(last)).unwrap(), last);
    }
});
