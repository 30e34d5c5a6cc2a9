//! The unit of channel history: one frame a member sent, with its order and origin.

use bytes::Bytes;

use crate::{ChannelName, Uid};

/// What kind of frame an entry replays as. The numeric codes are stored on disk; never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A text message (valid UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A client Ping, relayed and replayed as a Ping with its payload.
    Ping,
    /// A member's join header, replayed as a text frame (with any `auth` removed).
    Header,
}

impl FrameKind {
    /// The code this kind is stored under.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Text => 1,
            FrameKind::Binary => 2,
            FrameKind::Ping => 3,
            FrameKind::Header => 4,
        }
    }

    /// The kind stored under `code`, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FrameKind::Text,
            2 => FrameKind::Binary,
            3 => FrameKind::Ping,
            4 => FrameKind::Header,
            _ => return None,
        })
    }
}

/// An entry of a channel's history, as relayed and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the channel's total order; strictly increasing, never reused.
    pub seq: u64,
    /// How the entry is replayed.
    pub kind: FrameKind,
    /// The uid of the member that sent it.
    pub sender: Uid,
    /// Whether the sender proved it holds `sender` as a bound name (an SSH key of the name, or a
    /// Mles client's signed proof); readers show unverified uids distinctly.
    pub verified: bool,
    /// The frame's bytes, exactly as received (headers with `auth` removed).
    pub payload: Bytes,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// An entry together with the channel it belongs to, as handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The channel the entry was sent to.
    pub channel: ChannelName,
    /// The entry itself.
    pub entry: Entry,
}
