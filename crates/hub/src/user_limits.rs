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
    rates: Mutex<UserRates>,
    messages: Buckets,
    announcements: Buckets,
    new_rooms: Buckets,
}

impl UserLimits {
    /// The limits, with `rates.rooms_per_hour` new rooms per user (all of them at once, at
    /// most) and `rates.announcements_per_minute` (after a burst of at least three).
    pub fn new(rates: UserRates) -> Self {
        let (announcements, new_rooms) = shapes(rates);
        Self {
            rates: Mutex::new(rates),
            messages: Buckets::new((MESSAGE_BURST, MESSAGE_RATE)),
            announcements: Buckets::new(announcements),
            new_rooms: Buckets::new(new_rooms),
        }
    }

    /// Applies new rates (a configuration reload). Every user starts again from a full
    /// bucket of the new size.
    pub fn set_rates(&self, rates: UserRates) {
        let (announcements, new_rooms) = shapes(rates);
        *self.rates.lock().unwrap_or_else(|p| p.into_inner()) = rates;
        self.announcements.reshape(announcements);
        self.new_rooms.reshape(new_rooms);
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
        *self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The (burst, tokens per second) of the announcement and new-room buckets for `rates`.
fn shapes(rates: UserRates) -> ((f64, f64), (f64, f64)) {
    let rooms = f64::from(rates.rooms_per_hour.max(1));
    let announcements = f64::from(rates.announcements_per_minute.max(1));
    (
        (announcements.max(ANNOUNCEMENT_BURST), announcements / 60.0),
        (rooms, rooms / 3600.0),
    )
}

/// One token bucket per user, all of one shape.
struct Buckets(Mutex<BucketSet>);

struct BucketSet {
    /// (burst, tokens per second).
    shape: (f64, f64),
    users: HashMap<String, TokenBucket>,
}

impl Buckets {
    fn new(shape: (f64, f64)) -> Self {
        Self(Mutex::new(BucketSet {
            shape,
            users: HashMap::new(),
        }))
    }

    fn reshape(&self, shape: (f64, f64)) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.shape = shape;
        set.users.clear();
    }

    fn take(&self, nick: &Nick) -> bool {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (burst, rate) = set.shape;
        if set.users.len() >= TRACKED_USERS {
            set.users.retain(|_, bucket| !bucket.is_full());
        }
        set.users
            .entry(nick.key())
            .or_insert_with(|| TokenBucket::new(burst, rate))
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
        let announcements = (0..10)
            .filter(|_| limits.allow_announcement(&alice))
            .count();
        assert_eq!(announcements, ANNOUNCEMENT_BURST as usize);
    }

    #[test]
    fn new_rates_apply_to_everyone_at_once() {
        let limits = UserLimits::new(UserRates {
            rooms_per_hour: 1,
            announcements_per_minute: 1,
        });
        let alice = Nick::new("alice").unwrap();
        assert!(limits.allow_new_room(&alice));
        assert!(!limits.allow_new_room(&alice));
        let rates = UserRates {
            rooms_per_hour: 5,
            announcements_per_minute: 1,
        };
        limits.set_rates(rates);
        assert_eq!(limits.rates(), rates);
        assert_eq!((0..10).filter(|_| limits.allow_new_room(&alice)).count(), 5);
    }
}
