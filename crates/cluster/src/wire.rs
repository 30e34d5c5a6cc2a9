//! What kanava writes into JetStream, and the pure decoders of what it reads back.
//!
//! Everything read from NATS may have been written by another version of kanava, by a broken
//! node, or by anyone with publish rights, so every decoder here refuses what it cannot trust
//! instead of panicking, and is fuzzed (`fuzz/fuzz_targets/cluster_frame.rs`). Nothing in this
//! module does I/O.
//!
//! debug-me sessions are stored under `kanava.dm.<session id>` (see [`session_subject`]), each
//! message marked by a [`SESSION_HEADER`] as the session's start, one of its messages or its end;
//! messages sent into a session from another node travel as requests to
//! `kanava.dm-in.<session id>`, outside the stream.
//!
//! Channel names may hold any ASCII, including `.`, `*`, `>`, spaces and control characters,
//! none of which a NATS subject or KV key may carry. A channel's subject therefore holds a
//! token, the first 16 bytes of SHA-256 of the name in hex, and the name itself travels in a
//! header; a frame whose name does not hash to its subject's token is refused, so that two
//! names can never share a history unless SHA-256 collides.

use std::sync::Arc;

use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Entry, FrameKind, Identity, IdentityKey, Nick, PrivateMessage, Topic, Uid,
};
use kanava_store::{Delivered, Origin, Present, SessionMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of every channel subject in a cluster of one channel stream: `kanava.ch.<token>`.
pub const CHANNEL_PREFIX: &str = "kanava.ch.";
/// The prefix of every channel subject in a cluster of several channel streams:
/// `kanava.chs.<shard>.<token>`, so that stream `KANAVA_CH_<shard>` owns `kanava.chs.<shard>.>`.
pub const SHARDED_CHANNEL_PREFIX: &str = "kanava.chs.";
/// The prefix of the core NATS subjects a channel stream republishes each stored frame on,
/// `kanava.live.<subject less "kanava.">`, for the nodes hosting the channel (nothing stored).
pub const LIVE_PREFIX: &str = "kanava.live.";
/// The most channel streams a cluster may have.
pub const MAX_CHANNEL_SHARDS: u32 = 64;
/// The prefix of every private-message subject: `kanava.pm.<hex of the recipient's name key>`.
pub const PRIVATE_PREFIX: &str = "kanava.pm.";

/// The prefix of every debug-me session subject: `kanava.dm.<session id>`.
pub const SESSION_PREFIX: &str = "kanava.dm.";
/// The prefix of the subject a session's node takes messages in on: `kanava.dm-in.<session id>`
/// (not stored: it is outside the session stream's subjects).
pub const SESSION_INBOX_PREFIX: &str = "kanava.dm-in.";

/// Header carrying the channel name, in hex.
pub const CHANNEL_HEADER: &str = "Kanava-Channel";
/// Header carrying the frame kind's code ([`FrameKind::code`]).
pub const KIND_HEADER: &str = "Kanava-Kind";
/// Header carrying the sender's uid, in hex.
pub const UID_HEADER: &str = "Kanava-Uid";
/// Header carrying the time the hub accepted the frame, in Unix milliseconds.
pub const TIME_HEADER: &str = "Kanava-Time";
/// Header carrying `1` when the sender proved it holds its uid as a bound name; absent or `0`
/// otherwise.
pub const VERIFIED_HEADER: &str = "Kanava-Verified";
/// Header carrying `<node>/<member>`, the publishing node and member.
pub const ORIGIN_HEADER: &str = "Kanava-Origin";
/// Header of a private message: `1` while its recipient has yet to see it, else `0`.
pub const UNREAD_HEADER: &str = "Kanava-Unread";
/// Header of a stored debug-me record: `start`, `message` or `end`.
pub const SESSION_HEADER: &str = "Kanava-Dm";
/// Header of a reply from a session's node: why the session did not log the message.
pub const ERROR_HEADER: &str = "Kanava-Error";
/// The longest reason [`error_reason`] keeps, in bytes.
pub const MAX_REASON: usize = 512;

/// Why a stored channel frame or debug-me record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The subject is not `kanava.ch.` (one stream) or `kanava.chs.<shard>.` (several) and 32
    /// lowercase hex digits.
    #[error("subject is not a channel subject")]
    Subject,
    /// The subject's shard is not the one its token hashes to.
    #[error("the subject's shard is not its channel's")]
    ShardMismatch,
    /// A header kanava always writes is absent.
    #[error("header {0} is missing")]
    Missing(&'static str),
    /// A header holds something kanava never writes.
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    /// The channel name in the header does not hash to the subject's token.
    #[error("the channel name does not match the subject's token")]
    TokenMismatch,
}

/// One stored record of a debug-me session: its start, a logged message, or its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRecord {
    /// The session's node announced the session; carries nothing.
    Start,
    /// A logged message.
    Message(SessionMessage),
    /// The session ended; nothing follows.
    End,
}

/// Why a stored record (an identity, ban, topic, presence announcement, private message) was
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The value is not the JSON kanava writes.
    #[error("not a valid record: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is well formed but a field holds something kanava never writes.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// The lowercase hex of `bytes`: how names that NATS subjects and keys cannot carry are
/// written.
pub fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// A channel's subject token: the first 16 bytes of SHA-256 of its name, in lowercase hex.
pub fn channel_token(channel: &ChannelName) -> String {
    let digest = Sha256::digest(channel.as_str().as_bytes());
    hex(&digest[..16])
}

/// How a cluster spreads its channels over channel streams: by a stable hash of the name (the
/// first 8 bytes of its token), into one of a count of shards fixed when the cluster is created.
/// One shard is the original layout: stream `KANAVA_CH`, subjects `kanava.ch.<token>`; with
/// more, shard `i` is stream `KANAVA_CH_<i>` with subjects `kanava.chs.<i>.<token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelShards(u32);

impl ChannelShards {
    /// The original layout: one stream.
    pub const ONE: ChannelShards = ChannelShards(1);

    /// `count` shards; `None` unless 1 to [`MAX_CHANNEL_SHARDS`].
    pub fn new(count: u32) -> Option<ChannelShards> {
        (1..=MAX_CHANNEL_SHARDS)
            .contains(&count)
            .then_some(ChannelShards(count))
    }

    /// How many shards.
    pub fn count(self) -> u32 {
        self.0
    }

    /// The shard of a channel token (32 hex digits).
    fn shard_of_token(self, token: &str) -> u32 {
        let head = token
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        u32::try_from(head.unwrap_or(0) % u64::from(self.0)).unwrap_or(0)
    }

    /// The shard `channel` belongs to.
    pub fn shard_of(self, channel: &ChannelName) -> u32 {
        self.shard_of_token(&channel_token(channel))
    }

    /// The name of shard `shard`'s stream.
    pub fn stream(self, shard: u32) -> String {
        if self.0 == 1 {
            "KANAVA_CH".into()
        } else {
            format!("KANAVA_CH_{shard}")
        }
    }

    /// The prefix of shard `shard`'s subjects (ends with a dot).
    pub fn prefix(self, shard: u32) -> String {
        if self.0 == 1 {
            CHANNEL_PREFIX.into()
        } else {
            format!("{SHARDED_CHANNEL_PREFIX}{shard}.")
        }
    }

    /// The subject a channel's frames are stored under.
    pub fn subject(self, channel: &ChannelName) -> String {
        let token = channel_token(channel);
        format!("{}{token}", self.prefix(self.shard_of_token(&token)))
    }

    /// The subjects shard `shard`'s stream republishes its frames on (ends with `>`).
    pub fn live_filter(self, shard: u32) -> String {
        format!("{}>", live_of(&self.prefix(shard)))
    }

    /// The subject a channel's frames are republished on once stored.
    pub fn live_subject(self, channel: &ChannelName) -> String {
        live_of(&self.subject(channel))
    }

    /// The token of a channel subject of this layout, checked to be in its shard.
    fn token_of(self, subject: &str) -> Result<&str, FrameError> {
        let token = if self.0 == 1 {
            subject.strip_prefix(CHANNEL_PREFIX)
        } else {
            subject
                .strip_prefix(SHARDED_CHANNEL_PREFIX)
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(shard, token)| {
                    let canonical = shard.bytes().all(|b| b.is_ascii_digit())
                        && (shard == "0" || !shard.starts_with('0'));
                    let shard = shard.parse::<u32>().ok().filter(|_| canonical)?;
                    Some((shard, token))
                })
                .filter(|(shard, _)| *shard < self.0)
                .map(|(shard, token)| {
                    if self.shard_of_token(token) == shard {
                        Ok(token)
                    } else {
                        Err(FrameError::ShardMismatch)
                    }
                })
                .transpose()?
        };
        token
            .filter(|t| t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or(FrameError::Subject)
    }
}

/// The live subject of a stored subject (both start with `kanava.`).
fn live_of(stored: &str) -> String {
    format!(
        "{LIVE_PREFIX}{}",
        stored.strip_prefix("kanava.").unwrap_or(stored)
    )
}

/// Where a republished frame stands in its subject: its stream sequence (`Nats-Sequence`) and
/// that of the subject's previous message (`Nats-Last-Sequence`, 0 for the first; per subject on
/// nats-server 2.9.10 and 2.15.1, tested). `None` unless both are there as numbers and the
/// previous is before the frame.
pub fn live_sequences(headers: &[(&str, &str)]) -> Option<(u64, u64)> {
    let number = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let seq = number("Nats-Sequence")?;
    let previous = number("Nats-Last-Sequence")?;
    (seq > 0 && previous < seq).then_some((seq, previous))
}

/// The subject a channel's frames are stored under in a cluster of `shards` channel streams.
pub fn channel_subject(shards: ChannelShards, channel: &ChannelName) -> String {
    shards.subject(channel)
}

/// The subject the private messages to `nick` are stored under.
pub fn private_subject(nick: &Nick) -> String {
    format!("{PRIVATE_PREFIX}{}", hex(nick.key().as_bytes()))
}

/// The headers of a channel frame, as [`decode_frame`] reads them back.
pub fn frame_headers(
    channel: &ChannelName,
    kind: FrameKind,
    sender: &Uid,
    verified: bool,
    time_ms: u64,
    origin: &Origin,
) -> [(&'static str, String); 6] {
    [
        (CHANNEL_HEADER, hex(channel.as_str().as_bytes())),
        (KIND_HEADER, kind.code().to_string()),
        (UID_HEADER, hex(sender.as_str().as_bytes())),
        (TIME_HEADER, time_ms.to_string()),
        (ORIGIN_HEADER, origin_value(origin)),
        (VERIFIED_HEADER, u8::from(verified).to_string()),
    ]
}

/// The first value of header `name` among `headers`.
fn header<'a>(headers: &[(&str, &'a str)], name: &'static str) -> Result<&'a str, FrameError> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or(FrameError::Missing(name))
}

/// Decodes a hex header into ASCII text.
fn hex_text(value: &str, name: &'static str) -> Result<String, FrameError> {
    base16ct::lower::decode_vec(value)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(FrameError::Malformed(name))
}

/// Decodes a stored channel frame of a cluster of `shards` channel streams: its subject,
/// headers (name, value pairs; the first of a repeated name counts), payload and stream
/// sequence, which becomes the entry's `seq`. A frame under another shard than its channel's is
/// refused: it would be out of its channel's order.
pub fn decode_frame(
    shards: ChannelShards,
    subject: &str,
    headers: &[(&str, &str)],
    payload: Bytes,
    seq: u64,
) -> Result<Delivered, FrameError> {
    let token = shards.token_of(subject)?;
    let name = hex_text(header(headers, CHANNEL_HEADER)?, CHANNEL_HEADER)?;
    let channel = ChannelName::new(&name).map_err(|_| FrameError::Malformed(CHANNEL_HEADER))?;
    if channel_token(&channel) != token {
        return Err(FrameError::TokenMismatch);
    }
    let kind = header(headers, KIND_HEADER)?
        .parse::<u8>()
        .ok()
        .and_then(FrameKind::from_code)
        .ok_or(FrameError::Malformed(KIND_HEADER))?;
    let uid = hex_text(header(headers, UID_HEADER)?, UID_HEADER)?;
    let sender = Uid::new(&uid).map_err(|_| FrameError::Malformed(UID_HEADER))?;
    let verified = match header(headers, VERIFIED_HEADER) {
        Err(_) | Ok("0") => false,
        Ok("1") => true,
        Ok(_) => return Err(FrameError::Malformed(VERIFIED_HEADER)),
    };
    let time_ms = header(headers, TIME_HEADER)?
        .parse::<u64>()
        .map_err(|_| FrameError::Malformed(TIME_HEADER))?;
    let origin = origin(header(headers, ORIGIN_HEADER)?)?;
    Ok(Delivered {
        channel,
        entry: Entry {
            seq,
            kind,
            sender,
            verified,
            payload,
            time_ms,
        },
        origin,
    })
}

/// The value of an origin header.
fn origin_value(origin: &Origin) -> String {
    format!("{}/{}", origin.node, origin.member)
}

/// Reads an origin header: `<node>/<member>`, where the node is not empty (and may hold `/`).
fn origin(value: &str) -> Result<Origin, FrameError> {
    let (node, member) = value
        .rsplit_once('/')
        .filter(|(node, _)| !node.is_empty())
        .ok_or(FrameError::Malformed(ORIGIN_HEADER))?;
    let member = member
        .parse::<u64>()
        .map_err(|_| FrameError::Malformed(ORIGIN_HEADER))?;
    Ok(Origin {
        node: Arc::from(node),
        member,
    })
}

/// Whether `id` can be a debug-me session id, as the session's node makes them (a lowercase
/// UUID): 36 of `0-9 a-f -`. Nothing else may go into a subject.
pub fn valid_session_id(id: &str) -> bool {
    id.len() == 36
        && id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

/// The subject session `id` is stored under; `None` if `id` is not a session id.
pub fn session_subject(id: &str) -> Option<String> {
    valid_session_id(id).then(|| format!("{SESSION_PREFIX}{id}"))
}

/// The subject session `id`'s node takes messages in on; `None` if `id` is not a session id.
pub fn session_inbox(id: &str) -> Option<String> {
    valid_session_id(id).then(|| format!("{SESSION_INBOX_PREFIX}{id}"))
}

/// The headers of a session record, as [`decode_session_message`] reads them back; a
/// message's payload is its frame, a marker's is empty.
pub fn session_headers(record: &SessionRecord) -> Vec<(&'static str, String)> {
    match record {
        SessionRecord::Start => vec![(SESSION_HEADER, "start".into())],
        SessionRecord::Message(message) => vec![
            (SESSION_HEADER, "message".into()),
            (ORIGIN_HEADER, origin_value(&message.origin)),
        ],
        SessionRecord::End => vec![(SESSION_HEADER, "end".into())],
    }
}

/// Decodes a stored debug-me record (or a message sent into a session) from its headers (name,
/// value pairs; the first of a repeated name counts) and payload. A marker carries no payload.
pub fn decode_session_message(
    headers: &[(&str, &str)],
    payload: Bytes,
) -> Result<SessionRecord, FrameError> {
    let marker = |record| {
        if payload.is_empty() {
            Ok(record)
        } else {
            Err(FrameError::Malformed(SESSION_HEADER))
        }
    };
    match header(headers, SESSION_HEADER)? {
        "start" => marker(SessionRecord::Start),
        "end" => marker(SessionRecord::End),
        "message" => Ok(SessionRecord::Message(SessionMessage {
            frame: payload,
            origin: origin(header(headers, ORIGIN_HEADER)?)?,
        })),
        _ => Err(FrameError::Malformed(SESSION_HEADER)),
    }
}

/// A reason a session gives for not logging a message, fit for [`ERROR_HEADER`]: control
/// characters (which a header cannot carry) become spaces, and it is cut to [`MAX_REASON`]
/// bytes; never empty.
pub fn error_reason(reason: &str) -> String {
    let mut value = String::new();
    for c in reason.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if value.len() + c.len_utf8() > MAX_REASON {
            break;
        }
        value.push(c);
    }
    if value.trim().is_empty() {
        "refused".into()
    } else {
        value
    }
}

/// Reads a session node's reply to a message sent in: `Ok` when it logged the message (an empty
/// reply), else its reason.
pub fn decode_session_reply(headers: &[(&str, &str)], payload: &[u8]) -> Result<(), String> {
    match header(headers, ERROR_HEADER) {
        Ok(reason) => Err(error_reason(reason)),
        Err(_) if payload.is_empty() => Ok(()),
        Err(_) => Err("an unexpected reply".into()),
    }
}

fn nick(name: &str) -> Result<Nick, RecordError> {
    Nick::new(name).map_err(|_| RecordError::Invalid("name"))
}

fn channel(name: &str) -> Result<ChannelName, RecordError> {
    ChannelName::new(name).map_err(|_| RecordError::Invalid("channel name"))
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    fingerprint: String,
    public_key: String,
    added_ms: u64,
    /// Absent in records written before pending keys existed: those keys are active.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pending: bool,
}

#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    nick: String,
    keys: Vec<KeyRecord>,
    /// 0 in records written before last-seen times existed (unknown).
    #[serde(default)]
    last_seen_ms: u64,
    #[serde(default)]
    renamed_ms: u64,
}

/// The value of an identity's key: the name as first bound and its keys, oldest first.
pub fn encode_identity(identity: &Identity) -> Vec<u8> {
    let record = IdentityRecord {
        nick: identity.nick.as_str().to_owned(),
        keys: identity
            .keys
            .iter()
            .map(|k| KeyRecord {
                fingerprint: k.fingerprint.clone(),
                public_key: k.public_key.clone(),
                added_ms: k.added_ms,
                pending: k.pending,
            })
            .collect(),
        last_seen_ms: identity.last_seen_ms,
        renamed_ms: identity.renamed_ms,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads an identity written by [`encode_identity`]; a bound name has at least one active key.
/// A last-seen time of 0 (unknown) reads as 0; the name expiry counts it from when it first
/// sees it.
pub fn decode_identity(bytes: &[u8]) -> Result<Identity, RecordError> {
    let record: IdentityRecord = serde_json::from_slice(bytes)?;
    if record.keys.iter().all(|k| k.pending) {
        return Err(RecordError::Invalid("identity without keys"));
    }
    Ok(Identity {
        nick: nick(&record.nick)?,
        last_seen_ms: record.last_seen_ms,
        renamed_ms: record.renamed_ms,
        keys: record
            .keys
            .into_iter()
            .map(|k| IdentityKey {
                fingerprint: k.fingerprint,
                public_key: k.public_key,
                added_ms: k.added_ms,
                pending: k.pending,
            })
            .collect(),
    })
}

#[derive(Serialize, Deserialize)]
struct KeyNamesRecord {
    nicks: Vec<String>,
}

/// The value of a key's index entry: the names the key was bound to.
pub fn encode_key_names(nicks: &[Nick]) -> Vec<u8> {
    let record = KeyNamesRecord {
        nicks: nicks.iter().map(|n| n.as_str().to_owned()).collect(),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads a key's index entry written by [`encode_key_names`].
pub fn decode_key_names(bytes: &[u8]) -> Result<Vec<Nick>, RecordError> {
    let record: KeyNamesRecord = serde_json::from_slice(bytes)?;
    record.nicks.iter().map(|n| nick(n)).collect()
}

#[derive(Serialize, Deserialize)]
struct BanRecord {
    fingerprint: String,
    nick: String,
    by: String,
    since_ms: u64,
    until_ms: Option<u64>,
}

/// The value of a ban's key.
pub fn encode_ban(ban: &Ban) -> Vec<u8> {
    let record = BanRecord {
        fingerprint: ban.fingerprint.clone(),
        nick: ban.nick.as_str().to_owned(),
        by: ban.by.as_str().to_owned(),
        since_ms: ban.since_ms,
        until_ms: ban.until_ms,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads a ban written by [`encode_ban`].
pub fn decode_ban(bytes: &[u8]) -> Result<Ban, RecordError> {
    let record: BanRecord = serde_json::from_slice(bytes)?;
    Ok(Ban {
        fingerprint: record.fingerprint,
        nick: nick(&record.nick)?,
        by: nick(&record.by)?,
        since_ms: record.since_ms,
        until_ms: record.until_ms,
    })
}

#[derive(Serialize, Deserialize)]
struct TopicRecord {
    room: String,
    text: String,
    set_by: String,
    set_ms: u64,
}

/// The value of a room's topic key.
pub fn encode_topic(topic: &Topic) -> Vec<u8> {
    let record = TopicRecord {
        room: topic.room.as_str().to_owned(),
        text: topic.text.clone(),
        set_by: topic.set_by.as_str().to_owned(),
        set_ms: topic.set_ms,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads a topic written by [`encode_topic`].
pub fn decode_topic(bytes: &[u8]) -> Result<Topic, RecordError> {
    let record: TopicRecord = serde_json::from_slice(bytes)?;
    Ok(Topic {
        room: channel(&record.room)?,
        text: record.text,
        set_by: nick(&record.set_by)?,
        set_ms: record.set_ms,
    })
}

/// One node's announcement of its members of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    /// The channel.
    pub channel: ChannelName,
    /// The announcing node.
    pub node: String,
    /// Its members there.
    pub members: Vec<Present>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    uid: String,
    exclusive: bool,
    #[serde(default)]
    verified: bool,
}

#[derive(Serialize, Deserialize)]
struct PresenceJson {
    channel: String,
    node: String,
    members: Vec<MemberRecord>,
}

/// The value of a presence key.
pub fn encode_presence(record: &PresenceRecord) -> Vec<u8> {
    let json = PresenceJson {
        channel: record.channel.as_str().to_owned(),
        node: record.node.clone(),
        members: record
            .members
            .iter()
            .map(|m| MemberRecord {
                uid: m.uid.as_str().to_owned(),
                exclusive: m.exclusive,
                verified: m.verified,
            })
            .collect(),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// Reads a presence announcement written by [`encode_presence`].
pub fn decode_presence(bytes: &[u8]) -> Result<PresenceRecord, RecordError> {
    let json: PresenceJson = serde_json::from_slice(bytes)?;
    if json.node.is_empty() {
        return Err(RecordError::Invalid("node name"));
    }
    let members = json
        .members
        .into_iter()
        .map(|m| {
            Ok(Present {
                uid: Uid::new(&m.uid).map_err(|_| RecordError::Invalid("uid"))?,
                exclusive: m.exclusive,
                verified: m.verified,
            })
        })
        .collect::<Result<_, RecordError>>()?;
    Ok(PresenceRecord {
        channel: channel(&json.channel)?,
        node: json.node,
        members,
    })
}

#[derive(Serialize, Deserialize)]
struct PrivateRecord {
    from: String,
    to: String,
    text: String,
    time_ms: u64,
}

/// The payload of a private message (its id is its stream sequence, not stored).
pub fn encode_private(message: &PrivateMessage) -> Vec<u8> {
    let record = PrivateRecord {
        from: message.from.as_str().to_owned(),
        to: message.to.as_str().to_owned(),
        text: message.text.clone(),
        time_ms: message.time_ms,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads a private message written by [`encode_private`], stored at stream sequence `id`.
pub fn decode_private(bytes: &[u8], id: u64) -> Result<PrivateMessage, RecordError> {
    let record: PrivateRecord = serde_json::from_slice(bytes)?;
    Ok(PrivateMessage {
        id,
        from: nick(&record.from)?,
        to: nick(&record.to)?,
        text: record.text,
        time_ms: record.time_ms,
    })
}

#[derive(Serialize, Deserialize)]
struct SeenRecord {
    last: u64,
}

/// The value of a name's private-message pointer: the last stream sequence it has seen.
pub fn encode_seen(last: u64) -> Vec<u8> {
    serde_json::to_vec(&SeenRecord { last }).unwrap_or_default()
}

/// Reads a pointer written by [`encode_seen`].
pub fn decode_seen(bytes: &[u8]) -> Result<u64, RecordError> {
    Ok(serde_json::from_slice::<SeenRecord>(bytes)?.last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            node: Arc::from("node-a/x"),
            member: 7,
        }
    }

    fn encoded(channel: &ChannelName) -> (String, Vec<(&'static str, String)>) {
        let uid = Uid::new("ali\x01ce").unwrap();
        let headers = frame_headers(channel, FrameKind::Text, &uid, true, 42, &origin());
        (
            channel_subject(ChannelShards::ONE, channel),
            headers.to_vec(),
        )
    }

    fn pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    #[test]
    fn a_frame_round_trips_through_its_headers() {
        let channel = ChannelName::new("a.b *>\x1b").unwrap();
        let (subject, headers) = encoded(&channel);
        assert_eq!(subject.len(), CHANNEL_PREFIX.len() + 32);
        let got = decode_frame(
            ChannelShards::ONE,
            &subject,
            &pairs(&headers),
            Bytes::from_static(b"hi"),
            9,
        )
        .unwrap();
        assert_eq!(got.channel, channel);
        assert_eq!(got.entry.seq, 9);
        assert_eq!(got.entry.kind, FrameKind::Text);
        assert_eq!(got.entry.sender.as_str(), "ali\x01ce");
        assert!(got.entry.verified);
        assert_eq!(got.entry.time_ms, 42);
        assert_eq!(&got.entry.payload[..], b"hi");
        assert_eq!(got.origin, origin(), "a node name may hold '/'");
    }

    #[test]
    fn a_name_that_does_not_hash_to_the_subject_is_refused() {
        let channel = ChannelName::new("one").unwrap();
        let (_, headers) = encoded(&channel);
        let other = channel_subject(ChannelShards::ONE, &ChannelName::new("two").unwrap());
        let got = decode_frame(
            ChannelShards::ONE,
            &other,
            &pairs(&headers),
            Bytes::new(),
            1,
        );
        assert_eq!(got, Err(FrameError::TokenMismatch));
    }

    #[test]
    fn sharded_subjects_name_their_channels_shard_and_nothing_else_decodes() {
        let four = ChannelShards::new(4).unwrap();
        assert!(ChannelShards::new(0).is_none());
        assert!(ChannelShards::new(MAX_CHANNEL_SHARDS + 1).is_none());
        let mut used = [false; 4];
        for i in 0..64 {
            let channel = ChannelName::new(&format!("room {i}")).unwrap();
            let shard = four.shard_of(&channel);
            used[shard as usize] = true;
            let subject = four.subject(&channel);
            let token = channel_token(&channel);
            assert_eq!(subject, format!("kanava.chs.{shard}.{token}"));
            assert_eq!(four.stream(shard), format!("KANAVA_CH_{shard}"));
            assert!(subject.starts_with(&four.prefix(shard)));
            let (_, headers) = encoded(&channel);
            let got = decode_frame(four, &subject, &pairs(&headers), Bytes::new(), 3).unwrap();
            assert_eq!(got.channel, channel);
            // The same frame under another shard, the one-stream layout, or a padded index.
            let wrong = format!("kanava.chs.{}.{token}", (shard + 1) % 4);
            let decode = |subject: &str| {
                decode_frame(four, subject, &pairs(&headers), Bytes::new(), 3).map(|_| ())
            };
            assert_eq!(decode(&wrong), Err(FrameError::ShardMismatch));
            assert_eq!(
                decode(&format!("kanava.ch.{token}")),
                Err(FrameError::Subject)
            );
            assert_eq!(
                decode(&format!("kanava.chs.0{shard}.{token}")),
                Err(FrameError::Subject)
            );
            assert_eq!(
                decode(&format!("kanava.chs.4.{token}")),
                Err(FrameError::Subject)
            );
            assert_eq!(
                decode_frame(
                    ChannelShards::ONE,
                    &subject,
                    &pairs(&headers),
                    Bytes::new(),
                    3
                ),
                Err(FrameError::Subject)
            );
        }
        assert_eq!(used, [true; 4], "64 names spread over every shard");
        assert_eq!(ChannelShards::ONE.stream(0), "KANAVA_CH");
        let room = ChannelName::new("room").unwrap();
        let token = channel_token(&room);
        assert_eq!(
            ChannelShards::ONE.live_subject(&room),
            format!("kanava.live.ch.{token}")
        );
        assert_eq!(ChannelShards::ONE.live_filter(0), "kanava.live.ch.>");
        let shard = four.shard_of(&room);
        assert_eq!(
            four.live_subject(&room),
            format!("kanava.live.chs.{shard}.{token}")
        );
        assert_eq!(four.live_filter(2), "kanava.live.chs.2.>");
        assert_eq!(ChannelShards::ONE.prefix(0), CHANNEL_PREFIX);
    }

    #[test]
    fn republished_sequences_are_read_only_when_they_make_sense() {
        let headers = |seq: &'static str, last: &'static str| {
            vec![("Nats-Sequence", seq), ("Nats-Last-Sequence", last)]
        };
        assert_eq!(live_sequences(&headers("7", "3")), Some((7, 3)));
        assert_eq!(live_sequences(&headers("1", "0")), Some((1, 0)));
        for (seq, last) in [("3", "3"), ("3", "7"), ("0", "0"), ("x", "1"), ("9", "-1")] {
            assert_eq!(live_sequences(&headers(seq, last)), None, "{seq} {last}");
        }
        assert_eq!(live_sequences(&[("Nats-Sequence", "4")]), None);
    }

    #[test]
    fn broken_frames_are_refused() {
        let channel = ChannelName::new("c").unwrap();
        let (subject, headers) = encoded(&channel);
        let decode = |subject: &str, headers: &[(&'static str, String)]| {
            decode_frame(
                ChannelShards::ONE,
                subject,
                &pairs(headers),
                Bytes::new(),
                1,
            )
            .map(|_| ())
        };
        assert_eq!(decode("kanava.ch.xyz", &headers), Err(FrameError::Subject));
        let upper = subject.to_uppercase().replace("KANAVA.CH.", CHANNEL_PREFIX);
        assert_eq!(decode(&upper, &headers), Err(FrameError::Subject));
        for (i, name) in [
            CHANNEL_HEADER,
            KIND_HEADER,
            UID_HEADER,
            TIME_HEADER,
            ORIGIN_HEADER,
        ]
        .into_iter()
        .enumerate()
        {
            let mut missing = headers.clone();
            missing.remove(i);
            assert_eq!(decode(&subject, &missing), Err(FrameError::Missing(name)));
            let mut bad = headers.clone();
            bad[i].1 = "/zz".into();
            assert_eq!(decode(&subject, &bad), Err(FrameError::Malformed(name)));
        }
        // Frames stored before senders were verified have no such header: unverified.
        let mut unmarked = headers.clone();
        unmarked.remove(5);
        let old = decode_frame(
            ChannelShards::ONE,
            &subject,
            &pairs(&unmarked),
            Bytes::new(),
            1,
        )
        .unwrap();
        assert!(!old.entry.verified);
        let mut bad = headers.clone();
        bad[5].1 = "yes".into();
        assert_eq!(
            decode(&subject, &bad),
            Err(FrameError::Malformed(VERIFIED_HEADER))
        );
        let mut kind = headers.clone();
        kind[1].1 = "9".into();
        assert_eq!(
            decode(&subject, &kind),
            Err(FrameError::Malformed(KIND_HEADER))
        );
    }

    #[test]
    fn session_ids_are_checked_before_they_make_subjects() {
        let id = "0f1e2d3c-4b5a-4697-8877-66554433aabb";
        assert_eq!(
            session_subject(id).unwrap(),
            format!("kanava.dm.{id}"),
            "a session id"
        );
        assert_eq!(session_inbox(id).unwrap(), format!("kanava.dm-in.{id}"));
        for bad in [
            "",
            "0F1E2D3C-4B5A-4697-8877-66554433AABB",
            "0f1e2d3c-4b5a-4697-8877-66554433aab",
            "0f1e2d3c-4b5a-4697-8877-66554433aabb0",
            "0f1e2d3c-4b5a-4697-8877-66554433aa.>",
            "0f1e2d3c-4b5a-4697-8877-66554433aa b",
        ] {
            assert!(session_subject(bad).is_none(), "{bad:?}");
            assert!(session_inbox(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn session_records_round_trip_through_their_headers() {
        let message = SessionMessage {
            frame: Bytes::from_static(b"L\x00frame"),
            origin: origin(),
        };
        for (record, payload) in [
            (SessionRecord::Start, Bytes::new()),
            (
                SessionRecord::Message(message.clone()),
                message.frame.clone(),
            ),
            (SessionRecord::End, Bytes::new()),
        ] {
            let headers = session_headers(&record);
            let got = decode_session_message(&pairs(&headers), payload).unwrap();
            assert_eq!(got, record);
        }
    }

    #[test]
    fn broken_session_records_are_refused() {
        let decode = |headers: &[(&str, &str)], payload: &'static [u8]| {
            decode_session_message(headers, Bytes::from_static(payload))
        };
        assert_eq!(decode(&[], b""), Err(FrameError::Missing(SESSION_HEADER)));
        assert_eq!(
            decode(&[(SESSION_HEADER, "pause")], b""),
            Err(FrameError::Malformed(SESSION_HEADER))
        );
        assert_eq!(
            decode(&[(SESSION_HEADER, "start")], b"x"),
            Err(FrameError::Malformed(SESSION_HEADER)),
            "a marker carries nothing"
        );
        assert_eq!(
            decode(&[(SESSION_HEADER, "message")], b"x"),
            Err(FrameError::Missing(ORIGIN_HEADER))
        );
        for bad in ["node", "/1", "node/x", "node/-1"] {
            assert_eq!(
                decode(&[(SESSION_HEADER, "message"), (ORIGIN_HEADER, bad)], b"x"),
                Err(FrameError::Malformed(ORIGIN_HEADER)),
                "{bad}"
            );
        }
    }

    #[test]
    fn replies_say_whether_the_session_logged_the_message() {
        assert_eq!(decode_session_reply(&[], b""), Ok(()));
        assert_eq!(
            decode_session_reply(&[(ERROR_HEADER, "closed")], b""),
            Err("closed".into())
        );
        assert!(decode_session_reply(&[], b"?").is_err());
        assert_eq!(error_reason("bad\r\nframe"), "bad  frame");
        assert_eq!(error_reason(" \n"), "refused");
        let long = error_reason(&"é".repeat(MAX_REASON));
        assert!(long.len() <= MAX_REASON && long.chars().all(|c| c == 'é'));
    }

    #[test]
    fn records_round_trip_and_refuse_invalid_names() {
        let alice = Nick::new("Alice").unwrap();
        let identity = Identity {
            nick: alice.clone(),
            keys: vec![IdentityKey {
                fingerprint: "SHA256:a".into(),
                public_key: "ssh-ed25519 AAAA".into(),
                added_ms: 5,
                pending: false,
            }],
            last_seen_ms: 7,
            renamed_ms: 6,
        };
        assert_eq!(
            decode_identity(&encode_identity(&identity)).unwrap(),
            identity
        );
        let before_pending_keys = br#"{"nick":"Alice","keys":[{"fingerprint":"SHA256:a","public_key":"ssh-ed25519 AAAA","added_ms":5}]}"#;
        let old = decode_identity(before_pending_keys).unwrap();
        assert!(old.holds("SHA256:a") && old.last_seen_ms == 0);
        let only_pending = br#"{"nick":"Alice","keys":[{"fingerprint":"SHA256:a","public_key":"k","added_ms":5,"pending":true}]}"#;
        assert!(decode_identity(only_pending).is_err());
        assert!(decode_identity(br#"{"nick":"a b","keys":[]}"#).is_err());
        assert!(decode_identity(br#"{"nick":"ab","keys":[]}"#).is_err());
        let ban = Ban {
            fingerprint: "SHA256:m".into(),
            nick: alice.clone(),
            by: alice.clone(),
            since_ms: 1,
            until_ms: Some(2),
        };
        assert_eq!(decode_ban(&encode_ban(&ban)).unwrap(), ban);
        let topic = Topic {
            room: ChannelName::new("r\x00oom").unwrap(),
            text: "t".into(),
            set_by: alice.clone(),
            set_ms: 3,
        };
        assert_eq!(decode_topic(&encode_topic(&topic)).unwrap(), topic);
        let presence = PresenceRecord {
            channel: ChannelName::new("c").unwrap(),
            node: "n".into(),
            members: vec![Present {
                uid: Uid::new("u").unwrap(),
                exclusive: true,
                verified: false,
            }],
        };
        assert_eq!(
            decode_presence(&encode_presence(&presence)).unwrap(),
            presence
        );
        assert!(decode_presence(br#"{"channel":"","node":"n","members":[]}"#).is_err());
        let pm = PrivateMessage {
            id: 4,
            from: alice.clone(),
            to: Nick::new("bob").unwrap(),
            text: "hi".into(),
            time_ms: 9,
        };
        assert_eq!(decode_private(&encode_private(&pm), 4).unwrap(), pm);
        assert_eq!(
            decode_key_names(&encode_key_names(std::slice::from_ref(&alice))).unwrap(),
            [alice]
        );
        assert_eq!(decode_seen(&encode_seen(12)).unwrap(), 12);
    }
}
