//! The per-user limits, shared by all their connections and sessions on every transport, on
//! messages (whose burst lets a pasted block through), room announcements and rooms created:
//! one instance per hub, so that a user on SSH and in the browser at once has one budget.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::rate::{ANNOUNCEMENT_BURST, MESSAGE_BURST, MESSAGE_RATE, TokenBucket};
use kanava_core::Nick;

/// Users tracked per limit before buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

/// The configurable per-user rates (the message rate is fixed: [`MESSAGE_BURST`],
/// [`MESSAGE_RATE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRates {
    /// Rooms one user may create in an hour (all at once, at most).
    pub rooms_per_hour: u32,
    /// Announcements (away, back, topic) one user may make a minute, after a burst of at
    /// least three.
    pub announcements_per_minute: u32,
}

impl Default for UserRates {
    fn default() -> Self {
        Self {
            rooms_per_hour: 30,
            announcements_per_minute: 1,
        }
    }
}

/// What each user may do, limited over all their connections and sessions: messages, room
/// announcements, and rooms created.
pub struct UserLimits {
    rates: UserRates,
    messages: Buckets,
    announcements: Buckets,
    new_rooms: Buckets,
}

impl UserLimits {
    /// The limits, with `rates.rooms_per_hour` new rooms per user (all of them at once, at
    /// most) and `rates.announcements_per_minute` (after a burst of at least three).
    pub fn new(rates: UserRates) -> Self {
        let rooms = f64::from(rates.rooms_per_hour.max(1));
        let announcements = f64::from(rates.announcements_per_minute.max(1));
        Self {
            rates,
            messages: Buckets::new(MESSAGE_BURST, MESSAGE_RATE),
            announcements: Buckets::new(
                announcements.max(ANNOUNCEMENT_BURST),
                announcements / 60.0,
            ),
            new_rooms: Buckets::new(rooms, rooms / 3600.0),
        }
    }

    /// Whether `nick` may send a message now (taking a token if so).
    pub fn allow(&self, nick: &Nick) -> bool {
        self.messages.take(nick)
    }

    /// Whether `nick` may make an announcement to a room now: away, back, a topic.
    pub fn allow_announcement(&self, nick: &Nick) -> bool {
        self.announcements.take(nick)
    }

    /// Whether `nick` may create a room now.
    pub fn allow_new_room(&self, nick: &Nick) -> bool {
        self.new_rooms.take(nick)
    }

    /// The rates these limits apply, for refusals that say them.
    pub fn rates(&self) -> UserRates {
        self.rates
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_user_in_any_spelling() {
        let limits = UserLimits::new(UserRates {
            rooms_per_hour: 2,
            announcements_per_minute: 1,
        });
        let (alice, shouting) = (Nick::new("alice").unwrap(), Nick::new("ALICE").unwrap());
        assert!(limits.allow_new_room(&alice));
        assert!(limits.allow_new_room(&shouting));
        assert!(!limits.allow_new_room(&alice));
        assert!(limits.allow_new_room(&Nick::new("bob").unwrap()));
        let burst = (0..100).filter(|_| limits.allow(&alice)).count();
        assert_eq!(burst, MESSAGE_BURST as usize);
        let announcements = (0..10).filter(|_| limits.allow_announcement(&alice)).count();
        assert_eq!(announcements, ANNOUNCEMENT_BURST as usize);
    }
}
