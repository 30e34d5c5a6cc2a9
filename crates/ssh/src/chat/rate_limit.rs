//! The per-user limits, shared by all their connections and sessions, on messages (whose burst
//! lets a pasted block through), room announcements and rooms created. The buckets and the
//! message-rate defaults are the hub's, which every transport applies alike.

use std::collections::HashMap;
use std::sync::Mutex;

use kanava_core::Nick;
use kanava_hub::{ANNOUNCEMENT_BURST, MESSAGE_BURST, MESSAGE_RATE, TokenBucket};

/// Users tracked per limit before buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

/// What each user may do, limited over all their connections and sessions: messages, room
/// announcements, and rooms created.
pub(crate) struct RateLimits {
    messages: Buckets,
    announcements: Buckets,
    new_rooms: Buckets,
}

impl RateLimits {
    /// The limits, with `rooms_per_hour` new rooms per user (all of them at once, at most) and
    /// `announcements_per_minute` (after a burst of at least three).
    pub(crate) fn new(rooms_per_hour: u32, announcements_per_minute: u32) -> Self {
        let rooms = f64::from(rooms_per_hour.max(1));
        let announcements = f64::from(announcements_per_minute.max(1));
        Self {
            messages: Buckets::new(MESSAGE_BURST, MESSAGE_RATE),
            announcements: Buckets::new(
                announcements.max(ANNOUNCEMENT_BURST),
                announcements / 60.0,
            ),
            new_rooms: Buckets::new(rooms, rooms / 3600.0),
        }
    }

    /// Whether `nick` may send a message now (taking a token if so).
    pub(crate) fn allow(&self, nick: &Nick) -> bool {
        self.messages.take(nick)
    }

    /// Whether `nick` may make an announcement to a room now: away, back, a topic.
    pub(crate) fn allow_announcement(&self, nick: &Nick) -> bool {
        self.announcements.take(nick)
    }

    /// Whether `nick` may create a room now.
    pub(crate) fn allow_new_room(&self, nick: &Nick) -> bool {
        self.new_rooms.take(nick)
    }
}

/// One token bucket per user.
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
            .entry(nick.key())
            .or_insert_with(|| TokenBucket::new(self.burst, self.rate))
            .take(1.0)
    }
}
