//! What each web user may do, over all their connections: messages (the SSH chat's burst and
//! rate), topic changes, and rooms created (the SSH chat's `--ssh-rooms-per-hour`), so that
//! opening more connections buys nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use kanava_core::Nick;
use kanava_hub::{ANNOUNCEMENT_BURST, MESSAGE_BURST, MESSAGE_RATE, TokenBucket};

/// Users tracked per limit before the buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

/// Topic changes a user may make a minute, after [`ANNOUNCEMENT_BURST`].
pub(crate) const TOPICS_PER_MINUTE: f64 = 1.0;

/// One token bucket per user.
#[derive(Debug)]
struct Buckets {
    burst: f64,
    rate: f64,
    users: Mutex<HashMap<String, TokenBucket>>,
}

impl Buckets {
    fn new(burst: f64, rate: f64) -> Self {
        Self {
            burst,
            rate,
            users: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, nick: &Nick) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() >= TRACKED_USERS {
            users.retain(|_, bucket| !bucket.is_full());
        }
        users
            .entry(nick.as_str().to_ascii_lowercase())
            .or_insert_with(|| TokenBucket::new(self.burst, self.rate))
            .take(1.0)
    }
}

/// The per-user limits of the web endpoint.
#[derive(Debug)]
pub(crate) struct UserLimits {
    messages: Buckets,
    topics: Buckets,
    new_rooms: Buckets,
    rooms_per_hour: u32,
}

impl UserLimits {
    /// Limits with `rooms_per_hour` new rooms per user (all of them at once, at most).
    pub(crate) fn new(rooms_per_hour: u32) -> Self {
        let rooms = f64::from(rooms_per_hour.max(1));
        Self {
            messages: Buckets::new(MESSAGE_BURST, MESSAGE_RATE),
            topics: Buckets::new(ANNOUNCEMENT_BURST, TOPICS_PER_MINUTE / 60.0),
            new_rooms: Buckets::new(rooms, rooms / 3600.0),
            rooms_per_hour: rooms_per_hour.max(1),
        }
    }

    /// Whether `nick` may send a message (a `send` or a `pm`) now.
    pub(crate) fn message(&self, nick: &Nick) -> bool {
        self.messages.take(nick)
    }

    /// Whether `nick` may change a topic now.
    pub(crate) fn topic(&self, nick: &Nick) -> bool {
        self.topics.take(nick)
    }

    /// Whether `nick` may create a room now.
    pub(crate) fn new_room(&self, nick: &Nick) -> bool {
        self.new_rooms.take(nick)
    }

    /// Rooms a user may create in an hour.
    pub(crate) fn rooms_per_hour(&self) -> u32 {
        self.rooms_per_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_user_in_any_spelling() {
        let limits = UserLimits::new(2);
        let (alice, shouting) = (Nick::new("alice").unwrap(), Nick::new("ALICE").unwrap());
        assert!(limits.new_room(&alice));
        assert!(limits.new_room(&shouting));
        assert!(!limits.new_room(&alice));
        assert!(limits.new_room(&Nick::new("bob").unwrap()));
        let burst = (0..100).filter(|_| limits.message(&alice)).count();
        assert_eq!(burst, MESSAGE_BURST as usize);
    }
}
